/* cmd.h — a metric computed by a user's program: one long-lived process, batched JSONL.
 *
 * Owns: starting the program (/bin/sh -c PROGRAM, so it may be any command line), sending it
 * a batch of request lines on its standard input and reading exactly one reply line per
 * request from its standard output, both at once so that neither side blocks on a full pipe,
 * and telling a program that died, closed its output early or wrote a malformed stream from
 * one that answered.  Its standard error is the caller's.  Must not know: what the lines say
 * (collab/score builds the requests and reads the scores) or records. */
#ifndef CL_METRICS_CMD_H
#define CL_METRICS_CMD_H

#include <stddef.h>

#include "core/err.h"

typedef struct metric_cmd metric_cmd;

/* Starts program.  NULL with e set (CL_EXIT_OSERR) when it cannot be started. */
metric_cmd *metric_cmd_start(const char *program, cl_err *e);

/* Writes lines[0..n) (each without a newline; one is added) and reads n reply lines into
 * replies[0..n) (malloc'd, without the newline; the caller frees them).  -1 with e set
 * (CL_EXIT_SOFTWARE, naming the program) when it exits or closes its output before the n-th
 * reply; then replies[] holds nothing to free. */
int metric_cmd_exchange(metric_cmd *m, char *const *lines, size_t n, char **replies, cl_err *e);

/* Closes the program's input, waits for it and frees m.  0 when it exited with status 0
 * after writing nothing more; -1 with e set otherwise (when e already holds an error it is
 * kept).  *exit_status (exit_status may be NULL) gets the program's exit status (128 + the
 * signal when one ended it). */
int metric_cmd_finish(metric_cmd *m, int *exit_status, cl_err *e);

#endif
