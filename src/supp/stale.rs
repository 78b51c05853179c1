//! Entries that never fired (`poolgrind supp stale`, `poolgrind run --report-unused-supp`).
//!
//! Valgrind's XML ends with `<suppcounts>`: the name and count of every suppression that
//! matched at least once in that process — no file, no line. So:
//!
//! - counts are summed by name over every log given: every process of a run, every shard of a
//!   CI matrix (shards can also save their sums with `--save-counts` and be summed later);
//! - an entry is stale when its name has a total count of zero;
//! - names are the only link, so when several entries share a name (in one file or across
//!   files) and the name fired, nobody can tell which of them did: those entries are reported
//!   as *ambiguous*, never as stale (give entries unique names — `supp merge` does);
//! - a log without `<suppcounts>` (valgrind crashed or was killed) may hide uses: the report
//!   says how many such logs there were, because the stale list may then be too long.
//!
//! File:line is the entry's name line, the line valgrind's `-v` output (`used_suppression:`)
//! cites.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::check::model::{Completeness, Log};

use super::entry::SuppFile;

/// An entry whose name never appeared in any `<suppcounts>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleEntry {
    /// The entry's name.
    pub name: String,
    /// The file, as given.
    pub file: String,
    /// Line of the entry's name.
    pub line: usize,
    /// `Tool:Kind` of the entry.
    pub kind: String,
}

/// A name shared by several entries that fired: which of them did is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmbiguousName {
    /// The shared name.
    pub name: String,
    /// Total count.
    pub count: u64,
    /// Every entry with the name: (file, line).
    pub places: Vec<(String, usize)>,
}

/// The result of a stale check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleReport {
    /// Entries that never fired, in file order.
    pub stale: Vec<StaleEntry>,
    /// Names shared by several entries that fired.
    pub ambiguous: Vec<AmbiguousName>,
    /// Entries checked.
    pub entries: usize,
    /// Entries whose name fired.
    pub used: usize,
    /// Logs (processes) whose counts were summed.
    pub logs: usize,
    /// Logs without a complete `<suppcounts>` (crashed or truncated).
    pub incomplete_logs: usize,
}

/// Counts summed by suppression name, as saved by `supp stale --save-counts` (and read back).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCounts {
    /// Always `poolgrind-suppcounts`.
    pub schema: String,
    /// Logs summed.
    pub logs: usize,
    /// Logs without complete counts.
    pub incomplete_logs: usize,
    /// Name → total count.
    pub counts: BTreeMap<String, u64>,
}

impl SavedCounts {
    /// The schema tag.
    pub const SCHEMA: &'static str = "poolgrind-suppcounts";

    /// Sums the `<suppcounts>` of `logs`.
    pub fn from_logs<'a>(logs: impl IntoIterator<Item = &'a Log>) -> SavedCounts {
        let mut s = SavedCounts {
            schema: Self::SCHEMA.to_string(),
            ..SavedCounts::default()
        };
        for log in logs {
            s.logs += 1;
            if log.completeness != Completeness::Complete || !log.finished {
                s.incomplete_logs += 1;
            }
            for (name, n) in &log.supp_counts {
                *s.counts.entry(name.trim().to_string()).or_default() += n;
            }
        }
        s
    }

    /// Adds another set of counts (another shard).
    pub fn add(&mut self, other: &SavedCounts) {
        self.logs += other.logs;
        self.incomplete_logs += other.incomplete_logs;
        for (k, v) in &other.counts {
            *self.counts.entry(k.clone()).or_default() += v;
        }
    }
}

/// Entries of `files` that never fired in `logs` (names shared by entries that did fire are
/// not reported; see [`report`] for those).
pub fn unused(files: &[SuppFile], logs: &[Log]) -> Vec<StaleEntry> {
    report(files, &SavedCounts::from_logs(logs)).stale
}

/// The full stale check against summed counts.
pub fn report(files: &[SuppFile], counts: &SavedCounts) -> StaleReport {
    let mut by_name: BTreeMap<&str, Vec<(String, usize)>> = BTreeMap::new();
    for f in files {
        for e in &f.entries {
            by_name
                .entry(e.name.as_str())
                .or_default()
                .push((f.path.clone(), e.name_line));
        }
    }
    let mut r = StaleReport {
        logs: counts.logs,
        incomplete_logs: counts.incomplete_logs,
        ..StaleReport::default()
    };
    for f in files {
        for e in &f.entries {
            r.entries += 1;
            let n = counts.counts.get(e.name.as_str()).copied().unwrap_or(0);
            if n > 0 {
                r.used += 1;
            } else {
                r.stale.push(StaleEntry {
                    name: e.name.clone(),
                    file: f.path.clone(),
                    line: e.name_line,
                    kind: e.kind_line(),
                });
            }
        }
    }
    for (name, places) in by_name {
        let n = counts.counts.get(name).copied().unwrap_or(0);
        if places.len() > 1 && n > 0 {
            r.ambiguous.push(AmbiguousName {
                name: name.to_string(),
                count: n,
                places,
            });
        }
    }
    r
}

/// The human-readable report: one `file:line: name (Kind)` line per stale entry, then the
/// ambiguous names and a summary line.
pub fn format_report(r: &StaleReport) -> String {
    let mut out = String::new();
    for s in &r.stale {
        out.push_str(&format!(
            "{}:{}: unused suppression `{}` ({})\n",
            s.file, s.line, s.name, s.kind
        ));
    }
    for a in &r.ambiguous {
        let places: Vec<String> = a.places.iter().map(|(f, l)| format!("{f}:{l}")).collect();
        out.push_str(&format!(
            "note: `{}` fired {} times but names {} entries ({}); valgrind reports names only, so \
             none of them is called unused; give them unique names\n",
            a.name,
            a.count,
            a.places.len(),
            places.join(", ")
        ));
    }
    if r.incomplete_logs > 0 {
        out.push_str(&format!(
            "warning: {} of {} logs have no complete suppression counts (valgrind crashed or was \
             killed); entries used only there are listed as unused\n",
            r.incomplete_logs, r.logs
        ));
    }
    out.push_str(&format!(
        "{} of {} suppressions unused (counts from {} log{})\n",
        r.stale.len(),
        r.entries,
        r.logs,
        if r.logs == 1 { "" } else { "s" }
    ));
    out
}
