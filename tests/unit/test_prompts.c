/* Unit tests for lib/collab/prompts: built-in texts, --prompt-dir override, {{var}} rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collab/prompts.h"

static void builtin_prompt_is_compiled_in(void **state)
{
    (void)state;
    cl_err e = {0};
    char *s = cl_prompt_load(NULL, "collabllm_system", &e);
    assert_non_null(s);
    assert_non_null(strstr(s, "highly interactive assistant"));
    free(s);
    assert_null(cl_prompt_load(NULL, "no_such_prompt", &e));
    assert_int_equal(e.code, CL_EXIT_CONFIG);
}

static void prompt_dir_overrides_builtin(void **state)
{
    (void)state;
    char dir[] = "/tmp/cl-prompts-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/collabllm_system.txt", dir);
    FILE *f = fopen(path, "w");
    fputs("mine {{x}}", f);
    fclose(f);
    cl_err e = {0};
    char *s = cl_prompt_load(dir, "collabllm_system", &e);
    assert_string_equal(s, "mine {{x}}");
    free(s);
    /* A prompt the directory lacks falls back to the built-in one. */
    unlink(path);
    s = cl_prompt_load(dir, "collabllm_system", &e);
    assert_non_null(strstr(s, "interactive"));
    free(s);
    rmdir(dir);
}

static void prompt_sets_name_their_own_assistant_prompts(void **state)
{
    (void)state;
    cl_prompt_set s;
    cl_err e = {0};
    assert_int_equal(cl_prompt_set_parse("cl", &s, &e), 0);
    assert_string_equal(cl_prompt_in_set(s, "proact_assistant"), "proact_assistant_cl");
    assert_string_equal(cl_prompt_in_set(s, "collabllm_system"), "collabllm_system_cl");
    assert_string_equal(cl_prompt_in_set(s, "user_simulator"), "user_simulator"); /* shared */
    assert_string_equal(cl_prompt_set_name(s), "cl");
    assert_int_equal(cl_prompt_set_parse("official", &s, &e), 0);
    assert_string_equal(cl_prompt_in_set(s, "proact_assistant"), "proact_assistant");
    assert_int_equal(cl_prompt_set_parse("paper", &s, &e), -1);
    /* The official behaviour: clarify whenever unclear, several turns; ours: act over asking. */
    char *off = cl_prompt_load(NULL, "proact_assistant", &e), *cl = cl_prompt_load(NULL, "proact_assistant_cl", &e);
    assert_non_null(strstr(off, "at least three turns"));
    assert_non_null(strstr(off, "ask for them instead of"));
    assert_null(strstr(cl, "three turns"));
    free(off);
    free(cl);
    char *sys = cl_prompt_load(NULL, "collabllm_system_cl", &e);
    assert_non_null(strstr(sys, "every token costs the user time"));
    free(sys);
}

static void render_substitutes_and_rejects_unknown(void **state)
{
    (void)state;
    cl_err e = {0};
    jv vars = jv_parse("{\"goal\":\"write a poem\",\"n\":3,\"list\":[1,2]}");
    char *s = cl_prompt_render("Goal: {{goal}}; n={{n}} {{list}} {{ unterminated", &vars, &e);
    assert_string_equal(s, "Goal: write a poem; n=3 [1,2] {{ unterminated");
    free(s);
    assert_null(cl_prompt_render("{{goal}} {{missing}}", &vars, &e));
    assert_non_null(strstr(e.msg, "{{missing}}"));
    jv_free(vars);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(builtin_prompt_is_compiled_in),
        cmocka_unit_test(prompt_dir_overrides_builtin),
        cmocka_unit_test(prompt_sets_name_their_own_assistant_prompts),
        cmocka_unit_test(render_substitutes_and_rejects_unknown),
    };
    return cmocka_run_group_tests_name("prompts", tests, NULL, NULL);
}
