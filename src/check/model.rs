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
    /// `<fd>` of a descriptor error (`FdBadClose`, `FdNotClosed`, `FdBadUse`; protocol 5+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<i32>,
    /// `<path>` of a descriptor error, when the descriptor names a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd_path: Option<String>,
}

/// Whether a memcheck error kind is a file-descriptor error (`--track-fds`): `FdBadClose`,
/// `FdNotClosed`, `FdBadUse`, and any later `Fd*` kind. These are not memory errors; the policy's
/// `--fail-on fds` selects them.
pub fn is_descriptor_kind(kind: &str) -> bool {
    kind.starts_with("Fd")
}

impl VgError {
    /// A descriptor error (see [`is_descriptor_kind`]).
    pub fn is_descriptor_error(&self) -> bool {
        is_descriptor_kind(&self.kind)
    }

    /// Whether a suppression can match this error. Valgrind matches suppressions against the
    /// error's stack; an error without one (a descriptor inherited from the parent process, shown
    /// with `--track-fds=all`) is never suppressed, and valgrind generates no suppression for it
    /// ("No origin, error cannot be suppressed", `gen_suppression` in coregrind/m_errormgr.c).
    pub fn can_be_suppressed(&self) -> bool {
        !self.stack.is_empty()
    }
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

/// How far a log can be trusted. Only [`Completeness::Complete`] logs can pass a run: every other
/// state maps to exit 3 (`docs/exit-codes.md`), with the errors read so far still reported and
/// counted (a damaged log never yields fewer failures than were read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completeness {
    /// Well-formed from `<valgrindoutput>` to `</valgrindoutput>`, every element the reader relies
    /// on is where the protocol puts it and closed there, `<status>` reached `FINISHED`, and the
    /// totals valgrind wrote (`<errorcounts>`, protocol 6's summaries) agree with the errors read.
    #[default]
    Complete,
    /// The log ends early (valgrind crashed or was killed); what was read is kept.
    Truncated,
    /// Bytes that are not XML text: outside or after the document, between valgrind's elements,
    /// invalid UTF-8 or control characters; what was read is kept.
    Junk,
    /// XML whose structure or totals are wrong: an element left unclosed or closed twice, an
    /// element where valgrind never writes it, an error without a kind, no `FINISHED` status (the
    /// process died at start-up or valgrind stopped early), or counts that contradict the errors.
    Damaged,
}

/// Bytes and blocks, as in the heap and leak summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Bytes.
    pub bytes: u64,
    /// Blocks.
    pub blocks: u64,
}

/// `<heap_summary>` (memcheck, protocol 6): the heap at exit and over the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeapSummary {
    /// `<memory_in_use_at_exit>`.
    pub in_use_at_exit: Totals,
    /// `<total_heap_usage><allocs>`.
    pub allocs: u64,
    /// `<total_heap_usage><frees>`.
    pub frees: u64,
    /// `<total_heap_usage><bytes_allocated>`.
    pub bytes_allocated: u64,
}

/// `<leak_summary>` (memcheck, protocol 6): totals of one leak check, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakSummary {
    /// `<definitely_lost>`.
    pub definitely_lost: Totals,
    /// `<indirectly_lost>`.
    pub indirectly_lost: Totals,
    /// `<possibly_lost>`.
    pub possibly_lost: Totals,
    /// `<still_reachable>`.
    pub still_reachable: Totals,
    /// `<suppressed>`: leaks matched by a suppression (not listed as errors).
    pub suppressed: Totals,
}

impl LeakSummary {
    /// The totals of a leak error kind (`Leak_DefinitelyLost` → `definitely_lost`).
    pub fn of_kind(&self, kind: &str) -> Option<Totals> {
        match kind {
            "Leak_DefinitelyLost" => Some(self.definitely_lost),
            "Leak_IndirectlyLost" => Some(self.indirectly_lost),
            "Leak_PossiblyLost" => Some(self.possibly_lost),
            "Leak_StillReachable" => Some(self.still_reachable),
            _ => None,
        }
    }
}

/// `<error_summary>` (protocol 6): valgrind's `ERROR SUMMARY` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSummary {
    /// Errors found, not suppressed (occurrences).
    pub errors: u64,
    /// Distinct error contexts found.
    pub error_contexts: u64,
    /// Errors suppressed (occurrences).
    pub suppressed: u64,
    /// Distinct contexts suppressed.
    pub suppressed_contexts: u64,
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
    /// Valgrind's own executable and options (`<args><vargv>`): the leak options decide which
    /// totals must match the errors listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub valgrind_argv: Vec<String>,
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
    /// `<heap_summary>` (protocol 6; absent with `-q`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_summary: Option<HeapSummary>,
    /// The last `<leak_summary>` (protocol 6; one per leak check, the last one is at exit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak_summary: Option<LeakSummary>,
    /// `<all_heap_blocks_freed>` (protocol 6): `true` when no block was live at the leak check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_heap_blocks_freed: Option<bool>,
    /// `<error_summary>` (protocol 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_summary: Option<ErrorSummary>,
    /// Whether the document was complete.
    pub completeness: Completeness,
    /// Human-readable notes about what the parser tolerated (unknown elements, junk at line N…).
    pub notes: Vec<String>,
}
