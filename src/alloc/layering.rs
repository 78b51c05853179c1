//! The allocator's modules depend on each other one way only (the order of `mod.rs`'s table):
//! a module may use only modules listed before it. An import circle is what made a change to
//! one allocation path touch nine files; this test keeps it from coming back.

/// The order, lowest first (`mod.rs`'s table).
const ORDER: &[&str] = &[
    "types", "sys", "config", "track", "serial", "meta", "arena", "pool", "tcache", "memcheck",
    "guards", "stats", "walk", "debug", "init", "dispatch", "global", "raw",
];

/// The sibling modules a source file names (`super::x`, `super::{x, y::z}`,
/// `super::super::x` from a submodule, `crate::alloc::x`).
fn dependencies(src: &str, nested: bool) -> Vec<String> {
    let prefixes: &[&str] = if nested {
        &["super::super::", "crate::alloc::"]
    } else {
        &["super::", "crate::alloc::"]
    };
    let mut deps = Vec::new();
    for line in src.lines() {
        let code = line.split("//").next().unwrap_or("");
        for prefix in prefixes {
            let mut rest = code;
            while let Some(i) = rest.find(prefix) {
                rest = &rest[i + prefix.len()..];
                if let Some(inner) = rest.strip_prefix('{') {
                    let end = inner.find('}').unwrap_or(inner.len());
                    for item in inner[..end].split(',') {
                        let name = item.trim().split("::").next().unwrap_or("").trim();
                        if !name.is_empty() && name != "self" {
                            deps.push(name.to_string());
                        }
                    }
                } else {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != "super" {
                        deps.push(name);
                    }
                }
            }
        }
    }
    deps
}

/// (module, source, nested) for every allocator source file.
fn sources() -> Vec<(String, String, bool)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/alloc");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            for sub in std::fs::read_dir(&path).unwrap() {
                let sub = sub.unwrap().path();
                let module = path.file_name().unwrap().to_string_lossy().into_owned();
                let nested = sub.file_name().unwrap() != "mod.rs";
                out.push((module, std::fs::read_to_string(&sub).unwrap(), nested));
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            if stem != "mod" && stem != "layering" {
                out.push((stem, std::fs::read_to_string(&path).unwrap(), false));
            }
        }
    }
    out
}

#[test]
fn module_dependencies_run_one_way() {
    let rank = |m: &str| ORDER.iter().position(|o| *o == m);
    let mut wrong = Vec::new();
    for (module, src, nested) in sources() {
        let me = rank(&module).unwrap_or_else(|| panic!("{module} is not in ORDER"));
        for dep in dependencies(&src, nested) {
            match rank(&dep) {
                Some(r) if r < me || dep == module => {}
                Some(_) => wrong.push(format!("{module} uses {dep}, which comes after it")),
                None => {} // a submodule of this module (e.g. memcheck's quarantine)
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_allocator_source_is_checked() {
    let modules: Vec<String> = sources().into_iter().map(|(m, _, _)| m).collect();
    for m in ORDER {
        assert!(modules.iter().any(|x| x == m), "no source for {m}");
    }
    // The parser sees what it must: a brace list and a nested path.
    let deps = dependencies(
        "use super::{arena, pool::CLASSES, self};\nuse super::sys;",
        false,
    );
    assert_eq!(deps, ["arena", "pool", "sys"]);
}
