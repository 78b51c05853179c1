/* mstress: the shape of mimalloc's stress test as mimalloc-bench runs it (`mstress <cpus> 50 25`).
 * Each round starts T threads (the main thread is thread 0). Thread t makes
 * 100 * SCALE * (t % 8 + 1) short-lived objects of 1, 2, 4, 8 or 16 words and half as many
 * retained objects of 1 to 64 words; 1 object in 100 is 100x larger, and of those 1 in 10 is
 * 1000x and 1 in 100 is 10000x (up to several MB). Every object is filled with a pattern that
 * is checked when it is freed. Two in three steps free a random earlier object; one in four
 * swaps a random object with a slot of a shared 1000-slot transfer array (atomic exchange), so
 * objects are freed by threads that did not allocate them, and half of the transfer array
 * survives into the next round (freed by the next round's threads).
 *
 * Usage: mstress [threads=2] [scale=50] [rounds=25] */
#include "mbench.h"

#include <pthread.h>
#include <stdatomic.h>

#define TRANSFERS 1000
static _Atomic(uintptr_t *) transfer[TRANSFERS];
static long scale;
static const uintptr_t cookie = 0x5bd1e9955bd1e995ull;
static atomic_long ops;

static int percent(uint64_t *r, unsigned p) { return mb_rand(r) % 100 < p; }

static uintptr_t *make(size_t words, uint64_t *r) {
    if (percent(r, 1)) {
        if (percent(r, 1))
            words *= 10000;
        else if (percent(r, 10))
            words *= 1000;
        else
            words *= 100;
    }
    uintptr_t *p = mb_malloc(words * sizeof *p);
    for (size_t i = 0; i < words; i++) p[i] = (words - i) ^ cookie;
    return p;
}

static void drop(uintptr_t *p) {
    if (p == NULL) return;
    size_t words = p[0] ^ cookie;
    for (size_t i = 0; i < words; i++) mb_check((p[i] ^ cookie) == words - i, "mstress: object corrupted");
    free(p);
}

static void *stress(void *arg) {
    long tid = (long)(intptr_t)arg;
    uint64_t r = (uint64_t)(tid + 1) * 43;
    size_t allocs = 100 * (size_t)scale * (size_t)(tid % 8 + 1);
    size_t retain = allocs / 2;
    size_t data_cap = 0, data_top = 0, kept_top = 0;
    uintptr_t **data = NULL;
    uintptr_t **kept = mb_malloc((retain + 1) * sizeof *kept);
    long n = 0;
    while (allocs > 0 || retain > 0) {
        if (retain == 0 || (allocs > 0 && percent(&r, 50))) {
            allocs--;
            if (data_top == data_cap) {
                data_cap += 100000;
                data = realloc(data, data_cap * sizeof *data);
                mb_check(data != NULL, "mstress: realloc failed");
            }
            data[data_top++] = make((size_t)1 << (mb_rand(&r) % 5), &r);
        } else {
            kept[kept_top++] = make((size_t)1 << (mb_rand(&r) % 7), &r);
            retain--;
        }
        n++;
        if (data_top > 0 && percent(&r, 66)) {
            size_t i = mb_rand(&r) % data_top;
            if (data[i]) n++;
            drop(data[i]);
            data[i] = NULL;
        }
        if (data_top > 0 && percent(&r, 25)) {
            size_t i = mb_rand(&r) % data_top;
            size_t j = mb_rand(&r) % TRANSFERS;
            data[i] = atomic_exchange(&transfer[j], data[i]);
        }
    }
    for (size_t i = 0; i < kept_top; i++) drop(kept[i]);
    for (size_t i = 0; i < data_top; i++) n += data[i] != NULL, drop(data[i]);
    free(kept);
    free(data);
    atomic_fetch_add(&ops, n + (long)kept_top);
    return NULL;
}

int main(int argc, char **argv) {
    long threads = mb_arg(argc, argv, 1, 2);
    scale = mb_arg(argc, argv, 2, 50);
    long rounds = mb_arg(argc, argv, 3, 25);
    if (threads < 1 || scale < 1) {
        fprintf(stderr, "mstress: need threads >= 1 and scale >= 1\n");
        return 2;
    }
    pthread_t *ts = mb_malloc((size_t)threads * sizeof *ts);
    uint64_t r = 43 * 43;
    double t0 = mb_now();
    for (long round = 0; round < rounds; round++) {
        for (long t = 1; t < threads; t++)
            mb_check(pthread_create(&ts[t], NULL, stress, (void *)(intptr_t)t) == 0, "pthread_create");
        stress((void *)(intptr_t)0);
        for (long t = 1; t < threads; t++) pthread_join(ts[t], NULL);
        for (int i = 0; i < TRANSFERS; i++)
            if (round + 1 == rounds || percent(&r, 50)) drop(atomic_exchange(&transfer[i], NULL));
    }
    double secs = mb_now() - t0;
    free(ts);
    mb_report("mstress", secs, (double)atomic_load(&ops));
    return 0;
}
