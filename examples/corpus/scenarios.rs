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
