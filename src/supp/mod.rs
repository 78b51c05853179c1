//! Suppression files: parse, format, normalise, generate, merge, find stale entries.
