//! The C ABI: `poolgrind_malloc`, `poolgrind_free`, … (declared in `valgrind/poolgrind.h`).
//!
//! The unprefixed names (`malloc`, `free`, …) that make `libpoolgrind.so` a drop-in
//! `LD_PRELOAD` replacement are *aliases* of these, added by `build.rs` with
//! `cargo:rustc-cdylib-link-arg` — so they exist only in the cdylib, and depending on the Rust
//! crate as a library never replaces the process's malloc.
//!
//! # Frames that read as the C library's
//!
//! Under memcheck, a block's allocation and free stacks start at the function that issued the
//! client request, and users' suppression files written against glibc (by valgrind's
//! `--gen-suppressions`, CPython's `valgrind-python.supp`, …) expect that frame to be `malloc`,
//! `calloc`, `realloc`, `free`, … with the program's function under it. So each entry point is
//! two functions: the exported `poolgrind_X` keeps only the native thread-cache hit (and, for
//! `malloc` above 512 B, the tail call of the system malloc; up to 1024 B, with glibc behind
//! us, a thread cache's system bin first: `alloc::tcache`) and jumps
//! (a tail call) to `X_named`, which does everything else inlined — pools, memcheck requests,
//! initialisation — and which carries a local symbol named `X` ([`frame_name!`]). `malloc` has
//! a third: `malloc_named` keeps only memcheck's small blocks, in a frame that saves no register,
//! and jumps to `malloc_other` for the rest, whose local alias is `malloc` in Rust's legacy
//! mangling (Valgrind shows it as `malloc`; suppressions, which match mangled names, see it
//! only for helgrind's and DRD's blocks: under memcheck it announces no pool block). A request
//! the system allocator serves is handed to the system's own `X` in tail position, so memcheck
//! records it exactly as without us. The local name is not exported and does not share an
//! address with the exported `X` (valgrind would take a sized, exported malloc-family symbol for
//! an allocator to replace); the cdylib has a soname, which keeps valgrind's "no soname"
//! malloc synonym from matching it (`build.rs`).
//!
//! Errors follow POSIX/glibc: null plus `errno = ENOMEM` when out of memory or on size overflow;
//! `EINVAL` for a bad alignment. Nothing here panics (the functions only do integer checks and
//! call into the allocator, which never panics).

use core::ffi::c_void;
use core::ptr::null_mut;

use crate::alloc::dispatch::{self, Path, Realloc, ReallocFast};
use crate::alloc::sys;
use crate::alloc::types::ALIGNMENT;

/// Gives the function `$f` a second, local ELF symbol `$name` with the same address and size,
/// which valgrind shows in stacks (see the module documentation). Only with the `preload`
/// feature (on by default): a program that links the crate as a Rust library with LTO may want
/// no local symbol named `malloc` in its object.
macro_rules! frame_name {
    ($f:ident, $name:literal) => {
        #[cfg(all(feature = "preload", target_os = "linux"))]
        core::arch::global_asm!(
            concat!(".set ", $name, ", {f}"),
            concat!(".type ", $name, ", @function"),
            f = sym $f,
        );
    };
}

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
    if let Some(b) = dispatch::malloc_fast(size) {
        return b.cast();
    }
    malloc_named(size)
}

/// Every `malloc` but the native thread-cache hit, in the frame Valgrind names `malloc`.
///
/// Under memcheck a small block is allocated right here (`dispatch::memcheck_alloc_here`: no
/// saved register, and one request announces every block, so that blocks from one call site
/// share their allocation stack to the instruction, as memcheck's leak check groups them).
/// Everything else continues in `malloc_other` (a tail call: that frame replaces this one).
#[inline(never)]
extern "C" fn malloc_named(size: usize) -> *mut c_void {
    let (size, path) = dispatch::path_initialised(size);
    if path == Path::Memcheck && size <= dispatch::pool_limit() {
        return enomem_if_null(dispatch::memcheck_alloc_here(size));
    }
    malloc_other(size)
}
frame_name!(malloc_named, "malloc");

/// [`malloc_named`] but its memcheck small blocks.
#[inline(never)]
extern "C" fn malloc_other(size: usize) -> *mut c_void {
    match dispatch::alloc_pool(size, ALIGNMENT, false, true) {
        Some(b) => enomem_if_null(b),
        None => sys::malloc(size).cast(),
    }
}
// The blocks this frame announces (helgrind's and DRD's; under memcheck none: it hands large
// requests to the system allocator, and the pathological `malloc` made while the thread is inside
// the allocator, not a fork handler's, is announced in `memcheck::alloc_slow`'s frame) read `malloc` too: this
// alias is Rust's legacy mangling of the path `malloc`, which Valgrind shows demangled without
// the hash (a second symbol spelt `malloc` cannot be made in one object, and one at the
// exported `malloc`'s address makes Valgrind replace the function). Suppressions match mangled
// names, so a `fun:malloc` line does not match this frame: not one of memcheck's blocks.
frame_name!(malloc_other, "_ZN6malloc17h5f3a9c0d2e4b6a18E");

/// `calloc`; ENOMEM on `n * size` overflow.
#[no_mangle]
pub extern "C" fn poolgrind_calloc(n: usize, size: usize) -> *mut c_void {
    if let Some(b) = dispatch::calloc_fast(n, size) {
        // SAFETY: a block of at least `n * size` bytes that nobody else uses; `memset` returns
        // it (a tail call: this frame saves no register).
        return unsafe { libc::memset(b.cast(), 0, n * size) };
    }
    calloc_named(n, size)
}

#[inline(never)]
extern "C" fn calloc_named(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return null_mut();
    };
    if let Some(b) = dispatch::calloc_large(total) {
        return enomem_if_null(b);
    }
    match dispatch::alloc_pool(total, ALIGNMENT, true, true) {
        Some(b) => enomem_if_null(b),
        None => sys::calloc(n, size).cast(),
    }
}
frame_name!(calloc_named, "calloc");

/// `realloc` (glibc semantics for null and 0).
///
/// # Safety
/// `p` is null or a live block of this allocator or the system allocator.
#[no_mangle]
pub unsafe extern "C" fn poolgrind_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded throughout; every call is in tail position, so this frame saves no
    // register and, under Valgrind, leaves no frame of its own.
    unsafe {
        if p.is_null() {
            // `realloc(NULL, n)` is `malloc(n)` (CPython grows buffers from null): the C
            // `malloc`'s fast path, else the general `realloc` (under memcheck its frame names
            // `realloc`, as memcheck's own would).
            return match dispatch::malloc_fast(size) {
                Some(b) => b.cast(),
                None => realloc_named(p, size),
            };
        }
        match dispatch::realloc_fast(p.cast(), size) {
            ReallocFast::Done(q) => q.cast(),
            ReallocFast::Move(class) => realloc_moving(p, size, class),
            ReallocFast::Other => realloc_named(p, size),
        }
    }
}

/// `realloc` on the native fast path of a pool block that moves (`dispatch::realloc_move`),
/// the general `realloc` if that cannot be done.
///
/// # Safety
/// `p` is a live pool block of `class`, on path `Fast`; `size` is not 0.
#[inline(never)]
unsafe fn realloc_moving(p: *mut c_void, size: usize, class: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe {
        let q = dispatch::realloc_move(p.cast(), size, class);
        if q.is_null() {
            return realloc_named(p, size);
        }
        q.cast()
    }
}

/// # Safety
/// As [`poolgrind_realloc`].
#[inline(never)]
unsafe extern "C" fn realloc_named(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    match unsafe { dispatch::realloc_pool(p.cast(), size) } {
        Realloc::Done(q) => {
            if q.is_null() && size != 0 {
                set_errno(libc::ENOMEM);
            }
            q.cast()
        }
        // SAFETY: `q` is null or a live system block.
        Realloc::System(q) => unsafe { sys::realloc(q, size) }.cast(),
    }
}
frame_name!(realloc_named, "realloc");

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
    // SAFETY: forwarded.
    unsafe { reallocarray_named(p, n, size) }
}

/// # Safety
/// As [`poolgrind_realloc`].
#[inline(never)]
unsafe extern "C" fn reallocarray_named(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded.
        Some(total) => unsafe { realloc_named(p, total) },
        None => {
            set_errno(libc::ENOMEM);
            null_mut()
        }
    }
}
frame_name!(reallocarray_named, "reallocarray");

/// `free`; `free(NULL)` does nothing.
///
/// # Safety
/// `p` is null or a live block.
#[no_mangle]
pub unsafe extern "C" fn poolgrind_free(p: *mut c_void) {
    // SAFETY: forwarded.
    if !unsafe { dispatch::free_fast(p.cast()) } {
        // SAFETY: forwarded.
        unsafe { free_named(p) }
    }
}

/// # Safety
/// As [`poolgrind_free`].
#[inline(never)]
unsafe extern "C" fn free_named(p: *mut c_void) {
    // SAFETY: forwarded.
    unsafe { dispatch::free_named(p.cast()) }
}
frame_name!(free_named, "free");

/// `malloc_usable_size`.
///
/// # Safety
/// `p` is null or a live block.
#[no_mangle]
pub unsafe extern "C" fn poolgrind_malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: forwarded.
    unsafe { dispatch::usable_size(p.cast()) }
}

/// The aligned allocations' path `Fast` for an alignment every block has (at most 16, as
/// rptest's `memalign(8, n)` and `memalign(16, n)`): the C `malloc`'s, thread caches and large
/// bins included. `None` elsewhere, and on a pool class's miss.
#[inline(always)]
fn malloc_fast_aligned(align: usize, size: usize) -> Option<*mut u8> {
    if align <= ALIGNMENT {
        dispatch::malloc_fast(size)
    } else {
        None
    }
}

/// `memalign`: a non-power-of-two alignment is rounded up, as glibc does.
#[no_mangle]
pub extern "C" fn poolgrind_memalign(align: usize, size: usize) -> *mut c_void {
    memalign_named(align, size)
}

#[inline(never)]
extern "C" fn memalign_named(align: usize, size: usize) -> *mut c_void {
    if let Some(b) = malloc_fast_aligned(align, size) {
        return enomem_if_null(b);
    }
    match dispatch::alloc_pool(size, align, false, true) {
        Some(b) => enomem_if_null(b),
        None => sys::memalign(align, size).cast(),
    }
}
frame_name!(memalign_named, "memalign");

/// `aligned_alloc`: EINVAL unless `align` is a power of two.
#[no_mangle]
pub extern "C" fn poolgrind_aligned_alloc(align: usize, size: usize) -> *mut c_void {
    aligned_alloc_named(align, size)
}

#[inline(never)]
extern "C" fn aligned_alloc_named(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    if let Some(b) = malloc_fast_aligned(align, size) {
        return enomem_if_null(b);
    }
    match dispatch::alloc_pool(size, align, false, true) {
        Some(b) => enomem_if_null(b),
        None => sys::aligned_alloc(align, size).cast(),
    }
}
frame_name!(aligned_alloc_named, "aligned_alloc");

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
    // SAFETY: forwarded.
    unsafe { posix_memalign_named(out, align, size) }
}

/// # Safety
/// As [`poolgrind_posix_memalign`].
#[inline(never)]
unsafe extern "C" fn posix_memalign_named(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<usize>()) {
        return libc::EINVAL;
    }
    let fast = malloc_fast_aligned(align, size);
    match fast.or_else(|| dispatch::alloc_pool(size, align, false, true)) {
        Some(p) if p.is_null() => libc::ENOMEM,
        Some(p) => {
            // SAFETY: the caller guarantees `out` is writable.
            unsafe { *out = p.cast() };
            0
        }
        // SAFETY: forwarded.
        None => unsafe { sys::posix_memalign(out.cast(), align, size) },
    }
}
frame_name!(posix_memalign_named, "posix_memalign");

/// `valloc`: page-aligned (the system allocator's).
#[no_mangle]
pub extern "C" fn poolgrind_valloc(size: usize) -> *mut c_void {
    sys::valloc(size, false).cast()
}

/// `pvalloc`: page-aligned, size rounded up to whole pages (the system allocator's).
#[no_mangle]
pub extern "C" fn poolgrind_pvalloc(size: usize) -> *mut c_void {
    sys::valloc(size, true).cast()
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
