/* weights.c — model tensors <-> safetensors checkpoints and PEFT adapters (see weights.h). */
#include "model/weights.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/lora.h"
#include "model/peft.h"
#include "model/safetensors.h"

/* Copies a file tensor into a model tensor, converting the dtype. */
static int fill(cl_tensor *dst, const cl_st_tensor *src, const char *where, cl_err *e)
{
    int same = src->ndim == dst->ndim;
    for (int i = 0; same && i < dst->ndim; i++)
        same = src->shape[i] == dst->shape[i];
    if (!same)
        return cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: shape [%lld%s%lld] in the file, the model needs [%d%s%d]",
                          where, dst->name, (long long)src->shape[0], src->ndim > 1 ? ", " : "",
                          src->ndim > 1 ? (long long)src->shape[1] : 0LL, dst->shape[0],
                          dst->ndim > 1 ? ", " : "", dst->ndim > 1 ? dst->shape[1] : 0);
    size_t n = (size_t)dst->numel;
    if (dst->dtype == CL_BF16 && src->dtype == CL_ST_BF16) {
        memcpy(dst->data, src->data, n * 2);
        return 0;
    }
    float *f = dst->dtype == CL_F32 ? dst->data : malloc(n * sizeof *f + 1);
    if (!f)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    int rc = 0;
    if (cl_st_to_f32(src->dtype, src->data, f, n))
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: dtype %s is not F32, F16 or BF16", where,
                        dst->name, cl_st_dtype_name(src->dtype));
    else if (dst->dtype == CL_BF16)
        cl_st_from_f32(CL_ST_BF16, f, dst->data, n);
    if (f != dst->data)
        free(f);
    return rc;
}

/* A frozen tensor can live in the file mapping itself when the file stores it as the model
 * does, aligned for its element type. */
static int usable_in_place(const cl_tensor *dst, const cl_st_tensor *src)
{
    size_t esize = dst->dtype == CL_F32 ? 4 : 2;
    int same = src->ndim == dst->ndim && (uintptr_t)src->data % esize == 0 &&
               src->dtype == (dst->dtype == CL_F32 ? CL_ST_F32 : CL_ST_BF16);
    for (int i = 0; same && i < dst->ndim; i++)
        same = src->shape[i] == dst->shape[i];
    return same;
}

static void close_mapping(void *st) { cl_st_model_close(st); }

int cl_weights_load(cl_llama *m, const char *dir, cl_err *e)
{
    cl_st_model *st = cl_st_model_open(dir, e);
    if (!st)
        return -1;
    /* The frozen base of a LoRA run is read where the file is mapped, not copied: its bytes are
     * then in memory once (shared with the page cache), and a later write (merging adapters)
     * copies only the pages it touches.  A decoding model (CL_LLAMA_DECODE) is copied into
     * its huge-page arena instead. */
    int in_place = !m->train_base && !m->own_weights && !m->unmap && cl_st_model_private(st, NULL) == 0;
    int n, rc = 0, used = 0;
    cl_tensor *t = cl_llama_tensors(m, &n);
    for (int i = 0; rc == 0 && i < n; i++) {
        const cl_st_tensor *s = cl_st_model_find(st, t[i].name);
        if (!s) {
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: missing from the checkpoint", dir, t[i].name);
        } else if (in_place && usable_in_place(&t[i], s)) {
            t[i].data = (void *)s->data;
            used++;
        } else {
            rc = fill(&t[i], s, dir, e);
            /* copied or converted (an fp32 file under --bf16): its file pages need not stay resident */
            if (in_place || m->own_weights) cl_st_release(s);
        }
    }
    if (rc == 0 && used) {
        m->mapped = st;
        m->unmap = close_mapping;
    } else {
        cl_st_model_close(st);
    }
    return rc;
}

int cl_weights_load_adapter(cl_llama *m, const char *dir, cl_lora_config *used, cl_err *e)
{
    cl_peft *p = cl_peft_open(dir, e);
    if (!p)
        return -1;
    const cl_peft_config *pc = cl_peft_config_of(p);
    cl_lora_config lc = {.rank = pc->r, .alpha = pc->alpha, .rslora = pc->use_rslora, .dropout = pc->dropout,
                         .init = pc->gaussian_init ? CL_LORA_INIT_GAUSSIAN : CL_LORA_INIT_KAIMING};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < pc->n_targets; i++) {
        unsigned bit;
        rc = cl_lora_targets(pc->targets[i], &bit, e);
        lc.targets |= bit;
    }
    if (rc == 0)
        rc = cl_lora_add(m, &lc, e);
    for (size_t i = 0; rc == 0 && i < cl_peft_count(p); i++) {
        const cl_peft_lora *l = cl_peft_at(p, i);
        for (char which = 'A'; rc == 0 && which <= 'B'; which++) {
            char name[160];
            cl_peft_tensor_name(name, sizeof name, l->layer, l->module, which);
            cl_tensor *t = cl_llama_find(m, name);
            cl_st_tensor s = {name, l->dtype, 2,
                              {which == 'A' ? pc->r : l->out, which == 'A' ? l->in : pc->r},
                              which == 'A' ? l->A : l->B, 0};
            rc = t ? fill(t, &s, dir, e)
                   : cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: the model has no such projection", dir, name);
        }
    }
    cl_peft_close(p);
    if (rc == 0 && used)
        *used = lc;
    return rc;
}

static cl_st_dtype st_dtype(cl_dtype d) { return d == CL_BF16 ? CL_ST_BF16 : CL_ST_F32; }

/* m's base tensors as safetensors descriptions pointing at its storage (NULL: out of memory). */
static cl_st_tensor *base_list(cl_llama *m, int *n)
{
    cl_tensor *t = cl_llama_tensors(m, n);
    cl_st_tensor *s = calloc((size_t)*n + 1, sizeof *s);
    for (int i = 0; s && i < *n; i++)
        s[i] = (cl_st_tensor){t[i].name, st_dtype(t[i].dtype), t[i].ndim, {t[i].shape[0], t[i].shape[1]},
                              t[i].data, 0};
    return s;
}

/* m's adapters as PEFT describes them (pointing at m's storage; NULL: out of memory), and *pc:
 * rank and targets from m, alpha, dropout, rsLoRA and the init from c. */
static cl_peft_lora *adapter_list(cl_llama *m, const cl_lora_config *c, const char *base_model,
                                  cl_peft_config *pc, size_t *n)
{
    memset(pc, 0, sizeof *pc);
    pc->r = m->lora_rank;
    pc->alpha = c->alpha;
    pc->dropout = c->dropout;
    pc->use_rslora = c->rslora;
    pc->gaussian_init = c->init == CL_LORA_INIT_GAUSSIAN;
    snprintf(pc->base_model, sizeof pc->base_model, "%s", base_model ? base_model : "");
    cl_peft_lora *l = calloc((size_t)m->n_lora / 2 + 1, sizeof *l);
    *n = 0;
    if (!l)
        return NULL;
    unsigned seen = 0;
    for (int li = 0; li < m->cfg.layers; li++)
        for (int p = 0; p < CL_NPROJ; p++) {
            const cl_linear *x = &m->layers[li].proj[p];
            if (!x->lora_a)
                continue;
            l[(*n)++] = (cl_peft_lora){li, cl_proj_name(p), x->in, x->out, CL_ST_F32, x->lora_a->data,
                                       x->lora_b->data};
            if (!(seen & (1u << p)) && pc->n_targets < CL_PEFT_MAX_TARGETS)
                snprintf(pc->targets[pc->n_targets++], sizeof pc->targets[0], "%s", cl_proj_name(p));
            seen |= 1u << p;
        }
    return l;
}

int cl_weights_save(cl_llama *m, const char *dir, size_t max_shard_bytes, cl_err *e)
{
    int n;
    cl_st_tensor *s = base_list(m, &n);
    if (!s)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    int rc = cl_st_write_checkpoint(dir, s, (size_t)n, max_shard_bytes, e);
    free(s);
    return rc;
}

int cl_weights_save_adapter(cl_llama *m, const char *dir, const char *base_model, const cl_lora_config *c,
                            cl_err *e)
{
    if (!m->n_lora)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "the model has no adapters to save");
    cl_peft_config pc;
    size_t n;
    cl_peft_lora *l = adapter_list(m, c, base_model, &pc, &n);
    int rc = l ? cl_peft_write(dir, &pc, l, n, e) : cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    free(l);
    return rc;
}

void cl_weights_gguf_info(const cl_llama_config *c, cl_gguf_model_info *info, float *rope_freqs)
{
    *info = (cl_gguf_model_info){strcmp(c->model_type, "qwen2") == 0 ? "qwen2" : "llama", NULL,
                                 (uint32_t)c->max_pos, (uint32_t)c->hidden, (uint32_t)c->layers,
                                 (uint32_t)c->inter, (uint32_t)c->heads, (uint32_t)c->kv_heads,
                                 (uint32_t)c->head_dim, (float)c->rms_eps, (float)c->rope_theta, NULL,
                                 c->bos_id, c->n_eos ? c->eos_ids[0] : -1, -1, NULL, CL_GGUF_AS_STORED};
    if (!c->rope_llama3)
        return;
    /* llama.cpp divides each base frequency by its factor: factor = base / remapped. */
    double inv[512];
    int half = c->head_dim / 2;
    cl_rope_inv_freq(c, inv);
    for (int i = 0; i < half; i++)
        rope_freqs[i] = (float)(1.0 / pow(c->rope_theta, (2.0 * i) / c->head_dim) / inv[i]);
    info->rope_freqs = rope_freqs;
}

int cl_weights_export_gguf(cl_llama *m, const cl_tokenizer *tok, const char *chat_template, cl_gguf_matrices as,
                           const char *path, cl_err *e)
{
    cl_gguf_model_info info;
    float rope_freqs[256];
    cl_weights_gguf_info(&m->cfg, &info, rope_freqs);
    info.chat_template = chat_template;
    info.matrices = as;
    int n;
    cl_st_tensor *s = base_list(m, &n);
    int rc = s ? cl_gguf_export_model(path, &info, s, (size_t)n, tok, e)
               : cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    free(s);
    return rc;
}

int cl_weights_export_gguf_lora(cl_llama *m, const cl_lora_config *c, const char *path, cl_err *e)
{
    cl_peft_config pc;
    size_t n;
    cl_peft_lora *l = adapter_list(m, c, NULL, &pc, &n);
    const cl_llama_config *cfg = &m->cfg;
    int rc = l ? cl_gguf_export_lora(path, strcmp(cfg->model_type, "qwen2") == 0 ? "qwen2" : "llama", &pc,
                                     (uint32_t)cfg->heads, (uint32_t)cfg->kv_heads, l, n, e)
               : cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    free(l);
    return rc;
}
