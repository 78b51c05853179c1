//! SARIF 2.1.0 output, for code-scanning uploads (GitHub, GitLab).
//!
//! One rule per memcheck kind; one result per distinct failing or baselined error (by
//! fingerprint), located at its first user frame, with the fingerprint as a partial fingerprint
//! so code-scanning tracks the same error across runs. Baselined errors carry
//! `baselineState: unchanged`, failing ones `new`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::check::policy::Verdict;
use crate::check::results::Results;

/// Renders results as SARIF 2.1.0 JSON.
pub fn render(results: &Results) -> String {
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
                        "artifactLocation": { "uri": file },
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
        }],
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}
