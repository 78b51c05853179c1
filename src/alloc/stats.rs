//! Statistics: a snapshot per size class and for the arenas, and the table that
//! `POOLGRIND_STATS=1` prints at exit (the analogue of `sys._debugmallocstats()`).

use core::fmt::{self, Write};
use core::sync::atomic::Ordering;

use super::memcheck::quarantine;
use super::pool::CLASSES;
use super::sys::{FmtBuf, COUNTERS};
use super::types::*;
use super::{serial, tcache};

/// One size class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Block size of the class.
    pub size: usize,
    /// Pools currently serving the class.
    pub pools: usize,
    /// Blocks handed out to the program.
    pub in_use: usize,
    /// Free blocks held by thread caches and the class's transfer batches (not in pools).
    pub cached: usize,
    /// Freed blocks waiting in the memcheck quarantine.
    pub quarantined: usize,
    /// Free blocks in the class's pools (including never-used ones).
    pub free: usize,
}

/// A snapshot of the allocator.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Per size class, index = class.
    pub classes: [ClassStats; NB_SMALL_SIZE_CLASSES],
    /// Arenas created since start.
    pub arenas_allocated: usize,
    /// Arenas given back to the OS.
    pub arenas_freed: usize,
    /// Arenas alive now.
    pub arenas_live: usize,
    /// Most arenas alive at once.
    pub arenas_highwater: usize,
    /// Bytes of arena memory taken from the OS and not given back.
    pub bytes_from_os: usize,
    /// Requests served by the system allocator (a C `malloc` served by a system block that a
    /// thread cache kept is not one).
    pub system_allocs: usize,
    /// System blocks (513..=1024 bytes, glibc's) that the program freed and thread caches keep
    /// for its next `malloc` of their size (see `tcache`'s system bins).
    pub system_cached: usize,
    /// Large blocks (1025..=16 376 bytes, glibc's) that the program freed and thread caches
    /// keep for its next request of their size, or left for other threads (see `tcache`'s
    /// large bins).
    pub large_cached: usize,
    /// Blocks waiting in the memcheck quarantine.
    pub quarantined: usize,
    /// Threads with an active cache.
    pub thread_caches: usize,
}

/// Takes a snapshot (each class lock is taken briefly; thread-cache counts are racy by nature).
pub fn stats() -> Stats {
    let mut s = Stats::default();
    let _serial = serial::serialize();
    let in_caches = tcache::cached_blocks();
    let in_quarantine = quarantine::per_class();
    for (c, cls) in CLASSES.iter().enumerate() {
        let _g = cls.lock.lock();
        // SAFETY: class lock held.
        let (pools, cap, nused, transfer) = unsafe {
            (
                *cls.pools.get(),
                *cls.capacity.get(),
                *cls.nused.get(),
                *cls.transfer_blocks.get(),
            )
        };
        let quarantined = in_quarantine[c];
        let cached = in_caches[c] + transfer;
        s.classes[c] = ClassStats {
            size: class_size(c),
            pools,
            in_use: nused.saturating_sub(cached + quarantined),
            cached,
            quarantined,
            free: cap - nused,
        };
    }
    s.arenas_allocated = COUNTERS.arenas_allocated.load(Ordering::Relaxed);
    s.arenas_freed = COUNTERS.arenas_freed.load(Ordering::Relaxed);
    s.arenas_live = s.arenas_allocated - s.arenas_freed;
    s.arenas_highwater = COUNTERS.arenas_highwater.load(Ordering::Relaxed);
    s.bytes_from_os = s.arenas_live * ARENA_SIZE;
    s.system_allocs = tcache::system_allocs();
    s.system_cached = tcache::cached_system_blocks(NB_SMALL_SIZE_CLASSES..NB_LINEAR_BINS);
    s.large_cached =
        tcache::cached_system_blocks(NB_LINEAR_BINS..NB_BINS) + tcache::exchange_blocks();
    s.quarantined = in_quarantine.iter().sum();
    s.thread_caches = COUNTERS.thread_caches.load(Ordering::Relaxed) as usize;
    s
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "poolgrind: small block allocator statistics")?;
        writeln!(f, "class   size   pools     in use     cached       free")?;
        for (c, k) in self.classes.iter().enumerate() {
            if k.pools == 0 && k.cached == 0 {
                continue;
            }
            writeln!(
                f,
                "{c:5} {:6} {:7} {:10} {:10} {:10}",
                k.size, k.pools, k.in_use, k.cached, k.free
            )?;
        }
        writeln!(
            f,
            "arenas: {} allocated, {} freed, {} live, {} high water; {} bytes from the OS",
            self.arenas_allocated,
            self.arenas_freed,
            self.arenas_live,
            self.arenas_highwater,
            self.bytes_from_os
        )?;
        writeln!(
            f,
            "system allocator requests: {}; system blocks cached: {}; large blocks cached: {}; \
             quarantined blocks: {}; thread caches: {}",
            self.system_allocs,
            self.system_cached,
            self.large_cached,
            self.quarantined,
            self.thread_caches
        )
    }
}

/// `atexit` handler installed when `POOLGRIND_STATS=1`.
pub extern "C" fn print_stats_at_exit() {
    let s = stats();
    let mut w = FmtBuf::<512>::new();
    let _ = write!(w, "{s}");
    w.write_stderr();
}
