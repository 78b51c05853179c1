//! `poolgrind cargo …`: every binary cargo runs goes through memcheck, via cargo's target runner.
//!
//! The parent sets `CARGO_TARGET_<TRIPLE>_RUNNER="<this exe> run --child-mode"` and
//! [`ENV_CHILD_CONFIG`] (the run options as JSON, including a results directory), then runs cargo
//! (or `cargo nextest`). Cargo starts each test binary as `<runner> <binary> <args>`; the child
//! mode ([`child_main`]) runs it under memcheck, writes its XML and a `record-*.json` into the
//! results directory, and exits with the program's own status, unchanged, so cargo and nextest
//! report test failures as usual. Afterwards the parent reads every record ([`collect_records`]) and reports
//! all binaries together.
//!
//! - nextest runs one process per test (`<binary> --exact <name> --nocapture`): every error is
//!   attributed to its test through the argv. Its listing calls (`--list`) run natively.
//! - plain `cargo test` runs one process per test binary; errors are attributed per binary, and
//!   per test where the stack passes through a test function
//!   ([`super::frames::test_name_from_stack`]).
//! - Doctests: rustdoc (Rust 1.95) runs each doctest binary (`rust_out`) through the same
//!   runner, so they are checked too. A `should_panic` doctest exits 101 by design: the child
//!   hands every status back unchanged, records are marked `exit_judged_by_cargo`, and the
//!   parent takes the program verdict from cargo's own exit status
//!   ([`super::results::Results::with_cargo_exit_code`]).
//! - Skip patterns and `--partition` are applied in the child to the key `binary` or
//!   `binary::test`; a skipped program does not run at all and exits 0.
//! - Cargo splits the runner string on whitespace: the poolgrind executable's path must not
//!   contain spaces.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::batch::skip_reason;
use super::frames::binary_display_name;
use super::results::{test_from_argv, ProcessRecord};
use super::run::{read_logs, run_under_memcheck, MemcheckSettings, RunConfig, RunError};
use super::select::{Partition, SkipList};

/// Environment variable carrying [`ChildConfig`] as JSON to `run --child-mode`.
pub const ENV_CHILD_CONFIG: &str = "POOLGRIND_CHILD_CONFIG";

/// The options a child-mode runner needs (serialised into [`ENV_CHILD_CONFIG`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChildConfig {
    /// Directory shared by all children: XML directories and `record-*.json` files.
    pub results_dir: PathBuf,
    /// How valgrind runs (resolved by the parent: absolute paths).
    pub settings: MemcheckSettings,
    /// Skip patterns.
    pub skip: Vec<String>,
    /// CI shard.
    pub partition: Option<Partition>,
}

impl ChildConfig {
    /// The run configuration for one child command.
    pub fn run_config(&self, command: Vec<OsString>, xml_dir: PathBuf) -> RunConfig {
        RunConfig {
            command,
            settings: self.settings.clone(),
            xml_dir,
            ..RunConfig::default()
        }
    }
}

/// Problems of the cargo mode.
#[derive(Debug, thiserror::Error)]
pub enum CargoError {
    /// valgrind missing and the like.
    #[error(transparent)]
    Run(#[from] RunError),
    /// `run --child-mode` without its configuration.
    #[error("--child-mode is internal to `poolgrind cargo` ({ENV_CHILD_CONFIG} is not set or not valid: {0})")]
    NoChildConfig(String),
    /// The results directory cannot be used.
    #[error("cannot use results directory {path}: {source}")]
    ResultsDir {
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// cargo (or rustc, for the host triple) could not be started.
    #[error("cannot run {what}: {source}")]
    Spawn {
        /// Which program.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The runner path contains whitespace, which cargo would split.
    #[error("the poolgrind executable's path contains whitespace ({0}); cargo cannot use it as a runner")]
    RunnerPath(String),
}

/// The status handed back to cargo: the program's own, unchanged (cargo and nextest judge it;
/// a `should_panic` doctest exits 101 on purpose). A program killed by a signal gets the shell's
/// `128 + signal`; one that never ran (a setup error) gets [`super::exit::SETUP_ERROR`], so cargo
/// does not count it as passed.
fn exit_code_of(record: &ProcessRecord) -> i32 {
    match (record.exit_code, record.signal) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => super::exit::SETUP_ERROR,
    }
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// The hidden `run --child-mode` entry point; returns the program's own exit status.
pub fn child_main(command: Vec<OsString>) -> Result<i32, CargoError> {
    let raw =
        std::env::var(ENV_CHILD_CONFIG).map_err(|e| CargoError::NoChildConfig(e.to_string()))?;
    let cfg: ChildConfig =
        serde_json::from_str(&raw).map_err(|e| CargoError::NoChildConfig(e.to_string()))?;
    let argv: Vec<String> = command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let Some(program) = command.first() else {
        return Err(RunError::NoCommand.into());
    };

    // Listing (nextest, `cargo test -- --list`) runs natively: nothing to check, and fast.
    if argv.iter().skip(1).any(|a| a == "--list") {
        let status = Command::new(program)
            .args(&command[1..])
            .status()
            .map_err(|source| CargoError::Spawn {
                what: argv[0].clone(),
                source,
            })?;
        use std::os::unix::process::ExitStatusExt;
        return Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)));
    }

    let binary = binary_display_name(&argv[0]);
    let test = test_from_argv(&argv);
    let key = match &test {
        Some(t) => format!("{binary}::{t}"),
        None => binary.clone(),
    };
    let mut skip = SkipList::default();
    for p in &cfg.skip {
        // Patterns were validated by the parent.
        let _ = skip.add(p, None);
    }
    let unique = unique_suffix();
    let record_path = cfg.results_dir.join(format!("record-{unique}.json"));
    let record =
        if let Some(reason) = skip_reason(&key, test.as_deref(), &skip, cfg.partition.as_ref()) {
            ProcessRecord {
                argv,
                test,
                skipped: true,
                setup_error: Some(reason),
                ..ProcessRecord::default()
            }
        } else {
            let xml_dir = cfg.results_dir.join(format!("xml-{binary}-{unique}"));
            let run = cfg.run_config(command.clone(), xml_dir);
            match run_under_memcheck(&run) {
                Ok(outcome) => ProcessRecord {
                    test,
                    ..outcome.record
                },
                Err(e) => {
                    // The program did not run: the record says so (a setup error, no exit
                    // status), and cargo is told with a non-zero status that the binary failed.
                    eprintln!("poolgrind: setup error: {e}");
                    ProcessRecord {
                        argv,
                        test,
                        setup_error: Some(e.to_string()),
                        ..ProcessRecord::default()
                    }
                }
            }
        };
    let record = ProcessRecord {
        exit_judged_by_cargo: true,
        ..record
    };
    let json = serde_json::to_string(&record).unwrap_or_default();
    std::fs::write(&record_path, json).map_err(|source| CargoError::ResultsDir {
        path: record_path.display().to_string(),
        source,
    })?;
    Ok(if record.skipped {
        0
    } else {
        exit_code_of(&record)
    })
}

/// Reads every child record in `dir`, re-reading their XML logs; sorted by binary and test.
pub fn collect_records(dir: &Path) -> Result<Vec<ProcessRecord>, CargoError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CargoError::ResultsDir {
        path: dir.display().to_string(),
        source,
    })?;
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_record = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("record-") && n.ends_with(".json"));
        if !is_record {
            continue;
        }
        let mut record: ProcessRecord = match std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
        {
            Some(r) => r,
            None => ProcessRecord {
                setup_error: Some(format!("unreadable child record {}", path.display())),
                ..ProcessRecord::default()
            },
        };
        if let Some(first) = record.xml_files.first() {
            if let Some(xml_dir) = Path::new(first).parent().map(Path::to_path_buf) {
                record.xml_files.clear();
                read_logs(&xml_dir, &mut record);
            }
        }
        records.push(record);
    }
    records.sort_by(|a, b| {
        let ka = (
            a.argv.first().map(|x| binary_display_name(x)),
            &a.test,
            &a.argv,
        );
        let kb = (
            b.argv.first().map(|x| binary_display_name(x)),
            &b.test,
            &b.argv,
        );
        ka.cmp(&kb)
    });
    Ok(records)
}

/// Removes child records and XML directories of an earlier run (a reused `--keep-xml`
/// directory); nothing else in the directory is touched.
fn remove_old_records(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if name.starts_with("record-") && name.ends_with(".json") {
            let _ = std::fs::remove_file(&path);
        } else if name.starts_with("xml-") && path.is_dir() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// The host target triple, from `rustc -vV` (`$RUSTC` honoured).
pub fn host_triple() -> Result<String, CargoError> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .arg("-vV")
        .output()
        .map_err(|source| CargoError::Spawn {
            what: rustc.to_string_lossy().into_owned(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or("x86_64-unknown-linux-gnu")
        .trim()
        .to_string())
}

/// The triple cargo builds for: `--target X` among the args, else the host.
pub fn target_triple(cargo_args: &[String]) -> Result<String, CargoError> {
    let mut it = cargo_args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--target" {
            if let Some(t) = it.next() {
                return Ok(t.clone());
            }
        }
        if let Some(t) = a.strip_prefix("--target=") {
            return Ok(t.to_string());
        }
    }
    host_triple()
}

/// The environment variable cargo reads the runner for `triple` from.
pub fn runner_env_var(triple: &str) -> String {
    let upper: String = triple
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("CARGO_TARGET_{upper}_RUNNER")
}

/// What `poolgrind cargo` ran.
#[derive(Debug, Clone, Default)]
pub struct CargoOutcome {
    /// One record per program cargo ran.
    pub records: Vec<ProcessRecord>,
    /// cargo's own exit status (`128 + signal` if a signal killed it).
    pub cargo_status: Option<i32>,
}

/// Runs `cargo <cargo_args>` with the memcheck runner; `cfg.results_dir` must exist.
///
/// The settings are [resolved](MemcheckSettings::resolve) first (valgrind found, absolute paths:
/// cargo runs each test binary in its package's directory).
pub fn run_cargo(cargo_args: &[String], cfg: &ChildConfig) -> Result<CargoOutcome, CargoError> {
    let mut cfg = cfg.clone();
    cfg.settings.resolve()?;
    std::fs::create_dir_all(&cfg.results_dir).map_err(|source| CargoError::ResultsDir {
        path: cfg.results_dir.display().to_string(),
        source,
    })?;
    remove_old_records(&cfg.results_dir);
    let exe = std::env::current_exe().map_err(|source| CargoError::Spawn {
        what: "poolgrind".into(),
        source,
    })?;
    let exe_str = exe.display().to_string();
    if exe_str.chars().any(char::is_whitespace) {
        return Err(CargoError::RunnerPath(exe_str));
    }
    let triple = target_triple(cargo_args)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(cargo_args);
    cmd.env(
        runner_env_var(&triple),
        format!("{exe_str} run --child-mode"),
    );
    cmd.env(
        ENV_CHILD_CONFIG,
        serde_json::to_string(&cfg).unwrap_or_default(),
    );
    let status = cmd.status().map_err(|source| CargoError::Spawn {
        what: cargo.to_string_lossy().into_owned(),
        source,
    })?;
    let records = collect_records(&cfg.results_dir)?;
    use std::os::unix::process::ExitStatusExt;
    Ok(CargoOutcome {
        records,
        cargo_status: status
            .code()
            .or_else(|| status.signal().map(|sig| 128 + sig)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_variable_names() {
        assert_eq!(
            runner_env_var("x86_64-unknown-linux-gnu"),
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER"
        );
        let args: Vec<String> = ["test", "--target", "aarch64-unknown-linux-gnu"]
            .map(String::from)
            .to_vec();
        assert_eq!(target_triple(&args).unwrap(), "aarch64-unknown-linux-gnu");
    }
}
