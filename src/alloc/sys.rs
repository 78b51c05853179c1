//! The system allocator: the next `malloc` after us in the symbol search order (glibc's, or
//! whatever a user preloaded before us), resolved once with `dlsym(RTLD_NEXT, …)`.
//!
//! Why not `libc::malloc`: when `libpoolgrind.so` is preloaded, the symbol `malloc` *is*
//! poolgrind, so calling it from here would recurse. Why not glibc's `__libc_malloc`: valgrind
//! 3.19 does not redirect those names (only `malloc`, `free`, `memalign`, … in libc.so), so
//! blocks taken through them would be invisible to memcheck. A function pointer to libc's
//! `malloc` is redirected, because valgrind redirects by address.
//!
//! `dlsym` may itself allocate. Requests that arrive while we resolve (or before) are served
//! from a small static bootstrap buffer ([`boot_alloc`]); such blocks are never freed.

use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
type CallocFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type ReallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type MemalignFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;

extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_free(p: *mut c_void);
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
}

static MALLOC: AtomicPtr<c_void> = AtomicPtr::new(__libc_malloc as *mut c_void);
static CALLOC: AtomicPtr<c_void> = AtomicPtr::new(__libc_calloc as *mut c_void);
static REALLOC: AtomicPtr<c_void> = AtomicPtr::new(__libc_realloc as *mut c_void);
static FREE: AtomicPtr<c_void> = AtomicPtr::new(__libc_free as *mut c_void);
static MEMALIGN: AtomicPtr<c_void> = AtomicPtr::new(__libc_memalign as *mut c_void);
static USABLE: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
type UsableFn = unsafe extern "C" fn(*mut c_void) -> usize;

/// Resolves the system allocator's entry points. Called once, from `heap::init`.
pub fn init() {
    for (slot, name) in [
        (&MALLOC, c"malloc"),
        (&CALLOC, c"calloc"),
        (&REALLOC, c"realloc"),
        (&FREE, c"free"),
        (&MEMALIGN, c"memalign"),
        (&USABLE, c"malloc_usable_size"),
    ] {
        // SAFETY: `name` is NUL-terminated; RTLD_NEXT searches the objects after the caller's.
        let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
        if !f.is_null() {
            slot.store(f, Ordering::Release);
        }
    }
}

macro_rules! load {
    ($slot:ident, $ty:ty) => {{
        let f = $slot.load(Ordering::Acquire);
        // SAFETY: the slot always holds a function of this signature (a glibc `__libc_*`
        // function initially, the dlsym result after `init`).
        #[allow(unused_unsafe)]
        let f = unsafe { core::mem::transmute::<*mut c_void, $ty>(f) };
        f
    }};
}

/// `malloc` of the system allocator.
#[inline]
pub fn malloc(size: usize) -> *mut u8 {
    // SAFETY: the system malloc accepts any size and returns null on failure.
    unsafe { load!(MALLOC, MallocFn)(size).cast() }
}

/// `calloc` of the system allocator (checks `n * size` overflow itself).
#[inline]
pub fn calloc(n: usize, size: usize) -> *mut u8 {
    // SAFETY: as malloc.
    unsafe { load!(CALLOC, CallocFn)(n, size).cast() }
}

/// `memalign` of the system allocator; `align` must be a power of two.
#[inline]
pub fn memalign(align: usize, size: usize) -> *mut u8 {
    // SAFETY: the system memalign accepts any power-of-two alignment; null on failure.
    unsafe { load!(MEMALIGN, MemalignFn)(align, size).cast() }
}

/// `realloc` of the system allocator.
///
/// # Safety
/// `p` must be null or a live block of the system allocator.
#[inline]
pub unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    // SAFETY: the caller guarantees `p` came from the system allocator.
    unsafe { load!(REALLOC, ReallocFn)(p.cast(), size).cast() }
}

/// `free` of the system allocator.
///
/// # Safety
/// `p` must be null or a live block of the system allocator.
#[inline]
pub unsafe fn free(p: *mut u8) {
    // SAFETY: the caller guarantees `p` came from the system allocator.
    unsafe { load!(FREE, FreeFn)(p.cast()) }
}

/// `malloc_usable_size` of the system allocator (0 if it has none).
///
/// # Safety
/// `p` must be a live block of the system allocator.
pub unsafe fn usable_size(p: *mut u8) -> usize {
    if USABLE.load(Ordering::Acquire).is_null() {
        return 0;
    }
    // SAFETY: non-null: the dlsym result for malloc_usable_size; p is a system block.
    unsafe { load!(USABLE, UsableFn)(p.cast()) }
}

const BOOT_SIZE: usize = 64 << 10;

#[repr(C, align(4096))]
struct Boot(core::cell::UnsafeCell<[u8; BOOT_SIZE]>);
// SAFETY: disjoint ranges are handed out by an atomic bump pointer.
unsafe impl Sync for Boot {}

static BOOT: Boot = Boot(core::cell::UnsafeCell::new([0; BOOT_SIZE]));
static BOOT_USED: AtomicUsize = AtomicUsize::new(0);

/// Hands out never-freed, zeroed memory from the static bootstrap buffer (16-aligned, with the
/// size stored in the 16 bytes before the block). Null when the buffer is exhausted.
pub fn boot_alloc(size: usize) -> *mut u8 {
    let Some(need) = size.checked_add(16 + 15).map(|n| n & !15) else {
        return core::ptr::null_mut();
    };
    let start = BOOT_USED.fetch_add(need, Ordering::Relaxed);
    if start.checked_add(need).is_none_or(|end| end > BOOT_SIZE) {
        return core::ptr::null_mut();
    }
    let base = BOOT.0.get().cast::<u8>();
    // SAFETY: [start, start + need) is inside BOOT and handed out to nobody else.
    unsafe {
        base.add(start).cast::<usize>().write(size);
        base.add(start + 16)
    }
}

/// Whether `p` is a block of the bootstrap buffer.
#[inline]
pub fn is_boot(p: *const u8) -> bool {
    let base = BOOT.0.get() as usize;
    (p as usize).wrapping_sub(base) < BOOT_SIZE
}

/// Requested size of a bootstrap block.
///
/// # Safety
/// `p` must have been returned by [`boot_alloc`].
pub unsafe fn boot_size(p: *const u8) -> usize {
    // SAFETY: boot_alloc wrote the size 16 bytes before the block.
    unsafe { p.sub(16).cast::<usize>().read() }
}
