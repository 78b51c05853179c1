/* poolgrind.h: the C interface of libpoolgrind.so (src/capi.rs).
 *
 * Link with -lpoolgrind (target/release), or preload the library to replace malloc & co. for a
 * whole process: LD_PRELOAD=.../libpoolgrind.so program. The unprefixed names are aliases of
 * the prefixed ones and exist only in the shared library.
 *
 * Semantics are glibc's: NULL and errno = ENOMEM when out of memory or on size overflow;
 * free(NULL) does nothing; realloc(p, 0) frees p and returns NULL; posix_memalign returns
 * EINVAL unless the alignment is a power of two multiple of sizeof(void *).
 * Blocks up to 512 bytes (alignment up to 16) come from pymalloc-style pools; larger ones from
 * the system allocator. Under Valgrind's memcheck every pool block is reported on like a malloc
 * block. Environment options: POOLGRIND_MODE, POOLGRIND_STATS, POOLGRIND_TCACHE,
 * POOLGRIND_VALGRIND, POOLGRIND_QUARANTINE (see README.md). */
#ifndef POOLGRIND_H
#define POOLGRIND_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void *poolgrind_malloc(size_t size);
void *poolgrind_calloc(size_t n, size_t size);
void *poolgrind_realloc(void *p, size_t size);
void *poolgrind_reallocarray(void *p, size_t n, size_t size);
void poolgrind_free(void *p);
size_t poolgrind_malloc_usable_size(void *p);
void *poolgrind_memalign(size_t align, size_t size);
void *poolgrind_aligned_alloc(size_t align, size_t size);
int poolgrind_posix_memalign(void **out, size_t align, size_t size);
void *poolgrind_valloc(size_t size);
void *poolgrind_pvalloc(size_t size);

/* Prints the per-size-class statistics table to stderr. */
void poolgrind_print_stats(void);
/* Checks every allocator invariant; 0 when all hold, 1 otherwise. */
int poolgrind_check_heap(void);

#ifdef __cplusplus
}
#endif

#endif
