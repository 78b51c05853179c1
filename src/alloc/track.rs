//! The one door to Valgrind: every client request the allocator makes passes through here.
//!
//! Each function is a no-op unless [`init`] found us running under Valgrind; the check is a
//! relaxed load of a flag cached at start-up, so natively each call site costs one predictable
//! branch (the `valgrind_overhead` benchmark measures it against a build with the `valgrind`
//! feature off, where this module compiles to nothing).
//!
//! What memcheck is told (the "truth" the crate overview talks about):
//! - arenas are NOACCESS when created; memcheck never learns about them as blocks;
//! - a pool header is NOACCESS to the program and DEFINED only between [`open_header`] and
//!   [`close_header`], while the allocator works on it;
//! - a block handed out is a mempool chunk of exactly the requested size ([`block_alloc`]): its
//!   bytes are UNDEFINED (or zeros, DEFINED, for calloc), the rest of its stride NOACCESS;
//! - a freed block is released with MEMPOOL_FREE, which makes it NOACCESS and remembers the
//!   free stack for later use-after-free reports;
//! - the deliberate `address_in_range` read is done with address-error reporting disabled for
//!   exactly those 4 bytes and only the local copy is marked DEFINED ([`read_foreign_u32`]);
//!   nothing about memory the allocator does not own is ever changed.
//!
//! Under helgrind or DRD a recycled block is announced as new memory ([`recycled`]), so accesses
//! by its previous and next owners are not reported as a race.

use core::sync::atomic::{AtomicU8, Ordering};

/// The Valgrind tool we run under, as far as the allocator cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// Not under Valgrind (or instrumentation off).
    None,
    /// Memcheck: mempool chunks, red zones, quarantine.
    Memcheck,
    /// Another tool (helgrind, DRD, callgrind, …): only recycled-memory annotations.
    Other,
}

const T_NONE: u8 = 0;
const T_MEMCHECK: u8 = 1;
#[cfg_attr(not(feature = "valgrind"), allow(dead_code))]
const T_OTHER: u8 = 2;

static TOOL: AtomicU8 = AtomicU8::new(T_NONE);

/// The mempool anchor: one pool for all blocks (memcheck keys chunks by address).
#[cfg(feature = "valgrind")]
static ANCHOR: u8 = 0;

/// Detects Valgrind and the tool; call once, before any other function here.
/// `enabled` is false when `POOLGRIND_VALGRIND=off`.
pub fn init(enabled: bool) -> Tool {
    #[cfg(feature = "valgrind")]
    if enabled && crabgrind::valgrind::running_mode().is_valgrind() {
        // GET_VBITS answers 1 only when memcheck handles it; other tools leave the default 0.
        let probe = 0u8;
        let mut vbits = [0u8; 1];
        let is_memcheck = crabgrind::memcheck::vbits((&raw const probe).cast(), &mut vbits).is_ok();
        if is_memcheck {
            // The pool's red zone lets memcheck describe an address just past a live block as
            // "0 bytes after a block of size N alloc'd" (the allocator keeps that gap NOACCESS).
            crabgrind::valgrind::create_mempool(
                (&raw const ANCHOR).cast(),
                super::types::MEMCHECK_REDZONE,
                false,
                None,
            );
            TOOL.store(T_MEMCHECK, Ordering::Relaxed);
            return Tool::Memcheck;
        }
        TOOL.store(T_OTHER, Ordering::Relaxed);
        return Tool::Other;
    }
    let _ = enabled;
    Tool::None
}

/// Whether memcheck instrumentation is active (cached flag).
#[inline(always)]
pub fn memcheck() -> bool {
    cfg!(feature = "valgrind") && TOOL.load(Ordering::Relaxed) == T_MEMCHECK
}

/// Whether we run under any Valgrind tool (cached flag).
#[inline(always)]
pub fn valgrind() -> bool {
    cfg!(feature = "valgrind") && TOOL.load(Ordering::Relaxed) != T_NONE
}

#[cfg(feature = "valgrind")]
use crabgrind::memcheck::{mark_memory, MemState};

#[cfg(feature = "valgrind")]
#[inline(always)]
fn mark(p: *const u8, n: usize, state: MemState) {
    let _ = mark_memory(p.cast(), n, state);
}

/// A fresh arena (or any allocator-private range) becomes NOACCESS.
#[inline]
pub fn noaccess(p: *const u8, n: usize) {
    #[cfg(feature = "valgrind")]
    if memcheck() {
        mark(p, n, MemState::NoAccess);
    }
    let _ = (p, n);
}

/// A fresh arena taken from the system allocator under memcheck: NOACCESS, and shrunk to 1
/// bytes in memcheck's books (RESIZEINPLACE), so that memcheck's address descriptions, which
/// look at malloc'd blocks before freed ones, never name the 256 KiB arena instead of the freed
/// or live pool block an error is really about. The memory stays allocated; `free` of the arena
/// later releases all of it.
#[inline]
pub fn arena_created(p: *const u8, n: usize) {
    #[cfg(feature = "valgrind")]
    if memcheck() {
        mark(p, n, MemState::NoAccess);
        crabgrind::valgrind::resizeinplace_block(p.cast(), n, 1, 0);
    }
    let _ = (p, n);
}

/// Makes a pool header readable and writable by the allocator.
#[inline]
pub fn open_header(h: *const u8) {
    #[cfg(feature = "valgrind")]
    if memcheck() {
        mark(h, super::types::POOL_HEADER_SIZE, MemState::Defined);
    }
    let _ = h;
}

/// Hides a pool header from the program again.
#[inline]
pub fn close_header(h: *const u8) {
    #[cfg(feature = "valgrind")]
    if memcheck() {
        mark(h, super::types::POOL_HEADER_SIZE, MemState::NoAccess);
    }
    let _ = h;
}

/// A block of `size` requested bytes is handed out. Under memcheck it becomes a mempool chunk
/// (UNDEFINED bytes); under other tools it is announced as new memory and as a malloc-like
/// block (MALLOCLIKE_BLOCK), so massif and DHAT profile pool blocks like heap blocks.
#[inline]
pub fn block_alloc(p: *const u8, size: usize) {
    #[cfg(feature = "valgrind")]
    match TOOL.load(Ordering::Relaxed) {
        T_MEMCHECK => {
            crabgrind::valgrind::mempool_alloc((&raw const ANCHOR).cast(), p.cast(), size)
        }
        T_OTHER => {
            recycled(p, size);
            // Heap profilers (massif, DHAT) and the thread checkers learn about pool blocks as
            // if they came from malloc.
            crabgrind::valgrind::malloclike_block(p.cast(), size, 0, false);
        }
        _ => {}
    }
    let _ = (p, size);
}

/// A block goes back to the allocator: memcheck makes it NOACCESS and records the free stack;
/// freeing a block that is not a live chunk is reported by memcheck as an invalid free. Other
/// tools see a `free` of the block announced by [`block_alloc`].
#[inline]
pub fn block_free(p: *const u8) {
    #[cfg(feature = "valgrind")]
    match TOOL.load(Ordering::Relaxed) {
        T_MEMCHECK => crabgrind::valgrind::mempool_free((&raw const ANCHOR).cast(), p.cast()),
        T_OTHER => crabgrind::valgrind::freelike_block(p.cast(), 0),
        _ => {}
    }
    let _ = p;
}

/// Under memcheck one recursive lock serialises every allocator operation that touches pool
/// headers or address-error reporting. Valgrind runs one thread at a time anyway, so nothing is
/// lost in parallelism; what is gained is atomicity: a header is opened and closed by one thread
/// at a time (another thread closing it mid-operation would turn the allocator's own accesses
/// into reported errors), and the disable–read–enable window of [`read_foreign_u32`] cannot be
/// cut short by another thread's enable.
pub struct SerialGuard(bool);

struct SerialLock {
    /// 0 free, 1 held. A plain spin flag, not a pthread mutex: this lock exists only under
    /// memcheck, where every guest instruction is expensive and Valgrind runs one thread at a
    /// time (a waiting thread yields, which lets the holder run).
    held: core::sync::atomic::AtomicBool,
    owner: core::sync::atomic::AtomicUsize,
    depth: core::cell::UnsafeCell<u32>,
}

// SAFETY: `depth` is touched only by the thread that holds the lock (the owner).
unsafe impl Sync for SerialLock {}

static SERIAL: SerialLock = SerialLock {
    held: core::sync::atomic::AtomicBool::new(false),
    owner: core::sync::atomic::AtomicUsize::new(0),
    depth: core::cell::UnsafeCell::new(0),
};

impl SerialLock {
    fn acquire(&self) {
        while self.held.swap(true, Ordering::Acquire) {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
    }

    fn release(&self) {
        self.held.store(false, Ordering::Release);
    }
}

fn thread_id() -> usize {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as usize }
}

/// Takes the memcheck serialisation lock (recursively); a no-op natively.
#[inline(always)]
pub fn serialize() -> SerialGuard {
    if !memcheck() {
        return SerialGuard(false);
    }
    let me = thread_id();
    // Only this thread can have stored its own id, so a relaxed read is exact for "is it me".
    if SERIAL.owner.load(Ordering::Relaxed) != me {
        SERIAL.acquire();
        SERIAL.owner.store(me, Ordering::Relaxed);
    }
    // SAFETY: this thread owns the lock.
    unsafe { *SERIAL.depth.get() += 1 };
    SerialGuard(true)
}

/// Whether the calling thread holds the serialisation lock (debug assertions).
pub fn serialized_by_me() -> bool {
    SERIAL.owner.load(Ordering::Relaxed) == thread_id()
}

impl Drop for SerialGuard {
    #[inline(always)]
    fn drop(&mut self) {
        if !self.0 {
            return;
        }
        // SAFETY: this thread owns the lock (taken in `serialize`).
        unsafe {
            *SERIAL.depth.get() -= 1;
            if *SERIAL.depth.get() == 0 {
                SERIAL.owner.store(0, Ordering::Relaxed);
                SERIAL.release();
            }
        }
    }
}

/// fork(): the serialisation lock is taken before every other allocator lock...
pub(crate) fn fork_prepare() {
    if memcheck() {
        SERIAL.acquire();
    }
}

/// ...released in the parent...
pub(crate) fn fork_parent() {
    if memcheck() {
        SERIAL.release();
    }
}

/// ...and reset in the child, which has only the forking thread.
pub(crate) fn fork_child() {
    SERIAL.owner.store(0, Ordering::Relaxed);
    // SAFETY: single-threaded child; nobody else can hold the lock.
    unsafe { *SERIAL.depth.get() = 0 };
    SERIAL.release();
}

/// Recycled memory changes owner: tell helgrind and DRD to forget its access history.
#[inline]
pub fn recycled(p: *const u8, n: usize) {
    #[cfg(feature = "valgrind")]
    if valgrind() {
        crabgrind::helgrind::clean_memory(p.cast(), n);
        crabgrind::drd::annotate_new_memory(p.cast(), n);
    }
    let _ = (p, n);
}

/// Reads the 4 bytes at `p`, which may be uninitialised, NOACCESS, or another allocator's
/// memory: the classic `address_in_range` read.
///
/// Under memcheck: address errors are disabled for exactly `[p, p + 4)` during the read, the
/// value lands in a local, and only the local is marked DEFINED. The state of the memory at `p`
/// is never changed: marking it DEFINED would hide the program's own bugs there.
///
/// # Safety
/// `p` must be 4-aligned and lie in a mapped page (it is the start of the page of a pointer the
/// program handed to `free`).
#[inline(always)]
pub unsafe fn read_foreign_u32(p: *const u32) -> u32 {
    #[cfg(feature = "valgrind")]
    if memcheck() {
        crabgrind::memcheck::disable_error_reporting(p.cast(), 4);
        // SAFETY: forwarded from the caller.
        let mut local: u32 = unsafe { raw_read_u32(p) };
        crabgrind::memcheck::enable_error_reporting(p.cast(), 4);
        mark((&raw mut local).cast_const().cast(), 4, MemState::Defined);
        // SAFETY: `local` is a live stack variable; the volatile read makes the compiler reload
        // it after the client request instead of reusing the register copy.
        return unsafe { core::ptr::read_volatile(&raw const local) };
    }
    // SAFETY: forwarded from the caller.
    unsafe { raw_read_u32(p) }
}

/// The read itself, opaque to the compiler: the bytes may be uninitialised or belong to another
/// allocator, which Rust's abstract machine cannot express; an `asm!` load has no such rules.
///
/// # Safety
/// `p` must be 4-aligned and readable (mapped).
#[inline(always)]
unsafe fn raw_read_u32(p: *const u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        let v: u32;
        // SAFETY: the caller guarantees the address is mapped and aligned; the asm only loads.
        unsafe {
            core::arch::asm!("mov {v:e}, dword ptr [{p}]", p = in(reg) p, v = out(reg) v,
                options(nostack, readonly, preserves_flags));
        }
        v
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: the caller guarantees the address is mapped and aligned.
    unsafe {
        core::ptr::read_volatile(p)
    }
}

/// How many bytes from `p` (at most `max`) are addressable, without reporting anything: the
/// requested size of a live memcheck chunk, found by binary search with GET_VBITS (which answers
/// "unaddressable" instead of reporting an error). Natively returns `max`.
pub fn addressable_len(p: *const u8, max: usize) -> usize {
    #[cfg(feature = "valgrind")]
    if memcheck() {
        let mut buf = [0u8; 512];
        let max = max.min(buf.len());
        let mut addressable = |n: usize| -> bool {
            n == 0 || crabgrind::memcheck::vbits(p.cast(), &mut buf[..n]).is_ok()
        };
        let (mut lo, mut hi) = (0usize, max); // lo addressable, answer in [lo, hi]
        if addressable(hi) {
            return hi;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if addressable(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        return lo;
    }
    let _ = p;
    max
}
