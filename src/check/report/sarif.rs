//! SARIF 2.1.0 output, for code-scanning uploads (GitHub, GitLab).
//!
//! One rule per memcheck kind; one result per distinct failing or baselined error (by
//! fingerprint), located at its first user frame, with the fingerprint as a partial fingerprint
//! so code-scanning tracks the same error across runs. Baselined errors carry
//! `baselineState: unchanged`, failing ones `new`.
//!
//! Locations: code scanning places a result only if its file is given relative to the
//! repository checkout. A file under the source root (the working directory: where CI runs
//! `poolgrind`) is written relative to it with `uriBaseId: "%SRCROOT%"` (SARIF §3.4.4), and the
//! root itself in `originalUriBaseIds`; any other file (a system header, the Rust standard
//! library) as an absolute `file://` URI.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{json, Value};

use crate::check::policy::Verdict;
use crate::check::results::Results;

/// Renders results as SARIF 2.1.0 JSON, locations relative to the working directory.
pub fn render(results: &Results) -> String {
    let cwd = std::env::current_dir().ok();
    render_with_root(results, cwd.as_deref())
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

/// Renders results as SARIF 2.1.0 JSON, locations under `root` relative to it.
pub fn render_with_root(results: &Results, root: Option<&Path>) -> String {
    let mut rules: BTreeSet<&str> = BTreeSet::new();
    let mut seen: BTreeMap<&str, ()> = BTreeMap::new();
    let mut sarif_results = Vec::new();
    for e in results
        .errors
        .iter()
        .filter(|e| e.verdict != Verdict::Ignored)
    {
        if seen.insert(e.fingerprint.as_str(), ()).is_some() {
            continue;
        }
        rules.insert(e.kind.as_str());
        let mut locations = Vec::new();
        if let Some(f) = e.user_frame.and_then(|u| e.frames.get(u)) {
            if let Some(file) = &f.file {
                let mut region = json!({});
                if let Some(line) = f.line {
                    region = json!({ "startLine": line });
                }
                locations.push(json!({
                    "physicalLocation": {
                        "artifactLocation": artifact_location(file, root),
                        "region": region,
                    },
                    "logicalLocations": [{ "fullyQualifiedName": f.function.clone().unwrap_or_default() }],
                }));
            }
        }
        let mut message = e.what.clone();
        if let Some(t) = &e.test {
            message.push_str(&format!(" (in {} › {t})", e.binary));
        } else {
            message.push_str(&format!(" (in {})", e.binary));
        }
        sarif_results.push(json!({
            "ruleId": e.kind,
            "level": if e.verdict == Verdict::Fail { "error" } else { "note" },
            "baselineState": if e.verdict == Verdict::Fail { "new" } else { "unchanged" },
            "message": { "text": message },
            "locations": locations,
            "partialFingerprints": { "poolgrindFingerprint/v1": e.fingerprint },
        }));
    }
    let rules: Vec<Value> = rules
        .iter()
        .map(|k| json!({ "id": k, "shortDescription": { "text": format!("memcheck {k}") } }))
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "poolgrind",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://valgrind.org/docs/manual/mc-manual.html",
                "rules": rules,
            }},
            "results": sarif_results,
            "originalUriBaseIds": root.map(|r| json!({
                "%SRCROOT%": { "uri": format!("file://{}/", uri_path(&r.to_string_lossy()).trim_end_matches('/')) }
            })).unwrap_or_else(|| json!({})),
        }],
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}
