//! Which memory errors fail a run.
//!
//! Memcheck's XML lists a leak error for every kind shown by `--show-leak-kinds`, whether or not it
//! counts toward `--errors-for-leak-kinds`, and `--xml=yes` forces a full leak check. So the tool
//! decides itself, in this order:
//!
//! 1. leak kinds (`Leak_*`): only those selected by `--leak-kinds` (default `definite,indirect`)
//!    can fail; the others are *ignored* (still listed, never failing);
//! 2. `--fail-on KINDS`: when given, only those kinds fail (`leak` stands for every selected leak
//!    kind, `fds` for every descriptor error of `--track-fds`: `FdBadClose`, `FdNotClosed`,
//!    `FdBadUse`); the default `all` fails on every kind, including kinds this tool does not know;
//! 3. a baseline (`--baseline FILE`): an error whose fingerprint is in the baseline is *baselined*
//!    (reported, not failing). Fingerprints are kind + first user frames, hash-free, so they
//!    survive rebuilds (see [`super::frames::fingerprint_key`]).

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What the policy says about one error.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Counts: the run fails.
    #[default]
    Fail,
    /// Known in the baseline file: reported, does not fail.
    Baselined,
    /// Not selected by `--leak-kinds` / `--fail-on`: reported, does not fail.
    Ignored,
}

/// A leak kind as `--leak-kinds` and `match-leak-kinds:` name it (valgrind's
/// `--show-leak-kinds` vocabulary); ordered as valgrind lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakKind {
    /// `Leak_DefinitelyLost`
    Definite,
    /// `Leak_IndirectlyLost`
    Indirect,
    /// `Leak_PossiblyLost`
    Possible,
    /// `Leak_StillReachable`
    Reachable,
}

impl LeakKind {
    /// All leak kinds.
    pub const ALL: [LeakKind; 4] = [
        LeakKind::Definite,
        LeakKind::Indirect,
        LeakKind::Possible,
        LeakKind::Reachable,
    ];

    /// The leak kind of a memcheck error kind (`Leak_DefinitelyLost` → `Definite`).
    pub fn of_error_kind(kind: &str) -> Option<LeakKind> {
        match kind {
            "Leak_DefinitelyLost" => Some(LeakKind::Definite),
            "Leak_IndirectlyLost" => Some(LeakKind::Indirect),
            "Leak_PossiblyLost" => Some(LeakKind::Possible),
            "Leak_StillReachable" => Some(LeakKind::Reachable),
            _ => None,
        }
    }

    /// Parses one spelling (case-sensitive, as valgrind is).
    pub fn from_name(s: &str) -> Option<LeakKind> {
        LeakKind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The word in `--leak-kinds` and in a suppression's `match-leak-kinds:` line.
    pub fn name(self) -> &'static str {
        match self {
            LeakKind::Definite => "definite",
            LeakKind::Indirect => "indirect",
            LeakKind::Possible => "possible",
            LeakKind::Reachable => "reachable",
        }
    }
}

/// A bad policy input.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Unknown word in `--leak-kinds`.
    #[error(
        "unknown leak kind `{0}` (valid values: a comma list of definite, indirect, possible, \
         reachable; or all, none)"
    )]
    LeakKind(String),
    /// Unknown word in `--fail-on`.
    #[error("unknown error kind `{word}`{hint} (valid values: all; {groups}; or a comma list of memcheck kinds: {kinds})", groups = FAIL_ON_GROUPS.join(", "), kinds = MEMCHECK_ERROR_KINDS.join(", "))]
    FailOn {
        /// The word.
        word: String,
        /// A suggestion, e.g. ` (did you mean Leak_DefinitelyLost?)`.
        hint: String,
    },
    /// The baseline file cannot be read.
    #[error("cannot read baseline {path}: {source}")]
    BaselineIo {
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The baseline file is not valid baseline JSON.
    #[error("{path}:{line}:{column}: not a poolgrind baseline: {message}")]
    BaselineFormat {
        /// Path.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde said.
        message: String,
    },
}

/// Words of `--fail-on` besides `all` and the error kinds: `leak` stands for every leak kind
/// selected by `--leak-kinds`, `fds` for every descriptor error of `--track-fds`
/// ([`super::model::is_descriptor_kind`]).
pub const FAIL_ON_GROUPS: &[&str] = &["leak", "fds"];

/// The `<kind>`s valgrind writes for memcheck and for the core's descriptor checks, as `--fail-on`
/// accepts them (valgrind's spelling, case-sensitive): the fifteen of the XML protocol
/// (`docs/internals/xml-output-protocol4.txt`), `FishyValue`, the allocation-function checks of
/// 3.20–3.22 (mc_errors.c), and `--track-fds`' three (3.27.1 writes all of them).
pub const MEMCHECK_ERROR_KINDS: &[&str] = &[
    "InvalidRead",
    "InvalidWrite",
    "InvalidFree",
    "MismatchedFree",
    "InvalidJump",
    "Overlap",
    "InvalidMemPool",
    "UninitCondition",
    "UninitValue",
    "SyscallParam",
    "ClientCheck",
    "Leak_DefinitelyLost",
    "Leak_IndirectlyLost",
    "Leak_PossiblyLost",
    "Leak_StillReachable",
    "FishyValue",
    "ReallocSizeZero",
    "InvalidAlignment",
    "InvalidSize",
    "MismatchedAllocateDeallocateSize",
    "MismatchedAllocateDeallocateAlignment",
    "FdBadClose",
    "FdNotClosed",
    "FdBadUse",
];

/// Parses a `--fail-on` value: `all` (or nothing) is `None`, no restriction; otherwise the set of
/// kinds and groups that fail. Every word is checked: a typo must not pass silently.
pub fn parse_fail_on(value: &str) -> Result<Option<BTreeSet<String>>, PolicyError> {
    let mut words = BTreeSet::new();
    for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let known =
            word == "all" || FAIL_ON_GROUPS.contains(&word) || MEMCHECK_ERROR_KINDS.contains(&word);
        if !known {
            return Err(PolicyError::FailOn {
                word: word.to_string(),
                hint: fail_on_hint(word),
            });
        }
        words.insert(word.to_string());
    }
    Ok((!words.is_empty() && !words.contains("all")).then_some(words))
}

/// A suggestion for a wrong `--fail-on` word: a kind spelled in another case or without `_`,
/// or a `--leak-kinds` word.
fn fail_on_hint(word: &str) -> String {
    let squash = |s: &str| s.replace('_', "").to_ascii_lowercase();
    if let Some(k) = MEMCHECK_ERROR_KINDS
        .iter()
        .chain(FAIL_ON_GROUPS)
        .find(|k| squash(k) == squash(word) || squash(k) == squash(word).trim_end_matches('s'))
    {
        return format!(" (did you mean {k}?)");
    }
    if LeakKind::from_name(word).is_some() {
        return format!(
            " (leak kinds are chosen with --leak-kinds {word}; --fail-on takes `leak`)"
        );
    }
    String::new()
}

/// Parses a `--leak-kinds` value: a comma-separated list, or `all` / `none`.
pub fn parse_leak_kinds(value: &str) -> Result<BTreeSet<LeakKind>, PolicyError> {
    let mut set = BTreeSet::new();
    for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word {
            "all" => set.extend(LeakKind::ALL),
            "none" => {}
            "definite" => {
                set.insert(LeakKind::Definite);
            }
            "indirect" => {
                set.insert(LeakKind::Indirect);
            }
            "possible" => {
                set.insert(LeakKind::Possible);
            }
            "reachable" => {
                set.insert(LeakKind::Reachable);
            }
            other => return Err(PolicyError::LeakKind(other.to_string())),
        }
    }
    Ok(set)
}

/// One known error in a baseline file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BaselineEntry {
    /// [`super::frames::fingerprint_id`] of the key.
    pub fingerprint: String,
    /// The readable key (kind and user frames) the id was made from.
    pub key: String,
}

/// A baseline file: JSON `{"version": 1, "errors": [{"fingerprint": "…", "key": "…"}]}`.
///
/// Written by `--write-baseline FILE` from a run's failing errors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// Format version (1).
    pub version: u32,
    /// Known errors, sorted and de-duplicated.
    pub errors: Vec<BaselineEntry>,
}

impl Baseline {
    /// Reads a baseline file.
    pub fn load(path: &Path) -> Result<Baseline, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::BaselineIo {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| PolicyError::BaselineFormat {
            path: path.display().to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }

    /// Whether a fingerprint id is known.
    pub fn contains(&self, fingerprint: &str) -> bool {
        self.errors.iter().any(|e| e.fingerprint == fingerprint)
    }

    /// Builds a baseline from (fingerprint, key) pairs.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, String)>) -> Baseline {
        let set: BTreeSet<BaselineEntry> = entries
            .into_iter()
            .map(|(fingerprint, key)| BaselineEntry { fingerprint, key })
            .collect();
        Baseline {
            version: 1,
            errors: set.into_iter().collect(),
        }
    }
}

/// The policy: what fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Leak kinds that can fail (default definite, indirect).
    pub leak_kinds: BTreeSet<LeakKind>,
    /// `--fail-on`: `None` means every kind; otherwise the kinds that fail (`leak` = selected leaks).
    pub fail_on: Option<BTreeSet<String>>,
    /// Known errors.
    pub baseline: Option<Baseline>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            leak_kinds: [LeakKind::Definite, LeakKind::Indirect]
                .into_iter()
                .collect(),
            fail_on: None,
            baseline: None,
        }
    }
}

impl Policy {
    /// The verdict for an error of `kind` with fingerprint id `fingerprint`.
    pub fn verdict(&self, kind: &str, fingerprint: &str) -> Verdict {
        let leak = LeakKind::of_error_kind(kind);
        if let Some(lk) = leak {
            if !self.leak_kinds.contains(&lk) {
                return Verdict::Ignored;
            }
        }
        if let Some(fail_on) = &self.fail_on {
            let selected = fail_on.contains(kind)
                || (leak.is_some() && fail_on.contains("leak"))
                || (super::model::is_descriptor_kind(kind) && fail_on.contains("fds"));
            if !selected {
                return Verdict::Ignored;
            }
        }
        if self
            .baseline
            .as_ref()
            .is_some_and(|b| b.contains(fingerprint))
        {
            return Verdict::Baselined;
        }
        Verdict::Fail
    }

    /// A one-line description for reports (`leak kinds: definite,indirect; fail on: all`).
    pub fn describe(&self) -> String {
        let leaks: Vec<&str> = self.leak_kinds.iter().map(|k| k.name()).collect();
        let leaks = if leaks.is_empty() {
            "none".to_string()
        } else {
            leaks.join(",")
        };
        let fail_on = match &self.fail_on {
            None => "all".to_string(),
            Some(set) => set.iter().cloned().collect::<Vec<_>>().join(","),
        };
        let baseline = match &self.baseline {
            None => String::new(),
            Some(b) => format!("; baseline: {} known", b.errors.len()),
        };
        format!("leak kinds: {leaks}; fail on: {fail_on}{baseline}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_ignores_possible_and_reachable() {
        let p = Policy::default();
        assert_eq!(p.verdict("Leak_DefinitelyLost", "x"), Verdict::Fail);
        assert_eq!(p.verdict("Leak_IndirectlyLost", "x"), Verdict::Fail);
        assert_eq!(p.verdict("Leak_PossiblyLost", "x"), Verdict::Ignored);
        assert_eq!(p.verdict("Leak_StillReachable", "x"), Verdict::Ignored);
        assert_eq!(p.verdict("SomeFutureKind", "x"), Verdict::Fail);
    }

    #[test]
    fn fail_on_fds_selects_descriptor_errors_only() {
        let p = Policy {
            fail_on: parse_fail_on("fds").unwrap(),
            ..Policy::default()
        };
        for kind in ["FdBadClose", "FdNotClosed", "FdBadUse"] {
            assert_eq!(p.verdict(kind, "x"), Verdict::Fail, "{kind}");
        }
        assert_eq!(p.verdict("InvalidRead", "x"), Verdict::Ignored);
        assert_eq!(p.verdict("Leak_DefinitelyLost", "x"), Verdict::Ignored);
    }

    #[test]
    fn fail_on_and_baseline() {
        let p = Policy {
            fail_on: parse_fail_on("InvalidRead,leak").unwrap(),
            baseline: Some(Baseline::from_entries([(
                "abc".to_string(),
                "k".to_string(),
            )])),
            ..Policy::default()
        };
        assert_eq!(p.verdict("InvalidWrite", "x"), Verdict::Ignored);
        assert_eq!(p.verdict("InvalidRead", "x"), Verdict::Fail);
        assert_eq!(p.verdict("InvalidRead", "abc"), Verdict::Baselined);
        assert_eq!(p.verdict("Leak_DefinitelyLost", "x"), Verdict::Fail);
        assert_eq!(p.verdict("FdNotClosed", "x"), Verdict::Ignored);
        assert!(parse_leak_kinds("definite,bogus").is_err());
        assert_eq!(parse_leak_kinds("all").unwrap().len(), 4);
    }

    /// issue 10 §3: `--fail-on leaks`, `definite` and `leak_definitelylost` passed silently.
    #[test]
    fn fail_on_rejects_typos_with_a_hint() {
        let err = |w: &str| parse_fail_on(w).unwrap_err().to_string();
        assert!(
            err("leaks").contains("did you mean leak?"),
            "{}",
            err("leaks")
        );
        assert!(err("leak_definitelylost").contains("did you mean Leak_DefinitelyLost?"));
        assert!(err("definite").contains("--leak-kinds definite"));
        assert!(err("InvalidRead,bogus").contains("`bogus`"));
        assert!(err("bogus").contains("valid values: all; leak, fds;"));
        assert_eq!(parse_fail_on("all").unwrap(), None);
        assert_eq!(parse_fail_on("").unwrap(), None);
        assert_eq!(parse_fail_on("leak,InvalidRead").unwrap().unwrap().len(), 2);
    }
}
