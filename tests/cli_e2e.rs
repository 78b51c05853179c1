//! End-to-end tests of the `poolgrind` binary with the real valgrind on this machine:
//! fixture cargo projects (tests/fixtures/projects/), small programs, and bad input.
//!
//! Fixture projects build into `target/e2e-fixtures/<name>` (next to poolgrind's own target
//! directory) so rebuilds are incremental; they have no dependencies and build offline.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_poolgrind");

fn project(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/projects")
        .join(name)
}

fn fixture_target_dir(name: &str) -> PathBuf {
    // BIN is <target>/<profile>/poolgrind.
    let target = Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .expect("target dir");
    target.join("e2e-fixtures").join(name)
}

fn poolgrind() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("POOLGRIND_VALGRIND_BIN")
        .env_remove("POOLGRIND_VALGRIND")
        .env_remove("POOLGRIND_VALGRIND_FLAGS")
        .env_remove("POOLGRIND_QUARANTINE")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("poolgrind runs");
    let code = status
        .code()
        .expect("poolgrind exits normally (no panic abort, no signal)");
    (
        code,
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn cargo_in(name: &str, tmp: &Path, args: &[&str]) -> (i32, String, String, Value) {
    let json = tmp.join("results.json");
    let mut cmd = poolgrind();
    cmd.current_dir(project(name))
        .env("CARGO_TARGET_DIR", fixture_target_dir(name))
        .arg("cargo")
        .arg("--format=json")
        .arg("--output")
        .arg(&json)
        .args(args);
    let (code, out, err) = run(&mut cmd);
    let text =
        std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("no JSON ({e}); stderr:\n{err}"));
    (
        code,
        out,
        err,
        serde_json::from_str(&text).expect("valid JSON results"),
    )
}

fn failing(results: &Value) -> Vec<&Value> {
    results["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["verdict"] == "fail")
        .collect()
}

/// issue 4: a leaking test is found, attributed to its test and binary, and fails with exit 1.
#[test]
fn cargo_test_leaky_project_exits_1_and_names_the_test() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err, results) = cargo_in("leaky", tmp.path(), &["test", "--offline"]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let errors = failing(&results);
    assert_eq!(errors.len(), 1, "{out}");
    let e = errors[0];
    assert_eq!(e["kind"], "Leak_DefinitelyLost");
    assert_eq!(e["bytes"], 100);
    assert_eq!(e["binary"], "leaky");
    assert_eq!(e["test"], "tests::leaks_a_buffer");
    assert_eq!(e["test_source"], "stack");
    let user = &e["frames"][e["user_frame"].as_u64().unwrap() as usize];
    assert_eq!(user["function"], "leaky::make_buffer");
    assert!(user["file"].as_str().unwrap().ends_with("src/lib.rs"));
    assert!(e["suppression"].as_str().unwrap().contains("Memcheck:Leak"));
    // Both test binaries ran under memcheck; the integration binary is clean.
    let binaries: Vec<&str> = results["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["binary"].as_str().unwrap())
        .collect();
    assert_eq!(binaries, ["integration", "leaky"]);
    assert!(out.contains("leaky › tests::leaks_a_buffer"), "{out}");
    assert!(
        out.contains("→ by leaky::make_buffer (src/lib.rs:5)"),
        "{out}"
    );
}

#[test]
fn cargo_test_clean_project_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err, results) = cargo_in("clean", tmp.path(), &["test", "--offline"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(failing(&results).is_empty());
    assert_eq!(results["summary"]["processes"], 1);
    assert!(out.contains("passed: no memory errors"), "{out}");
}

/// With nextest every test is its own process: errors are attributed through the argv.
#[test]
fn cargo_nextest_attributes_per_test() {
    let has_nextest = Command::new("cargo")
        .args(["nextest", "--version"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_nextest {
        eprintln!("cargo-nextest not installed: skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err, results) = cargo_in("leaky", tmp.path(), &["nextest", "run", "--offline"]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let errors = failing(&results);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["test"], "tests::leaks_a_buffer");
    assert_eq!(errors[0]["test_source"], "process");
    let tests: Vec<&str> = results["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["test"].as_str())
        .collect();
    assert_eq!(
        tests,
        [
            "integration_is_clean",
            "tests::clean",
            "tests::leaks_a_buffer"
        ]
    );
    // issue 10 §7: nextest's list phase (`<binary> --list …`, through the same runner) runs
    // natively: one process under memcheck per test, none per listing.
    assert_eq!(results["processes"].as_array().unwrap().len(), 3);
    let keep = tmp.path().join("list-xml");
    let (code, _out, err) = run(poolgrind()
        .current_dir(project("leaky"))
        .env("CARGO_TARGET_DIR", fixture_target_dir("leaky"))
        .arg("cargo")
        .arg("--keep-xml")
        .arg(&keep)
        .args(["nextest", "list", "--offline"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("without running any program under memcheck"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&keep).unwrap().collect();
    assert!(
        left.is_empty(),
        "no record or XML from the list phase: {left:?}"
    );
}

/// `--skip` in cargo mode: the leaking binary does not run, so the run is clean.
#[test]
fn cargo_skip_pattern_skips_a_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, _err, results) = cargo_in(
        "leaky",
        tmp.path(),
        &["--skip", "leaky", "test", "--offline"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(results["summary"]["skipped"], 1);
}

#[test]
fn missing_valgrind_is_a_clear_setup_error() {
    let (code, _out, err) = run(poolgrind()
        .env("POOLGRIND_VALGRIND_BIN", "/nonexistent/valgrind")
        .args(["run", "--", "true"]));
    assert_eq!(code, 3);
    assert!(
        err.contains("poolgrind: setup error: valgrind not found"),
        "{err}"
    );
    assert!(err.contains("apt-get install valgrind"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let (code, _out, err) =
        run(poolgrind()
            .env("PATH", empty.path())
            .args(["run", "--", "/bin/true"]));
    assert_eq!(code, 3);
    assert!(err.contains("no `valgrind` in PATH"), "{err}");
}

#[test]
fn usage_errors_exit_64() {
    let (code, _out, err) = run(poolgrind().arg("frobnicate"));
    assert_eq!(code, 64);
    assert!(
        err.contains("unrecognized subcommand 'frobnicate'"),
        "{err}"
    );
    let (code, _, err) = run(poolgrind().args(["run", "--format", "yaml", "--", "true"]));
    assert_eq!(code, 64, "{err}");
    let (code, _, _) = run(poolgrind().arg("--help"));
    assert_eq!(code, 0);
}

#[test]
fn bad_policy_input_is_reported_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let baseline = tmp.path().join("baseline.json");
    std::fs::write(&baseline, "{\n  \"version\": 1,\n  \"errors\": [oops]\n}\n").unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xml/leak.xml");
    let (code, _, err) = run(poolgrind()
        .arg("report")
        .arg("--baseline")
        .arg(&baseline)
        .arg(&fixture));
    assert_eq!(code, 3);
    assert!(err.contains("baseline.json:3:"), "{err}");
    let (code, _, err) = run(poolgrind()
        .args(["report", "--leak-kinds", "definite,sometimes"])
        .arg(&fixture));
    assert_eq!(code, 64, "a bad option value is a usage error");
    assert!(err.contains("unknown leak kind `sometimes`"), "{err}");
}

fn xml_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/xml")
        .join(name)
}

/// issue 10 §3: every option value is validated: exit 64 and a message listing the valid values
/// (`--fail-on leaks` and friends used to pass silently with exit 0, `--leak-kinds bogus` and
/// `--partition x` gave 3).
#[test]
fn issue10_bad_option_values_exit_64_naming_the_valid_values() {
    let leak = xml_fixture("leak.xml");
    let cases: &[(&[&str], &str)] = &[
        (&["report", "--fail-on", "leaks"], "did you mean leak?"),
        (
            &["report", "--fail-on", "definite"],
            "--leak-kinds definite",
        ),
        (
            &["report", "--fail-on", "leak_definitelylost"],
            "did you mean Leak_DefinitelyLost?",
        ),
        (
            &["report", "--fail-on", "InvalidRead,nope"],
            "valid values: all; leak, fds;",
        ),
        (&["report", "--leak-kinds", "bogus"], "valid values:"),
        (
            &["report", "--format", "yaml"],
            "possible values: human, json",
        ),
        (&["report", "--color", "sometimes"], "possible values: auto"),
    ];
    for (args, expected) in cases {
        let (code, out, err) = run(poolgrind().args(*args).arg(&leak));
        assert_eq!(code, 64, "{args:?}: exit {code}\n{out}\n{err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!out.contains("passed"), "{args:?}: {out}");
    }
    // Options of commands that run programs are checked before anything runs (no valgrind
    // needed: a missing one would be a setup error, 3, instead).
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--partition", "x"], "expected i/n"),
        (&["run", "--partition", "3/2"], "expected i/n"),
        (&["run", "--timeout", "nan"], "positive number"),
        (&["run", "--timeout", "0"], "positive number"),
        (&["run", "--skip", "re:("], "bad skip pattern"),
        (&["cargo", "--fail-on", "leaks"], "did you mean leak?"),
        (&["supp", "gen", "--leak-kinds", "bogus", "--from"], "bogus"),
    ];
    for (args, expected) in cases {
        let (code, out, err) = run(poolgrind()
            .env("POOLGRIND_VALGRIND_BIN", "/nonexistent/valgrind")
            .args(*args)
            .args(["--", "/bin/true"]));
        assert_eq!(code, 64, "{args:?}: exit {code}\n{out}\n{err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let (code, _, err) = run(poolgrind().args(["run", "--format", "json"]));
    assert_eq!(code, 64, "no command is a usage error: {err}");
    assert!(err.contains("usage error: no command given"), "{err}");
}

/// issue 10 §3: an input file that cannot be read gives the same code (3, a setup error) in
/// every command (it was 64 in `supp fmt`, 1 in `supp check`, 3 in `report`).
#[test]
fn issue10_unreadable_input_file_is_a_setup_error_in_every_command() {
    let missing = "/nonexistent/input";
    let leak = xml_fixture("leak.xml");
    let leak = leak.to_str().unwrap();
    let commands: &[&[&str]] = &[
        &["report", missing],
        &["report", "--merge", missing],
        &["report", "--baseline", missing, leak],
        &["run", "--skip-file", missing, "--", "/bin/true"],
        &["run", "--batch", missing],
        &["cargo", "--skip-file", missing, "test"],
        &["supp", "fmt", missing],
        &["supp", "fmt", "--check", missing],
        &["supp", "check", missing],
        &["supp", "merge", missing],
        &["supp", "stale", "--supp", missing, leak],
        &["supp", "gen", "--from", missing],
    ];
    for args in commands {
        let (code, out, err) = run(poolgrind().args(*args));
        assert_eq!(code, 3, "{args:?}: exit {code}\n{out}\n{err}");
        assert!(err.contains(missing), "{args:?} names the file: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// issue 10 §3: the codes in docs/exit-codes.md are exactly the codes `check::exit` defines, and
/// each one is produced by a real command.
#[test]
fn issue10_documented_exit_codes_are_defined_and_produced() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/exit-codes.md"))
            .unwrap();
    let documented: std::collections::BTreeSet<i32> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split('|').next()?.trim().parse().ok())
        .collect();
    let defined: std::collections::BTreeSet<i32> = poolgrind::check::exit::ALL
        .iter()
        .map(|(_, c)| *c)
        .collect();
    assert_eq!(
        documented, defined,
        "docs/exit-codes.md against check::exit"
    );
    for (name, _) in poolgrind::check::exit::ALL {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/exit-codes.md names the constant {name}"
        );
    }

    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean.xml");
    // A clean log: the leak fixture's process without its errors is not at hand, so run one.
    let (code, out, err) = run(poolgrind()
        .arg("run")
        .arg("--keep-xml")
        .arg(tmp.path().join("keep"))
        .args(["--", "/bin/true"]));
    assert_eq!(code, 0, "{out}\n{err}");
    let kept = std::fs::read_dir(tmp.path().join("keep/job-0"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(kept, &clean).unwrap();
    let produced: Vec<(i32, std::process::Output)> = vec![
        (0, poolgrind().arg("report").arg(&clean).output().unwrap()),
        (
            1,
            poolgrind()
                .arg("report")
                .arg(xml_fixture("leak.xml"))
                .output()
                .unwrap(),
        ),
        (
            2,
            poolgrind()
                .args(["run", "--", "sh", "-c", "exit 7"])
                .output()
                .unwrap(),
        ),
        (
            3,
            poolgrind()
                .arg("report")
                .arg(xml_fixture("hostile/binary_garbage.xml"))
                .output()
                .unwrap(),
        ),
        (
            3,
            poolgrind()
                .env("POOLGRIND_VALGRIND_BIN", "/nonexistent/valgrind")
                .args(["run", "--", "/bin/true"])
                .output()
                .unwrap(),
        ),
        (64, poolgrind().arg("frobnicate").output().unwrap()),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (want, out) in produced {
        assert_eq!(
            out.status.code(),
            Some(want),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        seen.insert(want);
    }
    assert_eq!(
        seen, defined,
        "every documented code is produced by some command"
    );
}

/// issue 10 §3: a setup error and a crashed valgrind share code 3 but not their words.
#[test]
fn issue10_setup_error_is_not_called_a_valgrind_crash() {
    let (code, _, err) = run(poolgrind()
        .env("POOLGRIND_VALGRIND_BIN", "/nonexistent/valgrind")
        .args(["run", "--", "/bin/true"]));
    assert_eq!(code, 3);
    assert!(
        err.starts_with("poolgrind: setup error: valgrind not found"),
        "{err}"
    );
    let (code, out, _) = run(poolgrind()
        .arg("report")
        .arg(xml_fixture("hostile/binary_garbage.xml")));
    assert_eq!(code, 3);
    assert!(out.contains("valgrind crashed"), "{out}");
    assert!(!out.contains("setup error"), "{out}");
}

/// issue 10 §5: `POOLGRIND_VALGRIND` is the allocator's `auto|off` switch only; the CLI's
/// valgrind is `POOLGRIND_VALGRIND_BIN` (`POOLGRIND_VALGRIND=off poolgrind run` failed with
/// "no `off` in PATH").
#[test]
fn issue10_allocator_switch_is_not_the_cli_valgrind() {
    let (code, out, err) =
        run(poolgrind()
            .env("POOLGRIND_VALGRIND", "off")
            .args(["run", "--", "/bin/true"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!err.contains("valgrind not found"), "{err}");
    let (code, _, err) = run(poolgrind()
        .env("POOLGRIND_VALGRIND_BIN", "/nonexistent/vg")
        .args(["run", "--", "/bin/true"]));
    assert_eq!(code, 3);
    assert!(err.contains("/nonexistent/vg does not exist"), "{err}");
    assert!(err.contains("POOLGRIND_VALGRIND_BIN"), "{err}");
}

/// issue 10 §5: `supp check --valgrind=PATH` asks that valgrind (it could only use PATH's).
#[test]
fn issue10_supp_check_valgrind_path() {
    let supp = Path::new(env!("CARGO_MANIFEST_DIR")).join("supp/rust-std.supp");
    let (code, _, err) = run(poolgrind()
        .args(["supp", "check", "--valgrind=/nonexistent/vg"])
        .arg(&supp));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("/nonexistent/vg does not exist"), "{err}");
    let vg = poolgrind::check::run::find_valgrind(None).expect("valgrind installed");
    let (code, _, err) = run(poolgrind()
        .arg("supp")
        .arg("check")
        .arg(format!("--valgrind={}", vg.display()))
        .arg(&supp));
    assert_eq!(code, 0, "{err}");
    // Bare --valgrind still means "the default valgrind" and does not swallow the file.
    let (code, _, err) = run(poolgrind()
        .env("POOLGRIND_VALGRIND_BIN", &vg)
        .args(["supp", "check", "--valgrind"])
        .arg(&supp));
    assert_eq!(code, 0, "{err}");
}

/// issue 14: memcheck's `--redzone-size`, `--freelist-vol` and `--freelist-big-blocks` given to
/// valgrind reach the allocator's environment (it cannot read valgrind's command line); a
/// `POOLGRIND_QUARANTINE` the user set wins over `--freelist-vol`.
#[test]
fn issue14_memcheck_options_reach_the_allocator_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let env_file = tmp.path().join("env.txt");
    let script = format!("env > {}", env_file.display());
    let (code, out, err) = run(poolgrind()
        .env(
            "POOLGRIND_VALGRIND_FLAGS",
            "--redzone-size=64 --freelist-vol=1000",
        )
        .args([
            "run",
            "--vg-arg=--redzone-size=128",
            "--vg-arg=--freelist-big-blocks=5000",
            "--",
            "sh",
            "-c",
            &script,
        ]));
    assert_eq!(code, 0, "{out}\n{err}");
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(
        env.contains("POOLGRIND_REDZONE=128\n"),
        "the last value wins: {env}"
    );
    assert!(env.contains("POOLGRIND_QUARANTINE=1000\n"), "{env}");
    assert!(env.contains("POOLGRIND_QUARANTINE_BIG=5000\n"), "{env}");

    let (code, _, _) = run(poolgrind().env("POOLGRIND_QUARANTINE", "77").args([
        "run",
        "--vg-arg=--freelist-vol=1000",
        "--",
        "sh",
        "-c",
        &script,
    ]));
    assert_eq!(code, 0);
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(
        env.contains("POOLGRIND_QUARANTINE=77\n"),
        "the user's own value: {env}"
    );
    assert!(
        !env.contains("POOLGRIND_REDZONE="),
        "nothing given, nothing set: {env}"
    );
}

/// issue 10 §4: under `poolgrind cargo test` the runner hands each program's status back to
/// cargo unchanged and the verdict is cargo's: a `should_panic` doctest's rust_out exits 101 by
/// design and the run passes; a real doctest failure still gives 2. Doctests do run under
/// memcheck (Rust 1.95: rustdoc uses the target runner).
#[test]
fn issue10_should_panic_doctest_passes_and_a_real_failure_gives_2() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err, results) = cargo_in("doctests", tmp.path(), &["test", "--offline"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(results["cargo_exit_code"], 0);
    let procs = results["processes"].as_array().unwrap();
    let doctests: Vec<&Value> = procs.iter().filter(|p| p["binary"] == "rust_out").collect();
    assert_eq!(
        doctests.len(),
        2,
        "the two runnable doctests ran under memcheck: {procs:?}"
    );
    assert!(
        doctests.iter().any(|p| p["exit_code"] == 101),
        "the should_panic doctest exited 101: {doctests:?}"
    );
    assert!(procs.iter().all(|p| p["exit_judged_by_cargo"] == true));
    assert!(out.contains("passed: no memory errors"), "{out}");
    assert!(!out.contains("exited with status 101"), "{out}");

    let (code, out, err, results) = cargo_in(
        "doctests",
        tmp.path(),
        &["test", "--offline", "--features", "fail"],
    );
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(results["cargo_exit_code"], 101);
    assert!(
        out.contains("FAILED: cargo exited with status 101"),
        "{out}"
    );
}

/// Malformed and hostile logs never panic; a log with nothing readable is a valgrind failure.
#[test]
fn report_on_hostile_logs_never_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xml/hostile");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "xml") {
            let (code, out, err) = run(poolgrind().arg("report").arg(&path));
            assert!(
                [1, 3].contains(&code),
                "{}: exit {code}\n{out}\n{err}",
                path.display()
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    let (code, out, _) = run(poolgrind()
        .arg("report")
        .arg(dir.join("binary_garbage.xml")));
    assert_eq!(code, 3);
    assert!(out.contains("valgrind crashed / log truncated"), "{out}");
    let (code, _, err) = run(poolgrind().args(["report", "/nonexistent.xml"]));
    assert_eq!(code, 3);
    assert!(
        err.contains("cannot read valgrind log /nonexistent.xml"),
        "{err}"
    );
}

/// `run`: exit codes for a failing program and a timeout, and `--batch` with -j, --skip, --partition.
#[test]
fn run_exit_codes_and_batches() {
    let (code, out, _) = run(poolgrind().args(["run", "--", "sh", "-c", "exit 7"]));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("exited with status 7"), "{out}");

    let (code, out, _) = run(poolgrind().args(["run", "--timeout", "1", "--", "sleep", "30"]));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("timed out"), "{out}");

    let tmp = tempfile::tempdir().unwrap();
    let batch = tmp.path().join("batch.txt");
    std::fs::write(
        &batch,
        "# one program per line\n/bin/true\n/bin/false\nsh -c 'exit 0'\n",
    )
    .unwrap();
    let json = tmp.path().join("r.json");
    let (code, out, _) = run(poolgrind()
        .args([
            "run",
            "-j",
            "2",
            "--skip",
            "/bin/false",
            "--format",
            "json",
            "--output",
        ])
        .arg(&json)
        .arg("--batch")
        .arg(&batch));
    assert_eq!(code, 0, "{out}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["summary"]["processes"], 3);
    assert_eq!(r["summary"]["skipped"], 1);

    // Two shards cover the three lines exactly once.
    let mut ran = 0;
    for shard in ["1/2", "2/2"] {
        let (_, _, _) = run(poolgrind()
            .args(["run", "--partition", shard, "--format", "json", "--output"])
            .arg(&json)
            .arg("--batch")
            .arg(&batch));
        let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        ran +=
            r["summary"]["processes"].as_u64().unwrap() - r["summary"]["skipped"].as_u64().unwrap();
    }
    assert_eq!(ran, 3);
}

/// JSON results from two shards merge into one report; a baseline written from it silences it.
#[test]
fn merge_shards_and_baseline() {
    let xml = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xml");
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.json");
    let b = tmp.path().join("b.json");
    let (code, _, _) = run(poolgrind()
        .args(["report", "--format", "json", "-o"])
        .arg(&a)
        .arg(xml.join("leak.xml")));
    assert_eq!(code, 1);
    let (_, _, _) = run(poolgrind()
        .args(["report", "--format", "json", "-o"])
        .arg(&b)
        .arg(xml.join("invalid.xml")));
    let baseline = tmp.path().join("known.json");
    let (code, out, _) = run(poolgrind()
        .args(["report", "--merge", "--write-baseline"])
        .arg(&baseline)
        .arg(&a)
        .arg(&b));
    assert_eq!(code, 1);
    assert!(
        out.contains("FAILED: 6 memory errors (6 distinct)"),
        "{out}"
    );
    let (code, out, _) = run(poolgrind()
        .args(["report", "--merge", "--baseline"])
        .arg(&baseline)
        .arg(&a)
        .arg(&b));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("known in baseline: 6 errors"), "{out}");
    // A new error (not in the baseline) still fails.
    let (code, _, _) = run(poolgrind()
        .args(["report", "--baseline"])
        .arg(&baseline)
        .arg(xml.join("uninit.xml")));
    assert_eq!(code, 1);
}

/// `--trace-children` writes one log per process; `--keep-xml` keeps them; `--preload` without
/// the library is a clear setup error.
#[test]
fn trace_children_keep_xml_and_preload_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let keep = tmp.path().join("xml");
    let json = tmp.path().join("r.json");
    let (code, out, err) = run(poolgrind()
        .args(["run", "--trace-children", "--format", "json", "-o"])
        .arg(&json)
        .arg("--keep-xml")
        .arg(&keep)
        .args(["--", "sh", "-c", "/bin/true; /bin/true"]));
    assert_eq!(code, 0, "{out}\n{err}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let procs = r["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 3, "sh and two children");
    assert!(procs.iter().all(|p| p["log"] == "complete"));
    assert_eq!(procs[0]["binary"], "sh");
    assert_eq!(procs[0]["exit_code"], 0);
    assert_eq!(procs[1]["ppid"], procs[0]["pid"]);
    for p in procs {
        assert!(Path::new(p["xml_file"].as_str().unwrap()).is_file());
    }

    let (code, _, err) = run(poolgrind()
        .env("POOLGRIND_PRELOAD_LIB", "/nonexistent/libpoolgrind.so")
        .args(["run", "--preload", "--", "true"]));
    assert_eq!(code, 3);
    assert!(err.contains("preload library was not found"), "{err}");
}

/// Colour only when asked or on a terminal (stdout is a pipe here), never with NO_COLOR in auto.
#[test]
fn colour_only_when_wanted() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xml/leak.xml");
    let (_, out, _) = run(poolgrind()
        .args(["report", "--color", "always"])
        .arg(&fixture));
    assert!(
        out.contains("\x1b[1;31merror[Leak_DefinitelyLost]"),
        "{out}"
    );
    let (_, out, _) = run(poolgrind()
        .env_remove("NO_COLOR")
        .arg("report")
        .arg(&fixture));
    assert!(!out.contains('\x1b'), "{out}");
}
