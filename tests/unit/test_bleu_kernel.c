/* Unit tests for the clipped n-gram counter inside lib/metrics/bleu.c, against a brute-force
 * count (bleu_naive.h).  The file includes bleu.c with small table and stamp limits so that short
 * random texts reach both table variants and the stamp's wrap-around many times; edited copies
 * share runs, so the counts outside runs and inside them are both checked. */
#define BLEU_DIRECT_MAX 20000 /* 128^2 fits; (hl + 1) * nsym passes it from hl ~150 */
#define BLEU_STAMP_MAX 5000   /* wraps every few dozen calls */
#include "metrics/bleu.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>

#include "bleu_naive.h"

static uint64_t rng_state = 20261126;

static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(rng_state >> 33) % n;
}

/* A random text over a few symbols, UTF-8 encoded: few symbols make repeats and clipping
 * common.  Sometimes it is an edited copy of base: bytes dropped, inserted and replaced, one in
 * ten or, for long runs that stay on one diagonal, one in forty. */
static size_t random_text(char *out, const char *base, size_t base_len, size_t max_chars)
{
    static const char *alphabet[] = {"a", "b", "c", " ", "\xc3\xa9", "\xe6\x9d\xb1", "\xf0\x9f\x98\x80"};
    size_t k = 0;
    if (base && rnd(2)) {
        uint32_t every = rnd(2) ? 10 : 40;
        for (size_t i = 0; i < base_len; i++) {
            uint32_t u = rnd(every);
            if (u == 0)
                continue;
            if (u == 1)
                out[k++] = 'z';
            out[k++] = u == 2 ? 'y' : base[i];
        }
        return k;
    }
    uint32_t kinds = 1 + rnd(7), chars = rnd((uint32_t)max_chars + 1);
    for (uint32_t i = 0; i < chars; i++) {
        const char *s = alphabet[rnd(kinds)];
        memcpy(out + k, s, strlen(s));
        k += strlen(s);
    }
    return k;
}

static void clipped_counts_equal_brute_force_on_random_texts(void **state)
{
    (void)state;
    char h[4096], r[4096];
    int direct_seen = 0, hashed_seen = 0, wraps = 0, with_runs = 0, densified = 0;
    uint32_t last_stamp = 0;
    for (int round = 0; round < 3000; round++) {
        size_t rlen = random_text(r, NULL, 0, 300);
        size_t hlen = random_text(h, r, rlen, 300);
        bleu_scratch *s = scratch_get();
        assert_non_null(s);
        wide_table t = {0};
        assert_int_equal(sym_reserve(s, hlen + rlen + 1), 0);
        long hl = sym_decode(&t, h, hlen, s->sym);
        long rl = sym_decode(&t, r, rlen, s->sym + hl);
        assert_true(hl >= 0 && rl >= 0);
        uint32_t nsym = 128 + (uint32_t)t.used;
        uint32_t *copy = malloc(((size_t)(hl + rl) + 1) * sizeof *copy);
        assert_non_null(copy);
        memcpy(copy, s->sym, (size_t)(hl + rl) * sizeof *copy);
        /* Every other round lets the counter renumber the symbols (pairs that share little
         * then count over 7 symbols instead of 131); the others keep the direct and hashed
         * tables' split at the limit above. */
        int sparse = round % 2;
        if (!sparse && (size_t)(hl + 1) * nsym <= BLEU_DIRECT_MAX)
            direct_seen++;
        else if (!sparse)
            hashed_seen++;
        long runs = find_shared_runs(s, (size_t)hl, (size_t)rl);
        assert_true(runs >= 0);
        with_runs += runs > 0;
        size_t covered = 0;
        for (long q = 0; q < runs; q++)
            covered += s->runs[q].len;
        densified += sparse && 2 * covered < (size_t)hl;
        bleu_counts c;
        assert_int_equal(ngram_stats(s, (size_t)hl, (size_t)rl, nsym, sparse, &c), 0);
        wraps += s->stamp < last_stamp;
        last_stamp = s->stamp;
        for (int n = 1; n <= BLEU_N; n++) {
            uint64_t want = naive_matches(copy, (size_t)hl, copy + hl, (size_t)rl, n);
            if (c.correct[n - 1] != want)
                fail_msg("round %d order %d: %llu clipped matches, brute force says %llu "
                         "(hl %ld rl %ld)", round, n, (unsigned long long)c.correct[n - 1],
                         (unsigned long long)want, hl, rl);
            assert_true(c.total[n - 1] == (hl >= n ? (uint64_t)(hl - n + 1) : 0));
        }
        free(copy);
        free(t.key);
        free(t.val);
    }
    /* The limits above were chosen so that every path ran; say so if they stop doing that. */
    assert_true(direct_seen > 100);
    assert_true(hashed_seen > 100);
    assert_true(wraps > 10);
    assert_true(with_runs > 100);
    assert_true(densified > 100);
}

/* The words of sacreBLEU's BLEU go through the same counter: a hand-checked case where the
 * reference repeats a bigram that the hypothesis has once. */
static void word_counts_clip_repeated_ngrams(void **state)
{
    (void)state;
    /* hyp: "the cat the cat" ; ref: "the cat sat" -> unigrams: the(2 vs 1) cat(2 vs 1) = 2,
     * bigrams: "the cat"(2 vs 1) + "cat the"(1 vs 0) = 1 of 3. */
    bleu_scratch *s = scratch_get();
    assert_int_equal(sym_reserve(s, 8), 0);
    uint32_t ids[] = {0, 1, 0, 1, 0, 1, 2};
    memcpy(s->sym, ids, sizeof ids);
    bleu_counts c;
    assert_int_equal(ngram_stats(s, 4, 3, 3, 0, &c), 0);
    assert_true(c.correct[0] == 2 && c.total[0] == 4);
    assert_true(c.correct[1] == 1 && c.total[1] == 3);
    assert_true(c.correct[2] == 0 && c.total[2] == 2);
    assert_true(c.correct[3] == 0 && c.total[3] == 1);
    assert_true(c.hyp_len == 4 && c.ref_len == 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(clipped_counts_equal_brute_force_on_random_texts),
        cmocka_unit_test(word_counts_clip_repeated_ngrams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
