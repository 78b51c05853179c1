//! The allocator. Dependencies run one way, in this order (a module uses only modules above
//! it; `layering::module_dependencies_run_one_way` checks it):
//!
//! | module      | what it holds |
//! |-------------|---------------|
//! | `types`     | every constant, struct and invariant (read it first) |
//! | `sys`       | the system allocator, the one mapping helper, counters, formatting without allocating |
//! | `config`    | the options table (by name) and what initialisation decided (the path) |
//! | `track`     | the only module that talks to Valgrind (client requests) |
//! | `serial`    | the lock that serialises the allocator under memcheck |
//! | `meta`      | the page map (which pages are ours, their pools' classes); where a pool's metadata lives (memcheck: the side table) |
//! | `arena`     | arenas, their lists, taking and giving pools, `owns` (the page map) and `address_in_range` |
//! | `pool`      | size classes' pools and used lists, the central heap, live bitmaps |
//! | `tcache`    | per-thread caches in front of the central heap |
//! | `memcheck`  | the memcheck paths, the quarantine, the bookkeeping run on the real CPU (`memcheck::host`), a thread's pending frees (`memcheck::pending`) |
//! | `guards`    | debug mode's block guards |
//! | `stats`     | statistics |
//! | `walk`      | the heap invariant walker |
//! | `debug`     | the public test tools (walker, cache flush) |
//! | `init`      | start-up, fork, exit |
//! | `dispatch`  | the one table: entry point × path |
//! | `global`, `raw` | the thin entry points (Rust `GlobalAlloc`, pointer-only API); the C ABI is `crate::capi` |

/// The address of this thread's copy of `$sym`, an initial-exec TLS array of `tls.c` (x86-64
/// Linux): the thread pointer (`fs:0`) plus the offset the GOT holds, two instructions and no
/// call. The one copy of that sequence (the thread cache, the request block, memcheck's pending
/// frees use it).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
macro_rules! initial_exec_tls {
    ($sym:ident) => {{
        let p: *mut u8;
        // SAFETY: `$sym` is an initial-exec TLS array of tls.c; fs:0 holds the thread pointer
        // and the GOT slot its offset. The asm only reads memory; `add` sets the flags, so it
        // does not preserve them.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr fs:0",
                concat!("add {p}, qword ptr [rip + ", stringify!($sym), "@GOTTPOFF]"),
                p = out(reg) p,
                options(nostack, readonly, pure),
            );
        }
        p
    }};
}

pub(crate) mod arena;
pub(crate) mod config;
pub mod debug;
pub(crate) mod dispatch;
pub mod global;
pub(crate) mod guards;
pub(crate) mod init;
pub(crate) mod memcheck;
pub(crate) mod meta;
pub(crate) mod pool;
pub mod raw;
pub(crate) mod serial;
pub mod stats;
pub(crate) mod sys;
pub(crate) mod tcache;
pub(crate) mod track;
pub(crate) mod types;
pub(crate) mod walk;

#[cfg(test)]
mod layering;
