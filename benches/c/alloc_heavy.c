/* An allocation-heavy C program for the preload benchmarks (issue 6): malloc/free churn over a
 * live set of 10 000 blocks of 8-512 bytes (half 8-64, a quarter 65-256, a quarter 257-512),
 * a linked list built and freed in bulk, and strings grown with realloc.
 * Usage: alloc_heavy [ops]   (default 1 000 000). Prints a checksum and the in-process time.
 * Run natively or under memcheck, with or without LD_PRELOAD=libpoolgrind.so. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static size_t mixed_size(void) {
    uint64_t r = next();
    unsigned pick = (r >> 60) & 3;
    size_t v = r & 0xffff;
    return pick < 2 ? 8 + v % 57 : pick == 2 ? 65 + v % 192 : 257 + v % 256;
}

struct node { struct node *next; uint64_t val; };

int main(int argc, char **argv) {
    long ops = argc > 1 ? atol(argv[1]) : 1000000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    enum { LIVE = 10000 };
    static unsigned char *slot[LIVE];
    uint64_t sum = 0;
    for (int i = 0; i < LIVE; i++) {
        size_t s = mixed_size();
        slot[i] = malloc(s);
        memset(slot[i], i, s < 16 ? s : 16);
    }
    for (long i = 0; i < ops; i++) {
        size_t k = next() % LIVE;
        sum += slot[k][0];
        free(slot[k]);
        size_t s = mixed_size();
        slot[k] = malloc(s);
        slot[k][0] = (unsigned char)i;
        slot[k][s - 1] = 1;
        if (i % 4096 == 0) {
            /* bulk: a list of 2 000 nodes, then freed */
            struct node *head = NULL;
            for (int j = 0; j < 2000; j++) {
                struct node *n = malloc(sizeof *n);
                n->next = head;
                n->val = j;
                head = n;
            }
            while (head) {
                struct node *n = head->next;
                sum += head->val;
                free(head);
                head = n;
            }
            /* growth: a string grown by realloc to 8 KiB */
            char *str = NULL;
            size_t len = 0;
            for (size_t cap = 16; cap <= 8192; cap += cap / 2) {
                str = realloc(str, cap);
                memset(str + len, 'x', cap - len);
                len = cap;
            }
            sum += (unsigned char)str[len - 1];
            free(str);
        }
    }
    for (int i = 0; i < LIVE; i++)
        free(slot[i]);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("alloc_heavy checksum=%llu ms=%.1f\n", (unsigned long long)sum,
           (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    return 0;
}
