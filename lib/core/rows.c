#include "core/rows.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

enum mode { UNKNOWN, JSONL, ARRAY };
enum state { FIRST, AFTER_COMMA, IN_VALUE, DONE };

struct cl_rows {
    cl_reader *r;
    int arrays;
    enum mode mode;
    enum state state;
    cl_line cur;          /* the input line being cut; valid until the next cl_reader_next */
    size_t pos;
    int have;
    char *buf;            /* the element being gathered */
    size_t len, cap;
    int depth, in_str, esc;
    uint64_t start_line, nrows, last_line;
};

cl_rows *cl_rows_open(const char *path, int arrays, cl_err *e)
{
    cl_rows *r = calloc(1, sizeof *r);
    if (!r) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    if (!(r->r = cl_reader_open(path, e))) {
        free(r);
        return NULL;
    }
    r->arrays = arrays;
    return r;
}

const char *cl_rows_name(const cl_rows *r) { return cl_reader_name(r->r); }

void cl_rows_on_idle(cl_rows *r, void (*fn)(void *), void *ctx) { cl_reader_on_idle(r->r, fn, ctx); }

int cl_rows_progress(const cl_rows *r, uint64_t *done, uint64_t *total)
{
    return cl_reader_progress(r->r, done, total);
}

void cl_rows_close(cl_rows *r)
{
    if (!r)
        return;
    cl_reader_close(r->r);
    free(r->buf);
    free(r);
}

static int push(cl_rows *r, char c, cl_err *e)
{
    if (cl_grow((void **)&r->buf, &r->cap, r->len + 2, 1) < 0)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    r->buf[r->len++] = c;
    return 0;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static int fault(cl_rows *r, const char *what, cl_err *e)
{
    uint64_t line = r->have ? r->cur.lineno : r->last_line;
    if (r->state == DONE)
        return cl_err_set(e, CL_EXIT_DATAERR, "%s:%" PRIu64 ": %s", cl_rows_name(r), line, what);
    return cl_err_set(e, CL_EXIT_DATAERR, "%s:%" PRIu64 ": row %" PRIu64 ": %s", cl_rows_name(r),
                      line, r->nrows + 1, what);
}

static void emit(cl_rows *r, cl_row *row)
{
    while (r->len && is_ws(r->buf[r->len - 1]))
        r->len--;
    r->buf[r->len] = '\0';
    row->text = r->buf;
    row->len = r->len;
    row->lineno = r->start_line;
    row->row = ++r->nrows;
}

/* Cuts the next element out of the array.  1 = row, 0 = end, -1 = error. */
static int next_element(cl_rows *r, cl_row *row, cl_err *e)
{
    for (;;) {
        if (!r->have) {
            int k = cl_reader_next(r->r, &r->cur, e);
            if (k < 0)
                return -1;
            if (k == 0) {
                if (r->state != DONE)
                    return fault(r, "the JSON array has no closing ']'", e);
                return 0;
            }
            r->have = 1;
            r->pos = 0;
            r->last_line = r->cur.lineno;
            if (r->state == IN_VALUE) {
                /* JSON strings cannot hold a raw line break, so this is bad input, not a
                 * line to join */
                if (r->in_str)
                    return fault(r, "line break inside a string", e);
                if (push(r, ' ', e) < 0)
                    return -1;
            }
        }
        const char *s = r->cur.text;
        size_t n = r->cur.len;
        while (r->pos < n) {
            char c = s[r->pos];
            if (r->state == DONE) {
                if (!is_ws(c))
                    return fault(r, "text after the closing ']' of the JSON array", e);
                r->pos++;
                continue;
            }
            if (r->state == FIRST || r->state == AFTER_COMMA) {
                if (is_ws(c)) {
                    r->pos++;
                    continue;
                }
                if (c == ']') {
                    if (r->state == AFTER_COMMA)
                        return fault(r, "trailing comma before ']'", e);
                    r->state = DONE;
                    r->pos++;
                    continue;
                }
                r->state = IN_VALUE;
                r->len = 0;
                r->depth = r->in_str = r->esc = 0;
                r->start_line = r->cur.lineno;
            }
            r->pos++;
            if (r->in_str) {
                if (r->esc)
                    r->esc = 0;
                else if (c == '\\')
                    r->esc = 1;
                else if (c == '"')
                    r->in_str = 0;
            } else if (c == '"') {
                r->in_str = 1;
            } else if (c == '{' || c == '[') {
                r->depth++;
            } else if ((c == '}' || c == ']') && r->depth > 0) {
                r->depth--;
            } else if ((c == ']' || c == ',') && r->depth == 0) {
                r->state = c == ']' ? DONE : AFTER_COMMA;
                emit(r, row);
                return 1;
            }
            if (push(r, c, e) < 0)
                return -1;
        }
        r->have = 0;
    }
}

int cl_rows_next(cl_rows *r, cl_row *row, cl_err *e)
{
    if (r->mode == ARRAY)
        return next_element(r, row, e);
    for (;;) {
        int k = cl_reader_next(r->r, &r->cur, e);
        if (k <= 0)
            return k;
        if (r->mode == UNKNOWN) {
            size_t i = strspn(r->cur.text, " \t");
            if (i == r->cur.len) {
                row->text = r->cur.text; /* blank: let the caller skip it as usual */
                row->len = r->cur.len;
                row->lineno = r->cur.lineno;
                row->row = 0;
                return 1;
            }
            if (r->arrays && r->cur.text[i] == '[') {
                if (!(r->buf = malloc(r->cap = 4096)))
                    return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
                r->mode = ARRAY;
                r->state = FIRST;
                r->have = 1;
                r->pos = i + 1;
                r->last_line = r->cur.lineno;
                return next_element(r, row, e);
            }
            r->mode = JSONL;
        }
        row->text = r->cur.text;
        row->len = r->cur.len;
        row->lineno = r->cur.lineno;
        row->row = 0;
        return 1;
    }
}
