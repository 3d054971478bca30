/* The inference engine: KV-cache prefill (chunked) and decode give the training forward's
 * logits at every position, adapters included; the sampler's greedy, top-k, top-p and seeded
 * temperature modes; stop tokens and context overflow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/engine.h"
#include "model/lora.h"

enum { V = 41, T = 70 };

static cl_llama *tiny(void)
{
    cl_llama_config c = {.vocab = V, .hidden = 32, .inter = 48, .layers = 2, .heads = 4, .kv_heads = 2,
                         .head_dim = 8, .max_pos = 128, .rms_eps = 1e-6, .rope_theta = 1e6, .qkv_bias = 1,
                         .bos_id = -1};
    strcpy(c.model_type, "qwen2");
    cl_err e = {0};
    cl_llama *m = cl_llama_new(&c, CL_F32, 0, &e);
    cl_lora_config lc = {.rank = 2, .alpha = 4, .targets = (1u << CL_Q) | (1u << CL_DOWN), .seed = 5};
    assert_int_equal(cl_lora_add(m, &lc, &e), 0);
    cl_llama_init_uniform(m, 8, 1);
    return m;
}

static void cached_decoding_equals_the_full_forward_at_every_position(void **s)
{
    (void)s;
    cl_llama *m = tiny();
    int ids[T];
    for (int i = 0; i < T; i++) ids[i] = (i * 13 + 5) % V;
    cl_err e = {0};
    assert_int_equal(cl_llama_forward(m, ids, NULL, NULL, 1, T, &e), 0);
    float *full = malloc(sizeof(float) * T * V), lg[V];
    cl_llama_logits(m, full);
    cl_engine *g = cl_engine_new(m, T, &e);
    assert_non_null(g);
    /* 67 tokens in one feed: a 64-token chunk and a 3-token chunk */
    assert_int_equal(cl_engine_feed(g, ids, 67, lg, &e), 0);
    for (int j = 0; j < V; j++) assert_true(fabsf(lg[j] - full[66 * V + j]) < 1e-4f);
    for (int i = 67; i < T; i++) {
        assert_int_equal(cl_engine_feed(g, &ids[i], 1, lg, &e), 0);
        for (int j = 0; j < V; j++) assert_true(fabsf(lg[j] - full[(size_t)i * V + j]) < 1e-4f);
    }
    assert_int_equal(cl_engine_len(g), T);
    /* token by token from an empty cache */
    cl_engine_reset(g);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(cl_engine_feed(g, &ids[i], 1, lg, &e), 0);
        for (int j = 0; j < V; j++) assert_true(fabsf(lg[j] - full[(size_t)i * V + j]) < 1e-4f);
    }
    free(full);
    cl_engine_free(g);
    cl_llama_free(m);
}

static void sampler_modes_behave(void **s)
{
    (void)s;
    float lg[5] = {0.5f, 2.0f, 1.9f, -1.0f, 0.0f}, p[5];
    int idx[5];
    uint64_t rng = 1;
    cl_sampler greedy = {0}, k1 = {.temperature = 1, .top_k = 1}, tp = {.temperature = 1, .top_p = 0.01};
    assert_int_equal(cl_sample(lg, 5, &greedy, &rng, p, idx), 1);
    assert_int_equal(cl_sample(lg, 5, &k1, &rng, p, idx), 1);
    assert_int_equal(cl_sample(lg, 5, &tp, &rng, p, idx), 1);
    /* top-k 2 only ever yields the two best; temperature sampling follows softmax */
    cl_sampler k2 = {.temperature = 1, .top_k = 2}, t1 = {.temperature = 1};
    int count[5] = {0};
    for (int i = 0; i < 4000; i++) {
        int a = cl_sample(lg, 5, &k2, &rng, p, idx);
        assert_true(a == 1 || a == 2);
        count[cl_sample(lg, 5, &t1, &rng, p, idx)]++;
    }
    double z = 0;
    for (int i = 0; i < 5; i++) z += exp(lg[i]);
    for (int i = 0; i < 5; i++) assert_true(fabs(count[i] / 4000.0 - exp(lg[i]) / z) < 0.03);
    /* the same seed gives the same draws */
    uint64_t r1 = 77, r2 = 77;
    for (int i = 0; i < 20; i++) assert_int_equal(cl_sample(lg, 5, &t1, &r1, p, idx), cl_sample(lg, 5, &t1, &r2, p, idx));
}

static void generation_stops_at_stop_tokens_and_refuses_overflow(void **s)
{
    (void)s;
    cl_llama *m = tiny();
    cl_err e = {0};
    cl_engine *g = cl_engine_new(m, 16, &e);
    int prompt[3] = {1, 2, 3}, out[16], out2[16];
    cl_sampler greedy = {0};
    int n = cl_engine_generate(g, prompt, 3, 8, NULL, 0, &greedy, 0, out, &e);
    assert_int_equal(n, 8);
    cl_engine_reset(g);
    int n2 = cl_engine_generate(g, prompt, 3, 8, &out[2], 1, &greedy, 0, out2, &e);
    assert_true(n2 >= 1 && n2 <= 3 && out2[n2 - 1] == out[2]); /* stopped at the first occurrence */
    cl_engine_reset(g);
    int many[17] = {0};
    assert_int_equal(cl_engine_feed(g, many, 17, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "context"));
    int bad = V;
    assert_int_equal(cl_engine_feed(g, &bad, 1, NULL, &e), -1);
    assert_int_equal(e.code, CL_EXIT_DATAERR);
    cl_engine_free(g);
    cl_llama_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cached_decoding_equals_the_full_forward_at_every_position),
        cmocka_unit_test(sampler_modes_behave),
        cmocka_unit_test(generation_stops_at_stop_tokens_and_refuses_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
