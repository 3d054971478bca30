/* libFuzzer driver: `make fuzz`, then build-fuzz/fuzz_bleu [corpus dir].
 *
 * The BLEU counter (lib/metrics/bleu.c) on arbitrary bytes against the brute-force count of
 * tests/unit/bleu_naive.h: a count that differs aborts.  The bytes before the first 0xff are the
 * hypothesis, those after it the reference (0xff is never part of UTF-8); the first byte's low
 * bit lets the counter renumber the symbols of pairs that share little.  bleu.c is built here
 * with the small table and stamp limits of test_bleu_kernel, so short inputs reach the hashed
 * tables and the stamp's wrap-around too.  The oracle decodes the bytes with utext_next, one
 * code point at a time, so sym_decode's 32-byte ASCII path is checked against it as well. */
#define BLEU_DIRECT_MAX 20000
#define BLEU_STAMP_MAX 5000
#include "metrics/bleu.c"

#include <stdio.h>

#include "../unit/bleu_naive.h"

/* A count that differs from the oracle's: say which before libFuzzer keeps the input. */
static void differs(const char *what, int order, uint64_t got, uint64_t want)
{
    fprintf(stderr, "fuzz_bleu: %s of order %d: counter %llu, brute force %llu\n", what, order,
            (unsigned long long)got, (unsigned long long)want);
    abort();
}

/* Code points of s[0..len), one utext_next at a time; their count. */
static size_t code_points(const char *s, size_t len, uint32_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < len;)
        i += utext_next(s + i, len - i, &out[k++]);
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 2048)
        return 0;
    const char *text = (const char *)data + 1;
    size_t n = size - 1, cut = 0;
    while (cut < n && (uint8_t)text[cut] != 0xff)
        cut++;
    const char *hyp = text, *ref = text + (cut < n ? cut + 1 : n);
    size_t hyp_len = cut, ref_len = cut < n ? n - cut - 1 : 0;

    bleu_scratch *s = scratch_get();
    wide_table t = {0};
    if (!s || sym_reserve(s, hyp_len + ref_len + 1) != 0)
        abort();
    long hl = sym_decode(&t, hyp, hyp_len, s->sym);
    long rl = hl < 0 ? -1 : sym_decode(&t, ref, ref_len, s->sym + hl);
    if (rl < 0)
        abort();
    free(t.key);
    free(t.val);
    if ((size_t)hl >= BLEU_STAMP_MAX / 4) /* refused by design: ids would not fit the stamps */
        return 0;
    bleu_counts c;
    if (ngram_stats(s, (size_t)hl, (size_t)rl, 128 + (uint32_t)t.used, data[0] & 1, &c) != 0)
        abort();

    uint32_t *cp = malloc((hyp_len + ref_len + 1) * sizeof *cp);
    if (!cp)
        abort();
    size_t ch = code_points(hyp, hyp_len, cp), cr = code_points(ref, ref_len, cp + ch);
    if (ch != (size_t)hl)
        differs("hypothesis symbols", 0, (uint64_t)hl, ch);
    if (cr != (size_t)rl)
        differs("reference symbols", 0, (uint64_t)rl, cr);
    if (c.hyp_len != ch || c.ref_len != cr)
        differs("lengths (hypothesis)", 0, c.hyp_len, ch);
    for (int k = 1; k <= BLEU_N; k++) {
        uint64_t want = naive_matches(cp, ch, cp + ch, cr, k);
        if (c.correct[k - 1] != want)
            differs("clipped matches", k, c.correct[k - 1], want);
        if (c.total[k - 1] != (ch >= (size_t)k ? ch - (size_t)k + 1 : 0))
            differs("n-grams", k, c.total[k - 1], ch >= (size_t)k ? ch - (size_t)k + 1 : 0);
    }
    free(cp);
    return 0;
}
