//! `supp merge`: duplicates and covered entries dropped, names made unique; the merged file
//! still matches every error the inputs matched (checked here without valgrind, with the same
//! glob semantics), and glob inclusion is sound (property test).

use poolgrind::check::model::{Log, SuppFrame};
use poolgrind::check::xml;
use poolgrind::supp::gen::{generate, GenOptions};
use poolgrind::supp::glob::{entry_matches_stack, glob_covers, glob_match, StackFrame};
use poolgrind::supp::merge::merge;
use poolgrind::supp::{format_file, parse_str, Entry, Extra, LeakKind, SuppFile};
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
