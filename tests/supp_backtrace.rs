//! Issue 11 §2: suppressions generated from a test suite must not depend on `RUST_BACKTRACE`,
//! and a rerun of the suite with the file it generated must leave no entry stale.
//!
//! Real memcheck on the `backtraced` fixture crate (tests/fixtures/projects/backtraced: one
//! injected leak, one uninitialised read, tests that panic, catch panics, panic in threads and
//! capture and print backtraces). With `RUST_BACKTRACE=1` every panic symbolises a backtrace and
//! std keeps its symbolisation cache (gimli, addr2line) reachable to the end: before the fix,
//! `supp gen` wrote 32 entries instead of 2, named after whichever test panicked first.

use std::path::{Path, PathBuf};
use std::process::Command;

use poolgrind::supp::{parse_file, SuppFile};

const BIN: &str = env!("CARGO_BIN_EXE_poolgrind");

fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/projects/backtraced")
}

/// `<target>/e2e-fixtures/backtraced`, as tests/cli_e2e.rs builds its fixtures.
fn fixture_target_dir() -> PathBuf {
    let target = Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .expect("target dir");
    target.join("e2e-fixtures").join("backtraced")
}

/// Runs the fixture's tests under memcheck, keeping the XML logs in `xml`; returns the exit
/// code and stderr.
fn cargo_test(xml: &Path, backtrace: bool, extra: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(project())
        .env("CARGO_TARGET_DIR", fixture_target_dir())
        .env("NO_COLOR", "1")
        .env_remove("POOLGRIND_VALGRIND")
        .env_remove("POOLGRIND_VALGRIND_FLAGS")
        .arg("cargo")
        .arg("--keep-xml")
        .arg(xml)
        .args(extra)
        .args(["test", "--offline"]);
    if backtrace {
        cmd.env("RUST_BACKTRACE", "1");
    } else {
        cmd.env_remove("RUST_BACKTRACE");
    }
    let out = cmd.output().expect("poolgrind runs");
    (
        out.status.code().expect("poolgrind exits normally"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `poolgrind supp gen --from XML -o OUT`, parsed back.
fn gen(xml: &Path, out: &Path) -> SuppFile {
    let status = Command::new(BIN)
        .arg("supp")
        .arg("gen")
        .arg("--from")
        .arg(xml)
        .arg("-o")
        .arg(out)
        .status()
        .expect("poolgrind runs");
    assert!(status.success(), "supp gen failed");
    parse_file(out).expect("a valid generated file")
}

fn names(f: &SuppFile) -> Vec<String> {
    f.entries.iter().map(|e| e.name.clone()).collect()
}

#[test]
fn generated_entries_do_not_depend_on_rust_backtrace_and_none_is_stale_on_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut files = Vec::new();
    for backtrace in [false, true] {
        let xml = dir.join(format!("xml-{backtrace}"));
        let (code, err) = cargo_test(&xml, backtrace, &[]);
        assert_eq!(
            code, 1,
            "the leak and the uninitialised read fail the run:\n{err}"
        );
        files.push(gen(&xml, &dir.join(format!("gen-{backtrace}.supp"))));
    }
    let (without, with) = (&files[0], &files[1]);
    // The same entries, not only as many: the injected leak and the uninitialised read.
    assert_eq!(names(without), names(with));
    assert_eq!(without.entries.len(), 2, "{:#?}", names(without));
    assert!(names(with)[0].starts_with("Cond-backtraced::tests::branches_on_uninit-"));
    assert!(names(with)[1].starts_with("Leak_definite-backtraced::make_buffer-"));

    // A rerun with the generated file, RUST_BACKTRACE=1 again: nothing fails, nothing is stale.
    let xml = dir.join("xml-rerun");
    let supp = dir.join("gen-true.supp");
    let (code, err) = cargo_test(&xml, true, &["--suppressions", supp.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let out = Command::new(BIN)
        .args(["supp", "stale", "--fail", "--supp"])
        .arg(&supp)
        .arg(&xml)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("0 of 2 suppressions unused"), "{report}");
}

/// Without the shipped files (which suppress it), std's symbolisation cache is one runtime
/// entry anchored at backtrace-rs's `Cache::with_global`, not one entry per allocation site
/// named after a test.
#[test]
fn std_symbolisation_cache_is_one_runtime_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let xml = tmp.path().join("xml");
    let (code, err) = cargo_test(&xml, true, &["--no-default-supp"]);
    assert_eq!(code, 1, "{err}");
    let f = gen(&xml, &tmp.path().join("gen.supp"));
    let cache: Vec<_> = f
        .entries
        .iter()
        .filter(|e| e.name.contains("backtrace_rs"))
        .collect();
    assert_eq!(cache.len(), 1, "{:#?}", names(&f));
    let frames: Vec<String> = cache[0].frames.iter().map(|p| p.to_string()).collect();
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0], "...");
    assert!(
        frames[1].contains("backtrace_rs9symbolize5gimli") && frames[1].contains("with_global"),
        "{frames:?}"
    );
    // No entry names a gimli frame outside that one, nor the test that printed a backtrace..
    for e in &f.entries {
        let text = format!("{e:?}");
        assert!(
            !text.contains("gimli") || e.name.contains("backtrace_rs"),
            "{e:#?}"
        );
        assert!(!e.name.contains("captures_and_prints"), "{e:#?}");
    }
}
