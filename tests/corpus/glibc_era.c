/* Errors whose suppressions a user wrote against glibc (valgrind --gen-suppressions=all on a run
 * without poolgrind): tests/glibc_suppressions.rs checks that the same entries suppress the same
 * errors with libpoolgrind.so preloaded. One function per error, so each entry names it. */
#include <stdlib.h>
#include <string.h>

void *keep[8];

__attribute__((noinline)) void leak_by_malloc(void) { keep[0] = malloc(40); keep[0] = 0; }
__attribute__((noinline)) void leak_by_calloc(void) { keep[1] = calloc(4, 10); keep[1] = 0; }
__attribute__((noinline)) void leak_by_realloc(void) {
    char *p = malloc(16);
    memset(p, 1, 16);
    keep[2] = realloc(p, 100); /* a pool block moving to a larger class */
    keep[2] = 0;
}
__attribute__((noinline)) void leak_by_realloc_to_large(void) {
    char *p = malloc(16);
    memset(p, 1, 16);
    keep[3] = realloc(p, 5000); /* a pool block moving to the system allocator */
    keep[3] = 0;
}
__attribute__((noinline)) void leak_large_by_malloc(void) { keep[4] = malloc(4096); keep[4] = 0; }
__attribute__((noinline)) void double_free(void) {
    char *p = malloc(24);
    free(p);
    free(p);
}
__attribute__((noinline)) void invalid_free(void) {
    char *p = malloc(32);
    free(p + 8);
    free(p);
}

int main(void) {
    leak_by_malloc();
    leak_by_calloc();
    leak_by_realloc();
    leak_by_realloc_to_large();
    leak_large_by_malloc();
    double_free();
    invalid_free();
    return 0;
}
