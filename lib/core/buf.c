#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

int cl_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

void cl_buf_put(cl_buf *b, const void *s, size_t n)
{
    if (b->oom)
        return;
    if (cl_grow((void **)&b->p, &b->cap, b->n + n + 1, 1) < 0) {
        b->oom = 1;
        return;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void cl_buf_putc(cl_buf *b, char c) { cl_buf_put(b, &c, 1); }

void cl_buf_puts(cl_buf *b, const char *s) { cl_buf_put(b, s, strlen(s)); }
