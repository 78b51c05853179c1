/* alloc-test: the shape of OLogN's allocator tester as mimalloc-bench runs it (`alloc-test 1`,
 * `alloc-test <cpus>`): each of T threads keeps 2^18 / T slots, fills about half of them, then
 * repeatedly picks a slot with an 80/20 skew (most picks fall in a small hot part of the array):
 * a full slot is read in full and freed, an empty one gets a new block that is written in full.
 * Block sizes follow the tester's "statistics-adjusted" distribution: a size class 2^k with
 * k = 2 + (number of trailing zeros of a random 7-bit value), so each larger class is half as
 * likely, and a uniform size in (2^k, 2^(k+1)]: 5 bytes to 1 KiB, mostly small.
 *
 * Usage: alloc-test [threads=1] [iterations per thread=20000000] */
#include "mbench.h"

#include <pthread.h>

#define MAX_ITEMS (1 << 18)

struct slot {
    uint8_t *p;
    uint32_t size;
};

struct tcase {
    long index, items, iters;
    double ops;
    uint64_t sum;
    pthread_t id;
};

static size_t pick_size(uint64_t r) {
    uint32_t base = (uint32_t)(r & 127) + 1;
    r >>= 7;
    unsigned k = (unsigned)__builtin_ctz(base) + 2;
    return (size_t)(r & ((1u << k) - 1)) + 1 + ((size_t)1 << k);
}

/* 80/20 applied three times: 80 % of the picks go to the first 20 % of the array, 64 % to the
 * first 4 %, 51 % to the first 0.8 %. */
static size_t pick_slot(uint64_t *r, size_t items) {
    size_t range = items;
    uint64_t x = mb_rand(r);
    for (int i = 0; i < 3 && range >= 5; i++, x >>= 8)
        if ((x & 0xff) < 205) range /= 5;
    return (size_t)(mb_rand(r) % range);
}

static void *run(void *arg) {
    struct tcase *c = arg;
    uint64_t r = 41 + (uint64_t)c->index * 7919;
    size_t items = (size_t)c->items;
    struct slot *s = calloc(items, sizeof *s);
    mb_check(s != NULL, "alloc-test: calloc");
    uint64_t sum = 0;
    double ops = 0;
    for (size_t i = 0; i < items; i++) {
        if (mb_rand(&r) & 1) {
            size_t n = pick_size(mb_rand(&r));
            s[i].p = mb_malloc(n);
            s[i].size = (uint32_t)n;
            memset(s[i].p, (int)(n & 0xff), n);
            ops++;
        }
    }
    for (long it = 0; it < c->iters; it++) {
        size_t i = pick_slot(&r, items);
        if (s[i].p) {
            uint8_t *p = s[i].p;
            mb_check(p[0] == (uint8_t)s[i].size && p[s[i].size - 1] == (uint8_t)s[i].size, "alloc-test: block corrupted");
            for (uint32_t k = 0; k < s[i].size; k++) sum += p[k];
            free(p);
            s[i].p = NULL;
        } else {
            size_t n = pick_size(mb_rand(&r));
            s[i].p = mb_malloc(n);
            s[i].size = (uint32_t)n;
            memset(s[i].p, (int)(n & 0xff), n);
        }
        ops++;
    }
    for (size_t i = 0; i < items; i++) free(s[i].p), ops += s[i].p != NULL;
    free(s);
    c->ops = ops;
    c->sum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    long threads = mb_arg(argc, argv, 1, 1);
    long iters = mb_arg(argc, argv, 2, 20000000);
    if (threads < 1 || threads > 64) {
        fprintf(stderr, "alloc-test: need 1 <= threads <= 64\n");
        return 2;
    }
    struct tcase *cs = calloc((size_t)threads, sizeof *cs);
    mb_check(cs != NULL, "alloc-test: calloc");
    double t0 = mb_now();
    for (long t = 0; t < threads; t++) {
        cs[t] = (struct tcase){t, MAX_ITEMS / threads, iters, 0, 0, 0};
        mb_check(pthread_create(&cs[t].id, NULL, run, &cs[t]) == 0, "pthread_create");
    }
    double ops = 0;
    uint64_t sum = 0;
    for (long t = 0; t < threads; t++) pthread_join(cs[t].id, NULL), ops += cs[t].ops, sum += cs[t].sum;
    double secs = mb_now() - t0;
    free(cs);
    printf("checksum=%llu\n", (unsigned long long)sum);
    mb_report("alloc-test", secs, ops);
    return 0;
}
