//! The memcheck quarantine: freed blocks wait before they go back to their pools, so that a use
//! after free finds the block NOACCESS and memcheck describes it as the freed block it was. It
//! keeps what memcheck's own malloc keeps (`memcheck/mc_malloc_wrappers.c`,
//! `add_to_freed_queue` and `release_oldest_block`): `--freelist-vol` requested bytes
//! (`POOLGRIND_QUARANTINE`, 20,000,000 by default), blocks of at least `--freelist-big-blocks`
//! bytes (`POOLGRIND_QUARANTINE_BIG`, 1,000,000) in a list of their own that is emptied first.

use core::cell::UnsafeCell;

use super::super::pool::{self, CLASSES};
use super::super::sys::Table;
use super::super::types::*;
use super::super::{config, serial, track};

/// Freed blocks waiting before they are handed out again (memcheck only): two FIFO rings, one
/// for blocks of at least `config::quarantine_big()` requested bytes (`BIG`) and one for the
/// others (`SMALL`), holding together at most `config::quarantine_limit()` requested bytes;
/// beyond that the big ring is emptied first, oldest first, then the small one. A block of at
/// least the whole limit is let go at once (memcheck puts it at the head of its list, first
/// out).
///
/// Invariants: slots `head .. head + len` (mod `slots`) of each ring hold its quarantined
/// blocks, each out of its pool and not live (its live bit clear), with its requested size,
/// class, side entry and index in its pool ([`Slot`]); every other slot's block word is null
/// (its home word may still name a side entry: never a heap block); `bytes` is the sum of the
/// requested sizes in both rings and is at most the limit after every free, but between a
/// real-CPU free that answered `host::FREED_EVICT_REST` and its guest `evict_rest`. Every
/// quarantined block is free in memcheck's books (`memcheck::free_ptr` tells memcheck first).
struct Quarantine {
    rings: [Ring; 2],
    bytes: UnsafeCell<usize>,
}
// SAFETY: used only under memcheck, where every access holds the serialisation lock
// (`serial::serialize`), which fork() also takes first, or runs on the real CPU while no other
// thread runs and none holds the lock (`memcheck::host`).
unsafe impl Sync for Quarantine {}

/// One ring: reserved address space, PROT_NONE until used (memcheck's leak check reads every
/// readable mapping word by word) and made readable as far as its slots are used.
struct Ring {
    table: Table,
    /// Slots reserved: 0 until the ring is first used, then a power of two.
    slots: UnsafeCell<usize>,
    head: UnsafeCell<usize>,
    len: UnsafeCell<usize>,
}

impl Ring {
    const fn new() -> Ring {
        Ring {
            table: Table::new(),
            slots: UnsafeCell::new(0),
            head: UnsafeCell::new(0),
            len: UnsafeCell::new(0),
        }
    }
}

const BIG: usize = 0;
const SMALL: usize = 1;

/// Most slots a ring reserves (16 bytes each, 64 MiB of address space; readable only as used).
/// A ring is sized for the limit at 16 bytes a block (the smallest class), rounded up to a power
/// of two; blocks asked for with fewer bytes fill it first, and then the oldest leaves as a new
/// one comes in.
const MAX_SLOTS: usize = 1 << 22;

static QUARANTINE: Quarantine = Quarantine {
    rings: [Ring::new(), Ring::new()],
    bytes: UnsafeCell::new(0),
};

/// One quarantined block: the block with its requested size and class packed in, and where it
/// goes back to (its pool's side entry and its index there), so that letting it go reads no
/// page map and divides by no stride.
#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    /// `b | size << 47 | class << 57` (user addresses use 47 bits, a size at most 512 takes 10
    /// bits, a class 5).
    block: usize,
    /// The side entry's address (47 bits) with the block's index (at most 255) at bit 48.
    home: usize,
}

/// Whether a block of `size` requested bytes can be stored with nothing more than a slot
/// written: the quarantine on and larger than the block, its ring open, not full, and its next
/// slot readable. Changes nothing; real-CPU safe (see `host`).
///
/// # Safety
/// Serialised, or on the real CPU with the lock free.
#[inline(always)]
pub(super) unsafe fn ready_for(size: usize) -> bool {
    let q = &QUARANTINE;
    if size >= config::quarantine_limit() {
        return false;
    }
    let r = ring_for(q, size);
    // SAFETY: as said.
    unsafe {
        let slots = *r.slots.get();
        let len = *r.len.get();
        let tail = (*r.head.get() + len) & slots.wrapping_sub(1);
        len < slots && (tail + 1) * size_of::<Slot>() <= r.table.readable()
    }
}

/// Stores block `b` in its ring, which [`ready_for`] said can take it. Real-CPU safe.
///
/// # Safety
/// As [`ready_for`], which returned true for `size` with nothing changed since; `b` is a block
/// of `class` just freed by the program, out of its pool and not live, block `i` of the pool
/// whose side entry is `e`.
#[inline(always)]
pub(super) unsafe fn enqueue(b: *mut u8, class: usize, size: usize, e: *mut SideEntry, i: usize) {
    let q = &QUARANTINE;
    let r = ring_for(q, size);
    // SAFETY: as said.
    unsafe {
        let len = *r.len.get();
        let tail = (*r.head.get() + len) & (*r.slots.get() - 1);
        *r.table.base::<Slot>().add(tail) = pack(b, class, size, e, i);
        *r.len.get() = len + 1;
        *q.bytes.get() += size;
    }
}

/// On the real CPU, after [`enqueue`] (or at exit, [`drain_at_exit`]): lets the oldest blocks go
/// back to their pools while the quarantine holds more than its limit. Stops at a block whose
/// pool it would empty (the pool may go back to its arena, which makes requests and system
/// calls), leaving the rest to the guest ([`evict_rest`]). Every quarantined block has been
/// announced free to memcheck (`memcheck::free_ptr` tells memcheck first). Returns
/// `host::FREED` or `host::FREED_EVICT_REST`.
///
/// # Safety
/// On the real CPU with the lock free, or held by the calling thread (see `host`).
#[inline(always)]
pub(super) unsafe fn evict_on_host() -> usize {
    let q = &QUARANTINE;
    // SAFETY: as said; a slot between head and head + len is a quarantined block.
    unsafe {
        while *q.bytes.get() > config::quarantine_limit() {
            let r = oldest_ring(q);
            let head = *r.head.get();
            // The side entry of a block a few places on, which the next turns will read (the
            // exit drain lets every block go: 41 % of its time was that miss, issue 15).
            if *r.len.get() > AHEAD {
                prefetch_home(r, AHEAD);
            }
            let (b, _, class, e, i) = unpack(*r.table.base::<Slot>().add(head));
            if !put_back_on_host(b, class, e, i) {
                return super::host::FREED_EVICT_REST;
            }
            take_from(q, r);
        }
    }
    super::host::FREED
}

/// How far ahead [`evict_on_host`] asks for the side entry of the block it will let go.
const AHEAD: usize = 8;

/// Asks for the side-entry headers of the `n` oldest blocks of the ring the oldest leave from
/// (`host::prefetch_books`: the frees about to be kept will let them go once the quarantine is
/// full). Reads only.
///
/// # Safety
/// As [`evict_on_host`].
#[inline(always)]
pub(super) unsafe fn prefetch_oldest(n: usize) {
    let q = &QUARANTINE;
    // SAFETY: as said; slots head .. head + len are quarantined blocks of a readable ring.
    unsafe {
        let r = oldest_ring(q);
        for k in 0..n.min(*r.len.get()) {
            prefetch_home(r, k);
        }
    }
}

/// Asks for the side-entry header of the block `k` places from ring `r`'s oldest. Reads only.
///
/// # Safety
/// As [`evict_on_host`]; `k` is below the ring's length.
#[inline(always)]
unsafe fn prefetch_home(r: &Ring, k: usize) {
    // SAFETY: as said: the slot is a quarantined block's, in the readable part of the ring.
    unsafe {
        let i = (*r.head.get() + k) & (*r.slots.get() - 1);
        super::host::prefetch(unpack(*r.table.base::<Slot>().add(i)).3.cast());
    }
}

/// Puts free block `b` back in its pool unless that would empty the pool (false, nothing
/// changed), which is left to `memcheck::put_block_at` in the guest (it calls this first).
///
/// # Safety
/// Serialised, or as [`evict_on_host`]; `b` is a block of `class` that is out of its pool, not
/// live and announced free, block `i` of the pool whose side entry is `e`.
#[inline(always)]
pub(super) unsafe fn put_back_on_host(
    b: *mut u8,
    class: usize,
    e: *mut SideEntry,
    i: usize,
) -> bool {
    // SAFETY: as said; `i` is below 128.
    unsafe {
        let h = &mut (*e).hdr;
        if h.nused <= 1 {
            return false;
        }
        let was_full = h.avail[0] | h.avail[1] == 0;
        *h.avail.get_unchecked_mut(i / 64) |= 1 << (i % 64);
        h.nused -= 1;
        let cls = CLASSES.get_unchecked(class);
        *cls.nused.get() -= 1;
        if was_full {
            pool::link_used(cls, PoolHeader::of(b), h);
        }
        true
    }
}

/// The guest's half of [`evict_on_host`]: takes the lock and lets the oldest blocks go while
/// the quarantine holds more than its limit.
#[cold]
#[inline(never)]
pub(crate) fn evict_rest() {
    let _serial = serial::serialize_memcheck();
    let q = &QUARANTINE;
    // SAFETY: serialised; the quarantine is not empty while it holds bytes.
    unsafe {
        while *q.bytes.get() > config::quarantine_limit() {
            let (b, class, e, i) = take_oldest(q);
            super::put_block_at(class, b, e, i);
        }
    }
}

/// The ring a block of `size` requested bytes waits in.
#[inline(always)]
fn ring_for(q: &Quarantine, size: usize) -> &Ring {
    &q.rings[if size >= config::quarantine_big() {
        BIG
    } else {
        SMALL
    }]
}

/// Takes the oldest block out of the quarantine (the big ring first), without putting it back:
/// its address, class, side entry and index.
///
/// # Safety
/// Serialised, or on the real CPU (see `host`); the quarantine is not empty.
#[inline(always)]
unsafe fn take_oldest(q: &Quarantine) -> (*mut u8, usize, *mut SideEntry, usize) {
    // SAFETY: forwarded.
    unsafe { take_from(q, oldest_ring(q)) }
}

/// The ring the oldest block leaves from: the big one while it holds any.
///
/// # Safety
/// Serialised, or on the real CPU with the lock free.
#[inline(always)]
unsafe fn oldest_ring(q: &Quarantine) -> &Ring {
    // SAFETY: as said.
    if unsafe { *q.rings[BIG].len.get() } > 0 {
        &q.rings[BIG]
    } else {
        &q.rings[SMALL]
    }
}

/// Takes the oldest block out of ring `r` (see [`take_oldest`]).
///
/// # Safety
/// Serialised, or on the real CPU (see `host`); `r` is one of `q`'s rings and is not empty.
#[inline(always)]
unsafe fn take_from(q: &Quarantine, r: &Ring) -> (*mut u8, usize, *mut SideEntry, usize) {
    // SAFETY: forwarded.
    unsafe {
        let h = *r.head.get();
        let slot = r.table.base::<Slot>().add(h);
        let (b, size, class, e, i) = unpack(*slot);
        // Clear the block word (the ring is a mapping, so memcheck scans it as a root; the word
        // is a tagged value, not a plain pointer, but a cleared slot leaves no doubt; the home
        // word points into the side table only, never into a heap block).
        (*slot).block = 0;
        *r.head.get() = (h + 1) & (*r.slots.get() - 1);
        *r.len.get() -= 1;
        *q.bytes.get() -= size;
        (b, class, e, i)
    }
}

/// Puts a freed block of `size` requested bytes in the quarantine, letting the oldest blocks go
/// beyond its limit (or frees it at once when the quarantine is off, drained, or smaller than
/// the block).
///
/// # Safety
/// Serialised; `b` is a block of `class` just freed by the program, block `i` of the pool whose
/// side entry is `e`.
#[inline(always)]
pub(crate) unsafe fn push(b: *mut u8, class: usize, size: usize, e: *mut SideEntry, i: usize) {
    let q = &QUARANTINE;
    let limit = config::quarantine_limit();
    if size >= limit {
        // SAFETY: forwarded.
        unsafe { super::put_block_at(class, b, e, i) };
        return;
    }
    let r = ring_for(q, size);
    // SAFETY: serialised.
    unsafe {
        if *r.slots.get() == 0 && !open(r, limit) {
            super::put_block_at(class, b, e, i);
            return;
        }
        let slots = *r.slots.get();
        if *r.len.get() == slots {
            evict_one(q, r);
        }
        let tail = (*r.head.get() + *r.len.get()) & (slots - 1);
        if !r.table.commit((tail + 1) * size_of::<Slot>()) {
            super::put_block_at(class, b, e, i);
            return;
        }
        enqueue(b, class, size, e, i);
        while *q.bytes.get() > limit {
            let (b, class, e, i) = take_oldest(q);
            super::put_block_at(class, b, e, i);
        }
    }
}

/// Reserves a ring's slots on its first use; false if the address space is not to be had.
///
/// # Safety
/// Serialised.
#[cold]
unsafe fn open(r: &Ring, limit: usize) -> bool {
    // A power of two: a slot index wraps with a mask, not a division.
    let slots = (limit / ALIGNMENT + 1)
        .checked_next_power_of_two()
        .unwrap_or(MAX_SLOTS)
        .clamp(64, MAX_SLOTS);
    if !r.table.reserve(slots * size_of::<Slot>(), true) {
        return false;
    }
    // SAFETY: serialised.
    unsafe { *r.slots.get() = slots };
    true
}

/// At exit under memcheck: empty the quarantine and stop using it, so that pools and arenas
/// holding only freed blocks are given back before memcheck's leak check (an arena with no live
/// chunk would otherwise be reported as a still-reachable heap block of 256 KiB).
pub(crate) fn drain_at_exit() {
    if !track::memcheck() {
        return;
    }
    // This thread's pending frees first (it may hold the last ones), and its later frees kept
    // at once.
    super::pending::keep_this_thread_for_good();
    let _serial = serial::serialize();
    config::stop_quarantine(); // from now on frees skip the quarantine
    let q = &QUARANTINE;
    // SAFETY: serialised by this thread, which is the one `host::drain` runs for.
    unsafe {
        while *q.bytes.get() > 0 {
            // On the real CPU as far as it goes; in the guest, the blocks whose pools empty.
            track::on_host(super::host::drain, 0, false);
            if *q.bytes.get() > 0 {
                let (b, class, e, i) = take_oldest(q);
                super::put_block_at(class, b, e, i);
            }
        }
        // Zero-byte blocks hold no bytes.
        for r in &q.rings {
            while *r.len.get() > 0 {
                evict_one(q, r);
            }
            // Empty, and never used again (every free now skips the quarantine): unmapped, so
            // that memcheck's leak check does not read the slots (3.9 MB on the collections
            // benchmark, issue 15). A ring without slots reads as never opened.
            *r.slots.get() = 0;
            *r.head.get() = 0;
            r.table.release();
        }
    }
}

const ADDR_MASK: usize = (1 << 47) - 1;

/// A slot for block `b` (see [`Slot`]).
fn pack(b: *mut u8, class: usize, size: usize, e: *mut SideEntry, i: usize) -> Slot {
    debug_assert!(size <= SMALL_REQUEST_THRESHOLD && class < NB_SMALL_SIZE_CLASSES);
    debug_assert!(b as usize <= ADDR_MASK && e as usize <= ADDR_MASK && i < 256);
    Slot {
        block: b as usize | size << 47 | class << 57,
        home: e as usize | i << 48,
    }
}

/// A slot's block, requested size, class, side entry and index.
fn unpack(s: Slot) -> (*mut u8, usize, usize, *mut SideEntry, usize) {
    (
        (s.block & ADDR_MASK) as *mut u8,
        (s.block >> 47) & ((1 << 10) - 1),
        s.block >> 57,
        (s.home & ADDR_MASK) as *mut SideEntry,
        s.home >> 48,
    )
}

/// Blocks of each class in the quarantine, counted from the rings (for `stats`: the free path
/// keeps no per-class counters, every memory access of it being expensive under memcheck).
pub(crate) fn per_class() -> [usize; NB_SMALL_SIZE_CLASSES] {
    let mut n = [0; NB_SMALL_SIZE_CLASSES];
    if !track::memcheck() {
        return n;
    }
    let _serial = serial::serialize();
    for r in &QUARANTINE.rings {
        // SAFETY: serialised; slots head .. head + len are live entries.
        unsafe {
            let slots = *r.slots.get();
            for k in 0..*r.len.get() {
                let s = *r
                    .table
                    .base::<Slot>()
                    .add((*r.head.get() + k) & (slots - 1));
                n[unpack(s).2] += 1;
            }
        }
    }
    n
}

/// Moves the oldest block of ring `r` back to its pool.
///
/// # Safety
/// Serialised; `r` is one of `q`'s rings and is not empty.
#[inline(always)]
unsafe fn evict_one(q: &Quarantine, r: &Ring) {
    // SAFETY: forwarded.
    unsafe {
        let (b, class, e, i) = take_from(q, r);
        super::put_block_at(class, b, e, i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_keeps_address_size_class_side_entry_and_index() {
        let b = 0x7fff_ffff_f000usize as *mut u8;
        let e = 0x7fff_1234_5678usize as *mut SideEntry;
        for (class, size, i) in [(0, 0, 0), (0, 16, 255), (31, 512, 7), (5, 90, 64)] {
            assert_eq!(unpack(pack(b, class, size, e, i)), (b, size, class, e, i));
        }
    }
}
