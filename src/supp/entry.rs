//! The data of a suppression file: entries, their kind line, extra line and frame patterns.
//!
//! This is the hub the other `supp` modules share; it holds no parsing or printing logic.
//!
//! ```text
//! # comment                      <- SuppFile::header (leading block) or Entry::comments
//! {                              <- Entry::line
//!    my-name                     <- Entry::name, Entry::name_line (valgrind's -v cites this line)
//!    Memcheck:Leak               <- Entry::tools = ["Memcheck"], Entry::kind = "Leak"
//!    match-leak-kinds: definite  <- Entry::extra (Leak: kinds; Param: the syscall parameter)
//!    fun:malloc                  <- Entry::frames (1..=500 lines, innermost first)
//!    ...
//!    fun:_ZN1r7leak_it*
//! }
//! ```
//!
//! Invariants of a valid entry (checked by the parser, relied on by the formatter):
//! the name is non-empty, one line, trimmed, and does not start with `#` (valgrind would
//! skip it as a comment) nor equal `{` or `}`; there is at least one frame that is not
//! `...` and at most [`MAX_FRAMES`] frames; no pattern contains a newline or leading or
//! trailing whitespace (valgrind trims every line).

use std::collections::BTreeSet;
use std::fmt;

/// Most frame lines valgrind honours in one entry (`VG_DEEPEST_BACKTRACE`). Valgrind 3.19
/// silently drops the rest, so an entry with more frames does not mean what it says.
pub const MAX_FRAMES: usize = 500;

/// Longest line valgrind 3.19 reads; a longer one makes it abort ("line longer than
/// 100000 chars"), measured.
pub const MAX_LINE: usize = 100_000;

/// One frame line of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FramePat {
    /// `fun:PATTERN`: the function name as valgrind matches it (mangled for Rust and C++,
    /// the DWARF name for inlined frames). `*` and `?` glob.
    Fun(String),
    /// `obj:PATTERN`: the object (executable or shared library) path.
    Obj(String),
    /// `src:FILE[:LINE]` (valgrind 3.14+): the source file name, optionally one line.
    Src {
        /// File name pattern (no directory).
        file: String,
        /// Line number, if given.
        line: Option<u32>,
    },
    /// `...`: zero or more frames of any kind.
    Ellipsis,
}

impl FramePat {
    /// Whether this is the `...` wildcard.
    pub fn is_ellipsis(&self) -> bool {
        matches!(self, FramePat::Ellipsis)
    }
}

impl fmt::Display for FramePat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramePat::Fun(p) => write!(f, "fun:{p}"),
            FramePat::Obj(p) => write!(f, "obj:{p}"),
            FramePat::Src { file, line: None } => write!(f, "src:{file}"),
            FramePat::Src {
                file,
                line: Some(l),
            } => write!(f, "src:{file}:{l}"),
            FramePat::Ellipsis => f.write_str("..."),
        }
    }
}

/// A memcheck leak kind (`match-leak-kinds:` spells it as `--leak-kinds` does): one type for
/// the runner's policy and the suppression files.
pub use crate::check::policy::LeakKind;

/// The value of a `match-leak-kinds:` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeakKinds {
    /// `all`
    All,
    /// `none` (the entry never matches a leak).
    None,
    /// A non-empty list (`definite,possible`), kept as a set in canonical order.
    Set(BTreeSet<LeakKind>),
}

impl LeakKinds {
    /// The set of kinds this value matches.
    pub fn kinds(&self) -> BTreeSet<LeakKind> {
        match self {
            LeakKinds::All => LeakKind::ALL.into_iter().collect(),
            LeakKinds::None => BTreeSet::new(),
            LeakKinds::Set(s) => s.clone(),
        }
    }

    /// Whether this value matches every leak `other` matches.
    pub fn covers(&self, other: &LeakKinds) -> bool {
        self.kinds().is_superset(&other.kinds())
    }
}

impl fmt::Display for LeakKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeakKinds::All => f.write_str("all"),
            LeakKinds::None => f.write_str("none"),
            LeakKinds::Set(s) => {
                let names: Vec<&str> = s.iter().map(|k| k.name()).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

/// The optional line between the kind line and the frames.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Extra {
    /// `Memcheck:Leak` → `match-leak-kinds: …`.
    LeakKinds(LeakKinds),
    /// `Memcheck:Param` → the syscall parameter (`write(buf)`), compared exactly.
    Param(String),
    /// Any other tool's extra line, kept verbatim.
    Other(String),
}

impl fmt::Display for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Extra::LeakKinds(k) => write!(f, "match-leak-kinds: {k}"),
            Extra::Param(p) | Extra::Other(p) => f.write_str(p),
        }
    }
}

/// One `{ … }` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Comment lines (without the leading `#` and one following space) just before the entry.
    pub comments: Vec<String>,
    /// The name line.
    pub name: String,
    /// Tool names before the colon (`Memcheck`, or `Memcheck,Helgrind`).
    pub tools: Vec<String>,
    /// The kind after the colon (`Leak`, `Addr4`, `Param` …).
    pub kind: String,
    /// The extra line, if any.
    pub extra: Option<Extra>,
    /// Frame lines, innermost first.
    pub frames: Vec<FramePat>,
    /// 1-based line of `{` (0 for entries made in code).
    pub line: usize,
    /// 1-based line of the name (what valgrind's `used_suppression` cites; 0 if made in code).
    pub name_line: usize,
}

impl Entry {
    /// Whether the entry applies to memcheck.
    pub fn is_memcheck(&self) -> bool {
        self.tools.iter().any(|t| t == "Memcheck")
    }

    /// `Tool[,Tool]:Kind` as written on the kind line.
    pub fn kind_line(&self) -> String {
        format!("{}:{}", self.tools.join(","), self.kind)
    }

    /// The entry with source positions and comments cleared: what "same entry" means when
    /// comparing files or round-tripping.
    pub fn without_positions(&self) -> Entry {
        Entry {
            line: 0,
            name_line: 0,
            ..self.clone()
        }
    }

    /// The part of an entry that decides what it matches (not its name, comments or position).
    pub fn matcher_key(&self) -> (Vec<String>, &str, Option<&Extra>, &[FramePat]) {
        let mut tools = self.tools.clone();
        tools.sort();
        tools.dedup();
        (tools, &self.kind, self.extra.as_ref(), &self.frames)
    }
}

/// A parsed suppression file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuppFile {
    /// Where it came from (as given by the user; `<stdin>` or a label for text made in code).
    pub path: String,
    /// The leading comment block (lines without `#` and one following space), if the file
    /// starts with comments separated from the first entry by a blank line.
    pub header: Vec<String>,
    /// Entries in file order.
    pub entries: Vec<Entry>,
    /// Comment lines after the last entry.
    pub trailer: Vec<String>,
    /// Warnings: accepted by valgrind but probably not what the author meant.
    pub warnings: Vec<Diagnostic>,
}

/// A message tied to a line of a suppression file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}
