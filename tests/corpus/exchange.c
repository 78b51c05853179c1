/* The large bins' exchange (issue 15): a thread whose large bin overflows leaves half of it for
 * other threads. A second thread allocates 17 blocks of 2 000 bytes and frees them: its bin
 * holds 16 of that size, so the 17th free leaves 8 in the bin's exchange slot, and the thread
 * exits (its own bins go back to glibc). The heap walker then checks the slot's chain
 * (poolgrind_check_heap) and the statistics are printed (poolgrind_print_stats, to stderr,
 * without allocating); the main thread allocates 8 blocks of 2 000 bytes, and they are printed
 * again: with the exchange, no request reached glibc in between, and the 8 blocks are the
 * other thread's. Nothing is printed to stdout before that (stdio's buffer is a request too).
 * Prints "ok N", N the main thread's blocks that were the other thread's (glibc itself may
 * hand them out again: the count of requests is what tells), or names the fault and exits 1. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 17
static void *theirs[N];

static void *other(void *arg) {
    (void)arg;
    for (int i = 0; i < N; i++) {
        theirs[i] = malloc(2000);
        if (!theirs[i]) return (void *)1;
        memset(theirs[i], 0x5a, 2000);
    }
    for (int i = 0; i < N; i++) free(theirs[i]);
    return NULL;
}

int main(void) {
    /* The large bins go on once a thread's frees are heavy in such blocks (4 096 in windows of
     * more than one in nine frees): 5 000 malloc/free pairs of 5 000 bytes (another bin). */
    for (int i = 0; i < 5000; i++) {
        char *w = malloc(5000);
        if (!w) { fputs("exchange: allocation failed\n", stderr); return 1; }
        w[0] = w[4999] = 1;
        free(w);
    }
    pthread_t t;
    void *ret;
    if (pthread_create(&t, NULL, other, NULL) || pthread_join(t, &ret) || ret) {
        fputs("exchange: the other thread failed\n", stderr);
        return 1;
    }
    int (*check)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "poolgrind_check_heap");
    if (check && check() != 0) { fputs("exchange: the heap walker found a fault\n", stderr); return 1; }
    void (*stats)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "poolgrind_print_stats");
    if (!check || !stats) { fputs("exchange: not preloaded\n", stderr); return 1; }
    stats();
    int same = 0;
    void *mine[8];
    for (int i = 0; i < 8; i++) {
        mine[i] = malloc(2000);
        if (!mine[i]) { fputs("exchange: allocation failed\n", stderr); return 1; }
        for (int j = 0; j < N; j++) same += mine[i] == theirs[j];
        memset(mine[i], 0xa5, 2000);
    }
    stats();
    for (int i = 0; i < 8; i++) free(mine[i]);
    if (check && check() != 0) { fputs("exchange: the heap walker found a fault\n", stderr); return 1; }
    printf("ok %d\n", same);
    return 0;
}
