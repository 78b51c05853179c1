//! poolgrind (crate overview is written with the allocator; see `alloc`).
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod alloc;
pub mod capi;
pub mod check;
pub mod cli;
pub mod supp;

pub use alloc::debug;
pub use alloc::global::PoolAlloc;
pub use alloc::raw;
pub use alloc::stats::{stats, ClassStats, Stats};
