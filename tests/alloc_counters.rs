//! Issue 15: requests above the pools' limit are counted per thread (no shared counter on the
//! large-block path), and `stats()` still sees every one of them: while the thread runs, and
//! after it has exited. One test in its own binary, so that no other test's requests change
//! the count (`A` is not the global allocator: only this file's explicit requests reach it).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;

use poolgrind::PoolAlloc;

static A: PoolAlloc = PoolAlloc::new();

fn large_requests(n: usize) {
    let layout = Layout::from_size_align(1000, 8).unwrap();
    for i in 0..n {
        // SAFETY: valid layout.
        let p = unsafe { A.alloc(layout) };
        assert!(!p.is_null());
        // SAFETY: fresh block of 1000 bytes, freed with its own layout.
        unsafe {
            p.write_bytes(i as u8, 1000);
            A.dealloc(p, layout);
        }
    }
}

#[test]
fn system_allocations_counted_per_thread_survive_thread_exit() {
    // Initialise the allocator before the first snapshot.
    large_requests(1);
    let before = poolgrind::stats().system_allocs;
    let (done_tx, done_rx) = mpsc::channel();
    let (exit_tx, exit_rx) = mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        // Only large requests: this thread's cache is activated by its first one.
        large_requests(3000);
        done_tx.send(()).unwrap();
        exit_rx.recv().unwrap();
    });
    done_rx.recv().unwrap();
    let live = poolgrind::stats().system_allocs;
    assert_eq!(
        live - before,
        3000,
        "a live thread's count is missing from stats"
    );
    exit_tx.send(()).unwrap();
    worker.join().unwrap();
    let after = poolgrind::stats().system_allocs;
    assert_eq!(
        after - before,
        3000,
        "an exited thread's count was lost or counted twice"
    );
    large_requests(500);
    assert_eq!(poolgrind::stats().system_allocs - before, 3500);
}
