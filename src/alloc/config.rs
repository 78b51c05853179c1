//! Configuration: the one table of environment options (read once at initialisation, without
//! allocating) and what initialisation decided from them (the path every request takes).
//!
//! | variable               | values                         | default   | meaning |
//! |------------------------|--------------------------------|-----------|---------|
//! | `POOLGRIND_MODE`       | `pool`, `malloc`, `debug`      | `pool`    | `malloc`: every request goes to the system allocator (the `PYTHONMALLOC=malloc` analogue); `debug`: pools plus guard bytes, fill patterns and checks on free that abort with a message (CPython's debug hooks) |
//! | `POOLGRIND_STATS`      | `0`, `1`                       | `0`       | print the statistics table to stderr at exit |
//! | `POOLGRIND_TCACHE`     | `0`, `1`                       | `1`       | per-thread block caches (natively; never under Valgrind) |
//! | `POOLGRIND_VALGRIND`   | `auto`, `off`                  | `auto`    | `off`: behave as if the instrumentation were compiled out, even under Valgrind |
//! | `POOLGRIND_QUARANTINE` | bytes (`0` disables)           | `20000000` | under memcheck, how many requested bytes of freed blocks wait before reuse (memcheck's `--freelist-vol`) |
//! | `POOLGRIND_QUARANTINE_BIG` | bytes                      | `1000000` | under memcheck, freed blocks of at least this size wait in a ring of their own, let go first (memcheck's `--freelist-big-blocks`) |
//! | `POOLGRIND_REDZONE`    | bytes, at most 4096            | `16`      | under memcheck, the red zone on each side of a block (memcheck's `--redzone-size`) |
//! | `POOLGRIND_ARENA_SPACE` | bytes (`0`: none)             | `68719476736` | natively, the address space reserved for arenas (64 GiB: `MAX_ARENAS` of them); halved down to 1 GiB when the kernel refuses; arenas beyond it, or all without it, are mapped one by one and the page map reads its tree |
//! | `POOLGRIND_SYSTEM_MMAP_THRESHOLD` | bytes (`0`: leave it) | `4194304` | natively, with pools on, a block of this size is allocated and freed through the system allocator just before the first request of 128 KiB or more that reaches it (`sys::WARM_UP_TRIGGER`; a program with none keeps glibc's start): glibc then serves blocks up to about that size from its heap and trims the heap only above twice it, as it does after a program frees its first mapped block that big (`sys::warm_up`). Capped just below 32 MiB (glibc's ceiling); at most 128 KiB (glibc's start) changes nothing; nothing either when glibc's thresholds were set (`GLIBC_TUNABLES`, `MALLOC_MMAP_THRESHOLD_`). With `POOLGRIND_VALGRIND=off` under Valgrind it reaches Valgrind's malloc, harmlessly |
//!
//! `POOLGRIND_QUARANTINE`, `_QUARANTINE_BIG` and `_REDZONE` are memcheck's options under the
//! allocator's names: the allocator cannot read valgrind's command line, so `poolgrind run` and
//! `poolgrind cargo` set them from the options they give valgrind; a plain `valgrind` run gets
//! memcheck's defaults.
//!
//! A value that cannot be parsed keeps the default and prints one warning line to stderr.
//! Options are named by [`Opt`]; the table is indexed by it, never by a bare number.

use core::ffi::CStr;
use core::fmt::Write;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use super::sys::FmtBuf;
use super::types::{
    class_size, split_carrier, PoolHeader, ARENA_SIZE, MAX_ARENAS, NB_SMALL_SIZE_CLASSES,
    SMALL_REQUEST_THRESHOLD,
};

/// The options, by name. The discriminant is the option's row in [`OPTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opt {
    /// `POOLGRIND_MODE`.
    Mode,
    /// `POOLGRIND_STATS`.
    Stats,
    /// `POOLGRIND_TCACHE`.
    Tcache,
    /// `POOLGRIND_VALGRIND`.
    Valgrind,
    /// `POOLGRIND_QUARANTINE`.
    Quarantine,
    /// `POOLGRIND_QUARANTINE_BIG`.
    QuarantineBig,
    /// `POOLGRIND_REDZONE`.
    Redzone,
    /// `POOLGRIND_ARENA_SPACE`.
    ArenaSpace,
    /// `POOLGRIND_SYSTEM_MMAP_THRESHOLD`.
    SystemMmapThreshold,
}

/// One row of the table.
pub(crate) struct OptionSpec {
    /// The option this row describes (`OPTIONS[o as usize].opt == o`, checked by a test).
    pub opt: Opt,
    /// Environment variable.
    pub env: &'static CStr,
    /// Accepted values.
    pub values: &'static str,
    /// Default.
    pub default: &'static str,
}

/// The table, in the order of [`Opt`] (and of the module documentation).
pub(crate) const OPTIONS: [OptionSpec; 9] = [
    OptionSpec {
        opt: Opt::Mode,
        env: c"POOLGRIND_MODE",
        values: "pool|malloc|debug",
        default: "pool",
    },
    OptionSpec {
        opt: Opt::Stats,
        env: c"POOLGRIND_STATS",
        values: "0|1",
        default: "0",
    },
    OptionSpec {
        opt: Opt::Tcache,
        env: c"POOLGRIND_TCACHE",
        values: "0|1",
        default: "1",
    },
    OptionSpec {
        opt: Opt::Valgrind,
        env: c"POOLGRIND_VALGRIND",
        values: "auto|off",
        default: "auto",
    },
    OptionSpec {
        opt: Opt::Quarantine,
        env: c"POOLGRIND_QUARANTINE",
        values: "bytes",
        default: "20000000",
    },
    OptionSpec {
        opt: Opt::QuarantineBig,
        env: c"POOLGRIND_QUARANTINE_BIG",
        values: "bytes",
        default: "1000000",
    },
    OptionSpec {
        opt: Opt::Redzone,
        env: c"POOLGRIND_REDZONE",
        values: "bytes, at most 4096",
        default: "16",
    },
    OptionSpec {
        opt: Opt::ArenaSpace,
        env: c"POOLGRIND_ARENA_SPACE",
        values: "bytes",
        default: "68719476736",
    },
    OptionSpec {
        opt: Opt::SystemMmapThreshold,
        env: c"POOLGRIND_SYSTEM_MMAP_THRESHOLD",
        values: "bytes",
        default: "4194304",
    },
];

/// Largest `POOLGRIND_REDZONE` (memcheck's largest `--redzone-size`).
pub(crate) const MAX_REDZONE: usize = 4096;

/// Largest useful `POOLGRIND_SYSTEM_MMAP_THRESHOLD`: glibc moves its threshold only for a freed
/// mapped chunk of at most `DEFAULT_MMAP_THRESHOLD_MAX` (32 MiB on 64-bit targets), and a chunk
/// is the request plus its header rounded up to a page, so a 32 MiB request moves nothing
/// (measured: 33 550 312 bytes still do, one more does not). Two pages below, for margin.
pub(crate) const MAX_SYSTEM_MMAP_THRESHOLD: usize = (32 << 20) - 2 * 4096;

impl Opt {
    /// This option's row.
    pub(crate) fn spec(self) -> &'static OptionSpec {
        let row = &OPTIONS[self as usize];
        debug_assert!(row.opt == self);
        row
    }
}

/// Allocator mode (`POOLGRIND_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Pools for small requests (the default).
    Pool,
    /// Everything from the system allocator.
    Malloc,
    /// Pools with guard bytes, fill patterns and checks on free.
    Debug,
}

/// The options, as read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub mode: Mode,
    pub stats_at_exit: bool,
    pub thread_caches: bool,
    /// `POOLGRIND_VALGRIND` is not `off`.
    pub valgrind_auto: bool,
    /// Requested bytes of freed blocks the memcheck quarantine holds (`--freelist-vol`).
    pub quarantine_bytes: usize,
    /// Freed blocks of at least this size go to the big ring (`--freelist-big-blocks`).
    pub quarantine_big: usize,
    /// The red zone memcheck's malloc would keep on each side of a block (`--redzone-size`).
    pub redzone: usize,
    /// Natively, the bytes of address space reserved for arenas (0: none).
    pub arena_space: usize,
    /// Natively, the block size allocated and freed through the system allocator at start
    /// (0: none; `sys::warm_up`).
    pub system_mmap_threshold: usize,
}

impl Options {
    /// The defaults (the `default` column of [`OPTIONS`]).
    pub(crate) const DEFAULT: Options = Options {
        mode: Mode::Pool,
        stats_at_exit: false,
        thread_caches: true,
        valgrind_auto: true,
        quarantine_bytes: 20_000_000,
        quarantine_big: 1_000_000,
        redzone: 16,
        arena_space: MAX_ARENAS * ARENA_SIZE,
        system_mmap_threshold: 4 << 20,
    };

    /// Reads the environment. Never allocates: `getenv` returns a pointer into `environ`.
    pub(crate) fn from_env() -> Options {
        let mut o = Options::DEFAULT;
        o.mode = choice(
            Opt::Mode,
            &[
                (b"pool", Mode::Pool),
                (b"malloc", Mode::Malloc),
                (b"debug", Mode::Debug),
            ],
        )
        .unwrap_or(o.mode);
        o.stats_at_exit =
            choice(Opt::Stats, &[(b"1", true), (b"0", false)]).unwrap_or(o.stats_at_exit);
        o.thread_caches =
            choice(Opt::Tcache, &[(b"1", true), (b"0", false)]).unwrap_or(o.thread_caches);
        o.valgrind_auto =
            choice(Opt::Valgrind, &[(b"auto", true), (b"off", false)]).unwrap_or(o.valgrind_auto);
        o.quarantine_bytes = number(Opt::Quarantine, usize::MAX).unwrap_or(o.quarantine_bytes);
        o.quarantine_big = number(Opt::QuarantineBig, usize::MAX).unwrap_or(o.quarantine_big);
        o.redzone = number(Opt::Redzone, MAX_REDZONE).unwrap_or(o.redzone);
        // More than the arena table can name is no use: capped, not refused.
        o.arena_space = number(Opt::ArenaSpace, usize::MAX)
            .map_or(o.arena_space, |n| n.min(MAX_ARENAS * ARENA_SIZE));
        // Above glibc's own ceiling for its adaptive threshold it would not adapt: capped.
        o.system_mmap_threshold = number(Opt::SystemMmapThreshold, usize::MAX)
            .map_or(o.system_mmap_threshold, |n| {
                n.min(MAX_SYSTEM_MMAP_THRESHOLD)
            });
        o
    }
}

/// The value of `opt` among `choices`; `None` when unset or not one of them (then warned).
fn choice<T: Copy>(opt: Opt, choices: &[(&[u8], T)]) -> Option<T> {
    let v = get(opt)?;
    let found = choices.iter().find(|(name, _)| *name == v).map(|&(_, t)| t);
    if found.is_none() {
        warn(opt);
    }
    found
}

/// The value of a numeric option up to `max`; `None` when unset or invalid (then warned).
fn number(opt: Opt, max: usize) -> Option<usize> {
    let v = get(opt)?;
    let n = parse_usize(v).filter(|&n| n <= max);
    if n.is_none() {
        warn(opt);
    }
    n
}

fn parse_usize(v: &[u8]) -> Option<usize> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0usize, |acc, &b| {
        let d = (b as char).to_digit(10)? as usize;
        acc.checked_mul(10)?.checked_add(d)
    })
}

fn get(opt: Opt) -> Option<&'static [u8]> {
    // SAFETY: the name is NUL-terminated; getenv returns null or a pointer into `environ`, which
    // stays valid as long as nobody calls setenv for this name (we read once, at start-up).
    let p = unsafe { libc::getenv(opt.spec().env.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    Some(unsafe { CStr::from_ptr(p) }.to_bytes())
}

fn warn(opt: Opt) {
    let s = opt.spec();
    let mut buf = FmtBuf::<256>::new();
    let _ = writeln!(
        buf,
        "poolgrind: ignoring {}: expected {} (keeping the default, {})",
        s.env.to_str().unwrap_or("?"),
        s.values,
        s.default
    );
    buf.write_stderr();
}

// ---------------------------------------------------------------------------------------------
// What initialisation decided (`init::ensure_init`), fixed for the life of the process.

/// Whether pools serve small requests (false in `malloc` mode).
static POOLS_ON: AtomicU8 = AtomicU8::new(0);
/// Inaccessible bytes on each side of every block (memcheck's geometry), 0 natively.
static GAP: AtomicUsize = AtomicUsize::new(0);
/// Largest request served from pools: [`SMALL_REQUEST_THRESHOLD`], or under memcheck the
/// largest class whose red-zoned blocks still fit [`MEMCHECK_MIN_BLOCKS`] to a pool.
static POOL_LIMIT: AtomicUsize = AtomicUsize::new(SMALL_REQUEST_THRESHOLD);
/// Under memcheck, freed blocks of at least this many requested bytes use the big ring.
static QUARANTINE_BIG: AtomicUsize = AtomicUsize::new(usize::MAX);
/// `Options::arena_space`.
static ARENA_SPACE: AtomicUsize = AtomicUsize::new(0);
/// Whether `live` bitmaps are maintained (memcheck or debug).
static STRICT: AtomicU8 = AtomicU8::new(0);
/// Whether debug mode is on.
static DEBUG: AtomicU8 = AtomicU8::new(0);
/// Whether thread caches are used (natively, unless disabled, and not in debug mode).
static TCACHE_ON: AtomicU8 = AtomicU8::new(0);
/// Under memcheck, bytes of freed blocks the quarantine holds (0 once drained at exit).
static QUARANTINE_LIMIT: AtomicUsize = AtomicUsize::new(0);
/// The one flag the entry points read first: which path small requests take. Published last
/// (Release), so seeing a path implies everything else is initialised.
static PATH: AtomicU8 = AtomicU8::new(Path::Uninit as u8);

/// The path small requests take, decided once: the rows of `dispatch`'s table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Path {
    /// Anything else (debug mode, other Valgrind tools, `malloc` mode): the general front end
    /// decides.
    General = 0,
    /// Small requests go through the lock-free thread caches: initialised, pools on, thread
    /// caches on, not debug mode, not under Valgrind.
    Fast = 1,
    /// Small requests go to the memcheck paths: initialised, pools on, under memcheck.
    Memcheck = 2,
    /// Not initialised yet: the entry point initialises the allocator and reads the path again,
    /// so that the first request takes the same call path, hence has the same allocation stack,
    /// as every later one (memcheck groups leaks by that stack).
    Uninit = 3,
}

/// The path small requests take.
#[inline(always)]
pub(crate) fn path() -> Path {
    match PATH.load(Ordering::Acquire) {
        1 => Path::Fast,
        2 => Path::Memcheck,
        3 => Path::Uninit,
        _ => Path::General,
    }
}

/// Whether small requests are served from pools.
#[inline(always)]
pub(crate) fn pools_on() -> bool {
    POOLS_ON.load(Ordering::Relaxed) != 0
}

/// Whether per-block `live` bitmaps are kept (memcheck or debug).
#[inline(always)]
pub(crate) fn strict() -> bool {
    STRICT.load(Ordering::Relaxed) != 0
}

/// Whether debug mode is on.
#[inline(always)]
pub(crate) fn debug_mode() -> bool {
    DEBUG.load(Ordering::Relaxed) != 0
}

/// Whether thread caches are in use.
#[inline(always)]
pub(crate) fn tcache_on() -> bool {
    TCACHE_ON.load(Ordering::Relaxed) != 0
}

/// Distance between blocks of a class in the geometry the process runs with: the class size,
/// and under memcheck a gap on each side.
#[inline(always)]
pub(crate) fn stride(class: usize) -> usize {
    class_size(class) + 2 * GAP.load(Ordering::Relaxed)
}

/// Largest request (at [`super::types::ALIGNMENT`] or less) served from pools.
#[inline(always)]
pub(crate) fn pool_limit() -> usize {
    POOL_LIMIT.load(Ordering::Relaxed)
}

/// Natively, the bytes of address space to reserve for arenas (`POOLGRIND_ARENA_SPACE`).
#[inline]
pub(crate) fn arena_space() -> usize {
    ARENA_SPACE.load(Ordering::Relaxed)
}

/// Under memcheck, freed blocks of at least this many requested bytes use the big ring.
#[inline(always)]
pub(crate) fn quarantine_big() -> usize {
    QUARANTINE_BIG.load(Ordering::Relaxed)
}

/// Fewest blocks a pool must hold for a class to be served from pools under memcheck; larger
/// classes go to the system allocator (memcheck's own malloc, with the same red zones).
pub(crate) const MEMCHECK_MIN_BLOCKS: usize = 4;

/// memcheck's malloc geometry for `--redzone-size=rz`: the inaccessible bytes it leaves on
/// each side of a block. Its client arena (`coregrind/m_mallocfree.c`, `arena_init`) raises the
/// red zone to at least a word and then until the bytes in front of a payload — an 8-byte size
/// field plus the red zone — are a multiple of 16; the same size field and red zone follow the
/// payload. So the default 16 becomes 24 + 8 = 32 bytes on each side, 64 between two blocks,
/// and `--redzone-size=64` 72 + 8 = 80. Payloads are rounded up to 16 bytes, as size classes
/// are. (memcheck describes an address near a block with the red zone alone, `gap - 8`.)
pub(crate) const fn memcheck_gap(redzone: usize) -> usize {
    let rz = if redzone < 8 { 8 } else { redzone };
    (rz + 8).div_ceil(16) * 16
}

/// The largest class size whose blocks, with `gap` on each side, fit at least
/// [`MEMCHECK_MIN_BLOCKS`] to a pool (0 if none does).
pub(crate) const fn memcheck_pool_limit(gap: usize) -> usize {
    let mut c = NB_SMALL_SIZE_CLASSES;
    while c > 0 {
        if PoolHeader::capacity(class_size(c - 1) + 2 * gap) >= MEMCHECK_MIN_BLOCKS {
            return class_size(c - 1);
        }
        c -= 1;
    }
    0
}

/// Bytes the memcheck quarantine may hold now.
#[inline(always)]
pub(crate) fn quarantine_limit() -> usize {
    QUARANTINE_LIMIT.load(Ordering::Relaxed)
}

/// At exit under memcheck: frees skip the quarantine from now on.
pub(crate) fn stop_quarantine() {
    QUARANTINE_LIMIT.store(0, Ordering::Relaxed);
}

/// What initialisation found, from which the settings above follow.
pub(crate) struct Decision {
    pub opts: Options,
    /// Running under memcheck (instrumentation on).
    pub memcheck: bool,
    /// Running under another Valgrind tool.
    pub other_tool: bool,
}

/// Records what initialisation decided, except the path ([`publish_path`], last).
pub(crate) fn decide(d: &Decision) {
    let o = &d.opts;
    POOLS_ON.store((o.mode != Mode::Malloc) as u8, Ordering::Relaxed);
    QUARANTINE_LIMIT.store(o.quarantine_bytes, Ordering::Relaxed);
    QUARANTINE_BIG.store(o.quarantine_big, Ordering::Relaxed);
    ARENA_SPACE.store(o.arena_space, Ordering::Relaxed);
    if d.memcheck {
        let gap = memcheck_gap(o.redzone);
        GAP.store(gap, Ordering::Relaxed);
        let limit = memcheck_pool_limit(gap);
        POOL_LIMIT.store(limit, Ordering::Relaxed);
        if limit == 0 {
            // Red zones so wide that no class fits: memcheck's own malloc serves everything.
            POOLS_ON.store(0, Ordering::Relaxed);
        }
    }
    STRICT.store(
        (d.memcheck || o.mode == Mode::Debug) as u8,
        Ordering::Relaxed,
    );
    // Under memcheck, debug mode's guards would only duplicate what memcheck reports better.
    DEBUG.store(
        (o.mode == Mode::Debug && !d.memcheck) as u8,
        Ordering::Relaxed,
    );
    // Not in debug mode either: its guards are written and checked at the central heap, and
    // a bin then holds blocks on path `Fast` only, which lets the `malloc` of that path pop a
    // bin before it tests the path (`types::TCache`).
    TCACHE_ON.store(
        (o.thread_caches && !d.memcheck && !d.other_tool && o.mode != Mode::Debug) as u8,
        Ordering::Relaxed,
    );
}

/// Pools turn out unusable (no arena table, no memcheck side table): every request goes to
/// the system allocator, as in `malloc` mode.
pub(crate) fn pools_off() {
    POOLS_ON.store(0, Ordering::Relaxed);
}

/// Publishes the path (Release): the last step of initialisation.
pub(crate) fn publish_path(memcheck: bool) {
    let path = if pools_on() && tcache_on() && !debug_mode() {
        Path::Fast
    } else if pools_on() && memcheck {
        Path::Memcheck
    } else {
        Path::General
    };
    // Carriers serve light classes where thread caches keep blocks (path `Fast`, where the
    // pool limit is always 512 B), `types::carrier`.
    if path != Path::Fast {
        split_carrier(usize::MAX);
    }
    PATH.store(path as u8, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_usize_rejects_junk_and_overflow() {
        assert_eq!(parse_usize(b"4096"), Some(4096));
        assert_eq!(parse_usize(b""), None);
        assert_eq!(parse_usize(b"12k"), None);
        assert_eq!(parse_usize(b"99999999999999999999999"), None);
    }

    #[test]
    fn memcheck_gap_is_memchecks_malloc_geometry() {
        // (--redzone-size, inaccessible bytes on each side of a block of memcheck's malloc on
        // x86-64: red zone raised to a word, then until 8 + red zone is a multiple of 16, plus
        // the 8-byte size field). 16 -> 24 + 8: two 32-byte blocks are 96 bytes apart.
        for (rz, gap) in [
            (0, 16),
            (8, 16),
            (16, 32),
            (24, 32),
            (25, 48),
            (64, 80),
            (4096, 4112),
        ] {
            assert_eq!(memcheck_gap(rz), gap, "--redzone-size={rz}");
        }
    }

    #[test]
    fn memcheck_pool_limit_keeps_useful_pools() {
        // The default red zone keeps every class in pools (512-byte blocks: 6 to a pool).
        assert_eq!(
            memcheck_pool_limit(memcheck_gap(16)),
            SMALL_REQUEST_THRESHOLD
        );
        assert_eq!(
            memcheck_pool_limit(memcheck_gap(64)),
            SMALL_REQUEST_THRESHOLD
        );
        // Wide red zones send the large classes to memcheck's own malloc, then all of them.
        let limit = memcheck_pool_limit(memcheck_gap(256));
        assert!(limit > 0 && limit < SMALL_REQUEST_THRESHOLD, "{limit}");
        assert!(PoolHeader::capacity(limit + 2 * memcheck_gap(256)) >= MEMCHECK_MIN_BLOCKS);
        assert!(PoolHeader::capacity(limit + 16 + 2 * memcheck_gap(256)) < MEMCHECK_MIN_BLOCKS);
        assert_eq!(memcheck_pool_limit(memcheck_gap(MAX_REDZONE)), 0);
    }

    #[test]
    fn the_size_class_table_of_the_crate_overview_is_the_code() {
        // Rows of src/lib.rs's table: request, block, class, native, memcheck, ratio, rz 64.
        let overview = include_str!("../lib.rs");
        let rows: Vec<Vec<&str>> = overview
            .lines()
            .filter_map(|l| l.strip_prefix("//! |"))
            .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
            .filter(|cells| cells.len() == 8 && cells[1].parse::<usize>().is_ok())
            .collect();
        assert_eq!(rows.len(), NB_SMALL_SIZE_CLASSES);
        for (c, cells) in rows.iter().enumerate() {
            let n = |i: usize| cells[i].parse::<usize>().unwrap();
            let cs = class_size(c);
            assert_eq!((n(1), n(2)), (cs, c), "row {c}");
            assert_eq!(n(3), PoolHeader::capacity(cs), "native, class {c}");
            assert_eq!(
                n(4),
                PoolHeader::capacity(cs + 2 * memcheck_gap(16)),
                "class {c}"
            );
            assert_eq!(
                n(6),
                PoolHeader::capacity(cs + 2 * memcheck_gap(64)),
                "class {c}"
            );
        }
        // "above 232": the largest red zone that keeps every class in pools.
        assert_eq!(
            memcheck_pool_limit(memcheck_gap(232)),
            SMALL_REQUEST_THRESHOLD
        );
        assert!(memcheck_pool_limit(memcheck_gap(233)) < SMALL_REQUEST_THRESHOLD);
    }

    #[test]
    fn the_options_table_is_indexed_by_name() {
        for (i, row) in OPTIONS.iter().enumerate() {
            assert_eq!(row.opt as usize, i, "{:?} is not in its row", row.env);
            assert!(row.env.to_bytes().starts_with(b"POOLGRIND_"));
        }
    }
}
