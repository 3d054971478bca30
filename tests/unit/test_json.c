/* Unit tests for lib/json: the validator, accessors and filters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "json.h"

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
    };
    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
