#include "metrics/boxed.h"

#include <stdlib.h>
#include <string.h>

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void trim(const char *s, size_t *a, size_t *b)
{
    while (*a < *b && is_space(s[*a]))
        (*a)++;
    while (*b > *a && is_space(s[*b - 1]))
        (*b)--;
}

/* The box whose command starts at s+i (just past "\boxed" or "\fbox", at i).  1 = found. */
static int box_at(const char *s, size_t len, size_t i, size_t *off, size_t *n)
{
    size_t j = i;
    while (j < len && (s[j] == ' ' || s[j] == '\t'))
        j++;
    if (j < len && s[j] == '{') {
        size_t depth = 1, a = j + 1, k = a;
        for (; k < len; k++) {
            if (s[k] == '\\' && k + 1 < len) {
                k++; /* \{ \} \\ are text, not grouping */
            } else if (s[k] == '{') {
                depth++;
            } else if (s[k] == '}' && --depth == 0) {
                break;
            }
        }
        if (k >= len)
            return 0;
        size_t b = k;
        trim(s, &a, &b);
        *off = a;
        *n = b - a;
        return 1;
    }
    /* "\boxed 5$": MATH writes short answers without braces; the answer runs to the closing
     * '$' of the math span (or the end of the line). */
    if (j == i || j >= len)
        return 0;
    size_t a = j, b = j;
    while (b < len && s[b] != '$' && s[b] != '\n')
        b++;
    trim(s, &a, &b);
    if (a == b)
        return 0;
    *off = a;
    *n = b - a;
    return 1;
}

int cl_boxed_last(const char *s, size_t len, size_t *off, size_t *n)
{
    static const char *const cmds[] = {"\\boxed", "\\fbox"};
    size_t last = 0, last_m = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\\')
            continue;
        for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
            size_t m = strlen(cmds[c]);
            if (i + m > len || memcmp(s + i, cmds[c], m) != 0)
                continue;
            /* \boxedfoo is another macro, not a box */
            char next = i + m < len ? s[i + m] : '\0';
            if ((next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z'))
                continue;
            last = i;
            last_m = m;
        }
    }
    /* The last box decides, as in the MATH benchmark's own extraction: when it is broken the
     * text has no final answer, even if an earlier box closes. */
    return last_m ? box_at(s, len, last + last_m, off, n) : 0;
}

char *cl_boxed_answer(const char *s)
{
    size_t off, n;
    if (!s || !cl_boxed_last(s, strlen(s), &off, &n))
        return NULL;
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    memcpy(out, s + off, n);
    out[n] = '\0';
    return out;
}

/* The last occurrence of pat in s[0..len), or -1: Python's str.rfind. */
static long rfind(const char *s, size_t len, const char *pat)
{
    size_t m = strlen(pat);
    for (size_t i = len >= m ? len - m + 1 : 0; i-- > 0;)
        if (memcmp(s + i, pat, m) == 0)
            return (long)i;
    return -1;
}

char *cl_boxed_reference(const char *s, int *found)
{
    size_t len = s ? strlen(s) : 0;
    long idx = s ? rfind(s, len, "\\boxed") : -1;
    if (idx < 0)
        idx = s ? rfind(s, len, "\\fbox") : -1;
    if (found)
        *found = idx >= 0;
    if (idx < 0)
        return NULL;
    /* last_boxed_only_string: every brace counts, escaped or not, and the span ends where the
     * count first comes back to zero after a '}' (a '}' before any '{' takes it below zero). */
    long open = 0, end = -1;
    for (size_t i = (size_t)idx; i < len; i++) {
        if (s[i] == '{')
            open++;
        if (s[i] == '}' && --open == 0) {
            end = (long)i;
            break;
        }
    }
    if (end < 0)
        return NULL;
    /* remove_boxed: only "\boxed{" ... "}" exactly; anything else (\fbox, "\boxed {") is None.
     * The span always ends in '}', so only its start needs checking. */
    static const char left[] = "\\boxed{";
    size_t l = sizeof left - 1, n = (size_t)(end - idx) + 1;
    if (n < l || memcmp(s + idx, left, l) != 0)
        return NULL;
    char *out = malloc(n - l);
    if (!out)
        return NULL;
    memcpy(out, s + idx + l, n - l - 1);
    out[n - l - 1] = '\0';
    return out;
}
