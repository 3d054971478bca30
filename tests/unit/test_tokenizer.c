/* Unit tests for lib/model/tokenizer and the BPE trainer on small hand-built files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

#include "model/bpe_train.h"
#include "model/tokenizer.h"

/* A byte-level tokenizer.json: all 256 bytes (ids 0..255), merges given as JSON, added tokens
 * and options spliced in. */
static char *tok_json(const char *merges, const char *extra_vocab, const char *added,
                      const char *model_opts, const char *normalizer)
{
    size_t cap = 65536, n = 0;
    char *s = malloc(cap);
    n += (size_t)snprintf(s + n, cap - n, "{\"version\":\"1.0\",\"added_tokens\":[%s],\"normalizer\":%s,"
                          "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
                          "\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\"},"
                          "\"model\":{\"type\":\"BPE\",%s\"vocab\":{",
                          added, normalizer, model_opts);
    for (int b = 0; b < 256; b++) {
        char t[3] = {0};
        cl_byte_text((unsigned char)b, t);
        n += (size_t)snprintf(s + n, cap - n, "%s\"%s%s\":%d", b ? "," : "",
                              t[0] == '"' || t[0] == '\\' ? "\\" : "", t, b);
    }
    n += (size_t)snprintf(s + n, cap - n, "%s%s},\"merges\":[%s]}}", *extra_vocab ? "," : "",
                          extra_vocab, merges);
    return s;
}

static cl_tokenizer *load(const char *json)
{
    cl_err e = {0};
    cl_tokenizer *t = cl_tokenizer_from_json(json, strlen(json), "t.json", &e);
    if (!t)
        fprintf(stderr, "%s\n", e.msg);
    return t;
}

static size_t enc(cl_tokenizer *t, const char *s, int32_t *out, size_t max)
{
    cl_ids ids = {0};
    cl_err e = {0};
    assert_int_equal(cl_tokenizer_encode(t, s, strlen(s), 0, &ids, &e), 0);
    size_t n = ids.n < max ? ids.n : max;
    memcpy(out, ids.v, n * sizeof *out);
    size_t all = ids.n;
    cl_ids_free(&ids);
    return all;
}

static void byte_alphabet_is_gpt2s(void **state)
{
    (void)state;
    char t[3] = {0};
    cl_byte_text(' ', t);
    assert_string_equal(t, "\xc4\xa0"); /* Ġ */
    memset(t, 0, 3);
    cl_byte_text('\n', t);
    assert_string_equal(t, "\xc4\x8a"); /* Ċ */
    memset(t, 0, 3);
    cl_byte_text('a', t);
    assert_string_equal(t, "a");
}

static void merges_apply_by_rank_in_both_encodings(void **state)
{
    (void)state;
    /* "h e" then "l l" then "he ll" -> "hell"; with "ll" first the result is the same words. */
    const char *vocab = "\"he\":256,\"ll\":257,\"hell\":258,\"o\\u0120\":259";
    char *a = tok_json("\"h e\",\"l l\",\"he ll\"", vocab, "", "", "null");
    char *b = tok_json("[\"h\",\"e\"],[\"l\",\"l\"],[\"he\",\"ll\"]", vocab, "", "", "null");
    cl_tokenizer *ta = load(a), *tb = load(b);
    assert_non_null(ta);
    assert_non_null(tb);
    int32_t x[8], y[8];
    assert_int_equal(enc(ta, "hello", x, 8), 2);
    assert_int_equal(x[0], 258);
    assert_int_equal(x[1], 'o');
    assert_int_equal(enc(tb, "hello", y, 8), 2);
    assert_memory_equal(x, y, 2 * sizeof *x);
    size_t nm;
    const int32_t(*m)[2] = cl_tokenizer_merges(ta, &nm);
    assert_int_equal(nm, 3);
    assert_int_equal(m[2][0], 256);
    assert_int_equal(m[2][1], 257);
    cl_tokenizer_free(ta);
    cl_tokenizer_free(tb);
    free(a);
    free(b);
}

static void ignore_merges_takes_whole_words_from_the_vocabulary(void **state)
{
    (void)state;
    /* "abc" is in the vocabulary but no merge path reaches it. */
    const char *vocab = "\"ab\":256,\"abc\":257";
    char *plain = tok_json("\"a b\"", vocab, "", "", "null");
    char *ign = tok_json("\"a b\"", vocab, "", "\"ignore_merges\":true,", "null");
    cl_tokenizer *tp = load(plain), *ti = load(ign);
    int32_t x[8];
    assert_int_equal(enc(tp, "abc", x, 8), 2);
    assert_int_equal(x[0], 256);
    assert_int_equal(enc(ti, "abc", x, 8), 1);
    assert_int_equal(x[0], 257);
    cl_tokenizer_free(tp);
    cl_tokenizer_free(ti);
    free(plain);
    free(ign);
}

static void added_tokens_split_first_with_strip_rules(void **state)
{
    (void)state;
    const char *added = "{\"id\":300,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":true,\"rstrip\":true,"
                        "\"normalized\":false,\"special\":true},"
                        "{\"id\":301,\"content\":\"<sx>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                        "\"normalized\":false,\"special\":false},"
                        "{\"id\":302,\"content\":\"ok\",\"single_word\":true,\"lstrip\":false,\"rstrip\":false,"
                        "\"normalized\":false,\"special\":false}";
    char *j = tok_json("", "", added, "", "null");
    cl_tokenizer *t = load(j);
    assert_non_null(t);
    int32_t x[16];
    /* lstrip/rstrip swallow the spaces around <s>; the longest match <sx> wins over <s>. */
    assert_int_equal(enc(t, "a  <s>  b<sx>", x, 16), 4);
    assert_int_equal(x[0], 'a');
    assert_int_equal(x[1], 300);
    assert_int_equal(x[2], 'b');
    assert_int_equal(x[3], 301);
    /* single_word: "ok" inside "look" is text, standing alone it is the token. */
    assert_int_equal(enc(t, "look", x, 16), 4);
    assert_int_equal(enc(t, "ok", x, 16), 1);
    assert_int_equal(x[0], 302);
    assert_int_equal(cl_tokenizer_token_kind(t, 300), CL_TOKEN_SPECIAL);
    assert_int_equal(cl_tokenizer_token_kind(t, 301), CL_TOKEN_ADDED);
    assert_int_equal(cl_tokenizer_token_id(t, "<sx>"), 301);
    /* skip_special drops <s> only. */
    int32_t ids[] = {'a', 300, 301};
    cl_err e = {0};
    size_t len;
    char *d = cl_tokenizer_decode(t, ids, 3, 1, &len, &e);
    assert_string_equal(d, "a<sx>");
    free(d);
    cl_tokenizer_free(t);
    free(j);
}

static void nfc_normaliser_composes_before_merging(void **state)
{
    (void)state;
    char *j = tok_json("", "", "", "", "{\"type\":\"NFC\"}");
    cl_tokenizer *t = load(j);
    int32_t a[8], b[8];
    size_t na = enc(t, "cafe\xcc\x81", a, 8), nb = enc(t, "caf\xc3\xa9", b, 8);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    cl_tokenizer_free(t);
    free(j);
}

static void errors_name_the_field(void **state)
{
    (void)state;
    struct { const char *json, *want; } cases[] = {
        {"{\"model\":{\"type\":\"Unigram\"}}", "model.type: Unigram"},
        {"{\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{},\"merges\":[]}}", "byte_fallback"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", "model.vocab[\"a\"]"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}", "id 0 is used twice"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a\"]},\"pre_tokenizer\":null}", "merges[0]"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Whitespace\"}}",
         "Whitespace is not supported"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"Lowercase\"},"
         "\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}", "normalizer type Lowercase"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Split\","
         "\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}}", "does not compile"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Split\","
         "\"pattern\":{\"String\":\" \"},\"behavior\":\"Removed\"}}", "Split behavior Removed"},
        {"[1,2", "t.json: byte"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cl_err e = {0};
        cl_tokenizer *t = cl_tokenizer_from_json(cases[i].json, strlen(cases[i].json), "t.json", &e);
        assert_null(t);
        assert_int_equal(e.code, 65);
        if (!strstr(e.msg, cases[i].want))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, e.msg, cases[i].want);
    }
}

static void invalid_utf8_and_unknown_ids_are_errors(void **state)
{
    (void)state;
    char *j = tok_json("", "", "", "", "null");
    cl_tokenizer *t = load(j);
    cl_ids ids = {0};
    cl_err e = {0};
    assert_int_equal(cl_tokenizer_encode(t, "ok\xff", 3, 0, &ids, &e), -1);
    assert_non_null(strstr(e.msg, "byte 2: invalid UTF-8"));
    int32_t bad[] = {1, 999};
    assert_null(cl_tokenizer_decode(t, bad, 2, 0, NULL, &e));
    assert_non_null(strstr(e.msg, "999"));
    cl_ids_free(&ids);
    cl_tokenizer_free(t);
    free(j);
}

static void trainer_learns_frequent_pairs_and_round_trips(void **state)
{
    (void)state;
    const char *texts[] = {"the theory of the thing", "then there they go: the end", "\xe6\x97\xa5\xe6\x9c\xac the"};
    size_t lens[3];
    for (int i = 0; i < 3; i++)
        lens[i] = strlen(texts[i]);
    cl_bpe_added added[] = {{"<|bos|>", 1, 0, 0}};
    cl_bpe_train_opts o = {.vocab_size = 270, .bos = "<|bos|>", .added = added, .n_added = 1};
    cl_err e = {0};
    size_t len;
    char *json = cl_bpe_train(texts, lens, 3, &o, &len, &e);
    assert_non_null(json);
    cl_tokenizer *t = cl_tokenizer_from_json(json, len, "trained", &e);
    assert_non_null(t);
    /* It stops early once no pair occurs twice; the added token comes last. */
    assert_in_range(cl_tokenizer_vocab_size(t), 260, 270);
    assert_int_equal(cl_tokenizer_token_id(t, "<|bos|>"), cl_tokenizer_vocab_size(t) - 1);
    assert_true(cl_tokenizer_token_id(t, "\xc4\xa0the") > 255); /* "Ġthe" was learnt */
    cl_ids ids = {0};
    assert_int_equal(cl_tokenizer_encode(t, texts[1], lens[1], 1, &ids, &e), 0);
    assert_int_equal(ids.v[0], cl_tokenizer_token_id(t, "<|bos|>"));
    size_t dl;
    char *d = cl_tokenizer_decode(t, ids.v, ids.n, 1, &dl, &e);
    assert_int_equal(dl, lens[1]);
    assert_memory_equal(d, texts[1], dl);
    free(d);
    cl_ids_free(&ids);
    cl_tokenizer_free(t);
    free(json);
    o.vocab_size = 10;
    assert_null(cl_bpe_train(texts, lens, 3, &o, &len, &e));
    assert_int_equal(e.code, 2);
}

static void tiktoken_ranks_merge_like_tiktoken(void **state)
{
    (void)state;
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char path[] = "/tmp/cl-tiktoken.XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    for (int b = 0; b < 256; b++)
        fprintf(f, "%c%c== %d\n", b64[b >> 2], b64[(b & 3) << 4], b);
    fprintf(f, "YmM= 256\nYWJj 257\nYWI= 258\n"); /* "bc" ranks before "abc" before "ab" */
    fclose(f);
    const char *names[] = {"<|end|>"};
    int32_t sid[] = {300};
    cl_err e = {0};
    cl_tokenizer *t = cl_tokenizer_load_tiktoken(path, NULL, names, sid, 1, &e);
    unlink(path);
    assert_non_null(t);
    int32_t x[8];
    /* "abc" is a token: whole-piece lookup first. "abd": bc is absent, ab merges. */
    assert_int_equal(enc(t, "abc", x, 8), 1);
    assert_int_equal(x[0], 257);
    assert_int_equal(enc(t, "abd", x, 8), 2);
    assert_int_equal(x[0], 258);
    assert_int_equal(enc(t, "xabc<|end|>", x, 8), 3); /* x, "abc" is split: "x" "abc" by regex */
    assert_int_equal(x[2], 300);
    cl_tokenizer_free(t);
}

typedef struct job {
    const cl_tokenizer *t;
    const char *text;
    cl_ids ids;
    int rc;
} job;

static void *encode_job(void *arg)
{
    job *j = arg;
    cl_tok_work *w = cl_tokenizer_work_new(j->t);
    cl_err e = {0};
    j->rc = -1;
    for (int k = 0; w && k < 200; k++) { /* long enough for the threads to overlap */
        j->ids.n = 0;
        j->rc = cl_tokenizer_encode_with(j->t, w, j->text, strlen(j->text), 1, &j->ids, &e);
    }
    cl_tokenizer_work_free(w);
    return NULL;
}

static void threads_share_a_tokenizer_with_their_own_work_areas(void **state)
{
    (void)state;
    const char *texts[] = {"the cat sat on the mat with the hat", "12345 caf\xc3\xa9 the end"};
    size_t lens[2] = {strlen(texts[0]), strlen(texts[1])};
    cl_bpe_added added[] = {{"<b>", 1, 0, 0}};
    cl_bpe_train_opts o = {.vocab_size = 280, .bos = "<b>", .added = added, .n_added = 1};
    cl_err e = {0};
    size_t jl;
    char *json = cl_bpe_train(texts, lens, 2, &o, &jl, &e);
    cl_tokenizer *t = cl_tokenizer_from_json(json, jl, "shared", &e);
    assert_non_null(t);
    job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){t, texts[i % 2], {0}, 0};
        assert_int_equal(pthread_create(&th[i], NULL, encode_job, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].rc, 0);
        cl_ids alone = {0};
        assert_int_equal(cl_tokenizer_encode(t, texts[i % 2], lens[i % 2], 1, &alone, &e), 0);
        assert_int_equal(alone.n, jobs[i].ids.n);
        assert_memory_equal(alone.v, jobs[i].ids.v, alone.n * sizeof *alone.v);
        cl_ids_free(&alone);
        cl_ids_free(&jobs[i].ids);
    }
    cl_tokenizer_free(t);
    free(json);
}

/* Whether utf8proc's normal form of s (NUL-terminated) is s itself. */
static int unchanged(const char *s, utf8proc_option_t opts)
{
    utf8proc_uint8_t *out = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)strlen(s), &out, opts);
    int same = k == (utf8proc_ssize_t)strlen(s) && memcmp(out, s, (size_t)k) == 0;
    free(out);
    return same;
}

/* The normaliser's shortcut: every code point the quick check calls stable is left unchanged
 * by its form alone and after every kind of composition starter (Latin, Hangul leading jamo
 * and LV syllable, Indic and Myanmar/Balinese vowels that take a following sign), across all
 * of Unicode's composing planes; and the check is not vacuous. */
static void normal_form_quick_check_never_skips_a_change(void **st)
{
    (void)st;
    static const struct { const char *name; utf8proc_option_t opts; } forms[] = {
        {"NFC", UTF8PROC_STABLE | UTF8PROC_COMPOSE},
        {"NFD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE},
        {"NFKC", UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT},
        {"NFKD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT},
    };
    static const int32_t starters[] = {'a', 'e', 'A', 0x1100, 0xAC00, 0x0B47, 0x0BC6, 0x0CC6, 0x0D46,
                                       0x0DD9, 0x1025, 0x1B05, 0x11099, 0x11131, 0x11347, 0x114B9, 0x115B8};
    for (size_t f = 0; f < sizeof forms / sizeof *forms; f++) {
        int stable = 0;
        for (int32_t cp = 0x80; cp < 0x20000; cp++) {
            if (cp >= 0xD800 && cp < 0xE000) continue;
            if (cl_unicode_nf_stable(forms[f].name, cp) != 1) continue;
            stable++;
            char s[16];
            utf8proc_ssize_t n = utf8proc_encode_char(cp, (utf8proc_uint8_t *)s);
            s[n] = 0;
            if (!unchanged(s, forms[f].opts)) fail_msg("%s changes U+%04X", forms[f].name, cp);
            if (!(forms[f].opts & UTF8PROC_COMPOSE)) continue;
            for (size_t b = 0; b < sizeof starters / sizeof *starters; b++) {
                utf8proc_ssize_t m = utf8proc_encode_char(starters[b], (utf8proc_uint8_t *)s);
                m += utf8proc_encode_char(cp, (utf8proc_uint8_t *)s + m);
                s[m] = 0;
                if (!unchanged(s, forms[f].opts))
                    fail_msg("%s changes U+%04X after U+%04X", forms[f].name, cp, starters[b]);
            }
        }
        assert_true(stable > 100000); /* CJK, Hangul (composed forms), most scripts */
    }
    assert_int_equal(cl_unicode_nf_stable("NFC", 0xE9), 1);    /* é is NFC */
    assert_int_equal(cl_unicode_nf_stable("NFD", 0xE9), 0);
    assert_int_equal(cl_unicode_nf_stable("NFC", 0x2019), 1);  /* a curly quote */
    assert_int_equal(cl_unicode_nf_stable("NFC", 0x301), 0);   /* a combining accent */
    assert_int_equal(cl_unicode_nf_stable("NFC", 0x0BBE), 0);  /* composes with a Tamil vowel */
    assert_int_equal(cl_unicode_nf_stable("NFC", 0x1161), 0);  /* a Hangul vowel jamo */
    assert_int_equal(cl_unicode_nf_stable("NFC", 0xFB01), 1);  /* a ligature: NFKC only */
    assert_int_equal(cl_unicode_nf_stable("NFKC", 0xFB01), 0);
    assert_int_equal(cl_unicode_nf_stable("NFC", 0x212B), 0);  /* Angstrom sign: a singleton */
    assert_int_equal(cl_unicode_nf_stable("NFC", 0x0958), 0);  /* excluded from composition */
    assert_int_equal(cl_unicode_nf_stable("NFC", 0x01D6), 1);  /* u with diaeresis and macron */
    assert_int_equal(cl_unicode_nf_stable("Lowercase", 'a'), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(byte_alphabet_is_gpt2s),
        cmocka_unit_test(merges_apply_by_rank_in_both_encodings),
        cmocka_unit_test(ignore_merges_takes_whole_words_from_the_vocabulary),
        cmocka_unit_test(added_tokens_split_first_with_strip_rules),
        cmocka_unit_test(nfc_normaliser_composes_before_merging),
        cmocka_unit_test(normal_form_quick_check_never_skips_a_change),
        cmocka_unit_test(errors_name_the_field),
        cmocka_unit_test(invalid_utf8_and_unknown_ids_are_errors),
        cmocka_unit_test(trainer_learns_frequent_pairs_and_round_trips),
        cmocka_unit_test(tiktoken_ranks_merge_like_tiktoken),
        cmocka_unit_test(threads_share_a_tokenizer_with_their_own_work_areas),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
