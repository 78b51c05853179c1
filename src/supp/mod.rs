//! Suppression files: parse, format, normalise, generate, merge, find stale entries.
//!
//! - [`entry`]: the data (entries, frame patterns, leak kinds, diagnostics);
//! - [`parse`]: valgrind's grammar with file:line errors; [`format`](mod@format): the canonical printer;
//! - [`glob`]: valgrind's `*`/`?` matching, and inclusion between patterns and entries;
//! - [`normalize`]: makes Rust symbol names survive rebuilds; [`gen`]: entries from errors;
//! - [`merge`]: union without duplicates or subsumed entries; [`stale`]: entries that never fired;
//! - [`cli`]: `poolgrind supp …`.
pub mod entry;
pub mod format;
pub mod parse;

pub use entry::{Diagnostic, Entry, Extra, FramePat, LeakKind, LeakKinds, SuppFile};
pub use format::{format_entry, format_file};
pub use parse::{parse_bytes, parse_file, parse_str, ParseErrors};
pub mod check;
pub mod cli;
pub mod gen;
pub mod glob;
pub mod merge;
pub mod normalize;
pub mod stale;
