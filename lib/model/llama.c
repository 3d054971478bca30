/* llama.c — parameter table, arenas, training forward/backward and the log-prob head. */
#include "model/llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/json.h"
#include "core/pages.h"
#include "model/device.h"
#include "model/gemm.h"
#include "model/linear.h"
#include "model/ops.h"

static const char *const proj_names[CL_NPROJ] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};

const char *cl_proj_name(int proj) { return proj >= 0 && proj < CL_NPROJ ? proj_names[proj] : "?"; }

/* Activations of one forward, sized for b x t tokens. */
struct cl_llama_acts {
    int b, t, n;                 /* n = b * t */
    size_t cap;                  /* floats in mem */
    int cap_n, cap_r;            /* tokens in ids/pos/seg, rows in htgt/hidx */
    int *ids, *pos, *seg;        /* copies; seg NULL-equivalent flag below */
    int has_seg, lora_used, training;
    long step;
    float *mem;
    /* per layer, [layers][...]: what backward cannot cheaply recompute.  The normalised inputs
     * of the projections and the SwiGLU output are recomputed there (cl_rmsnorm_apply,
     * cl_swiglu_fwd, bit for bit) into xn and dg: three fewer [n][d or I] arrays per layer. */
    float **res, **rstd1, **q, **k, **v, **y, **mid, **rstd2, **g, **u;
    float **lora_h;              /* [layers * CL_NPROJ] */
    float *res_final, *lnf, *rstdf;
    /* scratch shared by all layers: xn holds a normalised input in the forward and again in the
     * backward; the attention gradients (dy, dq, dk, dv) and the MLP ones (dh, dg, du) are never
     * live at once and share one region; dlnf is dln (consumed before dln is first used);
     * lora_dh, xd and dxd exist only with adapters. */
    float *xn, *dres, *dln, *dq, *dk, *dv, *dy, *dg, *du, *dh, *dlnf, *lora_dh, *xd, *dxd;
    /* head chunk */
    int head_rows;
    float *hx, *hlogits, *hdx, *hcoef, *hlogp;
    int *htgt, *hidx;
    /* [n][sum of outs] of a fused q/k/v or gate/up product (group_fwd, group_bwd): the head's
     * logits chunk, dead in the forward and the backward, sized to hold it */
    float *fuse;
};

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p) {
        fprintf(stderr, "cl: out of memory (%zu bytes)\n", n * sz);
        abort();
    }
    return p;
}

static void tensor_init(cl_tensor *t, const char *name, int ndim, int d0, int d1)
{
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim == 2 ? d1 : 1;
    t->numel = (long)d0 * t->shape[1];
    t->no_decay = ndim == 1;
}

static size_t tensor_bytes(const cl_tensor *t) { return (size_t)t->numel * (t->dtype == CL_F32 ? 4 : 2); }

/* k_proj and v_proj follow q_proj, up_proj follows gate_proj: one matrix with them */
static int continues_group(const cl_llama *m, const cl_tensor *t)
{
    for (int l = 0; l < m->cfg.layers; l++) {
        const cl_linear *li = m->layers[l].proj;
        if (t == li[CL_K].w || t == li[CL_V].w || t == li[CL_UP].w) return 1;
    }
    return 0;
}

/* Places the base tensors from p (NULL: only counts) and returns the bytes used.  The matrices
 * come first in table order, each 64-byte aligned except that a layer's q, k and v (and its
 * gate and up) lie end to end, the 1-D tensors after them: so [Wq; Wk; Wv] and [Wg; Wu] are
 * each one [sum of outs][in] matrix that one product multiplies (group_fwd below).  Only the
 * memory layout; the table and the files keep every tensor apart. */
static size_t base_layout(cl_llama *m, char *p)
{
    size_t off = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < m->n_tensors; i++) {
            cl_tensor *t = &m->tensors[i];
            if ((t->ndim == 2) != (pass == 0)) continue;
            if (!continues_group(m, t)) off = (off + 63) & ~(size_t)63;
            if (p) t->data = p + off;
            off += tensor_bytes(t);
        }
    return (off + 63) & ~(size_t)63;
}

cl_llama *cl_llama_new(const cl_llama_config *c, cl_dtype base_dtype, int flags, cl_err *e)
{
    int train_base = flags & CL_LLAMA_TRAIN_BASE;
    if (cl_config_check(c, "model config", e)) return NULL;
    if (train_base && base_dtype != CL_F32) {
        cl_err_set(e, CL_EXIT_CONFIG, "full fine-tuning needs fp32 base weights");
        return NULL;
    }
    cl_llama *m = xcalloc(1, sizeof *m);
    m->cfg = *c;
    m->train_base = train_base;
    m->own_weights = (flags & CL_LLAMA_DECODE) != 0;
    m->inv_freq = xcalloc((size_t)c->head_dim / 2, sizeof(double));
    cl_rope_inv_freq(c, m->inv_freq);
    int d = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim, L = c->layers;
    int max_t = 3 + L * (2 + CL_NPROJ + 3 + 1 + 3);
    m->tensors = xcalloc((size_t)max_t, sizeof(cl_tensor));
    m->layers = xcalloc((size_t)L, sizeof(cl_layer));
    int n = 0;
    char nm[96];
    m->embed = &m->tensors[n++];
    tensor_init(m->embed, "model.embed_tokens.weight", 2, c->vocab, d);
    const int pin[CL_NPROJ] = {d, d, d, qd, d, d, c->inter};
    const int pout[CL_NPROJ] = {qd, kd, kd, d, c->inter, c->inter, d};
    for (int l = 0; l < L; l++) {
        cl_layer *ly = &m->layers[l];
        ly->ln1 = &m->tensors[n++];
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        tensor_init(ly->ln1, nm, 1, d, 0);
        for (int p = 0; p < CL_NPROJ; p++) {
            cl_linear *li = &ly->proj[p];
            li->in = pin[p];
            li->out = pout[p];
            li->w = &m->tensors[n++];
            snprintf(nm, sizeof nm, "model.layers.%d.%s.%s.weight", l, p <= CL_O ? "self_attn" : "mlp",
                     proj_names[p]);
            tensor_init(li->w, nm, 2, li->out, li->in);
            int bias = p <= CL_V ? c->qkv_bias : p == CL_O ? c->o_bias : c->mlp_bias;
            if (bias) {
                li->b = &m->tensors[n++];
                snprintf(nm, sizeof nm, "model.layers.%d.%s.%s.bias", l, p <= CL_O ? "self_attn" : "mlp",
                         proj_names[p]);
                tensor_init(li->b, nm, 1, li->out, 0);
            }
        }
        ly->ln2 = &m->tensors[n++];
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
        tensor_init(ly->ln2, nm, 1, d, 0);
    }
    m->norm = &m->tensors[n++];
    tensor_init(m->norm, "model.norm.weight", 1, d, 0);
    if (c->tie_embeddings) {
        m->lm_head = m->embed;
    } else {
        m->lm_head = &m->tensors[n++];
        tensor_init(m->lm_head, "lm_head.weight", 2, c->vocab, d);
    }
    m->n_tensors = n;
    /* One base arena; bf16 only for the layer projections (see header). */
    long max_w = 0;
    for (int i = 0; i < n; i++) {
        cl_tensor *t = &m->tensors[i];
        int proj = t->ndim == 2 && t != m->embed && t != m->lm_head;
        t->dtype = proj ? base_dtype : CL_F32;
        if (proj && t->numel > max_w) max_w = t->numel;
    }
    size_t bytes = base_layout(m, NULL);
    /* calloc, not malloc + memset: a large block comes zeroed from the kernel and a page costs
     * memory only once written, so tensors later used in place from a file mapping (weights.c)
     * leave theirs untouched. */
    m->base_mem = calloc(bytes + 63, 1);
    if (!m->base_mem) {
        cl_llama_free(m);
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory for %zu bytes of weights", bytes);
        return NULL;
    }
    /* Huge pages: a decode step or a training step reads every weight, and 2 MB pages take
     * the TLB misses out of those passes; pages are still allocated only when written (a LoRA
     * base used in place never touches its share). */
    cl_pages_advise(m->base_mem, bytes + 63);
    base_layout(m, (char *)(((uintptr_t)m->base_mem + 63) & ~(uintptr_t)63));
    if (base_dtype == CL_BF16) m->wbuf = xcalloc((size_t)max_w, sizeof(float));
    if (train_base) {
        for (int i = 0; i < n; i++) m->n_train += m->tensors[i].numel;
        m->grad_mem = xcalloc((size_t)m->n_train, sizeof(float));
        m->m_mem = xcalloc((size_t)m->n_train, sizeof(float));
        m->v_mem = xcalloc((size_t)m->n_train, sizeof(float));
        /* the first AdamW step reads the zeroed moments, then writes them: with 4 KB pages each
         * page took a read fault onto the zero page, then a write fault and a TLB shootdown */
        for (float *const *a = (float *const[]){m->grad_mem, m->m_mem, m->v_mem, NULL}; *a; a++)
            cl_pages_advise(*a, sizeof(float) * (size_t)m->n_train);
        long off = 0;
        for (int i = 0; i < n; i++) {
            cl_tensor *t = &m->tensors[i];
            t->grad = m->grad_mem + off;
            t->m = m->m_mem + off;
            t->v = m->v_mem + off;
            off += t->numel;
        }
    }
    return m;
}

static void acts_free(cl_llama_acts *a)
{
    if (!a) return;
    free(a->mem);
    free(a->ids);
    free(a->res);
    free(a->lora_h);
    free(a->htgt);
    free(a->hidx);
    free(a);
}

void cl_llama_release_acts(cl_llama *m)
{
    if (m->dev) m->dev->release_acts(m);
    acts_free(m->acts);
    m->acts = NULL;
}

void cl_llama_free(cl_llama *m)
{
    if (!m) return;
    if (m->dev) m->dev->detach(m);
    acts_free(m->acts);
    free(m->inv_freq);
    free(m->tensors);
    free(m->layers);
    free(m->lora);
    free(m->base_mem);
    if (m->unmap) m->unmap(m->mapped);
    free(m->lora_mem);
    free(m->grad_mem);
    free(m->m_mem);
    free(m->v_mem);
    free(m->wbuf);
    free(m->panels_mem);
    free(m);
}

int cl_llama_pack_decode(cl_llama *m, cl_err *e)
{
    if (m->panels_mem) return 0;
    cl_dtype pdt = m->layers[0].proj[CL_Q].w->dtype;
    cl_tensor **list = malloc(sizeof *list * ((size_t)m->cfg.layers * CL_NPROJ * 3 + 1));
    if (!list) return cl_err_set(e, CL_EXIT_SOFTWARE, "engine: out of memory");
    int n = 0;
    for (int l = 0; l < m->cfg.layers; l++)
        for (int p = 0; p < CL_NPROJ; p++) {
            cl_linear *li = &m->layers[l].proj[p];
            list[n++] = li->w;
            if (li->lora_a) list[n++] = li->lora_a, list[n++] = li->lora_b;
        }
    list[n++] = m->lm_head;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        cl_dtype dt = list[i] == m->lm_head ? pdt : list[i]->dtype;
        total += (cl_linear_panels_bytes(list[i]->shape[0], list[i]->shape[1], dt) + 63) & ~(size_t)63;
    }
    char *mem = aligned_alloc(64, (total + 63) & ~(size_t)63);
    if (!mem) {
        free(list);
        return cl_err_set(e, CL_EXIT_SOFTWARE, "engine: out of memory for %zu bytes of packed weights", total);
    }
    cl_pages_advise(mem, total);
    m->panels_mem = mem;
    for (int i = 0; i < n; i++) {
        cl_tensor *t = list[i];
        t->panels_dt = t == m->lm_head ? pdt : t->dtype;
        t->panels = mem;
        cl_linear_pack(mem, t->panels_dt, t->data, t->dtype, t->shape[0], t->shape[1]);
        mem += (cl_linear_panels_bytes(t->shape[0], t->shape[1], t->panels_dt) + 63) & ~(size_t)63;
        /* one copy in memory: the rows go, unless the embedding still reads them (a tied head
         * in bf16 panels) or they are an adapter's (small, in the adapter arena) */
        int keep = !m->own_weights || (t == m->embed && t->panels_dt != CL_F32) ||
                   (t >= m->lora && t < m->lora + m->n_lora);
        if (!keep) {
            cl_pages_release(t->data, (size_t)t->numel * (t->dtype == CL_BF16 ? 2 : 4));
            t->data = NULL;
        }
    }
    free(list);
    return 0;
}

cl_tensor *cl_llama_tensors(cl_llama *m, int *n)
{
    *n = m->n_tensors;
    return m->tensors;
}

cl_tensor *cl_llama_find(cl_llama *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    for (int i = 0; i < m->n_lora; i++)
        if (!strcmp(m->lora[i].name, name)) return &m->lora[i];
    return NULL;
}

int cl_llama_trainable(cl_llama *m, cl_tensor **list, int max)
{
    int n = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].grad && n < max) list[n++] = &m->tensors[i];
    for (int i = 0; i < m->n_lora; i++)
        if (m->lora[i].grad && n < max) list[n++] = &m->lora[i];
    return n;
}

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

double cl_hash_uniform(uint64_t seed, uint64_t i) { return (double)(mix64(seed ^ mix64(i)) >> 11) * 0x1.0p-53; }

double cl_hash_gauss(uint64_t seed, uint64_t i)
{
    double u1 = cl_hash_uniform(seed, 2 * i), u2 = cl_hash_uniform(seed, 2 * i + 1);
    return sqrt(-2 * log(1 - u1)) * cos(2 * 3.14159265358979323846 * u2);
}

static void fill_uniform(cl_tensor *t, uint64_t seed)
{
    uint64_t s = cl_hash64(t->name, strlen(t->name), seed);
    int bias = strstr(t->name, ".bias") != NULL;
    /* each value depends on (seed, name, i) only, so threads change nothing */
#pragma omp parallel for if (t->numel > 65536)
    for (long i = 0; i < t->numel; i++) {
        double u = cl_hash_uniform(s, (uint64_t)i), x;
        if (t->ndim == 1)
            x = bias ? 0.2 * (u - 0.5) : 1 + 0.2 * (u - 0.5);
        else
            x = 2 * (u - 0.5) / sqrt((double)t->shape[1]);
        if (t->dtype == CL_F32)
            ((float *)t->data)[i] = (float)x;
        else
            ((uint16_t *)t->data)[i] = cl_f32_to_bf16((float)x);
    }
}

void cl_llama_init_uniform(cl_llama *m, uint64_t seed, int include_lora)
{
    for (int i = 0; i < m->n_tensors; i++) fill_uniform(&m->tensors[i], seed);
    if (include_lora)
        for (int i = 0; i < m->n_lora; i++) fill_uniform(&m->lora[i], seed);
}

void cl_llama_zero_grad(cl_llama *m)
{
    if (m->dev) {
        m->dev->zero_grad(m);
        return;
    }
    if (m->grad_mem) memset(m->grad_mem, 0, sizeof(float) * (size_t)m->n_train);
}

/* ---- activations ----------------------------------------------------------------------- */

#define HEAD_FLOATS (8l << 20) /* rows x vocab floats per head chunk */

/* Lays the activation arena out for b x t tokens, growing it only when this shape needs more
 * room than any before, so variable-length batches reuse one allocation. */
static cl_llama_acts *acts_fit(const cl_llama *m, cl_llama_acts *a, int b, int t)
{
    const cl_llama_config *c = &m->cfg;
    int L = c->layers, n = b * t, d = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim,
        I = c->inter, r = m->lora_rank;
    int max_in = d > I ? (d > qd ? d : qd) : (I > qd ? I : qd);
    int R = (int)(HEAD_FLOATS / c->vocab);
    if (R > n) R = n;
    if (R > 512) R = 512;
    if (R < 1) R = 1;
    size_t grads = (size_t)(3 * I > 2 * qd + 2 * kd ? 3 * I : 2 * qd + 2 * kd);
    size_t lora_scratch = m->n_lora ? (size_t)r + 2 * (size_t)max_in : 0;
    size_t per_layer = (size_t)n * (2 * d + 2 + qd * 2 + kd * 2 + 2 * I) + (size_t)(m->n_lora ? CL_NPROJ : 0) * n * r;
    size_t fused = (size_t)n * (size_t)(qd + 2 * kd > 2 * I ? qd + 2 * kd : 2 * I);
    size_t hlogits = (size_t)R * c->vocab > fused ? (size_t)R * c->vocab : fused;
    size_t total = per_layer * L + (size_t)n * (2 * d + 1) + (size_t)n * (3 * d + grads + lora_scratch) +
                   (size_t)R * (2 * d + 2) + hlogits;
    if (!a) {
        a = xcalloc(1, sizeof *a);
        float ***slots[] = {&a->rstd1, &a->q, &a->k, &a->v, &a->y, &a->mid, &a->rstd2, &a->g, &a->u};
        int ns = (int)(sizeof slots / sizeof *slots);
        a->res = xcalloc((size_t)L * (ns + 1), sizeof(float *));
        a->lora_h = xcalloc((size_t)L * CL_NPROJ, sizeof(float *));
        for (int s = 0; s < ns; s++) *slots[s] = a->res + (size_t)L * (s + 1);
    }
    if (total > a->cap) {
        free(a->mem);
        a->mem = xcalloc(total, sizeof(float));
        a->cap = total;
    }
    if (n > a->cap_n) {
        free(a->ids);
        a->ids = xcalloc((size_t)n * 3, sizeof(int));
        a->cap_n = n;
    }
    if (R > a->cap_r) {
        free(a->htgt);
        free(a->hidx);
        a->htgt = xcalloc((size_t)R, sizeof(int));
        a->hidx = xcalloc((size_t)R, sizeof(int));
        a->cap_r = R;
    }
    a->b = b;
    a->t = t;
    a->n = n;
    a->head_rows = R;
    a->pos = a->ids + n;
    a->seg = a->pos + n;
    float *p = a->mem;
#define TAKE(cnt) (p += (cnt), p - (cnt))
    for (int l = 0; l < L; l++) {
        a->res[l] = TAKE((size_t)n * d);
        a->rstd1[l] = TAKE((size_t)n);
        a->q[l] = TAKE((size_t)n * qd);
        a->k[l] = TAKE((size_t)n * kd);
        a->v[l] = TAKE((size_t)n * kd);
        a->y[l] = TAKE((size_t)n * qd);
        a->mid[l] = TAKE((size_t)n * d);
        a->rstd2[l] = TAKE((size_t)n);
        a->g[l] = TAKE((size_t)n * I);
        a->u[l] = TAKE((size_t)n * I);
        if (m->n_lora)
            for (int pj = 0; pj < CL_NPROJ; pj++) a->lora_h[l * CL_NPROJ + pj] = TAKE((size_t)n * r);
    }
    a->res_final = TAKE((size_t)n * d);
    a->lnf = TAKE((size_t)n * d);
    a->rstdf = TAKE((size_t)n);
    a->xn = TAKE((size_t)n * d);
    a->dres = TAKE((size_t)n * d);
    a->dln = a->dlnf = TAKE((size_t)n * d);
    float *g0 = TAKE((size_t)n * grads);
    a->dh = g0;
    a->dg = g0 + (size_t)n * I;
    a->du = g0 + (size_t)n * 2 * I;
    a->dy = g0;
    a->dq = g0 + (size_t)n * qd;
    a->dk = g0 + (size_t)n * 2 * qd;
    a->dv = g0 + (size_t)n * (2 * qd + kd);
    a->lora_dh = a->xd = a->dxd = NULL;
    if (m->n_lora) {
        a->lora_dh = TAKE((size_t)n * r);
        a->xd = TAKE((size_t)n * max_in);
        a->dxd = TAKE((size_t)n * max_in);
    }
    a->hx = TAKE((size_t)R * d);
    a->hdx = TAKE((size_t)R * d);
    a->hlogits = a->fuse = TAKE(hlogits);
    a->hcoef = TAKE((size_t)R);
    a->hlogp = TAKE((size_t)R);
#undef TAKE
    return a;
}

/* ---- linear layers with optional bf16 weight and LoRA branch ---------------------------- */

static const float *weight_f32(cl_llama *m, const cl_tensor *t)
{
    if (t->dtype == CL_F32) return t->data;
    const uint16_t *src = t->data;
    float *dst = m->wbuf;
#pragma omp parallel for if (t->numel > 65536)
    for (long i = 0; i < t->numel; i++) dst[i] = cl_bf16_to_f32(src[i]);
    return dst;
}

uint64_t cl_llama_dropout_seed(const cl_llama *m, long step, int layer, int proj)
{
    return mix64(m->seed ^ mix64((uint64_t)step * 1024 + (uint64_t)layer * CL_NPROJ + (uint64_t)proj));
}

static int lora_active(const cl_llama_acts *a, const cl_linear *li) { return a->lora_used && li->lora_a; }

static int dropout_active(const cl_llama *m, const cl_llama_acts *a)
{
    return a->training && m->lora_dropout > 0;
}

void cl_llama_project(cl_llama *m, int layer, int proj, const float *x, float *out, int n, float *h)
{
    cl_linear *li = &m->layers[layer].proj[proj];
    cl_linear_fwd(out, x, weight_f32(m, li->w), li->b ? li->b->data : NULL, n, li->in, li->out, 0);
    if (m->lora_on && li->lora_a)
        cl_lora_fwd(out, h, x, li->lora_a->data, li->lora_b->data, m->lora_scale, n, li->in, li->out, m->lora_rank);
}

/* The width of projections p0 .. p0+cnt-1 of layer l as one product, or 0 where they must run
 * apart: fp32 weights end to end (cl_llama_new lays them out so; weights used in place from a
 * file mapping or stored in bf16 are not) and more than one of them. */
static int fused_width(const cl_llama *m, int l, int p0, int cnt)
{
    const cl_linear *li = &m->layers[l].proj[p0];
    int width = li[0].out;
    for (int i = 1; i < cnt; i++) {
        if (li[i].w->dtype != CL_F32 || li[0].w->dtype != CL_F32 ||
            (const float *)li[i].w->data != (const float *)li[i - 1].w->data + li[i - 1].w->numel)
            return 0;
        width += li[i].out;
    }
    return cnt > 1 ? width : 0;
}

/* out += the adapter branch of projection p on x (after its dropout mask when training) */
static void lora_branch_fwd(cl_llama *m, int l, int p, const float *x, float *out)
{
    cl_llama_acts *a = m->acts;
    cl_linear *li = &m->layers[l].proj[p];
    if (!lora_active(a, li)) return;
    const float *xd = x;
    if (dropout_active(m, a)) {
        cl_dropout(a->xd, x, (long)a->n * li->in, m->lora_dropout, cl_llama_dropout_seed(m, a->step, l, p));
        xd = a->xd;
    }
    cl_lora_fwd(out, a->lora_h[l * CL_NPROJ + p], xd, li->lora_a->data, li->lora_b->data, m->lora_scale, a->n,
                li->in, li->out, m->lora_rank);
}

/* dx += the adapter branch's input gradient; the adapter's gradients accumulate */
static void lora_branch_bwd(cl_llama *m, int l, int p, const float *dout, const float *x, float *dx)
{
    cl_llama_acts *a = m->acts;
    cl_linear *li = &m->layers[l].proj[p];
    if (!lora_active(a, li)) return;
    const float *xd = x;
    int drop = dropout_active(m, a);
    long cnt = (long)a->n * li->in;
    uint64_t seed = cl_llama_dropout_seed(m, a->step, l, p);
    if (drop) {
        cl_dropout(a->xd, x, cnt, m->lora_dropout, seed);
        xd = a->xd;
        memset(a->dxd, 0, sizeof(float) * (size_t)cnt);
    }
    cl_lora_bwd(drop ? a->dxd : dx, li->lora_a->grad, li->lora_b->grad, a->lora_dh, dout,
                a->lora_h[l * CL_NPROJ + p], xd, li->lora_a->data, li->lora_b->data, m->lora_scale, a->n,
                li->in, li->out, m->lora_rank);
    if (drop) {
        cl_dropout(a->dxd, a->dxd, cnt, m->lora_dropout, seed);
        for (long i = 0; i < cnt; i++) dx[i] += a->dxd[i];
    }
}

/* Between the fused [n][width] matrix and the projections' own [n][out] arrays: to_parts
 * copies each row's slices out (adding the biases), else gathers the parts into it. */
static void fuse_rows(float *fused, float *const *parts, const cl_linear *li, int cnt, int n, int width,
                      int to_parts)
{
#pragma omp parallel for if ((long)n * width > 65536)
    for (int r = 0; r < n; r++) {
        float *f = fused + (size_t)r * width;
        for (int i = 0; i < cnt; f += li[i].out, i++) {
            float *restrict part = parts[i] + (size_t)r * li[i].out;
            const float *b = li[i].b ? li[i].b->data : NULL;
            if (!to_parts)
                memcpy(f, part, sizeof(float) * (size_t)li[i].out);
            else if (b)
                for (int j = 0; j < li[i].out; j++) part[j] = f[j] + b[j];
            else
                memcpy(part, f, sizeof(float) * (size_t)li[i].out);
        }
    }
}

/* outs[i] = x W^T + b (+ the adapter branch) for projections p0 .. p0+cnt-1 of layer l, which
 * all read x: q, k, v (or gate, up) in one product where fused_width allows, which packs x
 * once instead of cnt times and hands the threads wider panels. */
static void group_fwd(cl_llama *m, int l, int p0, int cnt, const float *x, float *const *outs)
{
    cl_llama_acts *a = m->acts;
    cl_linear *li = &m->layers[l].proj[p0];
    int width = fused_width(m, l, p0, cnt);
    if (width) {
        cl_linear_fwd(a->fuse, x, li->w->data, NULL, a->n, li->in, width, 0);
        fuse_rows(a->fuse, outs, li, cnt, a->n, width, 1);
    }
    for (int i = 0; i < cnt; i++) {
        if (!width)
            cl_linear_fwd(outs[i], x, weight_f32(m, li[i].w), li[i].b ? li[i].b->data : NULL, a->n, li[i].in,
                          li[i].out, 0);
        lora_branch_fwd(m, l, p0 + i, x, outs[i]);
    }
}

/* The backward of group_fwd: dx += sum_i douts[i] . W_i (one product over the fused matrix);
 * weight grads in one product too where they also lie end to end (full fine-tuning), bias and
 * adapter grads per projection. */
static void group_bwd(cl_llama *m, int l, int p0, int cnt, float *const *douts, const float *x, float *dx)
{
    cl_llama_acts *a = m->acts;
    cl_linear *li = &m->layers[l].proj[p0];
    int width = fused_width(m, l, p0, cnt), grads_fused = width != 0;
    for (int i = 1; i < cnt && grads_fused; i++)
        grads_fused = li[i].w->grad == (li[0].w->grad ? li[i - 1].w->grad + li[i - 1].w->numel : NULL);
    if (width) {
        fuse_rows(a->fuse, douts, li, cnt, a->n, width, 0);
        cl_linear_bwd(dx, grads_fused ? li->w->grad : NULL, NULL, a->fuse, x, li->w->data, a->n, li->in, width);
    }
    for (int i = 0; i < cnt; i++) {
        float *dw = grads_fused ? NULL : li[i].w->grad, *db = li[i].b ? li[i].b->grad : NULL;
        cl_linear_bwd(width ? NULL : dx, dw, db, douts[i], x, width ? NULL : weight_f32(m, li[i].w), a->n, li[i].in,
                      li[i].out);
        lora_branch_bwd(m, l, p0 + i, douts[i], x, dx);
    }
}

/* ---- forward / head / backward --------------------------------------------------------- */

int cl_llama_forward(cl_llama *m, const int *ids, const int *pos, const int *seg, int b, int t, cl_err *e)
{
    const cl_llama_config *c = &m->cfg;
    if (b <= 0 || t <= 0) return cl_err_set(e, CL_EXIT_SOFTWARE, "forward: empty batch");
    for (long i = 0; i < (long)b * t; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return cl_err_set(e, CL_EXIT_DATAERR, "forward: token id %d at position %ld is outside the vocabulary (%d)",
                              ids[i], i, c->vocab);
    if (m->dev) return m->dev->forward(m, ids, pos, seg, b, t, e);
    m->acts = acts_fit(m, m->acts, b, t);
    cl_llama_acts *a = m->acts;
    int n = a->n, d = c->hidden, I = c->inter;
    memcpy(a->ids, ids, sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
        a->pos[i] = pos ? pos[i] : i % t;
        a->seg[i] = seg ? seg[i] : 0;
    }
    a->has_seg = seg != NULL;
    a->lora_used = m->n_lora && m->lora_on;
    a->training = m->training;
    a->step = m->training ? m->step++ : 0;
    cl_embed_fwd(a->res[0], ids, m->embed->data, n, d);
    for (int l = 0; l < c->layers; l++) {
        cl_layer *ly = &m->layers[l];
        float *out = l + 1 < c->layers ? a->res[l + 1] : a->res_final;
        cl_rmsnorm_fwd(a->xn, a->rstd1[l], a->res[l], ly->ln1->data, n, d, c->rms_eps);
        group_fwd(m, l, CL_Q, 3, a->xn, (float *const[]){a->q[l], a->k[l], a->v[l]});
        cl_rope(a->q[l], a->pos, m->inv_freq, n, c->heads, c->head_dim, 1);
        cl_rope(a->k[l], a->pos, m->inv_freq, n, c->kv_heads, c->head_dim, 1);
        cl_attention_fwd(a->y[l], a->q[l], a->k[l], a->v[l], a->has_seg ? a->seg : NULL, b, t,
                         c->heads, c->kv_heads, c->head_dim);
        group_fwd(m, l, CL_O, 1, a->y[l], &a->mid[l]);
        for (long i = 0; i < (long)n * d; i++) a->mid[l][i] += a->res[l][i];
        cl_rmsnorm_fwd(a->xn, a->rstd2[l], a->mid[l], ly->ln2->data, n, d, c->rms_eps);
        group_fwd(m, l, CL_GATE, 2, a->xn, (float *const[]){a->g[l], a->u[l]});
        cl_swiglu_fwd(a->dg, a->g[l], a->u[l], (long)n * I); /* h, recomputed in the backward */
        group_fwd(m, l, CL_DOWN, 1, a->dg, &out);
        for (long i = 0; i < (long)n * d; i++) out[i] += a->mid[l][i];
    }
    cl_rmsnorm_fwd(a->lnf, a->rstdf, a->res_final, m->norm->data, n, d, c->rms_eps);
    memset(a->dlnf, 0, sizeof(float) * (size_t)n * d);
    return 0;
}

static void head_chunk(cl_llama *m, int rows, const float *coef, float *logp)
{
    cl_llama_acts *a = m->acts;
    int d = m->cfg.hidden, V = m->cfg.vocab;
    const float *w = m->lm_head->data;
    for (int r = 0; r < rows; r++) memcpy(a->hx + (size_t)r * d, a->lnf + (size_t)a->hidx[r] * d, sizeof(float) * d);
    cl_gemm(CL_N, CL_T, rows, V, d, 1.0f, a->hx, d, w, d, 0.0f, a->hlogits, V);
    cl_logprob_rows(a->hlogits, a->htgt, coef ? a->hcoef : NULL, rows, V, a->hlogp);
    for (int r = 0; r < rows; r++) logp[a->hidx[r]] = a->hlogp[r];
    if (!coef) return;
    cl_gemm(CL_N, CL_N, rows, d, V, 1.0f, a->hlogits, V, w, d, 0.0f, a->hdx, d);
    for (int r = 0; r < rows; r++) {
        float *dst = a->dlnf + (size_t)a->hidx[r] * d;
        for (int j = 0; j < d; j++) dst[j] += a->hdx[(size_t)r * d + j];
    }
    if (m->lm_head->grad) cl_gemm(CL_T, CL_N, V, d, rows, 1.0f, a->hlogits, V, a->hx, d, 1.0f, m->lm_head->grad, d);
}

void cl_llama_head(cl_llama *m, const int *target, const float *coef, float *logp)
{
    if (m->dev) {
        m->dev->head(m, target, coef, logp);
        return;
    }
    cl_llama_acts *a = m->acts;
    int rows = 0;
    for (int i = 0; i < a->n; i++) {
        logp[i] = 0;
        if (target[i] < 0) continue;
        a->hidx[rows] = i;
        a->htgt[rows] = target[i];
        if (coef) a->hcoef[rows] = coef[i];
        if (++rows == a->head_rows) {
            head_chunk(m, rows, coef, logp);
            rows = 0;
        }
    }
    if (rows) head_chunk(m, rows, coef, logp);
}

void cl_llama_logits(cl_llama *m, float *out)
{
    if (m->dev) {
        m->dev->logits(m, out);
        return;
    }
    cl_llama_acts *a = m->acts;
    cl_gemm(CL_N, CL_T, a->n, m->cfg.vocab, m->cfg.hidden, 1.0f, a->lnf, m->cfg.hidden, m->lm_head->data,
            m->cfg.hidden, 0.0f, out, m->cfg.vocab);
}

void cl_llama_backward(cl_llama *m)
{
    if (m->dev) {
        m->dev->backward(m);
        return;
    }
    const cl_llama_config *c = &m->cfg;
    cl_llama_acts *a = m->acts;
    int n = a->n, d = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim, I = c->inter;
    size_t nd = sizeof(float) * (size_t)n * d;
    memset(a->dres, 0, nd);
    cl_rmsnorm_bwd(a->dres, m->norm->grad, a->dlnf, a->res_final, m->norm->data, a->rstdf, n, d);
    for (int l = c->layers - 1; l >= 0; l--) {
        cl_layer *ly = &m->layers[l];
        /* MLP: out = mid + down(silu(gate(ln2)) * up(ln2)); h again into dg before dg is due */
        cl_swiglu_fwd(a->dg, a->g[l], a->u[l], (long)n * I);
        memset(a->dh, 0, sizeof(float) * (size_t)n * I);
        group_bwd(m, l, CL_DOWN, 1, &a->dres, a->dg, a->dh);
        memset(a->dg, 0, sizeof(float) * (size_t)n * I);
        memset(a->du, 0, sizeof(float) * (size_t)n * I);
        cl_swiglu_bwd(a->dg, a->du, a->dh, a->g[l], a->u[l], (long)n * I);
        cl_rmsnorm_apply(a->xn, a->mid[l], ly->ln2->data, a->rstd2[l], n, d);
        memset(a->dln, 0, nd);
        group_bwd(m, l, CL_GATE, 2, (float *const[]){a->dg, a->du}, a->xn, a->dln);
        cl_rmsnorm_bwd(a->dres, ly->ln2->grad, a->dln, a->mid[l], ly->ln2->data, a->rstd2[l], n, d);
        /* attention: mid = res + o(attn(rope(q(ln1)), rope(k(ln1)), v(ln1))) */
        memset(a->dy, 0, sizeof(float) * (size_t)n * qd);
        group_bwd(m, l, CL_O, 1, &a->dres, a->y[l], a->dy);
        memset(a->dq, 0, sizeof(float) * (size_t)n * qd);
        memset(a->dk, 0, sizeof(float) * (size_t)n * kd);
        memset(a->dv, 0, sizeof(float) * (size_t)n * kd);
        cl_attention_bwd(a->dq, a->dk, a->dv, a->dy, a->q[l], a->k[l], a->v[l], a->has_seg ? a->seg : NULL, a->b, a->t, c->heads,
                         c->kv_heads, c->head_dim);
        cl_rope(a->dq, a->pos, m->inv_freq, n, c->heads, c->head_dim, -1);
        cl_rope(a->dk, a->pos, m->inv_freq, n, c->kv_heads, c->head_dim, -1);
        cl_rmsnorm_apply(a->xn, a->res[l], ly->ln1->data, a->rstd1[l], n, d);
        memset(a->dln, 0, nd);
        group_bwd(m, l, CL_Q, 3, (float *const[]){a->dq, a->dk, a->dv}, a->xn, a->dln);
        cl_rmsnorm_bwd(a->dres, ly->ln1->grad, a->dln, a->res[l], ly->ln1->data, a->rstd1[l], n, d);
    }
    if (m->embed->grad) cl_embed_bwd(m->embed->grad, a->ids, a->dres, n, d);
}
