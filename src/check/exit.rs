//! The exit codes of `poolgrind`, stable across releases: the one place every command takes them
//! from (`docs/exit-codes.md` repeats the table, and a test checks that the two agree).
//!
//! | code | constant            | meaning                                                                  |
//! |------|---------------------|--------------------------------------------------------------------------|
//! | 0    | [`SUCCESS`]         | every program ran, no memory error counts as failing under the policy; a `supp` command found nothing to complain about |
//! | 1    | [`MEMORY_ERRORS`]   | at least one memory error fails under the policy (leak kinds, `--fail-on`, baseline); for the `supp` checks ([`FINDINGS`]): the check found something |
//! | 2    | [`PROGRAM_FAILED`]  | no failing memory error, but a program failed on its own: non-zero exit, a fatal signal, a failing test, a `--timeout` |
//! | 3    | [`VALGRIND_FAILED`] | valgrind crashed or a log is truncated/unreadable with no failing memory error |
//! | 3    | [`SETUP_ERROR`]     | nothing could be checked: valgrind missing, an input file that cannot be read or parsed, cargo could not build |
//! | 64   | [`USAGE`]           | the command line is wrong (unknown subcommand or option, bad option value) |
//!
//! When several apply, the lowest non-zero code among 1, 3 and 2 *in that order* wins: memory errors
//! are the headline (1); a crashed valgrind (3) means a clean-looking result cannot be trusted, so
//! it outranks a program failure (2). 64 is `EX_USAGE` from sysexits.h; clap's own default (2) is
//! not used because 2 means "the program failed" here. `--help` and `--version` exit 0.
//!
//! A setup error and a crashed valgrind share code 3 (either way the run proves nothing) but never
//! a message: a setup error that stops the command prints `poolgrind: setup error: …`; one that
//! stopped a single program of a cargo run is counted in the JSON's `summary.setup_failed` and
//! named in the verdict ("setup error in N processes"), where a crash reads "valgrind crashed".
//!
//! One rule for input files, in every command: a file given on the command line that cannot be
//! read, or whose content is not what the option expects (a baseline, a skip file, JSON results,
//! a suppression file for `fmt`/`merge`/`stale`, a valgrind log directory without logs), is a
//! setup error (3) with `file:line` where there is one. The exception is the file a command is
//! asked to judge: `supp check` reporting a malformed suppression file is its finding (1).

/// Nothing failed.
pub const SUCCESS: i32 = 0;
/// Memory errors found that fail under the policy.
pub const MEMORY_ERRORS: i32 = 1;
/// A `supp` check found something (`fmt --check`, `check`, `stale --fail`); the same code as
/// [`MEMORY_ERRORS`]: "the thing you asked me to look for is there".
pub const FINDINGS: i32 = 1;
/// The program itself failed (non-zero exit, signal, failing test, timeout) without memory errors.
pub const PROGRAM_FAILED: i32 = 2;
/// Valgrind crashed / a log is truncated or missing.
pub const VALGRIND_FAILED: i32 = 3;
/// A setup error: valgrind not installed, an input file unreadable or malformed, cargo could not
/// build. Shares its code with [`VALGRIND_FAILED`]; the message and the JSON tell them apart.
pub const SETUP_ERROR: i32 = 3;
/// Command-line usage error.
pub const USAGE: i32 = 64;

/// Every code with its name, in the order of the table above (for tests and docs).
pub const ALL: &[(&str, i32)] = &[
    ("SUCCESS", SUCCESS),
    ("MEMORY_ERRORS", MEMORY_ERRORS),
    ("FINDINGS", FINDINGS),
    ("PROGRAM_FAILED", PROGRAM_FAILED),
    ("VALGRIND_FAILED", VALGRIND_FAILED),
    ("SETUP_ERROR", SETUP_ERROR),
    ("USAGE", USAGE),
];

/// Combines the three findings into one exit code with the precedence documented above.
pub fn combine(memory_errors: bool, valgrind_failed: bool, program_failed: bool) -> i32 {
    if memory_errors {
        MEMORY_ERRORS
    } else if valgrind_failed {
        VALGRIND_FAILED
    } else if program_failed {
        PROGRAM_FAILED
    } else {
        SUCCESS
    }
}

/// An error that ends a command, with the code it exits with. Errors of any other type that reach
/// `main` are setup errors ([`SETUP_ERROR`]).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is wrong in a way clap cannot see (exit [`USAGE`]).
    #[error("{0}")]
    Usage(String),
    /// An input file cannot be read or is not what was expected (exit [`SETUP_ERROR`]).
    #[error("{0}")]
    Input(String),
}

impl CliError {
    /// The exit code.
    pub fn code(&self) -> i32 {
        match self {
            CliError::Usage(_) => USAGE,
            CliError::Input(_) => SETUP_ERROR,
        }
    }
}

/// The exit code and the word for the message (`usage error`, `setup error`) of an error that
/// stopped a command.
pub fn of_error(e: &anyhow::Error) -> (i32, &'static str) {
    match e.downcast_ref::<CliError>() {
        Some(CliError::Usage(_)) => (USAGE, "usage error"),
        _ => (SETUP_ERROR, "setup error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_memory_then_valgrind_then_program() {
        assert_eq!(combine(true, true, true), MEMORY_ERRORS);
        assert_eq!(combine(false, true, true), VALGRIND_FAILED);
        assert_eq!(combine(false, false, true), PROGRAM_FAILED);
        assert_eq!(combine(false, false, false), SUCCESS);
    }

    #[test]
    fn errors_map_to_their_codes() {
        let usage = anyhow::Error::new(CliError::Usage("x".into()));
        assert_eq!(of_error(&usage).0, USAGE);
        let input = anyhow::Error::new(CliError::Input("x".into())).context("reading");
        assert_eq!(of_error(&input).0, SETUP_ERROR);
        assert_eq!(of_error(&anyhow::anyhow!("other")).0, SETUP_ERROR);
    }
}
