//! Build script: gives the cdylib (and only the cdylib) the unprefixed malloc family.
//!
//! `libpoolgrind.so` exports `poolgrind_malloc` & co. (src/capi.rs). For LD_PRELOAD it must also
//! export `malloc`, `free`, …: each is defined as an alias of its prefixed twin with the
//! linker's `--defsym`, and exported with a version script. Both flags go through
//! `rustc-cdylib-link-arg`, which applies to cdylib targets only: the rlib that Rust users link
//! never contains a symbol named `malloc`.

use std::{env, fs, path::PathBuf};

const ALIASES: &[&str] = &[
    "malloc",
    "free",
    "calloc",
    "realloc",
    "reallocarray",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/alloc/tls.c");
    // The thread cache's initial-exec TLS block (see src/alloc/tls.c), for every artefact.
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64")
        && env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
    {
        cc::Build::new()
            .file("src/alloc/tls.c")
            .compile("poolgrind_tls");
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = out.join("preload.ver");
    let globals: String = ALIASES.iter().map(|s| format!("    {s};\n")).collect();
    fs::write(&script, format!("{{\n  global:\n{globals}}};\n")).expect("write version script");
    for name in ALIASES {
        println!("cargo::rustc-cdylib-link-arg=-Wl,--defsym={name}=poolgrind_{name}");
    }
    println!(
        "cargo::rustc-cdylib-link-arg=-Wl,--version-script={}",
        script.display()
    );
}
