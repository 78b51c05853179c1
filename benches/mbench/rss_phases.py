#!/usr/bin/env python3
"""Peak RSS of small programs, without the noise of where ASLR put libc (issue 15).

Usage: rss_phases.py --bin DIR --spec FILE [--only a,b] [--phases N] --alloc NAME=LIBRARY ...
                     (NAME=- for the program's own malloc, glibc; the first is the baseline)

Why: a program of 1.5-2.5 MiB peak RSS has ~1 MiB of it in libc's code, and that count moves
by ±150 KiB from run to run. The kernel maps a file's cached pages 64 KiB around each page
fault ("fault-around"), in windows aligned in the address space, so the number of libc's pages
a run maps depends on libc's load address modulo 64 KiB, which ASLR draws at random. Medians
of 11 runs still moved by ~100 KiB between two runs of the same builds, more than the 10 %
the issue allows.

How: every run is with ASLR off (`setarch -R`), preloading first a padding library of k pages
(k = 0 .. N-1, default 16): it shifts every later mapping, libc's among them, by k pages, so
libc meets the windows at each of the 16 phases in turn (back to back, a phase gives the same
count to the page). The mean over the phases is the expectation of a run with ASLR; the table
gives it, its range and the ratio of means to the baseline. Runs an hour apart still differ
by up to ~4 % (the threads' timing, libc's pages in the page cache): compare allocators
within one run, as the table does. Peak RSS is wait4's ru_maxrss, through peakrss.c.
Workloads and their argv come from a --spec file of run.py (originals.spec); their metric
column is ignored here.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ beside the sources for importing run.py
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import read_spec  # noqa: E402


def build(tmp, phases):
    """peakrss.c and the padding libraries, compiled into `tmp` with cc."""
    here = os.path.dirname(os.path.abspath(__file__))
    launcher = os.path.join(tmp, "peakrss")
    subprocess.run(["cc", "-O2", "-o", launcher, os.path.join(here, "peakrss.c")], check=True)
    pads = []
    for k in range(phases):
        src = os.path.join(tmp, f"pad{k}.c")
        with open(src, "w") as f:
            # k pages of .bss (never touched): the library's mapping is k pages longer.
            f.write(f"char rss_phases_pad_{k}[{k * 4096 + 1}];\n")
        lib = os.path.join(tmp, f"pad{k}.so")
        subprocess.run(["cc", "-shared", "-fPIC", "-o", lib, src], check=True)
        pads.append(lib)
    return launcher, pads


def peak(launcher, pad, lib, argv):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env["PEAKRSS_PRELOAD"] = pad if lib == "-" else f"{pad} {lib}"
    p = subprocess.run(["setarch", os.uname().machine, "-R", launcher] + argv, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.decode(errors="replace")
    m = re.findall(r"peakrss_kib=(\d+)", err)
    if p.returncode != 0 or not m:
        sys.exit(f"rss_phases.py: {' '.join(argv)} failed (status {p.returncode}):\n{err[-2000:]}")
    # The loader skips a preload it cannot open and runs the program on glibc: that would be
    # a plausible number for the wrong allocator.
    if "cannot be preloaded" in err:
        sys.exit(f"rss_phases.py: {lib} was not preloaded:\n{err[-2000:]}")
    return int(m[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--only")
    ap.add_argument("--phases", type=int, default=16)
    ap.add_argument("--alloc", action="append", required=True, metavar="NAME=LIBRARY")
    a = ap.parse_args()
    if a.phases < 1:
        sys.exit(f"rss_phases.py: --phases wants at least 1, got {a.phases}")
    allocs = []
    for s in a.alloc:
        name, sep, lib = s.partition("=")
        if not sep or not name or not lib:
            sys.exit(f"rss_phases.py: --alloc wants NAME=LIBRARY (or NAME=-), got {s!r}")
        if lib != "-":
            # A bare name would be looked up on the loader's path, not here.
            lib = os.path.abspath(lib)
            if not os.path.isfile(lib):
                sys.exit(f"rss_phases.py: no library at {lib}")
        allocs.append((name, lib))
    try:
        wl = read_spec(a.spec)
    except OSError as e:
        sys.exit(f"rss_phases.py: cannot read the spec file: {e}")
    if a.only:
        keep = set(a.only.split(","))
        unknown = keep - {w[0] for w in wl}
        if unknown:
            sys.exit(f"rss_phases.py: --only names no workload of {a.spec}: {', '.join(sorted(unknown))}")
        wl = [w for w in wl if w[0] in keep]
    base = allocs[0][0]
    print(f"peak RSS (KiB), mean over {a.phases} load phases with ASLR off [min–max]; "
          f"ratio of means to {base}\n")
    ratio_heads = [f"{n} ÷ {base}" for n, _ in allocs[1:]]
    print("| " + " | ".join(["workload"] + [n for n, _ in allocs] + ratio_heads) + " |")
    print("|---|" + "---:|" * (len(allocs) + len(ratio_heads)))
    with tempfile.TemporaryDirectory() as tmp:
        launcher, pads = build(tmp, a.phases)
        for name, argv, _metric in wl:
            argv = [x if os.path.isabs(x) or x.startswith(".") or i > 0 else os.path.join(a.bin, x)
                    for i, x in enumerate(argv)]
            got = {n: [] for n, _ in allocs}
            for pad in pads:
                for n, lib in allocs:
                    got[n].append(peak(launcher, pad, lib, argv))
            means = {n: statistics.mean(v) for n, v in got.items()}
            cells = [f"{means[n]:.0f} [{min(got[n])}–{max(got[n])}]" for n, _ in allocs]
            ratios = [f"{means[n] / means[base]:.3f}" for n, _ in allocs[1:]]
            print("| " + " | ".join([name] + cells + ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
