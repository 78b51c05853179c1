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
use crate::check::results::{ErrorResult, ProcessResult, Results};

#[derive(Default)]
struct Case {
    failures: Vec<String>,
    errors: Vec<String>,
    time_ms: u64,
}

impl Case {
    fn failed(&self) -> bool {
        !self.failures.is_empty()
    }
    /// An error case is one that did not fail on a memory error but whose process did.
    fn errored(&self) -> bool {
        self.failures.is_empty() && !self.errors.is_empty()
    }
}

/// binary (suite) -> case name -> case.
type Suites = BTreeMap<String, BTreeMap<String, Case>>;

/// Renders results as JUnit XML.
pub fn render(results: &Results) -> String {
    let suites = collect(results);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let cases = || suites.values().flat_map(BTreeMap::values);
    let _ = writeln!(
        out,
        "<testsuites name=\"poolgrind\" tests=\"{}\" failures=\"{}\" errors=\"{}\">",
        cases().count(),
        cases().filter(|c| c.failed()).count(),
        cases().filter(|c| c.errored()).count()
    );
    for (binary, cases) in &suites {
        write_suite(&mut out, binary, cases);
    }
    out.push_str("</testsuites>\n");
    out
}

/// One case per process (named after its test, else its binary) and per test a failing error
/// is attributed to; suites are binaries (kept apart by `Results`, even when cargo gives a
/// library's tests and an integration test the same name).
fn collect(results: &Results) -> Suites {
    let mut suites = Suites::new();
    for p in &results.processes {
        let name = p.test.clone().unwrap_or_else(|| p.binary.clone());
        let case = suites
            .entry(p.binary.clone())
            .or_default()
            .entry(name)
            .or_default();
        case.time_ms += p.duration_ms.unwrap_or(0);
        if let Some(problem) = process_problem(p) {
            case.errors.push(problem);
        }
    }
    for e in results.errors.iter().filter(|e| e.verdict == Verdict::Fail) {
        let name = e.test.clone().unwrap_or_else(|| e.binary.clone());
        suites
            .entry(e.binary.clone())
            .or_default()
            .entry(name)
            .or_default()
            .failures
            .push(failure_text(e));
    }
    suites
}

/// Why a process failed on its own (exit status, signal, timeout, valgrind), if it did.
fn process_problem(p: &ProcessResult) -> Option<String> {
    if p.skipped || !(p.program_failed() || p.valgrind_failed()) {
        return None;
    }
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
    Some(what.join("; "))
}

/// A failing error as text: kind and description, the stack with folded frames counted, and
/// the suppression valgrind generated.
fn failure_text(e: &ErrorResult) -> String {
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
    text
}

/// One `<testsuite>` with its cases.
fn write_suite(out: &mut String, binary: &str, cases: &BTreeMap<String, Case>) {
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\">",
        xml_escape(binary),
        cases.len(),
        cases.values().filter(|c| c.failed()).count(),
        cases.values().filter(|c| c.errored()).count()
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
        if case.failed() {
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
