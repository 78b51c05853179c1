//! The memcheck paths: under memcheck every pool block is a mempool chunk of exactly the
//! requested size, freed blocks wait in a quarantine (`quarantine`), and the pool metadata lives
//! in the side table (`meta`). Written for memcheck alone, one copy each: under memcheck every
//! guest instruction, memory access, call and stack frame is paid for many times over.
//!
//! The common cases of `malloc` and `free` keep their books on the real CPU (`host`: one
//! request a `malloc`, one for sixteen frees, `pending`), and the frame that hands the block
//! out or takes it back announces it to memcheck. Every other function here runs with the
//! serialisation lock held (`serial`), but these: [`alloc_here`] and [`free_ptr`] (the real
//! CPU's half takes no lock; their guest halves take it), [`alloc_slow`], which takes it and
//! lets it go, and `pending`'s (a thread's own slots; what they keep in the guest takes the
//! lock).

mod host;
pub(crate) mod pending;
pub(crate) mod quarantine;

use core::ptr::null_mut;
use core::sync::atomic::{AtomicU32, Ordering};

use super::meta::{self, meta, side_entry};
use super::pool::{self, CLASSES};
use super::types::*;
use super::{arena, serial, sys, track};

/// Hands out a block of `size` bytes of `class` under memcheck, the serialisation lock held: a
/// mempool chunk of exactly `size` bytes, announced in this frame; the rest of the stride (the
/// class's slack and the gaps on both sides, as memcheck's own malloc leaves them) stays
/// NOACCESS. Null when no pool can be had. For the entry points that are not
/// [`alloc_here`]'s (calloc, memalign, realloc, a nested `malloc`).
#[inline(always)]
pub(crate) fn alloc(class: usize, size: usize) -> *mut u8 {
    let b = take_serialised(class, size);
    if !b.is_null() {
        track::mempool_alloc(b, size);
    }
    b
}

/// [`take_block`] from `class`'s first used pool, a new pool made if the class has none; null
/// when no pool can be had. Nothing is announced.
#[inline(always)]
fn take_serialised(class: usize, size: usize) -> *mut u8 {
    let cls = &CLASSES[class];
    debug_assert!(serial::serialized_by_me());
    // SAFETY: serialised (the lock stands for the class lock); a used pool has an available
    // block.
    unsafe {
        let mut pool = *cls.used.get();
        if pool.is_null() {
            pool = pool::new_used_pool(cls, class).0;
            if pool.is_null() {
                return null_mut();
            }
        }
        let b = take_block(cls, pool, size);
        debug_assert!(!b.is_null(), "a used pool without a free block");
        b
    }
}

/// The memcheck allocation of a small block (`size` at most `config::pool_limit()`), for the
/// frames that announce blocks (the C `malloc`'s, Rust's `dispatch::alloc`), inlined there:
///
/// 1. the bookkeeping runs on the real CPU ([`host::carve`], one request), in the common case
///    (the lock free, the class with a used pool);
/// 2. else in the guest ([`alloc_slow`], a call that hands `size` back, so that nothing lives
///    across it and the frame saves no register);
/// 3. one `MEMPOOL_ALLOC` request announces the block, whichever way it came: every block from
///    one call site shares its allocation stack to the instruction, as memcheck's leak check
///    groups them.
#[inline(always)]
pub(crate) fn alloc_here(size: usize) -> *mut u8 {
    debug_assert!(size <= super::config::pool_limit());
    // SAFETY: `host::carve` is written for the real CPU.
    let mut b = unsafe { track::on_host(host::carve, size, false) } as *mut u8;
    let mut size = size;
    if b.is_null() {
        (size, b) = alloc_slow(size);
        if size == usize::MAX {
            return b;
        }
    }
    track::mempool_alloc(b, size);
    b
}

/// [`alloc_here`] when the real CPU did not take the block: waits for the lock, gives the class
/// a used pool if it has none, takes a block and lets the lock go, returning `(size, block)` for
/// the caller to announce. `(usize::MAX, answer)` when there is nothing to announce: null when
/// no pool can be had, or, for a nested hold of the lock (a `malloc` while this thread is inside
/// the allocator: pathological), a block allocated and announced here. A hold inside the
/// thread's own fork window (`types::FORK_HOLDER`: a fork handler's `malloc`, which the
/// serialisation lock sees nested) is not that case: its block is the caller's to announce, so
/// that its stack starts at `malloc` like any other (a review found it started here).
#[cold]
#[inline(never)]
pub(crate) fn alloc_slow(size: usize) -> (usize, *mut u8) {
    let serial = serial::serialize_memcheck();
    let class = size_class(size);
    if !serial.took() && !in_own_fork_window() {
        return (usize::MAX, alloc(class, size));
    }
    match take_serialised(class, size) {
        b if b.is_null() => (usize::MAX, b),
        b => (size, b),
    }
}

/// The bookkeeping of a memcheck allocation, on the real CPU or in the guest alike: the lowest
/// available block of `pool`, the first used pool of class `cls`, becomes live with `size`
/// requested bytes; a pool left without an available block leaves the used list. No lock is
/// taken and no request made (the caller announces the block). Null, with nothing changed, if
/// the pool has no side entry or no available block: a broken invariant, which the guest
/// callers assert and the real CPU hands over to them (it must not panic).
///
/// # Safety
/// Serialised, or on the real CPU with the lock free (see [`host`]); `pool` is `cls`'s first
/// used pool; `size` is at most the pool limit and of `cls`'s class. Nothing here may assert
/// the lock's owner, make a request or call out of the allocator.
#[inline(always)]
unsafe fn take_block(cls: &ClassState, pool: *mut PoolHeader, size: usize) -> *mut u8 {
    // SAFETY: the memo names the side entry of `pool` while it is the first used pool
    // (`ClassState::side_memo`); with an available block the index is below 128 (two bitmap
    // words), the length of `req`.
    unsafe {
        let memo = &mut *cls.side_memo.get();
        let e = if memo.0 == pool {
            memo.1
        } else {
            let e = side_entry(pool);
            *memo = (pool, e);
            e
        };
        if e.is_null() {
            return null_mut();
        }
        let h = &mut (*e).hdr;
        let w = (h.avail[0] == 0) as usize;
        let bits = *h.avail.get_unchecked(w);
        if bits == 0 {
            return null_mut();
        }
        *cls.nused.get() += 1;
        h.nused += 1;
        let rest = bits & bits.wrapping_sub(1);
        *h.avail.get_unchecked_mut(w) = rest;
        let live = h.live.get_unchecked(w);
        live.store(
            live.load(Ordering::Relaxed) | (bits ^ rest),
            Ordering::Relaxed,
        );
        let i = w * 64 + bits.trailing_zeros() as usize;
        // size <= SMALL_REQUEST_THRESHOLD
        let clock = (CARVES.load(Ordering::Relaxed) + 1) & CLOCK_MASK;
        CARVES.store(clock, Ordering::Relaxed);
        SideEntry::set_carved(e, i, size, clock);
        if h.avail[0] | h.avail[1] == 0 {
            pool::unlink_used(cls, h);
        }
        // Under memcheck `nextoffset` is the first block's offset (a `PoolHeader` invariant).
        pool.cast::<u8>()
            .add(h.nextoffset as usize + i * h.stride as usize)
    }
}

/// Frees a block under memcheck: the live bit is cleared, memcheck is told (the chunk becomes
/// NOACCESS, the free stack is recorded) and the block waits in the quarantine. Returns false
/// (and changes nothing of the heap) for a double or invalid free, which memcheck reports with
/// the program's stack.
///
/// # Safety
/// `b` lies in a pool of this process, of `class`; the serialisation lock is held.
#[inline(always)]
pub(crate) unsafe fn free(b: *mut u8, class: usize) -> bool {
    let pool = PoolHeader::of(b);
    let e = side_entry(pool);
    // SAFETY: the pool is ours (the caller's ownership test said so); serialised.
    unsafe {
        let live = if e.is_null() {
            None
        } else {
            clear_live(pool, e, b)
        };
        track::mempool_free(b);
        let Some(i) = live else {
            // Not a live block: memcheck has just reported the invalid free; the block stays
            // off every list (a block listed twice would be handed out twice).
            return false;
        };
        quarantine::push(b, class, SideEntry::requested(e, i), e, i);
        true
    }
}

/// The pointer-only free under memcheck (`free`, `raw::free`): `p` is null, a bootstrap block,
/// a block of ours or a system block, which is freed here too. Inlined into the C `free`'s
/// named frame, and written for it: every call in it is in tail position, so that the frame
/// saves no register.
///
/// For a pointer into a pool, memcheck is told first (`MEMPOOL_FREE`, this frame's one site:
/// an invalid or double free is reported there, with the program's stack), and only then do the
/// books change: so a block can never be handed out again, by this thread or another, before
/// memcheck knows it is free. The block then waits among this thread's pending frees
/// ([`pending`]), whose books are kept sixteen at a time, on the real CPU in the common case
/// ([`host::free_batch`], one request), else in the guest under the lock ([`free_in_guest`]).
///
/// # Safety
/// `p` is null or a live block of this allocator or of the system allocator; under memcheck
/// (`track::memcheck()`: also in `malloc` mode, where the page map knows no page and every
/// pointer goes to the system allocator).
#[inline(always)]
pub(crate) unsafe fn free_ptr(p: *mut u8) {
    if p.is_null() {
        // Before the lock: `free(NULL)` must not wait for it (an atfork handler may call it
        // while `serial::fork_prepare` holds it).
        return;
    }
    // The tree: under memcheck there is no arenas' range (`meta::page_entry`).
    if meta::tree_entry(p) == 0 {
        // SAFETY: not a pool block, so a bootstrap or live system block (the caller's contract).
        return unsafe { free_foreign_locking(p) };
    }
    track::mempool_free(p);
    // SAFETY: `p` lies in a pool; memcheck has been told; the lock is not held here.
    unsafe { pending::push(p) }
}

/// A pending free's books in the guest, under the lock, when the real CPU did not keep them
/// (the lock held, a ring to be opened or grown, a pool to be given back, or `p` not a live
/// block, which memcheck has reported).
///
/// # Safety
/// `p` lies in a pool (its page is in the page map); `MEMPOOL_FREE` was issued for it.
#[cold]
#[inline(never)]
unsafe fn free_in_guest(p: *mut u8, since: u32) {
    let _serial = serial::serialize_memcheck();
    let pool = PoolHeader::of(p);
    // Read again under the lock: for a pointer that is not a live block, the arena may have
    // gone since.
    let e = side_entry(pool);
    if e.is_null() {
        return;
    }
    // SAFETY: `e` is the side entry of `p`'s pool; serialised.
    unsafe {
        if let Some(i) = pending_index(pool, e, p, since) {
            clear_live_bit(e, i);
            let class = (*e).hdr.szidx as usize;
            quarantine::push(p, class, SideEntry::requested(e, i), e, i);
        }
    }
}

/// The carve clock: carvings so far, modulo 2^`CARVE_CLOCK_BITS` (see `SideEntry::req` and
/// `PendingFrees::since`). Written by [`take_block`] only (serialised, or on the real CPU with
/// the lock free), read by a thread as it makes a pending free.
static CARVES: AtomicU32 = AtomicU32::new(0);
const CLOCK_MASK: u32 = (1 << CARVE_CLOCK_BITS) - 1;

/// The carve clock now (see [`CARVES`]).
#[inline(always)]
fn carves() -> u32 {
    CARVES.load(Ordering::Relaxed)
}

/// The index of `p` in its pool (side entry `e`) if a pending free of `p` made at carve clock
/// `since` is still to be kept: `p` is live, and was not carved again after the free (that
/// free was then of the block's earlier life, an invalid free memcheck has reported: see
/// `pending`). Exact while fewer than 2^(`CARVE_CLOCK_BITS` − 1) blocks (two million) are
/// carved between the free and the keeping of its books. Changes nothing; real-CPU safe.
///
/// # Safety
/// As [`live_index`].
#[inline(always)]
unsafe fn pending_index(
    pool: *mut PoolHeader,
    e: *mut SideEntry,
    p: *mut u8,
    since: u32,
) -> Option<usize> {
    // SAFETY: forwarded; `i` is a block index of the pool.
    unsafe {
        let i = live_index(pool, e, p)?;
        let d = SideEntry::born(e, i).wrapping_sub(since) & CLOCK_MASK;
        (d == 0 || d >= 1 << (CARVE_CLOCK_BITS - 1)).then_some(i)
    }
}

/// [`free_foreign`], the lock taken first (out of the way of [`free_ptr`]'s frame).
///
/// # Safety
/// As [`free_foreign`].
#[cold]
#[inline(never)]
unsafe fn free_foreign_locking(p: *mut u8) {
    let (guard, p) = serial::serialize_counted(p);
    // SAFETY: forwarded.
    unsafe { free_foreign(p, guard) }
}

/// [`free_ptr`] of a pointer the page map does not know: a bootstrap block (nothing to do:
/// those are never reused), else the classic `address_in_range` read must agree
/// (`arena::check_foreign`), then the system allocator frees it, in tail position and after the
/// lock is let go (as without us: memcheck's own `free` records the stack).
///
/// # Safety
/// `p` is a bootstrap block or a live block of the system allocator; `guard` holds the
/// serialisation lock.
#[cold]
#[inline(never)]
unsafe fn free_foreign(p: *mut u8, guard: serial::CountedGuard) {
    if sys::is_boot(p) {
        return serial::unlock(guard);
    }
    arena::check_foreign(p);
    drop(guard);
    // SAFETY: a live system block (the caller's contract).
    unsafe { sys::free(p) }
}

/// Clears the live bit of `b` in its pool (side entry `e`) and returns its index, or `None`
/// (nothing changed) if `b` is not a live block of the pool.
///
/// # Safety
/// `e` is the side entry of `pool`, the pool of `b`; serialised.
#[inline(always)]
unsafe fn clear_live(pool: *mut PoolHeader, e: *mut SideEntry, b: *mut u8) -> Option<usize> {
    // SAFETY: forwarded.
    unsafe {
        let i = live_index(pool, e, b)?;
        clear_live_bit(e, i);
        Some(i)
    }
}

/// The index of `b` in its pool (side entry `e`) if `b` is a live block of the pool; changes
/// nothing. Real-CPU safe (see [`host`]).
///
/// # Safety
/// `e` is the side entry of `pool`, the pool of `b`; serialised, or on the real CPU with the
/// lock free.
#[inline(always)]
unsafe fn live_index(pool: *mut PoolHeader, e: *mut SideEntry, b: *mut u8) -> Option<usize> {
    // SAFETY: forwarded.
    unsafe {
        let h = &(*e).hdr;
        // `pool::block_at` for memcheck's geometry, whose `nextoffset` is the first block's
        // offset: no gap to compute from the class. A side entry of a pool never carved is
        // zeroed (no stride: no block).
        let stride = h.stride as usize;
        let first = h.nextoffset as usize;
        let off = (b as usize).wrapping_sub(pool as usize + first);
        if stride == 0
            || off > (h.maxnextoffset as usize).wrapping_sub(first)
            || !off.is_multiple_of(stride)
        {
            return None;
        }
        let i = off / stride;
        let live = h.live.get_unchecked(i / 64).load(Ordering::Relaxed);
        (live & 1 << (i % 64) != 0).then_some(i)
    }
}

/// Clears the live bit of block `i` of the pool whose side entry is `e`.
///
/// # Safety
/// As [`live_index`]; `i` is a block index of the pool.
#[inline(always)]
unsafe fn clear_live_bit(e: *mut SideEntry, i: usize) {
    // SAFETY: forwarded; `i` is below 128.
    unsafe {
        let word = (*e).hdr.live.get_unchecked(i / 64);
        word.store(
            word.load(Ordering::Relaxed) & !(1 << (i % 64)),
            Ordering::Relaxed,
        );
    }
}

/// Under memcheck, puts one block back into its pool (the memcheck twin of `pool::put_block`),
/// with its side entry `e` and index `i` known (the quarantine keeps them): no page-map walk
/// and no division.
///
/// # Safety
/// Serialised; `b` is a block of `class` that is out of its pool and free; `e` is the side
/// entry of `b`'s pool and `i` its index there.
#[inline(always)]
pub(crate) unsafe fn put_block_at(class: usize, b: *mut u8, e: *mut SideEntry, i: usize) {
    // SAFETY: forwarded; serialised, which `put_back_on_host` allows too.
    unsafe {
        if quarantine::put_back_on_host(b, class, e, i) {
            return;
        }
        // The pool's last block out: the pool empties and goes back to its arena.
        let cls = &CLASSES[class];
        let h = &mut (*e).hdr;
        let was_full = h.avail[0] | h.avail[1] == 0;
        h.avail[i / 64] |= 1 << (i % 64);
        h.nused -= 1;
        *cls.nused.get() -= 1;
        pool::pool_changes_list(cls, class, PoolHeader::of(b), h, was_full);
    }
}

/// Under memcheck: the size the program asked for when it got the live block `p` (0 if `p` is
/// not a live block).
///
/// # Safety
/// `p` lies in a pool of this process.
pub(crate) unsafe fn requested(p: *const u8) -> usize {
    let pool = PoolHeader::of(p);
    // SAFETY: under memcheck `meta` is the pool's side entry.
    unsafe {
        let m = meta(pool);
        match pool::block_at(pool, m, p) {
            Some(i) if (*m).live[i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0 => {
                SideEntry::requested(m.cast::<SideEntry>(), i)
            }
            _ => 0,
        }
    }
}
