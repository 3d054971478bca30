#include "metrics/bleu.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "metrics/utext.h"

enum { BLEU_N = 4 };

/* Clipped n-gram matches of hyp against ref: the numerator of NLTK's modified precision and of
 * sacreBLEU's "correct" count.  An n-gram of up to four 21-bit code points is packed into a
 * 64-bit and a 32-bit word (the first one alone in the high word), so the hash table compares
 * keys, not strings. */
typedef struct ngram_slot {
    uint64_t lo;    /* the last three symbols, 21 bits each */
    uint32_t hi;    /* the first symbol of a 4-gram; UINT32_MAX = empty slot */
    uint32_t left;  /* hypothesis occurrences not yet matched by the reference */
} ngram_slot;

static uint64_t pack_lo(const uint32_t *g, int n)
{
    uint64_t k = 0;
    for (int i = n > 3 ? n - 3 : 0; i < n; i++)
        k = (k << 21) | (g[i] & 0x1fffff);
    return k;
}

static uint32_t pack_hi(const uint32_t *g, int n) { return n > 3 ? g[0] & 0x1fffff : 0; }

/* Fibonacci hashing: the top bits of the product are the well-mixed ones. */
static ngram_slot *ngram_find(ngram_slot *t, size_t mask, int shift, uint64_t lo, uint32_t hi)
{
    uint64_t h = (lo ^ ((uint64_t)hi << 43) ^ hi) * 0x9e3779b97f4a7c15u;
    for (size_t i = (size_t)(h >> shift);; i = (i + 1) & mask)
        if (t[i].hi == UINT32_MAX || (t[i].lo == lo && t[i].hi == hi))
            return &t[i];
}

/* correct[k] / total[k] for k = 0..3 (orders 1..4).  Each reference occurrence of an n-gram
 * that the hypothesis still has an unmatched copy of is one clipped match, so one counter per
 * n-gram suffices.  -1 when out of memory. */
static int ngram_stats(const uint32_t *hyp, size_t hl, const uint32_t *ref, size_t rl,
                       double correct[BLEU_N], double total[BLEU_N])
{
    size_t cap = 16;
    int shift = 60;
    while (cap < hl + hl / 2) {
        cap *= 2;
        shift--;
    }
    ngram_slot *t = malloc(cap * sizeof *t);
    if (!t)
        return -1;
    for (int n = 1; n <= BLEU_N; n++) {
        correct[n - 1] = total[n - 1] = 0;
        if (hl < (size_t)n)
            continue;
        for (size_t i = 0; i < cap; i++)
            t[i].hi = UINT32_MAX;
        for (size_t i = 0; i + n <= hl; i++) {
            uint64_t lo = pack_lo(hyp + i, n);
            uint32_t hi = pack_hi(hyp + i, n);
            ngram_slot *s = ngram_find(t, cap - 1, shift, lo, hi);
            if (s->hi == UINT32_MAX)
                *s = (ngram_slot){lo, hi, 0};
            s->left++;
        }
        uint64_t c = 0;
        for (size_t i = 0; i + n <= rl; i++) {
            ngram_slot *s = ngram_find(t, cap - 1, shift, pack_lo(ref + i, n), pack_hi(ref + i, n));
            if (s->hi != UINT32_MAX && s->left > 0) {
                s->left--;
                c++;
            }
        }
        correct[n - 1] = (double)c;
        total[n - 1] = (double)(hl - n + 1);
    }
    free(t);
    return 0;
}

/* Python's math.fsum: the correctly rounded sum (Shewchuk's partials), so the last bit agrees
 * with NLTK. */
static double exact_sum(const double *x, int n)
{
    double p[BLEU_N + 1];
    int np = 0;
    for (int k = 0; k < n; k++) {
        double v = x[k];
        int j = 0;
        for (int i = 0; i < np; i++) {
            double y = p[i];
            if (fabs(v) < fabs(y)) {
                double t = v;
                v = y;
                y = t;
            }
            double hi = v + y, lo = y - (hi - v);
            if (lo != 0.0)
                p[j++] = lo;
            v = hi;
        }
        np = j;
        if (v != 0.0)
            p[np++] = v;
    }
    /* Sum the partials from the top with the round-half-even correction fsum applies. */
    if (np == 0)
        return 0.0;
    double hi = p[--np], lo = 0.0;
    while (np > 0) {
        double v = hi, y = p[--np];
        hi = v + y;
        double yr = hi - v;
        lo = y - yr;
        if (lo != 0.0)
            break;
    }
    if (np > 0 && ((lo < 0.0 && p[np - 1] < 0.0) || (lo > 0.0 && p[np - 1] > 0.0))) {
        double y = lo * 2.0, v = hi + y, yr = v - hi;
        if (y == yr)
            hi = v;
    }
    return hi;
}

double bleu_char(const char *hyp, size_t hyp_len, const char *ref, size_t ref_len)
{
    size_t hl, rl;
    uint32_t *h = utext_decode(hyp, hyp_len, &hl);
    uint32_t *r = utext_decode(ref, ref_len, &rl);
    double correct[BLEU_N], total[BLEU_N];
    int rc = h && r ? ngram_stats(h, hl, r, rl, correct, total) : -1;
    free(h);
    free(r);
    if (rc < 0)
        return -1;
    if (correct[0] == 0)
        return 0.0;
    double terms[BLEU_N];
    for (int n = 0; n < BLEU_N; n++) {
        /* NLTK: denominator max(1, count); a zero numerator is replaced by sys.float_info.min. */
        double den = total[n] > 0 ? total[n] : 1;
        double p = correct[n] != 0 ? correct[n] / den : DBL_MIN;
        terms[n] = 0.25 * log(p);
    }
    double bp = hl > rl ? 1.0 : hl == 0 ? 0.0 : exp(1.0 - (double)rl / (double)hl);
    return bp * exp(exact_sum(terms, BLEU_N));
}

/* ---- sacreBLEU 13a ---------------------------------------------------------------------- */


static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* 13a's first regex class: ASCII symbols that always become separate tokens. */
static int is_13a_symbol(unsigned char c)
{
    return (c >= 0x20 && c <= 0x26) || (c >= 0x28 && c <= 0x2b) || c == 0x2f ||
           (c >= 0x3a && c <= 0x40) || (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e);
}

/* A regex pass with a two-byte pattern: match at i → emit, continue at i + 2 (re.sub). */
enum pass { PASS_B, PASS_C, PASS_D };

static int pass_match(enum pass k, char a, char b)
{
    switch (k) {
    case PASS_B: return !is_digit(a) && (b == '.' || b == ',');
    case PASS_C: return (a == '.' || a == ',') && !is_digit(b);
    default: return is_digit(a) && b == '-';
    }
}

static void run_pass(enum pass k, const cl_buf *in, cl_buf *out)
{
    out->n = 0;
    cl_buf_put(out, "", 0);
    for (size_t i = 0; i < in->n;) {
        if (i + 1 < in->n && pass_match(k, in->p[i], in->p[i + 1])) {
            char a = in->p[i], b = in->p[i + 1];
            if (k == PASS_C)
                cl_buf_putc(out, ' ');
            cl_buf_putc(out, a);
            cl_buf_putc(out, ' ');
            cl_buf_putc(out, b);
            if (k != PASS_C)
                cl_buf_putc(out, ' ');
            i += 2;
        } else {
            cl_buf_putc(out, in->p[i++]);
        }
    }
}

static int starts(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n >= l && memcmp(s, lit, l) == 0;
}

char *bleu_tokenize_13a(const char *s, size_t len)
{
    /* rstrip(): drop trailing Python whitespace. */
    size_t end = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += utext_next(s + i, len - i, &cp);
        if (!utext_isspace(cp))
            end = i;
    }
    len = end;
    cl_buf a = {0}, b = {0};
    cl_buf_putc(&a, ' ');
    int has_amp = memchr(s, '&', len) != NULL;
    for (size_t i = 0; i < len;) {
        if (starts(s + i, len - i, "<skipped>")) {
            i += 9;
        } else if (starts(s + i, len - i, "-\n")) {
            i += 2;
        } else if (s[i] == '\n') {
            cl_buf_putc(&a, ' ');
            i++;
        } else {
            cl_buf_putc(&a, s[i++]);
        }
    }
    if (has_amp) {
        static const char *ent[][2] = {{"&quot;", "\""}, {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}};
        for (int k = 0; k < 4; k++) {
            b.n = 0;
            cl_buf_put(&b, "", 0);
            size_t el = strlen(ent[k][0]);
            for (size_t i = 0; i < a.n;) {
                if (starts(a.p + i, a.n - i, ent[k][0])) {
                    cl_buf_put(&b, ent[k][1], 1);
                    i += el;
                } else {
                    cl_buf_putc(&b, a.p[i++]);
                }
            }
            cl_buf t = a;
            a = b;
            b = t;
        }
    }
    cl_buf_putc(&a, ' ');
    b.n = 0;
    cl_buf_put(&b, "", 0);
    for (size_t i = 0; i < a.n; i++) {
        if (is_13a_symbol((unsigned char)a.p[i])) {
            cl_buf_putc(&b, ' ');
            cl_buf_putc(&b, a.p[i]);
            cl_buf_putc(&b, ' ');
        } else {
            cl_buf_putc(&b, a.p[i]);
        }
    }
    run_pass(PASS_B, &b, &a);
    run_pass(PASS_C, &a, &b);
    run_pass(PASS_D, &b, &a);
    /* split() on Python whitespace, joined by single spaces. */
    cl_buf out = {0};
    cl_buf_put(&out, "", 0);
    size_t wstart = 0;
    int in_word = 0;
    for (size_t i = 0; i <= a.n && !a.oom;) {
        uint32_t cp = ' ';
        size_t step = i < a.n ? utext_next(a.p + i, a.n - i, &cp) : 1;
        int sp = i == a.n || utext_isspace(cp);
        if (sp && in_word) {
            if (out.n)
                cl_buf_putc(&out, ' ');
            cl_buf_put(&out, a.p + wstart, i - wstart);
        } else if (!sp && !in_word) {
            wstart = i;
        }
        in_word = !sp;
        i += step;
    }
    int oom = a.oom || b.oom || out.oom;
    free(a.p);
    free(b.p);
    if (oom) {
        free(out.p);
        return NULL;
    }
    return out.p;
}

/* Token strings → dense ids, so word n-grams reuse the code point n-gram counter. */
static uint32_t *token_ids(const char *toks, size_t *n, const char **names, uint32_t **table,
                           size_t *ntable, size_t mask)
{
    size_t len = strlen(toks), cap = len / 2 + 1, k = 0;
    uint32_t *ids = malloc(cap * sizeof *ids);
    if (!ids)
        return NULL;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && toks[j] != ' ')
            j++;
        uint64_t h = 1469598103934665603u;
        for (size_t q = i; q < j; q++)
            h = (h ^ (unsigned char)toks[q]) * 1099511628211u;
        for (size_t s = h & mask;; s = (s + 1) & mask) {
            uint32_t id = (*table)[s];
            if (id == UINT32_MAX) {
                (*table)[s] = (uint32_t)*ntable;
                names[*ntable] = toks + i;
                ids[k++] = (uint32_t)(*ntable)++;
                break;
            }
            const char *nm = names[id];
            size_t nl = strcspn(nm, " ");
            if (nl == j - i && memcmp(nm, toks + i, nl) == 0) {
                ids[k++] = id;
                break;
            }
        }
        i = j + 1;
    }
    *n = k;
    return ids;
}

double bleu_word(const char *hyp, size_t hyp_len, const char *ref, size_t ref_len)
{
    char *th = bleu_tokenize_13a(hyp, hyp_len), *tr = bleu_tokenize_13a(ref, ref_len);
    size_t words = (th ? strlen(th) : 0) + (tr ? strlen(tr) : 0) + 2, cap = 16;
    while (cap < 2 * words)
        cap *= 2;
    const char **names = malloc(words * sizeof *names);
    uint32_t *table = malloc(cap * sizeof *table);
    uint32_t *h = NULL, *r = NULL;
    size_t hl = 0, rl = 0, ntable = 0;
    double correct[BLEU_N], total[BLEU_N], score = -1;
    if (th && tr && names && table) {
        memset(table, 0xff, cap * sizeof *table);
        h = token_ids(th, &hl, names, &table, &ntable, cap - 1);
        r = token_ids(tr, &rl, names, &table, &ntable, cap - 1);
    }
    if (h && r && ngram_stats(h, hl, r, rl, correct, total) == 0) {
        score = 0.0;
        if (correct[0] + correct[1] + correct[2] + correct[3] > 0) {
            double prec[BLEU_N] = {0}, smooth = 1.0;
            int eff = BLEU_N;
            for (int n = 0; n < BLEU_N; n++) {
                if (total[n] == 0)
                    break;
                eff = n + 1;
                if (correct[n] == 0) {
                    smooth *= 2;
                    prec[n] = 100.0 / (smooth * total[n]);
                } else {
                    prec[n] = 100.0 * correct[n] / total[n];
                }
            }
            double bp = hl < rl ? (hl > 0 ? exp(1.0 - (double)rl / (double)hl) : 0.0) : 1.0;
            double s = 0;
            for (int n = 0; n < eff; n++)
                s += prec[n] == 0 ? -9999999999.0 : log(prec[n]);
            score = bp * exp(s / eff) / 100.0;
        }
    }
    free(th);
    free(tr);
    free(names);
    free(table);
    free(h);
    free(r);
    return score;
}
