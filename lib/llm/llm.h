/* llm/llm.h — every LLM call of cl goes through here.
 *
 * Owns: model specs ("openai:MODEL", "anthropic:MODEL", "azure:DEPLOYMENT", "local:DIR",
 * scripted programs such as "world"),
 * per-role endpoint, key and sampling parameters, the one event loop that drives every call of
 * a run (a single thread, libcurl multi for HTTP), admission control (max in flight, requests
 * and tokens per minute, budget), retries with backoff, the on-disk cache and the accounting
 * (tokens, latency, cost).
 * Must not know: records, conversations, prompts or what a reply means.  Callers (cl-rollout,
 * cl-judge) build messages and read replies; this module only moves them.
 *
 * Model of use (one thread):
 *
 *     cl_llm *llm = cl_llm_new(&cfg, &e);            // usually via llm/cli.h
 *     int asst = cl_llm_role(llm, "assistant");
 *     cl_llm_submit(llm, asst, messages, jv_null(), "rec-17/t0/c2", on_reply, state);
 *     ...submit more; callbacks may submit follow-up calls...
 *     cl_llm_run(llm);                               // until no work is left or stopped
 *     cl_llm_free(llm);
 *
 * Callback contract
 *   - A callback runs only from inside cl_llm_run or cl_llm_step, never from inside
 *     cl_llm_submit (a cache hit is delivered on the next loop turn), so a caller may submit
 *     while holding half-built state, and may submit from inside a callback.
 *   - Every submitted call gets exactly one callback: success, or a final error after retries,
 *     a budget stop, an interruption or a configuration error.  Errors are never swallowed and
 *     never crash the process; r->status says which kind.
 *   - Everything r points to (content, response, error text) is borrowed and valid only during
 *     the callback: copy what you keep (jv_copy for r->response).
 *   - A callback may submit, and may call cl_llm_stop, but must not call cl_llm_run,
 *     cl_llm_step or cl_llm_free.
 *
 * Ownership of jv (libjq rule: every jv_* call consumes its arguments except jv_copy):
 * cl_llm_submit consumes `messages` and `params`, always, even when the call fails.
 *
 * Sample key: a string naming the call's place in the caller's tree, for instance
 * "ID/t3/c1/f0/m7" (record id, turn, candidate, future, message index; cl_llm_sample_key
 * writes this form).  It is part of the cache
 * key, so S samples of one prompt stay S different samples (S different keys), and a re-run
 * with the same keys replays every call from the cache byte for byte.  Put into it everything
 * that should make two otherwise identical requests distinct (including the run's --seed when
 * a new seed should mean new samples).  Never put secrets in it.
 *
 * Secrets: keys come only from the environment; they never appear in results, error messages,
 * cache files or statistics (server error texts are scrubbed of the key too). */
#ifndef CL_LLM_H
#define CL_LLM_H

#include <jv.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct cl_llm cl_llm;

/* ---- configuration ------------------------------------------------------------------- */

/* One role (assistant, user simulator, judge, ...): which model, where, how to sample. */
typedef struct cl_llm_role_config {
    const char *name;      /* "assistant": also names the environment overrides
                            * CL_ASSISTANT_API_KEY and CL_ASSISTANT_BASE_URL */
    const char *spec;      /* "openai:MODEL"; NULL = the role is not configured (a submit to it
                            * fails with CL_EXIT_CONFIG); unknown scheme = config error */
    const char *base_url;  /* NULL: CL_<ROLE>_BASE_URL, then (openai: only)
                            * cl_llm_config.api_base, then the scheme's variable
                            * (OPENAI_BASE_URL, ANTHROPIC_BASE_URL, AZURE_OPENAI_ENDPOINT), then
                            * its default (man/cl-llm.7) */
    const char *key_env;   /* variable holding the key; NULL: CL_<ROLE>_API_KEY, then the
                            * scheme's (OPENAI_API_KEY, ANTHROPIC_API_KEY, AZURE_OPENAI_API_KEY).
                            * No key is fine for local servers. */
    jv params;             /* object of request members sent with every call of the role:
                            * temperature, top_p, max_tokens or max_completion_tokens (the name
                            * the endpoint wants), seed, stop, n, and any extra member (top_k,
                            * response_format, ...).  Borrowed by cl_llm_new (it copies);
                            * jv_null() or an invalid jv = none.  Per-call params override. */
    const char *const *headers; /* extra "Name: value" headers (e.g. OpenAI-Project), or NULL */
    int nheaders;
} cl_llm_role_config;

typedef struct cl_llm_config {
    int max_inflight;          /* calls at the servers at once, all roles together; 0 = 64 */
    double rpm, tpm;           /* requests / tokens per minute over all roles; 0 = no limit.
                                * Tokens are estimated at admission (prompt bytes / 4 plus the
                                * max-tokens member) and corrected with the reported usage. */
    double timeout_s;          /* whole attempt; 0 = 600 (servers answer only when done) */
    double connect_timeout_s;  /* 0 = 10 */
    double stall_timeout_s;    /* abort an attempt whose reply stops arriving for this long
                                * after its first byte; 0 = 30 */
    int retries;               /* further attempts after the first; -1 = default 6 */
    double retry_after_cap_s;  /* a longer Retry-After ends the call with an error; 0 = 120 */
    const char *cache_dir;     /* NULL = no cache */
    const char *cache_tag;     /* NULL, or a name folded into every cache key (--cache-tag):
                                * separates runs whose servers say nothing about their model */
    int quiet;                 /* -q: no warnings on stderr (the model list's absence) */
    double price_in, price_out;/* dollars per million prompt / completion tokens of every role;
                                * 0 = the backend's list price for the role's model, if any */
    double budget_usd;         /* stop admitting new calls once the spent cost reaches this;
                                * 0 = no budget.  Needs prices: cl_llm_new fails with
                                * CL_EXIT_USAGE when no role has one */
    const char *api_base;      /* --api-base: base URL for roles without their own */
    uint64_t seed;             /* seeds the retry jitter */
    double local_kv_mb;        /* local: models: KV cache memory per model in MiB (admission
                                * waits when it is full); 0 = 1024 */
    const cl_llm_role_config *roles;
    int nroles;
    /* Backends beyond the built-in ones (llm/backend.h), NULL-terminated, or NULL: how a
     * tool adds scripted programs (the offline world's user and judges) and how the unit
     * tests drive the loop without HTTP.  They must outlive the client. */
    const struct cl_llm_backend *const *extra_backends;
} cl_llm_config;

/* Builds the client: resolves every configured role's backend, endpoint and key, opens the
 * cache directory.  NULL with e set (CL_EXIT_CONFIG for a bad spec, unknown scheme, bad URL or
 * unusable cache directory).  cfg and everything it points to may be freed afterwards. */
cl_llm *cl_llm_new(const cl_llm_config *cfg, cl_err *e);

/* Finishes nothing: calls still pending are dropped without callbacks.  Run to completion (or
 * cl_llm_stop + cl_llm_run) first when their callbacks matter. */
void cl_llm_free(cl_llm *llm);

/* Index of the role called name, or -1. */
int cl_llm_role(const cl_llm *llm, const char *name);

/* Whether the role has a model spec (callers may make a role optional). */
int cl_llm_role_configured(const cl_llm *llm, int role);

/* The scheme of the role's model ("openai", "local", ...), or NULL when not configured. */
const char *cl_llm_role_scheme(const cl_llm *llm, int role);

/* ---- calls --------------------------------------------------------------------------- */

typedef struct cl_llm_result {
    int status;                /* 0 ok; otherwise a CL_EXIT_* code:
                                *  65 the server refused the request (400, 413, 422: too long,
                                *     bad parameter) — a problem of this call, not of the run
                                *  69 unavailable: retries exhausted (timeouts, resets, 429,
                                *     5xx, bad bodies), or insufficient_quota (not retried)
                                *  75 not attempted or cut short: budget reached, stopped
                                *     (interrupt), Retry-After beyond the cap
                                *  78 configuration: role without a model, 401/403/404 (bad
                                *     key, model or URL; later calls of the role fail fast) */
    const char *error;         /* one line when status != 0, else NULL; names the role and
                                * the last HTTP status or transport error; never the key */
    int http_status;           /* of the last attempt; 0 when none reached a server */
    const char *content;       /* choices[0].message.content; NULL when null or absent */
    const char *finish_reason; /* choices[0].finish_reason ("stop", "length", ...) or NULL */
    const jv *response;        /* the whole parsed response object (all choices, ids, ...);
                                * points at jv null on error */
    int nchoices;
    long prompt_tokens;        /* from the response's usage; -1 when the server sent none */
    long completion_tokens;
    double latency_s;          /* of the attempt that succeeded; replays report the stored
                                * value, so records stay byte-identical on a re-run */
    int attempts;              /* HTTP attempts this run (0 for a cache hit) */
    int cached;                /* 1 when replayed from the cache */
    int role;
    const char *sample_key;
} cl_llm_result;

typedef void (*cl_llm_done_fn)(void *ctx, const cl_llm_result *r);

/* Queues one call: messages (an array of {"role","content"} objects, consumed) to the role's
 * model, with params (an object of request members overriding the role's, consumed; jv_null()
 * for none), cache-keyed by sample_key (copied; NULL or "" = only the request itself).  done
 * is called exactly once with ctx, later, from cl_llm_run/cl_llm_step.  Never blocks, never
 * fails here: problems (bad role, messages not an array, stopped) arrive in the callback. */
void cl_llm_submit(cl_llm *llm, int role, jv messages, jv params, const char *sample_key,
                   cl_llm_done_fn done, void *ctx); /* done NULL: nobody waits for the reply
                                                      * (it is still cached and counted) */

/* Writes the conventional sample key "ID/tT/cC/fF/mM" into buf (n bytes): record id, turn,
 * candidate, future and message index, each left out when negative, and "/sSEED" first when
 * seed is non-zero (so that a new --seed means new samples).  Tools use this one form so that
 * cl-rollout's and cl-judge's keys read alike in the cache.  Returns buf. */
char *cl_llm_sample_key(char *buf, size_t n, const char *id, unsigned long long seed, int turn,
                        int candidate, int future, int message);

/* The i-th choice's content of a result, or NULL. */
const char *cl_llm_choice(const cl_llm_result *r, int i);

/* ---- the loop ------------------------------------------------------------------------ */

/* Runs until every submitted call (and every call submitted by callbacks) has had its
 * callback.  Returns 0 when all work is done, or the stop reason's code (75 budget or
 * interrupt) once a stop has drained.  Never returns with calls pending. */
int cl_llm_run(cl_llm *llm);

/* One turn of the loop: admits what may start, waits at most max_wait_s for progress, and
 * delivers finished calls' callbacks.  For callers that feed work incrementally:
 *     while (more input || cl_llm_pending(llm)) {
 *         while (more input && cl_llm_pending(llm) < limit) submit the next record's call;
 *         cl_llm_step(llm, 1.0);
 *     }
 * Bound the window by cl_llm_pending, not cl_llm_queued: cache hits never queue, so a
 * replay would otherwise read the whole input before delivering anything.  A limit of a
 * few times --max-inflight keeps the servers busy.                                      */
void cl_llm_step(cl_llm *llm, double max_wait_s);

/* fn(ctx) runs at the end of every turn of the loop (several times a second while calls are
 * out), for displays driven by time, such as a progress line.  fn NULL: none. */
void cl_llm_on_turn(cl_llm *llm, void (*fn)(void *ctx), void *ctx);

/* Calls submitted whose callback has not run yet (queued, backing off, in flight, done). */
long cl_llm_pending(const cl_llm *llm);
/* Of those, the ones waiting for admission (not yet started, not backing off). */
long cl_llm_queued(const cl_llm *llm);

/* Asks the loop to stop: no new call is admitted; queued ones end with status 75
 * ("interrupted").  hard = 0 lets calls in flight finish (they are paid for and get cached);
 * hard = 1 aborts them too (status 75).  Async-signal-safe: it only sets a flag that the loop
 * reads within a fraction of a second. */
void cl_llm_stop(cl_llm *llm, int hard);

/* 0 while running normally; after a stop or a fatal role error, the CL_EXIT_* code that the
 * tool should exit with when nothing worse happened (75 budget/interrupt, 78, 69). */
int cl_llm_exit_status(const cl_llm *llm);

/* What the run's calls say about the run when it ends: cl_llm_exit_status, else 75 when a call
 * gave up after its retries on rate limits (429), 69 when one gave up on an unavailable service
 * (refused connections, timeouts, 5xx); the highest of them; 0 when no call gave up.  Those
 * calls' records failed on their own; this only says why. */
int cl_llm_run_status(const cl_llm *llm);

/* ---- accounting ---------------------------------------------------------------------- */

typedef struct cl_llm_stats {
    long submitted, ok, failed;      /* calls (callbacks delivered = ok + failed) */
    long cache_hits, cache_writes, cache_corrupt;
    long attempts, retries;          /* HTTP attempts, of which retries */
    long http_429, http_5xx, transport_errors, bad_bodies, timeouts;
    long prompt_tokens, completion_tokens; /* of successful calls, cache hits excluded */
    long calls_without_usage;        /* servers that sent no usage: tokens unknown */
    double cost_usd;                 /* from prices; cache hits cost nothing */
    double latency_sum_s, latency_p50_s, latency_p95_s, latency_max_s; /* paid calls */
    long inflight;                   /* at the servers right now */
    long max_inflight_seen;
    double wall_s;                   /* since cl_llm_new */
} cl_llm_stats;

void cl_llm_get_stats(const cl_llm *llm, cl_llm_stats *s);

/* The stats as a JSON object for --stats (owned by the caller). */
jv cl_llm_stats_json(const cl_llm *llm);

/* One summary line ("llm: 2000 calls (1500 cached), 1.2M+80k tokens, $0.43, 12.3 s, 3 failed")
 * into buf. */
void cl_llm_summary(const cl_llm *llm, char *buf, size_t n);

/* The live state for a progress line ("140 calls (12 cached), 64 in flight, 2 failed,
 * 3 retries, 1.2M/80k tokens in/out, $0.43 of $5.00, 12.3 calls/s") into buf. */
void cl_llm_progress(const cl_llm *llm, char *buf, size_t n);

/* Adds one call's accounting to a record's usage object: usage (consumed; null or an object)
 * gains "calls", "prompt_tokens", "completion_tokens", "latency_s" and, when prices are set,
 * "cost_usd".  Cache hits add their stored values, so a replayed record is identical. */
jv cl_llm_usage_add(const cl_llm *llm, jv usage, const cl_llm_result *r);

#endif
