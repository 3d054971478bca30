/* mockllm — a loopback LLM server for tests and benchmarks: OpenAI's Chat Completions, Azure
 * OpenAI's deployment URLs and Anthropic's Messages API.
 *
 *   mockllm [--latency MS[-MAX]] [--fault KIND=FRACTION]... [--retry-after S] [--stall S]
 *           [--script FILE] [--deterministic] [--log FILE] [--stats FILE] [--seed N] [--port N]
 *           [--model NAME[=ROOT]]...
 *
 * Binds 127.0.0.1 (port 0 = any free one) and prints the port on stdout.  Answers POST
 * /v1/chat/completions and /chat/completions, /openai/deployments/NAME/chat/completions (Azure:
 * refused with 401 without an api-key header, 404 without ?api-version=) and /v1/messages
 * (Anthropic: refused as the API does without x-api-key (401), without anthropic-version
 * 2023-06-01, with a member it does not know, without model or a positive integer max_tokens,
 * with a role other than user or assistant or two of one role in a row, or a temperature above 1
 * (400); replies with a thinking block and the text split over two text blocks, and errors in
 * its {"type":"error","error":{"type","message"}} shape) with HTTP/1.1 keep-alive, one epoll
 * thread, so it
 * sustains far more calls per second than the client under test (see BENCHMARKS.md).  Until
 * SIGTERM/SIGINT, then prints its statistics on stderr (and to --stats) and exits 0.
 *
 * Replies: "mock reply #SEQ h=HASH" (SEQ counts requests, so a refetch is visible; with
 * --deterministic only the hash of the body), one per choice when the body asks for "n", or
 * the "reply" of the first --script line ({"match": "substring of the body", "reply": "..."})
 * whose substring occurs in the request body.
 *
 * Faults, drawn per request with the given probabilities (--fault 429=0.1), or forced by a
 * directive inside the request body (a message containing "@fault:KIND"), or
 * "@fail-first:K:KIND" = the first K times this exact body arrives:
 *   429       rate limited, Retry-After: --retry-after (default 1)
 *   overloaded  529 overloaded_error (Anthropic's), with the same Retry-After
 *   quota     429 insufficient_quota (must not be retried)
 *   500, 503  server errors;  noretry = 503 with x-should-retry: false
 *   400, 401, 404   client errors;  echokey = 401 whose message repeats the Authorization value
 *   stall     no answer for --stall seconds (default 3600)
 *   midstall  headers and half the body, then nothing
 *   reset     TCP RST;  close = close without a reply;  truncate = short body, then close
 *   badjson   200 with an invalid JSON body;  nochoices = 200 with {"object":"x"}
 *   length    finish_reason "length" (stop_reason "max_tokens");  nousage = no usage member;
 *             null = content null (no content blocks)
 * Other directives: "@delay:MS" sets this request's latency.
 *
 * GET /v1/models (or /models) lists the --model NAME[=ROOT] entries as vLLM does ({"id":
 * NAME, "root": ROOT (default NAME), "owned_by", "created"}); without --model it answers 404,
 * as servers that say nothing about their model do.  These requests are neither logged nor
 * counted among the requests (so the counts of chat calls stay exact); "models_requests" in
 * the statistics counts them.
 *
 * --log FILE appends one JSON line per request: {"seq","t","conn","concurrent","path",
 * "headers":{lower-case name: value},"body": the request JSON,"fault","rejected": why Azure's or
 * Anthropic's checks refused it, when they did}.  --stats FILE gets
 * {"requests","max_concurrent","connections","max_connections","cpu_s","us_per_request"}. */
#define _GNU_SOURCE /* memmem, accept4 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/json.h"

enum fault { F_NONE, F_429, F_QUOTA, F_500, F_503, F_NORETRY, F_400, F_401, F_404, F_ECHOKEY, F_STALL,
             F_MIDSTALL, F_RESET, F_CLOSE, F_TRUNCATE, F_BADJSON, F_NOCHOICES, F_LENGTH, F_NOUSAGE,
             F_NULL, F_OVERLOADED, F_COUNT };
static const char *const fault_names[F_COUNT] = {
    "none", "429", "quota", "500", "503", "noretry", "400", "401", "404", "echokey", "stall",
    "midstall", "reset", "close", "truncate", "badjson", "nochoices", "length", "nousage", "null",
    "overloaded"};

typedef struct conn {
    int fd;
    unsigned gen;          /* bumped on close so stale timers are ignored */
    unsigned long id;
    char *in;
    size_t nin, capin;
    char *out;
    size_t nout, capout, offout;
    int busy;              /* a request is being answered */
    int close_after;
} conn;

typedef struct timer {
    double at;
    int fd;
    unsigned gen;
    char *resp;            /* full response bytes to send */
    size_t len;
    int then;              /* 0 keep, 1 close after, 2 stall forever after sending */
} timer;

static struct {
    double lat_min, lat_max, retry_after, stall_s;
    double frac[F_COUNT];
    int deterministic;
    FILE *log;
    const char *stats;
    uint64_t rng;
    jv script;             /* array of [match, reply] */
    conn **conns;
    int nconns_cap;
    long open_conns, max_conns, total_conns;
    long inflight, max_inflight;
    unsigned long seq;
    timer *heap;
    size_t nheap, capheap;
    double t0;
    int ep;
    jv fail_counts;        /* body hash -> times seen */
    jv models;             /* the --model entries */
    unsigned long models_requests;
} M;

static volatile sig_atomic_t quit;
static void on_quit(int sig) { (void)sig; quit = 1; }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double uniform(void)
{
    uint64_t z = (M.rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "mockllm: out of memory\n");
        exit(70);
    }
    return q;
}

static void append(char **buf, size_t *n, size_t *cap, const char *data, size_t len)
{
    if (*n + len + 1 > *cap) {
        *cap = (*n + len + 1) * 2;
        *buf = xrealloc(*buf, *cap);
    }
    memcpy(*buf + *n, data, len);
    *n += len;
    (*buf)[*n] = 0;
}

/* ---- timers ------------------------------------------------------------------------------ */

static void heap_push(timer t)
{
    if (M.nheap == M.capheap) {
        M.capheap = M.capheap ? M.capheap * 2 : 1024;
        M.heap = xrealloc(M.heap, M.capheap * sizeof *M.heap);
    }
    size_t i = M.nheap++;
    M.heap[i] = t;
    while (i && M.heap[(i - 1) / 2].at > M.heap[i].at) {
        timer x = M.heap[i];
        M.heap[i] = M.heap[(i - 1) / 2];
        M.heap[(i - 1) / 2] = x;
        i = (i - 1) / 2;
    }
}

static timer heap_pop(void)
{
    timer top = M.heap[0];
    M.heap[0] = M.heap[--M.nheap];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < M.nheap && M.heap[l].at < M.heap[m].at) m = l;
        if (r < M.nheap && M.heap[r].at < M.heap[m].at) m = r;
        if (m == i) break;
        timer x = M.heap[i];
        M.heap[i] = M.heap[m];
        M.heap[m] = x;
        i = m;
    }
    return top;
}

/* ---- connections ------------------------------------------------------------------------- */

static void conn_close(conn *c, int rst)
{
    if (rst) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    if (c->busy)
        M.inflight--;
    epoll_ctl(M.ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->gen++;
    c->nin = c->nout = c->offout = 0;
    c->busy = c->close_after = 0;
    M.open_conns--;
}

static void want_out(conn *c, int on)
{
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.fd = c->fd};
    epoll_ctl(M.ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void flush_out(conn *c)
{
    while (c->offout < c->nout) {
        ssize_t w = write(c->fd, c->out + c->offout, c->nout - c->offout);
        if (w < 0) {
            if (errno == EAGAIN) {
                want_out(c, 1);
                return;
            }
            conn_close(c, 0);
            return;
        }
        c->offout += (size_t)w;
    }
    c->nout = c->offout = 0;
    want_out(c, 0);
    if (c->close_after)
        conn_close(c, 0);
}

static void handle_input(conn *c);

static void send_response(timer *t)
{
    conn *c = t->fd < M.nconns_cap ? M.conns[t->fd] : NULL;
    if (!c || c->fd < 0 || c->gen != t->gen) {
        free(t->resp);
        return;
    }
    append(&c->out, &c->nout, &c->capout, t->resp, t->len);
    free(t->resp);
    /* midstall (then == 2): the rest never comes and the request stays open until the client
     * gives up and closes the connection. */
    if (t->then != 2) {
        c->busy = 0;
        M.inflight--;
        c->close_after = t->then == 1;
    }
    flush_out(c);
    if (t->then != 2 && c->fd >= 0 && !c->close_after)
        handle_input(c); /* a request may already be waiting */
}

/* ---- replies ----------------------------------------------------------------------------- */

static int has_directive(const char *body, size_t len, const char *name, const char **arg)
{
    char pat[64];
    snprintf(pat, sizeof pat, "@%s:", name);
    const char *p = memmem(body, len, pat, strlen(pat));
    if (p && arg)
        *arg = p + strlen(pat);
    return p != NULL;
}

static enum fault fault_named(const char *s)
{
    for (int f = 1; f < F_COUNT; f++) {
        size_t n = strlen(fault_names[f]);
        if (strncmp(s, fault_names[f], n) == 0 && !((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9')))
            return (enum fault)f;
    }
    return F_NONE;
}

static enum fault choose_fault(const char *body, size_t len)
{
    const char *a;
    if (has_directive(body, len, "fault", &a))
        return fault_named(a);
    if (has_directive(body, len, "fail-first", &a)) {
        int k = atoi(a);
        const char *kind = strchr(a, ':');
        char key[32];
        snprintf(key, sizeof key, "%016llx", (unsigned long long)cl_hash64(body, len, 0));
        int seen = (int)cl_json_num(&M.fail_counts, key, 0);
        M.fail_counts = cl_json_set_num(M.fail_counts, key, seen + 1);
        if (seen < k && kind)
            return fault_named(kind + 1);
        return F_NONE;
    }
    double u = uniform(), acc = 0;
    for (int f = 1; f < F_COUNT; f++)
        if ((acc += M.frac[f]) > u)
            return (enum fault)f;
    return F_NONE;
}

static char *json_str(const char *s)
{
    jv v = jv_string(s);
    char *out = cl_json_dump(&v, NULL);
    jv_free(v);
    return out;
}

static size_t build(char **out, int status, const char *reason, const char *extra_headers, const char *body,
                    long content_length)
{
    size_t blen = strlen(body);
    char head[512];
    int h = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %ld\r\n%s\r\n", status,
                     reason, content_length >= 0 ? content_length : (long)blen, extra_headers ? extra_headers : "");
    *out = xrealloc(NULL, (size_t)h + blen + 1);
    memcpy(*out, head, (size_t)h);
    memcpy(*out + h, body, blen + 1);
    return (size_t)h + blen;
}

static const char *header_value(const char *head, const char *name, size_t *vlen)
{
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            *vlen = strcspn(v, "\r");
            return v;
        }
    }
    return NULL;
}

static char *reply_text(const char *body, size_t len, unsigned long seq)
{
    for (int i = 0; i < jv_array_length(jv_copy(M.script)); i++) {
        jv rule = jv_array_get(jv_copy(M.script), i);
        jv m = jv_array_get(jv_copy(rule), 0);
        int hit = memmem(body, len, jv_string_value(m), (size_t)jv_string_length_bytes(jv_copy(m))) != NULL;
        jv_free(m);
        if (hit) {
            jv r = jv_array_get(rule, 1);
            char *s = strdup(jv_string_value(r));
            jv_free(r);
            return s;
        }
        jv_free(rule);
    }
    char *s = xrealloc(NULL, 64);
    unsigned long long h = (unsigned long long)cl_hash64(body, len, 0) & 0xffffffffULL;
    if (M.deterministic)
        snprintf(s, 64, "mock reply h=%08llx", h);
    else
        snprintf(s, 64, "mock reply #%lu h=%08llx", seq, h);
    return s;
}

static void log_request(const conn *c, const char *head, size_t hlen, const char *body, size_t blen,
                        enum fault f, const char *rejected, unsigned long seq)
{
    if (!M.log)
        return;
    jv hd = jv_object();
    for (const char *p = strstr(head, "\r\n"); p && (size_t)(p - head) + 2 < hlen && p[2] != '\r';
         p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2, *colon = memchr(line, ':', strcspn(line, "\r"));
        if (!colon)
            continue;
        char name[128];
        size_t n = (size_t)(colon - line) < sizeof name - 1 ? (size_t)(colon - line) : sizeof name - 1;
        for (size_t i = 0; i < n; i++)
            name[i] = (char)(line[i] >= 'A' && line[i] <= 'Z' ? line[i] + 32 : line[i]);
        name[n] = 0;
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        hd = jv_object_set(hd, jv_string(name), jv_string_sized(v, (int)strcspn(v, "\r")));
    }
    cl_json_check chk;
    jv b = cl_json_validate(body, blen, &chk) == 0 ? cl_json_parse(body, blen) : jv_string_sized(body, (int)blen);
    const char *sp = strchr(head, ' ');
    jv rec = jv_object();
    rec = cl_json_set_num(rec, "seq", (double)seq);
    rec = cl_json_set_num(rec, "t", round((now() - M.t0) * 1e6) / 1e6);
    rec = cl_json_set_num(rec, "conn", (double)c->id);
    rec = cl_json_set_num(rec, "concurrent", (double)M.inflight);
    rec = cl_json_set(rec, "path", sp ? jv_string_sized(sp + 1, (int)strcspn(sp + 1, " \r")) : jv_null());
    rec = cl_json_set(rec, "headers", hd);
    rec = cl_json_set(rec, "body", b);
    /* The parsed body keeps one member per name; this shows a client that sent one twice. */
    int model_members = 0;
    for (const char *p = body; (p = strstr(p, "\"model\":")) && p < body + blen; p++)
        model_members++;
    rec = cl_json_set_num(rec, "model_members", model_members);
    rec = cl_json_set_str(rec, "fault", fault_names[f]);
    if (rejected)
        rec = cl_json_set_str(rec, "rejected", rejected);
    char *line = cl_json_dump(&rec, NULL);
    jv_free(rec);
    fprintf(M.log, "%s\n", line);
    fflush(M.log);
    free(line);
}

static const char *error_body(enum fault f)
{
    switch (f) {
    case F_429: return "{\"error\":{\"message\":\"Rate limit reached for requests\",\"type\":\"requests\","
                       "\"param\":null,\"code\":\"rate_limit_exceeded\"}}";
    case F_QUOTA: return "{\"error\":{\"message\":\"You exceeded your current quota, please check your plan "
                         "and billing details.\",\"type\":\"insufficient_quota\",\"param\":null,"
                         "\"code\":\"insufficient_quota\"}}";
    case F_500: return "{\"error\":{\"message\":\"The server had an error while processing your request.\","
                       "\"type\":\"server_error\",\"param\":null,\"code\":null}}";
    case F_503: case F_NORETRY:
        return "{\"object\":\"error\",\"message\":\"The engine is currently overloaded.\",\"type\":"
               "\"ServiceUnavailableError\",\"param\":null,\"code\":503}";
    case F_400: return "{\"error\":{\"message\":\"This model's maximum context length is 8192 tokens.\","
                       "\"type\":\"invalid_request_error\",\"param\":\"messages\",\"code\":\"context_length_exceeded\"}}";
    case F_401: return "{\"error\":{\"message\":\"Incorrect API key provided.\",\"type\":"
                       "\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}";
    case F_404: return "{\"error\":{\"message\":\"The model does not exist\",\"type\":\"invalid_request_error\","
                       "\"param\":null,\"code\":\"model_not_found\"}}";
    default: return "{}";
    }
}

/* Anthropic's error body {"type":"error","error":{"type","message"}} (malloc'd). */
static char *anthropic_error(const char *type, const char *message)
{
    jv e = JV_OBJECT(jv_string("type"), jv_string("error"), jv_string("error"),
                     JV_OBJECT(jv_string("type"), jv_string(type), jv_string("message"), jv_string(message)));
    char *s = cl_json_dump(&e, NULL);
    jv_free(e);
    return s;
}

/* A fault as the Messages API reports it: its status and error body (malloc'd). */
static char *anthropic_fault(enum fault f, int *status)
{
    switch (f) {
    case F_429: *status = 429; return anthropic_error("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit");
    case F_OVERLOADED: *status = 529; return anthropic_error("overloaded_error", "Overloaded");
    case F_QUOTA: *status = 400; return anthropic_error("invalid_request_error", "Your credit balance is too low to access the Anthropic API.");
    case F_500: *status = 500; return anthropic_error("api_error", "Internal server error");
    case F_503: case F_NORETRY: *status = 503; return anthropic_error("api_error", "Service unavailable");
    case F_400: *status = 400; return anthropic_error("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum");
    case F_401: *status = 401; return anthropic_error("authentication_error", "invalid x-api-key");
    default: *status = 404; return anthropic_error("not_found_error", "model: no such model");
    }
}

enum route { R_NONE, R_CHAT, R_AZURE, R_MESSAGES };

/* Which API a POST path asks for: /v1/chat/completions or /chat/completions (OpenAI),
 * /openai/deployments/NAME/chat/completions?... (Azure), /v1/messages (Anthropic). */
static enum route route_of(const char *path, size_t plen)
{
    size_t q = 0;
    while (q < plen && path[q] != '?')
        q++;
    if ((q == plen && plen == 20 && strncmp(path, "/v1/chat/completions", 20) == 0) ||
        (q == plen && plen == 17 && strncmp(path, "/chat/completions", 17) == 0))
        return R_CHAT;
    if (q == plen && plen == 12 && strncmp(path, "/v1/messages", 12) == 0)
        return R_MESSAGES;
    const char *pre = "/openai/deployments/", *post = "/chat/completions";
    size_t a = strlen(pre), b = strlen(post);
    if (q > a + b && strncmp(path, pre, a) == 0 && strncmp(path + q - b, post, b) == 0 &&
        !memchr(path + a, '/', q - a - b))
        return R_AZURE;
    return R_NONE;
}

/* The rules of a Messages API request the mock enforces, as the API words them: NULL when the
 * request passes, else the reason (malloc'd). */
static char *messages_invalid(const char *head, const char *body, size_t blen, int *status)
{
    static const char *const known[] = {"model", "messages", "max_tokens", "system", "temperature", "top_p",
                                        "top_k", "stop_sequences", "metadata", "stream", "tools",
                                        "tool_choice", "thinking", "service_tier", NULL};
    size_t vlen;
    char why[256] = "";
    *status = 400;
    if (!header_value(head, "x-api-key", &vlen)) {
        *status = 401;
        return strdup("x-api-key header is required");
    }
    const char *ver = header_value(head, "anthropic-version", &vlen);
    if (!ver)
        return strdup("anthropic-version: header is required");
    if (vlen != 10 || strncmp(ver, "2023-06-01", 10) != 0)
        return strdup("anthropic-version: unknown version");
    cl_json_check chk;
    jv v = cl_json_validate(body, blen, &chk) == 0 ? cl_json_parse(body, blen) : jv_invalid();
    if (jv_get_kind(v) != JV_KIND_OBJECT) {
        jv_free(v);
        return strdup("The request body is not valid JSON.");
    }
    jv_object_foreach(v, k, x) {
        int ok = 0;
        for (int i = 0; known[i]; i++)
            ok |= strcmp(known[i], jv_string_value(k)) == 0;
        if (!ok && !*why)
            snprintf(why, sizeof why, "%s: Extra inputs are not permitted", jv_string_value(k));
        jv_free(k);
        jv_free(x);
    }
    jv msgs = cl_json_get(&v, "messages");
    double mt = cl_json_num(&v, "max_tokens", -1);
    if (*why)
        ;
    else if (cl_json_kind(&v, "model") != JV_KIND_STRING)
        snprintf(why, sizeof why, "model: Field required");
    else if (mt < 1 || mt != floor(mt))
        snprintf(why, sizeof why, "max_tokens: Field required (a positive integer)");
    else if (cl_json_has(&v, "system") && cl_json_kind(&v, "system") != JV_KIND_STRING &&
             cl_json_kind(&v, "system") != JV_KIND_ARRAY)
        snprintf(why, sizeof why, "system: Input should be a valid string");
    else if (cl_json_has(&v, "temperature") &&
             (cl_json_num(&v, "temperature", -1) < 0 || cl_json_num(&v, "temperature", -1) > 1))
        snprintf(why, sizeof why, "temperature: range: 0..1");
    else if (cl_json_has(&v, "stop_sequences") && cl_json_kind(&v, "stop_sequences") != JV_KIND_ARRAY)
        snprintf(why, sizeof why, "stop_sequences: Input should be a valid list");
    else if (jv_get_kind(msgs) != JV_KIND_ARRAY || jv_array_length(jv_copy(msgs)) == 0)
        snprintf(why, sizeof why, "messages: at least one message is required");
    else {
        const char *prev = NULL;
        jv_array_foreach(msgs, i, m) {
            const char *role = jv_get_kind(m) == JV_KIND_OBJECT ? cl_json_str(&m, "role") : NULL;
            jv_kind ck = jv_get_kind(m) == JV_KIND_OBJECT ? cl_json_kind(&m, "content") : JV_KIND_INVALID;
            if (!*why && (!role || (strcmp(role, "user") && strcmp(role, "assistant"))))
                snprintf(why, sizeof why, "messages.%d.role: Input should be 'user' or 'assistant'", i);
            else if (!*why && ck != JV_KIND_STRING && ck != JV_KIND_ARRAY)
                snprintf(why, sizeof why, "messages.%d.content: Field required", i);
            else if (!*why && prev && strcmp(prev, role) == 0)
                snprintf(why, sizeof why, "messages: roles must alternate between \"user\" and \"assistant\", "
                         "but found multiple \"%s\" roles in a row", role);
            prev = role && !strcmp(role, "user") ? "user" : "assistant";
            jv_free(m);
        }
    }
    jv_free(msgs);
    jv_free(v);
    return *why ? strdup(why) : NULL;
}

/* Azure's checks: an api-key header and an api-version in the query. */
static char *azure_invalid(const char *head, const char *path, size_t plen, int *status)
{
    size_t vlen;
    if (!header_value(head, "api-key", &vlen)) {
        *status = 401;
        return strdup("Access denied due to invalid subscription key or wrong API endpoint.");
    }
    const char *q = memchr(path, '?', plen);
    const char *v = q ? strstr(q, "api-version=") : NULL;
    if (!v || v >= path + plen || v[12] == ' ' || v[12] == '&' || v + 12 >= path + plen) {
        *status = 404;
        return strdup("Resource not found (no api-version)");
    }
    return NULL;
}

/* A Messages API reply of text, split into two text blocks after a thinking block (the client
 * must join the text blocks and skip the rest), shaped by the fault f (malloc'd). */
static char *anthropic_reply(const char *body, size_t blen, const char *text, unsigned long seq, enum fault f)
{
    cl_json_check chk;
    jv req = cl_json_validate(body, blen, &chk) == 0 ? cl_json_parse(body, blen) : jv_object();
    jv content = jv_array();
    if (f != F_NULL) {
        size_t half = strlen(text) / 2;
        content = jv_array_append(content, JV_OBJECT(jv_string("type"), jv_string("thinking"), jv_string("thinking"),
                                                     jv_string("not part of the reply"), jv_string("signature"),
                                                     jv_string("sig")));
        content = jv_array_append(content, JV_OBJECT(jv_string("type"), jv_string("text"), jv_string("text"),
                                                     jv_string_sized(text, (int)half)));
        content = jv_array_append(content, JV_OBJECT(jv_string("type"), jv_string("text"), jv_string("text"),
                                                     jv_string(text + half)));
    }
    char id[32];
    snprintf(id, sizeof id, "msg_%lu", seq);
    jv r = JV_OBJECT(jv_string("id"), jv_string(id), jv_string("type"), jv_string("message"), jv_string("role"),
                     jv_string("assistant"), jv_string("model"), cl_json_get(&req, "model"), jv_string("content"),
                     content, jv_string("stop_reason"), jv_string(f == F_LENGTH ? "max_tokens" : "end_turn"),
                     jv_string("stop_sequence"), jv_null());
    if (f != F_NOUSAGE)
        r = cl_json_set(r, "usage", JV_OBJECT(jv_string("input_tokens"), jv_number((double)(blen / 4)),
                                              jv_string("output_tokens"), jv_number((double)(strlen(text) / 4 + 1)),
                                              jv_string("cache_creation_input_tokens"), jv_number(0),
                                              jv_string("cache_read_input_tokens"), jv_number(0)));
    jv_free(req);
    char *s = cl_json_dump(&r, NULL);
    jv_free(r);
    return s;
}

/* A Chat Completions reply of n choices of text, shaped by the fault f (malloc'd). */
static char *chat_reply(size_t blen, const char *text, unsigned long seq, enum fault f, long n)
{
    size_t cap = 256 + (size_t)n * (strlen(text) * 2 + 96);
    char *msg = xrealloc(NULL, cap);
    size_t k = (size_t)snprintf(msg, cap, "{\"id\":\"chatcmpl-%lu\",\"object\":\"chat.completion\",\"created\":0,"
                                "\"model\":\"mock\",\"choices\":[", seq);
    for (long i = 0; i < n; i++) {
        char *content;
        if (f == F_NULL)
            content = strdup("null");
        else if (n > 1) {
            size_t m = strlen(text) + 32;
            char *tmp = xrealloc(NULL, m);
            snprintf(tmp, m, "%s (choice %ld)", text, i);
            content = json_str(tmp);
            free(tmp);
        } else
            content = json_str(text);
        k += (size_t)snprintf(msg + k, cap - k,
                              "%s{\"index\":%ld,\"message\":{\"role\":\"assistant\",\"content\":%s},"
                              "\"logprobs\":null,\"finish_reason\":\"%s\"}", i ? "," : "", i, content,
                              f == F_LENGTH ? "length" : "stop");
        free(content);
    }
    if (f == F_NOUSAGE)
        snprintf(msg + k, cap - k, "]}");
    else
        snprintf(msg + k, cap - k,
                 "],\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,\"total_tokens\":%zu}}",
                 blen / 4, strlen(text) / 4 + 1, blen / 4 + strlen(text) / 4 + 1);
    return msg;
}

/* Answers one complete request: head[0..hlen) ends with the blank line, body follows. */
static void answer(conn *c, const char *head, size_t hlen, const char *body, size_t blen)
{
    const char *sp0 = strchr(head, ' ');
    size_t plen0 = sp0 ? strcspn(sp0 + 1, " ") : 0;
    if (strncmp(head, "GET ", 4) == 0 && ((plen0 == 10 && strncmp(sp0 + 1, "/v1/models", 10) == 0) ||
                                          (plen0 == 7 && strncmp(sp0 + 1, "/models", 7) == 0))) {
        M.models_requests++;
        M.inflight++;
        c->busy = 1;
        timer tm = {.at = now(), .fd = c->fd, .gen = c->gen};
        if (jv_array_length(jv_copy(M.models)) == 0) {
            tm.len = build(&tm.resp, 404, "Not Found", NULL,
                           "{\"error\":{\"message\":\"no such route\",\"type\":\"invalid_request_error\"}}", -1);
        } else {
            jv list = JV_OBJECT(jv_string("object"), jv_string("list"), jv_string("data"), jv_copy(M.models));
            char *text = cl_json_dump(&list, NULL);
            jv_free(list);
            tm.len = build(&tm.resp, 200, "OK", NULL, text ? text : "{}", -1);
            free(text);
        }
        heap_push(tm);
        return;
    }
    unsigned long seq = ++M.seq;
    M.inflight++;
    c->busy = 1;
    if (M.inflight > M.max_inflight)
        M.max_inflight = M.inflight;
    double t = now();
    enum fault f = F_NONE;
    const char *sp = strchr(head, ' ');
    size_t plen = sp ? strcspn(sp + 1, " ") : 0;
    int is_post = strncmp(head, "POST ", 5) == 0;
    enum route rt = sp ? route_of(sp + 1, plen) : R_NONE;
    int rej_status = 0;
    char *rejected = NULL; /* what Azure or Anthropic would refuse before answering */
    if (is_post && rt == R_MESSAGES)
        rejected = messages_invalid(head, body, blen, &rej_status);
    else if (is_post && rt == R_AZURE)
        rejected = azure_invalid(head, sp + 1, plen, &rej_status);
    if (is_post && rt && !rejected)
        f = choose_fault(body, blen);
    log_request(c, head, hlen, body, blen, f, rejected, seq);

    timer tm = {.at = t, .fd = c->fd, .gen = c->gen};
    size_t vlen = 0;
    const char *conn_hdr = header_value(head, "Connection", &vlen);
    if (conn_hdr && vlen == 5 && strncasecmp(conn_hdr, "close", 5) == 0)
        tm.then = 1;
    if (!is_post || !rt) {
        tm.len = build(&tm.resp, 404, "Not Found", NULL,
                       "{\"error\":{\"message\":\"no such route\",\"type\":\"invalid_request_error\"}}", -1);
        heap_push(tm);
        return;
    }
    if (rejected) {
        char *b;
        if (rt == R_MESSAGES)
            b = anthropic_error(rej_status == 401 ? "authentication_error" : "invalid_request_error", rejected);
        else {
            char code[16];
            snprintf(code, sizeof code, "%d", rej_status);
            jv e = JV_OBJECT(jv_string("error"), JV_OBJECT(jv_string("code"), jv_string(code), jv_string("message"),
                                                           jv_string(rejected)));
            b = cl_json_dump(&e, NULL);
            jv_free(e);
        }
        tm.len = build(&tm.resp, rej_status, "Error", NULL, b, -1);
        free(b);
        free(rejected);
        heap_push(tm);
        return;
    }
    char hdrs[128] = "", *msg = NULL;
    switch (f) {
    case F_CLOSE: case F_RESET:
        conn_close(c, f == F_RESET);
        return;
    case F_429: case F_QUOTA: case F_500: case F_503: case F_NORETRY: case F_400: case F_401: case F_404:
    case F_OVERLOADED: {
        static const int code[] = {[F_429] = 429, [F_QUOTA] = 429, [F_500] = 500, [F_503] = 503,
                                   [F_NORETRY] = 503, [F_400] = 400, [F_401] = 401, [F_404] = 404,
                                   [F_OVERLOADED] = 529};
        if (f == F_429 || f == F_OVERLOADED)
            snprintf(hdrs, sizeof hdrs, "Retry-After: %g\r\n", M.retry_after);
        if (f == F_NORETRY)
            snprintf(hdrs, sizeof hdrs, "x-should-retry: false\r\n");
        int st = code[f];
        char *own = rt == R_MESSAGES ? anthropic_fault(f, &st) : NULL;
        tm.len = build(&tm.resp, st, "Error", hdrs, own ? own : error_body(f), -1);
        free(own);
        heap_push(tm);
        return;
    }
    case F_ECHOKEY: {
        /* the header that carries the key on this route, repeated in the error message */
        const char *hname = rt == R_MESSAGES ? "x-api-key" : rt == R_AZURE ? "api-key" : "Authorization";
        const char *auth = header_value(head, hname, &vlen);
        char *a = strndup(auth ? auth : "", auth ? vlen : 0);
        size_t n = strlen(a) + 128;
        char *m = xrealloc(NULL, n);
        snprintf(m, n, "Incorrect API key provided: %s", a);
        char *qm = json_str(m);
        size_t bn = strlen(qm) + 96;
        char *b = xrealloc(NULL, bn);
        if (rt == R_MESSAGES)
            snprintf(b, bn, "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":%s}}", qm);
        else
            snprintf(b, bn, "{\"error\":{\"message\":%s,\"code\":\"invalid_api_key\"}}", qm);
        tm.len = build(&tm.resp, 401, "Unauthorized", NULL, b, -1);
        free(a); free(m); free(qm); free(b);
        heap_push(tm);
        return;
    }
    case F_BADJSON:
        tm.len = build(&tm.resp, 200, "OK", NULL, rt == R_MESSAGES ? "{\"content\":[{\"type\":\"text\",\"text\":\"cut"
                                                                   : "{\"choices\":[{\"message\":{\"content\":\"cut", -1);
        tm.at = t + M.lat_min;
        heap_push(tm);
        return;
    case F_NOCHOICES:
        tm.len = build(&tm.resp, 200, "OK", NULL, rt == R_MESSAGES ? "{\"type\":\"message\"}" : "{\"object\":\"x\"}", -1);
        heap_push(tm);
        return;
    default:
        break;
    }
    /* a normal reply (possibly shaped by length/nousage/null, delayed, truncated or stalled) */
    double lat = M.lat_min + (M.lat_max - M.lat_min) * uniform();
    const char *a;
    if (has_directive(body, blen, "delay", &a))
        lat = atof(a) / 1000;
    long n = 1;
    const char *np = memmem(body, blen, "\"n\":", 4);
    if (np)
        n = atol(np + 4) > 0 ? atol(np + 4) : 1;
    char *text = reply_text(body, blen, seq);
    msg = rt == R_MESSAGES ? anthropic_reply(body, blen, text, seq, f) : chat_reply(blen, text, seq, f, n);
    free(text);
    size_t mlen = strlen(msg);
    if (f == F_TRUNCATE) {
        msg[mlen / 2] = 0;
        tm.len = build(&tm.resp, 200, "OK", NULL, msg, (long)mlen);
        tm.then = 1;
    } else if (f == F_MIDSTALL) {
        msg[mlen / 2] = 0;
        tm.len = build(&tm.resp, 200, "OK", NULL, msg, (long)mlen);
        tm.then = 2;
    } else
        tm.len = build(&tm.resp, 200, "OK", NULL, msg, -1);
    free(msg);
    tm.at = t + (f == F_STALL ? M.stall_s : lat);
    heap_push(tm);
}

static void handle_input(conn *c)
{
    while (!c->busy && c->fd >= 0) {
        char *end = c->nin >= 4 ? memmem(c->in, c->nin, "\r\n\r\n", 4) : NULL;
        if (!end)
            return;
        size_t hlen = (size_t)(end - c->in) + 4;
        char saved = c->in[hlen - 1];
        c->in[hlen - 1] = 0; /* header search stops here */
        size_t vlen;
        const char *cl = header_value(c->in, "Content-Length", &vlen);
        long blen = cl ? atol(cl) : 0;
        c->in[hlen - 1] = saved;
        if (blen < 0 || c->nin < hlen + (size_t)blen)
            return;
        char *req = xrealloc(NULL, hlen + (size_t)blen + 1);
        memcpy(req, c->in, hlen + (size_t)blen);
        req[hlen + (size_t)blen] = 0;
        memmove(c->in, c->in + hlen + blen, c->nin - hlen - (size_t)blen);
        c->nin -= hlen + (size_t)blen;
        req[hlen - 2] = 0; /* the head ends after its last header line */
        answer(c, req, hlen - 2, req + hlen, (size_t)blen);
        free(req);
    }
}

static void on_readable(conn *c)
{
    for (;;) {
        if (c->capin - c->nin < 4096) {
            c->capin = c->capin ? c->capin * 2 : 8192;
            c->in = xrealloc(c->in, c->capin);
        }
        ssize_t r = read(c->fd, c->in + c->nin, c->capin - c->nin - 1);
        if (r > 0) {
            c->nin += (size_t)r;
            continue;
        }
        if (r == 0 || errno != EAGAIN) {
            conn_close(c, 0);
            return;
        }
        break;
    }
    handle_input(c);
}

static void accept_all(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (fd >= M.nconns_cap) {
            int n = fd * 2 + 64;
            M.conns = xrealloc(M.conns, (size_t)n * sizeof *M.conns);
            memset(M.conns + M.nconns_cap, 0, (size_t)(n - M.nconns_cap) * sizeof *M.conns);
            M.nconns_cap = n;
        }
        if (!M.conns[fd])
            M.conns[fd] = calloc(1, sizeof(conn));
        conn *c = M.conns[fd];
        c->fd = fd;
        c->id = ++M.total_conns;
        if (++M.open_conns > M.max_conns)
            M.max_conns = M.open_conns;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(M.ep, EPOLL_CTL_ADD, fd, &ev);
    }
}

static void load_script(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "mockllm: %s: %s\n", path, strerror(errno));
        exit(66);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        jv v = jv_parse_sized(line, (int)n);
        const char *m = jv_get_kind(v) == JV_KIND_OBJECT ? cl_json_str(&v, "match") : NULL;
        const char *r = jv_get_kind(v) == JV_KIND_OBJECT ? cl_json_str(&v, "reply") : NULL;
        if (!m || !r) {
            fprintf(stderr, "mockllm: %s:%d: need {\"match\": string, \"reply\": string}\n", path, lineno);
            exit(65);
        }
        M.script = jv_array_append(M.script, JV_ARRAY(jv_string(m), jv_string(r)));
        jv_free(v);
    }
    free(line);
    fclose(f);
}

static void usage(void)
{
    fprintf(stderr, "usage: mockllm [--latency MS[-MAX]] [--fault KIND=FRACTION]... [--retry-after S] "
                    "[--stall S] [--script FILE] [--deterministic] [--log FILE] [--stats FILE] [--seed N] "
                    "[--port N] [--model NAME[=ROOT]]...\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int port = 0;
    M.retry_after = 1;
    M.stall_s = 3600;
    M.script = jv_array();
    M.fail_counts = jv_object();
    M.models = jv_array();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--deterministic")) { M.deterministic = 1; continue; }
        if (!v) usage();
        i++;
        if (!strcmp(a, "--latency")) {
            M.lat_min = M.lat_max = atof(v) / 1000;
            const char *dash = strchr(v, '-');
            if (dash) M.lat_max = atof(dash + 1) / 1000;
        } else if (!strcmp(a, "--fault")) {
            const char *eq = strchr(v, '=');
            enum fault f = fault_named(v);
            if (!eq || f == F_NONE) {
                fprintf(stderr, "mockllm: --fault %s: want KIND=FRACTION\n", v);
                return 2;
            }
            M.frac[f] = atof(eq + 1);
        } else if (!strcmp(a, "--retry-after")) M.retry_after = atof(v);
        else if (!strcmp(a, "--stall")) M.stall_s = atof(v);
        else if (!strcmp(a, "--script")) load_script(v);
        else if (!strcmp(a, "--log")) {
            if (!(M.log = fopen(v, "a"))) { perror(v); return 74; }
        } else if (!strcmp(a, "--stats")) M.stats = v;
        else if (!strcmp(a, "--seed")) M.rng = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--model")) {
            const char *eq = strchr(v, '=');
            jv name = eq ? jv_string_sized(v, (int)(eq - v)) : jv_string(v);
            M.models = jv_array_append(M.models, JV_OBJECT(jv_string("id"), jv_copy(name), jv_string("object"),
                                                           jv_string("model"), jv_string("created"),
                                                           jv_number(1700000000), jv_string("owned_by"),
                                                           jv_string("mockllm"), jv_string("root"),
                                                           eq ? jv_string(eq + 1) : name));
        } else usage();
    }
    struct rlimit nofile; /* one descriptor per client connection: take all we may */
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_quit};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sin;
    if (bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(lfd, 4096) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sin, &sl) < 0) {
        perror("mockllm: bind 127.0.0.1");
        return 69;
    }
    M.ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(M.ep, EPOLL_CTL_ADD, lfd, &lev);
    printf("%d\n", ntohs(sin.sin_port));
    fflush(stdout);
    M.t0 = now();

    struct epoll_event ev[512];
    while (!quit) {
        int wait_ms = 1000;
        if (M.nheap) {
            double d = (M.heap[0].at - now()) * 1000;
            wait_ms = d <= 0 ? 0 : d > 1000 ? 1000 : (int)ceil(d);
        }
        int n = epoll_wait(M.ep, ev, 512, wait_ms);
        for (int i = 0; i < n; i++) {
            int fd = ev[i].data.fd;
            if (fd == lfd) {
                accept_all(lfd);
                continue;
            }
            conn *c = fd < M.nconns_cap ? M.conns[fd] : NULL;
            if (!c || c->fd < 0)
                continue;
            if (ev[i].events & EPOLLOUT)
                flush_out(c);
            if (c->fd >= 0 && (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                on_readable(c);
        }
        double t = now();
        while (M.nheap && M.heap[0].at <= t) {
            timer tm = heap_pop();
            send_response(&tm);
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec * 1e-6;
    char line[512];
    snprintf(line, sizeof line,
             "{\"requests\":%lu,\"max_concurrent\":%ld,\"connections\":%ld,\"max_connections\":%ld,"
             "\"cpu_s\":%.3f,\"us_per_request\":%.1f,\"models_requests\":%lu}\n",
             M.seq, M.max_inflight, M.total_conns, M.max_conns, cpu, M.seq ? cpu * 1e6 / (double)M.seq : 0,
             M.models_requests);
    fprintf(stderr, "mockllm: %s", line); /* its own capacity: 1e6 / us_per_request per core */
    if (M.stats) {
        FILE *f = fopen(M.stats, "w");
        if (f) {
            fputs(line, f);
            fclose(f);
        }
    }
    return 0;
}
