//! Many threads allocating and freeing, with most frees done by another thread than the one
//! that allocated; then every invariant and the counters are checked.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;

use poolgrind::{debug, PoolAlloc};

static A: PoolAlloc = PoolAlloc::new();

#[test]
fn cross_thread_frees_under_stress() {
    let threads = 4;
    let per_thread = 20_000;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..threads {
        let (tx, rx) = mpsc::channel::<Vec<(usize, usize)>>();
        senders.push(tx);
        receivers.push(rx);
    }
    let handles: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let next = senders[(t + 1) % threads].clone();
            std::thread::spawn(move || {
                let mut rng = 0x9E3779B97F4A7C15u64 ^ t as u64;
                let mut batch = Vec::new();
                for i in 0..per_thread {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let size = (rng % 600) as usize + 1;
                    let layout = Layout::from_size_align(size, 8).unwrap();
                    // SAFETY: valid layout.
                    let p = unsafe { A.alloc(layout) };
                    assert!(!p.is_null());
                    // SAFETY: fresh block of `size` bytes.
                    unsafe { p.write_bytes(t as u8, size) };
                    batch.push((p as usize, size));
                    if batch.len() == 64 || i + 1 == per_thread {
                        next.send(std::mem::take(&mut batch)).unwrap();
                    }
                    while let Ok(theirs) = rx.try_recv() {
                        free_all(theirs);
                    }
                }
                drop(next);
                // Blocks still arriving from the neighbour.
                (rx, t)
            })
        })
        .collect();
    drop(senders);
    let rxs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (rx, _) in rxs {
        for theirs in rx.iter() {
            free_all(theirs);
        }
    }
    // The worker threads have exited: their caches were flushed by the key destructor.
    debug::flush_current_thread();
    let report = debug::check_heap().unwrap();
    let s = poolgrind::stats();
    let in_use: usize = s.classes.iter().map(|c| c.in_use).sum();
    assert!(
        in_use < 1000,
        "blocks leaked by exited threads: {in_use} in use; {report:?}\n{s}"
    );
}

fn free_all(v: Vec<(usize, usize)>) {
    for (p, size) in v {
        let p = p as *mut u8;
        // SAFETY: the block was filled with one byte value by its allocating thread.
        let first = unsafe { *p };
        // SAFETY: as above.
        assert!(
            (0..size).all(|i| unsafe { *p.add(i) } == first),
            "block corrupted"
        );
        // SAFETY: allocated with this size and align 8.
        unsafe { A.dealloc(p, Layout::from_size_align(size, 8).unwrap()) };
    }
}
