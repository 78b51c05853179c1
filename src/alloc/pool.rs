//! Pools of a size class (pymalloc's): the per-class used lists, taking and putting blocks,
//! the central free and allocation paths behind the thread caches, and the `live` bitmaps of
//! the strict geometries.
//!
//! Locking: one mutex per size class guards that class's used list and the headers of its
//! pools; the arena lock guards the arena lists. Order: class lock, then arena lock. Under
//! memcheck the serialisation lock stands for both (`serial::lock_class`).

use core::ptr::null_mut;
use core::sync::atomic::Ordering;

use super::meta::{self, meta};
use super::types::*;
use super::{arena, config, serial, track};

pub(crate) static CLASSES: [ClassState; NB_SMALL_SIZE_CLASSES] =
    [const { ClassState::new() }; NB_SMALL_SIZE_CLASSES];

/// Initialises an empty pool for `class` (`m == meta(pool)`).
///
/// # Safety
/// The class lock is held; the pool is ours and empty.
unsafe fn init_pool(m: *mut PoolHeader, class: usize) {
    let stride = config::stride(class);
    // SAFETY: the pool is ours and empty; the caller holds the class lock.
    unsafe {
        (*m).szidx = class as u32;
        (*m).nused = 0;
        (*m).stride = stride as u32;
        (*m).freeblock = null_mut();
        (*m).nextpool = null_mut();
        (*m).prevpool = null_mut();
        let first = POOL_HEADER_SIZE + PoolHeader::gap(stride, class);
        (*m).nextoffset = first as u32;
        (*m).maxnextoffset = (first + (PoolHeader::capacity(stride) - 1) * stride) as u32;
        (*m).live[0].store(0, Ordering::Relaxed);
        (*m).live[1].store(0, Ordering::Relaxed);
        let cap = PoolHeader::capacity(stride);
        (*m).avail = if cap >= STRICT_MAX_BLOCKS {
            [u64::MAX, u64::MAX]
        } else if cap > 64 {
            [u64::MAX, (1u64 << (cap - 64)) - 1]
        } else if cap == 64 {
            [u64::MAX, 0]
        } else {
            [(1u64 << cap) - 1, 0]
        };
    }
}

/// Native geometries: whether a pool can hand out another block.
///
/// # Safety
/// Class lock held; `m` is the metadata of a pool of this class.
#[inline(always)]
unsafe fn pool_has_free(m: *mut PoolHeader) -> bool {
    // SAFETY: forwarded.
    unsafe { !(*m).freeblock.is_null() || (*m).nextoffset <= (*m).maxnextoffset }
}

/// Takes one block from a pool with a free block (native geometries: the free list, then the
/// virgin blocks).
///
/// # Safety
/// Class lock held, `m == meta(pool)`, `pool_has_free(m)`.
#[inline(always)]
unsafe fn pool_take(pool: *mut PoolHeader, m: *mut PoolHeader) -> *mut u8 {
    // SAFETY: forwarded; blocks are inside the pool.
    unsafe {
        (*m).nused += 1;
        let b = (*m).freeblock;
        if !b.is_null() {
            (*m).freeblock = *b.cast::<*mut u8>();
            return b;
        }
        let b = pool.cast::<u8>().add((*m).nextoffset as usize);
        (*m).nextoffset += (*m).stride;
        b
    }
}

/// Puts one block back into its pool (native geometries: onto the free list).
///
/// # Safety
/// Class lock held, `m` is the metadata of the pool of `b`, a block that is out.
#[inline(always)]
unsafe fn pool_put(m: *mut PoolHeader, b: *mut u8) {
    // SAFETY: forwarded.
    unsafe {
        (*m).nused -= 1;
        *b.cast::<*mut u8>() = (*m).freeblock;
        (*m).freeblock = b;
    }
}

/// Unlinks a pool from its class's used list.
///
/// # Safety
/// Class lock held (or, under memcheck, on the real CPU: see `memcheck::host`); `m == meta(pool)`;
/// the pool is on the list.
pub(crate) unsafe fn unlink_used(cls: &ClassState, m: *mut PoolHeader) {
    // SAFETY: list manipulation under the class lock.
    unsafe {
        let next = (*m).nextpool;
        let prev = (*m).prevpool;
        if prev.is_null() {
            *cls.used.get() = next;
        } else {
            (*meta(prev)).nextpool = next;
        }
        if !next.is_null() {
            (*meta(next)).prevpool = prev;
        }
        (*m).nextpool = null_mut();
        (*m).prevpool = null_mut();
    }
}

/// Links a pool at the head of its class's used list.
///
/// # Safety
/// Class lock held (or, under memcheck, on the real CPU: see `memcheck::host`); `m == meta(pool)`;
/// the pool is on no list.
pub(crate) unsafe fn link_used(cls: &ClassState, pool: *mut PoolHeader, m: *mut PoolHeader) {
    // SAFETY: as unlink_used.
    unsafe {
        let head = *cls.used.get();
        (*m).prevpool = null_mut();
        (*m).nextpool = head;
        if !head.is_null() {
            (*meta(head)).prevpool = pool;
        }
        *cls.used.get() = pool;
    }
}

/// The first used pool of `class` and its metadata; a fresh pool when the class has none.
/// Null when no arena can be had.
///
/// # Safety
/// The class lock is held.
#[inline(always)]
unsafe fn first_used_pool(cls: &ClassState, class: usize) -> (*mut PoolHeader, *mut PoolHeader) {
    // SAFETY: class lock held.
    let pool = unsafe { *cls.used.get() };
    if pool.is_null() {
        // SAFETY: forwarded.
        return unsafe { new_used_pool(cls, class) };
    }
    (pool, meta(pool))
}

/// A fresh pool for `class`, linked as its first used pool (null when no arena can be had).
///
/// # Safety
/// The class lock is held; the class has no used pool.
#[cold]
#[inline(never)]
pub(crate) unsafe fn new_used_pool(
    cls: &ClassState,
    class: usize,
) -> (*mut PoolHeader, *mut PoolHeader) {
    // SAFETY: class lock held for every header and list access below.
    unsafe {
        let pool = arena::with_arenas(|l| arena::take_pool(l));
        if pool.is_null() {
            return (null_mut(), null_mut());
        }
        let m = meta(pool);
        init_pool(m, class);
        meta::set_class(pool, class);
        link_used(cls, pool, m);
        *cls.pools.get() += 1;
        *cls.capacity.get() += PoolHeader::capacity(config::stride(class));
        if *cls.pools.get() > SPLIT_POOLS && is_merged(class) {
            split_carrier(class);
        }
        (pool, m)
    }
}

/// Takes one block of `class` from its first used pool (making a pool if there is none); null
/// when no arena can be had. Native geometries (memcheck has `memcheck_alloc`).
///
/// # Safety
/// The class lock is held.
#[inline(always)]
unsafe fn take_block(cls: &ClassState, class: usize) -> *mut u8 {
    // SAFETY: class lock held for every header and list access below.
    unsafe {
        let (pool, m) = first_used_pool(cls, class);
        if pool.is_null() {
            return null_mut();
        }
        let b = pool_take(pool, m);
        if !pool_has_free(m) {
            unlink_used(cls, m);
        }
        *cls.nused.get() += 1;
        b
    }
}

/// Takes up to `n` blocks of `class`, linked through their first word, and returns
/// (head, count). A batch request (`n > 1`, thread-cache refills, never under memcheck) is
/// served whole from the transfer stack when it has one (its count may differ from `n`), else
/// from pools: a whole free list at a time, then the rest of a pool's virgin blocks
/// ([`carve_rest`]: up to `most` blocks in all, past `n`).
pub(crate) fn central_alloc(class: usize, n: usize, most: usize) -> (*mut u8, usize) {
    let cls = &CLASSES[class];
    let _g = serial::lock_class(&cls.lock);
    if n > 1 {
        // SAFETY: class lock held.
        if let Some(batch) = unsafe { pop_transfer(cls) } {
            return (batch.head, batch.count);
        }
    }
    let mut head: *mut u8 = null_mut();
    let mut got = 0;
    if n > 1 && !track::memcheck() {
        while got < n {
            // SAFETY: class lock held; natively the metadata is the in-pool header.
            unsafe {
                let (pool, m) = first_used_pool(cls, class);
                if pool.is_null() {
                    break;
                }
                let before = got;
                while got < n && !(*m).freeblock.is_null() {
                    let b = (*m).freeblock;
                    (*m).freeblock = *b.cast::<*mut u8>();
                    *b.cast::<*mut u8>() = head;
                    head = b;
                    got += 1;
                }
                if got < n {
                    (head, got) = carve_rest(pool, m, head, got, most);
                }
                (*m).nused += (got - before) as u32;
                if !pool_has_free(m) {
                    unlink_used(cls, m);
                }
            }
        }
        // SAFETY: class lock held.
        unsafe { *cls.nused.get() += got };
        return (head, got);
    }
    while got < n {
        // SAFETY: class lock held.
        let b = unsafe { take_block(cls, class) };
        if b.is_null() {
            break;
        }
        if n > 1 {
            // SAFETY: a free block of at least 16 bytes; its first word becomes the link.
            unsafe { *b.cast::<*mut u8>() = head };
        }
        head = b;
        got += 1;
    }
    (head, got)
}

/// Carves the rest of a pool's virgin blocks onto the chain `head` of `got` blocks, up to
/// `most` blocks in all, and returns the new head and count. A refill that carves a pool's
/// virgin blocks carves all of them (`most` is the bin's `tcache::piece`, which the blocks of a
/// fresh pool fit), so no two live threads are handed blocks of one pool's virgin run:
/// mimalloc's threads own their pages, and a pool's virgin run stands for that here.
///
/// Two threads that carved one pool in turn held blocks a few bytes apart, and a thread that
/// wrote its block while the other wrote its neighbour pulled the line, or the next one (the
/// prefetchers fetch lines around a miss), from the other core. mimalloc-bench's glibc-thread
/// (two threads running the same sequence, every byte of each block written) ran bimodally,
/// 110-205 M iterations in its 2 s as the threads' start-up carves happened to interleave:
/// 1.33 × mimalloc's time in the median. With runs cut at pairs of lines (128 B, the blocks
/// moved to start on one) it stayed at 1.27 ×; with the rest of the pool it is 0.98 ×, never
/// in the slow mode (issue 15, twenty-first round). The cost, a pool a thread for each class
/// it carves, did not show in peak RSS (glibc-thread 1.097 × glibc against 1.098, 16 load
/// phases): refills took most of a pool's virgin blocks in turn anyway. The fourteenth round's
/// short runs while a class had at most 4 pools, which let threads holding a few blocks share
/// a class's first pool, are gone.
///
/// # Safety
/// Class lock held, `m == meta(pool)` (native geometries).
#[inline(always)]
unsafe fn carve_rest(
    pool: *mut PoolHeader,
    m: *mut PoolHeader,
    mut head: *mut u8,
    mut got: usize,
    most: usize,
) -> (*mut u8, usize) {
    // SAFETY: class lock held; each block carved is inside the pool (`nextoffset <=
    // maxnextoffset`) and virgin, so its first word is ours for the link.
    unsafe {
        let stride = (*m).stride;
        while got < most && (*m).nextoffset <= (*m).maxnextoffset {
            let b = pool.cast::<u8>().add((*m).nextoffset as usize);
            (*m).nextoffset += stride;
            *b.cast::<*mut u8>() = head;
            head = b;
            got += 1;
        }
    }
    (head, got)
}

/// Gives back a chain of `n` blocks of `class` linked through their first word (or, when
/// `n == 1`, one block whose first word is not read).
///
/// # Safety
/// Every block is a block of `class` that is out of its pool and no longer used by anyone.
pub(crate) unsafe fn central_free(class: usize, chain: *mut u8, n: usize) {
    let cls = &CLASSES[class];
    let _g = serial::lock_class(&cls.lock);
    // SAFETY: class lock held; a chain of n > 1 blocks is kept whole.
    unsafe {
        let nt = *cls.ntransfer.get();
        if n > 1
            && nt < TRANSFER_SLOTS
            && (*cls.transfer_blocks.get() + n) * class_size(class) <= TRANSFER_BYTES
        {
            (*cls.transfer.get())[nt] = Batch {
                head: chain,
                count: n,
            };
            *cls.ntransfer.get() = nt + 1;
            *cls.transfer_blocks.get() += n;
            return;
        }
    }
    // SAFETY: class lock held; forwarded.
    unsafe { put_chain(cls, class, chain, n) };
}

/// Takes the top transfer batch of a class off its stack, if it has one.
///
/// # Safety
/// The class lock is held.
unsafe fn pop_transfer(cls: &ClassState) -> Option<Batch> {
    // SAFETY: class lock held (the caller's contract).
    unsafe {
        let nt = (*cls.ntransfer.get()).checked_sub(1)?;
        let batch = (*cls.transfer.get())[nt];
        *cls.ntransfer.get() = nt;
        *cls.transfer_blocks.get() -= batch.count;
        Some(batch)
    }
}

/// Puts a chain of `n` blocks of `class` linked through their first word (or, when `n == 1`,
/// one block whose first word is not read) back into their pools, one by one.
///
/// # Safety
/// The class lock is held; every block is a block of `class` out of its pool and no longer
/// used by anyone.
unsafe fn put_chain(cls: &ClassState, class: usize, mut chain: *mut u8, n: usize) {
    for i in 0..n {
        let b = chain;
        if i + 1 < n {
            // SAFETY: blocks of a chain are linked through their first word.
            chain = unsafe { *b.cast::<*mut u8>() };
        }
        // SAFETY: class lock held; b is a block of `class` out of its pool.
        unsafe { put_block(cls, class, b) };
    }
}

/// Puts every transfer batch's blocks back into their pools (tests: a state where a pool
/// holds blocks only if the program or a thread cache does). Transfer batches exist only off
/// Valgrind.
pub(crate) fn drain_transfer() {
    // No thread caches, no batch (and under memcheck a class lock may only be taken inside the
    // serialisation lock, `serial::lock_class`).
    if !config::tcache_on() {
        return;
    }
    for (class, cls) in CLASSES.iter().enumerate() {
        let _g = serial::lock_class(&cls.lock);
        // SAFETY: class lock held; every batch is a chain of `count` free blocks of `class`
        // out of their pools, taken off the stack before its blocks go back.
        while let Some(batch) = unsafe { pop_transfer(cls) } {
            // SAFETY: as above.
            unsafe { put_chain(cls, class, batch.head, batch.count) };
        }
    }
}

/// Puts one block back into its pool (class lock held): pymalloc's free, whose common case
/// (the pool stays used) touches only the pool's header. Native geometries (memcheck has
/// `memcheck::put_block_at`).
///
/// # Safety
/// The class lock is held; `b` is a block of `class` that is out of its pool.
#[inline(always)]
unsafe fn put_block(cls: &ClassState, class: usize, b: *mut u8) {
    let pool = PoolHeader::of(b);
    // SAFETY: class lock held; b belongs to `pool`.
    unsafe {
        let m = meta(pool);
        let was_full = !pool_has_free(m);
        pool_put(m, b);
        *cls.nused.get() -= 1;
        if was_full || (*m).nused == 0 {
            pool_changes_list(cls, class, pool, m, was_full);
        }
    }
}

/// The rare half of [`put_block`]: a full pool becomes used, or a pool becomes empty and goes
/// back to its arena.
///
/// # Safety
/// The class lock is held; `m == meta(pool)`; the pool was full (`was_full`) or is now empty.
#[cold]
#[inline(never)]
pub(crate) unsafe fn pool_changes_list(
    cls: &ClassState,
    class: usize,
    pool: *mut PoolHeader,
    m: *mut PoolHeader,
    was_full: bool,
) {
    // SAFETY: forwarded.
    unsafe {
        if (*m).nused == 0 {
            if !was_full {
                unlink_used(cls, m);
            }
            // The pool may go with its arena, and another arena come at its address with other
            // side entries: the class's memo must not name it (`ClassState::side_memo`).
            *cls.side_memo.get() = (null_mut(), null_mut());
            *cls.pools.get() -= 1;
            *cls.capacity.get() -= PoolHeader::capacity(config::stride(class));
            arena::with_arenas(|l| arena::give_pool(l, pool));
        } else {
            link_used(cls, pool, m);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strict geometries: the `live` bitmap (memcheck and debug).

/// Sets the live bit of block `b` of `pool` and returns the block's index.
///
/// # Safety
/// `m == meta(pool)` and `b` is a block boundary of `pool`.
#[inline]
unsafe fn set_live_bit(pool: *mut PoolHeader, m: *mut PoolHeader, b: *const u8) -> usize {
    // SAFETY: forwarded; `live` is atomic.
    unsafe {
        let stride = (*m).stride as usize;
        let gap = PoolHeader::gap(stride, (*m).szidx as usize);
        let i = PoolHeader::block_index(pool, gap, stride, b);
        (*m).live[i / 64].fetch_or(1u64 << (i % 64), Ordering::Relaxed);
        i
    }
}

/// Index of `b` in its pool if it is a block boundary (a pool without a stride, never carved,
/// has none).
///
/// # Safety
/// `m == meta(pool)`.
#[inline]
pub(crate) unsafe fn block_at(
    pool: *mut PoolHeader,
    m: *mut PoolHeader,
    b: *const u8,
) -> Option<usize> {
    // SAFETY: forwarded.
    let (stride, class, last) = unsafe {
        (
            (*m).stride as usize,
            (*m).szidx as usize,
            (*m).maxnextoffset as usize,
        )
    };
    if stride == 0 || class >= NB_SMALL_SIZE_CLASSES || stride < class_size(class) {
        return None;
    }
    let first = POOL_HEADER_SIZE + PoolHeader::gap(stride, class);
    let off = (b as usize).wrapping_sub(pool as usize + first);
    // `last` is the offset of the last block from the pool: no division for the bound.
    if off > last.wrapping_sub(first) || !off.is_multiple_of(stride) {
        return None;
    }
    Some(off / stride)
}

/// Clears the live bit of `b` in `pool`; false if it was not set (a double or invalid free) or
/// if `b` is not a block boundary of the pool.
///
/// # Safety
/// `m == meta(pool)`; `b` lies in `pool`.
#[inline]
unsafe fn clear_live_bit(pool: *mut PoolHeader, m: *mut PoolHeader, b: *const u8) -> bool {
    // SAFETY: forwarded; `live` is atomic.
    unsafe {
        let Some(i) = block_at(pool, m, b) else {
            return false;
        };
        let bit = 1u64 << (i % 64);
        (*m).live[i / 64].fetch_and(!bit, Ordering::Relaxed) & bit != 0
    }
}

/// Marks a block handed out to the program.
///
/// # Safety
/// `b` is a block of a live pool of this process.
pub(crate) unsafe fn mark_live(b: *const u8) {
    let pool = PoolHeader::of(b);
    // SAFETY: the header is ours; `live` is atomic, so no lock is needed (debug mode frees from
    // many threads).
    unsafe {
        set_live_bit(pool, meta(pool), b);
    }
}

/// Clears a block's live bit; false if it was not set (double or invalid free), or if `b` is
/// not a block boundary of its pool.
///
/// # Safety
/// `b` lies in a live pool of this process.
pub(crate) unsafe fn clear_live(b: *const u8) -> bool {
    let pool = PoolHeader::of(b);
    // SAFETY: as mark_live.
    unsafe { clear_live_bit(pool, meta(pool), b) }
}

/// Size class recorded in the header of the pool that contains `p`.
///
/// # Safety
/// `p` lies in a pool of this process (checked with `arena::owns`).
pub(crate) unsafe fn pool_class(p: *const u8) -> usize {
    // SAFETY: the pool is ours and in use (it holds the live block p).
    unsafe { (*meta(PoolHeader::of(p))).szidx as usize }
}
