//! The data model of a memcheck run, as read from valgrind's XML (protocols 4, 5 and 6).
//!
//! Everything here is plain data: the parser (`xml`) fills it, the policy decides what fails,
//! the reporters render it, and the suppression tooling (`crate::supp`) turns errors back into
//! suppression entries. Strings are kept verbatim (mangled names included); demangling is a
//! presentation step.

use serde::{Deserialize, Serialize};

/// One stack frame of an error, fatal signal or auxiliary stack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Instruction pointer, as valgrind prints it (`0x4C2E0EF`).
    pub ip: Option<String>,
    /// Object (shared library or executable) path.
    pub obj: Option<String>,
    /// Function name exactly as valgrind gives it (may be mangled).
    #[serde(rename = "function")]
    pub func: Option<String>,
    /// Source directory.
    pub dir: Option<String>,
    /// Source file name.
    pub file: Option<String>,
    /// Source line.
    pub line: Option<u32>,
}

/// One frame line of a suppression as valgrind generated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SuppFrame {
    /// `fun:NAME`
    Fun(String),
    /// `obj:PATH`
    Obj(String),
}

/// A suppression that valgrind generated for an error (`--gen-suppressions=all`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratedSupp {
    /// `<sname>`
    pub name: String,
    /// `<skind>`, e.g. `Memcheck:Leak`.
    pub kind: String,
    /// `<skaux>`, e.g. `match-leak-kinds: definite`.
    pub aux: Option<String>,
    /// `<sframe>` entries, innermost first.
    pub frames: Vec<SuppFrame>,
    /// `<rawtext>` verbatim.
    pub raw: String,
}

/// An auxiliary message with an optional stack ("Address 0x.. is 0 bytes inside a block ... free'd").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aux {
    /// The text of `<auxwhat>` or `<xauxwhat><text>`.
    pub what: String,
    /// The stack that follows it, if any.
    pub stack: Vec<Frame>,
}

/// One `<error>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgError {
    /// `<unique>` (hex string, unique per process).
    pub unique: String,
    /// `<tid>`.
    pub tid: Option<u32>,
    /// `<threadname>`.
    pub thread_name: Option<String>,
    /// `<kind>` verbatim (e.g. `InvalidRead`, `Leak_DefinitelyLost`, or a kind this tool does not know).
    pub kind: String,
    /// `<what>` or `<xwhat><text>`.
    pub what: String,
    /// `<leakedbytes>` for leak errors.
    pub leaked_bytes: Option<u64>,
    /// `<leakedblocks>` for leak errors.
    pub leaked_blocks: Option<u64>,
    /// The error's main stack, innermost first.
    pub stack: Vec<Frame>,
    /// Auxiliary descriptions and stacks, in order.
    pub aux: Vec<Aux>,
    /// The suppression valgrind generated for this error, if any.
    pub suppression: Option<GeneratedSupp>,
}

/// `<fatal_signal>`: the program (or valgrind) died of a signal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FatalSignal {
    /// Thread id.
    pub tid: Option<u32>,
    /// Signal number.
    pub signo: Option<i32>,
    /// Signal name (`SIGSEGV`).
    pub signame: Option<String>,
    /// `<sicode>`.
    pub sicode: Option<i32>,
    /// `<event>` (protocol 5+), e.g. "Access not within mapped region".
    pub event: Option<String>,
    /// Faulting address.
    pub siaddr: Option<String>,
    /// Stack at the signal.
    pub stack: Vec<Frame>,
}

/// How complete a log was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completeness {
    /// Closing `</valgrindoutput>` seen.
    #[default]
    Complete,
    /// The log ends early (valgrind crashed or was killed); what was read is kept.
    Truncated,
    /// Bytes that are not XML follow or interrupt the document; what was read is kept.
    Junk,
}

/// Everything read from one valgrind XML log (one process).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log {
    /// `<protocolversion>`.
    pub protocol_version: Option<u32>,
    /// `<protocoltool>`, e.g. `memcheck`.
    pub tool: Option<String>,
    /// `<pid>`.
    pub pid: Option<u32>,
    /// `<ppid>`.
    pub ppid: Option<u32>,
    /// Executable and arguments of the client (`<args><argv>`).
    pub argv: Vec<String>,
    /// Errors in the order they appear.
    pub errors: Vec<VgError>,
    /// `<errorcounts>`: (unique, count). The last block wins.
    pub error_counts: Vec<(String, u64)>,
    /// `<suppcounts>`: (suppression name, count). The last block wins.
    pub supp_counts: Vec<(String, u64)>,
    /// `<fatal_signal>` if the client died of a signal.
    pub fatal_signal: Option<FatalSignal>,
    /// Whether `<status><state>FINISHED` was seen.
    pub finished: bool,
    /// Whether the document was complete.
    pub completeness: Completeness,
    /// Human-readable notes about what the parser tolerated (unknown elements, junk at line N…).
    pub notes: Vec<String>,
}
