//! `poolgrind`: thin glue; everything lives in the library.
fn main() {
    std::process::exit(poolgrind::cli::main());
}
