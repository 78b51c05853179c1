//! Build script: gives the cdylib (and only the cdylib) the unprefixed malloc family, and in
//! release builds its layout (`src/alloc/preload.ld`) and no unwinder (`src/alloc/no_unwind.c`).
//!
//! `libpoolgrind.so` exports `poolgrind_malloc` & co. (src/capi.rs). For LD_PRELOAD it must also
//! export `malloc`, `free`, …: each is defined as an alias of its prefixed twin with the
//! linker's `--defsym`, and exported with a version script. Both flags go through
//! `rustc-cdylib-link-arg`, which applies to cdylib targets only: the rlib that Rust users link
//! never contains a symbol named `malloc`.
//!
//! With the `cli` feature it also prepares what the `poolgrind` binary carries inside itself, so
//! that a `cargo install`ed binary needs no source tree (see [`embed_preload_library`] and
//! [`embed_suppression_files`]; `src/check/shipped.rs` writes them out at run time).

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// Set in the environment of the nested build of the embedded preload library (a guard).
const NESTED: &str = "POOLGRIND_NESTED_PRELOAD_BUILD";

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

/// Whether the library may pack its relative relocations (`DT_RELR`, `-z pack-relative-relocs`):
/// a native build (host = target) on a glibc of 2.36 or later, the first whose loader reads
/// them, unless `POOLGRIND_RELR=0`. Packed, the ~620 relocations of vtables, GOT entries and
/// panic locations take 0.2 KiB instead of 15: the library's first segment, which the loader
/// reads in every process, is 3 pages instead of 7 (issue 15, peak RSS of small programs).
/// The library then needs `GLIBC_ABI_DT_RELR`: it runs where it was built and on any newer
/// glibc, and an older one (2.35 and before: Ubuntu 22.04, RHEL 9) refuses to load it ("DT_RELR
/// without GLIBC_ABI_DT_RELR dependency"). A build for such a system that runs on a newer one
/// (a container's build stage, a shared cache) sets `POOLGRIND_RELR=0`.
fn host_glibc_reads_relr() -> bool {
    println!("cargo::rerun-if-env-changed=POOLGRIND_RELR");
    if env::var("POOLGRIND_RELR").as_deref() == Ok("0")
        || env::var("HOST").ok() != env::var("TARGET").ok()
    {
        return false;
    }
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    // "glibc 2.36"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v = text.trim().trim_start_matches("glibc ").split('.');
    let major: u32 = v.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let minor: u32 = v.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    (major, minor) >= (2, 36)
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/alloc/tls.c");
    println!("cargo::rerun-if-changed=src/alloc/no_unwind.c");
    println!("cargo::rerun-if-changed=src/alloc/preload.ld");
    // The thread cache's initial-exec TLS block (see src/alloc/tls.c), for every artefact.
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64")
        && env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
    {
        cc::Build::new()
            .file("src/alloc/tls.c")
            .compile("poolgrind_tls");
    }
    // The release cdylib without libgcc_s (src/alloc/no_unwind.c: the release profile aborts
    // on panic), and with the code every process runs first (src/alloc/preload.ld). Both are
    // link arguments of the cdylib alone, for rustc's lld. `PROFILE` is "release" for the
    // release profile and those that inherit it (`cargo install` included); the debug library
    // keeps the real unwinder and its backtraces.
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64")
        && env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
        && env::var("PROFILE").as_deref() == Ok("release")
    {
        for obj in cc::Build::new()
            .file("src/alloc/no_unwind.c")
            .compile_intermediates()
        {
            println!("cargo::rustc-cdylib-link-arg={}", obj.display());
        }
        // The code every process runs first, in as few pages as may be (src/alloc/preload.ld).
        // A copy in OUT_DIR, as the version script: the link argument then names a file that
        // lives as long as this build's outputs (a source tree's path went stale when a build
        // of the packaged crate from a temporary directory shared the target directory).
        let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        let script = out.join("preload.ld");
        fs::write(&script, include_str!("src/alloc/preload.ld")).expect("write linker script");
        println!("cargo::rustc-cdylib-link-arg=-Wl,-T,{}", script.display());
        // Every segment starts a page of the file and of memory. A process maps all of the
        // hot code, the relocated data and `.data` (11, 3 and 1 pages); with segments that
        // start mid-page each of them could take a page more, and did, depending on how the
        // code's size moved them (issue 15, peak RSS of small programs).
        println!("cargo::rustc-cdylib-link-arg=-Wl,-z,separate-loadable-segments");
        if host_glibc_reads_relr() {
            println!("cargo::rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
        }
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = out.join("preload.ver");
    let globals: String = ALIASES.iter().map(|s| format!("    {s};\n")).collect();
    fs::write(&script, format!("{{\n  global:\n{globals}}};\n")).expect("write version script");
    for name in ALIASES {
        println!("cargo::rustc-cdylib-link-arg=-Wl,--defsym={name}=poolgrind_{name}");
    }
    // A soname: valgrind gives an object without one the soname "NONE", which its malloc
    // replacement's soname synonym may match, and would then replace our sized local `malloc`
    // names (src/capi.rs) with memcheck's own allocator.
    println!("cargo::rustc-cdylib-link-arg=-Wl,-soname,libpoolgrind.so");
    println!(
        "cargo::rustc-cdylib-link-arg=-Wl,--version-script={}",
        script.display()
    );
    if env::var_os("CARGO_FEATURE_CLI").is_some() {
        embed_suppression_files(&out);
        embed_preload_library(&out);
    }
}

/// Writes `$OUT_DIR/shipped_supp.rs`: every `supp/**/*.supp` of the source tree as
/// `(path relative to supp/, contents)`, sorted, for `include!` in `src/check/shipped.rs`. The
/// files in `supp/` itself are the default set; `supp/programs/` holds per-program files.
fn embed_suppression_files(out: &Path) {
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let supp = root.join("supp");
    println!("cargo::rerun-if-changed=supp");
    let mut files = Vec::new();
    let mut dirs = vec![supp.clone()];
    while let Some(dir) = dirs.pop() {
        let entries =
            fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("read supp/ entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "supp") {
                let rel = path.strip_prefix(&supp).expect("under supp/");
                let rel = rel.to_str().expect("supp file names are UTF-8").to_string();
                files.push((rel, path));
            }
        }
    }
    files.sort();
    let mut code = String::from(
        "/// Every shipped suppression file: (path relative to `supp/`, contents). Generated by build.rs.\n\
         pub const SHIPPED_SUPP: &[(&str, &str)] = &[\n",
    );
    // Paths relative to the manifest directory of the compiling crate, never absolute: the
    // build-script output directory is keyed by package, not by source location, so another
    // checkout of the package built into the same target directory (ci/install-check's
    // `cargo install --path <unpacked crate> --target-dir target`) shares this file. Absolute
    // paths then named the other, since deleted, checkout, and `cargo build --release` failed
    // until build.rs ran again (seen after `ci/test`, then `ci/bench`).
    for (rel, _) in &files {
        let from_root = format!("/supp/{rel}");
        code.push_str(&format!(
            "    ({rel:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {from_root:?}))),\n"
        ));
    }
    code.push_str("];\n");
    fs::write(out.join("shipped_supp.rs"), code).expect("write shipped_supp.rs");
}

/// Builds the preload library the `poolgrind` binary embeds, as `$OUT_DIR/libpoolgrind-preload.so`.
///
/// Why a nested `cargo build`: the bytes of this package's own cdylib are needed while compiling
/// the package (the CLI includes them), and Cargo offers no stable way to get them: the cdylib of
/// the outer build is written next to the rlib only after the library is compiled, in a
/// directory whose layout is internal to Cargo (and is being reorganised, rust-lang/cargo#15010),
/// and artifact dependencies (RFC 3028) are unstable. So the build script asks Cargo, through its
/// command line only, for the allocator alone (`--no-default-features --features valgrind,preload`: no
/// `cli`, hence no recursion) in release mode, in a target directory of its own that every
/// profile-sharing outer build reuses (`<profile>/build/poolgrind-preload`). The cost is a second
/// compile of the allocator's dependencies (crabgrind's bindgen mostly), once per target
/// directory; in exchange a `cargo install`ed `poolgrind` carries the library it will preload.
/// `--locked` when the source has a `Cargo.lock` (a packaged crate always has one): the nested
/// build never rewrites anything in the source directory.
fn embed_preload_library(out: &Path) {
    let dest = out.join("libpoolgrind-preload.so");
    if env::var_os(NESTED).is_some() {
        // Cannot happen (the nested build has no `cli` feature), unless the environment lies.
        panic!("{NESTED} is set: the nested build would recurse");
    }
    if env::var_os("DOCS_RS").is_some() {
        // docs.rs builds without network or valgrind headers; documentation needs no library.
        fs::write(&dest, b"").expect("write placeholder");
        return;
    }
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    for f in ["src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo::rerun-if-changed={f}");
    }
    let target = env::var("TARGET").expect("cargo sets TARGET");
    // OUT_DIR is <profile>/build/poolgrind-<hash>/out: share one nested build per profile
    // directory. (Only a cache location: any other layout still works, with its own copy.)
    let nested_dir = out
        .parent()
        .and_then(Path::parent)
        .map(|build| build.join("poolgrind-preload"))
        .unwrap_or_else(|| out.join("poolgrind-preload"));
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args([
            "--lib",
            "--release",
            "--no-default-features",
            "--features",
            "valgrind,preload",
        ])
        .args(["--target", &target])
        .arg("--target-dir")
        .arg(&nested_dir);
    if root.join("Cargo.lock").is_file() {
        cmd.arg("--locked");
    }
    // A child of this script inherits the variables Cargo set for it, and Cargo sets
    // CARGO_FEATURE_* for a build script's enabled features without clearing others: the nested
    // build script would see this build's `cli` and build another nested library, forever.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_FEATURE_") || key.starts_with("CARGO_CFG_") {
            cmd.env_remove(&*key);
        }
    }
    // Clippy (and other workspace wrappers) wrap the outer build only; the nested build's
    // stdout must not reach Cargo, which reads build-script directives from ours.
    cmd.env(NESTED, "1")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()));
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for the embedded preload library: {e}"));
    assert!(
        status.success(),
        "building the embedded preload library failed ({status}): \
         cargo build --release --lib --no-default-features --features valgrind,preload \
         --target {target} --target-dir {} (its output is above)",
        nested_dir.display()
    );
    let built = nested_dir
        .join(&target)
        .join("release")
        .join("libpoolgrind.so");
    fs::copy(&built, &dest)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", built.display(), dest.display()));
}
