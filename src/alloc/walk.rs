//! The heap invariant walker: checks every invariant written in `types` (tests run it after
//! every step, through `debug::check_heap`).

use core::cell::UnsafeCell;
use core::fmt::Write;
use core::sync::atomic::Ordering;

use super::config::Path;
use super::meta::{self, meta};
use super::pool::CLASSES;
use super::sys::FmtBuf;
use super::types::*;
use super::{arena, config, tcache, track};

/// What the walker saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeapReport {
    /// Arenas alive.
    pub arenas: usize,
    /// Pools in use (used or full), all classes.
    pub pools: usize,
    /// Blocks out of pools (with the program, cached or quarantined), all classes.
    pub blocks_out: usize,
    /// Arenas at their place in the arenas' reserved range (natively; 0 under Valgrind, with
    /// `POOLGRIND_ARENA_SPACE=0` or when the range could not be reserved).
    pub arenas_in_range: usize,
    /// Batches of free blocks that thread caches gave back and the next refills take whole
    /// (all classes), and the blocks in them.
    pub transfer_batches: usize,
    /// See `transfer_batches`.
    pub transfer_blocks: usize,
    /// Times the calling thread's cache went to the central heap for a pool class so far
    /// (refills and give-backs; wraps at 2^32).
    pub own_cache_trips: u32,
}

/// A broken invariant. Its description is in [`MESSAGE`]: formatted without allocating (the
/// walker holds every allocator lock, and allocating then would deadlock when this allocator is
/// the global one), and kept out of the `Result` so that every `?` moves one byte, not 240.
pub(crate) struct Broken;

struct MessageCell(UnsafeCell<FmtBuf<240>>);
// SAFETY: written only by the walker and read only by its caller, both holding every class
// lock, so one thread at a time.
unsafe impl Sync for MessageCell {}

/// The description of the last broken invariant.
static MESSAGE: MessageCell = MessageCell(UnsafeCell::new(FmtBuf::truncating()));

impl Broken {
    fn new(args: core::fmt::Arguments<'_>) -> Self {
        // SAFETY: every class lock is held (see MessageCell).
        let m = unsafe { &mut *MESSAGE.0.get() };
        *m = FmtBuf::truncating();
        let _ = m.write_fmt(args);
        Broken
    }

    /// Copies the description out (to a stack buffer: the caller still holds the locks).
    ///
    /// # Safety
    /// The caller holds every class lock.
    pub(crate) unsafe fn message(&self) -> FmtBuf<240> {
        let mut out = FmtBuf::truncating();
        // SAFETY: forwarded (see MessageCell).
        let _ = out.write_str(unsafe { (*MESSAGE.0.get()).as_str() });
        out
    }
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(Broken::new(format_args!($($fmt)+)));
        }
    };
}

/// Per class, what the pools walked add up to: (pools, capacity, nused).
type PerClass = [(usize, usize, usize); NB_SMALL_SIZE_CLASSES];

/// Walks everything; the caller holds every class lock and the serialisation lock.
pub(crate) fn walk() -> Result<HeapReport, Broken> {
    let narenas = arena::NARENAS.load(Ordering::Acquire);
    let mut per_class: PerClass = [(0, 0, 0); NB_SMALL_SIZE_CLASSES];
    check_used_lists(narenas)?;
    let (live, in_range) = arena::with_arenas(|_| check_arenas(narenas, &mut per_class))?;
    check_usable_list(live)?;
    let own_cache_trips = check_own_cache()?;
    let (transfer_batches, transfer_blocks) = check_transfer()?;
    check_exchange()?;
    check_request_map(&per_class)?;
    let mut report = check_class_counters(&per_class)?;
    report.arenas = live;
    report.arenas_in_range = in_range;
    report.transfer_batches = transfer_batches;
    report.transfer_blocks = transfer_blocks;
    report.own_cache_trips = own_cache_trips;
    Ok(report)
}

/// `malloc`'s bin table (`types::bin_of_request`): every request up to 512 B names its own
/// class or its carrier, a carrier only while it is merged, and a merged carrier has at most
/// `SPLIT_POOLS` pools; off path `Fast` every request names its own class.
fn check_request_map(per_class: &PerClass) -> Result<(), Broken> {
    let path = config::path();
    if path == Path::Uninit {
        return Ok(()); // carriers are decided with the path
    }
    let fast = path == Path::Fast;
    for size in (0..=SMALL_REQUEST_THRESHOLD).step_by(8) {
        let own = size_class(size);
        let bin = bin_of_request(size);
        ensure!(
            bin == own || (fast && bin == carrier(own) && is_merged(bin)),
            "a request of {size} B takes class {bin}: neither its own ({own}) nor a merged carrier"
        );
    }
    for (c, &(pools, _, _)) in per_class.iter().enumerate() {
        ensure!(
            !is_merged(c) || !fast || pools <= SPLIT_POOLS,
            "carrier class {c} has {pools} pools and still serves other classes"
        );
    }
    Ok(())
}

/// Every class's used list: right class, doubly linked, neither empty nor full pools, no cycle.
fn check_used_lists(narenas: usize) -> Result<(), Broken> {
    let mut on_used_list = [0usize; NB_SMALL_SIZE_CLASSES];
    for (c, cls) in CLASSES.iter().enumerate() {
        // SAFETY: every class lock is held by check_heap.
        let mut pool = unsafe { *cls.used.get() };
        let mut prev: *mut PoolHeader = core::ptr::null_mut();
        while !pool.is_null() {
            // SAFETY: pools on a used list are live pools of this process.
            let (szidx, back, next, nused, stride) = unsafe {
                let m = meta(pool);
                (
                    (*m).szidx,
                    (*m).prevpool,
                    (*m).nextpool,
                    (*m).nused,
                    (*m).stride,
                )
            };
            ensure!(
                szidx as usize == c,
                "pool {pool:p} on class {c}'s used list has szidx {szidx}"
            );
            ensure!(
                back == prev,
                "pool {pool:p}: prevpool {back:p}, expected {prev:p}"
            );
            ensure!(nused > 0, "pool {pool:p} on the used list is empty");
            ensure!(
                (nused as usize) < PoolHeader::capacity(stride as usize),
                "pool {pool:p} on the used list is full"
            );
            on_used_list[c] += 1;
            ensure!(
                on_used_list[c] <= narenas * POOLS_PER_ARENA,
                "class {c}: used list has a cycle"
            );
            prev = pool;
            pool = next;
        }
    }
    Ok(())
}

/// Every arena of the table and its pools (the arena lock is held): returns the live arenas.
/// Returns the live arenas and those at their place in the arenas' range.
fn check_arenas(narenas: usize, per_class: &mut PerClass) -> Result<(usize, usize), Broken> {
    let table = arena::table();
    let mut live = 0;
    let mut in_range = 0;
    let range = meta::range();
    if let Some(r) = &range {
        ensure!(
            r.len % ARENA_SIZE == 0 && r.len <= r.slots * ARENA_SIZE,
            "the arenas' range has {} slots but {:#x} bytes in use",
            r.slots,
            r.len
        );
        // The mode's flags and `branchy_len` are written under the arena lock, held here.
        ensure!(
            r.branchy_len == if r.branchy { r.len } else { 0 },
            "free's branchy range covers {:#x} bytes, the range {:#x} (branchy: {})",
            r.branchy_len,
            r.len,
            r.branchy
        );
    }
    for i in 0..narenas {
        // SAFETY: slots below NARENAS are initialised; the arena lock is held.
        let ao = unsafe { &*table.add(i) };
        let base = ao.address.load(Ordering::Relaxed);
        // Natively, the arenas' range: slot `i` below its size lies at its place, and the
        // flat map covers it once it has had an arena.
        let place = range.as_ref().filter(|r| i < r.slots).map(|r| {
            let used = (i + 1) * ARENA_SIZE <= r.len;
            (r.base + i * ARENA_SIZE, used)
        });
        if base == 0 {
            // A slot without an arena has no page in the map.
            if let Some((at, true)) = place {
                for k in 0..POOLS_PER_ARENA {
                    let e = meta::page_entry((at + k * POOL_SIZE) as *const u8);
                    ensure!(e == 0, "empty slot {i}: page {k} has page-map entry {e:#x}");
                }
            }
            continue;
        }
        live += 1;
        match (&range, place) {
            (_, Some((at, used))) => {
                ensure!(
                    base == at && used,
                    "arena {i} at {base:#x}, not at its place {at:#x} in the arenas' range (or beyond its used part)"
                );
                in_range += 1;
            }
            (Some(r), None) => ensure!(
                !r.exclusive,
                "arena {i} lies beyond the arenas' range, which still claims every arena"
            ),
            (None, None) => {}
        }
        ensure!(
            base % POOL_SIZE == 0,
            "arena {i} at {base:#x} is not page aligned"
        );
        let carved = (ao.pool_address - base) / POOL_SIZE;
        ensure!(
            carved <= POOLS_PER_ARENA,
            "arena {i}: pool_address beyond the arena"
        );
        let mut free = [false; POOLS_PER_ARENA];
        let mut nfree = 0;
        let mut fp = ao.freepools;
        while !fp.is_null() {
            let k = (fp as usize).wrapping_sub(base) / POOL_SIZE;
            ensure!(
                k < carved && (fp as usize).is_multiple_of(POOL_SIZE),
                "arena {i}: free pool {fp:p} outside its carved pools"
            );
            ensure!(!free[k], "arena {i}: pool {k} twice on the free-pool list");
            free[k] = true;
            nfree += 1;
            // SAFETY: free pools are carved pools of this arena.
            fp = unsafe { (*meta(fp)).nextpool };
        }
        ensure!(
            ao.nfreepools as usize == nfree + POOLS_PER_ARENA - carved,
            "arena {i}: nfreepools {} but {} free + {} uncarved",
            ao.nfreepools,
            nfree,
            POOLS_PER_ARENA - carved
        );
        // Every page of a live arena is in the page map, with its own index (under memcheck
        // its side-table index), and a page next to the arena only as a page of the arena its
        // entry names.
        for k in 0..POOLS_PER_ARENA {
            let page = (base + k * POOL_SIZE) as *const u8;
            let e = meta::page_entry(page);
            ensure!(
                e != 0 && meta::entry_index(e) == i * POOLS_PER_ARENA + k,
                "arena {i}: page {k} has page-map entry {e:#x}"
            );
            // Natively the flat map and the tree agree (under Valgrind both read the tree).
            let t = meta::tree_entry(page);
            ensure!(
                t == e,
                "arena {i}: page {k} has tree entry {t:#x} but flat entry {e:#x}"
            );
        }
        for outside in [base.wrapping_sub(POOL_SIZE), base + ARENA_SIZE] {
            let e = meta::page_entry(outside as *const u8);
            ensure!(
                e == 0
                    || in_arena(
                        table,
                        narenas,
                        meta::entry_index(e) / POOLS_PER_ARENA,
                        outside
                    ),
                "arena {i}: the page at {outside:#x} next to it has page-map entry {e:#x}"
            );
        }
        for (k, &is_free) in free.iter().enumerate().take(carved) {
            let pool = (base + k * POOL_SIZE) as *mut PoolHeader;
            if track::memcheck() {
                // The in-pool copy of the arena index (all address_in_range reads).
                track::open_header(pool.cast());
                // SAFETY: a carved pool of a live arena, header open.
                let own = unsafe { (*pool).arenaindex };
                track::close_header(pool.cast());
                ensure!(
                    own as usize == i,
                    "pool {pool:p}: in-pool arenaindex {own} in arena {i}"
                );
            }
            check_pool(pool, i, is_free, per_class)?;
        }
    }
    Ok((live, in_range))
}

/// Whether `addr` lies in arena `j`, a live arena of the table.
fn in_arena(table: *mut ArenaObject, narenas: usize, j: usize, addr: usize) -> bool {
    // SAFETY: slots below NARENAS are initialised; the arena lock is held.
    let b = (j < narenas).then(|| unsafe { (*table.add(j)).address.load(Ordering::Relaxed) });
    matches!(b, Some(b) if b != 0 && addr.wrapping_sub(b) < ARENA_SIZE)
}

/// The usable list is sorted ascending, `nfp2lasta` is right, and the live count matches.
fn check_usable_list(live: usize) -> Result<(), Broken> {
    let mut last = 0u32;
    let mut bad = None;
    let mut usable_count = 0;
    let (live2, nfp_ok) = arena::lists_snapshot(|ao, _| {
        // SAFETY: a live arena on the usable list.
        let nf = unsafe { (*ao).nfreepools };
        if nf == 0 || nf < last {
            bad = Some(nf);
        }
        last = nf;
        usable_count += 1;
    });
    ensure!(
        bad.is_none(),
        "usable arena list not sorted by free pools (saw {bad:?} after {last})"
    );
    ensure!(
        nfp_ok,
        "nfp2lasta names an arena with another free-pool count"
    );
    ensure!(
        live2 == live,
        "arena count {live2} but {live} arenas in the table"
    );
    Ok(())
}

/// The calling thread's cache (`types::Bin`'s invariant; other threads' caches are theirs): in
/// an active cache every bin's list is its cap less its room long (the cap at most the limit,
/// a system bin's the limit), a pool class's blocks lie
/// in pools in use for the class, a system bin's are glibc blocks of the bin's chunk sizes,
/// outside the arenas; a cache that is not active has no room and no block; a refill asks for
/// [`tcache::FIRST_BATCH`] blocks up to half a bin's limit. And the `free` of
/// the system bins runs only where it may (`meta::FreeMode`).
fn check_own_cache() -> Result<u32, Broken> {
    if meta::unbranched() {
        let r = meta::range();
        ensure!(
            r.is_some_and(|r| r.exclusive),
            "free fills the system bins, but the arenas' range does not hold every arena"
        );
    }
    let fast = config::path() == config::Path::Fast;
    tcache::with_own_bins(|active, tc| {
        for (c, &want) in tc.batch.iter().enumerate() {
            let most = tcache::bin_limit(c) / 2;
            ensure!(
                want == 0 || (u32::from(tcache::FIRST_BATCH)..=most).contains(&u32::from(want)),
                "class {c}: next refill of {want} blocks, outside {}..={most}",
                tcache::FIRST_BATCH
            );
        }
        for b in 0..NB_BINS {
            let bin = tc.bin(b);
            let room = bin.room.load(Ordering::Relaxed);
            ensure!(
                fast || bin.head.is_null(),
                "bin {b} holds blocks off path Fast, where malloc's first pop would hand them out"
            );
            let cap = u32::from(bin.cap.load(Ordering::Relaxed));
            if !active {
                ensure!(
                    room == 0 && cap == 0 && bin.head.is_null(),
                    "bin {b} of a cache that is not active has room {room}, cap {cap} or blocks"
                );
                continue;
            }
            ensure!(
                b < NB_LINEAR_BINS || tcache::large_bins_on() || bin.head.is_null(),
                "large bin {b} holds blocks, but the large bins are off"
            );
            let limit = tcache::bin_limit(b);
            ensure!(
                room <= cap && cap <= limit,
                "bin {b}: room {room}, cap {cap}, limit {limit}: not in that order"
            );
            ensure!(
                b < NB_SMALL_SIZE_CLASSES || cap == limit,
                "system bin {b}: cap {cap}, not its limit {limit}"
            );
            let mut n = 0;
            let mut p = *bin.head;
            while !p.is_null() {
                n += 1;
                ensure!(
                    n <= cap - room,
                    "bin {b}: more blocks than its cap less its room"
                );
                let e = meta::page_entry(p);
                if b < NB_SMALL_SIZE_CLASSES {
                    ensure!(
                        e != 0 && meta::entry_class(e) == b,
                        "bin {b} holds {p:p}, not a block of a pool of the class"
                    );
                } else {
                    // SAFETY: a system bin's block is a live glibc block: its chunk's size
                    // field is the word before it.
                    let h = unsafe { p.cast::<usize>().sub(1).read() };
                    ensure!(
                        e == 0 && system_bin_of_chunk(h) == b,
                        "system bin {b} holds {p:p}, chunk word {h:#x}"
                    );
                }
                // SAFETY: cached blocks are linked through their first word.
                p = unsafe { *p.cast::<*mut u8>() };
            }
            ensure!(
                n == cap - room,
                "bin {b}: {n} blocks, but its cap less its room is {}",
                cap - room
            );
        }
        Ok(tc.trips)
    })
}

/// The large bins' exchange (`tcache::check_exchange`): each chain holds 1 to half a bin's
/// limit of glibc blocks of its bin (not ours, their chunk of the bin's sizes), null-terminated
/// at the count its slot gives.
fn check_exchange() -> Result<(), Broken> {
    tcache::check_exchange(|b, chain, n| {
        ensure!(
            tcache::large_bins_on(),
            "exchange of large bin {b} holds a chain, but the large bins are off"
        );
        let most = (tcache::bin_limit(b) / 2) as usize;
        ensure!(
            (1..=most).contains(&n),
            "exchange of large bin {b}: a chain of {n} blocks, outside 1..={most}"
        );
        let mut p = chain;
        for i in 0..n {
            ensure!(
                !p.is_null(),
                "exchange of large bin {b}: its chain ends after {i} blocks, not {n}"
            );
            // SAFETY: a block of a chain the walker took out of its slot: a live glibc block,
            // its chunk's size field the word before it.
            let h = unsafe { p.cast::<usize>().sub(1).read() };
            ensure!(
                meta::page_entry(p) == 0 && system_bin_of_chunk(h) == b,
                "exchange of large bin {b} holds {p:p}, chunk word {h:#x}"
            );
            // SAFETY: chained blocks are linked through their first word.
            p = unsafe { *p.cast::<*mut u8>() };
        }
        ensure!(
            p.is_null(),
            "exchange of large bin {b}: its chain goes on past {n} blocks"
        );
        Ok(())
    })
}

/// Every class's transfer batches: chains of free blocks of the class, each as long as its
/// count says and at most a thread cache's give-back ([`tcache::piece`]; a longer one would
/// leave the bin that takes it with less room than half its limit), adding up to the class's
/// `transfer_blocks`.
fn check_transfer() -> Result<(usize, usize), Broken> {
    let (mut batches_in_all, mut blocks_in_all) = (0, 0);
    for (c, cls) in CLASSES.iter().enumerate() {
        // SAFETY: class locks held.
        let (nt, batches, total) = unsafe {
            (
                *cls.ntransfer.get(),
                *cls.transfer.get(),
                *cls.transfer_blocks.get(),
            )
        };
        ensure!(nt <= TRANSFER_SLOTS, "class {c}: {nt} transfer batches");
        let mut sum = 0;
        for (i, batch) in batches[..nt].iter().enumerate() {
            let most = tcache::piece(c) as usize;
            ensure!(
                (2..=most).contains(&batch.count),
                "class {c}: transfer batch {i} of {} blocks, outside 2..={most}",
                batch.count
            );
            let mut p = batch.head;
            for _ in 0..batch.count {
                ensure!(
                    !p.is_null(),
                    "class {c}: transfer batch {i} ends before its count"
                );
                let e = meta::page_entry(p);
                ensure!(
                    e != 0 && meta::entry_class(e) == c,
                    "class {c}: transfer batch {i} holds {p:p}, not a block of a pool of the class"
                );
                // SAFETY: a transfer batch's blocks are linked through their first word.
                p = unsafe { *p.cast::<*mut u8>() };
            }
            ensure!(
                p.is_null(),
                "class {c}: transfer batch {i} goes on past its {} blocks",
                batch.count
            );
            sum += batch.count;
        }
        ensure!(
            sum == total,
            "class {c}: transfer batches hold {sum} blocks, its count says {total}"
        );
        batches_in_all += nt;
        blocks_in_all += sum;
    }
    Ok((batches_in_all, blocks_in_all))
}

/// Every class's counters equal what its pools add up to.
fn check_class_counters(per_class: &PerClass) -> Result<HeapReport, Broken> {
    let mut report = HeapReport::default();
    for (c, cls) in CLASSES.iter().enumerate() {
        // SAFETY: class locks held.
        let (pools, cap, nused) =
            unsafe { (*cls.pools.get(), *cls.capacity.get(), *cls.nused.get()) };
        ensure!(
            (pools, cap, nused) == per_class[c],
            "class {c}: counters (pools, capacity, nused) = {:?}, walk found {:?}",
            (pools, cap, nused),
            per_class[c]
        );
        report.pools += pools;
        report.blocks_out += nused;
    }
    Ok(report)
}

/// Checks one carved pool (its metadata: the header natively, the side entry under memcheck).
fn check_pool(
    pool: *mut PoolHeader,
    arena: usize,
    is_free: bool,
    per_class: &mut PerClass,
) -> Result<(), Broken> {
    // SAFETY: the pool belongs to a live arena; locks held.
    let h = unsafe { &*meta(pool) };
    ensure!(
        h.arenaindex as usize == arena,
        "pool {pool:p}: arenaindex {} in arena {arena}",
        h.arenaindex
    );
    if is_free {
        return Ok(());
    }
    let c = h.szidx as usize;
    ensure!(
        c < NB_SMALL_SIZE_CLASSES,
        "pool {pool:p}: size class {c} out of range"
    );
    let mapped = meta::entry_class(meta::page_entry(pool.cast_const().cast()));
    ensure!(
        mapped == c,
        "pool {pool:p}: class {c} in its header, {mapped} in the page map"
    );
    let stride = h.stride as usize;
    ensure!(
        stride == config::stride(c),
        "pool {pool:p}: stride {stride} for class {c}"
    );
    let cap = PoolHeader::capacity(stride);
    let nused = h.nused as usize;
    ensure!(
        nused > 0 && nused <= cap,
        "pool {pool:p}: nused {nused} of {cap} in a pool in use"
    );
    let free = free_blocks(pool, h, stride, cap)?;
    ensure!(
        nused + free == cap,
        "pool {pool:p}: {nused} used + {free} free != capacity {cap}"
    );
    if config::strict() {
        bitmaps_fit(pool, h, cap)?;
        let live = (h.live[0].load(Ordering::Relaxed).count_ones()
            + h.live[1].load(Ordering::Relaxed).count_ones()) as usize;
        ensure!(
            live <= nused,
            "pool {pool:p}: {live} live blocks but nused {nused}"
        );
        let side = meta::side_entry_of(pool);
        if !side.is_null() {
            for i in 0..cap {
                let is_live = h.live[i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0;
                // SAFETY: the side entry of a live pool; locks held.
                let req = unsafe { SideEntry::requested(side, i) };
                ensure!(
                    !is_live || req <= class_size(c),
                    "pool {pool:p}: block {i} records a request of {req} bytes in class {c}"
                );
            }
        }
    }
    per_class[c].0 += 1;
    per_class[c].1 += cap;
    per_class[c].2 += nused;
    Ok(())
}

/// Strict geometries: no block past the pool's capacity is live (or, under memcheck, available),
/// and no block is both live and available (the bitmaps hold `STRICT_MAX_BLOCKS` bits, more
/// than any strict pool's capacity for every red zone).
fn bitmaps_fit(pool: *mut PoolHeader, h: &PoolHeader, cap: usize) -> Result<(), Broken> {
    ensure!(
        cap <= STRICT_MAX_BLOCKS,
        "pool {pool:p}: capacity {cap} beyond the bitmaps' {STRICT_MAX_BLOCKS} blocks"
    );
    for w in 0..2 {
        let live = h.live[w].load(Ordering::Relaxed);
        let avail = if track::memcheck() { h.avail[w] } else { 0 };
        let past = if cap >= 64 * (w + 1) {
            0
        } else if cap <= 64 * w {
            u64::MAX
        } else {
            !((1u64 << (cap - 64 * w)) - 1)
        };
        ensure!(
            (live | avail) & past == 0,
            "pool {pool:p}: a block past the capacity {cap} is live or available"
        );
        ensure!(
            live & avail == 0,
            "pool {pool:p}: a block is both live and available"
        );
    }
    Ok(())
}

/// Blocks of a pool that can still be handed out: the `avail` bits under memcheck; natively the
/// free list (each entry a block of the pool, no cycle) plus the virgin blocks.
fn free_blocks(
    pool: *mut PoolHeader,
    h: &PoolHeader,
    stride: usize,
    cap: usize,
) -> Result<usize, Broken> {
    Ok(if track::memcheck() {
        let first = POOL_HEADER_SIZE + PoolHeader::gap(stride, h.szidx as usize);
        ensure!(
            h.nextoffset as usize == first,
            "pool {pool:p}: nextoffset {} is not the first block's offset {first}",
            h.nextoffset
        );
        (h.avail[0].count_ones() + h.avail[1].count_ones()) as usize
    } else {
        let mut n = 0;
        let mut b = h.freeblock;
        let first =
            PoolHeader::first_block(pool, PoolHeader::gap(stride, h.szidx as usize)) as usize;
        while !b.is_null() {
            let off = (b as usize).wrapping_sub(first);
            ensure!(
                off.is_multiple_of(stride) && off / stride < cap,
                "pool {pool:p}: free block {b:p} is not a block of the pool"
            );
            n += 1;
            ensure!(n <= cap, "pool {pool:p}: free list has a cycle");
            // SAFETY: free blocks are linked through their first word.
            b = unsafe { *b.cast::<*mut u8>() };
        }
        let virgin = if h.nextoffset <= h.maxnextoffset {
            (h.maxnextoffset - h.nextoffset) as usize / stride + 1
        } else {
            0
        };
        n + virgin
    })
}
