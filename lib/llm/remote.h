/* llm/remote.h — what the backends that call a provider over HTTP share (openai:, azure:,
 * anthropic:), so each of them only writes its request body and reads its reply body.
 *
 * Owns: where a role's endpoint and key come from (its flags, CL_<ROLE>_BASE_URL and
 * CL_<ROLE>_API_KEY, then the provider's variables), the request headers with the key, URLs and
 * messages shown without secrets, posting and aborting an attempt, and what a failed attempt
 * (a transport error, an HTTP error status, a body that cannot be used) means for the loop:
 * retryable or not, which exit status, whether every later call of the role would fail alike.
 * Must not know: request or response bodies (each provider's own), the cache, the timing of
 * retries (llm.c). */
#ifndef CL_LLM_REMOTE_H
#define CL_LLM_REMOTE_H

#include <jv.h>
#include <stddef.h>

#include "llm/backend.h"

/* An endpoint as a role uses it.  Backends put it first in their state, so that
 * cl_remote_abort can serve as their vtable's abort. */
typedef struct cl_remote {
    cl_llm *llm;
    char *url;                  /* where attempts are POSTed */
    char *shown_url;            /* the same without user:password@ or ?query, for messages */
    char *key;                  /* NULL when none; wiped when freed */
    struct curl_slist *headers; /* content type, the key's header, the role's extra headers */
} cl_remote;

/* The name CL_<ROLE>_<WHAT> (the role upper-cased, '-' as '_') into buf; returns buf. */
const char *cl_remote_role_var(const char *role, const char *what, char *buf, size_t n);

/* The role's base URL: its --ROLE-api-base, else CL_<ROLE>_BASE_URL, else global (may be NULL:
 * --api-base serves openai: roles only), else the variable env_var, else dflt (may be NULL).
 * *base NULL when none; -1 with e set (78) when it is not an http:// or https:// URL. */
int cl_remote_base(const cl_llm_role_config *rc, const char *global, const char *env_var, const char *dflt,
                   const char **base, cl_err *e);

/* The role's key: the value of its --ROLE-api-key-env variable (an error when that is unset),
 * else CL_<ROLE>_API_KEY (set but empty means "send no key"), else env_var.  *key NULL when
 * none. */
int cl_remote_key(const cl_llm_role_config *rc, const char *env_var, const char **key, cl_err *e);

/* Sets r up for url (copied) with the key (copied; NULL or "" = none) sent as the header
 * auth_prefix followed by the key ("Authorization: Bearer ", "x-api-key: "), the fixed headers
 * (NULL-terminated, may be NULL) and the role's extra headers.  -1 with e set on a malformed
 * extra header (78) or no memory; r is then to be cleared with cl_remote_fini. */
int cl_remote_init(cl_remote *r, cl_llm *llm, const char *url, const char *key, const char *auth_prefix,
                   const char *const *fixed_headers, const cl_llm_role_config *rc, cl_err *e);
void cl_remote_fini(cl_remote *r);

/* A copy of url without credentials or query (which may carry secrets); NULL if no memory. */
char *cl_remote_shown_url(const char *url);

/* POSTs body (malloc'd, taken) for c's attempt; done(self, c, reply) runs when it ends. */
void cl_remote_post(cl_remote *r, cl_llm_call *c, char *body, size_t len, cl_http_done_fn done, void *self);
/* The vtable's abort for a backend whose state starts with a cl_remote. */
void cl_remote_abort(void *self, cl_llm_call *c);

/* Begins reading a reply in a backend's done callback.  Returns 1 for a 2xx reply, with *body
 * its JSON (jv_invalid() when it is not JSON) for the backend to turn into out->response;
 * 0 when the attempt failed and out says how (then only cl_remote_finish remains to do). */
int cl_remote_reply(cl_remote *r, cl_llm_call *c, const cl_http_reply *rp, cl_llm_outcome *out, jv *body);

/* A 2xx body the backend cannot use (not JSON, not the expected shape): retryable. */
void cl_remote_bad_body(cl_remote *r, const cl_http_reply *rp, const char *why, cl_llm_outcome *out);

/* Removes the key from out->error and ends the attempt (cl_llm_attempt_done). */
void cl_remote_finish(cl_remote *r, cl_llm_call *c, cl_llm_outcome *out);

#endif
