//! Per-thread block caches: the lock-free fast path in front of the central heap.
//!
//! Each thread has one singly linked list of free blocks per size class ("bin"). `alloc` pops,
//! `free` pushes, neither takes a lock nor touches a pool header. An empty bin is refilled with a
//! batch from the central heap under that class's lock, a small one at first and twice as many
//! blocks each time up to half the bin's limit ([`FIRST_BATCH`]); a bin over its cap gives its
//! whole list back, and a list that started empty goes in O(1), as one transfer batch for the
//! next refill (of this thread or another). The cap is what keeps that from thrashing: a bin
//! always starts with room for half its limit, whether it was just refilled or emptied
//! ("Caps" in [`refill`]).
//! A block freed by another thread than the one that allocated it simply joins the freeing
//! thread's cache: cross-thread frees are as cheap as local ones and never serialise threads.
//!
//! System bins: natively, with glibc's allocator behind us, a `free` from C of a glibc block of
//! 513..=1024 bytes joins one of [`NB_SYS_BINS`] bins of this cache too, and the C `malloc` of
//! that size pops it; glibc sees the block as in use until the bin gives it back (its own
//! tcache does the same). Without them, in a program that mixes sizes on both sides of 512 B,
//! "pool block or system block" is a branch that goes the wrong way at random, in `malloc` and
//! in `free` (issue 15, larson); with them both find a bin with arithmetic alone
//! (`types::bin_of_request`, `types::bin_of_chunk`). Only with plain glibc: its chunk's size
//! field, the word before the block, says which bin a block fits, and another allocator's
//! block has no such word (`sys::is_plain_glibc`; only the `free` of `meta::unbranched` fills
//! the bins). That `free` costs a pool block ~17 instructions more than the one with the
//! branch, so a process starts with the latter and switches for good once more than one in
//! nine of a thread's frees are of glibc blocks of those sizes, in 64 windows of 64 such frees
//! in a row ([`count_system_free`]).
//!
//! Large bins: with glibc behind us, its blocks of 1025..=16 376 bytes that C frees (or the
//! pointer-only API) join [`NB_LARGE_BINS`] more bins, eight a doubling of the size
//! (`types::large_bin_of_chunk`), in either mode of `free`, once a thread's frees were heavy
//! in such blocks ([`count_large_free`]: espresso's 1 % would cost it 40 % of peak RSS, for
//! blocks held and rounded); the C `malloc`, `calloc` and the
//! `memalign` family (for alignments up to 16) of those sizes pop them, and a miss asks glibc
//! for the bin's smallest chunk, so that the block comes back to the same bin. glibc's own
//! tcache stops at 1 032 bytes, and above it every request took its arena's lock and free lists
//! (issue 15: rptest, 87 % of whose requests are above 512 B, spent a third of its CPU time
//! there). A bin holds at most 32 KiB worth ([`LARGE_BIN_BYTES`]); one that overflows leaves
//! half of it for other threads in the bin's [`EXCHANGE`] slot if that is empty, and a bin that
//! runs empty looks there before it asks glibc (a thread that frees the blocks another
//! allocates would otherwise give them all back to glibc, and the other take them all anew).
//!
//! Thread exit: a pthread key destructor flushes every bin to the central heap and marks the
//! cache dead, so frees that happen later in that thread's teardown go straight to the central
//! heap and nothing is leaked. Caches register in a list so that `stats()` can count the blocks
//! they hold; the list is the only state shared between caches (taken only on thread start/exit
//! and by `stats`).
//!
//! Caches are never used under Valgrind (memcheck needs every free to reach the quarantine;
//! helgrind and DRD need every hand-over to go through a mutex they understand).

use core::cell::UnsafeCell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::sys::{self, COUNTERS};
use super::types::*;
use super::{arena, config, meta, pool};

/// This thread's cache: on x86-64 Linux the initial-exec TLS block of `tls.c` (thread pointer
/// plus a link-time offset: two instructions, no call); elsewhere a `thread_local!`.
#[inline(always)]
fn with_tc<R>(f: impl FnOnce(&UnsafeCell<TCache>) -> R) -> R {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        const _: () = assert!(
            core::mem::size_of::<TCache>() <= 1280 && core::mem::align_of::<TCache>() <= 64
        );
        // `poolgrind_tcache_tls` is a 1280-byte, 64-aligned array (tls.c).
        let p = initial_exec_tls!(poolgrind_tcache_tls).cast::<UnsafeCell<TCache>>();
        // SAFETY: zero bytes are a valid fresh TCache (null lists, zero counts, state TC_FRESH),
        // and only this thread uses its own block.
        f(unsafe { &*p })
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    TC.with(f)
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
thread_local! {
    static TC: UnsafeCell<TCache> = const {
        UnsafeCell::new(TCache {
            heads: [null_mut(); NB_BINS],
            rooms: [const { AtomicU32::new(0) }; NB_BINS],
            caps: [const { core::sync::atomic::AtomicU16::new(0) }; NB_BINS],
            state: TC_FRESH,
            next: null_mut(),
            prev: null_mut(),
            system_allocs: core::sync::atomic::AtomicUsize::new(0),
            pool_frees: 0,
            system_mark: 0,
            system_frees: 0,
            heavy_windows: 0,
            large_mark: 0,
            large_frees: 0,
            large_heavy_windows: 0,
            batch: [0; NB_SMALL_SIZE_CLASSES],
            trips: 0,
        })
    };
}

/// Most blocks a bin holds before it gives blocks back (its cap's bound): for a pool class
/// 8 KiB worth, between 16 and 512 blocks (at most 256 KiB cached per thread); for a system
/// bin [`SYS_BIN_LIMIT`]; for a large bin [`LARGE_BIN_BYTES`] worth. A table, so the slow
/// paths never divide.
static BIN_LIMIT: [u32; NB_BINS] = {
    let mut t = [SYS_BIN_LIMIT; NB_BINS];
    let mut c = 0;
    while c < NB_SMALL_SIZE_CLASSES {
        let n = (8 << 10) / class_size(c);
        t[c] = if n < 16 { 16 } else { n as u32 };
        // A refill that carves a pool takes the rest of it (`pool::carve_rest`), at most a
        // `piece`: the rest of a fresh pool must fit, or the next refill is another thread's.
        assert!(PoolHeader::capacity(class_size(c)) < t[c] as usize / 2 + 1);
        c += 1;
    }
    let mut b = NB_LINEAR_BINS;
    while b < NB_BINS {
        let n = LARGE_BIN_BYTES / large_bin_request(b);
        t[b] = if n < 2 {
            2
        } else if n > SYS_BIN_LIMIT as usize {
            SYS_BIN_LIMIT
        } else {
            n as u32
        };
        b += 1;
    }
    t
};

/// What a large bin holds at most, in bytes (and between 2 and [`SYS_BIN_LIMIT`] blocks): 16
/// blocks up to 2 KiB, 2 of 16 KiB; one thread keeps under 1 MB of glibc's blocks of 1–18 KiB
/// away from it (999 520 bytes of chunks at most; glibc's arenas would keep them in their free
/// lists, but could merge them). 64 KiB and 128 KiB took as many misses in rptest (88 000 and
/// 94 000 against 99 000 in one run each): its misses are its threads' imbalance, one thread's
/// bins full while the other's are empty.
const LARGE_BIN_BYTES: usize = 32 << 10;

#[inline(always)]
pub(crate) fn bin_limit(class: usize) -> u32 {
    BIN_LIMIT[class]
}

/// Most blocks a system bin holds: the pool classes' rule (8 KiB worth, at least 16), so one
/// thread keeps at most `16 × 17` blocks of at most 1 KiB (~270 KiB) away from glibc, whose
/// own tcache keeps 7 a size. With 8 the mixed-sizes loop of issue 15 (`free` and `malloc` of
/// 8..1000 B) ran 1.17x slower, with 32 1.2x faster (median of 3; more calls reach glibc).
const SYS_BIN_LIMIT: u32 = 16;

static KEY: AtomicU32 = AtomicU32::new(u32::MAX);
static REGISTRY: RawMutex = RawMutex::new();
struct Head(UnsafeCell<*mut TCache>);
// SAFETY: accessed with REGISTRY held.
unsafe impl Sync for Head {}
static CACHES: Head = Head(UnsafeCell::new(null_mut()));

/// Creates the pthread key whose destructor flushes a thread's cache. Called once, from
/// `init::ensure_init`.
pub fn init() {
    if !config::tcache_on() {
        return;
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is a valid out-pointer; the destructor is an `extern "C"` fn.
    if unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0 {
        KEY.store(key, Ordering::Release);
    }
    // The system bins: plain glibc behind us (another allocator has no chunk header to read;
    // glibc's checks must see every `free` when it happens), path `Fast`.
    if config::pools_on() && !config::debug_mode() && sys::is_plain_glibc() {
        meta::allow_unbranched();
        LARGE_BINS_ALLOWED.store(true, Ordering::Relaxed);
    }
}

/// Whether the large bins may be used: plain glibc behind us (the word before its block is its
/// chunk's size), pools on, no debug mode, the thread caches on. Set once, at initialisation.
static LARGE_BINS_ALLOWED: AtomicBool = AtomicBool::new(false);
/// Whether the large bins are in use: allowed, and a thread's frees were heavy in blocks of
/// their sizes ([`count_large_free`]). For good once set; until then no large bin holds a
/// block.
static LARGE_BINS: AtomicBool = AtomicBool::new(false);

/// Whether `free` weighs glibc's blocks of the large bins' sizes ([`LARGE_BINS_ALLOWED`]).
#[inline(always)]
pub fn large_bins_allowed() -> bool {
    LARGE_BINS_ALLOWED.load(Ordering::Relaxed)
}

/// Whether path `Fast` keeps glibc's blocks of 1025..=[`LARGE_BIN_MAX_REQUEST`] bytes in the
/// large bins ([`LARGE_BINS`]).
#[inline(always)]
pub fn large_bins_on() -> bool {
    LARGE_BINS.load(Ordering::Relaxed)
}

/// The fast path's pop: a block of `class` from this thread's cache, or null when the bin is
/// empty (the caller then takes the slow path, which refills). A leaf: no call, no lock.
#[inline(always)]
pub fn try_alloc(class: usize) -> *mut u8 {
    with_tc(|tc| {
        // SAFETY: the cache is this thread's; no reference to it escapes this closure.
        pop(unsafe { (*tc.get()).bin(class) })
    })
}

/// Pops the first block of a bin (null when empty: always so in a cache that is not active).
#[inline(always)]
fn pop(bin: Bin) -> *mut u8 {
    let b = *bin.head;
    if !b.is_null() {
        // SAFETY: cached blocks are free blocks linked through their first word.
        *bin.head = unsafe { *b.cast::<*mut u8>() };
        bin.room.store(
            bin.room.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }
    b
}

/// Links a free block in front of a bin's list (the bin's `room` is the caller's).
///
/// # Safety
/// `b` is a free block of the bin's class that nobody uses any more.
#[inline(always)]
unsafe fn link(bin: &mut Bin, b: *mut u8) {
    // SAFETY: the block is free; its first word becomes the link.
    unsafe { *b.cast::<*mut u8>() = *bin.head };
    *bin.head = b;
}

/// Blocks in a bin of an active cache (`Bin`'s invariant; `cap + 1` inside the slow path).
#[inline(always)]
fn len(bin: &Bin) -> u32 {
    u32::from(bin.cap.load(Ordering::Relaxed)).wrapping_sub(bin.room.load(Ordering::Relaxed))
}

/// Sets a bin's cap, and its room for the `n` blocks it holds.
#[inline]
fn set_cap(bin: &Bin, cap: u32, n: u32) {
    debug_assert!(n <= cap && cap <= u32::from(u16::MAX));
    bin.cap.store(cap as u16, Ordering::Relaxed);
    bin.room.store(cap - n, Ordering::Relaxed);
}

/// The most blocks a pool class's bin gives back, or a refill takes, in one batch: half its
/// limit and one (the one whose `free` found no room). A bin that a refill of that many leaves
/// with at most half its limit has room for another half (see "Caps" in [`refill`]).
#[inline]
pub(crate) fn piece(class: usize) -> u32 {
    bin_limit(class) / 2 + 1
}

/// The fast path's push: false (nothing done) when the bin has no room, which is always the
/// case in a cache that is not active; the caller then takes the slow path ([`free`]), which
/// activates or flushes.
///
/// The room's test and decrement stay apart here (not [`TCache::take_room`]'s `asm!`): this
/// push is inlined into Rust programs' `dealloc`, where the `asm!` block, a barrier to the
/// compiler, cost the binary-trees workload 8 instructions an operation more than the 3 it
/// saved the others (issue 15's twelfth round, `ci/bench ir`).
///
/// # Safety
/// `b` is a block of `class` that nobody uses any more.
#[inline(always)]
pub unsafe fn try_free(b: *mut u8, class: usize) -> bool {
    with_tc(|tc| {
        // SAFETY: the cache is this thread's.
        let mut bin = unsafe { (*tc.get()).bin(class) };
        let room = bin.room.load(Ordering::Relaxed);
        if room == 0 {
            return false;
        }
        bin.room.store(room - 1, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { link(&mut bin, b) };
        true
    })
}

/// Pops a block of `class` from this thread's cache, refilling it if needed. Null means "use
/// the central heap directly" (cache dead or being set up) or out of memory.
#[inline(always)]
pub fn alloc(class: usize) -> *mut u8 {
    with_tc(|tc| {
        // SAFETY: the cache is this thread's; no reference to it escapes this closure.
        let tc = unsafe { &mut *tc.get() };
        let b = pop(tc.bin(class));
        if !b.is_null() {
            return b;
        }
        refill(tc, class)
    })
}

#[cold]
#[inline(never)]
fn refill(tc: &mut TCache, class: usize) -> *mut u8 {
    if tc.state != TC_ACTIVE && !activate(tc) {
        return central_one(class);
    }
    let want = next_batch(tc, class) as usize;
    tc.trips = tc.trips.wrapping_add(1);
    let (chain, got) = pool::central_alloc(class, want, piece(class) as usize);
    if got == 0 {
        return null_mut();
    }
    // Keep the first block for the caller, cache the rest.
    // SAFETY: the chain is `got` blocks linked through their first word.
    let rest = if got > 1 {
        unsafe { *chain.cast::<*mut u8>() }
    } else {
        null_mut()
    };
    let bin = tc.bin(class);
    *bin.head = rest;
    // Caps. The bin now holds `got - 1` blocks, and has room for half its limit more (up to
    // the limit): as many `free`s as that before the next give-back, `got - 1` `malloc`s
    // before the next refill. The give-back hands the whole list over in batches of at most
    // `piece` (only a list longer than that is walked to be cut); a refill takes at most that
    // many (`next_batch`, and the transfer batches are give-backs), so a bin never starts with
    // less room than half its limit. A bin that gave back half its list and kept the rest (the
    // scheme before the caps) walked half its list each time: a thread that frees long runs of
    // blocks (glibc-simple's 1 600) walked a link for every other block it freed.
    let n = got as u32 - 1;
    set_cap(&bin, (n + empty_cap(class)).min(bin_limit(class)), n);
    chain
}

/// The first refill of a pool class's bin in a thread asks for this many blocks, each later one
/// for twice the last, up to half the bin's limit (tcmalloc's slow start). A thread that uses a
/// class for a few blocks takes a few of a pool's free list. A refill that carves virgin
/// blocks takes the rest of the pool whatever it asked (`pool::carve_rest`: no two threads
/// carve one pool), and one that finds a transfer batch (another thread's bin, given back
/// whole) takes it whatever its size: those blocks are carved already, and taking them touches
/// no new page.
pub(crate) const FIRST_BATCH: u16 = 4;

/// The size of this refill of `class`'s bin, and the next one's.
fn next_batch(tc: &mut TCache, class: usize) -> u16 {
    let most = (bin_limit(class) / 2) as u16;
    let b = &mut tc.batch[class];
    let want = (*b).max(FIRST_BATCH);
    *b = want.saturating_mul(2).min(most);
    want
}

fn central_one(class: usize) -> *mut u8 {
    let (b, got) = pool::central_alloc(class, 1, 1);
    if got == 0 {
        null_mut()
    } else {
        b
    }
}

/// The cap of an empty bin: half the limit for a pool class (see "Caps" in [`refill`]), the
/// limit for a system bin.
fn empty_cap(class: usize) -> u32 {
    if class < NB_SMALL_SIZE_CLASSES {
        bin_limit(class) / 2
    } else {
        bin_limit(class)
    }
}

/// Pushes a free block of `class` into this thread's cache. The hit path is one decrement and
/// its test (a bin with no room: full, or a cache that is not active) and the link; no test of
/// the cache's state, no limit read (issue 15).
///
/// # Safety
/// `b` is a block of `class` that nobody uses any more.
#[inline(always)]
pub unsafe fn free(b: *mut u8, class: usize) {
    // SAFETY: forwarded.
    unsafe { push_free::<false>(b, class) }
}

/// [`free`], counted for [`count_system_free`]'s check (`meta::FreeMode::Branchy`'s `free` of
/// a pool block).
///
/// # Safety
/// As [`free`].
#[inline(always)]
pub unsafe fn free_counted(b: *mut u8, class: usize) {
    // SAFETY: forwarded.
    unsafe { push_free::<true>(b, class) }
}

/// System blocks freed between two checks of [`count_system_free`].
const SWITCH_WINDOW: u32 = 64;
/// The check switches `free` to `meta::FreeMode::Unbranched` when fewer than this many pool
/// blocks were freed for every system block (more than one system block in nine frees). A
/// mispredicted branch costs ~15–20 cycles, the unbranched `free` ~17 instructions more on
/// every block (issue 15: ~10 when this was chosen, before the branchy `free` lost 7); and only
/// that `free` keeps glibc's blocks of 513–1024 B in the system bins.
const SWITCH_POOL_FREES_PER_SYSTEM_FREE: u64 = 8;
/// Consecutive windows that must each be that heavy in system blocks before the switch (4 096
/// system frees): a program that frees such blocks in a burst while it starts and pool blocks
/// ever after keeps the `free` with the branch. espresso switched within its first 512 system
/// frees, then freed 33.8 M pool blocks at ~10 instructions more each (issue 15's eleventh
/// round); larson's mix is heavy in every window and switches after 4 096 of its millions.
const SWITCH_HEAVY_WINDOWS: u32 = 64;

/// Counts a system block's `free` in `meta::FreeMode::Branchy` (one that a system bin could
/// keep); every [`SWITCH_WINDOW`] of them, weighs them against the pool blocks freed since, and
/// after [`SWITCH_HEAVY_WINDOWS`] heavy windows in a row switches the process to
/// `meta::FreeMode::Unbranched`, for good (glibc's blocks of 513–1024 B then go to the system
/// bins; larson, issue 15). A thread that frees few system blocks (CPython, glibc-thread's
/// sizes) keeps the `free` whose pool blocks cost least.
#[inline(always)]
pub fn count_system_free() {
    with_tc(|tc| {
        // SAFETY: the cache is this thread's.
        let tc = unsafe { &mut *tc.get() };
        tc.system_frees = tc.system_frees.wrapping_add(1);
        if tc.system_frees % SWITCH_WINDOW == 0 {
            weigh_system_frees(tc);
        }
    })
}

/// [`count_system_free`]'s check.
#[cold]
#[inline(never)]
fn weigh_system_frees(tc: &mut TCache) {
    let heavy = weigh_window(tc.pool_frees, &mut tc.system_mark, &mut tc.heavy_windows);
    // Only if the arena lock is free: a `free` can run where it is held, in another fork
    // prepare handler after ours (which takes it) or a child handler before ours (which frees
    // it); the next window tries again.
    if heavy >= SWITCH_HEAVY_WINDOWS {
        if let Some(_g) = arena::ARENA_LOCK.try_lock() {
            meta::switch_unbranched();
        }
    }
}

/// Closes a window of [`SWITCH_WINDOW`] frees of glibc blocks: weighs them against the pool
/// blocks freed since `mark` (the count `pool_frees` had at the last window, moved on to
/// it now). Returns the windows in a row that were heavy, this one included (`heavy`, 0
/// after a light one: at least [`SWITCH_POOL_FREES_PER_SYSTEM_FREE`] pool blocks a glibc one).
fn weigh_window(pool_frees: u64, mark: &mut u64, heavy: &mut u32) -> u32 {
    let pool = pool_frees.wrapping_sub(core::mem::replace(mark, pool_frees));
    *heavy = if pool >= SWITCH_WINDOW as u64 * SWITCH_POOL_FREES_PER_SYSTEM_FREE {
        0
    } else {
        heavy.saturating_add(1)
    };
    *heavy
}

/// Consecutive windows that must each be heavy in glibc blocks of the large bins' sizes (as
/// [`count_system_free`] weighs them: more than one in nine frees) before the large bins go on
/// (4 096 such frees). espresso frees 323 000 of them among 33 M pool blocks (1 %), and with
/// the large bins on its peak RSS was 1.48 x glibc's (the blocks they held and their
/// rounding, ~1 MiB on a peak of 2.3); its bursts made 16 heavy windows in a row, never 64.
/// rptest's are 65 % of its frees.
const LARGE_SWITCH_HEAVY_WINDOWS: u32 = 64;

/// Counts a `free` of a glibc block that a large bin would keep, while the large bins are off
/// (`meta::FreeMode::Branchy` counts the pool blocks freed meanwhile; in
/// `meta::FreeMode::Unbranched` none is counted, and every window is heavy). Every
/// [`SWITCH_WINDOW`] of them, weighs them as [`count_system_free`] does, and after
/// [`LARGE_SWITCH_HEAVY_WINDOWS`] heavy windows in a row turns the large bins on, for good.
#[inline(never)]
pub fn count_large_free() {
    with_tc(|tc| {
        // SAFETY: the cache is this thread's.
        let tc = unsafe { &mut *tc.get() };
        tc.large_frees = tc.large_frees.wrapping_add(1);
        if tc.large_frees % SWITCH_WINDOW != 0 {
            return;
        }
        let heavy = weigh_window(
            tc.pool_frees,
            &mut tc.large_mark,
            &mut tc.large_heavy_windows,
        );
        if heavy >= LARGE_SWITCH_HEAVY_WINDOWS {
            LARGE_BINS.store(true, Ordering::Relaxed);
        }
    })
}

/// [`free`] and [`free_counted`].
///
/// # Safety
/// As [`free`].
#[inline(always)]
unsafe fn push_free<const COUNT: bool>(b: *mut u8, class: usize) {
    with_tc(|tc| {
        // SAFETY: the cache is this thread's.
        let tc = unsafe { &mut *tc.get() };
        if COUNT {
            tc.pool_frees = tc.pool_frees.wrapping_add(1);
        }
        // SAFETY: forwarded.
        unsafe { link(&mut tc.bin(class), b) };
        if tc.take_room(class) {
            // SAFETY: `b` was just linked in front, the room is one below 0.
            unsafe { free_no_room(tc, class) };
        }
    })
}

/// [`free`] linked a block into a bin with no room (now one below 0): in an active cache the
/// bin is over its cap, and a pool class's gives its whole list back, a system bin half of
/// it; otherwise the block is taken out again (the list
/// was empty, the room 0) and [`free_slow`] activates the cache or frees the block centrally.
///
/// # Safety
/// The block in front of `class`'s bin was just linked by [`free`], and its room was 0.
#[cold]
#[inline(never)]
unsafe fn free_no_room(tc: &mut TCache, class: usize) {
    let active = tc.state == TC_ACTIVE;
    if active && class < NB_SMALL_SIZE_CLASSES {
        // The whole list, in one batch when it started empty (a run of frees); the bin then
        // has room for half its limit (see "Caps" in `refill`).
        tc.trips = tc.trips.wrapping_add(1);
        let mut bin = tc.bin(class);
        let n = len(&bin);
        give_back_all(&mut bin, class, n as usize);
        set_cap(&bin, empty_cap(class), 0);
        return;
    }
    let mut bin = tc.bin(class);
    if active {
        // A system bin gives half back (to glibc, a block at a time) and keeps the rest; a
        // large bin offers that half to the other threads first ([`EXCHANGE`]).
        let n = len(&bin);
        let chain = detach(&mut bin, n as usize / 2);
        if class < NB_LINEAR_BINS || !offer_to_exchange(class, chain, n as usize / 2) {
            // SAFETY: a system or large bin holds live glibc blocks that nobody uses;
            // detached, so given back once.
            unsafe { free_system_chain(chain) };
        }
        set_cap(&bin, bin_limit(class), n - n / 2);
        return;
    }
    let b = *bin.head;
    // SAFETY: `b` is the block just linked; the list was empty before.
    *bin.head = unsafe { *b.cast::<*mut u8>() };
    bin.room.store(0, Ordering::Relaxed);
    // SAFETY: forwarded.
    unsafe { free_slow(tc, b, class) }
}

/// The cache is not active: activate it and push, or give the block to the central heap.
///
/// # Safety
/// As [`free`].
#[cold]
#[inline(never)]
unsafe fn free_slow(tc: &mut TCache, b: *mut u8, class: usize) {
    if tc.state == TC_FRESH && activate(tc) {
        // SAFETY: forwarded.
        return unsafe { free(b, class) };
    }
    if class >= NB_SMALL_SIZE_CLASSES {
        // SAFETY: a system bin's block is a live glibc block that nobody uses any more.
        return unsafe { sys::free(b) };
    }
    // SAFETY: forwarded; a single block.
    unsafe { pool::central_free(class, b, 1) };
}

/// Gives the first `n` blocks of a bin back to the central heap (a system bin's to the system
/// allocator). The bin's `room` is the caller's.
#[cold]
#[inline(never)]
fn give_back(bin: &mut Bin, class: usize, n: usize) {
    if n == 0 {
        return;
    }
    let chain = detach(bin, n);
    if class >= NB_SMALL_SIZE_CLASSES {
        // SAFETY: a system bin holds live glibc blocks that nobody uses; detached, so given
        // back once.
        return unsafe { free_system_chain(chain) };
    }
    // SAFETY: the n blocks are free blocks of `class`, linked through their first word (the
    // chain may be kept whole as a transfer batch and handed to another thread).
    unsafe { pool::central_free(class, chain, n) };
}

/// Cuts the first `n` (at least 1) blocks off a bin's list, and returns them: a chain linked
/// through their first word and ended by null. The bin's `room` is the caller's.
fn detach(bin: &mut Bin, n: usize) -> *mut u8 {
    let chain = *bin.head;
    let mut last = chain;
    for _ in 1..n {
        // SAFETY: the bin holds at least n linked blocks.
        last = unsafe { *last.cast::<*mut u8>() };
    }
    // SAFETY: `last` is the n-th block: the chain ends there, what follows it stays cached.
    *bin.head = unsafe { core::mem::replace(&mut *last.cast::<*mut u8>(), null_mut()) };
    chain
}

/// Gives every block of a chain back to the system allocator, one at a time.
///
/// # Safety
/// `chain` is null or a null-terminated chain of live glibc blocks, linked through their
/// first word, that nobody uses any more.
unsafe fn free_system_chain(mut b: *mut u8) {
    while !b.is_null() {
        // SAFETY: as the caller guarantees; the link is read before its block goes back.
        let next = unsafe { *b.cast::<*mut u8>() };
        // SAFETY: as above, given back once.
        unsafe { sys::free(b) };
        b = next;
    }
}

/// Gives a bin's whole list of `n` blocks back: a system bin's to the system allocator, a
/// pool class's to the central heap in batches of at most [`piece`] blocks (the last one,
/// which the next refill takes, the oldest blocks): a list that short goes in O(1), as a
/// transfer batch; a longer one is walked to be cut. Leaves the list empty; the bin's room
/// and cap are the caller's.
fn give_back_all(bin: &mut Bin, class: usize, mut n: usize) {
    if class >= NB_SMALL_SIZE_CLASSES {
        return give_back(bin, class, n);
    }
    let piece = piece(class) as usize;
    while n > piece {
        give_back(bin, class, piece);
        n -= piece;
    }
    let chain = core::mem::replace(bin.head, null_mut());
    if n > 0 {
        // SAFETY: the bin's list is `n` free blocks of `class` linked through their first
        // word and ended by null (its last block came last from a chain that was).
        unsafe { pool::central_free(class, chain, n) };
    }
}

/// One chain of free glibc blocks a large bin: what a thread whose bin overflowed left for a
/// thread whose bin of those sizes ran empty (issue 15: in rptest each thread frees the blocks
/// the other allocated, and with the blocks in thread caches one thread's bins filled while
/// the other's emptied: a third of its large requests missed, against one in twenty alone).
/// A slot holds 0 or a chain of 1 to [`SYS_BIN_LIMIT`]` / 2` blocks of its bin, linked through
/// their first word and null-terminated, as its first block's address plus the count (in the
/// 4 bits a 16-aligned address leaves), so that nothing but the chain's owner reads a block.
/// Lock-free and ABA-free: a chain goes in only into an empty slot (a compare-and-swap from
/// 0) and comes out whole (a swap with 0). At most 32 chains of at most half a bin: 474 864
/// bytes of chunks in all. A fork child keeps them (its memory is a copy); exited threads leave
/// them for the living.
static EXCHANGE: [core::sync::atomic::AtomicUsize; NB_LARGE_BINS] =
    [const { core::sync::atomic::AtomicUsize::new(0) }; NB_LARGE_BINS];

const _: () = assert!(SYS_BIN_LIMIT / 2 < ALIGNMENT as u32);

/// Puts a chain of `n` blocks of large bin `class` (detached from a bin: null-terminated, at
/// most half its limit) into the bin's [`EXCHANGE`] slot if the slot is empty; false (the
/// chain is still the caller's) if not.
fn offer_to_exchange(class: usize, chain: *mut u8, n: usize) -> bool {
    let slot = &EXCHANGE[class - NB_LINEAR_BINS];
    // Release: the links are written before another thread swaps the chain out.
    slot.load(Ordering::Relaxed) == 0
        && slot
            .compare_exchange(0, chain as usize | n, Ordering::Release, Ordering::Relaxed)
            .is_ok()
}

/// Takes the chain out of large bin `class`'s [`EXCHANGE`] slot: its first block and count,
/// or `None` when the slot is empty. The chain is then the caller's alone.
fn swap_out(class: usize) -> Option<(*mut u8, usize)> {
    // Acquire: pairs with the Release that put the chain in.
    let packed = EXCHANGE[class - NB_LINEAR_BINS].swap(0, Ordering::Acquire);
    (packed != 0).then_some((
        (packed & !(ALIGNMENT - 1)) as *mut u8,
        packed & (ALIGNMENT - 1),
    ))
}

/// The large bins' pop: a block of large bin `class` from this thread's cache or, when the bin
/// is empty, from the chain another thread left in its [`EXCHANGE`] slot; null when neither
/// has one (then the caller asks glibc for the bin's request).
#[inline(always)]
pub fn try_alloc_large(class: usize) -> *mut u8 {
    let b = try_alloc(class);
    if !b.is_null() {
        return b;
    }
    take_from_exchange(class)
}

/// A large bin's miss in this thread: the chain in the bin's [`EXCHANGE`] slot, if any, its
/// first block for the caller and the rest into the (empty) bin; null if the slot is empty or
/// the cache is not active (then the caller asks glibc).
#[inline(never)]
fn take_from_exchange(class: usize) -> *mut u8 {
    if EXCHANGE[class - NB_LINEAR_BINS].load(Ordering::Relaxed) == 0 {
        return null_mut();
    }
    with_tc(|tc| {
        // SAFETY: this thread's cache; no reference to it escapes this closure.
        let tc = unsafe { &mut *tc.get() };
        if tc.state != TC_ACTIVE {
            return null_mut();
        }
        let Some((chain, n)) = swap_out(class) else {
            return null_mut();
        };
        let bin = tc.bin(class);
        debug_assert!(bin.head.is_null() && n >= 1 && n as u32 <= bin_limit(class));
        // SAFETY: the chain is this thread's now, its blocks linked through their first word.
        *bin.head = unsafe { *chain.cast::<*mut u8>() };
        set_cap(&bin, bin_limit(class), n as u32 - 1);
        chain
    })
}

/// Blocks waiting in the [`EXCHANGE`] slots (racy snapshot, for statistics: the counts alone,
/// no block is read).
pub fn exchange_blocks() -> usize {
    EXCHANGE
        .iter()
        .map(|slot| slot.load(Ordering::Relaxed) & (ALIGNMENT - 1))
        .sum()
}

/// Calls `check` with each [`EXCHANGE`] slot's bin and chain (first block and count), the
/// chain taken out of its slot meanwhile, so that no other thread uses it; then puts it back,
/// or gives its blocks to glibc if another thread filled the slot meanwhile (and a chain that
/// failed the check is left out). For the walker.
pub(crate) fn check_exchange<E>(
    mut check: impl FnMut(usize, *mut u8, usize) -> Result<(), E>,
) -> Result<(), E> {
    for (j, slot) in EXCHANGE.iter().enumerate() {
        let class = NB_LINEAR_BINS + j;
        let Some((chain, n)) = swap_out(class) else {
            continue;
        };
        let verdict = check(class, chain, n);
        let back =
            slot.compare_exchange(0, chain as usize | n, Ordering::Release, Ordering::Relaxed);
        // A chain that failed the check is not walked again: it stays out, lost.
        if back.is_err() && verdict.is_ok() {
            // SAFETY: a chain that passed the check: live glibc blocks nobody else uses.
            unsafe { free_system_chain(chain) };
        }
        verdict?;
    }
    Ok(())
}

/// Registers the cache (destructor and stats list). False if that is impossible here (no key).
fn activate(tc: &mut TCache) -> bool {
    if tc.state != TC_FRESH {
        return false;
    }
    let key = KEY.load(Ordering::Acquire);
    if key == u32::MAX {
        return false;
    }
    // Re-entrant allocations from pthread_setspecific go to the central heap.
    tc.state = TC_BYPASS;
    // SAFETY: `key` was created by pthread_key_create; a non-null value makes the destructor run.
    if unsafe { libc::pthread_setspecific(key, (tc as *mut TCache).cast()) } != 0 {
        return false;
    }
    // Room in every bin, before the cache is listed (`stats` reads a listed cache's bins): a
    // pool class's bin starts as one that just gave everything back.
    for class in 0..NB_BINS {
        set_cap(&tc.bin(class), empty_cap(class), 0);
    }
    {
        let _g = REGISTRY.lock();
        // SAFETY: registry lock held; `tc` lives until thread_exit unlinks it.
        unsafe {
            tc.prev = null_mut();
            tc.next = *CACHES.0.get();
            if !tc.next.is_null() {
                (*tc.next).prev = tc;
            }
            *CACHES.0.get() = tc;
        }
    }
    COUNTERS.thread_caches.fetch_add(1, Ordering::Relaxed);
    tc.state = TC_ACTIVE;
    true
}

extern "C" fn thread_exit(p: *mut libc::c_void) {
    // SAFETY: the value set in `activate` is this thread's cache, still alive during key
    // destructors (TLS is freed after them).
    let tc = unsafe { &mut *p.cast::<TCache>() };
    flush_all(tc);
    let _g = REGISTRY.lock();
    // No room left: later frees in this thread's teardown take the slow path, which sends them
    // to the central heap (or the system allocator). Under the registry lock, with the unlink:
    // `stats` never reads a listed cache whose rooms are 0.
    tc.state = TC_BYPASS;
    for class in 0..NB_BINS {
        set_cap(&tc.bin(class), 0, 0);
    }
    // Under the registry lock, so that `system_allocs` never sees the count twice or not at all.
    let n = tc.system_allocs.swap(0, Ordering::Relaxed);
    COUNTERS.system_allocs.fetch_add(n, Ordering::Relaxed);
    // SAFETY: registry lock held; unlink this cache.
    unsafe {
        if tc.prev.is_null() {
            *CACHES.0.get() = tc.next;
        } else {
            (*tc.prev).next = tc.next;
        }
        if !tc.next.is_null() {
            (*tc.next).prev = tc.prev;
        }
    }
    COUNTERS.thread_caches.fetch_sub(1, Ordering::Relaxed);
}

/// Counts one request served by the system allocator in this thread's cache, if it is active
/// (a plain increment of a thread-local word: no shared cache line is written); false when it
/// is not (then call [`count_system_alloc_slow`]).
#[inline(always)]
pub fn try_count_system_alloc() -> bool {
    with_tc(|tc| {
        // SAFETY: this thread's cache; only its owner writes `system_allocs`.
        let tc = unsafe { &*tc.get() };
        let active = tc.state == TC_ACTIVE;
        if active {
            let n = tc.system_allocs.load(Ordering::Relaxed);
            tc.system_allocs.store(n + 1, Ordering::Relaxed);
        }
        active
    })
}

/// Counts one request served by the system allocator when this thread's cache is not active:
/// a fresh cache is activated when thread caches are on (so a thread that only ever makes
/// large requests counts locally from its second one), else the process-wide counter is used
/// (caches off, every path under Valgrind).
#[cold]
#[inline(never)]
pub fn count_system_alloc_slow() {
    with_tc(|tc| {
        // SAFETY: this thread's cache.
        let tc = unsafe { &mut *tc.get() };
        if config::tcache_on() && (tc.state == TC_ACTIVE || activate(tc)) {
            let n = tc.system_allocs.load(Ordering::Relaxed);
            tc.system_allocs.store(n + 1, Ordering::Relaxed);
        } else {
            COUNTERS.system_allocs.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// Counts one request served by the system allocator (see [`try_count_system_alloc`]).
#[inline(always)]
pub fn count_system_alloc() {
    if !try_count_system_alloc() {
        count_system_alloc_slow();
    }
}

/// Calls `f` on every listed cache (for statistics: other threads' caches are read only in
/// their fields made for it, with relaxed loads).
///
/// # Safety
/// The caller holds the registry lock (`REGISTRY`).
unsafe fn for_each_cache(mut f: impl FnMut(&TCache)) {
    // SAFETY: registry lock held (the caller's contract): every listed cache is alive (unlinked
    // before its thread ends).
    unsafe {
        let mut tc = *CACHES.0.get();
        while !tc.is_null() {
            f(&*tc);
            tc = (*tc).next;
        }
    }
}

/// Requests served by the system allocator so far, in all (see [`TCache`]'s invariant).
pub fn system_allocs() -> usize {
    // Under the registry lock, so that a cache that is being unlisted (and adds its count to
    // `COUNTERS`) is counted once.
    let _g = REGISTRY.lock();
    let mut n = COUNTERS.system_allocs.load(Ordering::Relaxed);
    // SAFETY: registry lock held.
    unsafe { for_each_cache(|tc| n += tc.system_allocs.load(Ordering::Relaxed)) };
    n
}

/// Blocks in another thread's bin, as far as its cap and room read one after the other tell
/// (they may be from two moments: never more than the bin's limit and one).
fn racy_len(tc: &TCache, class: usize) -> usize {
    let cap = u32::from(tc.caps[class].load(Ordering::Relaxed));
    let room = tc.rooms[class].load(Ordering::Relaxed);
    cap.wrapping_sub(room).min(bin_limit(class) + 1) as usize
}

/// Blocks held in all thread caches, per class (racy snapshot, for statistics).
pub fn cached_blocks() -> [usize; NB_SMALL_SIZE_CLASSES] {
    let mut out = [0usize; NB_SMALL_SIZE_CLASSES];
    let _g = REGISTRY.lock();
    // SAFETY: registry lock held.
    unsafe {
        for_each_cache(|tc| {
            for (class, o) in out.iter_mut().enumerate() {
                *o += racy_len(tc, class);
            }
        })
    };
    out
}

/// System blocks held in all thread caches' bins `bins` (the system bins or the large bins;
/// racy snapshot, for statistics).
pub fn cached_system_blocks(bins: core::ops::Range<usize>) -> usize {
    let mut n = 0;
    let _g = REGISTRY.lock();
    // SAFETY: registry lock held.
    unsafe {
        for_each_cache(|tc| {
            for class in bins.clone() {
                n += racy_len(tc, class);
            }
        })
    };
    n
}

/// Calls `f` with whether the calling thread's cache is active and its bins (for the walker).
pub(crate) fn with_own_bins<R>(f: impl FnOnce(bool, &mut TCache) -> R) -> R {
    with_tc(|tc| {
        // SAFETY: this thread's cache; no reference to it escapes `f`, which frees nothing.
        let tc = unsafe { &mut *tc.get() };
        f(tc.state == TC_ACTIVE, tc)
    })
}

/// Gives every block of the calling thread's cache back to the central heap (tests use this
/// to reach a state where pool counts are exact).
pub fn flush_current_thread() {
    with_tc(|tc| {
        // SAFETY: this thread's cache.
        flush_all(unsafe { &mut *tc.get() })
    })
}

/// Gives every cached block of `tc` back to the central heap (and the system allocator). A
/// cache that is not active holds none.
fn flush_all(tc: &mut TCache) {
    if tc.state != TC_ACTIVE {
        return;
    }
    for class in 0..NB_BINS {
        let mut bin = tc.bin(class);
        let n = len(&bin) as usize;
        give_back_all(&mut bin, class, n);
        set_cap(&bin, empty_cap(class), 0);
    }
}

pub(crate) fn lock_registry() {
    // SAFETY: unlocked in unlock_registry / after_fork_child by the same thread.
    unsafe { REGISTRY.raw_lock() };
}

pub(crate) fn unlock_registry() {
    // SAFETY: locked by lock_registry on this thread.
    unsafe { REGISTRY.force_unlock() };
}

/// In a fork child only the forking thread exists: the list keeps only its cache (the blocks in
/// other threads' caches are lost to the child, as with glibc's tcache).
pub(crate) fn after_fork_child() {
    // SAFETY: single-threaded child; re-initialising the mutex is valid whoever held it.
    unsafe { REGISTRY.reinit() };
    with_tc(|tc| {
        // SAFETY: this thread's cache; no other thread exists.
        let tc = unsafe { &mut *tc.get() };
        // SAFETY: as above.
        unsafe {
            if tc.state == TC_ACTIVE {
                tc.next = null_mut();
                tc.prev = null_mut();
                *CACHES.0.get() = tc;
            } else {
                *CACHES.0.get() = null_mut();
            }
        }
        COUNTERS
            .thread_caches
            .store((tc.state == TC_ACTIVE) as u32, Ordering::Relaxed);
    });
}
