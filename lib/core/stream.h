/* stream.h — byte streams of JSONL records: zstd or plain in, zstd or plain out.
 *
 * Owns: opening inputs (files or "-"), detecting zstd by its magic number and decompressing in
 * streaming fashion (concatenated and skippable frames included), splitting lines of any length
 * with their line number and byte offset, and the output side: zstd-compressed JSONL (or plain)
 * whose every write is checked.  It knows nothing of JSON; records.h builds on it. */
#ifndef CL_STREAM_H
#define CL_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct cl_reader cl_reader;

typedef struct cl_line {
    char *text;       /* NUL-terminated, without the newline (and without a trailing CR) */
    size_t len;
    uint64_t lineno;  /* 1-based line number in the (decompressed) input */
    uint64_t offset;  /* byte offset of the line start in the decompressed input */
} cl_line;

/* Opens path ("-" or NULL = stdin).  NULL with e set (CL_EXIT_NOINPUT) on failure. */
cl_reader *cl_reader_open(const char *path, cl_err *e);
/* The name used in diagnostics ("-" reads as "<stdin>"). */
const char *cl_reader_name(const cl_reader *r);
/* Next line: 1 = *line filled (valid until the next call), 0 = end of input, -1 = error in e
 * (I/O error, corrupt or truncated zstd).  Lines are not length-limited. */
int cl_reader_next(cl_reader *r, cl_line *line, cl_err *e);
/* Called (with ctx) just before the reader would block waiting for more input, so that a
 * writer can push out what it holds: downstream sees records while upstream is slow. */
void cl_reader_on_idle(cl_reader *r, void (*fn)(void *ctx), void *ctx);
/* How far a regular file has been read: 1 with *done and *total in bytes of the file as
 * stored (compressed or not), 0 when the size is unknown (a pipe, a terminal). */
int cl_reader_progress(const cl_reader *r, uint64_t *done, uint64_t *total);
void cl_reader_close(cl_reader *r);

typedef struct cl_writer cl_writer;

typedef struct cl_writer_opts {
    int plain;      /* 1 = plain JSONL, 0 = zstd, -1 = zstd unless the output is a terminal */
    int level;      /* zstd level; 0 = CL_ZSTD_LEVEL or 3 */
    int threads;    /* zstd worker threads; 0 = single-threaded */
} cl_writer_opts;

/* Opens path (NULL or "-" = stdout) for writing. */
cl_writer *cl_writer_open(const char *path, const cl_writer_opts *o, cl_err *e);
/* Writes one line (a newline is appended).  -1 with e set on a write error; EPIPE gives
 * CL_EXIT_EPIPE so the tool can exit quietly like a SIGPIPE'd filter. */
int cl_writer_put(cl_writer *w, const char *text, size_t len, cl_err *e);
/* Ends the current zstd frame and writes everything out, so the bytes written so far form a
 * complete, decodable stream.  Cheap when nothing is pending. */
int cl_writer_sync(cl_writer *w, cl_err *e);
/* Syncs, closes (fsync not implied) and frees.  Returns -1 with e set if anything failed. */
int cl_writer_close(cl_writer *w, cl_err *e);
/* Bytes of records handed to the writer (uncompressed), for statistics. */
uint64_t cl_writer_bytes(const cl_writer *w);

#endif
