//! The subcommands, as glue between the arguments and `crate::check`.

use std::path::PathBuf;

use anyhow::Context as _;

use super::args::{CargoArgs, Cli, Command, ReportArgs, RunArgs, SelectArgs};
use super::emit::{emit, policy};
use crate::check::batch::{self, BatchOptions, Job};
use crate::check::cargo::{self, ChildConfig};
use crate::check::exit::{self, CliError};
use crate::check::report::json;
use crate::check::results::{ProcessRecord, Results};
use crate::check::run::{self, MemcheckSettings, RunConfig};
use crate::check::select::{Partition, SkipList};
use crate::check::xml;

/// Runs the parsed command line; `Err` is a setup error (exit 3) unless it is a
/// [`CliError::Usage`] (see [`exit::of_error`]).
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(args) if args.child_mode => {
            Ok(cargo::child_main(args.command).context("child mode")?)
        }
        Command::Run(args) => run_cmd(args),
        Command::Cargo(args) => cargo_cmd(args),
        Command::Report(args) => report_cmd(args),
        Command::Supp(cmd) => crate::supp::cli::run(cmd),
        Command::PreloadPath(args) => {
            let path = if args.supp_dir {
                run::find_supp_dir()?
            } else {
                run::find_preload_lib()?
            };
            println!("{}", path.display());
            Ok(exit::SUCCESS)
        }
    }
}

/// A directory for XML logs: `--keep-xml DIR`, or a temporary one removed on drop.
struct XmlRoot {
    path: PathBuf,
    temporary: bool,
}

impl XmlRoot {
    fn new(keep: Option<&PathBuf>, label: &str) -> anyhow::Result<XmlRoot> {
        match keep {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let path = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
                Ok(XmlRoot {
                    path,
                    temporary: false,
                })
            }
            None => Ok(XmlRoot {
                path: run::temp_xml_dir(label)?,
                temporary: true,
            }),
        }
    }
}

impl Drop for XmlRoot {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn selection(args: &SelectArgs) -> anyhow::Result<(SkipList, Option<Partition>)> {
    let mut skip = SkipList::default();
    for p in &args.skip {
        // Checked by clap already (a bad pattern on the command line is a usage error).
        skip.add(p, None)
            .map_err(|e| CliError::Usage(e.to_string()))?;
    }
    for f in &args.skip_file {
        skip.add_file(f)
            .map_err(|e| CliError::Input(e.to_string()))?;
    }
    Ok((skip, args.partition))
}

/// The settings of a run, checked before anything starts (valgrind, suppression files, preload).
fn resolved(settings: &MemcheckSettings) -> anyhow::Result<MemcheckSettings> {
    let mut s = settings.clone();
    s.resolve()?;
    Ok(s)
}

/// Forgets XML paths of a temporary directory that is about to disappear.
fn forget_temp_paths(records: &mut [ProcessRecord], root: &XmlRoot) {
    if root.temporary {
        for r in records {
            r.xml_files.clear();
        }
    }
}

fn run_cmd(args: RunArgs) -> anyhow::Result<i32> {
    let policy = policy(&args.check.policy)?;
    let (skip, partition) = selection(&args.check.select)?;
    let jobs: Vec<Job> = match &args.batch {
        Some(file) => batch::read_batch_file(file, &args.command).map_err(|e| {
            CliError::Input(format!("cannot read batch file {}: {e}", file.display()))
        })?,
        None if args.command.is_empty() => {
            return Err(CliError::Usage(
                "no command given: poolgrind run [OPTIONS] -- CMD [ARGS…] (or --batch FILE)".into(),
            )
            .into())
        }
        None => vec![Job {
            key: args
                .command
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            command: args.command.clone(),
        }],
    };
    let base = RunConfig {
        settings: resolved(&args.check.memcheck)?,
        ..RunConfig::default()
    };
    let root = XmlRoot::new(args.check.memcheck.keep_xml.as_ref(), "run")?;
    let opts = BatchOptions {
        jobs: args.jobs,
        skip,
        partition,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        xml_root: root.path.clone(),
    };
    let mut records = batch::run_batch(&base, &jobs, &opts)?;
    forget_temp_paths(&mut records, &root);
    if args.check.report_unused_supp {
        crate::supp::cli::report_unused_for_run(
            &base.settings,
            records.iter().flat_map(|r| &r.logs),
        );
    }
    let results = Results::build(&records, &policy);
    emit(&results, &args.check.output, &args.check.policy)
}

fn cargo_cmd(args: CargoArgs) -> anyhow::Result<i32> {
    let policy = policy(&args.check.policy)?;
    let (skip, partition) = selection(&args.check.select)?;
    let settings = resolved(&args.check.memcheck)?;
    let root = XmlRoot::new(args.check.memcheck.keep_xml.as_ref(), "cargo")?;
    let cfg = ChildConfig {
        results_dir: root.path.clone(),
        settings: settings.clone(),
        skip: skip.patterns(),
        partition,
    };
    let mut outcome = cargo::run_cargo(&args.cargo_args, &cfg)?;
    forget_temp_paths(&mut outcome.records, &root);
    let cargo_status = outcome.cargo_status.unwrap_or(exit::SETUP_ERROR);
    if outcome.records.is_empty() {
        eprintln!(
            "poolgrind: cargo exited with status {cargo_status} without running any program under \
             memcheck (did the build fail, or did the command run no binaries?)"
        );
        return Ok(if cargo_status == 0 {
            exit::SUCCESS
        } else {
            exit::SETUP_ERROR
        });
    }
    if args.check.report_unused_supp {
        let logs = outcome.records.iter().flat_map(|r| r.logs.iter());
        crate::supp::cli::report_unused_for_run(&settings, logs);
    }
    // The program verdict is cargo's: each child handed its status back unchanged, and cargo
    // (libtest, rustdoc, nextest) decided what a failure is (a `should_panic` doctest exits 101).
    let results = Results::build(&outcome.records, &policy).with_cargo_exit_code(cargo_status);
    emit(&results, &args.check.output, &args.check.policy)
}

fn report_cmd(args: ReportArgs) -> anyhow::Result<i32> {
    let policy = policy(&args.policy)?;
    let results = if args.merge {
        let mut parts = Vec::new();
        for f in &args.files {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            let part = json::parse(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{}:{}:{}: not poolgrind JSON results: {e}",
                    f.display(),
                    e.line(),
                    e.column()
                )
            })?;
            parts.push((f.display().to_string(), part));
        }
        let (results, notes) = Results::merge_named(parts, &policy);
        for note in notes {
            eprintln!("poolgrind: {note}");
        }
        results
    } else {
        let mut records = Vec::new();
        for f in &args.files {
            let log = xml::parse_file(f)?;
            records.push(ProcessRecord::from_saved_log(&f.display().to_string(), log));
        }
        Results::build(&records, &policy)
    };
    emit(&results, &args.output, &args.policy)
}
