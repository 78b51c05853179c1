//! The memcheck paths: under memcheck every pool block is a mempool chunk of exactly the
//! requested size, freed blocks wait in a quarantine (`quarantine`), and the pool metadata lives
//! in the side table (`meta`). Written for memcheck alone, one copy each: under memcheck every
//! guest instruction, memory access, call and stack frame is paid for many times over.
//!
//! Every function here runs with the serialisation lock held (`serial`), but these: [`free_ptr`]
//! takes it and hands it on to the function it ends in, which lets it go; [`begin`] and
//! [`prepare`] take it for [`carve`], which lets it go (or hands it on to
//! `leave_used_then_unlock`, which does).

pub(crate) mod quarantine;

use core::ptr::{null_mut, NonNull};
use core::sync::atomic::Ordering;

use super::meta::{meta, side_entry};
use super::pool::{self, CLASSES};
use super::types::*;
use super::{arena, serial, sys, track};

/// Hands out a block of `size` bytes of `class` under memcheck: a mempool chunk of exactly
/// `size` bytes; the rest of the stride (the class's slack and the gaps on both sides, as
/// memcheck's own malloc leaves them) stays NOACCESS.
///
/// Inlined into the front end and written for memcheck alone: under memcheck every guest
/// instruction, memory access, call and stack frame is paid for many times over (the memcheck
/// benchmark measures it), so the common case — the class has a used pool — is one straight
/// run: the pool's side entry, its lowest available bit, the live bit, the request. The rare
/// cases (a new pool, a pool filling up) share pymalloc's list code with the native paths.
#[inline(always)]
pub(crate) fn alloc(class: usize, size: usize) -> *mut u8 {
    let cls = &CLASSES[class];
    debug_assert!(serial::serialized_by_me());
    // SAFETY: serialised (the lock stands for the class lock); used pools have side entries.
    unsafe {
        let mut pool = *cls.used.get();
        if pool.is_null() {
            pool = pool::new_used_pool(cls, class).0;
            if pool.is_null() {
                return null_mut();
            }
        }
        let e = side_entry(pool);
        let h = &mut (*e).hdr;
        // The lowest available block: no link words inside free blocks, so freed memory stays
        // NOACCESS and no request is needed to walk a free list.
        let w = (h.avail[0] == 0) as usize;
        let bits = h.avail[w];
        let bit = bits.trailing_zeros() as usize;
        h.avail[w] = bits & (bits - 1);
        let i = w * 64 + bit;
        let stride = h.stride as usize;
        let b = PoolHeader::first_block(pool, PoolHeader::gap(stride, class)).add(i * stride);
        h.nused += 1;
        // Serialised: plain read-modify-writes (a locked one is a CAS loop under Valgrind).
        let live = &h.live[w];
        live.store(live.load(Ordering::Relaxed) | 1 << bit, Ordering::Relaxed);
        (*e).req[i] = size as u16; // size <= SMALL_REQUEST_THRESHOLD
        *cls.nused.get() += 1;
        if h.avail[0] | h.avail[1] == 0 {
            pool::unlink_used(cls, h);
        }
        track::mempool_alloc(b, size);
        b
    }
}

/// The memcheck allocation of a small block, in three steps, for the frames that announce
/// blocks (the C `malloc`'s, Rust's `dispatch::alloc`):
///
/// ```text
/// if !begin(size) { (size, done) = prepare(size); if size == usize::MAX { return done } }
/// return carve(size)
/// ```
///
/// [`begin`] and [`carve`] are [`alloc`]'s straight run split at the lock: no call and no
/// register to save, so the caller's frame needs no prologue (issue 15: the named frame's seven
/// saved registers were 14 shadow-checked stack accesses a malloc), and the used pool's side
/// entry comes from the class's memo instead of a page-map walk. The rare cases go through
/// [`prepare`], a call that hands `size` back (nothing lives across it). There is no loop and
/// no retry: every block from one call site is announced by the one request in [`carve`], so
/// blocks share their allocation stack to the instruction, as memcheck's leak check groups them,
/// in debug builds (no tail calls) too.
///
/// `begin` takes the lock if it is free and the class has a used pool (then `carve` may run),
/// else returns false holding nothing. `size` is at most `config::pool_limit()`.
#[inline(always)]
pub(crate) fn begin(size: usize) -> bool {
    if !serial::try_lock() {
        return false;
    }
    // SAFETY: serialised; `size` is at most the pool limit, so its class is a size class.
    if unsafe { (*CLASSES.get_unchecked(size_class(size)).used.get()).is_null() } {
        serial::unlock_try();
        return false;
    }
    true
}

/// After [`begin`] returned false: waits for the lock and gives the class a used pool if it has
/// none, then returns `(size, _)` holding the lock, for [`carve`]. Else `(usize::MAX, answer)`
/// holding nothing: null when no pool can be had, or, for a nested hold of the lock (a `malloc`
/// while this thread is inside the allocator: pathological), a block allocated here, whose
/// request is made in this frame.
#[cold]
#[inline(never)]
pub(crate) fn prepare(size: usize) -> (usize, *mut u8) {
    let serial = serial::serialize_memcheck();
    let class = size_class(size);
    if !serial.took() {
        return (usize::MAX, alloc(class, size));
    }
    let cls = &CLASSES[class];
    // SAFETY: serialised (the lock stands for the class lock).
    if unsafe { (*cls.used.get()).is_null() && pool::new_used_pool(cls, class).0.is_null() } {
        return (usize::MAX, null_mut());
    }
    // The lock stays held for `carve`, which lets it go.
    core::mem::forget(serial);
    (size, null_mut())
}

/// Allocates a block of `size` bytes with the lock held by [`begin`] or [`prepare`] and the
/// class's used pool present, announces it to memcheck, lets the lock go.
///
/// # Safety
/// As said: after `begin(size)` returned true, or `prepare(size)` returned `(size, _)`.
#[inline(always)]
pub(crate) unsafe fn carve(size: usize) -> NonNull<u8> {
    let class = size_class(size);
    debug_assert!(class < NB_SMALL_SIZE_CLASSES && serial::serialized_by_me());
    // SAFETY: `size` is at most the pool limit (the caller's contract), so `class` is a size
    // class. Serialised (the lock stands for the class lock); a used pool has a side entry, and
    // the memo names it while `used` is that pool (`ClassState::side_memo`). The block index is
    // below 128 (two bitmap words), the length of `req`.
    unsafe {
        let cls = CLASSES.get_unchecked(class);
        let pool = *cls.used.get();
        debug_assert!(!pool.is_null());
        let memo = &mut *cls.side_memo.get();
        let e = if memo.0 == pool {
            memo.1
        } else {
            let e = side_entry(pool);
            *memo = (pool, e);
            e
        };
        *cls.nused.get() += 1;
        debug_assert!(!e.is_null());
        let h = &mut (*e).hdr;
        h.nused += 1;
        // The lowest available block, and whether another one is left after it.
        let a0 = h.avail[0];
        let (w, bits, other) = if a0 != 0 {
            (0, a0, h.avail[1])
        } else {
            (1, h.avail[1], 0)
        };
        // A used pool has an available block (else `i` below would be 128, past `req`).
        debug_assert!(bits != 0);
        let rest = bits & bits.wrapping_sub(1);
        // Whether this block is the pool's last, as one value from here on (hidden from the
        // optimiser, which would keep `rest` and `other` live to the end instead: one register
        // too many for a frame that saves none).
        let mut fills = (rest | other == 0) as usize;
        core::arch::asm!("/* {0} */", inout(reg) fills, options(nomem, nostack, preserves_flags));
        *h.avail.get_unchecked_mut(w) = rest;
        let live = h.live.get_unchecked(w);
        live.store(
            live.load(Ordering::Relaxed) | (bits ^ rest),
            Ordering::Relaxed,
        );
        let i = w * 64 + bits.trailing_zeros() as usize;
        // size <= SMALL_REQUEST_THRESHOLD
        *(*e).req.get_unchecked_mut(i) = size as u16;
        // Under memcheck `nextoffset` is the first block's offset (a `PoolHeader` invariant).
        let b = pool
            .cast::<u8>()
            .add(h.nextoffset as usize + i * h.stride as usize);
        track::mempool_alloc(b, size);
        if fills != 0 {
            // The pool's last available block: the common case when a program churns (the
            // quarantine gives blocks back to full pools one at a time). In tail position.
            return leave_used_then_unlock(h, b);
        }
        serial::unlock_try();
        NonNull::new_unchecked(b)
    }
}

/// [`carve`] took the last available block of its class's first used pool (metadata `h`):
/// the pool leaves the used list, the class's memo moves on to the next pool, the lock is let
/// go, and `b` is handed back.
///
/// # Safety
/// Serialised for [`carve`]; `h` is the side-entry header of the first pool on its
/// class's used list, which has no available block left; `b` is not null.
#[inline(never)]
#[allow(clippy::pointers_in_nomem_asm_block)] // the asm hides `b`'s value, reads nothing
unsafe fn leave_used_then_unlock(h: *mut PoolHeader, b: *mut u8) -> NonNull<u8> {
    // SAFETY: forwarded; used pools have side entries.
    unsafe {
        let cls = CLASSES.get_unchecked((*h).szidx as usize);
        debug_assert!((*h).prevpool.is_null() && (*h).avail == [0, 0]);
        let next = (*h).nextpool;
        *cls.used.get() = next;
        (*h).nextpool = null_mut();
        if !next.is_null() {
            let e = side_entry(next);
            (*e).hdr.prevpool = null_mut();
            *cls.side_memo.get() = (next, e);
        }
        serial::unlock_try();
        // Hidden from the optimiser: knowing that `b` comes back, it would keep `b` in the
        // caller across a plain call instead of making this call in tail position.
        let mut b = b;
        core::arch::asm!("/* {0} */", inout(reg) b, options(pure, nomem, nostack, preserves_flags));
        NonNull::new_unchecked(b)
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
        quarantine::push(b, class, (*e).req[i] as usize, e, i);
        true
    }
}

/// The pointer-only free under memcheck (`free`, `raw::free`): `p` is null, a bootstrap block,
/// a block of ours or a system block, which is freed here too. Inlined into the C `free`'s
/// named frame, and written for it: every call in it is in tail position (the quarantine, the
/// system allocator), so that the frame saves no register (issue 15: the six pushes and pops of
/// a frame that saved every callee-saved register were ~17 guest instructions and 12 memory
/// accesses of every free, each access paid for in memcheck's shadow memory).
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
    // Bootstrap blocks are not in the page map either: `free_foreign` tests for them, out of
    // the way of every other free.
    let (guard, p) = serial::serialize_counted(p);
    let pool = PoolHeader::of(p);
    // `arena::owns` with the page map read once: its id is the side entry's.
    let e = side_entry(pool);
    if e.is_null() {
        // SAFETY: not a pool block, so a live system block (the caller's contract).
        return unsafe { free_foreign(p, guard) };
    }
    // SAFETY: p lies in one of our pools, whose side entry is `e`; serialised.
    unsafe {
        let live = clear_live(pool, e, p);
        track::mempool_free(p);
        match live {
            Some(i) => quarantine::push_then_unlock(p, e, i, guard),
            // Memcheck has just reported the invalid or double free; nothing else changes.
            None => serial::unlock(guard),
        }
    }
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
        let h = &mut (*e).hdr;
        // `pool::block_at` for memcheck's geometry, whose `nextoffset` is the first block's
        // offset: no gap to compute from the class. A side entry of a pool never carved is
        // zeroed (no stride: no block).
        let stride = h.stride as usize;
        let first = h.nextoffset as usize;
        let off = (b as usize).wrapping_sub(pool as usize + first);
        if stride == 0 || off > (h.maxnextoffset as usize).wrapping_sub(first) || off % stride != 0
        {
            return None;
        }
        let i = off / stride;
        let word = &h.live[i / 64];
        let v = word.load(Ordering::Relaxed);
        let bit = 1u64 << (i % 64);
        word.store(v & !bit, Ordering::Relaxed);
        (v & bit != 0).then_some(i)
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
    let cls = &CLASSES[class];
    // SAFETY: forwarded.
    unsafe {
        let h = &mut (*e).hdr;
        let was_full = h.avail[0] | h.avail[1] == 0;
        h.avail[i / 64] |= 1 << (i % 64);
        h.nused -= 1;
        *cls.nused.get() -= 1;
        if was_full || h.nused == 0 {
            pool::pool_changes_list(cls, class, PoolHeader::of(b), h, was_full);
        }
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
                (*m.cast::<SideEntry>()).req[i] as usize
            }
            _ => 0,
        }
    }
}
