/* The "openai:MODEL" backend: Chat Completions over HTTP, as spoken by OpenAI, vLLM,
 * llama.cpp's server and compatible gateways.  It builds the request body, classifies what
 * came back (see ../shared/research/ecosystem.md §4: error shapes, insufficient_quota,
 * x-should-retry) and keeps the key out of every message it produces. */
#include "llm/backend.h"

#include <ctype.h>
#include <math.h>
#include <time.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

#define DEFAULT_BASE "https://api.openai.com/v1"

typedef struct model_list model_list;
static void model_list_put(model_list *m);

struct openai {
    cl_llm *llm;
    char *model;
    char *url;                  /* {base}/chat/completions */
    char *shown_url;            /* the same without user:password@ or ?query, for messages */
    char *key;                  /* NULL when none */
    char *model_json;           /* {"model":"…","messages": — the body's fixed start */
    size_t model_json_len;
    jv last_params;             /* most calls share their role's params object: its dump is */
    char *last_params_json;     /* kept (number formatting is the costly part of a dump) */
    size_t last_params_len;
    struct curl_slist *headers;
    model_list *models;         /* what the endpoint says about its models (cache on only) */
};

/* The name CL_<ROLE>_<WHAT>, the role upper-cased and '-' turned into '_'. */
static const char *role_var(const char *role, const char *what, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "CL_");
    for (const char *p = role; *p && k + 1 < n; p++)
        buf[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    snprintf(buf + k, n - k, "_%s", what);
    return buf;
}

static const char *role_env(const char *role, const char *what, char *buf, size_t n)
{
    const char *v = getenv(role_var(role, what, buf, n));
    return v && *v ? v : NULL;
}

/* The URL without credentials or query, which may carry secrets. */
static char *shown(const char *url)
{
    const char *scheme_end = strstr(url, "://");
    const char *host = scheme_end ? scheme_end + 3 : url;
    const char *at = strchr(host, '@'), *slash = strchr(host, '/');
    if (at && (!slash || at < slash))
        host = at + 1;
    size_t q = strcspn(host, "?#");
    size_t plen = scheme_end ? (size_t)(scheme_end + 3 - url) : 0;
    char *s = malloc(plen + q + 1);
    if (s) {
        memcpy(s, url, plen);
        memcpy(s + plen, host, q);
        s[plen + q] = 0;
    }
    return s;
}

static void openai_close(void *self)
{
    struct openai *o = self;
    if (!o)
        return;
    free(o->model);
    free(o->model_json);
    jv_free(o->last_params);
    free(o->last_params_json);
    free(o->url);
    free(o->shown_url);
    if (o->key) {
        memset(o->key, 0, strlen(o->key));
        free(o->key);
    }
    curl_slist_free_all(o->headers);
    model_list_put(o->models);
    free(o);
}

/* ---- what the server says about its models ------------------------------------------- */

/* GET {base}/models, once per endpoint in a run however many roles share it: the bodies are
 * kept while a role refers to them. */
struct model_list {
    char *url;
    char *body;          /* NULL: the server offered no list */
    int refs;
    struct model_list *next;
};
static model_list *model_lists;

static model_list *model_list_get(const char *url, const struct curl_slist *headers, double timeout_s,
                                  const char *role, int quiet)
{
    for (model_list *m = model_lists; m; m = m->next)
        if (strcmp(m->url, url) == 0) {
            m->refs++;
            return m;
        }
    model_list *m = calloc(1, sizeof *m);
    if (!m || !(m->url = strdup(url))) {
        free(m);
        return NULL;
    }
    char err[CURL_ERROR_SIZE + 64] = "";
    long st = cl_http_get(url, headers, timeout_s, &m->body, err, sizeof err);
    if (st != 200) {
        free(m->body);
        m->body = NULL;
        char *sh = shown(url), why[CURL_ERROR_SIZE + 80];
        if (st)
            snprintf(why, sizeof why, "answered HTTP %ld", st);
        else
            snprintf(why, sizeof why, "failed (%s)", err);
        if (!quiet) /* once per endpoint and run */
            cl_warn("role %s: GET %s %s: the server does not say which model it serves, so a model "
                    "replaced behind the same URL and name would replay cached answers "
                    "(--cache-tag NAME separates runs)", role, sh ? sh : "models", why);
        free(sh);
    }
    m->refs = 1;
    m->next = model_lists;
    model_lists = m;
    return m;
}

static void model_list_put(model_list *m)
{
    if (!m || --m->refs > 0)
        return;
    for (model_list **p = &model_lists; *p; p = &(*p)->next)
        if (*p == m) {
            *p = m->next;
            break;
        }
    free(m->url);
    free(m->body);
    free(m);
}

/* The model's entry in the list as compact JSON of the members that name what answers: id,
 * root and parent (vLLM: the weights' path), owned_by, max_model_len, meta (llama.cpp: sizes
 * and parameter count) and created — unless created lies within a day of now: vLLM and
 * llama.cpp put the time of the request there, which would change the key on every run.
 * NULL when the list has no such model. */
static char *model_fingerprint(const char *body, const char *model)
{
    jv list = jv_parse(body), data = cl_json_get(&list, "data"), pick = jv_invalid();
    jv_free(list);
    if (jv_get_kind(data) == JV_KIND_ARRAY) {
        jv_array_foreach(data, i, m) {
            (void)i;
            const char *id = jv_get_kind(m) == JV_KIND_OBJECT ? cl_json_str(&m, "id") : NULL;
            if (id && strcmp(id, model) == 0 && !jv_is_valid(pick))
                pick = m;
            else
                jv_free(m);
        }
    }
    jv_free(data);
    if (!jv_is_valid(pick))
        return NULL;
    static const char *const keep[] = {"id", "root", "parent", "owned_by", "max_model_len", "meta", "created"};
    jv fp = jv_object();
    for (size_t k = 0; k < sizeof keep / sizeof *keep; k++) {
        jv v = cl_json_get(&pick, keep[k]);
        if (strcmp(keep[k], "created") == 0 && jv_get_kind(v) == JV_KIND_NUMBER &&
            fabs(jv_number_value(v) - (double)time(NULL)) < 86400) {
            jv_free(v);
            continue;
        }
        if (jv_get_kind(v) != JV_KIND_NULL && jv_is_valid(v))
            fp = jv_object_set(fp, jv_string(keep[k]), v);
        else
            jv_free(v);
    }
    jv_free(pick);
    char *s = cl_json_dump(&fp, NULL);
    jv_free(fp);
    return s;
}

static int add_header(struct openai *o, const char *h)
{
    struct curl_slist *n = curl_slist_append(o->headers, h);
    if (!n)
        return -1;
    o->headers = n;
    return 0;
}

static int openai_open(cl_llm *llm, const char *arg, const cl_llm_role_config *rc, const cl_llm_config *cfg,
                       void **self, char **identity, cl_err *e)
{
    char env[128];
    if (!*arg)
        return cl_err_set(e, CL_EXIT_CONFIG, "--%s openai: needs a model name, e.g. openai:gpt-4o-mini", rc->name);
    const char *base = rc->base_url;
    if (!base) base = role_env(rc->name, "BASE_URL", env, sizeof env);
    if (!base) base = cfg->api_base;
    if (!base) base = getenv("OPENAI_BASE_URL");
    if (!base || !*base) base = DEFAULT_BASE;
    if (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0)
        return cl_err_set(e, CL_EXIT_CONFIG, "role %s: base URL '%s' must start with http:// or https://",
                          rc->name, base);
    const char *key;
    if (rc->key_env) {
        key = getenv(rc->key_env);
        if (!key || !*key)
            return cl_err_set(e, CL_EXIT_CONFIG, "role %s: the variable %s holding the API key is not set",
                              rc->name, rc->key_env);
    } else {
        /* set but empty means "send no key": OPENAI_API_KEY must not go to every server */
        key = getenv(role_var(rc->name, "API_KEY", env, sizeof env));
        if (!key) key = getenv("OPENAI_API_KEY");
    }
    if ((!key || !*key) && strstr(base, "api.openai.com"))
        return cl_err_set(e, CL_EXIT_CONFIG, "role %s: no API key: set OPENAI_API_KEY (or %s)",
                          rc->name, role_var(rc->name, "API_KEY", env, sizeof env));

    struct openai *o = calloc(1, sizeof *o);
    if (!o)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    o->llm = llm;
    o->last_params = jv_invalid();
    o->model = strdup(arg);
    jv mj = jv_string(arg);
    char *mq = cl_json_dump(&mj, NULL);
    jv_free(mj);
    if (mq && (o->model_json = malloc(strlen(mq) + 32)))
        o->model_json_len = (size_t)sprintf(o->model_json, "{\"model\":%s,\"messages\":", mq);
    free(mq);
    /* {base}/chat/completions, keeping a query (Azure's ?api-version=) after the path */
    size_t blen = strcspn(base, "?#");
    const char *query = base + blen;
    while (blen && base[blen - 1] == '/')
        blen--;
    const char *tail = "/chat/completions";
    size_t tlen = strlen(tail);
    int has_tail = blen >= tlen && strncmp(base + blen - tlen, tail, tlen) == 0;
    size_t ulen = blen + tlen + strlen(query) + 1;
    if ((o->url = malloc(ulen)))
        snprintf(o->url, ulen, "%.*s%s%s", (int)blen, base, has_tail ? "" : tail, query);
    o->shown_url = o->url ? shown(o->url) : NULL;
    if (key && *key)
        o->key = strdup(key);
    char auth[4096];
    int bad = !o->model || !o->model_json || !o->url || !o->shown_url || (key && *key && !o->key) ||
              add_header(o, "Content-Type: application/json") < 0 ||
              add_header(o, "Expect:") < 0; /* libcurl's 100-continue costs a round trip */
    if (!bad && o->key) {
        if ((size_t)snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->key) >= sizeof auth)
            bad = 1;
        else
            bad = add_header(o, auth) < 0;
        memset(auth, 0, sizeof auth);
    }
    for (int i = 0; !bad && i < rc->nheaders; i++) {
        if (!strchr(rc->headers[i], ':')) {
            openai_close(o);
            return cl_err_set(e, CL_EXIT_CONFIG, "role %s: header '%s' is not 'Name: value'", rc->name,
                              rc->headers[i]);
        }
        bad = add_header(o, rc->headers[i]) < 0;
    }
    /* With the cache on, what the server says about the model joins the key: a checkpoint
     * re-served under the same URL and name must not replay the old one's answers. */
    char *fp = NULL;
    if (!bad && cfg->cache_dir) {
        size_t mlen = (has_tail ? blen - tlen : blen) + strlen(query) + 16;
        char *murl = malloc(mlen);
        if (murl) {
            snprintf(murl, mlen, "%.*s/models%s", (int)(has_tail ? blen - tlen : blen), base, query);
            double t = cfg->connect_timeout_s > 0 && cfg->connect_timeout_s < 5 ? cfg->connect_timeout_s : 5;
            o->models = model_list_get(murl, o->headers, t, rc->name, cfg->quiet);
            free(murl);
        }
        if (o->models && o->models->body && !(fp = model_fingerprint(o->models->body, arg)) && !cfg->quiet)
            cl_warn("role %s: %s lists no model '%s': its answers are cached by URL and name only "
                    "(--cache-tag NAME separates runs)", rc->name, o->shown_url, arg);
    }
    size_t ilen = strlen(o->shown_url ? o->shown_url : "") + strlen(arg) + (fp ? strlen(fp) : 0) + 16;
    char *id = bad ? NULL : malloc(ilen);
    if (!id) {
        free(fp);
        openai_close(o);
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    }
    /* What answers: endpoint and model.  Never the key, nor credentials in the URL. */
    snprintf(id, ilen, "openai %s %s%s%s", o->shown_url, arg, fp ? " " : "", fp ? fp : "");
    free(fp);
    *identity = id;
    *self = o;
    return 0;
}

static void openai_done(void *self, void *call, const cl_http_reply *rp);

/* The body is {"model":M,"messages":[…],<params>}, written by hand around two dumps: building a
 * jv object and merging the params into it cost more than the dumps themselves. */
static void openai_start(void *self, cl_llm_call *c)
{
    struct openai *o = self;
    size_t mlen = 0, plen;
    char *msgs = cl_json_dump(cl_llm_call_messages(c), &mlen);
    const jv *pv = cl_llm_call_params(c);
    if (!jv_identical(jv_copy(o->last_params), jv_copy(*pv))) {
        free(o->last_params_json);
        jv_free(o->last_params);
        o->last_params = jv_copy(*pv);
        o->last_params_json = cl_json_dump(pv, &o->last_params_len);
    }
    const char *params = o->last_params_json;
    plen = o->last_params_len;
    const char *head = o->model_json;
    size_t hlen = o->model_json_len;
    char *own_head = NULL, *own_params = NULL;
    if (cl_json_has(pv, "model")) {
        /* A per-call model (cl-rollout --candidate) replaces the role's: JSON objects with a
         * key twice are refused by some servers. */
        jv m = cl_json_get(pv, "model");
        char *mq = cl_json_dump(&m, NULL);
        jv_free(m);
        jv rest = jv_object_delete(jv_copy(*pv), jv_string("model"));
        own_params = cl_json_dump(&rest, &plen);
        jv_free(rest);
        if (mq && (own_head = malloc(strlen(mq) + 32)))
            hlen = (size_t)sprintf(own_head, "{\"model\":%s,\"messages\":", mq);
        free(mq);
        head = own_head;
        params = own_params;
    }
    char *body = msgs && params && head ? malloc(hlen + mlen + plen + 2) : NULL;
    if (!body) {
        free(own_head);
        free(own_params);
        free(msgs);
        cl_llm_outcome out = {.response = jv_invalid(), .status = CL_EXIT_SOFTWARE};
        snprintf(out.error, sizeof out.error, "out of memory");
        cl_llm_attempt_done(c, &out);
        return;
    }
    size_t n = hlen;
    memcpy(body, head, n);
    memcpy(body + n, msgs, mlen);
    n += mlen;
    if (plen > 2) { /* params is an object: splice its members in */
        body[n++] = ',';
        memcpy(body + n, params + 1, plen - 1);
        n += plen - 1;
    } else
        body[n++] = '}';
    body[n] = 0;
    free(msgs);
    free(own_head);
    free(own_params);
    cl_http_xfer *x = cl_http_post(cl_llm_transport(o->llm), o->url, o->headers, body, n, openai_done, o, c);
    if (x) /* NULL: openai_done has run already, and c may be gone */
        *cl_llm_call_backend_data(c) = x;
}

static void openai_abort(void *self, cl_llm_call *c)
{
    struct openai *o = self;
    cl_http_xfer *x = *cl_llm_call_backend_data(c);
    if (x)
        cl_http_abort(cl_llm_transport(o->llm), x);
}

/* Replaces every occurrence of the key in s (a server may echo what it was sent). */
static void scrub(const struct openai *o, char *s)
{
    if (!o->key || strlen(o->key) < 4)
        return;
    size_t klen = strlen(o->key);
    const char *red = "[redacted]";
    char *p;
    while ((p = strstr(s, o->key))) {
        size_t rlen = strlen(red) < klen ? strlen(red) : klen;
        memcpy(p, red, rlen);
        memmove(p + rlen, p + klen, strlen(p + klen) + 1);
    }
}

/* A one-line, printable excerpt of a server's text. */
static void excerpt(const char *s, size_t len, char *out, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < len && k + 4 < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[k++] = ch < 32 || ch == 127 ? ' ' : (char)ch;
    }
    if (len && k + 4 >= n && n > 4) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = 0;
}

/* The error message and code of an error body: {"error":{"message","code","type"}} (OpenAI,
 * llama-server, newer vLLM) or a flat {"message","code","type"} (older vLLM). */
static void error_fields(const jv *body, char *msg, size_t n, char *code, size_t cn)
{
    jv err = cl_json_get(body, "error");
    const jv *src = jv_get_kind(err) == JV_KIND_OBJECT ? &err : body;
    const char *m = cl_json_str(src, "message");
    if (!m && jv_get_kind(err) == JV_KIND_STRING)
        m = jv_string_value(err);
    if (m)
        excerpt(m, strlen(m), msg, n);
    const char *k = cl_json_str(src, "code");
    const char *t = cl_json_str(src, "type");
    snprintf(code, cn, "%s%s%s", k ? k : "", k && t ? "/" : "", t ? t : "");
    jv_free(err);
}

static int retryable_curl(int rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_CONNECT: case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE: case CURLE_GOT_NOTHING: case CURLE_SEND_ERROR: case CURLE_RECV_ERROR:
    case CURLE_SSL_CONNECT_ERROR: case CURLE_HTTP2: case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING: case CURLE_WRITE_ERROR: case CURLE_OUT_OF_MEMORY:
        return 1;
    default:
        return 0;
    }
}

static void openai_done(void *self, void *call, const cl_http_reply *rp)
{
    struct openai *o = self;
    cl_llm_call *c = call;
    *cl_llm_call_backend_data(c) = NULL;
    cl_llm_outcome out = {.response = jv_invalid(), .http_status = (int)rp->status,
                          .retry_after_s = rp->retry_after_s, .status = CL_EXIT_UNAVAILABLE};
    if (rp->curl_code) {
        out.kind = rp->timed_out ? CL_LLM_FAIL_TIMEOUT : CL_LLM_FAIL_TRANSPORT;
        if (rp->curl_code == CURLE_ABORTED_BY_CALLBACK)
            out.status = CL_EXIT_TEMPFAIL;
        else if (rp->curl_code == CURLE_UNSUPPORTED_PROTOCOL || rp->curl_code == CURLE_URL_MALFORMAT ||
                 rp->curl_code == CURLE_PEER_FAILED_VERIFICATION || rp->curl_code == CURLE_SSL_CACERT_BADFILE) {
            out.status = CL_EXIT_CONFIG;
            out.fatal_role = 1;
        } else
            out.retryable = retryable_curl(rp->curl_code);
        snprintf(out.error, sizeof out.error, "POST %s: %s (curl %d)", o->shown_url, rp->curl_error,
                 rp->curl_code);
    } else if (rp->status >= 200 && rp->status < 300) {
        cl_json_check chk;
        jv v = cl_json_validate(rp->body, rp->len, &chk) == 0 ? cl_json_parse(rp->body, rp->len) : jv_invalid();
        if (jv_get_kind(v) == JV_KIND_OBJECT && cl_json_kind(&v, "choices") == JV_KIND_ARRAY &&
            jv_array_length(cl_json_get(&v, "choices")) > 0) {
            out.response = v;
            out.raw = rp->body;
            out.raw_len = rp->len;
        } else {
            char ex[120];
            excerpt(rp->body, rp->len, ex, sizeof ex);
            out.kind = CL_LLM_FAIL_BODY;
            out.retryable = 1;
            snprintf(out.error, sizeof out.error, "HTTP %ld from %s: %s: %s", rp->status, o->shown_url,
                     !jv_is_valid(v) ? "body is not JSON" : "no choices in the reply", ex);
            jv_free(v);
        }
    } else {
        long s = rp->status;
        cl_json_check chk;
        jv v = cl_json_validate(rp->body, rp->len, &chk) == 0 ? cl_json_parse(rp->body, rp->len) : jv_invalid();
        char msg[300] = "", code[100] = "";
        if (jv_get_kind(v) == JV_KIND_OBJECT)
            error_fields(&v, msg, sizeof msg, code, sizeof code);
        if (!*msg)
            excerpt(rp->body, rp->len, msg, 200);
        jv_free(v);
        out.kind = CL_LLM_FAIL_HTTP;
        out.retryable = s == 408 || s == 409 || s == 429 || s >= 500;
        if (rp->should_retry >= 0)
            out.retryable = rp->should_retry;
        if (strstr(code, "insufficient_quota")) {
            out.retryable = 0;
            out.fatal_role = 1;
        } else if (s == 401 || s == 403 || s == 404) {
            out.status = CL_EXIT_CONFIG;
            out.fatal_role = !out.retryable;
        } else if (s >= 400 && s < 500 && !out.retryable)
            out.status = CL_EXIT_DATAERR;
        snprintf(out.error, sizeof out.error, "HTTP %ld from %s: %s%s%s%s", s, o->shown_url, msg,
                 *code ? " (" : "", code, *code ? ")" : "");
    }
    scrub(o, out.error);
    cl_llm_attempt_done(c, &out);
}

const cl_llm_backend cl_llm_openai_backend = {
    .scheme = "openai",
    .open = openai_open,
    .start = openai_start,
    .abort = openai_abort,
    .close = openai_close,
};
