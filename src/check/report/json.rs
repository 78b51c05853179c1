//! JSON output: the [`Results`] value, pretty-printed. Schema: `docs/json-schema.md`.
//!
//! Errors the policy ignores are written as counts per fingerprint (`ignored_errors`) unless
//! `verbose` (`-v`) asks for every record with its stacks: a test suite's still-reachable
//! records are most of a full report's size (see `Results::compact_ignored`).

use crate::check::results::Results;

/// Renders results as pretty JSON (with a trailing newline); `verbose` keeps ignored errors in
/// full.
pub fn render(results: &Results, verbose: bool) -> String {
    let compact;
    let results = if verbose {
        results
    } else {
        compact = results.compact_ignored();
        &compact
    };
    let mut s =
        serde_json::to_string_pretty(results).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// Reads results written by [`render`] (for `poolgrind report --merge`).
pub fn parse(text: &str) -> Result<Results, serde_json::Error> {
    serde_json::from_str(text)
}
