/* Unit tests for lib/model/gguf: container round trip, alignment, reversed dims, the llama q/k
 * permutation, LoRA export and the reader's refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/bpe_train.h"
#include "model/gguf.h"

static char path[64];

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "/tmp/cl-gguf.XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return unlink(path);
}

static unsigned char *slurp(size_t *n)
{
    FILE *f = fopen(path, "rb");
    unsigned char *b = malloc(1 << 20);
    *n = fread(b, 1, 1 << 20, f);
    fclose(f);
    return b;
}

static void container_round_trips_aligned_with_reversed_dims(void **state)
{
    (void)state;
    cl_gguf_writer *w = cl_gguf_writer_new();
    const char *s[] = {"x", "y"};
    int32_t iv[] = {5, -6};
    float a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {7, 8, 9};
    int64_t sa[] = {2, 3}, sb[] = {3};
    cl_err e = {0};
    assert_int_equal(cl_gguf_kv_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(cl_gguf_kv_u32(w, "n", 7), 0);
    assert_int_equal(cl_gguf_kv_strs(w, "list", s, 2), 0);
    assert_int_equal(cl_gguf_kv_i32s(w, "ints", iv, 2), 0);
    assert_int_equal(cl_gguf_add_tensor(w, "b", CL_ST_F32, 1, sb, b, &e), 0);
    assert_int_equal(cl_gguf_add_tensor(w, "a", CL_ST_F32, 2, sa, a, &e), 0);
    assert_int_equal(cl_gguf_add_tensor(w, "bad", CL_ST_I32, 1, sb, b, &e), -1);
    assert_int_equal(cl_gguf_write(w, path, &e), 0);
    cl_gguf_writer_free(w);
    size_t n;
    unsigned char *buf = slurp(&n);
    assert_memory_equal(buf, "GGUF\3\0\0\0", 8);
    cl_gguf *g = cl_gguf_open_buffer(buf, n, "t.gguf", &e);
    assert_non_null(g);
    assert_int_equal(cl_gguf_version(g), 3);
    char *arch = cl_gguf_get_str(g, "general.architecture");
    assert_string_equal(arch, "llama");
    free(arch);
    uint32_t type, et;
    uint64_t count;
    uint32_t nv;
    int32_t ints[2];
    memcpy(&nv, cl_gguf_get(g, "n", &type, NULL, NULL), 4); /* values are not aligned */
    assert_int_equal(type, CL_GGUF_U32);
    assert_int_equal(nv, 7);
    memcpy(ints, cl_gguf_get(g, "ints", &type, &et, &count), 8);
    assert_int_equal(type, CL_GGUF_ARRAY);
    assert_int_equal(et, CL_GGUF_I32);
    assert_int_equal(count, 2);
    assert_int_equal(ints[1], -6);
    const cl_gguf_tensor *ta = cl_gguf_find(g, "a"), *tb = cl_gguf_find(g, "b");
    assert_int_equal(ta->ne[0], 3); /* PyTorch (2,3) is ggml [3,2] */
    assert_int_equal(ta->ne[1], 2);
    assert_memory_equal(ta->data, a, sizeof a);
    assert_int_equal(((const unsigned char *)tb->data - buf) % 32, 0);
    assert_int_equal(((const unsigned char *)ta->data - buf) % 32, 0);
    cl_gguf_close(g);
    free(buf);
}

static void reader_refuses_broken_files(void **state)
{
    (void)state;
    cl_gguf_writer *w = cl_gguf_writer_new();
    float a[8] = {0};
    int64_t s[] = {8};
    cl_err e = {0};
    cl_gguf_kv_str(w, "k", "v");
    assert_int_equal(cl_gguf_add_tensor(w, "a", CL_ST_F32, 1, s, a, &e), 0);
    assert_int_equal(cl_gguf_add_tensor(w, "b", CL_ST_F32, 1, s, a, &e), 0);
    assert_int_equal(cl_gguf_write(w, path, &e), 0);
    cl_gguf_writer_free(w);
    size_t n;
    unsigned char *buf = slurp(&n);
    /* Offsets of the tensor infos: after the header and the one key/value. */
    size_t kv = 24 + 8 + 1 + 4 + 8 + 1;
    size_t info_a = kv, info_b = info_a + 8 + 1 + 4 + 8 + 4 + 8;
    struct { size_t at; uint64_t val; int width; const char *want; } cases[] = {
        {0, 0x46554747 + 1, 4, "GGUF magic"},
        {4, 9, 4, "version 9"},
        {info_b + 8 + 1 + 4 + 8 + 4, 0, 8, "overlaps"},
        {info_b + 8 + 1 + 4 + 8 + 4, 8, 8, "not aligned"},
        {info_b + 8 + 1 + 4 + 8, 8, 4, "ggml type 8"},
        {info_b + 8 + 1 + 4, 1u << 20, 8, "past the end"},
        {16, 1u << 30, 8, "past the end"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        unsigned char *c = malloc(n);
        memcpy(c, buf, n);
        memcpy(c + cases[i].at, &cases[i].val, (size_t)cases[i].width);
        cl_gguf *g = cl_gguf_open_buffer(c, n, "t.gguf", &e);
        if (g || !strstr(e.msg, cases[i].want))
            fail_msg("case %zu: %s", i, g ? "accepted" : e.msg);
        free(c);
    }
    (void)info_a;
    free(buf);
}

static cl_tokenizer *small_tokenizer(void)
{
    const char *text = "aa bb aa bb cc";
    size_t len = strlen(text);
    cl_bpe_added added[] = {{"<|eot_id|>", 1, 0, 0}};
    cl_bpe_train_opts o = {.vocab_size = 260, .added = added, .n_added = 1};
    cl_err e = {0};
    size_t jl;
    char *json = cl_bpe_train(&text, &len, 1, &o, &jl, &e);
    cl_tokenizer *t = cl_tokenizer_from_json(json, jl, "small", &e);
    free(json);
    return t;
}

static void llama_export_permutes_q_and_k_rows_only(void **state)
{
    (void)state;
    cl_tokenizer *tok = small_tokenizer();
    int V = cl_tokenizer_vocab_size(tok);
    /* hidden 8, 2 heads of 4 (q), 1 kv head (k): row r of each matrix holds the value r. */
    float *emb = calloc((size_t)V * 8, sizeof *emb), q[64], k[32], v[32], norm[8];
    for (int r = 0; r < 8; r++)
        for (int c = 0; c < 8; c++)
            q[r * 8 + c] = (float)r;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 8; c++)
            k[r * 8 + c] = v[r * 8 + c] = (float)r;
    for (int i = 0; i < 8; i++)
        norm[i] = 1;
    cl_st_tensor t[] = {
        {"model.embed_tokens.weight", CL_ST_F32, 2, {V, 8}, emb, 0},
        {"model.layers.0.self_attn.q_proj.weight", CL_ST_F32, 2, {8, 8}, q, 0},
        {"model.layers.0.self_attn.k_proj.weight", CL_ST_F32, 2, {4, 8}, k, 0},
        {"model.layers.0.self_attn.v_proj.weight", CL_ST_F32, 2, {4, 8}, v, 0},
        {"model.norm.weight", CL_ST_F32, 1, {8}, norm, 0},
    };
    cl_gguf_model_info m = {"llama", "t", 64, 8, 1, 16, 2, 1, 4, 1e-5f, 1e4f, "{{ x }}", -1, 1, -1, NULL, CL_GGUF_AS_STORED};
    cl_err e = {0};
    assert_int_equal(cl_gguf_export_model(path, &m, t, 5, tok, &e), 0);
    cl_gguf *g = cl_gguf_open(path, &e);
    assert_non_null(g);
    static const int want_q[8] = {0, 2, 1, 3, 4, 6, 5, 7}, want_k[4] = {0, 2, 1, 3};
    const float *gq = cl_gguf_find(g, "blk.0.attn_q.weight")->data;
    const float *gk = cl_gguf_find(g, "blk.0.attn_k.weight")->data;
    const float *gv = cl_gguf_find(g, "blk.0.attn_v.weight")->data;
    for (int r = 0; r < 8; r++)
        assert_true(gq[r * 8] == (float)want_q[r]);
    for (int r = 0; r < 4; r++) {
        assert_true(gk[r * 8] == (float)want_k[r]);
        assert_true(gv[r * 8] == (float)r);
    }
    uint32_t type, et;
    uint64_t count;
    assert_non_null(cl_gguf_get(g, "tokenizer.ggml.merges", &type, &et, &count));
    size_t nm;
    cl_tokenizer_merges(tok, &nm);
    assert_int_equal(count, nm);
    assert_non_null(cl_gguf_get(g, "tokenizer.ggml.tokens", &type, &et, &count));
    assert_int_equal(count, V);
    char *ct = cl_gguf_get_str(g, "tokenizer.chat_template");
    assert_string_equal(ct, "{{ x }}");
    free(ct);
    cl_gguf_close(g);
    m.arch = "qwen2";
    assert_int_equal(cl_gguf_export_model(path, &m, t, 5, tok, &e), 0);
    g = cl_gguf_open(path, &e);
    gq = cl_gguf_find(g, "blk.0.attn_q.weight")->data;
    for (int r = 0; r < 8; r++)
        assert_true(gq[r * 8] == (float)r);
    cl_gguf_close(g);
    /* --gguf-type f16: every matrix F16 (its values exact here: small integers), norms F32 */
    m.matrices = CL_GGUF_AS_F16;
    assert_int_equal(cl_gguf_export_model(path, &m, t, 5, tok, &e), 0);
    g = cl_gguf_open(path, &e);
    const cl_gguf_tensor *h = cl_gguf_find(g, "blk.0.attn_q.weight");
    assert_int_equal(h->type, CL_GGML_F16);
    assert_int_equal(h->nbytes, 8 * 8 * 2);
    float back[64];
    assert_int_equal(cl_st_to_f32(CL_ST_F16, h->data, back, 64), 0);
    for (int r = 0; r < 8; r++)
        assert_true(back[r * 8] == (float)r);
    assert_int_equal(cl_gguf_find(g, "token_embd.weight")->type, CL_GGML_F16);
    assert_int_equal(cl_gguf_find(g, "output_norm.weight")->type, CL_GGML_F32);
    cl_gguf_close(g);
    assert_int_equal(cl_gguf_matrices_parse("f16"), CL_GGUF_AS_F16);
    assert_int_equal(cl_gguf_matrices_parse("bf16"), CL_GGUF_AS_BF16);
    assert_int_equal(cl_gguf_matrices_parse("f32"), CL_GGUF_AS_F32);
    assert_int_equal(cl_gguf_matrices_parse("q8_0"), -1);
    m.matrices = CL_GGUF_AS_STORED;
    t[0].name = "model.rotary_emb.inv_freq";
    assert_int_equal(cl_gguf_export_model(path, &m, t, 5, tok, &e), -1);
    assert_non_null(strstr(e.msg, "embed_tokens"));
    free(emb);
    cl_tokenizer_free(tok);
}

static void lora_export_names_shapes_alpha_and_permuted_b(void **state)
{
    (void)state;
    float A[2 * 8], B[8 * 2];
    for (int i = 0; i < 16; i++)
        A[i] = (float)i;
    for (int r = 0; r < 8; r++)
        B[r * 2] = B[r * 2 + 1] = (float)r;
    cl_peft_config c = {.r = 2, .alpha = 4, .n_targets = 1};
    cl_peft_lora l = {0, "q_proj", 8, 8, CL_ST_F32, A, B};
    cl_err e = {0};
    assert_int_equal(cl_gguf_export_lora(path, "llama", &c, 2, 1, &l, 1, &e), 0);
    cl_gguf *g = cl_gguf_open(path, &e);
    assert_non_null(g);
    char *t = cl_gguf_get_str(g, "general.type");
    assert_string_equal(t, "adapter");
    free(t);
    uint32_t type;
    float alpha;
    memcpy(&alpha, cl_gguf_get(g, "adapter.lora.alpha", &type, NULL, NULL), 4);
    assert_true(alpha == 4.0f);
    const cl_gguf_tensor *a = cl_gguf_find(g, "blk.0.attn_q.weight.lora_a");
    const cl_gguf_tensor *b = cl_gguf_find(g, "blk.0.attn_q.weight.lora_b");
    assert_int_equal(a->ne[0], 8); /* lora_a ne = [in, r] */
    assert_int_equal(a->ne[1], 2);
    assert_int_equal(b->ne[0], 2); /* lora_b ne = [r, out] */
    assert_int_equal(b->ne[1], 8);
    assert_memory_equal(a->data, A, sizeof A);
    assert_true(((const float *)b->data)[2] == 2.0f); /* row 1 of B came from row 2 */
    cl_gguf_close(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(container_round_trips_aligned_with_reversed_dims),
        cmocka_unit_test(reader_refuses_broken_files),
        cmocka_unit_test(llama_export_permutes_q_and_k_rows_only),
        cmocka_unit_test(lora_export_names_shapes_alpha_and_permuted_b),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
