//! `PoolAlloc`: the `GlobalAlloc` implementation. The layout tells the size class, so no
//! `address_in_range` is needed on this path.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

use super::front::{self, class_for};
use super::heap::{self, PATH_FAST, PATH_MEMCHECK};
use super::sys;
use super::tcache;
use super::types::{size_class, ALIGNMENT, SMALL_REQUEST_THRESHOLD};

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

#[inline(always)]
fn small(layout: &Layout) -> Option<usize> {
    if layout.align() <= ALIGNMENT {
        class_for(layout.size())
    } else {
        None
    }
}

/// Every allocation but a thread-cache hit, and every zeroed one: memcheck, initialisation, the
/// general front end.
#[inline(never)]
fn alloc_slow(layout: Layout, zeroed: bool) -> *mut u8 {
    if layout.size() <= SMALL_REQUEST_THRESHOLD && layout.align() <= ALIGNMENT {
        if let Some(b) = front::memcheck_path_alloc(layout.size(), zeroed) {
            return b;
        }
    }
    heap::ensure_init();
    match small(&layout) {
        Some(c) => front::small_alloc(c, layout.size(), zeroed),
        None => front::large_alloc(layout.size(), layout.align(), zeroed),
    }
}

/// Every deallocation but a thread-cache one.
///
/// # Safety
/// `p` was allocated by [`PoolAlloc`] with `layout`.
#[inline(never)]
unsafe fn dealloc_slow(p: *mut u8, layout: Layout) {
    if layout.size() <= SMALL_REQUEST_THRESHOLD
        && layout.align() <= ALIGNMENT
        && heap::path() == PATH_MEMCHECK
    {
        // SAFETY: on this path the block came from the class of its size.
        return unsafe { front::memcheck_small_free(p, size_class(layout.size())) };
    }
    match small(&layout) {
        // SAFETY: `p` was allocated with this layout, hence from this class.
        Some(c) => unsafe { front::small_free(p, c) },
        // SAFETY: `p` was allocated by the system allocator with this layout.
        None => unsafe { sys::free(p) },
    }
}

// SAFETY: blocks are valid for `layout.size()` bytes at `layout.align()` (pool blocks are
// 16-aligned and at least the class size; larger or over-aligned requests come from the system
// allocator with the requested alignment); a block is never handed out twice while live.
unsafe impl GlobalAlloc for PoolAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // The thread-cache hit apart from everything else (see `raw::malloc`).
        if layout.size() <= SMALL_REQUEST_THRESHOLD
            && layout.align() <= ALIGNMENT
            && heap::path() == PATH_FAST
        {
            let b = tcache::try_alloc(size_class(layout.size()));
            if !b.is_null() {
                return b;
            }
        }
        alloc_slow(layout, false)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        alloc_slow(layout, true)
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if layout.size() <= SMALL_REQUEST_THRESHOLD
            && layout.align() <= ALIGNMENT
            && heap::path() == PATH_FAST
            // SAFETY: on this path `class_for(size) == size_class(size)`: the block came from
            // this class's pools.
            && unsafe { tcache::try_free(p, size_class(layout.size())) }
        {
            return;
        }
        // SAFETY: forwarded.
        unsafe { dealloc_slow(p, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = small(&layout);
        // SAFETY: the caller guarantees new_size rounded up to align does not overflow.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = small(&new_layout);
        if let Some(c) = old {
            if front::resize_in_place(c, new) {
                return p;
            }
        } else if new.is_none() && layout.align() <= ALIGNMENT && new_size <= front::MAX_REQUEST {
            // SAFETY: `p` is a live system block.
            return unsafe { sys::realloc(p, new_size) };
        }
        // SAFETY: new_layout is valid (caller's contract); copy the smaller of the two sizes.
        unsafe {
            let q = self.alloc(new_layout);
            if !q.is_null() {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
            q
        }
    }
}
