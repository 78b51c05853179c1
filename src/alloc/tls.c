/* Storage for poolgrind's per-thread cache (src/alloc/tcache.rs), in the initial-exec TLS model.
 *
 * Why C: Rust's `thread_local!` in a shared library uses the general-dynamic model, which costs a
 * call to __tls_get_addr on every malloc and free of the preloaded library; stable Rust cannot
 * choose the model. A library loaded at start-up (LD_PRELOAD, or linked) may use initial-exec,
 * as mimalloc and jemalloc do: the address is the thread pointer plus a constant offset.
 * Zero-initialised, which is the cache's "fresh" state. tcache.rs asserts the size fits. */
__attribute__((tls_model("initial-exec"), aligned(64)))
__thread unsigned char poolgrind_tcache_tls[1280];

/* The argument block of Valgrind client requests (src/alloc/track.rs), per thread, in the same
 * model. Why not on the stack: a stack array whose address escapes into the request's asm keeps
 * the compiler from turning the C entry points' calls to the system allocator into tail calls,
 * and those must be tail calls so that a block the system allocator serves is recorded by
 * memcheck with the program's stack alone (src/capi.rs). */
__attribute__((tls_model("initial-exec"), aligned(64)))
__thread unsigned long poolgrind_request_tls[6];

/* The memcheck frees of this thread that wait for their books (src/alloc/memcheck/pending.rs,
 * `types::PendingFrees`: four words, 16 slots and their 16 carve counts), in the same model: each memcheck free stores
 * its block here instead of making a request of its own. Natively it is never touched. */
__attribute__((tls_model("initial-exec"), aligned(64)))
__thread unsigned long poolgrind_pending_tls[28];
