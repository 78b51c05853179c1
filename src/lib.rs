//! # poolgrind
//!
//! A fast pool allocator with CPython pymalloc's design that Valgrind's memcheck can see
//! through, and a command-line tool that runs whole test suites under memcheck.
//!
//! CPython switches pymalloc off under Valgrind (`PYTHONMALLOC=malloc`) because memcheck cannot
//! see inside its pools, and because pymalloc's `address_in_range` deliberately reads memory
//! that may be uninitialised or not its own (Misc/README.valgrind). poolgrind keeps its pools
//! on and tells memcheck the truth with client requests: under memcheck every pool block is a
//! heap block of exactly the requested size, so leaks, use-after-free, overflows and
//! uninitialised reads inside pools are reported with the program's own stack, and a clean
//! program shows 0 errors without a suppression file. As memcheck's own malloc does, the
//! allocator keeps its books under memcheck on the real CPU (one `VALGRIND_NON_SIMD_CALL1`
//! request for a common `malloc`, one for sixteen `free`s), and the frame that hands a block out
//! or takes it back tells memcheck.
//!
//! ## Memory layers
//!
//! ```text
//!   program ──► PoolAlloc (Rust #[global_allocator])   libpoolgrind.so (C malloc, LD_PRELOAD)
//!                    │  layout known                      │  pointer only: the page map
//!                    └───────────────┬────────────────────┘    (+ address_in_range's classic
//!                                    │                            read under memcheck)
//!                          ≤ 512 B, align ≤ 16 │            > 512 B or align > 16
//!                                              ▼                     ▼
//!                       thread cache (one bin per class)       system malloc (glibc)
//!                       natively, behind the C malloc, + 17 system bins: glibc's blocks of
//!                       513..1024 B that the program freed, for its next malloc of their size,
//!                       + 32 large bins (1025..16 376 B, 8 a doubling; an overflow leaves
//!                       half in the bin's exchange slot, for another thread's miss)
//!                                              │ batches: a bin over its cap goes back
//!                                              ▼ whole, kept for the next refill
//!                 central heap: per-class transfer batches (≤ 32, ≤ 64 KiB) and used-pool
//!                 lists ─ one mutex per class
//!                                              │ empty pools
//!                                              ▼
//!      arenas (256 KiB) ─ sorted by free pools ─ given back when empty; natively all in one
//!      reserved range (arena i at i × 256 KiB); under memcheck, system allocator blocks
//! ```
//!
//! ## Arena → pool → block
//!
//! ```text
//!  arena (256 KiB, page aligned)
//!  ┌──────────┬──────────┬──────────┬─────┬──────────┐
//!  │  pool 0  │  pool 1  │  pool 2  │ ... │ pool 63  │      pools carved lazily
//!  └──────────┴──────────┴──────────┴─────┴──────────┘
//!  pool (4 KiB: one page, one size class)
//!  ┌────────────────┬───────┬───────┬───────┬─────┬───────────┐
//!  │ header (80 B)  │ block │ block │ block │ ... │  virgin   │
//!  │ arenaindex @0  │       │ (free)│       │     │ (uncarved)│
//!  └────────────────┴───────┴───────┴───────┴─────┴───────────┘
//!  under memcheck each block has memcheck's malloc gap on both sides (32 NOACCESS bytes by
//!  default, 64 between two blocks, first and last block included), and the header
//!  (NOACCESS) keeps only the arena index: the pool's metadata lives in a side table
//!
//!  page map (every path): page number ──► leaf ──► entry id (0: not a pool of ours);
//!  natively also a flat array over the arenas' range: (p − range start) / 4 KiB ──► entry
//!  memcheck's side table (alloc::types::SideEntry), indexed by that id:
//!                                                  ┌ header fields (lists, bitmaps, counts)
//!                                                  └ requested size of each live block
//! ```
//!
//! ## Size classes (64-bit)
//!
//! | request (bytes) | block | class | native | memcheck | ratio | `--redzone-size=64` |
//! |-----------------|------:|------:|-------:|---------:|------:|--------------:|
//! | 0 – 16          |    16 |     0 |    251 |       50 |  0.20 |            22 |
//! | 17 – 32         |    32 |     1 |    125 |       41 |  0.33 |            20 |
//! | 33 – 48         |    48 |     2 |     83 |       35 |  0.42 |            19 |
//! | 49 – 64         |    64 |     3 |     62 |       31 |  0.50 |            17 |
//! | 65 – 80         |    80 |     4 |     50 |       27 |  0.54 |            16 |
//! | 81 – 96         |    96 |     5 |     41 |       25 |  0.61 |            15 |
//! | 97 – 112        |   112 |     6 |     35 |       22 |  0.63 |            14 |
//! | 113 – 128       |   128 |     7 |     31 |       20 |  0.65 |            13 |
//! | 129 – 144       |   144 |     8 |     27 |       19 |  0.70 |            13 |
//! | 145 – 160       |   160 |     9 |     25 |       17 |  0.68 |            12 |
//! | 161 – 176       |   176 |    10 |     22 |       16 |  0.73 |            11 |
//! | 177 – 192       |   192 |    11 |     20 |       15 |  0.75 |            11 |
//! | 193 – 208       |   208 |    12 |     19 |       14 |  0.74 |            10 |
//! | 209 – 224       |   224 |    13 |     17 |       13 |  0.76 |            10 |
//! | 225 – 240       |   240 |    14 |     16 |       13 |  0.81 |            10 |
//! | 241 – 256       |   256 |    15 |     15 |       12 |  0.80 |             9 |
//! | 257 – 272       |   272 |    16 |     14 |       11 |  0.79 |             9 |
//! | 273 – 288       |   288 |    17 |     13 |       11 |  0.85 |             8 |
//! | 289 – 304       |   304 |    18 |     13 |       10 |  0.77 |             8 |
//! | 305 – 320       |   320 |    19 |     12 |       10 |  0.83 |             8 |
//! | 321 – 336       |   336 |    20 |     11 |       10 |  0.91 |             8 |
//! | 337 – 352       |   352 |    21 |     11 |        9 |  0.82 |             7 |
//! | 353 – 368       |   368 |    22 |     10 |        9 |  0.90 |             7 |
//! | 369 – 384       |   384 |    23 |     10 |        8 |  0.80 |             7 |
//! | 385 – 400       |   400 |    24 |     10 |        8 |  0.80 |             7 |
//! | 401 – 416       |   416 |    25 |      9 |        8 |  0.89 |             6 |
//! | 417 – 432       |   432 |    26 |      9 |        8 |  0.89 |             6 |
//! | 433 – 448       |   448 |    27 |      8 |        7 |  0.88 |             6 |
//! | 449 – 464       |   464 |    28 |      8 |        7 |  0.88 |             6 |
//! | 465 – 480       |   480 |    29 |      8 |        7 |  0.88 |             6 |
//! | 481 – 496       |   496 |    30 |      8 |        7 |  0.88 |             6 |
//! | 497 – 512       |   512 |    31 |      7 |        6 |  0.86 |             5 |
//!
//! Class `c` serves requests of `16c + 1 ..= 16(c + 1)` bytes; requests over 512 bytes or
//! aligned to more than 16 go to the system allocator. Blocks per pool: `(4096 - 80) / stride`,
//! where the stride is the block size natively and, under memcheck, the block size plus the
//! gap memcheck's own malloc leaves on each side of its blocks (`--redzone-size` 16, its
//! default: a 24-byte red zone and an 8-byte size field, 32 bytes; 64: 80 bytes), so that every
//! access memcheck's malloc would report as outside any block is outside one here too. The
//! cost is 5× the pools in the 16-byte class, 1.2–1.3× from 256 bytes up. Under memcheck a
//! class whose blocks no longer fit 4 to a pool (`--redzone-size` above 232) goes to
//! memcheck's own malloc. The table is checked against the code by a unit test
//! (`alloc::config`).
//!
//! **Carriers.** Natively, with thread caches, a pointer-only request (the C `malloc`,
//! `calloc`, `realloc` and `memalign` family, [`raw`]) of 97–512 bytes first takes a block of one of five carrier classes, 128, 192, 256,
//! 384 and 512 bytes (`alloc::types::carrier`); a carrier whose pools grow past four gives its
//! classes their own pools from then on. A cached block keeps its pool, a page, so a program
//! using many of these classes a block at a time kept a page for each (issue 15: espresso). A
//! Rust layout's block always comes from its own class: `dealloc` names the class by the size.
//!
//! ## Where things live
//!
//! - `src/alloc/`: the allocator, its modules in dependency order (`alloc/mod.rs` has the
//!   table): `types` holds every structure and invariant (read it first), `config` the
//!   environment options table and the path each request takes, `track` is the only module
//!   that talks to Valgrind, `dispatch` the one table of entry point × path;
//!   [`debug::check_heap`] is the invariant walker tests run after every step. The internals
//!   are private to the crate.
//! - [`PoolAlloc`] (Rust), [`raw`] (pointer-only API) and [`capi`] (C ABI, preload).
//! - [`check`]: running programs under memcheck and reading its XML; [`cli`]: the `poolgrind`
//!   command; [`supp`]: suppression files.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod alloc;
pub mod capi;
#[cfg(feature = "cli")]
pub mod check;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod supp;

pub use alloc::debug;
pub use alloc::global::PoolAlloc;
pub use alloc::raw;
pub use alloc::stats::{stats, ClassStats, Stats};

/// With the `dogfood` feature every binary linked with this crate — poolgrind's own CLI and test
/// binaries included — allocates through [`PoolAlloc`]: `ci/memcheck` runs poolgrind's test
/// suite that way under memcheck.
#[cfg(feature = "dogfood")]
#[global_allocator]
static DOGFOOD: PoolAlloc = PoolAlloc::new();
