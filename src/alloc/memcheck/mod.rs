//! The memcheck paths: under memcheck every pool block is a mempool chunk of exactly the
//! requested size, freed blocks wait in a quarantine (`quarantine`), and the pool metadata lives
//! in the side table (`meta`). Written for memcheck alone, one copy each: under memcheck every
//! guest instruction, memory access, call and stack frame is paid for many times over.
//!
//! Every function here runs with the serialisation lock held (`serial`).

pub(crate) mod quarantine;

use core::ptr::null_mut;
use core::sync::atomic::Ordering;

use super::meta::{meta, side_entry};
use super::pool::{self, CLASSES};
use super::types::*;
use super::{serial, track};

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
/// `b` lies in a pool of this process; the serialisation lock is held.
#[inline(always)]
pub(crate) unsafe fn free(b: *mut u8, class: Option<usize>) -> bool {
    // SAFETY: forwarded.
    unsafe { free_in(b, side_entry(PoolHeader::of(b)), class) }
}

/// [`free`] with the side entry of `b`'s pool already looked up (`meta::side_entry`; null if
/// the page map does not know the page).
///
/// # Safety
/// As [`free`]; `e` is `side_entry(PoolHeader::of(b))`.
#[inline(always)]
pub(crate) unsafe fn free_in(b: *mut u8, e: *mut SideEntry, class: Option<usize>) -> bool {
    let pool = PoolHeader::of(b);
    // SAFETY: the pool is ours (the page map or a layout said so); serialised.
    unsafe {
        let live_block = if e.is_null() {
            None
        } else {
            let h = &mut (*e).hdr;
            match pool::block_at(pool, h, b) {
                Some(i) => {
                    let word = &h.live[i / 64];
                    let v = word.load(Ordering::Relaxed);
                    let bit = 1u64 << (i % 64);
                    word.store(v & !bit, Ordering::Relaxed);
                    (v & bit != 0).then(|| (class.unwrap_or(h.szidx as usize), (*e).req[i]))
                }
                None => None,
            }
        };
        track::mempool_free(b);
        let Some((class, size)) = live_block else {
            // Not a live block: memcheck has just reported the invalid free; the block stays
            // off every list (a block listed twice would be handed out twice).
            return false;
        };
        quarantine::push(b, class, size as usize);
        true
    }
}

/// Under memcheck, puts one block back into its pool: the memcheck twin of `pool::put_block`.
///
/// # Safety
/// Serialised; `b` is a block of `class` that is out of its pool and free.
#[inline(always)]
pub(crate) unsafe fn put_block(class: usize, b: *mut u8) {
    let cls = &CLASSES[class];
    let pool = PoolHeader::of(b);
    // SAFETY: forwarded; the pool of an out block is carved and has a side entry.
    unsafe {
        let h = &mut (*side_entry(pool)).hdr;
        let stride = h.stride as usize;
        let i = PoolHeader::block_index(pool, PoolHeader::gap(stride, class), stride, b);
        let was_full = h.avail[0] | h.avail[1] == 0;
        h.avail[i / 64] |= 1 << (i % 64);
        h.nused -= 1;
        *cls.nused.get() -= 1;
        if was_full || h.nused == 0 {
            pool::pool_changes_list(cls, class, pool, h, was_full);
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
