//! The command-line interface (clap); `main.rs` only calls [`main`].

/// Entry point of the `poolgrind` binary; returns the process exit code.
pub fn main() -> i32 {
    0
}
