/* What the HTTP backends share: endpoints, keys, headers, and the meaning of failed attempts
 * (see ../shared/research/ecosystem.md §4: error shapes, insufficient_quota, x-should-retry).
 * OpenAI, Azure and Anthropic agree on enough of it — {"error":{"message","type"|"code"}},
 * 429 and 5xx retryable (Anthropic's 529 "overloaded" too), Retry-After — that one reading
 * serves all three. */
#include "llm/remote.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

const char *cl_remote_role_var(const char *role, const char *what, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "CL_");
    for (const char *p = role; *p && k + 1 < n; p++)
        buf[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    snprintf(buf + k, n - k, "_%s", what);
    return buf;
}

static const char *nonempty(const char *v)
{
    return v && *v ? v : NULL;
}

int cl_remote_base(const cl_llm_role_config *rc, const char *global, const char *env_var, const char *dflt,
                   const char **base, cl_err *e)
{
    char var[128];
    const char *b = nonempty(rc->base_url);
    if (!b) b = nonempty(getenv(cl_remote_role_var(rc->name, "BASE_URL", var, sizeof var)));
    if (!b) b = nonempty(global);
    if (!b) b = nonempty(getenv(env_var));
    if (!b) b = dflt;
    *base = b;
    if (b && strncmp(b, "http://", 7) != 0 && strncmp(b, "https://", 8) != 0)
        return cl_err_set(e, CL_EXIT_CONFIG, "role %s: base URL '%s' must start with http:// or https://",
                          rc->name, b);
    return 0;
}

int cl_remote_key(const cl_llm_role_config *rc, const char *env_var, const char **key, cl_err *e)
{
    char var[128];
    if (rc->key_env) {
        *key = nonempty(getenv(rc->key_env));
        if (!*key)
            return cl_err_set(e, CL_EXIT_CONFIG, "role %s: the variable %s holding the API key is not set",
                              rc->name, rc->key_env);
        return 0;
    }
    /* set but empty means "send no key": a provider's key must not go to every server */
    const char *k = getenv(cl_remote_role_var(rc->name, "API_KEY", var, sizeof var));
    if (!k) k = getenv(env_var);
    *key = nonempty(k);
    return 0;
}

char *cl_remote_shown_url(const char *url)
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

static int add_header(cl_remote *r, const char *h)
{
    struct curl_slist *n = curl_slist_append(r->headers, h);
    if (!n)
        return -1;
    r->headers = n;
    return 0;
}

int cl_remote_init(cl_remote *r, cl_llm *llm, const char *url, const char *key, const char *auth_prefix,
                   const char *const *fixed_headers, const cl_llm_role_config *rc, cl_err *e)
{
    memset(r, 0, sizeof *r);
    r->llm = llm;
    r->url = strdup(url);
    r->shown_url = cl_remote_shown_url(url);
    if (key && *key)
        r->key = strdup(key);
    int bad = !r->url || !r->shown_url || (key && *key && !r->key) ||
              add_header(r, "Content-Type: application/json") < 0 ||
              add_header(r, "Expect:") < 0; /* libcurl's 100-continue costs a round trip */
    for (const char *const *h = fixed_headers; !bad && h && *h; h++)
        bad = add_header(r, *h) < 0;
    if (!bad && r->key) {
        char auth[4096];
        if ((size_t)snprintf(auth, sizeof auth, "%s%s", auth_prefix, r->key) >= sizeof auth)
            bad = 1;
        else
            bad = add_header(r, auth) < 0;
        memset(auth, 0, sizeof auth);
    }
    if (bad)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    for (int i = 0; i < rc->nheaders; i++) {
        if (!strchr(rc->headers[i], ':'))
            return cl_err_set(e, CL_EXIT_CONFIG, "role %s: header '%s' is not 'Name: value'", rc->name,
                              rc->headers[i]);
        if (add_header(r, rc->headers[i]) < 0)
            return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    }
    return 0;
}

void cl_remote_fini(cl_remote *r)
{
    free(r->url);
    free(r->shown_url);
    if (r->key) {
        memset(r->key, 0, strlen(r->key));
        free(r->key);
    }
    /* the key's header line is freed without being wiped: libcurl keeps its own copies of
     * header lines while a transfer runs anyway */
    curl_slist_free_all(r->headers);
    memset(r, 0, sizeof *r);
}

void cl_remote_post(cl_remote *r, cl_llm_call *c, char *body, size_t len, cl_http_done_fn done, void *self)
{
    cl_http_xfer *x = cl_http_post(cl_llm_transport(r->llm), r->url, r->headers, body, len, done, self, c);
    if (x) /* NULL: done has run already, and c may be gone */
        *cl_llm_call_backend_data(c) = x;
}

void cl_remote_abort(void *self, cl_llm_call *c)
{
    cl_remote *r = self;
    cl_http_xfer *x = *cl_llm_call_backend_data(c);
    if (x)
        cl_http_abort(cl_llm_transport(r->llm), x);
}

/* Replaces every occurrence of the key in s (a server may echo what it was sent). */
static void scrub(const char *key, char *s)
{
    if (!key || strlen(key) < 4)
        return;
    size_t klen = strlen(key);
    const char *red = "[redacted]";
    char *p;
    while ((p = strstr(s, key))) {
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
 * Azure, llama-server, newer vLLM; Anthropic's {"type":"error","error":{"type","message"}}) or
 * a flat {"message","code","type"} (older vLLM). */
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

static jv parse_body(const cl_http_reply *rp)
{
    cl_json_check chk;
    return cl_json_validate(rp->body, rp->len, &chk) == 0 ? cl_json_parse(rp->body, rp->len) : jv_invalid();
}

int cl_remote_reply(cl_remote *r, cl_llm_call *c, const cl_http_reply *rp, cl_llm_outcome *out, jv *body)
{
    *cl_llm_call_backend_data(c) = NULL;
    *out = (cl_llm_outcome){.response = jv_invalid(), .http_status = (int)rp->status,
                            .retry_after_s = rp->retry_after_s, .status = CL_EXIT_UNAVAILABLE};
    *body = jv_invalid();
    if (rp->curl_code) {
        out->kind = rp->timed_out ? CL_LLM_FAIL_TIMEOUT : CL_LLM_FAIL_TRANSPORT;
        if (rp->curl_code == CURLE_ABORTED_BY_CALLBACK)
            out->status = CL_EXIT_TEMPFAIL;
        else if (rp->curl_code == CURLE_UNSUPPORTED_PROTOCOL || rp->curl_code == CURLE_URL_MALFORMAT ||
                 rp->curl_code == CURLE_PEER_FAILED_VERIFICATION || rp->curl_code == CURLE_SSL_CACERT_BADFILE) {
            out->status = CL_EXIT_CONFIG;
            out->fatal_role = 1;
        } else
            out->retryable = retryable_curl(rp->curl_code);
        snprintf(out->error, sizeof out->error, "POST %s: %s (curl %d)", r->shown_url, rp->curl_error,
                 rp->curl_code);
        return 0;
    }
    if (rp->status >= 200 && rp->status < 300) {
        *body = parse_body(rp);
        return 1;
    }
    long s = rp->status;
    jv v = parse_body(rp);
    char msg[300] = "", code[100] = "";
    if (jv_get_kind(v) == JV_KIND_OBJECT)
        error_fields(&v, msg, sizeof msg, code, sizeof code);
    if (!*msg)
        excerpt(rp->body, rp->len, msg, 200);
    jv_free(v);
    out->kind = CL_LLM_FAIL_HTTP;
    out->retryable = s == 408 || s == 409 || s == 429 || s >= 500;
    if (rp->should_retry >= 0)
        out->retryable = rp->should_retry;
    if (strstr(code, "insufficient_quota")) {
        out->retryable = 0;
        out->fatal_role = 1;
    } else if (s == 401 || s == 403 || s == 404) {
        out->status = CL_EXIT_CONFIG;
        out->fatal_role = !out->retryable;
    } else if (s >= 400 && s < 500 && !out->retryable)
        out->status = CL_EXIT_DATAERR;
    snprintf(out->error, sizeof out->error, "HTTP %ld from %s: %s%s%s%s", s, r->shown_url, msg,
             *code ? " (" : "", code, *code ? ")" : "");
    return 0;
}

void cl_remote_bad_body(cl_remote *r, const cl_http_reply *rp, const char *why, cl_llm_outcome *out)
{
    char ex[120];
    excerpt(rp->body, rp->len, ex, sizeof ex);
    out->kind = CL_LLM_FAIL_BODY;
    out->retryable = 1;
    snprintf(out->error, sizeof out->error, "HTTP %ld from %s: %s: %s", rp->status, r->shown_url, why, ex);
}

void cl_remote_finish(cl_remote *r, cl_llm_call *c, cl_llm_outcome *out)
{
    scrub(r->key, out->error);
    cl_llm_attempt_done(c, out);
}
