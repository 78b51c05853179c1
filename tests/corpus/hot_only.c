/* What glibc's malloc benchmarks do, and nothing more: malloc, calloc and free, in the main
 * thread and in a thread that starts and exits. With "realloc" as its argument it then calls
 * realloc once (tests/preload.rs: the warm code is run then, and only then). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *churn(void *arg) {
    void *blocks[1000];
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 1000; i++) blocks[i] = malloc(8 + (i * 37 + round) % 600);
        for (int i = 0; i < 1000; i++) free(blocks[i]);
    }
    char *z = calloc(100, 3);
    free(z);
    return arg;
}

int main(int argc, char **argv) {
    churn(0);
    pthread_t t;
    if (pthread_create(&t, 0, churn, 0) || pthread_join(t, 0)) return 1;
    if (argc > 1 && !strcmp(argv[1], "realloc")) {
        char *p = malloc(40);
        p = realloc(p, 4000);
        free(p);
    }
    printf("hot_only ok\n");
    return 0;
}
