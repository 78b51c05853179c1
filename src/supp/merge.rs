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
//!
//! Cost: the subsumption step does not compare every pair. A [`CoverIndex`] files each entry
//! under its kind and its first concrete frame, and an entry is only compared with the entries
//! that could possibly cover it (see the index for why no covering entry is missed), so the
//! result is exactly that of comparing all pairs (the `indexed_merge_equals_all_pairs` property
//! test checks it) at a cost close to linear for generated files.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::entry::{Entry, FramePat, SuppFile};
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
    let mut first_of: HashMap<String, usize> = HashMap::new();
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

    // 2. Subsumption: drop b if some a covers it strictly, or mutually and a comes first; the
    //    first such a in input order is the one reported.
    let index = CoverIndex::new(kept.iter().map(|&i| (i, all[i].1)));
    let mut dropped: HashSet<usize> = HashSet::new();
    for &b in &kept {
        for a in index.candidates(all[b].1) {
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

/// Where [`CoverIndex`] files an entry, by its frames.
#[derive(Default)]
struct FrameIndex<'e> {
    /// Entries whose first concrete frame has no `*` or `?`, by (frame type, text): such a
    /// pattern covers only the identical pattern.
    literal: HashMap<(u8, &'e str), Vec<usize>>,
    /// Entries whose first concrete frame is a glob, by (frame type, length, hash) of its
    /// literal prefix (the text before the first `*` or `?`): a glob covers a pattern only if
    /// that pattern starts with the glob's literal prefix.
    prefixed: HashMap<(u8, usize, u64), Vec<usize>>,
    /// The prefix lengths present in `prefixed`, per frame type.
    prefix_lens: [BTreeSet<usize>; 3],
}

/// Frame type tag and text (for `src:` the file pattern; its line is checked later).
fn frame_text(f: &FramePat) -> Option<(u8, &str)> {
    match f {
        FramePat::Fun(p) => Some((0, p)),
        FramePat::Obj(p) => Some((1, p)),
        FramePat::Src { file, .. } => Some((2, file)),
        FramePat::Ellipsis => None,
    }
}

/// Polynomial hashes of every prefix of `s`: `h[k]` is the hash of `s[..k]`.
fn prefix_hashes(s: &str) -> Vec<u64> {
    let mut h = Vec::with_capacity(s.len() + 1);
    let mut x: u64 = 0;
    h.push(x);
    for &b in s.as_bytes() {
        x = x
            .wrapping_mul(0x0000_0100_0000_01b3)
            .wrapping_add(u64::from(b) + 1);
        h.push(x);
    }
    h
}

impl<'e> FrameIndex<'e> {
    fn insert(&mut self, f: &'e FramePat, id: usize) {
        let Some((t, text)) = frame_text(f) else {
            return;
        };
        match text.find(['*', '?']) {
            None => self.literal.entry((t, text)).or_default().push(id),
            Some(k) => {
                let h = prefix_hashes(&text[..k])[k];
                self.prefixed.entry((t, k, h)).or_default().push(id);
                self.prefix_lens[usize::from(t)].insert(k);
            }
        }
    }

    /// Adds to `out` every entry filed here whose frame could cover `f`.
    fn lookup(&self, f: &FramePat, out: &mut Vec<usize>) {
        let Some((t, text)) = frame_text(f) else {
            return;
        };
        if let Some(ids) = self.literal.get(&(t, text)) {
            out.extend_from_slice(ids);
        }
        let lens = &self.prefix_lens[usize::from(t)];
        if lens.is_empty() {
            return;
        }
        let h = prefix_hashes(text);
        for &k in lens.range(..=text.len()) {
            // A hash collision only adds a candidate; the comparison decides.
            if let Some(ids) = self.prefixed.get(&(t, k, h[k])) {
                out.extend_from_slice(ids);
            }
        }
    }
}

/// The entries of one kind, filed so that every entry that may cover a given entry is found
/// without looking at the others.
///
/// Why nothing is missed: for `a` to cover `b` (see [`super::glob::frames_cover`]),
/// - if `a` starts with a concrete frame, that frame must cover `b`'s first frame (a concrete
///   frame covers neither `...` nor the empty tail): `a` is filed as *anchored* under that
///   frame and looked up with `b`'s first frame only; if `a`'s second frame is concrete too,
///   it must cover `b`'s second frame by the same argument, and `a` is a candidate only if
///   both lookups find it;
/// - if `a` starts with `...`, its first concrete frame must cover some concrete frame of `b`
///   (follow the table from its corner: `...` steps over frames of `b` until `a`'s first
///   concrete frame has to cover one): `a` is *floating*, looked up with every frame of `b`;
/// - an entry without a concrete frame (only possible for entries made in code) may cover
///   anything of its kind.
///
/// A frame covers another only if both have the same type and the covering pattern is the
/// same text (no glob character) or a glob whose literal prefix starts the other's text.
#[derive(Default)]
struct KindIndex<'e> {
    /// Anchored entries whose second frame is `...` or missing, by their first frame.
    anchored: FrameIndex<'e>,
    /// Anchored entries whose first two frames are concrete, by their first frame and (the same
    /// ids) by their second: then `b`'s second frame must be covered too, which splits the big
    /// buckets of entries that all start with `fun:memcpy` or `fun:malloc`.
    pair_first: FrameIndex<'e>,
    pair_second: FrameIndex<'e>,
    floating: FrameIndex<'e>,
    wild: Vec<usize>,
}

/// Entries by kind, then as [`KindIndex`] files them.
pub(crate) struct CoverIndex<'e> {
    kinds: HashMap<&'e str, KindIndex<'e>>,
}

impl<'e> CoverIndex<'e> {
    /// Files `entries` (id, entry).
    pub(crate) fn new(entries: impl IntoIterator<Item = (usize, &'e Entry)>) -> Self {
        let mut kinds: HashMap<&'e str, KindIndex<'e>> = HashMap::new();
        for (id, e) in entries {
            let k = kinds.entry(e.kind.as_str()).or_default();
            match e.frames.iter().position(|f| !f.is_ellipsis()) {
                None => k.wild.push(id),
                Some(0) => match e.frames.get(1) {
                    Some(second) if !second.is_ellipsis() => {
                        k.pair_first.insert(&e.frames[0], id);
                        k.pair_second.insert(second, id);
                    }
                    _ => k.anchored.insert(&e.frames[0], id),
                },
                Some(i) => k.floating.insert(&e.frames[i], id),
            }
        }
        CoverIndex { kinds }
    }

    /// Ids of the entries that may cover `b` (every one that does, and some that do not),
    /// ascending, without repeats.
    pub(crate) fn candidates(&self, b: &Entry) -> Vec<usize> {
        let mut out = Vec::new();
        let Some(k) = self.kinds.get(b.kind.as_str()) else {
            return out;
        };
        out.extend_from_slice(&k.wild);
        if let Some(f) = b.frames.first() {
            k.anchored.lookup(f, &mut out);
            // A concrete second frame of `a` covers only a concrete second frame of `b`.
            if let Some(g) = b.frames.get(1) {
                let mut first = Vec::new();
                k.pair_first.lookup(f, &mut first);
                if !first.is_empty() {
                    let mut second = Vec::new();
                    k.pair_second.lookup(g, &mut second);
                    second.sort_unstable();
                    first.retain(|i| second.binary_search(i).is_ok());
                    out.extend_from_slice(&first);
                }
            }
        }
        for f in &b.frames {
            k.floating.lookup(f, &mut out);
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}
