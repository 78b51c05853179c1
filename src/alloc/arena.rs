//! The arena layer (pymalloc's): the arena table, the lists of arenas with free pools, taking
//! and giving back pools, [`owns`] (is a pointer ours: the page map) and [`address_in_range`],
//! pymalloc's classic test. Guarded by [`ARENA_LOCK`], except `address` reads and [`NARENAS`].

use core::cell::UnsafeCell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::config;
use super::meta::{self, meta};
use super::sys::{self, Table, COUNTERS};
use super::track;
use super::types::*;

pub(crate) static ARENA_LOCK: RawMutex = RawMutex::new();

/// The arena table: a reservation of MAX_ARENAS entries (touched as they are used).
static TABLE: Table = Table::new();
/// Natively, the arenas' address space: `MAX_ARENAS × ARENA_SIZE` bytes (64 GiB, or
/// `POOLGRIND_ARENA_SPACE`; halved down to [`MIN_SPACE`] where the kernel refuses: under
/// Valgrind with `POOLGRIND_VALGRIND=off`, 32 GiB) reserved PROT_NONE at initialisation, arena
/// `i` at `i × ARENA_SIZE` from its base, opened when the arena is made and closed (pages given
/// back, still reserved) when it goes. So "is this pointer ours" is a subtraction and a
/// compare, and no other mapping (the system allocator's heaps) lies between arenas (issue 15:
/// on larson, the page map's walk for every `free` of a system block cost 32 instructions and a
/// cache miss on a leaf shared with the system allocator's heaps; see `meta::page_entry`).
/// Arenas beyond a smaller space are mapped one by one, and the page map then reads its tree
/// for pointers outside the space (`meta::map_arena`). None under Valgrind (memcheck's arenas
/// are heap blocks, `memory_alloc`; the other tools keep the mappings they had) or under an
/// address-space limit; without it every arena is mapped apart, wherever the kernel puts it.
static SPACE: Table = Table::new();

/// The smallest arenas' space tried when a larger one is refused (4 096 arenas); a smaller
/// `POOLGRIND_ARENA_SPACE` is tried as it is.
const MIN_SPACE: usize = 1 << 30;

/// The base of the arenas' address space, or null when there is none (under Valgrind, or the
/// reservation failed).
#[inline(always)]
pub(crate) fn space() -> *mut u8 {
    SPACE.base()
}

/// The arenas' space's size in arenas (0 without one): slots below it lie in it.
pub(crate) fn space_slots() -> usize {
    SPACE.reserved() / ARENA_SIZE
}

/// Table slots initialised so far (slots `< NARENAS` may be read by `address_in_range`).
pub(crate) static NARENAS: AtomicUsize = AtomicUsize::new(0);

/// Empty arenas kept mapped natively before more are given back (4 MiB). pymalloc keeps one;
/// a program that builds and drops large structures repeatedly (binary trees) otherwise unmaps
/// arenas and faults the same pages in again for the next round (measured: 4.7k page faults vs
/// glibc's 1.2k on the trees benchmark). Under memcheck none is kept (see `give_pool`).
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

/// Reserves the arena table (address space: only the pages of slots in use cost memory).
/// False when it cannot be had: pools then stay off.
pub(crate) fn init() -> bool {
    if !TABLE.reserve(
        MAX_ARENAS * core::mem::size_of::<ArenaObject>(),
        track::memcheck(),
    ) {
        return false;
    }
    if !track::valgrind() && !address_space_limited() {
        // Failure leaves the space null: arenas are then mapped one by one.
        let mut bytes = config::arena_space() / ARENA_SIZE * ARENA_SIZE;
        while bytes != 0 && !SPACE.reserve(bytes, true) {
            bytes = if bytes > MIN_SPACE {
                (bytes / 2).max(MIN_SPACE) / ARENA_SIZE * ARENA_SIZE
            } else {
                0
            };
        }
    }
    true
}

/// The arena table's base (null if it could not be reserved: pools then stay empty and every
/// request is served by the system allocator).
#[inline(always)]
pub(crate) fn table() -> *mut ArenaObject {
    TABLE.base()
}

/// Whether the process has an address-space limit (`RLIMIT_AS`, `ulimit -v`): the arenas'
/// space is then not reserved, so that it takes nothing from a budget the program may need.
fn address_space_limited() -> bool {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limit into `r`.
    unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut r) == 0 && r.rlim_cur != libc::RLIM_INFINITY }
}

/// Maps a new arena and returns its table entry, or null.
///
/// # Safety
/// ARENA_LOCK must be held.
unsafe fn new_arena(l: &mut ArenaLists) -> *mut ArenaObject {
    let table = table();
    if table.is_null() {
        return null_mut();
    }
    if l.unused.is_null() {
        let n = NARENAS.load(Ordering::Relaxed);
        let size = core::mem::size_of::<ArenaObject>();
        if n >= MAX_ARENAS || !TABLE.commit((n + 1) * size) {
            return null_mut();
        }
        // SAFETY: slot n < MAX_ARENAS is inside the reservation; mmap'd pages read as zero,
        // which is a valid unused ArenaObject (address 0, null links).
        let slot = unsafe { table.add(n) };
        l.unused = slot;
        NARENAS.store(n + 1, Ordering::Release);
    }
    let ao = l.unused;
    let base = memory_alloc(index(ao));
    if base.is_null() {
        return null_mut();
    }
    if !meta::map_arena(base, index(ao)) {
        memory_free(base);
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
    sys::bump(&COUNTERS.arenas_allocated);
    COUNTERS
        .arenas_highwater
        .fetch_max(l.live, Ordering::Relaxed);
    ao
}

/// Memory for the arena of table slot `index`: natively its place in the arenas' [`SPACE`]
/// (or, without one, a mapping of its own: memmap2); under memcheck a heap block from the
/// system allocator, because mmap'd memory is a leak-check root (live blocks in it would make
/// lost cycles look reachable) while a malloc block that contains mempool chunks is neither a
/// root nor a leak candidate. Never inlined: `supp/poolgrind.supp` names it.
#[inline(never)]
fn memory_alloc(index: u32) -> *mut u8 {
    if track::memcheck() {
        let p = sys::memalign(POOL_SIZE, ARENA_SIZE);
        if !p.is_null() {
            track::arena_created(p, ARENA_SIZE);
        }
        return p;
    }
    let space = space();
    if space.is_null() || index as usize >= space_slots() {
        return sys::map(ARENA_SIZE, true);
    }
    // SAFETY: the arena's place lies inside the space (checked just above); the arena lock is
    // held and the slot has no arena, so nobody else uses that place.
    unsafe {
        let p = space.add(index as usize * ARENA_SIZE);
        if sys::open(p, ARENA_SIZE) {
            p
        } else {
            null_mut()
        }
    }
}

/// Gives back the memory of an arena made by [`memory_alloc`].
fn memory_free(p: *mut u8) {
    if track::memcheck() {
        // SAFETY: under memcheck every arena came from sys::memalign.
        unsafe { sys::free(p) };
    } else if (p as usize).wrapping_sub(space() as usize) >= SPACE.reserved() {
        // Beyond the space (or none): mapped apart.
        sys::unmap(p, ARENA_SIZE);
    } else {
        // SAFETY: the arena's place in the space, no longer used.
        unsafe { sys::close(p, ARENA_SIZE) };
    }
}

/// Index of an arena object in the table.
fn index(ao: *mut ArenaObject) -> u32 {
    ((ao as usize - table() as usize) / core::mem::size_of::<ArenaObject>()) as u32
}

/// Takes an empty pool from the most used arena with free pools (pymalloc's policy).
///
/// # Safety
/// ARENA_LOCK must be held.
pub(crate) unsafe fn take_pool(l: &mut ArenaLists) -> *mut PoolHeader {
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
            let idx = index(ao);
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
pub(crate) unsafe fn give_pool(l: &mut ArenaLists, pool: *mut PoolHeader) {
    // SAFETY: the pool belongs to a live arena (its header names it); lock held.
    unsafe {
        let m = meta(pool);
        let ao = table().add((*m).arenaindex as usize);
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
            release(l, ao, nf);
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
        unlink_usable(l, ao);
        (*ao).prevarena = lastnf;
        (*ao).nextarena = (*lastnf).nextarena;
        if !(*ao).nextarena.is_null() {
            (*(*ao).nextarena).prevarena = ao;
        }
        (*lastnf).nextarena = ao;
    }
}

/// Takes `ao` off the usable list (its own links are left as they were).
///
/// # Safety
/// The arena lock is held; `ao` is on the usable list.
unsafe fn unlink_usable(l: &mut ArenaLists, ao: *mut ArenaObject) {
    // SAFETY: list manipulation under the arena lock; neighbours are live arenas.
    unsafe {
        if (*ao).prevarena.is_null() {
            l.usable = (*ao).nextarena;
        } else {
            (*(*ao).prevarena).nextarena = (*ao).nextarena;
        }
        if !(*ao).nextarena.is_null() {
            (*(*ao).nextarena).prevarena = (*ao).prevarena;
        }
    }
}

/// Unlinks an empty arena with `nf` free pools from the usable list and gives its memory back.
///
/// # Safety
/// The arena lock is held; `ao` is a live arena on the usable list whose pools are all empty.
unsafe fn release(l: &mut ArenaLists, ao: *mut ArenaObject, nf: usize) {
    // SAFETY: forwarded; list manipulation under the arena lock.
    unsafe {
        if l.nfp2lasta[nf] == ao {
            l.nfp2lasta[nf] = null_mut();
        }
        unlink_usable(l, ao);
        let base = (*ao).address.load(Ordering::Relaxed) as *mut u8;
        // Zero the address before the memory goes: address_in_range must never match a
        // range that another allocator may hand out next.
        (*ao).address.store(0, Ordering::Release);
        meta::unmap_arena(base);
        (*ao).nextarena = l.unused;
        (*ao).prevarena = null_mut();
        (*ao).freepools = null_mut();
        l.unused = ao;
        l.live -= 1;
        memory_free(base);
        sys::bump(&COUNTERS.arenas_freed);
    }
}

/// Runs `f` with the arena lists locked.
pub(crate) fn with_arenas<R>(f: impl FnOnce(&mut ArenaLists) -> R) -> R {
    let _g = ARENA_LOCK.lock();
    // SAFETY: the arena lock is held for the lifetime of the reference.
    f(unsafe { &mut *ARENAS.0.get() })
}

/// Arenas alive, usable-list order (for the walker): (entry, nfreepools) pairs via callback.
pub(crate) fn lists_snapshot(mut f: impl FnMut(*mut ArenaObject, bool)) -> (usize, bool) {
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

/// Whether `p` lies in a pool of one of our live arenas: the test every pointer-only entry
/// point (free, realloc, `malloc_usable_size`) makes.
///
/// The page map answers, from this allocator's own tables: it never touches the memory at
/// `p`, which for a system block is another allocator's, often a cache line another thread is
/// writing (issue 15). For a pointer the map does not know, under memcheck, the classic read
/// ([`address_in_range`]) is still made, where it matters: on memory that is not ours, which
/// is exactly the read memcheck must be told about (`track::read_foreign_u32`), and it checks
/// the map: if the two disagree the allocator's invariants are broken, and it says so and
/// aborts. Natively the classic read is not made (a pointer the map does not know is not
/// ours); CPython made the same move in 3.10 (obmalloc's radix tree, `arena_map_is_used`).
#[inline(always)]
pub(crate) fn owns(p: *const u8) -> bool {
    if meta::page_known(p) {
        return true;
    }
    check_foreign(p);
    false
}

/// The second half of [`owns`], for a pointer the page map does not know: under memcheck the
/// classic read, which must agree.
#[inline(always)]
pub(crate) fn check_foreign(p: *const u8) {
    if track::memcheck() && config::pools_on() && address_in_range(p) {
        map_disagrees(p);
    }
}

/// The page map and the classic read disagree about `p`: a broken invariant (see [`owns`]).
#[cold]
#[inline(never)]
fn map_disagrees(p: *const u8) -> ! {
    let mut msg = sys::FmtBuf::<160>::new();
    let _ = core::fmt::Write::write_fmt(
        &mut msg,
        format_args!(
            "poolgrind: internal error: {p:p} lies in a live arena (address_in_range) that the page map does not know\n"
        ),
    );
    msg.write_stderr();
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

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
    let base = unsafe { (*table().add(idx)).address.load(Ordering::Acquire) };
    base != 0 && (p as usize).wrapping_sub(base) < ARENA_SIZE
}
