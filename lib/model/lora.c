/* lora.c — adapter tables, initialisation, enable/disable and merge. */
#include "model/lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/json.h"
#include "model/gemm.h"

int cl_lora_targets(const char *list, unsigned *mask, cl_err *e)
{
    *mask = 0;
    if (!strcmp(list, "all") || !strcmp(list, "all-linear")) {
        *mask = (1u << CL_NPROJ) - 1;
        return 0;
    }
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int i = 0; i < CL_NPROJ; i++)
            if (strlen(cl_proj_name(i)) == len && !strncmp(p, cl_proj_name(i), len)) found = i;
        if (found < 0)
            return cl_err_set(e, CL_EXIT_USAGE, "unknown LoRA target \"%.*s\" (q_proj k_proj v_proj o_proj "
                              "gate_proj up_proj down_proj, or all)", (int)len, p);
        *mask |= 1u << found;
        p += len + (p[len] == ',');
    }
    return *mask ? 0 : cl_err_set(e, CL_EXIT_USAGE, "empty LoRA target list");
}

int cl_lora_add(cl_llama *m, const cl_lora_config *c, cl_err *e)
{
    if (m->n_lora) return cl_err_set(e, CL_EXIT_SOFTWARE, "the model already has adapters");
    if (m->train_base) return cl_err_set(e, CL_EXIT_CONFIG, "LoRA and full fine-tuning exclude each other");
    if (c->rank <= 0 || !c->targets || c->dropout < 0 || c->dropout >= 1)
        return cl_err_set(e, CL_EXIT_CONFIG, "LoRA needs rank > 0, at least one target and dropout in [0, 1)");
    int L = m->cfg.layers, n = 0;
    long total = 0;
    for (int l = 0; l < L; l++)
        for (int p = 0; p < CL_NPROJ; p++)
            if (c->targets >> p & 1) {
                n += 2;
                total += (long)c->rank * (m->layers[l].proj[p].in + m->layers[l].proj[p].out);
            }
    m->lora = calloc((size_t)n, sizeof(cl_tensor));
    m->lora_mem = calloc((size_t)total, sizeof(float));
    m->grad_mem = calloc((size_t)total, sizeof(float));
    m->m_mem = calloc((size_t)total, sizeof(float));
    m->v_mem = calloc((size_t)total, sizeof(float));
    if (!m->lora || !m->lora_mem || !m->grad_mem || !m->m_mem || !m->v_mem)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory for LoRA adapters");
    m->n_train = total;
    m->lora_rank = c->rank;
    m->lora_scale = (float)(c->alpha / (c->rslora ? sqrt((double)c->rank) : c->rank));
    m->lora_dropout = c->dropout;
    m->seed = c->seed;
    long off = 0;
    int k = 0;
    for (int l = 0; l < L; l++)
        for (int p = 0; p < CL_NPROJ; p++) {
            if (!(c->targets >> p & 1)) continue;
            cl_linear *li = &m->layers[l].proj[p];
            const char *blk = p <= CL_O ? "self_attn" : "mlp";
            for (int ab = 0; ab < 2; ab++) {
                cl_tensor *t = &m->lora[k++];
                snprintf(t->name, sizeof t->name, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", l, blk,
                         cl_proj_name(p), ab ? 'B' : 'A');
                t->ndim = 2;
                t->shape[0] = ab ? li->out : c->rank;
                t->shape[1] = ab ? c->rank : li->in;
                t->numel = (long)t->shape[0] * t->shape[1];
                t->dtype = CL_F32;
                t->data = (float *)m->lora_mem + off;
                t->grad = m->grad_mem + off;
                t->m = m->m_mem + off;
                t->v = m->v_mem + off;
                off += t->numel;
                if (ab) li->lora_b = t; else li->lora_a = t;
            }
            /* A: PEFT's kaiming_uniform_(a=sqrt 5) bound is 1/sqrt(in); gaussian std is 1/r. */
            cl_tensor *a = li->lora_a;
            uint64_t s = cl_hash64(a->name, strlen(a->name), c->seed);
            float *ad = a->data;
            for (long i = 0; i < a->numel; i++)
                ad[i] = c->init == CL_LORA_INIT_GAUSSIAN ? (float)(cl_hash_gauss(s, (uint64_t)i) / c->rank)
                                                         : (float)((2 * cl_hash_uniform(s, (uint64_t)i) - 1) / sqrt((double)li->in));
        }
    m->n_lora = n;
    m->lora_on = 1;
    cl_llama_release_acts(m); /* they were sized without adapter slots */
    return 0;
}

void cl_lora_enable(cl_llama *m, int on) { m->lora_on = on && m->n_lora; }

cl_tensor *cl_lora_tensors(cl_llama *m, int *n)
{
    *n = m->n_lora;
    return m->lora;
}

void cl_lora_merge(cl_llama *m)
{
    if (!m->n_lora) return;
    for (int l = 0; l < m->cfg.layers; l++)
        for (int p = 0; p < CL_NPROJ; p++) {
            cl_linear *li = &m->layers[l].proj[p];
            if (!li->lora_a) continue;
            long cnt = li->w->numel;
            float *tmp = calloc((size_t)cnt, sizeof(float));
            if (!tmp) abort();
            /* delta [out][in] = scale * B [out][r] . A [r][in] */
            cl_gemm(CL_N, CL_N, li->out, li->in, m->lora_rank, m->lora_scale, li->lora_b->data, m->lora_rank,
                    li->lora_a->data, li->in, 0.0f, tmp, li->in);
            if (li->w->dtype == CL_F32) {
                float *w = li->w->data;
                for (long i = 0; i < cnt; i++) w[i] += tmp[i];
            } else {
                uint16_t *w = li->w->data;
                for (long i = 0; i < cnt; i++) w[i] = cl_f32_to_bf16(cl_bf16_to_f32(w[i]) + tmp[i]);
            }
            free(tmp);
        }
    m->lora_on = 0;
}
