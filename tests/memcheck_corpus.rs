//! The deliberate-bug corpus under real memcheck: every bug is reported with the right kind and
//! the user's function on the stack, and the verdicts equal those of the same program on the
//! system allocator (memcheck's own malloc): kind, leaked bytes and blocks, and the description
//! of the block an address error falls in ("0 bytes inside a block of size 32 free'd", with the
//! free and allocation stacks naming the bug's function or not, as on glibc).
//!
//! Rust programs: `examples/corpus.rs` (PoolAlloc as global allocator) vs `corpus_system.rs`.
//! C programs: `tests/corpus/bugs.c` with `libpoolgrind.so` preloaded vs without.
//!
//! The second half runs scenarios with memcheck's options that change what it reports for heap
//! blocks (`--redzone-size`, `--freelist-vol`, `--partial-loads-ok`, `--undef-value-errors`,
//! `--keep-stacktraces`, `--track-origins`): same verdicts as glibc under the same option.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use poolgrind::check::model::{Log, VgError};

/// Scenarios whose block description cannot be memcheck's: an address that no block's red zone
/// brackets is described by the arena-level block around it, which for memcheck's malloc is
/// the block's own chunk ("24 bytes after a block of size 32 in arena "client"") and for a pool
/// the whole arena (a 256 KiB heap block). Kind, stack and verdict are still compared.
const DESCRIPTION_DIFFERS: &[&str] = &["overflow_far"];

/// One error naming the bug: kind, leaked bytes and blocks, and each auxiliary description
/// (addresses masked; memcheck calls a live mempool chunk "client-defined" where a malloc'd
/// block is "alloc'd", with the same allocation stack) with whether its stack names the bug.
type Verdict = (String, Option<u64>, Option<u64>, Vec<(String, bool)>);

fn mask(what: &str) -> String {
    let mut out = String::with_capacity(what.len());
    let mut rest = what;
    while let Some(i) = rest.find("0x") {
        out.push_str(&rest[..i]);
        out.push_str("0x…");
        rest = rest[i + 2..].trim_start_matches(|c: char| c.is_ascii_hexdigit());
    }
    out.push_str(rest);
    out.replace("client-defined", "alloc'd")
}

fn describe(e: &VgError, needle: &str, with_aux: bool) -> Verdict {
    let aux = if with_aux {
        e.aux
            .iter()
            .map(|a| {
                let named = a
                    .stack
                    .iter()
                    .any(|f| f.func.as_deref().is_some_and(|n| n.contains(needle)));
                (mask(&a.what), named)
            })
            .collect()
    } else {
        Vec::new()
    };
    (e.kind.clone(), e.leaked_bytes, e.leaked_blocks, aux)
}

/// The verdicts of the errors whose stack names `needle`, sorted (the arena's bookkeeping block
/// is left out: see `common::is_arena_bookkeeping`).
fn verdicts_of(log: &Log, needle: &str, with_aux: bool) -> Vec<Verdict> {
    let mut v: Vec<_> = log
        .errors
        .iter()
        .filter(|e| on_stack(e, needle) && !is_arena_bookkeeping(e))
        .map(|e| describe(e, needle, with_aux))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Asserts that the pool run shows `kind` (or no error at all naming the bug when `None`) and
/// the same verdicts as the system allocator's run.
fn check(kind: Option<&str>, scenario: &str, pool: &Run, system: &Run) {
    let needle = format!("bug_{scenario}");
    let with_aux = !DESCRIPTION_DIFFERS.contains(&scenario);
    let got = verdicts_of(&pool.log, &needle, with_aux);
    match kind {
        Some(kind) => assert!(
            got.iter().any(|v| v.0 == kind),
            "{scenario}: expected a {kind} with {needle} on the stack; got:\n{}",
            dump(&pool.log)
        ),
        None => assert!(
            got.is_empty(),
            "{scenario}: expected no error naming {needle}; got:\n{}",
            dump(&pool.log)
        ),
    }
    let want = verdicts_of(&system.log, &needle, with_aux);
    assert_eq!(
        got,
        want,
        "{scenario}: verdicts differ from the system allocator's\npool:\n{}\nsystem:\n{}",
        dump(&pool.log),
        dump(&system.log)
    );
}

/// The Rust corpus on PoolAlloc and on System, under memcheck with `vg_args`; `env` is given to
/// the PoolAlloc run only.
fn rust_with(kind: Option<&str>, scenario: &str, vg_args: &[&str], env: &[(&str, &str)]) {
    let pool = valgrind_with("memcheck", vg_args, &example("corpus"), &[scenario], env);
    let system = valgrind_with(
        "memcheck",
        vg_args,
        &example("corpus_system"),
        &[scenario],
        &[],
    );
    check(kind, scenario, &pool, &system);
}

/// The C corpus with the preload and without, under memcheck with `vg_args`; `env` is given to
/// the preloaded run only.
fn c_with(kind: Option<&str>, scenario: &str, vg_args: &[&str], env: &[(&str, &str)]) {
    let prog = build_c("bugs");
    let lib = preload_lib();
    let mut pool_env = vec![("LD_PRELOAD", lib.to_str().unwrap())];
    pool_env.extend_from_slice(env);
    let pool = valgrind_with("memcheck", vg_args, &prog, &[scenario], &pool_env);
    let system = valgrind_with("memcheck", vg_args, &prog, &[scenario], &[]);
    check(kind, scenario, &pool, &system);
}

fn rust(kind: &str, scenario: &str) {
    rust_with(Some(kind), scenario, &[], &[]);
}

fn c(kind: &str, scenario: &str) {
    c_with(Some(kind), scenario, &[], &[]);
}

macro_rules! corpus {
    ($($name:ident: $kind:literal,)*) => {
        mod rust_program {
            $( #[test] fn $name() { super::rust($kind, stringify!($name)); } )*
        }
        mod c_program_preloaded {
            $( #[test] fn $name() { super::c($kind, stringify!($name)); } )*
        }
    };
}

corpus! {
    leak_one: "Leak_DefinitelyLost",
    leak_list: "Leak_IndirectlyLost",
    leak_cycle: "Leak_IndirectlyLost",
    uaf_read: "InvalidRead",
    uaf_write: "InvalidWrite",
    uaf_after_same_size_realloc: "InvalidRead",
    overflow_small: "InvalidWrite",
    overflow_exact_neighbour: "InvalidWrite",
    double_free: "InvalidFree",
    branch_on_fresh: "UninitCondition",
    branch_on_recycled: "UninitCondition",
    stale_after_realloc: "InvalidRead",
    still_reachable: "Leak_StillReachable",
    overflow_far: "InvalidWrite",
    overflow_40_past_end: "InvalidWrite",
    underflow_far: "InvalidWrite",
    uaf_after_8mb_of_frees: "InvalidRead",
    realloc_shrink_read_past_end: "InvalidRead",
    realloc_grow_branch_on_tail: "UninitCondition",
    leak_by_exited_thread: "Leak_DefinitelyLost",
    possibly_lost_interior: "Leak_PossiblyLost",
    partial_load: "UninitCondition",
}

/// Runs `poolgrind run [--preload] --vg-arg=ARG… -- prog scenario` and reads its one XML log:
/// the CLI, not the test, tells the allocator what valgrind was given.
fn through_poolgrind_run(preload: bool, vg_args: &[&str], prog: &Path, scenario: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_poolgrind"));
    cmd.args(["run", "--no-default-supp", "--keep-xml"])
        .arg(dir.path());
    if preload {
        cmd.arg("--preload")
            .env("POOLGRIND_PRELOAD_LIB", preload_lib());
    }
    for a in vg_args {
        cmd.arg(format!("--vg-arg={a}"));
    }
    cmd.arg("--").arg(prog).arg(scenario);
    cmd.env_remove("LD_PRELOAD");
    for (k, _) in std::env::vars() {
        if k.starts_with("POOLGRIND_") && k != "POOLGRIND_PRELOAD_LIB" {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("poolgrind runs");
    let logs: Vec<_> = walk_xml(dir.path());
    assert_eq!(
        logs.len(),
        1,
        "one process, one log; poolgrind said:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = poolgrind::check::xml::parse_file(&logs[0]).expect("a readable log");
    Run {
        log,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn walk_xml(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk_xml(&p));
        } else if p.extension().is_some_and(|x| x == "xml") {
            v.push(p);
        }
    }
    v
}

/// With memcheck's options, through the environment variable poolgrind's allocator reads.
mod options {
    use super::{c_with, rust_with};

    /// 64 bytes past the end of a 32-byte block lands in the next live block with memcheck's
    /// default red zones: no error on glibc, so none with the pools either.
    #[test]
    fn overflow_64_past_end_default_redzone_rust() {
        rust_with(None, "overflow_64_past_end", &[], &[]);
    }
    #[test]
    fn overflow_64_past_end_default_redzone_c() {
        c_with(None, "overflow_64_past_end", &[], &[]);
    }

    /// With `--redzone-size=64` the same write lands in a red zone: reported on both.
    #[test]
    fn redzone_size_64_by_env_rust() {
        rust_with(
            Some("InvalidWrite"),
            "overflow_64_past_end",
            &["--redzone-size=64"],
            &[("POOLGRIND_REDZONE", "64")],
        );
    }
    #[test]
    fn redzone_size_64_by_env_c() {
        c_with(
            Some("InvalidWrite"),
            "overflow_64_past_end",
            &["--redzone-size=64"],
            &[("POOLGRIND_REDZONE", "64")],
        );
    }

    /// A use after free after 8 MB of frees with `--freelist-vol=1000000`: memcheck's malloc
    /// has let the block go and handed it out again, so the read is of a live block and no error;
    /// `POOLGRIND_QUARANTINE` is the allocator's name for the option and must do the same.
    #[test]
    fn freelist_vol_1mb_by_env_rust() {
        rust_with(
            None,
            "uaf_after_8mb_of_frees",
            &["--freelist-vol=1000000"],
            &[("POOLGRIND_QUARANTINE", "1000000")],
        );
    }
    #[test]
    fn freelist_vol_1mb_by_env_c() {
        c_with(
            None,
            "uaf_after_8mb_of_frees",
            &["--freelist-vol=1000000"],
            &[("POOLGRIND_QUARANTINE", "1000000")],
        );
    }

    #[test]
    fn partial_loads_ok_no_rust() {
        rust_with(
            Some("InvalidRead"),
            "partial_load",
            &["--partial-loads-ok=no"],
            &[],
        );
    }
    #[test]
    fn partial_loads_ok_no_c() {
        c_with(
            Some("InvalidRead"),
            "partial_load",
            &["--partial-loads-ok=no"],
            &[],
        );
    }
    #[test]
    fn partial_loads_ok_yes_rust() {
        rust_with(
            Some("UninitCondition"),
            "partial_load",
            &["--partial-loads-ok=yes"],
            &[],
        );
    }
    #[test]
    fn partial_loads_ok_yes_c() {
        c_with(
            Some("UninitCondition"),
            "partial_load",
            &["--partial-loads-ok=yes"],
            &[],
        );
    }

    /// No definedness tracking: the branches on fresh, recycled and grown memory are silent.
    #[test]
    fn undef_value_errors_no_rust() {
        for s in [
            "branch_on_fresh",
            "branch_on_recycled",
            "realloc_grow_branch_on_tail",
        ] {
            rust_with(None, s, &["--undef-value-errors=no"], &[]);
        }
    }
    #[test]
    fn undef_value_errors_no_c() {
        for s in [
            "branch_on_fresh",
            "branch_on_recycled",
            "realloc_grow_branch_on_tail",
        ] {
            c_with(None, s, &["--undef-value-errors=no"], &[]);
        }
    }

    /// Which stacks a freed block's description carries.
    #[test]
    fn keep_stacktraces_rust() {
        for v in ["none", "alloc-and-free", "alloc-then-free"] {
            let arg = format!("--keep-stacktraces={v}");
            rust_with(Some("InvalidRead"), "uaf_read", &[&arg], &[]);
        }
    }
    #[test]
    fn keep_stacktraces_c() {
        for v in ["none", "alloc-and-free", "alloc-then-free"] {
            let arg = format!("--keep-stacktraces={v}");
            c_with(Some("InvalidRead"), "uaf_read", &[&arg], &[]);
        }
    }

    /// The origin of an uninitialised value: "created by a heap allocation", with its stack.
    #[test]
    fn track_origins_rust() {
        rust_with(
            Some("UninitCondition"),
            "branch_on_fresh",
            &["--track-origins=yes"],
            &[],
        );
    }
    #[test]
    fn track_origins_c() {
        c_with(
            Some("UninitCondition"),
            "branch_on_fresh",
            &["--track-origins=yes"],
            &[],
        );
    }
}

/// With memcheck's options given to `poolgrind run`, which hands them to the allocator.
mod options_through_poolgrind_run {
    use super::*;

    fn rust_run(kind: Option<&str>, scenario: &str, vg_args: &[&str]) {
        let pool = through_poolgrind_run(false, vg_args, &example("corpus"), scenario);
        let system = valgrind_with(
            "memcheck",
            vg_args,
            &example("corpus_system"),
            &[scenario],
            &[],
        );
        check(kind, scenario, &pool, &system);
    }

    fn c_run(kind: Option<&str>, scenario: &str, vg_args: &[&str]) {
        let prog = build_c("bugs");
        let pool = through_poolgrind_run(true, vg_args, &prog, scenario);
        let system = valgrind_with("memcheck", vg_args, &prog, &[scenario], &[]);
        check(kind, scenario, &pool, &system);
    }

    #[test]
    fn redzone_size_64_rust() {
        rust_run(
            Some("InvalidWrite"),
            "overflow_64_past_end",
            &["--redzone-size=64"],
        );
    }
    #[test]
    fn redzone_size_64_c() {
        c_run(
            Some("InvalidWrite"),
            "overflow_64_past_end",
            &["--redzone-size=64"],
        );
    }
    #[test]
    fn freelist_vol_1mb_rust() {
        rust_run(None, "uaf_after_8mb_of_frees", &["--freelist-vol=1000000"]);
    }
    #[test]
    fn freelist_vol_1mb_c() {
        c_run(None, "uaf_after_8mb_of_frees", &["--freelist-vol=1000000"]);
    }
}
