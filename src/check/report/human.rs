//! The human report: what went wrong, where, and whether it fails the run.
//!
//! Errors with the same fingerprint (kind + first user frames) are shown once, with how often
//! and where (binary › test) they occurred. Stacks fold allocator, runtime and test-harness frames
//! ("… 6 allocator frames folded") except the innermost frame, which is always shown, and the first
//! user frame is marked with `→` (and highlighted when colour is on). Errors ignored by the policy
//! are summarised by kind in one line; `verbose` lists them too.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::check::exit;
use crate::check::frames::FrameClass;
use crate::check::policy::Verdict;
use crate::check::results::{ErrorResult, FrameResult, ProcessResult, Results};

/// Options for the human report.
#[derive(Debug, Clone, Default)]
pub struct HumanOptions {
    /// Emit ANSI colour.
    pub color: bool,
    /// List ignored errors in full, not just their counts.
    pub verbose: bool,
    /// Show paths under this directory relative to it.
    pub base_dir: Option<String>,
    /// Most frames shown per stack (0: 12).
    pub max_frames: usize,
}

/// Whether colour should be used on stdout: a terminal, and `NO_COLOR` unset or empty.
pub fn stdout_wants_color() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn red(&self, s: &str) -> String {
        self.paint("1;31", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.paint("1;33", s)
    }
    fn green(&self, s: &str) -> String {
        self.paint("1;32", s)
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn highlight(&self, s: &str) -> String {
        self.paint("1;36", s)
    }
}

/// Shortens a path for display: the standard library's `/rustc/<hash>/` prefix is dropped and
/// paths under `base` become relative.
fn short_path(path: &str, base: Option<&str>) -> String {
    if let Some(rest) = path.strip_prefix("/rustc/") {
        if let Some((_, tail)) = rest.split_once('/') {
            return tail.to_string();
        }
    }
    if let Some(base) = base {
        let base = base.trim_end_matches('/');
        if let Some(rest) = path.strip_prefix(base).and_then(|r| r.strip_prefix('/')) {
            return rest.to_string();
        }
    }
    path.to_string()
}

/// One frame as `name (file:line)` or `name (in object)`.
pub(crate) fn frame_text(f: &FrameResult, base: Option<&str>) -> String {
    let name = f
        .function
        .clone()
        .unwrap_or_else(|| f.ip.clone().unwrap_or_else(|| "???".into()));
    match (&f.file, f.line) {
        (Some(file), Some(line)) => format!("{name} ({}:{line})", short_path(file, base)),
        (Some(file), None) => format!("{name} ({})", short_path(file, base)),
        _ => match &f.object {
            Some(obj) => format!("{name} (in {})", obj.rsplit('/').next().unwrap_or(obj)),
            None => name,
        },
    }
}

/// Renders a stack with folding; `user` is the index of the first user frame.
fn render_stack(
    out: &mut String,
    frames: &[FrameResult],
    user: Option<usize>,
    opts: &HumanOptions,
    st: &Style,
) {
    let base = opts.base_dir.as_deref();
    let max = if opts.max_frames == 0 {
        12
    } else {
        opts.max_frames
    };
    let mut shown = 0;
    let mut i = 0;
    while i < frames.len() {
        if shown >= max {
            let _ = writeln!(
                out,
                "     {}",
                st.dim(&format!("… {} more frames", frames.len() - i))
            );
            break;
        }
        let f = &frames[i];
        let prefix = if i == 0 { "at" } else { "by" };
        if i == 0 || !f.class().is_folded() {
            let text = frame_text(f, base);
            if Some(i) == user {
                let _ = writeln!(
                    out,
                    "  {} {prefix} {}",
                    st.highlight("→"),
                    st.highlight(&text)
                );
            } else {
                let _ = writeln!(out, "    {prefix} {text}");
            }
            shown += 1;
            i += 1;
            continue;
        }
        let start = i;
        let mut classes: Vec<FrameClass> = Vec::new();
        while i < frames.len() && frames[i].class().is_folded() {
            if !classes.contains(&frames[i].class()) {
                classes.push(frames[i].class());
            }
            i += 1;
        }
        let n = i - start;
        let labels: Vec<&str> = classes.iter().map(|c| c.label()).collect();
        let _ = writeln!(
            out,
            "    {}",
            st.dim(&format!(
                "… {n} {} frame{} folded",
                labels.join("/"),
                if n == 1 { "" } else { "s" }
            ))
        );
        shown += 1;
    }
}

fn plural(n: u64, word: &str) -> String {
    match (n, word.ends_with('s')) {
        (1, _) => format!("{n} {word}"),
        (_, true) => format!("{n} {word}es"),
        (_, false) => format!("{n} {word}s"),
    }
}

struct Group<'a> {
    first: &'a ErrorResult,
    members: Vec<&'a ErrorResult>,
}

fn groups<'a>(errors: impl Iterator<Item = &'a ErrorResult>) -> Vec<Group<'a>> {
    let mut order: Vec<Group<'a>> = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for e in errors {
        match index.get(e.fingerprint.as_str()) {
            Some(&i) => order[i].members.push(e),
            None => {
                index.insert(&e.fingerprint, order.len());
                order.push(Group {
                    first: e,
                    members: vec![e],
                });
            }
        }
    }
    order
}

fn location(e: &ErrorResult) -> String {
    match &e.test {
        Some(t) => format!("{} › {t}", e.binary),
        None => e.binary.clone(),
    }
}

fn render_group(out: &mut String, g: &Group<'_>, opts: &HumanOptions, st: &Style) {
    let e = g.first;
    let tag = match e.verdict {
        Verdict::Fail => st.red(&format!("error[{}]", e.kind)),
        Verdict::Baselined => st.yellow(&format!("baselined[{}]", e.kind)),
        Verdict::Ignored => st.dim(&format!("ignored[{}]", e.kind)),
    };
    let _ = writeln!(out, "{tag}: {}", st.bold(&e.what));
    let occurrences: u64 = g.members.iter().map(|m| m.count).sum();
    let mut places: Vec<String> = Vec::new();
    for m in &g.members {
        let l = location(m);
        if !places.contains(&l) {
            places.push(l);
        }
    }
    let total_bytes: u64 = g.members.iter().filter_map(|m| m.bytes).sum();
    let mut seen = if places.len() > 4 {
        format!("{} and {} more", places[..4].join(", "), places.len() - 4)
    } else {
        places.join(", ")
    };
    if occurrences > 1 || g.members.len() > 1 {
        let processes: std::collections::BTreeSet<usize> =
            g.members.iter().map(|m| m.process).collect();
        let _ = write!(
            seen,
            " — {} in {}",
            plural(occurrences, "occurrence"),
            plural(processes.len() as u64, "process")
        );
        if g.members.len() > 1 && total_bytes > 0 {
            let _ = write!(seen, ", {total_bytes} bytes in total");
        }
    }
    let _ = writeln!(out, "  in: {seen}");
    if let Some(u) = e.user_frame.and_then(|u| e.frames.get(u)) {
        if let (Some(file), Some(line)) = (&u.file, u.line) {
            let _ = writeln!(
                out,
                "  {} {}",
                st.highlight("-->"),
                st.highlight(&format!(
                    "{}:{line}",
                    short_path(file, opts.base_dir.as_deref())
                ))
            );
        }
    }
    render_stack(out, &e.frames, e.user_frame, opts, st);
    if e.frames.is_empty() && crate::check::model::is_descriptor_kind(&e.kind) {
        let _ = writeln!(
            out,
            "  {} no stack: a descriptor inherited from the parent process; no suppression can \
             match it (close it before starting the program, or leave out --track-fds=all)",
            st.dim("note:")
        );
    }
    for aux in &e.aux {
        let _ = writeln!(out, "  {} {}", st.dim("note:"), aux.what);
        if !aux.frames.is_empty() {
            let user = aux.frames.iter().position(|f| !f.class().is_folded());
            render_stack(out, &aux.frames, user, opts, st);
        }
    }
    let _ = writeln!(
        out,
        "  {}",
        st.dim(&format!("fingerprint: {}", e.fingerprint))
    );
    out.push('\n');
}

fn process_problem(p: &ProcessResult) -> Option<String> {
    if p.skipped {
        return None;
    }
    let mut parts = Vec::new();
    if p.timed_out {
        parts.push("timed out (killed by --timeout)".to_string());
    }
    if let Some(f) = &p.fatal_signal {
        let name = f
            .signame
            .clone()
            .or_else(|| f.signo.map(|n| format!("signal {n}")))
            .unwrap_or_default();
        let mut s = format!("killed by {name}");
        if let Some(ev) = &f.event {
            let _ = write!(s, " ({ev}");
            if let Some(a) = &f.siaddr {
                let _ = write!(s, " at {a}");
            }
            s.push(')');
        }
        parts.push(s);
    } else if let Some(sig) = p.signal.filter(|_| !p.timed_out) {
        parts.push(format!("killed by signal {sig}"));
    }
    // Under `poolgrind cargo` the status is cargo's to judge (a `should_panic` doctest exits 101).
    if let Some(code) = p.exit_code.filter(|c| *c != 0 && !p.exit_judged_by_cargo) {
        parts.push(format!("exited with status {code}"));
    }
    match p.log {
        Some(crate::check::results::LogStatus::Truncated) if !p.timed_out => {
            parts.push("valgrind crashed / log truncated".to_string())
        }
        Some(crate::check::results::LogStatus::Junk) => {
            parts.push("log contains junk (not XML)".to_string())
        }
        Some(crate::check::results::LogStatus::Damaged) => {
            parts.push("log damaged: its structure or totals are wrong, not trusted".to_string())
        }
        Some(crate::check::results::LogStatus::Missing) | None if !p.timed_out => {
            parts.push("no valgrind log was written".to_string())
        }
        _ => {}
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Renders the human report.
pub fn render(results: &Results, opts: &HumanOptions) -> String {
    let st = Style { on: opts.color };
    let mut out = String::new();
    let failing = groups(results.errors.iter().filter(|e| e.verdict == Verdict::Fail));
    let baselined = groups(
        results
            .errors
            .iter()
            .filter(|e| e.verdict == Verdict::Baselined),
    );
    let ignored: Vec<&ErrorResult> = results
        .errors
        .iter()
        .filter(|e| e.verdict == Verdict::Ignored)
        .collect();
    for g in failing.iter().chain(baselined.iter()) {
        render_group(&mut out, g, opts, &st);
    }
    if opts.verbose {
        for g in groups(ignored.iter().copied()) {
            render_group(&mut out, &g, opts, &st);
        }
    }

    let problems: Vec<(&ProcessResult, String)> = results
        .processes
        .iter()
        .filter_map(|p| process_problem(p).map(|s| (p, s)))
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(out, "{}", st.bold("process problems:"));
        for (p, what) in &problems {
            let _ = writeln!(out, "  {}: {what}", st.yellow(&p.label()));
            if let Some(f) = &p.fatal_signal {
                let user = f.frames.iter().position(|fr| !fr.class().is_folded());
                let mut stack = String::new();
                render_stack(&mut stack, &f.frames, user, opts, &st);
                for line in stack.lines() {
                    let _ = writeln!(out, "  {line}");
                }
            }
            for note in &p.notes {
                let _ = writeln!(out, "    {}", st.dim(note));
            }
        }
        out.push('\n');
    }

    let s = &results.summary;
    // Logs read back by `poolgrind report` have no exit status or timing: say "read", not "ran".
    let saved_logs = results
        .processes
        .iter()
        .all(|p| p.exit_code.is_none() && p.duration_ms.is_none());
    let skipped = if s.skipped > 0 {
        format!(" ({} skipped)", s.skipped)
    } else {
        String::new()
    };
    let count = (s.processes - s.skipped) as u64;
    if saved_logs && s.skipped == 0 {
        let _ = writeln!(out, "read {}", plural(count, "memcheck log"));
    } else {
        let _ = writeln!(
            out,
            "ran {} under memcheck{skipped}",
            plural(count, "process")
        );
    }
    if !ignored.is_empty() || !results.ignored_errors.is_empty() {
        let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
        for e in &ignored {
            *by_kind.entry(e.kind.as_str()).or_default() += e.count;
        }
        for g in &results.ignored_errors {
            *by_kind.entry(g.kind.as_str()).or_default() += g.count;
        }
        let list: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        let _ = writeln!(out, "not counted by policy: {}", list.join(", "));
    }
    if s.baselined > 0 {
        let _ = writeln!(out, "known in baseline: {}", plural(s.baselined, "error"));
    }
    let _ = writeln!(out, "policy: {}", results.policy);
    let verdict = format!("{} [exit {}]", s.verdict, s.exit_code);
    let verdict = if s.exit_code == exit::SUCCESS {
        st.green(&verdict)
    } else {
        st.red(&verdict)
    };
    let _ = writeln!(out, "result: {verdict}");
    out
}
