//! Debug mode (`POOLGRIND_MODE=debug`, the analogue of CPython's debug hooks) and the heap
//! invariant walker that tests run after every step.
//!
//! Debug-mode block layout (`n` requested bytes, the class chosen for `n + 24`):
//!
//! ```text
//!  block                    user pointer
//!  |                        |
//!  [ n: u64 ][ FD x 8 ]     [ n bytes of data, CD on alloc ][ FD x 8 ][ rest of class ]
//! ```
//!
//! On free: a clear `live` bit means double (or invalid) free; a changed guard byte means an
//! underflow or overflow. Either prints a message to stderr and aborts. Freed blocks are
//! filled with DD.

use core::fmt::Write;
use core::sync::atomic::Ordering;

use super::heap::{self, CLASSES};
use super::stats::StackWriter;
use super::track;
use super::types::*;

pub use super::tcache::flush_current_thread;

const FORBIDDEN: u8 = 0xFD;
const CLEAN: u8 = 0xCD;
const DEAD: u8 = 0xDD;
const GUARD: usize = 8;
const PREFIX: usize = 16;

/// Lays out a fresh debug-mode block and returns the user pointer.
///
/// # Safety
/// `b` is a block of `class` just taken from the heap, with `size + 24 <= class_size(class)`.
pub unsafe fn on_alloc(b: *mut u8, size: usize, class: usize, zeroed: bool) -> *mut u8 {
    let _ = class;
    // SAFETY: the block holds PREFIX + size + GUARD bytes (class_for checked it).
    unsafe {
        heap::mark_live(b);
        b.cast::<u64>().write(size as u64);
        b.add(8).write_bytes(FORBIDDEN, GUARD);
        let p = b.add(PREFIX);
        p.write_bytes(if zeroed { 0 } else { CLEAN }, size);
        p.add(size).write_bytes(FORBIDDEN, GUARD);
        p
    }
}

/// Checks a debug-mode block being freed; returns the block start. Aborts with a message on a
/// double free or a damaged guard.
///
/// # Safety
/// `p` lies in one of our pools of `class`.
pub unsafe fn on_free(p: *mut u8, class: usize) -> *mut u8 {
    let b = p.wrapping_sub(PREFIX);
    // SAFETY: `b` is in the same pool as `p` when `p` is a user pointer; clear_live checks that
    // it is a block boundary before anything else is read.
    unsafe {
        if PoolHeader::of(b) != PoolHeader::of(p) || !heap::clear_live(b) {
            fail(
                p,
                "double free or free of a pointer that is not a live block",
                None,
            );
        }
        let size = b.cast::<u64>().read() as usize;
        let cap = class_size(class);
        if size + PREFIX + GUARD > cap {
            fail(p, "block header damaged (buffer underflow?)", None);
        }
        for i in 0..GUARD {
            if *b.add(8 + i) != FORBIDDEN {
                fail(
                    p,
                    "buffer underflow: guard byte before the block overwritten",
                    Some(i as isize - GUARD as isize),
                );
            }
        }
        for i in 0..GUARD {
            if *p.add(size + i) != FORBIDDEN {
                fail(
                    p,
                    "buffer overflow: guard byte after the block overwritten",
                    Some((size + i) as isize),
                );
            }
        }
        b.write_bytes(DEAD, cap);
    }
    b
}

/// Requested size of a live debug-mode block.
///
/// # Safety
/// `p` is a live debug-mode user pointer.
pub unsafe fn requested_size(p: *const u8) -> usize {
    // SAFETY: the size is stored PREFIX bytes before the user pointer.
    unsafe { p.sub(PREFIX).cast::<u64>().read() as usize }
}

#[cold]
fn fail(p: *const u8, what: &str, offset: Option<isize>) -> ! {
    let mut w = StackWriter::<256>::new();
    let _ = write!(w, "poolgrind debug: {what}: block {p:p}");
    if let Some(o) = offset {
        let _ = write!(w, ", at offset {o}");
    }
    let _ = writeln!(w);
    w.write_stderr();
    // SAFETY: abort has no preconditions; never unwinds.
    unsafe { libc::abort() }
}

/// What the walker saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeapReport {
    /// Arenas alive.
    pub arenas: usize,
    /// Pools in use (used or full), all classes.
    pub pools: usize,
    /// Blocks out of pools (with the program, cached or quarantined), all classes.
    pub blocks_out: usize,
}

/// Walks every arena, pool and list and checks the invariants written in `types`. Takes every
/// allocator lock (class locks, then the arena lock), so it is slow and meant for tests.
pub fn check_heap() -> Result<HeapReport, String> {
    heap::ensure_init();
    if !heap::pools_on() || heap::arena_table().is_null() {
        return Ok(HeapReport::default());
    }
    let _serial = track::serialize();
    let guards: [_; NB_SMALL_SIZE_CLASSES] = core::array::from_fn(|c| CLASSES[c].lock.lock());
    let r = walk();
    drop(guards);
    r.map_err(|e| String::from_utf8_lossy(&e.buf[..e.len]).into_owned())
}

/// An error message formatted without allocating: the walker holds every allocator lock, and
/// allocating then would deadlock when this allocator is the global one.
pub struct WalkError {
    buf: [u8; 240],
    len: usize,
}

impl Write for WalkError {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

impl WalkError {
    fn new(args: core::fmt::Arguments<'_>) -> Self {
        let mut e = WalkError {
            buf: [0; 240],
            len: 0,
        };
        let _ = e.write_fmt(args);
        e
    }
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(WalkError::new(format_args!($($fmt)+)));
        }
    };
}

fn walk() -> Result<HeapReport, WalkError> {
    let table = heap::arena_table();
    let narenas = heap::NARENAS.load(Ordering::Acquire);
    let mut per_class = [(0usize, 0usize, 0usize); NB_SMALL_SIZE_CLASSES]; // pools, cap, nused
    let mut on_used_list = [0usize; NB_SMALL_SIZE_CLASSES];
    let mut report = HeapReport::default();

    // The used lists.
    for (c, cls) in CLASSES.iter().enumerate() {
        // SAFETY: every class lock is held by check_heap.
        let mut pool = unsafe { *cls.used.get() };
        let mut prev: *mut PoolHeader = core::ptr::null_mut();
        while !pool.is_null() {
            // SAFETY: pools on a used list are live pools of this process.
            let (szidx, back, next, nused, stride) = unsafe {
                let m = heap::meta(pool);
                (
                    (*m).szidx,
                    (*m).prevpool,
                    (*m).nextpool,
                    (*m).nused,
                    (*m).stride,
                )
            };
            ensure!(
                szidx as usize == c,
                "pool {pool:p} on class {c}'s used list has szidx {szidx}"
            );
            ensure!(
                back == prev,
                "pool {pool:p}: prevpool {back:p}, expected {prev:p}"
            );
            ensure!(nused > 0, "pool {pool:p} on the used list is empty");
            ensure!(
                (nused as usize) < PoolHeader::capacity(stride as usize),
                "pool {pool:p} on the used list is full"
            );
            on_used_list[c] += 1;
            ensure!(
                on_used_list[c] <= narenas * POOLS_PER_ARENA,
                "class {c}: used list has a cycle"
            );
            prev = pool;
            pool = next;
        }
    }

    // Every arena and its pools, with the arena lock.
    let live = heap::with_arenas(|_| -> Result<usize, WalkError> {
        let mut live = 0;
        for i in 0..narenas {
            // SAFETY: slots below NARENAS are initialised; the arena lock is held.
            let ao = unsafe { &*table.add(i) };
            let base = ao.address.load(Ordering::Relaxed);
            if base == 0 {
                continue;
            }
            live += 1;
            ensure!(
                base % POOL_SIZE == 0,
                "arena {i} at {base:#x} is not page aligned"
            );
            let carved = (ao.pool_address - base) / POOL_SIZE;
            ensure!(
                carved <= POOLS_PER_ARENA,
                "arena {i}: pool_address beyond the arena"
            );
            let mut free = [false; POOLS_PER_ARENA];
            let mut nfree = 0;
            let mut fp = ao.freepools;
            while !fp.is_null() {
                let k = (fp as usize).wrapping_sub(base) / POOL_SIZE;
                ensure!(
                    k < carved && (fp as usize) % POOL_SIZE == 0,
                    "arena {i}: free pool {fp:p} outside its carved pools"
                );
                ensure!(!free[k], "arena {i}: pool {k} twice on the free-pool list");
                free[k] = true;
                nfree += 1;
                // SAFETY: free pools are carved pools of this arena.
                fp = unsafe { (*heap::meta(fp)).nextpool };
            }
            ensure!(
                ao.nfreepools as usize == nfree + POOLS_PER_ARENA - carved,
                "arena {i}: nfreepools {} but {} free + {} uncarved",
                ao.nfreepools,
                nfree,
                POOLS_PER_ARENA - carved
            );
            if track::memcheck() {
                for k in 0..POOLS_PER_ARENA {
                    let pool = (base + k * POOL_SIZE) as *mut PoolHeader;
                    let e = heap::side_entry_of(pool);
                    ensure!(!e.is_null(), "arena {i}: pool {k} has no side entry");
                }
            }
            for k in 0..carved {
                let pool = (base + k * POOL_SIZE) as *mut PoolHeader;
                if track::memcheck() {
                    // The in-pool copy of the arena index (all address_in_range reads).
                    track::open_header(pool.cast());
                    // SAFETY: a carved pool of a live arena, header open.
                    let own = unsafe { (*pool).arenaindex };
                    track::close_header(pool.cast());
                    ensure!(
                        own as usize == i,
                        "pool {pool:p}: in-pool arenaindex {own} in arena {i}"
                    );
                }
                check_pool(pool, i, free[k], &mut per_class)?;
            }
        }
        Ok(live)
    })?;
    report.arenas = live;

    // The usable list is sorted ascending and nfp2lasta is right (asserted inside).
    let mut last = 0u32;
    let mut bad = None;
    let mut usable_count = 0;
    let (live2, nfp_ok) = heap::arena_lists_snapshot(|ao, _| {
        // SAFETY: a live arena on the usable list.
        let nf = unsafe { (*ao).nfreepools };
        if nf == 0 || nf < last {
            bad = Some(nf);
        }
        last = nf;
        usable_count += 1;
    });
    ensure!(
        bad.is_none(),
        "usable arena list not sorted by free pools (saw {bad:?} after {last})"
    );
    ensure!(
        nfp_ok,
        "nfp2lasta names an arena with another free-pool count"
    );
    ensure!(
        live2 == live,
        "arena count {live2} but {live} arenas in the table"
    );

    for (c, cls) in CLASSES.iter().enumerate() {
        // SAFETY: class locks held.
        let (pools, cap, nused) =
            unsafe { (*cls.pools.get(), *cls.capacity.get(), *cls.nused.get()) };
        ensure!(
            (pools, cap, nused) == per_class[c],
            "class {c}: counters (pools, capacity, nused) = {:?}, walk found {:?}",
            (pools, cap, nused),
            per_class[c]
        );
        report.pools += pools;
        report.blocks_out += nused;
    }
    Ok(report)
}

/// Checks one carved pool (its metadata: the header natively, the side entry under memcheck).
fn check_pool(
    pool: *mut PoolHeader,
    arena: usize,
    is_free: bool,
    per_class: &mut [(usize, usize, usize); NB_SMALL_SIZE_CLASSES],
) -> Result<(), WalkError> {
    // SAFETY: the pool belongs to a live arena; locks held.
    let h = unsafe { &*heap::meta(pool) };
    ensure!(
        h.arenaindex as usize == arena,
        "pool {pool:p}: arenaindex {} in arena {arena}",
        h.arenaindex
    );
    if is_free {
        return Ok(());
    }
    let c = h.szidx as usize;
    ensure!(
        c < NB_SMALL_SIZE_CLASSES,
        "pool {pool:p}: size class {c} out of range"
    );
    let stride = h.stride as usize;
    ensure!(
        stride == heap::stride(c),
        "pool {pool:p}: stride {stride} for class {c}"
    );
    let cap = PoolHeader::capacity(stride);
    let nused = h.nused as usize;
    ensure!(
        nused > 0 && nused <= cap,
        "pool {pool:p}: nused {nused} of {cap} in a pool in use"
    );
    let free = if track::memcheck() {
        (h.avail[0].count_ones() + h.avail[1].count_ones()) as usize
    } else {
        let mut n = 0;
        let mut b = h.freeblock;
        let first = PoolHeader::first_block(pool) as usize;
        while !b.is_null() {
            let off = (b as usize).wrapping_sub(first);
            ensure!(
                off % stride == 0 && off / stride < cap,
                "pool {pool:p}: free block {b:p} is not a block of the pool"
            );
            n += 1;
            ensure!(n <= cap, "pool {pool:p}: free list has a cycle");
            // SAFETY: free blocks are linked through their first word.
            b = unsafe { *b.cast::<*mut u8>() };
        }
        let virgin = if h.nextoffset <= h.maxnextoffset {
            (h.maxnextoffset - h.nextoffset) as usize / stride + 1
        } else {
            0
        };
        n + virgin
    };
    ensure!(
        nused + free == cap,
        "pool {pool:p}: {nused} used + {free} free != capacity {cap}"
    );
    if heap::strict() {
        let live = (h.live[0].load(Ordering::Relaxed).count_ones()
            + h.live[1].load(Ordering::Relaxed).count_ones()) as usize;
        ensure!(
            live <= nused,
            "pool {pool:p}: {live} live blocks but nused {nused}"
        );
        let side = heap::side_entry_of(pool);
        if !side.is_null() {
            for i in 0..cap {
                let is_live = h.live[i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0;
                // SAFETY: the side entry of a live pool; locks held.
                let req = unsafe { (*side).req[i] } as usize;
                ensure!(
                    !is_live || req <= class_size(c),
                    "pool {pool:p}: block {i} records a request of {req} bytes in class {c}"
                );
            }
        }
    }
    per_class[c].0 += 1;
    per_class[c].1 += cap;
    per_class[c].2 += nused;
    Ok(())
}
