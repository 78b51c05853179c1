/* A crash handler's backtrace(3) through the preload library's frames. Run with
 * POOLGRIND_MODE=debug: the double free below aborts inside the library, and the SIGABRT
 * handler walks the stack and says whether it got past the library to double_free's frame.
 * (Issue 15's thirteenth round: with the unwinders' search table between the release
 * library's hot and cold code, the table was out of order and the walk stopped inside it.)
 * Prints "frames N caller found" or "... missing". */
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void *volatile keep;

__attribute__((noinline)) void double_free(void) {
    void *p = keep;
    free(p);
    free(p);
}

static void on_abort(int sig);

int main(void) {
    signal(SIGABRT, on_abort);
    keep = malloc(100);
    double_free();
    printf("no abort\n");
    return 1;
}

static void on_abort(int sig) {
    (void)sig;
    void *frames[64];
    int n = backtrace(frames, 64);
    /* double_free's code ends where the next function of this file begins, if one follows. */
    char *lo = (char *)double_free, *hi = lo + 4096;
    char *others[] = {(char *)main, (char *)on_abort};
    for (int i = 0; i < 2; i++)
        if (others[i] > lo && others[i] < hi) hi = others[i];
    int found = 0;
    for (int i = 0; i < n; i++) {
        char *pc = frames[i];
        if (pc > lo && pc <= hi) found = 1;
    }
    dprintf(1, "frames %d caller %s\n", n, found ? "found" : "missing");
    _exit(0);
}
