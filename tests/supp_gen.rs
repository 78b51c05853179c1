//! `supp gen` on captured valgrind XML (tests/fixtures/supp, see capture.sh): insta snapshots,
//! and stability of the generated file across a rebuild that changes every symbol hash.

use poolgrind::check::xml;
use poolgrind::supp::gen::{generate, GenOptions};
use poolgrind::supp::{format_file, parse_str};

fn fixture(name: &str) -> poolgrind::check::model::Log {
    let path = format!("{}/tests/fixtures/supp/{name}", env!("CARGO_MANIFEST_DIR"));
    xml::parse_file(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn gen(names: &[&str]) -> String {
    let logs: Vec<_> = names.iter().map(|n| fixture(n)).collect();
    let opts = GenOptions {
        regenerate: Some(format!("poolgrind supp gen --from {}", names.join(" "))),
        ..GenOptions::default()
    };
    let (file, _) = generate(&logs, &opts);
    let text = format_file(&file);
    // Whatever gen writes parses without warnings and formats to itself.
    let back = parse_str("gen.supp", &text).unwrap();
    assert!(back.warnings.is_empty(), "{:?}", back.warnings);
    assert_eq!(format_file(&back), text);
    text
}

#[test]
fn gen_c_bugs() {
    insta::assert_snapshot!(gen(&["bugs.xml"]));
}

#[test]
fn gen_rust_bugs() {
    insta::assert_snapshot!(gen(&["rbugs.xml"]));
}

#[test]
fn gen_rust_libtest() {
    insta::assert_snapshot!(gen(&["rbugs_test.xml"]));
}

/// The same program built with other metadata and extra code above everything: every symbol
/// hash and line differs, the generated entries must not.
#[test]
fn gen_is_stable_across_rebuilds() {
    let a = gen(&["rbugs.xml"]).replace("rbugs.xml", "X");
    let b = gen(&["rbugs_shifted.xml"]).replace("rbugs_shifted.xml", "X");
    let raw_a = std::fs::read_to_string(format!(
        "{}/tests/fixtures/supp/rbugs.xml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let raw_b = std::fs::read_to_string(format!(
        "{}/tests/fixtures/supp/rbugs_shifted.xml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert!(raw_a.contains("_ZN5rbugs4bugs") && raw_b.contains("_ZN5rbugs4bugs"));
    assert_ne!(raw_a, raw_b);
    assert_eq!(a, b);
}
