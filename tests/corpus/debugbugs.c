/* Bugs that POOLGRIND_MODE=debug must catch natively (message on stderr, then abort). */
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (strcmp(argv[1], "overflow") == 0) { char *p = malloc(24); p[24] = 'x'; free(p); }
    if (strcmp(argv[1], "underflow") == 0) { char *p = malloc(24); p[-1] = 'x'; free(p); }
    if (strcmp(argv[1], "double_free") == 0) { char *p = malloc(24); free(p); free(p); }
    if (strcmp(argv[1], "clean") == 0) {
        for (int i = 0; i < 10000; i++) { char *p = malloc(i % 480); memset(p, 1, i % 480); free(p); }
    }
    return 0;
}
