/* Unit tests for lib/core/json: the validator, parser, printer, accessors and filters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

static int valid(const char *s) { cl_json_check c; return cl_json_validate(s, strlen(s), &c) == 0; }

static void validator_accepts_json(void **state)
{
    (void)state;
    const char *good[] = {"{}", "[]", "0", "-0.5e+3", "\"\\u00e9\\n\"", "{\"a\":[1,{\"b\":null}]}",
                          " { \"x\" : true } ", "\"h\xc3\xa9llo \xf0\x9f\x98\x80\"", "[1,2,3]", NULL};
    for (int i = 0; good[i]; i++)
        assert_true(valid(good[i]));
}

static void validator_rejects_bad(void **state)
{
    (void)state;
    const char *bad[] = {"", "{", "{\"a\"}", "{\"a\":}", "[1,]", "01", "1.", "-", "tru", "\"\x01\"",
                         "\"\\x\"", "\"\\u12\"", "{} {}", "\"\xff\"", "\"\xc0\xaf\"",
                         "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "{\"a\":1,}", "[1}", NULL};
    for (int i = 0; bad[i]; i++)
        assert_false(valid(bad[i]));
    /* A bad byte at every offset of a long string, where the validator reads 16 at a time:
     * found, at its own offset; and a good two-byte character at every offset passes. */
    const struct { char byte; const char *what; } bytes[] = {
        {0x01, "control character in string"}, {0x1f, "control character in string"},
        {'\n', "control character in string"}, {(char)0xff, "invalid UTF-8"},
        {(char)0x80, "invalid UTF-8"}, {(char)0xc3, "invalid UTF-8"}};
    for (size_t k = 0; k < sizeof bytes / sizeof *bytes; k++)
        for (int at = 1; at < 47; at++) {
            char s[50];
            memset(s, 'x', sizeof s);
            s[0] = s[48] = '"';
            s[49] = 0;
            s[at] = bytes[k].byte;
            cl_json_check c;
            assert_int_equal(cl_json_validate(s, 49, &c), -1);
            assert_int_equal(c.err_off, at);
            assert_string_equal(c.err_what, bytes[k].what);
            memcpy(s + at, "\xc3\xa9", 2);
            assert_true(valid(s));
        }
}

static void validator_reports_offset_and_id(void **state)
{
    (void)state;
    cl_json_check c;
    const char *s = "{\"a\":\"ok\xff\"}";
    assert_int_equal(cl_json_validate(s, strlen(s), &c), -1);
    assert_int_equal(c.err_off, 8);
    assert_string_equal(c.err_what, "invalid UTF-8");
    const char *t = "{\"x\":{\"id\":1},\"id\":\"abc\",\"y\":2}";
    assert_int_equal(cl_json_validate(t, strlen(t), &c), 0);
    assert_true(c.is_object);
    assert_int_equal(c.id_len, 5);
    assert_memory_equal(t + c.id_off, "\"abc\"", 5);
}

static void deep_nesting_is_refused(void **state)
{
    (void)state;
    char buf[600];
    memset(buf, '[', 300);
    memset(buf + 300, ']', 300);
    cl_json_check c;
    assert_int_equal(cl_json_validate(buf, 600, &c), -1);
    assert_string_equal(c.err_what, "nesting deeper than 256 levels");
}

static void accessors_borrow(void **state)
{
    (void)state;
    jv o = cl_json_parse("{\"s\":\"x\",\"n\":2.5,\"b\":true}", 26);
    assert_string_equal(cl_json_str(&o, "s"), "x");
    assert_null(cl_json_str(&o, "n"));
    assert_true(cl_json_num(&o, "n", 0) == 2.5);
    assert_true(cl_json_num(&o, "missing", -1) == -1);
    assert_int_equal(cl_json_bool(&o, "b", 0), 1);
    assert_int_equal(cl_json_has(&o, "zz"), 0);
    assert_int_equal(jv_get_refcnt(o), 1); /* nothing leaked or consumed */
    jv_free(o);
}

static void filters_run_and_report(void **state)
{
    (void)state;
    cl_err e = {0};
    cl_filter *f = cl_filter_new(".a, .b", "--map", &e);
    assert_non_null(f);
    jv out = jv_array();
    assert_int_equal(cl_filter_run(f, cl_json_parse("{\"a\":1,\"b\":2}", 13), &out, &e), 0);
    assert_int_equal(jv_array_length(jv_copy(out)), 2);
    jv_free(out);
    out = jv_array();
    assert_int_equal(cl_filter_run(f, jv_number(3), &out, &e), -1);
    assert_non_null(strstr(e.msg, "Cannot index number"));
    jv_free(out);
    cl_filter_free(f);
    assert_null(cl_filter_new(".[", "--where", &e));
    assert_int_equal(e.code, CL_EXIT_USAGE);
    /* `input` must fail cleanly, not crash (jq 1.6 leaves its callback uninitialised). */
    f = cl_filter_new("input", "--map", &e);
    out = jv_array();
    assert_int_equal(cl_filter_run(f, jv_null(), &out, &e), -1);
    jv_free(out);
    cl_filter_free(f);
}

/* cl_json_parse builds its values itself; they must be exactly libjq's, down to the bytes of
 * their dump, including the cases where it hands over to libjq. */
static void parse_builds_what_libjq_builds(void **state)
{
    (void)state;
    const char *docs[] = {
        "{}", "[]", " {\"a\" : [1, 2.5, -0, 1e3, 1.5e-7, 0.1, 123456789012345678901234567890, 1e400]} ",
        "{\"a\":1,\"b\":{\"c\":[true,false,null]},\"a\":2}", "\"plain\"", "42", "-7.25e+2", "true", "null",
        "{\"s\":\"tab\\tnl\\nq\\\"bs\\\\sl\\/b\\bf\\fr\\r\"}", "[\"\\u00e9\\u20ac\\u0041\\u0000x\"]",
        "[\"\\ud83d\\ude00 pair\", \"lone \\udc00\"]", "{\"id\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"h\xc3\xa9\"}]}",
        "[[[[[[[[[[1]]]]]]]]]]", "{\"\":\"\",\"k\":[{},[],\"\"]}", "[0,-1,3.141592653589793,2e-308,9007199254740993]",
        NULL};
    for (int i = 0; docs[i]; i++) {
        jv a = cl_json_parse(docs[i], strlen(docs[i]));
        jv b = jv_parse_sized(docs[i], (int)strlen(docs[i]));
        assert_true(jv_is_valid(a));
        jv da = jv_dump_string(jv_copy(a), 0), db = jv_dump_string(jv_copy(b), 0);
        assert_string_equal(jv_string_value(da), jv_string_value(db));
        assert_true(jv_equal(a, b));
        jv_free(da);
        jv_free(db);
    }
    jv bad = cl_json_parse("{\"a\":", 5);   /* not valid: libjq's error, shortened */
    assert_false(jv_is_valid(bad));
    jv_free(bad);
}

/* ---- the printer against jq 1.6's own ---------------------------------------------------- */

/* cl_json_dump must write exactly what jv_dump_string(v, 0) writes (records that pass through
 * a tool must come out as jq would print them).  Consumes v. */
static void dumps_like_libjq(jv v)
{
    jv want = jv_dump_string(jv_copy(v), 0);
    size_t wn = (size_t)jv_string_length_bytes(jv_copy(want)), n = 0;
    char *got = cl_json_dump(&v, &n);
    assert_non_null(got);
    if (n != wn || memcmp(got, jv_string_value(want), n) != 0)
        fail_msg("cl_json_dump wrote\n  %.300s\nbut jq 1.6 writes\n  %.300s", got, jv_string_value(want));
    assert_int_equal(got[n], 0);
    free(got);
    jv_free(want);
    jv_free(v);
}

static void printer_writes_numbers_as_jq(void **state)
{
    (void)state;
    const double two53 = 9007199254740992.0;
    const double xs[] = {0, -0.0, 1, -1, 7, 10, 100, 123456789, -987654321, 1e15, 1e15 + 1, 1e16 - 2,
                         1e16, 1e17, 1e18, 1e21, 1e300, -1e300, 0.1, 0.5, -2.5, 1e-4, 1e-5, 1e-7,
                         3.141592653589793, 2.2250738585072014e-308, 4.9e-324, two53 - 1, two53,
                         two53 + 2, -(two53 - 1), -two53, -two53 - 2, 9223372036854775808.0,
                         -9223372036854775808.0, 18446744073709551616.0, 123e15, 1234567890123456e1,
                         DBL_MAX, -DBL_MAX, DBL_MIN, DBL_EPSILON, NAN, -NAN, INFINITY, -INFINITY,
                         0.30000000000000004, 1.0 / 3, 2.0 / 3, 1e-300, 5e-324};
    for (size_t i = 0; i < sizeof xs / sizeof *xs; i++)
        dumps_like_libjq(jv_number(xs[i]));
    /* Every integer near the ends of the exact range and around powers of ten. */
    for (double base = 1; base < 1e19; base *= 10)
        for (int d = -3; d <= 3; d++) {
            dumps_like_libjq(jv_number(base + d));
            dumps_like_libjq(jv_number(-base - d));
        }
    for (int d = -4; d <= 4; d++) {
        dumps_like_libjq(jv_number(two53 + 2 * d));
        dumps_like_libjq(jv_number(-two53 - 2 * d));
    }
}

static void printer_escapes_strings_as_jq(void **state)
{
    (void)state;
    /* Every byte from NUL to DEL, alone and in one string. */
    char all[128];
    for (int c = 0; c < 128; c++) {
        all[c] = (char)c;
        dumps_like_libjq(jv_string_sized(all + c, 1));
    }
    dumps_like_libjq(jv_string_sized(all, 128));
    const char *texts[] = {"", "plain", "caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac", "\xf0\x9f\x98\x80 astral",
                           "\xef\xbf\xbf\xef\xbf\xbd\xf4\x8f\xbf\xbf", "bad \xff\xfe bytes \xc0\xaf",
                           "\xed\xa0\x80 lone surrogate bytes", "/slash/ and \\ and \"", NULL};
    for (int i = 0; texts[i]; i++)
        dumps_like_libjq(jv_string(texts[i]));
    dumps_like_libjq(jv_string_sized("a\0b\0", 4)); /* embedded NUL */
    /* One escape at every offset of a long run, so that the 16-byte scan meets it at every
     * position of its block and at the very end. */
    const char special[] = {'"', '\\', 0x7f, '\n', 0x01, 0x1f};
    for (size_t k = 0; k < sizeof special; k++)
        for (int at = 0; at < 40; at++) {
            char s[41];
            memset(s, 'x', sizeof s);
            s[at] = special[k];
            dumps_like_libjq(jv_string_sized(s, at + 1));
            dumps_like_libjq(jv_string_sized(s, 40));
        }
    /* A large string, mostly plain, escapes sprinkled. */
    size_t big = 1 << 20;
    char *s = malloc(big);
    assert_non_null(s);
    for (size_t i = 0; i < big; i++)
        s[i] = (char)(i % 997 == 0 ? '\n' : i % 1499 == 0 ? '"' : 'a' + i % 26);
    dumps_like_libjq(jv_string_sized(s, (int)big));
    free(s);
}

static void printer_writes_containers_as_jq(void **state)
{
    (void)state;
    dumps_like_libjq(jv_array());
    dumps_like_libjq(jv_object());
    dumps_like_libjq(jv_true());
    dumps_like_libjq(jv_false());
    dumps_like_libjq(jv_null());
    const char *docs[] = {"[[],{},[[]],{\"a\":{}}]", "{\"z\":1,\"a\":[true,false,null],\"m\":{\"\":\"\"}}",
                          "{\"k\\n\":\"v\\u0000\",\"\\u00e9\":[1.5,-0]}", NULL};
    for (int i = 0; docs[i]; i++)
        dumps_like_libjq(jv_parse(docs[i]));
    /* Key order after a delete and a re-insert is libjq's iteration order. */
    jv o = jv_object();
    o = cl_json_set_num(o, "z", 1);
    o = cl_json_set_num(o, "a", 2);
    o = cl_json_set(o, "m", jv_object());
    o = jv_object_delete(o, jv_string("a"));
    o = cl_json_set(o, "a", jv_array());
    for (int i = 0; i < 40; i++) {  /* enough keys to make libjq rehash */
        char k[16];
        snprintf(k, sizeof k, "k%d", (i * 7) % 40);
        o = cl_json_set_num(o, k, i);
    }
    dumps_like_libjq(o);
    /* Around jq's print depth limit of 256, for arrays, objects, scalars and empty leaves. */
    for (int depth = 250; depth <= 260; depth++) {
        jv a = jv_number(1), ob = jv_string("leaf"), e = jv_array(), eo = jv_object();
        for (int i = 0; i < depth; i++) {
            a = jv_array_append(jv_array(), a);
            ob = cl_json_set(jv_object(), "k", ob);
            e = jv_array_append(jv_array(), e);
            eo = cl_json_set(jv_object(), "", eo);
        }
        dumps_like_libjq(a);
        dumps_like_libjq(ob);
        dumps_like_libjq(e);
        dumps_like_libjq(eo);
    }
}

/* A small deterministic generator (xorshift64*), so that a failure is reproducible. */
static uint64_t rnd_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    rnd_state ^= rnd_state >> 12;
    rnd_state ^= rnd_state << 25;
    rnd_state ^= rnd_state >> 27;
    return rnd_state * 0x2545f4914f6cdd1dULL;
}

static jv random_string(void)
{
    /* Pieces that exercise every branch of the escaper, plus raw bytes (libjq replaces the
     * invalid ones with U+FFFD when the string is made). */
    static const char *pieces[] = {"a", "word ", "\"", "\\", "\n", "\t", "\r", "\b", "\f", "\x7f",
                                   "\x01", "\x1f", "/", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                   "\xef\xbb\xbf", "0123456789abcdef"};
    char buf[256];
    size_t n = 0, want = rnd() % 64;
    while (n < want) {
        if (rnd() % 8 == 0) {
            buf[n++] = (char)(rnd() & 0xff);
            continue;
        }
        const char *p = pieces[rnd() % (sizeof pieces / sizeof *pieces)];
        size_t len = strlen(p);
        if (n + len > sizeof buf)
            break;
        memcpy(buf + n, p, len);
        n += len;
    }
    if (rnd() % 16 == 0 && n < sizeof buf)
        buf[n++] = 0;
    return jv_string_sized(buf, (int)n);
}

static jv random_number(void)
{
    switch (rnd() % 6) {
    case 0: return jv_number((double)(int64_t)(rnd() % 2000001) - 1000000);
    case 1: return jv_number((double)(int64_t)(rnd() >> (rnd() % 64)) * (rnd() % 2 ? 1 : -1));
    case 2: {
        double d;
        uint64_t bits = rnd();
        memcpy(&d, &bits, sizeof d); /* any double: subnormals, NaNs and infinities too */
        return jv_number(d);
    }
    case 3: return jv_number((double)(rnd() % 100000) / pow(10, (double)(rnd() % 12)));
    case 4: return jv_number(pow(10, (double)(int)(rnd() % 640) - 320));
    default: return jv_number((double)(rnd() % 1000) / 7.0);
    }
}

static jv random_value(int depth)
{
    unsigned pick = (unsigned)(rnd() % (depth > 6 ? 6 : 8));
    switch (pick) {
    case 0: return jv_null();
    case 1: return jv_true();
    case 2: return jv_false();
    case 3: case 4: return random_number();
    case 5: return random_string();
    case 6: {
        jv a = jv_array();
        for (int i = (int)(rnd() % 6); i > 0; i--)
            a = jv_array_append(a, random_value(depth + 1));
        return a;
    }
    default: {
        jv o = jv_object();
        for (int i = (int)(rnd() % 6); i > 0; i--)
            o = jv_object_set(o, random_string(), random_value(depth + 1));
        if (rnd() % 4 == 0)
            o = jv_object_delete(o, random_string());
        return o;
    }
    }
}

static void printer_matches_jq_on_random_values(void **state)
{
    (void)state;
    for (int i = 0; i < 5000; i++) {
        jv v = random_value(0);
        /* The printed text also goes back through the validator and the fast parser, whose
         * 16-byte scans then meet quotes, escapes and non-ASCII at every position. */
        size_t n;
        char *text = cl_json_dump(&v, &n);
        cl_json_check c;
        assert_int_equal(cl_json_validate(text, n, &c), 0);
        jv back = cl_json_parse(text, n), ref = jv_parse_sized(text, (int)n);
        assert_true(jv_equal(jv_copy(back), ref));
        size_t m;
        char *again = cl_json_dump(&back, &m);
        assert_int_equal(m, n);
        assert_memory_equal(again, text, n);
        free(again);
        free(text);
        jv_free(back);
        dumps_like_libjq(v);
    }
    /* cl_json_write appends to what a buffer already holds. */
    cl_buf b = {0};
    cl_buf_puts(&b, "x=");
    jv v = jv_parse("{\"a\":[1,\"\\u0001\"]}");
    cl_json_write(&b, &v);
    assert_string_equal(b.p, "x={\"a\":[1,\"\\u0001\"]}");
    jv_free(v);
    free(b.p);
    /* cl_json_text: a string stays itself, anything else becomes its JSON. */
    jv t = cl_json_text(jv_string("a\"b"));
    assert_string_equal(jv_string_value(t), "a\"b");
    jv_free(t);
    t = cl_json_text(jv_parse("[17,\"x\"]"));
    assert_string_equal(jv_string_value(t), "[17,\"x\"]");
    jv_free(t);
}

/* ---- deferred strings ------------------------------------------------------------------- */

static const char *const defer_paths[] = {"completion", "extracted.document",
                                          "candidates[].futures[].extracted.document", NULL};

/* Parsing text with deferral, then printing, must give what the ordinary parse prints, also
 * after the record is changed the way cl-reward changes it; undeferring gives the ordinary
 * value.  Returns the number of stand-ins made. */
static size_t defers_transparently(const char *text, size_t len)
{
    cl_json_deferred d;
    jv v = cl_json_parse_deferring(text, len, defer_paths, &d);
    jv ref = cl_json_parse(text, len);
    assert_true(jv_is_valid(v));
    size_t wn, gn = d.n;
    char *want = cl_json_dump(&ref, &wn);
    cl_buf got = {0};
    cl_json_write_deferred(&got, &v, &d);
    assert_int_equal(got.n, wn);
    assert_memory_equal(got.p, want, wn);
    free(got.p);
    free(want);
    if (jv_get_kind(v) == JV_KIND_OBJECT) {
        jv v2 = cl_json_set(jv_copy(v), "scores", cl_json_set_num(jv_object(), "bleu", 0.25));
        jv r2 = cl_json_set(jv_copy(ref), "scores", cl_json_set_num(jv_object(), "bleu", 0.25));
        want = cl_json_dump(&r2, &wn);
        got = (cl_buf){0};
        cl_json_write_deferred(&got, &v2, &d);
        assert_int_equal(got.n, wn);
        assert_memory_equal(got.p, want, wn);
        free(got.p);
        free(want);
        jv_free(v2);
        jv_free(r2);
    }
    /* What a stand-in reads as bytes is the string itself, escapes undone. */
    static const char *const tops[][2] = {{"completion", NULL}, {"extracted", "document"}};
    for (size_t k = 0; k < 2 && jv_get_kind(v) == JV_KIND_OBJECT; k++) {
        jv a = cl_json_get(&v, tops[k][0]), r = cl_json_get(&ref, tops[k][0]);
        if (tops[k][1] && jv_get_kind(a) == JV_KIND_OBJECT && jv_get_kind(r) == JV_KIND_OBJECT) {
            jv a2 = cl_json_get(&a, tops[k][1]), r2 = cl_json_get(&r, tops[k][1]);
            jv_free(a);
            jv_free(r);
            a = a2;
            r = r2;
        }
        size_t an, rn;
        const char *ab = cl_json_bytes(&a, &d, &an), *rb = cl_json_bytes(&r, NULL, &rn);
        if (ab || rb) {
            assert_true(ab && rb);
            assert_int_equal(an, rn);
            assert_memory_equal(ab, rb, rn);
        }
        jv_free(a);
        jv_free(r);
    }
    jv back = cl_json_undefer(v, &d);
    assert_true(jv_equal(back, ref));
    cl_json_deferred_free(&d);
    return gn;
}

/* A string that needs no escape half of the time (a long one: the scan reads it by words);
 * the other half are random strings, whose escapes are jq's own once printed. */
static jv random_text(void)
{
    if (rnd() % 2)
        return random_string();
    static const char *pieces[] = {"a", "word ", "/", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "0123456789",
                                   "\"", "\n\n", "\\"};
    jv s = jv_string("");
    for (int n = (int)(rnd() % 80); n > 0; n--)
        s = jv_string_append_str(s, pieces[rnd() % (sizeof pieces / sizeof *pieces)]);
    return s;
}

static void deferred_strings_print_as_parsed(void **state)
{
    (void)state;
    static const struct { const char *text; size_t stand_ins; } cases[] = {
        {"{\"id\":\"1\",\"completion\":\"plain \xc3\xa9 \xe6\x9d\xb1\",\"messages\":[],\"extracted\":{\"document\":\"doc\"}}", 2},
        {" { \"completion\" : \"spaced\" , \"extracted\" : { \"document\" : \"\" } } ", 2},
        {"{\"completion\":\"has\\nescape\",\"extracted\":{\"document\":\"\\u00e9\"}}", 1},
        {"{\"completion\":\"raw DEL \x7f\"}", 0},
        {"{\"completion\":\"say \\\"hi\\\" now\",\"extracted\":{\"document\":\"ends in \\\\\"}}", 2},
        /* jq's own escapes qualify; others (\/, upper-case hex, \u for a named one) do not */
        {"{\"completion\":\"\\\"\\\\\\b\\f\\n\\r\\t\\u0000\\u001f\\u007f\"}", 1},
        {"{\"completion\":\"a\\/b\",\"extracted\":{\"document\":\"\\u001F\"}}", 0},
        {"{\"completion\":\"\\u000a\",\"extracted\":{\"document\":\"\\u0041\"}}", 0},
        {"{\"completion\":\"\\\"\",\"extracted\":{\"document\":\"x\\\\\"},\"id\":\"\\\"\"}", 2},
        {"{\"candidates\":[{\"futures\":[{\"extracted\":{\"document\":\"x\"}},{\"extracted\":{\"document\":\"y\"}}]},"
         "{\"futures\":[]},{\"futures\":[{\"extracted\":{\"document\":\"z\",\"code\":\"c\"}}]}]}", 3},
        {"{\"extracted.document\":\"x\",\"extracted\":{\"document.x\":\"y\",\"doc\":\"z\"},\"x\":{\"completion\":\"q\"}}", 0},
        {"{\"completion\":\"first\",\"id\":2,\"completion\":\"second\"}", 2}, /* the first stays named */
        {"{\"completion\":\"plain\",\"x\":\"\\ud83d\\ude00\"}", 0},             /* libjq parses this one */
        {"{\"completion\":{\"a\":\"b\"},\"extracted\":[\"document\"]}", 0},
        {"{\"candidates\":{\"]\":{\"futures\":[{\"extracted\":{\"document\":\"x\"}}]}}}", 0},
        {"[\"completion\",{\"completion\":\"nested in an array\"}]", 0},
        {"\"completion\"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t got = defers_transparently(cases[i].text, strlen(cases[i].text));
        if (got != cases[i].stand_ins)
            fail_msg("case %zu: %zu stand-ins, expected %zu", i, got, cases[i].stand_ins);
    }
    /* A stand-in's bytes are the string's; anything else reads a marker. */
    const char *t = cases[0].text;
    cl_json_deferred d;
    jv v = cl_json_parse_deferring(t, strlen(t), defer_paths, &d);
    jv c = cl_json_get(&v, "completion"), id = cl_json_get(&v, "id");
    size_t n;
    const char *b = cl_json_bytes(&c, &d, &n);
    assert_int_equal(n, strlen("plain \xc3\xa9 \xe6\x9d\xb1"));
    assert_memory_equal(b, "plain \xc3\xa9 \xe6\x9d\xb1", n);
    assert_string_equal(jv_string_value(c), "(deferred)");
    b = cl_json_bytes(&id, &d, &n);
    assert_int_equal(n, 1);
    assert_memory_equal(b, "1", 1);
    jv num = jv_number(3);
    assert_null(cl_json_bytes(&num, &d, &n));
    jv_free(c);
    jv_free(id);
    jv_free(v);
    cl_json_deferred_free(&d);
    /* Random records with random texts on the deferred paths, plain or not. */
    size_t made = 0;
    for (int i = 0; i < 2000; i++) {
        jv fut = cl_json_set(jv_object(), "extracted", cl_json_set(jv_object(), "document", random_text()));
        jv cand = cl_json_set(jv_object(), "futures", jv_array_append(jv_array(), fut));
        jv rec = jv_object();
        rec = cl_json_set(rec, "noise", random_value(0));
        rec = cl_json_set(rec, "completion", random_text());
        rec = cl_json_set(rec, "extracted", cl_json_set(jv_object(), "document", random_text()));
        rec = cl_json_set(rec, "candidates", jv_array_append(jv_array(), cand));
        size_t len;
        char *text = cl_json_dump(&rec, &len);
        made += defers_transparently(text, len);
        free(text);
        jv_free(rec);
    }
    assert_true(made > 1000); /* plain texts were deferred, not only passed over */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(validator_accepts_json),
        cmocka_unit_test(parse_builds_what_libjq_builds),
        cmocka_unit_test(validator_rejects_bad),
        cmocka_unit_test(validator_reports_offset_and_id),
        cmocka_unit_test(deep_nesting_is_refused),
        cmocka_unit_test(accessors_borrow),
        cmocka_unit_test(filters_run_and_report),
        cmocka_unit_test(printer_writes_numbers_as_jq),
        cmocka_unit_test(printer_escapes_strings_as_jq),
        cmocka_unit_test(printer_writes_containers_as_jq),
        cmocka_unit_test(printer_matches_jq_on_random_values),
        cmocka_unit_test(deferred_strings_print_as_parsed),
    };
    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
