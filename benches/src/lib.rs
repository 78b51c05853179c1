//! Allocator workloads for the side-by-side benchmarks (issue 6).
//!
//! Every workload is generic over `A: GlobalAlloc` and called with the allocator value
//! directly (no trait object, no `#[global_allocator]`), so poolgrind's `PoolAlloc`, glibc
//! (`std::alloc::System`), mimalloc and jemalloc run the very same monomorphised code in one
//! process, and the harness can interleave them round by round.
//!
//! | workload   | what one "op" is                              | shape                                    |
//! |------------|-----------------------------------------------|------------------------------------------|
//! | `churn`    | free one block + allocate its replacement     | 10 000 live blocks, 8–512 B, random slot |
//! | `free`     | allocate one block and free it at once        | sizes 16–256 B cycling: the fast-path floor |
//! | `trees`    | allocate one tree node (and, later, free it)  | binary trees up to depth 16, bulk build / bulk free, a long-lived tree beside them |
//! | `realloc`  | one `realloc` call                            | 4 interleaved chains, 8 B +16 up to 1 KiB, then doubling to 64 KiB |
//! | `prodcons` | one block allocated by thread A, freed by B   | 2 threads, SPSC ring of 4096 slots, 16–256 B |
//!
//! The collections workload (`collections`) runs through `#[global_allocator]`, so it lives in
//! four tiny binaries (`src/bin/coll_*.rs`), one per allocator.
//!
//! Sizes of the mixed workloads: half of the requests are 8–64 B, a quarter 65–256 B, a quarter
//! 257–512 B (small objects dominate real programs, the tail reaches poolgrind's largest class).
//! Random numbers come from an inline xorshift generator (a handful of instructions, the same
//! for every allocator) with a fixed seed: every allocator sees the same request sequence.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The workloads the in-process harness knows, in table order.
pub const WORKLOADS: &[&str] = &["churn", "free", "trees", "realloc", "prodcons"];

/// Result of one timed run: how many ops, and how long the timed part took.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Operations performed in the timed section.
    pub ops: u64,
    /// Wall time of the timed section.
    pub time: Duration,
}

impl Run {
    /// Nanoseconds per op.
    pub fn ns_per_op(&self) -> f64 {
        self.time.as_nanos() as f64 / self.ops as f64
    }
}

/// A tiny xorshift64 generator (not for anything but picking benchmark sizes).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    /// Next 64 random bits.
    #[inline(always)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A request size of the mixed distribution (see the module docs).
    #[inline(always)]
    pub fn mixed_size(&mut self) -> usize {
        let r = self.next();
        let pick = (r >> 60) & 3;
        let v = (r & 0xffff) as usize;
        match pick {
            0 | 1 => 8 + v % 57, // 8..=64
            2 => 65 + v % 192,   // 65..=256
            _ => 257 + v % 256,  // 257..=512
        }
    }
}

#[inline(always)]
fn layout(size: usize) -> Layout {
    // SAFETY-free: 8 is a power of two and sizes here are tiny.
    Layout::from_size_align(size, 8).expect("valid layout")
}

/// Small-object churn: a live set of 10 000 blocks; each op frees a random slot's block and
/// allocates a new one of a random size in its place.
pub fn churn<A: GlobalAlloc>(a: &A, ops: u64) -> Run {
    const LIVE: usize = 10_000;
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut slots: Vec<(*mut u8, usize)> = Vec::with_capacity(LIVE);
    for _ in 0..LIVE {
        let s = rng.mixed_size();
        // SAFETY: non-zero size; the block is written within bounds and freed below.
        let p = unsafe { a.alloc(layout(s)) };
        assert!(!p.is_null());
        unsafe { p.write(s as u8) };
        slots.push((p, s));
    }
    let t = Instant::now();
    for i in 0..ops {
        let r = rng.next();
        let k = (r % LIVE as u64) as usize;
        let (p, s) = slots[k];
        let ns = rng.mixed_size();
        // SAFETY: `p` was allocated with `layout(s)` by `a`; the new block is written in bounds.
        unsafe {
            a.dealloc(p, layout(s));
            let q = a.alloc(layout(ns));
            q.write(i as u8);
            slots[k] = (q, ns);
        }
    }
    let time = t.elapsed();
    for (p, s) in slots {
        // SAFETY: live blocks of `a`.
        unsafe { a.dealloc(p, layout(s)) };
    }
    Run { ops, time }
}

/// Alloc-then-free: each op allocates one block and frees it right away (sizes cycle through
/// eight classes). The floor of an allocator's fast path.
pub fn alloc_free<A: GlobalAlloc>(a: &A, ops: u64) -> Run {
    const SIZES: [usize; 8] = [16, 32, 64, 128, 256, 48, 96, 24];
    let t = Instant::now();
    for i in 0..ops {
        let s = SIZES[(i & 7) as usize];
        // SAFETY: non-zero size; freed with the same layout. black_box keeps the pair from being
        // elided (LLVM may delete a malloc/free pair whose block is never observed).
        unsafe {
            let p = a.alloc(layout(s));
            p.write_volatile(i as u8);
            a.dealloc(black_box(p), layout(s));
        }
    }
    Run {
        ops,
        time: t.elapsed(),
    }
}

#[repr(C)]
struct Node {
    left: *mut Node,
    right: *mut Node,
    val: u64,
}

fn build<A: GlobalAlloc>(a: &A, depth: u32, n: &mut u64) -> *mut Node {
    // SAFETY: Node has a non-zero size.
    let p = unsafe { a.alloc(Layout::new::<Node>()) }.cast::<Node>();
    assert!(!p.is_null());
    *n += 1;
    let (l, r) = if depth == 0 {
        (null_mut(), null_mut())
    } else {
        (build(a, depth - 1, n), build(a, depth - 1, n))
    };
    // SAFETY: `p` is a fresh block for one Node.
    unsafe {
        p.write(Node {
            left: l,
            right: r,
            val: depth as u64,
        })
    };
    p
}

fn check_and_free<A: GlobalAlloc>(a: &A, p: *mut Node) -> u64 {
    if p.is_null() {
        return 0;
    }
    // SAFETY: `p` is a node built by `build` with `a`, freed exactly once (trees do not share).
    unsafe {
        let n = &*p;
        let s = n.val + check_and_free(a, n.left) + check_and_free(a, n.right);
        a.dealloc(p.cast(), Layout::new::<Node>());
        s
    }
}

/// Binary trees: a long-lived tree of depth 12 stays alive while, for depths 4, 8, 12 and 16,
/// `2^(16 - d)` trees of depth `d` are built and freed in bulk. One op = one node (allocated
/// and later freed); `reps` repeats the whole sequence.
pub fn trees<A: GlobalAlloc>(a: &A, reps: u64) -> Run {
    let mut ops = 0;
    let t = Instant::now();
    let mut keep = 0u64;
    let long = build(a, 12, &mut ops);
    for _ in 0..reps {
        for d in [4u32, 8, 12, 16] {
            for _ in 0..(1u32 << (16 - d)) {
                let tree = build(a, d, &mut ops);
                keep = keep.wrapping_add(check_and_free(a, tree));
            }
        }
    }
    keep = keep.wrapping_add(check_and_free(a, long));
    black_box(keep);
    Run {
        ops,
        time: t.elapsed(),
    }
}

/// Sizes a realloc chain goes through: 8, 24, … (+16) up to 1 KiB (crossing poolgrind's 512 B
/// limit into the system allocator), then doubling to 64 KiB.
pub fn realloc_sizes() -> Vec<usize> {
    let mut v = Vec::new();
    let mut s = 8;
    while s <= 1024 {
        v.push(s);
        s += 16;
    }
    let mut s = 2048;
    while s <= 64 << 10 {
        v.push(s);
        s *= 2;
    }
    v
}

/// Realloc growth: `chains` times, 4 blocks grow side by side (so the newest block is not
/// always at the top of the heap) through [`realloc_sizes`]; the last byte of each new size is
/// written. One op = one `realloc`.
pub fn realloc_growth<A: GlobalAlloc>(a: &A, chains: u64) -> Run {
    let sizes = realloc_sizes();
    let mut ops = 0;
    let t = Instant::now();
    for _ in 0..chains {
        let mut ps = [null_mut::<u8>(); 4];
        for p in ps.iter_mut() {
            // SAFETY: non-zero size.
            *p = unsafe { a.alloc(layout(sizes[0])) };
            unsafe { p.write(1) };
        }
        for w in sizes.windows(2) {
            for p in ps.iter_mut() {
                // SAFETY: `*p` is live with layout(w[0]); the new size is non-zero.
                unsafe {
                    *p = a.realloc(*p, layout(w[0]), w[1]);
                    p.add(w[1] - 1).write(2);
                }
                ops += 1;
            }
        }
        let last = *sizes.last().expect("non-empty");
        for p in ps {
            // SAFETY: live with layout(last).
            unsafe { a.dealloc(p, layout(last)) };
        }
    }
    Run {
        ops,
        time: t.elapsed(),
    }
}

/// A bounded single-producer single-consumer ring of pointers.
struct Ring {
    slots: Vec<AtomicPtr<u8>>,
    /// Next slot the producer writes (only the producer stores it).
    tail: Padded,
    /// Next slot the consumer reads (only the consumer stores it).
    head: Padded,
}

#[repr(align(128))]
struct Padded(AtomicUsize);

const RING: usize = 4096;

#[inline]
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        // 2 shared cores: let the other side run rather than burn our slice.
        std::thread::yield_now();
    }
}

/// Producer/consumer with cross-thread frees: thread A allocates `ops` blocks (16–256 B),
/// writes its size into each and passes it through a lock-free ring; thread B reads the size
/// and frees the block. Wall time of the whole exchange, per block.
pub fn prodcons<A: GlobalAlloc + Sync>(a: &A, ops: u64) -> Run {
    let ring = Ring {
        slots: (0..RING).map(|_| AtomicPtr::new(null_mut())).collect(),
        tail: Padded(AtomicUsize::new(0)),
        head: Padded(AtomicUsize::new(0)),
    };
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut rng = Rng::new(0x1234_5678);
            for i in 0..ops as usize {
                let size = 16 + (rng.next() % 241) as usize;
                // SAFETY: non-zero size; the block holds at least 8 bytes.
                let p = unsafe { a.alloc(layout(size)) };
                assert!(!p.is_null());
                unsafe { p.cast::<u64>().write(size as u64) };
                let mut spins = 0;
                while i - ring.head.0.load(Ordering::Acquire) >= RING {
                    backoff(&mut spins);
                }
                ring.slots[i % RING].store(p, Ordering::Relaxed);
                ring.tail.0.store(i + 1, Ordering::Release);
            }
        });
        s.spawn(|| {
            for i in 0..ops as usize {
                let mut spins = 0;
                while ring.tail.0.load(Ordering::Acquire) <= i {
                    backoff(&mut spins);
                }
                let p = ring.slots[i % RING].load(Ordering::Relaxed);
                ring.head.0.store(i + 1, Ordering::Release);
                // SAFETY: the producer wrote the block's size in its first word before
                // publishing it (Release/Acquire on `tail`); the block is freed once.
                unsafe {
                    let size = p.cast::<u64>().read() as usize;
                    a.dealloc(p, layout(size));
                }
            }
        });
    });
    Run {
        ops,
        time: t.elapsed(),
    }
}

/// Default size of one run of each workload (about 10–40 ms natively).
pub fn default_ops(workload: &str) -> u64 {
    match workload {
        "churn" => 1_000_000,
        "free" => 2_000_000,
        "trees" => 1,
        "realloc" => 2_000,
        "prodcons" => 300_000,
        _ => panic!("unknown workload {workload}"),
    }
}

/// Runs `workload` once with `a`, `ops` scaled by `scale` (workloads with a fixed shape take it
/// as a repetition count).
pub fn run<A: GlobalAlloc + Sync>(a: &A, workload: &str, ops: u64) -> Run {
    match workload {
        "churn" => churn(a, ops),
        "free" => alloc_free(a, ops),
        "trees" => trees(a, ops),
        "realloc" => realloc_growth(a, ops),
        "prodcons" => prodcons(a, ops),
        _ => panic!("unknown workload {workload}"),
    }
}

/// The collections workload, through the global allocator: `BTreeMap<String, Vec<u32>>`,
/// `HashMap<u64, String>`, string formatting and concatenation, sorting, and removing half of
/// each map. `scale` rounds; returns a checksum so nothing is optimised away.
pub fn collections(scale: u32) -> u64 {
    use std::collections::{BTreeMap, HashMap};
    use std::fmt::Write;
    let mut sum = 0u64;
    let mut rng = Rng::new(42);
    for round in 0..scale {
        let mut bt: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        let mut hm: HashMap<u64, String> = HashMap::new();
        for i in 0..20_000u32 {
            let k = rng.next();
            let key = format!("key-{:x}-{}", k & 0xffff, i);
            let n = (k >> 48) as usize % 12;
            bt.entry(key)
                .or_default()
                .extend((0..n as u32).map(|x| x ^ i));
            let mut s = String::new();
            for w in 0..(k >> 40) % 6 {
                let _ = write!(s, "{w}:{i};");
            }
            hm.insert(k % 30_000, s);
        }
        let mut words: Vec<String> = hm.values().filter(|s| !s.is_empty()).cloned().collect();
        words.sort();
        let joined = words.iter().take(2_000).fold(String::new(), |mut acc, w| {
            acc.push_str(w);
            acc
        });
        sum = sum.wrapping_add(joined.len() as u64 + round as u64);
        let keys: Vec<String> = bt.keys().step_by(2).cloned().collect();
        for k in keys {
            if let Some(v) = bt.remove(&k) {
                sum = sum.wrapping_add(v.len() as u64);
            }
        }
        hm.retain(|k, _| k % 2 == 0);
        sum = sum.wrapping_add(bt.len() as u64 + hm.len() as u64);
    }
    sum
}

/// The live-set churn through the global allocator (`Box<[u8]>` of mixed sizes), for the
/// `#[global_allocator]` binaries: `ops` replacements in a live set of 10 000.
pub fn global_churn(ops: u64) -> u64 {
    let mut rng = Rng::new(7);
    let mut live: Vec<Box<[u8]>> = (0..10_000)
        .map(|_| vec![1u8; rng.mixed_size()].into_boxed_slice())
        .collect();
    let mut sum = 0u64;
    for _ in 0..ops {
        let k = (rng.next() % live.len() as u64) as usize;
        let s = rng.mixed_size();
        sum = sum.wrapping_add(live[k][0] as u64);
        live[k] = vec![2u8; s].into_boxed_slice();
    }
    sum
}

/// Main of the `#[global_allocator]` binaries: `coll_* [collections|churn] [scale]`; prints
/// the checksum and the in-process time.
pub fn global_main(name: &str) {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("collections");
    let t = Instant::now();
    let sum = match what {
        "collections" => collections(args.get(2).map_or(3, |s| s.parse().expect("scale"))),
        "churn" => global_churn(args.get(2).map_or(1_000_000, |s| s.parse().expect("ops"))),
        _ => {
            eprintln!("usage: {name} [collections|churn] [scale]");
            std::process::exit(2);
        }
    };
    println!(
        "{name} {what} checksum={sum} ms={:.1}",
        t.elapsed().as_secs_f64() * 1e3
    );
}
