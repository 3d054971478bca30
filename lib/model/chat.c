/* chat.c — chat formats to text, ids and loss mask (see chat.h).
 *
 * Each format emits a list of parts: special tokens (inserted by id) and text pieces, each
 * with its mask bit.  Text rendering concatenates them; token rendering encodes every run of
 * text parts between two specials as one piece and gives each token the mask bit of the part
 * it starts in. */
#include "model/chat.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef struct part {
    const char *special;  /* the special token's text, or NULL for text */
    const char *s;
    size_t len;
    int mask;
} part;

typedef struct parts {
    part *v;
    size_t n, cap;
    int oom;
} parts;

static void add(parts *p, const char *special, const char *s, size_t len, int mask)
{
    if (p->oom)
        return;
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 32;
        part *v = realloc(p->v, cap * sizeof *v);
        if (!v) {
            p->oom = 1;
            return;
        }
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = (part){special, s, len, mask};
}

static void special(parts *p, const char *tok, int mask) { add(p, tok, tok, strlen(tok), mask); }
static void text(parts *p, const char *s, int mask) { add(p, NULL, s, strlen(s), mask); }
static void textn(parts *p, const char *s, size_t n, int mask) { add(p, NULL, s, n, mask); }

static void parts_free(parts *p) { free(p->v); }

/* ---- trimming as the templates do ------------------------------------------------------ */

static size_t cp_at(const char *s, size_t n, int32_t *cp)
{
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &c);
    *cp = c;
    return k > 0 ? (size_t)k : 1;
}

/* Jinja's trim: Unicode whitespace off both ends. */
static void trim_ws(const char **s, size_t *n)
{
    int32_t c;
    size_t k;
    while (*n && (k = cp_at(*s, *n, &c)) && cl_unicode_is_space(c)) {
        *s += k;
        *n -= k;
    }
    while (*n) {
        size_t i = *n - 1;
        while (i > 0 && ((unsigned char)(*s)[i] & 0xc0) == 0x80)
            i--;
        cp_at(*s + i, *n - i, &c);
        if (!cl_unicode_is_space(c))
            break;
        *n = i;
    }
}

static void lstrip_nl(const char **s, size_t *n)
{
    while (*n && **s == '\n') {
        (*s)++;
        (*n)--;
    }
}

static void rstrip_nl(const char *s, size_t *n)
{
    (void)s;
    while (*n && s[*n - 1] == '\n')
        (*n)--;
}

static const char *find_last(const char *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = n >= k ? n - k + 1 : 0; i-- > 0;)
        if (memcmp(s + i, needle, k) == 0)
            return s + i;
    return NULL;
}

/* ---- formats --------------------------------------------------------------------------- */

static int is_role(const char *r)
{
    return strcmp(r, "system") == 0 || strcmp(r, "user") == 0 || strcmp(r, "assistant") == 0;
}

static void llama3(parts *p, const cl_chat_msg *m, size_t n, int gen)
{
    if (n)
        special(p, "<|begin_of_text|>", 0);
    for (size_t i = 0; i < n; i++) {
        int a = strcmp(m[i].role, "assistant") == 0;
        const char *c = m[i].content;
        size_t cl = strlen(c);
        trim_ws(&c, &cl);
        special(p, "<|start_header_id|>", 0);
        text(p, m[i].role, 0);
        special(p, "<|end_header_id|>", 0);
        text(p, "\n\n", 0);
        textn(p, c, cl, a);
        special(p, "<|eot_id|>", a);
    }
    if (gen) {
        special(p, "<|start_header_id|>", 0);
        text(p, "assistant", 0);
        special(p, "<|end_header_id|>", 0);
        text(p, "\n\n", 0);
    }
}

static void chatml_turn(parts *p, const char *role, const char *c, size_t cl, int a)
{
    special(p, "<|im_start|>", 0);
    text(p, role, 0);
    text(p, "\n", 0);
    textn(p, c, cl, a);
    special(p, "<|im_end|>", a);
    text(p, "\n", 0);
}

static void chatml(parts *p, const cl_chat_msg *m, size_t n, int gen, const char *default_system)
{
    if (default_system && (n == 0 || strcmp(m[0].role, "system") != 0))
        chatml_turn(p, "system", default_system, strlen(default_system), 0);
    for (size_t i = 0; i < n; i++)
        chatml_turn(p, m[i].role, m[i].content, strlen(m[i].content),
                    strcmp(m[i].role, "assistant") == 0);
    if (gen) {
        special(p, "<|im_start|>", 0);
        text(p, "assistant\n", 0);
    }
}

static int is_tool_response(const char *c)
{
    size_t n = strlen(c);
    return n >= 32 && strncmp(c, "<tool_response>", 15) == 0 && strcmp(c + n - 16, "</tool_response>") == 0;
}

static void qwen3(parts *p, const cl_chat_msg *m, size_t n, int gen)
{
    if (n && strcmp(m[0].role, "system") == 0)
        chatml_turn(p, "system", m[0].content, strlen(m[0].content), 0);
    size_t last_query = n ? n - 1 : 0;
    for (size_t i = n; i-- > 0;)
        if (strcmp(m[i].role, "user") == 0 && !is_tool_response(m[i].content)) {
            last_query = i;
            break;
        }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(m[i].role, "user") == 0 || (strcmp(m[i].role, "system") == 0 && i > 0)) {
            chatml_turn(p, m[i].role, m[i].content, strlen(m[i].content), 0);
            continue;
        }
        if (strcmp(m[i].role, "assistant") != 0)
            continue;
        const char *c = m[i].content, *r = "";
        size_t cl = strlen(c), rl = 0;
        const char *end_think = strstr(c, "</think>");
        if (end_think) {
            /* reasoning: before the first </think>, after the last <think>; content: after the
             * last </think>. */
            r = c;
            rl = (size_t)(end_think - c);
            rstrip_nl(r, &rl);
            const char *open = find_last(r, rl, "<think>");
            if (open) {
                rl -= (size_t)(open + 7 - r);
                r = open + 7;
            }
            lstrip_nl(&r, &rl);
            const char *last = find_last(c, cl, "</think>");
            cl -= (size_t)(last + 8 - c);
            c = last + 8;
            lstrip_nl(&c, &cl);
        }
        special(p, "<|im_start|>", 0);
        text(p, "assistant\n", 0);
        if (i > last_query && (i == n - 1 || rl)) {
            lstrip_nl(&r, &rl);
            rstrip_nl(r, &rl);
            lstrip_nl(&c, &cl);
            text(p, "<think>\n", 1);
            textn(p, r, rl, 1);
            text(p, "\n</think>\n\n", 1);
        }
        textn(p, c, cl, 1);
        special(p, "<|im_end|>", 1);
        text(p, "\n", 0);
    }
    if (gen) {
        special(p, "<|im_start|>", 0);
        text(p, "assistant\n", 0);
    }
}

static int build(parts *p, cl_chat_format f, const cl_chat_msg *m, size_t n, int gen, cl_err *e)
{
    for (size_t i = 0; i < n; i++)
        if (!m[i].role || !m[i].content || !is_role(m[i].role))
            return cl_err_set(e, CL_EXIT_DATAERR, "message %zu: role must be system, user or assistant "
                              "and content a string", i);
    switch (f) {
    case CL_CHAT_LLAMA3:
        llama3(p, m, n, gen);
        break;
    case CL_CHAT_QWEN2:
        chatml(p, m, n, gen, "You are a helpful assistant.");
        break;
    case CL_CHAT_QWEN25:
        chatml(p, m, n, gen, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
        break;
    case CL_CHAT_QWEN3:
        qwen3(p, m, n, gen);
        break;
    default:
        return cl_err_set(e, CL_EXIT_USAGE, "unknown chat format %d", (int)f);
    }
    return p->oom ? cl_err_set(e, CL_EXIT_SOFTWARE, "chat: out of memory") : 0;
}

static const char *const format_names[] = {"llama3", "qwen2", "qwen2.5", "qwen3"};

int cl_chat_format_parse(const char *name)
{
    if (strcmp(name, "chatml") == 0)
        return CL_CHAT_QWEN2;
    for (int i = 0; i < 4; i++)
        if (strcmp(name, format_names[i]) == 0)
            return i;
    return -1;
}

const char *cl_chat_format_name(cl_chat_format f) { return (unsigned)f < 4 ? format_names[f] : "?"; }

const char *cl_chat_jinja(cl_chat_format f)
{
    switch (f) {
    case CL_CHAT_LLAMA3:
        return "{%- if messages %}{{- '<|begin_of_text|>' }}{%- endif %}"
               "{%- for m in messages %}"
               "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}"
               "{%- endfor %}"
               "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}";
    case CL_CHAT_QWEN2:
        return "{%- if not messages or messages[0]['role'] != 'system' %}"
               "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
               "{%- endif %}"
               "{%- for m in messages %}"
               "{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
               "{%- endfor %}"
               "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
    default:
        return NULL;
    }
}

char *cl_chat_render_text(cl_chat_format f, const cl_chat_msg *m, size_t n,
                          int add_generation_prompt, size_t *len, cl_err *e)
{
    parts p = {0};
    char *out = NULL;
    if (build(&p, f, m, n, add_generation_prompt, e) == 0) {
        size_t total = 0;
        for (size_t i = 0; i < p.n; i++)
            total += p.v[i].len;
        if ((out = malloc(total + 1))) {
            size_t o = 0;
            for (size_t i = 0; i < p.n; i++) {
                memcpy(out + o, p.v[i].s, p.v[i].len);
                o += p.v[i].len;
            }
            out[o] = 0;
            *len = o;
        } else {
            cl_err_set(e, CL_EXIT_SOFTWARE, "chat: out of memory");
        }
    }
    parts_free(&p);
    return out;
}

int cl_chat_format_detect(const cl_tokenizer *t, const char *tokenizer_config)
{
    if (cl_tokenizer_token_id(t, "<|start_header_id|>") >= 0) return CL_CHAT_LLAMA3;
    if (cl_tokenizer_token_id(t, "<|im_start|>") < 0) return -1;
    if (tokenizer_config && strstr(tokenizer_config, "<think>")) return CL_CHAT_QWEN3;
    if (tokenizer_config && strstr(tokenizer_config, "You are Qwen, created by Alibaba Cloud")) return CL_CHAT_QWEN25;
    return CL_CHAT_QWEN2;
}

void cl_chat_tokens_free(cl_chat_tokens *c)
{
    cl_ids_free(&c->ids);
    free(c->mask);
    c->mask = NULL;
    c->mask_cap = 0;
}

static int push(cl_chat_tokens *out, int32_t id, int mask)
{
    if (out->ids.n == out->mask_cap) {
        size_t cap = out->mask_cap ? 2 * out->mask_cap : 256;
        uint8_t *m = realloc(out->mask, cap);
        if (!m)
            return -1;
        out->mask = m;
        out->mask_cap = cap;
    }
    out->mask[out->ids.n] = (uint8_t)mask;
    return cl_ids_push(&out->ids, id);
}

/* Encodes parts[a..b) (all text) as one piece. */
static int encode_run(cl_tokenizer *t, const part *v, size_t a, size_t b, cl_chat_tokens *out,
                      cl_err *e)
{
    size_t total = 0;
    for (size_t i = a; i < b; i++)
        total += v[i].len;
    if (!total)
        return 0;
    char *s = malloc(total);
    if (!s)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "chat: out of memory");
    size_t o = 0;
    for (size_t i = a; i < b; i++) {
        memcpy(s + o, v[i].s, v[i].len);
        o += v[i].len;
    }
    cl_ids ids = {0};
    int rc = cl_tokenizer_encode(t, s, total, 0, &ids, e);
    size_t at = 0, pi = a, part_end = v[a].len;
    for (size_t k = 0; rc == 0 && k < ids.n; k++) {
        while (pi + 1 < b && at >= part_end)
            part_end += v[++pi].len;
        if (push(out, ids.v[k], v[pi].mask))
            rc = cl_err_set(e, CL_EXIT_SOFTWARE, "chat: out of memory");
        size_t len = 0;
        cl_tokenizer_token_bytes(t, ids.v[k], &len);
        at += len;
    }
    cl_ids_free(&ids);
    free(s);
    return rc;
}

int cl_chat_render(cl_tokenizer *t, cl_chat_format f, const cl_chat_msg *m, size_t n,
                   int add_generation_prompt, cl_chat_tokens *out, cl_err *e)
{
    parts p = {0};
    int rc = build(&p, f, m, n, add_generation_prompt, e);
    size_t run = 0;
    for (size_t i = 0; rc == 0 && i <= p.n; i++) {
        if (i < p.n && !p.v[i].special)
            continue;
        rc = encode_run(t, p.v, run, i, out, e);
        run = i + 1;
        if (rc || i == p.n)
            break;
        int32_t id = cl_tokenizer_token_id(t, p.v[i].special);
        if (id < 0)
            rc = cl_err_set(e, CL_EXIT_CONFIG, "chat format %s needs the token %s, which the tokenizer lacks",
                            cl_chat_format_name(f), p.v[i].special);
        else if (push(out, id, p.v[i].mask))
            rc = cl_err_set(e, CL_EXIT_SOFTWARE, "chat: out of memory");
    }
    parts_free(&p);
    return rc;
}
