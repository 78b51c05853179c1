/* cache-thrash and cache-scratch: Hoard's false-sharing tests as mimalloc-bench runs them
 * (`cache-thrash <cpus> 1000 1 2000000 <cpus>`, `cache-scratch <cpus> 1000 1 2000000 <cpus>`).
 * T threads each ITERATIONS times allocate an object of SIZE bytes, write and read every byte
 * of it REPETITIONS / T times, and free it.
 * - thrash: an allocator that hands neighbouring bytes of one cache line to different threads
 *   makes the threads fight over that line (active false sharing).
 * - scratch: the main thread first allocates one object per thread, back to back, and each
 *   thread starts by freeing the one it was given; an allocator that gives that freed block
 *   back to the thread that freed it causes the same fight (passive false sharing).
 *
 * Usage: cache thrash|scratch [threads=2] [iterations=1000] [size=1] [repetitions=2000000] */
#include "mbench.h"

#include <pthread.h>

struct work {
    char *given; /* scratch: freed first */
    long iterations, repetitions;
    size_t size;
};

static void *worker(void *arg) {
    struct work *w = arg;
    free(w->given);
    for (long i = 0; i < w->iterations; i++) {
        volatile char *o = mb_malloc(w->size);
        for (long j = 0; j < w->repetitions; j++)
            for (size_t k = 0; k < w->size; k++) {
                o[k] = (char)k;
                mb_check(o[k] == (char)k, "cache: byte changed under us");
            }
        free((void *)o);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int scratch = argc > 1 && strcmp(argv[1], "scratch") == 0;
    if (argc < 2 || (!scratch && strcmp(argv[1], "thrash") != 0)) {
        fprintf(stderr, "usage: cache thrash|scratch [threads] [iterations] [size] [repetitions]\n");
        return 2;
    }
    long threads = mb_arg(argc, argv, 2, 2);
    long iterations = mb_arg(argc, argv, 3, 1000);
    long size = mb_arg(argc, argv, 4, 1);
    long reps = mb_arg(argc, argv, 5, 2000000);
    if (threads < 1 || size < 1) {
        fprintf(stderr, "cache: need threads >= 1 and size >= 1\n");
        return 2;
    }
    pthread_t *ts = mb_malloc((size_t)threads * sizeof *ts);
    struct work *ws = mb_malloc((size_t)threads * sizeof *ws);
    for (long t = 0; t < threads; t++)
        ws[t] = (struct work){scratch ? mb_malloc((size_t)size) : NULL, iterations, reps / threads, (size_t)size};
    double t0 = mb_now();
    for (long t = 0; t < threads; t++)
        mb_check(pthread_create(&ts[t], NULL, worker, &ws[t]) == 0, "pthread_create");
    for (long t = 0; t < threads; t++) pthread_join(ts[t], NULL);
    double secs = mb_now() - t0;
    free(ws);
    free(ts);
    mb_report(scratch ? "cache-scratch" : "cache-thrash", secs, 2.0 * (double)threads * (double)iterations);
    return 0;
}
