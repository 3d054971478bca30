#define PCRE2_CODE_UNIT_WIDTH 8
#include "metrics/tiktoken.h"

#include <errno.h>
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* cl100k_base's pre-tokenisation pattern (tiktoken_ext/openai_public.py). */
static const char cl100k_pattern[] =
    "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*"
    "|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+";

typedef struct rank_slot {
    uint32_t off, len; /* token bytes in the arena; len 0 = empty slot */
    uint32_t rank;
} rank_slot;

struct tiktoken {
    char *arena;
    size_t arena_n, arena_cap;
    rank_slot *slots;
    size_t cap, n;
    pcre2_code *re;
};

static uint64_t bytes_hash(const char *s, size_t n) { return cl_hash64(s, n, 0x7e5a1d); }

static rank_slot *rank_find(const tiktoken *t, const char *s, size_t n)
{
    for (size_t i = bytes_hash(s, n) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        rank_slot *r = &t->slots[i];
        if (!r->len || (r->len == n && memcmp(t->arena + r->off, s, n) == 0))
            return r;
    }
}

static int rank_add(tiktoken *t, const char *s, size_t n, uint32_t rank)
{
    if (2 * (t->n + 1) > t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 1024;
        rank_slot *old = t->slots;
        size_t oldcap = t->cap;
        t->slots = calloc(cap, sizeof *t->slots);
        if (!t->slots) {
            t->slots = old;
            return -1;
        }
        t->cap = cap;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i].len)
                *rank_find(t, t->arena + old[i].off, old[i].len) = old[i];
        free(old);
    }
    if (t->arena_n + n > t->arena_cap) {
        size_t cap = t->arena_cap ? 2 * t->arena_cap : 1 << 20;
        while (cap < t->arena_n + n)
            cap *= 2;
        char *a = realloc(t->arena, cap);
        if (!a)
            return -1;
        t->arena = a;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_n, s, n);
    rank_slot *r = rank_find(t, s, n);
    if (!r->len)
        t->n++;
    *r = (rank_slot){(uint32_t)t->arena_n, (uint32_t)n, rank};
    t->arena_n += n;
    return 0;
}

static int b64_value(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Standard base64 with padding; -1 when malformed. */
static long b64_decode(const char *s, size_t n, char *out)
{
    if (n == 0 || n % 4)
        return -1;
    long k = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int j = 0; j < 4; j++) {
            v[j] = s[i + j] == '=' && i + 4 == n && j >= 2 ? 0 : b64_value((unsigned char)s[i + j]);
            if (v[j] < 0)
                return -1;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[k++] = (char)(w >> 16);
        if (s[i + 2] != '=')
            out[k++] = (char)(w >> 8);
        if (s[i + 3] != '=')
            out[k++] = (char)w;
    }
    return k;
}

tiktoken *tiktoken_load(const char *path, cl_err *e)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        cl_err_set(e, CL_EXIT_NOINPUT, "%s: %s", path, strerror(errno));
        return NULL;
    }
    tiktoken *t = calloc(1, sizeof *t);
    char *line = NULL, *tok = NULL;
    size_t lcap = 0;
    ssize_t len;
    long lineno = 0;
    int ok = t != NULL;
    while (ok && (len = getline(&line, &lcap, f)) > 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (len == 0)
            continue;
        char *sp = strchr(line, ' '), *end;
        long rank = sp ? strtol(sp + 1, &end, 10) : -1;
        char *nt = sp ? realloc(tok, (size_t)(sp - line)) : NULL;
        if (nt)
            tok = nt;
        long n = sp && nt ? b64_decode(line, (size_t)(sp - line), tok) : -1;
        if (!sp || n <= 0 || *end || rank < 0 || rank > (long)UINT32_MAX) {
            cl_err_set(e, CL_EXIT_DATAERR, "%s:%ld: not \"base64-token rank\"", path, lineno);
            ok = 0;
        } else if (rank_add(t, tok, (size_t)n, (uint32_t)rank) != 0) {
            cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
            ok = 0;
        }
    }
    free(line);
    free(tok);
    fclose(f);
    if (ok && t->n == 0) {
        cl_err_set(e, CL_EXIT_DATAERR, "%s: no tokens", path);
        ok = 0;
    }
    if (ok) {
        int code;
        PCRE2_SIZE off;
        t->re = pcre2_compile((PCRE2_SPTR)cl100k_pattern, PCRE2_ZERO_TERMINATED,
                              PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &code, &off, NULL);
        if (!t->re) {
            cl_err_set(e, CL_EXIT_SOFTWARE, "tiktoken pattern does not compile (%d)", code);
            ok = 0;
        } else {
            pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE); /* interpreted if JIT is missing */
        }
    }
    if (!ok) {
        if (!e->code)
            cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        tiktoken_free(t);
        return NULL;
    }
    return t;
}

void tiktoken_free(tiktoken *t)
{
    if (!t)
        return;
    free(t->arena);
    free(t->slots);
    pcre2_code_free(t->re);
    free(t);
}

static uint32_t rank_of(const tiktoken *t, const char *s, size_t n)
{
    const rank_slot *r = rank_find(t, s, n);
    return r->len ? r->rank : UINT32_MAX;
}

/* Tokens of one piece: byte-pair merges, lowest rank first, leftmost on ties.  bound[] holds
 * the part boundaries, pr[i] the rank of merging part i with part i + 1. */
static long piece_tokens(const tiktoken *t, const char *s, size_t n, size_t *bound, uint32_t *pr)
{
    if (n <= 1 || rank_of(t, s, n) != UINT32_MAX)
        return 1;
    size_t parts = n;
    for (size_t i = 0; i <= n; i++)
        bound[i] = i;
    for (size_t i = 0; i + 1 < parts; i++)
        pr[i] = rank_of(t, s + bound[i], bound[i + 2] - bound[i]);
    while (parts > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < parts; i++)
            if (pr[i] < pr[best])
                best = i;
        if (pr[best] == UINT32_MAX)
            break;
        /* Merge parts best and best + 1: one boundary and one pair rank fewer. */
        memmove(bound + best + 1, bound + best + 2, (parts - best - 1) * sizeof *bound);
        if (parts > best + 3)
            memmove(pr + best + 1, pr + best + 2, (parts - best - 3) * sizeof *pr);
        parts--;
        if (best + 1 < parts)
            pr[best] = rank_of(t, s + bound[best], bound[best + 2] - bound[best]);
        if (best > 0)
            pr[best - 1] = rank_of(t, s + bound[best - 1], bound[best + 1] - bound[best - 1]);
    }
    return (long)parts;
}

long tiktoken_count(const tiktoken *t, const char *text, size_t len)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re, NULL);
    size_t *bound = malloc((len + 1) * sizeof *bound);
    uint32_t *pr = malloc((len + 1) * sizeof *pr);
    long total = 0;
    if (!md || !bound || !pr)
        total = -1;
    for (size_t at = 0; total >= 0 && at < len;) {
        int rc = pcre2_match(t->re, (PCRE2_SPTR)text, len, at, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break; /* cannot happen before the end: every character starts some branch */
        if (rc < 0) {
            total = -1;
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] <= ov[0]) {
            at++;
            continue;
        }
        total += piece_tokens(t, text + ov[0], ov[1] - ov[0], bound, pr);
        at = ov[1];
    }
    pcre2_match_data_free(md);
    free(bound);
    free(pr);
    return total;
}
