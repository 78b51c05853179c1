#!/usr/bin/env python3
"""Runs the mbench workloads (issue 15) with each malloc preloaded and prints the tables.

Usage: run.py --bin DIR [--rounds N] [--threads T] [--only a,b] [--spec FILE]
              [--clock wall|cpu] [--alloc NAME=LIBRARY ...]      (NAME=- for the program's own malloc, glibc)

Every round runs every workload once with every allocator, as separate processes, the
allocators in a rotated order (round r starts with allocator r mod 4); one warm-up round is
discarded. Time is the process's wall time (as mimalloc-bench's `time -f %E`). A ratio is the
median of the per-round ratios (same round, same workload), with their range; a table cell
"1.53 [1.40–1.71]" is median [min–max]. Peak RSS is the VmHWM the workload prints at its end
(for --spec programs, which print none, ru_maxrss taken by peakrss.c, built here with cc); RSS
growth is that peak minus the VmRSS the workload noted before main (its allocations' cost
without the allocator library's own pages), shown when every workload prints it.

--spec FILE replaces the built-in workload list: one line per workload, `name | argv` or
`name | metric | argv` (metric: `-` for wall time, a regex whose first group is a time the
program prints, or `1/regex` for a rate), argv relative to --bin unless absolute (used to time other builds of the same shapes, e.g. the
originals, with the same method). A workload whose process fails (exit status, signal, no
result line with the built-in list) stops the run with its stderr: a wrong result is an error,
never a slow sample.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time


def workloads(t):
    """The built-in list: name -> argv (relative to --bin). Parameters follow mimalloc-bench's
    command lines (bench.sh) with <cpus> = t, scaled to a fixed amount of work of about half a
    second to a second with glibc on the machine these were tuned on (2 cores)."""
    return [
        ("larson", ["larson", t, 8, 1000, 5000, 250000, 4, 4141]),
        ("larson-large", ["larson", t, 513, 1000, 5000, 250000, 4, 4141]),
        ("larson-small", ["larson", t, 8, 512, 5000, 250000, 4, 4141]),
        ("mstress", ["mstress", t, 50, 25]),
        ("xmalloc", ["xmalloc", t, 64, 200]),
        ("cache-thrash", ["cache", "thrash", t, 1000, 1, 400000]),
        ("cache-scratch", ["cache", "scratch", t, 1000, 1, 400000]),
        ("rptest", ["rptest", t, 2, 500, 1000, 100, 8, 16000, 2]),
        ("glibc-simple", ["glibc", "simple", 16, 200000]),
        ("glibc-thread", ["glibc", "thread", t, 2000000]),
        ("alloc-test1", ["alloc-test", 1, 3000000]),
        ("alloc-testN", ["alloc-test", t, 3000000]),
    ]


def read_spec(path):
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = [s.strip() for s in line.split("|", 2)]
            if len(parts) == 2:
                parts.insert(1, "-")
            if len(parts) != 3 or not parts[2]:
                sys.exit(f"{path}:{n}: expected `name | [metric |] argv`, got: {line}")
            name, metric, argv = parts
            if metric != "-":
                try:
                    re.compile(metric.removeprefix("1/"))
                except re.error as e:
                    sys.exit(f"{path}:{n}: bad metric regex: {e}")
            out.append((name, argv.split(), metric))
    return out


def value(metric, secs, out, argv):
    """The time-like value of one run: its time, or a number the program printed (`RE`: its
    first group; `1/RE`: the inverse, for rates)."""
    if metric == "-":
        return secs
    inverse = metric.startswith("1/")
    m = re.search(metric.removeprefix("1/").encode(), out, re.M)
    if not m:
        sys.exit(f"run.py: {argv[0]}: metric /{metric}/ not in its output:\n"
                 f"{out.decode(errors='replace')[-1000:]}")
    v = float(m.group(1))
    return 1.0 / v if inverse else v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--only", default="")
    ap.add_argument("--spec")
    ap.add_argument("--alloc", action="append", default=[])
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: elapsed time; cpu: user+system time of the process (steadier on "
                         "a loaded machine; false sharing and lock spinning still count)")
    a = ap.parse_args()
    allocs = [tuple(s.split("=", 1)) for s in a.alloc] or [("glibc", "-")]
    names = [n for n, _ in allocs]
    for n, lib in allocs:
        if lib != "-" and not os.path.exists(lib):
            sys.exit(f"run.py: {n}: no such library {lib}")
    wl = read_spec(a.spec) if a.spec else [(n, v, "-") for n, v in workloads(a.threads)]
    if a.only:
        keep = a.only.split(",")
        unknown = [k for k in keep if k not in [w[0] for w in wl]]
        if unknown:
            sys.exit(f"run.py: unknown workload(s) {unknown}; known: {[w[0] for w in wl]}")
        wl = [w for w in wl if w[0] in keep]
    # times[w][alloc] and rss[w][alloc]: one sample per measured round
    times = {w[0]: {n: [] for n in names} for w in wl}
    rss = {w[0]: {n: [] for n in names} for w in wl}
    # growth[w][alloc]: peak RSS minus the RSS before main (None when the program prints no start)
    growth = {w[0]: {n: [] for n in names} for w in wl}
    t_start = time.monotonic()
    for r in range(a.rounds + 1):
        for w, argv, metric in wl:
            for k in range(len(allocs)):
                n, lib = allocs[(r + k) % len(allocs)]
                wall, cpu, maxrss, out = timed(a.bin, argv, None if lib == "-" else lib, not a.spec)
                if r > 0:
                    times[w][n].append(value(metric, wall if a.clock == "wall" else cpu, out, argv))
                    rss[w][n].append(maxrss)
                    m = re.search(rb"start_rss_kib=(\d+)", out)
                    growth[w][n].append(maxrss - int(m.group(1)) if m else None)
    elapsed = time.monotonic() - t_start
    print(f"{a.rounds} rounds (+1 warm-up) interleaved and rotated, {elapsed:.0f} s in all; "
          f"{a.threads} threads where a workload has threads; time: "
          + f"process {a.clock} time" + (", or the metric of the spec line" if a.spec else ""))
    print()
    base = names[0]
    focus = "pool" if "pool" in names else names[-1]
    head = "| workload | " + " | ".join(f"{n} s" for n in names)
    cmp_to = [n for n in names if n != focus]
    head += " | " + " | ".join(f"{focus} ÷ {n}" for n in cmp_to) + f" | peak RSS {focus} ÷ {base} |"
    # Peak minus the RSS before main: what the workload's allocations cost, without each
    # allocator's fixed cost (its library's pages, mapped and initialised before main).
    with_growth = all(g is not None for w in growth for n in names for g in growth[w][n])
    if with_growth:
        head += f" RSS growth {focus} ÷ {base} |"
    print(head)
    print("|---|" + "---:|" * (len(names) + len(cmp_to) + 1 + with_growth))
    for w, _, metric in wl:
        row = [f"{statistics.median(times[w][n]):.3f}" for n in names]
        for n in cmp_to:
            rs = [x / y for x, y in zip(times[w][focus], times[w][n])]
            row.append(f"{statistics.median(rs):.2f} [{min(rs):.2f}–{max(rs):.2f}]")
        rr = [x / y for x, y in zip(rss[w][focus], rss[w][base])] if focus != base else [1.0]
        row.append(f"{statistics.median(rr):.2f} ({statistics.median(rss[w][focus]) / 1024:.1f} / "
                   f"{statistics.median(rss[w][base]) / 1024:.1f} MiB)")
        if with_growth:
            gf, gb = statistics.median(growth[w][focus]), statistics.median(growth[w][base])
            row.append((f"{gf / gb:.2f}" if gb > 0 else "n/a") + f" ({gf / 1024:.1f} / {gb / 1024:.1f} MiB)")
        print(f"| {w} | " + " | ".join(row) + " |")


def peakrss_launcher():
    """peakrss.c, built once per run with cc: a process forked from this Python process starts
    its ru_maxrss at Python's RSS (~11 MiB), which hid the peak of every small program."""
    global PEAKRSS
    if PEAKRSS is None:
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peakrss.c")
        PEAKRSS = f"/tmp/mbench-peakrss-{os.getpid()}"
        r = subprocess.run(["cc", "-O2", "-o", PEAKRSS, src], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"run.py: cc {src} failed:\n{r.stderr}")
    return PEAKRSS


PEAKRSS = None


def timed(bindir, argv, preload, check_line):
    """Runs one process; returns (wall seconds, CPU seconds, peak RSS KiB, its stdout). A
    program of the built-in list prints its own VmHWM; any other runs under peakrss.c."""
    exe = str(argv[0]) if os.path.isabs(str(argv[0])) else os.path.join(bindir, str(argv[0]))
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.pop("PEAKRSS_PRELOAD", None)
    args = [exe] + [str(x) for x in argv[1:]]
    if not check_line:
        args = [peakrss_launcher()] + args
        if preload:
            env["PEAKRSS_PRELOAD"] = preload
    elif preload:
        env["LD_PRELOAD"] = preload
    out_r, out_w = os.pipe()
    err_path = f"/tmp/mbench-{os.getpid()}.err"
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(out_w, 1)
            fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 2)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.execve(args[0], args, env)
        except OSError as e:
            os.write(2, f"exec {exe}: {e}\n".encode())
        os._exit(127)
    os.close(out_w)
    chunks = []
    while True:
        b = os.read(out_r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(out_r)
    _, status, ru = os.wait4(pid, 0)
    wall = time.monotonic() - t0
    out = b"".join(chunks)
    try:
        with open(err_path, "rb") as f:
            err = f.read()
        os.unlink(err_path)
    except OSError:
        err = b""
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        sys.exit(f"run.py: {' '.join(map(str, argv))} with LD_PRELOAD={preload or '-'} failed "
                 f"(wait status {status}):\n{err.decode(errors='replace')[-2000:]}")
    if check_line and b"secs=" not in out:
        sys.exit(f"run.py: {argv[0]} printed no result line:\n{out.decode(errors='replace')}")
    # Peak RSS: the workload's own VmHWM, or peakrss.c's count.
    m = re.search(rb"vmhwm_kib=(\d+)", out) or re.search(rb"peakrss_kib=(\d+)", err)
    if not m:
        sys.exit(f"run.py: no peak RSS for {' '.join(map(str, argv))}:\n{err.decode(errors='replace')[-2000:]}")
    return wall, ru.ru_utime + ru.ru_stime, int(m.group(1)), out


if __name__ == "__main__":
    main()
