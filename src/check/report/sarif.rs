//! SARIF 2.1.0 output, for code-scanning uploads (GitHub, GitLab).
//!
//! One run; one rule per memcheck kind; one result per distinct failing or baselined error (by
//! fingerprint). Repeated occurrences of the same error (other processes, tests, binaries) are
//! grouped into that one result: `occurrenceCount` sums them, `locations` lists their distinct
//! places, the message says where they ran. The fingerprint is the result's partial fingerprint,
//! so code scanning tracks the same error across runs. Baselined errors carry
//! `baselineState: unchanged` (level `note`), failing ones `new` (level `error`).
//!
//! Locations: every result has at least one (code scanning rejects a result without). The place
//! is the first user frame (else the first frame that is not the allocator's): its source file
//! when valgrind knows one, else its object file (code built without debug info), else the
//! process's executable. A region is given only for a line memcheck actually gave (1 up to
//! `i32::MAX`); a missing, zero or overflowing line gives no region at all, never an empty one.
//!
//! Code scanning places a result only if its file is given relative to the repository checkout.
//! A file under the source root (the working directory: where CI runs `poolgrind`) is written
//! relative to it with `uriBaseId: "%SRCROOT%"` (SARIF §3.4.4), and the root itself in
//! `originalUriBaseIds`; any other file (a system header, the Rust standard library, a shared
//! library) as an absolute `file://` URI.
//!
//! GitHub's documented limits for an upload are kept here (GitHub Docs, "SARIF support for code
//! scanning" and "Troubleshooting SARIF uploads: SARIF results exceed one or more limits",
//! <https://docs.github.com/en/code-security/code-scanning/troubleshooting-sarif-uploads/results-exceed-limit>;
//! "SARIF results file is too large",
//! <https://docs.github.com/en/code-security/code-scanning/troubleshooting-sarif-uploads/file-too-large>;
//! GitHub changelog 2024-05-06, "Code scanning will stop combining runs from a single upload"):
//! - at most 25,000 results per run (more rejects the file; only 5,000 are shown):
//!   [`MAX_RESULTS_PER_RUN`];
//! - at most 1,000 locations per result (only 100 are shown): [`MAX_LOCATIONS_PER_RESULT`];
//! - at most 10 MB per file (GitHub counts the gzip-compressed upload; this renderer keeps the
//!   uncompressed text under the limit, so any upload path passes): [`MAX_FILE_BYTES`];
//! - one run per category (and at most 20 runs per file): the document has exactly one run.
//!   Shards of one CI run are combined with `poolgrind report --merge` before rendering.
//!
//! When a limit cuts results, failing errors are kept before baselined ones and frequent errors
//! before rare ones, and the run's invocation carries a warning notification saying how many were
//! left out (the human report and JSON still have all of them).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::check::frames::FrameClass;
use crate::check::policy::Verdict;
use crate::check::results::{ErrorResult, FrameResult, Results};

/// Most results GitHub accepts in one run.
pub const MAX_RESULTS_PER_RUN: usize = 25_000;
/// Most locations GitHub accepts in one result.
pub const MAX_LOCATIONS_PER_RESULT: usize = 1_000;
/// Largest SARIF file GitHub accepts (10 MB; decimal, the smaller reading of "MB").
pub const MAX_FILE_BYTES: usize = 10_000_000;

/// How much one document may hold; [`Limits::GITHUB`] unless a test needs smaller numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Results per run.
    pub results: usize,
    /// Locations per result.
    pub locations: usize,
    /// Bytes per document.
    pub bytes: usize,
}

impl Limits {
    /// GitHub code scanning's documented limits.
    pub const GITHUB: Limits = Limits {
        results: MAX_RESULTS_PER_RUN,
        locations: MAX_LOCATIONS_PER_RESULT,
        bytes: MAX_FILE_BYTES,
    };
}

/// Renders results as SARIF 2.1.0 JSON, locations relative to the working directory.
pub fn render(results: &Results) -> String {
    let cwd = std::env::current_dir().ok();
    render_with_root(results, cwd.as_deref())
}

/// Renders results as SARIF 2.1.0 JSON, locations under `root` relative to it.
pub fn render_with_root(results: &Results, root: Option<&Path>) -> String {
    render_with_limits(results, root, Limits::GITHUB)
}

/// Renders results as SARIF 2.1.0 JSON within `limits`.
pub fn render_with_limits(results: &Results, root: Option<&Path>, limits: Limits) -> String {
    let groups = groups(results);
    let total = groups.len();
    let mut rendered: Vec<Rendered> = groups
        .iter()
        .map(|g| render_group(results, g, root, limits.locations))
        .collect();
    // Which results to keep when a limit cuts: failing before baselined, then by occurrences.
    let mut priority: Vec<usize> = (0..rendered.len()).collect();
    priority.sort_by_key(|&i| {
        (
            groups[i].verdict != Verdict::Fail,
            u64::MAX - groups[i].occurrences,
        )
    });
    let mut keep = vec![false; rendered.len()];
    for &i in priority.iter().take(limits.results) {
        keep[i] = true;
    }
    let mut notes = Vec::new();
    let cut_locations: usize = rendered.iter().filter(|r| r.locations_cut > 0).count();
    if cut_locations > 0 {
        notes.push(format!(
            "{cut_locations} result{} had more than {} distinct locations; only the first {} \
             of each are listed (GitHub's limit per result)",
            if cut_locations == 1 { "" } else { "s" },
            limits.locations,
            limits.locations
        ));
    }
    if total > limits.results {
        notes.push(format!(
            "{} of {total} distinct errors left out: GitHub accepts at most {} results per run \
             (failing and frequent errors kept first; the human and JSON reports list them all)",
            total - limits.results,
            limits.results
        ));
    }

    let rules = rules(groups.iter().map(|g| g.kind));
    // Pretty-printed when that fits, else compact (one line).
    let compact = document(&rendered, &keep, &rules, root, &notes, false);
    if compact.len().saturating_mul(3) <= limits.bytes {
        let pretty = document(&rendered, &keep, &rules, root, &notes, true);
        if pretty.len() <= limits.bytes {
            return pretty;
        }
    }
    if compact.len() <= limits.bytes {
        return compact;
    }
    for r in &mut rendered {
        r.compact_len = r.value.to_string().len();
    }
    // Still too large: drop the lowest-priority results until the text fits. Sizes are of the
    // compact text of each result (plus its comma); the notification adds a few hundred bytes,
    // and a second pass drops more should the estimate fall short.
    let kept_before = keep.iter().filter(|k| **k).count();
    let droppable: Vec<usize> = priority
        .iter()
        .rev()
        .copied()
        .filter(|&i| keep[i])
        .collect();
    let mut order = droppable.into_iter().peekable();
    let mut size = compact.len() + 512;
    loop {
        while size > limits.bytes {
            let Some(i) = order.next() else { break };
            keep[i] = false;
            size -= rendered[i].compact_len + 1;
            rendered[i].value = Value::Null;
        }
        let kept = keep.iter().filter(|k| **k).count();
        let mut all_notes = notes.clone();
        all_notes.push(format!(
            "{} more distinct errors left out to keep the file under {} bytes (GitHub's limit \
             per SARIF file); {kept} of {total} are listed",
            kept_before - kept,
            limits.bytes
        ));
        let doc = document(&rendered, &keep, &rules, root, &all_notes, false);
        if doc.len() <= limits.bytes || order.peek().is_none() {
            return doc;
        }
        size = doc.len() + limits.bytes / 100;
    }
}

/// The errors of one fingerprint.
struct Group<'a> {
    kind: &'a str,
    verdict: Verdict,
    members: Vec<&'a ErrorResult>,
    occurrences: u64,
}

/// Failing and baselined errors grouped by fingerprint, in order of first appearance.
fn groups(results: &Results) -> Vec<Group<'_>> {
    let mut order: Vec<Group<'_>> = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for e in results
        .errors
        .iter()
        .filter(|e| e.verdict != Verdict::Ignored)
    {
        let i = *index.entry(e.fingerprint.as_str()).or_insert_with(|| {
            order.push(Group {
                kind: e.kind.as_str(),
                verdict: e.verdict,
                members: Vec::new(),
                occurrences: 0,
            });
            order.len() - 1
        });
        let g = &mut order[i];
        if e.verdict == Verdict::Fail {
            g.verdict = Verdict::Fail;
        }
        g.occurrences += e.count.max(1);
        g.members.push(e);
    }
    order
}

/// One result, ready to place in the document.
struct Rendered {
    value: Value,
    /// Length of `value` as compact JSON; measured only when the document is too large.
    compact_len: usize,
    locations_cut: usize,
}

fn render_group(
    results: &Results,
    g: &Group<'_>,
    root: Option<&Path>,
    max_locations: usize,
) -> Rendered {
    let first = g.members[0];
    let mut locations: Vec<Value> = Vec::new();
    let mut seen: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut cut = 0;
    for m in &g.members {
        let loc = primary_location(results, m, root);
        let key = loc.to_string();
        if seen.contains(&key) {
            continue;
        }
        if locations.len() >= max_locations {
            cut += 1;
            continue;
        }
        seen.insert(key);
        locations.push(loc);
    }
    let mut places: Vec<String> = Vec::new();
    let mut processes: std::collections::BTreeSet<usize> = std::collections::BTreeSet::new();
    for m in &g.members {
        processes.insert(m.process);
        let place = match &m.test {
            Some(t) => format!("{} › {t}", m.binary),
            None => m.binary.clone(),
        };
        if !places.contains(&place) {
            places.push(place);
        }
    }
    let mut message = first.what.clone();
    let shown = if places.len() > 4 {
        format!("{} and {} more", places[..4].join(", "), places.len() - 4)
    } else {
        places.join(", ")
    };
    if g.occurrences > 1 || g.members.len() > 1 {
        message.push_str(&format!(
            " ({} occurrences in {} process{}: {shown})",
            g.occurrences,
            processes.len(),
            if processes.len() == 1 { "" } else { "es" }
        ));
    } else {
        message.push_str(&format!(" (in {shown})"));
    }
    if cut > 0 {
        message.push_str(&format!(
            "; {cut} more distinct locations left out (at most {max_locations} per result)"
        ));
    }
    let related: Vec<Value> = first
        .aux
        .iter()
        .filter_map(|aux| {
            let f = place_frame(&aux.frames)?;
            let mut loc = source_or_object(f, root)?;
            loc["message"] = json!({ "text": aux.what });
            Some(loc)
        })
        .take(max_locations)
        .enumerate()
        .map(|(i, mut loc)| {
            loc["id"] = json!(i + 1);
            loc
        })
        .collect();
    let mut value = json!({
        "ruleId": g.kind,
        "level": if g.verdict == Verdict::Fail { "error" } else { "note" },
        "baselineState": if g.verdict == Verdict::Fail { "new" } else { "unchanged" },
        "message": { "text": message },
        "locations": locations,
        "occurrenceCount": g.occurrences,
        "partialFingerprints": { "poolgrindFingerprint/v1": first.fingerprint },
    });
    if !related.is_empty() {
        value["relatedLocations"] = Value::Array(related);
    }
    Rendered {
        value,
        compact_len: 0,
        locations_cut: cut,
    }
}

/// The frame an error is placed at: the first user frame, else the first frame that is not the
/// allocator's, else the innermost.
fn place_frame(frames: &[FrameResult]) -> Option<&FrameResult> {
    frames
        .iter()
        .find(|f| f.class() == FrameClass::User)
        .or_else(|| frames.iter().find(|f| f.class() != FrameClass::Allocator))
        .or_else(|| frames.first())
}

/// Where an error happened: its frame's source file, else its object file, else the executable
/// of its process, else its binary's name. Never empty.
fn primary_location(results: &Results, e: &ErrorResult, root: Option<&Path>) -> Value {
    let frame = e
        .user_frame
        .and_then(|u| e.frames.get(u))
        .or_else(|| place_frame(&e.frames));
    if let Some(loc) = frame.and_then(|f| source_or_object(f, root)) {
        return loc;
    }
    let exe = results
        .processes
        .get(e.process)
        .and_then(|p| p.argv.first())
        .filter(|a| !a.is_empty())
        .cloned()
        .unwrap_or_else(|| e.binary.clone());
    let mut loc = json!({
        "physicalLocation": { "artifactLocation": artifact_location(&exe, root) },
    });
    if let Some(name) = frame.and_then(|f| f.function.clone()) {
        loc["logicalLocations"] = json!([{ "fullyQualifiedName": name }]);
    }
    loc
}

/// A location at a frame: its source file (with a region when the line is usable), else its
/// object file (no region: a line of a binary means nothing). `None` when it has neither.
fn source_or_object(f: &FrameResult, root: Option<&Path>) -> Option<Value> {
    let physical = match (&f.file, &f.object) {
        (Some(file), _) if !file.is_empty() => {
            let mut p = json!({ "artifactLocation": artifact_location(file, root) });
            if let Some(line) = f.line.filter(|l| (1..=i32::MAX as u32).contains(l)) {
                p["region"] = json!({ "startLine": line });
            }
            p
        }
        (_, Some(obj)) if !obj.is_empty() => {
            let mut p = json!({ "artifactLocation": artifact_location(obj, root) });
            if let Some(ip) = &f.ip {
                // The instruction address, for a reader with the binary at hand (kept in a
                // property bag: SARIF's `address` object wants a number, valgrind gives hex).
                p["properties"] = json!({ "ip": ip });
            }
            p
        }
        _ => return None,
    };
    let mut loc = json!({ "physicalLocation": physical });
    if let Some(name) = f.function.as_deref().filter(|n| !n.is_empty()) {
        loc["logicalLocations"] = json!([{ "fullyQualifiedName": name }]);
    }
    Some(loc)
}

/// An `artifactLocation` for `file`: relative to `root` (with `%SRCROOT%`) when under it.
fn artifact_location(file: &str, root: Option<&Path>) -> Value {
    let path = Path::new(file);
    if let Some(rel) = root.and_then(|r| path.strip_prefix(r).ok()) {
        return json!({ "uri": uri_path(&rel.to_string_lossy()), "uriBaseId": "%SRCROOT%" });
    }
    if path.is_absolute() {
        json!({ "uri": format!("file://{}", uri_path(file)) })
    } else {
        json!({ "uri": uri_path(file) })
    }
}

/// Percent-encodes what may not appear in a URI path (RFC 3986): space, `%`, `#`, `?` and
/// non-ASCII bytes.
fn uri_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a memcheck kind means, for the rule's `fullDescription` and `help` (code scanning shows
/// both and its ingestion rules ask for them).
fn describe_kind(kind: &str) -> &'static str {
    match kind {
        "InvalidRead" => "A read of memory the program may not access: outside any heap block (past its end, before its start), or inside a block already freed.",
        "InvalidWrite" => "A write to memory the program may not access: outside any heap block (past its end, before its start), or inside a block already freed.",
        "InvalidFree" => "A free of an address that is not the start of a live heap block: freed twice, never allocated, or an interior pointer.",
        "MismatchedFree" => "A block freed with a function of another family than the one that allocated it (malloc/free, new/delete, new[]/delete[]).",
        "InvalidJump" => "A jump or call to an address that holds no code the program may run.",
        "Overlap" => "A copy whose source and destination overlap (memcpy, strcpy and the like): the result is undefined.",
        "InvalidMemPool" => "An invalid memory-pool handle passed to a pool client request.",
        "FishyValue" => "A size argument so large it is most likely a negative number or garbage.",
        "UninitCondition" => "A conditional jump or move depends on memory that was never initialised.",
        "UninitValue" => "An uninitialised value is used where its value matters (an address, a system call).",
        "SyscallParam" => "A system call is given uninitialised or unaddressable memory.",
        "ClientCheck" => "A client request that checks memory (VALGRIND_CHECK_MEM_IS_DEFINED and the like) found a problem.",
        "Leak_DefinitelyLost" => "Memory that is still allocated at exit with no pointer left to it: definitely lost.",
        "Leak_IndirectlyLost" => "Memory reachable only from blocks that are themselves lost: indirectly lost.",
        "Leak_PossiblyLost" => "Memory reachable at exit only through interior pointers: possibly lost.",
        "Leak_StillReachable" => "Memory still reachable at exit that was never freed.",
        _ if kind.starts_with("Fd") => "A file-descriptor error reported by valgrind's --track-fds.",
        _ => "An error memcheck reported with this kind.",
    }
}

fn rules<'a>(kinds: impl Iterator<Item = &'a str>) -> Vec<Value> {
    let kinds: std::collections::BTreeSet<&str> = kinds.collect();
    kinds
        .iter()
        .map(|k| {
            let text = describe_kind(k);
            json!({
                "id": k,
                "shortDescription": { "text": format!("memcheck {k}") },
                "fullDescription": { "text": text },
                "help": {
                    "text": format!("{text} See the memcheck manual: https://valgrind.org/docs/manual/mc-manual.html"),
                    "markdown": format!("{text} See the [memcheck manual](https://valgrind.org/docs/manual/mc-manual.html)."),
                },
                "helpUri": "https://valgrind.org/docs/manual/mc-manual.html",
            })
        })
        .collect()
}

/// The whole document, with the results marked in `keep`.
fn document(
    rendered: &[Rendered],
    keep: &[bool],
    rules: &[Value],
    root: Option<&Path>,
    notes: &[String],
    pretty: bool,
) -> String {
    let results: Vec<&Value> = rendered
        .iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(r, _)| &r.value)
        .collect();
    let mut run = json!({
        "tool": { "driver": {
            "name": "poolgrind",
            "version": env!("CARGO_PKG_VERSION"),
            "informationUri": "https://valgrind.org/docs/manual/mc-manual.html",
            "rules": rules,
        }},
        "results": results,
    });
    if let Some(r) = root {
        run["originalUriBaseIds"] = json!({
            "%SRCROOT%": { "uri": format!("file://{}/", uri_path(&r.to_string_lossy()).trim_end_matches('/')) }
        });
    }
    if !notes.is_empty() {
        let notifications: Vec<Value> = notes
            .iter()
            .map(|n| json!({ "level": "warning", "message": { "text": n } }))
            .collect();
        run["invocations"] = json!([{
            "executionSuccessful": true,
            "toolExecutionNotifications": notifications,
        }]);
    }
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    });
    let mut s = if pretty {
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    } else {
        doc.to_string()
    };
    s.push('\n');
    s
}
