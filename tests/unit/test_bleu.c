/* Unit tests for lib/metrics/bleu: NLTK character BLEU against golden values written by NLTK
 * itself (tests/fixtures/bleu/gen-golden.py), and sacreBLEU-style word BLEU on hand-computed
 * cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "metrics/bleu.h"

static double char_bleu(const char *h, const char *r) { return bleu_char(h, strlen(h), r, strlen(r)); }
static double word_bleu(const char *h, const char *r) { return bleu_word(h, strlen(h), r, strlen(r)); }

static void char_bleu_matches_nltk_golden_corpus_to_1e_9(void **state)
{
    (void)state;
    FILE *f = fopen("tests/fixtures/bleu/golden.jsonl", "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int pairs = 0, tiny = 0;
    double worst = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        jv d = cl_json_parse(line, (size_t)n);
        assert_true(jv_is_valid(d));
        const char *h = cl_json_str(&d, "hyp"), *r = cl_json_str(&d, "ref");
        double want = cl_json_num(&d, "bleu", -1);
        double got = char_bleu(h, r);
        double diff = fabs(got - want);
        if (diff > worst)
            worst = diff;
        if (diff > 1e-9)
            fail_msg("pair %d: got %.17g, NLTK %.17g (hyp %.40s)", pairs + 1, got, want, h);
        /* NLTK's ln(DBL_MIN) for missing orders gives tiny non-zero scores; they must agree in
         * relative terms too, not merely both be below 1e-9. */
        if (want > 0 && want < 1e-9) {
            tiny++;
            assert_true(fabs(got - want) <= 1e-12 * want);
        }
        jv_free(d);
        pairs++;
    }
    free(line);
    fclose(f);
    assert_true(pairs > 200);
    assert_true(tiny > 5);
    print_message("# %d pairs, worst |diff| %.3g\n", pairs, worst);
}

static void char_bleu_edge_cases(void **state)
{
    (void)state;
    assert_true(char_bleu("", "") == 0.0);
    assert_true(char_bleu("abc", "") == 0.0);
    assert_true(char_bleu("abcdefgh", "abcdefgh") == 1.0);
    /* "abcd" vs "abce": p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0 → DBL_MIN; BP = 1. */
    double want = exp(0.25 * (log(0.75) + log(2.0 / 3) + log(0.5) + log(2.2250738585072014e-308)));
    assert_true(fabs(char_bleu("abcd", "abce") - want) <= 1e-15 * want);
    /* Code points, not bytes: "é" is one character, so four é match as one 4-gram. */
    assert_true(char_bleu("éééé", "éééé") == 1.0);
    /* An overlong form decodes to its ASCII code point and matches the plain byte (a raw
     * caller's bytes; the record readers refuse invalid UTF-8 before BLEU sees it). */
    assert_true(char_bleu("aa\xc0\xa4" "bbcc$dd", "aa$bbcc$dd") == 1.0);
}

static void tokenize_13a_follows_sacrebleu_rules(void **state)
{
    (void)state;
    static const char *cases[][2] = {
        {"Hello, world!", "Hello , world !"},
        {"It costs $3.50, ok.", "It costs $ 3.50 , ok ."},
        {"1,000 and 2-3", "1,000 and 2 - 3"},
        {"don't stop", "don't stop"},
        {"a&amp;b &lt;x&gt;", "a & b < x >"},
        {"line one-\nnext\nthird  ", "line onenext third"},
        {"drop<skipped>this", "dropthis"},
        /* sacreBLEU removes every <skipped> before every "-\n": the two then meet. */
        {"hy-<skipped>\nphen", "hyphen"},
        {"café\u00a0crème", "café crème"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *t = bleu_tokenize_13a(cases[i][0], strlen(cases[i][0]));
        assert_string_equal(t, cases[i][1]);
        free(t);
    }
}

static void word_bleu_hand_computed(void **state)
{
    (void)state;
    assert_true(fabs(word_bleu("the cat sat on the mat", "the cat sat on the mat") - 1.0) < 1e-15);
    assert_true(word_bleu("", "the cat") == 0.0);
    assert_true(word_bleu("dog", "the cat") == 0.0);
    /* hyp "the cat sat" vs ref "the cat sat down": 3/3, 2/2, 1/1, order 4 has no n-grams so the
     * effective order is 3; BP = exp(1 - 4/3). */
    double want = exp(1.0 - 4.0 / 3.0);
    assert_true(fabs(word_bleu("the cat sat", "the cat sat down") - want) < 1e-12);
    /* hyp "a b c d" vs ref "a b x d": correct 3,1,0,0 of 4,3,2,1 → exp smoothing gives
     * p3 = 100/(2·2), p4 = 100/(4·1). */
    double p[4] = {75.0, 100.0 / 3, 25.0, 25.0};
    double s = 0;
    for (int i = 0; i < 4; i++)
        s += log(p[i]);
    assert_true(fabs(word_bleu("a b c d", "a b x d") - exp(s / 4) / 100) < 1e-12);
}

/* Corpus scores sum the counts.  sacreBLEU's corpus_score counts a short hypothesis's n-grams
 * as they are (none) and has no effective order; NLTK's corpus_bleu counts max(1, n-grams). */
static void corpus_scores_sum_counts_as_the_references_do(void **state)
{
    (void)state;
    bleu_counts w = {0}, x, c = {0};
    assert_int_equal(bleu_word_counts("a b c d e", 9, "a b c d e", 9, &x), 0);
    bleu_counts_add(&w, &x);
    assert_int_equal(bleu_word_counts("", 0, "x y", 3, &x), 0);
    assert_true(x.total[0] == 0 && x.ref_len == 2);
    bleu_counts_add(&w, &x);
    /* correct = total = 5,4,3,2; c = 5, r = 7: BP alone. */
    assert_true(fabs(bleu_word_score(&w, 0) - exp(1.0 - 7.0 / 5)) < 1e-15);
    /* One pair of three tokens: at corpus level order 4 has no n-grams and the score is 0. */
    assert_int_equal(bleu_word_counts("a b c", 5, "a b c", 5, &x), 0);
    assert_true(fabs(bleu_word_score(&x, 1) - 1.0) < 1e-15 && bleu_word_score(&x, 0) < 1e-300);
    /* Characters: "" against "ab" adds 1 to every denominator, 0 to the lengths' hypothesis. */
    assert_int_equal(bleu_char_counts("abcde", 5, "abcde", 5, &x), 0);
    bleu_counts_add(&c, &x);
    assert_int_equal(bleu_char_counts("", 0, "ab", 2, &x), 0);
    assert_true(x.total[0] == 1 && x.total[3] == 1 && x.correct[0] == 0 && x.hyp_len == 0);
    bleu_counts_add(&c, &x);
    double want = exp(1.0 - 7.0 / 5) *
                  exp(0.25 * (log(5.0 / 6) + log(4.0 / 5) + log(3.0 / 4) + log(2.0 / 3)));
    assert_true(fabs(bleu_char_score(&c) - want) < 1e-15);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(char_bleu_matches_nltk_golden_corpus_to_1e_9),
        cmocka_unit_test(char_bleu_edge_cases),
        cmocka_unit_test(tokenize_13a_follows_sacrebleu_rules),
        cmocka_unit_test(word_bleu_hand_computed),
        cmocka_unit_test(corpus_scores_sum_counts_as_the_references_do),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
