/* Memcheck's common malloc and free keep their books on the real CPU (memcheck::host), every
 * other case in the guest under the allocator's lock. This program mixes both from three
 * threads: churn over a live set with cross-thread hand-overs, sizes on both sides of the
 * pools' limit (system blocks), calloc and realloc (guest paths), a small quarantine (run with
 * POOLGRIND_QUARANTINE=20000, so pools empty during eviction and the guest finishes it; and with
 * POOLGRIND_QUARANTINE_BIG=256, so two rings take turns), and
 * blocks of one otherwise unused class leaked from one call site, 70 per thread, so that new
 * pools are made while they are carved (a pool's first block comes from the guest, the others
 * from the real CPU). Then the heap walker checks every invariant (poolgrind_check_heap). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 3
#define LIVE 64
#define ROUNDS 20000
#define LEAKS 70

static void *shared[LIVE];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
void *volatile sink;

static size_t size_of(uint64_t r) {
    unsigned pick = r % 16;
    if (pick == 0) return 513 + (r >> 8) % 1500;   /* system */
    return 1 + (r >> 8) % 400;                     /* pools (the leaked class, 481-496, unused) */
}

__attribute__((noinline)) static void leak_here(void) {
    sink = malloc(490);
}

static void *worker(void *arg) {
    uint64_t r = 0x9e3779b97f4a7c15ull * (uintptr_t)(arg + 1);
    void *live[LIVE] = {0};
    int leaked = 0;
    for (int i = 0; i < ROUNDS; i++) {
        r ^= r << 13; r ^= r >> 7; r ^= r << 17;
        int k = r % LIVE;
        free(live[k]);
        size_t n = size_of(r >> 6);
        switch ((r >> 40) % 8) {
        case 0: live[k] = calloc(1, n); break;
        case 1: live[k] = realloc(malloc(n % 256 + 1), n); break;
        default: live[k] = malloc(n); break;
        }
        memset(live[k], i, n);
        if (i % 7 == 0) {   /* hand a block over to whichever thread takes the slot next */
            pthread_mutex_lock(&mu);
            void *t = shared[k];
            shared[k] = live[k];
            live[k] = t;
            pthread_mutex_unlock(&mu);
        }
        if (i % 256 == 0 && leaked < LEAKS) {
            leak_here();
            leaked++;
        }
    }
    for (int k = 0; k < LIVE; k++) free(live[k]);
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    for (int k = 0; k < LIVE; k++) free(shared[k]);
    sink = NULL;
    int (*check)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "poolgrind_check_heap");
    if (!check) { puts("no poolgrind_check_heap: not preloaded"); return 2; }
    int rc = check();
    printf("heap %s\n", rc == 0 ? "ok" : "broken");
    return rc == 0 ? 0 : 1;
}
