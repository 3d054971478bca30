/* llm/backend.h — how a backend plugs into the LLM loop (for backend authors, not callers).
 *
 * Owns: the backend vtable, the view of a call a backend may read, the way an attempt ends,
 * and how a backend reaches the client's HTTP transport (llm/http.h).
 * Must not know: retries, the cache, rate limits and accounting; the loop (llm.c) does those
 * for every backend alike.  A backend only turns one attempt of a call into an outcome.
 *
 * Kinds of backend and how they fit the one single-threaded loop:
 *   - I/O backends (openai, azure, anthropic; llm/remote.h holds what they share): start() hands a request to the HTTP transport and returns; the
 *     outcome arrives when the loop polls the transport.
 *   - CPU backends (local:DIR, llm/local.c): start() queues the sequence; the loop calls
 *     step() whenever busy() says there is work (one batched decode step, say) and polls the
 *     sockets without waiting in between, so HTTP roles keep moving while the engine runs.
 *   - Scripted backends (world): start() may compute the reply at once and call
 *     cl_llm_attempt_done() from inside start(); the loop still delivers the caller's callback
 *     later, from its own turn. */
#ifndef CL_LLM_BACKEND_H
#define CL_LLM_BACKEND_H

#include <jv.h>

#include "llm/http.h"
#include "llm/llm.h"

typedef struct cl_llm_call cl_llm_call;

/* ---- what a backend may read of a call ---------------------------------------------- */

const jv *cl_llm_call_messages(const cl_llm_call *c);   /* borrowed array */
const jv *cl_llm_call_params(const cl_llm_call *c);     /* borrowed object: role params with
                                                          * the call's overrides applied */
const char *cl_llm_call_sample_key(const cl_llm_call *c);
int cl_llm_call_attempt(const cl_llm_call *c);           /* 1 for the first attempt */
const char *cl_llm_call_role_name(const cl_llm_call *c);

/* ---- how an attempt ends ------------------------------------------------------------- */

typedef struct cl_llm_outcome {
    jv response;         /* success: the response object in Chat Completions shape
                          * ({"choices":[{"message":{"content":…},"finish_reason":…}],
                          * "usage":{…}}), consumed; failure: jv_invalid() */
    int http_status;     /* 0 when no HTTP status was received */
    int retryable;       /* the same request may succeed later */
    double retry_after_s;/* the server's requested delay, 0 if none */
    int status;          /* for failures: the CL_EXIT_* code if this is the final error */
    int fatal_role;      /* every later call of this role would fail alike (bad key/URL) */
    enum { CL_LLM_FAIL_NONE, CL_LLM_FAIL_TRANSPORT, CL_LLM_FAIL_TIMEOUT, CL_LLM_FAIL_BODY,
           CL_LLM_FAIL_HTTP } kind;
    char error[512];     /* one line; the backend has removed its secrets from it */
    const char *raw;     /* success, optional: the exact JSON text response was parsed from,
                          * stored in the cache as it is (re-dumping costs more than the parse);
                          * borrowed for the duration of cl_llm_attempt_done */
    size_t raw_len;
} cl_llm_outcome;

/* Ends the attempt started by start(); exactly once per start(), from start() itself or later
 * (from a transport callback or step()).  o->response is consumed. */
void cl_llm_attempt_done(cl_llm_call *c, cl_llm_outcome *o);

/* ---- the vtable ---------------------------------------------------------------------- */

typedef struct cl_llm_backend {
    const char *scheme;  /* "openai" in "openai:gpt-4o" */
    /* Binds a role: arg is the spec after "scheme:", rc the role's configuration, cfg the
     * client's.  Sets *self to the role's backend state and *identity to a malloc'd string
     * naming what answers (endpoint and model, never a key; with the cache on, what the
     * server says about the model where it says anything), hashed into the cache key.
     * Returns 0, or -1 with e set (CL_EXIT_CONFIG). */
    int (*open)(cl_llm *llm, const char *arg, const cl_llm_role_config *rc,
                const cl_llm_config *cfg, void **self, char **identity, cl_err *e);
    /* Starts one attempt of c. */
    void (*start)(void *self, cl_llm_call *c);
    /* Ends c's attempt now (a hard stop): the backend must report it through
     * cl_llm_attempt_done before returning. */
    void (*abort)(void *self, cl_llm_call *c);
    /* CPU backends: whether step() has work, and one slice of it.  NULL for I/O backends. */
    int (*busy)(void *self);
    void (*step)(void *self);
    void (*close)(void *self);
    /* The provider's list price of the model arg names, in dollars per million prompt and
     * completion tokens, used when --price is not given: 1 with *in and *out set, 0 when the
     * model is not in the backend's table.  NULL: the backend knows no prices. */
    int (*list_price)(const char *arg, double *in, double *out);
    int no_cache;        /* replies are computed, not paid for: skip the cache */
    int no_cost;         /* replies cost nothing: --price does not apply (local models) */
} cl_llm_backend;

/* The backends cl knows, by scheme. */
extern const cl_llm_backend cl_llm_openai_backend;
extern const cl_llm_backend cl_llm_azure_backend;     /* azure:DEPLOYMENT (llm/openai.c) */
extern const cl_llm_backend cl_llm_anthropic_backend; /* anthropic:MODEL (llm/anthropic.c) */
extern const cl_llm_backend cl_llm_local_backend;   /* local:DIR (llm/local.c) */

/* ---- for backends that speak HTTP ------------------------------------------------- */

/* The client's transport (llm/http.h), shared by every role. */
cl_http *cl_llm_transport(cl_llm *llm);
/* A pointer the backend owns while an attempt of c runs (its transfer, say); NULL at start. */
void **cl_llm_call_backend_data(cl_llm_call *c);

#endif
