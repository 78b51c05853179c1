//! A streaming reader for memcheck's XML output (protocols 4, 5 and 6) that reads what it can and
//! says exactly how far the log can be trusted.
//!
//! Valgrind's XML is written by a program that may be in the middle of dying: a crash or a kill
//! leaves the document truncated, a misbehaving client can write junk into the same file, and
//! newer valgrinds add elements (protocol 5's descriptor errors, protocol 6's summaries whose
//! numbers carry thousands separators such as `1,234`). cargo-valgrind's serde-based parser rejects
//! all of these (its issues #64, #132, #134, #136). This reader therefore never fails on content:
//! it streams events from quick-xml, tracks the element path itself, keeps every `<kind>` verbatim,
//! and returns the errors read so far whatever happens. Only an I/O error is an `Err`.
//!
//! Reading everything is half the job; the other half is never calling a log complete that is not
//! (issue 10: a log with one `</status>` removed used to pass with its errors unread). The
//! [`Log::completeness`] a log gets:
//!
//! | state | when |
//! |---|---|
//! | `complete` | well-formed from `<valgrindoutput>` to `</valgrindoutput>`; every element the reader relies on is inside the element the protocol puts it in, and closed there; `<status>` reached `FINISHED`; the totals valgrind wrote agree with the errors read ([`super::logcheck`]) |
//! | `truncated` | the document ends early (valgrind crashed or was killed) |
//! | `junk` | bytes that are not XML text: outside or after the document, text between valgrind's elements, invalid UTF-8, control characters, quick-xml syntax errors |
//! | `damaged` | XML with a wrong structure (an element left open or closed twice, a known element in the wrong place, attributes, undefined entities) or wrong content (an error without a kind, no `FINISHED`, totals that contradict the errors) |
//!
//! Every state but `complete` makes the run exit 3; the errors read are still reported and fail as
//! usual. Unknown elements in a valid place (a future protocol's additions) are skipped with a note
//! and do not damage the log. Each problem becomes a "line N: …" note in [`Log::notes`].
//!
//! `tests/xml_mutations.rs` mutates real logs (byte flips, truncation at every element boundary,
//! dropped and duplicated end tags, stray tags) and checks that no mutant passes unless it is still
//! a valid log with the same errors; `tests/report_fuzz.rs` holds the "never panics" promise.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::logcheck::{self, LeakCheck};
use super::model::{
    Aux, Completeness, ErrorSummary, FatalSignal, Frame, GeneratedSupp, HeapSummary, LeakSummary,
    Log, SuppFrame, Totals, VgError,
};

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
/// Content problems (truncation, junk, damage, unknown elements) never produce an `Err`: they are
/// recorded in [`Log::completeness`] and [`Log::notes`]. Only I/O errors do.
pub fn parse_reader<R: BufRead>(reader: R) -> io::Result<Log> {
    let mut lines = LineCounter::new(reader);
    let parser = {
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
    Ok(parser.finish(&lines))
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
            let seen = &buf[..amt.min(buf.len())];
            // An index loop: the iterator chain is several times slower in debug builds, where
            // the mutation test parses thousands of logs.
            #[expect(clippy::needless_range_loop, reason = "speed in debug builds")]
            for i in 0..seen.len() {
                if seen[i] == b'\n' {
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

/// Elements valgrind writes (protocols 4–6, memcheck, helgrind and DRD) that need no note when
/// seen. Anything else is an unknown element: skipped, noted once. (A `match`, not a list: the
/// mutation test parses thousands of logs in a debug build.)
fn is_known(name: &str) -> bool {
    matches!(
        name,
        "preamble"
            | "line"
            | "tool"
            | "args"
            | "vargv"
            | "argv"
            | "exe"
            | "arg"
            | "status"
            | "state"
            | "time"
            | "usercomment"
            | "clientmsg"
            | "text"
            | "hthreadid"
            | "errorcounts"
            | "suppcounts"
            | "pair"
            | "count"
            | "name"
            | "unique"
            | "origin"
            | "what"
            | "xwhat"
            | "auxwhat"
            | "xauxwhat"
            | "leakedbytes"
            | "leakedblocks"
            | "stack"
            | "frame"
            | "suppression"
            | "sname"
            | "skind"
            | "skaux"
            | "sframe"
            | "fun"
            | "obj"
            | "rawtext"
            | "threadname"
            | "tid"
            | "kind"
            | "ip"
            | "fn"
            | "dir"
            | "file"
            | "fatal_signal"
            | "signo"
            | "signame"
            | "sicode"
            | "event"
            | "siaddr"
            | "protocolversion"
            | "protocoltool"
            | "pid"
            | "ppid"
            | "valgrindoutput"
            | "error"
            | "logfilequalifier"
            | "var"
            | "value"
            | "announcethread"
            | "isrootthread"
            | "threadid"
            | "fd"
            | "path"
            | "heap_summary"
            | "memory_in_use_at_exit"
            | "total_heap_usage"
            | "allocs"
            | "frees"
            | "bytes_allocated"
            | "bytes"
            | "blocks"
            | "in_blocks"
            | "all_heap_blocks_freed"
            | "leak_summary"
            | "definitely_lost"
            | "indirectly_lost"
            | "possibly_lost"
            | "still_reachable"
            | "reachable_heuristic"
            | "suppressed"
            | "error_summary"
            | "errors"
            | "error_contexts"
            | "suppressed_contexts"
    )
}

/// The elements a known element may sit in, for the elements whose place the reader relies on
/// (from valgrind's `docs/internals/xml-output-protocol{4,5,6}.txt` and the code that writes
/// them). `None`: not checked (tool-specific nesting, e.g. DRD's stacks inside `<other_segment_start>`).
fn expected_parents(name: &str) -> Option<&'static [&'static str]> {
    const TOP: &[&str] = &["valgrindoutput"];
    Some(match name {
        "protocolversion"
        | "protocoltool"
        | "preamble"
        | "pid"
        | "ppid"
        | "tool"
        | "args"
        | "status"
        | "error"
        | "errorcounts"
        | "suppcounts"
        | "fatal_signal"
        | "heap_summary"
        | "leak_summary"
        | "error_summary"
        | "all_heap_blocks_freed"
        | "logfilequalifier"
        | "usercomment"
        | "clientmsg"
        | "announcethread" => TOP,
        "state" | "time" => &["status"],
        "vargv" | "argv" => &["args"],
        "exe" | "arg" => &["vargv", "argv"],
        "unique" => &["error", "pair"],
        "kind" => &["error", "reachable_heuristic"],
        "what" => &["error", "origin"],
        "xwhat" | "auxwhat" | "xauxwhat" | "origin" | "fd" | "path" => &["error"],
        "threadname" => &["error", "fatal_signal"],
        "tid" => &["error", "fatal_signal", "clientmsg"],
        "leakedbytes" | "leakedblocks" => &["xwhat"],
        "text" => &["xwhat", "xauxwhat", "clientmsg"],
        "frame" => &["stack"],
        "ip" | "fn" => &["frame"],
        "obj" => &["frame", "sframe"],
        "dir" | "file" => &["frame", "xauxwhat"],
        "line" => &["frame", "xauxwhat", "preamble"],
        "suppression" => &["error", "valgrindoutput"],
        "sname" | "skind" | "skaux" | "sframe" | "rawtext" => &["suppression"],
        "fun" => &["sframe"],
        "pair" => &["errorcounts", "suppcounts"],
        "count" | "name" => &["pair"],
        "signo" | "signame" | "sicode" | "event" | "siaddr" => &["fatal_signal"],
        "memory_in_use_at_exit" | "total_heap_usage" => &["heap_summary"],
        "allocs" | "frees" | "bytes_allocated" => &["total_heap_usage"],
        "definitely_lost" | "indirectly_lost" | "possibly_lost" | "still_reachable" => {
            &["leak_summary"]
        }
        "suppressed" => &["leak_summary", "error_summary"],
        "reachable_heuristic" => &["still_reachable"],
        "bytes" | "blocks" | "in_blocks" => &[
            "memory_in_use_at_exit",
            "definitely_lost",
            "indirectly_lost",
            "possibly_lost",
            "still_reachable",
            "suppressed",
            "reachable_heuristic",
        ],
        "errors" | "error_contexts" | "suppressed_contexts" => &["error_summary"],
        _ => return None,
    })
}

/// Elements valgrind fills with elements only: text in them is damage.
fn element_only(name: &str) -> bool {
    matches!(
        name,
        "error"
            | "stack"
            | "frame"
            | "args"
            | "vargv"
            | "argv"
            | "status"
            | "errorcounts"
            | "suppcounts"
            | "pair"
            | "suppression"
            | "sframe"
            | "fatal_signal"
            | "xwhat"
            | "xauxwhat"
            | "origin"
            | "preamble"
            | "heap_summary"
            | "memory_in_use_at_exit"
            | "total_heap_usage"
            | "leak_summary"
            | "definitely_lost"
            | "indirectly_lost"
            | "possibly_lost"
            | "still_reachable"
            | "error_summary"
    )
}

/// What the reader found wrong, by severity (the worst wins at the end).
#[derive(Debug, Default, Clone, Copy)]
struct Problems {
    truncated: bool,
    junk: bool,
    damaged: bool,
}

/// The pieces of a protocol 6 summary being read.
#[derive(Default)]
struct Summaries {
    heap: Option<HeapSummary>,
    leak: Option<LeakSummary>,
    errors: Option<ErrorSummary>,
}

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
    summaries: Summaries,
    seen_root: bool,
    closed_root: bool,
    problems: Problems,
    /// Byte offset of each error's `<error>`, parallel to `log.errors`.
    error_pos: Vec<u64>,
    /// Where `<errorcounts>` was seen, if it was.
    errorcounts_pos: Option<u64>,
    /// Where `<error_summary>` was seen, if it was.
    error_summary_pos: Option<u64>,
    /// One entry per `<leak_summary>`: the leak errors it totals.
    leak_checks: Vec<LeakCheck>,
    /// First error not yet covered by a leak summary.
    leak_check_start: usize,
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
                    let name = self.element_name(e.name().as_ref(), pos);
                    self.check_attributes(&e, &name, pos);
                    self.start(&name, pos);
                }
                Ok(Event::End(e)) => {
                    let name = self.element_name(e.name().as_ref(), pos);
                    self.end(&name, pos);
                }
                Ok(Event::Empty(_)) => {}
                Ok(Event::Text(t)) => self.text_bytes(&t.into_inner(), pos),
                Ok(Event::CData(t)) => self.text_bytes(&t.into_inner(), pos),
                Ok(Event::GeneralRef(r)) => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => Some(c.to_string()),
                        Ok(None) => match r.as_ref() {
                            b"lt" => Some("<".into()),
                            b"gt" => Some(">".into()),
                            b"amp" => Some("&".into()),
                            b"apos" => Some("'".into()),
                            b"quot" => Some("\"".into()),
                            _ => None,
                        },
                        Err(_) => None,
                    };
                    match resolved {
                        Some(s) => self.text_str(&s, pos),
                        None => {
                            let raw = String::from_utf8_lossy(r.as_ref()).into_owned();
                            self.damage(pos, format!("undefined entity or character `&{raw};`"));
                            self.text_str(&format!("&{raw};"), pos);
                        }
                    }
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
                        self.problems.truncated = true;
                        self.note(at, format!("log ends inside markup ({e})"));
                    } else {
                        self.junk(at, format!("not valid XML ({e})"));
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

    /// Records damage (see [`Completeness::Damaged`]); the first few problems get a note each.
    fn damage(&mut self, offset: u64, msg: String) {
        self.problems.damaged = true;
        self.note(offset, msg);
    }

    /// Records junk (see [`Completeness::Junk`]); only the first junk gets a note.
    fn junk(&mut self, offset: u64, msg: String) {
        if !self.problems.junk {
            self.note(offset, msg);
        }
        self.problems.junk = true;
    }

    /// An element name as text; a name that is not a valid XML name is damage.
    fn element_name(&mut self, raw: &[u8], pos: u64) -> String {
        let name = String::from_utf8_lossy(raw).into_owned();
        let ascii_name = |i: usize, b: u8| {
            b.is_ascii_alphabetic()
                || b == b'_'
                || b == b':'
                || (i > 0 && b"-.0123456789".contains(&b))
        };
        let valid = !raw.is_empty()
            && ((0..raw.len()).all(|i| ascii_name(i, raw[i]))
                || (name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_')
                    && name
                        .chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'))));
        if !valid {
            self.damage(
                pos,
                format!("`{}` is not an element name", name.escape_debug()),
            );
        }
        name
    }

    /// Valgrind writes no attributes on its elements: one is damage (a byte that ate a `>` looks
    /// like one). Unknown elements may have some (a future protocol's business).
    fn check_attributes(&mut self, e: &BytesStart<'_>, name: &str, pos: u64) {
        if is_known(name) && !e.attributes_raw().iter().all(u8::is_ascii_whitespace) {
            self.damage(
                pos,
                format!("attributes on <{name}> (valgrind writes none)"),
            );
        }
    }

    fn text_bytes(&mut self, bytes: &[u8], pos: u64) {
        match std::str::from_utf8(bytes) {
            Ok(s) => self.text_str(s, pos),
            Err(_) => {
                self.junk(pos, "bytes that are not UTF-8 text".into());
                let s = String::from_utf8_lossy(bytes).into_owned();
                self.text_str(&s, pos);
            }
        }
    }

    fn text_str(&mut self, s: &str, pos: u64) {
        let (blank, control) = scan_text(s);
        if control {
            self.junk(pos, "control characters (not allowed in XML text)".into());
        }
        if blank {
            // Indentation between elements, or whitespace kept in a leaf's text.
            if !self.path.is_empty() && !self.closed_root {
                self.text.push_str(s);
            }
            return;
        }
        if self.path.is_empty() || self.closed_root {
            let what = if self.closed_root {
                "after </valgrindoutput>"
            } else {
                "outside the document"
            };
            self.junk(pos, format!("junk text {what}"));
            return;
        }
        if self.path.len() == 1 {
            // Text directly inside <valgrindoutput>: valgrind's own text output or a client's.
            self.junk(
                pos,
                "text between elements (valgrind or the program wrote into the log)".into(),
            );
            return;
        }
        let inside = self.path.last().map(String::as_str).unwrap_or("");
        if element_only(inside) {
            self.damage(
                pos,
                format!("text inside <{inside}>, where valgrind writes only elements"),
            );
        }
        self.text.push_str(s);
    }

    fn parent(&self) -> Option<&str> {
        self.path
            .len()
            .checked_sub(2)
            .map(|i| self.path[i].as_str())
    }

    /// How many `<error>` elements are open.
    fn error_depth(&self) -> usize {
        self.path.iter().filter(|p| *p == "error").count()
    }

    fn in_path(&self, name: &str) -> bool {
        self.path.iter().any(|p| p == name)
    }

    fn start(&mut self, name: &str, pos: u64) {
        self.text.clear();
        self.check_root(name, pos);
        self.path.push(name.to_string());
        let parent = self.parent().unwrap_or("").to_string();
        self.check_place(name, &parent, pos);
        match name {
            // Read an error wherever it is (a misplaced one damages the log, see check_place,
            // but its failures still count); an <error> inside an error is not one.
            "error" if self.error_depth() == 1 => {
                self.error = Some(VgError::default());
                self.error_pos.push(pos);
            }
            "fatal_signal" => self.fatal = Some(FatalSignal::default()),
            "suppression" => self.supp = Some(GeneratedSupp::default()),
            "errorcounts" => {
                self.log.error_counts.clear();
                self.errorcounts_pos = Some(pos);
            }
            "suppcounts" => self.log.supp_counts.clear(),
            "pair" => self.pair = (None, None, None),
            "heap_summary" => self.summaries.heap = Some(HeapSummary::default()),
            "leak_summary" => self.summaries.leak = Some(LeakSummary::default()),
            "error_summary" => {
                self.summaries.errors = Some(ErrorSummary::default());
                self.error_summary_pos = Some(pos);
            }
            "stack" => self.start_stack(&parent),
            "frame" if self.stack_target.is_some() => self.frame = Some(Frame::default()),
            _ => {}
        }
        if !is_known(name) && !self.unknown_seen.iter().any(|n| n == name) {
            self.unknown_seen.push(name.to_string());
            self.note(pos, format!("unknown element <{name}> skipped"));
        }
    }

    /// One `<valgrindoutput>` root, nothing after it.
    fn check_root(&mut self, name: &str, pos: u64) {
        if self.closed_root {
            self.junk(
                pos,
                format!("junk element <{name}> after </valgrindoutput>"),
            );
        } else if self.path.is_empty() {
            if name == "valgrindoutput" {
                self.seen_root = true;
            } else {
                self.junk(pos, format!("unexpected root element <{name}>"));
            }
        }
    }

    /// A known element must be inside the element the protocol puts it in.
    fn check_place(&mut self, name: &str, parent: &str, pos: u64) {
        if self.closed_root || (self.path.len() == 1 && name != "valgrindoutput") {
            return; // already junk (see check_root)
        }
        let misplaced = match expected_parents(name) {
            Some(parents) => !parents.contains(&parent),
            None if name == "valgrindoutput" => !parent.is_empty(),
            None if name == "stack" => parent == "valgrindoutput",
            None => false,
        };
        if misplaced {
            let where_ = if parent.is_empty() {
                "at top level".to_string()
            } else {
                format!("inside <{parent}>")
            };
            let expected = expected_parents(name)
                .map(|p| format!(" (valgrind writes it inside <{}>)", p.join(">, <")))
                .unwrap_or_default();
            self.damage(pos, format!("<{name}> {where_}{expected}"));
        }
    }

    fn start_stack(&mut self, parent: &str) {
        self.stack.clear();
        let target = if self.fatal.is_some() && self.in_path("fatal_signal") {
            StackTarget::Fatal
        } else if let Some(err) = self.error.as_ref().filter(|_| self.in_path("error")) {
            if parent == "origin" || !err.aux.is_empty() || !err.stack.is_empty() {
                StackTarget::ErrorAux
            } else {
                StackTarget::ErrorMain
            }
        } else {
            StackTarget::Ignored
        };
        self.stack_target = Some(target);
    }

    fn end(&mut self, name: &str, pos: u64) {
        // Tolerate mismatched end tags for reading, but they damage the log: pop up to the
        // matching open element if there is one.
        let Some(idx) = self.path.iter().rposition(|p| p == name) else {
            self.damage(pos, format!("</{name}> closes no open element"));
            return;
        };
        if idx + 1 < self.path.len() {
            let unclosed = self.path[idx + 1..].join(">, <");
            self.damage(pos, format!("<{unclosed}> not closed before </{name}>"));
        }
        while self.path.len() > idx + 1 {
            let inner = self.path.last().cloned().unwrap_or_default();
            self.close(&inner, pos);
            self.path.pop();
        }
        self.close(name, pos);
        self.path.pop();
        self.text.clear();
    }

    /// Handles the end of element `name`; `self.path` still ends with it. Dispatches on where
    /// the element is, because leaf names recur (`obj` in frames and suppression frames, `count`
    /// in pairs, `bytes` in every summary, `kind` in errors and heuristics).
    fn close(&mut self, name: &str, pos: u64) {
        let text = std::mem::take(&mut self.text);
        let t = text.trim();
        let parent = self.parent().unwrap_or("").to_string();
        match parent.as_str() {
            "frame" => return self.close_frame_part(name, t),
            "sframe" => return self.close_sframe_part(name, t),
            "pair" => return self.close_pair_part(name, t, pos),
            _ => {}
        }
        if self.close_summary_part(name, &parent, t, pos)
            || self.close_structure(name, &parent, pos)
            || self.close_header_part(name, &parent, t)
            || self.close_suppression_part(name, &text)
            || self.close_fatal_part(name, &parent, t)
        {
            return;
        }
        self.close_error_part(name, &parent, t, pos);
    }

    /// `<frame>` children.
    fn close_frame_part(&mut self, name: &str, t: &str) {
        if let Some(f) = self.frame.as_mut() {
            let v = Some(t.to_string());
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
    }

    /// `<sframe>` children of a generated suppression.
    fn close_sframe_part(&mut self, name: &str, t: &str) {
        if let Some(s) = self.supp.as_mut() {
            match name {
                "fun" => s.frames.push(SuppFrame::Fun(t.to_string())),
                "obj" => s.frames.push(SuppFrame::Obj(t.to_string())),
                _ => {}
            }
        }
    }

    /// `<pair>` children (`<errorcounts>` and `<suppcounts>`).
    fn close_pair_part(&mut self, name: &str, t: &str, pos: u64) {
        match name {
            "unique" => self.pair.0 = Some(t.to_string()),
            "name" => self.pair.1 = Some(t.to_string()),
            "count" => {
                self.pair.2 = parse_number(t);
                if self.pair.2.is_none() {
                    self.damage(pos, format!("<count> `{t}` is not a number"));
                }
            }
            _ => {}
        }
    }

    /// Protocol 6's `<heap_summary>`, `<leak_summary>`, `<error_summary>` and their numbers.
    /// Returns whether `name` was one of them.
    fn close_summary_part(&mut self, name: &str, parent: &str, t: &str, pos: u64) -> bool {
        if parent == "valgrindoutput" {
            return self.close_summary(name, t, pos);
        }
        let grandparent = self
            .path
            .len()
            .checked_sub(3)
            .map(|i| self.path[i].clone())
            .unwrap_or_default();
        let mut number = || -> u64 {
            parse_number(t).unwrap_or_else(|| {
                self.damage(pos, format!("<{name}> `{t}` is not a number"));
                0
            })
        };
        match (grandparent.as_str(), parent, name) {
            ("heap_summary", "memory_in_use_at_exit", "bytes" | "blocks") => {
                let v = number();
                if let Some(h) = self.summaries.heap.as_mut() {
                    set_totals(&mut h.in_use_at_exit, name, v);
                }
            }
            ("heap_summary", "total_heap_usage", "allocs" | "frees" | "bytes_allocated") => {
                let v = number();
                if let Some(h) = self.summaries.heap.as_mut() {
                    match name {
                        "allocs" => h.allocs = v,
                        "frees" => h.frees = v,
                        _ => h.bytes_allocated = v,
                    }
                }
            }
            ("leak_summary", _, "bytes" | "blocks" | "in_blocks") => {
                let v = number();
                if let Some(l) = self.summaries.leak.as_mut() {
                    let totals = match parent {
                        "definitely_lost" => &mut l.definitely_lost,
                        "indirectly_lost" => &mut l.indirectly_lost,
                        "possibly_lost" => &mut l.possibly_lost,
                        "still_reachable" => &mut l.still_reachable,
                        _ => &mut l.suppressed,
                    };
                    set_totals(totals, name, v);
                }
            }
            (_, "error_summary", "errors" | "error_contexts" | "suppressed")
            | (_, "error_summary", "suppressed_contexts") => {
                let v = number();
                if let Some(e) = self.summaries.errors.as_mut() {
                    match name {
                        "errors" => e.errors = v,
                        "error_contexts" => e.error_contexts = v,
                        "suppressed" => e.suppressed = v,
                        _ => e.suppressed_contexts = v,
                    }
                }
            }
            _ => return false,
        }
        true
    }

    /// A whole summary (a child of `<valgrindoutput>`) ends: keep it.
    fn close_summary(&mut self, name: &str, t: &str, pos: u64) -> bool {
        match name {
            "heap_summary" => {
                self.log.heap_summary = self.summaries.heap.take();
            }
            "leak_summary" => {
                if let Some(summary) = self.summaries.leak.take() {
                    self.log.leak_summary = Some(summary);
                    self.leak_checks.push(LeakCheck {
                        summary,
                        errors: self.leak_check_start..self.log.errors.len(),
                        offset: pos,
                    });
                    self.leak_check_start = self.log.errors.len();
                }
            }
            "error_summary" => {
                self.log.error_summary = self.summaries.errors.take();
            }
            "all_heap_blocks_freed" => match t {
                "true" => self.log.all_heap_blocks_freed = Some(true),
                "false" => self.log.all_heap_blocks_freed = Some(false),
                _ => self.damage(
                    pos,
                    format!("<all_heap_blocks_freed> `{t}` is not true/false"),
                ),
            },
            _ => return false,
        }
        true
    }

    /// Elements that hold others: frames, stacks, pairs, errors, the root. Returns whether
    /// `name` was one of them.
    fn close_structure(&mut self, name: &str, parent: &str, pos: u64) -> bool {
        match name {
            "frame" => {
                if let Some(f) = self.frame.take() {
                    self.stack.push(f);
                }
            }
            "stack" => self.close_stack(),
            "pair" => {
                let (unique, sname, count) = std::mem::take(&mut self.pair);
                let count = count.unwrap_or(0);
                match (parent, unique, sname) {
                    ("errorcounts", Some(u), _) => self.log.error_counts.push((u, count)),
                    ("suppcounts", _, Some(n)) => self.log.supp_counts.push((n, count)),
                    _ => self.damage(pos, format!("<pair> without its name in <{parent}>")),
                }
            }
            "error" if self.error_depth() == 1 => {
                if let Some(e) = self.error.take() {
                    self.log.errors.push(e);
                }
            }
            "valgrindoutput" if self.path.len() == 1 => self.closed_root = true,
            _ => return false,
        }
        true
    }

    fn close_stack(&mut self) {
        let stack = std::mem::take(&mut self.stack);
        match self.stack_target.take() {
            Some(StackTarget::ErrorMain) => set(&mut self.error, |e| e.stack = stack),
            Some(StackTarget::ErrorAux) => set(&mut self.error, |e| match e.aux.last_mut() {
                Some(a) if a.stack.is_empty() => a.stack = stack,
                _ => e.aux.push(Aux {
                    what: String::new(),
                    stack,
                }),
            }),
            Some(StackTarget::Fatal) => set(&mut self.fatal, |f| f.stack = stack),
            _ => {}
        }
    }

    /// The document's header: protocol, tool, pids, command lines, status.
    fn close_header_part(&mut self, name: &str, parent: &str, t: &str) -> bool {
        match (parent, name) {
            ("valgrindoutput", "protocolversion") => self.log.protocol_version = parse_u32(t),
            ("valgrindoutput", "protocoltool") => self.log.tool = Some(t.to_string()),
            ("valgrindoutput", "pid") => self.log.pid = parse_u32(t),
            ("valgrindoutput", "ppid") => self.log.ppid = parse_u32(t),
            ("argv", "exe" | "arg") => self.log.argv.push(t.to_string()),
            ("vargv", "exe" | "arg") => self.log.valgrind_argv.push(t.to_string()),
            ("status", "state") => {
                if t == "FINISHED" {
                    self.log.finished = true;
                }
            }
            _ => return false,
        }
        true
    }

    /// A generated suppression, inside an error or the top-level copy after it.
    fn close_suppression_part(&mut self, name: &str, text: &str) -> bool {
        if self.supp.is_none() || !self.in_path("suppression") {
            return false;
        }
        let t = text.trim();
        match name {
            "sname" => set(&mut self.supp, |s| s.name = t.to_string()),
            "skind" => set(&mut self.supp, |s| s.kind = t.to_string()),
            "skaux" => set(&mut self.supp, |s| s.aux = Some(t.to_string())),
            "rawtext" => set(&mut self.supp, |s| {
                s.raw = text.trim_matches('\n').to_string()
            }),
            "suppression" => {
                let Some(s) = self.supp.take() else {
                    return true;
                };
                if self.error.is_some() && self.in_path("error") {
                    set(&mut self.error, |e| e.suppression = Some(s));
                } else if let Some(last) = self.log.errors.last_mut() {
                    // The top-level copy --gen-suppressions=all writes after each error.
                    if last.suppression.is_none() {
                        last.suppression = Some(s);
                    }
                }
            }
            _ => return false,
        }
        true
    }

    /// `<fatal_signal>` and its children.
    fn close_fatal_part(&mut self, name: &str, parent: &str, t: &str) -> bool {
        if self.fatal.is_none() || !self.in_path("fatal_signal") {
            return false;
        }
        match name {
            "tid" if parent == "fatal_signal" => set(&mut self.fatal, |f| f.tid = parse_u32(t)),
            "signo" => set(&mut self.fatal, |f| f.signo = parse_i32(t)),
            "signame" => set(&mut self.fatal, |f| f.signame = Some(t.to_string())),
            "sicode" => set(&mut self.fatal, |f| f.sicode = parse_i32(t)),
            "event" => set(&mut self.fatal, |f| f.event = Some(t.to_string())),
            "siaddr" => set(&mut self.fatal, |f| f.siaddr = Some(t.to_string())),
            "fatal_signal" => self.log.fatal_signal = self.fatal.take(),
            _ => return false,
        }
        true
    }

    /// The children of an `<error>`.
    fn close_error_part(&mut self, name: &str, parent: &str, t: &str, pos: u64) {
        if self.error.is_none() || !self.in_path("error") {
            return;
        }
        let aux = |what: String| Aux {
            what,
            stack: Vec::new(),
        };
        match (parent, name) {
            ("error", "unique") => set(&mut self.error, |e| e.unique = t.to_string()),
            ("error", "tid") => set(&mut self.error, |e| e.tid = parse_u32(t)),
            ("error", "threadname") => set(&mut self.error, |e| e.thread_name = Some(t.into())),
            ("error", "kind") => set(&mut self.error, |e| e.kind = t.to_string()),
            ("error", "what") | ("xwhat", "text") => set(&mut self.error, |e| e.what = t.into()),
            ("error", "fd") => {
                let fd = parse_i32(t);
                if fd.is_none() {
                    self.damage(pos, format!("<fd> `{t}` is not a descriptor number"));
                }
                set(&mut self.error, |e| e.fd = fd);
            }
            ("error", "path") => set(&mut self.error, |e| e.fd_path = Some(t.to_string())),
            ("xwhat", "leakedbytes") => set(&mut self.error, |e| e.leaked_bytes = parse_number(t)),
            ("xwhat", "leakedblocks") => {
                set(&mut self.error, |e| e.leaked_blocks = parse_number(t))
            }
            ("error", "auxwhat") | ("origin", "what") => {
                set(&mut self.error, |e| e.aux.push(aux(t.to_string())))
            }
            ("xauxwhat", "text") => self.aux_text = Some(t.to_string()),
            ("error", "xauxwhat") => {
                let what = self.aux_text.take().unwrap_or_default();
                set(&mut self.error, |e| e.aux.push(aux(what)));
            }
            _ => {}
        }
    }

    fn finish<R: BufRead>(mut self, lines: &LineCounter<R>) -> Log {
        let end = lines.offset;
        if !self.closed_root {
            self.problems.truncated = true;
            let msg = if !self.seen_root {
                "no <valgrindoutput> document found".to_string()
            } else {
                match self.path.last() {
                    Some(open) => format!("log ends inside <{open}> before </valgrindoutput>"),
                    None => "log ends before </valgrindoutput>".to_string(),
                }
            };
            self.notes.push((end, msg));
            self.keep_half_read();
        }
        let mut log = self.log;
        // The totals only mean something for a document that was read to its end.
        if !self.problems.truncated {
            let at = logcheck::Positions {
                errors: &self.error_pos,
                errorcounts: self.errorcounts_pos,
                error_summary: self.error_summary_pos,
                end,
            };
            for (offset, msg) in logcheck::check(&log, &at, &self.leak_checks) {
                self.problems.damaged = true;
                if self.notes.len() < 50 {
                    self.notes.push((offset, msg));
                }
            }
        }
        log.completeness = if self.problems.truncated {
            Completeness::Truncated
        } else if self.problems.junk {
            Completeness::Junk
        } else if self.problems.damaged {
            Completeness::Damaged
        } else {
            Completeness::Complete
        };
        self.notes.sort_by_key(|(off, _)| *off);
        log.notes = self
            .notes
            .iter()
            .map(|(off, msg)| format!("line {}: {msg}", lines.line_of(*off)))
            .collect();
        log
    }

    /// A log that ends early keeps a half-read error if we know at least what kind it was,
    /// and a half-read fatal signal.
    fn keep_half_read(&mut self) {
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
}

/// (only whitespace, has characters XML forbids: C0 controls but tab/CR/LF, DEL, C1 controls).
fn scan_text(s: &str) -> (bool, bool) {
    let bytes = s.as_bytes();
    let (mut blank, mut control) = (true, false);
    for i in 0..bytes.len() {
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            0..=0x1f | 0x7f => {
                blank = false;
                control = true;
            }
            // U+0080..U+009F are encoded C2 80..C2 9F.
            0xc2 if matches!(bytes.get(i + 1), Some(0x80..=0x9f)) => {
                blank = false;
                control = true;
            }
            _ => blank = false,
        }
    }
    (blank, control)
}

fn set_totals(totals: &mut Totals, name: &str, value: u64) {
    if name == "bytes" {
        totals.bytes = value;
    } else {
        totals.blocks = value;
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
