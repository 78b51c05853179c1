//! Where a pool's metadata lives: natively its header at the pool's start; under memcheck its
//! side entry (`types::SideEntry`), found through a two-level page map, so that the in-pool
//! header stays NOACCESS and no allocation or free needs a client request to reach it.

use core::ptr::null_mut;

use super::sys::{self, Table};
use super::track;
use super::types::*;

/// The side table (`SIDE_ARENAS * POOLS_PER_ARENA` entries); reserved under memcheck only.
static SIDE: Table = Table::new();
/// The page map's root (`PAGE_MAP_ROOT_LEN` leaf pointers); reserved under memcheck only.
static PAGE_MAP: Table = Table::new();

const PAGE_SHIFT: u32 = POOL_SIZE.trailing_zeros();
const LEAF_LEN: usize = 1 << PAGE_MAP_LEAF_BITS;
const WORD: usize = core::mem::size_of::<usize>();

/// Reserves the side table and the page map's root (at initialisation, under memcheck).
pub(crate) fn init() -> bool {
    SIDE.reserve(
        SIDE_ARENAS * POOLS_PER_ARENA * core::mem::size_of::<SideEntry>(),
        true,
    ) && PAGE_MAP.reserve(PAGE_MAP_ROOT_LEN * WORD, true)
}

/// The page-map slot of the page at `page_addr`; null when its leaf does not exist (and
/// `create` is false or no leaf can be mapped) or the address is beyond the map.
fn page_slot(page_addr: usize, create: bool) -> *mut u32 {
    let page = page_addr >> PAGE_SHIFT;
    let hi = page >> PAGE_MAP_LEAF_BITS;
    let root = PAGE_MAP.base::<*mut u32>();
    if hi >= PAGE_MAP_ROOT_LEN || root.is_null() {
        return null_mut();
    }
    // Beyond the readable prefix of the root: no leaf yet, unless one is to be made.
    if hi * WORD >= PAGE_MAP.readable() && (!create || !PAGE_MAP.commit((hi + 1) * WORD)) {
        return null_mut();
    }
    // SAFETY: `hi` is inside the root's readable prefix; leaves are written only under the
    // arena lock (and the memcheck serialisation lock, which every reader holds).
    unsafe {
        let mut leaf = *root.add(hi);
        if leaf.is_null() {
            if !create {
                return null_mut();
            }
            leaf = sys::map(LEAF_LEN * core::mem::size_of::<u32>(), true).cast();
            if leaf.is_null() {
                return null_mut();
            }
            *root.add(hi) = leaf;
        }
        leaf.add(page & (LEAF_LEN - 1))
    }
}

/// Under memcheck, the side entry of the pool at `pool`: null when the page is not a pool of a
/// live arena. Only called once [`init`] has succeeded (the memcheck paths and [`meta`] run
/// only then), so the root exists.
#[inline(always)]
pub(crate) fn side_entry(pool: *mut PoolHeader) -> *mut SideEntry {
    let page = pool as usize >> PAGE_SHIFT;
    let hi = page >> PAGE_MAP_LEAF_BITS;
    // Within the root's readable prefix (the rest is PROT_NONE, and has no leaf anyway).
    if hi * WORD >= PAGE_MAP.readable() {
        return null_mut();
    }
    let root = PAGE_MAP.base::<*const u32>();
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
    unsafe { SIDE.base::<SideEntry>().add(id - 1) }
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
/// caller holds the arena lock; `base` is a fresh arena whose table index is `index`.
pub(crate) fn map_arena(base: *mut u8, index: u32) -> bool {
    let index = index as usize;
    if index >= SIDE_ARENAS {
        return false;
    }
    let side = SIDE.base::<SideEntry>();
    if !SIDE.commit((index + 1) * POOLS_PER_ARENA * core::mem::size_of::<SideEntry>()) {
        return false;
    }
    for k in 0..POOLS_PER_ARENA {
        let slot = page_slot(base as usize + k * POOL_SIZE, true);
        if slot.is_null() {
            unmap_arena(base);
            return false;
        }
        let id = index * POOLS_PER_ARENA + k;
        // SAFETY: the slot is inside a leaf; `id` is inside the side table's readable prefix;
        // the arena lock and the serialisation lock exclude every other user of both.
        unsafe {
            *slot = (id + 1) as u32;
            core::ptr::write_bytes(side.add(id), 0, 1);
        }
    }
    true
}

/// Under memcheck: forgets the pages of an arena that is given back.
pub(crate) fn unmap_arena(base: *mut u8) {
    for k in 0..POOLS_PER_ARENA {
        let slot = page_slot(base as usize + k * POOL_SIZE, false);
        if !slot.is_null() {
            // SAFETY: inside a leaf; locks held by the caller.
            unsafe { *slot = 0 };
        }
    }
}

/// Under memcheck, for the walker: the side entry of `pool` (null if unmapped or natively).
pub(crate) fn side_entry_of(pool: *mut PoolHeader) -> *mut SideEntry {
    if track::memcheck() && !PAGE_MAP.base::<u8>().is_null() {
        side_entry(pool)
    } else {
        null_mut()
    }
}
