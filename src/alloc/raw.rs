//! The pointer-only API (`malloc`/`free` without a size), for FFI users and the C library.
//!
//! `free` must decide whether a pointer is ours knowing nothing but the pointer: the page map
//! answers (`arena::owns`; under memcheck pymalloc's `address_in_range` read confirms it for
//! pointers the map does not know). Each function is the
//! entry point of one row of `dispatch`'s table.

use core::ptr::null_mut;

use super::dispatch;
use super::types::ALIGNMENT;

/// `malloc`: `size` bytes, 16-aligned; null when out of memory.
///
/// # Safety
/// Always safe to call; `unsafe` because the result is raw memory.
#[inline]
pub unsafe fn malloc(size: usize) -> *mut u8 {
    // As the C `malloc`: `free` puts a glibc block of 513..=1024 B in a system bin, and this
    // takes it back. A null from the system allocator is the answer (no second request).
    if let Some(b) = dispatch::malloc_fast(size) {
        return b;
    }
    dispatch::alloc(size, ALIGNMENT, false, true)
}

/// `calloc`: `n * size` zeroed bytes; null on overflow or when out of memory.
///
/// # Safety
/// As [`malloc`].
pub unsafe fn calloc(n: usize, size: usize) -> *mut u8 {
    match n.checked_mul(size) {
        Some(total) => dispatch::alloc(total, ALIGNMENT, true, true),
        None => null_mut(),
    }
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
    dispatch::alloc(size, align, false, true)
}

/// `free`: gives back a block of this allocator or of the system allocator. `free(null)` does
/// nothing.
///
/// # Safety
/// `p` is null or a live block returned by this module (or by the system allocator).
#[inline]
pub unsafe fn free(p: *mut u8) {
    // SAFETY: forwarded.
    unsafe { dispatch::free(p) }
}

/// Bytes usable in the block at `p` (0 for null).
///
/// # Safety
/// `p` is null or a live block.
pub unsafe fn usable_size(p: *mut u8) -> usize {
    // SAFETY: forwarded.
    unsafe { dispatch::usable_size(p) }
}

/// `realloc`: resizes in place when the size class does not change, else moves. Follows
/// glibc: `realloc(null, n)` is `malloc(n)`; `realloc(p, 0)` frees `p` and returns null; on
/// failure null is returned and `p` is left untouched.
///
/// # Safety
/// `p` is null or a live block.
pub unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    // SAFETY: forwarded.
    unsafe { dispatch::realloc(p, size) }
}
