/* The thread caches' large bins (glibc's blocks of 1 025..16 376 bytes, issue 15): 20 000
 * rounds of a block of a random size of those freed and another allocated, through malloc,
 * calloc, memalign(16) and posix_memalign(8) in turn, with 64 blocks live. Every block is
 * filled with a tag byte and checked before its free; a calloc block must be zero even when
 * its bin hands back one that was filled (a block reused without its zeroing shows here).
 * Prints "ok" and the rounds, or names the fault and exits 1. The large bins go on once a
 * thread's frees are heavy in such blocks (4 096 in windows of more than one in nine frees):
 * 5 000 malloc/free pairs of 4 000 bytes come first. The statistics are printed before and
 * after the rounds (poolgrind_print_stats, to stderr, without allocating; nothing goes to
 * stdout until then): the requests that reached glibc in between are the bins' misses, not
 * one a round. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIVE 64
#define ROUNDS 20000

static uint64_t next(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }

int main(void) {
    void (*stats)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "poolgrind_print_stats");
    if (!stats) { fputs("largebins: not preloaded\n", stderr); return 1; }
    for (int i = 0; i < 5000; i++) {
        char *w = malloc(4000);
        if (!w) { fputs("largebins: allocation failed\n", stderr); return 1; }
        w[0] = w[3999] = 1;
        free(w);
    }
    stats();
    uint64_t s = 0x2545f4914f6cdd1dULL;
    unsigned char *p[LIVE] = {0};
    size_t n[LIVE] = {0};
    unsigned char tag[LIVE] = {0};
    for (int r = 0; r < ROUNDS; r++) {
        int i = (int)(next(&s) % LIVE);
        if (p[i]) {
            for (size_t k = 0; k < n[i]; k++)
                if (p[i][k] != tag[i]) { fprintf(stderr, "largebins: block changed (size %zu)\n", n[i]); return 1; }
            free(p[i]);
        }
        size_t size = 1025 + next(&s) % (16376 - 1024);
        void *q = NULL;
        switch (r % 4) {
        case 0: q = malloc(size); break;
        case 1:
            q = calloc(1, size);
            for (size_t k = 0; q && k < size; k++)
                if (((unsigned char *)q)[k]) { fprintf(stderr, "largebins: calloc block not zeroed (size %zu)\n", size); return 1; }
            break;
        case 2: q = memalign(16, size); break;
        default: if (posix_memalign(&q, 8, size)) q = NULL;
        }
        if (!q || ((uintptr_t)q & 15)) { fprintf(stderr, "largebins: no 16-aligned block of %zu bytes\n", size); return 1; }
        if (malloc_usable_size(q) < size) { fprintf(stderr, "largebins: usable size below %zu\n", size); return 1; }
        p[i] = q;
        n[i] = size;
        tag[i] = (unsigned char)(next(&s) | 1);
        memset(p[i], tag[i], size);
    }
    stats();
    for (int i = 0; i < LIVE; i++) free(p[i]);
    printf("ok %d\n", ROUNDS);
    return 0;
}
