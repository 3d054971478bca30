/* Unit tests for lib/metrics/tiktoken: a small rank file written here (all 256 bytes plus a few
 * merges), pieces from the cl100k pattern and the merge order, counted by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics/tiktoken.h"

static char path[64];
static tiktoken *tk;

static void b64(const unsigned char *s, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) |
                     (i + 2 < n ? s[i + 2] : 0);
        out[k++] = a[w >> 18];
        out[k++] = a[(w >> 12) & 63];
        out[k++] = i + 1 < n ? a[(w >> 6) & 63] : '=';
        out[k++] = i + 2 < n ? a[w & 63] : '=';
    }
    out[k] = 0;
}

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "/tmp/cl-tiktoken-%d.tiktoken", (int)getpid());
    FILE *f = fopen(path, "w");
    char enc[64];
    for (int i = 0; i < 256; i++) {
        unsigned char c = (unsigned char)i;
        b64(&c, 1, enc);
        fprintf(f, "%s %d\n", enc, i);
    }
    static const char *merges[] = {"th", "the", " t", " the", "12", "ab", "he"};
    static const int ranks[] = {256, 257, 258, 259, 260, 261, 300};
    for (int i = 0; i < 7; i++) {
        b64((const unsigned char *)merges[i], strlen(merges[i]), enc);
        fprintf(f, "%s %d\n", enc, ranks[i]);
    }
    fclose(f);
    cl_err e = {0};
    tk = tiktoken_load(path, &e);
    return tk ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tiktoken_free(tk);
    unlink(path);
    return 0;
}

static long count(const char *s) { return tiktoken_count(tk, s, strlen(s)); }

static void pieces_and_merges_counted_by_hand(void **state)
{
    (void)state;
    assert_int_equal(count(""), 0);
    assert_int_equal(count("the the"), 2);  /* "the" and " the" are tokens */
    assert_int_equal(count("thex"), 2);     /* th (256) first, then the (257): the + x */
    assert_int_equal(count("12345"), 4);    /* pieces 123 and 45: 12 + 3, 4 + 5 */
    assert_int_equal(count("it's"), 4);     /* "it" and "'s", two bytes each */
    assert_int_equal(count("\xc3\xa9"), 2); /* one letter, two bytes, no merge */
    assert_int_equal(count("a  b"), 4);     /* "a", " ", " b" (two bytes) */
    assert_int_equal(count("abab"), 2);     /* ab + ab */
    assert_int_equal(count("x\n\n"), 3);
    assert_int_equal(count("IT'S"), 4);     /* contractions match case-insensitively */
    assert_int_equal(count("a!!\n"), 4);    /* "a", then "!!\n": punctuation takes the newline */    /* "x", then "\n\n" as one piece of two bytes */
}

static void malformed_rank_file_names_the_line(void **state)
{
    (void)state;
    char bad[64];
    snprintf(bad, sizeof bad, "/tmp/cl-tiktoken-bad-%d", (int)getpid());
    FILE *f = fopen(bad, "w");
    fputs("YQ== 0\nnot base64! 1\n", f);
    fclose(f);
    cl_err e = {0};
    assert_null(tiktoken_load(bad, &e));
    assert_non_null(strstr(e.msg, ":2:"));
    unlink(bad);
    assert_null(tiktoken_load("/nonexistent/ranks", &e));
    assert_int_equal(e.code, 66);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pieces_and_merges_counted_by_hand),
        cmocka_unit_test(malformed_rank_file_names_the_line),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
