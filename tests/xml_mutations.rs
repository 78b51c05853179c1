//! A damaged log never passes (issue 10 §1).
//!
//! Every real log in tests/fixtures/xml (valgrind 3.19's protocol 4 and valgrind 3.27.1's protocol
//! 6, see `capture.sh` and `capture-new.sh`) is mutated the ways a log gets damaged: a byte flipped,
//! the document cut at an element boundary, an end tag dropped or written twice, a stray tag. Each
//! mutant goes through the library exactly as `poolgrind report` does (parse, aggregate under the
//! default policy, exit code). The rule: a mutant may exit 0 only when it is still a valid log
//! (strictly well-formed XML, which an independent strict reader checks) with the same errors as
//! the original; in particular no mutant of a failing log may exit 0. No mutant may panic.
//!
//! The regression tests at the end are the issue's own reproductions.

use poolgrind::check::model::{Completeness, Log};
use poolgrind::check::policy::Policy;
use poolgrind::check::results::{ProcessRecord, Results};
use poolgrind::check::xml;
use quick_xml::events::Event;
use quick_xml::Reader;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/xml/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The exit code `poolgrind report LOG` gives, computed through the library.
fn exit_code(log: Log) -> i32 {
    let records = [ProcessRecord::from_saved_log("mutant.xml", log)];
    Results::build(&records, &Policy::default())
        .summary
        .exit_code
}

/// An independent, strict reading: one root, every end tag matches, no attributes, only the
/// predefined entities, UTF-8 text without control characters, nothing but whitespace outside.
fn strictly_well_formed(doc: &[u8]) -> bool {
    let mut reader = Reader::from_reader(doc);
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    let (mut depth, mut roots) = (0usize, 0usize);
    let text_ok = |t: &[u8]| {
        std::str::from_utf8(t).is_ok_and(|s| {
            !s.chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        })
    };
    let name_ok = |n: &[u8]| {
        std::str::from_utf8(n).is_ok_and(|s| {
            s.chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && s.chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
        })
    };
    loop {
        buf.clear();
        match reader.read_event_into(&mut buf) {
            Err(_) => return false,
            Ok(Event::Eof) => return depth == 0 && roots == 1,
            Ok(Event::Start(e)) => {
                if !name_ok(e.name().as_ref()) || !e.attributes_raw().trim_ascii().is_empty() {
                    return false;
                }
                roots += usize::from(depth == 0);
                depth += 1;
            }
            Ok(Event::Empty(e)) => {
                if !name_ok(e.name().as_ref()) || !e.attributes_raw().trim_ascii().is_empty() {
                    return false;
                }
                roots += usize::from(depth == 0);
            }
            Ok(Event::End(_)) => depth -= 1,
            Ok(Event::Text(t)) => {
                if !text_ok(&t) || (depth == 0 && !t.trim_ascii().is_empty()) {
                    return false;
                }
            }
            Ok(Event::CData(t)) => {
                if !text_ok(&t) || depth == 0 {
                    return false;
                }
            }
            Ok(Event::GeneralRef(r)) => {
                let predefined = matches!(r.as_ref(), b"lt" | b"gt" | b"amp" | b"apos" | b"quot");
                if depth == 0 || !(predefined || matches!(r.resolve_char_ref(), Ok(Some(_)))) {
                    return false;
                }
            }
            Ok(_) => {}
        }
    }
}

/// What "the same errors" means: same kinds and uniques, in order.
fn error_keys(log: &Log) -> Vec<(String, String)> {
    log.errors
        .iter()
        .map(|e| (e.kind.clone(), e.unique.clone()))
        .collect()
}

/// At most `max` items, spread evenly over `items` (all of them when there are few).
fn spread<T: Clone>(items: &[T], max: usize) -> Vec<T> {
    if items.len() <= max {
        return items.to_vec();
    }
    (0..max)
        .map(|i| items[i * items.len() / max].clone())
        .collect()
}

/// Byte offsets of every `<` (start of an element, end tag, declaration…).
fn tag_starts(doc: &[u8]) -> Vec<usize> {
    doc.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'<')
        .map(|(i, _)| i)
        .collect()
}

/// (start, end) of every end tag `</…>`.
fn end_tags(doc: &[u8]) -> Vec<(usize, usize)> {
    tag_starts(doc)
        .into_iter()
        .filter(|&i| doc.get(i + 1) == Some(&b'/'))
        .filter_map(|i| {
            let len = doc[i..].iter().position(|b| *b == b'>')?;
            Some((i, i + len + 1))
        })
        .collect()
}

/// Every mutant of one document, with a label saying how it was made.
///
/// Each family is capped so that it parses about `BYTES_PER_FAMILY` bytes: every boundary of the
/// small logs, an even spread over the large ones. The whole test then takes seconds in a debug
/// build (the reader runs about 1 MB/s there).
fn mutants(doc: &[u8]) -> Vec<(String, Vec<u8>)> {
    const BYTES_PER_FAMILY: usize = 120_000;
    let per_family = (BYTES_PER_FAMILY / doc.len().max(1)).clamp(10, 600);
    let mut out = Vec::new();
    // Truncation at element boundaries: before every `<` and after every `>`.
    let mut cuts: Vec<usize> = tag_starts(doc);
    cuts.extend(
        doc.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'>')
            .map(|(i, _)| i + 1),
    );
    cuts.sort_unstable();
    for cut in spread(&cuts, 2 * per_family) {
        out.push((format!("cut at byte {cut}"), doc[..cut].to_vec()));
    }
    // End tags dropped, and written twice.
    for (s, e) in spread(&end_tags(doc), per_family) {
        let tag = String::from_utf8_lossy(&doc[s..e]).into_owned();
        let mut dropped = doc[..s].to_vec();
        dropped.extend_from_slice(&doc[e..]);
        out.push((format!("{tag} at byte {s} dropped"), dropped));
        let mut twice = doc[..e].to_vec();
        twice.extend_from_slice(&doc[s..]);
        out.push((format!("{tag} at byte {s} twice"), twice));
    }
    // Stray tags before element boundaries.
    const STRAY: &[&str] = &[
        "<x>",
        "</x>",
        "<x/>",
        "<error>",
        "</error>",
        "</stack>",
        "<frame>",
        "</status>",
    ];
    for (n, at) in spread(&tag_starts(doc), per_family).into_iter().enumerate() {
        let stray = STRAY[n % STRAY.len()];
        let mut m = doc[..at].to_vec();
        m.extend_from_slice(stray.as_bytes());
        m.extend_from_slice(&doc[at..]);
        out.push((format!("{stray} inserted at byte {at}"), m));
    }
    // Byte flips: one bit of one byte, rotating through the bits.
    let positions: Vec<usize> = (0..doc.len()).collect();
    for (n, at) in spread(&positions, 2 * per_family).into_iter().enumerate() {
        let mut m = doc.to_vec();
        m[at] ^= 1 << (n % 8);
        out.push((format!("bit {} of byte {at} flipped", n % 8), m));
    }
    out
}

/// Runs every mutant of `name`; returns (mutants, mutants that exited 0).
fn check_log(name: &str) -> (usize, usize) {
    let doc = fixture(name);
    let original = xml::parse_bytes(&doc);
    assert_eq!(
        original.completeness,
        Completeness::Complete,
        "{name}: the original is complete: {:?}",
        original.notes
    );
    let original_keys = error_keys(&original);
    let original_exit = exit_code(original);
    let mut passed = 0;
    let all = mutants(&doc);
    for (how, m) in &all {
        let log = xml::parse_bytes(m);
        let keys = error_keys(&log);
        let complete = log.completeness == Completeness::Complete;
        let notes = log.notes.clone();
        if exit_code(log) == 0 {
            passed += 1;
            assert!(
                original_exit == 0 && complete && keys == original_keys && strictly_well_formed(m),
                "{name}, {how}: a damaged log passed (original exit {original_exit}; \
                 complete: {complete}; notes: {notes:?})"
            );
        }
    }
    (all.len(), passed)
}

const PROGRAMS: &[&str] = &[
    "clean",
    "double_free",
    "invalid",
    "leak",
    "segv",
    "uninit",
    "rust_tests",
];

fn check_all(logs: &[String]) {
    for name in logs {
        let (n, passed) = check_log(name);
        assert!(n >= 50, "{name}: only {n} mutants");
        eprintln!("{name}: {n} mutants, {passed} passed as valid logs with the same errors");
    }
}

#[test]
fn no_damaged_protocol4_log_passes() {
    // valgrind 3.19 (tests/fixtures/xml/VALGRIND_VERSION).
    let mut logs: Vec<String> = PROGRAMS.iter().map(|p| format!("{p}.xml")).collect();
    logs.push("fail.xml".into());
    check_all(&logs);
}

#[test]
fn no_damaged_protocol6_log_passes() {
    // valgrind 3.27.1 (tests/fixtures/xml/protocol6/VALGRIND_VERSION): summaries, descriptor
    // errors, suppressed errors, thousands separators.
    let mut logs: Vec<String> = PROGRAMS
        .iter()
        .map(|p| format!("protocol6/{p}.xml"))
        .collect();
    logs.extend([
        "protocol6/fds.xml".into(),
        "protocol6/suppressed.xml".into(),
        "protocol6/many.xml".into(),
    ]);
    check_all(&logs);
}

#[test]
fn the_oracle_rejects_what_it_should() {
    let doc = fixture("clean.xml");
    assert!(strictly_well_formed(&doc));
    let s = String::from_utf8(doc).unwrap();
    assert!(!strictly_well_formed(
        s.replacen("</status>", "", 1).as_bytes()
    ));
    assert!(!strictly_well_formed(
        s.replacen("<pid>", "<pid a='1'>", 1).as_bytes()
    ));
    assert!(!strictly_well_formed(format!("{s}junk").as_bytes()));
    assert!(strictly_well_formed(
        s.replacen("<pid>", "<x/><pid>", 1).as_bytes()
    ));
}

// Issue 10's reproductions.

fn double_free_with(edit: impl Fn(&str) -> String) -> Log {
    let doc = String::from_utf8(fixture("double_free.xml")).unwrap();
    let edited = edit(&doc);
    assert_ne!(edited, doc, "the edit changed nothing");
    xml::parse_bytes(edited.as_bytes())
}

#[test]
fn issue10_log_missing_one_status_end_tag_is_damaged_and_its_errors_still_fail() {
    let original = xml::parse_bytes(&fixture("double_free.xml"));
    let log = double_free_with(|d| d.replacen("</status>", "", 1));
    assert_eq!(log.completeness, Completeness::Damaged, "{:?}", log.notes);
    assert!(log.notes.iter().any(|n| n.contains("<status> not closed")));
    assert_eq!(error_keys(&log), error_keys(&original), "errors still read");
    assert_eq!(exit_code(log), 1);
}

#[test]
fn issue10_stray_tag_before_first_error_is_damaged_and_its_errors_still_fail() {
    let original = xml::parse_bytes(&fixture("double_free.xml"));
    let log = double_free_with(|d| d.replacen("<error>", "<x>\n<error>", 1));
    assert_eq!(log.completeness, Completeness::Damaged, "{:?}", log.notes);
    assert!(log.notes.iter().any(|n| n.contains("<error> inside <x>")));
    assert_eq!(error_keys(&log), error_keys(&original));
    assert_eq!(exit_code(log), 1);
}

#[test]
fn issue10_damaged_clean_log_exits_3() {
    let doc = String::from_utf8(fixture("clean.xml")).unwrap();
    for edited in [
        doc.replacen("</status>", "", 1),
        doc.replacen("<errorcounts>", "<x>\n<errorcounts>", 1),
        doc.replacen("</errorcounts>", "</errorcounts></errorcounts>", 1),
    ] {
        let log = xml::parse_bytes(edited.as_bytes());
        assert_eq!(log.completeness, Completeness::Damaged, "{:?}", log.notes);
        assert_eq!(exit_code(log), 3);
    }
}

#[test]
fn log_without_finished_status_is_damaged() {
    // Valgrind writes <status>FINISHED before the leak check of every run that reaches its end.
    let doc = String::from_utf8(fixture("clean.xml")).unwrap();
    let edited = doc.replace("<state>FINISHED</state>", "<state>RUNNING</state>");
    let log = xml::parse_bytes(edited.as_bytes());
    assert_eq!(log.completeness, Completeness::Damaged);
    assert!(
        log.notes.iter().any(|n| n.contains("FINISHED")),
        "{:?}",
        log.notes
    );
    assert_eq!(exit_code(log), 3);
}

#[test]
fn traced_child_that_died_at_start_up_is_not_complete() {
    // Real valgrind 3.27.1 log: `execer` exec'd a script whose interpreter does not exist, so the
    // valgrind started for the new program failed before it ran it ("bad interpreter").
    let log = xml::parse_bytes(&fixture("protocol6/child_died_at_startup.xml"));
    assert_ne!(log.completeness, Completeness::Complete);
    assert!(!log.finished);
    assert_eq!(exit_code(log), 3);
}

#[test]
fn errorcounts_must_match_the_errors_read() {
    // A flipped unique: the error and its count no longer meet.
    let log = double_free_with(|d| d.replacen("<unique>0x0</unique>", "<unique>0x8</unique>", 1));
    assert_eq!(log.completeness, Completeness::Damaged);
    assert!(
        log.notes.iter().any(|n| n.contains("<errorcounts>")),
        "{:?}",
        log.notes
    );
}
