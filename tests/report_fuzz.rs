//! Bounded fuzzing of the XML parser (issue 4: "no panics"): runs inside `cargo test`.
//!
//! - every prefix of a real log (all truncation points);
//! - proptest: real logs with random byte flips, insertions and deletions;
//! - proptest: random token soups built from valgrind's own element names;
//! - proptest: arbitrary bytes.
//!
//! Each parse must return, and the result must survive aggregation and every renderer.

use poolgrind::check::policy::Policy;
use poolgrind::check::report::{self, human, Format};
use poolgrind::check::results::{ProcessRecord, Results};
use poolgrind::check::xml;
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/xml/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn exercise(bytes: &[u8]) {
    let log = xml::parse_bytes(bytes);
    let results = Results::build(
        &[ProcessRecord::from_saved_log("fuzz.xml", log)],
        &Policy::default(),
    );
    for f in [Format::Human, Format::Json, Format::Junit, Format::Sarif] {
        let _ = report::render(&results, f, &human::HumanOptions::default());
    }
}

#[test]
fn fuzz_xml_parser_every_truncation_point() {
    let doc = fixture("double_free.xml");
    for cut in 0..=doc.len() {
        exercise(&doc[..cut]);
    }
}

const TOKENS: &[&str] = &[
    "<valgrindoutput>",
    "</valgrindoutput>",
    "<error>",
    "</error>",
    "<stack>",
    "</stack>",
    "<frame>",
    "</frame>",
    "<fn>",
    "</fn>",
    "<kind>",
    "</kind>",
    "Leak_DefinitelyLost",
    "<xwhat>",
    "</xwhat>",
    "<text>",
    "</text>",
    "<leakedbytes>",
    "</leakedbytes>",
    "1,234",
    "<suppression>",
    "</suppression>",
    "<rawtext>",
    "</rawtext>",
    "<![CDATA[",
    "]]>",
    "<fatal_signal>",
    "</fatal_signal>",
    "<status>",
    "<state>FINISHED</state>",
    "</status>",
    "<pair>",
    "</pair>",
    "<count>",
    "</count>",
    "<unique>",
    "</unique>",
    "<errorcounts>",
    "</errorcounts>",
    "&lt;",
    "&#x41;",
    "&bogus;",
    "&",
    "<",
    ">",
    "x",
    "<line>",
    "</line>",
    "<auxwhat>",
    "</auxwhat>",
    "<origin>",
    "</origin>",
    "<?xml version=\"1.0\"?>",
    "<!-- c -->",
    "<a b='1'/>",
    "\n",
    "\u{0}",
    "\u{fffd}",
    "<argv>",
    "<exe>",
    "</exe>",
    "</argv>",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_xml_parser_mutated_real_logs(
        which in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..20),
    ) {
        let name = ["leak.xml", "invalid.xml", "segv.xml", "protocol6/fds.xml"][which];
        let mut doc = fixture(name);
        for (at, byte, op) in edits {
            if doc.is_empty() { break; }
            let i = at.index(doc.len());
            match op {
                0 => doc[i] = byte,
                1 => doc.insert(i, byte),
                _ => { doc.remove(i); }
            }
        }
        exercise(&doc);
    }

    #[test]
    fn fuzz_xml_parser_token_soup(picks in proptest::collection::vec(0usize..TOKENS.len(), 0..200)) {
        let doc: String = picks.iter().map(|&i| TOKENS[i]).collect();
        exercise(doc.as_bytes());
    }

    #[test]
    fn fuzz_xml_parser_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        exercise(&bytes);
    }
}
