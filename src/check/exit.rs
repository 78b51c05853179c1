//! The exit codes of `poolgrind`, stable across releases.
//!
//! | code | constant            | meaning                                                                  |
//! |------|---------------------|--------------------------------------------------------------------------|
//! | 0    | [`SUCCESS`]         | every program ran, no memory error counts as failing under the policy   |
//! | 1    | [`MEMORY_ERRORS`]   | at least one memory error fails under the policy (leak kinds, `--fail-on`, baseline) |
//! | 2    | [`PROGRAM_FAILED`]  | no failing memory error, but a program failed on its own: non-zero exit, a fatal signal, a failing test, a `--timeout` |
//! | 3    | [`VALGRIND_FAILED`] | valgrind crashed or a log is truncated/unreadable with no failing memory error; or a setup error (valgrind missing, unreadable input file, cargo could not build) |
//! | 64   | [`USAGE`]           | the command line is wrong (unknown subcommand or option, bad value)      |
//!
//! When several apply, the lowest non-zero code among 1, 3 and 2 *in that order* wins: memory errors
//! are the headline (1); a crashed valgrind (3) means a clean-looking result cannot be trusted, so
//! it outranks a program failure (2). Setup errors that stop poolgrind before anything ran exit 3.
//! 64 is `EX_USAGE` from sysexits.h; clap's own default (2) is not used because 2 means "the
//! program failed" here. `--help` and `--version` exit 0.
//!
//! `docs/exit-codes.md` repeats this table for the README.

/// Nothing failed.
pub const SUCCESS: i32 = 0;
/// Memory errors found that fail under the policy.
pub const MEMORY_ERRORS: i32 = 1;
/// The program itself failed (non-zero exit, signal, failing test, timeout) without memory errors.
pub const PROGRAM_FAILED: i32 = 2;
/// Valgrind crashed / a log is truncated, or a setup error (valgrind not installed, bad input file).
pub const VALGRIND_FAILED: i32 = 3;
/// Command-line usage error.
pub const USAGE: i32 = 64;

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
