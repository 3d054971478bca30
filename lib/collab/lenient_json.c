/* lenient_json.c — recursive descent over model text; see lenient_json.h for the grammar. */
#include "collab/lenient_json.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/json.h"

typedef struct lp {
    const char *s, *end;
    int depth;
} lp;

static void skip_ws(lp *p)
{
    while (p->s < p->end && isspace((unsigned char)*p->s))
        p->s++;
}

static int hex4(const char *s, const char *end, unsigned long *out)
{
    if (end - s < 4)
        return -1;
    unsigned long v = 0;
    for (int i = 0; i < 4; i++) {
        int c = (unsigned char)s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned long)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned long)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned long)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* One escape after a backslash at p->s (which points past the backslash). */
static void parse_escape(lp *p, jv *b)
{
    char c = *p->s++;
    switch (c) {
    case 'n': *b = jv_string_append_buf(*b, "\n", 1); return;
    case 't': *b = jv_string_append_buf(*b, "\t", 1); return;
    case 'r': *b = jv_string_append_buf(*b, "\r", 1); return;
    case 'b': *b = jv_string_append_buf(*b, "\b", 1); return;
    case 'f': *b = jv_string_append_buf(*b, "\f", 1); return;
    case '"': case '\'': case '\\': case '/': *b = jv_string_append_buf(*b, &c, 1); return;
    case 'u': {
        unsigned long cp;
        if (hex4(p->s, p->end, &cp) < 0)
            break;
        p->s += 4;
        if (cp >= 0xD800 && cp < 0xDC00) {
            unsigned long lo;
            if (p->end - p->s >= 6 && p->s[0] == '\\' && p->s[1] == 'u' &&
                hex4(p->s + 2, p->end, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
                p->s += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else {
                cp = 0xFFFD;
            }
        } else if (cp >= 0xDC00 && cp < 0xE000) {
            cp = 0xFFFD;
        }
        *b = jv_string_append_codepoint(*b, (uint32_t)cp);
        return;
    }
    default:
        break;
    }
    /* Unknown escape (models write "\d" in regexes, "\$" in LaTeX): keep it as written. */
    p->s--;
    *b = jv_string_append_buf(*b, "\\", 1);
}

/* A quoted string at p->s (one of " ' """ '''); 0 with *out set, -1 if unterminated. */
static int parse_string(lp *p, jv *out)
{
    char q = *p->s;
    if (p->end - p->s >= 3 && p->s[1] == q && p->s[2] == q) {
        /* Triple quotes: verbatim up to the closing triple. */
        const char *start = p->s + 3;
        for (const char *t = start; p->end - t >= 3; t++) {
            if (t[0] == q && t[1] == q && t[2] == q) {
                /* """a"""" — a quote just before the closer belongs to the content. */
                while (p->end - t >= 4 && t[3] == q)
                    t++;
                *out = jv_string_sized(start, (int)(t - start));
                p->s = t + 3;
                return 0;
            }
        }
        return -1;
    }
    p->s++;
    jv b = jv_string("");
    while (p->s < p->end) {
        const char *run = p->s;
        while (p->s < p->end && *p->s != q && *p->s != '\\')
            p->s++;
        b = jv_string_append_buf(b, run, (int)(p->s - run));
        if (p->s >= p->end)
            break;
        if (*p->s == q) {
            p->s++;
            *out = b;
            return 0;
        }
        if (p->end - p->s < 2)
            break;
        p->s++;
        parse_escape(p, &b);
    }
    jv_free(b);
    return -1;
}

static int word_is(const char *s, size_t n, const char *w)
{
    return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

/* A bare word: true/false/null (any case), Python None, a number, or — as a key — an
 * identifier.  as_key allows identifiers. */
static int parse_word(lp *p, jv *out, int as_key)
{
    const char *s = p->s;
    while (p->s < p->end && (isalnum((unsigned char)*p->s) || strchr("_-+.", *p->s)))
        p->s++;
    size_t n = (size_t)(p->s - s);
    if (n == 0)
        return -1;
    if (as_key) {
        if (!isalpha((unsigned char)s[0]) && s[0] != '_')
            return -1;
        *out = jv_string_sized(s, (int)n);
        return 0;
    }
    if (word_is(s, n, "true")) {
        *out = jv_true();
        return 0;
    }
    if (word_is(s, n, "false")) {
        *out = jv_false();
        return 0;
    }
    if (word_is(s, n, "null") || word_is(s, n, "none")) {
        *out = jv_null();
        return 0;
    }
    char tmp[64];
    if (n >= sizeof tmp || !(isdigit((unsigned char)s[0]) || strchr("-+.", s[0])))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    char *e;
    errno = 0;
    double x = strtod(tmp, &e);
    if (*e || e == tmp || errno == ERANGE || x - x != 0) /* also rejects inf and nan */
        return -1;
    *out = jv_number(x);
    return 0;
}

static int parse_value(lp *p, jv *out);

/* Containers share the element loop; obj selects "key: value" pairs. */
static int parse_container(lp *p, jv *out, int obj)
{
    char close = obj ? '}' : ']';
    if (++p->depth > CL_JSON_MAX_DEPTH)
        return -1;
    p->s++;
    jv acc = obj ? jv_object() : jv_array();
    for (;;) {
        skip_ws(p);
        if (p->s >= p->end)
            goto fail;
        if (*p->s == close) {
            p->s++;
            p->depth--;
            *out = acc;
            return 0;
        }
        jv key = jv_invalid();
        if (obj) {
            int r = (*p->s == '"' || *p->s == '\'') ? parse_string(p, &key) : parse_word(p, &key, 1);
            if (r < 0)
                goto fail;
            skip_ws(p);
            if (p->s >= p->end || *p->s != ':') {
                jv_free(key);
                goto fail;
            }
            p->s++;
        }
        jv val;
        if (parse_value(p, &val) < 0) {
            jv_free(key);
            goto fail;
        }
        acc = obj ? jv_object_set(acc, key, val) : jv_array_append(acc, val);
        skip_ws(p);
        if (p->s < p->end && *p->s == ',') {
            p->s++;
            continue; /* a trailing comma is followed by the closer, handled above */
        }
        if (p->s < p->end && *p->s == close)
            continue;
        goto fail;
    }
fail:
    jv_free(acc);
    return -1;
}

static int parse_value(lp *p, jv *out)
{
    skip_ws(p);
    if (p->s >= p->end)
        return -1;
    switch (*p->s) {
    case '{': return parse_container(p, out, 1);
    case '[': return parse_container(p, out, 0);
    case '"': case '\'': return parse_string(p, out);
    default: return parse_word(p, out, 0);
    }
}

jv cl_lenient_json(const char *text, size_t len)
{
    if (!text)
        return jv_invalid_with_msg(jv_string("no text"));
    const char *end = text + len;
    for (const char *s = memchr(text, '{', len); s; s = memchr(s + 1, '{', (size_t)(end - s - 1))) {
        lp p = {s, end, 0};
        jv v;
        if (parse_value(&p, &v) == 0)
            return v;
    }
    return jv_invalid_with_msg(jv_string("no JSON object found in the reply"));
}

int cl_lenient_num(const jv *obj, const char *key, double *out)
{
    jv v = cl_json_get(obj, key);
    int r = -1;
    if (jv_get_kind(v) == JV_KIND_NUMBER) {
        *out = jv_number_value(v);
        r = 0;
    } else if (jv_get_kind(v) == JV_KIND_STRING) {
        const char *s = jv_string_value(v);
        char *e;
        errno = 0;
        double x = strtod(s, &e);
        while (*e && isspace((unsigned char)*e))
            e++;
        if (e != s && !*e && errno != ERANGE && x - x == 0) {
            *out = x;
            r = 0;
        }
    }
    jv_free(v);
    return r;
}
