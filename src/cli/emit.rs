//! From results to output files and an exit code.

use std::path::Path;

use anyhow::Context as _;

use super::args::{ColorArg, FormatArg, OutputArgs, PolicyArgs};
use crate::check::exit::CliError;
use crate::check::policy::{parse_fail_on, parse_leak_kinds, Baseline, Policy, Verdict};
use crate::check::report::{self, human, Format};
use crate::check::results::Results;

/// Builds the policy from the command line (reads the baseline file).
pub fn policy(args: &PolicyArgs) -> anyhow::Result<Policy> {
    let baseline = match &args.baseline {
        Some(path) => Some(Baseline::load(path).map_err(|e| CliError::Input(e.to_string()))?),
        None => None,
    };
    // The values were checked by clap; an error here is still a usage error.
    let usage = |e: crate::check::policy::PolicyError| CliError::Usage(e.to_string());
    Ok(Policy {
        leak_kinds: parse_leak_kinds(&args.leak_kinds).map_err(usage)?,
        fail_on: parse_fail_on(&args.fail_on).map_err(usage)?,
        baseline,
    })
}

fn format_of(f: FormatArg) -> Format {
    match f {
        FormatArg::Human => Format::Human,
        FormatArg::Json => Format::Json,
        FormatArg::Junit => Format::Junit,
        FormatArg::Sarif => Format::Sarif,
    }
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes the report(s) and the baseline, and returns the exit code of the results.
pub fn emit(results: &Results, out: &OutputArgs, policy_args: &PolicyArgs) -> anyhow::Result<i32> {
    let color = match out.color {
        ColorArg::Always => true,
        ColorArg::Never => false,
        ColorArg::Auto => human::stdout_wants_color(),
    };
    let base_dir = std::env::current_dir()
        .ok()
        .map(|d| d.display().to_string());
    let opts = human::HumanOptions {
        color,
        verbose: out.verbose,
        base_dir,
        max_frames: 0,
    };
    let format = format_of(out.format);
    match &out.output {
        Some(path) => {
            let plain = human::HumanOptions {
                color: false,
                ..opts.clone()
            };
            write_file(path, &report::render(results, format, &plain))?;
            print!("{}", human::render(results, &opts));
        }
        None => print!("{}", report::render(results, format, &opts)),
    }
    if let Some(path) = &policy_args.write_baseline {
        let baseline = Baseline::from_entries(
            results
                .errors
                .iter()
                .filter(|e| e.verdict != Verdict::Ignored)
                .map(|e| (e.fingerprint.clone(), e.fingerprint_key.clone())),
        );
        let text = serde_json::to_string_pretty(&baseline)? + "\n";
        write_file(path, &text)?;
        eprintln!(
            "poolgrind: wrote {} known errors to {}",
            baseline.errors.len(),
            path.display()
        );
    }
    Ok(results.summary.exit_code)
}
