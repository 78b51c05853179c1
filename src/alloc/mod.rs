//! The allocator. `types` is the hub (structures and invariants); `track` is the only module
//! that talks to Valgrind; the rest is terse.

pub mod debug;
pub(crate) mod front;
pub mod global;
pub(crate) mod heap;
pub mod options;
pub mod raw;
pub mod stats;
pub(crate) mod sys;
pub(crate) mod tcache;
pub mod track;
pub mod types;
