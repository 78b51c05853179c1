//! Suppression entries from memcheck errors (`poolgrind supp gen`).
//!
//! Input: the suppression valgrind generated for each error (`--gen-suppressions=all`, kept in
//! [`VgError::suppression`]) and the error's stack, which has the same frames demangled and with
//! source files (used only to classify frames). Output: one entry per distinct normalised error.
//!
//! How an entry is shaped (why: the entry must still match after a rebuild, and must not match
//! more than the error's cause):
//!
//! 1. every `fun:` name is normalised ([`super::normalize`]): Rust hashes and disambiguators
//!    become `*`;
//! 2. the innermost frame is kept when it names where the error happened — a malloc replacement
//!    in valgrind's preload, a `memcpy`, a std function — but allocator plumbing inside the
//!    program (poolgrind's allocator, crabgrind's client-request shim, `__rust_alloc`,
//!    `alloc::alloc`, `RawVec`) is folded: it changes with the allocator and with inlining;
//! 3. from the first *user* frame to the last one, user frames are kept and runs of runtime
//!    frames between them (iterator adapters, closures' `call_once`, libtest) become `...`;
//!    frames below the last user frame (the runtime's `lang_start`, `main`, libc) are dropped —
//!    valgrind only compares as many frames as the entry has;
//! 4. a stack with no user frame at all (the Rust runtime's own allocations) keeps its runtime
//!    frames, normalised, with leading allocator frames folded;
//! 5. at most [`GenOptions::max_frames`] concrete frames are kept (deep recursion would otherwise
//!    make entries as long as `--num-callers`);
//! 6. an error inside std's backtrace machinery (capture and symbolisation: `std::backtrace`,
//!    `std::backtrace_rs`, and the crates std vendors for it, gimli, addr2line, miniz_oxide …)
//!    is the runtime's, whoever asked for the backtrace: with `RUST_BACKTRACE=1` every panic
//!    symbolises, and the symbolisation cache std keeps for the rest of the process is reported
//!    as a few dozen still-reachable blocks whose stacks name whichever test panicked first.
//!    Every frame the machinery calls counts as runtime, and the entry is `...` plus the
//!    machinery's innermost frame with a real symbol (`std::backtrace_rs::symbolize::gimli::
//!    Cache::with_global` for the whole cache): one entry for all of them, the same in every
//!    run; `supp/rust-std.supp` ships it, so a run with the shipped files reports none of them.
//!    Frames of std's vendored crates (their source under `/rust/deps/`: hashbrown behind
//!    `HashMap`, gimli …) are runtime frames everywhere.
//!
//! Entries that differ only in their leak kinds are merged into one with the union of kinds.
//! Names are `Kind-first_user_function-hash`, the hash being FNV-1a over the entry's kind line,
//! extra line and frames: the same entry gets the same name in every run. Output is sorted by
//! name, so regenerating from the same errors gives the same bytes.

use std::collections::BTreeMap;

use crate::check::frames::{classify, display_name, FrameClass};
use crate::check::model::{Frame, Log, SuppFrame, VgError};

use super::entry::{Entry, Extra, FramePat, LeakKind, LeakKinds, SuppFile};
use super::normalize::normalize_fun;
use super::parse::{parse_kind_line, parse_leak_kinds};

/// Options of [`generate`].
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// The command that regenerates the file, written into its header.
    pub regenerate: Option<String>,
    /// Leak kinds to write entries for (others are skipped). Default: all four; the CLI
    /// defaults to the runner's failing kinds.
    pub leak_kinds: Vec<LeakKind>,
    /// Most concrete (non-`...`) frames per entry.
    pub max_frames: usize,
    /// Extra header lines (after the standard ones).
    pub header: Vec<String>,
    /// Entries for the runtime's own errors only (for `supp/rust-std.supp`): frames are cut at
    /// the first user frame, so the entry matches whatever user code called the runtime;
    /// errors that happen in user code are skipped.
    pub runtime_only: bool,
    /// Entries for errors inside an allocator only (for `supp/poolgrind.supp`): the frames are
    /// the run of allocator frames from the top of the stack (a malloc replacement of valgrind's
    /// preload on top counts as part of it), capped at `max_frames`; errors whose top frames are
    /// not the allocator's are skipped.
    pub allocator_only: bool,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            regenerate: None,
            leak_kinds: LeakKind::ALL.to_vec(),
            max_frames: 12,
            header: Vec::new(),
            runtime_only: false,
            allocator_only: false,
        }
    }
}

/// What [`generate`] did, for the CLI's summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenStats {
    /// Errors read.
    pub errors: usize,
    /// Errors without a generated suppression (valgrind ran without `--gen-suppressions=all`).
    pub without_suppression: usize,
    /// Errors no suppression can match: no stack (descriptors inherited from the parent process,
    /// `--track-fds=all`); valgrind generates none for them whatever its options.
    pub unsuppressible: usize,
    /// Errors skipped because their leak kind was not selected.
    pub skipped_leak_kind: usize,
    /// Errors skipped by `runtime_only` because they happen in user code.
    pub not_runtime: usize,
    /// Entries written.
    pub entries: usize,
}

/// FNV-1a, 64 bits: small, stable across Rust versions and platforms (unlike `DefaultHasher`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The class of each frame, with the Rust binary's C `main` (below `lang_start`) counted as
/// runtime rather than user code.
fn classes(frames: &[Frame]) -> Vec<FrameClass> {
    let mut out: Vec<FrameClass> = frames.iter().map(classify).collect();
    for (f, c) in frames.iter().zip(out.iter_mut()) {
        if *c == FrameClass::User && is_std_vendored(f) {
            *c = FrameClass::Runtime;
        }
    }
    // Whatever std's backtrace machinery calls is the runtime's (step 6), whatever the frame's
    // name (`addr2line::line::path_push` has no source line, libgcc's `_Unwind_Backtrace` none).
    if let Some(outer) = frames.iter().rposition(is_backtrace_machinery) {
        for c in &mut out[..=outer] {
            if *c != FrameClass::Allocator {
                *c = FrameClass::Runtime;
            }
        }
    }
    let mut rust_runtime_seen = false;
    for (f, c) in frames.iter().zip(out.iter_mut()) {
        let name = f.func.as_deref().map(display_name).unwrap_or_default();
        if name.contains("lang_start") || name.contains("__rust_begin_short_backtrace") {
            rust_runtime_seen = true;
        }
        if rust_runtime_seen && name == "main" {
            *c = FrameClass::Runtime;
        }
    }
    out
}

/// The frame's source path, `dir/file` (either may be missing).
fn source_path(f: &Frame) -> String {
    match (f.dir.as_deref(), f.file.as_deref()) {
        (Some(d), Some(file)) if !file.starts_with('/') => format!("{d}/{file}"),
        (_, Some(file)) => file.to_string(),
        (Some(d), None) => d.to_string(),
        (None, None) => String::new(),
    }
}

/// A crate std vendors (hashbrown, gimli, addr2line, miniz_oxide, rustc-demangle …): the Rust
/// project builds them under `/rust/deps/<crate>-<version>/`, so their frames carry that path.
fn is_std_vendored(f: &Frame) -> bool {
    source_path(f).starts_with("/rust/deps/")
}

/// A frame of std's backtrace capture or symbolisation (`std::backtrace`, `std::backtrace_rs`,
/// `std::sys::backtrace` printing) — not the short-backtrace trampolines, which wrap user code.
pub fn is_backtrace_machinery(f: &Frame) -> bool {
    let name = f.func.as_deref().map(display_name).unwrap_or_default();
    if name.contains("__rust_begin_short_backtrace") || name.contains("__rust_end_short_backtrace")
    {
        return false;
    }
    let path = source_path(f);
    // std's copy of backtrace-rs is a submodule: `library/std/src/../../backtrace/src/…`.
    path.contains("library/std/src/../../backtrace/src/")
        || path.contains("library/backtrace/src/")
        || path.ends_with("library/std/src/backtrace.rs")
        || name.contains("backtrace_rs::")
        || ["std::backtrace::", "std::sys::backtrace::"]
            .iter()
            .any(|p| {
                name.starts_with(p) || name.strip_prefix('<').is_some_and(|n| n.starts_with(p))
            })
}

fn is_preload(f: &Frame) -> bool {
    f.obj
        .as_deref()
        .and_then(|o| o.rsplit('/').next())
        .is_some_and(|n| n.starts_with("vgpreload_"))
}

/// Frames through which the runtime calls user code: test harness, thread starts, `lang_start`.
fn is_driver(f: &Frame, class: FrameClass) -> bool {
    if class == FrameClass::Harness {
        return true;
    }
    let name = f.func.as_deref().map(display_name).unwrap_or_default();
    [
        "__rust_begin_short_backtrace",
        "lang_start",
        "start_thread",
        "thread_start",
    ]
    .iter()
    .any(|p| name.contains(p))
}

fn pattern_of(sf: &SuppFrame) -> FramePat {
    match sf {
        SuppFrame::Fun(n) => FramePat::Fun(normalize_fun(n)),
        SuppFrame::Obj(o) => FramePat::Obj(o.clone()),
    }
}

/// The frames valgrind generated, paired with the stack frame describing each (the stack has
/// the same frames when the lengths agree; otherwise only the suppression's names are known).
fn paired(err: &VgError, sframes: &[SuppFrame]) -> Vec<Frame> {
    if err.stack.len() == sframes.len() {
        return err.stack.clone();
    }
    sframes
        .iter()
        .map(|sf| match sf {
            SuppFrame::Fun(n) => Frame {
                func: Some(n.clone()),
                ..Frame::default()
            },
            SuppFrame::Obj(o) => Frame {
                obj: Some(o.clone()),
                ..Frame::default()
            },
        })
        .collect()
}

/// Chooses and normalises the frames of one entry (steps 2–5 of the module docs). Also returns
/// the display name of the first user frame, if any. For a leak (`leak`), the allocation
/// function on top of the stack is not kept: which malloc made the block (valgrind's
/// replacement, poolgrind's preload, a Rust global allocator) depends on how the program is run,
/// not on the leak, and an entry starting `fun:malloc` would miss the same leak under
/// `--preload`; the entry starts with `...` instead.
pub fn shape_frames(
    sframes: &[SuppFrame],
    stack: &[Frame],
    max_frames: usize,
    runtime_only: bool,
    leak: bool,
) -> (Vec<FramePat>, Option<String>) {
    let cls = classes(stack);
    let mut n = sframes.len();
    if runtime_only {
        // Cut at the first user frame; nothing left of the runtime means the error is the user's.
        n = cls.iter().position(|c| *c == FrameClass::User).unwrap_or(n);
        let runtime = (0..n).any(|i| !is_preload(&stack[i]) && cls[i] != FrameClass::Allocator);
        if !runtime {
            return (Vec::new(), None);
        }
    }
    let cls = &cls[..n];
    let (sframes, stack) = (&sframes[..n], &stack[..n]);
    let mut out: Vec<FramePat> = Vec::new();
    let push_ellipsis = |out: &mut Vec<FramePat>| {
        if out.last() != Some(&FramePat::Ellipsis) {
            out.push(FramePat::Ellipsis);
        }
    };
    if n == 0 {
        return (out, None);
    }
    if let Some(out) = backtrace_frames(sframes, stack, cls) {
        return out;
    }
    let keep_top = if leak {
        !is_preload(&stack[0]) && cls[0] != FrameClass::Allocator
    } else {
        is_preload(&stack[0]) || cls[0] != FrameClass::Allocator
    };
    // A user frame only anchors the entry if it is the error's cause, not an ancestor that
    // drives the runtime: when the harness or a runtime entry point (a thread start, `lang_start`)
    // lies between it and the error, the runtime did the work (libtest's `main` above a
    // thread-local allocation of the test runner), and the entry is a runtime entry (step 4).
    let first_user = cls
        .iter()
        .position(|c| *c == FrameClass::User)
        .filter(|&u| !(0..u).any(|i| is_driver(&stack[i], cls[i])));
    let mut user_name = None;
    match first_user {
        Some(u) => {
            let last_user = cls
                .iter()
                .rposition(|c| *c == FrameClass::User)
                .unwrap_or(u);
            if keep_top && u > 0 {
                out.push(pattern_of(&sframes[0]));
            }
            let start = if keep_top && u > 0 { 1 } else { 0 };
            if u > start {
                push_ellipsis(&mut out);
            }
            user_name = stack[u].func.as_deref().map(display_name);
            for i in u..=last_user {
                if cls[i] == FrameClass::User {
                    out.push(pattern_of(&sframes[i]));
                } else {
                    push_ellipsis(&mut out);
                }
            }
        }
        None => {
            let mut i = 0;
            if keep_top {
                out.push(pattern_of(&sframes[0]));
                i = 1;
            }
            let folded_from = i;
            while i < n && cls[i] == FrameClass::Allocator {
                i += 1;
            }
            if i > folded_from {
                push_ellipsis(&mut out);
            }
            // Keep the runtime frames, but not the C runtime at the very bottom.
            let mut end = n;
            while end > i {
                let name = stack[end - 1]
                    .func
                    .as_deref()
                    .map(display_name)
                    .unwrap_or_default();
                let bottom = name == "main"
                    || name.starts_with("__libc_start")
                    || name == "_start"
                    || name.contains("lang_start");
                if bottom {
                    end -= 1;
                } else {
                    break;
                }
            }
            out.extend(sframes[i..end].iter().map(pattern_of));
        }
    }
    // Cap the number of concrete frames; an entry is a prefix match, so cutting the tail only
    // makes it more general.
    let mut concrete = 0;
    let mut cut = out.len();
    for (k, f) in out.iter().enumerate() {
        if !f.is_ellipsis() {
            concrete += 1;
            if concrete > max_frames.max(1) {
                cut = k;
                break;
            }
        }
    }
    out.truncate(cut);
    while out.last().is_some_and(FramePat::is_ellipsis) {
        out.pop();
    }
    (out, user_name)
}

/// Step 6 of the module docs: for an error inside std's backtrace machinery (a machinery frame
/// above the first user frame), `...` and one machinery frame with a mangled name (a real
/// symbol, the same in every build of the toolchain; inlined frames only have bare DWARF names
/// such as `resolve`): the outermost one of symbolisation, else the innermost one, else the
/// innermost machinery frame. `None` for other errors.
fn backtrace_frames(
    sframes: &[SuppFrame],
    stack: &[Frame],
    cls: &[FrameClass],
) -> Option<(Vec<FramePat>, Option<String>)> {
    let first_user = cls
        .iter()
        .position(|c| *c == FrameClass::User)
        .unwrap_or(cls.len());
    let marks: Vec<usize> = (0..first_user)
        .filter(|&i| is_backtrace_machinery(&stack[i]))
        .collect();
    let mangled = |i: &usize| matches!(&sframes[*i], SuppFrame::Fun(n) if n.starts_with("_R") || n.starts_with("_ZN"));
    // Everything symbolisation allocates hangs below one function of std's backtrace-rs
    // (`Cache::with_global`); other errors anchor at their innermost symbol.
    let symbolize = |i: &usize| {
        mangled(i)
            && stack[*i]
                .func
                .as_deref()
                .is_some_and(|n| display_name(n).contains("backtrace_rs::symbolize"))
    };
    let anchor = marks
        .iter()
        .copied()
        .rfind(symbolize)
        .or_else(|| marks.iter().copied().find(mangled))
        .or(marks.first().copied())?;
    let label = stack[anchor].func.as_deref().map(display_name);
    Some((
        vec![FramePat::Ellipsis, pattern_of(&sframes[anchor])],
        label,
    ))
}

/// The frames of an allocator-only entry: the allocator frames on top of the stack (after
/// valgrind's own malloc replacement, if that is the top frame), at most `max_frames`; empty
/// when the error does not happen inside the allocator.
fn allocator_frames(sframes: &[SuppFrame], stack: &[Frame], max_frames: usize) -> Vec<FramePat> {
    let cls = classes(stack);
    let start = usize::from(stack.first().is_some_and(is_preload));
    let run = cls[start..]
        .iter()
        .take_while(|c| **c == FrameClass::Allocator)
        .count();
    if run == 0 {
        return Vec::new();
    }
    let end = (start + run).min(max_frames.max(1)).min(sframes.len());
    sframes[..end].iter().map(pattern_of).collect()
}

/// The entry for one error, before naming; `None` if valgrind generated no suppression for it
/// or its leak kind is not selected (the [`GenStats`] counters say which).
fn entry_for(err: &VgError, opts: &GenOptions, stats: &mut GenStats) -> Option<(Entry, String)> {
    if !err.can_be_suppressed() {
        stats.unsuppressible += 1;
        return None;
    }
    let Some(s) = &err.suppression else {
        stats.without_suppression += 1;
        return None;
    };
    let (tools, kind) = parse_kind_line(s.kind.trim())?;
    let mut extra = match s.aux.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(a) => match a.strip_prefix("match-leak-kinds:") {
            Some(rest) => Some(Extra::LeakKinds(parse_leak_kinds(rest).ok()?)),
            None if kind == "Param" => Some(Extra::Param(a.to_string())),
            None => Some(Extra::Other(a.to_string())),
        },
    };
    if kind == "Leak" {
        let k = LeakKind::of_error_kind(&err.kind).or_else(|| match &extra {
            Some(Extra::LeakKinds(LeakKinds::Set(s))) if s.len() == 1 => s.iter().next().copied(),
            _ => None,
        });
        if let Some(k) = k {
            if !opts.leak_kinds.contains(&k) {
                stats.skipped_leak_kind += 1;
                return None;
            }
            // Always say which kind: an entry without the line matches every kind.
            extra = Some(Extra::LeakKinds(LeakKinds::Set([k].into_iter().collect())));
        }
    }
    let stack = paired(err, &s.frames);
    let (frames, user) = if opts.allocator_only {
        // Named after the allocator function the error is in (or that made the block).
        let label = stack
            .iter()
            .find(|f| !is_preload(f))
            .and_then(|f| f.func.as_deref().map(display_name));
        (allocator_frames(&s.frames, &stack, opts.max_frames), label)
    } else {
        shape_frames(
            &s.frames,
            &stack,
            opts.max_frames,
            opts.runtime_only,
            kind == "Leak",
        )
    };
    if frames.iter().all(FramePat::is_ellipsis) {
        stats.not_runtime += usize::from(opts.runtime_only);
        return None;
    }
    let label = user
        .or_else(|| {
            let names: Vec<String> = stack
                .iter()
                .filter(|f| classify(f) != FrameClass::Allocator)
                .filter_map(|f| f.func.as_deref().map(display_name))
                .collect();
            // Prefer a qualified name (`std::thread::Thread::new`) to a bare inlined one.
            names
                .iter()
                .find(|n| short_label(n).contains("::"))
                .or(names.first())
                .cloned()
        })
        .unwrap_or_else(|| "unknown".to_string());
    Some((
        Entry {
            comments: Vec::new(),
            name: String::new(),
            tools,
            kind,
            extra,
            frames,
            line: 0,
            name_line: 0,
        },
        label,
    ))
}

/// A short, single-line, glob-free label from a demangled function name.
fn short_label(name: &str) -> String {
    // `<a::B as c::D>::f` → `a::B::f`; `<a::B<T>>::f` → `a::B::f`.
    let owned;
    let mut name = name;
    if let Some(inner) = name.strip_prefix('<') {
        let mut depth = 1i32;
        let close = inner.char_indices().find_map(|(i, c)| {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        });
        if let Some(close) = close {
            let ty = &inner[..close];
            let ty = ty.split(" as ").next().unwrap_or(ty);
            owned = format!("{ty}{}", &inner[close + 1..]);
            name = &owned;
        }
    }
    // Drop generic arguments: `with_capacity_in<u8, alloc::alloc::Global>` → `with_capacity_in`.
    let mut depth = 0i32;
    let mut s = String::new();
    let mut prev = ' ';
    for c in name.chars() {
        let arrow = prev == '-';
        prev = c;
        match c {
            '<' => depth += 1,
            '>' if !arrow => depth -= 1,
            _ if depth == 0 => s.push(c),
            _ => {}
        }
    }
    let s = if s.trim().is_empty() {
        name
    } else {
        s.as_str()
    };
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_control() || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect();
    // `with_global::<F, T>` loses its arguments above: no dangling `::`.
    let cleaned = cleaned.trim_matches('_').trim_end_matches(':');
    let mut out: String = cleaned.chars().take(80).collect();
    if out.is_empty() {
        out.push_str("unknown");
    }
    out
}

/// The stable name of an entry: `Kind-label-hash8`.
pub fn entry_name(e: &Entry, label: &str) -> String {
    let mut key = e.kind_line();
    if let Some(x) = &e.extra {
        key.push('\n');
        key.push_str(&x.to_string());
    }
    for f in &e.frames {
        key.push('\n');
        key.push_str(&f.to_string());
    }
    let h = fnv1a(key.as_bytes());
    let kind = match &e.extra {
        Some(Extra::LeakKinds(k)) => format!("Leak_{}", k.to_string().replace(',', "+")),
        _ => e.kind.clone(),
    };
    format!(
        "{kind}-{}-{:08x}",
        short_label(label),
        (h >> 32) as u32 ^ h as u32
    )
}

/// Standard header lines of a generated file.
pub fn header_lines(regenerate: Option<&str>, extra: &[String]) -> Vec<String> {
    let mut h = vec![
        "Generated by `poolgrind supp gen`: do not edit by hand; regenerate instead.".to_string(),
    ];
    if let Some(cmd) = regenerate {
        h.push(format!("Regenerate with: {cmd}"));
    }
    h.extend(extra.iter().cloned());
    h
}

/// Orders entries by name, then content; used by gen and merge so output is deterministic.
pub fn sort_entries(entries: &mut [Entry]) {
    entries.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| super::format::format_entry(a).cmp(&super::format::format_entry(b)))
    });
}

/// Entries for every error of every log: normalised, de-duplicated, leak kinds merged, named,
/// sorted.
pub fn generate(logs: &[Log], opts: &GenOptions) -> (SuppFile, GenStats) {
    let mut stats = GenStats::default();
    // Key: everything but the leak kinds. Value: the entry (kinds merged) and its label.
    let mut by_key: BTreeMap<String, (Entry, String)> = BTreeMap::new();
    for log in logs {
        for err in &log.errors {
            stats.errors += 1;
            let Some((e, label)) = entry_for(err, opts, &mut stats) else {
                continue;
            };
            let mut probe = e.clone();
            if matches!(probe.extra, Some(Extra::LeakKinds(_))) {
                probe.extra = None;
            }
            let key = super::format::format_entry(&probe);
            match by_key.get_mut(&key) {
                Some((have, _)) => {
                    if let (Some(Extra::LeakKinds(a)), Some(Extra::LeakKinds(b))) =
                        (&mut have.extra, &e.extra)
                    {
                        let union: std::collections::BTreeSet<LeakKind> =
                            a.kinds().union(&b.kinds()).copied().collect();
                        *a = LeakKinds::Set(union);
                    }
                }
                None => {
                    by_key.insert(key, (e, label));
                }
            }
        }
    }
    let mut entries: Vec<Entry> = by_key
        .into_values()
        .map(|(mut e, label)| {
            e.name = entry_name(&e, &label);
            e
        })
        .collect();
    sort_entries(&mut entries);
    stats.entries = entries.len();
    let file = SuppFile {
        path: String::new(),
        header: header_lines(opts.regenerate.as_deref(), &opts.header),
        entries,
        trailer: Vec::new(),
        warnings: Vec::new(),
    };
    (file, stats)
}
