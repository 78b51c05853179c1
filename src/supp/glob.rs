//! Valgrind's pattern matching, and inclusion between patterns (for `supp merge`).
//!
//! Valgrind matches a frame pattern against a name with `*` (any run of characters, possibly
//! empty) and `?` (exactly one character); everything else is literal. An entry matches an
//! error when its frames match the innermost frames of the stack one by one, `...` standing for
//! zero or more frames; frames below the last pattern are not looked at.
//!
//! Inclusion ("pattern A matches everything pattern B matches") is what lets `merge` drop an
//! entry in favour of a more general one. The checks here are *sound* — they never claim an
//! inclusion that does not hold — but not complete for every exotic glob pair; a missed
//! inclusion only means a redundant entry is kept.

use super::entry::{Entry, Extra, FramePat};

/// Does `pat` (with `*` and `?`) match all of `s`?
pub fn glob_match(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    // Classic greedy matcher with backtracking to the last star: O(len(p) * len(t)) worst case.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Largest table the inclusion check builds; beyond it only equal patterns count as included.
const MAX_CELLS: usize = 4_000_000;

/// Does pattern `general` match every string pattern `specific` matches?
///
/// The answer is the alignment table below (a `*` of `general` absorbs any run of tokens of
/// `specific`, a `?` one token that is not `*`, a literal the same literal). Two cheap, exact
/// steps come first, because merge asks this for long mangled names: a pattern without `*` or
/// `?` covers only itself, and the literal characters before `general`'s first glob character
/// and after its last one must be the same characters at both ends of `specific`; they are cut
/// off both sides before the table is built (an alignment pairs them one to one, from either
/// end).
pub fn glob_covers(general: &str, specific: &str) -> bool {
    if general == specific || general.chars().all(|c| c == '*') && general.contains('*') {
        return true;
    }
    let is_glob = |c: char| c == '*' || c == '?';
    let Some(first) = general.find(is_glob) else {
        // All literal: matches exactly one string, which `specific` must be.
        return false;
    };
    // The size limit is the full table's, so the answer does not depend on the cuts below.
    let too_big = |n: usize, m: usize| (n + 1).saturating_mul(m + 1) > MAX_CELLS;
    // Byte lengths bound the character counts: count characters only near the limit.
    if too_big(general.len(), specific.len())
        && too_big(general.chars().count(), specific.chars().count())
    {
        return false;
    }
    let last = general.rfind(is_glob).unwrap_or(first) + 1; // both glob chars are one byte
    let (prefix, suffix) = (&general[..first], &general[last..]);
    if specific.len() < prefix.len() + suffix.len()
        || !specific.starts_with(prefix)
        || !specific.ends_with(suffix)
    {
        return false;
    }
    glob_covers_table(
        &general[first..last],
        &specific[prefix.len()..specific.len() - suffix.len()],
    )
}

/// The alignment table of [`glob_covers`], without shortcuts.
fn glob_covers_table(general: &str, specific: &str) -> bool {
    let a: Vec<char> = general.chars().collect();
    let b: Vec<char> = specific.chars().collect();
    let (n, m) = (a.len(), b.len());
    // ok[i][j]: a[i..] covers b[j..]. Filled from the end.
    let w = m + 1;
    let mut ok = vec![false; (n + 1) * w];
    ok[n * w + m] = true;
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            let v = match a[i] {
                // A star in `general` absorbs nothing, or one more token of `specific`
                // (whatever it is, stars included).
                '*' => ok[(i + 1) * w + j] || (j < m && ok[i * w + j + 1]),
                // `?` covers one literal or one `?`, never a `*` (which may be empty or long).
                '?' => j < m && b[j] != '*' && ok[(i + 1) * w + j + 1],
                c => j < m && b[j] == c && ok[(i + 1) * w + j + 1],
            };
            ok[i * w + j] = v;
        }
    }
    ok[0]
}

/// Does frame pattern `a` match every frame `b` matches? (`...` is handled by [`frames_cover`].)
pub fn frame_covers(a: &FramePat, b: &FramePat) -> bool {
    match (a, b) {
        (FramePat::Fun(x), FramePat::Fun(y)) | (FramePat::Obj(x), FramePat::Obj(y)) => {
            glob_covers(x, y)
        }
        (FramePat::Src { file: fa, line: la }, FramePat::Src { file: fb, line: lb }) => {
            glob_covers(fa, fb) && (la.is_none() || la == lb)
        }
        _ => false,
    }
}

/// Does the frame list `a` match every stack `b` matches? Both have an implicit trailing
/// "anything" (frames below the last pattern are ignored).
pub fn frames_cover(a: &[FramePat], b: &[FramePat]) -> bool {
    let (n, m) = (a.len(), b.len());
    if (n + 1).saturating_mul(m + 1) > MAX_CELLS {
        return a == b;
    }
    let w = m + 1;
    let mut ok = vec![false; (n + 1) * w];
    for j in 0..=m {
        ok[n * w + j] = true; // `a` is used up: its implicit tail takes the rest.
    }
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            let v = if j == m {
                // `b` is used up: its tail is anything, which only `...` (or nothing) covers.
                a[i].is_ellipsis() && ok[(i + 1) * w + j]
            } else if a[i].is_ellipsis() {
                ok[(i + 1) * w + j] || ok[i * w + j + 1]
            } else if b[j].is_ellipsis() {
                // A concrete frame cannot cover "zero or more frames".
                false
            } else {
                // The table lookup first: the glob comparison is the expensive part.
                ok[(i + 1) * w + j + 1] && frame_covers(&a[i], &b[j])
            };
            ok[i * w + j] = v;
        }
    }
    ok[0]
}

/// Does entry `a` suppress every error entry `b` suppresses? Same kind, `a`'s tools include
/// `b`'s, compatible extra line (leak kinds: `a`'s include `b`'s; Param: equal), frames covered.
pub fn entry_covers(a: &Entry, b: &Entry) -> bool {
    if a.kind != b.kind || !b.tools.iter().all(|t| a.tools.contains(t)) {
        return false;
    }
    let extra_ok = match (&a.extra, &b.extra) {
        (None, None) => true,
        // A Leak entry without match-leak-kinds matches every kind.
        (None, Some(Extra::LeakKinds(_))) => true,
        (Some(Extra::LeakKinds(ka)), Some(Extra::LeakKinds(kb))) => ka.covers(kb),
        (Some(Extra::LeakKinds(ka)), None) => ka.covers(&super::entry::LeakKinds::All),
        (x, y) => x == y,
    };
    extra_ok && frames_cover(&a.frames, &b.frames)
}

/// Does `entry` suppress a stack whose frames are given as (function, object, file, line)?
/// Used by tests and `supp check --against LOG` to explain matches without running valgrind.
pub fn entry_matches_stack(entry: &[FramePat], stack: &[StackFrame<'_>]) -> bool {
    fn go(p: &[FramePat], s: &[StackFrame<'_>]) -> bool {
        match p.split_first() {
            None => true,
            Some((FramePat::Ellipsis, rest)) => (0..=s.len()).any(|k| go(rest, &s[k..])),
            Some((f, rest)) => match s.split_first() {
                None => false,
                Some((fr, srest)) => frame_matches(f, fr) && go(rest, srest),
            },
        }
    }
    go(entry, stack)
}

/// One frame of a stack as valgrind matches it.
#[derive(Debug, Clone, Copy, Default)]
pub struct StackFrame<'a> {
    /// The (mangled) function name valgrind matches `fun:` against; "???" when unknown.
    pub fun: Option<&'a str>,
    /// The object path.
    pub obj: Option<&'a str>,
    /// The source file name.
    pub file: Option<&'a str>,
    /// The source line.
    pub line: Option<u32>,
}

fn frame_matches(p: &FramePat, f: &StackFrame<'_>) -> bool {
    match p {
        FramePat::Fun(g) => glob_match(g, f.fun.unwrap_or("???")),
        FramePat::Obj(g) => glob_match(g, f.obj.unwrap_or("???")),
        FramePat::Src { file, line } => {
            f.file.is_some_and(|x| glob_match(file, x)) && (line.is_none() || *line == f.line)
        }
        FramePat::Ellipsis => true,
    }
}
