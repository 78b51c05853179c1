//! The benchmark harness (issue 6). Modes:
//!
//! - `harness native [--rounds N] [--scale F] [--workloads a,b,…]`: the workloads of the
//!   library, every allocator in this one process, rounds interleaved and rotated (round `r`
//!   starts with allocator `r mod 4`), one warm-up round discarded. Prints best, median and
//!   range of ns/op per allocator, and the ratio to glibc and to mimalloc (the median of the
//!   per-round ratios: the two runs of a round are milliseconds apart, so machine load that
//!   drifts between rounds cancels out).
//! - `harness single WORKLOAD ALLOC [--reps K] [--ops N]`: one workload on one allocator in a
//!   fresh process; prints `ns_per_op=… rss_start_kib=… vmhwm_kib=…`. The peak-RSS table and
//!   the inactive-instrumentation comparison spawn this.
//! - `harness rss [--reps K]`: peak RSS of every workload × allocator, each in its own process.
//! - `harness procs [--rounds N] [--metric KEY] [--ref LABEL] SPEC`: times whole commands as
//!   processes, interleaved and rotated. SPEC has one command a line, `label | ENV=v … | argv`
//!   (`-` for no environment). The first line is the baseline of the ratios. With `--metric
//!   KEY` the value is parsed from the child's stdout (`KEY=value`) instead of wall time.
//!   Peak RSS comes from `wait4`; if the child ran under Valgrind, its `ERROR SUMMARY` count
//!   is shown too.

use std::alloc::System;
use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

use poolgrind::PoolAlloc;
use poolgrind_bench::{default_ops, run, Run, WORKLOADS};

const ALLOCS: &[&str] = &["pool", "glibc", "mimalloc", "jemalloc"];

fn run_on(alloc: &str, workload: &str, ops: u64) -> Run {
    match alloc {
        "pool" => run(&PoolAlloc::new(), workload, ops),
        "glibc" => run(&System, workload, ops),
        "mimalloc" => run(&mimalloc::MiMalloc, workload, ops),
        "jemalloc" => run(&tikv_jemallocator::Jemalloc, workload, ops),
        _ => die(&format!("unknown allocator {alloc} (one of {ALLOCS:?})")),
    }
}

fn die(msg: &str) -> ! {
    eprintln!("harness: {msg}");
    std::process::exit(2)
}

/// Median, min, max of a non-empty sample.
fn summary(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (med, s[0], s[n - 1])
}

struct Args {
    pos: Vec<String>,
    opts: HashMap<String, String>,
}

fn parse_args(raw: &[String]) -> Args {
    let mut pos = Vec::new();
    let mut opts = HashMap::new();
    let mut i = 0;
    while i < raw.len() {
        if let Some(k) = raw[i].strip_prefix("--") {
            let v = raw
                .get(i + 1)
                .unwrap_or_else(|| die(&format!("--{k} needs a value")));
            opts.insert(k.to_string(), v.clone());
            i += 2;
        } else {
            pos.push(raw[i].clone());
            i += 1;
        }
    }
    Args { pos, opts }
}

impl Args {
    fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> T {
        self.opts.get(k).map_or(default, |v| {
            v.parse().unwrap_or_else(|_| die(&format!("bad --{k} {v}")))
        })
    }
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mode = raw.first().cloned().unwrap_or_default();
    let args = parse_args(raw.get(1..).unwrap_or(&[]));
    match mode.as_str() {
        "native" => native(&args),
        "single" => single(&args),
        "rss" => rss(&args),
        "procs" => procs(&args),
        _ => die("usage: harness native|single|rss|procs … (see src/main.rs)"),
    }
}

fn scaled(workload: &str, scale: f64) -> u64 {
    ((default_ops(workload) as f64 * scale).round() as u64).max(1)
}

fn native(args: &Args) {
    let rounds: usize = args.num("rounds", 15);
    let scale: f64 = args.num("scale", 1.0);
    let workloads: Vec<String> = args.opts.get("workloads").map_or_else(
        || WORKLOADS.iter().map(|s| s.to_string()).collect(),
        |w| w.split(',').map(str::to_string).collect(),
    );
    // samples[workload][alloc] = ns/op per round
    let mut samples: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); ALLOCS.len()]; workloads.len()];
    let t0 = Instant::now();
    for round in 0..=rounds {
        for (wi, w) in workloads.iter().enumerate() {
            let ops = scaled(w, scale);
            for k in 0..ALLOCS.len() {
                let ai = (round + k) % ALLOCS.len();
                let r = run_on(ALLOCS[ai], w, ops);
                if round > 0 {
                    samples[wi][ai].push(r.ns_per_op());
                }
            }
        }
    }
    println!(
        "native, in one process: {rounds} rounds (+1 warm-up) interleaved and rotated, {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    println!();
    println!("| workload | allocator | best ns/op | median ns/op | range ns/op | ×glibc (median [min–max]) | ×mimalloc (median) |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (wi, w) in workloads.iter().enumerate() {
        let glibc = &samples[wi][1];
        let mi = &samples[wi][2];
        for (ai, a) in ALLOCS.iter().enumerate() {
            let s = &samples[wi][ai];
            let (med, lo, hi) = summary(s);
            let vs =
                |base: &Vec<f64>| -> Vec<f64> { s.iter().zip(base).map(|(x, b)| x / b).collect() };
            let (rg, rglo, rghi) = summary(&vs(glibc));
            let (rm, _, _) = summary(&vs(mi));
            println!(
                "| {w} | {a} | {lo:.2} | {med:.2} | {lo:.2}–{hi:.2} | {rg:.2} [{rglo:.2}–{rghi:.2}] | {rm:.2} |"
            );
        }
    }
}

fn status_kib(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn single(args: &Args) {
    if args.pos.len() != 2 {
        die("usage: harness single WORKLOAD ALLOC [--reps K] [--ops N]");
    }
    let (w, a) = (&args.pos[0], &args.pos[1]);
    let reps: usize = args.num("reps", 5);
    let ops: u64 = args.num("ops", default_ops(w));
    let rss0 = status_kib("VmRSS:");
    let runs: Vec<Run> = (0..reps).map(|_| run_on(a, w, ops)).collect();
    let ns: Vec<f64> = runs.iter().map(Run::ns_per_op).collect();
    let (med, lo, _) = summary(&ns);
    println!(
        "workload={w} alloc={a} ops={} ns_per_op={med:.3} best_ns_per_op={lo:.3} rss_start_kib={rss0} vmhwm_kib={}",
        runs.iter().map(|r| r.ops).sum::<u64>(),
        status_kib("VmHWM:")
    );
}

fn kv(out: &str, key: &str) -> Option<f64> {
    out.split_whitespace()
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

fn rss(args: &Args) {
    let reps: usize = args.num("reps", 3);
    let exe = std::env::current_exe().expect("current exe");
    println!("peak RSS, one process per workload × allocator ({reps} runs of the workload each): VmHWM minus VmRSS at start, KiB");
    println!();
    println!("| workload | pool | glibc | mimalloc | jemalloc | pool ÷ glibc |");
    println!("|---|---:|---:|---:|---:|---:|");
    for w in WORKLOADS {
        let mut row = Vec::new();
        for a in ALLOCS {
            let out = Command::new(&exe)
                .args(["single", w, a, "--reps", &reps.to_string()])
                .output()
                .expect("spawn harness single");
            let s = String::from_utf8_lossy(&out.stdout);
            let peak =
                kv(&s, "vmhwm_kib").unwrap_or(f64::NAN) - kv(&s, "rss_start_kib").unwrap_or(0.0);
            row.push(peak);
        }
        println!(
            "| {w} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
            row[0],
            row[1],
            row[2],
            row[3],
            row[0] / row[1]
        );
    }
}

struct Spec {
    label: String,
    env: Vec<(String, String)>,
    argv: Vec<String>,
}

fn read_spec(path: &str) -> Vec<Spec> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| die(&format!("{path}: {e}")));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            let parts: Vec<&str> = l.splitn(3, '|').map(str::trim).collect();
            if parts.len() != 3 {
                die(&format!("bad spec line (label | env | argv): {l}"));
            }
            let env = if parts[1] == "-" {
                Vec::new()
            } else {
                parts[1]
                    .split_whitespace()
                    .map(|kv| {
                        let (k, v) = kv
                            .split_once('=')
                            .unwrap_or_else(|| die(&format!("bad env {kv}")));
                        (k.to_string(), v.to_string())
                    })
                    .collect()
            };
            Spec {
                label: parts[0].to_string(),
                env,
                argv: parts[2].split_whitespace().map(str::to_string).collect(),
            }
        })
        .collect()
}

struct ProcRun {
    value: f64,
    maxrss_kib: i64,
    vg_errors: Option<u64>,
}

fn run_proc(s: &Spec, metric: Option<&str>) -> ProcRun {
    let errf = tempfile_path();
    let err = std::fs::File::create(&errf).expect("stderr file");
    let t = Instant::now();
    let mut child = Command::new(&s.argv[0])
        .args(&s.argv[1..])
        .envs(s.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap_or_else(|e| die(&format!("{}: {e}", s.argv[0])));
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)
        .expect("read child stdout");
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: `pid` is our child and has not been waited for (Child is never waited on).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = t.elapsed().as_secs_f64();
    let errtext = std::fs::read_to_string(&errf).unwrap_or_default();
    let _ = std::fs::remove_file(&errf);
    if r != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        die(&format!(
            "{} failed (status {status}): {}",
            s.label,
            errtext
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" / ")
        ));
    }
    let value = match metric {
        None => wall,
        Some(k) => {
            kv(&out, k).unwrap_or_else(|| die(&format!("{}: no {k}= in output: {out}", s.label)))
        }
    };
    let vg_errors = errtext
        .lines()
        .filter_map(|l| l.split_once("ERROR SUMMARY: "))
        .filter_map(|(_, r)| r.split_whitespace().next()?.parse().ok())
        .last();
    ProcRun {
        value,
        maxrss_kib: ru.ru_maxrss,
        vg_errors,
    }
}

fn tempfile_path() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "poolgrind-bench-{}-{}.err",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

fn procs(args: &Args) {
    if args.pos.len() != 1 {
        die("usage: harness procs [--rounds N] [--metric KEY] [--ref LABEL] [--warmup 0|1] SPEC");
    }
    let specs = read_spec(&args.pos[0]);
    let rounds: usize = args.num("rounds", 5);
    let warmup: usize = args.num("warmup", 1);
    let metric = args.opts.get("metric").map(String::as_str);
    let reference = args
        .opts
        .get("ref")
        .and_then(|l| specs.iter().position(|s| &s.label == l));
    let n = specs.len();
    let mut vals: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut errs: Vec<Option<u64>> = vec![None; n];
    let t0 = Instant::now();
    for round in 0..rounds + warmup {
        for k in 0..n {
            let i = (round + k) % n;
            let r = run_proc(&specs[i], metric);
            if round >= warmup {
                vals[i].push(r.value);
                rss[i].push(r.maxrss_kib as f64);
            }
            if let Some(e) = r.vg_errors {
                errs[i] = Some(errs[i].unwrap_or(0).max(e));
            }
        }
    }
    let unit = metric.unwrap_or("wall s");
    println!(
        "{rounds} rounds{} interleaved and rotated, {:.0} s in all",
        if warmup > 0 { " (+1 warm-up)" } else { "" },
        t0.elapsed().as_secs_f64()
    );
    println!();
    let refcol = reference
        .map(|r| format!(" ×{} |", specs[r].label))
        .unwrap_or_default();
    let any_vg = errs.iter().any(Option::is_some);
    println!(
        "| command | median {unit} | range | ×{} (median [min–max]) |{refcol} peak RSS MiB |{}",
        specs[0].label,
        if any_vg { " valgrind errors |" } else { "" }
    );
    println!(
        "|---|---:|---:|---:|{}---:|{}",
        if reference.is_some() { "---:|" } else { "" },
        if any_vg { "---:|" } else { "" }
    );
    for i in 0..n {
        let (med, lo, hi) = summary(&vals[i]);
        let ratio = |b: usize| -> (f64, f64, f64) {
            summary(
                &vals[i]
                    .iter()
                    .zip(&vals[b])
                    .map(|(x, y)| x / y)
                    .collect::<Vec<_>>(),
            )
        };
        let (r0, r0lo, r0hi) = ratio(0);
        let refv = reference
            .map(|r| format!(" {:.2} |", ratio(r).0))
            .unwrap_or_default();
        let (rs, _, _) = summary(&rss[i]);
        let prec = if metric.is_some() { 2 } else { 3 };
        println!(
            "| {} | {med:.prec$} | {lo:.prec$}–{hi:.prec$} | {r0:.2} [{r0lo:.2}–{r0hi:.2}] |{refv} {:.1} |{}",
            specs[i].label,
            rs / 1024.0,
            if any_vg {
                format!(" {} |", errs[i].map_or("-".to_string(), |e| e.to_string()))
            } else {
                String::new()
            }
        );
    }
}
