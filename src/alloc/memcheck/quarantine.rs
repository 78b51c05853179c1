//! The memcheck quarantine: freed blocks wait before they go back to their pools, so that a use
//! after free finds the block NOACCESS and memcheck describes it as the freed block it was. It
//! keeps what memcheck's own malloc keeps (`memcheck/mc_malloc_wrappers.c`,
//! `add_to_freed_queue` and `release_oldest_block`): `--freelist-vol` requested bytes
//! (`POOLGRIND_QUARANTINE`, 20,000,000 by default), blocks of at least `--freelist-big-blocks`
//! bytes (`POOLGRIND_QUARANTINE_BIG`, 1,000,000) in a list of their own that is emptied first.

use core::cell::UnsafeCell;

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
/// blocks, each out of its pool and not live (its live bit clear), with its requested size and
/// class packed in ([`pack`]); every other slot is null; `bytes` is the sum of the requested
/// sizes in both rings and is at most the limit after every push.
struct Quarantine {
    rings: [Ring; 2],
    bytes: UnsafeCell<usize>,
}
// SAFETY: used only under memcheck, where every access holds the serialisation lock
// (`serial::serialize`), which fork() also takes first.
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

/// Most slots a ring reserves (8 bytes each, 32 MiB of address space; readable only as used).
/// A ring is sized for the limit at 16 bytes a block (the smallest class), rounded up to a power
/// of two; blocks asked for with fewer bytes fill it first, and then the oldest leaves as a new
/// one comes in.
const MAX_SLOTS: usize = 1 << 22;

static QUARANTINE: Quarantine = Quarantine {
    rings: [Ring::new(), Ring::new()],
    bytes: UnsafeCell::new(0),
};

/// Puts a freed block of `size` requested bytes in the quarantine, letting the oldest blocks go
/// beyond its limit (or frees it at once when the quarantine is off, drained, or smaller than
/// the block).
///
/// # Safety
/// Serialised; `b` is a block of `class` just freed by the program.
#[inline(always)]
pub(crate) unsafe fn push(b: *mut u8, class: usize, size: usize) {
    let q = &QUARANTINE;
    let limit = config::quarantine_limit();
    if size >= limit {
        // SAFETY: forwarded.
        unsafe { super::put_block(class, b) };
        return;
    }
    let r = &q.rings[if size >= config::quarantine_big() {
        BIG
    } else {
        SMALL
    }];
    // SAFETY: serialised.
    unsafe {
        if *r.slots.get() == 0 && !open(r, limit) {
            super::put_block(class, b);
            return;
        }
        let slots = *r.slots.get();
        if *r.len.get() == slots {
            evict_one(q, r);
        }
        let tail = (*r.head.get() + *r.len.get()) & (slots - 1);
        if !r.table.commit((tail + 1) * size_of::<usize>()) {
            super::put_block(class, b);
            return;
        }
        *r.table.base::<usize>().add(tail) = pack(b, class, size);
        *r.len.get() += 1;
        *q.bytes.get() += size;
        while *q.bytes.get() > limit {
            let oldest = if *q.rings[BIG].len.get() > 0 {
                &q.rings[BIG]
            } else {
                &q.rings[SMALL]
            };
            evict_one(q, oldest);
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
    if !r.table.reserve(slots * size_of::<usize>(), true) {
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
    let _serial = serial::serialize();
    config::stop_quarantine(); // from now on frees skip the quarantine
    let q = &QUARANTINE;
    for r in &q.rings {
        // SAFETY: serialised.
        unsafe {
            while *r.len.get() > 0 {
                evict_one(q, r);
            }
        }
    }
}

/// A slot: the block's address (user addresses use 47 bits), its requested size (10 bits, at
/// most 512) and its class (5 bits) above it, so that letting it go needs no metadata read.
fn pack(b: *mut u8, class: usize, size: usize) -> usize {
    debug_assert!(size <= SMALL_REQUEST_THRESHOLD && class < NB_SMALL_SIZE_CLASSES);
    b as usize | size << 47 | class << 57
}

fn unpack(e: usize) -> (*mut u8, usize, usize) {
    (
        (e & ((1 << 47) - 1)) as *mut u8,
        (e >> 47) & ((1 << 10) - 1),
        e >> 57,
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
                let e = *r
                    .table
                    .base::<usize>()
                    .add((*r.head.get() + k) & (slots - 1));
                n[unpack(e).2] += 1;
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
        let h = *r.head.get();
        let slot = r.table.base::<usize>().add(h);
        let (b, size, class) = unpack(*slot);
        // Clear the slot (the ring is a mapping, so memcheck scans it as a root; an entry is a
        // tagged value, not a plain pointer, but a cleared slot leaves no doubt).
        *slot = 0;
        *r.head.get() = (h + 1) & (*r.slots.get() - 1);
        *r.len.get() -= 1;
        *q.bytes.get() -= size;
        super::put_block(class, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_keeps_address_size_and_class() {
        let b = 0x7fff_ffff_f000usize as *mut u8;
        for (class, size) in [(0, 0), (0, 16), (31, 512), (5, 90)] {
            assert_eq!(unpack(pack(b, class, size)), (b, size, class));
        }
    }
}
