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
//! program shows 0 errors without a suppression file.
//!
//! ## Memory layers
//!
//! ```text
//!   program ──► PoolAlloc (Rust #[global_allocator])   libpoolgrind.so (C malloc, LD_PRELOAD)
//!                    │  layout known                      │  pointer only: address_in_range
//!                    └───────────────┬────────────────────┘
//!                          ≤ 512 B, align ≤ 16 │            > 512 B or align > 16
//!                                              ▼                     ▼
//!                       thread cache (one bin per class)       system malloc (glibc)
//!                                              │ batches
//!                                              ▼
//!                 central heap: per-class used-pool lists ─ one mutex per class
//!                                              │ empty pools
//!                                              ▼
//!             arenas (256 KiB, mmap) ─ sorted by free pools ─ given back when empty
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
//!  under memcheck each block is followed by a 16-byte NOACCESS red zone, and the header
//!  (NOACCESS) keeps only the arena index: the pool's metadata lives in a side table
//!
//!  memcheck's side table (alloc::types::SideEntry)
//!  page map: page number ──► leaf ──► entry id ──► ┌ header fields (lists, bitmaps, counts)
//!                                                  └ requested size of each live block
//! ```
//!
//! ## Size classes (64-bit)
//!
//! | request (bytes) | block size | class | blocks per pool (native / memcheck) |
//! |-----------------|------------|-------|-------------------------------------|
//! | 0 – 16          | 16         | 0     | 251 / 125                           |
//! | 17 – 32         | 32         | 1     | 125 / 83                            |
//! | 33 – 48         | 48         | 2     | 83 / 62                             |
//! | …               | …          | …     | …                                   |
//! | 497 – 512       | 512        | 31    | 7 / 7                               |
//!
//! Class `c` serves requests of `16c + 1 ..= 16(c + 1)` bytes; requests over 512 bytes or
//! aligned to more than 16 go to the system allocator. The memcheck red zones cost up to half a
//! pool's capacity in the smallest class and nothing in the largest (see `alloc::types`).
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
