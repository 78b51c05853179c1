//! A tolerant, streaming reader for memcheck's XML output (protocols 4, 5 and 6).
//!
//! Valgrind's XML is written by a program that may be in the middle of dying: a crash or a kill
//! leaves the document truncated, a misbehaving client can write junk into the same file, and
//! newer valgrinds add elements (protocol 5's fd errors, protocol 6's summaries whose numbers carry
//! thousands separators such as `1,234`). cargo-valgrind's serde-based parser rejects all of these
//! (its issues #64, #132, #134, #136). This reader therefore:
//!
//! - streams events from quick-xml and tracks the element path itself, so an unknown element is
//!   skipped (and noted once in [`Log::notes`]) instead of failing the document;
//! - keeps every `<kind>` string verbatim, known or not;
//! - accepts `<status>` blocks anywhere, and the second copy of every generated suppression that
//!   `--gen-suppressions=all` writes at top level after the error;
//! - parses numbers after removing `,` `_` and spaces;
//! - never fails on content: a document that ends early is [`Completeness::Truncated`], bytes that
//!   are not XML (or follow `</valgrindoutput>`) make it [`Completeness::Junk`], and in both cases the
//!   errors read so far are returned. Only an I/O error opening or reading the file is an `Err`.
//!
//! The fuzz test `fuzz_xml_parser` (tests/report_fuzz.rs) feeds random and mutated documents through
//! [`parse_reader`] to hold the "never panics" promise.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use quick_xml::events::Event;
use quick_xml::Reader;

use super::model::{Aux, Completeness, FatalSignal, Frame, GeneratedSupp, Log, SuppFrame, VgError};

/// Why a log could not be read at all (content problems are never errors: see the module docs).
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    /// The file could not be opened or read.
    #[error("cannot read valgrind log {path}: {source}")]
    Io {
        /// The log's path.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Reads one valgrind XML log from a file. See [`parse_reader`] for what is tolerated.
pub fn parse_file(path: impl AsRef<Path>) -> Result<Log, XmlError> {
    let path = path.as_ref();
    let io_err = |source| XmlError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    parse_reader(BufReader::new(file)).map_err(io_err)
}

/// Reads one valgrind XML log from a buffered reader.
///
/// Content problems (truncation, junk, unknown elements, malformed numbers) never produce an
/// `Err`: they are recorded in [`Log::completeness`] and [`Log::notes`]. Only I/O errors do.
pub fn parse_reader<R: BufRead>(reader: R) -> io::Result<Log> {
    let mut lines = LineCounter::new(reader);
    let log = {
        let mut reader = Reader::from_reader(&mut lines);
        let config = reader.config_mut();
        config.check_end_names = false;
        config.allow_unmatched_ends = true;
        config.expand_empty_elements = true;
        config.trim_text(false);
        let mut parser = Parser::default();
        parser.run(&mut reader)?;
        parser
    };
    Ok(log.finish(&lines))
}

/// Reads a log held in memory (convenience for tests and the fuzz target).
pub fn parse_bytes(bytes: &[u8]) -> Log {
    // Reading from a slice cannot fail with an I/O error.
    parse_reader(bytes).unwrap_or_default()
}

/// Parses a number the way valgrind may print it: `1234`, `1,234`, ` 1 234 `, `0x1F` (hex).
pub fn parse_number(text: &str) -> Option<u64> {
    let cleaned: String = text
        .chars()
        .filter(|c| !matches!(c, ',' | '_' | ' ' | '\t' | '\n' | '\r'))
        .collect();
    if let Some(hex) = cleaned
        .strip_prefix("0x")
        .or_else(|| cleaned.strip_prefix("0X"))
    {
        return u64::from_str_radix(hex, 16).ok();
    }
    cleaned.parse().ok()
}

fn parse_u32(text: &str) -> Option<u32> {
    parse_number(text).and_then(|n| u32::try_from(n).ok())
}

fn parse_i32(text: &str) -> Option<i32> {
    let t = text.trim();
    if let Some(neg) = t.strip_prefix('-') {
        return parse_number(neg)
            .and_then(|n| i32::try_from(n).ok())
            .map(|n| -n);
    }
    parse_number(t).and_then(|n| i32::try_from(n).ok())
}

/// A `BufRead` adapter that remembers where lines start, so notes can say "line N".
struct LineCounter<R> {
    inner: R,
    offset: u64,
    newlines: Vec<u64>,
}

impl<R: BufRead> LineCounter<R> {
    fn new(inner: R) -> Self {
        LineCounter {
            inner,
            offset: 0,
            newlines: Vec::new(),
        }
    }

    /// 1-based line of a byte offset.
    fn line_of(&self, offset: u64) -> usize {
        self.newlines.partition_point(|&nl| nl < offset) + 1
    }
}

impl<R: BufRead> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for LineCounter<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        // `fill_buf` after a partial consume returns the same bytes without reading again.
        if let Ok(buf) = self.inner.fill_buf() {
            let amt_seen = amt.min(buf.len());
            for (i, b) in buf[..amt_seen].iter().enumerate() {
                if *b == b'\n' {
                    self.newlines.push(self.offset + i as u64);
                }
            }
        }
        self.offset += amt as u64;
        self.inner.consume(amt);
    }
}

/// Where the `<stack>` currently being read belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StackTarget {
    ErrorMain,
    ErrorAux,
    Fatal,
    Ignored,
}

/// Elements valgrind writes that this reader deliberately ignores (no note is made for them).
const KNOWN_IGNORED: &[&str] = &[
    "preamble",
    "line",
    "tool",
    "args",
    "vargv",
    "argv",
    "exe",
    "arg",
    "status",
    "state",
    "time",
    "usercomment",
    "clientmsg",
    "text",
    "hthreadid",
    "errorcounts",
    "suppcounts",
    "pair",
    "count",
    "name",
    "unique",
    "origin",
    "what",
    "xwhat",
    "auxwhat",
    "xauxwhat",
    "leakedbytes",
    "leakedblocks",
    "stack",
    "frame",
    "suppression",
    "sname",
    "skind",
    "skaux",
    "sframe",
    "fun",
    "obj",
    "rawtext",
    "threadname",
    "tid",
    "kind",
    "ip",
    "fn",
    "dir",
    "file",
    "fatal_signal",
    "signo",
    "signame",
    "sicode",
    "event",
    "siaddr",
    "protocolversion",
    "protocoltool",
    "pid",
    "ppid",
    "valgrindoutput",
    "error",
    "logfilequalifier",
    "var",
    "value",
    "announcethread",
    "isrootthread",
    "threadid",
];

#[derive(Default)]
struct Parser {
    log: Log,
    path: Vec<String>,
    text: String,
    error: Option<VgError>,
    frame: Option<Frame>,
    stack: Vec<Frame>,
    stack_target: Option<StackTarget>,
    supp: Option<GeneratedSupp>,
    fatal: Option<FatalSignal>,
    pair: (Option<String>, Option<String>, Option<u64>),
    aux_text: Option<String>,
    seen_root: bool,
    closed_root: bool,
    truncated: bool,
    junk: bool,
    /// (byte offset, message) notes; converted to "line N: message" at the end.
    notes: Vec<(u64, String)>,
    unknown_seen: Vec<String>,
}

impl Parser {
    fn run<R: BufRead>(&mut self, reader: &mut Reader<R>) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut last_error_pos = None;
        loop {
            buf.clear();
            let pos = reader.buffer_position();
            match reader.read_event_into(&mut buf) {
                Ok(Event::Eof) => break,
                Ok(Event::Start(e)) => {
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    self.start(&name, pos);
                }
                Ok(Event::End(e)) => {
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    self.end(&name, pos);
                }
                Ok(Event::Empty(_)) => {}
                Ok(Event::Text(t)) => self.text_bytes(&t.into_inner(), pos),
                Ok(Event::CData(t)) => {
                    let s = String::from_utf8_lossy(&t.into_inner()).into_owned();
                    self.text.push_str(&s);
                }
                Ok(Event::GeneralRef(r)) => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        _ => {
                            let name = String::from_utf8_lossy(&r.into_inner()).into_owned();
                            match name.as_str() {
                                "lt" => "<".into(),
                                "gt" => ">".into(),
                                "amp" => "&".into(),
                                "apos" => "'".into(),
                                "quot" => "\"".into(),
                                other => format!("&{other};"),
                            }
                        }
                    };
                    self.text_str(&resolved, pos);
                }
                Ok(Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_)) => {}
                Err(quick_xml::Error::Io(e)) => {
                    return Err(io::Error::new(e.kind(), e.to_string()))
                }
                Err(e) => {
                    let at = reader.error_position();
                    let eof = matches!(e, quick_xml::Error::Syntax(_));
                    if eof && !self.closed_root {
                        // Syntax errors in quick-xml are unclosed constructs at the end of input.
                        self.truncated = true;
                        self.note(at, format!("log ends inside markup ({e})"));
                    } else {
                        self.junk = true;
                        self.note(at, format!("not valid XML ({e})"));
                    }
                    if eof || last_error_pos == Some(at) {
                        break;
                    }
                    last_error_pos = Some(at);
                }
            }
        }
        Ok(())
    }

    fn note(&mut self, offset: u64, msg: String) {
        if self.notes.len() < 50 {
            self.notes.push((offset, msg));
        }
    }

    fn text_bytes(&mut self, bytes: &[u8], pos: u64) {
        let s = String::from_utf8_lossy(bytes).into_owned();
        self.text_str(&s, pos);
    }

    fn text_str(&mut self, s: &str, pos: u64) {
        if self.path.is_empty() || self.closed_root {
            if !s.trim().is_empty() {
                if !self.junk {
                    let what = if self.closed_root {
                        "after </valgrindoutput>"
                    } else {
                        "outside the document"
                    };
                    self.note(pos, format!("junk text {what}"));
                }
                self.junk = true;
            }
            return;
        }
        if self.path.len() == 1 && !s.trim().is_empty() {
            // Text directly inside <valgrindoutput>: valgrind's own text output or a client's.
            if !self.junk {
                self.note(
                    pos,
                    "text between elements (valgrind or the program wrote into the log)".into(),
                );
            }
            self.junk = true;
            return;
        }
        self.text.push_str(s);
    }

    fn parent(&self) -> Option<&str> {
        self.path
            .len()
            .checked_sub(2)
            .map(|i| self.path[i].as_str())
    }

    fn in_path(&self, name: &str) -> bool {
        self.path.iter().any(|p| p == name)
    }

    fn start(&mut self, name: &str, pos: u64) {
        self.text.clear();
        if self.closed_root {
            if !self.junk {
                self.note(
                    pos,
                    format!("junk element <{name}> after </valgrindoutput>"),
                );
            }
            self.junk = true;
        }
        if self.path.is_empty() && !self.closed_root {
            if name == "valgrindoutput" {
                self.seen_root = true;
            } else if !self.junk {
                self.junk = true;
                self.note(pos, format!("unexpected root element <{name}>"));
            }
        }
        self.path.push(name.to_string());
        let parent = self.parent().map(str::to_string);
        match name {
            "error" if parent.as_deref() == Some("valgrindoutput") => {
                self.error = Some(VgError::default());
            }
            "fatal_signal" => self.fatal = Some(FatalSignal::default()),
            "suppression" => self.supp = Some(GeneratedSupp::default()),
            "errorcounts" => self.log.error_counts.clear(),
            "suppcounts" => self.log.supp_counts.clear(),
            "pair" => self.pair = (None, None, None),
            "stack" => {
                self.stack.clear();
                let target = if self.fatal.is_some() && self.in_path("fatal_signal") {
                    StackTarget::Fatal
                } else if let Some(err) = self.error.as_ref().filter(|_| self.in_path("error")) {
                    if parent.as_deref() == Some("origin")
                        || !err.aux.is_empty()
                        || !err.stack.is_empty()
                    {
                        StackTarget::ErrorAux
                    } else {
                        StackTarget::ErrorMain
                    }
                } else {
                    StackTarget::Ignored
                };
                self.stack_target = Some(target);
            }
            "frame" if self.stack_target.is_some() => self.frame = Some(Frame::default()),
            _ => {}
        }
        if !KNOWN_IGNORED.contains(&name) && !self.unknown_seen.iter().any(|n| n == name) {
            self.unknown_seen.push(name.to_string());
            self.note(pos, format!("unknown element <{name}> skipped"));
        }
    }

    fn end(&mut self, name: &str, pos: u64) {
        // Tolerate mismatched end tags: pop up to the matching open element if there is one.
        let Some(idx) = self.path.iter().rposition(|p| p == name) else {
            if !self.junk {
                self.note(pos, format!("unmatched </{name}>"));
            }
            self.junk = true;
            return;
        };
        while self.path.len() > idx + 1 {
            let inner = self.path.last().cloned().unwrap_or_default();
            self.close(&inner);
            self.path.pop();
        }
        self.close(name);
        self.path.pop();
        self.text.clear();
    }

    /// Handles the end of element `name`; `self.path` still ends with it.
    fn close(&mut self, name: &str) {
        let text = std::mem::take(&mut self.text);
        let t = text.trim();
        let parent = self.parent().unwrap_or("").to_string();
        let in_error = self.error.is_some() && self.in_path("error");
        let in_supp = self.supp.is_some() && self.in_path("suppression");
        let in_fatal = self.fatal.is_some() && self.in_path("fatal_signal");

        // Frames first: their children's names (fn, obj, file, line…) recur elsewhere.
        if parent == "frame" {
            if let Some(f) = self.frame.as_mut() {
                let v = Some(text.trim().to_string());
                match name {
                    "ip" => f.ip = v,
                    "obj" => f.obj = v,
                    "fn" => f.func = v,
                    "dir" => f.dir = v,
                    "file" => f.file = v,
                    "line" => f.line = parse_u32(t),
                    _ => {}
                }
            }
            return;
        }
        if parent == "sframe" {
            if let Some(s) = self.supp.as_mut() {
                match name {
                    "fun" => s.frames.push(SuppFrame::Fun(t.to_string())),
                    "obj" => s.frames.push(SuppFrame::Obj(t.to_string())),
                    _ => {}
                }
            }
            return;
        }
        if parent == "pair" {
            match name {
                "unique" => self.pair.0 = Some(t.to_string()),
                "name" => self.pair.1 = Some(t.to_string()),
                "count" => self.pair.2 = parse_number(t),
                _ => {}
            }
            return;
        }

        match name {
            "frame" => {
                if let Some(f) = self.frame.take() {
                    self.stack.push(f);
                }
            }
            "stack" => {
                let stack = std::mem::take(&mut self.stack);
                match self.stack_target.take() {
                    Some(StackTarget::ErrorMain) => {
                        if let Some(e) = self.error.as_mut() {
                            e.stack = stack;
                        }
                    }
                    Some(StackTarget::ErrorAux) => {
                        if let Some(e) = self.error.as_mut() {
                            match e.aux.last_mut() {
                                Some(a) if a.stack.is_empty() => a.stack = stack,
                                _ => e.aux.push(Aux {
                                    what: String::new(),
                                    stack,
                                }),
                            }
                        }
                    }
                    Some(StackTarget::Fatal) => {
                        if let Some(f) = self.fatal.as_mut() {
                            f.stack = stack;
                        }
                    }
                    _ => {}
                }
            }
            "pair" => {
                let (unique, sname, count) = std::mem::take(&mut self.pair);
                let count = count.unwrap_or(0);
                if parent == "errorcounts" {
                    if let Some(u) = unique {
                        self.log.error_counts.push((u, count));
                    }
                } else if parent == "suppcounts" {
                    if let Some(n) = sname {
                        self.log.supp_counts.push((n, count));
                    }
                }
            }
            "protocolversion" if parent == "valgrindoutput" => {
                self.log.protocol_version = parse_u32(t)
            }
            "protocoltool" if parent == "valgrindoutput" => self.log.tool = Some(t.to_string()),
            "pid" if parent == "valgrindoutput" => self.log.pid = parse_u32(t),
            "ppid" if parent == "valgrindoutput" => self.log.ppid = parse_u32(t),
            "exe" | "arg" if parent == "argv" => self.log.argv.push(t.to_string()),
            "state" if parent == "status" && t == "FINISHED" => self.log.finished = true,
            // Suppression parts (inside an error or at top level).
            "sname" if in_supp => set(&mut self.supp, |s| s.name = t.to_string()),
            "skind" if in_supp => set(&mut self.supp, |s| s.kind = t.to_string()),
            "skaux" if in_supp => set(&mut self.supp, |s| s.aux = Some(t.to_string())),
            "rawtext" if in_supp => set(&mut self.supp, |s| {
                s.raw = text.trim_matches('\n').to_string()
            }),
            "suppression" => {
                if let Some(s) = self.supp.take() {
                    if in_error {
                        set(&mut self.error, |e| e.suppression = Some(s));
                    } else if let Some(last) = self.log.errors.last_mut() {
                        // The top-level copy --gen-suppressions=all writes after each error.
                        if last.suppression.is_none() {
                            last.suppression = Some(s);
                        }
                    }
                }
            }
            // Fatal signal.
            "tid" if in_fatal && parent == "fatal_signal" => {
                set(&mut self.fatal, |f| f.tid = parse_u32(t))
            }
            "signo" if in_fatal => set(&mut self.fatal, |f| f.signo = parse_i32(t)),
            "signame" if in_fatal => set(&mut self.fatal, |f| f.signame = Some(t.to_string())),
            "sicode" if in_fatal => set(&mut self.fatal, |f| f.sicode = parse_i32(t)),
            "event" if in_fatal => set(&mut self.fatal, |f| f.event = Some(t.to_string())),
            "siaddr" if in_fatal => set(&mut self.fatal, |f| f.siaddr = Some(t.to_string())),
            "fatal_signal" => self.log.fatal_signal = self.fatal.take(),
            // Error parts.
            "unique" if in_error && parent == "error" => {
                set(&mut self.error, |e| e.unique = t.to_string())
            }
            "tid" if in_error && parent == "error" => {
                set(&mut self.error, |e| e.tid = parse_u32(t))
            }
            "threadname" if in_error => {
                set(&mut self.error, |e| e.thread_name = Some(t.to_string()))
            }
            "kind" if in_error && parent == "error" => {
                set(&mut self.error, |e| e.kind = t.to_string())
            }
            "what" if in_error && parent == "error" => {
                set(&mut self.error, |e| e.what = t.to_string())
            }
            "text" if in_error && parent == "xwhat" => {
                set(&mut self.error, |e| e.what = t.to_string())
            }
            "leakedbytes" if in_error => set(&mut self.error, |e| e.leaked_bytes = parse_number(t)),
            "leakedblocks" if in_error => {
                set(&mut self.error, |e| e.leaked_blocks = parse_number(t))
            }
            "auxwhat" if in_error && parent == "error" => set(&mut self.error, |e| {
                e.aux.push(Aux {
                    what: t.to_string(),
                    stack: Vec::new(),
                })
            }),
            "text" if in_error && parent == "xauxwhat" => self.aux_text = Some(t.to_string()),
            "xauxwhat" if in_error => {
                let what = self.aux_text.take().unwrap_or_default();
                set(&mut self.error, |e| {
                    e.aux.push(Aux {
                        what,
                        stack: Vec::new(),
                    })
                });
            }
            "what" if in_error && parent == "origin" => set(&mut self.error, |e| {
                e.aux.push(Aux {
                    what: t.to_string(),
                    stack: Vec::new(),
                })
            }),
            "error" if parent == "valgrindoutput" => {
                if let Some(e) = self.error.take() {
                    self.log.errors.push(e);
                }
            }
            "valgrindoutput" if self.path.len() == 1 => self.closed_root = true,
            _ => {}
        }
    }

    fn finish<R: BufRead>(mut self, lines: &LineCounter<R>) -> Log {
        let end = lines.offset;
        if !self.closed_root {
            self.truncated = true;
            if self.seen_root {
                let open = self.path.last().cloned().unwrap_or_default();
                let msg = if open.is_empty() {
                    "log ends before </valgrindoutput>".to_string()
                } else {
                    format!("log ends inside <{open}> before </valgrindoutput>")
                };
                self.notes.push((end, msg));
            } else {
                self.notes
                    .push((end, "no <valgrindoutput> document found".to_string()));
            }
            // Keep a half-read error if we know at least what kind it was.
            if let Some(f) = self
                .frame
                .take()
                .filter(|f| f.ip.is_some() || f.obj.is_some())
            {
                self.stack.push(f);
            }
            if let Some(mut e) = self.error.take().filter(|e| !e.kind.is_empty()) {
                if e.stack.is_empty() && !self.stack.is_empty() {
                    e.stack = std::mem::take(&mut self.stack);
                }
                self.log.errors.push(e);
            }
            if let Some(mut f) = self.fatal.take() {
                if f.stack.is_empty() {
                    f.stack = std::mem::take(&mut self.stack);
                }
                self.log.fatal_signal = Some(f);
            }
        }
        self.log.completeness = if self.truncated {
            Completeness::Truncated
        } else if self.junk {
            Completeness::Junk
        } else {
            Completeness::Complete
        };
        self.log.notes = self
            .notes
            .iter()
            .map(|(off, msg)| format!("line {}: {msg}", lines.line_of(*off)))
            .collect();
        self.log
    }
}

fn set<T>(slot: &mut Option<T>, f: impl FnOnce(&mut T)) {
    if let Some(v) = slot.as_mut() {
        f(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_with_separators() {
        assert_eq!(parse_number("1,234"), Some(1234));
        assert_eq!(parse_number(" 12 345 "), Some(12345));
        assert_eq!(parse_number("0x1F"), Some(31));
        assert_eq!(parse_number("abc"), None);
        assert_eq!(parse_i32("-3"), Some(-3));
    }

    #[test]
    fn empty_input_is_truncated_not_an_error() {
        let log = parse_bytes(b"");
        assert_eq!(log.completeness, Completeness::Truncated);
        assert!(log.errors.is_empty());
    }
}
