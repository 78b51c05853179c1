/* How the system allocator (glibc) serves a block above the pools: prints "mapped" when it
 * gives the block a mapping of its own, "heap" when it carves it from its heap. mallinfo2 is
 * glibc's own (libpoolgrind.so does not replace it): hblks counts its mapped blocks. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    size_t size = argc > 1 ? strtoul(argv[1], NULL, 0) : (2u << 20);
    struct mallinfo2 before = mallinfo2();
    void *volatile p = malloc(size);
    struct mallinfo2 after = mallinfo2();
    printf("%s\n", after.hblks > before.hblks ? "mapped" : "heap");
    free(p);
    return 0;
}
