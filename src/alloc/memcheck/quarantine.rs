//! The memcheck quarantine: freed blocks wait in a ring before they go back to their pools,
//! so that a use after free finds the block NOACCESS (memcheck's own malloc does the same with
//! its freed-blocks queue, `--freelist-vol`).

use core::cell::UnsafeCell;
use core::ptr::null_mut;

use super::super::types::*;
use super::super::{config, serial, sys, track};

const QUARANTINE_SLOTS: usize = 1 << 16;

static QUARANTINE: Quarantine = Quarantine {
    ring: UnsafeCell::new(null_mut()),
    head: UnsafeCell::new(0),
    len: UnsafeCell::new(0),
    bytes: UnsafeCell::new(0),
};

/// Puts a freed block in the quarantine, evicting the oldest blocks beyond its limits (or frees
/// it at once when the quarantine is off or drained).
///
/// # Safety
/// Serialised; `b` is a block of `class` just freed by the program.
#[inline(always)]
pub(crate) unsafe fn push(b: *mut u8, class: usize) {
    let q = &QUARANTINE;
    let limit = config::quarantine_limit();
    // SAFETY: quarantine lock held.
    unsafe {
        let mut ring = *q.ring.get();
        if ring.is_null() && limit > 0 {
            ring = map_ring();
            *q.ring.get() = ring;
        }
        if ring.is_null() || limit == 0 {
            super::put_block(class, b);
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
    sys::map(QUARANTINE_SLOTS * core::mem::size_of::<*mut u8>(), true).cast()
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
pub(crate) fn per_class() -> [usize; NB_SMALL_SIZE_CLASSES] {
    let mut n = [0; NB_SMALL_SIZE_CLASSES];
    if !track::memcheck() {
        return n;
    }
    let _serial = serial::serialize();
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
        super::put_block(class, b);
    }
}
