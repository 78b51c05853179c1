//! Arena return, alone in its own test binary: the arena lists are process-wide, so a test
//! running beside it in the same process (the property test did, under libtest's threads)
//! scatters its own live pools through the arenas this test fills and keeps them alive. That
//! made the assertion below fail about one run in three on CI.

use std::alloc::{GlobalAlloc, Layout};

use poolgrind::{debug, PoolAlloc};

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
    debug::check_heap().unwrap();
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
