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
//! - `harness procs [--rounds N] [--metric KEY] [--warmup 0|1] SPEC`: times whole commands as
//!   processes, interleaved and rotated. SPEC has one command a line, `label | ENV=v … | argv`
//!   (`-` for no environment). With `--metric
//!   KEY` the value is parsed from the child's stdout (`KEY=value`) instead of wall time.
//!   Peak RSS comes from `wait4`; if the child ran under Valgrind, its `ERROR SUMMARY` count
//!   is shown too. Labels `group/name` are compared with the first line of their group.
//! - `harness ir [--workloads a,b] [--allocs a,b] [--exes LABEL=PATH,…]`: instructions per op
//!   under callgrind (two runs with N and 2N ops, differenced), per allocator and build.

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
        "ir" => ir(&args),
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
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    println!(
        "workload={w} alloc={a} ops={} ns_per_op={med:.3} best_ns_per_op={lo:.3} minflt={} rss_start_kib={rss0} vmhwm_kib={}",
        runs.iter().map(|r| r.ops).sum::<u64>(),
        ru.ru_minflt,
        status_kib("VmHWM:")
    );
}

fn kv(out: &str, key: &str) -> Option<f64> {
    out.split_whitespace()
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

fn rss(args: &Args) {
    let reps: usize = args.num("reps", 3);
    let procs: usize = args.num("procs", 3);
    let exe = std::env::current_exe().expect("current exe");
    // peaks[w][a], faults[w][a]: medians over the processes
    let mut peaks = Vec::new();
    let mut faults = Vec::new();
    for w in WORKLOADS {
        let mut prow = Vec::new();
        let mut frow = Vec::new();
        for a in ALLOCS {
            let mut p = Vec::new();
            let mut f = Vec::new();
            for _ in 0..procs {
                let out = Command::new(&exe)
                    .args(["single", w, a, "--reps", &reps.to_string()])
                    .output()
                    .expect("spawn harness single");
                let s = String::from_utf8_lossy(&out.stdout);
                p.push(
                    kv(&s, "vmhwm_kib").unwrap_or(f64::NAN)
                        - kv(&s, "rss_start_kib").unwrap_or(0.0),
                );
                f.push(kv(&s, "minflt").unwrap_or(f64::NAN));
            }
            prow.push(summary(&p).0);
            frow.push(summary(&f).0);
        }
        peaks.push(prow);
        faults.push(frow);
    }
    println!("peak RSS: VmHWM minus VmRSS at start, KiB; median of {procs} processes per workload × allocator, each running the workload {reps} times");
    println!();
    println!("| workload | pool | glibc | mimalloc | jemalloc | pool ÷ glibc |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (w, row) in WORKLOADS.iter().zip(&peaks) {
        let ratio = if row[1] >= 256.0 {
            format!("{:.2}", row[0] / row[1])
        } else {
            "n/a (< 256 KiB)".to_string()
        };
        println!(
            "| {w} | {:.0} | {:.0} | {:.0} | {:.0} | {ratio} |",
            row[0], row[1], row[2], row[3]
        );
    }
    println!();
    println!("minor page faults of the same processes (whole process, median): memory mapped and touched again");
    println!();
    println!("| workload | pool | glibc | mimalloc | jemalloc |");
    println!("|---|---:|---:|---:|---:|");
    for (w, row) in WORKLOADS.iter().zip(&faults) {
        println!(
            "| {w} | {:.0} | {:.0} | {:.0} | {:.0} |",
            row[0], row[1], row[2], row[3]
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

/// The group of a label `group/name` (labels without `/` form one group).
fn group(label: &str) -> &str {
    label.split_once('/').map_or("", |(g, _)| g)
}

fn procs(args: &Args) {
    if args.pos.len() != 1 {
        die("usage: harness procs [--rounds N] [--metric KEY] [--warmup 0|1] SPEC");
    }
    let specs = read_spec(&args.pos[0]);
    let rounds: usize = args.num("rounds", 5);
    let warmup: usize = args.num("warmup", 1);
    let metric = args.opts.get("metric").map(String::as_str);
    let n = specs.len();
    // The baseline of each line: the first line of its group.
    let base: Vec<usize> = specs
        .iter()
        .map(|s| {
            specs
                .iter()
                .position(|t| group(&t.label) == group(&s.label))
                .expect("own group")
        })
        .collect();
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
    let unit = metric.map_or("wall s".to_string(), |m| m.replace('_', " "));
    println!(
        "{rounds} rounds{} interleaved and rotated, {:.0} s in all; ratios: median of per-round ratios to the first line of the group",
        if warmup > 0 { " (+1 warm-up)" } else { "" },
        t0.elapsed().as_secs_f64()
    );
    println!();
    let any_vg = errs.iter().any(Option::is_some);
    println!(
        "| command | median {unit} | range | ratio (median [min–max]) | peak RSS MiB |{}",
        if any_vg { " valgrind errors |" } else { "" }
    );
    println!(
        "|---|---:|---:|---:|---:|{}",
        if any_vg { "---:|" } else { "" }
    );
    for i in 0..n {
        let (med, lo, hi) = summary(&vals[i]);
        let b = base[i];
        let ratios: Vec<f64> = vals[i].iter().zip(&vals[b]).map(|(x, y)| x / y).collect();
        let (r0, r0lo, r0hi) = summary(&ratios);
        let (rs, _, _) = summary(&rss[i]);
        let prec = if metric.is_some() { 2 } else { 3 };
        let ratio = if b == i {
            format!("1 (vs {})", specs[b].label)
        } else {
            format!("{r0:.2} [{r0lo:.2}–{r0hi:.2}]")
        };
        println!(
            "| {} | {med:.prec$} | {lo:.prec$}–{hi:.prec$} | {ratio} | {:.1} |{}",
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

/// Instructions per op under callgrind: two runs of `EXE single W A --reps 1` with `--ops N`
/// and `2N`, differenced, so start-up and set-up cancel. `POOLGRIND_VALGRIND=off` makes
/// poolgrind take its native paths (under any Valgrind tool it would otherwise switch them).
fn ir(args: &Args) {
    let workloads: Vec<String> = args.opts.get("workloads").map_or_else(
        || vec!["free".into(), "churn".into()],
        |w| w.split(',').map(str::to_string).collect(),
    );
    let allocs: Vec<String> = args.opts.get("allocs").map_or_else(
        || ALLOCS.iter().map(|s| s.to_string()).collect(),
        |w| w.split(',').map(str::to_string).collect(),
    );
    let me = std::env::current_exe()
        .expect("current exe")
        .display()
        .to_string();
    let exes: Vec<(String, String)> = args.opts.get("exes").map_or_else(
        || vec![("this".to_string(), me.clone())],
        |e| {
            e.split(',')
                .map(|kv| {
                    let (k, v) = kv
                        .split_once('=')
                        .unwrap_or_else(|| die("--exes LABEL=PATH,…"));
                    (k.to_string(), v.to_string())
                })
                .collect()
        },
    );
    let dir = std::env::temp_dir();
    let one = |exe: &str, w: &str, a: &str, ops: u64| -> (u64, u64) {
        let out_file = dir.join(format!(
            "poolgrind-bench-{}-{w}-{a}-{ops}.cg",
            std::process::id()
        ));
        let out = Command::new("valgrind")
            .args([
                "--tool=callgrind",
                "--dump-instr=no",
                "--compress-strings=no",
            ])
            .arg(format!("--callgrind-out-file={}", out_file.display()))
            .args([
                exe,
                "single",
                w,
                a,
                "--reps",
                "1",
                "--ops",
                &ops.to_string(),
            ])
            .env("POOLGRIND_VALGRIND", "off")
            .stderr(Stdio::null())
            .output()
            .unwrap_or_else(|e| die(&format!("valgrind: {e}")));
        let s = String::from_utf8_lossy(&out.stdout);
        let done = kv(&s, "ops").unwrap_or_else(|| die(&format!("no ops= from {exe} {w} {a}: {s}")))
            as u64;
        let text = std::fs::read_to_string(&out_file).unwrap_or_default();
        let _ = std::fs::remove_file(&out_file);
        let total = text
            .lines()
            .filter_map(|l| {
                l.strip_prefix("totals:")
                    .or_else(|| l.strip_prefix("summary:"))
            })
            .filter_map(|v| v.split_whitespace().next()?.parse().ok())
            .last()
            .unwrap_or_else(|| die("no totals in the callgrind output"));
        (done, total)
    };
    println!(
        "instructions per op (callgrind, POOLGRIND_VALGRIND=off; runs of N and 2N ops differenced)"
    );
    println!();
    print!("| workload | build |");
    for a in &allocs {
        print!(" {a} |");
    }
    println!(" pool ÷ glibc | pool ÷ mimalloc |");
    println!("|---|---|{}---:|---:|", "---:|".repeat(allocs.len()));
    for w in &workloads {
        let n = match w.as_str() {
            "trees" => 1,
            "realloc" => 200,
            other => default_ops(other) / 10,
        };
        for (label, exe) in &exes {
            let mut per: Vec<(String, f64)> = Vec::new();
            for a in &allocs {
                let (o1, i1) = one(exe, w, a, n);
                let (o2, i2) = one(exe, w, a, 2 * n);
                per.push((a.clone(), (i2 as f64 - i1 as f64) / (o2 as f64 - o1 as f64)));
            }
            print!("| {w} | {label} |");
            for (_, v) in &per {
                print!(" {v:.1} |");
            }
            let get = |name: &str| per.iter().find(|(a, _)| a == name).map(|(_, v)| *v);
            let ratio = |b: &str| match (get("pool"), get(b)) {
                (Some(p), Some(g)) => format!("{:.2}", p / g),
                _ => "-".to_string(),
            };
            println!(" {} | {} |", ratio("glibc"), ratio("mimalloc"));
        }
    }
}
