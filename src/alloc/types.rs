//! The data-structure hub: every constant, struct and invariant of the allocator lives here.
//!
//! The other modules of `alloc` stay terse; when they say "the invariants", they mean the ones
//! written next to the fields below, and the walker (`walk`, run by
//! [`crate::debug::check_heap`]) checks every one of them.
//!
//! # Tunable settings (and why they are what they are)
//!
//! | constant                  | value     | invariant / reason                                        |
//! |---------------------------|-----------|-----------------------------------------------------------|
//! | [`ALIGNMENT`]             | 16        | `max_align_t` on x86-64; every pool block is 16-aligned    |
//! | [`SMALL_REQUEST_THRESHOLD`] | 512     | `ALIGNMENT <= SMALL_REQUEST_THRESHOLD <= 512` (pymalloc's) |
//! | [`NB_SMALL_SIZE_CLASSES`] | 32        | `SMALL_REQUEST_THRESHOLD / ALIGNMENT`                      |
//! | [`POOL_SIZE`]             | 4096      | one system page: the page map has an entry per page; `address_in_range` reads the page's start |
//! | [`ARENA_SIZE`]            | 256 KiB   | a multiple of `POOL_SIZE`; 64 pools                        |
//! | [`POOL_HEADER_SIZE`]      | 80        | `size_of::<PoolHeader>()`, a multiple of `ALIGNMENT`       |
//! | gap (`config::gap`)       | 0; 32     | inaccessible bytes on each side of every block: 0 natively, memcheck's geometry under memcheck (`config::memcheck_gap`: 32 for `--redzone-size=16`) |
//! | [`MAX_ARENAS`]            | 2^18      | 64 GiB of small objects; the table is reserved, not touched |
//! | [`SPLIT_POOLS`]           | 4         | a carrier class ([`carrier`]) serves its light classes' pointer-only requests up to this many pools, then each class has its own (natively, path `Fast`) |

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Alignment of every pool block (and the spacing of size classes).
pub const ALIGNMENT: usize = 16;
/// log2 of [`ALIGNMENT`].
pub const ALIGNMENT_SHIFT: usize = 4;
/// Requests up to this many bytes (and alignment up to [`ALIGNMENT`]) are served from pools.
pub const SMALL_REQUEST_THRESHOLD: usize = 512;
/// Number of size classes: 16, 32, … 512 bytes.
pub const NB_SMALL_SIZE_CLASSES: usize = SMALL_REQUEST_THRESHOLD / ALIGNMENT;
/// A pool is one 4 KiB page.
pub const POOL_SIZE: usize = 4096;
/// Mask that rounds a block address down to its pool.
pub const POOL_MASK: usize = !(POOL_SIZE - 1);
/// An arena is 256 KiB: 64 pools.
pub const ARENA_SIZE: usize = 256 << 10;
/// Pools per arena (arenas are page aligned, so none is lost to alignment).
pub const POOLS_PER_ARENA: usize = ARENA_SIZE / POOL_SIZE;
/// Bytes at the start of every pool taken by its [`PoolHeader`].
pub const POOL_HEADER_SIZE: usize = core::mem::size_of::<PoolHeader>();
/// Capacity of the arena table (reserved address space, touched only as arenas are created).
pub const MAX_ARENAS: usize = 1 << 18;
/// Most blocks a pool can hold in the "strict" geometries (memcheck red zones, debug guards),
/// where per-block bitmaps are kept: the smallest memcheck gap is 16 bytes on each side
/// (`--redzone-size=0`), so a pool holds at most `(POOL_SIZE - POOL_HEADER_SIZE) / 48 < 128`
/// blocks (and debug mode's smallest block is 32 bytes).
pub const STRICT_MAX_BLOCKS: usize = 128;

const _: () = assert!(POOL_HEADER_SIZE.is_multiple_of(ALIGNMENT));
const _: () = assert!(ALIGNMENT <= SMALL_REQUEST_THRESHOLD && SMALL_REQUEST_THRESHOLD <= 512);
const _: () = assert!(ARENA_SIZE.is_multiple_of(POOL_SIZE));
const _: () = assert!((POOL_SIZE - POOL_HEADER_SIZE) / (ALIGNMENT + 2 * 16) <= STRICT_MAX_BLOCKS);
const _: () = assert!((POOL_SIZE - POOL_HEADER_SIZE) / (2 * ALIGNMENT) <= STRICT_MAX_BLOCKS);

// ---------------------------------------------------------------------------------------------
// The system blocks a thread cache keeps (path `Fast`, glibc behind us; see `tcache`).

/// Largest C `malloc` request of a system bin (larger ones up to [`LARGE_BIN_MAX_REQUEST`] have
/// the large bins): requests of 513..=1024 bytes go to the system allocator, and their blocks
/// to [`NB_SYS_BINS`] bins of their own after the `free` (issue 15: in larson's mix of sizes on both sides of 512 B, the
/// branch "pool block or system block" went the wrong way half the time, in `malloc` and in
/// `free`).
pub const SYS_CACHE_MAX_REQUEST: usize = 1024;
/// glibc's smallest chunk of a request above [`SMALL_REQUEST_THRESHOLD`]: `513 + 8` rounded up
/// to 16 (the chunk's size field is the 8 bytes before the block; a chunk is 16-aligned).
pub const SYS_MIN_CHUNK: usize = 528;
/// Chunk sizes one system bin holds: bin `k` holds chunks of `SYS_MIN_CHUNK + 32k` to
/// `SYS_MIN_CHUNK + 32k + 31` bytes, so every block in it has at least
/// [`sys_bin_request`]`(k)` usable bytes.
pub const SYS_BIN_STEP_SHIFT: usize = 5;
/// Bins for system blocks: requests up to [`SYS_CACHE_MAX_REQUEST`].
pub const NB_SYS_BINS: usize =
    (SYS_CACHE_MAX_REQUEST - sys_bin_request(0)).div_ceil(1 << SYS_BIN_STEP_SHIFT) + 1;
/// The bins [`bin_of_chunk`]'s arithmetic reaches: the pools' classes, then the system bins
/// of 513..=1024 bytes. Path `Fast`'s `free` takes a value below this for a bin of one of them.
pub const NB_LINEAR_BINS: usize = NB_SMALL_SIZE_CLASSES + NB_SYS_BINS;
/// Bins for glibc's blocks of 1025..=[`LARGE_BIN_MAX_REQUEST`] bytes ("large bins", after the
/// system bins): eight a doubling of the chunk's size, from 1 152 to 16 384 bytes.
pub const NB_LARGE_BINS: usize = 32;
/// Bins of a thread cache: the pools' classes, the system bins, then the large bins.
pub const NB_BINS: usize = NB_LINEAR_BINS + NB_LARGE_BINS;

/// The request a system bin is filled with: glibc makes it a chunk of exactly
/// `SYS_MIN_CHUNK + 32k` bytes (the bin's smallest), which its `free` puts back in bin `k`.
#[inline(always)]
pub const fn sys_bin_request(k: usize) -> usize {
    SYS_MIN_CHUNK + (k << SYS_BIN_STEP_SHIFT) - 8
}

// Choices that go either way at random, where a branch would be mispredicted half the time:
// conditional moves on x86-64, never a branch (LLVM turns a plain `if` between values back into
// a branch when it sees fit; it cannot see into `asm!`).

/// `if x < y { (a, c) } else { (b, d) }` (unsigned), without a branch: one comparison, two
/// conditional moves.
#[inline(always)]
pub(crate) fn select_below(
    x: usize,
    y: usize,
    (a, c): (usize, usize),
    (b, d): (usize, usize),
) -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let (mut r, mut s) = (b, d);
        // SAFETY: register-only arithmetic; `cmp` sets the flags, so they are not preserved.
        unsafe {
            core::arch::asm!(
                "cmp {x}, {y}",
                "cmovb {r}, {a}",
                "cmovb {s}, {c}",
                x = in(reg) x,
                y = in(reg) y,
                a = in(reg) a,
                c = in(reg) c,
                r = inout(reg) r,
                s = inout(reg) s,
                options(pure, nomem, nostack),
            );
        }
        (r, s)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        if x < y {
            (a, c)
        } else {
            (b, d)
        }
    }
}

/// The bin of a pointer-only `malloc` of `size` bytes (the C `malloc`, `raw::malloc`),
/// `size <= SYS_CACHE_MAX_REQUEST`: up to [`SMALL_REQUEST_THRESHOLD`] a pool class, its own or,
/// while it is light, its carrier's ([`carrier`]); above, the first system bin whose blocks all
/// hold `size`. A table read, without a branch (sizes on both sides of 512 B alternate at random
/// in larson). Bins change at multiples of 8 bytes (pool classes at 16, system bins at
/// 520 + 32k), so the table has an entry per 8 bytes.
#[inline(always)]
pub fn bin_of_request(size: usize) -> usize {
    debug_assert!(size <= SYS_CACHE_MAX_REQUEST);
    let t = &BIN_OF_REQUEST.0;
    let b = usize::from(t[((size + 7) >> 3) & (t.len() - 1)].load(Ordering::Relaxed));
    // SAFETY: every entry is a pool class or a system bin, below NB_LINEAR_BINS (the initialiser and
    // `split_carrier` store nothing else; the entries past SYS_CACHE_MAX_REQUEST / 8 are 0).
    // Told so, the compiler checks no bin's index where a thread cache takes the bin.
    unsafe { core::hint::assert_unchecked(b < NB_LINEAR_BINS) };
    b
}

/// [`bin_of_request`]'s definition once every carrier is split: the class of the request, or
/// its system bin.
const fn bin_of_request_by_arithmetic(size: usize) -> usize {
    if size <= SMALL_REQUEST_THRESHOLD {
        size_class(size)
    } else {
        // ceil((size - 520) / 32): 0 for 513..=520.
        NB_SMALL_SIZE_CLASSES
            + ((size.saturating_sub(sys_bin_request(0)) + (1 << SYS_BIN_STEP_SHIFT) - 1)
                >> SYS_BIN_STEP_SHIFT)
    }
}

/// The carrier of pool class `class`: the class whose pools serve a pointer-only request of
/// `class`'s sizes until the carrier is split ([`split_carrier`], when its pools grow past
/// [`SPLIT_POOLS`]); a class of its own below 112 bytes.
///
/// A thread cache holding a block of a class keeps that block's pool out of its arena: a page,
/// however few of its blocks are out. A program that uses many of the larger classes a block
/// at a time keeps a page for each (espresso: 22 classes of 112-512 B, a page each, which
/// without the caches empty between uses and serve the growing class: 90 pools at its peak
/// against 67, issue 15's peak RSS). Five carriers of 128, 192, 256, 384 and 512 bytes serve
/// the 26 classes from 112 B up until the carrier's pools grow past [`SPLIT_POOLS`]: a request
/// takes at most half as many bytes again (272 in 384), in at most that many pools per carrier
/// (arena of espresso: 364 KiB, 288 with carriers, 272 without thread caches). A Rust layout's
/// `dealloc` names its class by the size, so `PoolAlloc` keeps the classes themselves.
#[inline(always)]
pub const fn carrier(class: usize) -> usize {
    match class {
        6..=7 => 7,
        8..=11 => 11,
        12..=15 => 15,
        16..=23 => 23,
        24..=31 => 31,
        c => c,
    }
}

/// A carrier whose pools grow beyond this many is split: its classes get their own pools.
pub const SPLIT_POOLS: usize = 4;

/// [`bin_of_request`] of every size up to [`SYS_CACHE_MAX_REQUEST`], by `(size + 7) / 8` (a
/// power of two long, so that the index is masked rather than checked). Entries only ever go
/// from a carrier to the request's own class ([`split_carrier`]): a reader that sees either gets
/// a class whose blocks hold the request, and `free` reads the class from the block's pool.
static BIN_OF_REQUEST: RequestMap = RequestMap({
    let mut t = [const { AtomicU8::new(0) }; 256];
    let mut i = 0;
    while i <= SYS_CACHE_MAX_REQUEST / 8 {
        let b = bin_of_request_by_arithmetic(i * 8);
        t[i] = AtomicU8::new(if b < NB_SMALL_SIZE_CLASSES {
            carrier(b)
        } else {
            b
        } as u8);
        i += 1;
    }
    t
});

/// [`BIN_OF_REQUEST`]'s entries, on four cache lines of their own.
#[repr(C, align(64))]
struct RequestMap([AtomicU8; 256]);

/// Whether `class` is a carrier that still serves other classes: the table sends the class
/// below it (a member of every carrier) to it. Exact under the carrier's class lock, which
/// [`split_carrier`]'s callers hold (or before other threads run, at initialisation).
#[inline]
pub(crate) fn is_merged(class: usize) -> bool {
    (1..NB_SMALL_SIZE_CLASSES).contains(&class)
        && carrier(class - 1) == class
        && bin_of_request(class_size(class - 1)) == class
}

/// Gives the classes `carrier` serves their own pools from now on (for good): its pools grew
/// beyond [`SPLIT_POOLS`], or pointer-only requests must take their own classes
/// (`carrier == usize::MAX`: every carrier).
pub(crate) fn split_carrier(carrier_class: usize) {
    let mut i = 0;
    while i * 8 <= SMALL_REQUEST_THRESHOLD {
        let own = size_class(i * 8);
        if carrier_class == usize::MAX || carrier(own) == carrier_class {
            BIN_OF_REQUEST.0[i].store(own as u8, Ordering::Relaxed);
        }
        i += 1;
    }
}
const _: () = assert!(SYS_CACHE_MAX_REQUEST / 8 < 256 && NB_BINS < 256);

/// The bin of a glibc chunk whose size field (the word before the block) is `h`, or a value of
/// at least [`NB_LINEAR_BINS`] for a chunk no system bin keeps (smaller than [`SYS_MIN_CHUNK`], or
/// larger than the last bin's). Without a branch. The field's three flag bits fall below the
/// shift; an mmapped chunk (flag 2) is a whole number of pages, larger than every bin's.
#[inline(always)]
pub const fn bin_of_chunk(h: usize) -> usize {
    NB_SMALL_SIZE_CLASSES + (h.wrapping_sub(SYS_MIN_CHUNK) >> SYS_BIN_STEP_SHIFT)
}

const _: () = assert!(NB_SYS_BINS == 17);
const _: () = assert!(sys_bin_request(NB_SYS_BINS - 1) >= SYS_CACHE_MAX_REQUEST);
const _: () = assert!(bin_of_request_by_arithmetic(SYS_CACHE_MAX_REQUEST) == NB_LINEAR_BINS - 1);
const _: () =
    assert!(bin_of_chunk(SYS_MIN_CHUNK + (NB_SYS_BINS << SYS_BIN_STEP_SHIFT)) == NB_LINEAR_BINS);

// The large bins. glibc serves a request above 1 KiB from its arena's free lists, under the
// arena's lock, in ~150 instructions and a cache miss or two each way; its own tcache stops at
// 1 032 bytes. mimalloc-bench's rptest (8..16 000 B, 87 % of its requests above 512 B, most
// frees cross-thread) spent a third of its CPU time there (issue 15, perf's cpu-clock samples).
// A thread cache keeps such blocks as it keeps those of 513..=1024 B, in bins that grow with the
// size: bin `j` holds chunks of [`large_bin_chunk`]`(j)` up to the next bin's smallest, so every
// block in it holds `large_bin_chunk(j) - 8` bytes, the request its miss asks glibc for. The
// rounding costs at most an eighth of a block (a sixteenth on average).

/// Chunk sizes of the large bins' geometric series: `(8 + g % 8) << (7 + g / 8)`, from 1 024
/// (`g = 0`) by eighths of a doubling.
const fn large_series(g: usize) -> usize {
    (8 + g % 8) << (7 + g / 8)
}

/// The index in [`large_series`] of the last term at most `c` (`c` at least 1 024).
#[inline(always)]
const fn large_series_index(c: usize) -> usize {
    let e = (usize::BITS - 1 - c.leading_zeros()) as usize - 10;
    8 * e + ((c >> (e + 7)) & 7)
}

/// The smallest chunk large bin `j` holds: 1 152 bytes for bin 0 (chunks of 1 040..=1 071 B
/// are the last system bin's, and 1 072..=1 151 B no bin's), 16 384 for the last.
pub const fn large_bin_chunk(j: usize) -> usize {
    large_series(j + 1)
}

/// Largest request a large bin serves: its last bin's smallest chunk less glibc's header.
pub const LARGE_BIN_MAX_REQUEST: usize = large_bin_chunk(NB_LARGE_BINS - 1) - 8;
/// One past the largest chunk a large bin holds.
const LARGE_BIN_CHUNK_END: usize = large_bin_chunk(NB_LARGE_BINS);

/// The large bin of a request of `SYS_CACHE_MAX_REQUEST + 1 ..= LARGE_BIN_MAX_REQUEST` bytes:
/// the first whose blocks all hold it (its glibc chunk, `size + 8` rounded up to 16, is at most
/// the bin's smallest chunk).
#[inline(always)]
pub const fn large_bin_of_request(size: usize) -> usize {
    debug_assert!(size > SYS_CACHE_MAX_REQUEST && size <= LARGE_BIN_MAX_REQUEST);
    let chunk = (size + 8 + 15) & !15;
    // One past the bin of the chunk below, whose smallest chunk is below `chunk`.
    NB_LINEAR_BINS + large_series_index(chunk - 1)
}

/// The request a large bin's miss asks glibc for: a chunk of exactly the bin's smallest size,
/// which its `free` puts back in the bin.
#[inline(always)]
pub const fn large_bin_request(bin: usize) -> usize {
    large_bin_chunk(bin - NB_LINEAR_BINS) - 8
}

/// The large bin of a glibc chunk whose size field (the word before the block) is `h`, or
/// `usize::MAX` for a chunk no large bin keeps: out of their sizes, or mmapped (flag 2: its
/// usable size is its size less 16, not 8, so it would not hold its bin's requests).
#[inline(always)]
pub const fn large_bin_of_chunk(h: usize) -> usize {
    let c = h & !7;
    if h & 2 != 0 || c < large_bin_chunk(0) || c >= LARGE_BIN_CHUNK_END {
        return usize::MAX;
    }
    NB_LINEAR_BINS + large_series_index(c) - 1
}

/// The system bin or large bin that keeps a glibc chunk whose size field is `h`, or a value of
/// at least [`NB_BINS`] (for the walker: which bin a cached system block belongs in).
pub const fn system_bin_of_chunk(h: usize) -> usize {
    let b = bin_of_chunk(h);
    if b >= NB_SMALL_SIZE_CLASSES && b < NB_LINEAR_BINS {
        b
    } else {
        large_bin_of_chunk(h)
    }
}

const _: () = assert!(LARGE_BIN_MAX_REQUEST == 16_376);
const _: () = assert!(large_bin_of_request(SYS_CACHE_MAX_REQUEST + 1) == NB_LINEAR_BINS);
const _: () = assert!(large_bin_of_request(LARGE_BIN_MAX_REQUEST) == NB_BINS - 1);
const _: () = assert!(SYS_MIN_CHUNK + (NB_SYS_BINS << SYS_BIN_STEP_SHIFT) <= large_bin_chunk(0));

/// Size class of a request: `(size - 1) / 16`, with `size == 0` in class 0.
#[inline(always)]
pub const fn size_class(size: usize) -> usize {
    size.saturating_sub(1) >> ALIGNMENT_SHIFT
}

/// Block size of a size class, without red zones: `(class + 1) * 16`.
#[inline(always)]
pub const fn class_size(class: usize) -> usize {
    (class + 1) << ALIGNMENT_SHIFT
}

/// The header at the start of every pool.
///
/// A pool is in exactly one of three states (pymalloc's):
/// - **used**: `0 < nused` and at least one block can still be handed out; the pool is on its size
///   class's `used` list ([`ClassState::used`]).
/// - **full**: every block is out (`nused == capacity`); the pool is on no list.
/// - **empty**: `nused == 0`; the pool is on its arena's `freepools` list and `szidx` is stale.
///
/// Invariants (checked by the walker):
/// - `arenaindex` is the index in the arena table of the arena this pool lies in. It sits at
///   offset 0 because `arena::address_in_range` reads exactly those 4 bytes of
///   *any* page, ours or not.
/// - `stride == class_size(szidx) + 2 * gap` for the geometry the process runs with (gap 0
///   natively); block `i` starts at `POOL_HEADER_SIZE + gap + i * stride` from the pool, so
///   every block, the first and the last included, has `gap` inaccessible bytes on each side
///   inside the pool, and `capacity = (POOL_SIZE - POOL_HEADER_SIZE) / stride`.
/// - native geometry: `nused + |freeblock list| + (maxnextoffset - nextoffset) / stride + 1
///   == capacity` when `nextoffset <= maxnextoffset`, and every free-list entry is a block
///   boundary of this pool.
/// - memcheck geometry: the free list is unused and `nextoffset` stays the first block's
///   offset, `POOL_HEADER_SIZE + gap` (the memcheck `malloc` adds it to the pool's address);
///   `avail` has a bit per block that may be handed out and `nused + popcount(avail) ==
///   capacity`.
/// - strict geometries (memcheck, debug): bit `i` of `live` is set iff block `i` is handed out to
///   the program (not free, not cached, not quarantined). A free of a block whose bit is clear
///   is a double or invalid free.
/// - under memcheck this struct lives twice: the copy at the pool's start holds only a valid
///   `arenaindex` (written when the pool is carved, NOACCESS ever after, read only by
///   `address_in_range`, which under memcheck cross-checks the page map); every other field is kept in the pool's [`SideEntry`], and the
///   allocator never opens the in-pool header on an allocation or a free (see [`SideEntry`]).
#[repr(C)]
pub struct PoolHeader {
    /// Index of this pool's arena in the arena table (offset 0, 4 bytes: see above).
    pub arenaindex: u32,
    /// Size class of the blocks (meaningful while the pool is used or full).
    pub szidx: u32,
    /// Blocks not available to hand out: with the program, in thread caches or in quarantine.
    pub nused: u32,
    /// Distance between consecutive blocks.
    pub stride: u32,
    /// Offset of the next never-used ("virgin") block.
    pub nextoffset: u32,
    /// Largest valid `nextoffset`: the offset of the pool's last block.
    pub maxnextoffset: u32,
    /// Singly linked list of free blocks, linked through their first word.
    pub freeblock: *mut u8,
    /// Next pool on the class's used list, or on the arena's freepools list.
    pub nextpool: *mut PoolHeader,
    /// Previous pool on the class's used list.
    pub prevpool: *mut PoolHeader,
    /// Strict geometries: blocks handed out to the program.
    pub live: [AtomicU64; 2],
    /// Memcheck geometry: blocks that may be handed out.
    pub avail: [u64; 2],
}

impl PoolHeader {
    /// The gap on each side of the blocks of a pool of `stride` and `class`.
    #[inline(always)]
    pub const fn gap(stride: usize, class: usize) -> usize {
        (stride - class_size(class)) / 2
    }

    /// Address of the first block of a pool whose blocks have `gap` bytes on each side.
    #[inline(always)]
    pub fn first_block(pool: *mut PoolHeader, gap: usize) -> *mut u8 {
        pool.cast::<u8>().wrapping_add(POOL_HEADER_SIZE + gap)
    }

    /// Number of blocks a pool of `stride` holds.
    #[inline(always)]
    pub const fn capacity(stride: usize) -> usize {
        (POOL_SIZE - POOL_HEADER_SIZE) / stride
    }

    /// Index of `block` within `pool` (it must be a block boundary).
    #[inline(always)]
    pub fn block_index(
        pool: *mut PoolHeader,
        gap: usize,
        stride: usize,
        block: *const u8,
    ) -> usize {
        (block as usize - Self::first_block(pool, gap) as usize) / stride
    }

    /// The pool that contains `p`.
    #[inline(always)]
    pub fn of(p: *const u8) -> *mut PoolHeader {
        (p as usize & POOL_MASK) as *mut PoolHeader
    }
}

/// Under memcheck: the metadata of one pool, kept off the pool, in an allocator-private mapping.
///
/// Why: memcheck must see a pool header as NOACCESS to the program, so every access by the
/// allocator to an in-pool header costs two client requests (make DEFINED, make NOACCESS
/// again), ~170 ns each under memcheck, four to eight per malloc/free pair. Kept here instead,
/// the metadata needs none, and the header inside the pool is never made accessible again after
/// the pool is carved. The side table is ordinary memory (no block of the program sits next to
/// it, so no overflow can reach it without crossing NOACCESS memory first), like the state of
/// any allocator that memcheck does not replace.
///
/// Invariants (checked by the walker):
/// - the page map sends every page of every live arena to its entry here (page index
///   `arenaindex * POOLS_PER_ARENA + pool number`; see [`PAGE_MAP_LEAF_BITS`]), and the pages
///   of a freed arena to 0;
/// - `hdr` obeys every [`PoolHeader`] invariant, and its `arenaindex` equals the in-pool one;
/// - `req[i]`'s low [`REQ_SIZE_BITS`] are the size the program asked for when block `i` is live
///   (bit `i` of `hdr.live`); the bits above are the carve clock at the block's last carving.
#[repr(C)]
pub struct SideEntry {
    /// The pool's header fields.
    pub hdr: PoolHeader,
    /// Per block, the requested size of a live block (`malloc_usable_size` and `realloc` copy
    /// exactly it) and, above it, when the block was last carved, on the carve clock
    /// (`memcheck::CARVES`, [`CARVE_CLOCK_BITS`] wide, wrapping): a pending free
    /// (`memcheck::pending`) of a block carved again since the free was made is an invalid free
    /// of the block's earlier life, already reported, and must not free its new owner's block.
    /// One word with the size, so that the check reads no other cache line.
    pub req: [u32; STRICT_MAX_BLOCKS],
}

/// Bits of a `SideEntry::req` word that hold the requested size (at most
/// `SMALL_REQUEST_THRESHOLD`).
pub const REQ_SIZE_BITS: u32 = 10;
/// Bits of the carve clock kept per block (the rest of a `SideEntry::req` word).
pub const CARVE_CLOCK_BITS: u32 = 32 - REQ_SIZE_BITS;
const _: () = assert!(SMALL_REQUEST_THRESHOLD < 1 << REQ_SIZE_BITS);

impl SideEntry {
    /// The requested size of block `i` (meaningful while it is live).
    ///
    /// # Safety
    /// `e` points to a side entry; `i < STRICT_MAX_BLOCKS`.
    #[inline(always)]
    pub(crate) unsafe fn requested(e: *const SideEntry, i: usize) -> usize {
        // SAFETY: as said.
        (unsafe { *(*e).req.get_unchecked(i) } & ((1 << REQ_SIZE_BITS) - 1)) as usize
    }

    /// The carve clock at block `i`'s last carving.
    ///
    /// # Safety
    /// As [`SideEntry::requested`].
    #[inline(always)]
    pub(crate) unsafe fn born(e: *const SideEntry, i: usize) -> u32 {
        // SAFETY: as said.
        unsafe { *(*e).req.get_unchecked(i) >> REQ_SIZE_BITS }
    }

    /// Block `i` is carved at carve clock `clock` for `size` requested bytes.
    ///
    /// # Safety
    /// As [`SideEntry::requested`], `e` writable; `size <= SMALL_REQUEST_THRESHOLD`.
    #[inline(always)]
    pub(crate) unsafe fn set_carved(e: *mut SideEntry, i: usize, size: usize, clock: u32) {
        // SAFETY: as said.
        unsafe { *(*e).req.get_unchecked_mut(i) = size as u32 | clock << REQ_SIZE_BITS };
    }
}

/// Arenas the memcheck side table can describe (16 Ki arenas: 4 GiB of small blocks, more
/// than any program run under memcheck uses; beyond it new small requests fail like an
/// exhausted arena table). The table is reserved address space, touched as arenas are created.
pub const SIDE_ARENAS: usize = 1 << 14;

/// The page map (`meta`), on every path: from a page number to a `u32` entry, 0 for every page
/// that is not in a live arena; for a page of a live arena, bits 31 and 30 set, bits 24–29 the
/// size class of its pool while in use (0x3f before its first: the top byte is `0xC0 +
/// class`, see `meta::CLASS_TAG`), bits 0–23 the page index
/// `arena index × 64 + page` (under memcheck its side-table index). Invariants (checked by the
/// walker): a page has a nonzero entry iff it lies in a live arena, with that arena's index for
/// it, and the class of a pool in use is its header's `szidx`; entries are written before the
/// arena's first pool is handed out and cleared before its memory goes. A two-level
/// radix tree: user addresses on x86-64 (and AArch64 with 48-bit VAs) have at most 48 bits, 36
/// of page number: a root of 2^18 leaf pointers and leaves of 2^18 `u32` entries (1 MiB each,
/// address space touched as arenas are made).
pub const PAGE_MAP_LEAF_BITS: usize = 18;
/// Entries in the page map's root.
pub const PAGE_MAP_ROOT_LEN: usize = 1 << 18;

/// One entry of the arena table (pymalloc's `arena_object`).
///
/// Invariants:
/// - `address == 0` iff the slot holds no arena; such slots are on the `unused` list, linked
///   through `nextarena`.
/// - a slot with an arena is on the `usable` list iff `nfreepools > 0`; that list is sorted by
///   `nfreepools` ascending, so the most used arenas are allocated from first and the least used
///   ones get the chance to drain and be returned to the OS.
/// - `nfreepools == |freepools| + (address + ARENA_SIZE - pool_address) / POOL_SIZE`.
/// - `address` is written under the arena lock and read without it by `address_in_range`
///   (Acquire/Release): it is zeroed *before* the memory is given back.
#[repr(C)]
pub struct ArenaObject {
    /// Base address of the arena, or 0.
    pub address: AtomicUsize,
    /// Next never-carved pool.
    pub pool_address: usize,
    /// Pools that are empty (carved or not).
    pub nfreepools: u32,
    /// Pools in the arena.
    pub ntotalpools: u32,
    /// Empty carved pools, linked through `PoolHeader::nextpool`.
    pub freepools: *mut PoolHeader,
    /// Next arena on the usable or unused list.
    pub nextarena: *mut ArenaObject,
    /// Previous arena on the usable list.
    pub prevarena: *mut ArenaObject,
}

/// The arena lists (pymalloc's `usable_arenas`, `unused_arena_objects`, `nfp2lasta`), guarded
/// by the arena lock.
///
/// Invariants (checked by the walker):
/// - an arena object is on `unused` iff its `address` is 0 (no arena);
/// - `usable` holds exactly the live arenas with `nfreepools > 0`, sorted ascending;
/// - `nfp2lasta[n]` is null or the last arena on `usable` with `nfreepools == n`;
/// - `live` counts the table's slots with an arena, `empty` those whose pools are all empty
///   and carved.
pub(crate) struct ArenaLists {
    /// Slots without an arena, linked through `nextarena`.
    pub(crate) unused: *mut ArenaObject,
    /// Arenas with free pools, sorted by `nfreepools` ascending.
    pub(crate) usable: *mut ArenaObject,
    /// `nfp2lasta[n]`: the last arena on `usable` with `n` free pools (pymalloc 3.8's trick to
    /// keep the list sorted in O(1)).
    pub(crate) nfp2lasta: [*mut ArenaObject; POOLS_PER_ARENA + 1],
    /// Arenas alive.
    pub(crate) live: usize,
    /// Alive arenas whose pools are all empty and were carved (kept as spares, up to
    /// `arena::SPARE_ARENAS`, plus pymalloc's rightmost one).
    pub(crate) empty: usize,
}

// The memcheck quarantine (`memcheck::quarantine::Quarantine`) is defined, with its invariants,
// next to its code: its rings are `sys::Table` reservations, and `sys` comes after `types`.

/// A thread cache's states: never used by its thread yet…
pub(crate) const TC_FRESH: u8 = 0;
/// …registered (destructor set, on the registry list)…
pub(crate) const TC_ACTIVE: u8 = 1;
/// …registering (re-entrant calls during registration bypass the cache) or dead (thread
/// exiting): every request goes to the central heap.
pub(crate) const TC_BYPASS: u8 = 2;

/// One bin of a thread cache.
///
/// Invariant: the list at `head` is linked through the blocks' first word; while the cache is
/// `TC_ACTIVE`, `room` is the bin's cap minus the list's length (the free path's one test: a
/// push into a bin with no room, or into a cache that is not active, takes the slow path),
/// except inside the owner's slow path, where it may be one below 0 (wrapping); while it is
/// not, `room` and `cap` are 0 and the list is empty. The cap is at most the bin's limit
/// (`tcache::bin_limit`): a system or large bin's cap is its limit, a pool class's is set by each refill
/// and give-back (`tcache`'s "Caps"). A pool class's bin holds
/// free blocks of the class, out of their pools (counted in the class's `nused`); system bin
/// `k` (index `NB_SMALL_SIZE_CLASSES + k`) holds blocks that the program freed and glibc still
/// counts as in use, each a chunk of `SYS_MIN_CHUNK + 32k` to `SYS_MIN_CHUNK + 32k + 31` bytes
/// (see [`bin_of_chunk`]), pushed only while `meta::unbranched()`; large bin `j` (index
/// `NB_LINEAR_BINS + j`) likewise holds glibc's blocks whose chunk is of its sizes
/// ([`large_bin_of_chunk`]), pushed only while `tcache::large_bins_on()`. A system or large
/// bin's cap is its limit.
///
/// A view: the heads and the rooms of a cache's bins are two arrays (`TCache::heads`,
/// `TCache::rooms`), so that the fast paths reach a bin's head and room with the bin's index
/// scaled by 8 and by 4 in the access itself (a 16-byte `Bin` took a copy and a shift more in
/// both `malloc` and `free`: issue 15).
pub(crate) struct Bin<'a> {
    pub(crate) head: &'a mut *mut u8,
    /// Read by `stats` from other threads (relaxed), written only by the owner.
    pub(crate) room: &'a core::sync::atomic::AtomicU32,
    /// As `room`; written only in the owner's slow paths.
    pub(crate) cap: &'a core::sync::atomic::AtomicU16,
}

/// One thread's cache (see `tcache`).
///
/// Invariants: `state` is one of `TC_*`; a cache is on the registry list (linked through
/// `next`/`prev`) iff it is `TC_ACTIVE`; only its own thread touches its bins' lists and writes
/// `system_allocs`; a bin holds blocks only on path `Fast` (only that path pushes into one;
/// `malloc` mode activates caches, to count system requests, but never fills a bin), so the
/// entry points pop a bin before they test the path. Its rooms may be above 0 elsewhere, so a
/// push still needs the test.
/// `COUNTERS.system_allocs + Σ(listed caches' system_allocs)` = requests the system allocator
/// served so far (a cache adds its count to `COUNTERS` when it is unlisted).
pub(crate) struct TCache {
    /// Each bin's list ([`Bin::head`]).
    pub(crate) heads: [*mut u8; NB_BINS],
    /// Each bin's room ([`Bin::room`]).
    pub(crate) rooms: [core::sync::atomic::AtomicU32; NB_BINS],
    /// Each bin's cap ([`Bin::cap`]).
    pub(crate) caps: [core::sync::atomic::AtomicU16; NB_BINS],
    pub(crate) state: u8,
    pub(crate) next: *mut TCache,
    pub(crate) prev: *mut TCache,
    /// Requests this thread sent to the system allocator while its cache was active: counted
    /// here, not in one shared counter, so the large-block path writes no shared cache line
    /// (issue 15: a process-wide `fetch_add` on every large `malloc` made larson 1.5-2x glibc).
    /// Read by `stats` from other threads (relaxed), written only by the owner.
    pub(crate) system_allocs: core::sync::atomic::AtomicUsize,
    /// Pool blocks freed by `meta::FreeMode::Branchy`'s `free` so far (wrapping), and system
    /// blocks: what `tcache::count_system_free`'s check weighs, from the count at its last
    /// window (`system_mark`).
    pub(crate) pool_frees: u64,
    pub(crate) system_mark: u64,
    pub(crate) system_frees: u32,
    /// Consecutive windows of `tcache::count_system_free` that were heavy in system blocks.
    pub(crate) heavy_windows: u32,
    /// As `system_mark`, `system_frees` and `heavy_windows`, for the frees of glibc blocks of
    /// the large bins' sizes while they are off (`tcache::count_large_free`).
    pub(crate) large_mark: u64,
    pub(crate) large_frees: u32,
    pub(crate) large_heavy_windows: u32,
    /// Blocks the next refill of each pool class's bin asks the central heap for, 0 before the
    /// first (`tcache::refill`'s slow start). Invariant: 0, or between `tcache::FIRST_BATCH`
    /// and half the bin's limit.
    pub(crate) batch: [u16; NB_SMALL_SIZE_CLASSES],
    /// Refills and give-backs of pool classes' bins so far (the slow paths that reach the
    /// central heap; for tests, through the walker's report).
    pub(crate) trips: u32,
}

impl TCache {
    /// Takes one from bin `i`'s room: whether it was 0, and is now one below 0 (`u32::MAX`).
    /// A relaxed load and store, as one `dec` of the room in memory whose sign flag is the
    /// branch on x86-64: LLVM does not fold an atomic load, subtraction and store into one
    /// instruction when the flags are used (issue 15: the pool block's `free` 2 instructions
    /// shorter).
    #[inline(always)]
    pub(crate) fn take_room(&mut self, i: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            assert!(i < NB_BINS);
            // SAFETY: `rooms[i]` is a live, aligned `u32` (`i` checked above, the offset is
            // the field's). Only this cache's thread writes it (`&mut self`), so a plain `dec`
            // is the relaxed load and store; other threads' relaxed loads (`stats`) see the
            // old or the new value. A room is below 2^31, so the sign is set exactly when it
            // was 0.
            unsafe {
                core::arch::asm!(
                    "dec dword ptr [{tc} + {i} * 4 + {rooms}]",
                    "jns {room}",
                    tc = in(reg) core::ptr::from_mut(self),
                    i = in(reg) i,
                    rooms = const core::mem::offset_of!(TCache, rooms),
                    room = label { return false; },
                    options(nostack),
                );
            }
            true
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let room = &self.rooms[i];
            let (r, none) = room.load(Ordering::Relaxed).overflowing_sub(1);
            room.store(r, Ordering::Relaxed);
            none
        }
    }

    /// Bin `i` (a pool class, or `NB_SMALL_SIZE_CLASSES + k` for system bin `k`).
    #[inline(always)]
    pub(crate) fn bin(&mut self, i: usize) -> Bin<'_> {
        Bin {
            head: &mut self.heads[i],
            room: &self.rooms[i],
            cap: &self.caps[i],
        }
    }
}

/// Blocks a thread's memcheck frees wait in before their books are kept (see [`PendingFrees`]).
pub(crate) const PENDING_FREES: usize = 16;

/// One thread's memcheck frees whose books are not kept yet (`memcheck::pending`): memcheck has
/// been told of each (`MEMPOOL_FREE`), and one request to the real CPU (`host::free_batch`)
/// clears their live bits and puts them in the quarantine, in the order they were freed.
///
/// Invariants: `done <= count <= PENDING_FREES`; `slots[done..count]` are blocks of pools,
/// freed to memcheck and still live in the allocator's books (or not live at all: an invalid
/// or double free, which memcheck has reported and the books then ignore: also a block carved
/// again after `since[i]`, whose new owner's books are left alone), out of every list;
/// every other slot is 0 (the block is thread-local storage, which memcheck's leak check scans
/// as a root: an old address left in it would keep a block leaked later "still reachable");
/// `limit` is `PENDING_FREES` while `state` is `TC_ACTIVE` (the thread's destructor is set),
/// else 0, so that every free is kept at once; only its own thread touches it, and the real CPU
/// while that thread waits in the request.
#[repr(C)]
pub(crate) struct PendingFrees {
    pub(crate) count: usize,
    pub(crate) limit: usize,
    pub(crate) done: usize,
    pub(crate) state: usize,
    pub(crate) slots: [usize; PENDING_FREES],
    /// The carve clock (`memcheck::CARVES`) when each slot's free was made.
    pub(crate) since: [u32; PENDING_FREES],
}

/// Batches a size class keeps for thread caches (tcmalloc's "transfer cache"): at most this
/// many, of at most [`TRANSFER_BYTES`] worth of blocks in all.
pub const TRANSFER_SLOTS: usize = 32;

/// Most bytes of blocks a size class keeps in transfer batches: free blocks kept there keep
/// their pools, and so their arenas, from going back (a batch that does not fit goes back to
/// its pools block by block). 64 KiB: glibc-simple's run of 1 600 blocks of 16 and 32 B fits
/// whole (issue 15), 64 B's in part.
pub const TRANSFER_BYTES: usize = 64 << 10;

/// A chain of free blocks linked through their first word, as a thread cache gave it back.
#[derive(Clone, Copy)]
pub struct Batch {
    /// First block.
    pub head: *mut u8,
    /// Blocks in the chain.
    pub count: usize,
}

/// The global state of one size class. Everything but the atomic counters is guarded by `lock`.
///
/// Invariants: `used` lists exactly the pools of this class in the *used* state;
/// `pools` counts the pools of this class (used or full), `capacity` their blocks and
/// `nused` the sum of their `nused`. The first `ntransfer` entries of `transfer` are chains of
/// free blocks of this class (out of their pools, so counted in `nused`) holding
/// `transfer_blocks` blocks in all (at most [`TRANSFER_BYTES`] worth), each null-terminated
/// and of 2 to `tcache::piece(class)` blocks: a thread cache's give-back pushes its batch there
/// in O(1) and a refill (of that thread or another) pops it in O(1), so runs of frees and
/// producer/consumer patterns move whole batches instead of single blocks through pools.
#[repr(C, align(64))]
pub struct ClassState {
    /// Guards the fields below and every pool header of this class.
    pub lock: RawMutex,
    /// Head of the used-pool list (null when empty).
    pub used: UnsafeCell<*mut PoolHeader>,
    /// Pools of this class.
    pub pools: UnsafeCell<usize>,
    /// Blocks in those pools.
    pub capacity: UnsafeCell<usize>,
    /// Blocks out of those pools (with the program, cached, in transfer or quarantined).
    pub nused: UnsafeCell<usize>,
    /// Batches waiting to be handed to a thread cache.
    pub transfer: UnsafeCell<[Batch; TRANSFER_SLOTS]>,
    /// Batches in `transfer`.
    pub ntransfer: UnsafeCell<usize>,
    /// Blocks in those batches.
    pub transfer_blocks: UnsafeCell<usize>,
    /// Under memcheck, a memo of the used pool's side entry: `(pool, side entry)`, used while
    /// `used` is that pool. The page map's answer for a pool's address changes only when its
    /// arena goes, after the pool went back empty, which clears the memo
    /// (`pool::pool_changes_list`). Null pool: no memo.
    pub side_memo: UnsafeCell<(*mut PoolHeader, *mut SideEntry)>,
}

// SAFETY: every non-atomic field is accessed only with `lock` held (under memcheck: the
// serialisation lock, or on the real CPU while no other thread runs and none holds it,
// `memcheck::host`).
unsafe impl Sync for ClassState {}

impl ClassState {
    /// A class with no pools.
    pub const fn new() -> Self {
        ClassState {
            lock: RawMutex::new(),
            used: UnsafeCell::new(ptr::null_mut()),
            pools: UnsafeCell::new(0),
            capacity: UnsafeCell::new(0),
            nused: UnsafeCell::new(0),
            transfer: UnsafeCell::new(
                [Batch {
                    head: ptr::null_mut(),
                    count: 0,
                }; TRANSFER_SLOTS],
            ),
            ntransfer: UnsafeCell::new(0),
            transfer_blocks: UnsafeCell::new(0),
            side_memo: UnsafeCell::new((ptr::null_mut(), ptr::null_mut())),
        }
    }
}

/// A pthread mutex: futex-fast when uncontended, never allocates, and understood by helgrind and
/// DRD (a spin lock on atomics would make every recycled block look like a data race to them).
pub struct RawMutex(UnsafeCell<libc::pthread_mutex_t>);

// SAFETY: a pthread mutex is made to be shared between threads.
unsafe impl Sync for RawMutex {}

impl RawMutex {
    /// An unlocked mutex (static initialiser, no call needed).
    pub const fn new() -> Self {
        RawMutex(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER))
    }

    /// Locks; the guard unlocks. Inside the calling thread's own fork window (it holds every
    /// allocator lock, see [`FORK_HOLDER`]) the mutex is already its own: the guard then holds
    /// nothing, and the fork handler that took the lock lets it go.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_> {
        // SAFETY: the mutex is initialised (static initialiser) and lives as long as `self`.
        if unsafe { libc::pthread_mutex_trylock(self.0.get()) } == 0 {
            return MutexGuard(Some(self));
        }
        self.lock_contended()
    }

    /// The half of [`RawMutex::lock`] that finds the mutex held: by the calling thread itself
    /// only in its fork window, otherwise by another thread, for which it waits. Out of line,
    /// not cold: threads that share a class contend often.
    #[inline(never)]
    fn lock_contended(&self) -> MutexGuard<'_> {
        if in_own_fork_window() {
            return MutexGuard(None);
        }
        // SAFETY: as in `lock`.
        unsafe { libc::pthread_mutex_lock(self.0.get()) };
        MutexGuard(Some(self))
    }

    /// Locks if no thread (this one included) holds the mutex; `None` otherwise.
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_>> {
        // SAFETY: as in `lock`.
        (unsafe { libc::pthread_mutex_trylock(self.0.get()) } == 0)
            .then_some(MutexGuard(Some(self)))
    }

    /// Locks without a guard (fork handlers).
    ///
    /// # Safety
    /// The caller must call [`RawMutex::force_unlock`] exactly once later, on the same thread.
    pub unsafe fn raw_lock(&self) {
        // SAFETY: as in `lock`.
        unsafe { libc::pthread_mutex_lock(self.0.get()) };
    }

    /// Unlocks a mutex locked by [`RawMutex::raw_lock`].
    ///
    /// # Safety
    /// The calling thread must hold the lock.
    pub unsafe fn force_unlock(&self) {
        // SAFETY: the caller holds the lock.
        unsafe { libc::pthread_mutex_unlock(self.0.get()) };
    }

    /// Re-initialises the mutex to unlocked (in a fork child, where the holder may not exist).
    ///
    /// # Safety
    /// No other thread may use the mutex (true in a fork child).
    pub unsafe fn reinit(&self) {
        // SAFETY: no concurrent use; writing the static initialiser is what pthread allows.
        unsafe { ptr::write(self.0.get(), libc::PTHREAD_MUTEX_INITIALIZER) };
    }
}

/// Unlocks on drop the mutex it took (`None`: a lock granted in the thread's own fork window,
/// which this guard did not take).
pub struct MutexGuard<'a>(Option<&'a RawMutex>);

impl Drop for MutexGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(m) = self.0 {
            // SAFETY: the guard exists only while this thread holds the lock.
            unsafe { libc::pthread_mutex_unlock(m.0.get()) };
        }
    }
}

/// The thread that holds every allocator lock across `fork()` ([`thread_id`]; 0 when no fork is
/// under way). The fork handlers take the locks in `prepare` and let them go in `parent` and
/// `child`; a handler registered before them runs inside that window on the same thread
/// (`prepare` handlers run last-registered first, the others first-registered first). If such
/// a handler allocates or frees, every lock the allocator asks for is already the thread's own,
/// and no other thread can run a critical section: [`RawMutex::lock`] grants it without taking
/// it, and the memcheck serialisation lock sees its owner. Without this such a handler waited
/// for itself.
static FORK_HOLDER: AtomicUsize = AtomicUsize::new(0);

/// Opens the calling thread's fork window, once it holds every allocator lock.
pub fn open_fork_window() {
    FORK_HOLDER.store(thread_id(), Ordering::Relaxed);
}

/// Closes the fork window, before the locks are let go (parent) or re-initialised (child).
pub fn close_fork_window() {
    FORK_HOLDER.store(0, Ordering::Relaxed);
}

/// Whether the calling thread is in its own fork window. Only the thread itself can have stored
/// its id, so a relaxed read is exact for "is it me" (in a fork child, the forking thread keeps
/// its thread pointer).
pub(crate) fn in_own_fork_window() -> bool {
    FORK_HOLDER.load(Ordering::Relaxed) == thread_id()
}

/// A unique id of the calling thread, never 0: its thread pointer (one instruction on x86-64
/// Linux, where `fs:0` holds it; `pthread_self` elsewhere, which returns the same value).
#[inline(always)]
pub fn thread_id() -> usize {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let tp: usize;
        // SAFETY: on x86-64 Linux fs:0 is the TCB's self pointer; the asm only reads it.
        unsafe {
            core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp,
                options(nostack, readonly, preserves_flags));
        }
        tp
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    // SAFETY: pthread_self has no preconditions.
    unsafe {
        libc::pthread_self() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every C `malloc` up to 1024 bytes finds a bin whose blocks hold it, and the system block a
    /// bin's miss asks glibc for comes back to that bin when freed (glibc makes a request of `n`
    /// bytes a chunk of `(n + 8)` rounded up to 16, at least 32).
    #[test]
    fn every_request_up_to_1024_bytes_has_a_bin_that_its_own_blocks_return_to() {
        let chunk = |n: usize| ((n + 8 + 15) & !15).max(32);
        for size in 0..=SYS_CACHE_MAX_REQUEST {
            let bin = bin_of_request_by_arithmetic(size);
            assert!(bin < NB_LINEAR_BINS, "{size}");
            if size <= SMALL_REQUEST_THRESHOLD {
                assert_eq!(bin, size_class(size), "{size}");
                // The table: the class or, while it is merged, its carrier.
                let now = bin_of_request(size);
                assert!(now == bin || now == carrier(bin), "{size}: {now}");
                continue;
            }
            assert_eq!(bin_of_request(size), bin, "{size}");
            let k = bin - NB_SMALL_SIZE_CLASSES;
            assert!(sys_bin_request(k) >= size, "{size}");
            assert_eq!(bin_of_chunk(chunk(sys_bin_request(k))), bin, "{size}");
            // The smallest block the bin may hold fits `size`; the bin below's does not all.
            assert!(SYS_MIN_CHUNK + (k << SYS_BIN_STEP_SHIFT) - 8 >= size);
            if k > 0 {
                assert!(sys_bin_request(k - 1) < size, "{size}");
            }
        }
    }

    /// A chunk's flag bits do not move it; an mmapped one and ones out of the bins' sizes are
    /// in no bin.
    #[test]
    fn chunks_outside_the_system_bins_sizes_or_mmapped_have_no_bin() {
        for h in [
            0,
            8,
            32 | 1,
            SYS_MIN_CHUNK - 16,
            SYS_MIN_CHUNK - 9,
            1088,
            1 << 20,
        ] {
            assert!(bin_of_chunk(h) >= NB_LINEAR_BINS, "{h:#x}");
        }
        // The smallest mmapped chunk, a page.
        assert!(bin_of_chunk(4096 | 2) >= NB_LINEAR_BINS);
        assert_eq!(bin_of_chunk(SYS_MIN_CHUNK | 1 | 4), NB_SMALL_SIZE_CLASSES);
        assert_eq!(bin_of_chunk(1056 | 7), NB_LINEAR_BINS - 1);
        assert_eq!(select_below(1, 2, (7, 5), (8, 6)), (7, 5));
        assert_eq!(select_below(2, 2, (7, 5), (8, 6)), (8, 6));
        assert_eq!(select_below(usize::MAX, 2, (7, 5), (8, 6)), (8, 6));
    }
    /// Every C `malloc` of 1025..=16 376 bytes finds a large bin whose blocks all hold it, the
    /// block its miss asks glibc for comes back to that bin, and the bin below would not do
    /// (glibc's chunk of a request: `(n + 8)` rounded up to 16). Every chunk a large bin holds
    /// (flags aside) has room for the bin's request; mmapped ones, and sizes out of the bins'
    /// range or in the system bins', have no large bin.
    #[test]
    fn every_request_from_1025_to_16376_bytes_has_a_large_bin_that_its_own_blocks_return_to() {
        let chunk = |n: usize| ((n + 8 + 15) & !15).max(32);
        for size in SYS_CACHE_MAX_REQUEST + 1..=LARGE_BIN_MAX_REQUEST {
            let bin = large_bin_of_request(size);
            assert!((NB_LINEAR_BINS..NB_BINS).contains(&bin), "{size}");
            let request = large_bin_request(bin);
            assert!(request >= size, "{size}: {request}");
            assert_eq!(large_bin_of_chunk(chunk(request)), bin, "{size}");
            assert_eq!(system_bin_of_chunk(chunk(request) | 1 | 4), bin, "{size}");
            if bin > NB_LINEAR_BINS {
                assert!(large_bin_request(bin - 1) < size, "{size}");
            }
            // At most an eighth more than glibc's own chunk.
            assert!(chunk(request) * 8 <= chunk(size) * 9, "{size}");
        }
        for c in (16..LARGE_BIN_CHUNK_END + 4096).step_by(16) {
            let bin = large_bin_of_chunk(c | 1);
            if bin == usize::MAX {
                assert!(
                    !(large_bin_chunk(0)..LARGE_BIN_CHUNK_END).contains(&c),
                    "{c}"
                );
                continue;
            }
            assert!((NB_LINEAR_BINS..NB_BINS).contains(&bin), "{c}");
            assert!(c - 8 >= large_bin_request(bin), "{c}");
            assert_eq!(system_bin_of_chunk(c), bin, "{c}");
            assert!(bin_of_chunk(c) >= NB_LINEAR_BINS, "{c}: a system bin's too");
        }
        assert_eq!(large_bin_of_chunk(4096 | 2), usize::MAX, "mmapped");
        assert_eq!(large_bin_of_chunk(1136), usize::MAX);
        assert_eq!(large_bin_of_chunk(LARGE_BIN_CHUNK_END), usize::MAX);
        assert_eq!(system_bin_of_chunk(SYS_MIN_CHUNK), NB_SMALL_SIZE_CLASSES);
        assert!(system_bin_of_chunk(1088) >= NB_BINS);
        assert!(system_bin_of_chunk(0) >= NB_BINS);
    }
}
