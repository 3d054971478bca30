/* engine.c — KV-cache prefill/decode, sampling, and the continuous-batching engine. */
#include "model/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/gemm.h"
#include "model/linear.h"
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

/* ---- the continuous-batching engine ------------------------------------------------------ */


#define PREFILL_MIN 16 /* prompt tokens per step even when decode rows fill step_tokens */

struct cl_gen {
    cl_gen_req r;
    int *tok;            /* prompt, then generated tokens [cap] */
    int ntok, cap, nprompt, fed, made;
    float *kc, *vc;      /* [layers][cap][kd] */
    size_t kv_bytes;
    uint64_t rng;
    int rows;            /* rows of this sequence in the current step */
    cl_gen *next;        /* wait queue */
};

struct cl_batch {
    cl_llama *m;
    size_t kv_budget, kv_used;
    int step_tokens;
    cl_gen *wait_head, *wait_tail;
    cl_gen **run;
    int nrun, caprun;
    /* scratch for one step's rows */
    int rows_cap;
    float *x, *xn, *q, *k, *v, *y, *gt, *up, *hb, *rstd, *logits;
    float *pscratch;
    int *iscratch, *pos;
    cl_gen **rseq;
};

size_t cl_batch_kv_bytes(const cl_llama *m, int tokens)
{
    const cl_llama_config *c = &m->cfg;
    return 2 * sizeof(float) * (size_t)c->layers * (size_t)tokens * (size_t)c->kv_heads * (size_t)c->head_dim;
}

cl_batch *cl_batch_new(cl_llama *m, size_t kv_bytes, int step_tokens, cl_err *e)
{
    if (m->n_lora && m->lora_on) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "engine: merge the adapters before batching (cl_lora_merge)");
        return NULL;
    }
    cl_batch *b = calloc(1, sizeof *b);
    int v = m->cfg.vocab;
    if (b) {
        b->pscratch = malloc(sizeof(float) * (size_t)v);
        b->iscratch = malloc(sizeof(int) * (size_t)v);
    }
    if (!b || !b->pscratch || !b->iscratch) {
        cl_batch_free(b);
        cl_err_set(e, CL_EXIT_SOFTWARE, "engine: out of memory");
        return NULL;
    }
    b->m = m;
    b->kv_budget = kv_bytes;
    b->step_tokens = step_tokens > 0 ? step_tokens : 64;
    return b;
}

static void gen_free(cl_gen *g)
{
    if (!g) return;
    free(g->tok);
    free(g->kc);
    free(g);
}

static void free_scratch(cl_batch *b)
{
    free(b->x);
    free(b->pos);
    free(b->rseq);
    b->x = NULL;
    b->pos = NULL;
    b->rseq = NULL;
    b->rows_cap = 0;
}

void cl_batch_free(cl_batch *b)
{
    if (!b) return;
    for (int i = 0; i < b->nrun; i++) gen_free(b->run[i]);
    for (cl_gen *g = b->wait_head, *n; g; g = n) {
        n = g->next;
        gen_free(g);
    }
    free(b->run);
    free_scratch(b);
    free(b->pscratch);
    free(b->iscratch);
    free(b);
}

cl_gen *cl_batch_submit(cl_batch *b, const cl_gen_req *r, cl_err *e)
{
    const cl_llama_config *c = &b->m->cfg;
    if (r->n <= 0) {
        cl_err_set(e, CL_EXIT_DATAERR, "engine: empty prompt");
        return NULL;
    }
    if (r->n >= c->max_pos) {
        cl_err_set(e, CL_EXIT_DATAERR, "engine: the prompt's %d tokens leave no room in the model's %d-token context",
                   r->n, c->max_pos);
        return NULL;
    }
    for (int i = 0; i < r->n; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= c->vocab) {
            cl_err_set(e, CL_EXIT_DATAERR, "engine: token id %d is outside the vocabulary (%d)", r->prompt[i], c->vocab);
            return NULL;
        }
    cl_gen *g = calloc(1, sizeof *g);
    long want = (long)r->n + (r->max_new > 0 ? r->max_new : 1);
    int cap = want < c->max_pos ? (int)want : c->max_pos;
    if (!g || !(g->tok = malloc(sizeof(int) * (size_t)cap))) {
        free(g);
        cl_err_set(e, CL_EXIT_SOFTWARE, "engine: out of memory");
        return NULL;
    }
    g->r = *r;
    g->r.prompt = NULL;
    memcpy(g->tok, r->prompt, sizeof(int) * (size_t)r->n);
    g->ntok = g->nprompt = r->n;
    g->cap = cap;
    g->rng = r->seed;
    g->kv_bytes = cl_batch_kv_bytes(b->m, cap);
    if (b->wait_tail) b->wait_tail->next = g;
    else b->wait_head = g;
    b->wait_tail = g;
    return g;
}

static void retire(cl_batch *b, int i)
{
    cl_gen *g = b->run[i];
    b->kv_used -= g->kv_bytes;
    memmove(b->run + i, b->run + i + 1, sizeof *b->run * (size_t)(b->nrun - i - 1));
    b->nrun--;
    gen_free(g);
}

void cl_batch_cancel(cl_batch *b, cl_gen *g)
{
    for (int i = 0; i < b->nrun; i++)
        if (b->run[i] == g) {
            retire(b, i);
            return;
        }
    for (cl_gen **p = &b->wait_head, *prev = NULL; *p; prev = *p, p = &(*p)->next)
        if (*p == g) {
            *p = g->next;
            if (b->wait_tail == g) b->wait_tail = prev;
            gen_free(g);
            return;
        }
}

int cl_batch_busy(const cl_batch *b) { return b->nrun + (b->wait_head != NULL); }

/* Moves waiting sequences in while their caches fit (one at a time past the budget). */
static void admit(cl_batch *b)
{
    while (b->wait_head && (b->nrun == 0 || b->kv_used + b->wait_head->kv_bytes <= b->kv_budget)) {
        cl_gen *g = b->wait_head;
        size_t floats = g->kv_bytes / sizeof(float);
        if (b->nrun == b->caprun) {
            int nc = b->caprun ? 2 * b->caprun : 16;
            cl_gen **nr = realloc(b->run, sizeof *nr * (size_t)nc);
            if (!nr) return; /* try again next step */
            b->run = nr;
            b->caprun = nc;
        }
        if (!(g->kc = malloc(sizeof(float) * floats))) return;
        g->vc = g->kc + floats / 2;
        b->wait_head = g->next;
        if (!b->wait_head) b->wait_tail = NULL;
        g->next = NULL;
        b->kv_used += g->kv_bytes;
        b->run[b->nrun++] = g;
    }
}

static int ensure_rows(cl_batch *b, int n)
{
    if (n <= b->rows_cap) return 0;
    const cl_llama_config *c = &b->m->cfg;
    int cap = n > 2 * b->rows_cap ? n : 2 * b->rows_cap;
    size_t d = (size_t)c->hidden, qd = (size_t)c->heads * c->head_dim, kd = (size_t)c->kv_heads * c->head_dim,
           I = (size_t)c->inter, V = (size_t)c->vocab, N = (size_t)cap;
    size_t yd = d > qd ? d : qd;
    free_scratch(b);
    b->x = malloc(sizeof(float) * N * (2 * d + yd + qd + 2 * kd + 3 * I + 1 + V));
    b->pos = malloc(sizeof(int) * N);
    b->rseq = malloc(sizeof *b->rseq * N);
    if (!b->x || !b->pos || !b->rseq) {
        free_scratch(b);
        return -1;
    }
    float *p = b->x + N * d;
    b->xn = p, p += N * d;
    b->y = p, p += N * yd;
    b->q = p, p += N * qd;
    b->k = p, p += N * kd;
    b->v = p, p += N * kd;
    b->gt = p, p += N * I;
    b->up = p, p += N * I;
    b->hb = p, p += N * I;
    b->rstd = p, p += N;
    b->logits = p;
    b->rows_cap = cap;
    return 0;
}

static void project_rows(const cl_linear *li, const float *x, float *out, int n)
{
    cl_linear_rows(out, x, li->w->data, li->w->dtype, li->b ? li->b->data : NULL, n, li->in, li->out);
}

/* Each row attends to its own sequence's cache, positions 0..pos (its own k/v written). */
static void rows_attention(cl_batch *b, int l, int n, int maxlen)
{
    const cl_llama_config *c = &b->m->cfg;
    int hd = c->head_dim, qd = c->heads * hd, kd = c->kv_heads * hd, group = c->heads / c->kv_heads;
    float scale = (float)(1.0 / sqrt((double)hd));
    long work = 0;
    for (int i = 0; i < n; i++) work += (long)(b->pos[i] + 1) * qd;
#pragma omp parallel if (work > 100000)
    {
        float *sc = malloc(sizeof(float) * (size_t)maxlen);
#pragma omp for collapse(2) schedule(static)
        for (int i = 0; i < n; i++)
            for (int h = 0; h < c->heads; h++) {
                if (!sc) continue;
                const cl_gen *g = b->rseq[i];
                const float *kc = g->kc + (size_t)l * g->cap * kd, *vc = g->vc + (size_t)l * g->cap * kd;
                int upto = b->pos[i], kh = h / group;
                const float *qi = b->q + (size_t)i * qd + (size_t)h * hd;
                float mx = -INFINITY;
                for (int s = 0; s <= upto; s++) {
                    const float *ks = kc + (size_t)s * kd + (size_t)kh * hd;
                    float dot = 0;
                    for (int j = 0; j < hd; j++) dot += qi[j] * ks[j];
                    sc[s] = dot * scale;
                    mx = sc[s] > mx ? sc[s] : mx;
                }
                double sum = 0;
                for (int s = 0; s <= upto; s++) sum += sc[s] = (float)exp((double)(sc[s] - mx));
                float *o = b->y + (size_t)i * qd + (size_t)h * hd, inv = (float)(1.0 / sum);
                memset(o, 0, sizeof(float) * (size_t)hd);
                for (int s = 0; s <= upto; s++) {
                    const float *vs = vc + (size_t)s * kd + (size_t)kh * hd;
                    float w = sc[s] * inv;
                    for (int j = 0; j < hd; j++) o[j] += w * vs[j];
                }
            }
        free(sc);
    }
}

/* The forward of n rows (ids from each row's sequence at pos); hidden states end in b->x. */
static void forward_rows(cl_batch *b, const int *ids, int n, int maxlen)
{
    cl_llama *m = b->m;
    const cl_llama_config *c = &m->cfg;
    int d = c->hidden, kd = c->kv_heads * c->head_dim, I = c->inter;
    cl_embed_fwd(b->x, ids, m->embed->data, n, d);
    for (int l = 0; l < c->layers; l++) {
        cl_layer *ly = &m->layers[l];
        cl_rmsnorm_fwd(b->xn, b->rstd, b->x, ly->ln1->data, n, d, c->rms_eps);
        project_rows(&ly->proj[CL_Q], b->xn, b->q, n);
        project_rows(&ly->proj[CL_K], b->xn, b->k, n);
        project_rows(&ly->proj[CL_V], b->xn, b->v, n);
        cl_rope(b->q, b->pos, m->inv_freq, n, c->heads, c->head_dim, 1);
        cl_rope(b->k, b->pos, m->inv_freq, n, c->kv_heads, c->head_dim, 1);
        for (int i = 0; i < n; i++) {
            cl_gen *g = b->rseq[i];
            size_t at = ((size_t)l * g->cap + (size_t)b->pos[i]) * kd;
            memcpy(g->kc + at, b->k + (size_t)i * kd, sizeof(float) * (size_t)kd);
            memcpy(g->vc + at, b->v + (size_t)i * kd, sizeof(float) * (size_t)kd);
        }
        rows_attention(b, l, n, maxlen);
        project_rows(&ly->proj[CL_O], b->y, b->xn, n);
        for (long i = 0; i < (long)n * d; i++) b->x[i] += b->xn[i];
        cl_rmsnorm_fwd(b->xn, b->rstd, b->x, ly->ln2->data, n, d, c->rms_eps);
        project_rows(&ly->proj[CL_GATE], b->xn, b->gt, n);
        project_rows(&ly->proj[CL_UP], b->xn, b->up, n);
        cl_swiglu_fwd(b->hb, b->gt, b->up, (long)n * I);
        project_rows(&ly->proj[CL_DOWN], b->hb, b->xn, n);
        for (long i = 0; i < (long)n * d; i++) b->x[i] += b->xn[i];
    }
}

int cl_batch_step(cl_batch *b)
{
    admit(b);
    if (!b->nrun) return 0;
    const cl_llama_config *c = &b->m->cfg;
    int d = c->hidden, V = c->vocab;
    /* plan: one row per decoding sequence, then prompt chunks in admission order */
    int ndec = 0;
    for (int i = 0; i < b->nrun; i++) ndec += b->run[i]->fed >= b->run[i]->nprompt;
    int left = b->step_tokens - ndec > PREFILL_MIN ? b->step_tokens - ndec : PREFILL_MIN, n = 0;
    for (int i = 0; i < b->nrun; i++) {
        cl_gen *g = b->run[i];
        int want = g->ntok - g->fed;
        if (g->fed < g->nprompt) {
            want = want < left ? want : left;
            left -= want;
        }
        g->rows = want;
        n += want;
    }
    if (ensure_rows(b, n) < 0) return 0; /* out of memory: the next step tries again */
    int *ids = b->iscratch, k = 0, maxlen = 1;
    for (int i = 0; i < b->nrun; i++) {
        cl_gen *g = b->run[i];
        for (int j = 0; j < g->rows; j++, k++) {
            ids[k] = g->tok[g->fed + j];
            b->pos[k] = g->fed + j;
            b->rseq[k] = g;
        }
        if (g->fed + g->rows > maxlen) maxlen = g->fed + g->rows;
    }
    if (n > V) { /* ids live in iscratch: more rows than the vocabulary needs its own array */
        ids = malloc(sizeof(int) * (size_t)n);
        if (!ids) return 0;
        for (int i = 0, r = 0; i < b->nrun; i++)
            for (int j = 0; j < b->run[i]->rows; j++) ids[r++] = b->run[i]->tok[b->run[i]->fed + j];
    }
    forward_rows(b, ids, n, maxlen);
    if (ids != b->iscratch) free(ids);
    /* logits for the sequences whose every known token is now in the cache */
    int nl = 0;
    for (int i = 0, r = 0; i < b->nrun; i++) {
        cl_gen *g = b->run[i];
        r += g->rows;
        g->fed += g->rows;
        if (g->rows && g->fed == g->ntok)
            memmove(b->xn + (size_t)nl++ * d, b->x + (size_t)(r - 1) * d, sizeof(float) * (size_t)d);
    }
    cl_rmsnorm_fwd(b->y, b->rstd, b->xn, b->m->norm->data, nl, d, c->rms_eps);
    cl_linear_rows(b->logits, b->y, b->m->lm_head->data, b->m->lm_head->dtype, NULL, nl, d, V);
    for (int i = 0, li = 0; i < b->nrun;) {
        cl_gen *g = b->run[i];
        if (!g->rows || g->fed != g->ntok) {
            i++;
            continue;
        }
        const float *lg = b->logits + (size_t)li++ * V;
        int tok = cl_sample(lg, V, &g->r.sampler, &g->rng, b->pscratch, b->iscratch);
        g->tok[g->ntok++] = tok;
        g->made++;
        int stop = g->r.on_token ? g->r.on_token(g->r.ctx, tok, lg) : 0;
        if (stop || g->made >= g->r.max_new || g->ntok >= g->cap) {
            if (g->r.on_end) g->r.on_end(g->r.ctx, stop ? CL_GEN_STOP : CL_GEN_LENGTH);
            retire(b, i);
        } else
            i++;
    }
    return n;
}
