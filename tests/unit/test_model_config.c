/* config.json parsing for the published Llama-3.2, Qwen2.5, SmolLM and TinyLlama shapes, the
 * llama3 RoPE remap, and clear errors naming the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/config.h"

static int parse(cl_llama_config *c, const char *json, cl_err *e)
{
    return cl_config_parse(c, json, strlen(json), "config.json", e);
}

static const char *LLAMA32_1B =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,\"bos_token_id\":128000,"
    "\"eos_token_id\":[128001,128008,128009],\"head_dim\":64,\"hidden_act\":\"silu\",\"hidden_size\":2048,"
    "\"intermediate_size\":8192,\"max_position_embeddings\":131072,\"mlp_bias\":false,\"model_type\":\"llama\","
    "\"num_attention_heads\":32,\"num_hidden_layers\":16,\"num_key_value_heads\":8,\"rms_norm_eps\":1e-05,"
    "\"rope_scaling\":{\"factor\":32.0,\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"
    "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},\"rope_theta\":500000.0,"
    "\"tie_word_embeddings\":true,\"torch_dtype\":\"bfloat16\",\"vocab_size\":128256}";

static void llama32_config_reads_every_field(void **s)
{
    (void)s;
    cl_llama_config c;
    cl_err e = {0};
    assert_int_equal(parse(&c, LLAMA32_1B, &e), 0);
    assert_string_equal(c.model_type, "llama");
    assert_int_equal(c.vocab, 128256);
    assert_int_equal(c.hidden, 2048);
    assert_int_equal(c.inter, 8192);
    assert_int_equal(c.layers, 16);
    assert_int_equal(c.heads, 32);
    assert_int_equal(c.kv_heads, 8);
    assert_int_equal(c.head_dim, 64);
    assert_true(c.rms_eps == 1e-5 && c.rope_theta == 500000.0);
    assert_true(c.rope_llama3 && c.rope_factor == 32.0 && c.rope_orig_max == 8192);
    assert_true(c.tie_embeddings && !c.qkv_bias && !c.o_bias && !c.mlp_bias);
    assert_int_equal(c.bos_id, 128000);
    assert_int_equal(c.n_eos, 3);
    assert_int_equal(c.eos_ids[2], 128009);
    assert_int_equal(cl_config_params(&c), 1235814400); /* Llama-3.2-1B's published count */
}

static void llama3_rope_scaling_keeps_high_and_slows_low_frequencies(void **s)
{
    (void)s;
    cl_llama_config c;
    cl_err e = {0};
    assert_int_equal(parse(&c, LLAMA32_1B, &e), 0);
    double f[32];
    cl_rope_inv_freq(&c, f);
    assert_true(f[0] == 1.0);                                     /* wavelength 6.3 < 2048: kept */
    double base31 = pow(500000.0, -62.0 / 64);
    assert_true(fabs(f[31] - base31 / 32) < 1e-18);               /* wavelength > 8192: / factor */
    for (int i = 1; i < 32; i++) assert_true(f[i] < f[i - 1]);    /* the blend stays monotonic */
    c.rope_llama3 = 0;
    double g[32];
    cl_rope_inv_freq(&c, g);
    assert_true(fabs(g[31] - base31) < 1e-18 && g[5] == f[5]);
}

static void qwen2_config_implies_qkv_bias_and_head_dim(void **s)
{
    (void)s;
    cl_llama_config c;
    cl_err e = {0};
    const char *qwen = "{\"architectures\":[\"Qwen2ForCausalLM\"],\"bos_token_id\":151643,\"eos_token_id\":151645,"
                       "\"hidden_act\":\"silu\",\"hidden_size\":896,\"intermediate_size\":4864,"
                       "\"max_position_embeddings\":32768,\"max_window_layers\":21,\"model_type\":\"qwen2\","
                       "\"num_attention_heads\":14,\"num_hidden_layers\":24,\"num_key_value_heads\":2,"
                       "\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0,\"sliding_window\":32768,"
                       "\"tie_word_embeddings\":true,\"use_sliding_window\":false,\"vocab_size\":151936}";
    assert_int_equal(parse(&c, qwen, &e), 0);
    assert_int_equal(c.head_dim, 64);
    assert_true(c.qkv_bias && !c.o_bias && !c.mlp_bias && c.tie_embeddings);
    assert_int_equal(c.n_eos, 1);
    assert_int_equal(c.eos_ids[0], 151645);
    assert_int_equal(cl_config_params(&c), 494032768); /* Qwen2.5-0.5B's published count */
}

static void smollm_and_tinyllama_shapes_give_their_parameter_counts(void **s)
{
    (void)s;
    cl_llama_config c;
    cl_err e = {0};
    assert_int_equal(parse(&c, "{\"model_type\":\"llama\",\"hidden_size\":576,\"intermediate_size\":1536,"
                               "\"num_hidden_layers\":30,\"num_attention_heads\":9,\"num_key_value_heads\":3,"
                               "\"vocab_size\":49152,\"tie_word_embeddings\":true,\"rms_norm_eps\":1e-05}", &e), 0);
    assert_int_equal(cl_config_params(&c), 134515008);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(parse(&c, "{\"model_type\":\"llama\",\"hidden_size\":2048,\"intermediate_size\":5632,"
                               "\"num_hidden_layers\":22,\"num_attention_heads\":32,\"num_key_value_heads\":4,"
                               "\"vocab_size\":32000,\"tie_word_embeddings\":false,\"rms_norm_eps\":1e-05}", &e), 0);
    assert_int_equal(cl_config_params(&c), 1100048384);
    assert_false(c.tie_embeddings);
    assert_true(c.rope_theta == 10000.0); /* HF default when absent */
}

static void bad_configs_are_refused_naming_the_field(void **s)
{
    (void)s;
    static const struct { const char *json, *msg; } bad[] = {
        {"{\"model_type\":\"llama\",\"intermediate_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
         "\"vocab_size\":9}", "missing field \"hidden_size\""},
        {"{\"model_type\":\"gpt2\"}", "model_type \"gpt2\" is not supported"},
        {"{\"model_type\":\"llama\",\"vocab_size\":9,\"hidden_size\":\"big\"}", "field \"hidden_size\" must be a non-negative integer"},
        {"{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"num_key_value_heads\":3,\"vocab_size\":9}", "not a multiple of num_key_value_heads"},
        {"{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2,\"vocab_size\":9,\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}",
         "rope_scaling type \"yarn\" is not supported"},
        {"{\"model_type\":\"llama\",\"hidden_act\":\"gelu\"}", "hidden_act \"gelu\" is not supported"},
        {"[1,2]", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cl_llama_config c;
        cl_err e = {0};
        assert_int_equal(parse(&c, bad[i].json, &e), -1);
        assert_int_equal(e.code, CL_EXIT_CONFIG);
        if (!strstr(e.msg, bad[i].msg)) fail_msg("message \"%s\" lacks \"%s\"", e.msg, bad[i].msg);
        assert_non_null(strstr(e.msg, "config.json"));
    }
}

static void a_missing_file_is_a_noinput_error(void **s)
{
    (void)s;
    cl_llama_config c;
    cl_err e = {0};
    assert_int_equal(cl_config_load(&c, "/nonexistent/config.json", &e), -1);
    assert_int_equal(e.code, CL_EXIT_NOINPUT);
    assert_non_null(strstr(e.msg, "/nonexistent/config.json"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama32_config_reads_every_field),
        cmocka_unit_test(llama3_rope_scaling_keeps_high_and_slows_low_frequencies),
        cmocka_unit_test(qwen2_config_implies_qkv_bias_and_head_dim),
        cmocka_unit_test(smollm_and_tinyllama_shapes_give_their_parameter_counts),
        cmocka_unit_test(bad_configs_are_refused_naming_the_field),
        cmocka_unit_test(a_missing_file_is_a_noinput_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
