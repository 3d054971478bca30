/* The LLM loop: admission, retries, cache, accounting and callbacks for every backend.
 *
 * A call moves QUEUED -> INFLIGHT -> (DELAYED -> QUEUED ->)* DONE.  Fresh calls wait in a FIFO;
 * retries wait in a heap ordered by their not-before time and, once due, go ahead of fresh
 * calls so old work finishes first.  A call backing off gives its slot back: the in-flight
 * limit counts only requests at a server.  Callbacks run only from the loop (deliver()), so
 * submitting from anywhere, callbacks included, never re-enters user code. */
#include "llm/call.h"
#include "llm/cache.h"
#include "llm/http.h"

#include <curl/curl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/cli.h"
#include "core/json.h"
#include "core/sha256.h"

static const cl_llm_backend *const builtin_backends[] = {&cl_llm_openai_backend, &cl_llm_anthropic_backend,
                                                            &cl_llm_azure_backend, &cl_llm_local_backend, NULL};

#define NHIST 256 /* latency histogram: bucket i holds latencies near exp(i/16) - 1 ms */

struct role {
    char *name;
    const cl_llm_backend *be;
    void *self;
    char *identity;
    jv params;
    double price_in, price_out; /* dollars per million tokens: --price, else the backend's list
                                 * price for the model, else 0 */
    int fatal_status;     /* a fatal outcome seen: later calls fail fast with it */
    char *fatal_error;
};

typedef struct queue {
    cl_llm_call *head, *tail;
} queue;

struct cl_llm {
    cl_llm_config cfg;    /* scalars only; the strings were used in cl_llm_new */
    struct role *roles;
    int nroles;
    int priced;           /* some role has a price: costs are reported */
    cl_http *http;
    cl_llm_cache *cache;
    queue fresh, ready, done;
    cl_llm_call **heap;   /* retries backing off */
    size_t nheap, capheap;
    cl_llm_call **inflight;
    size_t ninflight, capinflight;
    long pending, nqueued;
    double rpm_avail, tpm_avail, last_refill;
    volatile sig_atomic_t stop_req;  /* 1 soft, 2 hard; set by cl_llm_stop */
    int stop_applied;
    const char *stop_reason;
    int stop_status, fatal_status;
    int gave_up_status;   /* 75 or 69: a call ran out of retries on rate limits or unavailability */
    uint64_t rng;
    cl_llm_stats st;
    long hist[NHIST];
    double t0;
    void (*on_turn)(void *);
    void *on_turn_ctx;
};

/* ---- small helpers ------------------------------------------------------------------- */

static void push(queue *q, cl_llm_call *c)
{
    c->next = NULL;
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
}

static cl_llm_call *pop(queue *q)
{
    cl_llm_call *c = q->head;
    if (c && !(q->head = c->next))
        q->tail = NULL;
    return c;
}

static double uniform(cl_llm *llm)
{
    uint64_t z = (llm->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

/* Microsecond resolution is plenty and keeps the printed value short and stable. */
static double round_us(double s) { return round(s * 1e6) / 1e6; }

cl_http *cl_llm_transport(cl_llm *llm) { return llm->http; }
void **cl_llm_call_backend_data(cl_llm_call *c) { return &c->backend_data; }

const jv *cl_llm_call_messages(const cl_llm_call *c) { return &c->messages; }
const jv *cl_llm_call_params(const cl_llm_call *c) { return &c->params; }
const char *cl_llm_call_sample_key(const cl_llm_call *c) { return c->sample_key; }
int cl_llm_call_attempt(const cl_llm_call *c) { return c->attempts; }
const char *cl_llm_call_role_name(const cl_llm_call *c) { return c->llm->roles[c->role].name; }

/* ---- the retry heap (min-heap on not_before) ------------------------------------------ */

static void heap_swap(cl_llm *llm, size_t i, size_t j)
{
    cl_llm_call *t = llm->heap[i];
    llm->heap[i] = llm->heap[j];
    llm->heap[j] = t;
    llm->heap[i]->heap_i = i;
    llm->heap[j]->heap_i = j;
}

static int heap_push(cl_llm *llm, cl_llm_call *c)
{
    if (cl_grow((void **)&llm->heap, &llm->capheap, llm->nheap + 1, sizeof *llm->heap) < 0)
        return -1;
    size_t i = llm->nheap++;
    llm->heap[i] = c;
    c->heap_i = i;
    while (i > 0 && llm->heap[(i - 1) / 2]->not_before > llm->heap[i]->not_before) {
        heap_swap(llm, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    return 0;
}

static cl_llm_call *heap_pop(cl_llm *llm)
{
    cl_llm_call *top = llm->heap[0];
    llm->heap[0] = llm->heap[--llm->nheap];
    llm->heap[0]->heap_i = 0;
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < llm->nheap && llm->heap[l]->not_before < llm->heap[m]->not_before)
            m = l;
        if (r < llm->nheap && llm->heap[r]->not_before < llm->heap[m]->not_before)
            m = r;
        if (m == i)
            break;
        heap_swap(llm, i, m);
        i = m;
    }
    return top;
}

/* ---- ending calls ----------------------------------------------------------------------- */

static void finish(cl_llm *llm, cl_llm_call *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Puts c on the done list with status (0 = success, response already set). */
static void finish(cl_llm *llm, cl_llm_call *c, int status, const char *fmt, ...)
{
    c->state = CALL_DONE;
    c->status = status;
    if (status && fmt) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        c->error = strdup(msg);
    }
    push(&llm->done, c);
}

static void free_call(cl_llm_call *c)
{
    jv_free(c->messages);
    jv_free(c->params);
    jv_free(c->response);
    free(c->sample_key);
    free(c->error);
    free(c);
}

static const char *role_name(const cl_llm *llm, int role)
{
    return role >= 0 && role < llm->nroles ? llm->roles[role].name : "?";
}

/* ---- construction --------------------------------------------------------------------- */

static const cl_llm_backend *find_backend(const cl_llm_config *cfg, const char *scheme, size_t n)
{
    for (int pass = 0; pass < 2; pass++) {
        const cl_llm_backend *const *t = pass ? cfg->extra_backends : builtin_backends;
        for (; t && *t; t++)
            if (strlen((*t)->scheme) == n && strncmp((*t)->scheme, scheme, n) == 0)
                return *t;
    }
    return NULL;
}

static int open_role(cl_llm *llm, struct role *r, const cl_llm_role_config *rc, const cl_llm_config *cfg,
                     cl_err *e)
{
    r->name = strdup(rc->name);
    r->params = jv_get_kind(rc->params) == JV_KIND_OBJECT ? jv_copy(rc->params) : jv_object();
    if (!rc->spec)
        return 0;
    const char *colon = strchr(rc->spec, ':');
    if (!colon || colon == rc->spec)
        return cl_err_set(e, CL_EXIT_CONFIG, "--%s '%s': a model spec is SCHEME:ARG, e.g. openai:gpt-4o-mini",
                          rc->name, rc->spec);
    r->be = find_backend(cfg, rc->spec, (size_t)(colon - rc->spec));
    if (!r->be) {
        char known[256] = "";
        for (int pass = 0; pass < 2; pass++)
            for (const cl_llm_backend *const *t = pass ? cfg->extra_backends : builtin_backends; t && *t; t++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", *known ? ", " : "",
                         (*t)->scheme);
        return cl_err_set(e, CL_EXIT_CONFIG, "--%s '%s': unknown model scheme '%.*s' (known: %s)", rc->name,
                          rc->spec, (int)(colon - rc->spec), rc->spec, known);
    }
    if (r->be->open(llm, colon + 1, rc, cfg, &r->self, &r->identity, e) < 0)
        return -1;
    if (cfg->price_in > 0 || cfg->price_out > 0) {
        r->price_in = cfg->price_in;
        r->price_out = cfg->price_out;
    } else if (r->be->list_price)
        r->be->list_price(colon + 1, &r->price_in, &r->price_out);
    if (r->price_in > 0 || r->price_out > 0)
        llm->priced = 1;
    if (cfg->cache_tag && *cfg->cache_tag && r->identity) {
        /* --cache-tag: a run the server cannot tell apart (same URL, name and model list)
         * gets answers of its own */
        size_t n = strlen(r->identity) + strlen(cfg->cache_tag) + 8;
        char *id = malloc(n);
        if (!id)
            return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        snprintf(id, n, "%s tag=%s", r->identity, cfg->cache_tag);
        free(r->identity);
        r->identity = id;
    }
    return 0;
}

cl_llm *cl_llm_new(const cl_llm_config *cfg, cl_err *e)
{
    cl_llm *llm = calloc(1, sizeof *llm);
    if (!llm) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    llm->cfg = *cfg;
    cl_llm_config *k = &llm->cfg;
    if (k->max_inflight <= 0) k->max_inflight = 64;
    if (k->timeout_s <= 0) k->timeout_s = 600;
    if (k->connect_timeout_s <= 0) k->connect_timeout_s = 10;
    if (k->stall_timeout_s <= 0) k->stall_timeout_s = 30;
    if (k->retries < 0) k->retries = 6;
    if (k->retry_after_cap_s <= 0) k->retry_after_cap_s = 120;
    k->roles = NULL;
    k->cache_dir = k->api_base = k->cache_tag = NULL;
    llm->rng = cfg->seed ^ 0x6c6c6d2d6a697474ULL;
    llm->t0 = llm->last_refill = cl_now();
    llm->rpm_avail = k->rpm > 0 ? fmax(1, k->rpm / 60) : 0;
    llm->tpm_avail = k->tpm > 0 ? k->tpm / 60 : 0;
    cl_http_opts ho = {.max_inflight = k->max_inflight, .timeout_s = k->timeout_s,
                       .connect_timeout_s = k->connect_timeout_s, .stall_timeout_s = k->stall_timeout_s};
    if (!(llm->http = cl_http_new(&ho, e)))
        goto fail;
    if (cfg->cache_dir && !(llm->cache = cl_llm_cache_open(cfg->cache_dir, e)))
        goto fail;
    if (llm->cache)
        llm->st.cache_corrupt += cl_llm_cache_torn(llm->cache);
    llm->roles = calloc((size_t)cfg->nroles + 1, sizeof *llm->roles);
    if (!llm->roles) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        goto fail;
    }
    for (int i = 0; i < cfg->nroles; i++) {
        llm->nroles = i + 1;
        if (open_role(llm, &llm->roles[i], &cfg->roles[i], cfg, e) < 0)
            goto fail;
    }
    if (k->budget_usd > 0 && !llm->priced) {
        cl_err_set(e, CL_EXIT_USAGE, "--budget-usd needs --price IN,OUT (or a model with a list price) to know "
                   "what calls cost");
        goto fail;
    }
    return llm;
fail:
    cl_llm_free(llm);
    return NULL;
}

void cl_llm_free(cl_llm *llm)
{
    if (!llm)
        return;
    /* Abandoned calls: free them without callbacks (documented). */
    cl_llm_call *c;
    while ((c = pop(&llm->fresh)) || (c = pop(&llm->ready)) || (c = pop(&llm->done)))
        free_call(c);
    while (llm->nheap)
        free_call(heap_pop(llm));
    for (size_t i = 0; i < llm->ninflight; i++)
        llm->inflight[i]->state = CALL_DONE; /* freed below, after the transport let go */
    cl_http_free(llm->http);
    for (size_t i = 0; i < llm->ninflight; i++)
        free_call(llm->inflight[i]);
    for (int i = 0; i < llm->nroles; i++) {
        struct role *r = &llm->roles[i];
        if (r->be && r->self)
            r->be->close(r->self);
        free(r->name);
        free(r->identity);
        free(r->fatal_error);
        jv_free(r->params);
    }
    free(llm->roles);
    free(llm->heap);
    free(llm->inflight);
    cl_llm_cache_close(llm->cache);
    free(llm);
    curl_global_cleanup();
}

int cl_llm_role(const cl_llm *llm, const char *name)
{
    for (int i = 0; i < llm->nroles; i++)
        if (strcmp(llm->roles[i].name, name) == 0)
            return i;
    return -1;
}

int cl_llm_role_configured(const cl_llm *llm, int role)
{
    return role >= 0 && role < llm->nroles && llm->roles[role].be != NULL;
}

const char *cl_llm_role_scheme(const cl_llm *llm, int role)
{
    return cl_llm_role_configured(llm, role) ? llm->roles[role].be->scheme : NULL;
}

/* ---- submit ------------------------------------------------------------------------- */

/* Feeds v (borrowed) to h in a canonical form: a kind tag, then lengths and bytes, object
 * members in key order, numbers as their double (-0 as 0).  The same value always hashes
 * alike however its objects were built, without printing numbers or escaping strings as a
 * sorted JSON dump would (that cost more than the rest of a call). */
static void hash_value(cl_sha256 *h, const jv *v)
{
    jv_kind kind = jv_get_kind(*v);
    unsigned char tag = (unsigned char)kind;
    cl_sha256_update(h, &tag, 1);
    if (kind == JV_KIND_STRING) {
        uint32_t n = (uint32_t)jv_string_length_bytes(jv_copy(*v));
        cl_sha256_update(h, &n, sizeof n);
        cl_sha256_update(h, jv_string_value(*v), n);
    } else if (kind == JV_KIND_NUMBER) {
        double d = jv_number_value(*v);
        if (d == 0)
            d = 0;
        cl_sha256_update(h, &d, sizeof d);
    } else if (kind == JV_KIND_ARRAY) {
        int n = jv_array_length(jv_copy(*v));
        cl_sha256_update(h, &n, sizeof n);
        for (int i = 0; i < n; i++) {
            jv e = jv_array_get(jv_copy(*v), i);
            hash_value(h, &e);
            jv_free(e);
        }
    } else if (kind == JV_KIND_OBJECT) {
        jv keys = jv_keys(jv_copy(*v)); /* sorted */
        int n = jv_array_length(jv_copy(keys));
        cl_sha256_update(h, &n, sizeof n);
        for (int i = 0; i < n; i++) {
            jv key = jv_array_get(jv_copy(keys), i);
            hash_value(h, &key);
            jv val = jv_object_get(jv_copy(*v), key);
            hash_value(h, &val);
            jv_free(val);
        }
        jv_free(keys);
    }
}

static void hash_str(cl_sha256 *h, const char *s)
{
    jv v = jv_string(s);
    hash_value(h, &v);
    jv_free(v);
}

/* The cache key: SHA-256 over the canonical request (what answers, messages, parameters) and
 * the sample key.  Keys never enter it: the backend's identity names the endpoint and model
 * only. */
static void cache_key(const struct role *r, cl_llm_call *c)
{
    static const char hex[] = "0123456789abcdef";
    cl_sha256 h;
    unsigned char d[32];
    cl_sha256_init(&h);
    hash_str(&h, "cl-llm-key 2");
    hash_str(&h, r->identity ? r->identity : r->be->scheme);
    hash_value(&h, &c->messages);
    hash_value(&h, &c->params);
    hash_str(&h, c->sample_key);
    cl_sha256_final(&h, d);
    for (int i = 0; i < 32; i++) {
        c->key[2 * i] = hex[d[i] >> 4];
        c->key[2 * i + 1] = hex[d[i] & 15];
    }
    c->key[64] = 0;
}

/* prompt/completion tokens of a response, -1 when it has no usage */
static void usage_of(const jv *resp, long *pt, long *ct)
{
    *pt = *ct = -1;
    jv u = cl_json_get(resp, "usage");
    if (jv_get_kind(u) == JV_KIND_OBJECT && cl_json_kind(&u, "prompt_tokens") == JV_KIND_NUMBER) {
        *pt = (long)cl_json_num(&u, "prompt_tokens", 0);
        *ct = (long)cl_json_num(&u, "completion_tokens", 0);
    }
    jv_free(u);
}

static void cache_lookup(cl_llm *llm, cl_llm_call *c)
{
    jv resp;
    double lat;
    int rc = cl_llm_cache_get(llm->cache, c->key, &resp, &lat);
    if (rc < 0)
        llm->st.cache_corrupt++;
    if (rc <= 0)
        return;
    llm->st.cache_hits++;
    c->response = resp;
    usage_of(&c->response, &c->prompt_tokens, &c->completion_tokens);
    c->latency_s = lat;
    c->cached = 1;
    finish(llm, c, 0, NULL);
}

void cl_llm_submit(cl_llm *llm, int role, jv messages, jv params, const char *sample_key,
                   cl_llm_done_fn done, void *ctx)
{
    cl_llm_call *c = calloc(1, sizeof *c);
    if (!c) { /* nothing sensible is left to do without memory */
        jv_free(messages);
        jv_free(params);
        cl_die(CL_EXIT_SOFTWARE, "out of memory");
    }
    c->llm = llm;
    c->role = role;
    c->messages = messages;
    c->params = jv_null();
    c->response = jv_null();
    c->sample_key = strdup(sample_key ? sample_key : "");
    c->done = done;
    c->ctx = ctx;
    llm->pending++;
    llm->st.submitted++;
    if (role < 0 || role >= llm->nroles) {
        jv_free(params);
        finish(llm, c, CL_EXIT_SOFTWARE, "no role number %d", role);
        return;
    }
    struct role *r = &llm->roles[role];
    if (!r->be) {
        jv_free(params);
        llm->fatal_status = CL_EXIT_CONFIG;
        finish(llm, c, CL_EXIT_CONFIG, "role %s has no model: give --%s SPEC", r->name, r->name);
        return;
    }
    if (jv_get_kind(messages) != JV_KIND_ARRAY) {
        jv_free(params);
        finish(llm, c, CL_EXIT_DATAERR, "role %s: messages must be an array", r->name);
        return;
    }
    jv_kind pk = jv_get_kind(params);
    if (pk == JV_KIND_OBJECT)
        c->params = jv_object_merge(jv_copy(r->params), params);
    else if (pk == JV_KIND_NULL || pk == JV_KIND_INVALID) {
        jv_free(params);
        c->params = jv_copy(r->params);
    } else {
        jv_free(params);
        finish(llm, c, CL_EXIT_DATAERR, "role %s: call parameters must be an object", r->name);
        return;
    }
    if (llm->stop_applied) {
        finish(llm, c, CL_EXIT_TEMPFAIL, "role %s: not sent: %s", r->name, llm->stop_reason);
        return;
    }
    if (llm->cache && !r->be->no_cache) {
        cache_key(r, c);
        cache_lookup(llm, c);
        if (c->state == CALL_DONE)
            return;
    }
    c->state = CALL_QUEUED;
    push(&llm->fresh, c);
    llm->nqueued++;
}

char *cl_llm_sample_key(char *buf, size_t n, const char *id, unsigned long long seed, int turn,
                        int candidate, int future, int message)
{
    size_t k = (size_t)snprintf(buf, n, "%s", id ? id : "");
    const int level[4] = {turn, candidate, future, message};
    const char tag[4] = {'t', 'c', 'f', 'm'};
    if (seed && k < n)
        k += (size_t)snprintf(buf + k, n - k, "/s%llu", seed);
    for (int i = 0; i < 4 && k < n; i++)
        if (level[i] >= 0)
            k += (size_t)snprintf(buf + k, n - k, "/%c%d", tag[i], level[i]);
    return buf;
}

const char *cl_llm_choice(const cl_llm_result *r, int i)
{
    if (!r->response || jv_get_kind(*r->response) != JV_KIND_OBJECT)
        return NULL;
    jv ch = jv_array_get(cl_json_get(r->response, "choices"), i);
    const char *s = NULL;
    if (jv_get_kind(ch) == JV_KIND_OBJECT) {
        jv msg = cl_json_get(&ch, "message");
        if (jv_get_kind(msg) == JV_KIND_OBJECT)
            s = cl_json_str(&msg, "content"); /* stays valid: the response holds the string */
        jv_free(msg);
    }
    jv_free(ch);
    return s;
}

static double cost_of(const cl_llm *llm, int role, long pt, long ct)
{
    const struct role *r = &llm->roles[role];
    return (pt > 0 ? pt * r->price_in : 0) / 1e6 + (ct > 0 ? ct * r->price_out : 0) / 1e6;
}

/* ---- admission --------------------------------------------------------------------- */

static void refill(cl_llm *llm, double now)
{
    double dt = now - llm->last_refill;
    llm->last_refill = now;
    if (llm->cfg.rpm > 0)
        llm->rpm_avail = fmin(fmax(1, llm->cfg.rpm / 60), llm->rpm_avail + dt * llm->cfg.rpm / 60);
    if (llm->cfg.tpm > 0)
        llm->tpm_avail = fmin(llm->cfg.tpm / 60, llm->tpm_avail + dt * llm->cfg.tpm / 60);
}

/* Tokens a call may use, for the tokens-per-minute bucket: about 4 bytes per prompt token
 * plus the completion limit (what OpenAI's own limiter charges up front). */
static double estimate_tokens(const cl_llm_call *c)
{
    double bytes = 0;
    int n = jv_array_length(jv_copy(c->messages));
    for (int i = 0; i < n; i++) {
        jv m = jv_array_get(jv_copy(c->messages), i);
        const char *s = cl_json_str(&m, "content");
        bytes += s ? (double)strlen(s) + 4 : 4;
        jv_free(m);
    }
    double mt = cl_json_num(&c->params, "max_tokens", cl_json_num(&c->params, "max_completion_tokens", 0));
    return bytes / 4 + mt * cl_json_num(&c->params, "n", 1);
}

static void start_attempt(cl_llm *llm, cl_llm_call *c)
{
    struct role *r = &llm->roles[c->role];
    if (cl_grow((void **)&llm->inflight, &llm->capinflight, llm->ninflight + 1, sizeof *llm->inflight) < 0)
        cl_die(CL_EXIT_SOFTWARE, "out of memory");
    c->slot = llm->ninflight;
    llm->inflight[llm->ninflight++] = c;
    if ((long)llm->ninflight > llm->st.max_inflight_seen)
        llm->st.max_inflight_seen = (long)llm->ninflight;
    c->state = CALL_INFLIGHT;
    c->attempts++;
    llm->st.attempts++;
    c->t_start = cl_now();
    r->be->start(r->self, c);
}

static void begin_stop(cl_llm *llm, const char *reason, int hard);

static void admit(cl_llm *llm)
{
    if (llm->stop_applied)
        return;
    if (llm->cfg.rpm > 0 || llm->cfg.tpm > 0)
        refill(llm, cl_now());
    while ((long)llm->ninflight < llm->cfg.max_inflight && (llm->ready.head || llm->fresh.head)) {
        if (llm->cfg.budget_usd > 0 && llm->st.cost_usd >= llm->cfg.budget_usd) {
            begin_stop(llm, "budget reached", 0);
            return;
        }
        if ((llm->cfg.rpm > 0 && llm->rpm_avail <= 0) || (llm->cfg.tpm > 0 && llm->tpm_avail <= 0))
            return;
        cl_llm_call *c = llm->ready.head ? pop(&llm->ready) : pop(&llm->fresh);
        llm->nqueued--;
        struct role *r = &llm->roles[c->role];
        if (r->fatal_status) {
            finish(llm, c, r->fatal_status, "%s", r->fatal_error);
            continue;
        }
        llm->rpm_avail -= 1;
        if (llm->cfg.tpm > 0) {
            c->est_tokens = estimate_tokens(c);
            llm->tpm_avail -= c->est_tokens;
        }
        start_attempt(llm, c);
    }
}

/* Seconds until the rate limits let the next call in (0 when they do now). */
static double rate_wait(const cl_llm *llm)
{
    double w = 0;
    if (llm->cfg.rpm > 0 && llm->rpm_avail <= 0)
        w = fmax(w, (1e-3 - llm->rpm_avail) / (llm->cfg.rpm / 60));
    if (llm->cfg.tpm > 0 && llm->tpm_avail <= 0)
        w = fmax(w, (1 - llm->tpm_avail) / (llm->cfg.tpm / 60));
    return w;
}

/* ---- attempts end ------------------------------------------------------------------- */

static void account_success(cl_llm *llm, cl_llm_call *c)
{
    usage_of(&c->response, &c->prompt_tokens, &c->completion_tokens);
    long pt = c->prompt_tokens, ct = c->completion_tokens;
    if (pt < 0)
        llm->st.calls_without_usage++;
    else {
        llm->st.prompt_tokens += pt;
        llm->st.completion_tokens += ct;
        if (!llm->roles[c->role].be->no_cost)
            llm->st.cost_usd += cost_of(llm, c->role, pt, ct);
        if (llm->cfg.tpm > 0)
            llm->tpm_avail += c->est_tokens - (double)(pt + ct);
    }
    llm->st.latency_sum_s += c->latency_s;
    if (c->latency_s > llm->st.latency_max_s)
        llm->st.latency_max_s = c->latency_s;
    int b = (int)(log1p(c->latency_s * 1000) * 16);
    llm->hist[b < 0 ? 0 : b >= NHIST ? NHIST - 1 : b]++;
}

static double backoff(cl_llm *llm, int attempt)
{
    double d = 0.5 * pow(2, attempt - 1);
    return fmin(d, 8) * (1 - 0.25 * uniform(llm));
}

/* A call gave up on a retryable failure: its record fails (the call's own status), and the
 * run says why in its status (cl_llm_run_status): rate limits that outlasted the retries are a
 * temporary failure (75), the rest an unavailable service (69), as collabllm(7) promises. */
static void gave_up(cl_llm *llm, int status)
{
    if (status > llm->gave_up_status)
        llm->gave_up_status = status;
}

void cl_llm_attempt_done(cl_llm_call *c, cl_llm_outcome *o)
{
    cl_llm *llm = c->llm;
    struct role *r = &llm->roles[c->role];
    size_t slot = c->slot;
    llm->inflight[slot] = llm->inflight[--llm->ninflight];
    llm->inflight[slot]->slot = slot;
    double now = cl_now();
    c->http_status = o->http_status;
    if (jv_is_valid(o->response)) {
        jv_free(c->response);
        c->response = o->response;
        c->latency_s = round_us(now - c->t_start);
        account_success(llm, c);
        if (llm->cache && c->key[0]) {
            if (cl_llm_cache_put(llm->cache, c->key, &c->response, o->raw, o->raw_len, c->latency_s,
                                 c->sample_key) == 0)
                llm->st.cache_writes++;
        }
        finish(llm, c, 0, NULL);
        return;
    }
    jv_free(o->response);
    switch (o->kind) {
    case CL_LLM_FAIL_TIMEOUT: llm->st.timeouts++; break;
    case CL_LLM_FAIL_TRANSPORT: llm->st.transport_errors++; break;
    case CL_LLM_FAIL_BODY: llm->st.bad_bodies++; break;
    default: break;
    }
    if (o->http_status == 429)
        llm->st.http_429++;
    else if (o->http_status >= 500)
        llm->st.http_5xx++;
    if (o->fatal_role && !r->fatal_status) {
        r->fatal_status = o->status ? o->status : CL_EXIT_CONFIG;
        char msg[700];
        snprintf(msg, sizeof msg, "role %s: %s", r->name, o->error);
        r->fatal_error = strdup(msg);
        if (r->fatal_status > llm->fatal_status)
            llm->fatal_status = r->fatal_status;
    }
    if (llm->stop_applied) {
        finish(llm, c, CL_EXIT_TEMPFAIL, "role %s: %s (last attempt: %s)", r->name, llm->stop_reason, o->error);
        return;
    }
    if (o->retryable && c->attempts <= llm->cfg.retries) {
        double delay = o->retry_after_s > 0 ? o->retry_after_s : backoff(llm, c->attempts);
        if (o->retry_after_s > llm->cfg.retry_after_cap_s) {
            gave_up(llm, CL_EXIT_TEMPFAIL);
            finish(llm, c, CL_EXIT_TEMPFAIL, "role %s: server asks to retry after %.0f s, more than %.0f s: %s",
                   r->name, o->retry_after_s, llm->cfg.retry_after_cap_s, o->error);
            return;
        }
        c->not_before = now + delay;
        c->state = CALL_DELAYED;
        if (heap_push(llm, c) == 0) {
            llm->st.retries++;
            return;
        }
    }
    int status = o->retryable ? CL_EXIT_UNAVAILABLE : o->status ? o->status : CL_EXIT_UNAVAILABLE;
    if (o->retryable)
        gave_up(llm, o->http_status == 429 ? CL_EXIT_TEMPFAIL : CL_EXIT_UNAVAILABLE);
    finish(llm, c, status, "role %s: %s (%d attempt%s)", r->name, o->error, c->attempts,
           c->attempts == 1 ? "" : "s");
}

/* ---- stopping ------------------------------------------------------------------------ */

static void begin_stop(cl_llm *llm, const char *reason, int hard)
{
    if (!llm->stop_applied) {
        llm->stop_applied = 1;
        llm->stop_reason = reason;
        llm->stop_status = CL_EXIT_TEMPFAIL;
        cl_llm_call *c;
        while ((c = pop(&llm->ready)) || (c = pop(&llm->fresh))) {
            llm->nqueued--;
            finish(llm, c, CL_EXIT_TEMPFAIL, "role %s: not sent: %s", role_name(llm, c->role), reason);
        }
        while (llm->nheap) {
            c = heap_pop(llm);
            finish(llm, c, CL_EXIT_TEMPFAIL, "role %s: not retried: %s", role_name(llm, c->role), reason);
        }
    }
    if (hard) {
        while (llm->ninflight) {
            size_t before = llm->ninflight;
            cl_llm_call *c = llm->inflight[before - 1];
            struct role *r = &llm->roles[c->role];
            r->be->abort(r->self, c);
            if (llm->ninflight == before) /* a backend that failed to report: do it for it */
                cl_llm_attempt_done(c, &(cl_llm_outcome){.response = jv_invalid(), .error = "aborted"});
        }
    }
}

void cl_llm_stop(cl_llm *llm, int hard)
{
    if (llm->stop_req < (hard ? 2 : 1))
        llm->stop_req = hard ? 2 : 1;
}

int cl_llm_exit_status(const cl_llm *llm)
{
    return llm->fatal_status > llm->stop_status ? llm->fatal_status : llm->stop_status;
}

int cl_llm_run_status(const cl_llm *llm)
{
    /* 78 > 75 > 69: the numbers order the causes as collabllm(7) ranks them. */
    int s = cl_llm_exit_status(llm);
    return llm->gave_up_status > s ? llm->gave_up_status : s;
}

/* ---- the loop ------------------------------------------------------------------------- */

static void deliver(cl_llm *llm)
{
    cl_llm_call *c;
    while ((c = pop(&llm->done))) {
        cl_llm_result r = {0};
        r.status = c->status;
        r.error = c->error;
        r.http_status = c->http_status;
        r.response = &c->response;
        r.latency_s = c->latency_s;
        r.attempts = c->attempts;
        r.cached = c->cached;
        r.role = c->role;
        r.sample_key = c->sample_key;
        r.prompt_tokens = r.completion_tokens = -1;
        if (c->status == 0) {
            jv choices = cl_json_get(&c->response, "choices");
            r.nchoices = jv_get_kind(choices) == JV_KIND_ARRAY ? jv_array_length(jv_copy(choices)) : 0;
            jv ch = r.nchoices > 0 ? jv_array_get(jv_copy(choices), 0) : jv_invalid();
            if (jv_get_kind(ch) == JV_KIND_OBJECT) {
                /* borrowed strings stay valid: c->response holds them */
                r.finish_reason = cl_json_str(&ch, "finish_reason");
                jv msg = cl_json_get(&ch, "message");
                r.content = jv_get_kind(msg) == JV_KIND_OBJECT ? cl_json_str(&msg, "content") : NULL;
                jv_free(msg);
            }
            jv_free(ch);
            jv_free(choices);
            r.prompt_tokens = c->prompt_tokens;
            r.completion_tokens = c->completion_tokens;
            llm->st.ok++;
        } else
            llm->st.failed++;
        if (c->done)
            c->done(c->ctx, &r);
        llm->pending--;
        free_call(c);
    }
}

static void promote_due(cl_llm *llm)
{
    if (!llm->nheap)
        return;
    double now = cl_now();
    while (llm->nheap && llm->heap[0]->not_before <= now) {
        cl_llm_call *c = heap_pop(llm);
        c->state = CALL_QUEUED;
        push(&llm->ready, c);
        llm->nqueued++;
    }
}

static int cpu_busy(cl_llm *llm, int run)
{
    int busy = 0;
    for (int i = 0; i < llm->nroles; i++) {
        struct role *r = &llm->roles[i];
        if (r->be && r->be->busy && r->be->busy(r->self)) {
            busy = 1;
            if (run)
                r->be->step(r->self);
        }
    }
    return busy;
}

void cl_llm_step(cl_llm *llm, double max_wait_s)
{
    if (llm->stop_req > llm->stop_applied || (llm->stop_req == 2 && llm->ninflight))
        begin_stop(llm, "interrupted", llm->stop_req == 2);
    deliver(llm);
    promote_due(llm);
    admit(llm);
    if (llm->pending == 0)
        return; /* nothing could arrive: do not sleep */
    int busy = cpu_busy(llm, 1);
    double wait = busy || llm->done.head ? 0 : max_wait_s;
    if (llm->nheap)
        wait = fmin(wait, llm->heap[0]->not_before - cl_now());
    if (llm->nqueued && (long)llm->ninflight < llm->cfg.max_inflight && !llm->stop_applied)
        wait = fmin(wait, rate_wait(llm));
    wait = fmin(wait, 0.2); /* notice cl_llm_stop from a signal handler promptly */
    cl_http_wait(llm->http, wait > 0 ? (int)ceil(wait * 1000) : 0);
    promote_due(llm);
    deliver(llm);
    admit(llm);
    if (llm->on_turn)
        llm->on_turn(llm->on_turn_ctx);
}

void cl_llm_on_turn(cl_llm *llm, void (*fn)(void *), void *ctx)
{
    llm->on_turn = fn;
    llm->on_turn_ctx = ctx;
}

int cl_llm_run(cl_llm *llm)
{
    while (llm->pending > 0)
        cl_llm_step(llm, 1.0);
    return llm->stop_applied ? llm->stop_status : 0;
}

long cl_llm_pending(const cl_llm *llm) { return llm->pending; }
long cl_llm_queued(const cl_llm *llm) { return llm->nqueued; }

/* ---- accounting ---------------------------------------------------------------------- */

static double hist_quantile(const cl_llm *llm, double q)
{
    long total = 0;
    for (int i = 0; i < NHIST; i++)
        total += llm->hist[i];
    if (!total)
        return 0;
    long want = (long)ceil(q * (double)total), seen = 0;
    for (int i = 0; i < NHIST; i++)
        if ((seen += llm->hist[i]) >= want)
            return fmin(expm1((i + 0.5) / 16) / 1000, llm->st.latency_max_s);
    return llm->st.latency_max_s;
}

void cl_llm_get_stats(const cl_llm *llm, cl_llm_stats *s)
{
    *s = llm->st;
    s->wall_s = cl_now() - llm->t0;
    s->inflight = (long)llm->ninflight;
    s->latency_p50_s = hist_quantile(llm, 0.5);
    s->latency_p95_s = hist_quantile(llm, 0.95);
}

jv cl_llm_stats_json(const cl_llm *llm)
{
    cl_llm_stats s;
    cl_llm_get_stats(llm, &s);
    long paid = s.ok - s.cache_hits;
    jv o = jv_object();
#define N(k, v) o = cl_json_set_num(o, k, (double)(v))
    N("calls", s.submitted); N("ok", s.ok); N("failed", s.failed);
    N("cache_hits", s.cache_hits); N("cache_writes", s.cache_writes); N("cache_corrupt", s.cache_corrupt);
    N("attempts", s.attempts); N("retries", s.retries); N("http_429", s.http_429); N("http_5xx", s.http_5xx);
    N("transport_errors", s.transport_errors); N("timeouts", s.timeouts); N("bad_bodies", s.bad_bodies);
    N("prompt_tokens", s.prompt_tokens); N("completion_tokens", s.completion_tokens);
    N("calls_without_usage", s.calls_without_usage);
    if (llm->priced)
        N("cost_usd", round(s.cost_usd * 1e6) / 1e6);
    N("latency_mean_s", paid > 0 ? round_us(s.latency_sum_s / (double)paid) : 0);
    N("latency_p50_s", round_us(s.latency_p50_s)); N("latency_p95_s", round_us(s.latency_p95_s));
    N("latency_max_s", s.latency_max_s); N("max_inflight_seen", s.max_inflight_seen);
    N("wall_s", round(s.wall_s * 1000) / 1000);
#undef N
    if (llm->stop_applied)
        o = cl_json_set_str(o, "stopped", llm->stop_reason);
    return o;
}

static void human(double x, char *buf, size_t n)
{
    if (x >= 1e6)
        snprintf(buf, n, "%.1fM", x / 1e6);
    else if (x >= 1e4)
        snprintf(buf, n, "%.0fk", x / 1e3);
    else
        snprintf(buf, n, "%.0f", x);
}

/* The stats, with the prompt and completion tokens as short text, for the lines below. */
static void stats_for_text(const cl_llm *llm, cl_llm_stats *s, char pt[32], char ct[32])
{
    cl_llm_get_stats(llm, s);
    human((double)s->prompt_tokens, pt, 32);
    human((double)s->completion_tokens, ct, 32);
}

void cl_llm_summary(const cl_llm *llm, char *buf, size_t n)
{
    cl_llm_stats s;
    char pt[32], ct[32];
    stats_for_text(llm, &s, pt, ct);
    int k = snprintf(buf, n, "llm: %ld calls (%ld cached, %ld failed), %ld retries, %s+%s tokens", s.submitted,
                     s.cache_hits, s.failed, s.retries, pt, ct);
    if (k > 0 && (size_t)k < n && llm->priced)
        k += snprintf(buf + k, n - (size_t)k, ", $%.4f", s.cost_usd);
    if (k > 0 && (size_t)k < n)
        k += snprintf(buf + k, n - (size_t)k, ", p50 %.3f s, %.1f s", s.latency_p50_s, s.wall_s);
    if (k > 0 && (size_t)k < n && llm->stop_applied)
        snprintf(buf + k, n - (size_t)k, ", stopped: %s", llm->stop_reason);
}

void cl_llm_progress(const cl_llm *llm, char *buf, size_t n)
{
    cl_llm_stats s;
    char pt[32], ct[32];
    stats_for_text(llm, &s, pt, ct);
    long done = s.ok + s.failed;
    int k = snprintf(buf, n, "%ld calls (%ld cached), %ld in flight, %ld failed, %ld retries, %s/%s tokens in/out",
                     done, s.cache_hits, s.inflight, s.failed, s.retries, pt, ct);
    if (k > 0 && (size_t)k < n && llm->priced)
        k += snprintf(buf + k, n - (size_t)k, ", $%.2f", s.cost_usd);
    if (k > 0 && (size_t)k < n && llm->cfg.budget_usd > 0)
        k += snprintf(buf + k, n - (size_t)k, " of $%.2f", llm->cfg.budget_usd);
    if (k > 0 && (size_t)k < n)
        snprintf(buf + k, n - (size_t)k, ", %.1f calls/s", s.wall_s > 0 ? (double)done / s.wall_s : 0.0);
}

jv cl_llm_usage_add(const cl_llm *llm, jv usage, const cl_llm_result *r)
{
    if (jv_get_kind(usage) != JV_KIND_OBJECT) {
        jv_free(usage);
        usage = jv_object();
    }
    if (r->status != 0)
        return usage;
    usage = cl_json_set_num(usage, "calls", cl_json_num(&usage, "calls", 0) + 1);
    if (r->prompt_tokens >= 0) {
        usage = cl_json_set_num(usage, "prompt_tokens", cl_json_num(&usage, "prompt_tokens", 0) + (double)r->prompt_tokens);
        usage = cl_json_set_num(usage, "completion_tokens",
                                cl_json_num(&usage, "completion_tokens", 0) + (double)r->completion_tokens);
    } else
        usage = cl_json_set_num(usage, "calls_without_usage", cl_json_num(&usage, "calls_without_usage", 0) + 1);
    usage = cl_json_set_num(usage, "latency_s", round_us(cl_json_num(&usage, "latency_s", 0) + r->latency_s));
    int known_role = r->role >= 0 && r->role < llm->nroles && llm->roles[r->role].be;
    int free_role = !known_role || llm->roles[r->role].be->no_cost;
    if (llm->priced)
        usage = cl_json_set_num(usage, "cost_usd",
                                round(1e9 * (cl_json_num(&usage, "cost_usd", 0) +
                                             (free_role ? 0 : cost_of(llm, r->role, r->prompt_tokens, r->completion_tokens)))) /
                                    1e9);
    return usage;
}
