//! The central heap: arenas, pools and the per-class used lists (pymalloc's design), plus the
//! memcheck-only paths (red-zoned geometry, per-block bitmaps, quarantine).
//!
//! Locking: one pthread mutex per size class guards that class's used list and the headers of
//! its pools; one arena mutex guards the arena table and every arena's free-pool list. Order:
//! class lock, then arena lock. Thread caches (`tcache`) sit in front and take a class lock only
//! to refill or flush a batch of blocks.

use core::cell::UnsafeCell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use super::options::{Mode, Options};
use super::sys;
use super::track::{self, Tool};
use super::types::*;

// ---------------------------------------------------------------------------------------------
// Global configuration, fixed at initialisation.

const UNINIT: u8 = 0;
const INITIALIZING: u8 = 1;
const READY: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);

/// Whether pools serve small requests (false in `malloc` mode).
static POOLS_ON: AtomicU8 = AtomicU8::new(0);
/// Extra bytes between blocks (the memcheck red zone), 0 natively.
static REDZONE: AtomicUsize = AtomicUsize::new(0);
/// Whether `live` bitmaps are maintained (memcheck or debug).
static STRICT: AtomicU8 = AtomicU8::new(0);
/// Whether debug mode is on.
static DEBUG: AtomicU8 = AtomicU8::new(0);
/// Whether thread caches are used (natively, unless disabled).
static TCACHE_ON: AtomicU8 = AtomicU8::new(0);
/// The one flag the entry points read first: which path small requests take. Published last
/// (Release), so seeing a path implies everything else is initialised.
static PATH: AtomicU8 = AtomicU8::new(PATH_UNINIT);

/// Small requests go through the lock-free thread caches: initialised, pools on, thread caches
/// on, not debug mode, not under Valgrind.
pub const PATH_FAST: u8 = 1;
/// Small requests go to the memcheck paths (`memcheck_alloc`, `memcheck_free`): initialised,
/// pools on, under memcheck.
pub const PATH_MEMCHECK: u8 = 2;
/// Anything else (debug mode, other Valgrind tools, `malloc` mode): the general front end
/// decides.
pub const PATH_GENERAL: u8 = 0;
/// Not initialised yet: the entry point initialises the allocator (`ensure_init`) and reads the
/// path again, so that the first request takes the same call path, hence has the same
/// allocation stack, as every later one (memcheck groups leaks by that stack).
pub const PATH_UNINIT: u8 = 3;

thread_local! {
    static IN_INIT: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Makes sure the allocator is initialised. Returns false only for a re-entrant call made by
/// the initialising thread itself (e.g. `dlsym` or `pthread_atfork` calling `malloc`); the caller
/// must then serve the request from the bootstrap buffer.
#[inline(always)]
pub fn ensure_init() -> bool {
    if STATE.load(Ordering::Acquire) == READY {
        return true;
    }
    init_slow()
}

#[cold]
#[inline(never)]
fn init_slow() -> bool {
    loop {
        match STATE.compare_exchange(UNINIT, INITIALIZING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => break,
            Err(READY) => return true,
            Err(_) => {
                if IN_INIT.with(|f| f.get()) {
                    return false;
                }
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }
    IN_INIT.with(|f| f.set(true));
    let opts = Options::from_env();
    sys::init();
    QUARANTINE_LIMIT.store(opts.quarantine_bytes, Ordering::Relaxed);
    let tool = track::init(opts.valgrind_auto);
    let pools = opts.mode != Mode::Malloc;
    POOLS_ON.store(pools as u8, Ordering::Relaxed);
    if tool == Tool::Memcheck {
        REDZONE.store(MEMCHECK_REDZONE, Ordering::Relaxed);
    }
    STRICT.store(
        (tool == Tool::Memcheck || opts.mode == Mode::Debug) as u8,
        Ordering::Relaxed,
    );
    if tool == Tool::Memcheck {
        EXIT_DRAIN_REGISTERED.store(true, Ordering::Relaxed);
    }
    // Under memcheck, debug mode's guards would only duplicate what memcheck reports better.
    DEBUG.store(
        (opts.mode == Mode::Debug && tool != Tool::Memcheck) as u8,
        Ordering::Relaxed,
    );
    TCACHE_ON.store(
        (opts.thread_caches && tool == Tool::None) as u8,
        Ordering::Relaxed,
    );
    if pools {
        arena_table_init();
        if tool == Tool::Memcheck && !side_init() {
            // Without the side table pools cannot be described to memcheck cheaply: leave
            // small requests to the system allocator (as `malloc` mode).
            POOLS_ON.store(0, Ordering::Relaxed);
        }
    }
    super::tcache::init();
    // SAFETY: the handlers are `extern "C"` functions that take only our own mutexes.
    unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    if opts.stats_at_exit {
        // SAFETY: `print_stats_at_exit` is an `extern "C" fn()` that does not unwind.
        unsafe { libc::atexit(super::stats::print_stats_at_exit) };
    }
    IN_INIT.with(|f| f.set(false));
    let usable = pools_on() && !arena_table().is_null();
    let path = if usable && tcache_on() && !debug_mode() {
        PATH_FAST
    } else if usable && tool == Tool::Memcheck {
        PATH_MEMCHECK
    } else {
        PATH_GENERAL
    };
    PATH.store(path, Ordering::Release);
    STATE.store(READY, Ordering::Release);
    true
}

/// The path small requests take (`PATH_*`).
#[inline(always)]
pub fn path() -> u8 {
    PATH.load(Ordering::Acquire)
}

/// Whether small requests are served from pools.
#[inline(always)]
pub fn pools_on() -> bool {
    POOLS_ON.load(Ordering::Relaxed) != 0
}

/// Whether per-block `live` bitmaps are kept (memcheck or debug).
#[inline(always)]
pub fn strict() -> bool {
    STRICT.load(Ordering::Relaxed) != 0
}

/// Whether debug mode is on.
#[inline(always)]
pub fn debug_mode() -> bool {
    DEBUG.load(Ordering::Relaxed) != 0
}

/// Whether thread caches are in use.
#[inline(always)]
pub fn tcache_on() -> bool {
    TCACHE_ON.load(Ordering::Relaxed) != 0
}

/// Distance between blocks of a class in the geometry the process runs with.
#[inline(always)]
pub fn stride(class: usize) -> usize {
    class_size(class) + REDZONE.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// The size classes.

pub(crate) static CLASSES: [ClassState; NB_SMALL_SIZE_CLASSES] =
    [const { ClassState::new() }; NB_SMALL_SIZE_CLASSES];

pub(crate) static COUNTERS: Counters = Counters::new();

// ---------------------------------------------------------------------------------------------
// The arena layer (guarded by ARENA_LOCK, except `address` reads and NARENAS).

pub(crate) static ARENA_LOCK: RawMutex = RawMutex::new();

/// The arena table: a reservation of MAX_ARENAS entries (touched as they are used).
static ARENA_TABLE: AtomicUsize = AtomicUsize::new(0);
/// Table slots initialised so far (slots `< NARENAS` may be read by `address_in_range`).
pub(crate) static NARENAS: AtomicUsize = AtomicUsize::new(0);

pub(crate) struct ArenaLists {
    /// Slots without an arena, linked through `nextarena`.
    unused: *mut ArenaObject,
    /// Arenas with free pools, sorted by `nfreepools` ascending.
    usable: *mut ArenaObject,
    /// `nfp2lasta[n]`: the last arena on `usable` with `n` free pools (pymalloc 3.8's trick to
    /// keep the list sorted in O(1)).
    nfp2lasta: [*mut ArenaObject; POOLS_PER_ARENA + 1],
    /// Arenas alive.
    live: usize,
    /// Alive arenas whose pools are all empty and were carved (kept as spares, up to
    /// [`SPARE_ARENAS`], plus pymalloc's rightmost one).
    empty: usize,
}

/// Empty arenas kept mapped natively before more are given back (4 MiB). pymalloc keeps one;
/// a program that builds and drops large structures repeatedly (binary trees) otherwise unmaps
/// arenas and faults the same pages in again for the next round (measured: 4.7k page faults vs
/// glibc's 1.2k on the trees benchmark). Under memcheck none is kept (see `arena_give_pool`).
const SPARE_ARENAS: usize = 16;

struct ArenaCell(UnsafeCell<ArenaLists>);
// SAFETY: accessed only with ARENA_LOCK held.
unsafe impl Sync for ArenaCell {}

static ARENAS: ArenaCell = ArenaCell(UnsafeCell::new(ArenaLists {
    unused: null_mut(),
    usable: null_mut(),
    nfp2lasta: [null_mut(); POOLS_PER_ARENA + 1],
    live: 0,
    empty: 0,
}));

/// Readable prefix of the arena table (bytes; see `commit_table`).
static ARENA_TABLE_COMMITTED: AtomicUsize = AtomicUsize::new(0);

fn arena_table_init() {
    // Reserved address space: only the pages of slots in use cost memory.
    let p = reserve_table(MAX_ARENAS * core::mem::size_of::<ArenaObject>());
    if !p.is_null() {
        ARENA_TABLE.store(p as usize, Ordering::Release);
    }
}

/// The arena table's base (null if it could not be reserved: pools then stay empty and every
/// request is served by the system allocator).
#[inline(always)]
pub(crate) fn arena_table() -> *mut ArenaObject {
    ARENA_TABLE.load(Ordering::Acquire) as *mut ArenaObject
}

/// Maps a new arena and returns its table entry, or null.
///
/// # Safety
/// ARENA_LOCK must be held.
unsafe fn new_arena(l: &mut ArenaLists) -> *mut ArenaObject {
    let table = arena_table();
    if table.is_null() {
        return null_mut();
    }
    if l.unused.is_null() {
        let n = NARENAS.load(Ordering::Relaxed);
        let size = core::mem::size_of::<ArenaObject>();
        if n >= MAX_ARENAS
            || !commit_table(
                table.cast(),
                &ARENA_TABLE_COMMITTED,
                (n + 1) * size,
                MAX_ARENAS * size,
            )
        {
            return null_mut();
        }
        // SAFETY: slot n < MAX_ARENAS is inside the reservation; mmap'd pages read as zero,
        // which is a valid unused ArenaObject (address 0, null links).
        let slot = unsafe { table.add(n) };
        l.unused = slot;
        NARENAS.store(n + 1, Ordering::Release);
    }
    let ao = l.unused;
    let base = arena_memory_alloc();
    if base.is_null() {
        return null_mut();
    }
    if track::memcheck() && !side_map_arena(base, arena_index(ao)) {
        arena_memory_free(base);
        return null_mut();
    }
    // SAFETY: `ao` is an unused slot of the table; we hold the arena lock.
    unsafe {
        l.unused = (*ao).nextarena;
        (*ao).pool_address = base as usize;
        (*ao).nfreepools = POOLS_PER_ARENA as u32;
        (*ao).ntotalpools = POOLS_PER_ARENA as u32;
        (*ao).freepools = null_mut();
        (*ao).nextarena = null_mut();
        (*ao).prevarena = null_mut();
        (*ao).address.store(base as usize, Ordering::Release);
    }
    l.live += 1;
    Counters::bump(&COUNTERS.arenas_allocated, 1);
    COUNTERS
        .arenas_highwater
        .fetch_max(l.live, Ordering::Relaxed);
    ao
}

/// Memory for one arena: mmap natively (memmap2); under memcheck a heap block from the system
/// allocator, because mmap'd memory is a leak-check root (live blocks in it would make lost
/// cycles look reachable) while a malloc block that contains mempool chunks is neither a root
/// nor a leak candidate. Never inlined: `supp/poolgrind.supp` names it.
#[inline(never)]
fn arena_memory_alloc() -> *mut u8 {
    if track::memcheck() {
        let p = sys::memalign(POOL_SIZE, ARENA_SIZE);
        if !p.is_null() {
            track::arena_created(p, ARENA_SIZE);
        }
        return p;
    }
    match memmap2::MmapOptions::new().len(ARENA_SIZE).map_anon() {
        Ok(mut m) => {
            let p = m.as_mut_ptr();
            // The mapping lives until `arena_memory_free` unmaps it by address.
            core::mem::forget(m);
            p
        }
        Err(_) => null_mut(),
    }
}

fn arena_memory_free(p: *mut u8) {
    if track::memcheck() {
        // SAFETY: under memcheck every arena came from sys::memalign.
        unsafe { sys::free(p) };
        return;
    }
    // SAFETY: `p` is the start of a live ARENA_SIZE mapping made by arena_memory_alloc (memmap2
    // has no "from raw" constructor, so the unmapping is done here).
    unsafe { libc::munmap(p.cast(), ARENA_SIZE) };
}

/// Index of an arena object in the table.
fn arena_index(ao: *mut ArenaObject) -> u32 {
    ((ao as usize - arena_table() as usize) / core::mem::size_of::<ArenaObject>()) as u32
}

/// Takes an empty pool from the most used arena with free pools (pymalloc's policy).
///
/// # Safety
/// ARENA_LOCK must be held.
unsafe fn arena_take_pool(l: &mut ArenaLists) -> *mut PoolHeader {
    if l.usable.is_null() {
        // SAFETY: forwarded.
        let ao = unsafe { new_arena(l) };
        if ao.is_null() {
            return null_mut();
        }
        l.usable = ao;
        // SAFETY: ao is a live arena.
        l.nfp2lasta[unsafe { (*ao).nfreepools } as usize] = ao;
    }
    let ao = l.usable;
    // SAFETY: `ao` is the head of the usable list: a live arena with free pools.
    unsafe {
        let nf = (*ao).nfreepools as usize;
        if nf == (*ao).ntotalpools as usize
            && (*ao).pool_address != (*ao).address.load(Ordering::Relaxed)
        {
            l.empty -= 1; // a kept empty arena (carved, so counted) is used again
        }
        if l.nfp2lasta[nf] == ao {
            l.nfp2lasta[nf] = null_mut();
        }
        if nf > 1 {
            // ao stays at the head (it had the fewest free pools) and is the last with nf - 1.
            l.nfp2lasta[nf - 1] = ao;
        }
        let pool;
        if !(*ao).freepools.is_null() {
            pool = (*ao).freepools;
            (*ao).freepools = (*meta(pool)).nextpool;
        } else {
            pool = (*ao).pool_address as *mut PoolHeader;
            (*ao).pool_address += POOL_SIZE;
            let idx = arena_index(ao);
            let m = meta(pool);
            (*m).arenaindex = idx;
            if m != pool {
                // Memcheck: the in-pool copy of the index, for address_in_range, written once.
                track::open_header(pool.cast());
                (*pool).arenaindex = idx;
                track::close_header(pool.cast());
            }
        }
        (*ao).nfreepools -= 1;
        if (*ao).nfreepools == 0 {
            l.usable = (*ao).nextarena;
            if !l.usable.is_null() {
                (*l.usable).prevarena = null_mut();
            }
            (*ao).nextarena = null_mut();
        }
        pool
    }
}

/// Gives an empty pool back to its arena; frees the arena when all its pools are empty (unless
/// it is the last usable arena: keeping one spare avoids map/unmap thrashing).
///
/// # Safety
/// ARENA_LOCK must be held; `pool` is empty and on no list.
unsafe fn arena_give_pool(l: &mut ArenaLists, pool: *mut PoolHeader) {
    // SAFETY: the pool belongs to a live arena (its header names it); lock held.
    unsafe {
        let m = meta(pool);
        let ao = arena_table().add((*m).arenaindex as usize);
        (*m).nextpool = (*ao).freepools;
        (*ao).freepools = pool;
        let nf = (*ao).nfreepools as usize;
        let lastnf = l.nfp2lasta[nf];
        if lastnf == ao {
            let p = (*ao).prevarena;
            l.nfp2lasta[nf] = if !p.is_null() && (*p).nfreepools as usize == nf {
                p
            } else {
                null_mut()
            };
        }
        let nf = nf + 1;
        (*ao).nfreepools = nf as u32;

        let now_empty = nf == (*ao).ntotalpools as usize;
        let keep_spare = !track::memcheck() && l.empty < SPARE_ARENAS;
        if now_empty && !keep_spare && (!(*ao).nextarena.is_null() || track::memcheck()) {
            // Case 1: the arena is empty and another usable arena follows: give it back. (Under
            // memcheck always: a spare arena with no live chunk would be a leak-check candidate.)
            if l.nfp2lasta[nf] == ao {
                l.nfp2lasta[nf] = null_mut();
            }
            if (*ao).prevarena.is_null() {
                l.usable = (*ao).nextarena;
            } else {
                (*(*ao).prevarena).nextarena = (*ao).nextarena;
            }
            if !(*ao).nextarena.is_null() {
                (*(*ao).nextarena).prevarena = (*ao).prevarena;
            }
            let base = (*ao).address.load(Ordering::Relaxed) as *mut u8;
            // Zero the address before the memory goes: address_in_range must never match a
            // range that another allocator may hand out next.
            (*ao).address.store(0, Ordering::Release);
            if track::memcheck() {
                side_unmap_arena(base);
            }
            (*ao).nextarena = l.unused;
            (*ao).prevarena = null_mut();
            (*ao).freepools = null_mut();
            l.unused = ao;
            l.live -= 1;
            arena_memory_free(base);
            Counters::bump(&COUNTERS.arenas_freed, 1);
            return;
        }
        if now_empty {
            // Kept (a spare, or pymalloc's rightmost arena): counted until a pool is taken again.
            l.empty += 1;
        }
        if nf == 1 {
            // Case 2: the arena was full: it goes to the head (fewest free pools).
            (*ao).nextarena = l.usable;
            (*ao).prevarena = null_mut();
            if !l.usable.is_null() {
                (*l.usable).prevarena = ao;
            }
            l.usable = ao;
            if l.nfp2lasta[1].is_null() {
                l.nfp2lasta[1] = ao;
            }
            return;
        }
        if l.nfp2lasta[nf].is_null() {
            l.nfp2lasta[nf] = ao;
        }
        if ao == lastnf {
            return; // still in order
        }
        // Case 3: move ao to just after lastnf (the last arena with nf - 1 free pools).
        if (*ao).prevarena.is_null() {
            l.usable = (*ao).nextarena;
        } else {
            (*(*ao).prevarena).nextarena = (*ao).nextarena;
        }
        if !(*ao).nextarena.is_null() {
            (*(*ao).nextarena).prevarena = (*ao).prevarena;
        }
        (*ao).prevarena = lastnf;
        (*ao).nextarena = (*lastnf).nextarena;
        if !(*ao).nextarena.is_null() {
            (*(*ao).nextarena).prevarena = ao;
        }
        (*lastnf).nextarena = ao;
    }
}

/// Runs `f` with the arena lists locked.
pub(crate) fn with_arenas<R>(f: impl FnOnce(&mut ArenaLists) -> R) -> R {
    let _g = ARENA_LOCK.lock();
    // SAFETY: the arena lock is held for the lifetime of the reference.
    f(unsafe { &mut *ARENAS.0.get() })
}

/// Arenas alive, usable-list order (for the walker): (entry, nfreepools) pairs via callback.
pub(crate) fn arena_lists_snapshot(mut f: impl FnMut(*mut ArenaObject, bool)) -> (usize, bool) {
    with_arenas(|l| {
        let mut ao = l.usable;
        while !ao.is_null() {
            f(ao, true);
            // SAFETY: walking the usable list under the lock.
            ao = unsafe { (*ao).nextarena };
        }
        let mut ok = true;
        for i in 0..=POOLS_PER_ARENA {
            let a = l.nfp2lasta[i];
            // SAFETY: nfp2lasta entries are live arenas.
            if !a.is_null() && unsafe { (*a).nfreepools } as usize != i {
                ok = false;
            }
        }
        (l.live, ok)
    })
}

// ---------------------------------------------------------------------------------------------
// Pools of a size class (class lock held).

/// Initialises an empty pool for `class` (`m == meta(pool)`).
///
/// # Safety
/// The class lock is held; the pool is ours and empty.
unsafe fn init_pool(m: *mut PoolHeader, class: usize) {
    let stride = stride(class);
    // SAFETY: the pool is ours and empty; the caller holds the class lock.
    unsafe {
        (*m).szidx = class as u32;
        (*m).nused = 0;
        (*m).stride = stride as u32;
        (*m).freeblock = null_mut();
        (*m).nextpool = null_mut();
        (*m).prevpool = null_mut();
        (*m).nextoffset = POOL_HEADER_SIZE as u32;
        (*m).maxnextoffset =
            (POOL_HEADER_SIZE + (PoolHeader::capacity(stride) - 1) * stride) as u32;
        (*m).live[0].store(0, Ordering::Relaxed);
        (*m).live[1].store(0, Ordering::Relaxed);
        let cap = PoolHeader::capacity(stride);
        (*m).avail = if cap >= STRICT_MAX_BLOCKS {
            [u64::MAX, u64::MAX]
        } else if cap > 64 {
            [u64::MAX, (1u64 << (cap - 64)) - 1]
        } else if cap == 64 {
            [u64::MAX, 0]
        } else {
            [(1u64 << cap) - 1, 0]
        };
    }
}

/// Native geometries: whether a pool can hand out another block.
///
/// # Safety
/// Class lock held; `m` is the metadata of a pool of this class.
#[inline(always)]
unsafe fn pool_has_free(m: *mut PoolHeader) -> bool {
    // SAFETY: forwarded.
    unsafe { !(*m).freeblock.is_null() || (*m).nextoffset <= (*m).maxnextoffset }
}

/// Takes one block from a pool with a free block (native geometries: the free list, then the
/// virgin blocks).
///
/// # Safety
/// Class lock held, `m == meta(pool)`, `pool_has_free(m)`.
#[inline(always)]
unsafe fn pool_take(pool: *mut PoolHeader, m: *mut PoolHeader) -> *mut u8 {
    // SAFETY: forwarded; blocks are inside the pool.
    unsafe {
        (*m).nused += 1;
        let b = (*m).freeblock;
        if !b.is_null() {
            (*m).freeblock = *b.cast::<*mut u8>();
            return b;
        }
        let b = pool.cast::<u8>().add((*m).nextoffset as usize);
        (*m).nextoffset += (*m).stride;
        b
    }
}

/// Puts one block back into its pool (native geometries: onto the free list).
///
/// # Safety
/// Class lock held, `m` is the metadata of the pool of `b`, a block that is out.
#[inline(always)]
unsafe fn pool_put(m: *mut PoolHeader, b: *mut u8) {
    // SAFETY: forwarded.
    unsafe {
        (*m).nused -= 1;
        *b.cast::<*mut u8>() = (*m).freeblock;
        (*m).freeblock = b;
    }
}

/// Unlinks a pool from its class's used list.
///
/// # Safety
/// Class lock held; `m == meta(pool)`; the pool is on the list.
unsafe fn unlink_used(cls: &ClassState, m: *mut PoolHeader) {
    // SAFETY: list manipulation under the class lock.
    unsafe {
        let next = (*m).nextpool;
        let prev = (*m).prevpool;
        if prev.is_null() {
            *cls.used.get() = next;
        } else {
            (*meta(prev)).nextpool = next;
        }
        if !next.is_null() {
            (*meta(next)).prevpool = prev;
        }
        (*m).nextpool = null_mut();
        (*m).prevpool = null_mut();
    }
}

/// Links a pool at the head of its class's used list.
///
/// # Safety
/// Class lock held; `m == meta(pool)`; the pool is on no list.
unsafe fn link_used(cls: &ClassState, pool: *mut PoolHeader, m: *mut PoolHeader) {
    // SAFETY: as unlink_used.
    unsafe {
        let head = *cls.used.get();
        (*m).prevpool = null_mut();
        (*m).nextpool = head;
        if !head.is_null() {
            (*meta(head)).prevpool = pool;
        }
        *cls.used.get() = pool;
    }
}

/// The first used pool of `class` and its metadata; a fresh pool when the class has none.
/// Null when no arena can be had.
///
/// # Safety
/// The class lock is held.
#[inline(always)]
unsafe fn first_used_pool(cls: &ClassState, class: usize) -> (*mut PoolHeader, *mut PoolHeader) {
    // SAFETY: class lock held.
    let pool = unsafe { *cls.used.get() };
    if pool.is_null() {
        // SAFETY: forwarded.
        return unsafe { new_used_pool(cls, class) };
    }
    (pool, meta(pool))
}

/// A fresh pool for `class`, linked as its first used pool (null when no arena can be had).
///
/// # Safety
/// The class lock is held; the class has no used pool.
#[cold]
#[inline(never)]
unsafe fn new_used_pool(cls: &ClassState, class: usize) -> (*mut PoolHeader, *mut PoolHeader) {
    // SAFETY: class lock held for every header and list access below.
    unsafe {
        let pool = with_arenas(|l| arena_take_pool(l));
        if pool.is_null() {
            return (null_mut(), null_mut());
        }
        let m = meta(pool);
        init_pool(m, class);
        link_used(cls, pool, m);
        *cls.pools.get() += 1;
        *cls.capacity.get() += PoolHeader::capacity(stride(class));
        (pool, m)
    }
}

/// Takes one block of `class` from its first used pool (making a pool if there is none); null
/// when no arena can be had. Native geometries (memcheck has `memcheck_alloc`).
///
/// # Safety
/// The class lock is held.
#[inline(always)]
unsafe fn take_block(cls: &ClassState, class: usize) -> *mut u8 {
    // SAFETY: class lock held for every header and list access below.
    unsafe {
        let (pool, m) = first_used_pool(cls, class);
        if pool.is_null() {
            return null_mut();
        }
        let b = pool_take(pool, m);
        if !pool_has_free(m) {
            unlink_used(cls, m);
        }
        *cls.nused.get() += 1;
        b
    }
}

/// Takes up to `n` blocks of `class`, linked through their first word, and returns
/// (head, count). A batch request (`n > 1`, thread-cache refills, never under memcheck) is
/// served whole from the transfer stack when it has one (its count may differ from `n`), else
/// from pools a whole free list and a run of virgin blocks at a time.
pub(crate) fn central_alloc(class: usize, n: usize) -> (*mut u8, usize) {
    let cls = &CLASSES[class];
    let _g = cls.lock.lock_unless_serialized();
    // SAFETY: class lock held.
    unsafe {
        let nt = *cls.ntransfer.get();
        if n > 1 && nt > 0 {
            let batch = (*cls.transfer.get())[nt - 1];
            *cls.ntransfer.get() = nt - 1;
            *cls.transfer_blocks.get() -= batch.count;
            return (batch.head, batch.count);
        }
    }
    let mut head: *mut u8 = null_mut();
    let mut got = 0;
    if n > 1 && !track::memcheck() {
        while got < n {
            // SAFETY: class lock held; natively the metadata is the in-pool header.
            unsafe {
                let (pool, m) = first_used_pool(cls, class);
                if pool.is_null() {
                    break;
                }
                let before = got;
                while got < n && !(*m).freeblock.is_null() {
                    let b = (*m).freeblock;
                    (*m).freeblock = *b.cast::<*mut u8>();
                    *b.cast::<*mut u8>() = head;
                    head = b;
                    got += 1;
                }
                let stride = (*m).stride;
                while got < n && (*m).nextoffset <= (*m).maxnextoffset {
                    let b = pool.cast::<u8>().add((*m).nextoffset as usize);
                    (*m).nextoffset += stride;
                    *b.cast::<*mut u8>() = head;
                    head = b;
                    got += 1;
                }
                (*m).nused += (got - before) as u32;
                if !pool_has_free(m) {
                    unlink_used(cls, m);
                }
            }
        }
        // SAFETY: class lock held.
        unsafe { *cls.nused.get() += got };
        return (head, got);
    }
    while got < n {
        // SAFETY: class lock held.
        let b = unsafe { take_block(cls, class) };
        if b.is_null() {
            break;
        }
        if n > 1 {
            // SAFETY: a free block of at least 16 bytes; its first word becomes the link.
            unsafe { *b.cast::<*mut u8>() = head };
        }
        head = b;
        got += 1;
    }
    (head, got)
}

/// Gives back a chain of `n` blocks of `class` linked through their first word (or, when
/// `n == 1`, one block whose first word is not read).
///
/// # Safety
/// Every block is a block of `class` that is out of its pool and no longer used by anyone.
pub(crate) unsafe fn central_free(class: usize, mut chain: *mut u8, n: usize) {
    let cls = &CLASSES[class];
    let _g = cls.lock.lock_unless_serialized();
    // SAFETY: class lock held; a chain of n > 1 blocks is kept whole.
    unsafe {
        let nt = *cls.ntransfer.get();
        if n > 1 && nt < TRANSFER_SLOTS {
            (*cls.transfer.get())[nt] = Batch {
                head: chain,
                count: n,
            };
            *cls.ntransfer.get() = nt + 1;
            *cls.transfer_blocks.get() += n;
            return;
        }
    }
    for i in 0..n {
        let b = chain;
        if i + 1 < n {
            // SAFETY: blocks of a chain are linked through their first word.
            chain = unsafe { *b.cast::<*mut u8>() };
        }
        // SAFETY: class lock held; b is a block of `class` out of its pool.
        unsafe { put_block(cls, class, b) };
    }
}

/// Puts one block back into its pool (class lock held): pymalloc's free, whose common case
/// (the pool stays used) touches only the pool's header. Native geometries (memcheck has
/// `memcheck_put_block`).
///
/// # Safety
/// The class lock is held; `b` is a block of `class` that is out of its pool.
#[inline(always)]
unsafe fn put_block(cls: &ClassState, class: usize, b: *mut u8) {
    let pool = PoolHeader::of(b);
    // SAFETY: class lock held; b belongs to `pool`.
    unsafe {
        let m = meta(pool);
        let was_full = !pool_has_free(m);
        pool_put(m, b);
        *cls.nused.get() -= 1;
        if was_full || (*m).nused == 0 {
            pool_changes_list(cls, class, pool, m, was_full);
        }
    }
}

/// The rare half of [`put_block`]: a full pool becomes used, or a pool becomes empty and goes
/// back to its arena.
///
/// # Safety
/// The class lock is held; `m == meta(pool)`; the pool was full (`was_full`) or is now empty.
#[cold]
#[inline(never)]
unsafe fn pool_changes_list(
    cls: &ClassState,
    class: usize,
    pool: *mut PoolHeader,
    m: *mut PoolHeader,
    was_full: bool,
) {
    // SAFETY: forwarded.
    unsafe {
        if (*m).nused == 0 {
            if !was_full {
                unlink_used(cls, m);
            }
            *cls.pools.get() -= 1;
            *cls.capacity.get() -= PoolHeader::capacity(stride(class));
            with_arenas(|l| arena_give_pool(l, pool));
        } else {
            link_used(cls, pool, m);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strict geometries: the `live` bitmap (memcheck and debug).

/// Sets the live bit of block `b` of `pool` and returns the block's index.
///
/// # Safety
/// `m == meta(pool)` and `b` is a block boundary of `pool`.
#[inline]
unsafe fn set_live_bit(pool: *mut PoolHeader, m: *mut PoolHeader, b: *const u8) -> usize {
    // SAFETY: forwarded; `live` is atomic.
    unsafe {
        let i = PoolHeader::block_index(pool, (*m).stride as usize, b);
        (*m).live[i / 64].fetch_or(1u64 << (i % 64), Ordering::Relaxed);
        i
    }
}

/// Index of `b` in its pool if it is a block boundary (a pool without a stride, never carved,
/// has none).
///
/// # Safety
/// `m == meta(pool)`.
#[inline]
unsafe fn block_at(pool: *mut PoolHeader, m: *mut PoolHeader, b: *const u8) -> Option<usize> {
    // SAFETY: forwarded.
    let (stride, last) = unsafe { ((*m).stride as usize, (*m).maxnextoffset as usize) };
    let off = (b as usize).wrapping_sub(PoolHeader::first_block(pool) as usize);
    // `last` is the offset of the last block from the pool: no division for the bound.
    if stride == 0 || off > last.wrapping_sub(POOL_HEADER_SIZE) || off % stride != 0 {
        return None;
    }
    Some(off / stride)
}

/// Clears the live bit of `b` in `pool`; false if it was not set (a double or invalid free) or
/// if `b` is not a block boundary of the pool.
///
/// # Safety
/// `m == meta(pool)`; `b` lies in `pool`.
#[inline]
unsafe fn clear_live_bit(pool: *mut PoolHeader, m: *mut PoolHeader, b: *const u8) -> bool {
    // SAFETY: forwarded; `live` is atomic.
    unsafe {
        let Some(i) = block_at(pool, m, b) else {
            return false;
        };
        let bit = 1u64 << (i % 64);
        (*m).live[i / 64].fetch_and(!bit, Ordering::Relaxed) & bit != 0
    }
}

/// Marks a block handed out to the program.
///
/// # Safety
/// `b` is a block of a live pool of this process.
pub(crate) unsafe fn mark_live(b: *const u8) {
    let pool = PoolHeader::of(b);
    // SAFETY: the header is ours; `live` is atomic, so no lock is needed (debug mode frees from
    // many threads).
    unsafe {
        set_live_bit(pool, meta(pool), b);
    }
}

/// Clears a block's live bit; false if it was not set (double or invalid free), or if `b` is
/// not a block boundary of its pool.
///
/// # Safety
/// `b` lies in a live pool of this process.
pub(crate) unsafe fn clear_live(b: *const u8) -> bool {
    let pool = PoolHeader::of(b);
    // SAFETY: as mark_live.
    unsafe { clear_live_bit(pool, meta(pool), b) }
}

/// Size class recorded in the header of the pool that contains `p`.
///
/// # Safety
/// `p` lies in a pool of this process (checked with `address_in_range`).
pub(crate) unsafe fn pool_class(p: *const u8) -> usize {
    // SAFETY: the pool is ours and in use (it holds the live block p).
    unsafe { (*meta(PoolHeader::of(p))).szidx as usize }
}

/// Under memcheck: the size the program asked for when it got the live block `p` (0 if `p` is
/// not a live block).
///
/// # Safety
/// `p` lies in a pool of this process.
pub(crate) unsafe fn memcheck_requested(p: *const u8) -> usize {
    let pool = PoolHeader::of(p);
    // SAFETY: under memcheck `meta` is the pool's side entry.
    unsafe {
        let m = meta(pool);
        match block_at(pool, m, p) {
            Some(i) if (*m).live[i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0 => {
                (*m.cast::<SideEntry>()).req[i] as usize
            }
            _ => 0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Memcheck: pool metadata off the pool (types::SideEntry), found through a page map.

/// Base of the side table (`SIDE_ARENAS * POOLS_PER_ARENA` entries); 0 natively.
static SIDE: AtomicUsize = AtomicUsize::new(0);
/// Root of the page map (`PAGE_MAP_ROOT_LEN` leaf pointers); 0 natively.
static PAGE_MAP: AtomicUsize = AtomicUsize::new(0);
/// Readable prefixes (bytes) of the page map's root and of the side table (`commit_table`).
static PAGE_MAP_COMMITTED: AtomicUsize = AtomicUsize::new(0);
static SIDE_COMMITTED: AtomicUsize = AtomicUsize::new(0);

const PAGE_SHIFT: u32 = POOL_SIZE.trailing_zeros();
const LEAF_LEN: usize = 1 << PAGE_MAP_LEAF_BITS;

/// An anonymous private mapping of `bytes` with protection `prot`, reserved, not committed;
/// null on failure.
fn map_anon(bytes: usize, prot: libc::c_int) -> *mut u8 {
    // SAFETY: anonymous private mapping, no hint.
    let p = unsafe {
        libc::mmap(
            null_mut(),
            bytes,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        null_mut()
    } else {
        p.cast()
    }
}

/// A readable and writable reservation of `bytes`; null on failure. Fresh mappings read as
/// zeros (and memcheck treats them as DEFINED).
fn reserve(bytes: usize) -> *mut u8 {
    map_anon(bytes, libc::PROT_READ | libc::PROT_WRITE)
}

/// Under memcheck, allocator tables are reserved inaccessible (PROT_NONE) and made readable
/// only as far as they are used: memcheck's leak check scans every readable mapping word by
/// word, and the reserved-but-untouched side table and arena table (368 MB) added 0.66 s to the
/// exit of every process (measured on the collections benchmark: 1.32 s instead of 0.64 s with
/// zero rounds of work). Natively tables are plain reserved read-write mappings.
fn reserve_table(bytes: usize) -> *mut u8 {
    if track::memcheck() {
        map_anon(bytes, libc::PROT_NONE)
    } else {
        reserve(bytes)
    }
}

/// Granule in which `commit_table` makes a table readable (few mprotect calls).
const COMMIT_GRANULE: usize = 64 << 10;

/// Makes the first `upto` bytes of a table from `reserve_table` readable and writable (under
/// memcheck; natively they already are). `committed` is the table's readable prefix, changed
/// only under the arena lock. False if the kernel refuses.
fn commit_table(base: *mut u8, committed: &AtomicUsize, upto: usize, limit: usize) -> bool {
    if !track::memcheck() || upto <= committed.load(Ordering::Acquire) {
        return true;
    }
    let from = committed.load(Ordering::Relaxed);
    let to = upto
        .div_ceil(COMMIT_GRANULE)
        .saturating_mul(COMMIT_GRANULE)
        .min(limit);
    // SAFETY: [from, to) lies inside the reservation of `limit` bytes at `base` (from and to
    // are multiples of the page size, or `limit`, which is a multiple of it).
    let ok = unsafe {
        libc::mprotect(
            base.add(from).cast(),
            to - from,
            libc::PROT_READ | libc::PROT_WRITE,
        ) == 0
    };
    if ok {
        committed.store(to, Ordering::Release);
    }
    ok
}

/// Reserves the side table and the page map's root (at initialisation, under memcheck).
fn side_init() -> bool {
    let side = reserve_table(SIDE_ARENAS * POOLS_PER_ARENA * core::mem::size_of::<SideEntry>());
    let root = reserve_table(PAGE_MAP_ROOT_LEN * core::mem::size_of::<usize>());
    if side.is_null() || root.is_null() {
        return false;
    }
    SIDE.store(side as usize, Ordering::Relaxed);
    PAGE_MAP.store(root as usize, Ordering::Relaxed);
    true
}

/// The page-map slot of the page at `page_addr`; null when its leaf does not exist (and
/// `create` is false or no leaf can be mapped) or the address is beyond the map.
fn page_slot(page_addr: usize, create: bool) -> *mut u32 {
    let page = page_addr >> PAGE_SHIFT;
    let hi = page >> PAGE_MAP_LEAF_BITS;
    let root = PAGE_MAP.load(Ordering::Relaxed) as *mut *mut u32;
    if hi >= PAGE_MAP_ROOT_LEN || root.is_null() {
        return null_mut();
    }
    let root_bytes = PAGE_MAP_ROOT_LEN * core::mem::size_of::<usize>();
    if hi * core::mem::size_of::<usize>() >= PAGE_MAP_COMMITTED.load(Ordering::Acquire) {
        // Beyond the readable prefix of the root: no leaf yet, unless one is to be made.
        if !create
            || !commit_table(
                root.cast(),
                &PAGE_MAP_COMMITTED,
                (hi + 1) * core::mem::size_of::<usize>(),
                root_bytes,
            )
        {
            return null_mut();
        }
    }
    // SAFETY: `hi` is inside the root; leaves are written only under the arena lock (and the
    // memcheck serialisation lock, which every reader holds).
    unsafe {
        let mut leaf = *root.add(hi);
        if leaf.is_null() {
            if !create {
                return null_mut();
            }
            leaf = reserve(LEAF_LEN * core::mem::size_of::<u32>()).cast();
            if leaf.is_null() {
                return null_mut();
            }
            *root.add(hi) = leaf;
        }
        leaf.add(page & (LEAF_LEN - 1))
    }
}

/// Under memcheck, the side entry of the pool at `pool`: null when the page is not a pool of a
/// live arena. Only called once `side_init` has succeeded (the memcheck paths and `meta` run
/// only then), so the root exists.
#[inline(always)]
fn side_entry(pool: *mut PoolHeader) -> *mut SideEntry {
    let page = pool as usize >> PAGE_SHIFT;
    let hi = page >> PAGE_MAP_LEAF_BITS;
    // Within the root's readable prefix (the rest is PROT_NONE, and has no leaf anyway).
    if hi * core::mem::size_of::<usize>() >= PAGE_MAP_COMMITTED.load(Ordering::Relaxed) {
        return null_mut();
    }
    let root = PAGE_MAP.load(Ordering::Relaxed) as *const *const u32;
    debug_assert!(!root.is_null());
    // SAFETY: `hi` is inside the root's readable prefix; a non-null leaf has LEAF_LEN entries.
    let id = unsafe {
        let leaf = *root.add(hi);
        if leaf.is_null() {
            return null_mut();
        }
        *leaf.add(page & (LEAF_LEN - 1))
    } as usize;
    if id == 0 {
        return null_mut();
    }
    // SAFETY: ids are side-table indices + 1, below SIDE_ARENAS * POOLS_PER_ARENA.
    unsafe { (SIDE.load(Ordering::Relaxed) as *mut SideEntry).add(id - 1) }
}

/// The header fields of `pool`: natively the header itself; under memcheck the pool's side
/// entry (see `SideEntry`: the in-pool header stays NOACCESS and needs no client request).
///
/// `pool` must be a pool of a live arena.
#[inline(always)]
pub(crate) fn meta(pool: *mut PoolHeader) -> *mut PoolHeader {
    if track::memcheck() {
        let e = side_entry(pool);
        debug_assert!(!e.is_null(), "no side entry for pool {pool:p}");
        e.cast()
    } else {
        pool
    }
}

/// Under memcheck: maps the 64 pages of a new arena to their side entries (cleared). The
/// caller holds ARENA_LOCK; `base` is a fresh arena whose table index is `index`.
fn side_map_arena(base: *mut u8, index: u32) -> bool {
    let index = index as usize;
    if index >= SIDE_ARENAS {
        return false;
    }
    let side = SIDE.load(Ordering::Relaxed) as *mut SideEntry;
    let entry = core::mem::size_of::<SideEntry>();
    if !commit_table(
        side.cast(),
        &SIDE_COMMITTED,
        (index + 1) * POOLS_PER_ARENA * entry,
        SIDE_ARENAS * POOLS_PER_ARENA * entry,
    ) {
        return false;
    }
    for k in 0..POOLS_PER_ARENA {
        let slot = page_slot(base as usize + k * POOL_SIZE, true);
        if slot.is_null() {
            side_unmap_arena(base);
            return false;
        }
        let id = index * POOLS_PER_ARENA + k;
        // SAFETY: the slot is inside a leaf; `id` is inside the side table; the arena lock
        // and the serialisation lock exclude every other user of both.
        unsafe {
            *slot = (id + 1) as u32;
            core::ptr::write_bytes(side.add(id), 0, 1);
        }
    }
    true
}

/// Under memcheck: forgets the pages of an arena that is given back.
fn side_unmap_arena(base: *mut u8) {
    for k in 0..POOLS_PER_ARENA {
        let slot = page_slot(base as usize + k * POOL_SIZE, false);
        if !slot.is_null() {
            // SAFETY: inside a leaf; locks held by the caller.
            unsafe { *slot = 0 };
        }
    }
}

/// Under memcheck, for the walker: the side entry of `pool` (null if unmapped).
pub(crate) fn side_entry_of(pool: *mut PoolHeader) -> *mut SideEntry {
    if track::memcheck() && PAGE_MAP.load(Ordering::Relaxed) != 0 {
        side_entry(pool)
    } else {
        null_mut()
    }
}

// ---------------------------------------------------------------------------------------------
// Memcheck: allocation and free through the quarantine.

/// Freed blocks waiting before they are handed out again (memcheck only): a ring of
/// `QUARANTINE_SLOTS` entries holding at most `QUARANTINE_LIMIT` bytes of blocks, oldest first.
struct Quarantine {
    ring: UnsafeCell<*mut *mut u8>,
    head: UnsafeCell<usize>,
    len: UnsafeCell<usize>,
    bytes: UnsafeCell<usize>,
}
// SAFETY: used only under memcheck, where every access holds the serialisation lock
// (`track::serialize`), which fork() also takes first.
unsafe impl Sync for Quarantine {}

const QUARANTINE_SLOTS: usize = 1 << 16;

static QUARANTINE: Quarantine = Quarantine {
    ring: UnsafeCell::new(null_mut()),
    head: UnsafeCell::new(0),
    len: UnsafeCell::new(0),
    bytes: UnsafeCell::new(0),
};

/// Hands out a block of `size` bytes of `class` under memcheck: a mempool chunk of exactly
/// `size` bytes; the rest of the stride stays NOACCESS.
///
/// Inlined into the front end and written for memcheck alone: under memcheck every guest
/// instruction, memory access, call and stack frame is paid for many times over (the memcheck
/// benchmark measures it), so the common case — the class has a used pool — is one straight
/// run: the pool's side entry, its lowest available bit, the live bit, the request. The rare
/// cases (a new pool, a pool filling up) share pymalloc's list code with the native paths.
#[inline(always)]
pub(crate) fn memcheck_alloc(class: usize, size: usize) -> *mut u8 {
    let cls = &CLASSES[class];
    debug_assert!(track::serialized_by_me());
    // SAFETY: serialised (the lock stands for the class lock); used pools have side entries.
    unsafe {
        let mut pool = *cls.used.get();
        if pool.is_null() {
            pool = new_used_pool(cls, class).0;
            if pool.is_null() {
                return null_mut();
            }
        }
        let e = side_entry(pool);
        let h = &mut (*e).hdr;
        // The lowest available block: no link words inside free blocks, so freed memory stays
        // NOACCESS and no request is needed to walk a free list.
        let w = (h.avail[0] == 0) as usize;
        let bits = h.avail[w];
        let bit = bits.trailing_zeros() as usize;
        h.avail[w] = bits & (bits - 1);
        let i = w * 64 + bit;
        let b = PoolHeader::first_block(pool).add(i * h.stride as usize);
        h.nused += 1;
        // Serialised: plain read-modify-writes (a locked one is a CAS loop under Valgrind).
        let live = &h.live[w];
        live.store(live.load(Ordering::Relaxed) | 1 << bit, Ordering::Relaxed);
        (*e).req[i] = size as u16; // size <= SMALL_REQUEST_THRESHOLD
        *cls.nused.get() += 1;
        if h.avail[0] | h.avail[1] == 0 {
            unlink_used(cls, h);
        }
        track::mempool_alloc(b, size);
        b
    }
}

/// Frees a block under memcheck: the live bit is cleared, memcheck is told (the chunk becomes
/// NOACCESS, the free stack is recorded) and the block waits in the quarantine. Returns false
/// (and changes nothing of the heap) for a double or invalid free, which memcheck reports with
/// the program's stack.
///
/// # Safety
/// `b` lies in a pool of this process; the serialisation lock is held.
#[inline(always)]
pub(crate) unsafe fn memcheck_free(b: *mut u8, class: Option<usize>) -> bool {
    let pool = PoolHeader::of(b);
    // SAFETY: the pool is ours (address_in_range or a layout said so); serialised.
    unsafe {
        let e = side_entry(pool);
        let live_block = if e.is_null() {
            None
        } else {
            let h = &mut (*e).hdr;
            match block_at(pool, h, b) {
                Some(i) => {
                    let word = &h.live[i / 64];
                    let v = word.load(Ordering::Relaxed);
                    let bit = 1u64 << (i % 64);
                    word.store(v & !bit, Ordering::Relaxed);
                    (v & bit != 0).then(|| class.unwrap_or(h.szidx as usize))
                }
                None => None,
            }
        };
        track::mempool_free(b);
        let Some(class) = live_block else {
            // Not a live block: memcheck has just reported the invalid free; the block stays
            // off every list (a block listed twice would be handed out twice).
            return false;
        };
        quarantine_push(b, class);
        true
    }
}

/// Under memcheck, puts one block back into its pool: the memcheck twin of [`put_block`].
///
/// # Safety
/// Serialised; `b` is a block of `class` that is out of its pool and free.
#[inline(always)]
unsafe fn memcheck_put_block(class: usize, b: *mut u8) {
    let cls = &CLASSES[class];
    let pool = PoolHeader::of(b);
    // SAFETY: forwarded; the pool of an out block is carved and has a side entry.
    unsafe {
        let h = &mut (*side_entry(pool)).hdr;
        let i = PoolHeader::block_index(pool, h.stride as usize, b);
        let was_full = h.avail[0] | h.avail[1] == 0;
        h.avail[i / 64] |= 1 << (i % 64);
        h.nused -= 1;
        *cls.nused.get() -= 1;
        if was_full || h.nused == 0 {
            pool_changes_list(cls, class, pool, h, was_full);
        }
    }
}

/// Puts a freed block in the quarantine, evicting the oldest blocks beyond its limits (or frees
/// it at once when the quarantine is off or drained).
///
/// # Safety
/// Serialised; `b` is a block of `class` just freed by the program.
#[inline(always)]
unsafe fn quarantine_push(b: *mut u8, class: usize) {
    let q = &QUARANTINE;
    let limit = QUARANTINE_LIMIT.load(Ordering::Relaxed);
    // SAFETY: quarantine lock held.
    unsafe {
        let mut ring = *q.ring.get();
        if ring.is_null() && limit > 0 {
            ring = map_ring();
            *q.ring.get() = ring;
        }
        if ring.is_null() || limit == 0 {
            memcheck_put_block(class, b);
            return;
        }
        if *q.len.get() == QUARANTINE_SLOTS {
            evict_one(ring, q);
        }
        let tail = (*q.head.get() + *q.len.get()) % QUARANTINE_SLOTS;
        *ring.add(tail) = ring_entry(b, class);
        *q.len.get() += 1;
        *q.bytes.get() += class_size(class);
        while *q.bytes.get() > limit && *q.len.get() > 0 {
            evict_one(ring, q);
        }
    }
}

/// The quarantine ring: an anonymous mapping, not a heap block, so that it never shows up in
/// memcheck's leak summary as "still reachable". As a mapping it is a leak-check root, which is
/// harmless because it only ever points at freed chunks (evicted slots are cleared).
fn map_ring() -> *mut *mut u8 {
    reserve(QUARANTINE_SLOTS * core::mem::size_of::<*mut u8>()).cast()
}

static EXIT_DRAIN_REGISTERED: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// Runs after the program's `atexit` handlers (a `.fini_array` entry of this object), just
/// before memcheck's leak check.
extern "C" fn exit_drain() {
    if EXIT_DRAIN_REGISTERED.load(Ordering::Relaxed) {
        memcheck_exit_drain();
    }
}

#[used]
#[link_section = ".fini_array"]
static EXIT_DRAIN: extern "C" fn() = exit_drain;

/// `POOLGRIND_QUARANTINE`, cached at initialisation.
static QUARANTINE_LIMIT: AtomicUsize = AtomicUsize::new(0);

/// At exit under memcheck: empty the quarantine and stop using it, so that pools and arenas
/// holding only freed blocks are given back before memcheck's leak check (an arena with no live
/// chunk would otherwise be reported as a still-reachable heap block of 256 KiB).
pub(crate) fn memcheck_exit_drain() {
    if !track::memcheck() {
        return;
    }
    let _serial = track::serialize();
    QUARANTINE_LIMIT.store(0, Ordering::Relaxed); // from now on frees skip the quarantine
    let q = &QUARANTINE;
    // SAFETY: serialised.
    unsafe {
        let ring = *q.ring.get();
        while !ring.is_null() && *q.len.get() > 0 {
            evict_one(ring, q);
        }
    }
}

/// A quarantine slot: the block's address with its class in the top byte (user addresses use
/// 47 bits), so eviction needs no header read to learn the class.
fn ring_entry(b: *mut u8, class: usize) -> *mut u8 {
    ((b as usize) | (class << 56)) as *mut u8
}

fn ring_unpack(e: *mut u8) -> (*mut u8, usize) {
    ((e as usize & ((1 << 56) - 1)) as *mut u8, e as usize >> 56)
}

/// Blocks of each class in the quarantine, counted from the ring (for `stats`: the free path
/// keeps no per-class counters, every memory access of it being expensive under memcheck).
pub(crate) fn quarantined_per_class() -> [usize; NB_SMALL_SIZE_CLASSES] {
    let mut n = [0; NB_SMALL_SIZE_CLASSES];
    if !track::memcheck() {
        return n;
    }
    let _serial = track::serialize();
    let q = &QUARANTINE;
    // SAFETY: serialised; slots head .. head + len are live entries.
    unsafe {
        let ring = *q.ring.get();
        for k in 0..*q.len.get() {
            if !ring.is_null() {
                let (_, class) = ring_unpack(*ring.add((*q.head.get() + k) % QUARANTINE_SLOTS));
                n[class] += 1;
            }
        }
    }
    n
}

/// Moves the oldest quarantined block back to its pool.
///
/// # Safety
/// Quarantine lock held, ring non-empty.
#[inline(always)]
unsafe fn evict_one(ring: *mut *mut u8, q: &Quarantine) {
    // SAFETY: forwarded.
    unsafe {
        let h = *q.head.get();
        let (b, class) = ring_unpack(*ring.add(h));
        // Clear the slot (the ring is a mapping, so memcheck scans it as a root; an entry is a
        // tagged value, not a plain pointer, but a cleared slot leaves no doubt).
        *ring.add(h) = null_mut();
        *q.head.get() = (h + 1) % QUARANTINE_SLOTS;
        *q.len.get() -= 1;
        *q.bytes.get() -= class_size(class);
        memcheck_put_block(class, b);
    }
}

// ---------------------------------------------------------------------------------------------
// fork(): hold every allocator lock across it, so the child inherits consistent lists.

extern "C" fn fork_prepare() {
    track::fork_prepare();
    super::tcache::lock_registry();
    for c in &CLASSES {
        // SAFETY: unlocked in fork_parent / fork_child by this same thread.
        unsafe { c.lock.raw_lock() };
    }
    // SAFETY: as above.
    unsafe {
        ARENA_LOCK.raw_lock();
    }
}

extern "C" fn fork_parent() {
    // SAFETY: this thread took every lock in fork_prepare.
    unsafe {
        ARENA_LOCK.force_unlock();
        for c in &CLASSES {
            c.lock.force_unlock();
        }
    }
    super::tcache::unlock_registry();
    track::fork_parent();
}

extern "C" fn fork_child() {
    // SAFETY: the child has a single thread, which took every lock in fork_prepare; the
    // mutexes are re-initialised rather than unlocked, which is valid for any owner state.
    unsafe {
        ARENA_LOCK.reinit();
        for c in &CLASSES {
            c.lock.reinit();
        }
    }
    super::tcache::after_fork_child();
    track::fork_child();
}
