/* Uses the prefixed API through valgrind/poolgrind.h, linked against libpoolgrind.so. */
#include <stdio.h>
#include <string.h>
#include "poolgrind.h"

int main(void) {
    char *p = poolgrind_malloc(100);
    if (!p) return 1;
    strcpy(p, "prefixed");
    p = poolgrind_realloc(p, 1000);
    if (!p || strcmp(p, "prefixed") != 0) return 1;
    poolgrind_free(p);
    void *a = NULL;
    if (poolgrind_posix_memalign(&a, 256, 10) != 0 || ((size_t)a % 256) != 0) return 1;
    poolgrind_free(a);
    if (poolgrind_check_heap() != 0) return 1;
    puts("header ok");
    return 0;
}
