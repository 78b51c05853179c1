//! Thread caches and a class's first pools, alone in their own test binary: the pool counts
//! below are process-wide, and a test running beside it would add pools of its own.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::{Arc, Barrier};

use poolgrind::{debug, PoolAlloc};

mod common;
use common::native;

static A: PoolAlloc = PoolAlloc::new();

const SIZE: usize = 480;

/// Issue 15 (mimalloc-bench's glibc-thread, twenty-first round): two threads whose refills
/// carved one pool in turn held blocks a few bytes apart, and each write to a block pulled the
/// line, or its neighbour, from the other core (glibc-thread ran at 120-205 M iterations as
/// the carves happened to interleave). A refill that carves a pool's virgin blocks now carves
/// all of them, so two live threads never hold blocks of one pool's virgin run. Before, a
/// refill carved 2 blocks of this size while the class had at most 4 pools, and the second
/// thread's 2 blocks came from the first thread's pool.
#[test]
fn two_live_threads_never_carve_blocks_from_one_pool() {
    let layout = Layout::from_size_align(SIZE, 16).unwrap();
    let took = Arc::new(Barrier::new(2));
    let done = Arc::new(Barrier::new(2));
    let take = move |n: usize, first: bool, took: Arc<Barrier>, done: Arc<Barrier>| {
        if !first {
            took.wait();
        }
        let blocks: Vec<usize> = (0..n)
            // SAFETY: a valid non-zero layout.
            .map(|_| unsafe { A.alloc(layout) } as usize)
            .collect();
        if first {
            took.wait();
        }
        // Both threads hold their blocks (and their caches) until both have taken them.
        done.wait();
        blocks
    };
    let (t1, d1) = (took.clone(), done.clone());
    let first = std::thread::spawn(move || take(5, true, t1, d1));
    let second = std::thread::spawn(move || take(2, false, took, done));
    let first = first.join().unwrap();
    let second = second.join().unwrap();
    let all: Vec<usize> = first.iter().chain(&second).copied().collect();
    assert!(all.iter().all(|&p| p != 0));
    for &p in &all {
        // SAFETY: a live block of SIZE bytes.
        unsafe { (p as *mut u8).write_bytes(0xA5, SIZE) };
    }
    // Under memcheck there are no thread caches; debug mode's guard bytes move a request to a
    // larger class, `malloc` mode has no pools.
    if native()
        && matches!(
            std::env::var("POOLGRIND_MODE").as_deref(),
            Err(_) | Ok("pool")
        )
    {
        // A pool is one 4 KiB page (`types::POOL_SIZE`).
        let pool = |p: &usize| p & !4095;
        for p in &second {
            assert!(
                !first.iter().any(|q| pool(q) == pool(p)),
                "the second thread's block {p:#x} is in a pool the first thread carved: \
                 first {first:x?}, second {second:x?}"
            );
        }
    }
    for p in all {
        // SAFETY: blocks allocated above with this layout, each freed once.
        unsafe { A.dealloc(p as *mut u8, layout) };
    }
    debug::check_heap().unwrap();
}
