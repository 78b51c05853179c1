//! Arena return, alone in its own test binary: the arena lists are process-wide, so a test
//! running beside it in the same process (the property test did, under libtest's threads)
//! scatters its own live pools through the arenas this test fills and keeps them alive. That
//! made the assertion below fail about one run in three on CI.

use std::alloc::{GlobalAlloc, Layout};

use poolgrind::{debug, PoolAlloc};

mod common;
use common::native;

static A: PoolAlloc = PoolAlloc::new();

/// Empty arenas kept mapped natively (`SPARE_ARENAS` in src/alloc/heap.rs) plus pymalloc's
/// rightmost one.
const KEPT_AT_MOST: usize = 16 + 1;

#[test]
fn arenas_are_given_back_when_their_pools_empty() {
    // Fill ~100 arenas with one size class and free everything: all but the kept spares must go
    // back to the OS. 96k blocks of 256 bytes (24.6 MB) also overflow the memcheck quarantine
    // (20,000,000 requested bytes, memcheck's --freelist-vol; no spare is kept there), so the
    // test holds under ci/memcheck too.
    let layout = Layout::from_size_align(256, 16).unwrap();
    let before = poolgrind::stats();
    let ptrs: Vec<usize> = (0..96_000)
        // SAFETY: a valid non-zero layout.
        .map(|_| unsafe { A.alloc(layout) } as usize)
        .collect();
    assert!(ptrs.iter().all(|&p| p != 0));
    let report = debug::check_heap().unwrap();
    if native() {
        // The default range (64 GiB) holds every arena.
        assert_eq!(report.arenas_in_range, report.arenas, "{report:?}");
    }
    let filled = poolgrind::stats().arenas_live;
    assert!(
        filled >= before.arenas_live + 24,
        "96k blocks took only {filled} arenas"
    );
    for p in ptrs {
        // SAFETY: blocks allocated just above with this layout.
        unsafe { A.dealloc(p as *mut u8, layout) };
    }
    debug::flush_current_thread();
    let report = debug::check_heap().unwrap();
    let s = poolgrind::stats();
    assert!(
        s.arenas_freed > before.arenas_freed,
        "no arena was returned: {s:?}"
    );
    // Pools still holding blocks (memcheck's quarantine keeps 20 MB of them) need arenas too.
    let pools: usize = s.classes.iter().map(|c| c.pools).sum();
    let bound = before.arenas_live + KEPT_AT_MOST + pools.div_ceil(64);
    assert!(
        s.arenas_live <= bound,
        "{} arenas live after freeing everything (was {}, bound {bound}): {s:?}",
        s.arenas_live,
        before.arenas_live
    );
    assert!(report.arenas <= s.arenas_highwater);
}

/// Natively every arena lies in one reserved range (`POOLGRIND_ARENA_SPACE`, 64 GiB by
/// default), and the page map answers from its flat half. With a range of four arenas, the
/// fifth and later are mapped apart: the map must then read its tree for them, and still the
/// flat map for arenas made in the range afterwards, or their blocks are taken for the system
/// allocator's (the pointer-only `free` of one hands it to glibc, which aborts; `usable_size`
/// asks glibc). Blocks of 16 bytes: class 0, whose flat entry without its known bit is 0. The
/// first round frees its blocks last first, so that the arenas kept as spares are the highest
/// and the range's low slots are given back; the second round makes arenas in those slots
/// again, after arenas beyond the range exist (the review's find: that arena got no flat
/// entries). The walker checks both halves of the map after each step. The test runs itself
/// again in a child whose allocator reads the small range at its first request (options are
/// read once per process).
#[test]
fn arenas_beyond_a_small_arena_space_are_still_known() {
    const SPACE: &str = "1048576"; // four arenas
    if std::env::var("POOLGRIND_ARENA_SPACE").as_deref() != Ok(SPACE) {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "arenas_beyond_a_small_arena_space_are_still_known",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("POOLGRIND_ARENA_SPACE", SPACE)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed: {text}");
        assert!(text.contains("1 passed"), "child ran no test: {text}");
        return;
    }
    // Under Valgrind there is no range (the tree alone): the same steps, nothing to count.
    let native = native();
    let layout = Layout::from_size_align(16, 16).unwrap();
    for round in 0..2 {
        // 600k blocks of 16 bytes: ~38 arenas, four in the range.
        let ptrs: Vec<usize> = (0..600_000)
            // SAFETY: a valid non-zero layout.
            .map(|_| unsafe { A.alloc(layout) } as usize)
            .collect();
        assert!(ptrs.iter().all(|&p| p != 0));
        let report = debug::check_heap().unwrap();
        assert!(report.arenas > 4, "round {round}: {report:?}");
        if native {
            assert!(report.arenas_in_range > 0, "round {round}: {report:?}");
        }
        for &p in &ptrs {
            // SAFETY: a live block of this allocator.
            let n = unsafe { poolgrind::raw::usable_size(p as *mut u8) };
            assert_eq!(n, 16, "round {round}: {p:#x} not found in its pool");
        }
        for &p in ptrs.iter().rev().step_by(2) {
            // SAFETY: blocks allocated just above, freed once; pointer-only free.
            unsafe { poolgrind::raw::free(p as *mut u8) };
        }
        debug::check_heap().unwrap();
        for &p in ptrs.iter().rev().skip(1).step_by(2) {
            // SAFETY: the other half, freed once.
            unsafe { A.dealloc(p as *mut u8, layout) };
        }
        debug::flush_current_thread();
        debug::check_heap().unwrap();
    }
    assert!(poolgrind::stats().arenas_freed > 0);
}
