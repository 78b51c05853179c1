//! Thread caches and a class's first pools, alone in their own test binary: the pool counts
//! below are process-wide, and a test running beside it would add pools of its own.

use std::alloc::{GlobalAlloc, Layout};

use poolgrind::{debug, PoolAlloc};

mod common;
use common::native;

static A: PoolAlloc = PoolAlloc::new();

const SIZE: usize = 480;

/// Issue 15 (mimalloc-bench's glibc-thread, peak RSS): each thread cache's refills grow (4
/// blocks, then 8, …), and a refill used to carve that many virgin blocks at once, so a thread
/// holding 5 blocks of 480 B had carved 12 and opened a second pool, and the next thread used
/// that one. While a class has few pools a refill now carves 2 blocks of this size, and 7
/// blocks held by two threads fit the class's one pool (8 blocks of 480 B).
#[test]
fn threads_holding_a_few_blocks_of_a_class_share_its_first_pool() {
    let layout = Layout::from_size_align(SIZE, 16).unwrap();
    let take = move |n: usize| -> Vec<usize> {
        (0..n)
            // SAFETY: a valid non-zero layout.
            .map(|_| unsafe { A.alloc(layout) } as usize)
            .collect()
    };
    let first = std::thread::spawn(move || take(5)).join().unwrap();
    let second = std::thread::spawn(move || take(2)).join().unwrap();
    let all: Vec<usize> = first.iter().chain(&second).copied().collect();
    assert!(all.iter().all(|&p| p != 0));
    for &p in &all {
        // SAFETY: a live block of SIZE bytes.
        unsafe { (p as *mut u8).write_bytes(0xA5, SIZE) };
    }
    let class = poolgrind::stats()
        .classes
        .into_iter()
        .find(|c| c.size == SIZE)
        .expect("a class of 480 bytes");
    // Under memcheck blocks have red zones (fewer to a pool) and there are no thread caches;
    // debug mode's guard bytes move a request to a larger class, `malloc` mode has no pools.
    if native()
        && matches!(
            std::env::var("POOLGRIND_MODE").as_deref(),
            Err(_) | Ok("pool")
        )
    {
        let per_pool = (class.in_use + class.cached + class.free) / class.pools.max(1);
        assert!(
            per_pool >= all.len(),
            "a pool of {SIZE} B holds {per_pool} blocks"
        );
        assert_eq!(
            class.pools, 1,
            "7 blocks of {SIZE} B held by two threads took {} pools: {class:?}",
            class.pools
        );
    }
    for p in all {
        // SAFETY: blocks allocated above with this layout, each freed once.
        unsafe { A.dealloc(p as *mut u8, layout) };
    }
    debug::check_heap().unwrap();
}
