/* llm_int.h — private to lib/llm*.c: the call record and the parts of the client that the
 * loop (llm.c), the transport (llm_http.c) and the cache (llm_cache.c) share.
 * Nothing outside lib/llm*.c includes this; callers use llm.h, backends llm_backend.h. */
#ifndef CL_LLM_INT_H
#define CL_LLM_INT_H

#include <jv.h>
#include <stdint.h>

#include "llm_backend.h"

enum call_state { CALL_QUEUED, CALL_DELAYED, CALL_INFLIGHT, CALL_DONE };

struct cl_llm_call {
    cl_llm *llm;
    int role;
    jv messages;             /* array */
    jv params;               /* role params with the call's overrides applied */
    char *sample_key;
    cl_llm_done_fn done;
    void *ctx;
    char key[65];            /* cache key (hex), "" when not cached */
    enum call_state state;
    int attempts;
    double not_before;       /* retry time (CALL_DELAYED) */
    double t_start;          /* start of the current attempt */
    double est_tokens;       /* charged to the tokens-per-minute bucket at admission */
    size_t heap_i;           /* position in the retry heap (CALL_DELAYED) */
    size_t slot;             /* position in the in-flight array (CALL_INFLIGHT) */
    struct xfer *xfer;       /* the HTTP transfer of the current attempt, if any */
    /* the result, filled when the call ends */
    int status, http_status, cached;
    char *error;
    jv response;
    double latency_s;
    long prompt_tokens, completion_tokens; /* of the response, -1 when it has no usage */
    struct cl_llm_call *next;/* queue / done list link */
};

/* ---- transport ------------------------------------------------------------------------ */

typedef struct cl_llm_http cl_llm_http;
cl_llm_http *cl_llm_http_new(const cl_llm_config *cfg, cl_err *e);
void cl_llm_http_free(cl_llm_http *h);
/* Waits at most timeout_ms for socket activity or libcurl's timers, moves transfers on and
 * delivers the finished ones to their backends' done callbacks. */
void cl_llm_http_wait(cl_llm_http *h, int timeout_ms);
cl_llm_http *cl_llm_http_of(cl_llm *llm);

/* ---- cache ---------------------------------------------------------------------------- */

typedef struct cl_llm_cache cl_llm_cache;
cl_llm_cache *cl_llm_cache_open(const char *dir, cl_err *e);
void cl_llm_cache_close(cl_llm_cache *k);
/* Packs whose reading stopped at a damaged entry when the cache was opened. */
long cl_llm_cache_torn(const cl_llm_cache *k);
/* Looks key up: 1 = hit (*response owned by the caller, *latency_s set), 0 = miss,
 * -1 = an entry exists but fails its key or checksum test (a miss: the entry the fetch then
 * appends supersedes it). */
int cl_llm_cache_get(cl_llm_cache *k, const char *key, jv *response, double *latency_s);
/* Stores a response: raw[0..raw_len) when given (its exact JSON text), else response
 * (borrowed) dumped.  0, or -1 when the entry could not be written (the run goes on; the call
 * just is not cached). */
int cl_llm_cache_put(cl_llm_cache *k, const char *key, const jv *response, const char *raw, size_t raw_len,
                     double latency_s, const char *sample_key);

#endif
