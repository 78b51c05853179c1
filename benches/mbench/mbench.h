/* Shared helpers of the mbench workloads (issue 15): a clock, a small random generator,
 * integer arguments, a result line and a check that aborts on a wrong result.
 *
 * The workloads in this folder are written here, for poolgrind; they reproduce the shapes and
 * parameters of the standard allocator benchmarks collected in mimalloc-bench
 * (daanx/mimalloc-bench, MIT), not their code. Each one does a fixed amount of work (the
 * originals mostly run for a fixed time), checks what it can, and prints one line
 *   name secs=<timed part> ops=<allocations+frees> ns_per_op=<...> vmhwm_kib=<peak RSS>
 * so that the runner (run.py) can time whole processes and still see the timed part. */
#ifndef MBENCH_H
#define MBENCH_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double mb_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* splitmix64: a full-period 64-bit generator, one word of state (seed it with anything). */
static inline uint64_t mb_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi] (hi >= lo). */
static inline size_t mb_between(uint64_t *s, size_t lo, size_t hi) {
    return lo + (size_t)(mb_rand(s) % (uint64_t)(hi - lo + 1));
}

/* The i-th positional argument as a number, or `def` when absent; a bad one is fatal. */
static inline long mb_arg(int argc, char **argv, int i, long def) {
    if (i >= argc) return def;
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*end != '\0' || v < 0) {
        fprintf(stderr, "%s: argument %d must be a non-negative integer, got '%s'\n", argv[0], i,
                argv[i]);
        exit(2);
    }
    return v;
}

static inline void mb_check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "mbench: wrong result: %s\n", what);
        abort();
    }
}

static inline void *mb_malloc(size_t n) {
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "mbench: malloc(%zu) returned NULL\n", n);
        abort();
    }
    return p;
}

/* Peak resident set of this process (VmHWM), KiB; -1 if /proc is not there. The runner uses it
 * rather than wait4's ru_maxrss, which never reports less than the forking parent's RSS. */
static inline long mb_peak_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (f == NULL) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

/* Resident set (VmRSS) before main, KiB: the program, libc and the preloaded allocator's
 * library mapped and initialised, no workload yet. Peak minus start is what the workload's
 * allocations cost; the start is each allocator's fixed cost (its library's pages). */
static long mb_start_rss = -1;

__attribute__((constructor)) static void mb_note_start_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    if (f == NULL) return;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &mb_start_rss) == 1) break;
    fclose(f);
}

static inline void mb_report(const char *name, double secs, double ops) {
    printf("%s secs=%.6f ops=%.0f ns_per_op=%.3f vmhwm_kib=%ld start_rss_kib=%ld\n", name, secs,
           ops, ops > 0 ? secs * 1e9 / ops : 0.0, mb_peak_rss_kib(), mb_start_rss);
}

#endif
