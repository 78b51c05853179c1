//! The one door to Valgrind: every client request the allocator makes passes through here.
//!
//! Each function is a no-op unless [`detect`] found us running under Valgrind; the check is a
//! relaxed load of a flag cached at start-up, so natively each call site costs one predictable
//! branch (the `valgrind_overhead` benchmark measures it against a build with the `valgrind`
//! feature off, where this module compiles to nothing).
//!
//! What memcheck is told (the "truth" the crate overview talks about):
//! - arenas are NOACCESS when created; memcheck never learns about them as blocks;
//! - a pool header is NOACCESS to the program; the allocator opens it ([`open_header`] …
//!   [`close_header`]) only to write the arena index when the pool is carved (and the walker to
//!   check it). Everything else it knows about a pool lives in the pool's side entry
//!   (`types::SideEntry`), off the pool, so allocations and frees make no header requests;
//! - a block handed out is a mempool chunk of exactly the requested size ([`block_alloc`]): its
//!   bytes are UNDEFINED (or zeros, DEFINED, for calloc), the rest of its stride NOACCESS;
//! - a freed block is released with MEMPOOL_FREE, which makes it NOACCESS and remembers the
//!   free stack for later use-after-free reports;
//! - the deliberate `address_in_range` read is done with address-error reporting disabled for
//!   exactly those 4 bytes and only the local copy is marked DEFINED ([`read_foreign_u32`]);
//!   nothing about memory the allocator does not own is ever changed.
//!
//! - the allocator's own bookkeeping of a common `malloc` or `free` is not shown to memcheck at
//!   all: it runs on the real CPU ([`on_host`]), as memcheck's own malloc's does in Valgrind
//!   (for frees, sixteen at a time: `memcheck::pending`).
//!
//! This module only talks to Valgrind; the lock that serialises the allocator under memcheck
//! is `serial`'s.
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
/// `enabled` is false when `POOLGRIND_VALGRIND=off`; `redzone` is the red zone memcheck is told
/// the pool's chunks have. Never inlined: the release library's layout puts it among the code
/// every process runs (`preload.ld`'s `track` pattern), which its test checks by this name.
#[inline(never)]
pub(crate) fn detect(enabled: bool, redzone: usize) -> Tool {
    #[cfg(feature = "valgrind")]
    if enabled && crabgrind::valgrind::running_mode().is_valgrind() {
        // GET_VBITS answers 1 only when memcheck handles it; other tools leave the default 0.
        let probe = 0u8;
        let mut vbits = [0u8; 1];
        let is_memcheck = crabgrind::memcheck::vbits((&raw const probe).cast(), &mut vbits).is_ok();
        if is_memcheck {
            // The pool's red zone lets memcheck describe an address near a live or freed block
            // as "N bytes after a block of size M" within the same distance as its own malloc's
            // blocks (the allocator keeps the whole gap around every block NOACCESS).
            crabgrind::valgrind::create_mempool((&raw const ANCHOR).cast(), redzone, false, None);
            TOOL.store(T_MEMCHECK, Ordering::Relaxed);
            return Tool::Memcheck;
        }
        TOOL.store(T_OTHER, Ordering::Relaxed);
        return Tool::Other;
    }
    let _ = (enabled, redzone);
    Tool::None
}

/// Whether memcheck instrumentation is active (cached flag).
#[inline(always)]
pub fn memcheck() -> bool {
    cfg!(feature = "valgrind") && TOOL.load(Ordering::Relaxed) == T_MEMCHECK
}

/// Whether we run under any Valgrind tool (cached flag).
#[cfg_attr(not(feature = "valgrind"), allow(dead_code))]
#[inline(always)]
pub fn valgrind() -> bool {
    cfg!(feature = "valgrind") && TOOL.load(Ordering::Relaxed) != T_NONE
}

#[cfg(feature = "valgrind")]
use crabgrind::memcheck::MemState;

/// The requests of the allocation and free paths, issued inline on x86-64 (elsewhere through
/// crabgrind). Under memcheck each request costs ~170 ns whatever issues it; crabgrind's C shim
/// (`valgrind_client_request_expr`) adds a call, ~13 guest instructions and a stack frame to
/// each, and that frame becomes the innermost frame of every "Block was alloc'd at" stack. The
/// codes are the ones of valgrind.h and memcheck.h (Valgrind 3.19; stable across releases:
/// clients built against old headers keep working), checked against the installed headers by
/// a unit test.
#[cfg(feature = "valgrind")]
mod req {
    /// `VG_USERREQ_TOOL_BASE('M', 'C')`: memcheck's requests start here.
    pub const MC: usize = (b'M' as usize) << 24 | (b'C' as usize) << 16;
    pub const MAKE_MEM_NOACCESS: usize = MC;
    pub const MAKE_MEM_DEFINED: usize = MC + 2;
    pub const ENABLE_ADDR_ERROR_REPORTING_IN_RANGE: usize = MC + 13;
    pub const DISABLE_ADDR_ERROR_REPORTING_IN_RANGE: usize = MC + 14;
    pub const MEMPOOL_ALLOC: usize = 0x1305;
    pub const MEMPOOL_FREE: usize = 0x1306;
    /// `VG_USERREQ__CLIENT_CALL1` (`VALGRIND_NON_SIMD_CALL1`): Valgrind calls a function of the
    /// program on the real CPU.
    pub const CLIENT_CALL1: usize = 0x1102;

    /// Issues client request `code` with three arguments; returns Valgrind's answer, or 0 when
    /// not running under Valgrind (the magic sequence is then a no-op: four rotations of `rdi`
    /// by 128 bits in all and an exchange of `rbx` with itself).
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[inline(always)]
    pub fn request(code: usize, a1: usize, a2: usize, a3: usize) -> usize {
        issue(code, a1, a2, Some(a3), true)
    }

    /// [`request`] for a request that reads two arguments (the third word is left unwritten),
    /// clearing them afterwards when `clear` (they name a block).
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[inline(always)]
    pub fn request2(code: usize, a1: usize, a2: usize, clear: bool) -> usize {
        issue(code, a1, a2, None, clear)
    }

    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[inline(always)]
    fn issue(code: usize, a1: usize, a2: usize, a3: Option<usize>, clear: bool) -> usize {
        // The protocol's block is six words; the requests issued here read at most the first
        // four, so the last two are left unwritten (each store is paid for under memcheck).
        // It is this thread's `poolgrind_request_tls` (tls.c), not a stack array: see there.
        // `poolgrind_request_tls` is a 6-word array (tls.c).
        let args = initial_exec_tls!(poolgrind_request_tls).cast::<usize>();
        let mut result: usize = 0;
        // SAFETY: the block is this thread's; the sequence leaves every register as it found it
        // except rdx (the result) and the flags: rdi is rotated by 128 bits in all, so it is not
        // declared clobbered (valgrind.h does not either), which spares the callers a register;
        // Valgrind reads the block (hence no `nomem`) and may read or write the memory the
        // request names, which the callers own or deliberately hand over.
        unsafe {
            args.write(code);
            args.add(1).write(a1);
            args.add(2).write(a2);
            if let Some(a3) = a3 {
                args.add(3).write(a3);
            }
            core::arch::asm!(
                "rol rdi, 3",
                "rol rdi, 13",
                "rol rdi, 61",
                "rol rdi, 51",
                "xchg rbx, rbx",
                inout("rdx") result,
                in("rax") args,
                options(nostack),
            );
            // The block is thread-local storage, which memcheck's leak check scans as a root:
            // a block address left in it would keep a leaked block "still reachable".
            if clear {
                args.add(1).write(0);
                args.add(2).write(0);
            }
        }
        result
    }

    /// Elsewhere: [`request`].
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    #[inline(always)]
    pub fn request2(code: usize, a1: usize, a2: usize, _clear: bool) -> usize {
        request(code, a1, a2, 0)
    }

    /// Elsewhere: the same requests through crabgrind's typed functions (and its C shim).
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    #[inline(always)]
    pub fn request(code: usize, a1: usize, a2: usize, a3: usize) -> usize {
        use crabgrind::{memcheck as mc, valgrind as vg};
        let p = a1 as *const core::ffi::c_void;
        match code {
            MAKE_MEM_NOACCESS => {
                let _ = mc::mark_memory(p, a2, mc::MemState::NoAccess);
            }
            MAKE_MEM_DEFINED => {
                let _ = mc::mark_memory(p, a2, mc::MemState::Defined);
            }
            ENABLE_ADDR_ERROR_REPORTING_IN_RANGE => mc::enable_error_reporting(p, a2),
            DISABLE_ADDR_ERROR_REPORTING_IN_RANGE => mc::disable_error_reporting(p, a2),
            MEMPOOL_ALLOC => vg::mempool_alloc(p, a2 as *const _, a3),
            MEMPOOL_FREE => vg::mempool_free(p, a2 as *const _),
            _ => {}
        }
        0
    }
}

#[cfg(feature = "valgrind")]
#[inline(always)]
fn mark(p: *const u8, n: usize, state: MemState) {
    let code = match state {
        MemState::NoAccess => req::MAKE_MEM_NOACCESS,
        MemState::Defined => req::MAKE_MEM_DEFINED,
        other => {
            let _ = crabgrind::memcheck::mark_memory(p.cast(), n, other);
            return;
        }
    };
    req::request(code, p as usize, n, 0);
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
        T_MEMCHECK => mempool_alloc(p, size),
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

/// Memcheck only: a block of `size` requested bytes becomes a mempool chunk (UNDEFINED bytes).
#[inline(always)]
pub fn mempool_alloc(p: *const u8, size: usize) {
    #[cfg(feature = "valgrind")]
    req::request(
        req::MEMPOOL_ALLOC,
        (&raw const ANCHOR) as usize,
        p as usize,
        size,
    );
    let _ = (p, size);
}

/// A function the allocator runs on the real CPU under memcheck ([`on_host`]): the calling
/// thread's Valgrind thread id, then one argument.
pub(crate) type HostFn = unsafe extern "C" fn(u32, usize) -> usize;

/// Memcheck only: Valgrind runs `f(tid, a)` on the real CPU, outside memcheck's
/// instrumentation, while every other thread of the program is stopped, and returns its
/// answer (`VALGRIND_NON_SIMD_CALL1`); 0 when not running under Valgrind. `a_is_block`: `a` is
/// a block's address, cleared from the request block afterwards.
///
/// Memcheck's own `malloc` runs the same way: its bookkeeping is Valgrind's code, not the
/// program's, and costs one request. The allocator's bookkeeping of a common-case `malloc` or
/// `free` (a bitmap, a ring slot, a few counters) is a few hundred guest instructions, each
/// paid for many times over in shadow memory, for accesses memcheck has nothing to say about:
/// the allocator's own metadata, which the program never sees. The blocks themselves are still
/// announced by the frames that hand them out (`MEMPOOL_ALLOC`, `MEMPOOL_FREE`).
///
/// # Safety
/// `f` must be written for the real CPU (see `memcheck::host`): it may touch only memory that
/// is mapped and that no guest code is changing (the allocator's metadata, with the
/// serialisation lock free), and must not use thread-local storage, call into libc or through
/// the PLT, make a client request (one made on the real CPU does nothing) or panic.
#[inline(always)]
pub(crate) unsafe fn on_host(f: HostFn, a: usize, a_is_block: bool) -> usize {
    #[cfg(feature = "valgrind")]
    // The request block is cleared afterwards only when `a` names a block (see `req::issue`).
    return req::request2(req::CLIENT_CALL1, f as usize, a, a_is_block);
    #[cfg(not(feature = "valgrind"))]
    {
        let _ = (f, a, a_is_block);
        0
    }
}

/// Memcheck only: the chunk at `p` is freed (NOACCESS, free stack recorded); memcheck reports
/// an invalid free if `p` is not a live chunk.
#[inline(always)]
pub fn mempool_free(p: *const u8) {
    #[cfg(feature = "valgrind")]
    req::request2(
        req::MEMPOOL_FREE,
        (&raw const ANCHOR) as usize,
        p as usize,
        true,
    );
    let _ = p;
}

/// A block goes back to the allocator: memcheck makes it NOACCESS and records the free stack;
/// freeing a block that is not a live chunk is reported by memcheck as an invalid free. Other
/// tools see a `free` of the block announced by [`block_alloc`].
#[inline]
pub fn block_free(p: *const u8) {
    #[cfg(feature = "valgrind")]
    match TOOL.load(Ordering::Relaxed) {
        T_MEMCHECK => mempool_free(p),
        T_OTHER => crabgrind::valgrind::freelike_block(p.cast(), 0),
        _ => {}
    }
    let _ = p;
}

/// Recycled memory changes owner: tell helgrind and DRD to forget its access history.
#[cfg_attr(not(feature = "valgrind"), allow(dead_code))]
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
        req::request(req::DISABLE_ADDR_ERROR_REPORTING_IN_RANGE, p as usize, 4, 0);
        // SAFETY: forwarded from the caller.
        let mut local: u32 = unsafe { raw_read_u32(p) };
        req::request(req::ENABLE_ADDR_ERROR_REPORTING_IN_RANGE, p as usize, 4, 0);
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

#[cfg(all(test, feature = "valgrind"))]
mod tests {
    /// The request codes issued inline are the ones of the installed Valgrind headers.
    #[test]
    fn request_codes_match_the_installed_headers() {
        let dir = std::env::temp_dir().join(format!("poolgrind-req-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("codes.c");
        std::fs::write(
            &src,
            "#include <stdio.h>\n#include <valgrind/memcheck.h>\nint main(void) {\n\
             printf(\"%lu %lu %lu %lu %lu %lu\\n\",\n\
             (unsigned long)VG_USERREQ__MAKE_MEM_NOACCESS,\n\
             (unsigned long)VG_USERREQ__MAKE_MEM_DEFINED,\n\
             (unsigned long)VG_USERREQ__ENABLE_ADDR_ERROR_REPORTING_IN_RANGE,\n\
             (unsigned long)VG_USERREQ__DISABLE_ADDR_ERROR_REPORTING_IN_RANGE,\n\
             (unsigned long)VG_USERREQ__MEMPOOL_ALLOC,\n\
             (unsigned long)VG_USERREQ__MEMPOOL_FREE);\n return 0; }\n",
        )
        .unwrap();
        let exe = dir.join("codes");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let st = std::process::Command::new(cc)
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .status()
            .expect("a C compiler");
        assert!(
            st.success(),
            "compiling against <valgrind/memcheck.h> failed"
        );
        let out = std::process::Command::new(&exe).output().unwrap();
        let got = String::from_utf8(out.stdout).unwrap();
        let want = format!(
            "{} {} {} {} {} {}\n",
            super::req::MAKE_MEM_NOACCESS,
            super::req::MAKE_MEM_DEFINED,
            super::req::ENABLE_ADDR_ERROR_REPORTING_IN_RANGE,
            super::req::DISABLE_ADDR_ERROR_REPORTING_IN_RANGE,
            super::req::MEMPOOL_ALLOC,
            super::req::MEMPOOL_FREE
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(got, want);
    }
}
