//! Configuration: the one table of environment options (read once at initialisation, without
//! allocating) and what initialisation decided from them (the path every request takes).
//!
//! | variable               | values                         | default   | meaning |
//! |------------------------|--------------------------------|-----------|---------|
//! | `POOLGRIND_MODE`       | `pool`, `malloc`, `debug`      | `pool`    | `malloc`: every request goes to the system allocator (the `PYTHONMALLOC=malloc` analogue); `debug`: pools plus guard bytes, fill patterns and checks on free that abort with a message (CPython's debug hooks) |
//! | `POOLGRIND_STATS`      | `0`, `1`                       | `0`       | print the statistics table to stderr at exit |
//! | `POOLGRIND_TCACHE`     | `0`, `1`                       | `1`       | per-thread block caches (natively; never under Valgrind) |
//! | `POOLGRIND_VALGRIND`   | `auto`, `off`                  | `auto`    | `off`: behave as if the instrumentation were compiled out, even under Valgrind |
//! | `POOLGRIND_QUARANTINE` | bytes (`0` disables)           | `4194304` | under memcheck, how many bytes of freed blocks wait before reuse |
//!
//! A value that cannot be parsed keeps the default and prints one warning line to stderr.
//! Options are named by [`Opt`]; the table is indexed by it, never by a bare number.

use core::ffi::CStr;
use core::fmt::Write;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use super::sys::FmtBuf;
use super::types::class_size;

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
pub(crate) const OPTIONS: [OptionSpec; 5] = [
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
        default: "4194304",
    },
];

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
    pub quarantine_bytes: usize,
}

impl Options {
    /// The defaults (the `default` column of [`OPTIONS`]).
    pub(crate) const DEFAULT: Options = Options {
        mode: Mode::Pool,
        stats_at_exit: false,
        thread_caches: true,
        valgrind_auto: true,
        quarantine_bytes: 4 << 20,
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
        if let Some(v) = get(Opt::Quarantine) {
            match parse_usize(v) {
                Some(n) => o.quarantine_bytes = n,
                None => warn(Opt::Quarantine),
            }
        }
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
/// Extra bytes between blocks (the memcheck red zone), 0 natively.
static REDZONE: AtomicUsize = AtomicUsize::new(0);
/// Whether `live` bitmaps are maintained (memcheck or debug).
static STRICT: AtomicU8 = AtomicU8::new(0);
/// Whether debug mode is on.
static DEBUG: AtomicU8 = AtomicU8::new(0);
/// Whether thread caches are used (natively, unless disabled).
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

/// Distance between blocks of a class in the geometry the process runs with.
#[inline(always)]
pub(crate) fn stride(class: usize) -> usize {
    class_size(class) + REDZONE.load(Ordering::Relaxed)
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
    /// The red zone under memcheck.
    pub redzone: usize,
}

/// Records what initialisation decided, except the path ([`publish_path`], last).
pub(crate) fn decide(d: &Decision) {
    let o = &d.opts;
    POOLS_ON.store((o.mode != Mode::Malloc) as u8, Ordering::Relaxed);
    QUARANTINE_LIMIT.store(o.quarantine_bytes, Ordering::Relaxed);
    if d.memcheck {
        REDZONE.store(d.redzone, Ordering::Relaxed);
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
    TCACHE_ON.store(
        (o.thread_caches && !d.memcheck && !d.other_tool) as u8,
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
    fn the_options_table_is_indexed_by_name() {
        for (i, row) in OPTIONS.iter().enumerate() {
            assert_eq!(row.opt as usize, i, "{:?} is not in its row", row.env);
            assert!(row.env.to_bytes().starts_with(b"POOLGRIND_"));
        }
    }
}
