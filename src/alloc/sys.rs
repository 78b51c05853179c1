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
//!
//! Also here, below everything else: the one way the allocator maps memory ([`map`],
//! [`unmap`], and the lazily readable [`Table`]), the process-wide [`COUNTERS`], and
//! [`FmtBuf`], formatting without allocating.

use core::ffi::{c_void, CStr};
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
/// The aligned family, for the C entry points, which hand over-aligned requests to the system
/// allocator's own function of the same name (so memcheck records the block with that name and
/// the program's stack). Null until resolved: [`memalign`] serves them then.
static ALIGNED_ALLOC: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
static POSIX_MEMALIGN: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
static VALLOC: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
static PVALLOC: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
type PosixMemalignFn = unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> i32;

/// Resolves the system allocator's entry points. Called once, from `init::ensure_init`.
pub fn init() {
    let debug = glibc_debug_loaded();
    for (slot, name, version) in RESOLVED {
        let f = next_symbol(name, debug.then_some(version));
        if !f.is_null() {
            slot.store(f, Ordering::Release);
        }
    }
    if debug {
        start_debug_allocator();
    }
}

/// Starts glibc's debugging allocator, `libc_malloc_debug.so`, now, while every other thread
/// that allocates waits for our initialisation. Its first `malloc` (or `realloc`, `memalign`)
/// switches its checks on (`generic_hook_ini` in glibc's `malloc/malloc-debug.c`), and it
/// assumes no other thread calls it meanwhile: a call that comes between its hook's reset and
/// `MALLOC_CHECK_`'s switch is served by plain glibc, from a thread arena, and once the checks
/// are on they take that block for a corrupted one (`malloc_usable_size` and `free` abort with
/// "memory corruption"). A program without us makes its first allocation before its threads;
/// behind us small blocks never reach glibc, and its first call may come from several threads
/// at once (corpus `debug_start.c`). A block of 0 bytes, allocated and freed, as glibc starts
/// itself there.
fn start_debug_allocator() {
    allocate_and_free(0);
}

/// One block of `bytes` allocated and freed through the system allocator, for what that does
/// to its state ([`start_debug_allocator`], [`warm_up`]).
fn allocate_and_free(bytes: usize) {
    let p = malloc(bytes);
    if !p.is_null() {
        // SAFETY: a block of the system allocator, just allocated and never used.
        unsafe { free(p) };
    }
}

/// Every system allocator function we call, its name and its glibc symbol version (x86-64).
const RESOLVED: [(&AtomicPtr<c_void>, &CStr, &CStr); 10] = {
    const BASE: &CStr = c"GLIBC_2.2.5";
    [
        (&MALLOC, c"malloc", BASE),
        (&CALLOC, c"calloc", BASE),
        (&REALLOC, c"realloc", BASE),
        (&FREE, c"free", BASE),
        (&MEMALIGN, c"memalign", BASE),
        (&USABLE, c"malloc_usable_size", BASE),
        (&ALIGNED_ALLOC, c"aligned_alloc", c"GLIBC_2.16"),
        (&POSIX_MEMALIGN, c"posix_memalign", BASE),
        (&VALLOC, c"valloc", BASE),
        (&PVALLOC, c"pvalloc", BASE),
    ]
};

/// The next object's `name`: at `version` when one is given (x86-64 glibc), else (or when that
/// finds none) at the default version. Why a version: glibc's debugging allocator,
/// `libc_malloc_debug.so` (`MALLOC_CHECK_`, `mcheck`, `mtrace`), defines `malloc@GLIBC_2.2.5`
/// and so on, not the default `malloc@@GLIBC_2.2.5`; programs bind to it when it is preloaded,
/// but a `dlsym` without a version skips it for libc.so's, so none of its checks ran behind us.
/// Only then: an allocator with versions of its own behind us (Debian's jemalloc) defines no
/// `GLIBC_2.2.5`, and a versioned lookup would skip it for libc.so's.
fn next_symbol(name: &CStr, version: Option<&CStr>) -> *mut c_void {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
    if let Some(version) = version {
        // SAFETY: NUL-terminated strings; RTLD_NEXT searches the objects after the caller's.
        let f = unsafe { libc::dlvsym(libc::RTLD_NEXT, name.as_ptr(), version.as_ptr()) };
        if !f.is_null() {
            return f;
        }
    }
    let _ = version;
    // SAFETY: as above.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) }
}

/// Whether a Valgrind tool that replaces `malloc` runs this process: its `vgpreload_<tool>`
/// object is loaded (memcheck, helgrind, DRD, massif, DHAT; `vgpreload_core` alone is loaded
/// under every tool). Asked without client requests, which the build without the `valgrind`
/// feature does not have: there `dlsym` still finds glibc's functions, but their calls run the
/// tool's allocator, whose blocks have no glibc chunk header (memcheck: red zone).
fn valgrind_replaces_malloc() -> bool {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        found: *mut c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid `info` whose name is null or NUL-terminated,
        // and our `found`.
        unsafe {
            let name = (*info).dlpi_name;
            if name.is_null() {
                return 0;
            }
            let name = CStr::from_ptr(name).to_bytes();
            let has = |s: &[u8]| name.windows(s.len()).any(|w| w == s);
            if has(b"vgpreload_") && !has(b"vgpreload_core") {
                *found.cast::<bool>() = true;
                return 1;
            }
        }
        0
    }
    let mut found = false;
    // SAFETY: `visit` matches the callback's type and only reads what it is given.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut found as *mut bool).cast()) };
    found
}

/// Whether glibc's debugging allocator, `libc_malloc_debug.so`, is loaded.
fn glibc_debug_loaded() -> bool {
    // SAFETY: a NUL-terminated name; RTLD_NOLOAD only looks the object up, and its handle, if
    // any, is released at once.
    unsafe {
        let debug = libc::dlopen(
            c"libc_malloc_debug.so.0".as_ptr(),
            libc::RTLD_NOLOAD | libc::RTLD_LAZY,
        );
        if !debug.is_null() {
            libc::dlclose(debug);
        }
        !debug.is_null()
    }
}

/// Whether the system allocator is plain glibc (x86-64), which the thread caches' system bins
/// need (they read a block's glibc chunk header, and keep freed blocks for later):
/// - every function we resolved ([`init`]) is libc.so.6's own, found in libc.so.6 itself (not
///   with another allocator behind us: jemalloc, mimalloc, tcmalloc, a tracer; tcmalloc also
///   defines glibc's `__libc_malloc` names, so those prove nothing);
/// - no Valgrind tool that replaces `malloc` runs the process ([`valgrind_replaces_malloc`]);
/// - glibc checks nothing at `free` that a block kept for later would hide or, handed out
///   again for a larger request, break: no `MALLOC_PERTURB_`, no `MALLOC_CHECK_` (inside libc
///   before glibc 2.34; since, in `libc_malloc_debug.so`, whose functions then resolve
///   instead: see [`next_symbol`]), no `malloc.perturb` or `malloc.check` tunable. A later
///   `mallopt(M_PERTURB)` is not seen.
pub fn is_plain_glibc() -> bool {
    if cfg!(not(all(target_arch = "x86_64", target_env = "gnu"))) || valgrind_replaces_malloc() {
        return false;
    }
    // SAFETY: getenv reads the environment; a non-null result is a NUL-terminated string.
    let env = |name: &CStr| unsafe {
        let v = libc::getenv(name.as_ptr());
        (!v.is_null()).then(|| CStr::from_ptr(v).to_bytes())
    };
    // glibc reads both with atoi: set and not 0.
    let set = |v: Option<&[u8]>| {
        v.is_some_and(|v| {
            v.iter()
                .take_while(|c| c.is_ascii_digit())
                .any(|&c| c != b'0')
        })
    };
    if set(env(c"MALLOC_PERTURB_")) || set(env(c"MALLOC_CHECK_")) {
        return false;
    }
    if env(c"GLIBC_TUNABLES").is_some_and(|t| {
        [&b"malloc.perturb"[..], b"malloc.check"]
            .iter()
            .any(|k| t.windows(k.len()).any(|w| w == *k))
    }) {
        return false;
    }
    // SAFETY: a NUL-terminated name; RTLD_NOLOAD only looks the object up (libc.so.6 is
    // loaded: we link it); the handle is released below.
    let libc_so =
        unsafe { libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY) };
    if libc_so.is_null() {
        return false;
    }
    let own = RESOLVED.iter().all(|(slot, name, _)| {
        // SAFETY: a live handle and a NUL-terminated name.
        let f = unsafe { libc::dlsym(libc_so, name.as_ptr()) };
        !f.is_null() && slot.load(Ordering::Acquire) == f
    });
    // SAFETY: the handle dlopen returned.
    unsafe { libc::dlclose(libc_so) };
    own
}

macro_rules! load {
    ($slot:expr, $ty:ty) => {{
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

/// `aligned_alloc` of the system allocator (its `memalign` when it has none).
#[inline]
pub fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
    if ALIGNED_ALLOC.load(Ordering::Acquire).is_null() {
        return memalign(align, size);
    }
    // SAFETY: the dlsym result for aligned_alloc; it validates its arguments itself.
    unsafe { load!(ALIGNED_ALLOC, MemalignFn)(align, size).cast() }
}

/// `posix_memalign` of the system allocator (its `memalign` when it has none).
///
/// # Safety
/// `out` must be valid for a pointer write.
#[inline]
pub unsafe fn posix_memalign(out: *mut *mut u8, align: usize, size: usize) -> i32 {
    if POSIX_MEMALIGN.load(Ordering::Acquire).is_null() {
        let p = memalign(align, size);
        if p.is_null() {
            return libc::ENOMEM;
        }
        // SAFETY: the caller guarantees `out` is writable.
        unsafe { *out = p };
        return 0;
    }
    // SAFETY: the dlsym result for posix_memalign; `out` is writable (caller).
    unsafe { load!(POSIX_MEMALIGN, PosixMemalignFn)(out.cast(), align, size) }
}

/// `valloc` (`pvalloc` when `whole_pages`) of the system allocator (page-aligned `memalign`
/// when it has none).
#[inline]
pub fn valloc(size: usize, whole_pages: bool) -> *mut u8 {
    let slot = if whole_pages { &PVALLOC } else { &VALLOC };
    if slot.load(Ordering::Acquire).is_null() {
        return memalign(4096, size);
    }
    // SAFETY: the dlsym result for valloc / pvalloc, which take a size and return a block.
    unsafe { load!(slot, MallocFn)(size).cast() }
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

/// Starts the system allocator where a heap of blocks above 512 B needs it (issue 15): one block
/// of `bytes` allocated and freed, so that glibc's adaptive thresholds move as they do after a
/// program frees its first mapped block that big: blocks up to `bytes` come from its heap, and
/// the heap is trimmed only when more than `2 × bytes` is free at its top (glibc's `free` of a
/// mapped chunk, documented in mallopt(3); `mallopt` itself would switch that adaptation off).
/// Without it glibc starts at 128 KiB for both. That suits a heap that also holds every small
/// block, whose live blocks keep its top in use; with the small blocks in pools its heap holds
/// only the large ones, and its top is given back and faulted in again and again (mstress:
/// `brk` 184 calls against 21, 3–4× the page faults). Another system allocator just sees one
/// allocation.
///
/// Done lazily (issue 15's seventeenth round): [`arm_warm_up`] at initialisation, and the warm-up
/// itself just before the first request of at least [`WARM_UP_TRIGGER`] bytes that reaches the
/// system allocator ([`warm_up_before`]). A program whose system blocks all stay below it (larson
/// over 513–1000 B, glibc's malloc benchmarks, espresso, xmalloc: at most 38 KB) keeps glibc's
/// start: with the raised trim threshold the arenas of exited threads kept their free tops
/// (larson 513–1000 B: 21.0–25.4 MiB of glibc's arenas at exit against 16.6–17.9 without; peak
/// RSS 1.13 → 1.05 × glibc, medians of 24 rounds). mstress, whose top churned, asks for 225
/// blocks of 128 KiB to 640 KB, from its first objects on (its page faults: 2 340 with the
/// warm-up at start, 2 355 lazily); `git log -p` and other real programs ask for such buffers
/// early.
fn warm_up(bytes: usize) {
    allocate_and_free(bytes);
}

/// The smallest request to the system allocator that makes it start as a heap of large blocks
/// needs ([`warm_up`]): glibc's first mmap threshold (128 KiB), the first size glibc would map
/// apart. Not less: every C++ program asks for 72 704 bytes at start (libstdc++'s emergency
/// exception pool), larson among them.
pub const WARM_UP_TRIGGER: usize = 128 << 10;

/// The warm-up still to be done: its size in bytes, or 0 (none asked for, or done).
static WARM_UP: AtomicUsize = AtomicUsize::new(0);

/// Asks for [`warm_up`] of `bytes` (0: none) before the first request of at least
/// [`WARM_UP_TRIGGER`] bytes. At initialisation.
pub fn arm_warm_up(bytes: usize) {
    WARM_UP.store(bytes, Ordering::Relaxed);
}

/// Before a request of `size` bytes that the system allocator serves: the warm-up, if this is
/// the first request big enough and one was asked for. A compare on every such request; the
/// rest out of line.
#[inline(always)]
pub fn warm_up_before(size: usize) {
    if size >= WARM_UP_TRIGGER {
        warm_up_armed();
    }
}

/// [`warm_up`] if it is still to be done (once, whichever thread comes first).
#[cold]
#[inline(never)]
fn warm_up_armed() {
    if WARM_UP.load(Ordering::Relaxed) != 0 {
        let bytes = WARM_UP.swap(0, Ordering::Relaxed);
        if bytes != 0 {
            warm_up(bytes);
        }
    }
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

/// The bootstrap buffer: 16-aligned like its blocks, not page-aligned. A native process takes
/// ~128 bytes of it (the allocations made before `init`), which then share a page of `.bss`
/// with the allocator's other statics instead of dirtying one of their own (issue 15).
#[repr(C, align(16))]
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

// ---------------------------------------------------------------------------------------------
// Mapping memory: one helper for every mapping the allocator makes.

/// Maps `bytes` of private anonymous memory, reserved without swap: only the pages touched
/// cost memory. `readable`: read-write (memmap2); else PROT_NONE until [`Table::commit`] or
/// [`open`] opens part of it, mapped so from the start: a writable mapping is charged in full
/// against the commit limit when it is made where the kernel counts every writable private page
/// (`vm.overcommit_memory = 2` ignores MAP_NORESERVE), so the arenas' 64 GiB could not be had
/// there; a PROT_NONE one is charged nothing (only what is opened: measured with
/// `Committed_AS`, 1 GiB writable +1 048 576 KiB, PROT_NONE +0, 256 KiB opened +256). Null on
/// failure. The mapping lives until [`unmap`] (memmap2 has no "from raw" constructor, so the
/// owner is forgotten and the address is the handle).
pub(crate) fn map(bytes: usize, readable: bool) -> *mut u8 {
    if !readable {
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                bytes,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        return if p == libc::MAP_FAILED {
            core::ptr::null_mut()
        } else {
            p.cast()
        };
    }
    let Ok(mut m) = memmap2::MmapOptions::new()
        .len(bytes)
        .no_reserve_swap()
        .map_anon()
    else {
        return core::ptr::null_mut();
    };
    let p = m.as_mut_ptr();
    core::mem::forget(m);
    p
}

/// Unmaps a mapping made by [`map`].
pub(crate) fn unmap(p: *mut u8, bytes: usize) {
    // SAFETY: `p` is the start of a live mapping of `bytes` made by `map`, no longer used.
    unsafe { libc::munmap(p.cast(), bytes) };
}

/// Makes `bytes` at `p`, inside a PROT_NONE reservation made by [`map`], readable and
/// writable (its pages read as zero until touched); false if the kernel refuses.
///
/// # Safety
/// `[p, p + bytes)` lies inside a live reservation made by [`map`] that nobody else uses, `p`
/// and `bytes` multiples of the page size.
pub(crate) unsafe fn open(p: *mut u8, bytes: usize) -> bool {
    // SAFETY: as the caller guarantees.
    unsafe { libc::mprotect(p.cast(), bytes, libc::PROT_READ | libc::PROT_WRITE) == 0 }
}

/// Gives the pages of `bytes` at `p` back to the kernel (they read as zero when opened again)
/// and makes the range PROT_NONE again, still reserved: `madvise` and `mprotect`, neither of
/// which ever unmaps, so no other mapping can take the range (a `MAP_FIXED` mapping over it, on
/// kernels before 6.12, could leave a hole when it fails). Should the kernel refuse the
/// `mprotect`, the range stays open, which only loses the protection.
///
/// # Safety
/// As [`open`], and nothing in the range is used any more.
pub(crate) unsafe fn close(p: *mut u8, bytes: usize) {
    // SAFETY: as the caller guarantees; MADV_DONTNEED on private anonymous memory drops its
    // pages (zero when touched again).
    unsafe {
        libc::madvise(p.cast(), bytes, libc::MADV_DONTNEED);
        libc::mprotect(p.cast(), bytes, libc::PROT_NONE);
    }
}

/// A table in reserved address space (the arena table, the page map's root and its flat map,
/// the memcheck side table, the quarantine rings, the arenas' space). Lazy (every table under
/// memcheck) it is PROT_NONE and made readable only as far as used: memcheck's leak check scans
/// every readable mapping word by word, and the reserved but untouched tables (368 MB) added
/// 0.66 s to the exit of every process (the collections benchmark: 1.32 s instead of 0.64 s with
/// zero rounds of work). Natively the flat page map is lazy too (it is opened as arenas are
/// made), and the arenas' space (opened arena by arena, `open`); the others are plain
/// read-write reservations.
pub(crate) struct Table {
    base: AtomicUsize,
    /// Readable prefix in bytes (changed under the arena lock).
    committed: AtomicUsize,
    /// Reserved bytes.
    limit: AtomicUsize,
}

/// Granule in which a lazy table is made readable (few mappings).
const COMMIT_GRANULE: usize = 64 << 10;

impl Table {
    /// No reservation yet.
    pub(crate) const fn new() -> Self {
        Table {
            base: AtomicUsize::new(0),
            committed: AtomicUsize::new(0),
            limit: AtomicUsize::new(0),
        }
    }

    /// Reserves `bytes`; false on failure. Called once, at initialisation.
    pub(crate) fn reserve(&self, bytes: usize, lazy: bool) -> bool {
        let p = map(bytes, !lazy);
        if p.is_null() {
            return false;
        }
        let committed = if lazy { 0 } else { bytes };
        self.limit.store(bytes, Ordering::Relaxed);
        self.base.store(p as usize, Ordering::Release);
        // Last, with Release: a lock-free reader (the page map's, on every `free`) that sees a
        // readable prefix (Acquire) also sees the base.
        self.committed.store(committed, Ordering::Release);
        true
    }

    /// Unmaps the whole reservation, which nothing may read or write again: the table is then
    /// as before [`Table::reserve`] (no base, nothing readable). For a lazy table that is done
    /// with before memcheck's leak check, which reads every readable mapping word by word.
    pub(crate) fn release(&self) {
        let base = self.base::<u8>();
        let bytes = self.limit.load(Ordering::Relaxed);
        self.committed.store(0, Ordering::Release);
        self.base.store(0, Ordering::Release);
        self.limit.store(0, Ordering::Relaxed);
        if !base.is_null() && bytes != 0 {
            unmap(base, bytes);
        }
    }

    /// Bytes reserved (0 before [`Table::reserve`] succeeds).
    #[inline(always)]
    pub(crate) fn reserved(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// The table's base (null before [`Table::reserve`] succeeds).
    #[inline(always)]
    pub(crate) fn base<T>(&self) -> *mut T {
        self.base.load(Ordering::Acquire) as *mut T
    }

    /// Bytes readable from the base.
    #[inline(always)]
    pub(crate) fn readable(&self) -> usize {
        self.committed.load(Ordering::Acquire)
    }

    /// Makes the first `upto` bytes readable and writable; false if beyond the reservation or
    /// the kernel refuses. The caller holds the arena lock.
    ///
    /// Only lazy tables have anything to open here (every table under memcheck; natively the
    /// flat page map), and they are opened with a fresh mapping over the reservation, not with
    /// `mprotect` (the same one system call natively): memcheck makes a range that
    /// `mprotect` opens defined byte by byte (`make_mem_defined_if_noaccess`, a loop over every
    /// byte's shadow), and a new mapping 64 KiB at a time (`make_mem_defined`, whole secondary
    /// maps). On the collections benchmark the ~8 MB opened cost 11 ms of 1.65 s (issue 15).
    /// Should the mapping fail, the range may have become a hole that another mapping can take:
    /// the table then ends where it was readable, and nothing here ever maps past it again.
    pub(crate) fn commit(&self, upto: usize) -> bool {
        let from = self.committed.load(Ordering::Acquire);
        if upto <= from {
            return true;
        }
        let limit = self.limit.load(Ordering::Relaxed);
        if upto > limit {
            return false;
        }
        let to = upto
            .div_ceil(COMMIT_GRANULE)
            .saturating_mul(COMMIT_GRANULE)
            .min(limit);
        // SAFETY: [from, to) lies inside the reservation, which this table alone uses (from and
        // to are multiples of the page size, or `limit`, which is a multiple of it), unused.
        let want = unsafe { self.base::<u8>().add(from) };
        // SAFETY: a fixed private anonymous mapping over that unused part of the reservation.
        let got = unsafe {
            libc::mmap(
                want.cast(),
                to - from,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if got != want.cast() {
            self.limit.store(from, Ordering::Relaxed);
            return false;
        }
        self.committed.store(to, Ordering::Release);
        true
    }
}

// ---------------------------------------------------------------------------------------------
// Counters and formatting without allocating.

/// Counters kept without a lock (relaxed atomics; read by `stats`). None is written on a hot
/// path (arena creation and release, thread start and exit, requests of threads without an
/// active cache), and the struct has cache lines of its own: the read-mostly tables every
/// `free` reads must not share a line with a counter (issue 15).
#[repr(align(64))]
pub(crate) struct Counters {
    /// Arenas ever created.
    pub arenas_allocated: AtomicUsize,
    /// Arenas given back.
    pub arenas_freed: AtomicUsize,
    /// Most arenas alive at once.
    pub arenas_highwater: AtomicUsize,
    /// Requests served by the system allocator (too large, over-aligned, or `malloc` mode).
    pub system_allocs: AtomicUsize,
    /// Thread caches alive.
    pub thread_caches: core::sync::atomic::AtomicU32,
}

/// The process's counters.
pub(crate) static COUNTERS: Counters = Counters {
    arenas_allocated: AtomicUsize::new(0),
    arenas_freed: AtomicUsize::new(0),
    arenas_highwater: AtomicUsize::new(0),
    system_allocs: AtomicUsize::new(0),
    thread_caches: core::sync::atomic::AtomicU32::new(0),
};

/// Relaxed increment of a counter.
#[inline]
pub(crate) fn bump(c: &AtomicUsize) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A `fmt::Write` into a stack buffer of `N` bytes: formatting without allocating (the
/// allocator must never allocate through itself). [`FmtBuf::write_stderr`] spills what is
/// buffered to file descriptor 2 (and a full buffer spills by itself when `spill` is on);
/// [`FmtBuf::as_str`] keeps it (truncated at `N` bytes, on a character boundary).
pub struct FmtBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    spill: bool,
}

impl<const N: usize> FmtBuf<N> {
    /// An empty buffer that spills to stderr when full.
    pub const fn new() -> Self {
        FmtBuf {
            buf: [0; N],
            len: 0,
            spill: true,
        }
    }

    /// An empty buffer that keeps the first `N` bytes and drops the rest.
    pub const fn truncating() -> Self {
        FmtBuf {
            buf: [0; N],
            len: 0,
            spill: false,
        }
    }

    /// What is buffered.
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(&self.buf[..self.len]) {
            Ok(s) => s,
            // Truncated inside a character: keep the valid prefix.
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    /// Writes what is buffered to file descriptor 2.
    pub fn write_stderr(&mut self) {
        let mut off = 0;
        while off < self.len {
            // SAFETY: buf[off..len] is initialised; fd 2 may be closed, then write fails harmlessly.
            let n = unsafe { libc::write(2, self.buf.as_ptr().add(off).cast(), self.len - off) };
            if n <= 0 {
                break;
            }
            off += n as usize;
        }
        self.len = 0;
    }
}

impl<const N: usize> Default for FmtBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> core::fmt::Write for FmtBuf<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if self.len == N {
                if !self.spill {
                    return Ok(());
                }
                self.write_stderr();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}
