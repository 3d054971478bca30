#include "collab/rm.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/json.h"

/* A unit waiting for its answer: the messages until submitted, then the answer line. */
typedef struct rm_req {
    jv messages;   /* jv_invalid() when the line itself was unusable (answer already set) */
    char *answer;  /* malloc'd JSON line without the newline */
} rm_req;

static char *answer_error(const char *why)
{
    jv o = cl_json_set_str(jv_object(), "error", why);
    char *s = cl_json_dump(&o, NULL);
    jv_free(o);
    return s;
}

/* The request of one unit line: its messages as role and content, or an answer saying why
 * there is none. */
static rm_req read_unit(const char *line, size_t len)
{
    rm_req r = {jv_invalid(), NULL};
    jv u = cl_json_parse(line, len);
    jv msgs = jv_get_kind(u) == JV_KIND_OBJECT ? cl_json_get(&u, "messages") : jv_invalid();
    if (jv_get_kind(msgs) != JV_KIND_ARRAY) {
        r.answer = answer_error("the unit has no messages array");
    } else {
        r.messages = jv_array();
        jv_array_foreach(msgs, i, m) {
            jv out = jv_object();
            out = cl_json_set(out, "role", cl_json_get(&m, "role"));
            out = cl_json_set(out, "content", cl_json_get(&m, "content"));
            r.messages = jv_array_append(r.messages, out);
            jv_free(m);
        }
    }
    jv_free(msgs);
    jv_free(u);
    return r;
}

/* The reward model's reply: its content, a number and nothing else, is the score. */
static void on_reply(void *ctx, const cl_llm_result *r)
{
    rm_req *q = ctx;
    char why[700];
    if (r->status != 0) {
        snprintf(why, sizeof why, "%s", r->error ? r->error : "the call failed");
        q->answer = answer_error(why);
        return;
    }
    const char *s = r->content ? r->content : "";
    char *end;
    double x = strtod(s, &end);
    while (*end == ' ' || *end == '\n' || *end == '\t' || *end == '\r')
        end++;
    if (end == s || *end || !isfinite(x)) {
        snprintf(why, sizeof why, "the reward model's reply is not a number: %.200s", s);
        q->answer = answer_error(why);
        return;
    }
    jv o = cl_json_set_num(jv_object(), "rm_score", x);
    q->answer = cl_json_dump(&o, NULL);
    jv_free(o);
}

/* Asks for every request's score at once, then writes the answers in order. */
static int answer_all(cl_llm *llm, int role, rm_req *q, size_t n, FILE *out, cl_err *e)
{
    for (size_t i = 0; i < n; i++)
        if (jv_is_valid(q[i].messages)) {
            cl_llm_submit(llm, role, q[i].messages, jv_null(), NULL, on_reply, &q[i]);
            q[i].messages = jv_invalid();
        }
    cl_llm_run(llm);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (!q[i].answer)
            rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        else if (rc == 0 && fprintf(out, "%s\n", q[i].answer) < 0)
            rc = cl_err_set(e, CL_EXIT_IOERR, "write: %s", strerror(errno));
        free(q[i].answer);
    }
    if (rc == 0 && fflush(out) != 0)
        rc = cl_err_set(e, CL_EXIT_IOERR, "write: %s", strerror(errno));
    return rc;
}

int cl_rm_serve(cl_llm *llm, int role, int fd, FILE *out, cl_err *e)
{
    cl_buf in = {0};
    size_t start = 0, n = 0, cap = 0;
    rm_req *q = NULL;
    int eof = 0, rc = 0;
    while (rc == 0 && (!eof || n > 0)) {
        /* Every complete line read so far becomes a request. */
        while (rc == 0 && start < in.n) {
            char *nl = memchr(in.p + start, '\n', in.n - start);
            if (!nl && !eof)
                break; /* the rest of this line is still to come */
            size_t len = nl ? (size_t)(nl - (in.p + start)) : in.n - start;
            if (cl_grow((void **)&q, &cap, n + 1, sizeof *q) != 0) {
                rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
                break;
            }
            q[n++] = read_unit(in.p + start, len);
            start += len + (nl != NULL);
        }
        /* Read on while more input is already there (a batch arrives as one burst); block
         * only when nothing waits for an answer. */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (rc == 0 && !eof && (n == 0 || poll(&p, 1, 0) > 0)) {
            if (start > 0) {
                memmove(in.p, in.p + start, in.n - start);
                in.n -= start;
                start = 0;
            }
            char chunk[65536];
            ssize_t got = read(fd, chunk, sizeof chunk);
            if (got < 0 && errno != EINTR)
                rc = cl_err_set(e, CL_EXIT_IOERR, "read: %s", strerror(errno));
            else if (got == 0)
                eof = 1;
            else if (got > 0)
                cl_buf_put(&in, chunk, (size_t)got);
            if (in.oom)
                rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
            continue;
        }
        if (rc == 0 && n > 0)
            rc = answer_all(llm, role, q, n, out, e);
        n = 0;
    }
    for (size_t i = 0; i < n; i++)
        jv_free(q[i].messages);
    free(q);
    free(in.p);
    return rc;
}
