//! A thread cache's give-backs and refills (issue 15, nineteenth round), alone in their own test
//! binary: the transfer batches are process-wide, and a test beside it would move them.
//!
//! A bin over its cap gives its whole list back, a list that started empty in one O(1) batch,
//! and a refill takes such a batch whole; the caps keep that from thrashing (`tcache::refill`,
//! "Caps"). These tests read the walker's report: the transfer batches, and how many times the
//! calling thread's cache went to the central heap.

use std::alloc::{GlobalAlloc, Layout};

use poolgrind::{debug, PoolAlloc};

mod common;
use common::native;

static A: PoolAlloc = PoolAlloc::new();

/// The transfer batches are the process's: one test at a time reads them.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Blocks of 64 B: a bin's limit is 128 blocks (8 KiB worth), a give-back at most 65.
const SIZE: usize = 64;
const LIMIT: usize = 128;
const PIECE: usize = LIMIT / 2 + 1;

fn layout() -> Layout {
    Layout::from_size_align(SIZE, 16).unwrap()
}

fn take(n: usize) -> Vec<usize> {
    (0..n)
        .map(|i| {
            // SAFETY: a valid non-zero layout.
            let p = unsafe { A.alloc(layout()) };
            assert!(!p.is_null());
            // SAFETY: a fresh block of SIZE bytes.
            unsafe { p.write_bytes(i as u8, SIZE) };
            p as usize
        })
        .collect()
}

fn give(blocks: impl IntoIterator<Item = usize>) {
    for p in blocks {
        // SAFETY: a block of `take`, freed once, with its layout.
        unsafe { A.dealloc(p as *mut u8, layout()) };
    }
}

fn trips() -> u32 {
    debug::check_heap().unwrap().own_cache_trips
}

/// Whether this process runs the thread caches: natively, by default. Asserted where nothing
/// in the environment turns them off, so that the tests below cannot pass by skipping.
fn caches_on() -> bool {
    let default = native()
        && std::env::var_os("POOLGRIND_MODE").is_none()
        && std::env::var_os("POOLGRIND_TCACHE").is_none();
    let on = std::thread::spawn(|| {
        give(take(1));
        trips() > 0
    })
    .join()
    .unwrap();
    assert!(on || !default, "no thread cache natively with the defaults");
    on
}

/// glibc-simple (issue 15): a thread frees a run of 1 600 blocks. Each give-back used to walk
/// half its bin to cut the half it kept; now a bin that started empty hands its whole list over
/// in O(1), and the run goes back in batches of exactly a give-back's size.
#[test]
fn a_run_of_frees_goes_back_in_whole_batches() {
    if !caches_on() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap();
    std::thread::spawn(|| {
        let blocks = take(10 * PIECE);
        // An empty bin (and no transfer batch): the run below starts from there.
        debug::flush_current_thread();
        give(blocks);
        let after = debug::check_heap().unwrap();
        assert_eq!(
            (after.transfer_batches, after.transfer_blocks),
            (10, 10 * PIECE),
            "a run of {} frees from an empty bin: not {PIECE}-block batches",
            10 * PIECE
        );
        debug::flush_current_thread();
    })
    .join()
    .unwrap();
}

/// The caps' point: whatever a bin holds, a `malloc` and a `free` in turn stay in the thread's
/// cache. A bin that a refill (or a give-back) left with no room would go to the central heap
/// on every other call.
#[test]
fn malloc_and_free_in_turn_stay_in_the_thread_cache_at_any_bin_level() {
    if !caches_on() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap();
    std::thread::spawn(|| {
        // Transfer batches to refill from, then every level of a bin, reached both by
        // `malloc`s (refills) and by `free`s (give-backs).
        give(take(4 * LIMIT));
        for held in 0..=2 * LIMIT + 2 {
            let mut kept = take(held + 1);
            let start = trips();
            for _ in 0..1000 {
                give(take(1));
            }
            let went = trips().wrapping_sub(start);
            assert!(
                went <= 2,
                "holding {held} blocks, 1000 malloc/free pairs went to the central heap {went} times"
            );
            let start = trips();
            for _ in 0..1000 {
                give(kept.pop());
                kept.extend(take(1));
            }
            let went = trips().wrapping_sub(start);
            assert!(
                went <= 2,
                "holding {held} blocks, 1000 free/malloc pairs went to the central heap {went} times"
            );
            give(kept);
        }
        debug::flush_current_thread();
    })
    .join()
    .unwrap();
}
