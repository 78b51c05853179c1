//! A thread's memcheck frees, kept sixteen at a time: each `free` makes one request (the
//! `MEMPOOL_FREE` that tells memcheck, in the program's frame), stores its block in this
//! thread's [`PendingFrees`], and every sixteenth free keeps the books of all of them in one
//! request to the real CPU ([`host::free_batch`]). Memcheck's own `free` makes one request; with
//! the books kept one request each, poolgrind's made two (issue 15).
//!
//! Why this is safe:
//! - a pending block is free in memcheck's books (any use is reported as a use after free,
//!   its free stack recorded) and still live in the allocator's, so nobody can hand it out
//!   again before its books are kept; it then enters the quarantine as before, when its
//!   thread's batch fills (the thread's next fifteen frees, however long they take) or the
//!   thread ends, so blocks of different threads enter it out of their free order;
//! - an invalid or a double free is reported by memcheck at the `MEMPOOL_FREE`, as before; the
//!   books of a block that is not live are left alone when its turn comes, and so are those of
//!   a block carved again since the free was made (its `SideEntry::born` is later than the
//!   slot's `since`): that free was of the block's earlier life (a double free whose block went
//!   back to its pool and out again meanwhile), and must not free its new owner's block;
//! - a slot is zeroed once its block is kept: the storage is thread-local, which memcheck's leak
//!   check scans as a root;
//! - a thread's pending frees are kept when it exits (a pthread key's destructor) and, for the
//!   thread that runs the exit drain, before the quarantine is drained. Until a thread has its
//!   destructor (and after it ran) every free is kept at once.
//!
//! What is left out, with at most fifteen blocks a thread, never handed out again (memcheck
//! knows them as freed either way):
//! - the pending frees of threads still running when the process exits, or that do not exist
//!   in a `fork`ed child, stay live in the allocator's books. At exit an arena they keep is the
//!   1-byte "still reachable" block `supp/poolgrind.supp` suppresses, as for an arena with a
//!   live block (not an error by memcheck's defaults);
//! - a thread whose first free comes after glibc ran its key destructors (in
//!   `__libc_thread_freeres`, or the destructors' last round) sets its destructor too late: its
//!   later pending frees are never kept.

use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicU32, Ordering};

use super::super::types::*;
use super::{host, quarantine};
use crate::alloc::track;

/// The pthread key whose destructor keeps an exiting thread's pending frees (`u32::MAX`: none).
static KEY: AtomicU32 = AtomicU32::new(u32::MAX);

/// Creates the key. Called once, from `init::ensure_init`, under memcheck.
pub(crate) fn init() {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is a valid out-pointer; the destructor is an `extern "C"` fn.
    if unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0 {
        KEY.store(key, Ordering::Release);
    }
}

/// This thread's pending frees: on x86-64 Linux the initial-exec TLS block of `tls.c`
/// (`poolgrind_pending_tls`, two instructions); elsewhere a `thread_local!`.
#[inline(always)]
fn this_thread() -> *mut PendingFrees {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        // `poolgrind_pending_tls` is a 28-word, 64-aligned array (tls.c).
        const _: () = assert!(core::mem::size_of::<PendingFrees>() == 28 * 8);
        initial_exec_tls!(poolgrind_pending_tls).cast::<PendingFrees>()
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    PENDING.with(|p| p.get())
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
thread_local! {
    static PENDING: core::cell::UnsafeCell<PendingFrees> = const {
        core::cell::UnsafeCell::new(PendingFrees {
            count: 0,
            limit: 0,
            done: 0,
            state: TC_FRESH as usize,
            slots: [0; PENDING_FREES],
            since: [0; PENDING_FREES],
        })
    };
}

/// Adds `p`, just freed to memcheck, to this thread's pending frees; keeps the books of all of
/// them when that makes sixteen, or at once while the thread has no destructor. Inlined into
/// the `free` frames, a call in tail position at most.
///
/// # Safety
/// `p` lies in a pool (its page is in the page map) and `MEMPOOL_FREE` was issued for it; the
/// caller does not hold the serialisation lock.
#[inline(always)]
pub(crate) unsafe fn push(p: *mut u8) {
    let pd = this_thread();
    // SAFETY: the block is this thread's. The slot is in bounds: every push that brings
    // `count` to `limit` (at most `PENDING_FREES`; 0 while the thread keeps each free at once)
    // keeps them all and empties the slots before it returns, and nothing in that keeping
    // frees a pool block (`pthread_setspecific` may allocate, never free).
    unsafe {
        let n = (*pd).count;
        debug_assert!(n < PENDING_FREES);
        *(*pd).slots.get_unchecked_mut(n) = p as usize;
        *(*pd).since.get_unchecked_mut(n) = super::carves();
        (*pd).count = n + 1;
        if n + 1 >= (*pd).limit {
            keep(pd);
        }
    }
}

/// Keeps the books of this thread's pending frees, registering its destructor first if it
/// has none yet.
///
/// # Safety
/// `pd` is this thread's [`PendingFrees`]; the caller does not hold the serialisation lock.
#[cold]
#[inline(never)]
unsafe fn keep(pd: *mut PendingFrees) {
    // SAFETY: forwarded.
    unsafe {
        if (*pd).state == TC_FRESH as usize {
            activate(pd);
        }
        keep_all(pd);
    }
}

/// Sets this thread's destructor; from then on its frees wait in `pd` ([`PendingFrees::limit`]).
///
/// # Safety
/// `pd` is this thread's [`PendingFrees`], fresh.
unsafe fn activate(pd: *mut PendingFrees) {
    let key = KEY.load(Ordering::Acquire);
    // SAFETY: `pd` is this thread's; a free made by `pthread_setspecific` (none is known) is
    // kept at once while the state says so.
    unsafe {
        (*pd).state = TC_BYPASS as usize;
        if key != u32::MAX && libc::pthread_setspecific(key, pd.cast()) == 0 {
            (*pd).limit = PENDING_FREES;
            (*pd).state = TC_ACTIVE as usize;
        }
    }
}

/// Keeps the books of every pending free of `pd`, in order: on the real CPU as far as it goes
/// ([`host::free_batch`]), the quarantine's evictions that would empty a pool and the frees it
/// leaves (the lock held by a thread, a ring to open or grow, a pool to give back) in the guest.
///
/// # Safety
/// `pd` is this thread's [`PendingFrees`]; the caller does not hold the serialisation lock.
unsafe fn keep_all(pd: *mut PendingFrees) {
    // SAFETY: `pd` is this thread's; the slots in `done..count` are pending frees (invariant).
    unsafe {
        loop {
            // SAFETY: `host::free_batch` is written for the real CPU.
            let r = track::on_host(host::free_batch, pd as usize, false);
            if r == host::FREED_EVICT_REST {
                quarantine::evict_rest();
                continue;
            }
            let i = (*pd).done;
            if i == (*pd).count {
                break;
            }
            let slot = addr_of_mut!((*pd).slots[i]);
            let p = *slot as *mut u8;
            *slot = 0;
            (*pd).done = i + 1;
            super::free_in_guest(p, (*pd).since[i]);
        }
        (*pd).count = 0;
        (*pd).done = 0;
    }
}

/// Keeps the calling thread's pending frees and keeps its later frees at once: for the exit
/// drain, before the quarantine empties.
pub(crate) fn keep_this_thread_for_good() {
    // SAFETY: this thread's; the exit drain calls this before it takes the lock.
    unsafe { retire(this_thread()) }
}

/// The key's destructor: the exiting thread's pending frees are kept, and its later frees (in
/// other destructors) at once.
extern "C" fn thread_exit(p: *mut libc::c_void) {
    // SAFETY: the value set in `activate` is this thread's block, alive during key destructors
    // (thread-local storage is freed after them); the thread holds no lock here.
    unsafe { retire(p.cast()) }
}

/// Keeps `pd`'s pending frees, and every later free of its thread at once.
///
/// # Safety
/// As [`keep_all`].
unsafe fn retire(pd: *mut PendingFrees) {
    // SAFETY: forwarded.
    unsafe {
        (*pd).state = TC_BYPASS as usize;
        (*pd).limit = 0;
        keep_all(pd);
    }
}
