//! Asking valgrind itself whether it accepts a suppression file (`poolgrind supp check --valgrind`).
//!
//! The parser mirrors valgrind's grammar, but the final word is valgrind's: it reads every
//! `--suppressions` file at start-up and exits with a message naming the file and line
//! ("FATAL: in suppressions file "F" near line N: …") if one is bad. Running `true` under it
//! costs about 0.3 s.

use std::path::Path;
use std::process::Command;

/// Runs `valgrind --suppressions=FILE… true`. `Ok(())` if valgrind exits 0; otherwise its
/// complaint (the FATAL lines when present, else its whole stderr).
pub fn valgrind_accepts(valgrind: &Path, files: &[&Path]) -> Result<(), String> {
    let mut cmd = Command::new(valgrind);
    cmd.arg("--tool=memcheck").arg("-q");
    for f in files {
        let mut a = std::ffi::OsString::from("--suppressions=");
        a.push(f.as_os_str());
        cmd.arg(a);
    }
    cmd.arg("true");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", valgrind.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let mut msg: Vec<String> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.contains("FATAL") || l.contains("Assertion") || l.contains("line longer") {
            msg.push(strip_pid(l));
            if let Some(next) = lines.get(i + 1) {
                if l.contains("FATAL") {
                    msg.push(strip_pid(next));
                }
            }
        }
    }
    if msg.is_empty() {
        msg.push(err.trim().to_string());
    }
    Err(format!(
        "valgrind rejected the suppressions (exit {}): {}",
        out.status
            .code()
            .map_or("signal".to_string(), |c| c.to_string()),
        msg.join(" ")
    ))
}

/// `==123==    text` → `text`.
fn strip_pid(l: &str) -> String {
    let t = l.trim_start();
    if let Some(rest) = t.strip_prefix("==") {
        if let Some(i) = rest.find("==") {
            return rest[i + 2..].trim().to_string();
        }
    }
    t.trim().to_string()
}
