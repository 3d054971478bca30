/* rm_start.c — cl-reward's end of the rm_score metric (see rm_start.h). */
#include "collab/rm_start.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"

/* Appends arg to b quoted for /bin/sh. */
static void put_quoted(cl_buf *b, const char *arg)
{
    cl_buf_puts(b, " '");
    for (const char *p = arg; *p; p++)
        if (*p == '\'')
            cl_buf_puts(b, "'\\''");
        else
            cl_buf_putc(b, *p);
    cl_buf_putc(b, '\'');
}

metric_cmd *cl_rm_start(const char *spec, const char *api_base, long retries, int quiet, cl_err *e)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || (size_t)n >= sizeof self - 16) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "rm_score: cannot find this program's directory (/proc/self/exe)");
        return NULL;
    }
    self[n] = 0;
    strcpy(strrchr(self, '/') + 1, "cl-judge");
    if (access(self, X_OK) != 0) {
        cl_err_set(e, CL_EXIT_CONFIG, "rm_score: %s is missing: the reward model is asked through it", self);
        return NULL;
    }
    const char *key = getenv("CL_RM_API_KEY");
    char num[32];
    cl_buf cmd = {0};
    cl_buf_puts(&cmd, "exec");
    put_quoted(&cmd, self);
    cl_buf_puts(&cmd, quiet ? " -q" : " --no-progress");
    cl_buf_puts(&cmd, " --rm-units --no-cache --judge-temperature 0 --judge-max-tokens 32 --judge");
    put_quoted(&cmd, spec);
    if (api_base && *api_base) {
        cl_buf_puts(&cmd, " --judge-api-base");
        put_quoted(&cmd, api_base);
    }
    if (key && *key) /* the variable's name goes on the command line, never the key */
        cl_buf_puts(&cmd, " --judge-api-key-env CL_RM_API_KEY");
    if (retries >= 0) {
        snprintf(num, sizeof num, " --retries %ld", retries);
        cl_buf_puts(&cmd, num);
    }
    if (cmd.oom) {
        free(cmd.p);
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    metric_cmd *m = metric_cmd_start(cmd.p, e);
    free(cmd.p);
    return m;
}
