/* glibc-simple and glibc-thread: the shapes of glibc's malloc micro-benchmarks
 * (benchtests/bench-malloc-simple.c and bench-malloc-thread.c) as mimalloc-bench runs them.
 * - simple: for block sizes S, 2S and 4S and for 25, 100, 400 and 1600 blocks, repeatedly
 *   allocate that many blocks (writing every byte), free the first half in allocation order and
 *   the second half in reverse; once on the main thread, once on a second thread, and once
 *   more on the main thread after a thread has existed (glibc's tcache / fastbin / arena paths).
 *   ITERS / count rounds per case, after a warm-up pass.
 * - thread: T threads each keep a working set of 1024 slots and repeatedly free a random slot
 *   and fill it with a new block (every byte written) whose size follows a power law
 *   (exponent -2) between 4 and 32768 bytes: mostly small, sometimes large.
 *   The original runs for 2 s; this one does ITERS replacements per thread.
 *
 * Usage: glibc simple [size=16] [iters=2000000]
 *        glibc thread [threads=2] [iters=4000000] */
#include "mbench.h"

#include <math.h>
#include <pthread.h>

static const int counts[4] = {25, 100, 400, 1600};
static char *arr[1600];

struct simple_case {
    size_t size;
    long iters;
    double ops;
};

static double churn(size_t size, int n, long rounds) {
    for (long j = 0; j < rounds; j++) {
        for (int i = 0; i < n; i++) {
            arr[i] = mb_malloc(size);
            for (size_t g = 0; g < size; g++) ((volatile char *)arr[i])[g] = (char)g;
        }
        for (int i = 0; i < n / 2; i++) free(arr[i]);
        for (int i = n - 1; i >= n / 2; i--) {
            mb_check(arr[i][size - 1] == (char)(size - 1), "glibc-simple: block corrupted");
            free(arr[i]);
        }
    }
    return 2.0 * n * (double)rounds;
}

static double all_counts(size_t size, long iters) {
    double ops = 0;
    for (int c = 0; c < 4; c++) ops += churn(size, counts[c], iters / counts[c]);
    return ops;
}

static void *simple_thread(void *arg) {
    struct simple_case *c = arg;
    c->ops = all_counts(c->size, c->iters);
    return NULL;
}

static int simple(size_t size0, long iters) {
    double ops = 0;
    double t0 = mb_now();
    for (size_t size = size0; size <= 4 * size0; size *= 2) {
        ops += all_counts(size, iters); /* warm-up, as the original */
        ops += all_counts(size, iters); /* main thread, no other thread yet */
        struct simple_case c = {size, iters, 0};
        pthread_t t;
        mb_check(pthread_create(&t, NULL, simple_thread, &c) == 0, "pthread_create");
        pthread_join(t, NULL);
        ops += c.ops;                   /* the thread's share */
        ops += all_counts(size, iters); /* main thread again, now multi-threaded */
    }
    mb_report("glibc-simple", mb_now() - t0, ops);
    return 0;
}

#define WORKING_SET 1024
#define NUM_SIZES 8000
#define NUM_OFFSETS (4 * WORKING_SET)
static unsigned block_sizes[NUM_SIZES], offsets[NUM_OFFSETS];

struct thread_case {
    long iters;
    pthread_t id;
};

static void *thread_loop(void *arg) {
    struct thread_case *c = arg;
    void *set[WORKING_SET] = {0};
    unsigned oi = 0, si = 0;
    for (long i = 0; i < c->iters; i++) {
        oi = oi + 1 >= NUM_OFFSETS ? 0 : oi + 1;
        si = si + 1 >= NUM_SIZES ? 0 : si + 1;
        unsigned idx = offsets[oi], n = block_sizes[si];
        free(set[idx]);
        char *p = mb_malloc(n);
        for (unsigned g = 0; g < n; g++) ((volatile char *)p)[g] = (char)g;
        set[idx] = p;
    }
    for (int i = 0; i < WORKING_SET; i++) free(set[i]);
    return NULL;
}

static int threaded(long threads, long iters) {
    /* Power law p(x) ~ x^-2 on [4, 32768], by inverting its distribution function. */
    uint64_t r = 88;
    const double lo = 4, hi = 32768, e = -2;
    double lop = pow(lo, e + 1), hip = pow(hi, e + 1);
    for (int i = 0; i < NUM_SIZES; i++) {
        double u = (double)(mb_rand(&r) >> 11) / 9007199254740992.0;
        block_sizes[i] = (unsigned)pow((hip - lop) * u + lop, 1 / (e + 1));
        if (block_sizes[i] < 4) block_sizes[i] = 4;
    }
    for (int i = 0; i < NUM_OFFSETS; i++) offsets[i] = (unsigned)(mb_rand(&r) % WORKING_SET);
    struct thread_case *cs = mb_malloc((size_t)threads * sizeof *cs);
    double t0 = mb_now();
    for (long t = 0; t < threads; t++) {
        cs[t].iters = iters;
        mb_check(pthread_create(&cs[t].id, NULL, thread_loop, &cs[t]) == 0, "pthread_create");
    }
    for (long t = 0; t < threads; t++) pthread_join(cs[t].id, NULL);
    double secs = mb_now() - t0;
    free(cs);
    mb_report("glibc-thread", secs, 2.0 * (double)threads * (double)iters);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "simple") == 0)
        return simple((size_t)mb_arg(argc, argv, 2, 16), mb_arg(argc, argv, 3, 2000000));
    if (argc > 1 && strcmp(argv[1], "thread") == 0)
        return threaded(mb_arg(argc, argv, 2, 2), mb_arg(argc, argv, 3, 4000000));
    fprintf(stderr, "usage: glibc simple [size] [iters] | glibc thread [threads] [iters]\n");
    return 2;
}
