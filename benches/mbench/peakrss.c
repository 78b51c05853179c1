/* peakrss PROGRAM ARGS...: runs PROGRAM and prints its peak RSS to stderr as
 * "peakrss_kib=N" (wait4's ru_maxrss), with PROGRAM's exit status as its own. PROGRAM gets
 * $PEAKRSS_PRELOAD as its LD_PRELOAD, so that this process runs without the library measured.
 *
 * For run.py's --spec programs, which print no VmHWM of their own: a process forked from
 * Python starts its ru_maxrss at Python's RSS (~11 MiB), which hid the peak of every small
 * program. Forked from this small process instead, the floor is this process's ~1 MiB. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs("usage: peakrss PROGRAM [ARGS...]\n", stderr);
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("peakrss: fork");
        return 127;
    }
    if (pid == 0) {
        const char *preload = getenv("PEAKRSS_PRELOAD");
        if (preload && *preload) setenv("LD_PRELOAD", preload, 1);
        execv(argv[1], argv + 1);
        perror("peakrss: exec");
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("peakrss: wait4");
        return 127;
    }
    fprintf(stderr, "peakrss_kib=%ld\n", ru.ru_maxrss);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
