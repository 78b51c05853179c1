/* A trap on the release library's warm code (issue 15, sixteenth round): preloaded after
 * libpoolgrind.so, its constructor runs first and makes the library's code segment at file
 * offset $WARM_OFFSET unreadable. Each fault there is counted, named on stderr, and let
 * through (the segment is made executable again and the instruction retried). At exit it
 * prints "warm faults: N". Built as a shared object by tests/preload.rs. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>

static unsigned long lo, hi;
static volatile int faults;

static void say(const char *s) { (void)!write(2, s, strlen(s)); }

static void on_segv(int sig, siginfo_t *si, void *uc) {
    unsigned long a = (unsigned long)si->si_addr;
    (void)uc;
    if (a < lo || a >= hi) {
        signal(sig, SIG_DFL);
        return; /* not ours: the retried access dies with the default action */
    }
    faults++;
    char buf[96];
    int n = snprintf(buf, sizeof buf, "warm code run at segment offset %#lx\n", a - lo);
    (void)!write(2, buf, n);
    mprotect((void *)lo, hi - lo, PROT_READ | PROT_EXEC);
}

__attribute__((constructor)) static void arm(void) {
    const char *want = getenv("WARM_OFFSET");
    static char maps[1 << 16];
    int fd = open("/proc/self/maps", O_RDONLY);
    long n = 0, k;
    while (fd >= 0 && (k = read(fd, maps + n, sizeof maps - 1 - n)) > 0) n += k;
    if (fd >= 0) close(fd);
    maps[n] = 0;
    unsigned long off_wanted = want ? strtoul(want, 0, 0) : 0;
    for (char *line = maps; *line;) {
        char *e = strchr(line, '\n');
        if (!e) break;
        *e = 0;
        unsigned long a, b, off;
        char perm[8], path[512] = "";
        if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %511s", &a, &b, perm, &off, path) >= 4 &&
            strstr(path, "libpoolgrind.so") && !strcmp(perm, "r-xp") && off == off_wanted) {
            lo = a;
            hi = b;
        }
        line = e + 1;
    }
    if (!want || !lo) {
        say("warm trap: no code segment of libpoolgrind.so at $WARM_OFFSET\n");
        _exit(3);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    mprotect((void *)lo, hi - lo, PROT_NONE);
}

__attribute__((destructor)) static void report(void) {
    char buf[64];
    int n = snprintf(buf, sizeof buf, "warm faults: %d\n", faults);
    (void)!write(2, buf, n);
}
