/* rows.h — the rows of one input: JSONL lines, or the elements of a file that is one JSON array.
 *
 * Owns: telling the two apart (an input whose first non-blank byte is '[' is an array), and
 * cutting an array, compact or pretty-printed, plain or zstd, into one row per element without
 * parsing it: each row is handed out as one line of JSON text with the line it starts on and
 * its 1-based element number, so records.h validates and reports it like a JSONL line.
 * Structural faults of the array itself (no closing ']', a trailing comma, text after the
 * array, a line break inside a string) are errors naming file, line and row. */
#ifndef CL_ROWS_H
#define CL_ROWS_H

#include <stdint.h>

#include "core/err.h"
#include "core/stream.h"

typedef struct cl_row {
    char *text;       /* NUL-terminated JSON text on one line; valid until the next call */
    size_t len;
    uint64_t lineno;  /* line of the input where the row starts */
    uint64_t row;     /* 1-based element number in an array input; 0 for a JSONL line */
} cl_row;

typedef struct cl_rows cl_rows;

/* Opens path ("-" = stdin).  With arrays 0 every input is read as JSONL. */
cl_rows *cl_rows_open(const char *path, int arrays, cl_err *e);
const char *cl_rows_name(const cl_rows *r);
/* 1 = *row filled, 0 = end of input, -1 = error in e (CL_EXIT_DATAERR for a broken array). */
int cl_rows_next(cl_rows *r, cl_row *row, cl_err *e);
void cl_rows_on_idle(cl_rows *r, void (*fn)(void *ctx), void *ctx);
/* cl_reader_progress of the underlying reader. */
int cl_rows_progress(const cl_rows *r, uint64_t *done, uint64_t *total);
void cl_rows_close(cl_rows *r);

#endif
