//! JSON output: the [`Results`] value, pretty-printed. Schema: `docs/json-schema.md`.

use crate::check::results::Results;

/// Renders results as pretty JSON (with a trailing newline).
pub fn render(results: &Results) -> String {
    let mut s =
        serde_json::to_string_pretty(results).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// Reads results written by [`render`] (for `poolgrind report --merge`).
pub fn parse(text: &str) -> Result<Results, serde_json::Error> {
    serde_json::from_str(text)
}
