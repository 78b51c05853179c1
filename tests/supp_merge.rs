//! `supp merge`: duplicates and covered entries dropped, names made unique; the merged file
//! still matches every error the inputs matched (checked here without valgrind, with the same
//! glob semantics), and glob inclusion is sound (property test).

use poolgrind::check::model::{Log, SuppFrame};
use poolgrind::check::xml;
use poolgrind::supp::gen::{generate, GenOptions};
use poolgrind::supp::glob::{entry_matches_stack, glob_covers, glob_match, StackFrame};
use poolgrind::supp::merge::{merge, MergeStats};
use poolgrind::supp::{
    format_file, parse_str, Entry, Extra, FramePat, LeakKind, LeakKinds, SuppFile,
};
use proptest::prelude::*;

fn dir() -> String {
    format!("{}/tests/fixtures/supp", env!("CARGO_MANIFEST_DIR"))
}

fn log(name: &str) -> Log {
    xml::parse_file(format!("{}/{name}", dir())).unwrap()
}

fn generated(name: &str) -> SuppFile {
    let (mut f, _) = generate(&[log(name)], &GenOptions::default());
    // Through text, as `supp merge` reads files.
    f = parse_str(&format!("{name}.supp"), &format_file(&f)).unwrap();
    f
}

/// Does some entry of `file` suppress this error (by its generated suppression's frames)?
fn suppresses(file: &SuppFile, err: &poolgrind::check::model::VgError) -> bool {
    let s = err.suppression.as_ref().unwrap();
    let (_, kind) = s.kind.split_once(':').unwrap();
    let stack: Vec<StackFrame<'_>> = s
        .frames
        .iter()
        .map(|f| match f {
            SuppFrame::Fun(n) => StackFrame {
                fun: Some(n),
                ..StackFrame::default()
            },
            SuppFrame::Obj(o) => StackFrame {
                obj: Some(o),
                ..StackFrame::default()
            },
        })
        .collect();
    file.entries.iter().any(|e: &Entry| {
        e.kind == kind
            && match (&e.extra, LeakKind::of_error_kind(&err.kind)) {
                (Some(Extra::LeakKinds(k)), Some(lk)) => k.kinds().contains(&lk),
                _ => true,
            }
            && entry_matches_stack(&e.frames, &stack)
    })
}

#[test]
fn merge_drops_duplicates_and_covered_entries() {
    let text = std::fs::read_to_string(format!("{}/general.supp", dir())).unwrap();
    let general = parse_str("general.supp", &text).unwrap();
    let inputs = vec![
        generated("bugs.xml"),
        generated("rbugs.xml"),
        generated("rbugs_test.xml"),
        // rbugs_shifted generates the very same entries: all duplicates.
        generated("rbugs_shifted.xml"),
        general,
    ];
    let (merged, stats) = merge(&inputs, vec!["merged for the test".into()]);
    let text = format_file(&merged);
    // Every error of every input log is still suppressed by the merged file.
    for name in [
        "bugs.xml",
        "rbugs.xml",
        "rbugs_test.xml",
        "rbugs_shifted.xml",
    ] {
        for err in &log(name).errors {
            assert!(
                suppresses(&merged, err),
                "{name}: {} not suppressed by\n{text}",
                err.kind
            );
        }
    }
    // rbugs_shifted.xml adds nothing; the shared std entry of rbugs/rbugs_test is one entry.
    assert_eq!(stats.duplicates.len(), 5 + 1, "{:#?}", stats.duplicates);
    let subsumed: Vec<&str> = stats.subsumed.iter().map(|(d, _)| d.as_str()).collect();
    insta::assert_snapshot!(format!(
        "{text}\n---- stats\nin: {}, out: {}\nsubsumed:\n{}\nrenamed:\n{}\n",
        stats.entries_in,
        stats.entries_out,
        subsumed.join("\n"),
        stats
            .renamed
            .iter()
            .map(|(a, b)| format!("{a} -> {b}"))
            .collect::<Vec<_>>()
            .join("\n"),
    ));
    assert!(subsumed
        .iter()
        .any(|s| s.starts_with("Leak_definite+indirect-make_list")));
    assert!(!subsumed
        .iter()
        .any(|s| s.starts_with("Addr4-read_after_free")));
    assert_eq!(stats.renamed.len(), 1);
    // Merging is idempotent.
    let again = merge(
        &[parse_str("m.supp", &text).unwrap()],
        merged.header.clone(),
    )
    .0;
    assert_eq!(format_file(&again), text);
}

#[test]
fn mutually_covering_entries_keep_the_first() {
    let a = parse_str(
        "a.supp",
        "{\n a\n Memcheck:Leak\n match-leak-kinds: all\n fun:f*\n}\n{\n b\n Memcheck:Leak\n fun:f*\n ...\n}\n",
    );
    // `...` alone at the end is implicit, so these two match the same errors.
    let f = a.unwrap();
    let (m, stats) = merge(&[f], Vec::new());
    assert_eq!(m.entries.len(), 1, "{stats:?}");
    assert_eq!(m.entries[0].name, "a");
}

proptest! {
    /// Soundness of glob inclusion: if `general` covers `specific`, every string `specific`
    /// matches, `general` matches too.
    #[test]
    fn glob_covers_is_sound(general in "[ab*?]{0,6}", specific in "[ab*?]{0,6}", s in "[ab]{0,8}") {
        if glob_covers(&general, &specific) && glob_match(&specific, &s) {
            prop_assert!(glob_match(&general, &s), "{general} covers {specific} but not {s}");
        }
    }

    #[test]
    fn glob_covers_is_reflexive(p in "[ab*?]{0,8}") {
        prop_assert!(glob_covers(&p, &p));
    }
}

#[test]
fn glob_examples() {
    assert!(glob_match(
        "_ZN1r7leak_it17h*",
        "_ZN1r7leak_it17h3560933bb6e1e520E"
    ));
    assert!(glob_match("m?in", "main"));
    assert!(!glob_match("m?in", "mn"));
    assert!(glob_covers("*", "a*b"));
    assert!(glob_covers(
        "_ZN5rbugs*",
        "_ZN5rbugs4bugs13uninit_branch17h*"
    ));
    assert!(!glob_covers("_ZN5rbugs4*", "_ZN5rbugs*"));
    assert!(glob_covers("a*c", "ab?c"));
    assert!(!glob_covers("a?c", "a*c"));
}

/// The merge as it was before the index (issue 11 §1): every kept entry compared with every
/// other, with the glob inclusion table built in full for every pair of frames. Kept here,
/// unoptimised, as the reference the indexed merge must equal.
mod all_pairs {
    use super::*;
    use std::collections::{BTreeMap, HashSet};

    const MAX_CELLS: usize = 4_000_000;

    pub fn glob_covers(general: &str, specific: &str) -> bool {
        if general == specific || general.chars().all(|c| c == '*') && general.contains('*') {
            return true;
        }
        let a: Vec<char> = general.chars().collect();
        let b: Vec<char> = specific.chars().collect();
        let (n, m) = (a.len(), b.len());
        if (n + 1).saturating_mul(m + 1) > MAX_CELLS {
            return false;
        }
        let w = m + 1;
        let mut ok = vec![false; (n + 1) * w];
        ok[n * w + m] = true;
        for i in (0..n).rev() {
            for j in (0..=m).rev() {
                ok[i * w + j] = match a[i] {
                    '*' => ok[(i + 1) * w + j] || (j < m && ok[i * w + j + 1]),
                    '?' => j < m && b[j] != '*' && ok[(i + 1) * w + j + 1],
                    c => j < m && b[j] == c && ok[(i + 1) * w + j + 1],
                };
            }
        }
        ok[0]
    }

    fn frame_covers(a: &FramePat, b: &FramePat) -> bool {
        match (a, b) {
            (FramePat::Fun(x), FramePat::Fun(y)) | (FramePat::Obj(x), FramePat::Obj(y)) => {
                glob_covers(x, y)
            }
            (FramePat::Src { file: fa, line: la }, FramePat::Src { file: fb, line: lb }) => {
                glob_covers(fa, fb) && (la.is_none() || la == lb)
            }
            _ => false,
        }
    }

    fn frames_cover(a: &[FramePat], b: &[FramePat]) -> bool {
        let (n, m) = (a.len(), b.len());
        let w = m + 1;
        let mut ok = vec![false; (n + 1) * w];
        for j in 0..=m {
            ok[n * w + j] = true;
        }
        for i in (0..n).rev() {
            for j in (0..=m).rev() {
                ok[i * w + j] = if j == m {
                    a[i].is_ellipsis() && ok[(i + 1) * w + j]
                } else if a[i].is_ellipsis() {
                    ok[(i + 1) * w + j] || ok[i * w + j + 1]
                } else if b[j].is_ellipsis() {
                    false
                } else {
                    frame_covers(&a[i], &b[j]) && ok[(i + 1) * w + j + 1]
                };
            }
        }
        ok[0]
    }

    fn entry_covers(a: &Entry, b: &Entry) -> bool {
        if a.kind != b.kind || !b.tools.iter().all(|t| a.tools.contains(t)) {
            return false;
        }
        let extra_ok = match (&a.extra, &b.extra) {
            (None, None) => true,
            (None, Some(Extra::LeakKinds(_))) => true,
            (Some(Extra::LeakKinds(ka)), Some(Extra::LeakKinds(kb))) => ka.covers(kb),
            (Some(Extra::LeakKinds(ka)), None) => ka.covers(&LeakKinds::All),
            (x, y) => x == y,
        };
        extra_ok && frames_cover(&a.frames, &b.frames)
    }

    fn place(file: &str, e: &Entry) -> String {
        if e.line == 0 {
            e.name.clone()
        } else {
            format!("{} ({file}:{})", e.name, e.line)
        }
    }

    pub fn merge(files: &[SuppFile], header: Vec<String>) -> (SuppFile, MergeStats) {
        let mut stats = MergeStats::default();
        let all: Vec<(&str, &Entry)> = files
            .iter()
            .flat_map(|f| f.entries.iter().map(move |e| (f.path.as_str(), e)))
            .collect();
        stats.entries_in = all.len();
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
        poolgrind::supp::gen::sort_entries(&mut out);
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
}

/// Short patterns over a tiny alphabet, so that inclusions between random frames are common.
fn pattern() -> impl Strategy<Value = String> {
    "[ab*?]{0,4}"
}

fn frame_pat() -> impl Strategy<Value = FramePat> {
    prop_oneof![
        3 => Just(FramePat::Ellipsis),
        6 => pattern().prop_map(FramePat::Fun),
        2 => pattern().prop_map(FramePat::Obj),
        1 => (pattern(), prop::option::of(1u32..3))
            .prop_map(|(file, line)| FramePat::Src { file, line }),
    ]
}

fn leak_kinds() -> impl Strategy<Value = LeakKinds> {
    prop_oneof![
        Just(LeakKinds::All),
        Just(LeakKinds::None),
        prop::collection::btree_set(prop::sample::select(LeakKind::ALL.to_vec()), 1..3)
            .prop_map(LeakKinds::Set),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    let kind_extra = prop_oneof![
        prop::option::of(leak_kinds().prop_map(Extra::LeakKinds))
            .prop_map(|x| ("Leak".to_string(), x)),
        Just(("Cond".to_string(), None)),
        Just(("Addr4".to_string(), None)),
        prop::sample::select(vec!["write(buf)", "read(buf)"])
            .prop_map(|p| ("Param".to_string(), Some(Extra::Param(p.to_string())))),
    ];
    let tools = prop_oneof![
        4 => Just(vec!["Memcheck".to_string()]),
        1 => Just(vec!["Memcheck".to_string(), "Helgrind".to_string()]),
    ];
    (
        kind_extra,
        tools,
        // Entries made in code may be all `...` or empty: the index must cope.
        prop::collection::vec(frame_pat(), 0..5),
        "[xyz]",
        1usize..50,
    )
        .prop_map(|((kind, extra), tools, frames, name, line)| Entry {
            comments: Vec::new(),
            name,
            tools,
            kind,
            extra,
            frames,
            line,
            name_line: line + 1,
        })
}

fn supp_file() -> impl Strategy<Value = SuppFile> {
    ("[fg]\\.supp", prop::collection::vec(entry(), 0..24)).prop_map(|(path, entries)| SuppFile {
        path,
        entries,
        ..SuppFile::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Issue 11 §1: the indexed merge (candidates by kind and first concrete frame) drops,
    /// reports and renames exactly what comparing every pair did.
    #[test]
    fn indexed_merge_equals_all_pairs(files in prop::collection::vec(supp_file(), 1..3)) {
        let header = vec!["h".to_string()];
        let (got, got_stats) = merge(&files, header.clone());
        let (want, want_stats) = all_pairs::merge(&files, header);
        prop_assert_eq!(&got_stats, &want_stats);
        prop_assert_eq!(got, want);
    }

    /// The shortcuts in front of the glob inclusion table (literal patterns, literal prefix
    /// and suffix cut off) give the table's answer.
    #[test]
    fn glob_covers_shortcuts_equal_the_full_table(
        general in "[ab*?]{0,7}",
        specific in "[ab*?]{0,7}",
        affix in "(|a|ab|ba)",
    ) {
        for (g, s) in [
            (general.clone(), specific.clone()),
            (format!("{affix}{general}"), format!("{affix}{specific}")),
            (format!("{general}{affix}"), format!("{specific}{affix}")),
            (format!("{affix}{general}{affix}"), specific.clone()),
        ] {
            prop_assert_eq!(glob_covers(&g, &s), all_pairs::glob_covers(&g, &s), "{} vs {}", g, s);
        }
    }
}
