/* glibc's debugging allocator (libc_malloc_debug.so behind the preload, MALLOC_CHECK_=3)
 * switches its checks on in its first malloc and assumes no other thread calls it meanwhile:
 * a block served in that window by plain glibc is later taken for a corrupted one (the abort
 * "malloc_check_get_size: memory corruption"). Behind poolgrind a program's small blocks never
 * reach it, so its first call may come from several threads at once.
 *
 * One small block first (poolgrind starts); then the debugging allocator must have started:
 * its __malloc_hook (a compatibility symbol, its start-up hook until its first call) is null.
 * Then threads released at once make their first large allocations and ask their usable size,
 * as the race did in sysbins.c. Prints "ok" and exits 0, or says what is wrong and exits 1. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define THREADS 4

static int go;

static void *work(void *arg) {
    size_t n = 600 + (size_t)(long)arg * 8;
    while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE)) {}
    void *p = malloc(n);
    if (!p || malloc_usable_size(p) < n) {
        fprintf(stderr, "debug_start: block of %zu bytes short\n", n);
        exit(1);
    }
    free(p);
    return NULL;
}

int main(void) {
    free(malloc(16));
    void *debug = dlopen("libc_malloc_debug.so.0", RTLD_NOLOAD | RTLD_LAZY);
    if (!debug) {
        fputs("debug_start: libc_malloc_debug.so.0 is not loaded\n", stderr);
        return 1;
    }
    void **hook = dlvsym(debug, "__malloc_hook", "GLIBC_2.2.5");
    if (!hook) {
        fputs("debug_start: libc_malloc_debug.so.0 has no __malloc_hook\n", stderr);
        return 1;
    }
    if (*hook) {
        fputs("debug_start: the debugging allocator has not started: its first callers race\n", stderr);
        return 1;
    }
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, work, (void *)i);
    __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    dlclose(debug);
    puts("ok");
    return 0;
}
