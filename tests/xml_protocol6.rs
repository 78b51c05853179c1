//! Valgrind 3.26+ (XML protocol 6) read from real valgrind 3.27.1 logs
//! (tests/fixtures/xml/protocol6/, made by capture-new.sh; ci/valgrind-new re-makes and re-checks
//! them with a valgrind it builds).

use poolgrind::check::model::{Completeness, ErrorSummary, HeapSummary, Log, Totals};
use poolgrind::check::xml;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/xml/protocol6/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(name: &str) -> Log {
    xml::parse_bytes(fixture(name).as_bytes())
}

#[test]
fn every_protocol6_log_reads_complete_without_notes() {
    for name in [
        "clean.xml",
        "double_free.xml",
        "fds.xml",
        "invalid.xml",
        "leak.xml",
        "many.xml",
        "rust_tests.xml",
        "segv.xml",
        "suppressed.xml",
        "uninit.xml",
    ] {
        let log = parse(name);
        assert_eq!(log.protocol_version, Some(6), "{name}");
        assert_eq!(
            log.completeness,
            Completeness::Complete,
            "{name}: {:?}",
            log.notes
        );
        // No "unknown element" notes: every protocol 6 element is read.
        assert!(log.notes.is_empty(), "{name}: {:?}", log.notes);
        assert!(log.error_summary.is_some(), "{name}");
    }
}

#[test]
fn heap_summary_numbers_with_thousands_separators() {
    // many.c: 1,500 malloc(16)/free pairs and one malloc(5000) kept.
    let log = parse("many.xml");
    assert!(fixture("many.xml").contains("<allocs>1,501</allocs>"));
    assert_eq!(
        log.heap_summary,
        Some(HeapSummary {
            in_use_at_exit: Totals {
                bytes: 5000,
                blocks: 1
            },
            allocs: 1501,
            frees: 1500,
            bytes_allocated: 29_000,
        })
    );
    assert_eq!(log.all_heap_blocks_freed, Some(false));
    // One invalid read repeated 1,500 times (one context) and one definite leak.
    assert_eq!(
        log.error_summary,
        Some(ErrorSummary {
            errors: 1501,
            error_contexts: 2,
            suppressed: 0,
            suppressed_contexts: 0
        })
    );
    let leaks = log.leak_summary.expect("leak summary");
    assert_eq!(
        leaks.definitely_lost,
        Totals {
            bytes: 5000,
            blocks: 1
        }
    );
}

#[test]
fn leak_summary_of_every_kind() {
    let log = parse("leak.xml");
    let s = log.leak_summary.expect("leak summary");
    assert!(s.definitely_lost.blocks > 0);
    assert!(s.indirectly_lost.blocks > 0);
    assert!(s.possibly_lost.blocks > 0);
    assert!(s.still_reachable.blocks > 0);
    assert_eq!(log.all_heap_blocks_freed, Some(false));
}

#[test]
fn suppressed_errors_are_counted_not_listed() {
    let log = parse("suppressed.xml");
    let s = log.error_summary.expect("error summary");
    assert_eq!((s.errors, s.suppressed, s.suppressed_contexts), (1, 2, 2));
    let names: Vec<&str> = log.supp_counts.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["hidden-leak", "hidden-read"]);
    assert_eq!(
        log.errors.len(),
        1,
        "only the leak nobody suppressed is listed"
    );
    assert_eq!(log.leak_summary.expect("leaks").suppressed.blocks, 1);
}

#[test]
fn descriptor_errors_carry_fd_and_path() {
    let log = parse("fds.xml");
    let fd = |kind: &str| log.errors.iter().find(|e| e.kind == kind).expect(kind);
    let bad_close = fd("FdBadClose");
    assert_eq!(bad_close.fd, Some(4));
    assert_eq!(bad_close.fd_path.as_deref(), Some("/dev/zero"));
    assert!(bad_close.is_descriptor_error() && bad_close.can_be_suppressed());
    assert_eq!(fd("FdBadUse").fd, Some(4));
    let not_closed: Vec<_> = log
        .errors
        .iter()
        .filter(|e| e.kind == "FdNotClosed")
        .collect();
    let opened_here = not_closed
        .iter()
        .find(|e| !e.stack.is_empty())
        .expect("fd 3");
    assert_eq!(opened_here.fd, Some(3));
    assert_eq!(opened_here.fd_path.as_deref(), Some("/dev/null"));
    // Inherited descriptors (stdin/stdout/stderr at least) have no stack and cannot be suppressed.
    let inherited: Vec<_> = not_closed.iter().filter(|e| e.stack.is_empty()).collect();
    assert!(inherited.len() >= 3, "{inherited:?}");
    assert!(inherited
        .iter()
        .all(|e| !e.can_be_suppressed() && e.suppression.is_none()));
    assert!(inherited.iter().any(|e| e.fd == Some(0)));
}

/// Edits a real log and expects it to be damaged, with a note containing `expect`.
fn damaged_by(name: &str, from: &str, to: &str, expect: &str) {
    let doc = fixture(name);
    assert!(doc.contains(from), "{name} has no `{from}`");
    let log = xml::parse_bytes(doc.replacen(from, to, 1).as_bytes());
    assert_eq!(
        log.completeness,
        Completeness::Damaged,
        "{from} → {to}: {:?}",
        log.notes
    );
    assert!(
        log.notes.iter().any(|n| n.contains(expect)),
        "{from} → {to}: {:?}",
        log.notes
    );
}

#[test]
fn error_summary_that_contradicts_the_errors_damages_the_log() {
    damaged_by(
        "many.xml",
        "<errors>1501</errors>",
        "<errors>1502</errors>",
        "<error_summary>",
    );
    damaged_by(
        "many.xml",
        "<error_contexts>2</error_contexts>",
        "<error_contexts>3</error_contexts>",
        "<error_summary>",
    );
    // The leak error is the one error reported once: without it the contexts do not add up.
    let doc = fixture("many.xml");
    let start = doc.find("<error>\n  <unique>0x5dc").expect("leak error");
    let end = start + doc[start..].find("</error>").expect("end") + "</error>".len();
    let log = xml::parse_bytes(format!("{}{}", &doc[..start], &doc[end..]).as_bytes());
    assert_eq!(log.completeness, Completeness::Damaged, "{:?}", log.notes);
}

#[test]
fn leak_summary_that_contradicts_the_leaks_damages_the_log() {
    let doc = fixture("many.xml");
    let from = "<definitely_lost>\n    <bytes>5,000</bytes>\n    <blocks>1</blocks>";
    let to = "<definitely_lost>\n    <bytes>5,000</bytes>\n    <blocks>2</blocks>";
    let log = xml::parse_bytes(doc.replacen(from, to, 1).as_bytes());
    assert_eq!(log.completeness, Completeness::Damaged, "{:?}", log.notes);
    assert!(
        log.notes
            .iter()
            .any(|n| n.contains("<leak_summary> definite")),
        "{:?}",
        log.notes
    );
}

#[test]
fn summary_number_that_is_not_a_number_damages_the_log() {
    damaged_by(
        "many.xml",
        "<allocs>1,501</allocs>",
        "<allocs>1,5o1</allocs>",
        "not a number",
    );
}

// Descriptor errors (`--track-fds`), reported as such (issue 10 §2).

fn results_of(name: &str, fail_on: &str) -> poolgrind::check::results::Results {
    use poolgrind::check::policy::{parse_fail_on, Policy};
    use poolgrind::check::results::{ProcessRecord, Results};
    let policy = Policy {
        fail_on: parse_fail_on(fail_on).expect("valid --fail-on"),
        ..Policy::default()
    };
    Results::build(&[ProcessRecord::from_saved_log(name, parse(name))], &policy)
}

#[test]
fn descriptor_errors_are_not_called_memory_errors() {
    let r = results_of("fds.xml", "all");
    assert_eq!(r.summary.exit_code, 1);
    assert_eq!(
        r.summary.verdict, "FAILED: 8 descriptor errors (8 distinct)",
        "every inherited descriptor is its own error, not grouped under the first one's text"
    );
    // Mixed: memory errors and descriptor errors are counted apart.
    let mixed = {
        use poolgrind::check::policy::Policy;
        use poolgrind::check::results::{ProcessRecord, Results};
        let records =
            ["fds.xml", "invalid.xml"].map(|n| ProcessRecord::from_saved_log(n, parse(n)));
        Results::build(&records, &Policy::default())
    };
    assert!(
        mixed.summary.verdict.contains("memory error")
            && mixed
                .summary
                .verdict
                .ends_with("8 descriptor errors (8 distinct)"),
        "{}",
        mixed.summary.verdict
    );
}

#[test]
fn fail_on_fds_selects_the_descriptor_errors() {
    assert_eq!(results_of("fds.xml", "fds").summary.exit_code, 1);
    assert_eq!(results_of("fds.xml", "leak").summary.exit_code, 0);
    assert_eq!(results_of("fds.xml", "InvalidRead").summary.exit_code, 0);
    assert_eq!(results_of("invalid.xml", "fds").summary.exit_code, 0);
}

#[test]
fn supp_gen_says_inherited_descriptors_cannot_be_suppressed() {
    use poolgrind::supp::gen::{generate, GenOptions};
    let (file, stats) = generate(&[parse("fds.xml")], &GenOptions::default());
    assert_eq!(
        stats.unsuppressible, 5,
        "fds 0, 1, 2 and two more inherited"
    );
    assert_eq!(
        stats.without_suppression, 0,
        "no advice to run --gen-suppressions=all"
    );
    assert_eq!(
        file.entries.len(),
        3,
        "FdBadClose, FdBadUse, FdNotClosed of fd 3"
    );
}
