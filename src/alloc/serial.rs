//! Under memcheck, one lock serialises every allocator operation in the guest (see
//! [`SerialGuard`]); the inner locks then are not taken ([`lock_class`]). The bookkeeping run on
//! the real CPU (`memcheck::host`) takes no lock: every other thread is stopped then, and it
//! gives up while any thread holds this one ([`held`]).

use core::marker::PhantomData;
use core::sync::atomic::Ordering;

use super::track::memcheck;
use super::types::{thread_id, MutexGuard, RawMutex};

/// Under memcheck one recursive lock serialises every allocator operation: the side table, the
/// quarantine and the class lists need no other lock then, a header opened to write its arena
/// index is closed by the same thread before anyone else runs (another thread closing it
/// mid-operation would turn the allocator's own accesses into reported errors), and the
/// disable–read–enable window of `track::read_foreign_u32` cannot be cut short by another thread's
/// enable. Valgrind runs one thread at a time anyway, so nothing is lost in parallelism.
pub struct SerialGuard(bool, PhantomData<*const ()>);

struct SerialLock {
    /// 0 free, 1 held. A plain spin flag, not a pthread mutex: this lock exists only under
    /// memcheck, where every guest instruction is expensive and Valgrind runs one thread at a
    /// time (a waiting thread yields, which lets the holder run).
    held: core::sync::atomic::AtomicBool,
    /// The holder's thread id (0: none); a nested `serialize` of the holder takes nothing.
    owner: core::sync::atomic::AtomicUsize,
    /// [`CountedGuard`]s nested inside the holder's outermost hold (read and written by the
    /// holder only).
    depth: core::sync::atomic::AtomicUsize,
}

static SERIAL: SerialLock = SerialLock {
    held: core::sync::atomic::AtomicBool::new(false),
    owner: core::sync::atomic::AtomicUsize::new(0),
    depth: core::sync::atomic::AtomicUsize::new(0),
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

/// Takes the memcheck serialisation lock (recursively); a no-op natively.
#[inline(always)]
pub fn serialize() -> SerialGuard {
    if !memcheck() {
        return SerialGuard(false, PhantomData);
    }
    serialize_memcheck()
}

/// [`serialize`] on a path that runs only under memcheck (no tool check). Recursive without a
/// counter: a nested guard (the thread already owns the lock) holds nothing, and the outermost
/// one releases.
#[inline(always)]
pub fn serialize_memcheck() -> SerialGuard {
    debug_assert!(memcheck());
    let me = thread_id();
    // Only this thread can have stored its own id, so a relaxed read is exact for "is it me".
    if SERIAL.owner.load(Ordering::Relaxed) == me {
        return SerialGuard(false, PhantomData);
    }
    SERIAL.acquire();
    SERIAL.owner.store(me, Ordering::Relaxed);
    SerialGuard(true, PhantomData)
}

/// A hold of the serialisation lock that carries no state: nesting is counted in the lock
/// (`SerialLock::depth`), so a frame holding it keeps no register for it. For the frames
/// written to save no register (`memcheck::free_ptr`), where a [`SerialGuard`]'s flag kept the
/// thread id and the owner word live to the end. Nests with [`SerialGuard`]s either way.
pub struct CountedGuard(PhantomData<*const ()>);

/// [`serialize_memcheck`] as a [`CountedGuard`]. `p` is handed through, so that when the lock
/// is contended and the thread waits in a call, no value of the caller's lives across that call
/// (the call returns `p`).
#[inline(always)]
pub fn serialize_counted<T: Copy>(p: T) -> (CountedGuard, T) {
    debug_assert!(memcheck());
    let me = thread_id();
    if SERIAL.owner.load(Ordering::Relaxed) == me {
        SERIAL
            .depth
            .store(SERIAL.depth.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        return (CountedGuard(PhantomData), p);
    }
    if SERIAL.held.swap(true, Ordering::Acquire) {
        return (CountedGuard(PhantomData), wait_for_lock(p));
    }
    SERIAL.owner.store(me, Ordering::Relaxed);
    (CountedGuard(PhantomData), p)
}

/// The contended half of [`serialize_counted`]: waits for the lock, takes it, and returns `p`.
#[cold]
#[inline(never)]
fn wait_for_lock<T: Copy>(p: T) -> T {
    SERIAL.acquire();
    SERIAL.owner.store(thread_id(), Ordering::Relaxed);
    p
}

impl Drop for CountedGuard {
    #[inline(always)]
    fn drop(&mut self) {
        // Only the holder reads or writes `depth`.
        let d = SERIAL.depth.load(Ordering::Relaxed);
        if d > 0 {
            SERIAL.depth.store(d - 1, Ordering::Relaxed);
        } else {
            SERIAL.owner.store(0, Ordering::Relaxed);
            SERIAL.release();
        }
    }
}

/// Lets `guard` go, out of line (for the rare exits of a frame that is to save no register).
#[cold]
#[inline(never)]
pub fn unlock(guard: CountedGuard) {
    drop(guard);
}

/// Whether any thread holds the serialisation lock (for the functions run on the real CPU,
/// `memcheck::host`, which give up if so: they neither know the calling thread, whose
/// thread-local storage they cannot reach, nor wait).
#[inline(always)]
pub fn held() -> bool {
    SERIAL.held.load(Ordering::Relaxed)
}

/// Whether the calling thread holds the serialisation lock (debug assertions).
pub fn serialized_by_me() -> bool {
    SERIAL.owner.load(Ordering::Relaxed) == thread_id()
}

impl SerialGuard {
    /// Whether this guard took the lock (false: the thread held it already, a nested hold).
    #[inline(always)]
    pub fn took(&self) -> bool {
        self.0
    }
}

impl Drop for SerialGuard {
    #[inline(always)]
    fn drop(&mut self) {
        if self.0 {
            // The outermost guard of this thread: it took the lock.
            // Guards nest last in, first out: every CountedGuard inside this hold is gone.
            debug_assert_eq!(SERIAL.depth.load(Ordering::Relaxed), 0);
            SERIAL.owner.store(0, Ordering::Relaxed);
            SERIAL.release();
        }
    }
}

/// fork(): the serialisation lock is taken before every other allocator lock, with the forking
/// thread as its owner, so that a fork handler run inside the window (`types::FORK_HOLDER`)
/// holds it nested...
pub(crate) fn fork_prepare() {
    if memcheck() {
        SERIAL.acquire();
        SERIAL.owner.store(thread_id(), Ordering::Relaxed);
    }
}

/// ...released in the parent...
pub(crate) fn fork_parent() {
    if memcheck() {
        SERIAL.owner.store(0, Ordering::Relaxed);
        SERIAL.release();
    }
}

/// ...and reset in the child, which has only the forking thread.
pub(crate) fn fork_child() {
    SERIAL.owner.store(0, Ordering::Relaxed);
    SERIAL.depth.store(0, Ordering::Relaxed);
    SERIAL.release();
}

/// Locks a class or arena mutex, unless the memcheck serialisation lock already excludes every
/// other thread: under memcheck every path to the central heap holds it, so the inner locks
/// would only cost instructions, which memcheck makes expensive.
#[inline]
pub(crate) fn lock_class(m: &RawMutex) -> Option<MutexGuard<'_>> {
    if memcheck() {
        debug_assert!(serialized_by_me());
        None
    } else {
        Some(m.lock())
    }
}
