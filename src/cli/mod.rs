//! The command-line interface; `main.rs` only calls [`main`].
//!
//! - [`args`]: the clap definitions (every option, its help and default);
//! - [`commands`]: what each subcommand does, on top of `crate::check`;
//! - [`emit`]: writing results in the chosen format and turning them into an exit code.
//!
//! Exit codes are documented in `crate::check::exit` (and `docs/exit-codes.md`).
pub mod args;
pub mod commands;
pub mod emit;

use clap::Parser;

use crate::check::exit;

/// Entry point of the `poolgrind` binary; returns the process exit code.
pub fn main() -> i32 {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::SUCCESS
                }
                _ => exit::USAGE,
            };
        }
    };
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let (code, what) = exit::of_error(&e);
            eprintln!("poolgrind: {what}: {e:#}");
            code
        }
    }
}
