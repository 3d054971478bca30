/* Unit tests for lib/collab/lenient_json: the corpus of ugly model outputs in tests/fixtures/lenient
 * (NAME.txt with NAME.json = the object it must give, or NAME.fail = it must be refused), plus
 * the number reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collab/lenient_json.h"
#include "core/files.h"

static const char *corpus_dir(void)
{
    const char *d = getenv("CL_LENIENT_CORPUS");
    return d ? d : "tests/fixtures/lenient";
}

static void corpus_parses_as_expected(void **state)
{
    (void)state;
    DIR *d = opendir(corpus_dir());
    assert_non_null(d);
    int cases = 0, refusals = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t nl = strlen(de->d_name);
        if (nl < 5 || strcmp(de->d_name + nl - 4, ".txt"))
            continue;
        char path[1024], want[1024], fail[1024];
        snprintf(path, sizeof path, "%s/%s", corpus_dir(), de->d_name);
        snprintf(want, sizeof want, "%s/%.*s.json", corpus_dir(), (int)(nl - 4), de->d_name);
        snprintf(fail, sizeof fail, "%s/%.*s.fail", corpus_dir(), (int)(nl - 4), de->d_name);
        size_t len;
        char *text = cl_file_read(path, &len, NULL);
        assert_non_null(text);
        jv got = cl_lenient_json(text, len);
        size_t wl;
        char *wtext = cl_file_read(want, &wl, NULL);
        if (wtext) {
            jv w = jv_parse(wtext);
            assert_true(jv_is_valid(w));
            if (!jv_is_valid(got) || !jv_equal(jv_copy(got), jv_copy(w))) {
                jv s = jv_is_valid(got) ? jv_dump_string(jv_copy(got), 0) : jv_invalid_get_msg(jv_copy(got));
                print_error("%s: got %s\n", de->d_name, jv_get_kind(s) == JV_KIND_STRING ? jv_string_value(s) : "?");
                jv_free(s);
                fail();
            }
            jv_free(w);
            free(wtext);
        } else {
            assert_int_equal(access(fail, F_OK), 0); /* every case states its expectation */
            if (jv_is_valid(got)) {
                print_error("%s: should have been refused\n", de->d_name);
                fail();
            }
            refusals++;
        }
        jv_free(got);
        free(text);
        cases++;
    }
    closedir(d);
    assert_true(cases >= 15);
    assert_true(refusals >= 3);
}

static void strings_stay_strings_and_numbers_read_both_ways(void **state)
{
    (void)state;
    const char *t = "{\"a\": \"0.5\", \"b\": 2, \"c\": \"high\", \"d\": \" 3 \", \"e\": \"inf\"}";
    jv o = cl_lenient_json(t, strlen(t));
    double x = -1;
    assert_int_equal(cl_lenient_num(&o, "a", &x), 0);
    assert_true(x == 0.5);
    assert_int_equal(cl_lenient_num(&o, "b", &x), 0);
    assert_true(x == 2);
    assert_int_equal(cl_lenient_num(&o, "d", &x), 0);
    assert_true(x == 3);
    assert_int_equal(cl_lenient_num(&o, "c", &x), -1);
    assert_int_equal(cl_lenient_num(&o, "e", &x), -1);
    assert_int_equal(cl_lenient_num(&o, "missing", &x), -1);
    jv a = jv_object_get(jv_copy(o), jv_string("a"));
    assert_int_equal(jv_get_kind(a), JV_KIND_STRING);
    jv_free(a);
    jv_free(o);
}

static void length_bounds_the_scan_and_depth_is_limited(void **state)
{
    (void)state;
    /* Only the first len bytes count: the closing brace lies beyond them. */
    const char *t = "{\"a\": 1}";
    jv o = cl_lenient_json(t, 7);
    assert_false(jv_is_valid(o));
    jv_free(o);
    size_t n = 100000;
    char *deep = malloc(n + 1);
    memset(deep, '[', n);
    memcpy(deep, "{\"a\": ", 6);
    deep[n] = 0;
    o = cl_lenient_json(deep, n); /* must neither recurse without bound nor succeed */
    assert_false(jv_is_valid(o));
    jv_free(o);
    free(deep);
    o = cl_lenient_json(NULL, 0);
    assert_false(jv_is_valid(o));
    jv_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(corpus_parses_as_expected),
        cmocka_unit_test(strings_stay_strings_and_numbers_read_both_ways),
        cmocka_unit_test(length_bounds_the_scan_and_depth_is_limited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
