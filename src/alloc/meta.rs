//! Where a pool's metadata lives, and which pages are pools at all.
//!
//! - The **page map**, a two-level radix tree from a page number to an entry, knows every
//!   page of every live arena, on every path: it is entered when an arena is mapped (before
//!   its first pool is handed out) and cleared before the arena's memory goes. It answers "is
//!   this pointer ours" ([`page_known`]) without touching the memory the pointer points to, so
//!   a `free` of a system block reads only this allocator's own hot tables (issue 15: the
//!   classic `address_in_range` read of the foreign block's page cost a cache line that
//!   another thread was often writing). The entry also holds the size class of a pool in use,
//!   so that the native `free` reads no pool header either: pool headers all sit at offset 0
//!   of a page, so they compete for the same few L1 sets (perf on larson ≤ 512 B: 45 % of
//!   `free`'s samples were on the header's `szidx` load).
//! - Natively the arenas live in one reserved range (`arena::SPACE`), arena `i` at
//!   `i × ARENA_SIZE`, and a **flat map** beside the tree holds the same entry for each of its
//!   pages ([`Window`]). [`page_entry`] reads it with one subtraction, one compare and one
//!   load, and a pointer outside the range is not ours without a further read: the tree's walk
//!   for a `free` of a system block was 32 instructions and, on larson, a cache miss on a leaf
//!   the system allocator's heaps share (issue 15). The tree stays the map under Valgrind, and
//!   everywhere when the range could not be reserved; natively it is kept too, for the walker,
//!   which checks that both maps agree.
//! - A pool's header fields: natively the header itself, at the pool's start; under memcheck
//!   its side entry (`types::SideEntry`), found through the page map's id, so that the in-pool
//!   header stays NOACCESS and no allocation or free needs a client request to reach it.

use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use super::sys::{self, Table};
use super::track;
use super::types::*;

/// The side table (`SIDE_ARENAS * POOLS_PER_ARENA` entries); reserved under memcheck only.
static SIDE: Table = Table::new();
/// The page map's root (`PAGE_MAP_ROOT_LEN` leaf pointers); PROT_NONE beyond its used prefix
/// under memcheck (the leak check reads every readable mapping), readable natively.
static PAGE_MAP: Table = Table::new();

/// Natively, the arenas' range and its flat map, read by every [`page_entry`] (one cache line,
/// written only at initialisation and when an arena slot is first used).
///
/// Invariants: `base` and `slots` are the range's start and size in arenas when it exists
/// (natively, `arena::space()` not null), else 0; arena slot `i < slots` lies at
/// `base + i × ARENA_SIZE`, and slots from `slots` on are mapped apart; `len ≤ slots ×
/// ARENA_SIZE` covers every slot of the range that has had an arena, so every page below it has
/// a flat entry, readable, equal to the tree's (0 for a slot whose arena is gone); `exclusive`
/// iff the range exists and no arena was ever made beyond it (it turns false, for good, when
/// one is). Without the range the tree alone is the map.
#[repr(C, align(64))]
struct Window {
    /// The range's start (`arena::space()`, given to [`init`]), or [`NO_RANGE`].
    base: AtomicUsize,
    /// Bytes of the range that arena slots have used so far (only grows).
    len: AtomicUsize,
    /// `len` while `free` takes [`FreeMode::Branchy`], else 0: the one compare by which that
    /// `free` finds a pointer of the range and its mode at once ([`branchy_class`]; issue 15,
    /// 3 instructions fewer than a test of `branchy` before the range's). Written with `len`
    /// and the mode's flags, under the arena lock (so the walker finds it equal to `len` or
    /// 0 as `branchy` says). A reader may see it lag behind either: it is never above `len`,
    /// and the branchy `free` of a block of the range is right in any mode.
    branchy_len: AtomicUsize,
    /// The range's size in arenas (slots `0..slots` are in it), or 0.
    slots: AtomicUsize,
    /// The flat map: entry `i` for the page at `base + i × POOL_SIZE`.
    flat: AtomicPtr<AtomicU32>,
    /// Whether the range holds every arena: a pointer outside it is then not ours.
    exclusive: AtomicBool,
    /// Which `free` path `Fast` takes ([`free_mode`]: [`FreeMode::Branchy`] while `branchy`,
    /// else [`FreeMode::Unbranched`] while `unbranched`; a switch sets the new flag before it
    /// clears the old one. A reader ([`free_mode`] tests `unbranched` first) may find neither
    /// for a moment during a switch to [`FreeMode::Unbranched`]: its `free` then takes the slow
    /// path, which serves any block. Two flags, not one mode, so that each test is one compare. Here, beside the fields that `free` reads,
    /// so that the tests cost no other cache line).
    branchy: AtomicBool,
    unbranched: AtomicBool,
    /// Whether [`FreeMode::Unbranched`] may be chosen: plain glibc behind us
    /// (`sys::is_plain_glibc`), pools on, no debug mode, and the range holds every arena
    /// ([`allow_unbranched`]; false for good once it does not).
    unbranched_allowed: AtomicBool,
    /// The entry [`flat_entry_unbranched`] reads for a pointer outside the range: always 0.
    outside: AtomicU32,
    /// The chunk word it reads for a pointer inside the range: always [`INSIDE_CHUNK`] (here,
    /// so that its address costs no load of its own).
    inside_chunk: usize,
}

/// [`Window::base`] without a range (before [`init`], or none reserved): every pointer's offset
/// from it, null's included, lies above any length, so that a thread that reads it before
/// [`init`]'s write (a thread that never synchronised with initialisation, freeing null or a
/// block that is not ours) finds the pointer outside, whatever length it reads after.
const NO_RANGE: usize = 1 << 63;

static WINDOW: Window = Window {
    base: AtomicUsize::new(NO_RANGE),
    len: AtomicUsize::new(0),
    branchy_len: AtomicUsize::new(0),
    slots: AtomicUsize::new(0),
    flat: AtomicPtr::new(null_mut()),
    exclusive: AtomicBool::new(false),
    branchy: AtomicBool::new(false),
    unbranched: AtomicBool::new(false),
    unbranched_allowed: AtomicBool::new(false),
    outside: AtomicU32::new(0),
    inside_chunk: INSIDE_CHUNK,
};

/// The flat map's memory (`MAX_ARENAS × POOLS_PER_ARENA` entries, PROT_NONE beyond the part
/// arena slots have used).
static FLAT: Table = Table::new();

const PAGE_SHIFT: u32 = POOL_SIZE.trailing_zeros();
const LEAF_LEN: usize = 1 << PAGE_MAP_LEAF_BITS;
const WORD: usize = core::mem::size_of::<usize>();

/// Entry bit: the page is a pool of a live arena (so an entry is 0 iff the page is not ours).
const KNOWN: u32 = 1 << 31;
/// Entry bit 30: [`CLASS_TAG`], always set with `KNOWN`; bits 24..30: the size class of the
/// pool while it is in use ([`set_class`]), else [`NO_CLASS`]. So a known entry's top byte is
/// `0xC0 + class` (`0xFF` without a class), which read as signed is the class minus 64 (-1
/// for `NO_CLASS`), and 0 for a page that is not ours: the term
/// [`flat_entry_unbranched`] returns, which path `Fast`'s `free` adds to a glibc chunk's bin
/// without a branch on whose block it is.
const CLASS_SHIFT: u32 = 24;
const CLASS_MASK: u32 = 0x3f << CLASS_SHIFT;
const CLASS_TAG: u32 = 0x40 << CLASS_SHIFT;
/// The class field of a page whose pool was never given a class (never a valid class).
const NO_CLASS: u32 = 0x3f;
/// What the top byte of a known entry, read as signed, adds to its class.
const CLASS_BIAS: usize = 64;
/// Entry bits 0..24: the page's index, `arena index × 64 + page` (below `MAX_ARENAS × 64`), which
/// under memcheck is its side-table index.
const INDEX_MASK: u32 = (1 << CLASS_SHIFT) - 1;
const _: () = assert!(MAX_ARENAS * POOLS_PER_ARENA <= INDEX_MASK as usize + 1);
const _: () = assert!(NB_SMALL_SIZE_CLASSES < NO_CLASS as usize);
const _: () =
    assert!(((KNOWN | CLASS_TAG) >> CLASS_SHIFT) as u8 as i8 as isize == -(CLASS_BIAS as isize));
// Path `Fast`'s `free` takes a pool class below NB_LINEAR_BINS for a bin (`dispatch::free_fast`).
const _: () = assert!(NB_LINEAR_BINS <= NO_CLASS as usize);

/// Reserves the page map's root, under memcheck the side table, and natively, when `space`
/// (the arenas' range of `slots` arenas, `arena::space()`: `arena::init` runs first) is not
/// null, the flat map (at initialisation, with pools on). Without the range the tree alone
/// serves.
pub(crate) fn init(space: *mut u8, slots: usize) -> bool {
    let memcheck = track::memcheck();
    if !(PAGE_MAP.reserve(PAGE_MAP_ROOT_LEN * WORD, memcheck)
        && (!memcheck
            || SIDE.reserve(
                SIDE_ARENAS * POOLS_PER_ARENA * core::mem::size_of::<SideEntry>(),
                true,
            )))
    {
        return false;
    }
    if !space.is_null()
        && slots != 0
        && FLAT.reserve(slots * POOLS_PER_ARENA * core::mem::size_of::<u32>(), true)
    {
        WINDOW.flat.store(FLAT.base(), Ordering::Relaxed);
        WINDOW.base.store(space as usize, Ordering::Relaxed);
        WINDOW.slots.store(slots, Ordering::Relaxed);
        // Before any arena exists (initialisation): readers that see it see the rest.
        WINDOW.exclusive.store(true, Ordering::Release);
    }
    true
}

/// The page map's entry for `page` (a page number), if its leaf exists: null beyond the root's
/// readable prefix (or before the reservation: `readable()` is then 0) or when no leaf was made.
/// Lock-free: a root slot, once set, names a leaf that is never unmapped.
#[inline(always)]
fn existing_entry(page: usize) -> *const AtomicU32 {
    let hi = page >> PAGE_MAP_LEAF_BITS;
    if hi >= PAGE_MAP.readable() / WORD {
        return core::ptr::null();
    }
    // SAFETY: `hi` is inside the root's readable prefix; a non-null leaf has LEAF_LEN entries.
    unsafe {
        let leaf = (*PAGE_MAP.base::<AtomicPtr<AtomicU32>>().add(hi)).load(Ordering::Acquire);
        if leaf.is_null() {
            return core::ptr::null();
        }
        leaf.add(page & (LEAF_LEN - 1))
    }
}

/// The page map's entry of the page that holds `p`: 0 when the page is not a pool of a live
/// arena. Reads only the page map (never the memory at `p`); lock-free on every path.
/// Natively a pointer in the arenas' range reads its flat entry and any other is not ours;
/// without the range (under Valgrind), the tree ([`tree_entry`]).
#[inline(always)]
pub(crate) fn page_entry(p: *const u8) -> u32 {
    if let Some(i) = flat_index(p as usize) {
        // SAFETY: an entry of the flat map's used part (`flat_index`). A pointer to a live pool
        // block reaches this thread after its arena's entries were written (Release, read with
        // Acquire); any other pointer reads 0 whether or not it sees a concurrent write.
        return unsafe { (*WINDOW.flat.load(Ordering::Relaxed).add(i)).load(Ordering::Acquire) };
    }
    if WINDOW.exclusive.load(Ordering::Relaxed) {
        return 0;
    }
    tree_entry(p)
}

/// Whose block `p` is, for [`FreeMode::Branchy`]'s `free` ([`owner`]).
pub(crate) enum Owner {
    /// A page of ours: the class of its pool in use (below `NB_SMALL_SIZE_CLASSES`), or at
    /// least `NB_LINEAR_BINS` for a pool without a class or a page of the range no arena has now
    /// (not a live block: the slow path sees).
    Pool(usize),
    /// Not ours: a system block or a bootstrap block (or an invalid pointer).
    Foreign,
}

/// [`page_entry`] for [`FreeMode::Branchy`]'s `free` (and the C `realloc`): a pointer in the
/// arenas' range is a page of ours ([`Owner::Pool`], its class without a test of the entry:
/// [`class_term_at`], the entry's top byte read alone, plus [`CLASS_BIAS`]); any other is not,
/// unless the range does not hold every arena (then the tree answers, [`class_of_entry`]).
#[inline(always)]
pub(crate) fn owner(p: *const u8) -> Owner {
    if let Some(i) = flat_index(p as usize) {
        // SAFETY: as in `page_entry`.
        let t = unsafe { class_term_at(WINDOW.flat.load(Ordering::Relaxed).add(i)) };
        return Owner::Pool(t.wrapping_add(CLASS_BIAS));
    }
    if WINDOW.exclusive.load(Ordering::Relaxed) {
        return Owner::Foreign;
    }
    match tree_entry(p) {
        0 => Owner::Foreign,
        e => Owner::Pool(class_of_entry(e)),
    }
}

/// An entry's class with no test of the entry: its top byte as signed plus [`CLASS_BIAS`]. The
/// class of a pool in use; `CLASS_BIAS - 1` (no class) or `CLASS_BIAS` (entry 0), both at
/// least `NB_LINEAR_BINS`, for anything else.
#[inline(always)]
fn class_of_entry(e: u32) -> usize {
    class_term(e).wrapping_add(CLASS_BIAS)
}

/// An entry's top byte as signed, widened (wrapping): the class minus [`CLASS_BIAS`] for a
/// pool in use, -1 for a pool without a class, 0 for entry 0.
#[inline(always)]
fn class_term(e: u32) -> usize {
    (e as i32 >> CLASS_SHIFT) as isize as usize
}

/// [`class_term`] of the entry at `e`, read as its top byte alone: one sign-extending load,
/// where the whole entry took a load, a shift and a widening (the free path, issue 15).
///
/// A plain load, not an atomic one: LLVM widens an atomic byte in a second instruction.
///
/// # Safety
/// `e` is an entry of the flat map (or [`Window::outside`]). No thread writes it meanwhile: the page holds a live
/// block, which keeps its pool and class, so the read races with no write (an invalid `free`
/// is the program's undefined behaviour anyway).
#[inline(always)]
unsafe fn class_term_at(e: *const AtomicU32) -> usize {
    #[cfg(target_endian = "little")]
    // SAFETY: the entry's last byte, in bounds; see above for the race.
    return unsafe { e.cast::<i8>().add(3).read() } as isize as usize;
    #[cfg(not(target_endian = "little"))]
    // SAFETY: as the caller guarantees.
    return class_term(unsafe { (*e).load(Ordering::Relaxed) });
}

const _: () = assert!(CLASS_SHIFT == 24);

/// Path `Fast`'s pointer-only `free` while [`unbranched`] (the range holds every arena):
/// [`page_entry`] without a branch on where `p` lies. Returns the class term of the flat entry
/// of a pointer in the range, 0 for any other pointer (its top byte as signed, read alone:
/// [`class_term_at`]; the class minus [`CLASS_BIAS`] for a pool in use, -1 for a pool without
/// a class, 0 exactly when the entry is 0, [`KNOWN`] being the top bit); and where a system block's glibc
/// chunk size is: the word before `p` outside the range, inside it `WINDOW.inside_chunk`
/// ([`INSIDE_CHUNK`], whose [`bin_of_chunk`] is [`CLASS_BIAS`]: a pool block's neighbour is
/// never read, often another, cold cache line). So `term + bin_of_chunk(chunk)`, wrapping, is a pool block's
/// class, a glibc block's system bin, and at least `NB_LINEAR_BINS` for anything else.
///
/// Why without a branch: in a program that frees pool blocks and system blocks in random order
/// (larson's sizes, 8..1000 B), the branch "in the range or not" went the wrong way half the
/// time (issue 15).
#[inline(always)]
pub(crate) fn flat_entry_unbranched(p: *const u8, off: Offset) -> (usize, *const usize) {
    let len = WINDOW.len.load(Ordering::Acquire);
    let off = off.0;
    let flat = WINDOW.flat.load(Ordering::Relaxed);
    let (e, chunk_word) = select_below(
        off,
        len,
        (
            flat.wrapping_add(off >> PAGE_SHIFT) as usize,
            &WINDOW.inside_chunk as *const usize as usize,
        ),
        (
            &WINDOW.outside as *const AtomicU32 as usize,
            (p as usize).wrapping_sub(8),
        ),
    );
    let (e, chunk_word) = (e as *const AtomicU32, chunk_word as *const usize);
    // SAFETY: inside the range, an entry of the flat map's used part (`flat_index`) of a
    // page holding the block being freed, which no thread writes meanwhile; outside it,
    // `WINDOW.outside`, never written.
    (unsafe { class_term_at(e) }, chunk_word)
}

/// The chunk word [`flat_entry_unbranched`] gives a pointer in the arenas' range (in
/// [`Window`]): its bin is
/// [`CLASS_BIAS`], which the class term of a pool in use brings back to the pool's class, of a
/// pool without a class to `CLASS_BIAS - 1`, and of a page that is not ours leaves as it is,
/// both at least `NB_LINEAR_BINS`.
const INSIDE_CHUNK: usize =
    SYS_MIN_CHUNK + ((CLASS_BIAS - NB_SMALL_SIZE_CLASSES) << SYS_BIN_STEP_SHIFT);
const _: () = assert!(bin_of_chunk(INSIDE_CHUNK) == CLASS_BIAS);
const _: () = assert!(CLASS_BIAS > NB_LINEAR_BINS);

/// What the pointer-only `free` does ([`free_mode`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FreeMode {
    /// Path `Fast` is not (yet) published: every `free` takes the slow path.
    NotFast,
    /// Path `Fast`, a branch on whose block it is ([`page_entry`]); a glibc block goes back to
    /// glibc at once. A process starts here: a pool block's `free` costs least (issue 15: 22
    /// instructions, 17 fewer than [`FreeMode::Unbranched`]'s).
    Branchy,
    /// Path `Fast` while the range holds every arena, chosen for good once a thread frees many
    /// glibc blocks (`tcache::count_system_free`): [`flat_entry_unbranched`] finds a pool
    /// block's class or a glibc block's system bin without a branch on whose block it is (in
    /// larson's sizes on both sides of 512 B that branch went the wrong way half the time).
    Unbranched,
}

/// Which `free` path `Fast` takes. Relaxed, as `exclusive` in [`page_entry`]: it leaves
/// [`FreeMode::Unbranched`] before a block of an arena beyond the range is handed out, and
/// either of the other two modes is right for any block at any time.
#[inline(always)]
pub(crate) fn free_mode() -> FreeMode {
    // `unbranched` first: path `Fast`'s `free` asks for every pointer that `branchy_class`
    // did not take, which in `FreeMode::Unbranched` is every pointer. While a switch is under
    // way both flags may be set, and either mode is right.
    if WINDOW.unbranched.load(Ordering::Relaxed) {
        FreeMode::Unbranched
    } else if WINDOW.branchy.load(Ordering::Relaxed) {
        FreeMode::Branchy
    } else {
        FreeMode::NotFast
    }
}

/// Whether `free` fills the thread caches' system bins ([`FreeMode::Unbranched`]).
#[inline(always)]
pub(crate) fn unbranched() -> bool {
    free_mode() == FreeMode::Unbranched
}

/// Called with path `Fast` published (`init`): `free` takes [`FreeMode::Branchy`].
///
/// The caller holds the arena lock, as for every other write of the mode's flags and
/// [`Window::branchy_len`]: other threads may map arenas, even switch the mode, while
/// initialisation ends (path `Fast` is published before this).
pub(crate) fn publish_fast_free() {
    if free_mode() == FreeMode::NotFast {
        enter_branchy();
    }
}

/// Sets [`FreeMode::Branchy`]'s flag and [`Window::branchy_len`] to the range's length. The
/// caller holds the arena lock.
fn enter_branchy() {
    WINDOW.branchy.store(true, Ordering::Release);
    WINDOW
        .branchy_len
        .store(WINDOW.len.load(Ordering::Relaxed), Ordering::Release);
}

/// A pointer's offset from the arenas' range's start (wrapping; any value without a range),
/// which [`branchy_class`] and [`flat_entry_unbranched`] take, so that path `Fast`'s `free`
/// computes it once.
#[derive(Clone, Copy)]
pub(crate) struct Offset(usize);

/// See [`Offset`]. The start is written once, before any arena exists; a thread that reads
/// it before that write finds every pointer outside ([`NO_RANGE`]), and a thread that frees a
/// block of ours has synchronised with the block's allocation, so with that write.
#[inline(always)]
pub(crate) fn range_offset(p: *const u8) -> Offset {
    Offset((p as usize).wrapping_sub(WINDOW.base.load(Ordering::Relaxed)))
}

/// Path `Fast`'s `free` in [`FreeMode::Branchy`], for a pointer in the arenas' range (at
/// `off`): the class of its pool ([`owner`]'s answer, `CLASS_BIAS - 1` or more for a page that
/// is not a pool in use). `None` in any other mode, for a pointer outside the range (null
/// included: the range lies above 0, so null's offset wraps above any length), and for one
/// in a part of it that [`Window::branchy_len`] does not cover yet: then [`owner`] answers.
#[inline(always)]
pub(crate) fn branchy_class(off: Offset) -> Option<usize> {
    // As `flat_index`, with `branchy_len` for `len`: below `len`, so a used part of the map.
    let len = WINDOW.branchy_len.load(Ordering::Acquire);
    let off = off.0;
    if off >= len {
        return None;
    }
    // SAFETY: as in `owner`.
    let t = unsafe { class_term_at(WINDOW.flat.load(Ordering::Relaxed).add(off >> PAGE_SHIFT)) };
    Some(t.wrapping_add(CLASS_BIAS))
}

/// Switches `free` to [`FreeMode::Unbranched`] for good, if it may be
/// ([`allow_unbranched`]) and the range still holds every arena. The caller holds the arena
/// lock, which [`map_arena`] holds when the range stops holding them.
pub(crate) fn switch_unbranched() {
    // Allowed only while the range holds every arena (`allow_unbranched`; `map_arena` clears
    // it under this lock when it stops).
    if WINDOW.unbranched_allowed.load(Ordering::Relaxed) && free_mode() == FreeMode::Branchy {
        WINDOW.unbranched.store(true, Ordering::Release);
        WINDOW.branchy_len.store(0, Ordering::Relaxed);
        WINDOW.branchy.store(false, Ordering::Release);
    }
}

/// Whether [`switch_unbranched`] may choose [`FreeMode::Unbranched`] (see
/// [`allow_unbranched`]): then the word before a system block is its glibc chunk's size.
#[inline(always)]
pub(crate) fn unbranched_allowed() -> bool {
    WINDOW.unbranched_allowed.load(Ordering::Relaxed)
}

/// Called once at initialisation (`tcache::init`, after [`init`]), before any arena exists,
/// when the system bins may be used (plain glibc behind us, pools on, no debug mode):
/// [`switch_unbranched`] may then choose [`FreeMode::Unbranched`] while the range holds every
/// arena. Without the range (`POOLGRIND_ARENA_SPACE=0`, a failed reservation) never: then the
/// `free`s of glibc blocks are not even counted.
pub(crate) fn allow_unbranched() {
    WINDOW
        .unbranched_allowed
        .store(WINDOW.exclusive.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// The tree's entry of the page that holds `p` ([`page_entry`] without the arenas' range: the
/// map of every arena under Valgrind, where there is no range, so the memcheck paths read it
/// directly).
#[inline(always)]
pub(crate) fn tree_entry(p: *const u8) -> u32 {
    let e = existing_entry(p as usize >> PAGE_SHIFT);
    if e.is_null() {
        return 0;
    }
    // SAFETY: an entry of a leaf. Entries are written under the arena lock (Release) and read
    // here with Acquire: a pointer to a live pool block was handed out after its arena's
    // entries were written; any other pointer reads 0 whether or not it sees a concurrent write
    // (its page belongs to no arena).
    unsafe { (*e).load(Ordering::Acquire) }
}

/// Whether the page that holds `p` is a pool of one of our live arenas (see [`page_entry`]).
#[inline(always)]
pub(crate) fn page_known(p: *const u8) -> bool {
    page_entry(p) != 0
}

/// An entry's page index (`arena index × 64 + page`; meaningful when the entry is not 0).
#[inline(always)]
pub(crate) fn entry_index(e: u32) -> usize {
    (e & INDEX_MASK) as usize
}

/// An entry's size class: the class of the page's pool while it is in use; a value of at
/// least `NB_SMALL_SIZE_CLASSES` for a page that is not ours or whose pool never had a class.
/// (An empty pool keeps its last class, as its header's `szidx` does.)
#[inline(always)]
pub(crate) fn entry_class(e: u32) -> usize {
    if e == 0 {
        NO_CLASS as usize
    } else {
        ((e & CLASS_MASK) >> CLASS_SHIFT) as usize
    }
}

/// Records that the pool at `pool` now serves `class` (when it is initialised for it).
///
/// # Safety
/// `pool` is a pool of a live arena; the caller holds its class lock (or the serialisation
/// lock), so no other thread writes this entry.
pub(crate) unsafe fn set_class(pool: *mut PoolHeader, class: usize) {
    let e = existing_entry(pool as usize >> PAGE_SHIFT);
    debug_assert!(!e.is_null());
    for e in [e, flat_entry(pool as usize)] {
        if e.is_null() {
            continue;
        }
        // SAFETY: the pool's arena is live, so its tree entry exists (and, when it lies in the
        // arenas' range, its flat one: `flat_entry` is not null); no other thread writes them.
        unsafe {
            let old = (*e).load(Ordering::Relaxed);
            (*e).store(
                (old & !CLASS_MASK) | (class as u32) << CLASS_SHIFT,
                Ordering::Release,
            );
        }
    }
}

/// The page-map entry of the page at `page_addr`, its leaf made if missing; null if the
/// address is beyond the map or no leaf can be mapped. The caller holds the arena lock.
fn entry_for_update(page_addr: usize) -> *const AtomicU32 {
    let page = page_addr >> PAGE_SHIFT;
    let hi = page >> PAGE_MAP_LEAF_BITS;
    if hi >= PAGE_MAP_ROOT_LEN
        || PAGE_MAP.base::<u8>().is_null()
        || !PAGE_MAP.commit((hi + 1) * WORD)
    {
        return core::ptr::null();
    }
    // SAFETY: `hi` is inside the root's readable prefix (just committed); leaves are made
    // only here, under the arena lock, so the load and the store below do not race with
    // another maker.
    unsafe {
        let slot = &*PAGE_MAP.base::<AtomicPtr<AtomicU32>>().add(hi);
        let mut leaf = slot.load(Ordering::Acquire);
        if leaf.is_null() {
            leaf = sys::map(LEAF_LEN * core::mem::size_of::<u32>(), true).cast();
            if leaf.is_null() {
                return core::ptr::null();
            }
            slot.store(leaf, Ordering::Release);
        }
        leaf.add(page & (LEAF_LEN - 1))
    }
}

/// Under memcheck, the side entry of the pool at `pool`: null when the page is not a pool of a
/// live arena. Only called under memcheck once [`init`] has succeeded (the memcheck paths
/// and [`meta`] run only then), so the side table exists.
#[inline(always)]
pub(crate) fn side_entry(pool: *mut PoolHeader) -> *mut SideEntry {
    let e = tree_entry(pool.cast_const().cast());
    if e == 0 {
        return null_mut();
    }
    debug_assert!(!SIDE.base::<u8>().is_null());
    // SAFETY: under memcheck page indices are below SIDE_ARENAS * POOLS_PER_ARENA (see
    // `map_arena`), inside the side table's readable prefix.
    unsafe { SIDE.base::<SideEntry>().add(entry_index(e)) }
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

/// Enters the 64 pages of a new arena in the page map (known, no class, page index
/// `table index × 64 + page`) and, under memcheck, clears their side entries. The caller holds
/// the arena lock; `base` is a fresh arena whose table index is `index`. False (nothing
/// entered) when the map or the side table cannot take it: the arena is then not used.
pub(crate) fn map_arena(base: *mut u8, index: u32) -> bool {
    let index = index as usize;
    let memcheck = track::memcheck();
    if memcheck
        && (index >= SIDE_ARENAS
            || !SIDE.commit((index + 1) * POOLS_PER_ARENA * core::mem::size_of::<SideEntry>()))
    {
        return false;
    }
    for k in 0..POOLS_PER_ARENA {
        let entry = entry_for_update(base as usize + k * POOL_SIZE);
        if entry.is_null() {
            unmap_arena(base);
            return false;
        }
        let id = index * POOLS_PER_ARENA + k;
        // SAFETY: the entry is inside a leaf; under memcheck `id` is inside the side table's
        // readable prefix; the arena lock (and under memcheck the serialisation lock) excludes
        // every other writer of both.
        unsafe {
            if memcheck {
                core::ptr::write_bytes(SIDE.base::<SideEntry>().add(id), 0, 1);
            }
            (*entry).store(
                KNOWN | CLASS_TAG | NO_CLASS << CLASS_SHIFT | id as u32,
                Ordering::Release,
            );
        }
    }
    // Decided by the slot, as `arena::memory_alloc` decides where the arena goes (an address
    // compare could take an arena mapped apart, just above the range, for the next slot's).
    if index < WINDOW.slots.load(Ordering::Relaxed) {
        debug_assert_eq!(
            base as usize,
            WINDOW.base.load(Ordering::Relaxed) + index * ARENA_SIZE
        );
        // Whether or not other arenas lie beyond the range: its pages are read in the flat
        // map whatever `exclusive` says.
        if !map_flat(base, index) {
            unmap_arena(base);
            return false;
        }
    } else if WINDOW.exclusive.load(Ordering::Relaxed) {
        // The first arena beyond the range: from now on a pointer outside the range may be
        // ours, and the tree answers for it. Before the arena's first block is handed out, so
        // a reader of that block sees it.
        WINDOW.unbranched_allowed.store(false, Ordering::Relaxed);
        if free_mode() == FreeMode::Unbranched {
            enter_branchy();
            WINDOW.unbranched.store(false, Ordering::Release);
        }
        WINDOW.exclusive.store(false, Ordering::Release);
    }
    true
}

/// [`map_arena`]'s flat half: the arena of slot `index` lies at its place in the range
/// (`arena::memory_alloc`); its entries (the tree's, just written) are copied and the used
/// part of the range grows over it. The caller holds the arena lock.
fn map_flat(base: *mut u8, index: usize) -> bool {
    let first = index * POOLS_PER_ARENA;
    if !FLAT.commit((first + POOLS_PER_ARENA) * core::mem::size_of::<u32>()) {
        return false;
    }
    let flat = WINDOW.flat.load(Ordering::Relaxed);
    for k in 0..POOLS_PER_ARENA {
        let t = existing_entry((base as usize + k * POOL_SIZE) >> PAGE_SHIFT);
        // SAFETY: the tree's entry exists (just written); the flat entry is inside the part
        // just committed; the arena lock excludes every other writer.
        unsafe {
            let e = (*t).load(Ordering::Relaxed);
            (*flat.add(first + k)).store(e, Ordering::Release);
        }
    }
    let end = (index + 1) * ARENA_SIZE;
    if WINDOW.len.load(Ordering::Relaxed) < end {
        // Last, with Release: a reader that sees the longer range sees its entries (and the
        // branchy `free`'s length, after it, likewise).
        WINDOW.len.store(end, Ordering::Release);
        if WINDOW.branchy.load(Ordering::Relaxed) {
            WINDOW.branchy_len.store(end, Ordering::Release);
        }
    }
    true
}

/// The flat map's index of the page that holds `addr`, if it lies in the used part of the
/// arenas' range (`None` otherwise, and always under Valgrind): below `len` every page has a
/// readable flat entry (`map_flat` committed it before growing `len`, with Release).
/// Lock-free: [`page_entry`]'s first step.
#[inline(always)]
fn flat_index(addr: usize) -> Option<usize> {
    // `len` first, with Acquire: a reader that sees a range in use sees its base.
    let len = WINDOW.len.load(Ordering::Acquire);
    let off = addr.wrapping_sub(WINDOW.base.load(Ordering::Relaxed));
    (off < len).then_some(off >> PAGE_SHIFT)
}

/// The flat entry of the page at `page_addr` (see [`flat_index`]), or null.
fn flat_entry(page_addr: usize) -> *const AtomicU32 {
    match flat_index(page_addr) {
        // SAFETY: an index of the flat map's used part.
        Some(i) => unsafe { WINDOW.flat.load(Ordering::Relaxed).add(i) },
        None => core::ptr::null(),
    }
}

/// Forgets the pages of an arena that is given back (before its memory goes).
pub(crate) fn unmap_arena(base: *mut u8) {
    for k in 0..POOLS_PER_ARENA {
        let page = base as usize + k * POOL_SIZE;
        for e in [existing_entry(page >> PAGE_SHIFT), flat_entry(page)] {
            if !e.is_null() {
                // SAFETY: an entry of a leaf or of the flat map's used part; the caller holds
                // the arena lock.
                unsafe { (*e).store(0, Ordering::Release) };
            }
        }
    }
}

/// For the walker: the arenas' range, when there is one.
pub(crate) struct Range {
    /// Its start: arena slot `i < slots` lies at `base + i × ARENA_SIZE`.
    pub base: usize,
    /// Its size in arenas.
    pub slots: usize,
    /// Bytes of it that slots have used (the flat map's readable part).
    pub len: usize,
    /// Whether every arena lies in it.
    pub exclusive: bool,
    /// [`Window::branchy_len`], and whether `free` is in [`FreeMode::Branchy`].
    pub branchy_len: usize,
    pub branchy: bool,
}

/// The arenas' range and its state (for the walker), `None` without one.
pub(crate) fn range() -> Option<Range> {
    let slots = WINDOW.slots.load(Ordering::Acquire);
    (slots != 0).then(|| Range {
        base: WINDOW.base.load(Ordering::Relaxed),
        slots,
        len: WINDOW.len.load(Ordering::Acquire),
        exclusive: WINDOW.exclusive.load(Ordering::Relaxed),
        branchy_len: WINDOW.branchy_len.load(Ordering::Relaxed),
        branchy: WINDOW.branchy.load(Ordering::Relaxed),
    })
}

/// Under memcheck, for the walker: the side entry of `pool` (null if unmapped or natively).
pub(crate) fn side_entry_of(pool: *mut PoolHeader) -> *mut SideEntry {
    if track::memcheck() && !SIDE.base::<u8>().is_null() {
        side_entry(pool)
    } else {
        null_mut()
    }
}
