/* larson: the server shape of Larson and Krishnan's benchmark as mimalloc-bench runs it
 * (`larson 5 8 1000 5000 100 4141 <cpus>`): each of T threads owns a set of C blocks of random
 * sizes in [MIN, MAX), replaces a random one again and again (free, then malloc a new random
 * size, write two bytes), and after R replacements hands its set to a fresh thread and exits.
 * The main thread allocates every set before the threads start and shuffles them across sets,
 * so a thread's first frees are of blocks another (often dead) thread allocated: cross-thread
 * frees are the point of this benchmark, with thread births and deaths in between.
 *
 * The original runs for a fixed time and reports throughput; this one does G generations of R
 * replacements per set, a fixed amount of work.
 *
 * Usage: larson [threads=2] [min=8] [max=1000] [chunks=5000] [replacements=500000]
 *               [generations=4] [seed=4141]
 * Variants in ci/bench: sizes 8-1000 (all), 513-1000 (only above the 512-byte pool limit),
 * 8-512 (only pool sizes). */
#include "mbench.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

struct set {
    char **blocks;
    size_t chunks;
    size_t min, range;
    long replacements;
    long generations_left;
    uint64_t rng;
};

static atomic_long finished_sets;

static void *exercise(void *arg);

static void start_thread(struct set *s) {
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, exercise, s) != 0) {
        fprintf(stderr, "larson: pthread_create failed\n");
        abort();
    }
    pthread_attr_destroy(&attr);
}

static size_t pick_size(struct set *s) {
    return s->range == 0 ? s->min : s->min + (size_t)(mb_rand(&s->rng) % s->range);
}

static void *exercise(void *arg) {
    struct set *s = arg;
    for (long i = 0; i < s->replacements; i++) {
        size_t victim = (size_t)(mb_rand(&s->rng) % s->chunks);
        free(s->blocks[victim]); /* unread, as in the original: free alone touches it */
        size_t n = pick_size(s);
        volatile char *p = mb_malloc(n);
        p[0] = (char)victim;
        p[1] = 'b';
        s->blocks[victim] = (char *)p;
    }
    if (--s->generations_left > 0)
        start_thread(s); /* the set moves to a fresh thread; this one exits */
    else
        atomic_fetch_add(&finished_sets, 1);
    return NULL;
}

int main(int argc, char **argv) {
    long threads = mb_arg(argc, argv, 1, 2);
    long min = mb_arg(argc, argv, 2, 8);
    long max = mb_arg(argc, argv, 3, 1000);
    long chunks = mb_arg(argc, argv, 4, 5000);
    long repl = mb_arg(argc, argv, 5, 500000);
    long gens = mb_arg(argc, argv, 6, 4);
    uint64_t seed = (uint64_t)mb_arg(argc, argv, 7, 4141);
    if (threads < 1 || min < 2 || max < min || chunks < 1 || gens < 1) {
        fprintf(stderr, "larson: need threads >= 1, 2 <= min <= max, chunks >= 1, generations >= 1\n");
        return 2;
    }
    size_t total = (size_t)threads * (size_t)chunks;
    char **all = mb_malloc(total * sizeof *all);
    struct set *sets = mb_malloc((size_t)threads * sizeof *sets);
    uint64_t rng = seed;
    size_t range = (size_t)(max - min);
    /* Warm-up on the main thread: every block of every set, then a shuffle across sets. */
    for (size_t i = 0; i < total; i++) {
        size_t n = range == 0 ? (size_t)min : (size_t)min + (size_t)(mb_rand(&rng) % range);
        all[i] = mb_malloc(n);
    }
    for (size_t i = 0; i < total; i++) {
        size_t j = (size_t)(mb_rand(&rng) % total);
        char *t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    for (size_t i = 0; i < total; i++) all[i][0] = (char)(i % (size_t)chunks);
    double t0 = mb_now();
    for (long t = 0; t < threads; t++) {
        sets[t] = (struct set){all + (size_t)t * (size_t)chunks, (size_t)chunks, (size_t)min, range,
                               repl, gens, mb_rand(&rng)};
    }
    for (long t = 0; t < threads; t++) start_thread(&sets[t]);
    while (atomic_load(&finished_sets) < threads) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    double secs = mb_now() - t0;
    for (size_t i = 0; i < total; i++) {
        mb_check(all[i][0] == (char)(i % (size_t)chunks), "larson: a block lost its first byte");
        free(all[i]);
    }
    free(sets);
    free(all);
    mb_report("larson", secs, 2.0 * (double)threads * (double)repl * (double)gens);
    return 0;
}
