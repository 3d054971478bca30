/* pages.c — huge-page advice and zeroed tables written once (see pages.h). */
/* madvise(MADV_HUGEPAGE, MADV_DONTNEED) is outside POSIX. */
#define _DEFAULT_SOURCE
#include "core/pages.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { HUGE_PAGE = 2 << 20 };

/* madvise on the whole pages inside [p, p + n): a neighbour may share the edge pages (advice,
 * so a failure is harmless) */
static void advise(const void *p, size_t n, int advice)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), z = ((uintptr_t)p + n) & ~(page - 1);
    if (z > a) (void)madvise((void *)a, z - a, advice);
}

void cl_pages_advise(void *p, size_t n) { advise(p, n, MADV_HUGEPAGE); }

void cl_pages_release(const void *p, size_t n) { advise(p, n, MADV_DONTNEED); }

void *cl_pages_zalloc(size_t *n)
{
    size_t align = *n >= HUGE_PAGE / 2 ? HUGE_PAGE : 64;
    size_t bytes = (*n + align - 1) / align * align;
    void *p = NULL;
    if (bytes < *n || posix_memalign(&p, align, bytes ? bytes : align) != 0) return NULL;
    if (align == HUGE_PAGE) cl_pages_advise(p, bytes);
    memset(p, 0, bytes);
    *n = bytes;
    return p;
}
