/* Unit tests for lib/collab/schema: which shapes fit, and how the first misfit is named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "collab/schema.h"

/* The message for text under schema s, or "" when the record fits. */
static const char *check(const char *text, cl_schema s)
{
    static char why[512];
    jv v = jv_parse(text);
    assert_true(jv_is_valid(v));
    int rc = cl_schema_check(&v, s, why, sizeof why);
    jv_free(v);
    if (rc == 0)
        why[0] = 0;
    else
        assert_int_equal(rc, -1);
    return why;
}

static void documented_shapes_fit(void **state)
{
    (void)state;
    assert_string_equal(check("{}", CL_SCHEMA_STATE), "");
    assert_string_equal(check("{\"id\":7,\"prompt\":\"p\",\"completion\":{\"test\":\"t\"},\"metadata\":null,"
                              "\"messages\":[{\"role\":\"user\",\"content\":\"hi\",\"usage\":{}}],"
                              "\"done\":false,\"candidates\":[{\"id\":\"c0\",\"futures\":[{\"messages\":[],"
                              "\"terminated\":true,\"R\":0.5}]}],\"unknown\":[1,{}]}",
                              CL_SCHEMA_STATE),
                        "");
    assert_string_equal(check("{\"prompt\":[],\"completion\":\"x\",\"sessions\":[[]],\"rewards\":null}",
                              CL_SCHEMA_ROW),
                        "");
}

static void misfits_are_named_by_path(void **state)
{
    (void)state;
    assert_string_equal(check("{\"messages\":\"hello\"}", CL_SCHEMA_STATE),
                        "messages: a string where an array belongs");
    assert_string_equal(check("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\"}]}",
                              CL_SCHEMA_STATE),
                        "messages[1].content: missing");
    assert_string_equal(check("{\"candidates\":[{\"futures\":[{},{\"messages\":[{\"role\":5,\"content\":\"x\"}]}]}]}",
                              CL_SCHEMA_STATE),
                        "candidates[0].futures[1].messages[0].role: a number where a string belongs");
    assert_string_equal(check("{\"done\":\"yes\"}", CL_SCHEMA_STATE), "done: a string where a boolean belongs");
    assert_string_equal(check("{\"completion\":[1]}", CL_SCHEMA_STATE),
                        "completion: an array where a string or an object belongs");
    assert_string_equal(check("{\"completion\":\"x\"}", CL_SCHEMA_ROW), "prompt: missing");
    assert_string_equal(check("{\"prompt\":[],\"completion\":\"x\",\"sessions\":[[null]]}", CL_SCHEMA_ROW),
                        "sessions[0][0]: null where an object belongs");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(documented_shapes_fit),
        cmocka_unit_test(misfits_are_named_by_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
