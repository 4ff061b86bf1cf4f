// Returning freed heap memory to the operating system (glibc keeps it for reuse otherwise).
#include "CKernels.h"
#if defined(__GLIBC__)
#include <malloc.h>
#endif

void rk_release_free_memory(void) {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}
