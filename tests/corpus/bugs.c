/* The deliberate-bug corpus in C, run with libpoolgrind.so preloaded (and without it, for
 * parity). Each scenario is a noinline function named bug_* so tests find it on the stack.
 * Usage: bugs <scenario>. */
#include <stdio.h>
#include <stdlib.h>
#include <malloc.h>
#include <string.h>
#include <pthread.h>

#define NOINLINE __attribute__((noinline))
struct node { struct node *next; long pad[3]; };
static void *volatile sink;
static void *keep;

NOINLINE static void bug_leak_one(void) { char *p = malloc(40); p[0] = 1; sink = 0; }
NOINLINE static void bug_leak_list(void) {
    struct node *h = NULL;
    for (int i = 0; i < 5; i++) { struct node *n = malloc(sizeof *n); n->next = h; h = n; }
}
NOINLINE static void bug_leak_cycle(void) {
    struct node *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    a->next = b; b->next = a;
}
NOINLINE static void bug_uaf_read(void) {
    volatile char *p = malloc(32); p[0] = 1; free((void *)p); sink = (void *)(long)p[0];
}
NOINLINE static void bug_uaf_write(void) { volatile char *p = malloc(32); free((void *)p); p[1] = 2; }
NOINLINE static void bug_uaf_after_same_size_realloc(void) {
    volatile char *a = malloc(48); a[0] = 1; free((void *)a);
    char *b = malloc(48); memset(b, 2, 48);
    sink = (void *)(long)a[0];
    free(b);
}
NOINLINE static void bug_overflow_small(void) { volatile char *p = malloc(20); p[20] = 1; free((void *)p); }
NOINLINE static void bug_overflow_exact_neighbour(void) {
    volatile char *p = malloc(32); char *q = malloc(32);
    p[32] = 1; free(q); free((void *)p);
}
NOINLINE static void bug_double_free(void) { void *p = malloc(40); free(p); sink = p; free(sink); }
NOINLINE static void bug_branch_on_fresh(void) {
    char *p = malloc(24); if (p[3] == 42) puts("forty-two"); free(p);
}
NOINLINE static void bug_branch_on_recycled(void) {
    for (int r = 0; r < 3; r++) {
        void *v[2000];
        for (int i = 0; i < 2000; i++) { v[i] = malloc(64); memset(v[i], 42, 64); }
        for (int i = 0; i < 2000; i++) free(v[i]);
    }
    char *p = malloc(64); if (p[5] == 42) puts("recycled forty-two"); free(p);
}
NOINLINE static void bug_stale_after_realloc(void) {
    volatile char *p = malloc(16); memset((void *)p, 3, 16);
    char *q = realloc((void *)p, 4000);
    sink = (void *)(long)p[0];
    free(q);
}
NOINLINE static void bug_still_reachable(void) { keep = malloc(56); }
/* Three live 32-byte blocks and a write past the end of the middle one: 24 bytes (the gap
 * memcheck's malloc leaves between blocks), 40 (beyond 16 + 16 bytes of red zones, still in
 * memcheck's gap: 24 bytes of red zone and an 8-byte size field on each side), 64 (the start of
 * the next live block with the default red zones, in the gap with --redzone-size=64). */
NOINLINE static void overflow_by(long past_end) {
    char *a = malloc(32), *p = malloc(32), *b = malloc(32);
    memset(a, 1, 32); memset(p, 1, 32); memset(b, 1, 32);
    ((volatile char *)p)[32 + past_end] = 1;
    free(b); free(p); free(a);
}
NOINLINE static void bug_overflow_far(void) { overflow_by(24); }
NOINLINE static void bug_overflow_40_past_end(void) { overflow_by(40); }
NOINLINE static void bug_overflow_64_past_end(void) { overflow_by(64); }
NOINLINE static void bug_underflow_far(void) {
    char *a = malloc(32), *p = malloc(32), *b = malloc(32);
    memset(a, 1, 32); memset(p, 1, 32); memset(b, 1, 32);
    ((volatile char *)p)[-24] = 1;
    free(b); free(p); free(a);
}
/* A use after free after `volume` bytes of frees of the same size (all allocated, then all
 * freed), then as many bytes of that size allocated and kept live (every block an allocator let
 * out of its quarantine is handed out again): memcheck's malloc keeps --freelist-vol bytes
 * (20 MB by default) of freed blocks from reuse. */
NOINLINE static void uaf_after_frees(size_t size, size_t volume) {
    size_t n = volume / size;
    void **blocks = calloc(n, sizeof *blocks);
    volatile char *p = malloc(size);
    char *neighbour = malloc(size); /* live throughout, as in a real heap: p's pool never empties */
    memset((void *)p, 1, size); free((void *)p);
    for (size_t i = 0; i < n; i++) { blocks[i] = malloc(size); memset(blocks[i], 2, size); }
    for (size_t i = 0; i < n; i++) free(blocks[i]);
    for (size_t i = 0; i < n; i++) { blocks[i] = malloc(size); memset(blocks[i], 3, size); }
    sink = (void *)(long)p[0];
    for (size_t i = 0; i < n; i++) free(blocks[i]);
    free(blocks);
    free(neighbour);
}
NOINLINE static void bug_uaf_after_8mb_of_frees(void) { uaf_after_frees(500, 8000000); }
NOINLINE static void bug_realloc_shrink_read_past_end(void) {
    char *p = malloc(100); memset(p, 4, 100);
    volatile char *q = realloc(p, 40);
    sink = (void *)(long)q[44];
    free((void *)q);
}
NOINLINE static void bug_realloc_grow_branch_on_tail(void) {
    char *p = malloc(24); memset(p, 5, 24);
    volatile char *q = realloc(p, 200);
    if (q[100] == 42) puts("grown forty-two");
    free((void *)q);
}
NOINLINE static void *bug_leak_by_exited_thread_body(void *arg) {
    char *p = malloc(72); memset(p, 9, 72); sink = 0; return arg;
}
NOINLINE static void bug_leak_by_exited_thread(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, bug_leak_by_exited_thread_body, NULL) == 0) pthread_join(t, NULL);
}
static char *interior;
NOINLINE static void bug_possibly_lost_interior(void) {
    char *p = malloc(64); memset(p, 6, 64); interior = p + 8;
}
/* An aligned 8-byte load at offset 16 of a 20-byte block (4 bytes past the end): legal with
 * --partial-loads-ok=yes (the default; the branch on the 4 undefined bytes is the error), an
 * invalid read with =no. */
NOINLINE static void bug_partial_load(void) {
    char *p = malloc(20); memset(p, 1, 20);
    long w = *(volatile long *)(p + 16);
    if ((w >> 32) == 42) puts("partial forty-two");
    free(p);
}
NOINLINE static void clean_program(void) {
    /* Small and large blocks; realloc chains; many large blocks freed through the preload, so
     * address_in_range reads memory that belongs to the system allocator. */
    void *big[300];
    for (int i = 0; i < 300; i++) { big[i] = malloc(600 + i * 37); memset(big[i], i, 600 + i * 37); }
    for (int i = 0; i < 300; i++) free(big[i]);
    char *s = NULL;
    for (int i = 1; i < 2000; i++) { s = realloc(s, i); s[i - 1] = (char)i; }
    free(s);
    void *small[5000];
    for (int i = 0; i < 5000; i++) small[i] = calloc(1, i % 512);
    for (int i = 4999; i >= 0; i--) free(small[i]);
    void *a = NULL;
    if (posix_memalign(&a, 64, 100) == 0) free(a);
    free(aligned_alloc(32, 64));
    free(strdup("poolgrind"));
    /* Large blocks freed while the never-written block before them is live: the page start that
     * address_in_range reads then lies in addressable but uninitialised memory. */
    for (int i = 0; i < 64; i++) {
        char *a = malloc(5000 + 64 * i), *b = malloc(600 + 8 * i);
        free(b);
        free(a);
    }
}

NOINLINE static void clean_small_heap(void) {
    /* 2 MB of 100-byte blocks live at once: a heap profile is made of pool blocks only. */
    static void *v[20000];
    for (int i = 0; i < 20000; i++) v[i] = malloc(100);
    for (int i = 0; i < 20000; i++) free(v[i]);
}

NOINLINE static void usable_sizes(void) {
    /* Writes every byte malloc_usable_size promises, and prints the promises: under memcheck
     * they must be the requested sizes (any more would invite writes memcheck reports). */
    static const size_t sizes[] = {1, 20, 100, 512};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        char *p = malloc(sizes[i]);
        size_t u = malloc_usable_size(p);
        memset(p, 7, u);
        p = realloc(p, u + 1); /* moves (memcheck) and carries the u written bytes */
        if (p[u - 1] == 7) printf("%zu ", u);
        free(p);
    }
    putchar('\n');
}

struct scenario { const char *name; void (*f)(void); };
static const struct scenario scenarios[] = {
    {"leak_one", bug_leak_one}, {"leak_list", bug_leak_list}, {"leak_cycle", bug_leak_cycle},
    {"uaf_read", bug_uaf_read}, {"uaf_write", bug_uaf_write},
    {"uaf_after_same_size_realloc", bug_uaf_after_same_size_realloc},
    {"overflow_small", bug_overflow_small}, {"overflow_exact_neighbour", bug_overflow_exact_neighbour},
    {"double_free", bug_double_free}, {"branch_on_fresh", bug_branch_on_fresh},
    {"branch_on_recycled", bug_branch_on_recycled}, {"stale_after_realloc", bug_stale_after_realloc},
    {"still_reachable", bug_still_reachable}, {"clean", clean_program},
    {"overflow_far", bug_overflow_far}, {"overflow_40_past_end", bug_overflow_40_past_end},
    {"overflow_64_past_end", bug_overflow_64_past_end}, {"underflow_far", bug_underflow_far},
    {"uaf_after_8mb_of_frees", bug_uaf_after_8mb_of_frees},
    {"realloc_shrink_read_past_end", bug_realloc_shrink_read_past_end},
    {"realloc_grow_branch_on_tail", bug_realloc_grow_branch_on_tail},
    {"leak_by_exited_thread", bug_leak_by_exited_thread},
    {"possibly_lost_interior", bug_possibly_lost_interior}, {"partial_load", bug_partial_load},
    {"clean_small_heap", clean_small_heap}, {"usable_sizes", usable_sizes},
};

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    for (size_t i = 0; i < sizeof scenarios / sizeof *scenarios; i++)
        if (strcmp(argv[1], scenarios[i].name) == 0) { scenarios[i].f(); return 0; }
    fprintf(stderr, "unknown scenario %s\n", argv[1]);
    return 2;
}
