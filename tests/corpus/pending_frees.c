/* Under memcheck a thread's frees wait, up to sixteen, before their books are kept
 * (memcheck::pending); a thread that exits must have its last ones kept by its destructor, or
 * those blocks would stay live in the allocator's books for ever. Run with
 * POOLGRIND_QUARANTINE=0, so that a kept free goes straight back to its pool: the main thread
 * carves six blocks of one otherwise unused class from one pool, a thread frees five of them,
 * highest first (a thread's first free is kept at once, as it sets the destructor; the other
 * four are still pending when it exits), and the main thread's next block of
 * that class must be the lowest of the five again (the pool's lowest free block). The sixth
 * block keeps the pool from emptying. Then the heap walker checks every invariant. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define SIZE 300   /* class 296-304: nothing else here uses it */
static void *blocks[6];

static void *free_five(void *arg) {
    (void)arg;
    for (int i = 4; i >= 0; i--) free(blocks[i]);   /* the first free, kept at once, is the 5th */
    return NULL;
}

int main(void) {
    for (int i = 0; i < 6; i++) blocks[i] = malloc(SIZE);
    pthread_t t;
    pthread_create(&t, NULL, free_five, NULL);
    pthread_join(t, NULL);
    void *again = malloc(SIZE);
    printf("%s\n", again == blocks[0] ? "reused" : "not reused");
    free(again);
    free(blocks[5]);
    int (*check)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "poolgrind_check_heap");
    if (!check) { puts("no poolgrind_check_heap: not preloaded"); return 2; }
    int rc = check();
    printf("heap %s\n", rc == 0 ? "ok" : "broken");
    return rc == 0 ? 0 : 1;
}
