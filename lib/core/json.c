#include "core/json.h"

#include <jq.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- validation ---------------------------------------------------------------------- */

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* ---- sixteen bytes at a time -------------------------------------------------------------
 * The validator, the parser and the printer each skip long runs of string bytes that need no
 * attention.  A mask test marks (all ones) the bytes of interest among sixteen, written with
 * the compiler's vector extension (SSE2 on x86-64, NEON on arm64, plain code elsewhere); the
 * first marked byte ends the run: found from the mask on a little-endian machine, byte by
 * byte elsewhere. */
typedef unsigned char bytes16 __attribute__((vector_size(16)));
typedef signed char mask16 __attribute__((vector_size(16)));

typedef mask16 (*mask_test)(bytes16);
typedef int (*byte_test)(unsigned char);

/* The first byte of p[0..end) that `byte` accepts, or end; `mask` marks the same bytes. */
static inline const unsigned char *skip_until(const unsigned char *p, const unsigned char *end,
                                              mask_test mask, byte_test byte)
{
    for (; end - p >= 16; p += 16) {
        bytes16 v;
        memcpy(&v, p, sizeof v);
        mask16 m = mask(v);
        uint64_t w[2];
        memcpy(w, &m, sizeof w);
        if (w[0] | w[1]) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return p + (w[0] ? __builtin_ctzll(w[0]) >> 3 : 8 + (__builtin_ctzll(w[1]) >> 3));
#else
            break;
#endif
        }
    }
    while (p < end && !byte(*p))
        p++;
    return p;
}

/* Bytes the validator looks at: controls, non-ASCII, '"' and '\\'. */
static mask16 scan_mask(bytes16 v) { return (v < 0x20) | (v >= 0x80) | (v == '"') | (v == '\\'); }
static int scan_byte(unsigned char c) { return c < 0x20 || c >= 0x80 || c == '"' || c == '\\'; }

/* Bytes that end a run of a valid string for the parser: '"' and '\\'. */
static mask16 quote_mask(bytes16 v) { return (v == '"') | (v == '\\'); }
static int quote_byte(unsigned char c) { return c == '"' || c == '\\'; }

/* Bytes the printer escapes, as jq 1.6 does: controls, '"', '\\' and DEL. */
static mask16 escape_mask(bytes16 v) { return (v < 0x20) | (v == '"') | (v == '\\') | (v == 0x7f); }
static int escape_byte(unsigned char c) { return c < 0x20 || c == '"' || c == '\\' || c == 0x7f; }

/* Returns the length of the UTF-8 sequence at p (2..4), or 0 if it is not well formed
 * (overlong forms, surrogates and code points above U+10FFFF are rejected). */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n = (size_t)(end - p);
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0;  /* overlong */
        if (c == 0xED && p[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0;  /* overlong */
        if (c == 0xF4 && p[1] >= 0x90) return 0; /* > U+10FFFF */
        return 4;
    }
    return 0;
}

static int hexdig(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'f');
}

/* Scans a string starting after its opening quote; returns the position after the closing
 * quote or NULL with *what set. */
static const unsigned char *scan_string(const unsigned char *p, const unsigned char *end,
                                        const char **what, const unsigned char **errp)
{
    for (;;) {
        p = skip_until(p, end, scan_mask, scan_byte); /* plain ASCII needs no look */
        if (p >= end) {
            *what = "unterminated string";
            *errp = p;
            return NULL;
        }
        unsigned char c = *p;
        if (c == '"')
            return p + 1;
        if (c == '\\') {
            if (p + 1 >= end) {
                *what = "unterminated string";
                *errp = p;
                return NULL;
            }
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                break;
            case 'u':
                if (end - p < 6 || !hexdig(p[2]) || !hexdig(p[3]) || !hexdig(p[4]) || !hexdig(p[5])) {
                    *what = "bad \\u escape in string";
                    *errp = p;
                    return NULL;
                }
                p += 6;
                break;
            default:
                *what = "bad escape in string";
                *errp = p;
                return NULL;
            }
        } else if (c < 0x20) {
            *what = "control character in string";
            *errp = p;
            return NULL;
        } else {
            size_t n = utf8_seq(p, end);
            if (!n) {
                *what = "invalid UTF-8";
                *errp = p;
                return NULL;
            }
            p += n;
        }
    }
}

static const unsigned char *scan_number(const unsigned char *p, const unsigned char *end)
{
    if (p < end && *p == '-')
        p++;
    if (p >= end)
        return NULL;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    else
        return NULL;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return NULL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return NULL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    return p;
}

static int literal(const unsigned char *p, const unsigned char *end, const char *lit, size_t n)
{
    return (size_t)(end - p) >= n && memcmp(p, lit, n) == 0;
}

int cl_json_validate(const char *buf, size_t len, cl_json_check *c)
{
    const unsigned char *s = (const unsigned char *)buf, *p = s, *end = s + len;
    unsigned char stack[CL_JSON_MAX_DEPTH]; /* '{' or '[' */
    int depth = 0;
    int want_key_at_depth1 = 0, id_next = 0, id_pending = 0;
    const unsigned char *id_start = NULL;
    const char *what = NULL;
    const unsigned char *errp = NULL;

    memset(c, 0, sizeof *c);
    while (p < end && is_ws(*p))
        p++;
    if (p >= end) {
        what = "empty record";
        goto bad;
    }
    c->is_object = *p == '{';

    for (;;) {
        /* Expect a value at p. */
        while (p < end && is_ws(*p))
            p++;
        if (p >= end) {
            what = "unexpected end of record";
            goto bad;
        }
        if (id_next) {
            id_start = p;
            id_next = 0;
            id_pending = 1;
        }
        switch (*p) {
        case '{':
        case '[':
            if (depth == CL_JSON_MAX_DEPTH) {
                what = "nesting deeper than 256 levels";
                goto bad;
            }
            stack[depth++] = *p++;
            while (p < end && is_ws(*p))
                p++;
            if (p < end && (*p == '}' || *p == ']')) {
                if ((*p == '}') != (stack[depth - 1] == '{')) {
                    what = "mismatched bracket";
                    goto bad;
                }
                p++;
                depth--;
                goto after_value;
            }
            if (stack[depth - 1] == '{')
                goto key;
            continue;
        case '"':
            p = scan_string(p + 1, end, &what, &errp);
            if (!p) { p = errp; goto bad; }
            break;
        case 't':
            if (!literal(p, end, "true", 4)) goto bad_value;
            p += 4;
            break;
        case 'f':
            if (!literal(p, end, "false", 5)) goto bad_value;
            p += 5;
            break;
        case 'n':
            if (!literal(p, end, "null", 4)) goto bad_value;
            p += 4;
            break;
        default:
            if (*p == '-' || (*p >= '0' && *p <= '9')) {
                const unsigned char *q = scan_number(p, end);
                if (!q) goto bad_value;
                p = q;
                break;
            }
            goto bad_value;
        }
    after_value:
        if (id_pending && depth == 1) {
            c->id_off = (size_t)(id_start - s);
            c->id_len = (size_t)(p - id_start);
            id_pending = 0;
        }
        while (p < end && is_ws(*p))
            p++;
        if (depth == 0) {
            if (p != end) {
                what = "extra data after the record";
                goto bad;
            }
            return 0;
        }
        if (p >= end) {
            what = "unexpected end of record";
            goto bad;
        }
        if (*p == ',') {
            p++;
            if (stack[depth - 1] == '{')
                goto key;
            continue;
        }
        if ((*p == '}' && stack[depth - 1] == '{') || (*p == ']' && stack[depth - 1] == '[')) {
            p++;
            depth--;
            goto after_value;
        }
        what = stack[depth - 1] == '{' ? "expected ',' or '}'" : "expected ',' or ']'";
        goto bad;
    key:
        while (p < end && is_ws(*p))
            p++;
        if (p >= end || *p != '"') {
            what = "expected a string key";
            goto bad;
        }
        {
            const unsigned char *k = p;
            p = scan_string(p + 1, end, &what, &errp);
            if (!p) { p = errp; goto bad; }
            want_key_at_depth1 = depth == 1 && p - k == 4 && memcmp(k, "\"id\"", 4) == 0;
        }
        while (p < end && is_ws(*p))
            p++;
        if (p >= end || *p != ':') {
            what = "expected ':' after key";
            goto bad;
        }
        p++;
        id_next = want_key_at_depth1;
        continue;
    bad_value:
        what = "invalid value";
        goto bad;
    }
bad:
    c->err_off = (size_t)(p - s);
    c->err_what = what;
    return -1;
}

/* ---- values -------------------------------------------------------------------------- */

/* A value builder for text that cl_json_validate accepted, about three times faster than
 * libjq's parser, which tokenises byte by byte and grows every string as it goes.  It builds
 * exactly what libjq builds (insertion-ordered objects, the last duplicate key's value,
 * correctly rounded doubles) and declines (returns 0) where it would have to imitate libjq's
 * peculiarities: \u escapes of UTF-16 surrogates, over-long numbers, anything malformed.
 * cl_json_parse then asks libjq. */
#define DEFER_DEPTH 16 /* deeper values are never deferred */

typedef struct fast_parse {
    const unsigned char *p, *end;
    char *tmp;           /* decoded string with escapes */
    size_t cap;
    /* cl_json_parse_deferring: the paths, the stand-ins made, and the keys on the way to the
     * value being parsed (key[i] is the member key at depth i, NULL in an array). */
    const char *const *paths;
    cl_json_deferred *d;
    const char *key[DEFER_DEPTH];
    size_t keylen[DEFER_DEPTH];
} fast_parse;

static void fp_ws(fast_parse *f)
{
    while (f->p < f->end && is_ws(*f->p))
        f->p++;
}

static int fp_hex4(const unsigned char *q, unsigned *cp)
{
    *cp = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = q[i];
        unsigned d = c >= '0' && c <= '9' ? c - '0' : (c | 32) >= 'a' && (c | 32) <= 'f' ? (c | 32) - 'a' + 10 : 16;
        if (d > 15)
            return -1;
        *cp = *cp * 16 + d;
    }
    return 0;
}

static int fp_string(fast_parse *f, jv *out)
{
    const unsigned char *s = ++f->p, *end = f->end, *q = skip_until(s, end, quote_mask, quote_byte);
    if (q >= end)
        return 0;
    if (*q == '"') {
        *out = jv_string_sized((const char *)s, (int)(q - s));
        f->p = q + 1;
        return 1;
    }
    size_t n = 0;
    for (;;) {
        size_t run = (size_t)(q - s);
        if (cl_grow((void **)&f->tmp, &f->cap, n + run + 4, 1) < 0)
            return 0;
        memcpy(f->tmp + n, s, run);
        n += run;
        if (*q == '"')
            break;
        if (q + 1 >= end)
            return 0;
        unsigned char c = q[1];
        q += 2;
        switch (c) {
        case '"': case '\\': case '/': f->tmp[n++] = (char)c; break;
        case 'b': f->tmp[n++] = '\b'; break;
        case 'f': f->tmp[n++] = '\f'; break;
        case 'n': f->tmp[n++] = '\n'; break;
        case 'r': f->tmp[n++] = '\r'; break;
        case 't': f->tmp[n++] = '\t'; break;
        case 'u': {
            unsigned cp;
            if (end - q < 4 || fp_hex4(q, &cp) < 0 || (cp >= 0xD800 && cp <= 0xDFFF))
                return 0;
            q += 4;
            if (cp < 0x80)
                f->tmp[n++] = (char)cp;
            else if (cp < 0x800) {
                f->tmp[n++] = (char)(0xC0 | cp >> 6);
                f->tmp[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                f->tmp[n++] = (char)(0xE0 | cp >> 12);
                f->tmp[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                f->tmp[n++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default:
            return 0;
        }
        s = q;
        q = skip_until(q, end, quote_mask, quote_byte);
        if (q >= end)
            return 0;
    }
    *out = jv_string_sized(f->tmp, (int)n);
    f->p = q + 1;
    return 1;
}

static int fp_value(fast_parse *f, jv *out, int depth);

static int fp_number(fast_parse *f, jv *out)
{
    char num[64];
    size_t n = 0;
    while (f->p + n < f->end && strchr("0123456789+-.eE", f->p[n]) && f->p[n])
        n++;
    if (n == 0 || n >= sizeof num)
        return 0;
    memcpy(num, f->p, n);
    num[n] = 0;
    char *e;
    double d = strtod(num, &e); /* cl never calls setlocale: the decimal point is '.' */
    if ((size_t)(e - num) != n)
        return 0;
    f->p += n;
    *out = jv_number(d);
    return 1;
}

static int fp_container(fast_parse *f, jv *out, int depth, int is_object)
{
    jv v = is_object ? jv_object() : jv_array();
    unsigned char close = is_object ? '}' : ']';
    f->p++;
    fp_ws(f);
    if (f->p < f->end && *f->p == close) {
        f->p++;
        *out = v;
        return 1;
    }
    for (;;) {
        jv key = jv_invalid(), item;
        if (is_object) {
            if (f->p >= f->end || *f->p != '"' || !fp_string(f, &key))
                break;
            fp_ws(f);
            if (f->p >= f->end || *f->p != ':') {
                jv_free(key);
                break;
            }
            f->p++;
            fp_ws(f);
        }
        if (f->paths && depth < DEFER_DEPTH) {
            f->key[depth] = is_object ? jv_string_value(key) : NULL;
            f->keylen[depth] = is_object ? (size_t)jv_string_length_bytes(jv_copy(key)) : 0;
        }
        if (!fp_value(f, &item, depth + 1)) {
            jv_free(key);
            break;
        }
        v = is_object ? jv_object_set(v, key, item) : jv_array_append(v, item);
        fp_ws(f);
        if (f->p < f->end && *f->p == ',') {
            f->p++;
            fp_ws(f);
            continue;
        }
        if (f->p < f->end && *f->p == close) {
            f->p++;
            *out = v;
            return 1;
        }
        break;
    }
    jv_free(v);
    return 0;
}

/* Whether the keys on the way to a value at `depth` spell `path`: words joined by '.', "[]"
 * for an array element ("candidates[].futures[].extracted.document").  A key holding '.' or
 * '[' matches no word. */
static int on_path(const fast_parse *f, int depth, const char *path)
{
    const char *p = path;
    for (int i = 0; i < depth; i++) {
        if (!f->key[i]) {
            if (p[0] != '[' || p[1] != ']')
                return 0;
            p += 2;
            continue;
        }
        if (i > 0 && *p++ != '.')
            return 0;
        size_t w = strcspn(p, ".[");
        if (w != f->keylen[i] || memcmp(p, f->key[i], w) != 0)
            return 0;
        p += w;
    }
    return *p == 0;
}

static int deferred_path(const fast_parse *f, int depth)
{
    if (!f->paths || depth > DEFER_DEPTH)
        return 0;
    for (const char *const *p = f->paths; *p; p++)
        if (on_path(f, depth, *p))
            return 1;
    return 0;
}

/* Whether the escape at e (its backslash) is one jq 1.6 writes itself: \" \\ \b \f \n \r \t,
 * or \u00xx in lowercase hex for a control character without a name or DEL.  Sets its length
 * and the byte it stands for.  The text was validated, so e[1] exists. */
static int jq_escape(const unsigned char *e, const unsigned char *end, size_t *n, unsigned char *c)
{
    static const char named[] = "\"\"\\\\b\bf\fn\nr\rt\t";
    for (const char *k = named; *k; k += 2)
        if (e[1] == (unsigned char)k[0]) {
            *c = (unsigned char)k[1];
            *n = 2;
            return 1;
        }
    if (e[1] != 'u' || end - e < 6 || e[2] != '0' || e[3] != '0')
        return 0;
    unsigned v = 0;
    for (int i = 4; i < 6; i++) {
        unsigned h = e[i];
        if (h >= '0' && h <= '9')
            v = v * 16 + (h - '0');
        else if (h >= 'a' && h <= 'f')
            v = v * 16 + (h - 'a' + 10);
        else
            return 0;
    }
    if (v != 0x7f && (v >= 0x20 || (v && strchr("\b\f\n\r\t", (int)v))))
        return 0; /* jq writes that one by name, or as itself */
    *c = (unsigned char)v;
    *n = 6;
    return 1;
}

/* A string value on a deferred path: a stand-in when its text is already jq's (see json.h),
 * else an ordinary string.  These are the long strings, where libc's memchr (32 or 64 bytes a
 * step) beats our scan; each byte is searched once for a backslash, and the quote is searched
 * again only past an escaped one. */
static int fp_deferred(fast_parse *f, jv *out)
{
    const unsigned char *s = f->p + 1, *p = s, *end = f->end, *q = memchr(s, '"', (size_t)(end - s));
    cl_json_deferred *d = f->d;
    size_t escapes = 0;
    while (q) {
        const unsigned char *bs = memchr(p, '\\', (size_t)(q - p));
        size_t n;
        unsigned char c;
        if (!bs)
            break;
        if (!jq_escape(bs, end, &n, &c))
            return fp_string(f, out);
        escapes++;
        p = bs + n;
        if (p > q) /* that was \" */
            q = memchr(p, '"', (size_t)(end - p));
    }
    if (!q || memchr(s, 0x7f, (size_t)(q - s)) ||
        cl_grow((void **)&d->items, &d->cap, d->n + 1, sizeof *d->items) < 0)
        return fp_string(f, out);
    cl_json_stand_in in = {jv_invalid(), (const char *)s, (size_t)(q - s), (const char *)s, (size_t)(q - s), NULL};
    if (escapes) {
        unsigned char *o = malloc(in.len);
        if (!o)
            return fp_string(f, out);
        in.owned = (char *)o;
        for (p = s; p < q;) {
            const unsigned char *bs = memchr(p, '\\', (size_t)(q - p));
            size_t run = (size_t)((bs ? bs : q) - p), n;
            memcpy(o, p, run);
            o += run;
            p += run;
            if (bs) {
                jq_escape(bs, end, &n, o++);
                p += n;
            }
        }
        in.bytes = in.owned;
        in.blen = (size_t)(o - (unsigned char *)in.owned);
    }
    in.s = jv_string("(deferred)"); /* a fresh string each time: its address names it */
    *out = jv_copy(in.s);
    d->items[d->n++] = in;
    f->p = q + 1;
    return 1;
}

static int fp_value(fast_parse *f, jv *out, int depth)
{
    if (f->p >= f->end || depth > CL_JSON_MAX_DEPTH)
        return 0;
    size_t left = (size_t)(f->end - f->p);
    switch (*f->p) {
    case '{': return fp_container(f, out, depth, 1);
    case '[': return fp_container(f, out, depth, 0);
    case '"': return deferred_path(f, depth) ? fp_deferred(f, out) : fp_string(f, out);
    case 't':
        if (left < 4 || memcmp(f->p, "true", 4)) return 0;
        f->p += 4;
        *out = jv_true();
        return 1;
    case 'f':
        if (left < 5 || memcmp(f->p, "false", 5)) return 0;
        f->p += 5;
        *out = jv_false();
        return 1;
    case 'n':
        if (left < 4 || memcmp(f->p, "null", 4)) return 0;
        f->p += 4;
        *out = jv_null();
        return 1;
    default:
        return fp_number(f, out);
    }
}

static jv parse(const char *buf, size_t len, const char *const *paths, cl_json_deferred *d)
{
    if (len > 0x7fffffff)
        return jv_invalid_with_msg(jv_string("record larger than 2 GiB"));
    fast_parse f = {(const unsigned char *)buf, (const unsigned char *)buf + len, .paths = paths, .d = d};
    jv fast;
    fp_ws(&f);
    int ok = fp_value(&f, &fast, 0);
    if (ok) {
        fp_ws(&f);
        if (f.p != f.end) {
            jv_free(fast);
            ok = 0;
        }
    }
    free(f.tmp);
    if (ok)
        return fast;
    if (d)
        cl_json_deferred_free(d); /* stand-ins of the abandoned attempt */
    jv v = jv_parse_sized(buf, (int)len);
    if (!jv_is_valid(v) && jv_invalid_has_msg(jv_copy(v))) {
        /* libjq embeds the whole input in its message: keep only the first line of it. */
        jv msg = jv_invalid_get_msg(v);
        const char *m = jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "parse error";
        size_t n = strcspn(m, "(");
        if (n > 200) n = 200;
        jv out = jv_invalid_with_msg(jv_string_sized(m, (int)n));
        jv_free(msg);
        return out;
    }
    return v;
}

jv cl_json_parse(const char *buf, size_t len) { return parse(buf, len, NULL, NULL); }

jv cl_json_parse_deferring(const char *buf, size_t len, const char *const *paths, cl_json_deferred *d)
{
    *d = (cl_json_deferred){0};
    return parse(buf, len, paths, d);
}

void cl_json_deferred_free(cl_json_deferred *d)
{
    for (size_t i = 0; i < d->n; i++) {
        jv_free(d->items[i].s);
        free(d->items[i].owned);
    }
    free(d->items);
    *d = (cl_json_deferred){0};
}

/* The stand-in s is; NULL when s is not one of d's. */
static const cl_json_stand_in *stand_in(const jv *s, const cl_json_deferred *d)
{
    if (!d || d->n == 0)
        return NULL;
    const char *id = jv_string_value(*s);
    for (size_t i = 0; i < d->n; i++)
        if (jv_string_value(d->items[i].s) == id)
            return &d->items[i];
    return NULL;
}

const char *cl_json_bytes(const jv *s, const cl_json_deferred *d, size_t *len)
{
    if (jv_get_kind(*s) != JV_KIND_STRING)
        return NULL;
    const cl_json_stand_in *in = stand_in(s, d);
    if (in) {
        *len = in->blen;
        return in->bytes;
    }
    *len = (size_t)jv_string_length_bytes(jv_copy(*s));
    return jv_string_value(*s);
}

/* ---- printing ----------------------------------------------------------------------- */

/* Every record that a tool changed is printed here, so this writes jq 1.6's compact text
 * (jv_dump_string(v, 0)) byte for byte, but copies strings in runs where libjq decodes them and
 * appends one code point at a time (25 times slower on cl-reward's 5 KB records, a third of
 * its time).  What jq 1.6 does, and so what this does:
 *   - strings: '"' and '\\' backslashed; \b \t \n \f \r by name; the other controls and DEL
 *     as \u00XX with lowercase hex; everything else, non-ASCII included, as is (a jv string
 *     is valid UTF-8: libjq replaces bad bytes when the string is made);
 *   - numbers: NaN as null, infinities as +-DBL_MAX, otherwise the shortest round-trip digits
 *     (integers below 2^53 are exactly their decimal digits; the rest asks libjq's dtoa);
 *   - objects in jv_object_iter order (insertion order), no spaces;
 *   - a value nested deeper than 256 levels as "<stripped: exceeds max depth>". */
#define JQ_MAX_PRINT_DEPTH 256

static void write_string(cl_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    cl_buf_putc(b, '"');
    while (n > 0) {
        size_t run = (size_t)(skip_until(p, p + n, escape_mask, escape_byte) - p);
        cl_buf_put(b, p, run);
        p += run;
        n -= run;
        if (n == 0)
            break;
        unsigned char c = *p++;
        n--;
        char esc[6] = {'\\', (char)c};
        size_t len = 2;
        switch (c) {
        case '"': case '\\': break;
        case '\b': esc[1] = 'b'; break;
        case '\t': esc[1] = 't'; break;
        case '\n': esc[1] = 'n'; break;
        case '\f': esc[1] = 'f'; break;
        case '\r': esc[1] = 'r'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            len = 6;
        }
        cl_buf_put(b, esc, len);
    }
    cl_buf_putc(b, '"');
}

static void libjq_write(cl_buf *b, const jv *v)
{
    jv s = jv_dump_string(jv_copy(*v), 0);
    cl_buf_put(b, jv_string_value(s), (size_t)jv_string_length_bytes(jv_copy(s)));
    jv_free(s);
}

static void write_number(cl_buf *b, const jv *v)
{
    double d = jv_number_value(*v);
    if (d != d) {
        cl_buf_puts(b, "null");
        return;
    }
    /* Below 2^53 an integral double's shortest digits are its own; -0 keeps its sign. */
    if (d > -9007199254740992.0 && d < 9007199254740992.0 && d == (double)(int64_t)d &&
        !(d == 0 && signbit(d))) {
        char digits[24], *q = digits + sizeof digits;
        uint64_t u = d < 0 ? (uint64_t)-(int64_t)d : (uint64_t)d;
        do
            *--q = (char)('0' + u % 10);
        while (u /= 10);
        if (d < 0)
            *--q = '-';
        cl_buf_put(b, q, (size_t)(digits + sizeof digits - q));
        return;
    }
    libjq_write(b, v);
}

static void write_value(cl_buf *b, const jv *v, int depth, const cl_json_deferred *d)
{
    if (depth > JQ_MAX_PRINT_DEPTH) {
        cl_buf_puts(b, "<stripped: exceeds max depth>");
        return;
    }
    switch (jv_get_kind(*v)) {
    case JV_KIND_NULL: cl_buf_puts(b, "null"); break;
    case JV_KIND_TRUE: cl_buf_puts(b, "true"); break;
    case JV_KIND_FALSE: cl_buf_puts(b, "false"); break;
    case JV_KIND_NUMBER: write_number(b, v); break;
    case JV_KIND_STRING: {
        const cl_json_stand_in *in = stand_in(v, d);
        if (in) { /* already jq's text */
            cl_buf_putc(b, '"');
            cl_buf_put(b, in->text, in->len);
            cl_buf_putc(b, '"');
        } else {
            write_string(b, jv_string_value(*v), (size_t)jv_string_length_bytes(jv_copy(*v)));
        }
        break;
    }
    case JV_KIND_ARRAY: {
        int n = jv_array_length(jv_copy(*v));
        cl_buf_putc(b, '[');
        for (int i = 0; i < n; i++) {
            jv item = jv_array_get(jv_copy(*v), i);
            if (i)
                cl_buf_putc(b, ',');
            write_value(b, &item, depth + 1, d);
            jv_free(item);
        }
        cl_buf_putc(b, ']');
        break;
    }
    case JV_KIND_OBJECT: {
        cl_buf_putc(b, '{');
        int first = 1;
        for (int it = jv_object_iter(*v); jv_object_iter_valid(*v, it); it = jv_object_iter_next(*v, it)) {
            jv key = jv_object_iter_key(*v, it), val = jv_object_iter_value(*v, it);
            if (!first)
                cl_buf_putc(b, ',');
            first = 0;
            write_string(b, jv_string_value(key), (size_t)jv_string_length_bytes(jv_copy(key)));
            cl_buf_putc(b, ':');
            write_value(b, &val, depth + 1, d);
            jv_free(key);
            jv_free(val);
        }
        cl_buf_putc(b, '}');
        break;
    }
    default:
        /* An invalid value is a caller's bug; libjq's own verdict on it stands. */
        libjq_write(b, v);
    }
}

void cl_json_write(cl_buf *b, const jv *v) { write_value(b, v, 0, NULL); }

void cl_json_write_deferred(cl_buf *b, const jv *v, const cl_json_deferred *d) { write_value(b, v, 0, d); }

jv cl_json_undefer(jv v, const cl_json_deferred *d)
{
    if (d->n == 0)
        return v;
    cl_buf b = {0};
    cl_json_write_deferred(&b, &v, d);
    if (b.oom) {
        free(b.p);
        return v; /* libjq aborts on out of memory anyway */
    }
    jv_free(v);
    v = cl_json_parse(b.p, b.n);
    free(b.p);
    return v;
}

jv cl_json_text(jv v)
{
    if (jv_get_kind(v) == JV_KIND_STRING)
        return v;
    cl_buf b = {0};
    cl_json_write(&b, &v);
    jv_free(v);
    jv out = jv_string_sized(b.p ? b.p : "", (int)b.n);
    free(b.p);
    return out;
}

char *cl_json_dump(const jv *v, size_t *len)
{
    cl_buf b = {0};
    cl_json_write(&b, v);
    if (b.oom || !b.p) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.n;
    return b.p;
}

jv cl_json_get(const jv *obj, const char *key)
{
    if (jv_get_kind(*obj) != JV_KIND_OBJECT)
        return jv_invalid();
    return jv_object_get(jv_copy(*obj), jv_string(key));
}

jv_kind cl_json_kind(const jv *obj, const char *key)
{
    jv v = cl_json_get(obj, key);
    jv_kind k = jv_get_kind(v);
    jv_free(v);
    return k;
}

int cl_json_has(const jv *obj, const char *key) { return cl_json_kind(obj, key) != JV_KIND_INVALID; }

const char *cl_json_str(const jv *obj, const char *key)
{
    jv v = cl_json_get(obj, key);
    const char *s = NULL;
    if (jv_get_kind(v) == JV_KIND_STRING)
        s = jv_string_value(v); /* the object still holds a reference, so s stays valid */
    jv_free(v);
    return s;
}

double cl_json_num(const jv *obj, const char *key, double fallback)
{
    jv v = cl_json_get(obj, key);
    double x = jv_get_kind(v) == JV_KIND_NUMBER ? jv_number_value(v) : fallback;
    jv_free(v);
    return x;
}

int cl_json_bool(const jv *obj, const char *key, int fallback)
{
    jv v = cl_json_get(obj, key);
    jv_kind k = jv_get_kind(v);
    jv_free(v);
    return k == JV_KIND_TRUE ? 1 : k == JV_KIND_FALSE ? 0 : fallback;
}

jv cl_json_set(jv obj, const char *key, jv value) { return jv_object_set(obj, jv_string(key), value); }
jv cl_json_set_str(jv obj, const char *key, const char *s) { return cl_json_set(obj, key, jv_string(s)); }
jv cl_json_set_num(jv obj, const char *key, double x) { return cl_json_set(obj, key, jv_number(x)); }

jv cl_json_message(const char *role, const char *content)
{
    return cl_json_set_str(cl_json_set_str(jv_object(), "role", role), "content", content);
}

uint64_t cl_hash64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    /* Final avalanche (splitmix64) so that shard = h % N is balanced for similar keys. */
    h ^= h >> 30; h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27; h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

/* ---- user filters ------------------------------------------------------------------- */

struct cl_filter {
    jq_state *jq;
    char errbuf[512];
};

static void filter_error_cb(void *ctx, jv msg)
{
    cl_filter *f = ctx;
    if (!f->errbuf[0]) {
        jv s = cl_json_text(msg);
        snprintf(f->errbuf, sizeof f->errbuf, "%s", jv_string_value(s));
        jv_free(s);
    } else {
        jv_free(msg);
    }
}

cl_filter *cl_filter_new(const char *program, const char *what, cl_err *e)
{
    cl_filter *f = calloc(1, sizeof *f);
    if (!f || !(f->jq = jq_init())) {
        free(f);
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    /* jq 1.6 leaves these callbacks uninitialised: `input` or `debug` would jump to garbage. */
    jq_set_input_cb(f->jq, NULL, NULL);
    jq_set_debug_cb(f->jq, NULL, NULL);
    jq_set_error_cb(f->jq, filter_error_cb, f);
    if (!jq_compile(f->jq, program)) {
        cl_err_set(e, CL_EXIT_USAGE, "%s: cannot compile '%s': %s", what, program,
                   f->errbuf[0] ? f->errbuf : "syntax error");
        cl_filter_free(f);
        return NULL;
    }
    return f;
}

void cl_filter_free(cl_filter *f)
{
    if (!f)
        return;
    jq_teardown(&f->jq);
    free(f);
}

static void runtime_error(cl_filter *f, jv r, cl_err *e)
{
    jv msg = jv_invalid_get_msg(r);
    jv s = cl_json_text(msg);
    cl_err_set(e, CL_EXIT_DATAERR, "jq: %s", jv_string_value(s));
    jv_free(s);
    f->errbuf[0] = 0;
}

int cl_filter_run(cl_filter *f, jv in, jv *out, cl_err *e)
{
    jq_start(f->jq, in, 0);
    for (;;) {
        jv r = jq_next(f->jq);
        if (jv_is_valid(r)) {
            *out = jv_array_append(*out, r);
            continue;
        }
        if (jv_invalid_has_msg(jv_copy(r))) {
            /* jq 1.6 aborts if jq_next is called again after an error: stop here. */
            runtime_error(f, r, e);
            return -1;
        }
        jv_free(r);
        if (jq_halted(f->jq)) {
            cl_err_set(e, CL_EXIT_DATAERR, "jq: filter halted");
            return -1;
        }
        return 0;
    }
}

int cl_filter_test(cl_filter *f, jv in, cl_err *e)
{
    jq_start(f->jq, in, 0);
    jv r = jq_next(f->jq);
    if (jv_is_valid(r)) {
        jv_kind k = jv_get_kind(r);
        jv_free(r);
        /* Later outputs are ignored; restarting with the next record resets the state. */
        return k != JV_KIND_FALSE && k != JV_KIND_NULL;
    }
    if (jv_invalid_has_msg(jv_copy(r))) {
        runtime_error(f, r, e);
        return -1;
    }
    jv_free(r);
    return 0;
}
