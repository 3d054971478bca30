/* buf.h — growable memory: byte strings built piece by piece, and arrays that double.
 *
 * Owns: the one growth policy of the library (double, from a small start) so that string
 * builders (tokenisers, normalisers, prompt rendering) and arrays (queues, pools) do not each
 * carry their own realloc loop.  A cl_buf that fails to grow remembers it (oom) and ignores
 * later writes, so builders check once at the end. */
#ifndef CL_BUF_H
#define CL_BUF_H

#include <stddef.h>

typedef struct cl_buf {
    char *p;     /* NUL-terminated once anything was written; owned, free() it */
    size_t n;    /* bytes written, the NUL excluded */
    size_t cap;
    int oom;     /* a growth failed: the contents are incomplete */
} cl_buf;

void cl_buf_put(cl_buf *b, const void *s, size_t n);
void cl_buf_putc(cl_buf *b, char c);
void cl_buf_puts(cl_buf *b, const char *s);

/* Makes room for `need` elements of `elem` bytes in *p (capacity *cap, in elements),
 * doubling.  0, or -1 when out of memory (then *p and *cap are unchanged). */
int cl_grow(void **p, size_t *cap, size_t need, size_t elem);

#endif
