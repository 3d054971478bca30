/* err.h — exit statuses and error values shared by every cl tool.
 *
 * Owns: the exit-status table of the design brief (sysexits values), the error value that
 * library calls fill in (a code plus a message), and the one place that prints diagnostics
 * with the program's name.  Library functions never print or exit; tools report at the edge. */
#ifndef CL_ERR_H
#define CL_ERR_H

#include <stddef.h>

enum cl_exit {
    CL_EXIT_OK = 0,           /* everything done */
    CL_EXIT_FAILED = 1,       /* some records failed; each is reported */
    CL_EXIT_USAGE = 2,        /* bad flags, or a mode not built yet */
    CL_EXIT_DATAERR = 65,     /* malformed input record */
    CL_EXIT_NOINPUT = 66,     /* an input file cannot be opened */
    CL_EXIT_UNAVAILABLE = 69, /* a service stayed unreachable after retries */
    CL_EXIT_SOFTWARE = 70,    /* internal error */
    CL_EXIT_IOERR = 74,       /* write failed (ENOSPC, EIO) */
    CL_EXIT_TEMPFAIL = 75,    /* temporary failure (rate limits, budget), try later */
    CL_EXIT_CONFIG = 78,      /* missing key, model or configuration */
    CL_EXIT_EPIPE = 141       /* the reader went away, as if killed by SIGPIPE */
};

typedef struct cl_err {
    int code;        /* an enum cl_exit value; 0 = no error */
    char msg[1024];  /* "file:line: what went wrong" */
} cl_err;

/* Fills *e (if e is non-NULL) and returns -1 so callers can `return cl_err_set(...)`. */
int cl_err_set(cl_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The program name diagnostics start with; set once by cl_cli_parse. */
void cl_set_progname(const char *name);
const char *cl_progname(void);

/* "prog: message\n" on stderr. */
void cl_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* cl_warn then exit(code). */
_Noreturn void cl_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reports e->msg and exits with e->code (CL_EXIT_SOFTWARE when unset). */
_Noreturn void cl_die_err(const cl_err *e);

#endif
