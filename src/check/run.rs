//! Running one program under memcheck.
//!
//! [`run_under_memcheck`] is the one door: it builds valgrind's command line from a
//! [`RunConfig`] (the defaults below, suppression files, pass-through flags), starts it, enforces
//! the timeout, and reads back every XML log the run wrote (one per process with
//! `--trace-children`). The suppression tooling (`poolgrind supp gen -- CMD`,
//! `run --report-unused-supp`) calls it too.
//!
//! Default memcheck flags, and why:
//!
//! | flag | why |
//! |------|-----|
//! | `--xml=yes --xml-file=DIR/vg.%p.xml` | machine-readable, one file per process |
//! | `--gen-suppressions=all` | every error carries its suppression text (for `supp gen` and reports) |
//! | `--num-callers=40` | Rust stacks put 5–9 allocator frames above the user's frame |
//! | `--error-limit=no` | big suites exceed the default 1000/10 000,000 limits |
//! | `--leak-check=full --show-leak-kinds=all` | the policy, not valgrind, decides which leak kinds fail |
//! | `--child-silent-after-fork=yes` | a forked child that does not exec would otherwise write into the parent's XML |
//! | `--suppressions=supp/*.supp` | the shipped files (embedded in the binary), unless `--no-default-supp` |
//!
//! Extra flags come from `POOLGRIND_VALGRIND_FLAGS` (split on whitespace) then `--vg-arg`, after the
//! defaults, so they override them (valgrind takes the last value of an option).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::model::Log;
use super::results::ProcessRecord;
use super::shipped;
use super::xml;

/// Environment variable: the valgrind executable (name or path). Default `valgrind` from `PATH`.
///
/// Not `POOLGRIND_VALGRIND`: that is the allocator's `auto|off` switch (`src/alloc/config.rs`),
/// read by every program that links poolgrind, including the programs this tool runs. The CLI
/// does not read the old name at all (a path there is an invalid allocator option, and `off`
/// there is not a valgrind).
pub const ENV_VALGRIND_BIN: &str = "POOLGRIND_VALGRIND_BIN";
/// Environment variable: extra valgrind flags, split on whitespace.
pub const ENV_VALGRIND_FLAGS: &str = "POOLGRIND_VALGRIND_FLAGS";
/// Environment variable: directory of the shipped suppression files.
pub const ENV_SUPP_DIR: &str = "POOLGRIND_SUPP_DIR";
/// Environment variable: the poolgrind preload library (`libpoolgrind.so`).
pub const ENV_PRELOAD_LIB: &str = "POOLGRIND_PRELOAD_LIB";

/// Every environment variable the CLI reads (the allocator's own are in `src/alloc/config.rs`;
/// the two share the `POOLGRIND_` namespace, and a test checks that no name means two things).
pub const CLI_ENV: &[&str] = &[
    ENV_VALGRIND_BIN,
    ENV_VALGRIND_FLAGS,
    ENV_SUPP_DIR,
    ENV_PRELOAD_LIB,
    super::cargo::ENV_CHILD_CONFIG,
];

/// The memcheck flags poolgrind always passes (before suppressions and user flags).
/// `{xml}` is replaced by the XML file pattern.
pub const DEFAULT_FLAGS: &[&str] = &[
    "--tool=memcheck",
    "--xml=yes",
    "--xml-file={xml}",
    "--gen-suppressions=all",
    "--num-callers=40",
    "--error-limit=no",
    "--leak-check=full",
    "--show-leak-kinds=all",
    "--child-silent-after-fork=yes",
];

/// What can go wrong before or around a run (a program's own failure is not an error).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// valgrind is not installed or not where it was said to be.
    #[error(
        "valgrind not found ({0}).\n  Install it: `apt-get install valgrind` (Debian/Ubuntu) or \
         `dnf install valgrind` (Fedora), or point {ENV_VALGRIND_BIN} (or --valgrind) at the executable."
    )]
    ValgrindMissing(String),
    /// valgrind could not be started.
    #[error("cannot start {valgrind}: {source}")]
    Spawn {
        /// The executable.
        valgrind: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The XML directory could not be created or read.
    #[error("cannot use XML directory {path}: {source}")]
    XmlDir {
        /// Directory.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `--preload` was asked for and the library cannot be found.
    #[error(
        "the poolgrind preload library was not found (looked in: {0}).\n  Build it with \
         `cargo build --release` (it is target/release/libpoolgrind.so) or set {ENV_PRELOAD_LIB}."
    )]
    PreloadMissing(String),
    /// The files embedded in the binary could not be written to any cache directory.
    #[error(
        "cannot write poolgrind's embedded files (preload library, suppression files) to a \
         cache directory ({0}).\n  Point POOLGRIND_CACHE_DIR at a writable directory."
    )]
    Cache(String),
    /// [`ENV_SUPP_DIR`] names something that is not a readable directory.
    #[error("{ENV_SUPP_DIR}: {0} is not a readable directory")]
    SuppDirMissing(String),
    /// A suppression file given with `--suppressions` does not exist.
    #[error("suppression file {0} does not exist")]
    SuppMissing(String),
    /// Nothing to run.
    #[error("no command given")]
    NoCommand,
    /// Waiting for the child failed.
    #[error("waiting for valgrind failed: {0}")]
    Wait(#[source] std::io::Error),
}

/// Where the program's stdout/stderr go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Output {
    /// Inherit poolgrind's (single runs).
    #[default]
    Inherit,
    /// Both into this file (parallel batches).
    File(PathBuf),
    /// Discarded.
    Null,
}

/// How valgrind runs: the options of `poolgrind run` and `poolgrind cargo` that shape valgrind's
/// command line and the client's environment. Declared once: clap reads it from the command line
/// (flattened into both commands), serde carries it to `run --child-mode` (inside
/// [`super::cargo::ChildConfig`]), and [`RunConfig`] holds it for every program.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct MemcheckSettings {
    /// Extra suppression file (repeatable).
    #[arg(long = "suppressions", visible_alias = "supp", value_name = "FILE")]
    pub suppressions: Vec<PathBuf>,
    /// Do not use the shipped supp/*.supp files.
    #[arg(long)]
    pub no_default_supp: bool,
    /// Follow child processes (one XML log per process).
    #[arg(long)]
    pub trace_children: bool,
    /// Extra valgrind option, passed verbatim (repeatable): --vg-arg=--track-origins=yes.
    /// POOLGRIND_VALGRIND_FLAGS (split on whitespace) is added before these. --redzone-size,
    /// --freelist-vol and --freelist-big-blocks are also handed to the allocator (POOLGRIND_REDZONE,
    /// POOLGRIND_QUARANTINE, POOLGRIND_QUARANTINE_BIG).
    #[arg(long = "vg-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub vg_args: Vec<String>,
    /// LD_PRELOAD the poolgrind C allocator (target/release/libpoolgrind.so, or POOLGRIND_PRELOAD_LIB).
    #[arg(long)]
    pub preload: bool,
    /// Kill a program after SECS seconds (reported as a timeout).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Option<f64>,
    /// Keep the XML logs in DIR (created) instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub keep_xml: Option<PathBuf>,
    /// The valgrind executable (default: POOLGRIND_VALGRIND_BIN, else `valgrind` from PATH).
    #[arg(long, value_name = "PATH")]
    pub valgrind: Option<PathBuf>,
    /// The preload library found by [`MemcheckSettings::resolve`] (not an option).
    #[arg(skip)]
    pub preload_lib: Option<PathBuf>,
}

/// `--timeout`: a positive, finite number of seconds (`Duration::from_secs_f64` panics on the rest).
fn parse_timeout(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1e9 => Ok(v),
        _ => Err(format!(
            "`{s}` is not a number of seconds (expected a positive number, e.g. 30 or 0.5)"
        )),
    }
}

impl MemcheckSettings {
    /// Checks, before anything runs, what can be checked, and makes the settings independent of
    /// the working directory (cargo runs test binaries in their package's directory): the valgrind
    /// executable (made absolute), the suppression files (exist; made absolute: with
    /// `--trace-children` valgrind re-reads them in each child, whose working directory may
    /// differ), and the preload library.
    pub fn resolve(&mut self) -> Result<(), RunError> {
        self.valgrind = Some(find_valgrind(self.valgrind.as_deref())?);
        for s in &mut self.suppressions {
            if !s.is_file() {
                return Err(RunError::SuppMissing(s.display().to_string()));
            }
            *s = std::fs::canonicalize(&*s).unwrap_or_else(|_| s.clone());
        }
        if self.preload && self.preload_lib.is_none() {
            self.preload_lib = Some(find_preload_lib()?);
        }
        Ok(())
    }

    /// The per-process timeout.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
            .filter(|t| t.is_finite() && *t > 0.0)
            .map(Duration::from_secs_f64)
    }

    /// The user's extra valgrind flags: [`ENV_VALGRIND_FLAGS`] (split on whitespace), then
    /// `--vg-arg`s, in the order valgrind sees them.
    pub fn extra_flags(&self) -> Vec<String> {
        let mut flags: Vec<String> = std::env::var_os(ENV_VALGRIND_FLAGS)
            .map(|f| {
                f.to_string_lossy()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        flags.extend(self.vg_args.iter().cloned());
        flags
    }

    /// The allocator's environment for memcheck options the allocator must mirror (issue 14):
    /// the allocator cannot read valgrind's command line, so the red-zone size and the free-list
    /// volumes given to valgrind are handed to it here. Valgrind takes the last value of an
    /// option, and so does this. `POOLGRIND_QUARANTINE` set by the user wins over
    /// `--freelist-vol` (it is the allocator's own override).
    pub fn allocator_env(&self) -> Vec<(OsString, OsString)> {
        let user_quarantine = std::env::var_os(ALLOC_ENV_QUARANTINE).is_some();
        allocator_env_for(&self.extra_flags(), user_quarantine)
    }
}

/// The allocator's variable for memcheck's `--redzone-size`.
pub const ALLOC_ENV_REDZONE: &str = "POOLGRIND_REDZONE";
/// The allocator's variable for memcheck's `--freelist-vol`.
pub const ALLOC_ENV_QUARANTINE: &str = "POOLGRIND_QUARANTINE";
/// The allocator's variable for memcheck's `--freelist-big-blocks`.
pub const ALLOC_ENV_QUARANTINE_BIG: &str = "POOLGRIND_QUARANTINE_BIG";

/// [`MemcheckSettings::allocator_env`] for a list of valgrind flags.
pub fn allocator_env_for(flags: &[String], user_quarantine: bool) -> Vec<(OsString, OsString)> {
    let mapping = [
        ("--redzone-size=", ALLOC_ENV_REDZONE),
        ("--freelist-vol=", ALLOC_ENV_QUARANTINE),
        ("--freelist-big-blocks=", ALLOC_ENV_QUARANTINE_BIG),
    ];
    let mut env = Vec::new();
    for (flag, var) in mapping {
        if var == ALLOC_ENV_QUARANTINE && user_quarantine {
            continue;
        }
        // Only a plain decimal number: valgrind rejects anything else itself.
        let value = flags
            .iter()
            .rev()
            .find_map(|f| f.strip_prefix(flag))
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
        if let Some(v) = value {
            env.push((OsString::from(var), OsString::from(v)));
        }
    }
    env
}

/// Everything needed to run one program under memcheck.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    /// The program and its arguments.
    pub command: Vec<OsString>,
    /// How valgrind runs.
    pub settings: MemcheckSettings,
    /// Directory for this run's XML files (created; should be empty and used by this run only).
    pub xml_dir: PathBuf,
    /// Extra environment variables for the client.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Where the program's output goes.
    pub output: Output,
}

/// The result of one [`run_under_memcheck`]: the record (exit status, timing, XML paths) with the
/// parsed logs of the started process and of every traced child.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    /// Exit status, timing, XML files and logs.
    pub record: ProcessRecord,
}

impl RunOutcome {
    /// The parsed logs (one per process that wrote XML).
    pub fn logs(&self) -> &[Log] {
        &self.record.logs
    }
}

/// Locates the valgrind executable: `explicit`, else [`ENV_VALGRIND_BIN`], else `valgrind` in `PATH`.
pub fn find_valgrind(explicit: Option<&Path>) -> Result<PathBuf, RunError> {
    let wanted: PathBuf = match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::var_os(ENV_VALGRIND_BIN)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("valgrind")),
    };
    if wanted.components().count() > 1 || wanted.is_absolute() {
        return if wanted.is_file() {
            Ok(wanted)
        } else {
            Err(RunError::ValgrindMissing(format!(
                "{} does not exist",
                wanted.display()
            )))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(&wanted);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(RunError::ValgrindMissing(format!(
        "no `{}` in PATH",
        wanted.display()
    )))
}

fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

/// The directory of the shipped suppression files: [`ENV_SUPP_DIR`] when set, else the copy
/// embedded in this binary, written out to its cache directory ([`super::shipped`]).
pub fn find_supp_dir() -> Result<PathBuf, RunError> {
    if let Some(dir) = std::env::var_os(ENV_SUPP_DIR).filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.is_dir() {
            Ok(dir)
        } else {
            Err(RunError::SuppDirMissing(dir.display().to_string()))
        };
    }
    shipped::supp_dir().map_err(RunError::Cache)
}

/// The shipped suppression files valgrind gets unless `--no-default-supp`: every `*.supp` of
/// [`ENV_SUPP_DIR`] (sorted) when it is set, else the embedded default set (`supp/*.supp` of the
/// source tree this binary was built from, not `supp/programs/`).
pub fn default_supp_files() -> Result<Vec<PathBuf>, RunError> {
    let dir = find_supp_dir()?;
    if std::env::var_os(ENV_SUPP_DIR).is_some_and(|v| !v.is_empty()) {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| RunError::SuppDirMissing(format!("{}: {e}", dir.display())))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "supp") && p.is_file())
            .collect();
        files.sort();
        return Ok(files);
    }
    Ok(shipped::default_supp_names().map(|n| dir.join(n)).collect())
}

/// Locates `libpoolgrind.so`: [`ENV_PRELOAD_LIB`] when set; else the library embedded in this
/// binary, written out to its cache directory ([`super::shipped`]); only a build without one
/// (docs.rs) looks next to the executable and in `../release/` from it.
pub fn find_preload_lib() -> Result<PathBuf, RunError> {
    if let Some(p) = std::env::var_os(ENV_PRELOAD_LIB).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(RunError::PreloadMissing(format!(
                "{ENV_PRELOAD_LIB}={}",
                p.display()
            )))
        };
    }
    if let Some(written) = shipped::preload_lib() {
        return written.map_err(RunError::Cache);
    }
    let mut tried = Vec::new();
    if let Some(dir) = exe_dir() {
        for c in [
            dir.join("libpoolgrind.so"),
            dir.join("../release/libpoolgrind.so"),
            dir.join("../../release/libpoolgrind.so"),
        ] {
            if c.is_file() {
                return Ok(c);
            }
            tried.push(c.display().to_string());
        }
    }
    Err(RunError::PreloadMissing(tried.join(", ")))
}

impl RunConfig {
    /// valgrind's arguments (without the executable and without the client command).
    pub fn valgrind_args(&self) -> Result<Vec<OsString>, RunError> {
        let pattern = self.xml_dir.join("vg.%p.xml");
        let mut args: Vec<OsString> = DEFAULT_FLAGS
            .iter()
            .map(|f| {
                if f.contains("{xml}") {
                    let mut s = OsString::from("--xml-file=");
                    s.push(&pattern);
                    s
                } else {
                    OsString::from(f)
                }
            })
            .collect();
        let settings = &self.settings;
        if settings.trace_children {
            args.push("--trace-children=yes".into());
        }
        let mut supps = if settings.no_default_supp {
            Vec::new()
        } else {
            default_supp_files()?
        };
        for s in &settings.suppressions {
            if !s.is_file() {
                return Err(RunError::SuppMissing(s.display().to_string()));
            }
            // Absolute: with --trace-children valgrind re-reads the files in each child, whose
            // working directory may differ (a child of CPython's tests died on a relative path).
            supps.push(std::fs::canonicalize(s).unwrap_or_else(|_| s.clone()));
        }
        for s in supps {
            let mut a = OsString::from("--suppressions=");
            a.push(s);
            args.push(a);
        }
        args.extend(settings.extra_flags().into_iter().map(OsString::from));
        Ok(args)
    }
}

/// Runs `cfg.command` under memcheck and reads back its logs.
///
/// The program failing (non-zero exit, signal, timeout) is *not* an `Err`: it is recorded in the
/// outcome. `Err` means valgrind could not be run at all. Logs that are truncated or contain junk
/// are returned with their [`super::model::Completeness`]; an unreadable log becomes
/// `record.setup_error`.
pub fn run_under_memcheck(cfg: &RunConfig) -> Result<RunOutcome, RunError> {
    if cfg.command.is_empty() {
        return Err(RunError::NoCommand);
    }
    let valgrind = find_valgrind(cfg.settings.valgrind.as_deref())?;
    let preload = match (&cfg.settings.preload_lib, cfg.settings.preload) {
        (Some(lib), _) => Some(lib.clone()),
        (None, true) => Some(find_preload_lib()?),
        (None, false) => None,
    };
    std::fs::create_dir_all(&cfg.xml_dir).map_err(|source| RunError::XmlDir {
        path: cfg.xml_dir.display().to_string(),
        source,
    })?;
    remove_old_logs(&cfg.xml_dir);
    let mut cmd = Command::new(&valgrind);
    cmd.args(cfg.valgrind_args()?);
    cmd.args(&cfg.command);
    if let Some(dir) = &cfg.cwd {
        cmd.current_dir(dir);
    }
    for (k, v) in cfg
        .settings
        .allocator_env()
        .into_iter()
        .chain(cfg.env.clone())
    {
        cmd.env(k, v);
    }
    if let Some(lib) = &preload {
        let mut value = OsString::from(lib.as_os_str());
        if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
            value.push(":");
            value.push(old);
        }
        cmd.env("LD_PRELOAD", value);
    }
    match &cfg.output {
        Output::Inherit => {}
        Output::Null => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        Output::File(path) => {
            let file = std::fs::File::create(path).map_err(|source| RunError::XmlDir {
                path: path.display().to_string(),
                source,
            })?;
            let err = file.try_clone().map_err(|source| RunError::XmlDir {
                path: path.display().to_string(),
                source,
            })?;
            cmd.stdout(file).stderr(err);
        }
    }
    let timeout = cfg.settings.timeout();
    if timeout.is_some() {
        // Its own process group, so a timeout can stop traced children too.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| RunError::Spawn {
        valgrind: valgrind.display().to_string(),
        source,
    })?;
    let pid = child.id();
    let (status, timed_out) = wait_with_timeout(&mut child, timeout)?;
    let duration = started.elapsed();

    let mut record = ProcessRecord {
        argv: cfg
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        pid: Some(pid),
        timed_out,
        duration_ms: Some(duration.as_millis() as u64),
        ..ProcessRecord::default()
    };
    {
        use std::os::unix::process::ExitStatusExt;
        record.exit_code = status.code();
        record.signal = status.signal();
    }
    read_logs(&cfg.xml_dir, &mut record);
    Ok(RunOutcome { record })
}

/// Removes `vg.*.xml` left in `dir` by an earlier run (a reused `--keep-xml` directory), so they
/// are not read as this run's logs.
fn remove_old_logs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let is_log = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("vg.") && n.ends_with(".xml"));
        if is_log {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Reads every `vg.*.xml` in `dir` into `record` (sorted by pid so the order is stable).
pub fn read_logs(dir: &Path, record: &mut ProcessRecord) {
    let mut files: Vec<(u64, PathBuf)> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?.to_string();
                let pid = name
                    .strip_prefix("vg.")?
                    .strip_suffix(".xml")?
                    .parse()
                    .ok()?;
                Some((pid, p))
            })
            .collect(),
        Err(e) => {
            record.setup_error = Some(format!("cannot read XML directory {}: {e}", dir.display()));
            return;
        }
    };
    files.sort();
    let mut read = Vec::new();
    for (_, path) in files {
        match xml::parse_file(&path) {
            Ok(log) => read.push((path, log)),
            Err(e) => record.setup_error = Some(e.to_string()),
        }
    }
    // Parents before their children: process ids wrap around (pid_max), so a child's id may be
    // smaller than its parent's. Order by depth in the traced process tree, then by id.
    let parent: std::collections::HashMap<u32, u32> = read
        .iter()
        .filter_map(|(_, l)| Some((l.pid?, l.ppid?)))
        .collect();
    let depth = |log: &Log| {
        let mut d = 0;
        let mut pid = log.pid;
        while let Some(pp) = pid.and_then(|p| parent.get(&p).copied()) {
            if !parent.contains_key(&pp) || d > parent.len() {
                break;
            }
            d += 1;
            pid = Some(pp);
        }
        d
    };
    read.sort_by_key(|(_, l)| (depth(l), l.pid));
    for (path, log) in read {
        record.xml_files.push(path.display().to_string());
        record.logs.push(log);
    }
}

fn wait_with_timeout(
    child: &mut std::process::Child,
    timeout: Option<Duration>,
) -> Result<(ExitStatus, bool), RunError> {
    let Some(limit) = timeout else {
        return child.wait().map(|s| (s, false)).map_err(RunError::Wait);
    };
    let start = Instant::now();
    let mut signalled: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait().map_err(RunError::Wait)? {
            return Ok((status, signalled.is_some()));
        }
        let now = Instant::now();
        match signalled {
            None if now.duration_since(start) >= limit => {
                // SIGTERM first: valgrind then reports the fatal signal and finishes its log.
                kill_group(child.id(), libc::SIGTERM);
                signalled = Some(now);
            }
            Some(at) if now.duration_since(at) >= Duration::from_secs(5) => {
                kill_group(child.id(), libc::SIGKILL);
                let status = child.wait().map_err(RunError::Wait)?;
                return Ok((status, true));
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill_group(pid: u32, signal: i32) {
    let Ok(pgid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid addresses the process
    // group we created for this child with `process_group(0)` (its id equals the child's pid).
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// A fresh, empty directory under the system temp dir for one run's XML
/// (`poolgrind-<pid>-<n>`); the caller removes it.
pub fn temp_xml_dir(label: &str) -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "poolgrind-{label}-{}-{n}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    /// issue 10 §5: the CLI's variables and the allocator's options share the `POOLGRIND_`
    /// namespace; no name may mean two things (`POOLGRIND_VALGRIND` was both the allocator's
    /// `auto|off` and the CLI's valgrind path).
    #[test]
    fn cli_env_names_are_not_allocator_options() {
        let allocator: Vec<&str> = crate::alloc::config::OPTIONS
            .iter()
            .map(|o| o.env.to_str().unwrap())
            .collect();
        assert!(allocator.contains(&"POOLGRIND_VALGRIND"));
        for name in super::CLI_ENV {
            assert!(
                !allocator.contains(name),
                "{name} is both a CLI variable and an allocator option"
            );
            assert!(name.starts_with("POOLGRIND_"), "{name}");
        }
    }

    /// issue 14: memcheck options the allocator mirrors become its environment; the last value
    /// wins (as in valgrind); a user's `POOLGRIND_QUARANTINE` wins over `--freelist-vol`.
    #[test]
    fn memcheck_options_become_allocator_environment() {
        let flags: Vec<String> = [
            "--redzone-size=32",
            "--track-origins=yes",
            "--redzone-size=64",
            "--freelist-vol=1000",
            "--freelist-big-blocks=bogus",
        ]
        .map(String::from)
        .to_vec();
        let env = |user: bool| -> Vec<(String, String)> {
            super::allocator_env_for(&flags, user)
                .into_iter()
                .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
                .collect()
        };
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            env(false),
            [
                pair("POOLGRIND_REDZONE", "64"),
                pair("POOLGRIND_QUARANTINE", "1000")
            ]
        );
        assert_eq!(env(true), [pair("POOLGRIND_REDZONE", "64")]);
        assert!(super::allocator_env_for(&[], false).is_empty());
    }

    /// Program-specific files (`supp/programs/`, CPython's) are not loaded for every program:
    /// `--report-unused-supp` on a Rust project would otherwise list their entries.
    #[test]
    fn default_suppressions_exclude_program_specific_files() {
        let files = super::default_supp_files().unwrap();
        assert!(
            !files.is_empty(),
            "the shipped suppression files are written out"
        );
        for f in &files {
            assert!(
                f.parent().and_then(|d| d.file_name()) == Some("supp".as_ref()),
                "{} is not directly in supp/",
                f.display()
            );
        }
        assert!(files.iter().all(|f| !f.ends_with("python3.supp")));
        assert!(super::find_supp_dir()
            .unwrap()
            .join("programs/python3.supp")
            .is_file());
    }
}
