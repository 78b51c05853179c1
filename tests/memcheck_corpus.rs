//! The deliberate-bug corpus under real memcheck: every bug is reported with the right kind and
//! the user's function on the stack, and the verdicts (kind, leaked bytes and blocks) equal those
//! of the same program on the system allocator.
//!
//! Rust programs: `examples/corpus.rs` (PoolAlloc as global allocator) vs `corpus_system.rs`.
//! C programs: `tests/corpus/bugs.c` with `libpoolgrind.so` preloaded vs without.

mod common;

use common::*;

fn check(kind: &str, scenario: &str, pool: Run, system: Run) {
    let needle = format!("bug_{scenario}");
    let got = verdicts(&pool.log, &needle);
    assert!(
        got.iter().any(|(k, _, _)| k == kind),
        "{scenario}: expected a {kind} with {needle} on the stack; got:\n{}",
        dump(&pool.log)
    );
    let want = verdicts(&system.log, &needle);
    assert_eq!(
        got,
        want,
        "{scenario}: verdicts differ from the system allocator's\npool:\n{}\nsystem:\n{}",
        dump(&pool.log),
        dump(&system.log)
    );
}

fn rust(kind: &str, scenario: &str) {
    let pool = valgrind("memcheck", &example("corpus"), &[scenario], &[]);
    let system = valgrind("memcheck", &example("corpus_system"), &[scenario], &[]);
    check(kind, scenario, pool, system);
}

fn c(kind: &str, scenario: &str) {
    let prog = build_c("bugs");
    let lib = preload_lib();
    let pool = valgrind(
        "memcheck",
        &prog,
        &[scenario],
        &[("LD_PRELOAD", lib.to_str().unwrap())],
    );
    let system = valgrind("memcheck", &prog, &[scenario], &[]);
    check(kind, scenario, pool, system);
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
}
