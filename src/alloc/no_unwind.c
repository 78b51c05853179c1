/* The preload library's unwinder: none (release builds only; build.rs links this object into the
 * cdylib alone, never into the rlib that Rust programs link).
 *
 * The release profile aborts on panic, so nothing ever unwinds through libpoolgrind.so: it is a C
 * library, and a panic there prints its message and aborts. Yet std, built to unwind, still names
 * libgcc_s's unwinder (landing pads, the panic runtime's personality routine, the backtrace
 * printer), and that alone made every process that preloads the library load libgcc_s.so.1 too:
 * ~100 KiB of resident memory and ~0.1 ms of start-up (issue 15, peak RSS of small programs).
 *
 * Every function of the unwinder's interface (unwind.h, the Itanium C++ ABI's level 1, and the
 * GNU extensions std uses) is defined here, hidden, so that none resolves to libgcc_s and the
 * linker's --as-needed drops it; the version script keeps them out of the dynamic symbol table
 * (they must never interpose on the program's own unwinder). Each one reports "no frames": a
 * raise fails (std then aborts, after the panic's message), a backtrace is empty.
 *
 * A build of the release profile with panic=unwind (`cargo test --release`, `cargo bench`, a
 * profile that inherits release and unwinds) links them too: there a panic aborts after its
 * message instead of unwinding. Nothing in the library catches a panic, and none may cross
 * its `extern "C"` entry points anyway. Outside unwinders (gdb, valgrind, a C++ program's own
 * exceptions, glibc's backtrace(3)) are unaffected: the library keeps its .eh_frame. */

#include <stdint.h>
#include <stdlib.h>

struct _Unwind_Context;
struct _Unwind_Exception;
typedef int _Unwind_Reason_Code;
typedef _Unwind_Reason_Code (*_Unwind_Trace_Fn)(struct _Unwind_Context *, void *);
typedef _Unwind_Reason_Code (*_Unwind_Stop_Fn)(int, int, uint64_t, struct _Unwind_Exception *,
                                               struct _Unwind_Context *, void *);

#define HIDDEN __attribute__((visibility("hidden")))
/* _URC_END_OF_STACK in unwind.h. */
#define END_OF_STACK 5

HIDDEN _Unwind_Reason_Code _Unwind_RaiseException(struct _Unwind_Exception *e) {
    (void)e;
    return END_OF_STACK;
}
HIDDEN _Unwind_Reason_Code _Unwind_ForcedUnwind(struct _Unwind_Exception *e, _Unwind_Stop_Fn stop,
                                                void *arg) {
    (void)e, (void)stop, (void)arg;
    return END_OF_STACK;
}
HIDDEN _Unwind_Reason_Code _Unwind_Resume_or_Rethrow(struct _Unwind_Exception *e) {
    (void)e;
    return END_OF_STACK;
}
/* Called only from a landing pad, which runs only while unwinding. */
HIDDEN void _Unwind_Resume(struct _Unwind_Exception *e) {
    (void)e;
    abort();
}
HIDDEN void _Unwind_DeleteException(struct _Unwind_Exception *e) { (void)e; }
HIDDEN _Unwind_Reason_Code _Unwind_Backtrace(_Unwind_Trace_Fn trace, void *arg) {
    (void)trace, (void)arg;
    return END_OF_STACK;
}
/* The context accessors: no context is ever handed out, so these are never called. */
HIDDEN uintptr_t _Unwind_GetGR(struct _Unwind_Context *c, int i) { (void)c, (void)i; return 0; }
HIDDEN void _Unwind_SetGR(struct _Unwind_Context *c, int i, uintptr_t v) { (void)c, (void)i, (void)v; }
HIDDEN uintptr_t _Unwind_GetIP(struct _Unwind_Context *c) { (void)c; return 0; }
HIDDEN uintptr_t _Unwind_GetIPInfo(struct _Unwind_Context *c, int *before) {
    (void)c;
    if (before) *before = 0;
    return 0;
}
HIDDEN void _Unwind_SetIP(struct _Unwind_Context *c, uintptr_t v) { (void)c, (void)v; }
HIDDEN uintptr_t _Unwind_GetCFA(struct _Unwind_Context *c) { (void)c; return 0; }
HIDDEN void *_Unwind_GetLanguageSpecificData(struct _Unwind_Context *c) { (void)c; return 0; }
HIDDEN uintptr_t _Unwind_GetRegionStart(struct _Unwind_Context *c) { (void)c; return 0; }
HIDDEN uintptr_t _Unwind_GetDataRelBase(struct _Unwind_Context *c) { (void)c; return 0; }
HIDDEN uintptr_t _Unwind_GetTextRelBase(struct _Unwind_Context *c) { (void)c; return 0; }
HIDDEN void *_Unwind_FindEnclosingFunction(void *pc) { (void)pc; return 0; }
