/* fmt — test driver for the model file formats (safetensors, PEFT, GGUF).
 *
 *   fmt tiny-model DIR ARCH TOKENIZER [DTYPE] [SHARD_BYTES]
 *                             random tiny Llama/Qwen2 (seeded): DIR/config.json + safetensors
 *   fmt tiny-lora DIR ADAPTER R ALPHA   random PEFT adapter on q/k/v/o/gate/up/down for DIR's model
 *   fmt gguf DIR OUT                    DIR (config.json, safetensors, tokenizer.json) -> GGUF
 *   fmt gguf-lora DIR ADAPTER OUT       PEFT adapter -> GGUF LoRA for DIR's model
 *   fmt st-info FILE|DIR                tensors of a safetensors file or checkpoint dir
 *   fmt peft-info DIR                   an adapter's config and matrices
 *   fmt gguf-info FILE                  a GGUF's keys and tensors
 * Exit: 0, 2 usage, else the library's error code (65 for bad data). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/json.h"
#include "model/config.h"
#include "model/gguf.h"
#include "model/peft.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"
#include "model/weights.h"

static int fail(const cl_err *e)
{
    fprintf(stderr, "fmt: %s\n", e->msg);
    return e->code ? e->code : 70;
}

static uint64_t rng = 0x2545f4914f6cdd1dULL;
static float urand(float scale)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return scale * ((float)(rng >> 40) / (float)(1 << 24) * 2.0f - 1.0f);
}

typedef struct shape_cfg {
    const char *arch;
    int vocab, hidden, inter, layers, heads, kv_heads, head_dim, ctx;
    double eps, theta;
} shape_cfg;

static void tiny_cfg(shape_cfg *c, const char *arch, int vocab)
{
    *c = (shape_cfg){arch, vocab, 64, 128, 2, 4, 2, 16, 256, 1e-5, 10000.0};
}

static int read_cfg(const char *dir, cl_llama_config *c)
{
    char p[4096];
    cl_err e = {0};
    snprintf(p, sizeof p, "%s/config.json", dir);
    return cl_config_load(c, p, &e) ? fail(&e) : 0;
}

static int cmd_tiny_model(const char *dir, const char *arch, const char *tokpath, const char *dtype,
                          size_t shard)
{
    cl_err e = {0};
    cl_tokenizer *tok = cl_tokenizer_load(tokpath, &e);
    if (!tok)
        return fail(&e);
    /* "llama3.1": a llama with Llama-3.1 rope scaling whose original context is short enough
     * that the remap changes most of the tiny model's frequencies. */
    int scaled = strcmp(arch, "llama3.1") == 0;
    if (scaled)
        arch = "llama";
    shape_cfg c;
    tiny_cfg(&c, arch, cl_tokenizer_vocab_size(tok));
    cl_tokenizer_free(tok);
    int qwen = strcmp(arch, "qwen2") == 0;
    cl_st_dtype dt = dtype ? (cl_st_dtype)cl_st_dtype_parse(dtype) : CL_ST_F32;
    mkdir(dir, 0777);
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    fprintf(f,
            "{\"architectures\":[\"%s\"],\"model_type\":\"%s\",\"vocab_size\":%d,\"hidden_size\":%d,"
            "\"intermediate_size\":%d,\"num_hidden_layers\":%d,\"num_attention_heads\":%d,"
            "\"num_key_value_heads\":%d,\"head_dim\":%d,\"hidden_act\":\"silu\","
            "\"max_position_embeddings\":%d,\"rms_norm_eps\":%g,\"rope_theta\":%g,"
            "\"tie_word_embeddings\":false,\"attention_bias\":%s,\"torch_dtype\":\"float32\"%s}\n",
            qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM", arch, c.vocab, c.hidden, c.inter, c.layers,
            c.heads, c.kv_heads, c.head_dim, c.ctx, c.eps, c.theta, qwen ? "true" : "false",
            scaled ? ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,"
                     "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":64}"
                   : "");
    fclose(f);
    cl_st_tensor t[64];
    char names[64][96];
    void *bufs[64];
    size_t n = 0;
#define ADD(nm, r, cols, scale, one)                                                     \
    do {                                                                                 \
        snprintf(names[n], sizeof names[n], "%s", nm);                                   \
        int64_t rows_ = (r), cols_ = (cols);                                             \
        size_t cnt_ = (size_t)(rows_ * (cols_ ? cols_ : 1));                             \
        float *x_ = malloc(cnt_ * sizeof *x_);                                           \
        for (size_t k_ = 0; k_ < cnt_; k_++)                                             \
            x_[k_] = (one) ? 1.0f + urand(0.1f) : urand(scale);                          \
        cl_st_dtype d_ = cols_ ? dt : CL_ST_F32;                                         \
        bufs[n] = malloc(cnt_ * cl_st_dtype_size(d_));                                   \
        cl_st_from_f32(d_, x_, bufs[n], cnt_);                                           \
        free(x_);                                                                        \
        t[n] = (cl_st_tensor){names[n], d_, cols_ ? 2 : 1, {rows_, cols_}, bufs[n], 0}; \
        n++;                                                                             \
    } while (0)
    int q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
    ADD("model.embed_tokens.weight", c.vocab, c.hidden, 1.0f, 0);
    for (int l = 0; l < c.layers; l++) {
        char b[96];
        float s = 1.0f / 8.0f;
#define L(suffix) (snprintf(b, sizeof b, "model.layers.%d.%s", l, suffix), b)
        ADD(L("input_layernorm.weight"), c.hidden, 0, 0, 1);
        ADD(L("self_attn.q_proj.weight"), q, c.hidden, s, 0);
        ADD(L("self_attn.k_proj.weight"), kv, c.hidden, s, 0);
        ADD(L("self_attn.v_proj.weight"), kv, c.hidden, s, 0);
        if (qwen) {
            ADD(L("self_attn.q_proj.bias"), q, 0, 0.1f, 0);
            ADD(L("self_attn.k_proj.bias"), kv, 0, 0.1f, 0);
            ADD(L("self_attn.v_proj.bias"), kv, 0, 0.1f, 0);
        }
        ADD(L("self_attn.o_proj.weight"), c.hidden, q, s, 0);
        ADD(L("post_attention_layernorm.weight"), c.hidden, 0, 0, 1);
        ADD(L("mlp.gate_proj.weight"), c.inter, c.hidden, s, 0);
        ADD(L("mlp.up_proj.weight"), c.inter, c.hidden, s, 0);
        ADD(L("mlp.down_proj.weight"), c.hidden, c.inter, s / 1.4f, 0);
#undef L
    }
    ADD("model.norm.weight", c.hidden, 0, 0, 1);
    ADD("lm_head.weight", c.vocab, c.hidden, 0.5f, 0);
#undef ADD
    int rc = cl_st_write_checkpoint(dir, t, n, shard, &e);
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    if (rc)
        return fail(&e);
    return 0;
}

static const char *const lora_modules[] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                           "gate_proj", "up_proj", "down_proj"};

static int cmd_tiny_lora(const char *dir, const char *out, int r, double alpha)
{
    cl_llama_config c;
    if (read_cfg(dir, &c))
        return 65;
    cl_peft_config pc = {.r = r, .alpha = alpha, .n_targets = 7};
    snprintf(pc.base_model, sizeof pc.base_model, "%s", dir);
    for (int i = 0; i < 7; i++)
        snprintf(pc.targets[i], sizeof pc.targets[i], "%s", lora_modules[i]);
    cl_peft_lora l[64];
    float *bufs[128];
    size_t n = 0, nb = 0;
    int q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
    for (int layer = 0; layer < c.layers; layer++)
        for (int m = 0; m < 7; m++) {
            int64_t in = m == 3 ? q : m == 6 ? c.inter : c.hidden;
            int64_t o = m == 0 ? q : m < 3 ? kv : m == 3 ? c.hidden : m < 6 ? c.inter : c.hidden;
            float *a = malloc((size_t)(r * in) * sizeof *a), *b = malloc((size_t)(o * r) * sizeof *b);
            for (int64_t k = 0; k < r * in; k++)
                a[k] = urand(0.5f);
            for (int64_t k = 0; k < o * r; k++)
                b[k] = urand(0.5f);
            bufs[nb++] = a;
            bufs[nb++] = b;
            l[n++] = (cl_peft_lora){layer, lora_modules[m], in, o, CL_ST_F32, a, b};
        }
    mkdir(out, 0777);
    cl_err e = {0};
    int rc = cl_peft_write(out, &pc, l, n, &e);
    for (size_t i = 0; i < nb; i++)
        free(bufs[i]);
    return rc ? fail(&e) : 0;
}

static int cmd_gguf(const char *dir, const char *out)
{
    cl_llama_config c;
    if (read_cfg(dir, &c))
        return 65;
    cl_err e = {0};
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    cl_tokenizer *tok = cl_tokenizer_load(p, &e);
    if (!tok)
        return fail(&e);
    cl_st_model *m = cl_st_model_open(dir, &e);
    if (!m) {
        cl_tokenizer_free(tok);
        return fail(&e);
    }
    size_t n = cl_st_model_count(m);
    cl_st_tensor *t = malloc(n * sizeof *t);
    for (size_t i = 0; i < n; i++)
        t[i] = *cl_st_model_at(m, i);
    float freqs[256];
    cl_gguf_model_info info;
    cl_weights_gguf_info(&c, &info, freqs);
    info.name = "cl tiny test model";
    size_t np;
    const int32_t *pre = cl_tokenizer_prefix(tok, &np);
    info.bos_id = np ? pre[0] : -1;
    info.eos_id = cl_tokenizer_token_id(tok, "<|eot_id|>");
    if (info.eos_id < 0)
        info.eos_id = cl_tokenizer_token_id(tok, "<|im_end|>");
    int rc = cl_gguf_export_model(out, &info, t, n, tok, &e);
    free(t);
    cl_st_model_close(m);
    cl_tokenizer_free(tok);
    return rc ? fail(&e) : 0;
}

static int cmd_gguf_lora(const char *dir, const char *adapter, const char *out)
{
    cl_llama_config c;
    if (read_cfg(dir, &c))
        return 65;
    cl_err e = {0};
    cl_peft *p = cl_peft_open(adapter, &e);
    if (!p)
        return fail(&e);
    size_t n = cl_peft_count(p);
    cl_peft_lora *l = malloc((n + 1) * sizeof *l);
    for (size_t i = 0; i < n; i++)
        l[i] = *cl_peft_at(p, i);
    int rc = cl_gguf_export_lora(out, c.model_type, cl_peft_config_of(p), (uint32_t)c.heads,
                                 (uint32_t)c.kv_heads, l, n, &e);
    free(l);
    cl_peft_close(p);
    return rc ? fail(&e) : 0;
}

static void print_shape(int nd, const int64_t *s)
{
    putchar('[');
    for (int i = 0; i < nd; i++)
        printf(i ? ",%lld" : "%lld", (long long)s[i]);
    putchar(']');
}

/* "name dtype [shape] hash-of-bytes" */
static void print_tensor(const cl_st_tensor *t)
{
    printf("%s %s ", t->name, cl_st_dtype_name(t->dtype));
    print_shape(t->ndim, t->shape);
    printf(" %016llx\n", (unsigned long long)cl_hash64(t->data, t->nbytes, 0));
}

static int cmd_st_info(const char *path)
{
    cl_err e = {0};
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        cl_st_model *m = cl_st_model_open(path, &e);
        if (!m)
            return fail(&e);
        for (size_t i = 0; i < cl_st_model_count(m); i++)
            print_tensor(cl_st_model_at(m, i));
        cl_st_model_close(m);
        return 0;
    }
    cl_safetensors *f = cl_st_open(path, &e);
    if (!f)
        return fail(&e);
    const char *fmt = cl_st_metadata(f, "format");
    printf("format %s\n", fmt ? fmt : "-");
    for (size_t i = 0; i < cl_st_count(f); i++)
        print_tensor(cl_st_at(f, i));
    cl_st_close(f);
    return 0;
}

static int cmd_peft_info(const char *dir)
{
    cl_err e = {0};
    cl_peft *p = cl_peft_open(dir, &e);
    if (!p)
        return fail(&e);
    const cl_peft_config *c = cl_peft_config_of(p);
    printf("r %d alpha %g scale %g targets %zu\n", c->r, c->alpha, cl_peft_scale(c), c->n_targets);
    for (size_t i = 0; i < cl_peft_count(p); i++) {
        const cl_peft_lora *l = cl_peft_at(p, i);
        printf("%d %s in %lld out %lld\n", l->layer, l->module, (long long)l->in, (long long)l->out);
    }
    cl_peft_close(p);
    return 0;
}

static int cmd_gguf_info(const char *path)
{
    cl_err e = {0};
    cl_gguf *g = cl_gguf_open(path, &e);
    if (!g)
        return fail(&e);
    static const char *keys[] = {"general.architecture", "general.type", "tokenizer.ggml.model",
                                 "tokenizer.ggml.pre", "adapter.type"};
    printf("version %u\n", cl_gguf_version(g));
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        char *s = cl_gguf_get_str(g, keys[i]);
        if (s)
            printf("%s %s\n", keys[i], s);
        free(s);
    }
    for (size_t i = 0; i < cl_gguf_tensor_count(g); i++) {
        const cl_gguf_tensor *t = cl_gguf_tensor_at(g, i);
        printf("%s %u ", t->name, t->type);
        print_shape(t->ndim, t->ne);
        printf(" %016llx\n", (unsigned long long)cl_hash64(t->data, t->nbytes, 0));
    }
    cl_gguf_close(g);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && strcmp(argv[1], "tiny-model") == 0)
        return cmd_tiny_model(argv[2], argv[3], argv[4], argc > 5 ? argv[5] : NULL,
                              argc > 6 ? strtoul(argv[6], NULL, 10) : 0);
    if (argc == 6 && strcmp(argv[1], "tiny-lora") == 0)
        return cmd_tiny_lora(argv[2], argv[3], atoi(argv[4]), atof(argv[5]));
    if (argc == 4 && strcmp(argv[1], "gguf") == 0)
        return cmd_gguf(argv[2], argv[3]);
    if (argc == 5 && strcmp(argv[1], "gguf-lora") == 0)
        return cmd_gguf_lora(argv[2], argv[3], argv[4]);
    if (argc == 3 && strcmp(argv[1], "st-info") == 0)
        return cmd_st_info(argv[2]);
    if (argc == 3 && strcmp(argv[1], "peft-info") == 0)
        return cmd_peft_info(argv[2]);
    if (argc == 3 && strcmp(argv[1], "gguf-info") == 0)
        return cmd_gguf_info(argv[2]);
    fprintf(stderr, "usage: fmt tiny-model|tiny-lora|gguf|gguf-lora|st-info|peft-info|gguf-info ...\n");
    return 2;
}
