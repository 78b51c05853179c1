//! Cross-checks of a log read to its end: do the totals valgrind wrote agree with the errors read?
//!
//! A log can be well-formed XML and still not say what valgrind wrote: a flipped byte in a
//! `<unique>` or a `FINISHED`, an error that lost its `<kind>`. Valgrind writes enough redundancy
//! to catch these, and [`check`] uses all of it (every fact below is from valgrind 3.27.1's
//! coregrind/m_errormgr.c and memcheck/mc_leakcheck.c):
//!
//! - `<status><state>FINISHED` is written at every normal end, before the leak check; a document
//!   without it did not run to its end (a traced child that died at start-up, valgrind stopping);
//! - every error has a `<kind>` and a `<unique>`, and uniques are distinct (one counter per process);
//! - `<errorcounts>` lists exactly the errors recorded with `maybe_record_error` (every kind but
//!   leaks and `FdNotClosed`, which are reported once each through `unique_error`), by unique;
//!   memcheck always writes it;
//! - protocol 6's `<error_summary>`: `errors − Σ errorcounts = error_contexts − |errorcounts|`
//!   (each counted unique error adds one to both), and that number is at least the shown
//!   `FdNotClosed` errors plus the shown leaks of the kinds in `--errors-for-leak-kinds`; exactly that
//!   when every such kind is also shown (`--show-leak-kinds`);
//! - protocol 6's `<leak_summary>` after each leak check: the leak errors of a kind listed since the
//!   previous summary have at most the summary's blocks of that kind, exactly as many when the kind
//!   is shown and the check was `--leak-check=full` (`<leakedblocks>` counts direct blocks only,
//!   `<leakedbytes>` adds the indirect bytes, so bytes are compared as a lower bound).
//!
//! Every disagreement is a note; any note makes the log [`super::model::Completeness::Damaged`].

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::model::{LeakSummary, Log, VgError};
use super::policy::LeakKind;

/// One `<leak_summary>` and the errors listed since the previous one.
#[derive(Debug, Clone)]
pub(crate) struct LeakCheck {
    /// The totals.
    pub summary: LeakSummary,
    /// Indices into [`Log::errors`] of the errors read since the previous leak summary.
    pub errors: Range<usize>,
    /// Byte offset of the summary (for the note).
    pub offset: u64,
}

/// Where things are in the document, for the notes.
pub(crate) struct Positions<'a> {
    /// Offset of each error's `<error>`, parallel to [`Log::errors`].
    pub errors: &'a [u64],
    /// Offset of `<errorcounts>`, if seen.
    pub errorcounts: Option<u64>,
    /// Offset of `<error_summary>`, if seen.
    pub error_summary: Option<u64>,
    /// End of the document.
    pub end: u64,
}

/// Errors valgrind reports through `unique_error`: one context each, never in `<errorcounts>`.
fn reported_once(e: &VgError) -> bool {
    LeakKind::of_error_kind(&e.kind).is_some() || e.kind == "FdNotClosed"
}

/// The leak options on valgrind's command line that decide what the totals must match.
#[derive(Debug, Clone)]
struct LeakOptions {
    /// `--show-leak-kinds` (default `definite,possible`).
    shown: BTreeSet<LeakKind>,
    /// `--errors-for-leak-kinds` (default `definite,possible`).
    counted: BTreeSet<LeakKind>,
    /// `--leak-check=full` (or `yes`).
    full: bool,
    /// An option this check does not model changes what is listed (`--max-loss-records-output`,
    /// an unreadable kind list): only the lower bounds are checked.
    exact: bool,
}

fn kind_set(value: &str) -> Option<BTreeSet<LeakKind>> {
    let mut set = BTreeSet::new();
    for word in value.split(',').map(str::trim) {
        match word {
            "all" => set.extend(LeakKind::ALL),
            "none" => {}
            w => {
                set.insert(LeakKind::ALL.into_iter().find(|k| k.name() == w)?);
            }
        }
    }
    Some(set)
}

impl LeakOptions {
    fn from_valgrind_argv(argv: &[String]) -> LeakOptions {
        let default = || {
            [LeakKind::Definite, LeakKind::Possible]
                .into_iter()
                .collect()
        };
        let mut o = LeakOptions {
            shown: default(),
            counted: default(),
            full: false,
            exact: true,
        };
        for arg in argv {
            let Some((opt, value)) = arg.split_once('=') else {
                continue;
            };
            match opt {
                "--show-leak-kinds" => match kind_set(value) {
                    Some(s) => o.shown = s,
                    None => o.exact = false,
                },
                "--errors-for-leak-kinds" => match kind_set(value) {
                    Some(s) => o.counted = s,
                    None => o.exact = false,
                },
                "--show-reachable" if value == "yes" => o.shown = LeakKind::ALL.into(),
                "--show-reachable" => o.shown = default(),
                "--show-possibly-lost" if value == "no" => {
                    o.shown.remove(&LeakKind::Possible);
                }
                "--show-possibly-lost" => {
                    o.shown.insert(LeakKind::Possible);
                }
                "--leak-check" => o.full = matches!(value, "full" | "yes"),
                "--max-loss-records-output" => o.exact = false,
                _ => {}
            }
        }
        o
    }
}

/// All cross-checks; returns (byte offset, message) for every disagreement.
pub(crate) fn check(
    log: &Log,
    at: &Positions<'_>,
    leak_checks: &[LeakCheck],
) -> Vec<(u64, String)> {
    let mut problems = Vec::new();
    if log.protocol_version.is_none() {
        problems.push((0, "no <protocolversion>".to_string()));
    }
    if !log.finished {
        problems.push((
            at.end,
            "no <status> FINISHED: the process did not run to its end under valgrind \
             (it died at start-up, or valgrind stopped early)"
                .to_string(),
        ));
    }
    check_errors(log, at, &mut problems);
    check_errorcounts(log, at, &mut problems);
    let options = LeakOptions::from_valgrind_argv(&log.valgrind_argv);
    check_error_summary(log, at, &options, &mut problems);
    for lc in leak_checks {
        check_leak_summary(log, lc, &options, &mut problems);
    }
    problems
}

/// Every error has a kind and a unique, and uniques are distinct.
fn check_errors(log: &Log, at: &Positions<'_>, problems: &mut Vec<(u64, String)>) {
    let mut seen = BTreeSet::new();
    for (i, e) in log.errors.iter().enumerate() {
        let pos = at.errors.get(i).copied().unwrap_or(0);
        if e.kind.is_empty() {
            problems.push((pos, "<error> without a <kind>".to_string()));
        }
        if e.unique.is_empty() {
            problems.push((pos, "<error> without a <unique>".to_string()));
        } else if !seen.insert(e.unique.as_str()) {
            problems.push((pos, format!("two errors with <unique> {}", e.unique)));
        }
    }
}

/// `<errorcounts>` lists exactly the errors recorded through `maybe_record_error`.
fn check_errorcounts(log: &Log, at: &Positions<'_>, problems: &mut Vec<(u64, String)>) {
    let Some(pos) = at.errorcounts else {
        if log.tool.as_deref() == Some("memcheck") && log.finished {
            problems.push((
                at.end,
                "no <errorcounts> (memcheck always writes it)".to_string(),
            ));
        }
        return;
    };
    let mut counted: BTreeMap<&str, usize> = BTreeMap::new();
    for (unique, _) in &log.error_counts {
        *counted.entry(unique.as_str()).or_default() += 1;
    }
    for (unique, n) in &counted {
        if *n > 1 {
            problems.push((pos, format!("<errorcounts> lists {unique} {n} times")));
        }
    }
    let recorded: BTreeMap<&str, &str> = log
        .errors
        .iter()
        .filter(|e| !reported_once(e) && !e.unique.is_empty())
        .map(|e| (e.unique.as_str(), e.kind.as_str()))
        .collect();
    for (unique, kind) in &recorded {
        if !counted.contains_key(unique) {
            problems.push((
                pos,
                format!("error {unique} ({kind}) is missing from <errorcounts>"),
            ));
        }
    }
    for unique in counted.keys() {
        if !recorded.contains_key(unique) {
            problems.push((
                pos,
                format!("<errorcounts> counts {unique}, which no error read has"),
            ));
        }
    }
}

/// Protocol 6's `<error_summary>` against `<errorcounts>` and the errors reported once.
fn check_error_summary(
    log: &Log,
    at: &Positions<'_>,
    options: &LeakOptions,
    problems: &mut Vec<(u64, String)>,
) {
    let (Some(s), Some(pos)) = (log.error_summary, at.error_summary) else {
        return;
    };
    let pairs = log.error_counts.len() as u64;
    let occurrences: u64 = log.error_counts.iter().map(|(_, c)| *c).sum();
    let (Some(once_errors), Some(once_contexts)) = (
        s.errors.checked_sub(occurrences),
        s.error_contexts.checked_sub(pairs),
    ) else {
        problems.push((
            pos,
            format!(
                "<error_summary> says {} errors in {} contexts, fewer than <errorcounts> \
                 ({occurrences} in {pairs})",
                s.errors, s.error_contexts
            ),
        ));
        return;
    };
    if once_errors != once_contexts {
        problems.push((
            pos,
            format!(
                "<error_summary> ({} errors, {} contexts) does not add up with <errorcounts> \
                 ({occurrences} in {pairs})",
                s.errors, s.error_contexts
            ),
        ));
        return;
    }
    let shown_counted = log
        .errors
        .iter()
        .filter(|e| match LeakKind::of_error_kind(&e.kind) {
            Some(k) => options.counted.contains(&k),
            None => e.kind == "FdNotClosed",
        })
        .count() as u64;
    let all_counted_shown = options.counted.is_subset(&options.shown);
    if once_contexts < shown_counted
        || (options.exact && all_counted_shown && once_contexts != shown_counted)
    {
        problems.push((
            pos,
            format!(
                "<error_summary> counts {} error contexts; the log lists {} ({pairs} in \
                 <errorcounts>, {shown_counted} leaks and open descriptors)",
                s.error_contexts,
                pairs + shown_counted
            ),
        ));
    }
}

/// One `<leak_summary>` against the leak errors listed for that leak check.
fn check_leak_summary(
    log: &Log,
    lc: &LeakCheck,
    options: &LeakOptions,
    problems: &mut Vec<(u64, String)>,
) {
    let errors = log.errors.get(lc.errors.clone()).unwrap_or(&[]);
    for kind in LeakKind::ALL {
        let name = match kind {
            LeakKind::Definite => "Leak_DefinitelyLost",
            LeakKind::Indirect => "Leak_IndirectlyLost",
            LeakKind::Possible => "Leak_PossiblyLost",
            LeakKind::Reachable => "Leak_StillReachable",
        };
        let Some(total) = lc.summary.of_kind(name) else {
            continue;
        };
        let of_kind = errors.iter().filter(|e| e.kind == name);
        let (bytes, blocks) = of_kind.fold((0u64, 0u64), |(by, bl), e| {
            (
                by.saturating_add(e.leaked_bytes.unwrap_or(0)),
                bl.saturating_add(e.leaked_blocks.unwrap_or(0)),
            )
        });
        let exact = options.exact && options.full && options.shown.contains(&kind);
        let wrong = blocks > total.blocks
            || (exact && blocks != total.blocks)
            || (exact && bytes < total.bytes);
        if wrong {
            problems.push((
                lc.offset,
                format!(
                    "<leak_summary> {}: {} bytes in {} blocks, but the {name} errors listed \
                     add up to {bytes} bytes in {blocks} blocks",
                    kind.name(),
                    total.bytes,
                    total.blocks
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leak_options_follow_valgrind_defaults_and_overrides() {
        let o = LeakOptions::from_valgrind_argv(&[]);
        assert!(o.shown.contains(&LeakKind::Definite) && !o.shown.contains(&LeakKind::Reachable));
        assert!(!o.full);
        let argv: Vec<String> = [
            "--leak-check=full",
            "--show-leak-kinds=all",
            "--errors-for-leak-kinds=definite",
        ]
        .map(String::from)
        .to_vec();
        let o = LeakOptions::from_valgrind_argv(&argv);
        assert!(o.full && o.exact && o.shown.len() == 4 && o.counted.len() == 1);
        let o = LeakOptions::from_valgrind_argv(&["--show-leak-kinds=bogus".to_string()]);
        assert!(!o.exact);
    }
}
