//! `poolgrind supp merge A B… -o OUT`: one file with every entry of the inputs, without
//! duplicates, and without entries another entry already covers.
//!
//! - Duplicates: entries that match the same errors (same tools, kind, extra line and frames;
//!   names and comments do not count). The first one in input order is kept.
//! - Subsumed: an entry dropped because a more general one suppresses everything it suppresses
//!   ([`super::glob::entry_covers`]: same kind, covering leak kinds, frame-by-frame glob
//!   inclusion with `...`). When two different entries cover each other, the first is kept.
//!   The inclusion check is sound but not complete, so merge never drops an entry that still
//!   suppresses something; it may keep a redundant one.
//! - Names: suppcounts only carry names, so the merged file needs unique names: a later entry
//!   whose name is taken gets `-2`, `-3`… appended (and the rename is reported).
//!
//! Output entries are sorted by name (deterministic whatever the input order of equal files).

use std::collections::{BTreeMap, HashSet};

use super::entry::{Entry, SuppFile};
use super::glob::entry_covers;

/// What [`merge`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Entries read from all inputs.
    pub entries_in: usize,
    /// Entries written.
    pub entries_out: usize,
    /// (dropped entry, the entry it duplicates), each as `name (file:line)`.
    pub duplicates: Vec<(String, String)>,
    /// (dropped entry, the more general entry that covers it).
    pub subsumed: Vec<(String, String)>,
    /// (old name with its place, new name).
    pub renamed: Vec<(String, String)>,
}

fn place(file: &str, e: &Entry) -> String {
    if e.line == 0 {
        e.name.clone()
    } else {
        format!("{} ({file}:{})", e.name, e.line)
    }
}

/// Merges `files` (in order). `header` becomes the output's header.
pub fn merge(files: &[SuppFile], header: Vec<String>) -> (SuppFile, MergeStats) {
    let mut stats = MergeStats::default();
    let all: Vec<(&str, &Entry)> = files
        .iter()
        .flat_map(|f| f.entries.iter().map(move |e| (f.path.as_str(), e)))
        .collect();
    stats.entries_in = all.len();

    // 1. Exact duplicates (by what they match).
    let mut first_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut kept: Vec<usize> = Vec::new();
    for (i, (file, e)) in all.iter().enumerate() {
        let key = format!("{:?}", e.matcher_key());
        match first_of.get(&key) {
            Some(&j) => stats
                .duplicates
                .push((place(file, e), place(all[j].0, all[j].1))),
            None => {
                first_of.insert(key, i);
                kept.push(i);
            }
        }
    }

    // 2. Subsumption: drop b if some a covers it strictly, or mutually and a comes first.
    let mut dropped: HashSet<usize> = HashSet::new();
    for &b in &kept {
        for &a in &kept {
            if a == b || !entry_covers(all[a].1, all[b].1) {
                continue;
            }
            let mutual = entry_covers(all[b].1, all[a].1);
            if !mutual || a < b {
                stats
                    .subsumed
                    .push((place(all[b].0, all[b].1), place(all[a].0, all[a].1)));
                dropped.insert(b);
                break;
            }
        }
    }

    // 3. Unique names.
    let mut out: Vec<Entry> = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    for &i in kept.iter().filter(|i| !dropped.contains(i)) {
        let (file, e) = all[i];
        let mut e = e.clone();
        if !names.insert(e.name.clone()) {
            let mut n = 2;
            let new = loop {
                let cand = format!("{}-{n}", e.name);
                if !names.contains(&cand) {
                    break cand;
                }
                n += 1;
            };
            stats.renamed.push((place(file, &e), new.clone()));
            names.insert(new.clone());
            e.name = new;
        }
        e.line = 0;
        e.name_line = 0;
        out.push(e);
    }
    super::gen::sort_entries(&mut out);
    stats.entries_out = out.len();
    (
        SuppFile {
            path: String::new(),
            header,
            entries: out,
            trailer: Vec::new(),
            warnings: Vec::new(),
        },
        stats,
    )
}
