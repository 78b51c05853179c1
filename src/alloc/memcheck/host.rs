//! The memcheck bookkeeping that runs on the real CPU (`track::on_host`, Valgrind's
//! `VALGRIND_NON_SIMD_CALL1`), for the common cases of `malloc` and `free` (sixteen frees at a
//! time, `pending`).
//!
//! Under memcheck every guest instruction is translated and instrumented, and every memory
//! access goes through shadow memory: the allocator's own bookkeeping (a bitmap word, a ring
//! slot, a few counters; ~400 guest instructions a `malloc`/`free` pair, issue 15) cost more
//! than the two requests that tell memcheck about the block. Memcheck has nothing to say about
//! those accesses (the metadata lives in the side table and the quarantine's rings, never in
//! memory the program sees), and its own `malloc` keeps its books the same way: in Valgrind's
//! code, called through one request. Here the request calls the allocator's function on the
//! real CPU, and the frame that hands the block out or takes it back still makes the
//! `MEMPOOL_ALLOC` or `MEMPOOL_FREE` request itself, so the stacks memcheck records are the
//! program's.
//!
//! What a function here may do, and why:
//! - **Every other thread is stopped**: Valgrind runs one thread at a time and makes the call
//!   between two of the calling thread's instructions. So the functions take no lock, but they
//!   give up ([`NOT_DONE`], nothing changed) while the serialisation lock is held, by whichever
//!   thread: its holder may be anywhere in a change of the same metadata. The caller then
//!   takes the guest path, which waits for the lock.
//! - **Only the allocator's metadata**, mapped and readable: the page map (its lookups never
//!   leave the readable prefix), the side table, the class states, the quarantine's rings as
//!   far as they are readable. Shadow memory does not see these writes, which is right: the
//!   metadata is DEFINED from the start (mapped zeroed, or in `.bss`) and only the allocator
//!   reads it.
//! - **Nothing the guest has to see**: no client request (one made on the real CPU does
//!   nothing), no system call (Valgrind would not know of an `munmap`), no libc and no PLT
//!   (Valgrind's warning: "any kind of entanglement with libc or dynamic linking is likely to
//!   have a bad outcome"), no thread-local storage (the real CPU's `fs` is Valgrind's, not the
//!   thread's). So a pool that a freed block would empty, or a ring that needs mapping, is left
//!   to the guest. Release builds call nothing from here (checked with `objdump`); debug
//!   builds keep Rust's overflow and pointer checks, which can only fire on a heap whose
//!   invariants are already broken, and would then crash Valgrind instead of panicking.
//! - **Memcheck is told first when a block is freed** (`memcheck::free_ptr`): a quarantined
//!   block may be let go by any thread's eviction, so it must already be free in memcheck's
//!   books when it enters the quarantine. When a block is handed out, its books are kept first
//!   (live before it is announced, so nobody else can take it).

use super::super::meta::side_entry;
use super::super::pool::CLASSES;
use super::super::types::*;
use super::super::{config, serial};
use super::quarantine;

/// Nothing was done: the guest path does it all (also what a request answers natively).
pub(crate) const NOT_DONE: usize = 0;
/// The block is back in its pool or in the quarantine, its live bit cleared.
pub(crate) const FREED: usize = 1;
/// As [`FREED`], and the quarantine holds more than its limit: its oldest block would empty its
/// pool. The caller evicts in the guest (`quarantine::evict_rest`).
pub(crate) const FREED_EVICT_REST: usize = 2;

/// The bookkeeping of a memcheck `malloc` of `size` bytes (at most the pool limit), on the real
/// CPU: the block's address, its live bit set and its size recorded, for the caller to
/// announce; 0 ([`NOT_DONE`]) when the lock is held or the class has no used pool.
///
/// # Safety
/// Called through `track::on_host` only (see the module's rules); `size` is at most
/// `config::pool_limit()`.
pub(crate) unsafe extern "C" fn carve(_tid: u32, size: usize) -> usize {
    if serial::held() {
        return NOT_DONE;
    }
    // SAFETY: `size` is at most the pool limit, so its class is a size class; every other
    // thread is stopped and none is inside the allocator (the lock is free).
    unsafe {
        let cls = CLASSES.get_unchecked(size_class(size));
        let pool = *cls.used.get();
        if pool.is_null() {
            return NOT_DONE;
        }
        super::take_block(cls, pool, size) as usize
    }
}

/// The bookkeeping of a thread's pending memcheck frees (`pending`), on the real CPU, in order
/// from `done`: each slot is zeroed and `done` advanced as its block is kept. Answers [`FREED`]
/// when every one is kept; [`FREED_EVICT_REST`] after one whose eviction is left to the guest
/// (`quarantine::evict_rest`, then this again); [`NOT_DONE`] at the first block it leaves to
/// the guest (the lock held, a ring to open or grow, a pool that would empty, or not a live
/// block), which is still in its slot.
///
/// # Safety
/// Called through `track::on_host` only (see the module's rules), with the address of the
/// calling thread's `PendingFrees`, whose invariants hold.
pub(crate) unsafe extern "C" fn free_batch(_tid: u32, pd: usize) -> usize {
    if serial::held() {
        return NOT_DONE;
    }
    let pd = pd as *mut PendingFrees;
    // SAFETY: `pd` is the calling thread's (it waits in the request); `done..count` are
    // pending frees of pool blocks; every other thread is stopped and none is inside the
    // allocator (the lock is free).
    unsafe {
        prefetch_books(pd);
        while (*pd).done < (*pd).count {
            let i = (*pd).done;
            let slot = (*pd).slots.as_mut_ptr().add(i);
            let r = free(*slot as *mut u8, *(*pd).since.get_unchecked(i));
            if r == NOT_DONE {
                return NOT_DONE;
            }
            *slot = 0;
            (*pd).done = i + 1;
            if r == FREED_EVICT_REST {
                return FREED_EVICT_REST;
            }
        }
    }
    FREED
}

/// Asks for the cache lines [`free_batch`] is about to read, all at once, so that their misses
/// overlap instead of coming one after the other: the side entries of the pending blocks (their
/// headers, then the word of each block's size and birth) and those of the quarantine's oldest
/// blocks, which these frees will let go. Sixteen frees touch as many side entries scattered
/// over the side table (36 KiB an arena), and Valgrind's own work evicts them between two
/// batches: on the collections benchmark `free_batch` spent most of its time in two loads, a
/// header's and a size's (`perf annotate`, issue 15). Reads only; changes nothing.
///
/// # Safety
/// As [`free_batch`].
#[inline(always)]
unsafe fn prefetch_books(pd: *mut PendingFrees) {
    // SAFETY: as said: `done..count` are blocks of pools.
    unsafe {
        let (from, to) = ((*pd).done, (*pd).count);
        quarantine::prefetch_oldest(to - from);
        for k in from..to {
            let e = side_entry(PoolHeader::of(*(*pd).slots.get_unchecked(k) as *mut u8));
            if !e.is_null() {
                prefetch(e.cast());
            }
        }
        for k in from..to {
            let p = *(*pd).slots.get_unchecked(k) as *mut u8;
            let pool = PoolHeader::of(p);
            let e = side_entry(pool);
            if e.is_null() {
                continue;
            }
            let h = &(*e).hdr;
            let stride = h.stride as usize;
            let off = (p as usize).wrapping_sub(pool as usize + h.nextoffset as usize);
            if stride != 0 && off < POOL_SIZE {
                prefetch(
                    (*e).req
                        .as_ptr()
                        .add((off / stride).min(STRICT_MAX_BLOCKS - 1))
                        .cast(),
                );
            }
        }
    }
}

/// A hint that the line holding `p` will be read soon. Never faults, whatever `p` is.
#[inline(always)]
pub(super) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing architecturally and cannot fault.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// One block of [`free_batch`]: when `p` is a live block of a pool, its live bit is cleared
/// and it enters the quarantine if that needs only a slot written, the oldest blocks beyond the
/// limit going back to their pools ([`FREED`] or [`FREED_EVICT_REST`]); with the quarantine off
/// (or smaller than the block) it goes straight back to its pool ([`FREED`]). Else nothing
/// changes ([`NOT_DONE`]): not a block whose free is pending (`memcheck::pending_index`: not
/// live, or carved again after `since`, the free's carve clock; memcheck has reported it), a
/// ring to open or grow, a pool that would empty.
///
/// # Safety
/// As [`free_batch`]; `p` lies in a pool (its page is in the page map).
#[inline(always)]
unsafe fn free(p: *mut u8, since: u32) -> usize {
    let pool = PoolHeader::of(p);
    let e = side_entry(pool);
    if e.is_null() {
        return NOT_DONE;
    }
    // SAFETY: `e` is the side entry of `p`'s pool; as the caller's.
    unsafe {
        let Some(i) = super::pending_index(pool, e, p, since) else {
            return NOT_DONE;
        };
        let class = (*e).hdr.szidx as usize;
        let size = SideEntry::requested(e, i);
        if quarantine::ready_for(size) {
            super::clear_live_bit(e, i);
            quarantine::enqueue(p, class, size, e, i);
            return quarantine::evict_on_host();
        }
        if size >= config::quarantine_limit() && quarantine::put_back_on_host(p, class, e, i) {
            super::clear_live_bit(e, i);
            return FREED;
        }
        NOT_DONE
    }
}

/// At exit (`quarantine::drain_at_exit`), with the quarantine stopped: lets quarantined blocks
/// go back to their pools, on the real CPU, until the oldest one would empty its pool (which
/// the guest then does) or none is left.
///
/// # Safety
/// Called through `track::on_host` only (see the module's rules), by the thread that holds the
/// serialisation lock.
pub(crate) unsafe extern "C" fn drain(_tid: u32, _: usize) -> usize {
    // SAFETY: the caller holds the lock and is between two of its steps; every other thread is
    // stopped outside the allocator or waiting for the lock.
    unsafe { quarantine::evict_on_host() }
}
