/* The malloc family's edge cases through the preload: each check prints what failed. */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "FAILED: %s (line %d)\n", #cond, __LINE__); failures++; } } while (0)

int main(void) {
    errno = 0; CHECK(malloc(SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0; CHECK(calloc(SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
    void *p = malloc(10);
    errno = 0; CHECK(reallocarray(p, SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
    CHECK(realloc(p, 0) == NULL); /* glibc: frees p */
    free(NULL);
    void *z = malloc(0); CHECK(z != NULL); free(z);
    void *a = NULL;
    CHECK(posix_memalign(&a, 3, 10) == EINVAL);
    CHECK(posix_memalign(&a, 4, 10) == EINVAL); /* not a multiple of sizeof(void *) */
    CHECK(posix_memalign(&a, 64, 10) == 0 && ((uintptr_t)a % 64) == 0); free(a);
    CHECK(posix_memalign(&a, 16, 10) == 0 && ((uintptr_t)a % 16) == 0); free(a);
    void *b = aligned_alloc(4096, 100); CHECK(b && ((uintptr_t)b % 4096) == 0); free(b);
    void *m = memalign(48, 100); CHECK(m && ((uintptr_t)m % 64) == 0); free(m); /* rounded up */
    long ps = sysconf(_SC_PAGESIZE);
    void *v = valloc(10); CHECK(v && ((uintptr_t)v % ps) == 0); free(v);
    void *pv = pvalloc(10); CHECK(pv && ((uintptr_t)pv % ps) == 0 && malloc_usable_size(pv) >= (size_t)ps); free(pv);
    CHECK(malloc_usable_size(NULL) == 0);
    char *s = malloc(20); CHECK(malloc_usable_size(s) >= 20); free(s);
    char *c = calloc(30, 7); int zero = 1; for (int i = 0; i < 210; i++) zero &= c[i] == 0; CHECK(zero); free(c);
    /* Through a volatile pointer: gcc turns a direct realloc(NULL, n) into malloc(n). */
    void *(*volatile realloc_fn)(void *, size_t) = realloc;
    char *r = realloc_fn(NULL, 33); CHECK(r != NULL); memset(r, 7, 33);
    r = realloc(r, 3000); CHECK(r && r[32] == 7); r = realloc(r, 40); CHECK(r && r[32] == 7); free(r);
    /* calloc of a block the thread cache hands back dirty is zeroed (its fast path's memset),
     * and so are calloc(0, n) and calloc(n, 0). */
    for (int k = 0; k < 3; k++) {
        char *d = malloc(210); memset(d, 0xAA, 210); free(d);
        char *e = calloc(30, 7); int ez = 1; for (int i = 0; i < 210; i++) ez &= e[i] == 0; CHECK(ez); free(e);
    }
    void *c0 = calloc(0, 8); CHECK(c0 != NULL); free(c0);
    void *c1 = calloc(8, 0); CHECK(c1 != NULL); free(c1);
    /* realloc within a class, shrinking by less than a quarter (kept in place by the pools)
     * and by more (moved), growing: the bytes stay. */
    const char *mode = getenv("POOLGRIND_MODE");
    int pools = !mode || !strcmp(mode, "pool");
    char *g = malloc(500); for (int i = 0; i < 500; i++) g[i] = (char)i;
    char *old = g;
    g = realloc(g, 400); int gk = 1; for (int i = 0; i < 400; i++) gk &= g[i] == (char)i; CHECK(g && gk);
    CHECK(!pools || g == old);
    CHECK(malloc_usable_size(g) >= 400);
    g = realloc(g, 100); gk = 1; for (int i = 0; i < 100; i++) gk &= g[i] == (char)i; CHECK(g && gk);
    g = realloc(g, 4000); gk = 1; for (int i = 0; i < 100; i++) gk &= g[i] == (char)i; CHECK(g && gk);
    free(g);
    if (failures == 0) puts("badinput ok");
    return failures ? 1 : 0;
}
