//! Shared helpers for the real-valgrind tests: find the built artefacts, run a program under a
//! Valgrind tool with XML output, and read the log with poolgrind's own parser.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use poolgrind::check::model::{Log, VgError};

/// Whether this process runs without Valgrind (whose preloaded objects are in its maps).
pub fn native() -> bool {
    !std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .contains("vgpreload")
}

/// `target/<profile>/` of this test build.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// The preload library built alongside the tests.
pub fn preload_lib() -> PathBuf {
    let p = target_dir().join("libpoolgrind.so");
    assert_fresh(&p, &[]);
    p
}

/// The release preload library (`target/release/`; ci/test builds it before `cargo test`).
pub fn preload_lib_release() -> PathBuf {
    let p = target_dir()
        .parent()
        .expect("target/")
        .join("release")
        .join("libpoolgrind.so");
    assert_fresh_or(
        &p,
        &[],
        "run `cargo build --release --lib` first (ci/test does)",
    );
    p
}

/// The preload library built without the instrumentation (`--no-default-features`), in
/// `target/novg/<profile>/` (ci/test builds it before `cargo test`).
pub fn preload_lib_uninstrumented() -> PathBuf {
    let dir = target_dir();
    let profile = dir.file_name().expect("target/<profile>").to_owned();
    let p = dir
        .parent()
        .expect("target/")
        .join("novg")
        .join(profile)
        .join("libpoolgrind.so");
    assert_fresh_or(
        &p,
        &[],
        "run `cargo build --lib --no-default-features --target-dir target/novg` first (ci/test does)",
    );
    p
}

/// Newest modification time of the files under `dir` (recursively).
fn newest_under(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("directory entry").path();
        let t = if path.is_dir() {
            newest_under(&path)
        } else {
            std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .expect("source file")
        };
        newest = newest.max(t);
    }
    newest
}

/// `cargo test` does not rebuild the cdylib or the examples: a binary older than the crate's
/// sources (`src/`, `build.rs`, and `extra` files) would silently test old code. Panics with
/// what to run instead.
fn assert_fresh(p: &Path, extra: &[&str]) {
    assert_fresh_or(
        p,
        extra,
        "run `cargo build --lib --examples` first (ci/test does)",
    );
}

/// [`assert_fresh`] with the command that builds `p` in its messages.
fn assert_fresh_or(p: &Path, extra: &[&str], hint: &str) {
    let built = std::fs::metadata(p).and_then(|m| m.modified());
    let built = built.unwrap_or_else(|_| panic!("{} not built: {hint}", p.display()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut newest = newest_under(&root.join("src"));
    for f in ["build.rs"].iter().chain(extra) {
        let t = std::fs::metadata(root.join(f))
            .and_then(|m| m.modified())
            .expect("source file");
        newest = newest.max(t);
    }
    assert!(
        built >= newest,
        "{} is older than the sources it is built from: {hint}",
        p.display()
    );
}

/// An example binary, built by `cargo build --examples` (ci/test does it first). A missing or
/// stale binary is an error that says what to run, never a silent test of old code.
pub fn example(name: &str) -> PathBuf {
    let p = target_dir().join("examples").join(name);
    assert_fresh(
        &p,
        &[
            "examples/corpus/scenarios.rs",
            &format!("examples/{name}.rs"),
        ],
    );
    p
}

/// Compiles a C file of `tests/corpus` once per test process (tests run in parallel threads:
/// a lock makes the others wait, and the binary appears under its name only once complete, so
/// nobody executes a half-written file).
pub fn build_c(name: &str) -> PathBuf {
    compile_c(name, &["-g", "-O0", "-w", "-pthread"], "")
}

/// [`build_c`] for a shared object (`<name>-<pid>.so`), to be preloaded.
pub fn build_c_shared(name: &str) -> PathBuf {
    compile_c(name, &["-O1", "-w", "-shared", "-fPIC"], ".so")
}

fn compile_c(name: &str, flags: &[&str], suffix: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(format!("{name}.c"));
    let out_dir = target_dir().join("corpus-c");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(format!("{name}-{}{suffix}", std::process::id()));
    if !out.exists() {
        let tmp = out.with_extension("tmp");
        let st = Command::new("cc")
            .args(flags)
            .arg("-o")
            .arg(&tmp)
            .arg(&src)
            .status()
            .expect("run cc");
        assert!(st.success(), "cc failed on {}", src.display());
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

/// One run under Valgrind.
pub struct Run {
    pub log: Log,
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `prog args` under `valgrind --tool=<tool>` with XML output and no suppression file.
pub fn valgrind(tool: &str, prog: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    valgrind_with(tool, &[], prog, args, env)
}

/// [`valgrind`] with extra valgrind options (`--redzone-size=64`, …).
pub fn valgrind_with(
    tool: &str,
    vg_args: &[&str],
    prog: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("vg.xml");
    let mut cmd = Command::new("valgrind");
    cmd.arg(format!("--tool={tool}"))
        .arg("--xml=yes")
        .arg(format!("--xml-file={}", xml.display()))
        .args(["--num-callers=40", "--error-limit=no"]);
    if tool == "memcheck" {
        cmd.args(["--leak-check=full", "--show-leak-kinds=all"]);
    }
    cmd.args(vg_args).arg(prog).args(args);
    cmd.env_remove("LD_PRELOAD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("valgrind runs");
    let log = poolgrind::check::xml::parse_file(&xml).expect("valgrind wrote its XML log");
    Run {
        log,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Whether any frame of the error's main stack names a function containing `needle`.
pub fn on_stack(e: &VgError, needle: &str) -> bool {
    e.stack
        .iter()
        .any(|f| f.func.as_deref().is_some_and(|n| n.contains(needle)))
}

/// Under memcheck each arena that still holds a live block at exit is a 1-byte heap block in
/// memcheck's books (see `track::arena_created`), reported as still reachable from the arena
/// table; `supp/poolgrind.supp` suppresses it. It is the allocator's bookkeeping, not a verdict
/// on the program.
pub fn is_arena_bookkeeping(e: &VgError) -> bool {
    e.kind == "Leak_StillReachable"
        && on_stack(e, "alloc::arena::memory_alloc")
        && e.leaked_bytes.unwrap_or(0) <= 64
}

/// The errors whose stack names `needle`, as (kind, leaked bytes, leaked blocks), sorted.
pub fn verdicts(log: &Log, needle: &str) -> Vec<(String, Option<u64>, Option<u64>)> {
    let mut v: Vec<_> = log
        .errors
        .iter()
        .filter(|e| on_stack(e, needle) && !is_arena_bookkeeping(e))
        .map(|e| (e.kind.clone(), e.leaked_bytes, e.leaked_blocks))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Errors that make a run unclean: everything but still-reachable leaks, and but one artefact
/// of Rust's std that memcheck reports on any allocator: the main thread's `Thread` handle,
/// allocated with `System` in `std::thread::current::init_current` and kept in TLS through an
/// interior pointer, is at times "possibly lost" (seen with the system allocator too;
/// `supp/rust-std.supp` covers it).
pub fn bad_errors(log: &Log) -> Vec<&VgError> {
    log.errors
        .iter()
        .filter(|e| e.kind != "Leak_StillReachable")
        .filter(|e| {
            !(e.kind == "Leak_PossiblyLost" && on_stack(e, "std::thread::current::init_current"))
        })
        .collect()
}

/// A readable dump of a log's errors, for assertion messages.
pub fn dump(log: &Log) -> String {
    let mut s = String::new();
    for e in &log.errors {
        s.push_str(&format!("{} {}\n", e.kind, e.what));
        for f in e.stack.iter().take(12) {
            s.push_str(&format!("    {}\n", f.func.as_deref().unwrap_or("???")));
        }
    }
    s
}
