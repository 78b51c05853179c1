//! The subcommands, as glue between the arguments and `crate::check`.

use std::path::PathBuf;

use anyhow::Context as _;

use super::args::{CargoArgs, Cli, Command, MemcheckArgs, ReportArgs, RunArgs, SelectArgs};
use super::emit::{emit, policy};
use crate::check::batch::{self, BatchOptions, Job};
use crate::check::cargo::{self, ChildConfig};
use crate::check::exit;
use crate::check::report::json;
use crate::check::results::{ProcessRecord, Results};
use crate::check::run::{self, find_preload_lib, RunConfig};
use crate::check::select::{Partition, SkipList};
use crate::check::xml;

/// Runs the parsed command line; `Err` is a setup error (exit 3).
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
                find_preload_lib()?
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
        skip.add(p, None)?;
    }
    for f in &args.skip_file {
        skip.add_file(f)?;
    }
    let partition = args.partition.as_deref().map(str::parse).transpose()?;
    Ok((skip, partition))
}

fn base_config(m: &MemcheckArgs) -> anyhow::Result<RunConfig> {
    Ok(RunConfig {
        valgrind: m.valgrind.clone(),
        suppressions: m.suppressions.clone(),
        default_supp: !m.no_default_supp,
        trace_children: m.trace_children,
        vg_args: m.vg_args.clone(),
        preload: if m.preload {
            Some(find_preload_lib()?)
        } else {
            None
        },
        timeout: m.timeout.map(std::time::Duration::from_secs_f64),
        ..RunConfig::default()
    })
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
    let policy = policy(&args.policy)?;
    let (skip, partition) = selection(&args.select)?;
    let base = base_config(&args.memcheck)?;
    let jobs: Vec<Job> = match &args.batch {
        Some(file) => batch::read_batch_file(file, &args.command)
            .with_context(|| format!("cannot read batch file {}", file.display()))?,
        None if args.command.is_empty() => {
            anyhow::bail!(
                "no command given: poolgrind run [OPTIONS] -- CMD [ARGS…] (or --batch FILE)"
            )
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
    let root = XmlRoot::new(args.memcheck.keep_xml.as_ref(), "run")?;
    let opts = BatchOptions {
        jobs: args.jobs,
        skip,
        partition,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        xml_root: root.path.clone(),
    };
    let mut records = batch::run_batch(&base, &jobs, &opts)?;
    forget_temp_paths(&mut records, &root);
    if args.report_unused_supp {
        crate::supp::cli::report_unused_for_run(&base, records.iter().flat_map(|r| &r.logs));
    }
    let results = Results::build(&records, &policy);
    emit(&results, &args.output, &args.policy)
}

fn cargo_cmd(args: CargoArgs) -> anyhow::Result<i32> {
    let policy = policy(&args.policy)?;
    let (skip, partition) = selection(&args.select)?;
    let base = base_config(&args.memcheck)?;
    let root = XmlRoot::new(args.memcheck.keep_xml.as_ref(), "cargo")?;
    let cfg = ChildConfig {
        results_dir: root.path.clone(),
        valgrind: base.valgrind.clone(),
        suppressions: base
            .suppressions
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            .collect(),
        default_supp: base.default_supp,
        trace_children: base.trace_children,
        vg_args: base.vg_args.clone(),
        preload: base.preload.clone(),
        timeout_secs: args.memcheck.timeout,
        skip: skip.patterns(),
        partition,
    };
    let mut outcome = cargo::run_cargo(&args.cargo_args, &cfg)?;
    forget_temp_paths(&mut outcome.records, &root);
    if outcome.records.is_empty() {
        let status = outcome
            .cargo_status
            .map(|c| c.to_string())
            .unwrap_or_else(|| "a signal".into());
        eprintln!(
            "poolgrind: cargo exited with status {status} without running any program under memcheck \
             (did the build fail, or did the command run no binaries?)"
        );
        return Ok(if outcome.cargo_status == Some(0) {
            exit::SUCCESS
        } else {
            exit::VALGRIND_FAILED
        });
    }
    if args.report_unused_supp {
        let logs = outcome.records.iter().flat_map(|r| r.logs.iter());
        crate::supp::cli::report_unused_for_run(&base, logs);
    }
    let results = Results::build(&outcome.records, &policy);
    emit(&results, &args.output, &args.policy)
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
            parts.push(part);
        }
        Results::merge(parts, &policy)
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
