/* Fork handlers registered before the preload's own (before the program's first malloc) run
 * while the preload holds every allocator lock: prepare handlers run last-registered first,
 * parent and child handlers first-registered first. Whatever they free or allocate must not
 * wait for a lock their own thread holds.
 *
 * argv[1] "glibc": the prepare handler frees 200 glibc blocks of 600 B (the count behind the
 * switch of `free` to the system bins takes the arena lock).
 * argv[1] "pool": each of the three handlers frees 600 pool blocks of 16 B (a full bin gives
 * blocks back to their class, under the class lock), then allocates and frees 600 of 48 B (an
 * empty bin refills from its class, which carves pools from an arena, under the arena lock).
 * argv[1] "leak": the prepare handler leaks one block of 48 B (under memcheck, its allocation
 * stack must start at malloc, then the handler).
 *
 * Prints "ok" and exits 0 when the child exited 0 too; a hang is the failure. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define N 200
#define M 600
static void *blocks[N];
static void *small[3][M];

static void free_glibc_blocks(void) {
    for (int i = 0; i < N; i++) {
        free(blocks[i]);
        blocks[i] = NULL;
    }
}

static void churn(int k) {
    static void *fresh[M];
    for (int i = 0; i < M; i++) {
        free(small[k][i]);
        small[k][i] = NULL;
    }
    for (int i = 0; i < M; i++) {
        fresh[i] = malloc(48);
        if (fresh[i] == NULL) _exit(3);
        memset(fresh[i], k, 48);
    }
    for (int i = 0; i < M; i++) free(fresh[i]);
}

static void leak(void) {
    void *volatile p = malloc(48);
    (void)p;
}

static void prepare(void) { churn(0); }
static void parent(void) { churn(1); }
static void child(void) { churn(2); }

int main(int argc, char **argv) {
    int pool = argc > 1 && argv[1][0] == 'p';
    if (argc > 1 && argv[1][0] == 'l') {
        pthread_atfork(leak, NULL, NULL);
        free(malloc(1)); /* the allocator starts (and registers its handlers) after ours */
    } else if (pool) {
        pthread_atfork(prepare, parent, child);
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < M; i++) small[k][i] = malloc(16);
    } else {
        pthread_atfork(free_glibc_blocks, NULL, NULL);
        for (int i = 0; i < N; i++) blocks[i] = malloc(600);
    }
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return 1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("child status %d\n", status);
        return 1;
    }
    puts("ok");
    return 0;
}
