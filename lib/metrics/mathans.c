#include "metrics/mathans.h"

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "metrics/utext.h"

/* Python's str.replace(from, to): every non-overlapping occurrence, left to right. */
static char *replace_all(char *s, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to), count = 0;
    for (const char *p = strstr(s, from); p; p = strstr(p + fl, from))
        count++;
    if (!count)
        return s;
    char *out = malloc(strlen(s) - count * fl + count * tl + 1);
    if (!out) {
        free(s);
        return NULL;
    }
    char *o = out;
    const char *p = s;
    for (const char *q = strstr(p, from); q; q = strstr(p, from)) {
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, to, tl);
        o += tl;
        p = q + fl;
    }
    strcpy(o, p);
    free(s);
    return out;
}

static size_t count_of(const char *s, const char *needle)
{
    size_t n = 0, l = strlen(needle);
    for (const char *p = strstr(s, needle); p; p = strstr(p + l, needle))
        n++;
    return n;
}

/* Byte length of the first code point of s (s non-empty). */
static size_t cp_len(const char *s)
{
    uint32_t cp;
    return utext_next(s, strlen(s), &cp);
}


/* _fix_sqrt: "\sqrt3" → "\sqrt{3}".  Raises on an empty piece (a trailing "\sqrt"). */
static char *fix_sqrt(char *s, int *raised)
{
    const char *first = strstr(s, "\\sqrt");
    if (!first)
        return s;
    cl_buf b = {0};
    cl_buf_put(&b, s, (size_t)(first - s));
    for (const char *p = first; p;) {
        const char *piece = p + 5, *next = strstr(piece, "\\sqrt");
        size_t n = next ? (size_t)(next - piece) : strlen(piece);
        if (n == 0) {
            *raised = 1;
            break;
        }
        if (piece[0] != '{') {
            size_t a = cp_len(piece);
            cl_buf_puts(&b, "\\sqrt{");
            cl_buf_put(&b, piece, a);
            cl_buf_puts(&b, "}");
            cl_buf_put(&b, piece + a, n - a);
        } else {
            cl_buf_puts(&b, "\\sqrt");
            cl_buf_put(&b, piece, n);
        }
        p = next;
    }
    free(s);
    if (*raised || b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* _fix_fracs: "\frac12" → "\frac{1}{2}", "\frac1{72}" → "\frac{1}{72}".  A one-character piece
 * returns the step's input unchanged; an empty piece raises. */
static char *fix_fracs(char *s, int *raised)
{
    const char *first = strstr(s, "\\frac");
    if (!first)
        return s;
    cl_buf b = {0};
    cl_buf_put(&b, s, (size_t)(first - s));
    int keep_input = 0;
    for (const char *p = first; p && !keep_input && !*raised;) {
        const char *piece = p + 5, *next = strstr(piece, "\\frac");
        size_t n = next ? (size_t)(next - piece) : strlen(piece);
        cl_buf_puts(&b, "\\frac");
        if (n == 0) {
            *raised = 1;
        } else if (piece[0] == '{') {
            cl_buf_put(&b, piece, n);
        } else {
            size_t a = cp_len(piece);
            if (a >= n) {
                keep_input = 1;
            } else {
                size_t bl = cp_len(piece + a);
                cl_buf_puts(&b, "{");
                cl_buf_put(&b, piece, a);
                cl_buf_puts(&b, "}");
                if (piece[a] != '{') {
                    cl_buf_puts(&b, "{");
                    cl_buf_put(&b, piece + a, bl);
                    cl_buf_puts(&b, "}");
                } else {
                    cl_buf_put(&b, piece + a, bl);
                }
                cl_buf_put(&b, piece + a + bl, n - a - bl);
            }
        }
        p = next;
    }
    if (keep_input || *raised || b.oom) {
        free(b.p);
        if (*raised) {
            free(s);
            return NULL;
        }
        return s;
    }
    free(s);
    return b.p;
}

/* A canonical Python int: what int() parses and str() writes back identically. */
static int canonical_int(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i == n)
        return 0;
    if (s[i] == '0')
        return n - i == 1 && i == 0;
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* _fix_a_slash_b: "3/4" → "\frac{3}{4}" for canonical integers only. */
static char *fix_a_slash_b(char *s)
{
    const char *slash = strchr(s, '/');
    if (!slash || strchr(slash + 1, '/'))
        return s;
    size_t al = (size_t)(slash - s), bl = strlen(slash + 1);
    if (!canonical_int(s, al) || !canonical_int(slash + 1, bl))
        return s;
    cl_buf b = {0};
    cl_buf_puts(&b, "\\frac{");
    cl_buf_put(&b, s, al);
    cl_buf_puts(&b, "}{");
    cl_buf_put(&b, slash + 1, bl);
    cl_buf_puts(&b, "}");
    if (b.oom) {
        free(b.p);
        return s;
    }
    free(s);
    return b.p;
}

char *math_normalize(const char *in, int *raised)
{
    *raised = 0;
    char *s = strndup(in, strlen(in));
    static const char *const rules[][2] = {
        {"\n", ""}, {"\\!", ""}, {"\\\\", "\\"}, {"tfrac", "frac"}, {"dfrac", "frac"},
        {"\\left", ""}, {"\\right", ""}, {"^{\\circ}", ""}, {"^\\circ", ""}, {"\\$", ""},
    };
    for (size_t i = 0; s && i < sizeof rules / sizeof *rules; i++)
        s = replace_all(s, rules[i][0], rules[i][1]);
    if (!s)
        return NULL;
    /* _remove_right_units: the text before the one "\text{ "; two of them raise. */
    size_t units = count_of(s, "\\text{ ");
    if (units > 1) {
        *raised = 1;
        free(s);
        return NULL;
    }
    if (units == 1)
        *strstr(s, "\\text{ ") = 0;
    s = replace_all(s, "\\%", "");
    if (s)
        s = replace_all(s, " .", " 0.");
    if (s)
        s = replace_all(s, "{.", "{0.");
    if (!s || !*s)
        return s;
    if (s[0] == '.') {
        char *t = malloc(strlen(s) + 2);
        if (!t) {
            free(s);
            return NULL;
        }
        t[0] = '0';
        strcpy(t + 1, s);
        free(s);
        s = t;
    }
    /* "k = 5" → " 5": exactly one "=" and at most two characters before it. */
    char *eq = strchr(s, '=');
    if (eq && !strchr(eq + 1, '=') && utext_length(s, (size_t)(eq - s)) <= 2)
        memmove(s, eq + 1, strlen(eq + 1) + 1);
    s = fix_sqrt(s, raised);
    if (!s)
        return NULL;
    s = replace_all(s, " ", "");
    if (!s)
        return NULL;
    s = fix_fracs(s, raised);
    if (!s)
        return NULL;
    if (strcmp(s, "0.5") == 0) {
        free(s);
        s = strndup("\\frac{1}{2}", 11);
        if (!s)
            return NULL;
    }
    return fix_a_slash_b(s);
}

int math_equiv(const char *a, const char *b)
{
    int ra = 0, rb = 0;
    char *na = math_normalize(a, &ra), *nb = ra ? NULL : math_normalize(b, &rb);
    int eq;
    if (ra || rb || !na || !nb)
        eq = strcmp(a, b) == 0;
    else
        eq = strcmp(na, nb) == 0;
    free(na);
    free(nb);
    return eq;
}
