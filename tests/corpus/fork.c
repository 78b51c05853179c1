/* fork() while other threads allocate: the child must be able to allocate and free (every
 * allocator lock is held across fork and released in both processes). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int stop;

static void *churn(void *arg) {
    (void)arg;
    void *v[256] = {0};
    unsigned r = 1;
    while (!stop) {
        r = r * 1103515245 + 12345;
        int i = (r >> 8) % 256;
        free(v[i]);
        v[i] = malloc((r >> 16) % 600 + 1);
    }
    for (int i = 0; i < 256; i++) free(v[i]);
    return NULL;
}

int main(void) {
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, churn, NULL);
    for (int k = 0; k < 50; k++) {
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 1; }
        if (pid == 0) {
            void *v[1000];
            for (int i = 0; i < 1000; i++) { v[i] = malloc(i % 700 + 1); memset(v[i], 1, i % 700 + 1); }
            for (int i = 0; i < 1000; i++) free(v[i]);
            char *s = strdup("child ok");
            int ok = s && strcmp(s, "child ok") == 0;
            free(s);
            _exit(ok ? 0 : 3);
        }
        int st = 0;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "child %d failed: status %d\n", k, st);
            return 1;
        }
    }
    stop = 1;
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    puts("fork ok");
    return 0;
}
