//! Running many programs under memcheck: `-j N` valgrind processes at once, skip lists,
//! partitions, and a progress bar on a terminal.
//!
//! Valgrind serialises a client's threads, so parallelism comes from running several valgrind
//! processes. Each job gets its own XML directory; with more than one worker, each job's output
//! goes to `<xml root>/job-N.out` instead of interleaving on the terminal.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::results::{test_from_argv, ProcessRecord};
use super::run::{find_valgrind, run_under_memcheck, Output, RunConfig, RunError};
use super::select::{Partition, SkipList};

/// One unit of work.
#[derive(Debug, Clone)]
pub struct Job {
    /// Name used for skip lists, partitions and the progress bar.
    pub key: String,
    /// Program and arguments.
    pub command: Vec<OsString>,
}

/// How to run a batch.
#[derive(Debug, Clone, Default)]
pub struct BatchOptions {
    /// Parallel valgrind processes (0 or 1: one at a time).
    pub jobs: usize,
    /// Skip list.
    pub skip: SkipList,
    /// CI shard.
    pub partition: Option<Partition>,
    /// Show a progress bar (only on a terminal).
    pub progress: bool,
    /// Parent directory of the per-job XML directories.
    pub xml_root: PathBuf,
}

/// Whether a key is selected; returns the reason when it is not.
pub fn skip_reason(
    key: &str,
    test: Option<&str>,
    skip: &SkipList,
    partition: Option<&Partition>,
) -> Option<String> {
    if let Some(p) = skip.matches(key, test) {
        return Some(format!("matches skip pattern `{p}`"));
    }
    if let Some(part) = partition {
        if !part.contains(key) {
            return Some(format!("not in partition {}/{}", part.index, part.count));
        }
    }
    None
}

/// Runs `jobs` (each with `base`'s options) and returns one record per job, in job order.
///
/// Fails only when valgrind itself cannot be found; a job that cannot start becomes a record with
/// `setup_error`.
pub fn run_batch(
    base: &RunConfig,
    jobs: &[Job],
    opts: &BatchOptions,
) -> Result<Vec<ProcessRecord>, RunError> {
    find_valgrind(base.settings.valgrind.as_deref())?;
    let workers = opts.jobs.max(1).min(jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<ProcessRecord>>> = Mutex::new(vec![None; jobs.len()]);
    let bar = (opts.progress && jobs.len() > 1).then(|| {
        let bar = indicatif::ProgressBar::new(jobs.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} memcheck [{bar:30}] {pos}/{len} {elapsed} {wide_msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(i) else { break };
                if let Some(bar) = &bar {
                    bar.set_message(job.key.clone());
                }
                let record = run_job(base, job, i, workers, opts);
                if let Some(bar) = &bar {
                    bar.inc(1);
                }
                if let Ok(mut s) = slots.lock() {
                    s[i] = Some(record);
                }
            });
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let slots = slots.into_inner().unwrap_or_default();
    Ok(slots.into_iter().map(Option::unwrap_or_default).collect())
}

fn run_job(
    base: &RunConfig,
    job: &Job,
    index: usize,
    workers: usize,
    opts: &BatchOptions,
) -> ProcessRecord {
    let argv: Vec<String> = job
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let test = test_from_argv(&argv);
    if let Some(reason) = skip_reason(
        &job.key,
        test.as_deref(),
        &opts.skip,
        opts.partition.as_ref(),
    ) {
        return ProcessRecord {
            argv,
            test,
            skipped: true,
            setup_error: Some(reason),
            ..ProcessRecord::default()
        };
    }
    let mut cfg = base.clone();
    cfg.command = job.command.clone();
    cfg.xml_dir = opts.xml_root.join(format!("job-{index}"));
    if workers > 1 {
        cfg.output = Output::File(opts.xml_root.join(format!("job-{index}.out")));
    }
    match run_under_memcheck(&cfg) {
        Ok(outcome) => outcome.record,
        Err(e) => ProcessRecord {
            argv,
            test,
            setup_error: Some(e.to_string()),
            ..ProcessRecord::default()
        },
    }
}

/// Reads a batch file: one command (or argument list) per line, split on whitespace with
/// `'…'`/`"…"` quoting; blank lines and `#` comments ignored. Each line is appended to `prefix`.
pub fn read_batch_file(path: &std::path::Path, prefix: &[OsString]) -> std::io::Result<Vec<Job>> {
    let text = std::fs::read_to_string(path)?;
    let mut jobs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut command = prefix.to_vec();
        command.extend(split_words(line).into_iter().map(OsString::from));
        jobs.push(Job {
            key: line.to_string(),
            command,
        });
    }
    Ok(jobs)
}

/// Splits a line into words: whitespace separates, single or double quotes group.
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut has = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                has = true;
            }
            (None, c) if c.is_whitespace() => {
                if has || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if has || !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_with_quotes() {
        assert_eq!(
            split_words(r#"-m test "a b" 'c' d"#),
            vec!["-m", "test", "a b", "c", "d"]
        );
        assert_eq!(split_words("  "), Vec::<String>::new());
    }
}
