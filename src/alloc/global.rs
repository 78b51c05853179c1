//! `PoolAlloc`: the `GlobalAlloc` implementation. The layout tells the size class, so no
//! `address_in_range` is needed on this path. Each method is the entry point of one row of
//! `dispatch`'s table.

use core::alloc::{GlobalAlloc, Layout};

use super::dispatch;

/// The pool allocator, usable as `#[global_allocator]`:
///
/// ```
/// #[global_allocator]
/// static GLOBAL: poolgrind::PoolAlloc = poolgrind::PoolAlloc::new();
/// # fn main() { let v = vec![1u8; 10]; assert_eq!(v.len(), 10); }
/// ```
///
/// Every `PoolAlloc` value shares the one allocator state of the process (statics), so it can
/// also be called directly through [`GlobalAlloc`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolAlloc;

impl PoolAlloc {
    /// The allocator (a zero-sized handle to the process-wide state).
    pub const fn new() -> Self {
        PoolAlloc
    }
}

// SAFETY: blocks are valid for `layout.size()` bytes at `layout.align()` (pool blocks are
// 16-aligned and at least the class size; larger or over-aligned requests come from the system
// allocator with the requested alignment); a block is never handed out twice while live.
unsafe impl GlobalAlloc for PoolAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let b = dispatch::alloc_fast(layout.size(), layout.align());
        if !b.is_null() {
            return b;
        }
        dispatch::alloc(layout.size(), layout.align(), false, false)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        dispatch::alloc(layout.size(), layout.align(), true, false)
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: `p` was allocated by PoolAlloc with `layout` (the caller's contract).
        unsafe {
            if !dispatch::free_fast_sized(p, layout.size(), layout.align()) {
                dispatch::free_sized(p, layout.size(), layout.align());
            }
        }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded (the caller's contract for `realloc`).
        unsafe { dispatch::realloc_sized(p, layout.size(), layout.align(), new_size) }
    }
}
