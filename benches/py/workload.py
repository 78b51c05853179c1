"""A CPython allocation workload for the preload benchmarks (issue 6): many small dicts, tuples,
strings and lists, a live set that is replaced at random (so freed memory is reused out of
order), and short-lived temporaries. Deterministic. Usage: python3 workload.py [scale]
Prints a checksum and the in-process time."""
import sys
import time


def run(scale):
    t0 = time.perf_counter()
    live = [None] * 20000
    seed = 12345
    total = 0
    for i in range(scale * 60000):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        k = seed % 20000
        s = "item-%d-%d" % (i, seed & 0xFFF)
        d = {"id": i, "name": s, "tags": (s[:4], s[-3:], i & 7), "vals": [i, seed & 255, k]}
        if seed & 3 == 0:
            d["extra"] = {"a": str(i), "b": [s] * (seed & 3)}
        live[k] = d
        t = tuple(x * 2 for x in d["vals"])
        parts = [s.upper(), str(t), ",".join(d["tags"][:2])]
        total += len("".join(parts)) + len(t)
    total += sum(len(d) for d in live if d)
    return total, time.perf_counter() - t0


if __name__ == "__main__":
    total, secs = run(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
    print("workload.py checksum=%d ms=%.1f" % (total, secs * 1e3))
