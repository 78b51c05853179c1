/* Frees blocks of the system allocator through poolgrind (large ones: address_in_range reads
 * the start of their page, which glibc owns), then branches on an uninitialised byte of such a
 * block: memcheck must report exactly that branch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static void read_uninit_after_foreign_free(void) {
    char *big[64];
    for (int i = 0; i < 64; i++) big[i] = malloc(1000 + 4096 * (i % 4));
    for (int i = 0; i < 63; i++) free(big[i]);
    if (big[63][700] == 7) puts("seven"); /* uninitialised: must be reported */
    free(big[63]);
}

int main(void) {
    read_uninit_after_foreign_free();
    return 0;
}
