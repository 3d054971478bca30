/* Unit tests for lib/collab/conv: transcript rendering, turn counting, the marker, and the seed,
 * state and branch accessors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "collab/conv.h"
#include "core/json.h"

static jv parse(const char *s)
{
    jv v = jv_parse(s);
    assert_true(jv_is_valid(v));
    return v;
}

static void render_drops_system_and_capitalises_roles(void **state)
{
    (void)state;
    jv m = parse("[{\"role\":\"system\",\"content\":\"secret rules\"},"
                 "{\"role\":\"user\",\"content\":\"hi\\nthere\"},"
                 "{\"role\":\"assistant\",\"content\":\"Hello!\"}]");
    char *t = cl_conv_render(&m);
    assert_string_equal(t, "**User**: hi\nthere\n**Assistant**: Hello!");
    free(t);
    jv empty = jv_array();
    t = cl_conv_render(&empty);
    assert_string_equal(t, "");
    free(t);
    jv_free(empty);
    jv_free(m);
}

static void append_counts_turns_and_last_role(void **state)
{
    (void)state;
    jv m = cl_conv_append(jv_null(), "system", "s");
    assert_null(cl_conv_last_role(&m));
    m = cl_conv_append(m, "user", "u1");
    m = cl_conv_append(m, "assistant", "a1");
    m = cl_conv_append(m, "user", "u2 " CL_TERMINATE_MARKER);
    assert_int_equal(cl_conv_turns(&m), 1);
    assert_int_equal(cl_conv_count(&m, NULL), 3);
    assert_int_equal(cl_conv_count(&m, "user"), 2);
    assert_string_equal(cl_conv_last_role(&m), "user");
    assert_string_equal(cl_conv_content(&m, -1), "u2 " CL_TERMINATE_MARKER);
    assert_string_equal(cl_conv_content(&m, 1), "u1");
    assert_null(cl_conv_content(&m, 9));
    assert_true(cl_conv_has_marker(cl_conv_content(&m, -1), CL_TERMINATE_MARKER));
    assert_false(cl_conv_has_marker(cl_conv_content(&m, 1), CL_TERMINATE_MARKER));
    assert_false(cl_conv_has_marker("x", ""));
    assert_false(cl_conv_has_marker(NULL, "x"));
    jv_free(m);
}

static void seed_accessors_accept_official_names(void **state)
{
    (void)state;
    jv a = parse("{\"prompt\":\"P\",\"completion\":\"C\",\"task_desc\":\"math\"}");
    jv b = parse("{\"single_turn_prompt\":\"SP\",\"single_turn_completion\":\"SC\"}");
    assert_string_equal(cl_seed_prompt(&a), "P");
    assert_string_equal(cl_seed_completion(&a), "C");
    assert_string_equal(cl_seed_task_desc(&a), "math");
    assert_string_equal(cl_seed_prompt(&b), "SP");
    assert_string_equal(cl_seed_completion(&b), "SC");
    assert_null(cl_seed_task_desc(&b));
    jv_free(a);
    jv_free(b);
}

static void state_messages_turn_and_done(void **state)
{
    (void)state;
    jv r = parse("{\"id\":\"x\",\"keep\":1}");
    jv m = cl_state_messages(&r);
    assert_int_equal(jv_array_length(jv_copy(m)), 0);
    m = cl_conv_append(cl_conv_append(m, "user", "u"), "assistant", "a");
    r = cl_state_set_messages(r, m);
    assert_int_equal((int)cl_json_num(&r, "turn", -1), 1);
    assert_false(cl_state_done(&r));
    r = cl_state_finish(r, "max_turns");
    assert_true(cl_state_done(&r));
    assert_string_equal(cl_json_str(&r, "done_reason"), "max_turns");
    assert_int_equal((int)cl_json_num(&r, "keep", 0), 1);
    jv_free(r);
}

static void branch_accessors_walk_candidates_and_futures(void **state)
{
    (void)state;
    jv r = parse("{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],"
                 "\"candidates\":[{\"id\":\"c0\",\"content\":\"A0\",\"futures\":["
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"u\"},{\"role\":\"assistant\",\"content\":\"a\"}],\"terminated\":false},"
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"bye\"}],\"terminated\":true}]},"
                 "{\"id\":\"c1\",\"content\":\"A1\",\"futures\":[]}]}");
    assert_int_equal(cl_branch_ncandidates(&r), 2);
    assert_int_equal(cl_branch_nfutures(&r, 0), 2);
    assert_int_equal(cl_branch_nfutures(&r, 1), 0);
    assert_int_equal(cl_branch_nfutures(&r, 7), 0);
    jv conv = cl_branch_future_conversation(&r, 0, 1);
    char *t = cl_conv_render(&conv);
    assert_string_equal(t, "**User**: q\n**Assistant**: A0\n**User**: bye");
    free(t);
    jv_free(conv);
    conv = cl_branch_future_conversation(&r, 1, 0);
    assert_false(jv_is_valid(conv));
    jv_free(conv);
    jv f = cl_branch_future(&r, 0, 0);
    f = cl_json_set(f, "scores", parse("{\"interactivity\":1}"));
    r = cl_branch_set_future(r, 0, 0, f);
    r = cl_branch_set_future(r, 0, 5, jv_object()); /* out of range: unchanged */
    jv g = cl_branch_future(&r, 0, 0);
    jv s = cl_json_get(&g, "scores");
    assert_true(cl_json_num(&s, "interactivity", 0) == 1);
    assert_int_equal(cl_branch_nfutures(&r, 0), 2);
    jv_free(s);
    jv_free(g);
    jv_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(render_drops_system_and_capitalises_roles),
        cmocka_unit_test(append_counts_turns_and_last_role),
        cmocka_unit_test(seed_accessors_accept_official_names),
        cmocka_unit_test(state_messages_turn_and_done),
        cmocka_unit_test(branch_accessors_walk_candidates_and_futures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
