/* Unit tests for lib/model/peft: names, scale, config parsing and a directory round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/peft.h"

static void names_and_scale_follow_peft(void **state)
{
    (void)state;
    char b[160];
    assert_int_equal(cl_peft_tensor_name(b, sizeof b, 3, "v_proj", 'A'), 0);
    assert_string_equal(b, "base_model.model.model.layers.3.self_attn.v_proj.lora_A.weight");
    assert_int_equal(cl_peft_tensor_name(b, sizeof b, 0, "up_proj", 'B'), 0);
    assert_string_equal(b, "base_model.model.model.layers.0.mlp.up_proj.lora_B.weight");
    assert_int_equal(cl_peft_tensor_name(b, sizeof b, 0, "embed_tokens", 'A'), -1);
    cl_peft_config c = {.r = 16, .alpha = 32};
    assert_true(cl_peft_scale(&c) == 2.0);
    c.use_rslora = 1;
    assert_true(fabs(cl_peft_scale(&c) - 8.0) < 1e-12);
}

static void config_refusals_name_the_key(void **state)
{
    (void)state;
    struct { const char *json, *want; } cases[] = {
        {"{\"peft_type\":\"IA3\",\"r\":8}", "peft_type"},
        {"{\"peft_type\":\"LORA\",\"r\":0,\"target_modules\":[\"q_proj\"]}", "r:"},
        {"{\"peft_type\":\"LORA\",\"r\":8,\"target_modules\":\"q_proj|v_proj\"}", "target_modules"},
        {"{\"peft_type\":\"LORA\",\"r\":8,\"target_modules\":[\"lm_head\"]}", "target_modules[0]"},
        {"{\"peft_type\":\"LORA\",\"r\":8,\"bias\":\"all\",\"target_modules\":[\"q_proj\"]}", "bias"},
        {"{\"peft_type\":\"LORA\",\"r\":8,\"rank_pattern\":{\"q_proj\":4},\"target_modules\":[\"q_proj\"]}", "rank_pattern"},
        {"{\"peft_type\":\"LORA\",\"r\":8,\"modules_to_save\":[\"lm_head\"],\"target_modules\":[\"q_proj\"]}", "modules_to_save"},
        {"{\"peft_type\":\"LORA\",", "byte"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cl_peft_config c;
        cl_err e = {0};
        assert_int_equal(cl_peft_config_parse(cases[i].json, strlen(cases[i].json), "cfg", &c, &e), -1);
        if (!strstr(e.msg, cases[i].want))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, e.msg, cases[i].want);
    }
}

static void an_adapter_directory_round_trips(void **state)
{
    (void)state;
    char dir[] = "/tmp/cl-peft.XXXXXX";
    assert_non_null(mkdtemp(dir));
    cl_peft_config c = {.r = 2, .alpha = 16, .dropout = 0.1, .gaussian_init = 1, .n_targets = 2};
    strcpy(c.targets[0], "q_proj");
    strcpy(c.targets[1], "down_proj");
    strcpy(c.base_model, "meta-llama/Llama-3.2-1B-Instruct");
    float A1[2 * 4], B1[6 * 2], A2[2 * 6], B2[4 * 2];
    for (int i = 0; i < 12; i++) {
        if (i < 8) A1[i] = (float)i, B2[i] = (float)-i;
        B1[i] = 0.5f * (float)i;
        A2[i] = 2.0f * (float)i;
    }
    cl_peft_lora l[] = {{1, "down_proj", 6, 4, CL_ST_F32, A2, B2}, {0, "q_proj", 4, 6, CL_ST_F32, A1, B1}};
    cl_err e = {0};
    assert_int_equal(cl_peft_write(dir, &c, l, 2, &e), 0);
    cl_peft *p = cl_peft_open(dir, &e);
    assert_non_null(p);
    const cl_peft_config *rc = cl_peft_config_of(p);
    assert_int_equal(rc->r, 2);
    assert_true(rc->alpha == 16);
    assert_true(rc->gaussian_init);
    assert_string_equal(rc->base_model, "meta-llama/Llama-3.2-1B-Instruct");
    assert_int_equal(cl_peft_count(p), 2);
    const cl_peft_lora *x = cl_peft_at(p, 0); /* ordered by layer */
    assert_string_equal(x->module, "q_proj");
    assert_int_equal(x->in, 4);
    assert_int_equal(x->out, 6);
    assert_memory_equal(x->A, A1, sizeof A1);
    assert_memory_equal(x->B, B1, sizeof B1);
    assert_memory_equal(cl_peft_at(p, 1)->B, B2, sizeof B2);
    cl_peft_close(p);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_and_scale_follow_peft),
        cmocka_unit_test(config_refusals_name_the_key),
        cmocka_unit_test(an_adapter_directory_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
