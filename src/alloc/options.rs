//! The one table of environment options, read once at initialisation without allocating.
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

use core::ffi::CStr;

/// Allocator mode (`POOLGRIND_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pools for small requests (the default).
    Pool,
    /// Everything from the system allocator.
    Malloc,
    /// Pools with guard bytes, fill patterns and checks on free.
    Debug,
}

/// The options, as read.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `POOLGRIND_MODE`.
    pub mode: Mode,
    /// `POOLGRIND_STATS`.
    pub stats_at_exit: bool,
    /// `POOLGRIND_TCACHE`.
    pub thread_caches: bool,
    /// `POOLGRIND_VALGRIND` is not `off`.
    pub valgrind_auto: bool,
    /// `POOLGRIND_QUARANTINE`.
    pub quarantine_bytes: usize,
}

/// One row of the table, for documentation and `poolgrind` itself.
pub struct OptionSpec {
    /// Environment variable.
    pub env: &'static CStr,
    /// Accepted values.
    pub values: &'static str,
    /// Default.
    pub default: &'static str,
}

/// The table (kept in the order of the module documentation).
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        env: c"POOLGRIND_MODE",
        values: "pool|malloc|debug",
        default: "pool",
    },
    OptionSpec {
        env: c"POOLGRIND_STATS",
        values: "0|1",
        default: "0",
    },
    OptionSpec {
        env: c"POOLGRIND_TCACHE",
        values: "0|1",
        default: "1",
    },
    OptionSpec {
        env: c"POOLGRIND_VALGRIND",
        values: "auto|off",
        default: "auto",
    },
    OptionSpec {
        env: c"POOLGRIND_QUARANTINE",
        values: "bytes",
        default: "4194304",
    },
];

impl Options {
    /// The defaults.
    pub const DEFAULT: Options = Options {
        mode: Mode::Pool,
        stats_at_exit: false,
        thread_caches: true,
        valgrind_auto: true,
        quarantine_bytes: 4 << 20,
    };

    /// Reads the environment. Never allocates: `getenv` returns a pointer into `environ`.
    pub fn from_env() -> Options {
        let mut o = Options::DEFAULT;
        if let Some(v) = get(OPTIONS[0].env) {
            match v {
                b"pool" => o.mode = Mode::Pool,
                b"malloc" => o.mode = Mode::Malloc,
                b"debug" => o.mode = Mode::Debug,
                _ => warn(OPTIONS[0].env, OPTIONS[0].values),
            }
        }
        o.stats_at_exit = flag(1, o.stats_at_exit);
        o.thread_caches = flag(2, o.thread_caches);
        if let Some(v) = get(OPTIONS[3].env) {
            match v {
                b"auto" => o.valgrind_auto = true,
                b"off" => o.valgrind_auto = false,
                _ => warn(OPTIONS[3].env, OPTIONS[3].values),
            }
        }
        if let Some(v) = get(OPTIONS[4].env) {
            match parse_usize(v) {
                Some(n) => o.quarantine_bytes = n,
                None => warn(OPTIONS[4].env, OPTIONS[4].values),
            }
        }
        o
    }
}

fn flag(row: usize, default: bool) -> bool {
    match get(OPTIONS[row].env) {
        None => default,
        Some(b"1") => true,
        Some(b"0") => false,
        Some(_) => {
            warn(OPTIONS[row].env, OPTIONS[row].values);
            default
        }
    }
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

fn get(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a pointer into `environ`, which
    // stays valid as long as nobody calls setenv for this name (we read once, at start-up).
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    Some(unsafe { CStr::from_ptr(p) }.to_bytes())
}

fn warn(name: &CStr, values: &str) {
    let mut buf = crate::alloc::stats::StackWriter::<256>::new();
    let _ = core::fmt::Write::write_fmt(
        &mut buf,
        format_args!(
            "poolgrind: ignoring {}: expected {}\n",
            name.to_str().unwrap_or("?"),
            values
        ),
    );
    buf.write_stderr();
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
}
