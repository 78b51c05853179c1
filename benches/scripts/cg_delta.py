#!/usr/bin/env python3
"""Instructions per op, per function, from two callgrind profiles of the same workload run with
different op counts: (Ir(run2) - Ir(run1)) / (ops2 - ops1). Start-up, set-up and tear-down cost
the same in both runs and cancel out. Functions are merged by name (inlined code is charged to
the function it was inlined into; callgrind_annotate splits a function by source file, which we
sum). Usage: cg_delta.py OUT1 OPS1 OUT2 OPS2 [TOP]"""
import re, subprocess, sys, collections

def per_function(path):
    txt = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    acc = collections.Counter()
    total = None
    for line in txt.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*)$", line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        rest = m.group(2)
        if rest.startswith("PROGRAM TOTALS"):
            total = n
            continue
        if ":" not in rest or re.search(r"\([\d,]+x\)", rest):
            continue
        fn = rest.split(":", 1)[1]
        fn = re.sub(r"\s*\[[^\]]*\]\s*$", "", fn)
        acc[fn] += n
    return total, acc

o1, n1, o2, n2 = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
top = int(sys.argv[5]) if len(sys.argv) > 5 else 8
t1, a1 = per_function(o1)
t2, a2 = per_function(o2)
d = n2 - n1
print(f"total: {(t2 - t1) / d:.1f} instructions/op")
rows = sorted(((a2[f] - a1.get(f, 0)) / d, f) for f in a2)
for v, f in reversed(rows[-top:]):
    if v >= 0.5:
        f = f.replace("<poolgrind::alloc::global::PoolAlloc as core::alloc::global::GlobalAlloc>", "PoolAlloc")
        f = re.sub(r"std::sys::backtrace::__rust_begin_short_backtrace", "(thread body)", f)
        print(f"  {v:7.1f}  {f}")
