//! Start-up, fork and exit: the allocator initialises itself on the first request
//! ([`ensure_init`]), holds every lock across `fork()`, and drains the memcheck quarantine
//! after the program's `atexit` handlers, just before memcheck's leak check.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::config::{self, Decision, Options};
use super::{arena, memcheck, meta, pool::CLASSES, serial, stats, sys, tcache, track, types};

const UNINIT: u8 = 0;
const INITIALIZING: u8 = 1;
const READY: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);

thread_local! {
    static IN_INIT: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Makes sure the allocator is initialised. Returns false only for a re-entrant call made by
/// the initialising thread itself (e.g. `dlsym` or `pthread_atfork` calling `malloc`); the caller
/// must then serve the request from the bootstrap buffer.
#[inline(always)]
pub(crate) fn ensure_init() -> bool {
    if STATE.load(Ordering::Acquire) == READY {
        return true;
    }
    init_slow()
}

#[cold]
#[inline(never)]
fn init_slow() -> bool {
    loop {
        match STATE.compare_exchange(UNINIT, INITIALIZING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => break,
            Err(READY) => return true,
            Err(_) => {
                if IN_INIT.with(|f| f.get()) {
                    return false;
                }
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }
    IN_INIT.with(|f| f.set(true));
    let opts = Options::from_env();
    sys::init();
    // Under memcheck, describe addresses near a pool block with the red zone memcheck's malloc
    // describes its blocks with (the gap less its 8-byte size field).
    let tool = track::detect(opts.valgrind_auto, config::memcheck_gap(opts.redzone) - 8);
    let memcheck = tool == track::Tool::Memcheck;
    config::decide(&Decision {
        opts,
        memcheck,
        other_tool: tool == track::Tool::Other,
    });
    // Without the arena table and the page map (and, under memcheck, the side table) pools
    // cannot be had: leave small requests to the system allocator, as `malloc` mode does.
    if config::pools_on() && (!arena::init() || !meta::init(arena::space(), arena::space_slots())) {
        config::pools_off();
    }
    EXIT_DRAIN.store(memcheck, Ordering::Relaxed);
    tcache::init();
    if memcheck {
        memcheck::pending::init();
    }
    // SAFETY: the handlers are `extern "C"` functions that take only our own mutexes.
    unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    if opts.stats_at_exit {
        // SAFETY: `print_stats_at_exit` is an `extern "C" fn()` that does not unwind.
        unsafe { libc::atexit(stats::print_stats_at_exit) };
    }
    IN_INIT.with(|f| f.set(false));
    config::publish_path(memcheck);
    if config::path() == config::Path::Fast {
        let _g = arena::ARENA_LOCK.lock();
        meta::publish_fast_free();
    }
    STATE.store(READY, Ordering::Release);
    // Natively the system allocator's heap holds only the blocks pools do not take. Last, once
    // initialised: a system allocator that allocates while it starts (jemalloc, a tracer
    // preloaded after us) is then served as usual, not from the bootstrap buffer.
    if config::pools_on() && !track::valgrind() {
        sys::arm_warm_up(opts.system_mmap_threshold);
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Exit: under memcheck, drain the quarantine before the leak check.

/// Whether the exit drain runs (under memcheck).
static EXIT_DRAIN: AtomicBool = AtomicBool::new(false);

/// Runs after the program's `atexit` handlers (a `.fini_array` entry of this object), just
/// before memcheck's leak check: pools and arenas holding only freed blocks are given back, or
/// an arena with no live chunk would be reported as a still-reachable heap block of 256 KiB.
extern "C" fn exit_drain() {
    if EXIT_DRAIN.load(Ordering::Relaxed) {
        memcheck::quarantine::drain_at_exit();
    }
}

#[used]
#[link_section = ".fini_array"]
static EXIT_DRAIN_FN: extern "C" fn() = exit_drain;

// ---------------------------------------------------------------------------------------------
// fork(): hold every allocator lock across it, so the child inherits consistent lists.

extern "C" fn fork_prepare() {
    serial::fork_prepare();
    tcache::lock_registry();
    for c in &CLASSES {
        // SAFETY: unlocked in fork_parent / fork_child by this same thread.
        unsafe { c.lock.raw_lock() };
    }
    // SAFETY: as above.
    unsafe { arena::ARENA_LOCK.raw_lock() };
    types::open_fork_window();
}

extern "C" fn fork_parent() {
    types::close_fork_window();
    // SAFETY: this thread took every lock in fork_prepare.
    unsafe {
        arena::ARENA_LOCK.force_unlock();
        for c in &CLASSES {
            c.lock.force_unlock();
        }
    }
    tcache::unlock_registry();
    serial::fork_parent();
}

extern "C" fn fork_child() {
    types::close_fork_window();
    // SAFETY: the child has a single thread, which took every lock in fork_prepare; the
    // mutexes are re-initialised rather than unlocked, which is valid for any owner state.
    unsafe {
        arena::ARENA_LOCK.reinit();
        for c in &CLASSES {
            c.lock.reinit();
        }
    }
    tcache::after_fork_child();
    serial::fork_child();
}
