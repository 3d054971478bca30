/* llm/http.h — the HTTP transport the LLM loop and its HTTP backends share: one libcurl multi
 * handle per client (so every role reuses the same connections), driven by epoll.
 *
 * Owns: transfers (a POST and its reply), connection reuse, timeouts and stall detection, the
 * reply headers that say when to retry.
 * Must not know: calls, retries, the cache, accounting or backends.  A transfer carries two
 * opaque pointers back to whoever posted it; what a reply means is the backend's business. */
#ifndef CL_LLM_HTTP_H
#define CL_LLM_HTTP_H

#include <stddef.h>

#include "core/err.h"

typedef struct cl_http cl_http;
typedef struct cl_http_xfer cl_http_xfer;
struct curl_slist;

typedef struct cl_http_opts {
    long max_inflight;        /* transfers the caller will ever have at once */
    double timeout_s;         /* whole transfer */
    double connect_timeout_s;
    double stall_timeout_s;   /* reply begun, then silent this long; 0 = no check */
} cl_http_opts;

typedef struct cl_http_reply {
    long status;              /* HTTP status, 0 when the transfer failed before one */
    int curl_code;            /* CURLcode; 0 = the transfer completed */
    const char *curl_error;   /* libcurl's message for curl_code */
    int timed_out;            /* total or stall timeout */
    const char *body;         /* NUL-terminated */
    size_t len;
    double retry_after_s;     /* retry-after-ms, else Retry-After (seconds or HTTP date) */
    int should_retry;         /* x-should-retry: -1 absent, 0 false, 1 true */
} cl_http_reply;

/* Runs once per transfer with the two pointers given to cl_http_post; rp is valid only during
 * the call. */
typedef void (*cl_http_done_fn)(void *self, void *arg, const cl_http_reply *rp);

cl_http *cl_http_new(const cl_http_opts *o, cl_err *e);
void cl_http_free(cl_http *h);

/* POSTs body (malloc'd, taken) to url with headers (borrowed: must outlive the transfer).
 * Returns the transfer, or NULL when it could not start: done has then already run (with
 * curl_code set).  The caller never has more than o->max_inflight transfers at once. */
cl_http_xfer *cl_http_post(cl_http *h, const char *url, const struct curl_slist *headers,
                           char *body, size_t len, cl_http_done_fn done, void *self, void *arg);
/* Ends x now; done runs before this returns (curl_code CURLE_ABORTED_BY_CALLBACK). */
void cl_http_abort(cl_http *h, cl_http_xfer *x);

/* A blocking GET of url (with headers, borrowed; may be NULL) taking at most timeout_s, for
 * the few requests a client makes before its loop runs (a server's model list).  Returns the
 * HTTP status (0 when none came, with libcurl's message in err) and the body in *body
 * (malloc'd, NUL-terminated, NULL on failure). */
long cl_http_get(const char *url, const struct curl_slist *headers, double timeout_s, char **body,
                 char *err, size_t errlen);

/* Waits at most timeout_ms for socket activity or libcurl's timers, moves transfers on and
 * runs the finished ones' done callbacks. */
void cl_http_wait(cl_http *h, int timeout_ms);

#endif
