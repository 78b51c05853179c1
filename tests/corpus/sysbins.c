/* Blocks of every size around the pools' limit (512 B), the thread caches' system bins'
 * (1024 B) and their large bins' (16 376 B), through every malloc-family function, in four
 * threads that hand half their blocks to each other (so most frees are cross-thread) and then
 * exit (their caches are flushed).
 * Every block's bytes are checked before it is freed or reallocated: a block handed out twice,
 * or smaller than asked, shows as a wrong byte. Prints "ok" and exits 0, or names the first
 * fault and exits 1. With the argument "overflow", writes past 600-byte blocks and frees them. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define SLOTS 512
#define ROUNDS 60000

struct blk { unsigned char *p; size_t n; unsigned char tag; };
static struct blk shared[THREADS][SLOTS];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int failed;

static void fail(const char *what, size_t n) {
    __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
    fprintf(stderr, "sysbins: %s (size %zu)\n", what, n);
}

static uint64_t next(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }

/* Mostly 400..1100 bytes, sometimes tiny or 1 025..20 480 (the large bins' sizes and more). */
static size_t pick(uint64_t *s) {
    uint64_t r = next(s);
    switch (r % 8) {
    case 0: return r >> 40 & 63;
    case 1: return 1025 + (r >> 40) % 19456;
    default: return 400 + (r >> 40) % 700;
    }
}

static void fill(struct blk *b, unsigned char tag) {
    b->tag = tag;
    memset(b->p, tag, b->n);
}

static int intact(const struct blk *b) {
    for (size_t i = 0; i < b->n; i++)
        if (b->p[i] != b->tag) return 0;
    return 1;
}

static unsigned char *get(uint64_t *s, size_t n) {
    void *p = NULL;
    /* 8 and 16 too: every block has them, so the thread caches serve those requests. */
    size_t align = (size_t)8 << (next(s) % 10);
    /* Aligned requests of 0 bytes: jemalloc 5.3's memalign returns misaligned blocks. */
    size_t an = n ? n : 1;
    switch (next(s) % 10) {
    case 0: {
        unsigned char *c = calloc(1, n);
        for (size_t i = 0; c && i < n; i++)
            if (c[i]) { fail("calloc block not zeroed", n); break; }
        return c;
    }
    case 1: p = memalign(align, an); break;
    case 2: if (posix_memalign(&p, align, an)) p = NULL; break;
    case 3: p = aligned_alloc(align, (an + align - 1) / align * align); break;
    default: return malloc(n);
    }
    if (p && ((uintptr_t)p & (align - 1))) fail("misaligned block", n);
    return p;
}

static void *work(void *arg) {
    int me = (int)(intptr_t)arg;
    uint64_t s = 0x9e3779b97f4a7c15ULL * (uint64_t)(me + 1);
    struct blk mine[SLOTS] = {{0}};
    for (int r = 0; r < ROUNDS && !__atomic_load_n(&failed, __ATOMIC_RELAXED); r++) {
        struct blk *b = &mine[next(&s) % SLOTS];
        if (b->p) {
            if (!intact(b)) { fail("block changed while live", b->n); break; }
            if (next(&s) % 4 == 0) {
                /* realloc keeps the bytes it keeps (not to 0 bytes: that frees). */
                size_t n = pick(&s) + 1;
                unsigned char *q = realloc(b->p, n);
                if (!q) { fail("realloc failed", n); b->p = NULL; break; }
                size_t keep = n < b->n ? n : b->n;
                for (size_t i = 0; i < keep; i++)
                    if (q[i] != b->tag) { fail("realloc lost bytes", n); break; }
                b->p = q;
                b->n = n;
                fill(b, (unsigned char)next(&s));
                continue;
            }
            free(b->p);
            b->p = NULL;
        }
        size_t n = pick(&s);
        b->p = get(&s, n);
        if (!b->p) { fail("allocation failed", n); break; }
        if (malloc_usable_size(b->p) < n) fail("usable size below the request", n);
        b->n = n;
        fill(b, (unsigned char)next(&s));
        /* Swap a block with the shared table: the other threads free it. */
        if (next(&s) % 2 == 0) {
            struct blk *o = &shared[next(&s) % THREADS][next(&s) % SLOTS];
            pthread_mutex_lock(&mu);
            struct blk t = *o;
            *o = *b;
            *b = t;
            pthread_mutex_unlock(&mu);
            if (b->p && !intact(b)) { fail("handed-over block changed", b->n); break; }
        }
    }
    for (int i = 0; i < SLOTS; i++) {
        if (mine[i].p && !intact(&mine[i])) fail("block changed before its free", mine[i].n);
        free(mine[i].p);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "overflow")) {
        /* One byte past each of eight 600-byte blocks, then their frees: glibc's checks
         * (MALLOC_CHECK_=3) abort at the first if the frees reach them. Those checks keep a
         * magic byte past the block (a hash of its address) and, from the chunk's end, follow
         * length bytes back to it; a byte equal to the magic stops the walk as if all were
         * well. So the block is zeroed and the byte flipped (a fixed value, 1, missed ~1 %
         * of runs: the walk went on into the block's bytes), which leaves a miss only where
         * the magic is 0, and eight blocks at different addresses make that vanish (0 misses
         * in 3 000 runs, against 16 in 1 500 before). */
        volatile char *p[8];
        for (int i = 0; i < 8; i++) {
            p[i] = malloc(600);
            memset((void *)p[i], 0, 600);
            p[i][600] ^= 0xff;
        }
        for (int i = 0; i < 8; i++) free((void *)p[i]);
        puts("not caught");
        return 0;
    }
    struct mallinfo2 before = mallinfo2();
    for (int wave = 0; wave < 3; wave++) {
        pthread_t t[THREADS];
        for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, work, (void *)(intptr_t)i);
        for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    }
    for (int i = 0; i < THREADS; i++)
        for (int j = 0; j < SLOTS; j++) {
            if (shared[i][j].p && !intact(&shared[i][j])) fail("shared block changed", shared[i][j].n);
            free(shared[i][j].p);
        }
    /* Every block is freed: what glibc still counts in use is what the main thread's caches
     * keep (its system bins: at most 17 x 16 blocks of at most 1071 bytes; its large bins, of
     * 1 152..18 431 bytes, at most 32 KiB worth each, 2 to 16 blocks: under 1 000 000 bytes;
     * glibc's own tcache: at most 7 x 64 blocks of at most 1040), and the chains the large
     * bins left for other threads (one a bin, at most half a bin: under 600 000 bytes).
     * Exited threads' bins must have been given back (12 threads' would be 15 MiB more). With
     * another allocator behind us, glibc's heap does not move. */
    struct mallinfo2 after = mallinfo2();
    size_t kept = after.uordblks > before.uordblks ? after.uordblks - before.uordblks : 0;
    fprintf(stderr, "sysbins: glibc keeps %zu bytes in use\n", kept);
    if (kept > (size_t)17 * 16 * 1071 + 1000000 + 600000 + (size_t)7 * 64 * 1040 + (64 << 10))
        fail("exited threads left blocks in their caches", kept);
    /* Leave blocks of every system bin freed in this thread's cache, for the statistics. */
    void *keep[64];
    for (int i = 0; i < 64; i++) keep[i] = malloc(513 + (size_t)i * 8);
    for (int i = 0; i < 64; i++) free(keep[i]);
    if (failed) return 1;
    puts("ok");
    return 0;
}
