//! What the `poolgrind` binary carries inside itself: the preload library and the shipped
//! suppression files, so that an installed binary (`cargo install poolgrind`, the source tree
//! gone) still has both.
//!
//! valgrind and the dynamic loader want paths, not bytes, so the embedded files are written out
//! on first use to a cache directory of this build:
//!
//! ```text
//! $POOLGRIND_CACHE_DIR, else $XDG_CACHE_HOME/poolgrind, else ~/.cache/poolgrind,
//! else <tmp>/poolgrind-<uid> (created 0700, must be ours)
//!   └── <version>-<hash>/           hash: FNV-1a of every embedded file (name and bytes)
//!         ├── libpoolgrind.so
//!         └── supp/poolgrind.supp, supp/rust-std.supp, supp/programs/python3.supp
//! ```
//!
//! Two builds never share a directory (the hash), and every use compares the file with the
//! embedded bytes (a few hundred kilobytes: well under a millisecond) and rewrites it when it
//! differs (a crash mid-write, an edit): a written file is always this build's. Writes go to a
//! temporary name and are renamed into place, so concurrent poolgrind processes (parallel CI
//! jobs, `poolgrind cargo`'s children) never see half a file. If a candidate base directory cannot
//! be written (a read-only home in a container), the next one is tried.
//!
//! How the library gets into the binary is `build.rs`'s business (a nested `cargo build` of the
//! allocator alone; the reasons are there).

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Environment variable: base directory for the files the binary writes out (see the module docs).
pub const ENV_CACHE_DIR: &str = "POOLGRIND_CACHE_DIR";

/// The preload library (`libpoolgrind.so`: the allocator alone, release profile), built by
/// `build.rs`. Empty when the build had no library to embed (docs.rs).
pub static PRELOAD_LIB: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/libpoolgrind-preload.so"));

include!(concat!(env!("OUT_DIR"), "/shipped_supp.rs"));

/// The shipped suppression files valgrind gets by default: those directly in `supp/` (not
/// `supp/programs/`, which are per-program files passed with `--suppressions`).
pub fn default_supp_names() -> impl Iterator<Item = &'static str> {
    SHIPPED_SUPP
        .iter()
        .map(|(name, _)| *name)
        .filter(|n| !n.contains('/'))
}

/// 64-bit FNV-1a: a stable content hash without a dependency (not for security: the files are
/// compared byte for byte anyway).
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Name of this build's cache directory: `<version>-<16 hex digits>`.
pub fn build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut h = fnv1a(0xcbf2_9ce4_8422_2325, b"libpoolgrind.so\0");
        h = fnv1a(h, PRELOAD_LIB);
        for (name, text) in SHIPPED_SUPP {
            h = fnv1a(h, name.as_bytes());
            h = fnv1a(h, b"\0");
            h = fnv1a(h, text.as_bytes());
        }
        format!("{}-{h:016x}", env!("CARGO_PKG_VERSION"))
    })
}

/// The candidate base directories, in order (see the module docs), each with whether it is a
/// shared location that must be created private and checked for ownership.
fn base_candidates() -> Vec<(PathBuf, bool)> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(dir) = var(ENV_CACHE_DIR) {
        return vec![(dir, false)];
    }
    let mut out = Vec::new();
    if let Some(xdg) = var("XDG_CACHE_HOME") {
        out.push((xdg.join("poolgrind"), false));
    } else if let Some(home) = var("HOME") {
        out.push((home.join(".cache").join("poolgrind"), false));
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    out.push((std::env::temp_dir().join(format!("poolgrind-{uid}")), true));
    out
}

/// Creates `dir` (and parents). A shared location is created 0700 and must be a real directory
/// owned by us that nobody else can write: otherwise another user could plant a library there.
fn prepare_base(dir: &Path, shared: bool) -> std::io::Result<()> {
    if !shared {
        return std::fs::create_dir_all(dir);
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
        return Err(std::io::Error::other(format!(
            "{} is not a private directory of this user",
            dir.display()
        )));
    }
    Ok(())
}

/// Makes `path` hold exactly `bytes` (mode `mode`): nothing to do when it already does,
/// otherwise written to a temporary file beside it and renamed into place.
fn ensure_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    if let Ok(existing) = std::fs::read(path) {
        if existing == bytes {
            return Ok(());
        }
    }
    let dir = path.parent().expect("a file in the cache directory");
    std::fs::create_dir_all(dir)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = path.file_name().expect("a file name").to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `files` (relative path, bytes, mode) under this build's directory of the first usable
/// base directory and returns that directory. The error lists every place tried.
fn materialize(files: &[(&str, &[u8], u32)]) -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    for (base, shared) in base_candidates() {
        let dir = base.join(build_id());
        let attempt = prepare_base(&base, shared).and_then(|()| {
            files
                .iter()
                .try_for_each(|(rel, bytes, mode)| ensure_file(&dir.join(rel), bytes, *mode))
        });
        match attempt {
            Ok(()) => return Ok(dir),
            Err(e) => tried.push(format!("{}: {e}", dir.display())),
        }
    }
    Err(tried.join("; "))
}

/// The embedded preload library written out: its path, or `None` when this build embeds none.
/// `Err` says where writing it failed.
pub fn preload_lib() -> Option<Result<PathBuf, String>> {
    if PRELOAD_LIB.is_empty() {
        return None;
    }
    Some(materialize(&[("libpoolgrind.so", PRELOAD_LIB, 0o755)]).map(|d| d.join("libpoolgrind.so")))
}

/// The embedded suppression files written out; returns the directory holding them (the
/// default set at its top, per-program files in `programs/`).
pub fn supp_dir() -> Result<PathBuf, String> {
    let files: Vec<(String, &[u8], u32)> = SHIPPED_SUPP
        .iter()
        .map(|(name, text)| (format!("supp/{name}"), text.as_bytes(), 0o644))
        .collect();
    let refs: Vec<(&str, &[u8], u32)> =
        files.iter().map(|(n, b, m)| (n.as_str(), *b, *m)).collect();
    materialize(&refs).map(|d| d.join("supp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_supp_list_names_no_absolute_path() {
        // The generated list is shared by every checkout built into the same target directory
        // (see build.rs): it must name the files relative to the compiling crate.
        let generated = include_str!(concat!(env!("OUT_DIR"), "/shipped_supp.rs"));
        assert!(!SHIPPED_SUPP.is_empty());
        assert!(
            !generated.contains(env!("CARGO_MANIFEST_DIR")),
            "absolute path in the generated list:\n{generated}"
        );
    }

    #[test]
    fn fnv1a_matches_the_reference_values() {
        // Test vectors of the FNV reference (draft-eastlake-fnv): "" and "a".
        assert_eq!(fnv1a(0xcbf2_9ce4_8422_2325, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(0xcbf2_9ce4_8422_2325, b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn embedded_preload_library_is_an_elf_shared_object_exporting_malloc() {
        assert!(PRELOAD_LIB.len() > 10_000, "{} bytes", PRELOAD_LIB.len());
        assert_eq!(&PRELOAD_LIB[..4], b"\x7fELF");
        // e_type (offset 16, little endian) is ET_DYN.
        assert_eq!(u16::from_le_bytes([PRELOAD_LIB[16], PRELOAD_LIB[17]]), 3);
        let has = |name: &[u8]| PRELOAD_LIB.windows(name.len()).any(|w| w == name);
        assert!(has(b"poolgrind_malloc\0"));
        assert!(has(b"malloc_usable_size\0"));
    }

    #[test]
    fn embedded_suppression_files_are_the_source_trees() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("supp");
        let mut on_disk = Vec::new();
        for dir in [root.clone(), root.join("programs")] {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "supp") {
                    let rel = p.strip_prefix(&root).unwrap().to_str().unwrap().to_string();
                    on_disk.push((rel, std::fs::read_to_string(&p).unwrap()));
                }
            }
        }
        on_disk.sort();
        let embedded: Vec<(String, String)> = SHIPPED_SUPP
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(embedded, on_disk);
        let defaults: Vec<&str> = default_supp_names().collect();
        assert_eq!(defaults, ["poolgrind.supp", "rust-std.supp"]);
    }

    #[test]
    fn ensure_file_rewrites_a_corrupted_copy_and_leaves_a_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/libx.so");
        ensure_file(&path, b"right bytes", 0o755).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"right bytes");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o755);
        let before = std::fs::metadata(&path).unwrap().ino();
        ensure_file(&path, b"right bytes", 0o755).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            before,
            "rewritten needlessly"
        );
        std::fs::write(&path, b"right by").unwrap(); // a write cut short
        ensure_file(&path, b"right bytes", 0o755).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"right bytes");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["libx.so"]);
    }

    #[test]
    fn shared_base_directory_owned_by_someone_else_or_open_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("poolgrind-x");
        prepare_base(&base, true).unwrap();
        assert_eq!(std::fs::metadata(&base).unwrap().mode() & 0o777, 0o700);
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = prepare_base(&base, true).unwrap_err();
        assert!(err.to_string().contains("not a private directory"), "{err}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert!(
            prepare_base(&link, true).is_err(),
            "a symlink is not a private directory"
        );
    }
}
