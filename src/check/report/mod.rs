//! Renderers of [`Results`]: one way, results → text.
//!
//! - [`human`]: grouped, de-duplicated, folded stacks, optional colour;
//! - [`json`]: the [`Results`] value itself (schema in `docs/json-schema.md`);
//! - [`junit`]: one test case per process / attributed test, for CI test tabs;
//! - [`sarif`]: SARIF 2.1.0, for code-scanning uploads.
pub mod human;
pub mod json;
pub mod junit;
pub mod sarif;

use super::results::Results;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// [`human`]
    Human,
    /// [`json`]
    Json,
    /// [`junit`]
    Junit,
    /// [`sarif`]
    Sarif,
}

/// Renders results in a format; `human` uses `opts`, `json` its `verbose`.
pub fn render(results: &Results, format: Format, opts: &human::HumanOptions) -> String {
    match format {
        Format::Human => human::render(results, opts),
        Format::Json => json::render(results, opts.verbose),
        Format::Junit => junit::render(results),
        Format::Sarif => sarif::render(results),
    }
}

/// Escapes text for XML content and attribute values.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}
