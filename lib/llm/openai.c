/* The Chat Completions backends: "openai:MODEL", as spoken by OpenAI, vLLM, llama.cpp's server
 * and compatible gateways, and "azure:DEPLOYMENT", the same body and reply at Azure OpenAI's
 * deployment URLs with its api-key header.  They differ only in where they post and how the key
 * travels; the body, the reply's reading and the failures' meaning (llm/remote.h) are one. */
#include "llm/remote.h"

#include <math.h>
#include <time.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

#define DEFAULT_BASE "https://api.openai.com/v1"
/* Azure OpenAI's latest generally available data-plane version when this was written
 * (learn.microsoft.com, "Azure OpenAI API version lifecycle", checked 2026-12). */
#define AZURE_DEFAULT_VERSION "2024-10-21"

typedef struct model_list model_list;
static void model_list_put(model_list *m);

struct openai {
    cl_remote r;                /* first: cl_remote_abort takes the backend's state */
    char *model_json;           /* {"model":"…","messages": — the body's fixed start */
    size_t model_json_len;
    jv last_params;             /* most calls share their role's params object: its dump is */
    char *last_params_json;     /* kept (number formatting is the costly part of a dump) */
    size_t last_params_len;
    model_list *models;         /* what the endpoint says about its models (cache on only) */
};

static void openai_close(void *self)
{
    struct openai *o = self;
    if (!o)
        return;
    free(o->model_json);
    jv_free(o->last_params);
    free(o->last_params_json);
    cl_remote_fini(&o->r);
    model_list_put(o->models);
    free(o);
}

/* ---- what the server says about its models ------------------------------------------- */

/* GET {base}/models, once per endpoint and key in a run however many roles share them: the
 * bodies are kept while a role refers to them.  Two roles that reach one URL with different
 * keys (or other headers) may be shown different models, so each pair gets its own list; the
 * memo holds a hash of the headers, never the key. */
struct model_list {
    char *url;
    uint64_t headers_hash;
    char *body;          /* NULL: the server offered no list */
    int refs;
    struct model_list *next;
};
static model_list *model_lists;

static uint64_t headers_hash(const struct curl_slist *headers)
{
    uint64_t h = 0;
    for (const struct curl_slist *l = headers; l; l = l->next)
        h = cl_hash64(l->data, strlen(l->data) + 1, h); /* the NUL separates the lines */
    return h;
}

static model_list *model_list_get(const char *url, const struct curl_slist *headers, double timeout_s,
                                  const char *role, int quiet)
{
    uint64_t hh = headers_hash(headers);
    for (model_list *m = model_lists; m; m = m->next)
        if (strcmp(m->url, url) == 0 && m->headers_hash == hh) {
            m->refs++;
            return m;
        }
    model_list *m = calloc(1, sizeof *m);
    if (!m || !(m->url = strdup(url))) {
        free(m);
        return NULL;
    }
    m->headers_hash = hh;
    char err[CURL_ERROR_SIZE + 64] = "";
    long st = cl_http_get(url, headers, timeout_s, &m->body, err, sizeof err);
    if (st != 200) {
        free(m->body);
        m->body = NULL;
        char *sh = cl_remote_shown_url(url), why[CURL_ERROR_SIZE + 80];
        if (st)
            snprintf(why, sizeof why, "answered HTTP %ld", st);
        else
            snprintf(why, sizeof why, "failed (%s)", err);
        if (!quiet) /* once per endpoint, key and run */
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

static void openai_done(void *self, void *call, const cl_http_reply *rp);

/* The state both schemes share: the endpoint (url, key sent as auth_prefix KEY) and the body's
 * fixed start naming model.  NULL with e set. */
static struct openai *chat_new(cl_llm *llm, const char *model, const char *url, const char *key,
                               const char *auth_prefix, const cl_llm_role_config *rc, cl_err *e)
{
    struct openai *o = calloc(1, sizeof *o);
    if (!o) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    o->last_params = jv_invalid();
    if (cl_remote_init(&o->r, llm, url, key, auth_prefix, NULL, rc, e) < 0) {
        openai_close(o);
        return NULL;
    }
    jv mj = jv_string(model);
    char *mq = cl_json_dump(&mj, NULL);
    jv_free(mj);
    if (mq && (o->model_json = malloc(strlen(mq) + 32)))
        o->model_json_len = (size_t)sprintf(o->model_json, "{\"model\":%s,\"messages\":", mq);
    free(mq);
    if (!o->model_json) {
        openai_close(o);
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    return o;
}

/* "SCHEME URL ARG[ EXTRA]" for the cache key: endpoint and model, never the key (the shown URL
 * has no credentials).  0, or -1 with e set. */
static int chat_identity(struct openai *o, const char *scheme, const char *arg, const char *extra, char **identity,
                         cl_err *e)
{
    size_t ilen = strlen(scheme) + strlen(o->r.shown_url) + strlen(arg) + (extra ? strlen(extra) : 0) + 8;
    char *id = malloc(ilen);
    if (!id)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    snprintf(id, ilen, "%s %s %s%s%s", scheme, o->r.shown_url, arg, extra ? " " : "", extra ? extra : "");
    *identity = id;
    return 0;
}

static int openai_open(cl_llm *llm, const char *arg, const cl_llm_role_config *rc, const cl_llm_config *cfg,
                       void **self, char **identity, cl_err *e)
{
    char env[128];
    if (!*arg)
        return cl_err_set(e, CL_EXIT_CONFIG, "--%s openai: needs a model name, e.g. openai:gpt-4o-mini", rc->name);
    const char *base, *key;
    if (cl_remote_base(rc, cfg->api_base, "OPENAI_BASE_URL", DEFAULT_BASE, &base, e) < 0 ||
        cl_remote_key(rc, "OPENAI_API_KEY", &key, e) < 0)
        return -1;
    if (!key && strstr(base, "api.openai.com"))
        return cl_err_set(e, CL_EXIT_CONFIG, "role %s: no API key: set OPENAI_API_KEY (or %s)",
                          rc->name, cl_remote_role_var(rc->name, "API_KEY", env, sizeof env));
    /* {base}/chat/completions, keeping a query (a gateway's ?api-version=) after the path */
    size_t blen = strcspn(base, "?#");
    const char *query = base + blen;
    while (blen && base[blen - 1] == '/')
        blen--;
    const char *tail = "/chat/completions";
    size_t tlen = strlen(tail);
    int has_tail = blen >= tlen && strncmp(base + blen - tlen, tail, tlen) == 0;
    size_t ulen = blen + tlen + strlen(query) + 1;
    char *url = malloc(ulen);
    if (!url)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    snprintf(url, ulen, "%.*s%s%s", (int)blen, base, has_tail ? "" : tail, query);
    struct openai *o = chat_new(llm, arg, url, key, "Authorization: Bearer ", rc, e);
    free(url);
    if (!o)
        return -1;
    /* With the cache on, what the server says about the model joins the key: a checkpoint
     * re-served under the same URL and name must not replay the old one's answers. */
    char *fp = NULL;
    if (cfg->cache_dir) {
        size_t mlen = (has_tail ? blen - tlen : blen) + strlen(query) + 16;
        char *murl = malloc(mlen);
        if (murl) {
            snprintf(murl, mlen, "%.*s/models%s", (int)(has_tail ? blen - tlen : blen), base, query);
            double t = cfg->connect_timeout_s > 0 && cfg->connect_timeout_s < 5 ? cfg->connect_timeout_s : 5;
            o->models = model_list_get(murl, o->r.headers, t, rc->name, cfg->quiet);
            free(murl);
        }
        if (o->models && o->models->body && !(fp = model_fingerprint(o->models->body, arg)) && !cfg->quiet)
            cl_warn("role %s: %s lists no model '%s': its answers are cached by URL and name only "
                    "(--cache-tag NAME separates runs)", rc->name, o->r.shown_url, arg);
    }
    int rc_id = chat_identity(o, "openai", arg, fp, identity, e);
    free(fp);
    if (rc_id < 0) {
        openai_close(o);
        return -1;
    }
    *self = o;
    return 0;
}

/* Characters a deployment name or an API version may hold: they go into the URL as they are. */
static int url_safe(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_' || *s == '.'))
            return 0;
    return 1;
}

/* azure:DEPLOYMENT — POST {endpoint}/openai/deployments/DEPLOYMENT/chat/completions
 * ?api-version=V with the key in an api-key header.  A deployment names one model version that
 * its owner fixed, and Azure lists no models per deployment, so no model list is fetched: the
 * endpoint, deployment and API version are the identity. */
static int azure_open(cl_llm *llm, const char *arg, const cl_llm_role_config *rc, const cl_llm_config *cfg,
                      void **self, char **identity, cl_err *e)
{
    char env[128];
    (void)cfg; /* --api-base names the openai: roles' server, not an Azure resource */
    if (!url_safe(arg))
        return cl_err_set(e, CL_EXIT_CONFIG, "--%s azure:%s: needs a deployment name (letters, digits, '-', '_', "
                          "'.'), e.g. azure:gpt-4o-mini", rc->name, arg);
    const char *base, *key;
    if (cl_remote_base(rc, NULL, "AZURE_OPENAI_ENDPOINT", NULL, &base, e) < 0 ||
        cl_remote_key(rc, "AZURE_OPENAI_API_KEY", &key, e) < 0)
        return -1;
    if (!base)
        return cl_err_set(e, CL_EXIT_CONFIG, "role %s: azure: needs an endpoint: set AZURE_OPENAI_ENDPOINT "
                          "(https://RESOURCE.openai.azure.com), %s or --%s-api-base", rc->name,
                          cl_remote_role_var(rc->name, "BASE_URL", env, sizeof env), rc->name);
    if (!key)
        return cl_err_set(e, CL_EXIT_CONFIG, "role %s: no API key: set AZURE_OPENAI_API_KEY (or %s)", rc->name,
                          cl_remote_role_var(rc->name, "API_KEY", env, sizeof env));
    const char *ver = getenv("OPENAI_API_VERSION");
    if (!ver || !*ver)
        ver = AZURE_DEFAULT_VERSION;
    if (!url_safe(ver))
        return cl_err_set(e, CL_EXIT_CONFIG, "role %s: OPENAI_API_VERSION '%s' is not an API version such as %s",
                          rc->name, ver, AZURE_DEFAULT_VERSION);
    size_t blen = strcspn(base, "?#");
    while (blen && base[blen - 1] == '/')
        blen--;
    size_t ulen = blen + strlen(arg) + strlen(ver) + 64;
    char *url = malloc(ulen);
    if (!url)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    snprintf(url, ulen, "%.*s/openai/deployments/%s/chat/completions?api-version=%s", (int)blen, base, arg, ver);
    struct openai *o = chat_new(llm, arg, url, key, "api-key: ", rc, e);
    free(url);
    if (!o)
        return -1;
    char extra[96];
    snprintf(extra, sizeof extra, "api-version=%s", ver);
    if (chat_identity(o, "azure", arg, extra, identity, e) < 0) {
        openai_close(o);
        return -1;
    }
    *self = o;
    return 0;
}


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
    cl_remote_post(&o->r, c, body, n, openai_done, o);
}

static void openai_done(void *self, void *call, const cl_http_reply *rp)
{
    struct openai *o = self;
    cl_llm_call *c = call;
    cl_llm_outcome out;
    jv v;
    if (cl_remote_reply(&o->r, c, rp, &out, &v)) {
        if (jv_get_kind(v) == JV_KIND_OBJECT && cl_json_kind(&v, "choices") == JV_KIND_ARRAY &&
            jv_array_length(cl_json_get(&v, "choices")) > 0) {
            out.response = v;
            out.raw = rp->body;
            out.raw_len = rp->len;
        } else {
            cl_remote_bad_body(&o->r, rp, !jv_is_valid(v) ? "body is not JSON" : "no choices in the reply", &out);
            jv_free(v);
        }
    }
    cl_remote_finish(&o->r, c, &out);
}

const cl_llm_backend cl_llm_azure_backend = {
    .scheme = "azure",
    .open = azure_open,
    .start = openai_start,
    .abort = cl_remote_abort,
    .close = openai_close,
};

const cl_llm_backend cl_llm_openai_backend = {
    .scheme = "openai",
    .open = openai_open,
    .start = openai_start,
    .abort = cl_remote_abort,
    .close = openai_close,
};
