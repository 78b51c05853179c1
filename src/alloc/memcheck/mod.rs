//! The memcheck paths: under memcheck every pool block is a mempool chunk of exactly the
//! requested size, freed blocks wait in a quarantine (`quarantine`), and the pool metadata lives
//! in the side table (`meta`). Written for memcheck alone, one copy each: under memcheck every
//! guest instruction, memory access, call and stack frame is paid for many times over.
//!
//! Every function here runs with the serialisation lock held (`serial`), but [`free_ptr`],
//! which takes it and hands it on to the function it ends in, which lets it go.

pub(crate) mod quarantine;

use core::ptr::null_mut;
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
    if p.is_null() || sys::is_boot(p) {
        return; // nothing to do; bootstrap blocks are never reused
    }
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

/// [`free_ptr`] of a pointer the page map does not know: the classic `address_in_range` read
/// must agree (`arena::check_foreign`), then the system allocator frees it, in tail position
/// and after the lock is let go (as without us: memcheck's own `free` records the stack).
///
/// # Safety
/// `p` is a live block of the system allocator; `guard` holds the serialisation lock.
#[cold]
#[inline(never)]
unsafe fn free_foreign(p: *mut u8, guard: serial::CountedGuard) {
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
        let i = pool::block_at(pool, h, b)?;
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
