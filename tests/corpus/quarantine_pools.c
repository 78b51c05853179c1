/* Hundreds of pools' worth of freed zero-byte blocks wait in memcheck's quarantine (they add no
 * bytes to it), then frees of 512-byte blocks push it over its limit: one free lets every
 * zero-byte block go, and their ~360 pools change lists (full -> used -> empty) ~700 times in
 * that one eviction. Run on a thread with a 256 KiB stack: an eviction that recursed once per
 * list change (the first version of issue 15's third round, when the compiler makes no tail
 * call, as at opt-level 0) overflows it (checked: SIGSEGV with 876f21b's debug library).
 * Expects POOLGRIND_QUARANTINE=300000, whose ring has 32 768 slots: ZERO stays below that, so
 * that the ring is not full and the frees take the quarantine's fast path. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define ZERO 30000
#define BIG 700 /* 700 * 512 bytes > the 300 000-byte limit */

static void *zero[ZERO];

static void *work(void *arg) {
    (void)arg;
    for (int i = 0; i < ZERO; i++) zero[i] = malloc(0);
    for (int i = 0; i < ZERO; i++) free(zero[i]);
    for (int i = 0; i < BIG; i++) {
        char *p = malloc(512);
        p[0] = 1;
        free(p);
    }
    return NULL;
}

int main(void) {
    pthread_attr_t a;
    pthread_t t;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 * 1024);
    if (pthread_create(&t, &a, work, NULL) != 0) return 2;
    pthread_join(t, NULL);
    puts("done");
    return 0;
}
