/* Fills memcheck's quarantine with 200 000 freed 8-byte blocks (1.6 MB of requested bytes, well
 * under its 20 MB limit: every one still waits at exit), then exits. The quarantine's slots
 * (16 bytes a block: 3.2 MB of ring) are emptied by the exit drain; the test then reads how many
 * bytes memcheck's leak check scanned ("Checked N bytes"), which counts every readable mapping. */
#include <stdlib.h>

#define N 200000

int main(void) {
    for (int i = 0; i < N; i++) {
        char *p = malloc(8);
        p[0] = (char)i;
        free(p);
    }
    void *live = malloc(8); /* one block live at exit, so that the leak check runs its scan */
    (void)live;
    return 0;
}
