/* llm/call.h — private to the loop (llm/llm.c): the record of one call, from submission to its
 * callback.  Backends see a call only through llm/backend.h's accessors, callers through
 * llm/llm.h. */
#ifndef CL_LLM_CALL_H
#define CL_LLM_CALL_H

#include <jv.h>
#include <stdint.h>

#include "llm/backend.h"

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
    void *backend_data;      /* the backend's, during an attempt (an HTTP transfer, say) */
    /* the result, filled when the call ends */
    int status, http_status, cached;
    char *error;
    jv response;
    double latency_s;
    long prompt_tokens, completion_tokens; /* of the response, -1 when it has no usage */
    struct cl_llm_call *next;/* queue / done list link */
};

#endif
