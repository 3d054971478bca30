/* Unit tests for lib/model/weights: a model's tensors and adapters survive the round trip
 * through a (sharded) safetensors checkpoint and a PEFT directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/lora.h"
#include "model/weights.h"

static const char cfg_json[] =
    "{\"model_type\":\"qwen2\",\"vocab_size\":50,\"hidden_size\":16,\"intermediate_size\":32,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
    "\"hidden_act\":\"silu\",\"max_position_embeddings\":64,\"rms_norm_eps\":1e-6,"
    "\"rope_theta\":1000000,\"tie_word_embeddings\":true}";

static cl_llama *model(cl_dtype d)
{
    cl_llama_config c;
    cl_err e = {0};
    assert_int_equal(cl_config_parse(&c, cfg_json, strlen(cfg_json), "cfg", &e), 0);
    cl_llama *m = cl_llama_new(&c, d, 0, &e);
    assert_non_null(m);
    return m;
}

static void remove_dir(const char *dir)
{
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void same_tensors(cl_llama *a, cl_llama *b)
{
    int na, nb;
    cl_tensor *ta = cl_llama_tensors(a, &na), *tb = cl_llama_tensors(b, &nb);
    assert_int_equal(na, nb);
    for (int i = 0; i < na; i++)
        assert_memory_equal(ta[i].data, tb[i].data, (size_t)ta[i].numel * (ta[i].dtype == CL_BF16 ? 2 : 4));
}

static void a_checkpoint_round_trips_in_f32_and_bf16(void **state)
{
    (void)state;
    for (int d = 0; d < 2; d++) {
        char dir[] = "/tmp/cl-weights.XXXXXX";
        assert_non_null(mkdtemp(dir));
        cl_llama *a = model(d ? CL_BF16 : CL_F32), *b = model(d ? CL_BF16 : CL_F32);
        cl_llama_init_uniform(a, 7, 0);
        cl_err e = {0};
        assert_int_equal(cl_weights_save(a, dir, d ? 4000 : 0, &e), 0);
        assert_int_equal(cl_weights_load(b, dir, &e), 0);
        same_tensors(a, b);
        cl_llama_free(b);
        remove_dir(dir);
        cl_llama_free(a);
    }
}

/* A frozen base is used where the file is mapped (no second copy); writing into it, as merging
 * adapters does, changes the process's pages only, never the file.  A trainable base is copied. */
static void a_frozen_base_is_used_in_place_and_writes_stay_private(void **state)
{
    (void)state;
    char dir[] = "/tmp/cl-weights.XXXXXX";
    assert_non_null(mkdtemp(dir));
    cl_llama *a = model(CL_F32), *b = model(CL_F32), *c = model(CL_F32);
    cl_llama_init_uniform(a, 5, 0);
    cl_err e = {0};
    assert_int_equal(cl_weights_save(a, dir, 0, &e), 0);
    assert_int_equal(cl_weights_load(b, dir, &e), 0);
    assert_non_null(b->mapped);
    int n;
    cl_tensor *t = cl_llama_tensors(b, &n);
    size_t arena = 0;
    for (int i = 0; i < n; i++) arena += ((size_t)t[i].numel * 4 + 63) & ~(size_t)63;
    for (int i = 0; i < n; i++) /* every tensor lies outside the arena */
        assert_true((char *)t[i].data < (char *)b->base_mem || (char *)t[i].data >= (char *)b->base_mem + arena + 63);
    ((float *)t[0].data)[0] += 1.0f;
    assert_int_equal(cl_weights_load(c, dir, &e), 0);
    same_tensors(a, c);
    cl_llama_free(c);
    cl_llama_free(b);
    cl_llama_config cfg = a->cfg;
    cl_llama *full = cl_llama_new(&cfg, CL_F32, 1, &e);
    assert_non_null(full);
    assert_int_equal(cl_weights_load(full, dir, &e), 0);
    assert_null(full->mapped);
    same_tensors(a, full);
    cl_llama_free(full);
    remove_dir(dir);
    cl_llama_free(a);
}

static void an_adapter_round_trips_through_peft(void **state)
{
    (void)state;
    char dir[] = "/tmp/cl-adapter.XXXXXX";
    assert_non_null(mkdtemp(dir));
    cl_llama *a = model(CL_F32), *b = model(CL_F32);
    cl_err e = {0};
    cl_lora_config lc = {.rank = 4, .alpha = 8, .targets = (1u << CL_Q) | (1u << CL_DOWN), .seed = 3};
    assert_int_equal(cl_lora_add(a, &lc, &e), 0);
    cl_llama_init_uniform(a, 11, 1);
    cl_lora_config saved = {.alpha = 8, .dropout = 0.05, .init = CL_LORA_INIT_GAUSSIAN}, used;
    assert_int_equal(cl_weights_save_adapter(a, dir, "tiny", &saved, &e), 0);
    assert_int_equal(cl_weights_load_adapter(b, dir, &used, &e), 0);
    assert_int_equal(used.rank, 4);
    assert_true(used.alpha == 8 && used.dropout == 0.05 && !used.rslora);
    assert_int_equal(used.targets, lc.targets);
    assert_int_equal(used.init, CL_LORA_INIT_GAUSSIAN);
    assert_int_equal(b->n_lora, a->n_lora);
    assert_true(b->lora_scale == a->lora_scale);
    for (int i = 0; i < a->n_lora; i++) {
        cl_tensor *x = &a->lora[i], *y = cl_llama_find(b, x->name);
        assert_non_null(y);
        assert_memory_equal(x->data, y->data, (size_t)x->numel * 4);
    }
    cl_llama_free(a);
    cl_llama_free(b);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_checkpoint_round_trips_in_f32_and_bf16),
        cmocka_unit_test(a_frozen_base_is_used_in_place_and_writes_stay_private),
        cmocka_unit_test(an_adapter_round_trips_through_peft),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
