//! JUnit XML: one `<testsuite>` per binary, one `<testcase>` per process or attributed test.
//!
//! A test case fails (`<failure>`) when a failing memory error is attributed to it, and errors
//! (`<error>`) when its process failed on its own or valgrind crashed. Baselined and ignored
//! errors do not appear. CI systems show these in their test tabs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::human::frame_text;
use super::xml_escape;
use crate::check::policy::Verdict;
use crate::check::results::Results;

#[derive(Default)]
struct Case {
    failures: Vec<String>,
    errors: Vec<String>,
    time_ms: u64,
}

/// Renders results as JUnit XML.
pub fn render(results: &Results) -> String {
    // binary -> case name -> case
    let mut suites: BTreeMap<String, BTreeMap<String, Case>> = BTreeMap::new();
    for p in &results.processes {
        let name = p.test.clone().unwrap_or_else(|| p.binary.clone());
        let case = suites
            .entry(p.binary.clone())
            .or_default()
            .entry(name)
            .or_default();
        case.time_ms += p.duration_ms.unwrap_or(0);
        if p.skipped {
            continue;
        }
        if p.program_failed() || p.valgrind_failed() {
            let mut what = Vec::new();
            if p.timed_out {
                what.push("timed out".to_string());
            }
            if let Some(c) = p.exit_code.filter(|c| *c != 0) {
                what.push(format!("exited with status {c}"));
            }
            if let Some(f) = &p.fatal_signal {
                what.push(format!(
                    "killed by {}",
                    f.signame.clone().unwrap_or_default()
                ));
            }
            if p.valgrind_failed() {
                what.push("valgrind crashed / log truncated".to_string());
            }
            what.extend(p.notes.iter().cloned());
            case.errors.push(what.join("; "));
        }
    }
    for e in results.errors.iter().filter(|e| e.verdict == Verdict::Fail) {
        let name = e.test.clone().unwrap_or_else(|| e.binary.clone());
        let case = suites
            .entry(e.binary.clone())
            .or_default()
            .entry(name)
            .or_default();
        let mut text = format!("{}: {}\n", e.kind, e.what);
        let mut folded = 0;
        for (i, f) in e.frames.iter().enumerate() {
            if i > 0 && f.class().is_folded() {
                folded += 1;
                continue;
            }
            if folded > 0 {
                let _ = writeln!(text, "    … {folded} frames folded");
                folded = 0;
            }
            let _ = writeln!(
                text,
                "    {} {}",
                if i == 0 { "at" } else { "by" },
                frame_text(f, None)
            );
        }
        if folded > 0 {
            let _ = writeln!(text, "    … {folded} frames folded");
        }
        if let Some(s) = &e.suppression {
            let _ = writeln!(text, "{s}");
        }
        case.failures.push(text);
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total: usize = suites.values().map(BTreeMap::len).sum();
    let failures: usize = suites
        .values()
        .flat_map(|s| s.values())
        .filter(|c| !c.failures.is_empty())
        .count();
    let errors: usize = suites
        .values()
        .flat_map(|s| s.values())
        .filter(|c| c.failures.is_empty() && !c.errors.is_empty())
        .count();
    let _ = writeln!(
        out,
        "<testsuites name=\"poolgrind\" tests=\"{total}\" failures=\"{failures}\" errors=\"{errors}\">"
    );
    for (binary, cases) in &suites {
        let f = cases.values().filter(|c| !c.failures.is_empty()).count();
        let e = cases
            .values()
            .filter(|c| c.failures.is_empty() && !c.errors.is_empty())
            .count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" errors=\"{e}\">",
            xml_escape(binary),
            cases.len()
        );
        for (name, case) in cases {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml_escape(binary),
                xml_escape(name),
                case.time_ms as f64 / 1000.0
            );
            if case.failures.is_empty() && case.errors.is_empty() {
                out.push_str("/>\n");
                continue;
            }
            out.push_str(">\n");
            if !case.failures.is_empty() {
                let _ = writeln!(
                    out,
                    "      <failure type=\"memcheck\" message=\"{} memory error{}\">{}</failure>",
                    case.failures.len(),
                    if case.failures.len() == 1 { "" } else { "s" },
                    xml_escape(&case.failures.join("\n"))
                );
            }
            for err in &case.errors {
                let _ = writeln!(
                    out,
                    "      <error type=\"process\" message=\"{}\"/>",
                    xml_escape(err)
                );
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
