//! poolgrind (crate overview is written with the allocator; see `alloc`).
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod check;
pub mod cli;
pub mod supp;
