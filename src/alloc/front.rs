//! The small-block front end shared by the Rust (`global`) and C (`raw`) interfaces: which
//! requests go to pools, and which path a block takes in each mode.
//!
//! | mode / tool                 | alloc                         | free                          |
//! |-----------------------------|-------------------------------|-------------------------------|
//! | native `pool`               | thread cache → central heap   | thread cache                  |
//! | native `debug`              | as pool, plus guards and fill | checks, poison, thread cache  |
//! | memcheck                    | central heap, mempool chunk   | MEMPOOL_FREE, quarantine      |
//! | other Valgrind tools        | central heap, "new memory"    | central heap                  |
//! | `malloc` mode               | system allocator              | system allocator              |

use core::ptr::{self, null_mut};

use super::heap::{self, COUNTERS};
use super::types::*;
use super::{debug, sys, tcache, track};

/// Bytes that debug mode adds to a request: 16 before the block (size + front guard), 8 after.
pub const DEBUG_OVERHEAD: usize = 24;

/// The size class serving `size` bytes (alignment ≤ 16), or `None` for the system allocator.
#[inline(always)]
pub fn class_for(size: usize) -> Option<usize> {
    if !heap::pools_on() {
        return None;
    }
    let need = if heap::debug_mode() {
        size.checked_add(DEBUG_OVERHEAD)?
    } else {
        size
    };
    if need <= SMALL_REQUEST_THRESHOLD {
        Some(size_class(need))
    } else {
        None
    }
}

/// Allocates a small block of `size` bytes from `class` (`class == class_for(size)`).
#[inline(always)]
pub fn small_alloc(class: usize, size: usize, zeroed: bool) -> *mut u8 {
    if heap::tcache_on() && !heap::debug_mode() {
        let b = tcache::alloc(class);
        if zeroed && !b.is_null() {
            // SAFETY: the block has at least `size` bytes.
            unsafe { ptr::write_bytes(b, 0, size) };
        }
        return b;
    }
    small_alloc_slow(class, size, zeroed)
}

#[inline(never)]
fn small_alloc_slow(class: usize, size: usize, zeroed: bool) -> *mut u8 {
    let _serial = track::serialize();
    let b = if track::memcheck() {
        heap::memcheck_alloc(class, size)
    } else if heap::debug_mode() {
        let b = if heap::tcache_on() {
            tcache::alloc(class)
        } else {
            heap::central_alloc(class, 1).0
        };
        if b.is_null() {
            return null_mut();
        }
        // SAFETY: b is a block of `class`, large enough for size + DEBUG_OVERHEAD.
        return unsafe { debug::on_alloc(b, size, class, zeroed) };
    } else {
        let (b, n) = heap::central_alloc(class, 1);
        if n == 0 {
            return null_mut();
        }
        track::block_alloc(b, size);
        b
    };
    if zeroed && !b.is_null() {
        // SAFETY: the block has `size` addressable bytes (a memcheck chunk of exactly `size`).
        unsafe { ptr::write_bytes(b, 0, size) };
    }
    b
}

/// Under memcheck (`PATH_MEMCHECK`): a small block of `size <= SMALL_REQUEST_THRESHOLD` bytes,
/// zeroed for calloc. Inlined into the entry points' out-of-line slow halves, so a memcheck
/// allocation pays for one frame of the allocator's.
#[inline(always)]
pub fn memcheck_small_alloc(size: usize, zeroed: bool) -> *mut u8 {
    let _serial = track::serialize_memcheck();
    let b = heap::memcheck_alloc(size_class(size), size);
    if zeroed && !b.is_null() {
        // SAFETY: the block is a memcheck chunk of exactly `size` addressable bytes.
        unsafe { ptr::write_bytes(b, 0, size) };
    }
    b
}

/// The memcheck path of a small allocation, initialising the allocator first if it is not yet
/// (`PATH_UNINIT`: initialise, then dispatch again at this same place, so the first block's
/// allocation stack is every other block's; memcheck groups leaks by it). `None`: the general
/// front end serves the request (debug mode, other tools, `malloc` mode, a re-entrant call
/// during initialisation).
#[inline(always)]
pub fn memcheck_path_alloc(size: usize, zeroed: bool) -> Option<*mut u8> {
    loop {
        match heap::path() {
            heap::PATH_MEMCHECK => return Some(memcheck_small_alloc(size, zeroed)),
            heap::PATH_UNINIT if heap::ensure_init() => continue,
            _ => return None,
        }
    }
}

/// Under memcheck (`PATH_MEMCHECK`): frees a small block whose class the caller knows (from a
/// layout).
///
/// # Safety
/// `p` was allocated from `class` (a wrong pointer is reported by memcheck, not undefined
/// behaviour, as long as it lies in one of our pools).
#[inline(always)]
pub unsafe fn memcheck_small_free(p: *mut u8, class: usize) {
    let _serial = track::serialize_memcheck();
    // SAFETY: forwarded.
    unsafe { heap::memcheck_free(p, Some(class)) };
}

/// Frees a small block of `class` (the user's pointer).
///
/// # Safety
/// `p` was returned by `small_alloc` for `class` (or, under memcheck and in debug mode, is any
/// pointer into a pool: invalid and double frees are detected and reported there).
#[inline(always)]
pub unsafe fn small_free(p: *mut u8, class: usize) {
    if heap::tcache_on() && !heap::debug_mode() {
        // SAFETY: forwarded.
        return unsafe { tcache::free(p, class) };
    }
    // SAFETY: forwarded.
    unsafe { small_free_slow(p, class) }
}

/// The paths without a thread cache: memcheck, debug mode, other Valgrind tools.
///
/// # Safety
/// As [`small_free`].
#[inline(never)]
unsafe fn small_free_slow(p: *mut u8, class: usize) {
    let _serial = track::serialize();
    // SAFETY: forwarded from small_free.
    unsafe {
        if track::memcheck() {
            heap::memcheck_free(p, Some(class));
        } else if heap::debug_mode() {
            let b = debug::on_free(p, class);
            if heap::tcache_on() {
                tcache::free(b, class);
            } else {
                heap::central_free(class, b, 1);
            }
        } else {
            track::block_free(p);
            heap::central_free(class, p, 1);
        }
    }
}

/// Bytes the program may use in a small block: the class size natively, the requested size
/// under memcheck (so `malloc_usable_size` never invites a write memcheck would report) and in
/// debug mode.
///
/// # Safety
/// `p` is a live small block of `class`.
pub unsafe fn small_usable(p: *const u8, class: usize) -> usize {
    if track::memcheck() {
        // SAFETY: forwarded.
        unsafe { heap::memcheck_requested(p) }
    } else if heap::debug_mode() {
        // SAFETY: forwarded.
        unsafe { debug::requested_size(p) }
    } else {
        class_size(class)
    }
}

/// Whether a small block can be resized in place from `class` to `new_class`.
#[inline(always)]
pub fn resize_in_place(class: usize, new_class: Option<usize>) -> bool {
    new_class == Some(class) && !track::memcheck() && !heap::debug_mode()
}

/// Largest request any allocator can satisfy (`PTRDIFF_MAX`): larger ones fail here, before the
/// system allocator (memcheck calls such a size argument "fishy").
pub const MAX_REQUEST: usize = isize::MAX as usize;

/// Allocates from the system allocator (large or over-aligned requests, `malloc` mode).
pub fn large_alloc(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    if size > MAX_REQUEST {
        return null_mut();
    }
    COUNTERS
        .system_allocs
        .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    if align <= ALIGNMENT {
        if zeroed {
            sys::calloc(1, size)
        } else {
            sys::malloc(size)
        }
    } else {
        let p = sys::memalign(align, size);
        if zeroed && !p.is_null() {
            // SAFETY: memalign returned at least `size` bytes.
            unsafe { ptr::write_bytes(p, 0, size) };
        }
        p
    }
}
