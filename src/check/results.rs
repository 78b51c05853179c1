//! Aggregated results of one or many memcheck runs: the value every reporter renders, and
//! the JSON format (`--format json`, `report --merge`) documented in `docs/json-schema.md`.
//!
//! Flow: the runner produces one [`ProcessRecord`] per program it started (with the parsed logs of
//! that program and of its children); [`Results::build`] flattens them into one entry per client
//! process and one entry per error, attributes errors to binaries and tests, computes fingerprints
//! and applies the [`Policy`]. [`Results::merge`] combines results read back from JSON (CI shards)
//! and re-applies a policy.

use serde::{Deserialize, Serialize};

use super::exit;
use super::frames::{self, FrameClass};
use super::model::{Completeness, Frame, Log, VgError};
use super::policy::{Policy, Verdict};

/// Version of the JSON results format; bumped only on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// One program the runner started (before aggregation).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// The command as started (`argv[0]` is the executable).
    pub argv: Vec<String>,
    /// The test this process ran, when known from its arguments (nextest: `--exact NAME`).
    pub test: Option<String>,
    /// Exit status, if it exited normally.
    pub exit_code: Option<i32>,
    /// Signal that ended it, if any (valgrind re-raises the client's fatal signal).
    pub signal: Option<i32>,
    /// Killed by `--timeout`.
    pub timed_out: bool,
    /// Not run: matched `--skip` or outside `--partition`.
    pub skipped: bool,
    /// Wall-clock time in milliseconds.
    pub duration_ms: Option<u64>,
    /// PID of the spawned process (valgrind runs the client in the same process).
    pub pid: Option<u32>,
    /// XML files written for this process and its children.
    pub xml_files: Vec<String>,
    /// The parsed logs, in the order of `xml_files` (not serialised: re-read from the files).
    #[serde(skip)]
    pub logs: Vec<Log>,
    /// A problem that kept valgrind from producing a log (failed to start, unreadable XML).
    pub setup_error: Option<String>,
    /// Run by `poolgrind cargo`: cargo (or nextest) judges the exit status, not poolgrind (a
    /// `should_panic` doctest exits 101 on purpose); see [`Results::cargo_exit_code`].
    #[serde(default)]
    pub exit_judged_by_cargo: bool,
}

impl ProcessRecord {
    /// A record for a saved log (`poolgrind report LOG.xml`): the exit status is unknown, so only
    /// what the log says (errors, fatal signal, completeness) is reported.
    pub fn from_saved_log(xml_file: &str, log: Log) -> ProcessRecord {
        ProcessRecord {
            argv: log.argv.clone(),
            pid: log.pid,
            xml_files: vec![xml_file.to_string()],
            logs: vec![log],
            ..ProcessRecord::default()
        }
    }
}

/// How a client process ended, as far as the logs and the runner know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStatus {
    /// A complete log.
    Complete,
    /// The log ends early: valgrind crashed or was killed.
    Truncated,
    /// The log contains bytes that are not XML.
    Junk,
    /// The log's structure or totals are wrong (see `check::model::Completeness::Damaged`).
    Damaged,
    /// No log was written (valgrind did not start, or the process was skipped).
    Missing,
}

/// A frame in the results.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameResult {
    /// Function name for display: Rust names demangled without hash.
    pub function: Option<String>,
    /// The name exactly as valgrind gave it, when different from `function`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_function: Option<String>,
    /// Source path (`dir/file` when valgrind gives both).
    pub file: Option<String>,
    /// Source line.
    pub line: Option<u32>,
    /// Object (executable or shared library).
    pub object: Option<String>,
    /// Instruction pointer.
    pub ip: Option<String>,
    /// What kind of code this is.
    pub class: Option<FrameClass>,
}

impl FrameResult {
    /// Converts a parsed frame.
    pub fn from_frame(f: &Frame) -> FrameResult {
        let function = f.func.as_deref().map(frames::display_name);
        let raw_function = f.func.clone().filter(|raw| Some(raw) != function.as_ref());
        let file = match (&f.dir, &f.file) {
            (Some(dir), Some(file)) if !file.starts_with('/') => Some(format!("{dir}/{file}")),
            (_, Some(file)) => Some(file.clone()),
            _ => None,
        };
        FrameResult {
            function,
            raw_function,
            file,
            line: f.line,
            object: f.obj.clone(),
            ip: f.ip.clone(),
            class: Some(frames::classify(f)),
        }
    }

    /// Class, computed as `User` when absent (results written by a future version).
    pub fn class(&self) -> FrameClass {
        self.class.unwrap_or(FrameClass::User)
    }
}

/// An auxiliary description of an error ("Address 0x… is 0 bytes after a block of size 16 alloc'd").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuxResult {
    /// Text.
    pub what: String,
    /// Its stack, if any.
    pub frames: Vec<FrameResult>,
}

/// A fatal signal in the results.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalResult {
    /// Signal number.
    pub signo: Option<i32>,
    /// Signal name.
    pub signame: Option<String>,
    /// Event description (protocol 5+ or derived).
    pub event: Option<String>,
    /// Faulting address.
    pub siaddr: Option<String>,
    /// Stack at the signal.
    pub frames: Vec<FrameResult>,
}

/// One client process in the results.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessResult {
    /// Binary display name (cargo's `-<hash>` suffix removed).
    pub binary: String,
    /// Client command line (from the log, else as started).
    pub argv: Vec<String>,
    /// Test this process ran, when known from its arguments.
    pub test: Option<String>,
    /// PID (from the log).
    pub pid: Option<u32>,
    /// Parent PID (from the log).
    pub ppid: Option<u32>,
    /// Exit status (only known for the process the runner started).
    pub exit_code: Option<i32>,
    /// Terminating signal number, from the runner or the log's `<fatal_signal>`.
    pub signal: Option<i32>,
    /// Killed by `--timeout`.
    pub timed_out: bool,
    /// Not run (skip list or partition).
    pub skipped: bool,
    /// State of the log.
    pub log: Option<LogStatus>,
    /// XML file, if known.
    pub xml_file: Option<String>,
    /// `<fatal_signal>` details.
    pub fatal_signal: Option<SignalResult>,
    /// Parser notes and setup errors.
    pub notes: Vec<String>,
    /// Wall-clock milliseconds (of the started program).
    pub duration_ms: Option<u64>,
    /// Started by cargo through `poolgrind cargo`: its exit status and the signal it died of are
    /// cargo's to judge (they are shown, and count through [`Results::cargo_exit_code`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exit_judged_by_cargo: bool,
}

impl ProcessResult {
    /// The program failed on its own: non-zero exit, signal or timeout. Under `poolgrind cargo`
    /// the exit status and the runner-seen signal are cargo's verdict, not this process's; a
    /// fatal signal valgrind reported and a timeout still count.
    pub fn program_failed(&self) -> bool {
        let by_status = !self.exit_judged_by_cargo
            && (self.exit_code.is_some_and(|c| c != 0) || self.signal.is_some());
        !self.skipped && (by_status || self.fatal_signal.is_some() || self.timed_out)
    }

    /// The program never started: a setup error (valgrind missing, a bad option valgrind was
    /// never given), told apart from a valgrind that crashed by having no exit status at all.
    pub fn setup_failed(&self) -> bool {
        !self.skipped
            && !self.timed_out
            && self.log == Some(LogStatus::Missing)
            && self.exit_code.is_none()
            && self.signal.is_none()
            && !self.notes.is_empty()
    }

    /// Valgrind did not produce a complete log (and it was not killed by our timeout).
    pub fn valgrind_failed(&self) -> bool {
        !self.skipped
            && !self.timed_out
            && matches!(
                self.log,
                Some(
                    LogStatus::Truncated
                        | LogStatus::Junk
                        | LogStatus::Damaged
                        | LogStatus::Missing
                ) | None
            )
    }

    /// What identifies this process among the parts of a merge: everything the runner
    /// recorded about it (two runs never share pid, duration and log file).
    fn identity(&self) -> String {
        serde_json::to_string(&(
            &self.argv,
            &self.test,
            self.pid,
            self.ppid,
            &self.xml_file,
            self.exit_code,
            self.signal,
            self.timed_out,
            self.skipped,
            self.duration_ms,
            self.log,
        ))
        .unwrap_or_default()
    }

    /// The command and test, to match a process skipped in one shard with its run in another.
    fn command_key(&self) -> String {
        serde_json::to_string(&(&self.argv, &self.test)).unwrap_or_default()
    }

    /// `binary` or `binary › test`.
    pub fn label(&self) -> String {
        let binary = if self.binary.is_empty() {
            "(unknown program)"
        } else {
            &self.binary
        };
        match &self.test {
            Some(t) => format!("{binary} › {t}"),
            None => binary.to_string(),
        }
    }
}

/// How an error's test was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestSource {
    /// The process ran exactly one test (nextest, or `--exact`).
    Process,
    /// The error's stack passes through a test function.
    Stack,
}

/// One error in the results (one per error per process; de-duplication is a display step).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResult {
    /// Index into [`Results::processes`].
    pub process: usize,
    /// Binary display name.
    pub binary: String,
    /// Test, when it could be attributed.
    pub test: Option<String>,
    /// How the test was found.
    pub test_source: Option<TestSource>,
    /// Memcheck's kind, verbatim.
    pub kind: String,
    /// Memcheck's description.
    pub what: String,
    /// Leaked bytes (leak kinds).
    pub bytes: Option<u64>,
    /// Leaked blocks (leak kinds).
    pub blocks: Option<u64>,
    /// Occurrences in its process (from `<errorcounts>`; 1 for leaks).
    pub count: u64,
    /// Thread name, if valgrind gave one.
    pub thread: Option<String>,
    /// Main stack, innermost first.
    pub frames: Vec<FrameResult>,
    /// Index into `frames` of the first user frame.
    pub user_frame: Option<usize>,
    /// Auxiliary descriptions and stacks.
    pub aux: Vec<AuxResult>,
    /// The suppression text valgrind generated (`--gen-suppressions=all`).
    pub suppression: Option<String>,
    /// Stable fingerprint id (16 hex digits).
    pub fingerprint: String,
    /// The readable key the fingerprint is made from.
    pub fingerprint_key: String,
    /// What the policy says.
    pub verdict: Verdict,
}

/// Totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Client processes (including skipped ones).
    pub processes: usize,
    /// Processes skipped.
    pub skipped: usize,
    /// Processes that failed on their own.
    pub programs_failed: usize,
    /// Processes whose log is missing, truncated or junk (setup errors included).
    pub valgrind_failed: usize,
    /// Of those, processes that never started: a setup error, not a valgrind crash (written
    /// only when non-zero).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub setup_failed: usize,
    /// Errors that fail (sum of counts).
    pub failing: u64,
    /// Distinct failing errors (by fingerprint).
    pub failing_distinct: usize,
    /// Errors known in the baseline.
    pub baselined: u64,
    /// Errors not selected by the policy.
    pub ignored: u64,
    /// Bytes in failing leaks.
    pub failing_leaked_bytes: u64,
    /// The exit code this result maps to (see `docs/exit-codes.md`).
    pub exit_code: i32,
    /// One-line verdict.
    pub verdict: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Everything a report shows; serialised as the JSON format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Results {
    /// Always `poolgrind-results`.
    pub schema: String,
    /// [`SCHEMA_VERSION`].
    pub version: u32,
    /// The policy applied, in words.
    pub policy: String,
    /// Totals and verdict.
    pub summary: Summary,
    /// Under `poolgrind cargo`: cargo's own exit status (`128 + signal` if killed), which is the
    /// program verdict (non-zero: exit 2 unless memory errors or valgrind failures rank higher).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cargo_exit_code: Option<i32>,
    /// Client processes.
    pub processes: Vec<ProcessResult>,
    /// Errors, in process order then log order. Errors the policy ignores are here only in
    /// memory and with `-v`; the JSON keeps them as counts in [`Results::ignored_errors`].
    pub errors: Vec<ErrorResult>,
    /// Ignored errors folded to counts per fingerprint (see [`Results::compact_ignored`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_errors: Vec<IgnoredError>,
}

/// Errors the policy ignores (e.g. still-reachable blocks under the default leak kinds), kept
/// as counts: one entry per fingerprint, with where they occurred but without stacks. A test
/// suite's still-reachable records are most of a full JSON report's size and read by nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredError {
    /// Memcheck's kind.
    pub kind: String,
    /// The description of its first occurrence.
    pub what: String,
    /// Fingerprint id, as in [`ErrorResult::fingerprint`].
    pub fingerprint: String,
    /// Its readable key.
    pub fingerprint_key: String,
    /// Occurrences in all processes (sum of `occurrences[].count`).
    pub count: u64,
    /// Leaked bytes in all processes (leak kinds).
    pub bytes: Option<u64>,
    /// One entry per error record folded in.
    pub occurrences: Vec<IgnoredOccurrence>,
}

/// Where an ignored error occurred.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredOccurrence {
    /// Index into [`Results::processes`].
    pub process: usize,
    /// Test, when attributed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// Occurrences in that process.
    pub count: u64,
    /// Leaked bytes (leak kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Leaked blocks (leak kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<u64>,
}

impl IgnoredError {
    /// The occurrences as error records without stacks (for a merge whose policy counts them).
    fn expand(&self, processes: &[ProcessResult], verdict: Verdict) -> Vec<ErrorResult> {
        self.occurrences
            .iter()
            .map(|o| ErrorResult {
                process: o.process,
                binary: processes
                    .get(o.process)
                    .map(|p| p.binary.clone())
                    .unwrap_or_default(),
                test: o.test.clone(),
                kind: self.kind.clone(),
                what: self.what.clone(),
                bytes: o.bytes,
                blocks: o.blocks,
                count: o.count,
                fingerprint: self.fingerprint.clone(),
                fingerprint_key: self.fingerprint_key.clone(),
                verdict,
                ..ErrorResult::default()
            })
            .collect()
    }
}

/// The test an argv runs when it names exactly one (`--exact NAME`, as nextest passes it).
pub fn test_from_argv(argv: &[String]) -> Option<String> {
    if !argv.iter().any(|a| a == "--exact") {
        return None;
    }
    const TAKES_VALUE: &[&str] = &[
        "--test-threads",
        "--format",
        "--skip",
        "-Z",
        "--logfile",
        "--color",
        "--shuffle-seed",
        "--report-time",
    ];
    let mut args = argv.iter().skip(1);
    let mut names = Vec::new();
    while let Some(a) = args.next() {
        if TAKES_VALUE.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') {
            names.push(a.clone());
        }
    }
    (names.len() == 1).then(|| names.remove(0))
}

/// Gives executables that share a display name distinct names. Cargo names a library's unit
/// tests and an integration test of the same name both `deps/<name>-<hash>` (slab's lib tests
/// and `tests/slab.rs` are both `slab`): reports would merge two binaries into one. Each such
/// executable is named after its crate root as cargo's dep-info file beside it records it
/// (`slab (src/lib.rs)`, `slab (tests/slab.rs)`), else by its file name with the hash.
/// Executables without cargo's hash (doctests' `rust_out`, one per temporary directory) keep
/// their name.
fn disambiguate_binaries(processes: &mut [ProcessResult], errors: &mut [ErrorResult]) {
    use std::collections::{BTreeMap, BTreeSet};
    let exe = |p: &ProcessResult| p.argv.first().cloned().unwrap_or_default();
    let mut paths: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in processes.iter() {
        let path = exe(p);
        let file = path.rsplit('/').next().unwrap_or(&path);
        if file.len() > 17 && frames::binary_display_name(&path) != file {
            paths
                .entry(frames::binary_display_name(&path))
                .or_default()
                .insert(path);
        }
    }
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (display, set) in paths.into_iter().filter(|(_, s)| s.len() > 1) {
        let roots: Vec<Option<String>> = set.iter().map(|p| crate_root_of(p)).collect();
        let distinct: BTreeSet<&Option<String>> = roots.iter().collect();
        let by_root = distinct.len() == roots.len() && roots.iter().all(Option::is_some);
        for (path, root) in set.iter().zip(roots) {
            let name = match root {
                Some(root) if by_root => format!("{display} ({root})"),
                _ => path.rsplit('/').next().unwrap_or(path).to_string(),
            };
            names.insert(path.clone(), name);
        }
    }
    if names.is_empty() {
        return;
    }
    for p in processes.iter_mut() {
        if let Some(n) = names.get(&exe(p)) {
            p.binary = n.clone();
        }
    }
    for e in errors.iter_mut() {
        if let Some(p) = processes.get(e.process) {
            e.binary = p.binary.clone();
        }
    }
}

/// The crate root of a cargo-built executable (`src/lib.rs`, `tests/slab.rs`): the first source
/// in the dep-info file cargo writes beside it (`<exe>.d`: `<exe>: <root> <other sources>…`).
/// Absolute roots (a registry crate) are shortened to the part from `src/`, `tests/`,
/// `benches/` or `examples/` on.
fn crate_root_of(exe: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("{exe}.d")).ok()?;
    // The file starts with a rule for itself (`<exe>.d: …`), then the executable's.
    let target = format!("{exe}:");
    let line = text.lines().find(|l| l.starts_with(&target))?;
    let deps = line[target.len()..].trim_start();
    // Make-style escaping: a space inside a path is `\ `.
    let mut root = String::new();
    let mut chars = deps.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => root.extend(chars.next()),
            ' ' => break,
            c => root.push(c),
        }
    }
    if root.is_empty() {
        return None;
    }
    if root.starts_with('/') {
        for dir in ["/src/", "/tests/", "/benches/", "/examples/"] {
            if let Some(i) = root.rfind(dir) {
                return Some(root[i + 1..].to_string());
            }
        }
    }
    Some(root)
}

fn stack_results(stack: &[Frame]) -> Vec<FrameResult> {
    stack.iter().map(FrameResult::from_frame).collect()
}

fn error_result(
    err: &VgError,
    process: usize,
    proc_: &ProcessResult,
    counts: &[(String, u64)],
    policy: &Policy,
) -> ErrorResult {
    let fingerprint_key = frames::fingerprint_key(err);
    let fingerprint = frames::fingerprint_id(&fingerprint_key);
    let (test, test_source) = match (&proc_.test, frames::test_name_from_stack(&err.stack)) {
        (Some(t), _) => (Some(t.clone()), Some(TestSource::Process)),
        (None, Some(t)) => (Some(t), Some(TestSource::Stack)),
        (None, None) => (None, None),
    };
    let count = counts
        .iter()
        .find(|(u, _)| *u == err.unique)
        .map(|(_, c)| *c)
        .filter(|c| *c > 0)
        .unwrap_or(1);
    ErrorResult {
        process,
        binary: proc_.binary.clone(),
        test,
        test_source,
        kind: err.kind.clone(),
        what: err.what.clone(),
        bytes: err.leaked_bytes,
        blocks: err.leaked_blocks,
        count,
        thread: err.thread_name.clone(),
        frames: stack_results(&err.stack),
        user_frame: frames::first_user_frame(&err.stack),
        aux: err
            .aux
            .iter()
            .map(|a| AuxResult {
                what: a.what.clone(),
                frames: stack_results(&a.stack),
            })
            .collect(),
        suppression: err
            .suppression
            .as_ref()
            .map(|s| s.raw.clone())
            .filter(|r| !r.is_empty()),
        verdict: policy.verdict(&err.kind, &fingerprint),
        fingerprint,
        fingerprint_key,
    }
}

impl Results {
    /// Aggregates process records under a policy.
    pub fn build(records: &[ProcessRecord], policy: &Policy) -> Results {
        let mut processes = Vec::new();
        let mut errors = Vec::new();
        for rec in records {
            let started_test = rec.test.clone().or_else(|| test_from_argv(&rec.argv));
            let base = ProcessResult {
                binary: rec
                    .argv
                    .first()
                    .map(|a| frames::binary_display_name(a))
                    .unwrap_or_default(),
                argv: rec.argv.clone(),
                test: started_test.clone(),
                skipped: rec.skipped,
                duration_ms: rec.duration_ms,
                notes: rec.setup_error.iter().cloned().collect(),
                exit_judged_by_cargo: rec.exit_judged_by_cargo,
                ..ProcessResult::default()
            };
            if rec.logs.is_empty() {
                processes.push(ProcessResult {
                    exit_code: rec.exit_code,
                    signal: rec.signal,
                    timed_out: rec.timed_out,
                    log: Some(LogStatus::Missing).filter(|_| !rec.skipped),
                    xml_file: rec.xml_files.first().cloned(),
                    ..base
                });
                continue;
            }
            // The root log is the one of the process the runner started (same pid), else the first.
            let root = rec
                .logs
                .iter()
                .position(|l| l.pid.is_some() && l.pid == rec.pid)
                .unwrap_or(0);
            for (i, log) in rec.logs.iter().enumerate() {
                let is_root = i == root;
                let argv = if log.argv.is_empty() {
                    rec.argv.clone()
                } else {
                    log.argv.clone()
                };
                let test = if is_root {
                    started_test.clone()
                } else {
                    test_from_argv(&argv)
                };
                let mut notes = if is_root {
                    base.notes.clone()
                } else {
                    Vec::new()
                };
                notes.extend(log.notes.iter().cloned());
                let fatal = log.fatal_signal.as_ref().map(|f| SignalResult {
                    signo: f.signo,
                    signame: f.signame.clone(),
                    event: f.event.clone(),
                    siaddr: f.siaddr.clone(),
                    frames: stack_results(&f.stack),
                });
                let status = match log.completeness {
                    Completeness::Complete => LogStatus::Complete,
                    Completeness::Truncated => LogStatus::Truncated,
                    Completeness::Junk => LogStatus::Junk,
                    Completeness::Damaged => LogStatus::Damaged,
                };
                let proc_ = ProcessResult {
                    binary: argv
                        .first()
                        .map(|a| frames::binary_display_name(a))
                        .unwrap_or_default(),
                    argv,
                    test,
                    pid: log.pid,
                    ppid: log.ppid,
                    exit_code: if is_root { rec.exit_code } else { None },
                    signal: if is_root {
                        rec.signal
                    } else {
                        fatal.as_ref().and_then(|f| f.signo)
                    },
                    timed_out: is_root && rec.timed_out,
                    skipped: false,
                    log: Some(status),
                    xml_file: rec.xml_files.get(i).cloned(),
                    fatal_signal: fatal,
                    notes,
                    duration_ms: if is_root { rec.duration_ms } else { None },
                    exit_judged_by_cargo: rec.exit_judged_by_cargo,
                };
                let index = processes.len();
                for err in &log.errors {
                    errors.push(error_result(err, index, &proc_, &log.error_counts, policy));
                }
                processes.push(proc_);
            }
        }
        disambiguate_binaries(&mut processes, &mut errors);
        let mut results = Results {
            schema: "poolgrind-results".into(),
            version: SCHEMA_VERSION,
            policy: policy.describe(),
            summary: Summary::default(),
            cargo_exit_code: None,
            processes,
            errors,
            ignored_errors: Vec::new(),
        };
        results.summarise();
        results
    }

    /// Sets cargo's exit status as the program verdict (`poolgrind cargo`) and re-summarises.
    pub fn with_cargo_exit_code(mut self, code: i32) -> Results {
        self.cargo_exit_code = Some(code);
        self.summarise();
        self
    }

    /// Combines results (e.g. CI shards read back from JSON) and re-applies `policy`.
    pub fn merge(parts: Vec<Results>, policy: &Policy) -> Results {
        let named = parts
            .into_iter()
            .enumerate()
            .map(|(i, r)| (format!("part {}", i + 1), r))
            .collect();
        Results::merge_named(named, policy).0
    }

    /// Combines named results (CI shards: the name is the file) and re-applies `policy`; also
    /// returns what the merge noticed, one line each, for stderr.
    ///
    /// A process already read from an earlier part (the same shard given twice, or a merged
    /// file merged again with one of its parts) is counted once, with its errors: processes
    /// are the same when everything the runner recorded about them is (command, pid, parent,
    /// log file, exit status, signal, duration). A process skipped in one part (outside its
    /// `--partition`) that ran in another is not counted as skipped. Ignored errors that a
    /// shard kept only as counts become error records without stacks when `policy` counts them.
    pub fn merge_named(parts: Vec<(String, Results)>, policy: &Policy) -> (Results, Vec<String>) {
        let mut notes = Vec::new();
        let mut processes: Vec<ProcessResult> = Vec::new();
        let mut errors: Vec<ErrorResult> = Vec::new();
        let mut ignored: Vec<IgnoredError> = Vec::new();
        // A failing shard's cargo status wins over a passing one's.
        let cargo_exit_code = parts
            .iter()
            .filter_map(|(_, p)| p.cargo_exit_code)
            .max_by_key(|c| *c != 0);
        // identity -> (part name, index in `processes`)
        let mut seen: std::collections::HashMap<String, (String, usize)> = Default::default();
        let ran: std::collections::HashSet<String> = parts
            .iter()
            .flat_map(|(_, r)| r.processes.iter())
            .filter(|p| !p.skipped)
            .map(ProcessResult::command_key)
            .collect();
        for (name, part) in parts {
            // Old index -> new index (None: dropped as a duplicate).
            let mut map: Vec<Option<usize>> = Vec::with_capacity(part.processes.len());
            let mut dup_of: Vec<String> = Vec::new();
            let (mut dups, mut counted) = (0usize, 0usize);
            for p in part.processes {
                if p.skipped && ran.contains(&p.command_key()) {
                    map.push(None);
                    continue;
                }
                let id = p.identity();
                if let Some((other, index)) = seen.get(&id) {
                    dups += usize::from(!p.skipped);
                    if !p.skipped && !dup_of.contains(other) {
                        dup_of.push(other.clone());
                    }
                    // A skipped twin maps to the first; a run twin and its errors are dropped.
                    map.push(p.skipped.then_some(*index));
                    continue;
                }
                counted += usize::from(!p.skipped);
                seen.insert(id, (name.clone(), processes.len()));
                map.push(Some(processes.len()));
                processes.push(p);
            }
            if dups > 0 {
                let whole = counted == 0;
                notes.push(if whole {
                    format!(
                        "{name}: every process in it was already read from {} (the same shard \
                         given twice?): counted once",
                        dup_of.join(", ")
                    )
                } else {
                    format!(
                        "{name}: {dups} of its {} processes were already read from {}: counted once",
                        dups + counted,
                        dup_of.join(", ")
                    )
                });
            }
            let remap = |i: usize| map.get(i).copied().flatten();
            for mut e in part.errors {
                if let Some(i) = remap(e.process) {
                    e.process = i;
                    e.verdict = policy.verdict(&e.kind, &e.fingerprint);
                    errors.push(e);
                }
            }
            for mut g in part.ignored_errors {
                g.occurrences.retain_mut(|o| match remap(o.process) {
                    Some(i) => {
                        o.process = i;
                        true
                    }
                    None => false,
                });
                if !g.occurrences.is_empty() {
                    ignored.push(g);
                }
            }
        }
        // Ignored errors kept as counts: regroup by fingerprint; those the policy now counts
        // become records without stacks.
        let mut restored = 0u64;
        let mut kept: Vec<IgnoredError> = Vec::new();
        for g in ignored {
            let verdict = policy.verdict(&g.kind, &g.fingerprint);
            if verdict != Verdict::Ignored {
                restored += g.occurrences.len() as u64;
                errors.extend(g.expand(&processes, verdict));
                continue;
            }
            match kept.iter_mut().find(|k| k.fingerprint == g.fingerprint) {
                Some(k) => k.occurrences.extend(g.occurrences),
                None => kept.push(g),
            }
        }
        if restored > 0 {
            notes.push(format!(
                "{restored} error records that a shard kept only as counts (written without -v) \
                 are counted by this policy: reported without their stacks"
            ));
        }
        for k in &mut kept {
            k.count = k.occurrences.iter().map(|o| o.count).sum();
            k.bytes = k
                .occurrences
                .iter()
                .map(|o| o.bytes)
                .sum::<Option<u64>>()
                .filter(|_| k.occurrences.iter().any(|o| o.bytes.is_some()));
        }
        for p in &mut processes {
            if let Some(exe) = p.argv.first() {
                p.binary = frames::binary_display_name(exe);
            }
        }
        disambiguate_binaries(&mut processes, &mut errors);
        let mut results = Results {
            schema: "poolgrind-results".into(),
            version: SCHEMA_VERSION,
            policy: policy.describe(),
            summary: Summary::default(),
            cargo_exit_code,
            processes,
            errors,
            ignored_errors: kept,
        };
        results.summarise();
        (results, notes)
    }

    /// A copy in which the errors the policy ignores are folded into
    /// [`Results::ignored_errors`]: counts per fingerprint and process, no stacks. This is what
    /// the JSON report writes unless `-v` asks for every record.
    pub fn compact_ignored(&self) -> Results {
        let mut out = Results {
            schema: self.schema.clone(),
            version: self.version,
            policy: self.policy.clone(),
            summary: self.summary.clone(),
            cargo_exit_code: self.cargo_exit_code,
            processes: self.processes.clone(),
            errors: Vec::with_capacity(self.errors.len()),
            ignored_errors: self.ignored_errors.clone(),
        };
        let mut index: std::collections::HashMap<String, usize> = out
            .ignored_errors
            .iter()
            .enumerate()
            .map(|(i, g)| (g.fingerprint.clone(), i))
            .collect();
        for e in &self.errors {
            if e.verdict != Verdict::Ignored {
                out.errors.push(e.clone());
                continue;
            }
            let i = *index.entry(e.fingerprint.clone()).or_insert_with(|| {
                out.ignored_errors.push(IgnoredError {
                    kind: e.kind.clone(),
                    what: e.what.clone(),
                    fingerprint: e.fingerprint.clone(),
                    fingerprint_key: e.fingerprint_key.clone(),
                    ..IgnoredError::default()
                });
                out.ignored_errors.len() - 1
            });
            let g = &mut out.ignored_errors[i];
            g.count += e.count;
            if let Some(b) = e.bytes {
                g.bytes = Some(g.bytes.unwrap_or(0) + b);
            }
            g.occurrences.push(IgnoredOccurrence {
                process: e.process,
                test: e.test.clone(),
                count: e.count,
                bytes: e.bytes,
                blocks: e.blocks,
            });
        }
        out
    }

    /// "3 memory errors (2 distinct)", with descriptor errors (`--track-fds`) counted apart:
    /// "1 memory error (1 distinct), 5 descriptor errors (5 distinct)".
    fn failing_in_words(&self) -> String {
        let mut parts = Vec::new();
        for (descriptors, noun) in [(false, "memory error"), (true, "descriptor error")] {
            let failing = self.errors.iter().filter(|e| {
                e.verdict == Verdict::Fail
                    && super::model::is_descriptor_kind(&e.kind) == descriptors
            });
            let count: u64 = failing.clone().map(|e| e.count).sum();
            let distinct: std::collections::BTreeSet<&str> =
                failing.map(|e| e.fingerprint.as_str()).collect();
            if count > 0 {
                let s = if count == 1 { "" } else { "s" };
                parts.push(format!("{count} {noun}{s} ({} distinct)", distinct.len()));
            }
        }
        parts.join(", ")
    }

    /// Recomputes [`Results::summary`] from processes and errors.
    pub fn summarise(&mut self) {
        let mut s = Summary {
            processes: self.processes.len(),
            ..Summary::default()
        };
        let mut distinct = std::collections::BTreeSet::new();
        for p in &self.processes {
            s.skipped += usize::from(p.skipped);
            s.programs_failed += usize::from(p.program_failed());
            s.valgrind_failed += usize::from(p.valgrind_failed());
            s.setup_failed += usize::from(p.setup_failed());
        }
        let cargo_failed = self.cargo_exit_code.filter(|c| *c != 0);
        for e in &self.errors {
            match e.verdict {
                Verdict::Fail => {
                    s.failing += e.count;
                    distinct.insert(e.fingerprint.as_str());
                    s.failing_leaked_bytes += e.bytes.unwrap_or(0);
                }
                Verdict::Baselined => s.baselined += e.count,
                Verdict::Ignored => s.ignored += e.count,
            }
        }
        s.ignored += self.ignored_errors.iter().map(|g| g.count).sum::<u64>();
        s.failing_distinct = distinct.len();
        s.exit_code = exit::combine(
            s.failing > 0,
            s.valgrind_failed > 0,
            s.programs_failed > 0 || cargo_failed.is_some(),
        );
        s.verdict = match s.exit_code {
            exit::SUCCESS => "passed: no memory errors".to_string(),
            exit::MEMORY_ERRORS => format!("FAILED: {}", self.failing_in_words()),
            exit::VALGRIND_FAILED if s.setup_failed == s.valgrind_failed => format!(
                "FAILED: setup error in {} process{}: valgrind did not start, nothing was checked",
                s.setup_failed,
                if s.setup_failed == 1 { "" } else { "es" }
            ),
            exit::VALGRIND_FAILED => format!(
                "FAILED: valgrind crashed / log truncated, damaged or missing in {} process{}{}",
                s.valgrind_failed - s.setup_failed,
                if s.valgrind_failed - s.setup_failed == 1 {
                    ""
                } else {
                    "es"
                },
                if s.setup_failed > 0 {
                    format!("; setup error in {}", s.setup_failed)
                } else {
                    String::new()
                }
            ),
            _ if s.programs_failed == 0 => format!(
                "FAILED: cargo exited with status {} (a test failed or did not build; no memory errors)",
                cargo_failed.unwrap_or_default()
            ),
            _ => format!(
                "FAILED: {} program{} failed on {} own (no memory errors)",
                s.programs_failed,
                if s.programs_failed == 1 { "" } else { "s" },
                if s.programs_failed == 1 {
                    "its"
                } else {
                    "their"
                }
            ),
        };
        self.summary = s;
    }

    /// Removes run-specific values (durations, pids, instruction pointers are kept) so that two
    /// runs of the same programs compare equal; used by snapshot tests.
    pub fn without_timings(mut self) -> Results {
        for p in &mut self.processes {
            p.duration_ms = None;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// issue 10 §3: a program that never started is a setup error, not "valgrind crashed"
    /// (same exit code, different words and JSON).
    #[test]
    fn setup_error_is_counted_apart_from_a_crash() {
        let rec = ProcessRecord {
            argv: vec!["/bin/true".into()],
            setup_error: Some("valgrind not found".into()),
            ..ProcessRecord::default()
        };
        let r = Results::build(&[rec], &Policy::default());
        assert_eq!(r.summary.exit_code, exit::SETUP_ERROR);
        assert_eq!((r.summary.valgrind_failed, r.summary.setup_failed), (1, 1));
        assert!(
            r.summary.verdict.contains("setup error"),
            "{}",
            r.summary.verdict
        );
        assert!(
            !r.summary.verdict.contains("crashed"),
            "{}",
            r.summary.verdict
        );
        let ran = ProcessRecord {
            argv: vec!["/bin/true".into()],
            exit_code: Some(0),
            ..ProcessRecord::default()
        };
        let r = Results::build(&[ran], &Policy::default());
        assert_eq!((r.summary.valgrind_failed, r.summary.setup_failed), (1, 0));
        assert!(r.summary.verdict.contains("valgrind crashed"));
    }

    /// issue 10 §4: under cargo a program's own status is cargo's to judge.
    #[test]
    fn cargo_judges_exit_status() {
        let rec = |code| ProcessRecord {
            argv: vec!["rust_out".into()],
            exit_code: Some(code),
            exit_judged_by_cargo: true,
            ..ProcessRecord::default()
        };
        // No log was read here, so valgrind_failed is set; look at programs_failed only.
        let r = Results::build(&[rec(101)], &Policy::default()).with_cargo_exit_code(0);
        assert_eq!(r.summary.programs_failed, 0);
        let r = Results::build(&[rec(0)], &Policy::default()).with_cargo_exit_code(101);
        assert_eq!(r.cargo_exit_code, Some(101));
        let merged = Results::merge(
            vec![r.clone(), r.with_cargo_exit_code(0)],
            &Policy::default(),
        );
        assert_eq!(merged.cargo_exit_code, Some(101), "a failing shard wins");
    }

    #[test]
    fn nextest_argv_names_the_test() {
        let argv: Vec<String> = ["bin", "--exact", "tests::leaks", "--nocapture"]
            .map(String::from)
            .to_vec();
        assert_eq!(test_from_argv(&argv).as_deref(), Some("tests::leaks"));
        let argv: Vec<String> = ["bin", "tests::leaks", "--exact", "--test-threads", "1"]
            .map(String::from)
            .to_vec();
        assert_eq!(test_from_argv(&argv).as_deref(), Some("tests::leaks"));
        let argv: Vec<String> = ["bin", "--test-threads", "1"].map(String::from).to_vec();
        assert_eq!(test_from_argv(&argv), None);
    }
}
