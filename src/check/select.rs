//! Which programs or tests to run: skip lists and CI partitions.
//!
//! A *key* names a unit of work: a batch line or command, a test binary (`leaky`), or a test
//! (`leaky::tests::leaks` — binary, `::`, test). A skip pattern is matched against the whole key
//! and, for tests, against the test name alone:
//!
//! - `re:REGEX` — a regular expression (unanchored);
//! - anything else — a glob where `*` matches any run of characters and `?` one character,
//!   anchored at both ends (`leaky::*` skips every test of `leaky`).
//!
//! Skip files (`--skip-file`) hold one pattern per line; `#` starts a comment (say why the entry
//! is there). `--partition i/n` keeps the keys whose FNV-1a hash is `i-1` modulo `n`, so CI shards
//! split the work without coordinating and every key lands in exactly one shard.

use regex::Regex;

use super::frames::fingerprint_id;

/// A bad skip pattern or partition.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// The regex does not compile.
    #[error("bad skip pattern `{pattern}`{where_}: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// ` (FILE:LINE)` when from a file.
        where_: String,
        /// Why.
        message: String,
    },
    /// A skip file cannot be read.
    #[error("cannot read skip file {path}: {source}")]
    File {
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `--partition` is not `i/n` with 1 ≤ i ≤ n.
    #[error("bad partition `{0}`: expected i/n with 1 <= i <= n (e.g. 2/4)")]
    Partition(String),
}

/// A compiled skip list.
#[derive(Debug, Clone, Default)]
pub struct SkipList {
    patterns: Vec<(String, Regex)>,
}

fn glob_to_regex(glob: &str) -> String {
    let mut re = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    re
}

impl SkipList {
    /// Adds one pattern; `origin` names where it came from (for errors).
    pub fn add(&mut self, pattern: &str, origin: Option<&str>) -> Result<(), SelectError> {
        let source = match pattern.strip_prefix("re:") {
            Some(re) => re.to_string(),
            None => glob_to_regex(pattern),
        };
        let re = Regex::new(&source).map_err(|e| SelectError::Pattern {
            pattern: pattern.to_string(),
            where_: origin.map(|o| format!(" ({o})")).unwrap_or_default(),
            message: e.to_string(),
        })?;
        self.patterns.push((pattern.to_string(), re));
        Ok(())
    }

    /// Adds every pattern of a skip file (one per line, `#` comments).
    pub fn add_file(&mut self, path: &std::path::Path) -> Result<(), SelectError> {
        let text = std::fs::read_to_string(path).map_err(|source| SelectError::File {
            path: path.display().to_string(),
            source,
        })?;
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if !line.is_empty() {
                self.add(line, Some(&format!("{}:{}", path.display(), i + 1)))?;
            }
        }
        Ok(())
    }

    /// The first pattern matching the key (or the test part of a `binary::test` key).
    pub fn matches(&self, key: &str, test: Option<&str>) -> Option<&str> {
        self.patterns
            .iter()
            .find(|(_, re)| re.is_match(key) || test.is_some_and(|t| re.is_match(t)))
            .map(|(p, _)| p.as_str())
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// No patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as given (to pass them to child processes).
    pub fn patterns(&self) -> Vec<String> {
        self.patterns.iter().map(|(p, _)| p.clone()).collect()
    }
}

/// `--partition i/n` (1-based shard `index` of `count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Partition {
    /// 1-based shard.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

impl std::str::FromStr for Partition {
    type Err = SelectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SelectError::Partition(s.to_string());
        let s2 = s.strip_prefix("hash:").unwrap_or(s);
        let (i, n) = s2.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Partition { index, count })
    }
}

impl Partition {
    /// Whether this shard runs `key`.
    pub fn contains(&self, key: &str) -> bool {
        let h = u64::from_str_radix(&fingerprint_id(key), 16).unwrap_or(0);
        h % u64::from(self.count) == u64::from(self.index - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_regexes() {
        let mut s = SkipList::default();
        s.add("leaky::*", None).unwrap();
        s.add("re:^test_(ctypes|socket)", None).unwrap();
        assert!(s.matches("leaky::tests::a", None).is_some());
        assert!(s.matches("test_ctypes", None).is_some());
        assert!(s.matches("other::x", Some("x")).is_none());
        assert!(s.add("re:(", None).is_err());
    }

    #[test]
    fn partitions_cover_every_key_once() {
        let parts: Vec<Partition> = (1..=3).map(|i| format!("{i}/3").parse().unwrap()).collect();
        for k in ["a", "b", "c", "leaky::tests::x", "python3 -m test test_os"] {
            assert_eq!(parts.iter().filter(|p| p.contains(k)).count(), 1);
        }
        assert!("0/3".parse::<Partition>().is_err());
        assert!("4/3".parse::<Partition>().is_err());
    }
}
