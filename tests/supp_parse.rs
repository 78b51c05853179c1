//! Suppression-file parser and formatter: grammar, file:line errors, round trip, fuzzing.

use poolgrind::supp::{
    format_file, parse_bytes, parse_str, Entry, Extra, FramePat, LeakKind, LeakKinds, SuppFile,
};
use proptest::prelude::*;

#[test]
fn parses_every_part_of_the_grammar() {
    let text = "\
# header line 1
#
# header line 2

# about the leak
{
   leak-one
   Memcheck:Leak
   match-leak-kinds: definite,possible
   fun:malloc
   ...
   fun:_ZN1r7leak_it*
   obj:/usr/lib/lib?.so
   src:r.rs:12
   src:lib.rs
}
{
  param
  Memcheck:Param
  write(buf)
  # a comment inside
  fun:write
}

\t{
\tother-tool
\tHelgrind,Memcheck:Addr4
\tfun:x   
\t}
# trailing
";
    let f = parse_str("t.supp", text).unwrap();
    assert_eq!(f.header, vec!["header line 1", "", "header line 2"]);
    assert_eq!(f.entries.len(), 3);
    let e = &f.entries[0];
    assert_eq!(e.comments, vec!["about the leak"]);
    assert_eq!((e.line, e.name_line), (6, 7));
    assert_eq!(e.tools, vec!["Memcheck"]);
    assert_eq!(e.kind, "Leak");
    assert_eq!(
        e.extra,
        Some(Extra::LeakKinds(LeakKinds::Set(
            [LeakKind::Definite, LeakKind::Possible]
                .into_iter()
                .collect()
        )))
    );
    assert_eq!(
        e.frames,
        vec![
            FramePat::Fun("malloc".into()),
            FramePat::Ellipsis,
            FramePat::Fun("_ZN1r7leak_it*".into()),
            FramePat::Obj("/usr/lib/lib?.so".into()),
            FramePat::Src {
                file: "r.rs".into(),
                line: Some(12)
            },
            FramePat::Src {
                file: "lib.rs".into(),
                line: None
            },
        ]
    );
    let p = &f.entries[1];
    assert_eq!(p.extra, Some(Extra::Param("write(buf)".into())));
    assert_eq!(p.comments, vec!["a comment inside"]);
    assert_eq!(f.entries[2].tools, vec!["Helgrind", "Memcheck"]);
    assert_eq!(f.entries[2].frames, vec![FramePat::Fun("x".into())]);
    assert_eq!(f.trailer, vec!["trailing"]);
    // Formatting is canonical and idempotent.
    let once = format_file(&f);
    let again = format_file(&parse_str("t.supp", &once).unwrap());
    assert_eq!(once, again);
    // CRLF files are read like valgrind reads them.
    let crlf = text.replace('\n', "\r\n");
    let g = parse_str("t.supp", &crlf).unwrap();
    assert_eq!(format_file(&g), once);
}

#[test]
fn leak_entry_without_kinds_takes_next_line_as_frame() {
    let f = parse_str("t", "{\n n\n Memcheck:Leak\n fun:foo\n}\n").unwrap();
    assert_eq!(f.entries[0].extra, None);
    assert_eq!(f.entries[0].frames, vec![FramePat::Fun("foo".into())]);
}

#[test]
fn other_tools_keep_their_extra_line() {
    let f = parse_str("t", "{\n n\n Helgrind:Race\n some extra\n fun:foo\n}\n").unwrap();
    assert_eq!(f.entries[0].extra, Some(Extra::Other("some extra".into())));
    assert!(f.warnings.is_empty());
    let f = parse_str("t", "{\n n\n memcheck:Addr4\n fun:foo\n}\n").unwrap();
    assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
    assert!(f.warnings[0].message.contains("case-sensitive"));
}

#[test]
fn newer_memcheck_kinds_warn() {
    let f = parse_str("t", "{\n n\n Memcheck:ReallocZero\n fun:foo\n}\n").unwrap();
    assert_eq!(f.warnings[0].line, 3);
}

/// Every malformed input gives an error at the right line, with a message naming what was
/// expected. (line, substring of the message)
#[test]
fn malformed_files_give_file_line_errors() {
    let long = "x".repeat(100_001);
    let many: String = (0..501).map(|i| format!(" fun:f{i}\n")).collect();
    let cases: Vec<(&str, String, usize, &str)> = vec![
        (
            "garbage",
            "hello\n".into(),
            1,
            "expected '{' or end of file",
        ),
        (
            "brace with name",
            "{ n\n Memcheck:Addr4\n fun:f\n}\n".into(),
            1,
            "alone on its line",
        ),
        ("stray close", "}\n".into(), 1, "without a matching"),
        (
            "eof after open",
            "{\n".into(),
            1,
            "end of file while expecting a name",
        ),
        ("eof after name", "{\n n\n".into(), 2, "`Tool:Kind`"),
        (
            "eof in frames",
            "{\n n\n Memcheck:Addr4\n fun:foo\n".into(),
            4,
            "unterminated entry (opened at line 1)",
        ),
        (
            "name is close",
            "{\n}\n".into(),
            2,
            "expected a suppression name",
        ),
        ("missing kind", "{\n n\n}\n".into(), 3, "missing kind line"),
        (
            "kind without colon",
            "{\n n\n Memcheck\n fun:f\n}\n".into(),
            3,
            "expected `Tool[,Tool]:Kind`",
        ),
        (
            "empty kind",
            "{\n n\n Memcheck:\n fun:f\n}\n".into(),
            3,
            "expected `Tool[,Tool]:Kind`",
        ),
        (
            "empty tool",
            "{\n n\n ,Memcheck:Addr4\n fun:f\n}\n".into(),
            3,
            "expected `Tool[,Tool]:Kind`",
        ),
        (
            "frame as kind",
            "{\n n\n fun:foo\n}\n".into(),
            3,
            "missing kind line",
        ),
        (
            "missing name",
            "{\n Memcheck:Addr4\n fun:foo\n}\n".into(),
            3,
            "missing name line",
        ),
        (
            "unknown kind",
            "{\n n\n Memcheck:Addr64\n fun:f\n}\n".into(),
            3,
            "unknown Memcheck kind `Addr64`",
        ),
        (
            "unknown kind 2",
            "{\n n\n Memcheck:Value3\n fun:f\n}\n".into(),
            3,
            "unknown Memcheck kind",
        ),
        (
            "no frames",
            "{\n n\n Memcheck:Addr4\n}\n".into(),
            4,
            "no frame lines",
        ),
        (
            "only dots",
            "{\n n\n Memcheck:Addr4\n ...\n ...\n}\n".into(),
            6,
            "only `...` frames",
        ),
        (
            "bad frame",
            "{\n n\n Memcheck:Addr4\n foo:bar\n}\n".into(),
            4,
            "bad frame line `foo:bar`",
        ),
        (
            "fn typo",
            "{\n n\n Memcheck:Addr4\n fn:bar\n}\n".into(),
            4,
            "did you mean `fun:`",
        ),
        (
            "four dots",
            "{\n n\n Memcheck:Addr4\n ....\n fun:f\n}\n".into(),
            4,
            "exactly three dots",
        ),
        (
            "text after close",
            "{\n n\n Memcheck:Addr4\n fun:f\n} x\n".into(),
            5,
            "alone on its line",
        ),
        (
            "nested open",
            "{\n n\n Memcheck:Addr4\n fun:f\n{\n m\n Memcheck:Addr4\n fun:g\n}\n".into(),
            5,
            "closing the entry opened at line 1",
        ),
        (
            "bad leak kind",
            "{\n n\n Memcheck:Leak\n match-leak-kinds: definit\n fun:f\n}\n".into(),
            4,
            "unknown leak kind `definit`",
        ),
        (
            "leak all mixed",
            "{\n n\n Memcheck:Leak\n match-leak-kinds: all,definite\n fun:f\n}\n".into(),
            4,
            "cannot be combined",
        ),
        (
            "leak none mixed",
            "{\n n\n Memcheck:Leak\n match-leak-kinds: none,definite\n fun:f\n}\n".into(),
            4,
            "cannot be combined",
        ),
        (
            "leak space",
            "{\n n\n Memcheck:Leak\n match-leak-kinds: definite, possible\n fun:f\n}\n".into(),
            4,
            "spaces are not allowed",
        ),
        (
            "leak empty",
            "{\n n\n Memcheck:Leak\n match-leak-kinds:\n fun:f\n}\n".into(),
            4,
            "empty match-leak-kinds",
        ),
        (
            "leak capital",
            "{\n n\n Memcheck:Leak\n match-leak-kinds: Definite\n fun:f\n}\n".into(),
            4,
            "unknown leak kind",
        ),
        (
            "leak double comma",
            "{\n n\n Memcheck:Leak\n match-leak-kinds: definite,,possible\n fun:f\n}\n".into(),
            4,
            "empty kind between commas",
        ),
        (
            "leak kinds on addr",
            "{\n n\n Memcheck:Addr4\n match-leak-kinds: definite\n fun:f\n}\n".into(),
            4,
            "only valid in Memcheck:Leak",
        ),
        (
            "leak kinds late",
            "{\n n\n Memcheck:Leak\n fun:f\n match-leak-kinds: definite\n}\n".into(),
            5,
            "must come right after",
        ),
        (
            "param without line",
            "{\n n\n Memcheck:Param\n}\n".into(),
            4,
            "syscall parameter line",
        ),
        (
            "param frame",
            "{\n n\n Memcheck:Param\n fun:write\n}\n".into(),
            4,
            "syscall parameter line",
        ),
        (
            "param eof",
            "{\n n\n Memcheck:Param\n".into(),
            3,
            "syscall parameter line",
        ),
        (
            "param no frames",
            "{\n n\n Memcheck:Param\n write(buf)\n}\n".into(),
            5,
            "no frame lines",
        ),
        (
            "too many frames",
            format!("{{\n n\n Memcheck:Addr4\n{many}}}\n"),
            505,
            "at most 500",
        ),
        (
            "long name",
            format!("{{\n {long}\n Memcheck:Addr4\n fun:f\n}}\n"),
            2,
            "over 100000",
        ),
        (
            "long frame",
            format!("{{\n n\n Memcheck:Addr4\n fun:{long}\n}}\n"),
            4,
            "over 100000",
        ),
        ("long top-level line", format!("{long}\n"), 1, "over 100000"),
        (
            "second entry broken",
            "{\n a\n Memcheck:Addr4\n fun:f\n}\n{\n b\n Memcheck:Addr4\n bad\n}\n".into(),
            9,
            "bad frame line",
        ),
    ];
    for (what, text, line, needle) in &cases {
        let err = match parse_str("bad.supp", text) {
            Ok(f) => panic!("{what}: parsed without error: {f:?}"),
            Err(e) => e,
        };
        let first = &err.errors[0];
        assert_eq!(first.file, "bad.supp", "{what}");
        assert_eq!(first.line, *line, "{what}: {}", first.message);
        assert!(
            first.message.contains(needle),
            "{what}: message `{}` lacks `{needle}`",
            first.message
        );
        // The rendered error starts with file:line.
        assert!(
            err.to_string().starts_with(&format!("bad.supp:{line}: ")),
            "{what}"
        );
    }
}

#[test]
fn reports_every_broken_entry_and_not_utf8() {
    let text = "{\n a\n Memcheck:Nope\n fun:f\n}\n{\n ok\n Memcheck:Addr4\n fun:f\n}\n{\n c\n Memcheck:Addr4\n}\n";
    let err = parse_str("m.supp", text).unwrap_err();
    let lines: Vec<usize> = err.errors.iter().map(|d| d.line).collect();
    assert_eq!(lines, vec![3, 14]);
    let err = parse_bytes("u.supp", b"{\n n\xff\n Memcheck:Addr4\n fun:f\n}\n").unwrap_err();
    assert_eq!(err.errors[0].line, 2);
    assert!(err.errors[0].message.contains("UTF-8"));
}

#[test]
fn valgrind_accepts_what_the_parser_accepts_in_tricky_cases() {
    // These are accepted by valgrind 3.19 (measured) and by the parser.
    for text in [
        "",
        "# only a comment\n",
        "{\n n\n Memcheck:Leak\n match-leak-kinds: definite,\n fun:f\n}\n",
        "{\n n\n Memcheck:Leak\n match-leak-kinds:definite\n fun:f\n}\n",
        "{\n n\n Memcheck:Leak\n match-leak-kinds: definite,definite\n fun:f\n}\n",
        "{\n n\n Memcheck:Addr4\n fun:\n}\n",
        "{\n n\n Memcheck:Addr4\n src:foo.c:x\n}\n",
        "{\n n\n Memcheck, Helgrind:Addr4\n fun:f\n}\n",
        "{\n n\n Memcheck:Addr4\n\n # c\n fun:f\n}\n",
    ] {
        parse_str("ok.supp", text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
}

// ---- property test: parse(format(x)) == x -------------------------------------------------

fn pattern() -> impl Strategy<Value = String> {
    // Trimmed, one line; may contain globs, spaces, colons, '#', braces and non-ASCII.
    "[A-Za-z0-9_$.*?<>:#{} é-]{0,20}".prop_map(|s| s.trim().to_string())
}

fn frame() -> impl Strategy<Value = FramePat> {
    prop_oneof![
        pattern().prop_map(FramePat::Fun),
        pattern().prop_map(FramePat::Obj),
        (
            "[A-Za-z0-9_.*?/-]{1,12}",
            proptest::option::of(0u32..100_000)
        )
            .prop_map(|(file, line)| FramePat::Src { file, line }),
        Just(FramePat::Ellipsis),
    ]
}

fn leak_kinds() -> impl Strategy<Value = LeakKinds> {
    prop_oneof![
        Just(LeakKinds::All),
        Just(LeakKinds::None),
        proptest::collection::btree_set(proptest::sample::select(LeakKind::ALL.to_vec()), 1..=4)
            .prop_map(LeakKinds::Set),
    ]
}

fn comment() -> impl Strategy<Value = String> {
    "[ -~]{0,16}".prop_map(|s| s.trim_end().to_string())
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_:<>(),. -]{1,30}"
        .prop_map(|s| s.trim().to_string())
        .prop_filter("name", |s| !s.is_empty() && s != "{" && s != "}")
}

prop_compose! {
    fn entry()(
        comments in proptest::collection::vec(comment(), 0..3),
        name in name(),
        kind_idx in 0usize..4,
        leak in leak_kinds(),
        with_kinds in any::<bool>(),
        param in "[a-z_]{1,8}\\([a-z_]{1,6}\\)",
        concrete in frame().prop_filter("concrete", |f| !f.is_ellipsis()),
        mut frames in proptest::collection::vec(frame(), 0..8),
        at in 0usize..8,
    ) -> Entry {
        let at = at.min(frames.len());
        frames.insert(at, concrete);
        let (tools, kind, extra) = match kind_idx {
            0 => (vec!["Memcheck".to_string()], "Leak", with_kinds.then_some(Extra::LeakKinds(leak))),
            1 => (vec!["Memcheck".to_string()], "Param", Some(Extra::Param(param))),
            2 => (vec!["Memcheck".to_string(), "Helgrind".to_string()], "Addr8", None),
            _ => (vec!["Helgrind".to_string()], "Race", with_kinds.then_some(Extra::Other(param))),
        };
        Entry { comments, name, tools, kind: kind.to_string(), extra, frames, line: 0, name_line: 0 }
    }
}

prop_compose! {
    fn supp_file()(
        header in proptest::collection::vec(comment(), 0..3),
        entries in proptest::collection::vec(entry(), 0..5),
        trailer in proptest::collection::vec(comment(), 0..2),
    ) -> SuppFile {
        let trailer = if entries.is_empty() { Vec::new() } else { trailer };
        SuppFile { path: "p.supp".into(), header, entries, trailer, warnings: Vec::new() }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]
    #[test]
    fn parse_format_round_trip(x in supp_file()) {
        let text = format_file(&x);
        let back = parse_str("p.supp", &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let entries: Vec<Entry> = back.entries.iter().map(Entry::without_positions).collect();
        prop_assert_eq!(&entries, &x.entries, "{}", text);
        prop_assert_eq!(&back.header, &x.header);
        prop_assert_eq!(&back.trailer, &x.trailer);
        prop_assert_eq!(format_file(&back), text);
    }
}

// ---- bounded fuzzing: random bytes and mutations of valid files never panic -----------------

/// A small deterministic PRNG (xorshift64*), so the fuzz run is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn fuzz_supp_parser() {
    let seeds: &[&[u8]] = &[
        b"{\n n\n Memcheck:Leak\n match-leak-kinds: definite,possible\n fun:malloc\n ...\n fun:f*\n}\n",
        b"# c\n{\n p\n Memcheck:Param\n write(buf)\n obj:/lib/x.so\n src:a.c:3\n}\n",
        b"{\n h\n Helgrind:Race\n extra\n fun:f\n}\n{\n}\n}\n{",
    ];
    let dict: &[&[u8]] = &[
        b"{",
        b"}",
        b"\n",
        b"fun:",
        b"obj:",
        b"src:",
        b"...",
        b"Memcheck:",
        b"Leak",
        b"Param",
        b"match-leak-kinds:",
        b"all",
        b"none",
        b",",
        b"#",
        b"\r",
        b"\xff",
        b":",
        b" ",
    ];
    let iterations: usize = std::env::var("POOLGRIND_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut parsed_ok = 0usize;
    for i in 0..iterations {
        let mut data: Vec<u8> = if i % 5 == 0 {
            (0..rng.below(64)).map(|_| rng.next() as u8).collect()
        } else {
            seeds[rng.below(seeds.len())].to_vec()
        };
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(data.len() + 1);
            match rng.below(4) {
                0 if !data.is_empty() => {
                    let end = (at + rng.below(8)).min(data.len());
                    data.drain(at.min(end)..end);
                }
                1 => {
                    let d = dict[rng.below(dict.len())];
                    data.splice(at..at, d.iter().copied());
                }
                2 if at < data.len() => data[at] = rng.next() as u8,
                _ => data.insert(at, rng.next() as u8),
            }
        }
        match parse_bytes("fuzz.supp", &data) {
            Ok(f) => {
                parsed_ok += 1;
                // Whatever parses must format and re-parse to the same entries.
                let text = format_file(&f);
                let back = parse_str("fuzz.supp", &text).expect("formatted output parses");
                let a: Vec<Entry> = f.entries.iter().map(Entry::without_positions).collect();
                let b: Vec<Entry> = back.entries.iter().map(Entry::without_positions).collect();
                assert_eq!(a, b, "input {:?}", String::from_utf8_lossy(&data));
            }
            Err(e) => {
                for d in &e.errors {
                    assert!(d.line <= data.split(|&b| b == b'\n').count().max(1));
                    assert!(!d.message.is_empty());
                }
            }
        }
    }
    assert!(parsed_ok > 0, "the mutations never produced a valid file");
}
