/* The "anthropic:MODEL" backend: Anthropic's Messages API (POST {base}/v1/messages, the key in
 * x-api-key, anthropic-version 2023-06-01).  The loop speaks Chat Completions, so this backend
 * translates both ways: the system messages go to the top-level "system" field, the rest become
 * alternating user/assistant turns, the role's parameters are renamed or dropped where the API
 * differs; the reply's text blocks, stop reason and usage come back in Chat Completions shape,
 * which is what the cache stores and every caller reads.  Failures mean what they mean for the
 * other HTTP backends (llm/remote.h): 429 and 529 "overloaded" are retried after Retry-After. */
#include "llm/remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

#define DEFAULT_BASE "https://api.anthropic.com"
/* The Messages API requires max_tokens; a role that sets none gets this many. */
#define DEFAULT_MAX_TOKENS 4096

struct anthropic {
    cl_remote r;  /* first: cl_remote_abort takes the backend's state */
    char *model;
};

static void anthropic_close(void *self)
{
    struct anthropic *a = self;
    if (!a)
        return;
    cl_remote_fini(&a->r);
    free(a->model);
    free(a);
}

static int ends_with(const char *s, size_t n, const char *tail)
{
    size_t t = strlen(tail);
    return n >= t && strncmp(s + n - t, tail, t) == 0;
}

static int anthropic_open(cl_llm *llm, const char *arg, const cl_llm_role_config *rc, const cl_llm_config *cfg,
                          void **self, char **identity, cl_err *e)
{
    char env[128];
    (void)cfg; /* --api-base names the openai: roles' server, not Anthropic's */
    if (!*arg)
        return cl_err_set(e, CL_EXIT_CONFIG, "--%s anthropic: needs a model name, e.g. "
                          "anthropic:claude-3-5-sonnet-20240620", rc->name);
    const char *base, *key;
    if (cl_remote_base(rc, NULL, "ANTHROPIC_BASE_URL", DEFAULT_BASE, &base, e) < 0 ||
        cl_remote_key(rc, "ANTHROPIC_API_KEY", &key, e) < 0)
        return -1;
    if (!key && strstr(base, "api.anthropic.com"))
        return cl_err_set(e, CL_EXIT_CONFIG, "role %s: no API key: set ANTHROPIC_API_KEY (or %s)", rc->name,
                          cl_remote_role_var(rc->name, "API_KEY", env, sizeof env));
    /* {base}/v1/messages; a base that already ends in /v1 or /v1/messages is taken as it is,
     * and a query stays after the path */
    size_t blen = strcspn(base, "?#");
    const char *query = base + blen;
    while (blen && base[blen - 1] == '/')
        blen--;
    const char *tail = ends_with(base, blen, "/v1/messages") ? "" : ends_with(base, blen, "/v1") ? "/messages"
                                                                                                 : "/v1/messages";
    size_t ulen = blen + strlen(tail) + strlen(query) + 1;
    char *url = malloc(ulen);
    struct anthropic *a = calloc(1, sizeof *a);
    if (!url || !a || !(a->model = strdup(arg))) {
        free(url);
        anthropic_close(a);
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    }
    snprintf(url, ulen, "%.*s%s%s", (int)blen, base, tail, query);
    static const char *const fixed[] = {"anthropic-version: 2023-06-01", NULL};
    int bad = cl_remote_init(&a->r, llm, url, key, "x-api-key: ", fixed, rc, e) < 0;
    free(url);
    if (bad) {
        anthropic_close(a);
        return -1;
    }
    /* What answers: endpoint and model, never the key.  Anthropic's model ids name dated
     * snapshots; an alias such as -latest may move (--cache-tag separates runs then). */
    size_t ilen = strlen(a->r.shown_url) + strlen(arg) + 16;
    char *id = malloc(ilen);
    if (!id) {
        anthropic_close(a);
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    }
    snprintf(id, ilen, "anthropic %s %s", a->r.shown_url, arg);
    *identity = id;
    *self = a;
    return 0;
}

/* ---- the request ------------------------------------------------------------------------ */

/* A message's content as text: a string as it is, null as "", and Chat Completions content
 * parts of type "text" joined.  jv_invalid() for anything else (images, tool calls). */
static jv content_text(const jv *m)
{
    jv c = cl_json_get(m, "content");
    switch (jv_get_kind(c)) {
    case JV_KIND_STRING: return c;
    case JV_KIND_NULL: jv_free(c); return jv_string("");
    case JV_KIND_ARRAY: {
        jv text = jv_string("");
        jv_array_foreach(c, i, part) {
            (void)i;
            const char *type = jv_get_kind(part) == JV_KIND_OBJECT ? cl_json_str(&part, "type") : NULL;
            const char *t = type && strcmp(type, "text") == 0 ? cl_json_str(&part, "text") : NULL;
            if (t)
                text = jv_string_append_str(text, t);
            else {
                jv_free(text);
                text = jv_invalid();
            }
            jv_free(part);
            if (!jv_is_valid(text))
                break;
        }
        jv_free(c);
        return text;
    }
    default: jv_free(c); return jv_invalid();
    }
}

static jv join(jv a, jv b)
{
    if (jv_string_length_bytes(jv_copy(a)) > 0 && jv_string_length_bytes(jv_copy(b)) > 0)
        a = jv_string_append_str(a, "\n\n");
    return jv_string_concat(a, b);
}

/* The Messages API body for c, or jv_invalid() with why set (a problem of this call). */
static jv request_body(const struct anthropic *a, cl_llm_call *c, char *why, size_t n)
{
    const jv *msgs = cl_llm_call_messages(c), *pv = cl_llm_call_params(c);
    jv system = jv_null(), turns = jv_array();
    const char *last_role = NULL;
    jv_array_foreach(*msgs, k, m) {
        const char *role = jv_get_kind(m) == JV_KIND_OBJECT ? cl_json_str(&m, "role") : NULL;
        jv text = role ? content_text(&m) : jv_invalid();
        if (!jv_is_valid(text)) {
            snprintf(why, n, "message %d: %s", k, role ? "content is not text (the anthropic: scheme sends text only)"
                                                      : "not an object with a role");
        } else if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            /* every system message, wherever it stands, goes to the one system field */
            system = jv_get_kind(system) == JV_KIND_NULL ? text : join(system, text);
            text = jv_null();
        } else if (strcmp(role, "user") == 0 || strcmp(role, "assistant") == 0) {
            int len = jv_array_length(jv_copy(turns));
            if (last_role && strcmp(last_role, role) == 0) {
                /* the API wants turns that alternate: consecutive ones of a role become one */
                jv prev = jv_array_get(jv_copy(turns), len - 1);
                jv merged = join(cl_json_get(&prev, "content"), text);
                turns = jv_array_set(turns, len - 1, cl_json_set(prev, "content", merged));
            } else
                turns = jv_array_append(turns, JV_OBJECT(jv_string("role"), jv_string(role), jv_string("content"), text));
            last_role = strcmp(role, "user") == 0 ? "user" : "assistant";
            text = jv_null();
        } else {
            snprintf(why, n, "message %d has role '%s', which the Messages API does not take", k, role);
            jv_free(text);
            text = jv_invalid();
        }
        jv_free(m);
        if (!jv_is_valid(text)) {
            jv_free(system);
            jv_free(turns);
            return jv_invalid();
        }
        jv_free(text);
    }
    if (jv_array_length(jv_copy(turns)) == 0) {
        snprintf(why, n, "no user or assistant message to send");
        jv_free(system);
        jv_free(turns);
        return jv_invalid();
    }
    jv body = cl_json_has(pv, "model") ? cl_json_set(jv_object(), "model", cl_json_get(pv, "model"))
                                       : cl_json_set_str(jv_object(), "model", a->model);
    double mt = cl_json_num(pv, "max_tokens", cl_json_num(pv, "max_completion_tokens", DEFAULT_MAX_TOKENS));
    body = cl_json_set_num(body, "max_tokens", mt);
    if (jv_get_kind(system) != JV_KIND_NULL)
        body = cl_json_set(body, "system", system);
    else
        jv_free(system);
    body = cl_json_set(body, "messages", turns);
    jv_object_foreach(*pv, name, v) {
        const char *kname = jv_string_value(name);
        if (!strcmp(kname, "model") || !strcmp(kname, "max_tokens") || !strcmp(kname, "max_completion_tokens") ||
            !strcmp(kname, "seed") /* not offered: cache keys keep samples apart */) {
            jv_free(v);
        } else if (!strcmp(kname, "n")) {
            int more = jv_get_kind(v) == JV_KIND_NUMBER && jv_number_value(v) > 1;
            jv_free(v);
            if (more) {
                snprintf(why, n, "n > 1: the Messages API gives one completion per call");
                jv_free(name);
                jv_free(body);
                return jv_invalid();
            }
        } else if (!strcmp(kname, "top_p") && jv_get_kind(v) == JV_KIND_NUMBER && jv_number_value(v) >= 1) {
            /* top_p 1 cuts nothing, and newer Claude models refuse temperature and top_p
             * together: the no-op is not sent */
            jv_free(v);
        } else if (!strcmp(kname, "stop")) {
            body = cl_json_set(body, "stop_sequences", jv_get_kind(v) == JV_KIND_STRING ? JV_ARRAY(v) : v);
        } else
            body = jv_object_set(body, jv_copy(name), v);
        jv_free(name);
    }
    return body;
}

static void anthropic_done(void *self, void *call, const cl_http_reply *rp);

static void anthropic_start(void *self, cl_llm_call *c)
{
    struct anthropic *a = self;
    char why[300] = "";
    jv body = request_body(a, c, why, sizeof why);
    size_t len = 0;
    char *text = jv_is_valid(body) ? cl_json_dump(&body, &len) : NULL;
    jv_free(body);
    if (!text) {
        cl_llm_outcome out = {.response = jv_invalid(), .status = *why ? CL_EXIT_DATAERR : CL_EXIT_SOFTWARE};
        snprintf(out.error, sizeof out.error, "anthropic: %s", *why ? why : "out of memory");
        cl_llm_attempt_done(c, &out);
        return;
    }
    cl_remote_post(&a->r, c, text, len, anthropic_done, a);
}

/* ---- the reply -------------------------------------------------------------------------- */

/* o's member k, null when absent. */
static jv member(const jv *o, const char *k)
{
    jv x = cl_json_get(o, k);
    return jv_is_valid(x) ? x : jv_null();
}

/* Chat Completions' finish_reason for a stop_reason. */
static const char *finish_reason(const char *stop)
{
    if (!stop)
        return NULL;
    if (!strcmp(stop, "end_turn") || !strcmp(stop, "stop_sequence"))
        return "stop";
    if (!strcmp(stop, "max_tokens"))
        return "length";
    if (!strcmp(stop, "tool_use"))
        return "tool_calls";
    if (!strcmp(stop, "refusal"))
        return "content_filter";
    return stop; /* pause_turn and whatever comes later, as the API names it */
}

/* The reply in Chat Completions shape, or jv_invalid() when it is not a message.  Usage:
 * prompt_tokens counts every input token (input_tokens plus the prompt cache's reads and
 * writes), completion_tokens the output tokens.  The original stop reason and usage stay
 * under "anthropic". */
static jv to_chat(jv v)
{
    jv content = cl_json_get(&v, "content");
    if (jv_get_kind(content) != JV_KIND_ARRAY) {
        jv_free(content);
        jv_free(v);
        return jv_invalid();
    }
    jv text = jv_string("");
    jv_array_foreach(content, i, block) {
        (void)i;
        const char *type = jv_get_kind(block) == JV_KIND_OBJECT ? cl_json_str(&block, "type") : NULL;
        const char *t = type && !strcmp(type, "text") ? cl_json_str(&block, "text") : NULL;
        if (t)
            text = jv_string_append_str(text, t);
        jv_free(block);
    }
    jv_free(content);
    const char *fr = finish_reason(cl_json_str(&v, "stop_reason"));
    jv choice = JV_OBJECT(jv_string("index"), jv_number(0), jv_string("message"),
                          JV_OBJECT(jv_string("role"), jv_string("assistant"), jv_string("content"), text),
                          jv_string("finish_reason"), fr ? jv_string(fr) : jv_null());
    jv out = JV_OBJECT(jv_string("id"), member(&v, "id"), jv_string("object"), jv_string("chat.completion"),
                       jv_string("model"), member(&v, "model"), jv_string("choices"), JV_ARRAY(choice));
    jv u = cl_json_get(&v, "usage");
    if (jv_get_kind(u) == JV_KIND_OBJECT && cl_json_kind(&u, "input_tokens") == JV_KIND_NUMBER) {
        double in = cl_json_num(&u, "input_tokens", 0) + cl_json_num(&u, "cache_creation_input_tokens", 0) +
                    cl_json_num(&u, "cache_read_input_tokens", 0);
        double outt = cl_json_num(&u, "output_tokens", 0);
        out = cl_json_set(out, "usage", JV_OBJECT(jv_string("prompt_tokens"), jv_number(in),
                                                  jv_string("completion_tokens"), jv_number(outt),
                                                  jv_string("total_tokens"), jv_number(in + outt)));
    }
    jv orig = JV_OBJECT(jv_string("stop_reason"), member(&v, "stop_reason"), jv_string("stop_sequence"),
                        member(&v, "stop_sequence"), jv_string("usage"), u);
    jv_free(v);
    return cl_json_set(out, "anthropic", orig);
}

/* ---- prices ---------------------------------------------------------------------------- */

/* Anthropic's list prices in dollars per million input and output tokens (base rates, prompts
 * up to 200K tokens; no batch or prompt-cache rates), from the public price list at
 * https://docs.anthropic.com/en/docs/about-claude/pricing and the models' pages on
 * platform.claude.com, read 2026-12-07.  Matched by prefix, so dated snapshots and -latest
 * aliases find their family; the first match wins (the longer prefixes come first).  Models not
 * listed cost what --price says. */
static const struct { const char *prefix; double in, out; } prices[] = {
    {"claude-opus-4-6", 5, 25},         {"claude-opus-4-5", 5, 25},
    {"claude-opus-4-1", 15, 75},        {"claude-opus-4-0", 15, 75},
    {"claude-opus-4-2025", 15, 75},     /* claude-opus-4-20250514 */
    {"claude-sonnet-4", 3, 15},         /* 4, 4.5 and 4.6 alike */
    {"claude-haiku-4-5", 1, 5},
    {"claude-3-7-sonnet", 3, 15},       {"claude-3-5-sonnet", 3, 15},
    {"claude-3-5-haiku", 0.80, 4},      {"claude-3-opus", 15, 75},
    {"claude-3-haiku", 0.25, 1.25},
};

static int anthropic_price(const char *model, double *in, double *out)
{
    for (size_t i = 0; i < sizeof prices / sizeof *prices; i++)
        if (strncmp(model, prices[i].prefix, strlen(prices[i].prefix)) == 0) {
            *in = prices[i].in;
            *out = prices[i].out;
            return 1;
        }
    return 0;
}

static void anthropic_done(void *self, void *call, const cl_http_reply *rp)
{
    struct anthropic *a = self;
    cl_llm_call *c = call;
    cl_llm_outcome out;
    jv v;
    if (cl_remote_reply(&a->r, c, rp, &out, &v)) {
        int json = jv_get_kind(v) == JV_KIND_OBJECT;
        jv chat = json ? to_chat(v) : (jv_free(v), jv_invalid());
        if (jv_is_valid(chat))
            out.response = chat; /* stored as converted: raw stays NULL */
        else
            cl_remote_bad_body(&a->r, rp, json ? "no content in the reply" : "body is not JSON", &out);
    }
    cl_remote_finish(&a->r, c, &out);
}

const cl_llm_backend cl_llm_anthropic_backend = {
    .scheme = "anthropic",
    .open = anthropic_open,
    .start = anthropic_start,
    .abort = cl_remote_abort,
    .close = anthropic_close,
    .list_price = anthropic_price,
};
