//! The C ABI: `poolgrind_malloc`, `poolgrind_free`, … (declared in `valgrind/poolgrind.h`).
//!
//! The unprefixed names (`malloc`, `free`, …) that make `libpoolgrind.so` a drop-in
//! `LD_PRELOAD` replacement are *aliases* of these, added by `build.rs` with
//! `cargo:rustc-cdylib-link-arg` — so they exist only in the cdylib, and depending on the Rust
//! crate as a library never replaces the process's malloc.
//!
//! Errors follow POSIX/glibc: null plus `errno = ENOMEM` when out of memory or on size overflow;
//! `EINVAL` for a bad alignment. Nothing here panics (the functions only do integer checks and
//! call into the allocator, which never panics).

use core::ffi::c_void;
use core::ptr::null_mut;

use crate::alloc::raw;

fn set_errno(e: i32) {
    // SAFETY: __errno_location returns this thread's errno.
    unsafe { *libc::__errno_location() = e };
}

fn enomem_if_null(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
}

/// `malloc`.
#[no_mangle]
pub extern "C" fn poolgrind_malloc(size: usize) -> *mut c_void {
    // SAFETY: malloc has no preconditions.
    enomem_if_null(unsafe { raw::malloc(size) })
}

/// `calloc`; ENOMEM on `n * size` overflow.
#[no_mangle]
pub extern "C" fn poolgrind_calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: calloc has no preconditions.
    enomem_if_null(unsafe { raw::calloc(n, size) })
}

/// `realloc` (glibc semantics for null and 0).
///
/// # Safety
/// `p` is null or a live block of this allocator or the system allocator.
#[no_mangle]
pub unsafe extern "C" fn poolgrind_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    let q = unsafe { raw::realloc(p.cast(), size) };
    if q.is_null() && size != 0 {
        set_errno(libc::ENOMEM);
    }
    q.cast()
}

/// `reallocarray`: `realloc(p, n * size)` with overflow checking.
///
/// # Safety
/// As [`poolgrind_realloc`].
#[no_mangle]
pub unsafe extern "C" fn poolgrind_reallocarray(
    p: *mut c_void,
    n: usize,
    size: usize,
) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded.
        Some(total) => unsafe { poolgrind_realloc(p, total) },
        None => {
            set_errno(libc::ENOMEM);
            null_mut()
        }
    }
}

/// `free`; `free(NULL)` does nothing.
///
/// # Safety
/// `p` is null or a live block.
#[no_mangle]
pub unsafe extern "C" fn poolgrind_free(p: *mut c_void) {
    // SAFETY: forwarded.
    unsafe { raw::free(p.cast()) }
}

/// `malloc_usable_size`.
///
/// # Safety
/// `p` is null or a live block.
#[no_mangle]
pub unsafe extern "C" fn poolgrind_malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: forwarded.
    unsafe { raw::usable_size(p.cast()) }
}

fn aligned(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    // SAFETY: align is a power of two.
    enomem_if_null(unsafe { raw::memalign(align, size) })
}

/// `memalign`.
#[no_mangle]
pub extern "C" fn poolgrind_memalign(align: usize, size: usize) -> *mut c_void {
    // glibc rounds a non-power-of-two alignment up; so do we.
    let align = align.max(1).checked_next_power_of_two().unwrap_or(0);
    aligned(align, size)
}

/// `aligned_alloc`.
#[no_mangle]
pub extern "C" fn poolgrind_aligned_alloc(align: usize, size: usize) -> *mut c_void {
    aligned(align, size)
}

/// `posix_memalign`: EINVAL unless `align` is a power of two multiple of `sizeof(void *)`.
///
/// # Safety
/// `out` must be valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn poolgrind_posix_memalign(
    out: *mut *mut c_void,
    align: usize,
    size: usize,
) -> i32 {
    if !align.is_power_of_two() || align % core::mem::size_of::<usize>() != 0 {
        return libc::EINVAL;
    }
    // SAFETY: align is a power of two.
    let p = unsafe { raw::memalign(align, size) };
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller guarantees `out` is writable.
    unsafe { *out = p.cast() };
    0
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// `valloc`: page-aligned.
#[no_mangle]
pub extern "C" fn poolgrind_valloc(size: usize) -> *mut c_void {
    aligned(page_size(), size)
}

/// `pvalloc`: page-aligned, size rounded up to whole pages.
#[no_mangle]
pub extern "C" fn poolgrind_pvalloc(size: usize) -> *mut c_void {
    let ps = page_size();
    match size.max(1).checked_add(ps - 1) {
        Some(n) => aligned(ps, n & !(ps - 1)),
        None => {
            set_errno(libc::ENOMEM);
            null_mut()
        }
    }
}

/// Prints the statistics table to stderr.
#[no_mangle]
pub extern "C" fn poolgrind_print_stats() {
    crate::alloc::stats::print_stats_at_exit();
}

/// Runs the heap invariant walker; returns 0 when every invariant holds, else 1 (the message is
/// not printed: use `poolgrind::debug::check_heap` from Rust to read it).
#[no_mangle]
pub extern "C" fn poolgrind_check_heap() -> i32 {
    match crate::alloc::debug::check_heap() {
        Ok(_) => 0,
        Err(_) => 1,
    }
}
