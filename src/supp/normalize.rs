//! Making function-name patterns survive rebuilds.
//!
//! Valgrind matches `fun:` lines against the *mangled* name (measured with valgrind 3.19 and
//! rustc 1.95: `<sframe><fun>` in the XML is `_ZN1r7leak_it17h3560933bb6e1e520E`, while the
//! `<stack>` shows the demangled `r::leak_it`), or against the DWARF name for inlined frames
//! (`with_capacity_in<u8, alloc::alloc::Global>`, `{closure#0}`). Three things in those names
//! change when nothing in the source did:
//!
//! | scheme | unstable part | example | pattern |
//! |---|---|---|---|
//! | legacy (`_ZN…E`) | the hash element `17h<16 hex>E` (and a `.llvm.N` suffix) | `_ZN1r7leak_it17h3560…E` | `_ZN1r7leak_it17h*` |
//! | v0 (`_R…`) | crate disambiguators `Cs<base62>_` (the crate's metadata hash) | `NtCslNYArtu3iFV_5alloc` | `NtCs*_5alloc` |
//! | v0 | impl disambiguators `Ms<n>_`/`Xs<n>_` (`{impl#N}`: the impl's index) | `Ms4_NtCs…` | `M*NtCs*_…` |
//! | v0 | back-references `B<base62>_` (byte offsets, shifted by the above) | `NtB5_11RawVecInner` | `NtB*_11RawVecInner` |
//! | v0 | the instantiating-crate suffix (which crate instantiated a shared generic) | `…try_allocate_inCsduwmD7cSIQq_5gimli` | `…try_allocate_in*` |
//! | DWARF | `{impl#N}` in inlined names | `{impl#3}` | `{impl#*}` |
//!
//! v0 names are rewritten by walking the v0 grammar (RFC 2603), so only the unstable parts are
//! replaced — a textual search would also hit `B…_` inside identifiers. A name the walker does
//! not understand is left unchanged apart from a vendor suffix.

/// Normalises one function name (mangled or DWARF) into a pattern valgrind matches against
/// the same function in another build.
pub fn normalize_fun(name: &str) -> String {
    let out = if let Some(rest) = name.strip_prefix("_R") {
        v0(rest).unwrap_or_else(|| name.to_string())
    } else if name.starts_with("_ZN") {
        legacy(name)
    } else {
        impl_index(name)
    };
    collapse_stars(&out)
}

/// `_ZN…17h<16 hex>E[.llvm.N]` → `_ZN…17h*`.
fn legacy(name: &str) -> String {
    // The hash is the last path element: "17h" + 16 hex digits, then the closing 'E'.
    let body = match name.find(".llvm.") {
        Some(i) => &name[..i],
        None => name,
    };
    if let Some(i) = body.rfind("17h") {
        let hash = &body[i + 3..];
        if hash.len() == 17
            && hash.ends_with('E')
            && hash[..16].bytes().all(|b| b.is_ascii_hexdigit())
        {
            return format!("{}17h*", &body[..i]);
        }
    }
    if body.len() != name.len() {
        return format!("{body}*");
    }
    name.to_string()
}

/// `{impl#3}` → `{impl#*}` in DWARF names.
fn impl_index(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find("{impl#") {
        out.push_str(&rest[..i + 6]);
        rest = &rest[i + 6..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with('}') {
            out.push('*');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

fn collapse_stars(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '*' && out.ends_with('*') {
            continue;
        }
        out.push(c);
    }
    out
}

/// Rewrites a v0 symbol (without its `_R` prefix); `None` if it does not parse.
fn v0(rest: &str) -> Option<String> {
    let mut w = V0 {
        s: rest.as_bytes(),
        i: 0,
        out: String::from("_R"),
        depth: 0,
    };
    // Optional encoding version.
    while w.peek().is_some_and(|c| c.is_ascii_digit()) {
        w.copy1();
    }
    w.path()?;
    if w.i < w.s.len() {
        let tail = &rest[w.i..];
        if tail.starts_with('.') || tail.starts_with('$') {
            // Vendor suffix (`.llvm.123`): may come and go between builds.
            w.out.push('*');
        } else {
            // The instantiating crate, then perhaps a vendor suffix.
            let mut probe = V0 {
                s: w.s,
                i: w.i,
                out: String::new(),
                depth: 0,
            };
            probe.path()?;
            if probe.i < w.s.len() && !matches!(w.s[probe.i], b'.' | b'$') {
                return None;
            }
            w.out.push('*');
        }
    }
    Some(w.out)
}

/// A walker over v0 mangling that copies the input to `out`, replacing unstable parts.
struct V0<'a> {
    s: &'a [u8],
    i: usize,
    out: String,
    depth: u32,
}

impl V0<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn copy1(&mut self) -> Option<u8> {
        let c = self.next()?;
        self.out.push(c as char);
        Some(c)
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// `{0-9a-zA-Z} "_"`, returned as text (without the `_`).
    fn base62(&mut self) -> Option<&str> {
        let start = self.i;
        while self.peek()?.is_ascii_alphanumeric() {
            self.i += 1;
        }
        let body = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        if !self.eat(b'_') {
            return None;
        }
        Some(body)
    }

    fn copy_base62(&mut self) -> Option<()> {
        let b = self.base62()?.to_string();
        self.out.push_str(&b);
        self.out.push('_');
        Some(())
    }

    fn decimal(&mut self) -> Option<usize> {
        let start = self.i;
        if self.peek() == Some(b'0') {
            self.i += 1;
            return Some(0);
        }
        while self.peek()?.is_ascii_digit() {
            self.i += 1;
        }
        if start == self.i {
            return None;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth < 200).then_some(())
    }

    /// `["u"] <decimal> ["_"] <bytes>`, copied.
    fn undisambiguated_ident(&mut self) -> Option<()> {
        let start = self.i;
        self.eat(b'u');
        let n = self.decimal()?;
        self.eat(b'_');
        let end = self.i.checked_add(n)?;
        if end > self.s.len() {
            return None;
        }
        self.i = end;
        self.out
            .push_str(std::str::from_utf8(&self.s[start..end]).ok()?);
        Some(())
    }

    /// `[s<base62>_] <undisambiguated-identifier>`, copied (closure and item disambiguators
    /// are stable: they follow the source).
    fn ident(&mut self) -> Option<()> {
        if self.peek() == Some(b's') {
            self.copy1();
            self.copy_base62()?;
        }
        self.undisambiguated_ident()
    }

    fn backref(&mut self) -> Option<()> {
        self.base62()?;
        self.out.push_str("B*_");
        Some(())
    }

    fn path(&mut self) -> Option<()> {
        self.enter()?;
        let c = self.next()?;
        match c {
            b'C' => {
                self.out.push('C');
                if self.eat(b's') {
                    self.base62()?;
                    self.out.push_str("s*_");
                }
                self.ident()?;
            }
            b'M' | b'X' => {
                // impl-path = [disambiguator] path: the disambiguator is the impl's index.
                self.out.push(c as char);
                self.out.push('*');
                if self.eat(b's') {
                    self.base62()?;
                }
                self.path()?;
                self.ty()?;
                if c == b'X' {
                    self.path()?;
                }
            }
            b'Y' => {
                self.out.push('Y');
                self.ty()?;
                self.path()?;
            }
            b'N' => {
                self.out.push('N');
                let ns = self.copy1()?;
                if !ns.is_ascii_alphabetic() {
                    return None;
                }
                self.path()?;
                self.ident()?;
            }
            b'I' => {
                self.out.push('I');
                self.path()?;
                while self.peek()? != b'E' {
                    self.generic_arg()?;
                }
                self.copy1();
            }
            b'B' => self.backref()?,
            _ => return None,
        }
        self.depth -= 1;
        Some(())
    }

    fn generic_arg(&mut self) -> Option<()> {
        match self.peek()? {
            b'L' => {
                self.copy1();
                self.copy_base62()
            }
            b'K' => {
                self.copy1();
                self.konst()
            }
            _ => self.ty(),
        }
    }

    fn lifetime_opt(&mut self) -> Option<()> {
        if self.peek() == Some(b'L') {
            self.copy1();
            self.copy_base62()?;
        }
        Some(())
    }

    fn binder_opt(&mut self) -> Option<()> {
        if self.peek() == Some(b'G') {
            self.copy1();
            self.copy_base62()?;
        }
        Some(())
    }

    fn ty(&mut self) -> Option<()> {
        self.enter()?;
        let c = self.peek()?;
        match c {
            b'a'..=b'z' => {
                if !b"abcdefhijlmnopstuvxyz".contains(&c) {
                    return None;
                }
                self.copy1();
            }
            b'A' => {
                self.copy1();
                self.ty()?;
                self.konst()?;
            }
            b'S' | b'P' | b'O' => {
                self.copy1();
                self.ty()?;
            }
            b'R' | b'Q' => {
                self.copy1();
                self.lifetime_opt()?;
                self.ty()?;
            }
            b'F' => {
                self.copy1();
                self.binder_opt()?;
                if self.peek() == Some(b'U') {
                    self.copy1();
                }
                if self.peek() == Some(b'K') {
                    self.copy1();
                    if self.peek() == Some(b'C') {
                        self.copy1();
                    } else {
                        self.undisambiguated_ident()?;
                    }
                }
                while self.peek()? != b'E' {
                    self.ty()?;
                }
                self.copy1();
                self.ty()?;
            }
            b'D' => {
                self.copy1();
                self.binder_opt()?;
                while self.peek()? != b'E' {
                    self.path()?;
                    while self.peek() == Some(b'p') {
                        self.copy1();
                        self.undisambiguated_ident()?;
                        self.ty()?;
                    }
                }
                self.copy1();
                // The object lifetime bound.
                if self.peek()? != b'L' {
                    return None;
                }
                self.lifetime_opt()?;
            }
            b'T' => {
                self.copy1();
                while self.peek()? != b'E' {
                    self.ty()?;
                }
                self.copy1();
            }
            b'B' => {
                self.i += 1;
                self.backref()?;
            }
            _ => self.path()?,
        }
        self.depth -= 1;
        Some(())
    }

    fn konst(&mut self) -> Option<()> {
        self.enter()?;
        match self.peek()? {
            b'p' => {
                self.copy1();
            }
            b'B' => {
                self.i += 1;
                self.backref()?;
            }
            b'A' | b'T' => {
                self.copy1();
                while self.peek()? != b'E' {
                    self.konst()?;
                }
                self.copy1();
            }
            b'R' | b'Q' => {
                self.copy1();
                self.konst()?;
            }
            b'V' => {
                self.copy1();
                self.path()?;
                match self.copy1()? {
                    b'U' => {}
                    b'T' => {
                        while self.peek()? != b'E' {
                            self.konst()?;
                        }
                        self.copy1();
                    }
                    b'S' => {
                        while self.peek()? != b'E' {
                            self.ident()?;
                            self.konst()?;
                        }
                        self.copy1();
                    }
                    _ => return None,
                }
            }
            c if c.is_ascii_lowercase() => {
                // A basic type, then `[n] {hex} _`.
                self.copy1();
                if self.peek() == Some(b'n') {
                    self.copy1();
                }
                while self.peek()?.is_ascii_hexdigit() {
                    self.copy1();
                }
                if self.copy1()? != b'_' {
                    return None;
                }
            }
            _ => return None,
        }
        self.depth -= 1;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_fun as n;

    #[test]
    fn legacy_hashes() {
        assert_eq!(n("_ZN1r7leak_it17h3560933bb6e1e520E"), "_ZN1r7leak_it17h*");
        assert_eq!(
            n("_ZN1r7leak_it17h3560933bb6e1e520E.llvm.1234"),
            "_ZN1r7leak_it17h*"
        );
        assert_eq!(n("_ZN3foo3barE"), "_ZN3foo3barE");
    }

    #[test]
    fn v0_disambiguators_backrefs_and_instantiating_crate() {
        assert_eq!(
            n("_RNvMs4_NtCslNYArtu3iFV_5alloc7raw_vecNtB5_11RawVecInner15try_allocate_inCsduwmD7cSIQq_5gimli"),
            "_RNvM*NtCs*_5alloc7raw_vecNtB*_11RawVecInner15try_allocate_in*"
        );
        assert_eq!(
            n("_RNvNtCsjrHSEGnQ3l9_3std2rt19lang_start_internal"),
            "_RNvNtCs*_3std2rt19lang_start_internal"
        );
        // Generic arguments, references, dyn, consts and tuples parse.
        assert_eq!(
            n("_RINvNtCs1234_4core3ptr13drop_in_placeRDNtNtCsabc_3std3any3AnyEL_ECsxyz_1r"),
            "_RINvNtCs*_4core3ptr13drop_in_placeRDNtNtCs*_3std3any3AnyEL_E*"
        );
        assert_eq!(n("_RINvCs1_1a1fKj10_TaxEEB2_"), "_RINvCs*_1a1fKj10_TaxEE*");
        // Not v0 after all: unchanged.
        assert_eq!(n("_Rzzz"), "_Rzzz");
    }

    #[test]
    fn dwarf_names() {
        assert_eq!(n("{impl#12}::fmt"), "{impl#*}::fmt");
        assert_eq!(n("{closure#0}"), "{closure#0}");
        assert_eq!(n("malloc"), "malloc");
    }
}
