//! The suppression-file parser: valgrind's grammar, with errors that name file:line.
//!
//! It reads lines the way valgrind 3.19 does (`VG_(get_line)`, m_errormgr.c): every line is
//! trimmed of surrounding whitespace, and blank lines and lines starting with `#` are skipped
//! everywhere, even inside an entry. Then, per entry:
//!
//! ```text
//! {                          exactly "{" on its own line ("{ name" is an error in valgrind too)
//! NAME                       any text
//! TOOL[,TOOL]:KIND           e.g. Memcheck:Addr4; other tools' entries are kept, not checked
//! [EXTRA]                    Memcheck:Param: always the syscall parameter line
//!                            Memcheck:Leak:  "match-leak-kinds: ..." if the line starts so
//! FRAME…                     fun:PAT | obj:PAT | src:FILE[:LINE] | ...
//! }
//! ```
//!
//! Where the parser is stricter than valgrind it says so in the message. Those cases are traps
//! valgrind accepts silently: a missing name line (valgrind takes the kind line as the name, the
//! first frame as the kind of an unknown tool, and ignores the entry), a `Param` entry whose
//! parameter line is really a frame, and more than 500 frames (valgrind drops the rest).
//! Facts about what valgrind 3.19 rejects were measured with `valgrind --suppressions=F true`:
//! unknown Memcheck kinds (`Value64`, `Addr64`, and the kinds added after 3.19), bad
//! `match-leak-kinds` values (`all`/`none` mixed with others, spaces after commas, capitals,
//! empty), frames that are only `...`, no frames, text after `}`, and lines over 100000 chars.
//!
//! After an error the parser skips to the next `}` and goes on, so one run reports every
//! broken entry. It never panics (see the `fuzz_supp_parser` test).

use std::collections::BTreeSet;

use super::entry::{
    Diagnostic, Entry, Extra, FramePat, LeakKind, LeakKinds, SuppFile, MAX_FRAMES, MAX_LINE,
};

/// Memcheck suppression kinds valgrind 3.19 knows (mc_errors.c, `MC_(is_recognised_suppression)`;
/// each one measured with valgrind 3.19 on this machine).
pub const MEMCHECK_KINDS: &[&str] = &[
    "Value1",
    "Value2",
    "Value4",
    "Value8",
    "Value16",
    "Value32",
    "Cond",
    "Addr1",
    "Addr2",
    "Addr4",
    "Addr8",
    "Addr16",
    "Addr32",
    "Jump",
    "Param",
    "Free",
    "Overlap",
    "Leak",
    "Mempool",
    "User",
    "CoreMem",
    "FishyValue",
];

/// Memcheck kinds added after 3.19 (3.20–3.22: realloc(…, 0) and the C++ aligned/sized
/// new/delete checks). Accepted with a warning: valgrind 3.19 rejects a file that uses them.
pub const MEMCHECK_KINDS_NEWER: &[&str] = &[
    "ReallocZero",
    "BadAlign",
    "BadSize",
    "UnsafeZeroSize",
    "SizeMismatch",
    "AlignMismatch",
];

/// Errors found in a suppression file (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.errors))]
pub struct ParseErrors {
    /// Every error, in file order.
    pub errors: Vec<Diagnostic>,
}

fn render(errors: &[Diagnostic]) -> String {
    let lines: Vec<String> = errors.iter().map(|d| format!("{d}")).collect();
    lines.join("\n")
}

/// Reads and parses a file; I/O errors become a diagnostic at line 0.
pub fn parse_file(path: &std::path::Path) -> Result<SuppFile, ParseErrors> {
    let label = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => parse_bytes(&label, &bytes),
        Err(e) => Err(ParseErrors {
            errors: vec![Diagnostic {
                file: label,
                line: 0,
                message: format!("cannot read the file: {e}"),
            }],
        }),
    }
}

/// Parses bytes (a line that is not UTF-8 is an error at that line).
pub fn parse_bytes(path: &str, bytes: &[u8]) -> Result<SuppFile, ParseErrors> {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        match std::str::from_utf8(raw) {
            Ok(s) => lines.push(s.to_string()),
            Err(e) => {
                errors.push(Diagnostic {
                    file: path.to_string(),
                    line: i + 1,
                    message: format!(
                        "line is not valid UTF-8 (byte {} of the line)",
                        e.valid_up_to() + 1
                    ),
                });
                lines.push(String::from_utf8_lossy(raw).into_owned());
            }
        }
    }
    let text = lines.join("\n");
    match parse_str(path, &text) {
        Ok(f) if errors.is_empty() => Ok(f),
        Ok(_) => Err(ParseErrors { errors }),
        Err(mut e) => {
            errors.append(&mut e.errors);
            errors.sort_by_key(|d| d.line);
            Err(ParseErrors { errors })
        }
    }
}

/// One significant line: 1-based number and trimmed text.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    no: usize,
    text: &'a str,
}

/// Comments and blank lines matter to the formatter (headers, per-entry comments), so the
/// line reader keeps them as tokens; the grammar itself skips them as valgrind does.
#[derive(Debug, Clone, Copy)]
enum Tok<'a> {
    Blank,
    Comment(&'a str),
    Text(Line<'a>),
}

fn tokenize(text: &str) -> Vec<(usize, Tok<'_>)> {
    text.split('\n')
        .enumerate()
        .map(|(i, raw)| {
            let t = raw.trim();
            let tok = if t.is_empty() {
                Tok::Blank
            } else if let Some(c) = t.strip_prefix('#') {
                Tok::Comment(c.strip_prefix(' ').unwrap_or(c))
            } else {
                Tok::Text(Line { no: i + 1, text: t })
            };
            (i + 1, tok)
        })
        .collect()
}

struct Parser<'a> {
    path: &'a str,
    toks: Vec<(usize, Tok<'a>)>,
    pos: usize,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// Comments seen since the last entry or blank line.
    pending_comments: Vec<String>,
}

/// Why an entry could not be read: the diagnostic, and whether the parser already stands
/// after the entry's `}` (otherwise it skips to it).
struct EntryError {
    diag: Diagnostic,
    at_close: bool,
}

impl EntryError {
    /// The error is inside the entry: skip to its `}`.
    fn open(diag: Diagnostic) -> Self {
        EntryError {
            diag,
            at_close: false,
        }
    }

    /// The parser already stands after the entry (or at the next `{`).
    fn closed(diag: Diagnostic) -> Self {
        EntryError {
            diag,
            at_close: true,
        }
    }
}

impl<'a> Parser<'a> {
    fn diag(&self, line: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.path.to_string(),
            line,
            message: message.into(),
        }
    }

    /// The last line that is not blank (where "end of file" is reported).
    fn last_line(&self) -> usize {
        self.toks
            .iter()
            .rev()
            .find(|(_, t)| !matches!(t, Tok::Blank))
            .map_or(1, |(no, _)| *no)
    }

    /// Next significant line inside an entry (comments and blanks skipped, as valgrind does).
    fn next_text(&mut self) -> Option<Line<'a>> {
        while self.pos < self.toks.len() {
            let (_, tok) = self.toks[self.pos];
            self.pos += 1;
            match tok {
                Tok::Text(l) => return Some(l),
                // Valgrind skips comments inside entries; keep them for the formatter.
                Tok::Comment(c) => self.pending_comments.push(c.to_string()),
                Tok::Blank => {}
            }
        }
        None
    }

    fn peek_text(&self) -> Option<Line<'a>> {
        self.toks[self.pos..].iter().find_map(|(_, t)| match t {
            Tok::Text(l) => Some(*l),
            _ => None,
        })
    }

    /// Skips to just after the next line that is exactly `}` (error recovery).
    fn skip_to_close(&mut self) {
        while let Some(l) = self.next_text() {
            if l.text == "}" {
                return;
            }
            if l.text == "{" {
                // A new entry starts: let the top level see it.
                self.pos -= 1;
                while !matches!(self.toks[self.pos].1, Tok::Text(_)) {
                    self.pos -= 1;
                }
                return;
            }
        }
    }

    fn run(mut self) -> Result<SuppFile, ParseErrors> {
        let mut file = SuppFile {
            path: self.path.to_string(),
            ..SuppFile::default()
        };
        let mut seen_text = false;
        while self.pos < self.toks.len() {
            let (no, tok) = self.toks[self.pos];
            self.pos += 1;
            match tok {
                Tok::Blank => {
                    // Comment blocks followed by a blank line before any entry are the header
                    // (paragraphs joined by an empty comment line).
                    if !seen_text && !self.pending_comments.is_empty() {
                        if !file.header.is_empty() {
                            file.header.push(String::new());
                        }
                        file.header.append(&mut self.pending_comments);
                    }
                }
                Tok::Comment(c) => self.pending_comments.push(c.to_string()),
                Tok::Text(l) => {
                    seen_text = true;
                    if l.text.len() > MAX_LINE {
                        self.errors.push(self.diag(no, too_long(l.text.len())));
                    }
                    if l.text != "{" {
                        let hint = if l.text.starts_with('{') {
                            " ('{' must be alone on its line; the name goes on the next line)"
                        } else if l.text == "}" {
                            " (a '}' without a matching '{')"
                        } else {
                            ""
                        };
                        self.errors.push(self.diag(
                            no,
                            format!(
                                "expected '{{' or end of file, found `{}`{hint}",
                                clip(l.text)
                            ),
                        ));
                        self.skip_to_close();
                        self.pending_comments.clear();
                        continue;
                    }
                    let comments = std::mem::take(&mut self.pending_comments);
                    match self.entry(no) {
                        Ok(mut e) => {
                            e.comments = comments;
                            e.comments.append(&mut self.pending_comments);
                            file.entries.push(e);
                        }
                        Err(err) => {
                            self.errors.push(err.diag);
                            if !err.at_close {
                                self.skip_to_close();
                            }
                            self.pending_comments.clear();
                        }
                    }
                }
            }
        }
        if !seen_text && !self.pending_comments.is_empty() {
            // A file of comments only: they are its header.
            if !file.header.is_empty() {
                file.header.push(String::new());
            }
            file.header.append(&mut self.pending_comments);
        }
        file.trailer = std::mem::take(&mut self.pending_comments);
        if self.errors.is_empty() {
            file.warnings = self.warnings;
            Ok(file)
        } else {
            Err(ParseErrors {
                errors: self.errors,
            })
        }
    }

    /// "end of file while expecting …" for the entry opened at line `open`.
    fn eof(&self, open: usize, what: &str) -> EntryError {
        EntryError::closed(self.diag(
            self.last_line(),
            format!(
                "unterminated entry (opened at line {open}): end of file while expecting {what}"
            ),
        ))
    }

    /// Reads one entry after its `{` (at line `open`): name, kind line, extra line, frames.
    fn entry(&mut self, open: usize) -> Result<Entry, EntryError> {
        let name = self.entry_name(open)?;
        let (tools, kind) = self.entry_kind(open, name)?;
        let extra = self.entry_extra(open, &tools, &kind)?;
        let frames = self.entry_frames(open)?;
        Ok(Entry {
            comments: Vec::new(),
            name: name.text.to_string(),
            tools,
            kind,
            extra,
            frames,
            line: open,
            name_line: name.no,
        })
    }

    /// The name line.
    fn entry_name(&mut self, open: usize) -> Result<Line<'a>, EntryError> {
        let name = self
            .next_text()
            .ok_or_else(|| self.eof(open, "a name line"))?;
        check_len(self, name).map_err(EntryError::open)?;
        if name.text == "}" {
            return Err(EntryError::closed(
                self.diag(name.no, "expected a suppression name after '{', found '}'"),
            ));
        }
        if name.text == "{" {
            return Err(EntryError::open(self.diag(
                name.no,
                format!("expected a suppression name, found '{{' (the entry opened at line {open} is not closed)"),
            )));
        }
        Ok(name)
    }

    /// The `Tool[,Tool]:Kind` line after `name`: (tools, kind). A frame there means the name
    /// or the kind line is missing; Memcheck kinds are checked against valgrind 3.19's.
    fn entry_kind(
        &mut self,
        open: usize,
        name: Line<'a>,
    ) -> Result<(Vec<String>, String), EntryError> {
        let kind = self
            .next_text()
            .ok_or_else(|| self.eof(open, "a `Tool:Kind` line"))?;
        check_len(self, kind).map_err(EntryError::open)?;
        if kind.text == "}" {
            return Err(EntryError::closed(self.diag(
                kind.no,
                "missing kind line: expected `Tool:Kind` (e.g. `Memcheck:Leak`) before '}'",
            )));
        }
        if is_frame_like(kind.text) {
            let looks_kind = parse_kind_line(name.text).is_some();
            let msg = if looks_kind {
                format!(
                    "missing name line: `{}` (line {}) reads as the name and this frame as the kind; \
                     valgrind would silently ignore the entry. Add a name line after '{{'",
                    clip(name.text),
                    name.no
                )
            } else {
                format!(
                    "missing kind line: expected `Tool:Kind` (e.g. `Memcheck:Addr4`), found the frame `{}`",
                    clip(kind.text)
                )
            };
            return Err(EntryError::open(self.diag(kind.no, msg)));
        }
        let Some((tools, kind_name)) = parse_kind_line(kind.text) else {
            return Err(EntryError::open(self.diag(
                kind.no,
                format!(
                    "expected `Tool[,Tool]:Kind` (e.g. `Memcheck:Leak`), found `{}`",
                    clip(kind.text)
                ),
            )));
        };
        self.check_tools_and_kind(kind, &tools, &kind_name)?;
        Ok((tools, kind_name))
    }

    /// Memcheck kinds valgrind 3.19 rejects are errors, newer ones warnings; an entry for no
    /// known tool is a warning (valgrind ignores it).
    fn check_tools_and_kind(
        &mut self,
        kind: Line<'a>,
        tools: &[String],
        kind_name: &str,
    ) -> Result<(), EntryError> {
        if tools.iter().any(|t| t == "Memcheck") {
            if MEMCHECK_KINDS_NEWER.contains(&kind_name) {
                self.warnings.push(self.diag(
                    kind.no,
                    format!("Memcheck kind `{kind_name}` needs valgrind 3.20 or newer; 3.19 rejects the whole file"),
                ));
            } else if !MEMCHECK_KINDS.contains(&kind_name) {
                return Err(EntryError::open(self.diag(
                    kind.no,
                    format!(
                        "unknown Memcheck kind `{kind_name}` (valgrind rejects the file); expected one of {}",
                        MEMCHECK_KINDS.join(", ")
                    ),
                )));
            }
        } else if !tools
            .iter()
            .any(|t| KNOWN_TOOLS.contains(&t.as_str()) || t == "*")
        {
            self.warnings.push(self.diag(
                kind.no,
                format!(
                    "no known tool in `{}` (tool names are case-sensitive, e.g. `Memcheck`); valgrind ignores this entry",
                    clip(kind.text)
                ),
            ));
        }
        Ok(())
    }

    /// The optional line between the kind line and the frames: a Memcheck:Param entry's
    /// syscall parameter (always there), a Memcheck:Leak entry's `match-leak-kinds:`, another
    /// tool's extra line.
    fn entry_extra(
        &mut self,
        open: usize,
        tools: &[String],
        kind_name: &str,
    ) -> Result<Option<Extra>, EntryError> {
        let memcheck = tools.iter().any(|t| t == "Memcheck");
        if memcheck && kind_name == "Param" {
            let p = self
                .next_text()
                .ok_or_else(|| self.eof(open, "the syscall parameter line of a Param entry"))?;
            check_len(self, p).map_err(EntryError::open)?;
            if p.text == "}" || is_frame_like(p.text) {
                let d = self.diag(
                    p.no,
                    format!(
                        "a Memcheck:Param entry needs the syscall parameter line (e.g. `write(buf)`) before its frames, found `{}`",
                        clip(p.text)
                    ),
                );
                return Err(if p.text == "}" {
                    EntryError::closed(d)
                } else {
                    EntryError::open(d)
                });
            }
            return Ok(Some(Extra::Param(p.text.to_string())));
        }
        let Some(p) = self.peek_text() else {
            return Ok(None);
        };
        if let Some(rest) = p.text.strip_prefix("match-leak-kinds:") {
            if memcheck && kind_name == "Leak" {
                self.next_text();
                let kinds =
                    parse_leak_kinds(rest).map_err(|m| EntryError::open(self.diag(p.no, m)))?;
                return Ok(Some(Extra::LeakKinds(kinds)));
            } else if memcheck {
                return Err(EntryError::open(self.diag(
                    p.no,
                    format!("`match-leak-kinds:` is only valid in Memcheck:Leak entries, not Memcheck:{kind_name}"),
                )));
            }
        }
        if !memcheck && p.text != "}" && !is_frame_like(p.text) {
            self.next_text();
            return Ok(Some(Extra::Other(p.text.to_string())));
        }
        Ok(None)
    }

    /// Frame lines up to the closing `}`: at least one that is not `...`, at most
    /// [`MAX_FRAMES`].
    fn entry_frames(&mut self, open: usize) -> Result<Vec<FramePat>, EntryError> {
        let mut frames = Vec::new();
        let close = loop {
            let l = self
                .next_text()
                .ok_or_else(|| self.eof(open, "a frame line or '}'"))?;
            check_len(self, l).map_err(EntryError::open)?;
            if l.text == "}" {
                break l;
            }
            if l.text == "{" {
                // Leave the '{' for the top level: it probably starts the next entry.
                self.pos -= 1;
                while !matches!(self.toks[self.pos].1, Tok::Text(_)) {
                    self.pos -= 1;
                }
                return Err(EntryError::closed(self.diag(
                    l.no,
                    format!("expected a frame line or '}}' closing the entry opened at line {open}, found '{{'"),
                )));
            }
            match parse_frame(l.text) {
                Ok(f) => frames.push(f),
                Err(m) => return Err(EntryError::open(self.diag(l.no, m))),
            }
        };
        let problem = if frames.is_empty() {
            Some("entry has no frame lines: expected at least one `fun:`, `obj:` or `src:` line before '}'".to_string())
        } else if frames.iter().all(FramePat::is_ellipsis) {
            Some("entry has only `...` frames: valgrind needs at least one `fun:`, `obj:` or `src:` line".to_string())
        } else if frames.len() > MAX_FRAMES {
            Some(format!(
                "entry has {} frame lines; valgrind honours at most {MAX_FRAMES} and silently drops the rest",
                frames.len()
            ))
        } else {
            None
        };
        match problem {
            Some(m) => Err(EntryError::closed(self.diag(close.no, m))),
            None => Ok(frames),
        }
    }
}

/// Tool names valgrind ships (as they appear in suppression kind lines).
const KNOWN_TOOLS: &[&str] = &[
    "Memcheck",
    "Helgrind",
    "DRD",
    "drd",
    "exp-sgcheck",
    "CoreError",
    "Massif",
    "Cachegrind",
    "Callgrind",
    "Lackey",
    "None",
    "DHAT",
    "exp-bbv",
];

fn check_len(p: &Parser<'_>, l: Line<'_>) -> Result<(), Diagnostic> {
    if l.text.len() > MAX_LINE {
        Err(p.diag(l.no, too_long(l.text.len())))
    } else {
        Ok(())
    }
}

fn too_long(n: usize) -> String {
    format!("line is {n} characters long; valgrind aborts on lines over {MAX_LINE} characters")
}

/// Shortens text quoted in a message.
fn clip(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

fn is_frame_like(s: &str) -> bool {
    s == "..." || s.starts_with("fun:") || s.starts_with("obj:") || s.starts_with("src:")
}

/// `Tool[,Tool]:Kind` → (tools, kind). Tools are trimmed (valgrind accepts `Memcheck, Helgrind`).
pub fn parse_kind_line(s: &str) -> Option<(Vec<String>, String)> {
    let (tools, kind) = s.split_once(':')?;
    let kind = kind.trim();
    if kind.is_empty() || kind.contains(char::is_whitespace) || kind.contains(':') {
        return None;
    }
    let tools: Vec<String> = tools.split(',').map(|t| t.trim().to_string()).collect();
    if tools
        .iter()
        .any(|t| t.is_empty() || t.contains(char::is_whitespace))
    {
        return None;
    }
    Some((tools, kind.to_string()))
}

/// The value after `match-leak-kinds:` (valgrind: optional spaces, then a comma list with no
/// spaces; `all` and `none` only alone; a trailing comma is tolerated).
pub fn parse_leak_kinds(rest: &str) -> Result<LeakKinds, String> {
    let v = rest.trim_start();
    let expected =
        "expected `match-leak-kinds: ` followed by `all`, `none`, or a comma-separated list of \
                    definite, indirect, possible, reachable (no spaces)";
    if v.is_empty() {
        return Err(format!("empty match-leak-kinds value: {expected}"));
    }
    match v {
        "all" => return Ok(LeakKinds::All),
        "none" => return Ok(LeakKinds::None),
        _ => {}
    }
    let body = v.strip_suffix(',').unwrap_or(v);
    let mut set = BTreeSet::new();
    for word in body.split(',') {
        match LeakKind::from_name(word) {
            Some(k) => {
                set.insert(k);
            }
            None => {
                let why = if word == "all" || word == "none" {
                    format!("`{word}` cannot be combined with other kinds")
                } else if word.is_empty() {
                    "empty kind between commas".to_string()
                } else if word.trim() != word {
                    "spaces are not allowed around kinds".to_string()
                } else {
                    format!("unknown leak kind `{}`", clip(word))
                };
                return Err(format!(
                    "bad match-leak-kinds value `{}`: {why}; {expected}",
                    clip(v)
                ));
            }
        }
    }
    Ok(LeakKinds::Set(set))
}

/// One frame line (already trimmed).
pub fn parse_frame(s: &str) -> Result<FramePat, String> {
    if s == "..." {
        return Ok(FramePat::Ellipsis);
    }
    if let Some(p) = s.strip_prefix("fun:") {
        return Ok(FramePat::Fun(p.to_string()));
    }
    if let Some(p) = s.strip_prefix("obj:") {
        return Ok(FramePat::Obj(p.to_string()));
    }
    if let Some(p) = s.strip_prefix("src:") {
        if let Some((file, line)) = p.rsplit_once(':') {
            if !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(n) = line.parse::<u32>() {
                    return Ok(FramePat::Src {
                        file: file.to_string(),
                        line: Some(n),
                    });
                }
            }
        }
        return Ok(FramePat::Src {
            file: p.to_string(),
            line: None,
        });
    }
    let hint = if s.starts_with("match-leak-kinds:") {
        " (`match-leak-kinds:` must come right after the `Memcheck:Leak` line)"
    } else if s.starts_with('}') {
        " ('}' must be alone on its line)"
    } else if s.starts_with("...") || s.starts_with("..") {
        " (the wildcard is exactly three dots)"
    } else if s.starts_with("fn:") || s.starts_with("func:") {
        " (did you mean `fun:`?)"
    } else {
        ""
    };
    Err(format!(
        "bad frame line `{}`: expected `fun:NAME`, `obj:PATH`, `src:FILE[:LINE]`, `...` or '}}'{hint}",
        clip(s)
    ))
}

/// Parses suppression text. `path` is only used in messages.
pub fn parse_str(path: &str, text: &str) -> Result<SuppFile, ParseErrors> {
    // Valgrind reads CRLF files fine: the trim removes the '\r'.
    let p = Parser {
        path,
        toks: tokenize(text),
        pos: 0,
        errors: Vec::new(),
        warnings: Vec::new(),
        pending_comments: Vec::new(),
    };
    p.run()
}
