/* Unit tests for lib/model/jsonmask (the JSON schema automaton and token masks over cl100k) and
 * the constrained sampler of lib/model/engine (cl_sample_filtered). */
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
#include "model/engine.h"
#include "model/jsonmask.h"

static cl_jschema *compile(const char *rf)
{
    jv v = jv_parse(rf);
    assert_true(jv_is_valid(v));
    cl_jschema *s = NULL;
    cl_err e = {0};
    int rc = cl_jschema_compile(&v, &s, &e);
    if (rc) fail_msg("%s: %s", rf, e.msg);
    jv_free(v);
    return s;
}

static const char *schema_error(const char *rf)
{
    static cl_err e;
    memset(&e, 0, sizeof e);
    jv v = jv_parse(rf);
    cl_jschema *s = NULL;
    int rc = cl_jschema_compile(&v, &s, &e);
    jv_free(v);
    assert_int_equal(rc, -1);
    assert_null(s);
    assert_int_equal(e.code, CL_EXIT_DATAERR);
    return e.msg;
}

/* 1: complete document; 0: a valid prefix; -1: rejected.  Every prefix is fed byte by byte. */
static int run(const cl_jschema *s, const char *doc)
{
    cl_jstate st;
    cl_jstate_init(&st);
    for (size_t i = 0; doc[i]; i++)
        if (cl_jstate_feed(s, &st, doc + i, 1)) return -1;
    return st.done ? 1 : 0;
}

static const char *OBJ = "{\"type\":\"json_object\"}";

static void json_object_accepts_documents_and_prefixes(void **state)
{
    (void)state;
    cl_jschema *s = compile(OBJ);
    static const char *const ok[] = {
        "{}", " {}", "{\"a\":1}", "{\"a\": [1, -2.5e+3, 0, 0.125, 1E7, true, false, null, \"x\"]}",
        "{\n  \"a\": {\"b\": [[], {}]},\n  \"c\": \"\\n\\t\\\"\\\\\\/\\b\\f\\r\"\n}",
        "{\"\\u00e9\\uD83D\\ude00\": \"caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac\"}", "{\"a\":-0}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (run(s, ok[i]) != 1) fail_msg("not accepted: %s", ok[i]);
    assert_int_equal(run(s, "{\"a\": [1, {\"b\": \"unfinished"), 0);
    assert_int_equal(run(s, "{\"a\": tr"), 0);
    assert_int_equal(run(s, "{\"a\": 1"), 0); /* a number ends at the next byte */
    cl_jschema_free(s);
}

static void json_object_rejects_invalid_prefixes(void **state)
{
    (void)state;
    cl_jschema *s = compile(OBJ);
    static const char *const bad[] = {
        "[]", "\"a\"", "1", "{,}", "{\"a\":1,}", "{\"a\" 1}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}",
        "{\"a\":+1}", "{\"a\":1e}", "{\"a\":-}", "{\"a\":tru}", "{\"a\":True}", "{'a':1}", "{a:1}",
        "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12g4\"}",
        "{\"a\":\"\\ud800\"}", "{\"a\":\"\\ud800\\u0041\"}", "{\"a\":\"\\udc00\"}", /* surrogates pair up */
        "{\"a\":\"\xc0\x80\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf4\x90\x80\x80\"}", "{\"a\":\"\x80\"}",
        "{\"a\":\"\xe2\x82\"}", "{} ", "{}x", "{}{}", "{\"a\":[1 2]}", "{\"a\":[1,]}", "{\"a\":1]",
        "\t{}", "{  \"a\":1}", "{\n\n\"a\":1}", "{\r\"a\":1}", "{\n                \"a\":1}",
        "{\"a\":123456789012345678901234567890123}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (run(s, bad[i]) != -1) fail_msg("not rejected: %s", bad[i]);
    /* the longest indent and number that fit */
    assert_int_equal(run(s, "{\n               \"a\":12345678901234567890123456789012}"), 1);
    cl_jschema_free(s);
}

static const char *SCHEMA =
    "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"t\",\"schema\":{\"type\":\"object\","
    "\"properties\":{\"name\":{\"type\":\"string\",\"description\":\"who\"},\"age\":{\"type\":\"integer\"},"
    "\"score\":{\"type\":\"number\"},\"ok\":{\"type\":\"boolean\"},\"note\":{\"type\":[\"string\",\"null\"]},"
    "\"mood\":{\"enum\":[\"happy\",\"sad\",\"say \\\"hi\\\"\"]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
    "\"pos\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"}},\"required\":[\"x\"],"
    "\"additionalProperties\":false}},"
    "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}}}";

static void schema_subset_is_enforced(void **state)
{
    (void)state;
    cl_jschema *s = compile(SCHEMA);
    static const char *const ok[] = {
        "{\"name\":\"a\",\"age\":3}", "{\"age\":-3, \"name\":\"b\"}",
        "{\"name\":\"a\",\"age\":3,\"score\":1.5e3,\"ok\":false,\"note\":null,\"mood\":\"sad\","
        "\"tags\":[\"x\",\"y\"],\"pos\":{\"x\":0}}",
        "{\"note\":\"n\",\"name\":\"\",\"age\":0,\"mood\":\"say \\\"hi\\\"\",\"tags\":[]}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (run(s, ok[i]) != 1) fail_msg("not accepted: %s", ok[i]);
    static const char *const bad[] = {
        "{\"name\":\"a\"}",                           /* age is required */
        "{\"name\":\"a\",\"age\":3,\"extra\":1}",     /* no undeclared keys */
        "{\"name\":\"a\",\"name\":\"b\",\"age\":3}", /* each key once */
        "{\"name\":1,\"age\":3}", "{\"name\":\"a\",\"age\":3.5}", "{\"name\":\"a\",\"age\":1e3}",
        "{\"name\":\"a\",\"age\":3,\"mood\":\"happ\"}", "{\"name\":\"a\",\"age\":3,\"mood\":\"glad\"}",
        "{\"name\":\"a\",\"age\":3,\"mood\":\"happyy\"}", "{\"name\":\"a\",\"age\":3,\"tags\":[1]}",
        "{\"name\":\"a\",\"age\":3,\"pos\":{}}", "{\"name\":\"a\",\"age\":3,\"ok\":null}",
        "{\"n\\u0061me\":\"a\",\"age\":3}", /* keys as the schema spells them */
        "{\"name\":\"a\",\"age\":3,\"note\":true}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (run(s, bad[i]) != -1) fail_msg("not rejected: %s", bad[i]);
    cl_jschema_free(s);
    /* "text" asks for nothing */
    jv t = jv_parse("{\"type\":\"text\"}");
    cl_jschema *none = (cl_jschema *)1;
    assert_int_equal(cl_jschema_compile(&t, &none, NULL), 0);
    assert_null(none);
    jv_free(t);
}

static void bad_schemas_are_errors_naming_the_path(void **state)
{
    (void)state;
#define W(x) "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"t\",\"schema\":" x "}}"
    const char *m = schema_error(W("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":0}}}"));
    assert_non_null(strstr(m, "response_format.json_schema.schema.properties.n"));
    assert_non_null(strstr(m, "\"minimum\""));
    assert_non_null(strstr(schema_error(W("{\"type\":\"object\",\"additionalProperties\":true}")), "additionalProperties"));
    assert_non_null(strstr(schema_error(W("{\"type\":\"object\",\"properties\":{\"n\":{\"enum\":[1,2]}}}")), "enum[0]"));
    assert_non_null(strstr(schema_error(W("{\"type\":\"object\",\"properties\":{},\"required\":[\"x\"]}")), "required[0]"));
    assert_non_null(strstr(schema_error(W("{\"type\":\"array\"}")), "root must be of type object"));
    assert_non_null(strstr(schema_error(W("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"date\"}}}")), ".a.type"));
    assert_non_null(strstr(schema_error(W("{\"anyOf\":[]}")), "\"anyOf\""));
    assert_non_null(strstr(schema_error("{\"type\":\"json_schema\"}"), "json_schema.schema: missing"));
    assert_non_null(strstr(schema_error("{\"type\":\"xml\"}"), "\"xml\""));
    assert_non_null(strstr(schema_error("\"json\""), "response_format"));
#undef W
}

static cl_tokenizer *cl100k(void)
{
    const char *p = getenv("CL_CL100K");
    cl_err e = {0};
    static const char *const names[] = {"<|endoftext|>"};
    static const int32_t ids[] = {100257};
    cl_tokenizer *t = cl_tokenizer_load_tiktoken(p ? p : "share/cl/cl100k_base.tiktoken", NULL, names, ids, 1, &e);
    if (!t) fail_msg("cl100k: %s", e.msg);
    return t;
}

static int bit(const uint64_t *b, int t)
{
    return (int)(b[t / 64] >> (t % 64) & 1);
}

/* The mask agrees with the one-token test everywhere, the end token comes only after a
 * complete document, and masks are cached per state. */
static void masks_match_single_token_tests(void **state)
{
    (void)state;
    cl_tokenizer *t = cl100k();
    int v = cl_tokenizer_vocab_size(t), eos = 100257;
    cl_err e = {0};
    cl_jmask *m = cl_jmask_new(compile(SCHEMA), t, v, &eos, 1, &e);
    assert_non_null(m);
    static const char *const prefixes[] = {"", "{", "{\"na", "{\"name\":\"caf", "{\"name\":\"a\",\"age\":1",
                                           "{\"name\":\"a\",\"age\":1,\"mood\":\"s", "{\"name\":\"a\",\"age\":1}"};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
        cl_jstate st;
        cl_jstate_init(&st);
        const uint64_t *b = NULL;
        /* advance over the prefix's single-byte tokens */
        for (const char *c = prefixes[i]; *c; c++) {
            cl_ids ids = {0};
            assert_int_equal(cl_tokenizer_encode(t, c, 1, 0, &ids, &e), 0);
            assert_int_equal(cl_jmask_advance(m, &st, ids.v[0]), 0);
            cl_ids_free(&ids);
        }
        b = cl_jmask_bits(m, &st, -1);
        int n = 0;
        for (int k = 0; k < v; k++) {
            if (bit(b, k) != cl_jmask_allows(m, &st, k, -1)) fail_msg("prefix %s token %d", prefixes[i], k);
            n += bit(b, k);
        }
        int done = i == sizeof prefixes / sizeof *prefixes - 1;
        assert_int_equal(bit(b, eos), done);
        assert_true(done ? n == 1 : n > 0);
    }
    long computed, cached;
    cl_jmask_stats(m, &computed, &cached);
    assert_int_equal(computed, 7);
    cl_jstate st;
    cl_jstate_init(&st);
    cl_jmask_bits(m, &st, -1);
    cl_jmask_stats(m, &computed, &cached);
    assert_int_equal(computed, 7);
    assert_int_equal(cached, 1);
    cl_jmask_free(m);
    cl_tokenizer_free(t);
}

/* Random walks under a budget never meet an empty mask and always close a parseable document
 * in time: the shortest-completion count never lets a reply paint itself into a corner. */
static void budgeted_walks_always_finish(void **state)
{
    (void)state;
    cl_tokenizer *t = cl100k();
    int v = cl_tokenizer_vocab_size(t), eos = 100257;
    cl_err e = {0};
    const char *formats[] = {OBJ, SCHEMA};
    for (int f = 0; f < 2; f++) {
        cl_jmask *m = cl_jmask_new(compile(formats[f]), t, v, &eos, 1, &e);
        assert_non_null(m);
        uint64_t rng = 7;
        for (int walk = 0; walk < 8; walk++) {
            int budget = 40 + walk * 7, made = 0;
            cl_jstate st;
            cl_jstate_init(&st);
            char *text = calloc(1, 4096);
            size_t len = 0;
            for (;;) {
                const uint64_t *b = cl_jmask_bits(m, &st, budget - made);
                int n = 0;
                for (int k = 0; k < v; k++) n += bit(b, k);
                assert_true(n > 0);
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                int pick = (int)((rng >> 33) % (uint64_t)n), tok = -1;
                for (int k = 0; k < v && tok < 0; k++)
                    if (bit(b, k) && pick-- == 0) tok = k;
                if (tok == eos) break;
                size_t tl;
                const char *tb = cl_tokenizer_token_bytes(t, tok, &tl);
                memcpy(text + len, tb, tl);
                len += tl;
                assert_int_equal(cl_jmask_advance(m, &st, tok), 0);
                assert_true(++made <= budget);
            }
            assert_true(st.done);
            jv p = jv_parse_sized(text, (int)len);
            if (!jv_is_valid(p)) fail_msg("not JSON: %s", text);
            assert_int_equal(jv_get_kind(p), JV_KIND_OBJECT);
            jv_free(p);
            free(text);
        }
        cl_jmask_free(m);
    }
    cl_tokenizer_free(t);
}

/* A filter over a 6-token vocabulary that allows the tokens of allowed_bits. */
static uint64_t allowed_bits;
static int calls_mask;
static int f_allows(void *ctx, int tok)
{
    (void)ctx;
    return (int)(allowed_bits >> tok & 1);
}
static const uint64_t *f_mask(void *ctx)
{
    (void)ctx;
    calls_mask++;
    return &allowed_bits;
}

/* The check-first sampler draws from the masked, renormalised distribution; greedy picks the
 * best allowed token; top-k applies to what the mask leaves. */
static void filtered_sampling_is_the_masked_distribution(void **state)
{
    (void)state;
    const float logits[6] = {3.0f, 2.0f, 1.0f, 0.5f, 0.0f, -1.0f};
    float ps[6];
    int is[6];
    cl_token_filter f = {f_allows, f_mask, NULL};
    allowed_bits = 0x2a; /* tokens 1, 3, 5 */
    cl_sampler greedy = {0, 0, 1};
    uint64_t rng = 1;
    assert_int_equal(cl_sample_filtered(logits, 6, &greedy, &rng, ps, is, &f), 1);
    cl_sampler temp = {1.0, 0, 1};
    int count[6] = {0}, n = 200000;
    for (int i = 0; i < n; i++) {
        rng = (uint64_t)i * 7919u;
        count[cl_sample_filtered(logits, 6, &temp, &rng, ps, is, &f)]++;
    }
    double z = exp(2.0) + exp(0.5) + exp(-1.0);
    assert_int_equal(count[0] + count[2] + count[4], 0);
    for (int k = 1; k < 6; k += 2) {
        double want = exp((double)logits[k]) / z, got = (double)count[k] / n;
        if (fabs(got - want) > 0.005) fail_msg("token %d: %.4f, want %.4f", k, got, want);
    }
    /* top-k 1 of the masked distribution is its argmax; top-k 2 keeps tokens 1 and 3 */
    cl_sampler k2 = {1.0, 2, 1};
    memset(count, 0, sizeof count);
    calls_mask = 0;
    for (int i = 0; i < 2000; i++) {
        rng = (uint64_t)i;
        count[cl_sample_filtered(logits, 6, &k2, &rng, ps, is, &f)]++;
    }
    assert_int_equal(calls_mask, 2000);
    assert_int_equal(count[1] + count[3], 2000);
    assert_true(count[3] > 0);
    allowed_bits = 0;
    assert_int_equal(cl_sample_filtered(logits, 6, &temp, &rng, ps, is, &f), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_object_accepts_documents_and_prefixes),
        cmocka_unit_test(json_object_rejects_invalid_prefixes),
        cmocka_unit_test(schema_subset_is_enforced),
        cmocka_unit_test(bad_schemas_are_errors_naming_the_path),
        cmocka_unit_test(masks_match_single_token_tests),
        cmocka_unit_test(budgeted_walks_always_finish),
        cmocka_unit_test(filtered_sampling_is_the_masked_distribution),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
