// The deliberate-bug corpus, shared by `corpus` (PoolAlloc) and `corpus_system` (System).
// Each scenario is a `#[inline(never)]` function named `bug_*` (or `clean_*`) so that tests can
// find it on memcheck's stacks. Run: `corpus <scenario>`; `corpus --list` prints the names.

use std::alloc::{alloc, dealloc, realloc, Layout};
use std::cell::RefCell;
use std::hint::black_box;
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicPtr, Ordering};

#[allow(dead_code)]
struct Node {
    next: Option<Box<Node>>,
    payload: [u64; 3],
}

#[inline(never)]
fn bug_leak_one() {
    let b = Box::new([7u8; 40]);
    black_box(&b);
    std::mem::forget(b);
}

#[inline(never)]
fn bug_leak_list() {
    let mut head: Option<Box<Node>> = None;
    for i in 0..5 {
        head = Some(Box::new(Node {
            next: head,
            payload: [i; 3],
        }));
    }
    std::mem::forget(black_box(head));
}

#[allow(dead_code)]
struct Cyc {
    other: RefCell<Option<Rc<Cyc>>>,
    payload: [u64; 2],
}

#[inline(never)]
fn bug_leak_cycle() {
    let a = Rc::new(Cyc {
        other: RefCell::new(None),
        payload: [1, 2],
    });
    let b = Rc::new(Cyc {
        other: RefCell::new(Some(a.clone())),
        payload: [3, 4],
    });
    *a.other.borrow_mut() = Some(b.clone());
    drop(black_box(a));
    drop(black_box(b));
}

#[inline(never)]
fn bug_uaf_read() {
    let b = Box::new([5u8; 32]);
    let p = Box::into_raw(b);
    // SAFETY: none: this is the bug.
    unsafe {
        drop(Box::from_raw(p));
        black_box(ptr::read_volatile(p.cast::<u8>()));
    }
}

#[inline(never)]
fn bug_uaf_write() {
    let p = Box::into_raw(Box::new([5u8; 32]));
    // SAFETY: none: this is the bug.
    unsafe {
        drop(Box::from_raw(p));
        ptr::write_volatile(p.cast::<u8>(), 9);
    }
}

#[inline(never)]
fn bug_uaf_after_same_size_realloc() {
    let layout = Layout::from_size_align(48, 8).unwrap();
    // SAFETY: none: this is the bug (use after free once the size was allocated again).
    unsafe {
        let a = alloc(layout);
        a.write_bytes(1, 48);
        dealloc(a, layout);
        let b = alloc(layout); // pymalloc would hand `a` back here: the quarantine must not
        b.write_bytes(2, 48);
        black_box(ptr::read_volatile(a));
        dealloc(b, layout);
    }
}

#[inline(never)]
fn bug_overflow_small() {
    let layout = Layout::from_size_align(20, 1).unwrap(); // class 32: 12 bytes of slack
                                                          // SAFETY: none: this is the bug.
    unsafe {
        let p = alloc(layout);
        ptr::write_volatile(p.add(20), 1);
        dealloc(p, layout);
    }
}

#[inline(never)]
fn bug_overflow_exact_neighbour() {
    let layout = Layout::from_size_align(32, 8).unwrap(); // exactly a class size
                                                          // SAFETY: none: this is the bug (1 byte into the next block, which is live).
    unsafe {
        let p = alloc(layout);
        let q = alloc(layout);
        ptr::write_volatile(p.add(32), 1);
        dealloc(q, layout);
        dealloc(p, layout);
    }
}

#[inline(never)]
fn bug_double_free() {
    let layout = Layout::from_size_align(40, 8).unwrap();
    // SAFETY: none: this is the bug.
    unsafe {
        let p = alloc(layout);
        dealloc(p, layout);
        dealloc(black_box(p), layout);
    }
}

#[inline(never)]
fn bug_branch_on_fresh() {
    let layout = Layout::from_size_align(24, 8).unwrap();
    // SAFETY: none: reading uninitialised memory is the bug.
    unsafe {
        let p = alloc(layout);
        if ptr::read_volatile(p.add(3)) == 42 {
            println!("forty-two");
        }
        dealloc(p, layout);
    }
}

#[inline(never)]
fn bug_branch_on_recycled() {
    let layout = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: none: reading recycled, never-written memory is the bug.
    unsafe {
        // Cycle one size class through more than the quarantine so blocks really come back.
        for _ in 0..3 {
            let mut v = Vec::new();
            for _ in 0..2000 {
                let p = alloc(layout);
                p.write_bytes(0x2a, 64);
                v.push(p);
            }
            for p in v {
                dealloc(p, layout);
            }
        }
        let p = alloc(layout);
        if ptr::read_volatile(p.add(5)) == 42 {
            println!("recycled forty-two");
        }
        dealloc(p, layout);
    }
}

#[inline(never)]
fn bug_stale_after_realloc() {
    let layout = Layout::from_size_align(16, 8).unwrap();
    // SAFETY: none: the read through the old pointer is the bug.
    unsafe {
        let p = alloc(layout);
        p.write_bytes(3, 16);
        let q = realloc(p, layout, 4000); // another size class: the block moves
        black_box(ptr::read_volatile(p));
        dealloc(q, Layout::from_size_align(4000, 8).unwrap());
    }
}

static KEEP: AtomicPtr<[u8; 56]> = AtomicPtr::new(ptr::null_mut());

#[inline(never)]
fn bug_still_reachable() {
    KEEP.store(Box::into_raw(Box::new([1u8; 56])), Ordering::SeqCst);
}

/// Three live 32-byte blocks; a write 24 bytes past the end of the middle one. memcheck's own
/// malloc keeps inaccessible bytes on both sides of every block, so on glibc this lands in the
/// gap between two blocks; in a pool it must land in a red zone, not in the next live block.
#[inline(never)]
fn bug_overflow_far() {
    overflow_by(24);
}

/// As `bug_overflow_far`, 40 bytes past the end: beyond a 16-byte red zone and the next
/// block's 16-byte red zone, still inside the gap memcheck's malloc leaves (its red zone is
/// 24 bytes plus an 8-byte size field on each side of a block by default).
#[inline(never)]
fn bug_overflow_40_past_end() {
    overflow_by(40);
}

/// As `bug_overflow_far`, 64 bytes past the end: inside the next live block with memcheck's
/// default red zones (no error on glibc), inside the gap with `--redzone-size=64` (an error).
#[inline(never)]
fn bug_overflow_64_past_end() {
    overflow_by(64);
}

#[inline(never)]
fn overflow_by(past_end: usize) {
    let layout = Layout::from_size_align(32, 8).unwrap();
    // SAFETY: none: the write past the end of `p` is the bug.
    unsafe {
        let a = alloc(layout);
        let p = alloc(layout);
        let b = alloc(layout);
        for x in [a, p, b] {
            x.write_bytes(1, 32);
        }
        ptr::write_volatile(p.add(32 + past_end), 1);
        dealloc(b, layout);
        dealloc(p, layout);
        dealloc(a, layout);
    }
}

/// Three live 32-byte blocks; a write 24 bytes before the start of the middle one (into the
/// previous block's data if blocks had a red zone after them only).
#[inline(never)]
fn bug_underflow_far() {
    let layout = Layout::from_size_align(32, 8).unwrap();
    // SAFETY: none: the write before the start of `p` is the bug.
    unsafe {
        let a = alloc(layout);
        let p = alloc(layout);
        let b = alloc(layout);
        for x in [a, p, b] {
            x.write_bytes(1, 32);
        }
        ptr::write_volatile(p.sub(24), 1);
        dealloc(b, layout);
        dealloc(p, layout);
        dealloc(a, layout);
    }
}

/// Frees a `size`-byte block, then allocates `volume` bytes of blocks of the same size and
/// frees them, then allocates as many again and keeps them live (so that every block an
/// allocator let out of its quarantine is handed out again), and reads the first block. A
/// neighbour of the first block stays live throughout, as in a real heap (an allocator that
/// gives empty pools back would otherwise hand the memory to memcheck's own quarantine).
/// memcheck's malloc keeps `--freelist-vol` bytes (20 MB by default) of freed blocks away from
/// reuse, so it still reports "0 bytes inside a block of size `size` free'd" whenever `volume`
/// is below that.
#[inline(never)]
fn uaf_after_frees(size: usize, volume: usize) {
    let layout = Layout::from_size_align(size, 8).unwrap();
    let fill = |byte: u8| -> Vec<*mut u8> {
        (0..volume / size)
            .map(|_| {
                // SAFETY: a valid layout; the block is written within its size.
                unsafe {
                    let q = alloc(layout);
                    q.write_bytes(byte, size);
                    q
                }
            })
            .collect()
    };
    // SAFETY: none: the read of `p` after its free is the bug.
    unsafe {
        let p = alloc(layout);
        let neighbour = alloc(layout); // live throughout: p's pool never empties
        p.write_bytes(1, size);
        dealloc(p, layout);
        for q in fill(2) {
            dealloc(q, layout);
        }
        let live = fill(3);
        black_box(ptr::read_volatile(p));
        for q in live {
            dealloc(q, layout);
        }
        dealloc(neighbour, layout);
    }
}

/// A use after free after 8 MB of frees of the same size: more than poolgrind's former 4 MiB
/// quarantine, less than memcheck's default `--freelist-vol` (20 MB).
#[inline(never)]
fn bug_uaf_after_8mb_of_frees() {
    uaf_after_frees(500, 8_000_000);
}

/// realloc shrinks a 100-byte block to 40, then the program reads past the new end.
#[inline(never)]
fn bug_realloc_shrink_read_past_end() {
    let layout = Layout::from_size_align(100, 8).unwrap();
    // SAFETY: none: the read past the new end is the bug.
    unsafe {
        let p = alloc(layout);
        p.write_bytes(4, 100);
        let q = realloc(p, layout, 40);
        black_box(ptr::read_volatile(q.add(44)));
        dealloc(q, Layout::from_size_align(40, 8).unwrap());
    }
}

/// realloc grows a 24-byte block (class 32) to 200 bytes (class 208), then the program branches
/// on the new tail, which realloc never initialised.
#[inline(never)]
fn bug_realloc_grow_branch_on_tail() {
    let layout = Layout::from_size_align(24, 8).unwrap();
    // SAFETY: none: the branch on uninitialised bytes is the bug.
    unsafe {
        let p = alloc(layout);
        p.write_bytes(5, 24);
        let q = realloc(p, layout, 200);
        if ptr::read_volatile(q.add(100)) == 42 {
            println!("grown forty-two");
        }
        dealloc(q, Layout::from_size_align(200, 8).unwrap());
    }
}

/// A thread leaks a block and exits (joined): the leak is the thread's, found at exit.
#[inline(never)]
fn bug_leak_by_exited_thread() {
    std::thread::spawn(bug_leak_by_exited_thread_body)
        .join()
        .unwrap();
}

#[inline(never)]
fn bug_leak_by_exited_thread_body() {
    let b = Box::new([9u8; 72]);
    std::mem::forget(black_box(b));
}

static INTERIOR: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());

/// A block kept only through a pointer 8 bytes into it: "possibly lost".
#[inline(never)]
fn bug_possibly_lost_interior() {
    let layout = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: the block is valid for 64 bytes; keeping only an interior pointer is the bug.
    unsafe {
        let p = alloc(layout);
        p.write_bytes(6, 64);
        INTERIOR.store(p.add(8), Ordering::SeqCst);
    }
}

/// An aligned 8-byte load at offset 16 of a 20-byte block: 4 bytes in the block, 4 past its
/// end. With `--partial-loads-ok=yes` (memcheck's default) the load is legal and the 4 bytes
/// past the end are undefined (the branch on them is the error); with `=no` it is an
/// InvalidRead.
#[inline(never)]
fn bug_partial_load() {
    let layout = Layout::from_size_align(20, 8).unwrap();
    // SAFETY: none: the load past the end is the bug.
    unsafe {
        let p = alloc(layout);
        p.write_bytes(1, 20);
        let w = ptr::read_volatile(p.add(16).cast::<u64>());
        if w >> 32 == 42 {
            println!("partial forty-two");
        }
        dealloc(p, layout);
    }
}

#[inline(never)]
fn clean_program() {
    // Small and large blocks, realloc chains, threads with cross-thread frees.
    let mut v: Vec<Vec<u8>> = (0..2000).map(|i| vec![i as u8; i % 700]).collect();
    for (i, x) in v.iter_mut().enumerate() {
        x.resize((i * 7) % 1500, 1);
    }
    let mut s = String::new();
    for i in 0..500 {
        s.push_str(&i.to_string());
    }
    black_box(&s);
    let (tx, rx) = std::sync::mpsc::channel::<Box<[u8; 100]>>();
    let producer = std::thread::spawn(move || {
        for i in 0..2000 {
            tx.send(Box::new([i as u8; 100])).unwrap();
        }
    });
    let consumer = std::thread::spawn(move || rx.iter().map(|b| b[0] as usize).sum::<usize>());
    producer.join().unwrap();
    black_box(consumer.join().unwrap());
    let m: std::collections::BTreeMap<u32, String> =
        (0..3000).map(|i| (i, format!("v{i}"))).collect();
    black_box(m.len());
    drop(v);
}

/// Four threads allocate and hand batches of blocks to their neighbour, which frees them: many
/// threads working on the same pools at once (under memcheck this once made the allocator's own
/// header accesses racy; see `track::serialize`).
#[inline(never)]
fn clean_threads() {
    let threads = 4;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| std::sync::mpsc::channel::<Vec<Box<[u8]>>>())
        .unzip();
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let next = txs[(t + 1) % threads].clone();
            std::thread::spawn(move || {
                let mut batch = Vec::new();
                for i in 0..3000usize {
                    batch.push(vec![t as u8; (i * 31 + t) % 500 + 1].into_boxed_slice());
                    if batch.len() == 32 {
                        next.send(std::mem::take(&mut batch)).unwrap();
                    }
                    while let Ok(theirs) = rx.try_recv() {
                        black_box(theirs.iter().map(|b| b.len()).sum::<usize>());
                    }
                }
                drop(next);
                rx
            })
        })
        .collect();
    drop(txs);
    for h in handles {
        for theirs in h.join().unwrap().iter() {
            black_box(theirs.len());
        }
    }
}

const SCENARIOS: &[(&str, fn())] = &[
    ("clean_threads", clean_threads),
    ("leak_one", bug_leak_one),
    ("leak_list", bug_leak_list),
    ("leak_cycle", bug_leak_cycle),
    ("uaf_read", bug_uaf_read),
    ("uaf_write", bug_uaf_write),
    (
        "uaf_after_same_size_realloc",
        bug_uaf_after_same_size_realloc,
    ),
    ("overflow_small", bug_overflow_small),
    ("overflow_exact_neighbour", bug_overflow_exact_neighbour),
    ("double_free", bug_double_free),
    ("branch_on_fresh", bug_branch_on_fresh),
    ("branch_on_recycled", bug_branch_on_recycled),
    ("stale_after_realloc", bug_stale_after_realloc),
    ("still_reachable", bug_still_reachable),
    ("overflow_far", bug_overflow_far),
    ("overflow_40_past_end", bug_overflow_40_past_end),
    ("overflow_64_past_end", bug_overflow_64_past_end),
    ("underflow_far", bug_underflow_far),
    ("uaf_after_8mb_of_frees", bug_uaf_after_8mb_of_frees),
    (
        "realloc_shrink_read_past_end",
        bug_realloc_shrink_read_past_end,
    ),
    (
        "realloc_grow_branch_on_tail",
        bug_realloc_grow_branch_on_tail,
    ),
    ("leak_by_exited_thread", bug_leak_by_exited_thread),
    ("possibly_lost_interior", bug_possibly_lost_interior),
    ("partial_load", bug_partial_load),
    ("clean", clean_program),
];

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_default();
    if arg == "--list" {
        for (name, _) in SCENARIOS {
            println!("{name}");
        }
        return;
    }
    match SCENARIOS.iter().find(|(n, _)| *n == arg) {
        Some((_, f)) => f(),
        None => {
            eprintln!("unknown scenario {arg:?}; try --list");
            std::process::exit(2);
        }
    }
}
