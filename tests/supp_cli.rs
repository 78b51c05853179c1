//! `poolgrind supp …` end to end through the binary: exit codes, file:line messages, and the
//! gen → run → stale loop with real valgrind (skipped with a message if valgrind or gcc is missing).

use std::path::Path;
use std::process::{Command, Output};

fn poolgrind(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poolgrind"))
        .args(args)
        .current_dir(cwd)
        .env_remove("POOLGRIND_VALGRIND_FLAGS")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/supp/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn malformed_file_gives_file_line_and_setup_exit() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(
        t.path().join("bad.supp"),
        "{\n n\n Memcheck:Leak\n match-leak-kinds: definit\n fun:f\n}\n",
    )
    .unwrap();
    // A malformed input file is a setup error (3), as in every command (docs/exit-codes.md).
    let o = poolgrind(&["supp", "fmt", "bad.supp"], t.path());
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).starts_with("bad.supp:4: bad match-leak-kinds value `definit`"),
        "{}",
        stderr(&o)
    );
    let o = poolgrind(&["supp", "check", "bad.supp"], t.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad.supp:4:"));
    // Judging a malformed file is `check`'s job (1); a file it cannot read is a setup error (3).
    let o = poolgrind(&["supp", "check", "missing.supp"], t.path());
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("missing.supp: cannot read the file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn fmt_check_and_write() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(
        t.path().join("a.supp"),
        "{\n\tn\n\tMemcheck:Addr4\n\tfun:f   \n}",
    )
    .unwrap();
    let o = poolgrind(&["supp", "fmt", "--check", "a.supp"], t.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = poolgrind(&["supp", "fmt", "-w", "a.supp"], t.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(t.path().join("a.supp")).unwrap(),
        "{\n   n\n   Memcheck:Addr4\n   fun:f\n}\n"
    );
    let o = poolgrind(&["supp", "fmt", "--check", "a.supp"], t.path());
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn gen_from_xml_and_merge() {
    let t = tempfile::tempdir().unwrap();
    let o = poolgrind(
        &[
            "supp",
            "gen",
            "--from",
            &fixture("bugs.xml"),
            "--regenerate",
            "ci/gen-supp",
            "-o",
            "c.supp",
        ],
        t.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("8 entries from 9 errors"),
        "{}",
        stderr(&o)
    );
    let text = std::fs::read_to_string(t.path().join("c.supp")).unwrap();
    assert!(text.contains("# Regenerate with: ci/gen-supp\n"));
    let o = poolgrind(
        &[
            "supp",
            "merge",
            "c.supp",
            &fixture("general.supp"),
            "-o",
            "m.supp",
        ],
        t.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("covered: Leak_definite+indirect-make_list"),
        "{}",
        stderr(&o)
    );
    let o = poolgrind(&["supp", "fmt", "--check", "c.supp", "m.supp"], t.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The whole loop: `supp gen -- CMD`, `run --suppressions` passes, `--report-unused-supp`, then
/// `supp stale` over two shards' saved counts.
#[test]
fn gen_run_stale_loop_with_valgrind() {
    if !have("valgrind") || !have("gcc") {
        eprintln!("skipped: valgrind or gcc missing");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let ok = Command::new("gcc")
        .args(["-g", "-O0", "-o", "bugs", &fixture("src/bugs.c")])
        .current_dir(d)
        .status()
        .unwrap();
    assert!(ok.success());
    let o = poolgrind(&["run", "--no-default-supp", "--", "./bugs"], d);
    assert_eq!(
        o.status.code(),
        Some(1),
        "memory errors expected: {}",
        stderr(&o)
    );
    let o = poolgrind(
        &[
            "supp",
            "gen",
            "--no-default-supp",
            "-o",
            "bugs.supp",
            "--",
            "./bugs",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = poolgrind(&["supp", "check", "--valgrind", "bugs.supp"], d);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // One more entry that never fires.
    let mut text = std::fs::read_to_string(d.join("bugs.supp")).unwrap();
    text.push_str("\n{\n   never-fires\n   Memcheck:Addr2\n   fun:nowhere\n}\n");
    std::fs::write(d.join("bugs.supp"), &text).unwrap();
    let o = poolgrind(
        &[
            "run",
            "--no-default-supp",
            "--suppressions",
            "bugs.supp",
            "--report-unused-supp",
            "--keep-xml",
            "shard1",
            "--",
            "./bugs",
        ],
        d,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "all errors suppressed: {}",
        stderr(&o)
    );
    let line = text
        .lines()
        .position(|l| l.trim() == "never-fires")
        .unwrap()
        + 1;
    assert!(
        stderr(&o).contains(&format!(
            "bugs.supp:{line}: unused suppression `never-fires`"
        )),
        "{}",
        stderr(&o)
    );
    let o = poolgrind(
        &[
            "run",
            "--no-default-supp",
            "--suppressions",
            "bugs.supp",
            "--keep-xml",
            "shard2",
            "--",
            "./bugs",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0));
    let xml = |dir: &str| -> Vec<String> {
        std::fs::read_dir(d.join(dir))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "xml"))
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
    };
    let find = |dir: &str| -> Vec<String> {
        // --keep-xml may nest per-job directories.
        let mut v = xml(dir);
        for e in std::fs::read_dir(d.join(dir)).unwrap().flatten() {
            if e.path().is_dir() {
                v.extend(xml(&format!("{dir}/{}", e.file_name().to_string_lossy())));
            }
        }
        v
    };
    for (shard, counts) in [("shard1", "c1.json"), ("shard2", "c2.json")] {
        let logs = find(shard);
        assert!(!logs.is_empty(), "no XML in {shard}");
        let mut args = vec![
            "supp",
            "stale",
            "--supp",
            "bugs.supp",
            "--save-counts",
            counts,
        ];
        args.extend(logs.iter().map(String::as_str));
        let o = poolgrind(&args, d);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let o = poolgrind(
        &[
            "supp",
            "stale",
            "--fail",
            "--supp",
            "bugs.supp",
            "c1.json",
            "c2.json",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("unused suppression `never-fires`"), "{out}");
    assert!(
        out.contains("1 of 9 suppressions unused (counts from 2 logs)"),
        "{out}"
    );
}

#[test]
fn log_directories_are_searched_for_xml_and_an_empty_one_is_an_error() {
    // `--keep-xml DIR` leaves logs in nested directories: gen and stale take the directory.
    let t = tempfile::tempdir().unwrap();
    let nested = t.path().join("logs/shard-1/bin");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::copy(fixture("bugs.xml"), nested.join("vg-1.xml")).unwrap();
    std::fs::write(nested.join("job-1.out"), "not a log\n").unwrap();
    let o = poolgrind(&["supp", "gen", "--from", "logs", "-o", "d.supp"], t.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("8 entries from 9 errors in 1 log(s)"),
        "{}",
        stderr(&o)
    );
    let o = poolgrind(&["supp", "stale", "--supp", "d.supp", "logs"], t.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::fs::create_dir_all(t.path().join("empty")).unwrap();
    let o = poolgrind(&["supp", "stale", "--supp", "d.supp", "empty"], t.path());
    assert_eq!(o.status.code(), Some(3), "an unreadable input: exit 3");
    assert!(
        stderr(&o).contains("empty: a directory with no valgrind XML log in it"),
        "{}",
        stderr(&o)
    );
}
