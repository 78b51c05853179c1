//! Debug mode's block guards (`POOLGRIND_MODE=debug`, the analogue of CPython's debug hooks).
//!
//! Debug-mode block layout (`n` requested bytes, the class chosen for `n + 24`):
//!
//! ```text
//!  block                    user pointer
//!  |                        |
//!  [ n: u64 ][ FD x 8 ]     [ n bytes of data, CD on alloc ][ FD x 8 ][ rest of class ]
//! ```
//!
//! On free: a clear `live` bit means double (or invalid) free; a changed guard byte means an
//! underflow or overflow. Either prints a message to stderr and aborts. Freed blocks are
//! filled with DD.

use core::fmt::Write;

use super::pool;
use super::sys::FmtBuf;
use super::types::*;

const FORBIDDEN: u8 = 0xFD;
const CLEAN: u8 = 0xCD;
const DEAD: u8 = 0xDD;
const GUARD: usize = 8;
const PREFIX: usize = 16;

/// Lays out a fresh debug-mode block and returns the user pointer.
///
/// # Safety
/// `b` is a block of `class` just taken from the heap, with `size + 24 <= class_size(class)`.
pub(crate) unsafe fn on_alloc(b: *mut u8, size: usize, class: usize, zeroed: bool) -> *mut u8 {
    let _ = class;
    // SAFETY: the block holds PREFIX + size + GUARD bytes (class_for checked it).
    unsafe {
        pool::mark_live(b);
        b.cast::<u64>().write(size as u64);
        b.add(8).write_bytes(FORBIDDEN, GUARD);
        let p = b.add(PREFIX);
        p.write_bytes(if zeroed { 0 } else { CLEAN }, size);
        p.add(size).write_bytes(FORBIDDEN, GUARD);
        p
    }
}

/// Checks a debug-mode block being freed; returns the block start. Aborts with a message on a
/// double free or a damaged guard.
///
/// # Safety
/// `p` lies in one of our pools of `class`.
pub(crate) unsafe fn on_free(p: *mut u8, class: usize) -> *mut u8 {
    let b = p.wrapping_sub(PREFIX);
    // SAFETY: `b` is in the same pool as `p` when `p` is a user pointer; clear_live checks that
    // it is a block boundary before anything else is read.
    unsafe {
        if PoolHeader::of(b) != PoolHeader::of(p) || !pool::clear_live(b) {
            fail(
                p,
                "double free or free of a pointer that is not a live block",
                None,
            );
        }
        let size = b.cast::<u64>().read() as usize;
        let cap = class_size(class);
        if size + PREFIX + GUARD > cap {
            fail(p, "block header damaged (buffer underflow?)", None);
        }
        for i in 0..GUARD {
            if *b.add(8 + i) != FORBIDDEN {
                fail(
                    p,
                    "buffer underflow: guard byte before the block overwritten",
                    Some(i as isize - GUARD as isize),
                );
            }
        }
        for i in 0..GUARD {
            if *p.add(size + i) != FORBIDDEN {
                fail(
                    p,
                    "buffer overflow: guard byte after the block overwritten",
                    Some((size + i) as isize),
                );
            }
        }
        b.write_bytes(DEAD, cap);
    }
    b
}

/// Requested size of a live debug-mode block.
///
/// # Safety
/// `p` is a live debug-mode user pointer.
pub(crate) unsafe fn requested_size(p: *const u8) -> usize {
    // SAFETY: the size is stored PREFIX bytes before the user pointer.
    unsafe { p.sub(PREFIX).cast::<u64>().read() as usize }
}

#[cold]
fn fail(p: *const u8, what: &str, offset: Option<isize>) -> ! {
    let mut w = FmtBuf::<256>::new();
    let _ = write!(w, "poolgrind debug: {what}: block {p:p}");
    if let Some(o) = offset {
        let _ = write!(w, ", at offset {o}");
    }
    let _ = writeln!(w);
    w.write_stderr();
    // SAFETY: abort has no preconditions; never unwinds.
    unsafe { libc::abort() }
}
