/* records.h — the record stream every tool reads and writes.
 *
 * Owns: the walk over all inputs (files or stdin, zstd or plain; JSONL, or JSON-array files when
 * a tool asks for them, see rows.h), JSON and UTF-8 checking of every line with file:line:byte
 * diagnostics, --skip-bad/--rejects, --shard, --where, --map,
 * deterministic ids, the output writer, per-record failure reporting, progress on stderr, the
 * closing summary and --stats.  Records that no one changed are written from their original
 * bytes, so pass-through is exact and fast. */
#ifndef CL_RECORDS_H
#define CL_RECORDS_H

#include <jv.h>
#include <stdint.h>

#include "core/cli.h"
#include "core/err.h"

typedef struct cl_rec {
    const char *raw;    /* original line bytes, or NULL once the value was rewritten (--map);
                         * valid until the next cl_io_next */
    size_t rawlen;
    jv value;           /* parsed lazily: use cl_rec_value() */
    int parsed;
    const char *src;    /* input name for diagnostics */
    uint64_t lineno;    /* line in src (where the row starts) */
    uint64_t row;       /* 1-based element number when src is a JSON array file, else 0 */
    uint64_t index;     /* 0-based position among all valid input records */
    int input;          /* which input it came from: an index into cl_common.inputs (0 for
                         * standard input); tells apart a file given twice */
    struct cl_io *io_;  /* private: the stream that owns value */
} cl_rec;

typedef struct cl_io cl_io;

typedef struct cl_io_opts {
    int assign_ids;     /* give records without "id" a deterministic one (hash of their bytes) */
    int json_arrays;    /* also read inputs that are one JSON array of rows (see rows.h) */
    int failed_aside;   /* the output is a trainer's file, valid rows only: failed records go
                         * to --rejects when given, else are only reported on stderr */
} cl_io_opts;

/* Opens inputs, output, filters and rejects file from the common flags. */
cl_io *cl_io_open(const cl_common *c, const cl_io_opts *o, cl_err *e);

/* Next record that passes --shard/--where, after --map.  1 = *rec filled, 0 = end, -1 = fatal
 * error in e (bad input without --skip-bad gives CL_EXIT_DATAERR with file:line:byte). */
int cl_io_next(cl_io *io, cl_rec *rec, cl_err *e);

/* The record's value, borrowed: valid until the next cl_io_next. */
const jv *cl_rec_value(cl_rec *rec);

/* "file:line" of a record, or "file:line: row N" for an element of a JSON array input, for
 * messages (static buffer per io). */
const char *cl_rec_where(cl_io *io, const cl_rec *rec);

/* Writes the record unchanged (its original bytes when it has them). */
int cl_io_put_rec(cl_io *io, cl_rec *rec, cl_err *e);
/* Writes v (consumed) as a record. */
int cl_io_put(cl_io *io, jv v, cl_err *e);
/* Reports a per-record failure: warns "file:line: msg", writes v (consumed) with an "error"
 * field {"tool","message"} to the output (or to --rejects when given; never to the output with
 * failed_aside), and makes the exit status 1.  Returns -1 only when writing fails. */
int cl_io_fail(cl_io *io, const cl_rec *rec, jv v, const char *msg, cl_err *e);

/* Rejects a record the tool cannot use (msg says which field and why): without --skip-bad
 * -1 with e = CL_EXIT_DATAERR "file:line: msg"; with it the record is counted as rejected,
 * warned about and copied to --rejects, and 0 is returned. */
int cl_io_reject(cl_io *io, cl_rec *rec, const char *msg, cl_err *e);

/* Pushes buffered output downstream as complete zstd frames. */
int cl_io_sync(cl_io *io, cl_err *e);

/* Adds key: value (consumed) to the --stats object and the closing summary's extras. */
void cl_io_stat(cl_io *io, const char *key, jv value);
/* Text (copied) that ends the closing summary line after "; ", such as the LLM client's
 * "llm: 45 calls ...": one line per run, however many parts a tool has. */
void cl_io_summary_extra(cl_io *io, const char *text);
/* A short text appended to the progress line, e.g. "in flight 64, 1.2M tokens". */
void cl_io_progress_extra(cl_io *io, void (*fn)(void *ctx, char *buf, size_t n), void *ctx);
/* Draws the progress line if it is due (a terminal's a few times a second, plain lines every
 * --progress seconds): progress is driven by time, so a tool that waits (on models, on a
 * sandbox) calls this from its wait loop.  Reading a record calls it too.  Cheap when not due. */
void cl_io_tick(cl_io *io);

typedef struct cl_io_counts {
    uint64_t read, written, rejected, filtered, failed;
} cl_io_counts;
cl_io_counts cl_io_get_counts(const cl_io *io);

/* Closes everything, prints the summary (unless -q), writes --stats, and returns the exit
 * status of the run: 0, 1 (failed records) or the code of a write error (message in e). */
int cl_io_close(cl_io *io, cl_err *e);

/* Copies every record to the output unchanged (after the record flags). 0 or -1 with e set. */
int cl_io_passthrough(cl_io *io, cl_err *e);

/* Ends a tool's run: when status < 0 reports e (quietly for a broken pipe); closes io; returns
 * the process exit status.  Typical main: `return cl_io_finish(io, cl_io_passthrough(io, &e), &e);` */
int cl_io_finish(cl_io *io, int status, cl_err *e);

#endif
