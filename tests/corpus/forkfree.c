/* A fork prepare handler registered before the preload's own (before the program's first
 * malloc) frees 200 glibc blocks of 600 B. Prepare handlers run in reverse order, so the
 * preload's has taken its locks by then; the frees must not wait for one of them (the count
 * behind the switch of `free` to the system bins takes the arena lock only if it is free).
 * Prints "ok" and exits 0; a hang is the failure. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define N 200
static void *blocks[N];

static void prepare(void) {
    for (int i = 0; i < N; i++) {
        free(blocks[i]);
        blocks[i] = NULL;
    }
}

int main(void) {
    pthread_atfork(prepare, NULL, NULL);
    for (int i = 0; i < N; i++) blocks[i] = malloc(600);
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid < 0 || waitpid(pid, NULL, 0) != pid) return 1;
    puts("ok");
    return 0;
}
