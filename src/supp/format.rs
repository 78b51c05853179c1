//! The canonical printer (`poolgrind supp fmt`).
//!
//! Canonical form: the header comment block, a blank line, then each entry preceded by its
//! comments, indented by three spaces as valgrind prints generated suppressions, entries
//! separated by one blank line, `\n` line ends, and a final newline. Parsing the output gives
//! the same entries back (the property test `parse(format(x)) == x` checks it), and
//! formatting is idempotent.

use std::fmt::Write as _;

use super::entry::{Entry, SuppFile};

/// Indentation of lines inside an entry.
const INDENT: &str = "   ";

fn comment(out: &mut String, c: &str) {
    if c.is_empty() {
        out.push_str("#\n");
    } else {
        let _ = writeln!(out, "# {c}");
    }
}

/// Prints one entry (with its comments), ending in a newline.
pub fn format_entry(e: &Entry) -> String {
    let mut out = String::new();
    for c in &e.comments {
        comment(&mut out, c);
    }
    out.push_str("{\n");
    let _ = writeln!(out, "{INDENT}{}", e.name);
    let _ = writeln!(out, "{INDENT}{}", e.kind_line());
    if let Some(x) = &e.extra {
        let _ = writeln!(out, "{INDENT}{x}");
    }
    for f in &e.frames {
        let _ = writeln!(out, "{INDENT}{f}");
    }
    out.push_str("}\n");
    out
}

/// Prints a whole file in canonical form.
pub fn format_file(f: &SuppFile) -> String {
    let mut out = String::new();
    for c in &f.header {
        comment(&mut out, c);
    }
    let mut first = f.header.is_empty();
    for e in &f.entries {
        if !first {
            out.push('\n');
        }
        first = false;
        out.push_str(&format_entry(e));
    }
    if !f.trailer.is_empty() {
        if !first {
            out.push('\n');
        }
        for c in &f.trailer {
            comment(&mut out, c);
        }
    }
    out
}
