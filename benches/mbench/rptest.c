/* rptest: the shape of rpmalloc's benchmark as mimalloc-bench runs it
 * (`rptest <cpus> 0 1 2 500 1000 100 8 16000`: random sizes with a linear drop-off between 8
 * and 16000 bytes, cross-thread frees every 2nd loop, 500 loops, 1000 live slots, ~100
 * operations a loop). Each thread keeps 1000 slots; a loop frees 0.8 x 30-99 % of OPS slots
 * (stepping through the slots by one prime) and allocates 30-99 % of OPS (stepping by another,
 * freeing what a slot held); every block is touched in full (calloc, or memalign with 8 or 16
 * and memset, in turn, as the original does) and its size written in its first word. Every
 * CROSS loops a thread also allocates a batch of blocks and pushes it onto the next thread's
 * lock-free list; a thread frees the batches it received at the start of each loop. All of it
 * twice (two iterations), then every thread frees what is left.
 *
 * The size list is drawn here with the same distribution; the original ships a fixed table.
 *
 * Usage: rptest [threads=2] [cross=2] [loops=500] [slots=1000] [ops=100] [min=8] [max=16000]
 *               [iterations=2] */
#include "mbench.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define NSIZES 2000

struct foreign {
    struct foreign *next;
    size_t count;
    void **blocks;
};

struct thread {
    long index;
    _Atomic(struct foreign *) inbox;
    pthread_t id;
    double ops;
};

static long threads, cross, loops, slots, ops_per_loop, iterations;
static size_t sizes[NSIZES];
static struct thread *ts;
static atomic_long running, any_done;

static void *block(size_t size, size_t turn) {
    static const size_t align[3] = {0, 8, 16};
    size_t a = size < 4096 ? align[turn % 3] : 0;
    char *p;
    if (a == 0) {
        p = calloc(1, size);
        mb_check(p != NULL, "rptest: calloc returned NULL");
    } else {
        p = memalign(a, size);
        mb_check(p != NULL && ((uintptr_t)p & (a - 1)) == 0, "rptest: memalign");
        memset(p, 0xcd, size);
    }
    *(int32_t *)p = (int32_t)size;
    for (size_t page = 1; page < (size - 1) / 4096; page++) p[page * 4096] = 1;
    p[size - 1] = 1;
    return p;
}

static double drop(void *p) {
    mb_check(*(int32_t *)p >= 8 && *(int32_t *)p <= 1 << 24, "rptest: block size word corrupted");
    free(p);
    return 1;
}

static double drain(struct thread *t) {
    double n = 0;
    struct foreign *f = atomic_exchange(&t->inbox, NULL);
    while (f) {
        struct foreign *next = f->next;
        for (size_t i = 0; i < f->count; i++) n += drop(f->blocks[i]);
        free(f->blocks);
        free(f);
        n += 2;
        f = next;
    }
    return n;
}

static size_t prime_step(size_t n, size_t after) {
    static const size_t primes[] = {7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47};
    for (size_t i = 0; i < sizeof primes / sizeof *primes; i++)
        if (primes[i] > after && n % primes[i] != 0) return primes[i];
    return 1;
}

static void *worker(void *arg) {
    struct thread *t = arg;
    uint64_t r = (uint64_t)t->index * 977 + 1;
    void **slot = calloc((size_t)slots, sizeof *slot);
    mb_check(slot != NULL, "rptest: calloc");
    size_t astep = prime_step((size_t)slots, 0), fstep = prime_step((size_t)slots, astep);
    size_t ai = 0, fi = 0, si = (size_t)(t->index + 1) * 37 % NSIZES, turn = 0, next_peer = (size_t)t->index;
    double n = 0;
    for (long iter = 0; iter < iterations; iter++) {
        for (long loop = 0; loop < loops; loop++) {
            n += drain(t);
            size_t frees = (size_t)(0.8 * (double)ops_per_loop * (double)(30 + mb_rand(&r) % 70) / 100.0);
            size_t allocs = (size_t)ops_per_loop * (30 + mb_rand(&r) % 70) / 100;
            for (size_t k = 0; k < frees; k++, fi = (fi + fstep) % (size_t)slots)
                if (slot[fi]) n += drop(slot[fi]), slot[fi] = NULL;
            for (size_t k = 0; k < allocs; k++, ai = (ai + astep) % (size_t)slots) {
                if (slot[ai]) n += drop(slot[ai]);
                slot[ai] = block(sizes[si], turn++);
                si = (si + 1) % NSIZES;
                n++;
            }
            if (threads > 1 && cross > 0 && loop % cross == 0 && !atomic_load(&any_done)) {
                struct foreign *f = mb_malloc(sizeof *f);
                f->count = allocs;
                f->blocks = mb_malloc(allocs * sizeof *f->blocks + 1);
                for (size_t k = 0; k < allocs; k++, si = (si + 1) % NSIZES) f->blocks[k] = block(sizes[si], turn++);
                n += (double)allocs + 2;
                next_peer = (next_peer + 1) % (size_t)threads;
                if (next_peer == (size_t)t->index) next_peer = (next_peer + 1) % (size_t)threads;
                struct thread *peer = &ts[next_peer];
                f->next = atomic_load(&peer->inbox);
                while (!atomic_compare_exchange_weak(&peer->inbox, &f->next, f)) {
                }
            }
        }
    }
    atomic_store(&any_done, 1);
    atomic_fetch_sub(&running, 1);
    while (atomic_load(&running) > 0) {
        n += drain(t);
        sched_yield();
    }
    n += drain(t);
    for (long i = 0; i < slots; i++)
        if (slot[i]) n += drop(slot[i]);
    free(slot);
    t->ops = n;
    return NULL;
}

int main(int argc, char **argv) {
    threads = mb_arg(argc, argv, 1, 2);
    cross = mb_arg(argc, argv, 2, 2);
    loops = mb_arg(argc, argv, 3, 500);
    slots = mb_arg(argc, argv, 4, 1000);
    ops_per_loop = mb_arg(argc, argv, 5, 100);
    long min = mb_arg(argc, argv, 6, 8), max = mb_arg(argc, argv, 7, 16000);
    iterations = mb_arg(argc, argv, 8, 2);
    if (threads < 1 || slots < 1 || min < 8 || max < min) {
        fprintf(stderr, "rptest: need threads >= 1, slots >= 1, 8 <= min <= max\n");
        return 2;
    }
    /* Linear drop-off: a uniform size u in [0, range] is scaled by |w0 + w1 - 1|, where w0, w1 are
     * 1 - (its neighbours' uniform sizes) / range, so small sizes are the most frequent. */
    uint64_t r = 4141;
    double range = (double)(max - min);
    double u[NSIZES];
    for (int i = 0; i < NSIZES; i++) u[i] = range * (double)(mb_rand(&r) % 100001) / 100000.0;
    for (int i = 0; i < NSIZES; i++) {
        double w0 = 1.0 - u[i] / (range > 0 ? range : 1), w1 = 1.0 - u[(i + 1) % NSIZES] / (range > 0 ? range : 1);
        double f = w0 + w1 - 1.0;
        sizes[i] = (size_t)min + (size_t)(u[(i + 2) % NSIZES] * (f < 0 ? -f : f));
    }
    ts = calloc((size_t)threads, sizeof *ts);
    mb_check(ts != NULL, "rptest: calloc");
    atomic_store(&running, threads);
    double t0 = mb_now();
    for (long i = 0; i < threads; i++) {
        ts[i].index = i;
        mb_check(pthread_create(&ts[i].id, NULL, worker, &ts[i]) == 0, "pthread_create");
    }
    double n = 0;
    for (long i = 0; i < threads; i++) pthread_join(ts[i].id, NULL), n += ts[i].ops;
    double secs = mb_now() - t0;
    free(ts);
    mb_report("rptest", secs, n);
    return 0;
}
