//! `poolgrind supp …`: the suppression-file subcommands (wired into the CLI as `Command::Supp`).
//!
//! Exit codes (`crate::check::exit`, the same for every command): 0 success; 1
//! ([`exit::FINDINGS`]) the check asked for found something (`fmt --check`: a file is not in
//! canonical form; `check`: a file is invalid; `stale --fail`: unused entries); 3
//! ([`exit::SETUP_ERROR`]) an input file cannot be read, or (except for `check`, whose finding it
//! is) is malformed, with file:line messages; 64 a bad option value.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::check::exit;
use crate::check::model::Log;
use crate::check::run::{self, Output, RunConfig};
use crate::check::xml;

use super::entry::{LeakKind, SuppFile};
use super::format::format_file;
use super::gen::{generate, header_lines, GenOptions};
use super::merge::merge;
use super::parse::{parse_file, parse_leak_kinds};
use super::stale::{format_report, report, SavedCounts, StaleReport};

/// `poolgrind supp` subcommands.
#[derive(Debug, Subcommand)]
pub enum SuppCommand {
    /// Print suppression files in canonical form (stdout), or rewrite them (--write).
    ///
    /// Example: poolgrind supp fmt --check supp/*.supp
    Fmt {
        /// Files to format.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Rewrite the files in place.
        #[arg(short, long)]
        write: bool,
        /// Exit 1 if a file is not in canonical form (prints nothing else).
        #[arg(long, conflicts_with = "write")]
        check: bool,
    },
    /// Validate suppression files (file:line errors and warnings); --valgrind also asks valgrind.
    ///
    /// Example: poolgrind supp check --valgrind supp/*.supp
    Check {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also run `valgrind --suppressions=FILE true` and report what valgrind says; with
        /// =PATH, that valgrind (default: POOLGRIND_VALGRIND_BIN, else `valgrind` from PATH).
        #[arg(
            long,
            value_name = "PATH",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = ""
        )]
        valgrind: Option<String>,
        /// Treat warnings as errors.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Generate suppressions from valgrind XML logs (--from) or by running a command (-- CMD).
    ///
    /// One entry per distinct error, normalised to survive rebuilds (Rust symbol hashes and
    /// crate disambiguators become `*`, allocator and runtime frames are folded), named
    /// `Kind-function-hash`, sorted, with a header saying how to regenerate the file.
    ///
    /// Example: poolgrind supp gen --from target/vg/*.xml -o supp/mine.supp
    /// Example: poolgrind supp gen -o supp/rust-std.supp -- ./target/debug/deps/my_test-1234
    Gen(GenArgs),
    /// Merge suppression files: union, duplicates and entries covered by a more general one
    /// dropped, names made unique.
    ///
    /// Example: poolgrind supp merge supp/a.supp supp/b.supp -o supp/all.supp
    Merge {
        /// Input files, in priority order (the first of equivalent entries is kept).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Command to write into the header as the way to regenerate the file.
        #[arg(long, value_name = "CMD")]
        regenerate: Option<String>,
    },
    /// List suppressions that never fired, summing `<suppcounts>` over every log given (all
    /// processes, all CI shards).
    ///
    /// LOGS are valgrind XML files (or directories of them, searched recursively), or JSON counts
    /// saved with --save-counts (one per shard).
    ///
    /// Example: poolgrind supp stale --supp supp/mine.supp shard*/vg-*.xml
    Stale {
        /// Suppression files whose entries are checked (repeatable).
        #[arg(long = "supp", value_name = "FILE", required = true)]
        supp: Vec<PathBuf>,
        /// Valgrind XML logs (files or directories) and/or saved counts (.json).
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// Also write the summed counts as JSON (to merge shards later).
        #[arg(long, value_name = "FILE")]
        save_counts: Option<PathBuf>,
        /// Exit 1 if any entry is unused.
        #[arg(long)]
        fail: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Options of `supp gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Valgrind XML logs to read, or directories of them (run with --gen-suppressions=all, as
    /// `poolgrind run` does).
    #[arg(long = "from", value_name = "LOG", num_args = 1.., conflicts_with = "command")]
    pub from: Vec<PathBuf>,
    /// Output file (default: stdout).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Leak kinds to write entries for: all, or a list of definite,indirect,possible,reachable.
    #[arg(long, default_value = "all", value_parser = leak_kinds_value)]
    pub leak_kinds: String,
    /// Most concrete frames per entry.
    #[arg(long, default_value_t = 12)]
    pub max_frames: usize,
    /// Command to write into the header (default: this command line).
    #[arg(long, value_name = "CMD")]
    pub regenerate: Option<String>,
    /// Only the runtime's own errors (for a std/runtime suppression file): frames are cut at the
    /// first user frame, errors in user code are skipped.
    #[arg(long)]
    pub runtime_only: bool,
    /// Only errors inside an allocator (for `supp/poolgrind.supp`): an entry is the run of
    /// allocator frames from the top of the stack (at most --max-frames), so it matches whatever
    /// program called the allocator; errors with no allocator frame on top are skipped.
    #[arg(long, conflicts_with = "runtime_only")]
    pub allocator_only: bool,
    /// With -- CMD: extra suppression files for the run (errors they suppress get no entry).
    #[arg(long = "suppressions", value_name = "FILE")]
    pub suppressions: Vec<PathBuf>,
    /// With -- CMD: do not use the shipped supp/*.supp files for the run.
    #[arg(long)]
    pub no_default_supp: bool,
    /// With -- CMD: follow child processes.
    #[arg(long)]
    pub trace_children: bool,
    /// The command to run under memcheck.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Runs one `supp` subcommand; returns the exit code.
pub fn run(cmd: SuppCommand) -> anyhow::Result<i32> {
    match cmd {
        SuppCommand::Fmt {
            files,
            write,
            check,
        } => fmt_cmd(&files, write, check),
        SuppCommand::Check {
            files,
            valgrind,
            deny_warnings,
        } => check_cmd(&files, valgrind.as_deref(), deny_warnings),
        SuppCommand::Gen(args) => gen_cmd(args),
        SuppCommand::Merge {
            inputs,
            output,
            regenerate,
        } => merge_cmd(&inputs, output.as_deref(), regenerate),
        SuppCommand::Stale {
            supp,
            logs,
            save_counts,
            fail,
            json,
        } => stale_cmd(&supp, &logs, save_counts.as_deref(), fail, json),
    }
}

/// Parses every file, printing all errors; `None` if any failed.
fn load_all(files: &[PathBuf]) -> Option<Vec<SuppFile>> {
    let mut out = Vec::new();
    let mut ok = true;
    for f in files {
        match parse_file(f) {
            Ok(s) => {
                for w in &s.warnings {
                    eprintln!("{w} (warning)");
                }
                out.push(s);
            }
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn write_output(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match path {
        None => {
            print!("{text}");
            Ok(())
        }
        Some(p) => {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let tmp = p.with_extension("supp.tmp");
            std::fs::write(&tmp, text)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, p).with_context(|| format!("cannot write {}", p.display()))?;
            Ok(())
        }
    }
}

fn fmt_cmd(files: &[PathBuf], write: bool, check: bool) -> anyhow::Result<i32> {
    let Some(parsed) = load_all(files) else {
        return Ok(exit::SETUP_ERROR);
    };
    let mut differs = false;
    for (path, f) in files.iter().zip(&parsed) {
        let text = format_file(f);
        let old = std::fs::read_to_string(path).unwrap_or_default();
        if check {
            if old != text {
                eprintln!(
                    "{}: not in canonical form (run `poolgrind supp fmt -w`)",
                    path.display()
                );
                differs = true;
            }
        } else if write {
            if old != text {
                write_output(Some(path), &text)?;
            }
        } else {
            print!("{text}");
        }
    }
    Ok(if differs {
        exit::FINDINGS
    } else {
        exit::SUCCESS
    })
}

fn check_cmd(
    files: &[PathBuf],
    valgrind: Option<&str>,
    deny_warnings: bool,
) -> anyhow::Result<i32> {
    let mut bad = false;
    // `--valgrind` alone: the default valgrind; `--valgrind=PATH`: that one.
    let vg = match valgrind {
        Some("") => Some(run::find_valgrind(None)?),
        Some(p) => Some(run::find_valgrind(Some(Path::new(p)))?),
        None => None,
    };
    for f in files {
        // A file that cannot be read is a setup error, as in every command; a malformed one is
        // this command's finding.
        let bytes = std::fs::read(f).map_err(|e| {
            exit::CliError::Input(format!("{}: cannot read the file: {e}", f.display()))
        })?;
        match super::parse::parse_bytes(&f.display().to_string(), &bytes) {
            Ok(s) => {
                for w in &s.warnings {
                    eprintln!("{w} (warning)");
                }
                bad |= deny_warnings && !s.warnings.is_empty();
                if let Some(vg) = &vg {
                    if let Err(e) = super::check::valgrind_accepts(vg, &[f.as_path()]) {
                        eprintln!("{}: {e}", f.display());
                        bad = true;
                        continue;
                    }
                }
                eprintln!("{}: ok, {} entries", f.display(), s.entries.len());
            }
            Err(e) => {
                eprintln!("{e}");
                bad = true;
            }
        }
    }
    Ok(if bad { exit::FINDINGS } else { exit::SUCCESS })
}

/// This command line, for the header (`poolgrind` plus the arguments, shell-quoted).
fn this_command_line() -> String {
    let mut parts = vec!["poolgrind".to_string()];
    parts.extend(std::env::args().skip(1).map(|a| shell_quote(&a)));
    parts.join(" ")
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `--leak-kinds` checked while parsing the command line (a bad value is a usage error, 64).
fn leak_kinds_value(value: &str) -> Result<String, String> {
    parse_leak_kinds(value)
        .map(|_| value.to_string())
        .map_err(|e| e.to_string())
}

fn leak_kinds(value: &str) -> anyhow::Result<Vec<LeakKind>> {
    let k = parse_leak_kinds(value).map_err(|e| anyhow::anyhow!("--leak-kinds: {e}"))?;
    Ok(k.kinds().into_iter().collect())
}

fn gen_cmd(args: GenArgs) -> anyhow::Result<i32> {
    let opts = GenOptions {
        regenerate: Some(args.regenerate.clone().unwrap_or_else(this_command_line)),
        leak_kinds: leak_kinds(&args.leak_kinds)?,
        max_frames: args.max_frames,
        header: Vec::new(),
        runtime_only: args.runtime_only,
        allocator_only: args.allocator_only,
    };
    let logs: Vec<Log> = if !args.command.is_empty() {
        let dir = run::temp_xml_dir("supp-gen").context("cannot create a directory for XML")?;
        let cfg = RunConfig {
            command: args.command.iter().map(Into::into).collect(),
            settings: run::MemcheckSettings {
                suppressions: args.suppressions.clone(),
                no_default_supp: args.no_default_supp,
                trace_children: args.trace_children,
                ..run::MemcheckSettings::default()
            },
            xml_dir: dir.clone(),
            output: Output::Inherit,
            ..RunConfig::default()
        };
        let outcome = run::run_under_memcheck(&cfg)?;
        let logs = outcome.logs().to_vec();
        let _ = std::fs::remove_dir_all(&dir);
        logs
    } else if !args.from.is_empty() {
        let mut logs = Vec::new();
        for f in &expand_dirs(&args.from)? {
            logs.push(xml::parse_file(f).with_context(|| format!("cannot read {}", f.display()))?);
        }
        logs
    } else {
        anyhow::bail!("nothing to generate from: give --from LOG.xml… or -- CMD");
    };
    for (i, l) in logs.iter().enumerate() {
        for n in &l.notes {
            eprintln!("poolgrind: log {}: {n}", i + 1);
        }
    }
    let (file, stats) = generate(&logs, &opts);
    write_output(args.output.as_deref(), &format_file(&file))?;
    eprintln!(
        "poolgrind: {} entries from {} errors in {} log(s){}{}{}{}",
        stats.entries,
        stats.errors,
        logs.len(),
        if stats.unsuppressible > 0 {
            format!(
                "; {} errors cannot be suppressed (no stack: descriptors inherited from the \
                 parent process)",
                stats.unsuppressible
            )
        } else {
            String::new()
        },
        if stats.without_suppression > 0 {
            format!(
                "; {} errors had no generated suppression (run valgrind with --gen-suppressions=all)",
                stats.without_suppression
            )
        } else {
            String::new()
        },
        if stats.skipped_leak_kind > 0 {
            format!(
                "; {} leaks of unselected kinds skipped",
                stats.skipped_leak_kind
            )
        } else {
            String::new()
        },
        args.output
            .as_ref()
            .map(|p| format!(" → {}", p.display()))
            .unwrap_or_default(),
    );
    Ok(exit::SUCCESS)
}

fn merge_cmd(
    inputs: &[PathBuf],
    output: Option<&Path>,
    regenerate: Option<String>,
) -> anyhow::Result<i32> {
    let Some(files) = load_all(inputs) else {
        return Ok(exit::SETUP_ERROR);
    };
    let mut header = header_lines(Some(&regenerate.unwrap_or_else(this_command_line)), &[]);
    header[0] = "Merged by `poolgrind supp merge`: do not edit by hand; regenerate instead.".into();
    let (merged, stats) = merge(&files, header);
    write_output(output, &format_file(&merged))?;
    for (d, by) in &stats.duplicates {
        eprintln!("duplicate: {d} (same as {by})");
    }
    for (d, by) in &stats.subsumed {
        eprintln!("covered: {d} (by {by})");
    }
    for (old, new) in &stats.renamed {
        eprintln!("renamed: {old} → {new}");
    }
    eprintln!(
        "poolgrind: {} entries in, {} out ({} duplicates, {} covered by more general entries)",
        stats.entries_in,
        stats.entries_out,
        stats.duplicates.len(),
        stats.subsumed.len()
    );
    Ok(exit::SUCCESS)
}

/// Log arguments with every directory replaced by the `.xml` files under it (recursively,
/// sorted): `--keep-xml DIR` writes one file per process in nested directories, and a CI job
/// should not have to glob them (a shell's `**` needs `globstar`, and a long list can split).
/// A directory without any log is an error, not an empty input.
pub fn expand_dirs(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for e in entries {
            let p = e
                .with_context(|| format!("cannot read {}", dir.display()))?
                .path();
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().is_some_and(|x| x == "xml") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            if found.is_empty() {
                anyhow::bail!(
                    "{}: a directory with no valgrind XML log in it",
                    p.display()
                );
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Reads counts from XML logs (files, or directories of them) and saved-count JSON files.
pub fn load_counts(paths: &[PathBuf]) -> anyhow::Result<SavedCounts> {
    let mut total = SavedCounts {
        schema: SavedCounts::SCHEMA.to_string(),
        ..SavedCounts::default()
    };
    for p in &expand_dirs(paths)? {
        let is_json = p.extension().is_some_and(|e| e == "json");
        if is_json {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let c: SavedCounts = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{}: not a counts file written by `supp stale --save-counts` ({e}); \
                     give the XML logs instead",
                    p.display()
                )
            })?;
            if c.schema != SavedCounts::SCHEMA {
                anyhow::bail!(
                    "{}: schema `{}` is not `{}`",
                    p.display(),
                    c.schema,
                    SavedCounts::SCHEMA
                );
            }
            total.add(&c);
        } else {
            let log = xml::parse_file(p).with_context(|| format!("cannot read {}", p.display()))?;
            total.add(&SavedCounts::from_logs([&log]));
        }
    }
    Ok(total)
}

/// The stale report for suppression files at `paths` against `logs` (for
/// `poolgrind run --report-unused-supp`: pass the run's suppression files and logs, print
/// [`format_report`] of the result).
pub fn unused_report(paths: &[PathBuf], logs: &[Log]) -> anyhow::Result<StaleReport> {
    let mut files = Vec::new();
    for p in paths {
        files.push(parse_file(p).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    Ok(report(&files, &SavedCounts::from_logs(logs)))
}

fn stale_cmd(
    supp: &[PathBuf],
    logs: &[PathBuf],
    save: Option<&Path>,
    fail: bool,
    json: bool,
) -> anyhow::Result<i32> {
    let Some(files) = load_all(supp) else {
        return Ok(exit::SETUP_ERROR);
    };
    let counts = load_counts(logs)?;
    if let Some(p) = save {
        std::fs::write(p, serde_json::to_string_pretty(&counts)? + "\n")
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    let r = report(&files, &counts);
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", format_report(&r));
    }
    Ok(if fail && !r.stale.is_empty() {
        exit::FINDINGS
    } else {
        exit::SUCCESS
    })
}

/// `poolgrind run --report-unused-supp`: prints (to stderr) the suppressions of `cfg` (its
/// `--suppressions` files and, unless `--no-default-supp`, the shipped ones) that never fired in
/// `logs`.
pub fn report_unused_for_run<'a>(
    cfg: &run::MemcheckSettings,
    logs: impl IntoIterator<Item = &'a Log>,
) {
    let mut files = cfg.suppressions.clone();
    if !cfg.no_default_supp {
        match run::default_supp_files() {
            Ok(shipped) => files.extend(shipped),
            Err(e) => eprintln!("poolgrind: --report-unused-supp: {e}"),
        }
    }
    let logs: Vec<Log> = logs.into_iter().cloned().collect();
    if files.is_empty() {
        eprintln!("poolgrind: --report-unused-supp: no suppression files in use");
        return;
    }
    match unused_report(&files, &logs) {
        Ok(r) => eprint!("{}", format_report(&r)),
        Err(e) => eprintln!("poolgrind: --report-unused-supp: {e:#}"),
    }
}
