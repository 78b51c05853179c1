//! Suppressions against real valgrind: generate from a failing run, rerun with the file, expect
//! zero errors — also after a rebuild that changes every Rust symbol hash — and valgrind accepts
//! every file poolgrind writes. Programs: tests/fixtures/supp/src (built here into a tempdir).
//!
//! If valgrind, gcc or rustc is missing the tests say so and pass (CI installs all three).

use std::path::{Path, PathBuf};
use std::process::Command;

use poolgrind::check::model::Log;
use poolgrind::check::run::{
    find_valgrind, run_under_memcheck, MemcheckSettings, Output, RunConfig,
};
use poolgrind::supp::check::valgrind_accepts;
use poolgrind::supp::gen::{generate, GenOptions};
use poolgrind::supp::{format_file, parse_file};

fn src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/supp/src")
        .join(name)
}

fn tools_missing() -> bool {
    let ok = |c: &str| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> = ["valgrind", "gcc", "rustc"]
        .into_iter()
        .filter(|c| !ok(c))
        .collect();
    if !missing.is_empty() {
        eprintln!("skipped: {} not installed", missing.join(", "));
    }
    !missing.is_empty()
}

fn run(cmd: &[&str], cwd: &Path) {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn memcheck(dir: &Path, label: &str, command: &[&str], supp: Option<&Path>) -> Vec<Log> {
    memcheck_with(dir, label, command, supp, &[])
}

fn memcheck_with(
    dir: &Path,
    label: &str,
    command: &[&str],
    supp: Option<&Path>,
    vg_args: &[&str],
) -> Vec<Log> {
    let cfg = RunConfig {
        settings: MemcheckSettings {
            vg_args: vg_args.iter().map(|a| a.to_string()).collect(),
            suppressions: supp.into_iter().map(Path::to_path_buf).collect(),
            no_default_supp: true,
            ..MemcheckSettings::default()
        },
        command: command.iter().map(Into::into).collect(),
        xml_dir: dir.join(format!("xml-{label}")),
        cwd: Some(dir.to_path_buf()),
        output: Output::Null,
        ..RunConfig::default()
    };
    let out = run_under_memcheck(&cfg).expect("valgrind runs");
    assert!(!out.logs().is_empty(), "{label}: no XML log");
    out.logs().to_vec()
}

fn error_kinds(logs: &[Log]) -> Vec<String> {
    let mut k: Vec<String> = logs
        .iter()
        .flat_map(|l| l.errors.iter().map(|e| e.kind.clone()))
        .collect();
    k.sort();
    k
}

fn suppressed(logs: &[Log]) -> u64 {
    logs.iter()
        .flat_map(|l| l.supp_counts.iter().map(|(_, c)| *c))
        .sum()
}

/// Generates a file from `logs`, checks valgrind accepts it, returns its path.
fn gen_file(dir: &Path, name: &str, logs: &[Log]) -> PathBuf {
    let (file, stats) = generate(logs, &GenOptions::default());
    assert!(stats.entries > 0, "{stats:?}");
    let path = dir.join(name);
    std::fs::write(&path, format_file(&file)).unwrap();
    parse_file(&path).expect("generated file parses");
    valgrind_accepts(&find_valgrind(None).unwrap(), &[&path]).expect("valgrind accepts it");
    path
}

#[test]
fn round_trip_c_corpus() {
    if tools_missing() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    run(
        &[
            "gcc",
            "-g",
            "-O0",
            "-o",
            "bugs",
            src("bugs.c").to_str().unwrap(),
        ],
        d,
    );
    let before = memcheck(d, "before", &["./bugs"], None);
    let kinds = error_kinds(&before);
    for k in [
        "InvalidFree",
        "InvalidRead",
        "InvalidWrite",
        "Leak_DefinitelyLost",
        "Leak_IndirectlyLost",
        "Leak_StillReachable",
        "Overlap",
        "SyscallParam",
        "UninitCondition",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    let supp = gen_file(d, "bugs.supp", &before);
    let after = memcheck(d, "after", &["./bugs"], Some(&supp));
    assert_eq!(
        error_kinds(&after),
        Vec::<String>::new(),
        "errors left with {}",
        supp.display()
    );
    assert_eq!(
        suppressed(&after) as usize,
        before.iter().map(|l| l.errors.len()).sum::<usize>()
    );
}

/// Symbols `nm` lists for the program's own functions (legacy mangling, with their hashes).
fn own_symbols(bin: &Path) -> Vec<String> {
    let out = Command::new("nm").arg(bin).output();
    let Ok(out) = out else { return Vec::new() };
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|s| s.starts_with("_ZN5rbugs"))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn rust_round_trip(test_harness: bool) {
    if tools_missing() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let rs = src("rbugs.rs");
    let build = |out: &str, extra: &[&str]| {
        let mut cmd = vec![
            "rustc",
            "--edition",
            "2021",
            "-g",
            "-C",
            "opt-level=0",
            "-o",
            out,
        ];
        if test_harness {
            cmd.push("--test");
        }
        cmd.extend_from_slice(extra);
        cmd.push(rs.to_str().unwrap());
        run(&cmd, d);
    };
    build("one", &["-C", "metadata=one"]);
    // Another build: new metadata (every symbol hash changes) and code inserted above everything.
    build("two", &["-C", "metadata=two", "--cfg", "shifted"]);
    let args: &[&str] = if test_harness {
        &["--test-threads=1"]
    } else {
        &[]
    };
    let cmd = |bin: &'static str| -> Vec<&str> {
        let mut c = vec![bin];
        c.extend_from_slice(args);
        c
    };
    // libtest's main thread creates its `Thread` handle lazily, only if it blocks in recv()
    // waiting for a test: a timing-dependent "possibly lost" block (supp/rust-std.supp has it).
    // Possible leaks are left out of the libtest runs so both runs see the same errors.
    let vg: &[&str] = if test_harness {
        &["--show-leak-kinds=definite,indirect,reachable"]
    } else {
        &[]
    };
    let before = memcheck_with(d, "before", &cmd("./one"), None, vg);
    let kinds = error_kinds(&before);
    for k in ["InvalidRead", "Leak_DefinitelyLost", "UninitCondition"] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    let supp = gen_file(d, "rbugs.supp", &before);
    let text = std::fs::read_to_string(&supp).unwrap();
    assert!(
        !text.contains("17h0") && text.contains("17h*"),
        "hashes not generalised:\n{text}"
    );

    let (s1, s2) = (own_symbols(&d.join("one")), own_symbols(&d.join("two")));
    if !s1.is_empty() {
        let common: Vec<&String> = s1.iter().filter(|s| s2.contains(s)).collect();
        assert!(
            common.is_empty(),
            "symbols shared by both builds: {common:?}"
        );
    }
    for (label, bin) in [("same", "./one"), ("rebuilt", "./two")] {
        let after = memcheck_with(d, label, &cmd(bin), Some(&supp), vg);
        assert_eq!(
            error_kinds(&after),
            Vec::<String>::new(),
            "{label}: errors left; file:\n{text}"
        );
        assert!(
            suppressed(&after) as usize >= before.iter().map(|l| l.errors.len()).sum::<usize>()
        );
    }
}

#[test]
fn round_trip_rust_survives_rebuild() {
    rust_round_trip(false);
}

#[test]
fn round_trip_rust_libtest_survives_rebuild() {
    rust_round_trip(true);
}

#[test]
fn stale_entries_are_reported_and_used_ones_are_not() {
    use poolgrind::supp::stale::{format_report, report, unused, SavedCounts};
    if tools_missing() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    run(
        &[
            "gcc",
            "-g",
            "-O0",
            "-o",
            "bugs",
            src("bugs.c").to_str().unwrap(),
        ],
        d,
    );
    let before = memcheck(d, "before", &["./bugs"], None);
    let (mut file, _) = generate(&before, &GenOptions::default());
    let fired = file
        .entries
        .iter()
        .find(|e| e.kind == "Addr4")
        .unwrap()
        .name
        .clone();
    let extra = format!(
        "{{\n   never-fires\n   Memcheck:Addr2\n   fun:no_such_function\n}}\n\
         {{\n   {fired}\n   Memcheck:Addr4\n   fun:shares_a_name_with_one_that_fires\n}}\n"
    );
    let mut text = format_file(&file);
    text.push('\n');
    text.push_str(&extra);
    let path = d.join("with-stale.supp");
    std::fs::write(&path, &text).unwrap();
    file = parse_file(&path).unwrap();
    valgrind_accepts(&find_valgrind(None).unwrap(), &[&path]).unwrap();
    // Two "shards": the same program twice, counts summed.
    let mut logs = memcheck(d, "shard1", &["./bugs"], Some(&path));
    logs.extend(memcheck(d, "shard2", &["./bugs"], Some(&path)));
    assert_eq!(error_kinds(&logs), Vec::<String>::new());
    let names: Vec<String> = unused(std::slice::from_ref(&file), &logs)
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["never-fires"]);
    let counts = SavedCounts::from_logs(&logs);
    assert_eq!(counts.logs, 2);
    assert_eq!(counts.counts[&fired], 2);
    let r = report(std::slice::from_ref(&file), &counts);
    assert_eq!(
        r.stale[0].line,
        text.lines()
            .position(|l| l.trim() == "never-fires")
            .unwrap()
            + 1
    );
    assert_eq!(r.ambiguous.len(), 1);
    assert_eq!(r.ambiguous[0].places.len(), 2);
    let rendered = format_report(&r).replace(&path.display().to_string(), "F");
    assert!(
        rendered.starts_with(&format!(
            "F:{}: unused suppression `never-fires` (Memcheck:Addr2)\n",
            r.stale[0].line
        )),
        "{rendered}"
    );
    assert!(rendered.contains("names 2 entries"), "{rendered}");
}

/// Every kind of file poolgrind writes — generated, merged, and the formatter's output for
/// unusual but valid input — is accepted by valgrind itself.
#[test]
fn valgrind_accepts_every_file_poolgrind_writes() {
    use poolgrind::supp::merge::merge;
    use poolgrind::supp::parse_str;
    if tools_missing() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/supp");
    let mut files: Vec<(String, String)> = Vec::new();
    let mut generated = Vec::new();
    for x in ["bugs.xml", "rbugs.xml", "rbugs_test.xml"] {
        let log = poolgrind::check::xml::parse_file(fixtures.join(x)).unwrap();
        let (f, _) = generate(&[log], &GenOptions::default());
        files.push((format!("gen-{x}.supp"), format_file(&f)));
        generated.push(parse_str(x, &format_file(&f)).unwrap());
    }
    generated.push(parse_file(&fixtures.join("general.supp")).unwrap());
    let (m, _) = merge(&generated, vec!["merged".into()]);
    files.push(("merged.supp".into(), format_file(&m)));
    let tricky = [
        "# only a comment\n",
        "{\n n\n Memcheck:Leak\n match-leak-kinds: definite,\n fun:f\n}\n",
        "{\n n\n Memcheck:Leak\n match-leak-kinds:all\n fun:f\n ...\n obj:*lib?.so*\n}\n",
        "{\n n\n Memcheck:Leak\n match-leak-kinds: none\n fun:f\n}\n",
        "{\n n\n Memcheck:Param\n write(buf)\n ...\n src:a.c:3\n}\n",
        "{\n n\n Memcheck, Helgrind:Addr4\n fun:\n}\n",
        "{\n n with spaces: and {braces}\n Helgrind:Race\n fun:f\n}\n",
        "{\n n\n Memcheck:Value16\n src:foo.c\n}\n",
        "\t{\r\n\tn\r\n\tMemcheck:Cond\r\n\t# c\r\n\r\n\tfun:x\r\n\t}\r\n",
    ];
    for (i, text) in tricky.iter().enumerate() {
        let f = parse_str("t", text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        files.push((format!("tricky{i}.supp"), format_file(&f)));
    }
    let vg = find_valgrind(None).unwrap();
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|(name, text)| {
            let p = t.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        })
        .collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    if let Err(e) = valgrind_accepts(&vg, &refs) {
        for p in &refs {
            valgrind_accepts(&vg, &[p]).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
        panic!("{e}");
    }
    // And valgrind rejects what the parser rejects for the same reason, e.g. an unknown kind.
    let bad = t.path().join("bad.supp");
    std::fs::write(&bad, "{\n n\n Memcheck:Addr64\n fun:f\n}\n").unwrap();
    let e = valgrind_accepts(&vg, &[&bad]).unwrap_err();
    assert!(e.contains("unknown tool suppression type"), "{e}");
}

/// The v0 walker understands every v0 symbol of a real Rust binary, and every normalised
/// symbol (v0 and legacy) still matches the symbol it came from.
#[test]
fn normalisation_handles_every_symbol_of_a_real_binary() {
    use poolgrind::supp::glob::glob_match;
    use poolgrind::supp::normalize::normalize_fun;
    let exe = std::env::current_exe().unwrap();
    let Ok(out) = Command::new("nm").arg(&exe).output() else {
        eprintln!("skipped: nm missing");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut v0, mut legacy, mut unparsed) = (0, 0, Vec::new());
    for sym in text.lines().filter_map(|l| l.split_whitespace().nth(2)) {
        let n = normalize_fun(sym);
        assert!(glob_match(&n, sym), "{n} does not match {sym}");
        if sym.starts_with("_R") {
            v0 += 1;
            if n == sym && sym.contains("Cs") {
                unparsed.push(sym.to_string());
            }
        } else if sym.starts_with("_ZN") && sym.contains("17h") {
            legacy += 1;
            assert!(n.contains("17h*"), "{sym} → {n}");
        }
    }
    assert!(v0 > 100 && legacy > 100, "v0 {v0}, legacy {legacy}");
    assert!(
        unparsed.is_empty(),
        "{} of {v0} v0 symbols not understood, e.g. {:?}",
        unparsed.len(),
        &unparsed[..unparsed.len().min(5)]
    );
}
