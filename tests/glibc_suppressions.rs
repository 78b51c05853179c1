//! Issue 11 §3: a suppression file that valgrind itself wrote from a glibc run
//! (`--gen-suppressions=all`: `fun:malloc` / `fun:leak_by_malloc` / `fun:main`, …) suppresses the
//! same errors with `libpoolgrind.so` preloaded: the C entry points' frames read as the C
//! library's (`src/capi.rs`), with nothing of the allocator's above them.
//!
//! Uses the release library: the frames are the release build's (tail calls, inlining), which is
//! what users preload.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{build_c, is_arena_bookkeeping, target_dir, valgrind_with};

/// The user functions of `tests/corpus/glibc_era.c`, one error each.
const BUGS: &[&str] = &[
    "leak_by_malloc",
    "leak_by_calloc",
    "leak_by_realloc",
    "leak_by_realloc_to_large",
    "leak_large_by_malloc",
    "double_free",
    "invalid_free",
];

fn release_lib() -> PathBuf {
    let lib = target_dir()
        .parent()
        .expect("target/")
        .join("release/libpoolgrind.so");
    let built = std::fs::metadata(&lib)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} not built: run `cargo build --release`", lib.display()));
    let src = std::fs::metadata(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/capi.rs"))
        .and_then(|m| m.modified())
        .unwrap();
    assert!(
        built >= src,
        "{} is stale: run `cargo build --release`",
        lib.display()
    );
    lib
}

/// Valgrind's own suppressions for every error of the program run on glibc.
fn glibc_written_suppressions(prog: &Path, out: &Path) -> String {
    let log = out.with_extension("log");
    let st = Command::new("valgrind")
        .args([
            "--leak-check=full",
            "--show-leak-kinds=all",
            "--gen-suppressions=all",
        ])
        .arg(format!("--log-file={}", log.display()))
        .arg(prog)
        .env_remove("LD_PRELOAD")
        .status()
        .expect("valgrind runs");
    assert!(st.success(), "valgrind on glibc failed");
    // The suppressions are the log's lines without the ==pid== prefix, from `{` to `}`.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut supp = String::new();
    let mut inside = false;
    for line in text.lines().filter(|l| !l.starts_with("==")) {
        inside |= line == "{";
        if inside {
            supp.push_str(line);
            supp.push('\n');
        }
        inside &= line != "}";
    }
    std::fs::write(out, &supp).unwrap();
    supp
}

/// The user functions of `BUGS` that an unsuppressed error names (the allocator's own arena
/// bookkeeping, which the shipped supp/poolgrind.supp covers, aside).
fn reported(log: &poolgrind::check::model::Log) -> Vec<String> {
    let mut v: Vec<String> = log
        .errors
        .iter()
        .filter(|e| !is_arena_bookkeeping(e))
        .filter_map(|e| {
            e.stack
                .iter()
                .filter_map(|f| f.func.as_deref())
                .find(|f| BUGS.contains(f))
                .map(|f| format!("{}:{f}", e.kind))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn glibc_written_suppressions_suppress_the_same_errors_under_the_preload() {
    let prog = build_c("glibc_era");
    let dir = tempfile::tempdir().unwrap();
    let supp_file = dir.path().join("glibc.supp");
    let supp = glibc_written_suppressions(&prog, &supp_file);
    for bug in BUGS {
        assert!(
            supp.contains(&format!("fun:{bug}")),
            "valgrind wrote no entry for {bug}:\n{supp}"
        );
    }
    let lib = release_lib();
    let preload = [("LD_PRELOAD", lib.to_str().unwrap())];

    // Without the file, the preloaded run reports every bug (so the check below can fail)...
    let bare = valgrind_with("memcheck", &[], &prog, &[], &preload);
    let all = reported(&bare.log);
    for bug in BUGS {
        assert!(
            all.iter().any(|r| r.ends_with(&format!(":{bug}"))),
            "the preloaded run does not report {bug}: {all:?}"
        );
    }
    // ...and with the glibc-written file, none is left, each suppressed by its glibc entry.
    let arg = format!("--suppressions={}", supp_file.display());
    let run = valgrind_with("memcheck", &[&arg], &prog, &[], &preload);
    let left = reported(&run.log);
    let stacks: Vec<String> = run
        .log
        .errors
        .iter()
        .map(|e| {
            let frames: Vec<&str> = e.stack.iter().filter_map(|f| f.func.as_deref()).collect();
            format!("{} {}", e.kind, frames.join(" < "))
        })
        .collect();
    assert!(
        left.is_empty(),
        "not suppressed under the preload: {left:?}\n{stacks:#?}\nfile:\n{supp}"
    );
    let suppressed: u64 = run.log.supp_counts.iter().map(|(_, n)| n).sum();
    assert!(
        suppressed >= BUGS.len() as u64,
        "suppression counts: {:?}",
        run.log.supp_counts
    );
}
