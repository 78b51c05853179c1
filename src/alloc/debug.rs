//! Tools for tests and debugging: the heap invariant walker ([`check_heap`]) and a way to reach
//! a state where pool counts are exact ([`flush_current_thread`]).

use super::config::{self, Path};
use super::pool::CLASSES;
use super::types::NB_SMALL_SIZE_CLASSES;
use super::{arena, serial, walk};

/// Gives every block of the calling thread's cache back to the central heap, and every
/// transfer batch (blocks that thread caches gave back, kept for the next refill) back to its
/// pools: a pool then holds blocks only if the program or another thread's cache does.
pub fn flush_current_thread() {
    super::tcache::flush_current_thread();
    super::pool::drain_transfer();
}
pub use super::walk::HeapReport;

/// Walks every arena, pool and list and checks the invariants written in the allocator's
/// `types` module. Takes every allocator lock (class locks, then the arena lock), so it is slow
/// and meant for tests. Before the first allocation the heap is empty and passes.
pub fn check_heap() -> Result<HeapReport, String> {
    if config::path() == Path::Uninit || !config::pools_on() || arena::table().is_null() {
        return Ok(HeapReport::default());
    }
    let _serial = serial::serialize();
    let guards: [_; NB_SMALL_SIZE_CLASSES] = core::array::from_fn(|c| CLASSES[c].lock.lock());
    // SAFETY: every class lock is held until `guards` is dropped.
    let r = walk::walk().map_err(|b| unsafe { b.message() });
    drop(guards);
    // Allocating only now, with the locks released.
    r.map_err(|m| m.as_str().to_owned())
}
