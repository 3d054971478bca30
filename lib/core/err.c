#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static const char *progname = "cl";

void cl_set_progname(const char *name) { progname = name; }
const char *cl_progname(void) { return progname; }

int cl_err_set(cl_err *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return -1;
}

static void vwarn(const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void cl_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwarn(fmt, ap);
    va_end(ap);
}

void cl_die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwarn(fmt, ap);
    va_end(ap);
    exit(code);
}

void cl_die_err(const cl_err *e)
{
    if (e->code == CL_EXIT_EPIPE)
        exit(CL_EXIT_EPIPE);
    cl_die(e->code ? e->code : CL_EXIT_SOFTWARE, "%s", e->msg[0] ? e->msg : "internal error");
}
