/* Frees glibc's blocks (SIZE bytes, 600 by default) among pool blocks (64 bytes), one in every
 * PERIOD frees, in one thread, then leaves 600-byte blocks freed in its cache. Usage: freemode
 * PERIOD [SIZE]. Under the preload, the `free` that keeps glibc's blocks of 513..1024 B in the
 * thread caches' system bins is chosen only when more than one in nine of a thread's frees are
 * of such blocks: the statistics' "system blocks cached" tell which `free` ran. Then the heap walker
 * checks every invariant (poolgrind_check_heap), the mode's among them. Prints "ok" and exits 0,
 * or names the fault and exits 1. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIVE 256

int main(int argc, char **argv) {
    int period = argc > 1 ? atoi(argv[1]) : 2;
    if (period < 1) period = 1;
    size_t big = argc > 2 ? (size_t)atol(argv[2]) : 600;
    static unsigned char *live[LIVE];
    static size_t size[LIVE];
    for (long i = 0; i < 200000; i++) {
        int k = (int)(i % LIVE);
        if (live[k]) {
            for (size_t j = 0; j < size[k]; j += 61)
                if (live[k][j] != (unsigned char)k) { fprintf(stderr, "freemode: block changed\n"); return 1; }
            free(live[k]);
        }
        size[k] = i % period == 0 ? big : 64;
        live[k] = malloc(size[k]);
        if (!live[k]) { fprintf(stderr, "freemode: allocation failed\n"); return 1; }
        memset(live[k], k, size[k]);
    }
    for (int k = 0; k < LIVE; k++) free(live[k]);
    void *keep[16];
    for (int i = 0; i < 16; i++) keep[i] = malloc(600);
    for (int i = 0; i < 16; i++) free(keep[i]);
    int (*check)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "poolgrind_check_heap");
    if (!check) { fprintf(stderr, "freemode: no poolgrind_check_heap: not preloaded\n"); return 1; }
    if (check() != 0) { fprintf(stderr, "freemode: the heap walker found a fault\n"); return 1; }
    puts("ok");
    return 0;
}
