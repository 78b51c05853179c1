/* Under memcheck a thread's frees wait, up to sixteen, before their books are kept
 * (memcheck::pending). A double free is reported by memcheck at once, but its books are kept
 * later: by then the block may have gone back to its pool and out again, to a new owner. That
 * pending free must leave the new owner's block alone. Run with POOLGRIND_QUARANTINE=0, so
 * that a kept free goes straight back to its pool. Single-threaded, step by step:
 * p is freed and kept (back in its pool), freed again (memcheck: invalid free; pending), carved
 * again as q (the pool's lowest free block), then the pending double free's turn comes; the next
 * block of the class must not be q again while q is in use. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#define SIZE 300    /* class 296-304: nothing else here uses it */
#define FILLER 40   /* another class, for the frees that fill a batch */
void *volatile sink;

static void fill_batch(void) {
    for (int i = 0; i < 15; i++) free(malloc(FILLER));
}

int main(void) {
    free(malloc(8));               /* the thread's first free: kept at once (sets the destructor) */
    char *p = malloc(SIZE);
    char *keep = malloc(SIZE);     /* keeps p's pool from emptying */
    free(p);                       /* pending */
    fill_batch();                  /* the 16th free: all kept, p back in its pool */
    free(p);                       /* double free: reported; pending */
    char *q = malloc(SIZE);        /* p's block again, for a new owner */
    fill_batch();                  /* the double free's turn */
    char *r = malloc(SIZE);
    printf("%s %s\n", q == p ? "recarved" : "not recarved", r == q ? "twice" : "distinct");
    free(r);
    free(q);
    free(keep);
    int (*check)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "poolgrind_check_heap");
    if (!check) { puts("no poolgrind_check_heap: not preloaded"); return 2; }
    int rc = check();
    printf("heap %s\n", rc == 0 ? "ok" : "broken");
    return rc == 0 ? 0 : 1;
}
