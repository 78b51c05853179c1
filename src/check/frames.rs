//! Stack frames as a reader wants to see them: demangled, classified, and fingerprinted.
//!
//! A Rust leak under memcheck typically has 5–9 frames of allocator plumbing on top (`malloc` in
//! valgrind's preload, `alloc::alloc::alloc`, `RawVec` …, or poolgrind's own allocator and the
//! crabgrind client-request shim) and a dozen frames of runtime and test harness at the bottom.
//! The report folds those and points at the first *user* frame; the fingerprint used by baselines
//! is built from user frames only, with symbol hashes removed, so it survives rebuilds.
//!
//! Classification looks at three things, in order: the object (valgrind's preload and the poolgrind
//! preload library are allocator code), the source path (frames whose file lives under
//! `/rustc/<hash>/library/<crate>/` are the standard library, even when DWARF gives an inlined
//! frame only a bare name such as `allocate`), and the function's path (`std::`, `core::`, `test::`).

use super::model::{Frame, VgError};

/// What kind of code a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameClass {
    /// The program under test (anything not recognised as one of the others).
    User,
    /// Allocation plumbing: malloc replacements, Rust's `alloc` glue, poolgrind's allocator.
    Allocator,
    /// The Rust standard library and the C runtime (`std::`, `core::`, `__libc_start_main` …).
    Runtime,
    /// The libtest harness (`test::` and the short-backtrace trampoline that calls a test).
    Harness,
}

impl FrameClass {
    /// Frames of this class are folded in the human report.
    pub fn is_folded(self) -> bool {
        self != FrameClass::User
    }

    /// Short label used in "… N allocator frames folded".
    pub fn label(self) -> &'static str {
        match self {
            FrameClass::User => "user",
            FrameClass::Allocator => "allocator",
            FrameClass::Runtime => "runtime",
            FrameClass::Harness => "test-harness",
        }
    }
}

/// Function-name prefixes of allocator plumbing (after demangling).
const ALLOCATOR_PREFIXES: &[&str] = &[
    "poolgrind::alloc::",
    "<poolgrind::alloc::",
    "poolgrind::capi::",
    "crabgrind::",
    "<crabgrind::",
    "valgrind_client_request_expr",
    "__rustc::__rust_",
    "__rustc::__rdl_",
    "__rustc::__rg_",
    "__rust_alloc",
    "__rust_dealloc",
    "__rust_realloc",
    "__rust_alloc_zeroed",
    "__rdl_",
    "__rg_",
    "alloc::alloc::",
    "<alloc::alloc::",
    "alloc::raw_vec::",
    "<alloc::raw_vec::",
    "std::alloc::",
    "<std::alloc::",
    "std::sys::alloc::",
    "<std::sys::alloc::",
];

/// C allocation entry points (exact names), allocator code wherever they live.
const C_ALLOCATOR_FUNCTIONS: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "free",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "reallocarray",
    "operator new(unsigned long)",
    "operator delete(void*)",
];

/// C runtime functions at the bottom of every stack.
const C_RUNTIME_FUNCTIONS: &[&str] = &[
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "__libc_start_main_impl",
    "start_thread",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
    "_dl_start",
    "_dl_start_user",
    "_dl_init",
    "call_init",
];

/// The name to show for a frame's function: Rust symbols demangled (`{:#}`: no hash),
/// already-demangled names with a trailing `::h<16 hex>` hash removed, others unchanged.
pub fn display_name(func: &str) -> String {
    if func.starts_with("_ZN") || func.starts_with("_R") || func.starts_with("__ZN") {
        if let Ok(d) = rustc_demangle::try_demangle(func) {
            return format!("{d:#}");
        }
    }
    strip_hash(func).to_string()
}

/// Removes a legacy Rust symbol hash (`::h0123456789abcdef`) from the end of a name.
pub fn strip_hash(name: &str) -> &str {
    if let Some(idx) = name.rfind("::h") {
        let hash = &name[idx + 3..];
        if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return &name[..idx];
        }
    }
    name
}

/// The standard-library crate a frame's source belongs to, from its `dir`/`file`
/// (`/rustc/<hash>/library/alloc/src/raw_vec.rs` → `alloc`).
fn std_crate_of(frame: &Frame) -> Option<(String, String)> {
    let dir = frame.dir.as_deref().unwrap_or("");
    let file = frame.file.as_deref().unwrap_or("");
    let full = if dir.is_empty() {
        file.to_string()
    } else {
        format!("{dir}/{file}")
    };
    let rest = if let Some(pos) = full.find("/library/") {
        let before = &full[..pos];
        if !(before.starts_with("/rustc/")
            || before.ends_with("/rust")
            || before.contains("rustlib"))
        {
            return None;
        }
        &full[pos + "/library/".len()..]
    } else if let Some(rest) = full.strip_prefix("library/") {
        if !dir.starts_with("/rustc/") && !dir.is_empty() {
            return None;
        }
        rest
    } else {
        return None;
    };
    let (krate, path) = rest.split_once('/')?;
    Some((krate.to_string(), path.to_string()))
}

/// Frames inlined from poolgrind's own allocator or from crabgrind carry bare DWARF names
/// (`small_alloc`, `mempool_free`); their source path gives them away. Both the crates.io layout
/// (`…/poolgrind-0.1.0/src/alloc/…`, `…/crabgrind-0.4.0/…`) and this source tree are recognised.
fn is_allocator_source(frame: &Frame) -> bool {
    let dir = frame.dir.as_deref().unwrap_or("");
    let file = frame.file.as_deref().unwrap_or("");
    if dir.is_empty() && file.is_empty() {
        return false;
    }
    let full = if dir.is_empty() || file.starts_with('/') {
        file.to_string()
    } else {
        format!("{dir}/{file}")
    };
    if full.contains("/crabgrind-") {
        return true;
    }
    let own = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");
    let in_poolgrind = |rest: &str| rest.starts_with("alloc/") || rest == "capi.rs";
    if let Some(rest) = full.strip_prefix(own) {
        return in_poolgrind(rest);
    }
    if let Some(pos) = full.find("/poolgrind-") {
        if let Some((_, rest)) = full[pos + 1..].split_once("/src/") {
            return in_poolgrind(rest);
        }
    }
    false
}

/// Classifies one frame (see the module docs for the order of the checks).
pub fn classify(frame: &Frame) -> FrameClass {
    let name = frame.func.as_deref().map(display_name).unwrap_or_default();
    let obj = frame.obj.as_deref().unwrap_or("");
    let file_name = obj.rsplit('/').next().unwrap_or("");
    if file_name.starts_with("vgpreload_") || file_name.starts_with("libpoolgrind") {
        return FrameClass::Allocator;
    }
    if C_ALLOCATOR_FUNCTIONS.contains(&name.as_str()) {
        return FrameClass::Allocator;
    }
    if ALLOCATOR_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return FrameClass::Allocator;
    }
    if is_allocator_source(frame) {
        return FrameClass::Allocator;
    }
    if let Some((krate, path)) = std_crate_of(frame) {
        return match krate.as_str() {
            "alloc" if path.starts_with("src/alloc.rs") || path.starts_with("src/raw_vec") => {
                FrameClass::Allocator
            }
            "std" if path.starts_with("src/sys/alloc") || path.starts_with("src/alloc.rs") => {
                FrameClass::Allocator
            }
            "test" => FrameClass::Harness,
            _ => FrameClass::Runtime,
        };
    }
    if name.starts_with("test::") || name.starts_with("<test::") {
        return FrameClass::Harness;
    }
    if name.contains("__rust_begin_short_backtrace") {
        return if name.contains("test::") {
            FrameClass::Harness
        } else {
            FrameClass::Runtime
        };
    }
    const RUNTIME_PREFIXES: &[&str] = &[
        "std::",
        "core::",
        "alloc::",
        "<std::",
        "<core::",
        "<alloc::",
        "__rust_",
        "rust_panic",
    ];
    if RUNTIME_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return FrameClass::Runtime;
    }
    if C_RUNTIME_FUNCTIONS.contains(&name.as_str()) {
        return FrameClass::Runtime;
    }
    let libname = file_name;
    if libname.starts_with("ld-linux")
        || libname.starts_with("libc.so")
        || libname.starts_with("libc-")
    {
        return FrameClass::Runtime;
    }
    if name == "main" && frame.file.is_none() {
        // Rust's generated C `main` (the user's is `crate::main`), or a C main without debug info.
        return FrameClass::Runtime;
    }
    if frame.func.is_none() && frame.file.is_none() && !obj.is_empty() {
        // An address in a library without symbols: not something the user can act on,
        // unless it is the only information there is (the first frame is always shown).
        return FrameClass::Runtime;
    }
    FrameClass::User
}

/// Index of the first user frame of a stack, innermost first.
pub fn first_user_frame(stack: &[Frame]) -> Option<usize> {
    stack.iter().position(|f| classify(f) == FrameClass::User)
}

/// The libtest test whose body is on this stack, as libtest names it (`tests::leaks`).
///
/// libtest calls every test through `__rust_begin_short_backtrace`; the outermost user frame
/// between the error and that trampoline is the test function (`crate::tests::leaks` or its
/// closure). The crate name is dropped because libtest's names start at the module.
pub fn test_name_from_stack(stack: &[Frame]) -> Option<String> {
    let names: Vec<String> = stack
        .iter()
        .map(|f| f.func.as_deref().map(display_name).unwrap_or_default())
        .collect();
    let harness_at = (0..stack.len()).find(|&i| {
        names[i].contains("__rust_begin_short_backtrace")
            && (names[i].contains("test::")
                || stack[i + 1..]
                    .iter()
                    .take(8)
                    .any(|f| classify(f) == FrameClass::Harness))
    })?;
    let test_frame = (0..harness_at)
        .rev()
        .find(|&i| classify(&stack[i]) == FrameClass::User)?;
    let mut name = names[test_frame].as_str();
    loop {
        let trimmed = name.strip_suffix("::{{closure}}").or_else(|| {
            name.rsplit_once("::{closure#")
                .filter(|(_, r)| r.ends_with('}'))
                .map(|(l, _)| l)
        });
        match trimmed {
            Some(t) => name = t,
            None => break,
        }
    }
    let (_crate, rest) = name.split_once("::")?;
    Some(rest.to_string())
}

/// Canonical form of a function name for fingerprints: demangled, hash-free,
/// `{closure#N}` → `{closure}`, `{impl#N}` → `{impl}`.
pub fn normalise_name(func: &str) -> String {
    let name = display_name(func);
    let mut out = String::with_capacity(name.len());
    let mut rest = name.as_str();
    while let Some(pos) = rest.find('#') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with('}') {
            rest = &after[digits..];
        } else {
            out.push('#');
            rest = after;
        }
    }
    out.push_str(rest);
    out.replace("{{closure}}", "{closure}")
}

/// How many user frames go into a fingerprint.
pub const FINGERPRINT_FRAMES: usize = 3;

/// A stable, human-readable key of an error: kind plus the first user frames' normalised names
/// (falling back to the first non-allocator frames when there is no user frame).
pub fn fingerprint_key(err: &VgError) -> String {
    let mut parts = vec![err.kind.clone()];
    let user: Vec<&Frame> = err
        .stack
        .iter()
        .filter(|f| classify(f) == FrameClass::User)
        .take(FINGERPRINT_FRAMES)
        .collect();
    let chosen: Vec<&Frame> = if user.is_empty() {
        err.stack
            .iter()
            .filter(|f| classify(f) != FrameClass::Allocator)
            .take(FINGERPRINT_FRAMES)
            .collect()
    } else {
        user
    };
    if chosen.is_empty() {
        // No stack (a descriptor inherited from the parent process, with --track-fds=all):
        // the description is all that tells two such errors apart ("Open file descriptor 3: …").
        parts.push(err.what.trim().to_string());
    }
    for f in chosen {
        let name = match (&f.func, &f.obj) {
            (Some(func), _) => normalise_name(func),
            (None, Some(obj)) => format!("obj:{}", obj.rsplit('/').next().unwrap_or(obj)),
            (None, None) => "?".to_string(),
        };
        parts.push(name);
    }
    parts.join(" | ")
}

/// The short fingerprint id: 16 hex digits of FNV-1a over [`fingerprint_key`].
/// (FNV is spelled out here because `std`'s hasher is not stable across Rust releases.)
pub fn fingerprint_id(key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Display name of an executable: file name without cargo's `-<16 hex>` suffix.
pub fn binary_display_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    if let Some((stem, hash)) = file.rsplit_once('-') {
        if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return stem.to_string();
        }
    }
    file.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(func: &str, dir: &str, file: &str) -> Frame {
        Frame {
            func: Some(func.into()),
            dir: (!dir.is_empty()).then(|| dir.into()),
            file: (!file.is_empty()).then(|| file.into()),
            ..Frame::default()
        }
    }

    #[test]
    fn demangles_and_strips_hashes() {
        assert_eq!(
            display_name("_ZN4core3ptr13drop_in_place17h0123456789abcdefE"),
            "core::ptr::drop_in_place"
        );
        assert_eq!(
            display_name("leaky::tests::leaks::h0123456789abcdef"),
            "leaky::tests::leaks"
        );
        assert_eq!(display_name("main"), "main");
        assert_eq!(
            normalise_name("a::{impl#12}::b::{closure#0}"),
            "a::{impl}::b::{closure}"
        );
    }

    #[test]
    fn classifies_std_by_source_path() {
        let f = frame("allocate", "/rustc/abc/library/alloc/src", "alloc.rs");
        assert_eq!(classify(&f), FrameClass::Allocator);
        let f = frame("{closure#0}", "/rustc/abc/library/std/src/thread", "mod.rs");
        assert_eq!(classify(&f), FrameClass::Runtime);
        let f = frame(
            "core::ops::function::FnOnce::call_once",
            "/rustc/abc",
            "library/core/src/ops/function.rs",
        );
        assert_eq!(classify(&f), FrameClass::Runtime);
        let f = frame("leaky::tests::leaks", "/src", "lib.rs");
        assert_eq!(classify(&f), FrameClass::User);
    }

    #[test]
    fn binary_names_lose_cargo_hashes() {
        assert_eq!(
            binary_display_name("/t/debug/deps/leaky-0123456789abcdef"),
            "leaky"
        );
        assert_eq!(binary_display_name("./my-tool"), "my-tool");
    }
}
