//! The pointer-only API (`malloc`/`free` without a size), for FFI users and the C library.
//!
//! `free` must decide whether a pointer is ours knowing nothing but the pointer: that is
//! pymalloc's [`address_in_range`].

use core::ptr::{self, null_mut};
use core::sync::atomic::Ordering;

use super::front::{self, class_for};
use super::heap::{self, NARENAS, PATH_FAST, PATH_MEMCHECK};
use super::types::*;
use super::{sys, tcache, track};

/// Whether `p` lies in one of our arenas — pymalloc's classic test, in constant time.
///
/// Round `p` down to its pool and read the arena index stored at the pool's start. The read is
/// deliberate even though that memory may be uninitialised, or belong to a block of the system
/// allocator (when `p` is not ours): any garbage read there leads to the right answer, because
/// the index is then either out of range, or names an arena that does not contain `p`
/// (Tim Peters' argument in CPython's Misc/README.valgrind). Under memcheck the read goes
/// through [`track::read_foreign_u32`], which reports nothing and changes nothing.
///
/// Kept small and out of line on purpose: it is the one place where the allocator reads memory
/// it may not own, and it is what the shipped `supp/poolgrind.supp` names for builds without
/// the instrumentation.
#[inline(never)]
pub fn address_in_range(p: *const u8) -> bool {
    let pool = PoolHeader::of(p);
    // SAFETY: `pool` is the start of the page that contains `p`, a pointer the program got
    // from an allocator, so the page is mapped; the arena index is at offset 0 (4-aligned).
    let idx = unsafe { track::read_foreign_u32(pool.cast::<u32>().cast_const()) } as usize;
    if idx >= NARENAS.load(Ordering::Acquire) {
        return false;
    }
    // SAFETY: idx < NARENAS: the slot is inside the table and initialised.
    let base = unsafe {
        (*heap::arena_table().add(idx))
            .address
            .load(Ordering::Acquire)
    };
    base != 0 && (p as usize).wrapping_sub(base) < ARENA_SIZE
}

#[inline]
fn ours(p: *const u8) -> bool {
    heap::pools_on() && address_in_range(p)
}

/// `malloc`: `size` bytes, 16-aligned; null when out of memory.
///
/// # Safety
/// Always safe to call; `unsafe` because the result is raw memory.
#[inline]
pub unsafe fn malloc(size: usize) -> *mut u8 {
    // The thread-cache fast path needs few registers: kept apart from everything else (one
    // out-of-line call, in tail position), it saves no register and sets up no frame.
    if size <= SMALL_REQUEST_THRESHOLD && heap::path() == PATH_FAST {
        let b = tcache::try_alloc(size_class(size));
        if !b.is_null() {
            return b;
        }
    }
    // SAFETY: forwarded.
    unsafe { alloc_slow(size, false) }
}

/// Every `malloc` but a thread-cache hit, and every `calloc` (`zeroed`): memcheck,
/// initialisation, the general front end.
///
/// # Safety
/// As [`malloc`].
#[inline(never)]
unsafe fn alloc_slow(size: usize, zeroed: bool) -> *mut u8 {
    if size <= SMALL_REQUEST_THRESHOLD {
        if let Some(b) = front::memcheck_path_alloc(size, zeroed) {
            return b;
        }
    }
    if !heap::ensure_init() {
        return sys::boot_alloc(size); // the bootstrap buffer is zeroed and never reused
    }
    match class_for(size) {
        Some(c) => front::small_alloc(c, size, zeroed),
        None => front::large_alloc(size, ALIGNMENT, zeroed),
    }
}

/// `calloc`: `n * size` zeroed bytes; null on overflow or when out of memory.
///
/// # Safety
/// As [`malloc`].
pub unsafe fn calloc(n: usize, size: usize) -> *mut u8 {
    let Some(total) = n.checked_mul(size) else {
        return null_mut();
    };
    // SAFETY: forwarded.
    unsafe { alloc_slow(total, true) }
}

/// `memalign`: `size` bytes aligned to `align` (a power of two); null when out of memory.
///
/// # Safety
/// `align` must be a power of two.
pub unsafe fn memalign(align: usize, size: usize) -> *mut u8 {
    if align <= ALIGNMENT {
        // SAFETY: forwarded.
        return unsafe { malloc(size) };
    }
    if !heap::ensure_init() {
        return null_mut();
    }
    front::large_alloc(size, align, false)
}

/// `free`: gives back a block of this allocator or of the system allocator. `free(null)` does
/// nothing.
///
/// # Safety
/// `p` is null or a live block returned by this module (or by the system allocator).
#[inline]
pub unsafe fn free(p: *mut u8) {
    if heap::path() == PATH_FAST && !p.is_null() {
        if address_in_range(p) {
            // SAFETY: p lies in one of our pools; its header names the class (natively the
            // header is plain memory: no Valgrind bookkeeping on this path).
            return unsafe { tcache::free(p, (*PoolHeader::of(p)).szidx as usize) };
        }
        // SAFETY: not ours (pools are on): a system or bootstrap block.
        return unsafe { free_foreign(p) };
    }
    // SAFETY: forwarded.
    unsafe { free_slow(p) }
}

/// Frees a block that is not in our pools: the system allocator's, or the bootstrap buffer's
/// (never reused).
///
/// # Safety
/// `p` is a live block of the system allocator or of the bootstrap buffer.
#[inline(never)]
unsafe fn free_foreign(p: *mut u8) {
    if !sys::is_boot(p) {
        // SAFETY: forwarded.
        unsafe { sys::free(p) };
    }
}

/// Every `free` but a thread-cache one: memcheck, the system allocator, the general front end.
///
/// # Safety
/// As [`free`].
#[inline(never)]
unsafe fn free_slow(p: *mut u8) {
    if p.is_null() {
        return;
    }
    if heap::path() == PATH_MEMCHECK {
        // SAFETY: forwarded.
        return unsafe { memcheck_free(p) };
    }
    let _serial = track::serialize();
    if ours(p) {
        if track::memcheck() {
            // SAFETY: p lies in one of our pools (the class is read with the live check).
            unsafe { heap::memcheck_free(p, None) };
            return;
        }
        // SAFETY: p lies in one of our pools; its header names the class.
        unsafe { front::small_free(p, heap::pool_class(p)) };
    } else if !sys::is_boot(p) {
        // SAFETY: not ours, not bootstrap: a system block.
        unsafe { sys::free(p) };
    }
}

/// `free` under memcheck: the classic test, then the memcheck path or the system allocator.
///
/// # Safety
/// As [`free`], `p` not null.
#[inline(always)]
unsafe fn memcheck_free(p: *mut u8) {
    let _serial = track::serialize_memcheck();
    if address_in_range(p) {
        // SAFETY: p lies in one of our pools (the class is read with the live check).
        unsafe { heap::memcheck_free(p, None) };
    } else if !sys::is_boot(p) {
        // SAFETY: not ours, not bootstrap: a system block.
        unsafe { sys::free(p) };
    }
}

/// Bytes usable in the block at `p` (0 for null).
///
/// # Safety
/// `p` is null or a live block.
pub unsafe fn usable_size(p: *mut u8) -> usize {
    let _serial = track::serialize();
    if p.is_null() {
        0
    } else if ours(p) {
        // SAFETY: live pool block.
        unsafe { front::small_usable(p, heap::pool_class(p)) }
    } else if sys::is_boot(p) {
        // SAFETY: bootstrap block.
        unsafe { sys::boot_size(p) }
    } else {
        // SAFETY: a live system block.
        unsafe { sys::usable_size(p) }
    }
}

/// `realloc`: resizes in place when the size class does not change, else moves. Follows
/// glibc: `realloc(null, n)` is `malloc(n)`; `realloc(p, 0)` frees `p` and returns null; on
/// failure null is returned and `p` is left untouched.
///
/// # Safety
/// `p` is null or a live block.
pub unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    let _serial = track::serialize();
    // SAFETY: forwarded throughout.
    unsafe {
        if p.is_null() {
            return malloc(size);
        }
        if size == 0 {
            free(p);
            return null_mut();
        }
        let (old_usable, class) = if ours(p) {
            let c = heap::pool_class(p);
            if front::resize_in_place(c, class_for(size)) {
                return p;
            }
            (front::small_usable(p, c), Some(c))
        } else if sys::is_boot(p) {
            (sys::boot_size(p), None)
        } else if size > front::MAX_REQUEST {
            return null_mut();
        } else {
            return sys::realloc(p, size);
        };
        let q = malloc(size);
        if !q.is_null() {
            ptr::copy_nonoverlapping(p, q, old_usable.min(size));
            // Ownership is known: no second address_in_range (bootstrap blocks are kept).
            if let Some(c) = class {
                front::small_free(p, c);
            }
        }
        q
    }
}
