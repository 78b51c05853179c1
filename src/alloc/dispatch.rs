//! The one table: which path every request takes, for every entry point. The entry points
//! (`global`, `raw`, the C ABI) are thin: they call the inlined fast halves here and, for
//! everything else, one out-of-line function here in tail position.
//!
//! | path (`config::Path`) | allocation                         | free                                   |
//! |-----------------------|------------------------------------|----------------------------------------|
//! | `Fast`                | thread-cache pop (pointer-only requests of 97-512 B: a carrier class's bin while the carrier is merged, `types::carrier`), else refill; above 512 B the system allocator directly (the C `malloc` up to 1024 B: a system bin's pop first; pointer-only requests of 1025-16 376 B with glibc behind us: a large bin's pop first, `large_by_pointer`, `calloc_large`) | thread-cache push (pointer-only: after the page map, `arena::owns`; with glibc behind us and once a thread frees many glibc blocks, `meta::FreeMode::Unbranched`: a glibc block of 513..=1024 B into a system bin, the bin found without a branch; with glibc behind us, in either mode, a glibc block of 1025-16 376 B into a large bin, `free_foreign`) |
//! | `Memcheck`            | mempool chunk of the exact size    | MEMPOOL_FREE, quarantine               |
//! | `General`: debug mode | pools plus guards and fill         | checks, poison, back to the pool       |
//! | `General`: other tool | central heap, "new memory"         | central heap                           |
//! | `General`: `malloc` mode | system allocator                | system allocator                       |
//! | `Uninit`              | initialise, then dispatch again at the same place | as its path once initialised |
//!
//! Requests larger than [`SMALL_REQUEST_THRESHOLD`] or aligned to more than [`ALIGNMENT`] go to
//! the system allocator on every path; under memcheck so do the classes whose red-zoned blocks
//! no longer fit a useful number to a pool (`config::pool_limit`).

use core::ptr::{self, null_mut};

use super::arena;
use super::config;
pub(crate) use super::config::Path;
use super::meta::FreeMode;
use super::sys;
use super::types::*;
use super::{guards, init, memcheck, meta, pool, serial, tcache, track};

/// Bytes that debug mode adds to a request: 16 before the block (size + front guard), 8 after.
pub(crate) const DEBUG_OVERHEAD: usize = 24;

/// Largest request any allocator can satisfy (`PTRDIFF_MAX`): larger ones fail here, before the
/// system allocator (memcheck calls such a size argument "fishy"), except the pointer-only
/// `malloc` (C and `raw`) on path `Fast`, which leaves them to the system allocator (see
/// [`large_fast`], [`malloc_fast`]).
pub(crate) const MAX_REQUEST: usize = isize::MAX as usize;

// ---------------------------------------------------------------------------------------------
// The fast halves, inlined into the entry points: a thread-cache hit and nothing else (they
// need few registers, so the entry points save none and set up no frame).

/// Path `Fast`: a block for `size` bytes at `align` from this thread's cache, or, above the
/// pools' limit, from the system allocator through [`large_fast`]; null for everything else
/// and for a cache miss (then call [`alloc`]).
#[inline(always)]
pub(crate) fn alloc_fast(size: usize, align: usize) -> *mut u8 {
    if align <= ALIGNMENT {
        if size <= SMALL_REQUEST_THRESHOLD {
            // No test of the path: a bin holds blocks on path `Fast` only (`types::TCache`),
            // so on any other path, and before initialisation, this is a miss.
            return small_fast(size);
        }
        if fast_path() && size <= MAX_REQUEST {
            return large_fast(size);
        }
    }
    null_mut()
}

/// The largest request served from pools.
#[inline(always)]
pub(crate) fn pool_limit() -> usize {
    config::pool_limit()
}

/// Path `Memcheck`, `size` at most [`pool_limit`]: allocates a block and announces it in the
/// caller's frame (`memcheck::alloc_here`); null when out of memory.
#[inline(always)]
pub(crate) fn memcheck_alloc_here(size: usize) -> *mut u8 {
    memcheck::alloc_here(size)
}

/// The path for a request of `size` bytes, the allocator initialised first if it was not, so
/// that the first request takes the path of every later one. Returns `size` too: a caller keeps
/// no value across the (rare) call.
#[inline(always)]
pub(crate) fn path_initialised(size: usize) -> (usize, Path) {
    let path = config::path();
    if path == Path::Uninit {
        return init_passing(size);
    }
    (size, path)
}

/// The cold half of [`path_initialised`].
#[cold]
#[inline(never)]
fn init_passing(size: usize) -> (usize, Path) {
    init::ensure_init();
    (size, config::path())
}

/// Whether this process runs path `Fast` (the C `malloc` tests it after a bin's pop has
/// missed: a bin holds blocks on that path only).
#[inline(always)]
pub(crate) fn fast_path() -> bool {
    config::path() == Path::Fast
}

/// `size` at most [`SMALL_REQUEST_THRESHOLD`]: a thread-cache pop, null on a miss, which is
/// every call off path `Fast` (a bin holds blocks on that path only, `types::TCache`).
#[inline(always)]
pub(crate) fn small_fast(size: usize) -> *mut u8 {
    tcache::try_alloc(size_class(size))
}

/// Path `Fast`, a request above [`SMALL_REQUEST_THRESHOLD`]: counted in this thread's cache and
/// handed to the system allocator, nothing else. Apart from [`alloc`] so that this path saves no
/// register and sets up no frame (issue 15: through `alloc` it cost ~39 instructions and six
/// saved registers before the system allocator's first; now ~10). Null when the system
/// allocator fails (the caller's retry through [`alloc`] fails the same way).
///
/// No [`MAX_REQUEST`] check here: [`alloc_fast`] makes it, and the C `malloc` calls this in
/// tail position for any size, the system allocator refusing a larger one itself (null,
/// `ENOMEM`; path `Fast` never runs under Valgrind, whose memcheck calls such sizes "fishy").
#[inline(never)]
pub(crate) fn large_fast(size: usize) -> *mut u8 {
    if size < sys::WARM_UP_TRIGGER && tcache::try_count_system_alloc() {
        return sys::malloc(size);
    }
    large_fast_cold(size)
}

/// [`large_fast`] in a thread whose cache is not active yet (its first large request), or for a
/// request that may start the system allocator's warm-up (`sys::warm_up_before`).
#[cold]
#[inline(never)]
fn large_fast_cold(size: usize) -> *mut u8 {
    sys::warm_up_before(size);
    tcache::count_system_alloc_slow();
    sys::malloc(size)
}

/// The C `malloc` of at most [`SYS_CACHE_MAX_REQUEST`] bytes: a pop from the bin of `size`
/// ([`bin_of_request`]: a pool class, or above 512 B a system bin), null on a miss (always so
/// off path `Fast`). Also returns the bin.
#[inline(always)]
pub(crate) fn bin_fast(size: usize) -> (*mut u8, usize) {
    let bin = bin_of_request(size);
    (tcache::try_alloc(bin), bin)
}

/// Path `Fast`'s pointer-only `malloc` (the C `malloc`, `raw::malloc`): a pop from the bin of
/// `size` (a pool class, or for 513..=1024 B a system bin, chosen without a branch:
/// [`bin_of_request`]); above that, or on a system bin's miss, the system allocator's block
/// (its result, null included, is the answer: the calls are in tail position). `None` on every
/// other path and on a pool class's miss.
#[inline(always)]
pub(crate) fn malloc_fast(size: usize) -> Option<*mut u8> {
    if size <= SYS_CACHE_MAX_REQUEST {
        // A hit needs no test of the path: a bin holds blocks on path `Fast` only
        // (`types::TCache`). On any other path, and before initialisation, every bin is empty.
        let (b, bin) = bin_fast(size);
        if !b.is_null() {
            return Some(b);
        }
        if bin >= NB_SMALL_SIZE_CLASSES && fast_path() {
            return Some(sys_bin_miss(size, bin));
        }
        return None;
    }
    if fast_path() {
        return Some(large_by_pointer(size));
    }
    None
}

/// Whether `size` is a request of the large bins' sizes (1025..=[`LARGE_BIN_MAX_REQUEST`]).
#[inline(always)]
fn in_large_bins(size: usize) -> bool {
    size.wrapping_sub(SYS_CACHE_MAX_REQUEST + 1) < LARGE_BIN_MAX_REQUEST - SYS_CACHE_MAX_REQUEST
}

/// Path `Fast`, a pointer-only request above [`SYS_CACHE_MAX_REQUEST`] bytes: of the large
/// bins' sizes, a pop from its bin or from a chain another thread left for the bin
/// (`tcache::try_alloc_large`), or else the system allocator's block for the bin's request
/// (so that its `free` brings it back to this bin); otherwise [`large_fast`]. Only
/// pointer-only requests: their `free` is the one that fills the large bins (a Rust layout's
/// block goes back to the system allocator at once, `free_sized`).
#[inline(never)]
pub(crate) fn large_by_pointer(size: usize) -> *mut u8 {
    if in_large_bins(size) && tcache::large_bins_on() {
        let bin = large_bin_of_request(size);
        let b = tcache::try_alloc_large(bin);
        if !b.is_null() {
            return b;
        }
        return large_fast(large_bin_request(bin));
    }
    large_fast(size)
}

/// Path `Fast`, the C `calloc` of `total` bytes of the large bins' sizes: a large bin's block
/// (or one of a chain another thread left for it), zeroed here, or on a miss the system
/// allocator's `calloc` of the bin's request. `None` off
/// path `Fast`, without the large bins, and for other sizes.
pub(crate) fn calloc_large(total: usize) -> Option<*mut u8> {
    if !(in_large_bins(total) && tcache::large_bins_on() && fast_path()) {
        return None;
    }
    let bin = large_bin_of_request(total);
    let b = tcache::try_alloc_large(bin);
    if !b.is_null() {
        // SAFETY: a block of at least `total` bytes (its bin's request) that nobody uses.
        unsafe { core::ptr::write_bytes(b, 0, total) };
        return Some(b);
    }
    tcache::count_system_alloc();
    Some(sys::calloc(1, large_bin_request(bin)))
}

/// The C `calloc`'s thread-cache hit: a pool block for `n * size` bytes, not zeroed yet (the
/// caller zeroes `n * size` bytes) from the bin `malloc` takes it from ([`bin_of_request`]), with
/// no test of the path, as in [`malloc_fast`]. `None` on
/// an overflow of the product, above [`SMALL_REQUEST_THRESHOLD`] and on a miss (the general
/// `calloc` then decides).
#[inline(always)]
pub(crate) fn calloc_fast(n: usize, size: usize) -> Option<*mut u8> {
    let total = n.checked_mul(size)?;
    if total > SMALL_REQUEST_THRESHOLD {
        return None;
    }
    let b = bin_fast(total).0;
    (!b.is_null()).then_some(b)
}

/// Path `Fast`, a miss of system bin `bin` (a C `malloc` of `size`, 513..=1024 bytes): the
/// system allocator's block for the bin's largest request, so that its `free` puts it back in
/// this bin (for `size` itself when the bins are off: only the `free` of `meta::unbranched`
/// fills them).
#[inline(never)]
pub(crate) fn sys_bin_miss(size: usize, bin: usize) -> *mut u8 {
    let request = if meta::unbranched() {
        sys_bin_request(bin - NB_SMALL_SIZE_CLASSES)
    } else {
        size
    };
    large_fast(request)
}

/// Path `Fast`: pushes a block of known size into this thread's cache; false for everything
/// else (then call [`free_sized`]).
///
/// # Safety
/// `p` was allocated for `size` bytes at `align` by this allocator and is no longer used.
#[inline(always)]
pub(crate) unsafe fn free_fast_sized(p: *mut u8, size: usize, align: usize) -> bool {
    size <= SMALL_REQUEST_THRESHOLD
        && align <= ALIGNMENT
        && config::path() == Path::Fast
        // SAFETY: on this path a Rust layout's class is `class_for(size, align, false) ==
        // size_class(size)`: the block came from this class's pools.
        && unsafe { tcache::try_free(p, size_class(size)) }
}

/// What [`realloc_fast`] leaves to its caller.
pub(crate) enum ReallocFast {
    /// The answer.
    Done(*mut u8),
    /// A pool block of `class` that moves (to another class, or within its class to one a
    /// quarter smaller or less, [`stays`]): [`realloc_move`] (in tail position).
    Move(usize),
    /// Everything else: the general `realloc` (in tail position).
    Other,
}

/// Path `Fast` of the pointer-only `realloc` (the C `realloc`), without a call: a pool block
/// that [`stays`] is the answer itself; a system block goes to the system's `realloc` (in tail
/// position, by the caller: [`ReallocFast::Done`] carries its answer); a pool block that moves
/// is left to [`realloc_move`]. Null, size 0, bootstrap blocks, every other path:
/// [`ReallocFast::Other`].
///
/// Issue 15: CPython with `PYTHONMALLOC=malloc` reallocates ~360 000 times a run of its
/// workload, and the general `realloc` (the memcheck, debug and serialised paths all inlined)
/// cost 107 instructions a call, where pymalloc's costs about 11 when the block stays.
///
/// # Safety
/// `p` is null or a live block of this allocator or the system allocator.
#[inline(always)]
pub(crate) unsafe fn realloc_fast(p: *mut u8, size: usize) -> ReallocFast {
    if config::path() != Path::Fast || p.is_null() || size == 0 {
        return ReallocFast::Other;
    }
    match meta::owner(p) {
        meta::Owner::Pool(class) if class < NB_SMALL_SIZE_CLASSES => {
            if stays(size, class) {
                ReallocFast::Done(p)
            } else {
                ReallocFast::Move(class)
            }
        }
        meta::Owner::Pool(_) => ReallocFast::Other,
        meta::Owner::Foreign => {
            if sys::is_boot(p) || size > MAX_REQUEST {
                return ReallocFast::Other;
            }
            // SAFETY: not ours and not a bootstrap block: a live system block.
            ReallocFast::Done(unsafe { sys::realloc(p, size) })
        }
    }
}

/// Whether a block of `class` resized to `size` bytes stays where it is: `size` is of the
/// class (its own, or its carrier's while it has one: `malloc` would hand out a block of that
/// class), or smaller by less than a quarter of the class's size (pymalloc's rule: a copy
/// would cost more than the bytes it gives back; CPython shrinks its buffers after building
/// them, and half of its `realloc`s moved with the first rule alone, issue 15).
#[inline(always)]
fn stays(size: usize, class: usize) -> bool {
    let have = class_size(class);
    size <= have
        && (size_class(size) == class || bin_of_request(size) == class || 4 * size > 3 * have)
}

/// [`realloc_fast`]'s move: a block for `size` bytes from this thread's cache (the bin `malloc`
/// takes it from, [`bin_of_request`]; or the system allocator above
/// [`SMALL_REQUEST_THRESHOLD`]), the old block's bytes copied, the old block
/// pushed into the cache. Null when that block cannot be had that way (a cache miss, no
/// memory): the caller then takes the general `realloc`, `p` untouched.
///
/// # Safety
/// `p` is a live block of `class`'s pools; path `Fast`; `size` is not 0.
#[inline(always)]
pub(crate) unsafe fn realloc_move(p: *mut u8, size: usize, class: usize) -> *mut u8 {
    let q = if size <= SMALL_REQUEST_THRESHOLD {
        bin_fast(size).0
    } else {
        alloc_fast(size, ALIGNMENT)
    };
    if !q.is_null() {
        // SAFETY: `p` holds `class_size(class)` usable bytes on this path, `q` at least `size`;
        // the old block is then no longer used.
        unsafe {
            ptr::copy_nonoverlapping(p, q, class_size(class).min(size));
            tcache::free(p, class);
        }
    }
    q
}

/// Pointer-only free. Path `Fast`: the page map once (`arena::owns`), then the thread cache or the
/// system allocator; every other path out of line.
///
/// # Safety
/// `p` is null or a live block of this allocator or of the system allocator.
#[inline(always)]
pub(crate) unsafe fn free(p: *mut u8) {
    // SAFETY: forwarded.
    if !unsafe { free_fast(p) } {
        // SAFETY: forwarded.
        unsafe { free_slow(p) }
    }
}

/// Path `Fast` of [`free`]; false (nothing done) on every other path.
///
/// # Safety
/// As [`free`].
#[inline(always)]
pub(crate) unsafe fn free_fast(p: *mut u8) -> bool {
    let off = meta::range_offset(p);
    // A pool block's `free` in the mode a process starts in: one compare finds both (and
    // null, whose offset is above any range's length, goes on to its test below).
    if let Some(class) = meta::branchy_class(off) {
        // SAFETY: forwarded (path `Fast`: a length above 0 is published with it; `p` lies in
        // the range, so is not null).
        return unsafe { free_fast_pool(p, class) };
    }
    if p.is_null() {
        return false;
    }
    // Process-wide, so predicted; the mode of larson's mix first, which takes every `free`
    // here.
    match meta::free_mode() {
        // SAFETY: forwarded (path `Fast`, the range holds every arena).
        FreeMode::Unbranched => unsafe { free_fast_unbranched(p, off) },
        // SAFETY: forwarded (path `Fast`).
        FreeMode::Branchy => unsafe { free_fast_branchy(p) },
        FreeMode::NotFast => false,
    }
}

/// [`free_fast_branchy`] for a pointer whose page's entry gives `class` (`meta::owner`'s
/// `Owner::Pool`). Right in either mode of path `Fast`: a pool block goes to its class's bin in
/// both (`meta::branchy_class` may answer for a moment after a switch).
///
/// # Safety
/// As [`free`], `p` not null; path `Fast`.
#[inline(always)]
unsafe fn free_fast_pool(p: *mut u8, class: usize) -> bool {
    if class < NB_SMALL_SIZE_CLASSES {
        // SAFETY: p lies in one of our pools, in use for `class`.
        unsafe { tcache::free_counted(p, class) };
        return true;
    }
    // A pool that never had a class, a page no arena has: not a live block (the slow path
    // sees).
    false
}

/// [`free_fast`] with a branch on whose block it is: a pool block into its class's bin, a
/// system block back to the system allocator. Counts both, so that a thread that frees many
/// system blocks switches the process to [`free_fast_unbranched`] (`tcache::count_system_free`).
///
/// # Safety
/// As [`free`], `p` not null; path `Fast`.
#[inline(always)]
unsafe fn free_fast_branchy(p: *mut u8) -> bool {
    // `arena::owns` without its memcheck half (path `Fast` never runs under memcheck); the
    // page map's entry also names the class of a pool in use, so no pool header is read.
    match meta::owner(p) {
        // SAFETY: forwarded.
        meta::Owner::Pool(class) => unsafe { free_fast_pool(p, class) },
        meta::Owner::Foreign => {
            // SAFETY: not ours (pools are on): a live system block or a bootstrap block.
            unsafe { free_system_counted(p) };
            true
        }
    }
}

/// [`free_system`], counted (`tcache::count_system_free`) when a system bin could keep the
/// block: only those gain from the switch (a larger block's `free` branches in either mode).
/// Apart, so that the pool block's path saves no register.
///
/// # Safety
/// As [`free_system`].
#[inline(never)]
unsafe fn free_system_counted(p: *mut u8) {
    if meta::unbranched_allowed() {
        // SAFETY: plain glibc behind us: the word before a live glibc block is its chunk's
        // size; before a bootstrap block, a zero word of the buffer (`sys::boot_alloc`: its
        // size is the word before that).
        let h = unsafe { p.cast::<usize>().sub(1).read() };
        if bin_of_chunk(h) < NB_LINEAR_BINS {
            tcache::count_system_free();
        }
    }
    // SAFETY: forwarded.
    unsafe { free_foreign(p) }
}

/// Frees a block that is not ours on path `Fast`: with the large bins on, a glibc block of
/// their sizes into its bin (its chunk's size field, the word before it, says which), else
/// [`free_system`], counted while they are off (`tcache::count_large_free`: they go on once a
/// thread's frees are heavy in such blocks).
///
/// # Safety
/// `p` is a live system block or a bootstrap block.
#[inline(always)]
unsafe fn free_foreign(p: *mut u8) {
    if tcache::large_bins_allowed() {
        // Read here, not taken from `free_fast_unbranched`: there a pointer of the arenas'
        // range, even one of no arena's page, reads a stand-in word (`meta`'s `INSIDE_CHUNK`).
        // SAFETY: plain glibc behind us: the word before a live glibc block is its chunk's
        // size; before a bootstrap block, a zero word of the buffer (of no bin).
        let bin = large_bin_of_chunk(unsafe { p.cast::<usize>().sub(1).read() });
        if bin < NB_BINS {
            if tcache::large_bins_on() {
                // SAFETY: a live glibc block of the bin's sizes that nobody uses any more.
                unsafe { tcache::free(p, bin) };
                return;
            }
            tcache::count_large_free();
        }
    }
    // SAFETY: forwarded.
    unsafe { free_system(p) }
}

/// [`free_fast`] with glibc behind us and every arena in the range: which bin takes the block,
/// its pool class or its system bin, is found with no branch on whose block it is (issue 15:
/// in larson's mix of sizes on both sides of 512 B that branch went the wrong way half the
/// time). Reads the flat page map's entry and, for a pointer outside the arenas' range, the word
/// before the block, glibc's chunk size (`meta::flat_entry_unbranched`, `types::bin_of_chunk`).
///
/// # Safety
/// As [`free`], `p` not null; path `Fast`, [`FreeMode::Unbranched`].
#[inline(always)]
unsafe fn free_fast_unbranched(p: *mut u8, off: meta::Offset) -> bool {
    let (class_term, chunk_word) = meta::flat_entry_unbranched(p, off);
    // SAFETY: a static word for a pointer in the arenas' range; for any other, a live glibc or
    // bootstrap block (the caller's contract), the 8 bytes before it: its chunk's size, or a
    // zero word of the bootstrap buffer.
    let h = unsafe { chunk_word.read() };
    // A pool block's class, a glibc block's system bin, or at least NB_LINEAR_BINS: a pool without a
    // class, a page of the range that is not ours, a chunk of no bin (the sum's terms are
    // `meta::flat_entry_unbranched`'s).
    let bin = class_term.wrapping_add(bin_of_chunk(h));
    if bin < NB_LINEAR_BINS {
        // SAFETY: `p` lies in one of our pools, in use for `bin`, or is a live glibc block
        // that system bin `bin` keeps (its chunk is of the bin's sizes). Never a bootstrap
        // block: the word before it, 0, is of no bin.
        unsafe { tcache::free(p, bin) };
        return true;
    }
    if class_term != 0 {
        // A page of ours (its entry is not 0) of a pool that never had a class: not a live
        // block (the slow path sees).
        return false;
    }
    // SAFETY: not ours: a live system block no system bin keeps, or a bootstrap block.
    unsafe { free_foreign(p) };
    true
}

/// Frees a block that is not ours on path `Fast`: a system block, in tail position, or a
/// bootstrap block (never reused).
///
/// # Safety
/// `p` is a live system block or a bootstrap block.
#[inline(always)]
unsafe fn free_system(p: *mut u8) {
    if !sys::is_boot(p) {
        // SAFETY: a live system block.
        unsafe { sys::free(p) };
    }
}

// ---------------------------------------------------------------------------------------------
// The out-of-line halves.

/// Every allocation but a thread-cache hit: memcheck, initialisation, the general path, the
/// system allocator. `zeroed` for calloc and `alloc_zeroed`; `by_pointer` when the block will
/// be freed by its pointer alone, so that it may come from a carrier class ([`class_for`]).
///
/// Under memcheck a small block is allocated here ([`memcheck_alloc_here`]: no saved register,
/// and one request announces every block, so that blocks from one call site share their
/// allocation stack to the instruction, as memcheck's leak check groups them). Everything else
/// continues in [`alloc_other`] (a tail call, so that frame replaces this one), which carries
/// this function's name for Valgrind too.
#[inline(never)]
pub(crate) fn alloc(size: usize, align: usize, zeroed: bool, by_pointer: bool) -> *mut u8 {
    if zeroed || align > ALIGNMENT {
        return alloc_other(size, align, zeroed, by_pointer);
    }
    // From here `align` is at most ALIGNMENT, which every path treats as ALIGNMENT: only `size`
    // lives across the (rare) initialisation call, so this frame saves no register.
    let (size, path) = path_initialised(size);
    if path == Path::Memcheck && size <= config::pool_limit() {
        return memcheck_alloc_here(size);
    }
    alloc_other(size, ALIGNMENT, false, by_pointer)
}

/// [`alloc`] but its memcheck small blocks.
#[inline(never)]
fn alloc_other(size: usize, align: usize, zeroed: bool, by_pointer: bool) -> *mut u8 {
    match alloc_pool(size, align, zeroed, by_pointer) {
        Some(b) => b,
        None => large_alloc(size, align, zeroed),
    }
}
// Valgrind names a frame by the shortest of its symbols and demangles Rust's legacy mangling
// without the hash: this local alias makes `alloc_other`'s frames read as [`alloc`]'s.
#[cfg(all(feature = "valgrind", target_os = "linux"))]
core::arch::global_asm!(
    ".set _ZN9poolgrind5alloc8dispatch5alloc17h0c4f7a2e9b1d3586E, {f}",
    ".type _ZN9poolgrind5alloc8dispatch5alloc17h0c4f7a2e9b1d3586E, @function",
    f = sym alloc_other,
);

/// [`alloc`] inlined, but for the system allocator: `None` means "the system allocator serves
/// this request", which the caller does in tail position (the C entry points call the system
/// allocator's function of the same name, so memcheck records such a block exactly as it would
/// without us). `by_pointer` as for [`alloc`].
#[inline(always)]
pub(crate) fn alloc_pool(
    size: usize,
    align: usize,
    zeroed: bool,
    by_pointer: bool,
) -> Option<*mut u8> {
    let small = size <= config::pool_limit() && align <= ALIGNMENT;
    loop {
        match config::path() {
            Path::Memcheck if small => return Some(memcheck_alloc(size, zeroed)),
            // Initialise, then dispatch again here, so the first block's allocation stack is
            // every other block's (memcheck groups leaks by it).
            Path::Uninit if init::ensure_init() => continue,
            // A re-entrant call while initialising: the bootstrap buffer (zeroed, never reused,
            // 16-aligned).
            Path::Uninit if align <= ALIGNMENT => return Some(sys::boot_alloc(size)),
            Path::Uninit => return Some(null_mut()),
            _ => break,
        }
    }
    match class_for(size, align, by_pointer) {
        Some(c) => Some(small_alloc(c, size, zeroed)),
        None => {
            tcache::count_system_alloc();
            sys::warm_up_before(size);
            None
        }
    }
}

/// Frees a block whose size is known (a Rust layout), on every path but a thread-cache push.
///
/// # Safety
/// `p` was allocated by this allocator for `size` bytes at `align`.
#[inline(never)]
pub(crate) unsafe fn free_sized(p: *mut u8, size: usize, align: usize) {
    if size <= config::pool_limit() && align <= ALIGNMENT && config::path() == Path::Memcheck {
        // The C `free`'s memcheck path, calls in tail position only, so that this frame saves
        // no register (the class is read from the pool's side entry; a wrong pointer into a
        // pool is reported by memcheck).
        // SAFETY: `p` is a live block of this allocator.
        return unsafe { memcheck::free_ptr(p) };
    }
    // SAFETY: forwarded.
    unsafe { free_sized_other(p, size, align) }
}

/// [`free_sized`] on every other path.
///
/// # Safety
/// As [`free_sized`].
#[inline(never)]
unsafe fn free_sized_other(p: *mut u8, size: usize, align: usize) {
    if sys::is_boot(p) {
        return; // served while initialising: never reused
    }
    match class_for(size, align, false) {
        // SAFETY: `p` was allocated with this size, hence from this class.
        Some(c) => unsafe { small_free(p, c) },
        // SAFETY: `p` was allocated by the system allocator.
        None => unsafe { sys::free(p) },
    }
}

/// Pointer-only free on every path but `Fast`, for the C `free`'s named frame: the memcheck
/// path inlined (written so that the frame saves no register: `memcheck::free_ptr`), every
/// other one a tail call.
///
/// # Safety
/// As [`free`].
#[inline(always)]
pub(crate) unsafe fn free_named(p: *mut u8) {
    // SAFETY: forwarded.
    unsafe {
        if track::memcheck() {
            memcheck::free_ptr(p)
        } else {
            free_slow(p)
        }
    }
}

/// Pointer-only free on every path but `Fast`.
///
/// # Safety
/// As [`free`].
#[inline(never)]
unsafe fn free_slow(p: *mut u8) {
    // SAFETY: forwarded.
    if !unsafe { free_pool(p) } {
        // SAFETY: a live system block.
        unsafe { sys::free(p) };
    }
}

/// [`free_slow`] inlined, but for the system allocator: false means "`p` is a live block of
/// the system allocator", which the caller frees in tail position (see [`alloc_pool`]). Under
/// memcheck always true: `memcheck::free_ptr` frees system blocks itself.
///
/// # Safety
/// As [`free`].
#[inline(always)]
pub(crate) unsafe fn free_pool(p: *mut u8) -> bool {
    if track::memcheck() {
        // SAFETY: forwarded (a system block is freed there too).
        unsafe { memcheck::free_ptr(p) };
        return true;
    }
    if p.is_null() || sys::is_boot(p) {
        return true; // nothing to do; bootstrap blocks are never reused
    }
    if !arena::owns(p) {
        return false;
    }
    // SAFETY: p lies in one of our pools.
    unsafe { small_free(p, pool::pool_class(p)) };
    true
}

/// Pointer-only `realloc`: in place when the size class does not change, else moves. glibc's
/// rules: `realloc(null, n)` is `malloc(n)`; `realloc(p, 0)` frees `p` and returns null; on
/// failure null is returned and `p` is left untouched.
///
/// # Safety
/// `p` is null or a live block.
pub(crate) unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    // SAFETY: forwarded.
    match unsafe { realloc_pool(p, size) } {
        Realloc::Done(q) => q,
        Realloc::System(q) if size <= MAX_REQUEST => {
            // SAFETY: `q` is a live system block.
            unsafe { sys::realloc(q, size) }
        }
        Realloc::System(_) => null_mut(),
    }
}

/// What [`realloc_pool`] leaves to its caller.
pub(crate) enum Realloc {
    /// The result.
    Done(*mut u8),
    /// `sys::realloc(p, size)` gives the result (called in tail position): `p` is a system
    /// block (the program's, or, under memcheck, a pool block's bytes just moved to one).
    System(*mut u8),
}

/// [`realloc`] inlined, but for the system allocator's `realloc` (see [`alloc_pool`]).
///
/// # Safety
/// `p` is null or a live block.
#[inline(always)]
pub(crate) unsafe fn realloc_pool(p: *mut u8, size: usize) -> Realloc {
    if p.is_null() {
        return match alloc_pool(size, ALIGNMENT, false, true) {
            Some(q) => Realloc::Done(q),
            None => Realloc::System(null_mut()),
        };
    }
    if size == 0 {
        // SAFETY: forwarded.
        unsafe { free(p) };
        return Realloc::Done(null_mut());
    }
    let _serial = serial::serialize();
    // SAFETY: forwarded throughout.
    unsafe {
        let (old_usable, class) = if arena::owns(p) {
            let c = pool::pool_class(p);
            if resize_in_place(c, class_for(size, ALIGNMENT, true)) {
                return Realloc::Done(p);
            }
            (small_usable(p, c), Some(c))
        } else if sys::is_boot(p) {
            (sys::boot_size(p), None)
        } else {
            return Realloc::System(p); // a system block stays one, whatever the new size
        };
        let pooled = alloc_pool(size, ALIGNMENT, false, true);
        let q = match pooled {
            Some(q) => q,
            // Under memcheck a block that moves to the system allocator is first copied to a
            // system block of its old size, which the system's realloc then resizes: memcheck
            // records the result as allocated by `realloc` at the program's call, as it would
            // without us. Natively, one allocation and one copy.
            None if track::memcheck() => sys::malloc(old_usable),
            None => large_alloc(size, ALIGNMENT, false),
        };
        if q.is_null() {
            return Realloc::Done(q);
        }
        ptr::copy_nonoverlapping(p, q, old_usable.min(size));
        // Ownership is known: no second ownership test (bootstrap blocks are kept).
        if let Some(c) = class {
            small_free(p, c);
        }
        if pooled.is_none() && track::memcheck() {
            return Realloc::System(q);
        }
        Realloc::Done(q)
    }
}

/// `realloc` of a block whose size is known (a Rust layout).
///
/// # Safety
/// `p` was allocated for `size` bytes at `align`; `new_size` rounded up to `align` does not
/// overflow.
pub(crate) unsafe fn realloc_sized(
    p: *mut u8,
    size: usize,
    align: usize,
    new_size: usize,
) -> *mut u8 {
    let old = class_for(size, align, false);
    let new = class_for(new_size, align, false);
    if let Some(c) = old {
        if resize_in_place(c, new) {
            return p;
        }
    } else if new.is_none() && align <= ALIGNMENT && new_size <= MAX_REQUEST {
        // SAFETY: `p` is a live system block.
        return unsafe { sys::realloc(p, new_size) };
    }
    let mut q = alloc_fast(new_size, align);
    if q.is_null() {
        q = alloc(new_size, align, false, false);
    }
    if !q.is_null() {
        // SAFETY: both blocks hold at least the smaller size; the old one is then freed.
        unsafe {
            ptr::copy_nonoverlapping(p, q, size.min(new_size));
            if !free_fast_sized(p, size, align) {
                free_sized(p, size, align);
            }
        }
    }
    q
}

/// Bytes usable in the block at `p` (0 for null).
///
/// # Safety
/// `p` is null or a live block.
pub(crate) unsafe fn usable_size(p: *mut u8) -> usize {
    let _serial = serial::serialize();
    if p.is_null() {
        0
    } else if arena::owns(p) {
        // SAFETY: live pool block.
        unsafe { small_usable(p, pool::pool_class(p)) }
    } else if sys::is_boot(p) {
        // SAFETY: bootstrap block.
        unsafe { sys::boot_size(p) }
    } else {
        // SAFETY: a live system block.
        unsafe { sys::usable_size(p) }
    }
}

// ---------------------------------------------------------------------------------------------
// The rows of the table.

/// The size class serving `size` bytes at `align`, or `None` for the system allocator. For a
/// block its `free` will know by its pointer alone (`by_pointer`: the C functions, `raw`), the
/// class `malloc`'s bin table names: its carrier (`types::carrier`) until the carrier's pools
/// grow past `types::SPLIT_POOLS`, then its own; that `free` reads the class from the block's
/// pool. A Rust layout's
/// block (`dealloc` names its class by the size) always comes from its own class.
#[inline(always)]
fn class_for(size: usize, align: usize, by_pointer: bool) -> Option<usize> {
    if !config::pools_on() || align > ALIGNMENT {
        return None;
    }
    let need = if config::debug_mode() {
        size.checked_add(DEBUG_OVERHEAD)?
    } else {
        size
    };
    if need > config::pool_limit() {
        return None;
    }
    Some(if by_pointer {
        bin_of_request(need)
    } else {
        size_class(need)
    })
}

/// Path `Memcheck`: a small block of `size` bytes, zeroed for calloc. Inlined into [`alloc`],
/// so a memcheck allocation pays for one frame of the allocator's.
#[inline(always)]
fn memcheck_alloc(size: usize, zeroed: bool) -> *mut u8 {
    let _serial = serial::serialize_memcheck();
    let b = memcheck::alloc(size_class(size), size);
    if zeroed && !b.is_null() {
        // SAFETY: the block is a memcheck chunk of exactly `size` addressable bytes.
        unsafe { ptr::write_bytes(b, 0, size) };
    }
    b
}

/// A small block of `size` bytes from `class` on the `Fast` (after a cache miss) or `General`
/// path.
#[inline(always)]
fn small_alloc(class: usize, size: usize, zeroed: bool) -> *mut u8 {
    if config::tcache_on() {
        let b = tcache::alloc(class);
        if zeroed && !b.is_null() {
            // SAFETY: the block has at least `size` bytes.
            unsafe { ptr::write_bytes(b, 0, size) };
        }
        return b;
    }
    // Under memcheck small requests take the Memcheck path: never here.
    debug_assert!(!track::memcheck());
    let _serial = serial::serialize();
    if config::debug_mode() {
        let b = pool::central_alloc(class, 1, 1).0;
        if b.is_null() {
            return null_mut();
        }
        // SAFETY: b is a block of `class`, large enough for size + DEBUG_OVERHEAD.
        return unsafe { guards::on_alloc(b, size, class, zeroed) };
    }
    let (b, n) = pool::central_alloc(class, 1, 1);
    if n == 0 {
        return null_mut();
    }
    track::block_alloc(b, size);
    if zeroed {
        // SAFETY: the block has at least `size` bytes.
        unsafe { ptr::write_bytes(b, 0, size) };
    }
    b
}

/// Frees a small block of `class` on the `Fast` or `General` path.
///
/// # Safety
/// `p` was returned by `small_alloc` for `class` (or, in debug mode, is any pointer into a
/// pool: invalid and double frees are detected and reported there).
#[inline(always)]
unsafe fn small_free(p: *mut u8, class: usize) {
    if config::tcache_on() {
        // SAFETY: forwarded.
        return unsafe { tcache::free(p, class) };
    }
    let _serial = serial::serialize();
    // SAFETY: forwarded.
    unsafe {
        if track::memcheck() {
            memcheck::free(p, class);
        } else if config::debug_mode() {
            let b = guards::on_free(p, class);
            pool::central_free(class, b, 1);
        } else {
            track::block_free(p);
            pool::central_free(class, p, 1);
        }
    }
}

/// Bytes the program may use in a small block: the class size natively, the requested size
/// under memcheck (so `malloc_usable_size` never invites a write memcheck would report) and in
/// debug mode.
///
/// # Safety
/// `p` is a live small block of `class`.
unsafe fn small_usable(p: *const u8, class: usize) -> usize {
    if track::memcheck() {
        // SAFETY: forwarded.
        unsafe { memcheck::requested(p) }
    } else if config::debug_mode() {
        // SAFETY: forwarded.
        unsafe { guards::requested_size(p) }
    } else {
        class_size(class)
    }
}

/// Whether a small block can be resized in place from `class` to `new_class`.
#[inline(always)]
fn resize_in_place(class: usize, new_class: Option<usize>) -> bool {
    new_class == Some(class) && !track::memcheck() && !config::debug_mode()
}

/// Allocates from the system allocator (large or over-aligned requests, `malloc` mode).
fn large_alloc(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    if size > MAX_REQUEST {
        return null_mut();
    }
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
