//! Command-line definitions (clap derive). Defaults live here, next to their help text.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::check::policy;
use crate::check::run::MemcheckSettings;
use crate::check::select::{Partition, SkipList};

/// A clap value parser that checks a value with `check` and keeps it as given: every option value
/// is validated while parsing, so a bad one is a usage error (exit 64) naming the valid values.
fn valid<T, E>(
    check: impl Fn(&str) -> Result<T, E> + Clone + Send + Sync + 'static,
) -> impl clap::builder::TypedValueParser<Value = String>
where
    E: std::fmt::Display,
{
    clap::builder::StringValueParser::new()
        .try_map(move |s: String| check(&s).map(|_| s.clone()).map_err(|e| e.to_string()))
}

/// Run programs and test suites under valgrind's memcheck; report, and fail CI for the right reasons.
///
/// Exit codes: 0 clean, 1 memory errors (or a `supp` check's findings), 2 the program itself
/// failed, 3 valgrind crashed / setup error (valgrind missing, unreadable input file), 64 usage
/// error (docs/exit-codes.md).
#[derive(Debug, Parser)]
#[command(
    name = "poolgrind",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a program (or a batch of programs) under memcheck and report.
    ///
    /// Example: poolgrind run -- ./my-test --flag
    Run(RunArgs),
    /// Run cargo (test, run, bench, nextest run …) with every binary under memcheck.
    ///
    /// poolgrind's options come before cargo's subcommand. Plain `cargo test` runs test binaries
    /// one after another; for parallel valgrind processes and per-test attribution use nextest
    /// (its own -j applies). Doctests run under memcheck too; each program's exit status goes
    /// back to cargo unchanged and the program verdict is cargo's exit status.
    ///
    /// Example: poolgrind cargo test --workspace
    /// Example: poolgrind cargo --leak-kinds all nextest run -j 4
    Cargo(CargoArgs),
    /// Render saved valgrind XML logs, or merge JSON results from CI shards (--merge).
    Report(ReportArgs),
    /// Suppression files: fmt, check, gen, merge, stale (see `poolgrind supp --help`).
    #[command(subcommand)]
    Supp(crate::supp::cli::SuppCommand),
    /// Print the path of the preload library (libpoolgrind.so) this poolgrind carries.
    ///
    /// The library is embedded in the binary and written to a per-build cache directory on first
    /// use (POOLGRIND_CACHE_DIR, else ~/.cache/poolgrind); POOLGRIND_PRELOAD_LIB overrides it.
    ///
    /// Example: LD_PRELOAD=$(poolgrind preload-path) ./my-program
    PreloadPath(PreloadPathArgs),
}

/// `poolgrind preload-path`.
#[derive(Debug, Clone, Args)]
pub struct PreloadPathArgs {
    /// Print the directory of the shipped suppression files instead (programs/python3.supp is
    /// CPython's; POOLGRIND_SUPP_DIR overrides it).
    #[arg(long)]
    pub supp_dir: bool,
}

/// What fails.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Leak kinds that fail: comma list of definite, indirect, possible, reachable; or all, none.
    #[arg(long, value_name = "KINDS", default_value = "definite,indirect", value_parser = valid(policy::parse_leak_kinds))]
    pub leak_kinds: String,
    /// Error kinds that fail: `all`, or a comma list of memcheck kinds (InvalidRead, …;
    /// `leak` = the leak kinds above).
    #[arg(long, value_name = "KINDS", default_value = "all", value_parser = valid(policy::parse_fail_on))]
    pub fail_on: String,
    /// Known errors (JSON, from --write-baseline) that do not fail.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Write the errors of this run as a baseline file.
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,
}

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Grouped, readable text.
    Human,
    /// JSON results (docs/json-schema.md).
    Json,
    /// JUnit XML.
    Junit,
    /// SARIF 2.1.0.
    Sarif,
}

/// When to colour the human report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorArg {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Where results go.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Report format. With --output, the human report still goes to stdout.
    #[arg(long, value_enum, default_value = "human")]
    pub format: FormatArg,
    /// Write the report (in --format) to FILE.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Colour the human report.
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorArg,
    /// List errors ignored by the policy in full (the JSON report otherwise keeps them as
    /// counts per fingerprint).
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

/// Which programs or tests run.
#[derive(Debug, Clone, Args)]
pub struct SelectArgs {
    /// Skip programs/tests matching PATTERN (glob with * and ?, or re:REGEX; repeatable).
    #[arg(long, value_name = "PATTERN", value_parser = valid(|p: &str| SkipList::default().add(p, None)))]
    pub skip: Vec<String>,
    /// Read skip patterns from FILE (one per line, # comments).
    #[arg(long, value_name = "FILE")]
    pub skip_file: Vec<PathBuf>,
    /// Run only shard i of n (1-based), e.g. 2/4; programs/tests are assigned by hash.
    #[arg(long, value_name = "i/n", value_parser = |s: &str| s.parse::<Partition>())]
    pub partition: Option<Partition>,
}

/// The options of every command that runs programs under memcheck (`run`, `cargo`).
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Valgrind command line.
    #[command(flatten)]
    pub memcheck: MemcheckSettings,
    /// What fails.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Where results go.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Which programs run.
    #[command(flatten)]
    pub select: SelectArgs,
    /// After the run, list suppression entries (given and shipped) that never matched
    /// (file:line; counts summed over every process).
    #[arg(long)]
    pub report_unused_supp: bool,
}

/// `poolgrind run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// What `run` and `cargo` share.
    #[command(flatten)]
    pub check: CheckArgs,
    /// Parallel valgrind processes for --batch.
    #[arg(long, short = 'j', value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Run every line of FILE (appended to CMD, if given) as its own program.
    #[arg(long, value_name = "FILE")]
    pub batch: Option<PathBuf>,
    /// Internal: the cargo target-runner mode of `poolgrind cargo`.
    #[arg(long, hide = true)]
    pub child_mode: bool,
    /// The program and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// `poolgrind cargo`.
#[derive(Debug, Clone, Args)]
pub struct CargoArgs {
    /// What `run` and `cargo` share.
    #[command(flatten)]
    pub check: CheckArgs,
    /// cargo's subcommand and arguments: test …, run …, bench …, nextest run ….
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "CARGO_ARGS"
    )]
    pub cargo_args: Vec<String>,
}

/// `poolgrind report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// What fails.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Where results go.
    #[command(flatten)]
    pub output: OutputArgs,
    /// The inputs are JSON results (--format json) to combine, not XML logs.
    #[arg(long)]
    pub merge: bool,
    /// Valgrind XML logs (or JSON results with --merge).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}
