/* Whether glibc gives back the free top of its heap at its default trim threshold (128 KiB):
 * two blocks of 100 KiB (below its first mmap threshold, so carved from the heap) are freed and
 * the program break is read before and after: "trimmed" when it moved down, "kept" when it
 * did not. With an argument, a block of that many bytes is allocated first and kept (glibc alone
 * maps a block of 128 KiB or more and, as long as it is not freed, keeps its thresholds). Run
 * with the preload: its warm-up raises glibc's thresholds before the first request of 128 KiB
 * or more, and only then. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    void *volatile big = argc > 1 ? malloc(strtoul(argv[1], NULL, 0)) : NULL;
    char *volatile p = malloc(100 << 10);
    char *volatile q = malloc(100 << 10);
    p[0] = q[0] = 1;
    void *end = sbrk(0);
    free(q);
    free(p);
    (void)big;
    printf("%s\n", (char *)sbrk(0) < (char *)end ? "trimmed" : "kept");
    return 0;
}
