/* engine.c — KV-cache prefill/decode and sampling. */
#include "model/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/gemm.h"
#include "model/ops.h"

#define CHUNK 64

struct cl_engine {
    cl_llama *m;
    int max_seq, len;
    float *kc, *vc;                             /* [layers][max_seq][kd] */
    float *mem, *x, *xn, *q, *k, *v, *y, *gt, *up, *hb, *lh, *scores, *rstd;
    int *pos;
};

cl_engine *cl_engine_new(cl_llama *m, int max_seq, cl_err *e)
{
    const cl_llama_config *c = &m->cfg;
    if (max_seq <= 0) {
        cl_err_set(e, CL_EXIT_USAGE, "engine: context length must be positive");
        return NULL;
    }
    cl_engine *g = calloc(1, sizeof *g);
    if (!g) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "engine: out of memory");
        return NULL;
    }
    int d = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim, I = c->inter;
    size_t cache = (size_t)c->layers * max_seq * kd;
    size_t scratch = (size_t)CHUNK * (1 + 3 * d + 2 * qd + 2 * kd + 3 * I + (m->lora_rank ? m->lora_rank : 1)) +
                     (size_t)c->heads * CHUNK * max_seq;
    g->mem = calloc(2 * cache + scratch, sizeof(float));
    g->pos = calloc(CHUNK, sizeof(int));
    if (!g->mem || !g->pos) {
        cl_engine_free(g);
        cl_err_set(e, CL_EXIT_SOFTWARE, "engine: out of memory for a %d-token cache", max_seq);
        return NULL;
    }
    g->m = m;
    g->max_seq = max_seq;
    float *p = g->mem;
#define TAKE(cnt) (p += (cnt), p - (cnt))
    g->kc = TAKE(cache);
    g->vc = TAKE(cache);
    g->x = TAKE((size_t)CHUNK * d);
    g->xn = TAKE((size_t)CHUNK * d);
    g->y = TAKE((size_t)CHUNK * d > (size_t)CHUNK * qd ? (size_t)CHUNK * d : (size_t)CHUNK * qd);
    g->q = TAKE((size_t)CHUNK * qd);
    g->k = TAKE((size_t)CHUNK * kd);
    g->v = TAKE((size_t)CHUNK * kd);
    g->gt = TAKE((size_t)CHUNK * I);
    g->up = TAKE((size_t)CHUNK * I);
    g->hb = TAKE((size_t)CHUNK * I);
    g->lh = TAKE((size_t)CHUNK * (m->lora_rank ? m->lora_rank : 1));
    g->scores = TAKE((size_t)c->heads * CHUNK * max_seq);
    g->rstd = TAKE(CHUNK);
#undef TAKE
    return g;
}

void cl_engine_free(cl_engine *g)
{
    if (!g) return;
    free(g->mem);
    free(g->pos);
    free(g);
}

void cl_engine_reset(cl_engine *g) { g->len = 0; }

int cl_engine_len(const cl_engine *g) { return g->len; }

/* New tokens [n] attend to the cache rows 0..pos (their own rows are already written). */
static void cached_attention(cl_engine *g, int l, int n)
{
    const cl_llama_config *c = &g->m->cfg;
    int hd = c->head_dim, qd = c->heads * hd, kd = c->kv_heads * hd, group = c->heads / c->kv_heads;
    const float *kc = g->kc + (size_t)l * g->max_seq * kd, *vc = g->vc + (size_t)l * g->max_seq * kd;
    float scale = (float)(1.0 / sqrt((double)hd));
#pragma omp parallel for collapse(2) if ((long)n * c->heads * (g->len + n) * hd > 100000)
    for (int i = 0; i < n; i++)
        for (int h = 0; h < c->heads; h++) {
            int upto = g->pos[i], kh = h / group;
            const float *qi = g->q + (size_t)i * qd + (size_t)h * hd;
            float *sc = g->scores + ((size_t)h * CHUNK + i) * g->max_seq, mx = -INFINITY;
            for (int s = 0; s <= upto; s++) {
                const float *ks = kc + (size_t)s * kd + (size_t)kh * hd;
                float dot = 0;
                for (int j = 0; j < hd; j++) dot += qi[j] * ks[j];
                sc[s] = dot * scale;
                mx = sc[s] > mx ? sc[s] : mx;
            }
            double sum = 0;
            for (int s = 0; s <= upto; s++) sum += sc[s] = (float)exp((double)(sc[s] - mx));
            float *o = g->y + (size_t)i * qd + (size_t)h * hd, inv = (float)(1.0 / sum);
            memset(o, 0, sizeof(float) * hd);
            for (int s = 0; s <= upto; s++) {
                const float *vs = vc + (size_t)s * kd + (size_t)kh * hd;
                float w = sc[s] * inv;
                for (int j = 0; j < hd; j++) o[j] += w * vs[j];
            }
        }
}

static void feed_chunk(cl_engine *g, const int *ids, int n, float *logits)
{
    cl_llama *m = g->m;
    const cl_llama_config *c = &m->cfg;
    int d = c->hidden, kd = c->kv_heads * c->head_dim, I = c->inter;
    for (int i = 0; i < n; i++) g->pos[i] = g->len + i;
    cl_embed_fwd(g->x, ids, m->embed->data, n, d);
    float *rstd = g->rstd;
    for (int l = 0; l < c->layers; l++) {
        cl_layer *ly = &m->layers[l];
        cl_rmsnorm_fwd(g->xn, rstd, g->x, ly->ln1->data, n, d, c->rms_eps);
        cl_llama_project(m, l, CL_Q, g->xn, g->q, n, g->lh);
        cl_llama_project(m, l, CL_K, g->xn, g->k, n, g->lh);
        cl_llama_project(m, l, CL_V, g->xn, g->v, n, g->lh);
        cl_rope(g->q, g->pos, m->inv_freq, n, c->heads, c->head_dim, 1);
        cl_rope(g->k, g->pos, m->inv_freq, n, c->kv_heads, c->head_dim, 1);
        size_t at = ((size_t)l * g->max_seq + g->len) * kd;
        memcpy(g->kc + at, g->k, sizeof(float) * (size_t)n * kd);
        memcpy(g->vc + at, g->v, sizeof(float) * (size_t)n * kd);
        cached_attention(g, l, n);
        cl_llama_project(m, l, CL_O, g->y, g->xn, n, g->lh);
        for (long i = 0; i < (long)n * d; i++) g->x[i] += g->xn[i];
        cl_rmsnorm_fwd(g->xn, rstd, g->x, ly->ln2->data, n, d, c->rms_eps);
        cl_llama_project(m, l, CL_GATE, g->xn, g->gt, n, g->lh);
        cl_llama_project(m, l, CL_UP, g->xn, g->up, n, g->lh);
        cl_swiglu_fwd(g->hb, g->gt, g->up, (long)n * I);
        cl_llama_project(m, l, CL_DOWN, g->hb, g->xn, n, g->lh);
        for (long i = 0; i < (long)n * d; i++) g->x[i] += g->xn[i];
    }
    g->len += n;
    if (!logits) return;
    const float *last = g->x + (size_t)(n - 1) * d;
    cl_rmsnorm_fwd(g->xn, rstd, last, m->norm->data, 1, d, c->rms_eps);
    cl_gemm(CL_N, CL_T, 1, c->vocab, d, 1.0f, g->xn, d, m->lm_head->data, d, 0.0f, logits, c->vocab);
}

int cl_engine_feed(cl_engine *g, const int *ids, int n, float *logits, cl_err *e)
{
    if (n <= 0) return cl_err_set(e, CL_EXIT_SOFTWARE, "engine: nothing to feed");
    if (g->len + n > g->max_seq)
        return cl_err_set(e, CL_EXIT_DATAERR, "engine: %d tokens exceed the %d-token context", g->len + n, g->max_seq);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= g->m->cfg.vocab)
            return cl_err_set(e, CL_EXIT_DATAERR, "engine: token id %d is outside the vocabulary (%d)", ids[i],
                              g->m->cfg.vocab);
    for (int off = 0; off < n; off += CHUNK) {
        int cnt = n - off < CHUNK ? n - off : CHUNK;
        feed_chunk(g, ids + off, cnt, off + cnt == n ? logits : NULL);
    }
    return 0;
}

static _Thread_local const float *sort_key;
static int by_prob_desc(const void *a, const void *b)
{
    float x = sort_key[*(const int *)a], y = sort_key[*(const int *)b];
    return (x < y) - (x > y);
}

int cl_sample(const float *logits, int v, const cl_sampler *s, uint64_t *rng, float *pscratch, int *iscratch)
{
    int best = 0;
    for (int i = 1; i < v; i++) best = logits[i] > logits[best] ? i : best;
    if (s->temperature <= 0 || s->top_k == 1) return best;
    double sum = 0;
    for (int i = 0; i < v; i++) sum += pscratch[i] = (float)exp((logits[i] - logits[best]) / s->temperature);
    int n = v;
    for (int i = 0; i < v; i++) iscratch[i] = i;
    if ((s->top_k > 0 && s->top_k < v) || (s->top_p > 0 && s->top_p < 1)) {
        sort_key = pscratch;
        qsort(iscratch, (size_t)v, sizeof(int), by_prob_desc);
        if (s->top_k > 0 && s->top_k < n) n = s->top_k;
        if (s->top_p > 0 && s->top_p < 1) {
            double kept = 0, total = 0;
            for (int i = 0; i < n; i++) total += pscratch[iscratch[i]];
            for (int i = 0; i < n; i++) {
                kept += pscratch[iscratch[i]];
                if (kept >= s->top_p * total) { n = i + 1; break; }
            }
        }
        sum = 0;
        for (int i = 0; i < n; i++) sum += pscratch[iscratch[i]];
    }
    *rng += 0x9e3779b97f4a7c15ull;
    double u = cl_hash_uniform(*rng, 0) * sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += pscratch[iscratch[i]];
        if (u < acc) return iscratch[i];
    }
    return iscratch[n - 1];
}

int cl_engine_generate(cl_engine *g, const int *prompt, int n, int max_new, const int *stop, int nstop,
                       const cl_sampler *s, uint64_t seed, int *out, cl_err *e)
{
    int v = g->m->cfg.vocab, made = 0;
    float *logits = malloc(sizeof(float) * 2 * (size_t)v);
    int *idx = malloc(sizeof(int) * (size_t)v);
    if (!logits || !idx) {
        free(logits);
        free(idx);
        return cl_err_set(e, CL_EXIT_SOFTWARE, "engine: out of memory");
    }
    uint64_t rng = seed;
    int rc = cl_engine_feed(g, prompt, n, logits, e);
    while (rc == 0 && made < max_new) {
        int tok = cl_sample(logits, v, s, &rng, logits + v, idx);
        out[made++] = tok;
        int stopped = 0;
        for (int i = 0; i < nstop; i++) stopped |= tok == stop[i];
        if (stopped || made == max_new) break;
        rc = cl_engine_feed(g, &tok, 1, logits, e);
    }
    free(logits);
    free(idx);
    return rc ? -1 : made;
}
