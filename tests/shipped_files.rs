//! The files the `poolgrind` binary carries (preload library, suppression files): written out to a
//! cache directory on first use, found again, repaired when damaged, overridable, and a clear
//! error when nowhere can be written. The installed-binary case end to end (source tree gone) is
//! `ci/install-check`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn poolgrind(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_poolgrind"));
    c.env("POOLGRIND_CACHE_DIR", cache)
        .env_remove("POOLGRIND_PRELOAD_LIB")
        .env_remove("POOLGRIND_SUPP_DIR");
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let o = c.output().expect("run poolgrind");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn printed_path(c: &mut Command) -> PathBuf {
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.lines().count(), 1, "one path: {out:?}");
    PathBuf::from(out.trim_end())
}

#[test]
fn preload_path_writes_the_embedded_library_once_and_repairs_a_damaged_copy() {
    let cache = tempfile::tempdir().unwrap();
    let lib = printed_path(poolgrind(cache.path()).arg("preload-path"));
    assert!(lib.starts_with(cache.path()), "{}", lib.display());
    assert_eq!(lib.file_name().unwrap(), "libpoolgrind.so");
    let dir = lib.parent().unwrap().file_name().unwrap().to_string_lossy();
    assert!(
        dir.starts_with(concat!(env!("CARGO_PKG_VERSION"), "-")),
        "per-version directory: {dir}"
    );
    let bytes = std::fs::read(&lib).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF");

    // Found again, same place, same bytes.
    assert_eq!(
        printed_path(poolgrind(cache.path()).arg("preload-path")),
        lib
    );
    // A copy cut short (a crash mid-write, a full disk) is rewritten before use.
    std::fs::write(&lib, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(
        printed_path(poolgrind(cache.path()).arg("preload-path")),
        lib
    );
    assert_eq!(std::fs::read(&lib).unwrap(), bytes);
}

#[test]
fn supp_dir_holds_the_default_set_and_the_program_files() {
    let cache = tempfile::tempdir().unwrap();
    let dir = printed_path(poolgrind(cache.path()).args(["preload-path", "--supp-dir"]));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("supp");
    for f in ["poolgrind.supp", "rust-std.supp", "programs/python3.supp"] {
        assert_eq!(
            std::fs::read_to_string(dir.join(f)).unwrap(),
            std::fs::read_to_string(src.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn environment_overrides_win_and_a_missing_override_is_an_error() {
    let cache = tempfile::tempdir().unwrap();
    let other = cache.path().join("mine.so");
    std::fs::write(&other, b"not checked").unwrap();
    let p = printed_path(
        poolgrind(cache.path())
            .env("POOLGRIND_PRELOAD_LIB", &other)
            .arg("preload-path"),
    );
    assert_eq!(p, other);
    let p = printed_path(
        poolgrind(cache.path())
            .env("POOLGRIND_SUPP_DIR", cache.path())
            .args(["preload-path", "--supp-dir"]),
    );
    assert_eq!(p, cache.path());
    // The run's report (stdout) names the problem; exit 3 is a setup error.
    let (code, out, err) = run(poolgrind(cache.path())
        .env("POOLGRIND_SUPP_DIR", cache.path().join("nowhere"))
        .args(["run", "--", "true"]));
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        out.contains("POOLGRIND_SUPP_DIR") && out.contains("nowhere"),
        "{out}\n{err}"
    );
}

#[test]
fn unwritable_cache_is_a_setup_error_naming_the_place_and_the_variable() {
    let cache = tempfile::tempdir().unwrap();
    // A directory below a regular file cannot be created, whoever runs the test (root included).
    let file = cache.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let (code, out, err) = run(poolgrind(&file.join("cache")).arg("preload-path"));
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("a-file/cache"), "{err}");
    assert!(err.contains("POOLGRIND_CACHE_DIR"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
