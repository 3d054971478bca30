/* llama.cu — the device copy of a cl_llama and device.h's table over it (see cuda.h).
 *
 * The host model's arenas (base weights, adapters, gradients, AdamW m and v) are mirrored byte
 * for byte, so a host tensor pointer maps to its device twin by offset (dev_ptr) and a sync is
 * one copy per arena.  The forward, head and backward below follow llama.c step by step (same
 * activation layout, same order of accumulation into gradients), with llama.c's calls to ops.c
 * replaced by kernels.cuh and cuBLASLt: a row-major product C = op(A) op(B) is cuBLASLt's
 * column-major C^T = op(B)^T op(A)^T, so gemm_lt() swaps the operands; q/k/v biases and the
 * residual adds after o_proj and down_proj ride in the products' epilogues.  Attention is the tiled
 * flash kernel pair (kernels.cuh): no T x T scores exist, each layer keeps its output and one
 * log-sum-exp per (token, head), and backward recomputes the probabilities tile by tile.  With
 * recompute set, only each layer's input is kept and backward runs the layer's forward again first.  The products read
 * bf16 (weights stored so, or their shadows; activations converted just before) and
 * accumulate in fp32, except the LoRA branch's thin ones, which stay fp32. */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/chost.cuh"
#include "cuda/kernels.cuh"

#define ALIGN 256

static size_t held_bytes, peak_bytes;

static void *dalloc(size_t bytes)
{
    void *p = NULL;
    if (!bytes) return NULL;
    cudaError_t rc = cudaMalloc(&p, bytes);
    if (rc != cudaSuccess) {
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        /* a resource ran out, as a budget does (collabllm(7) EXIT STATUS 75), not a bug: say
         * what shrinks the need */
        cl_die(CL_EXIT_TEMPFAIL,
               "CUDA: out of device memory allocating %zu MiB (%zu MiB free of %zu MiB; %s): reduce --batch or "
               "--max-len, add --recompute, or train LoRA over a --bf16 base (decode: fewer sequences at once)",
               bytes >> 20, fr >> 20, tot >> 20, cudaGetErrorString(rc));
    }
    held_bytes += bytes;
    if (held_bytes > peak_bytes) peak_bytes = held_bytes;
    return p;
}

static void dfree(void *p, size_t bytes)
{
    if (!p) return;
    CL_CK(cudaFree(p));
    held_bytes -= bytes;
}

static void check_blas(cublasStatus_t st, const char *what, const char *file, int line)
{
    if (st != CUBLAS_STATUS_SUCCESS)
        cl_die(CL_EXIT_SOFTWARE, "cuBLASLt error %d (%s) in %s at %s:%d", (int)st, cublasLtGetStatusString(st), what, file,
               line);
}
#define BLAS_CK(call) check_blas((call), #call, __FILE__, __LINE__)

/* ---- device state ----------------------------------------------------------------------- */

enum { AR_BASE, AR_LORA, AR_GRAD, AR_M, AR_V, AR_N };

typedef struct arena {
    char *host, *dev;
    size_t bytes;
} arena;

/* Activations of one forward on the device, the layout of llama.c's cl_llama_acts. */
typedef struct dacts {
    int b, t, n, R, rcap;                  /* rcap: rows of the host staging below */
    char *mem;
    size_t bytes;
    int *ids, *pos, *seg, has_seg, lora_used, training;
    long step;
    float **res, **ln1, **rstd1, **q, **k, **v, **y, **lse, **mid, **ln2, **rstd2, **g, **u, **h, **lora_h;
    float *res_final, *lnf, *rstdf;
    float *dres, *dln, *dlnf, *dq, *dk, *dv, *dy, *dd, *dg, *du, *dh, *lora_dh, *xd, *dxd;
    cl_bf16 *b16[2];                       /* bf16 operands of the products */
    float *hx, *hdx, *hlogits, *hcoef, *hlogp;
    int *htgt, *hidx;
    cl_bf16 *hxb, *hlb;
    int *hidx_h, *htgt_h;                  /* host staging of one head chunk */
    float *hcoef_h, *hlogp_h;
} dacts;

typedef struct dstate {
    int ordinal, recompute;
    cublasLtHandle_t lt;
    void *ws;                              /* cuBLASLt's workspace, WS_BYTES */
    arena ar[AR_N];                        /* ar[AR_BASE].host is NULL: see tdev */
    char **tdev;                           /* [n_tensors]: each base tensor's place in
                                            * ar[AR_BASE].dev (its host bytes may lie in a file
                                            * mapping rather than base_mem: weights.c) */
    cl_bf16 **shadow;                      /* [n_tensors]: bf16 copy of an fp32 matrix, or NULL */
    double *inv_freq, *sumsq;
    dacts *a;
    char *rows;                            /* linear_rows scratch: x, its bf16 copy, out */
    size_t rows_bytes;
} dstate;

static dstate *S(const cl_llama *m) { return (dstate *)m->dev_state; }

static size_t tensor_bytes(const cl_tensor *t) { return (size_t)t->numel * (t->dtype == CL_F32 ? 4 : 2); }

/* The device twin of a pointer into one of the host arenas or into a base tensor. */
static void *dev_ptr(const cl_llama *m, const void *host)
{
    if (!host) return NULL;
    const dstate *s = S(m);
    const char *h = (const char *)host;
    for (int i = 0; i < AR_N; i++)
        if (s->ar[i].host && h >= s->ar[i].host && h < s->ar[i].host + s->ar[i].bytes)
            return s->ar[i].dev + (h - s->ar[i].host);
    for (int i = 0; i < m->n_tensors; i++) {
        const char *t = (const char *)m->tensors[i].data;
        if (h >= t && h < t + tensor_bytes(&m->tensors[i]))
            return s->tdev[i] + (h - t);
    }
    cl_die(CL_EXIT_SOFTWARE, "CUDA: a tensor outside the model's arenas (internal error)");
}
#define DF(m, p) ((float *)dev_ptr(m, p))

static int tensor_index(const cl_llama *m, const cl_tensor *t)
{
    return t >= m->tensors && t < m->tensors + m->n_tensors ? (int)(t - m->tensors) : -1;
}

/* The bf16 matrix a product reads for weight t: the weight itself when stored in bf16, else
 * its shadow (refreshed after every change of the fp32 master). */
static const cl_bf16 *w16(const cl_llama *m, const cl_tensor *t)
{
    if (t->dtype == CL_BF16) return (const cl_bf16 *)dev_ptr(m, t->data);
    int i = tensor_index(m, t);
    if (i < 0 || !S(m)->shadow[i]) cl_die(CL_EXIT_SOFTWARE, "CUDA: %s has no bf16 copy (internal error)", t->name);
    return S(m)->shadow[i];
}

static int needs_shadow(const cl_llama *m, const cl_tensor *t)
{
    return t->ndim == 2 && t->dtype == CL_F32 && (t != m->embed || t == m->lm_head);
}

/* Whether products with t can read bf16 (else they read its fp32 values: the adapters). */
static int has_bf16(const cl_llama *m, const cl_tensor *t)
{
    int i = tensor_index(m, t);
    return t->dtype == CL_BF16 || (i >= 0 && S(m)->shadow[i]);
}

static void refresh_shadow(cl_llama *m, const cl_tensor *t)
{
    int i = tensor_index(m, t);
    if (i >= 0 && S(m)->shadow[i]) cu_to_bf16(S(m)->shadow[i], DF(m, t->data), t->numel);
}

/* ---- products --------------------------------------------------------------------------- */

/* Bytes a pointer is aligned to, up to 256: the heuristic may only pick kernels that need no
 * more (tensors inside the LoRA, gradient and moment arenas are only 4-byte aligned). */
static uint32_t align_of(const void *p)
{
    uint32_t r = 256;
    while (r > 4 && (uintptr_t)p % r) r >>= 1;
    return r;
}

#define WS_BYTES (32u << 20)

/* Row-major D (m x n, ldd) = alpha op(A) op(B) + beta C (+ bias[j] added to every row: the
 * epilogue, bias NULL or [n] fp32) through cuBLASLt.  C has D's shape and leading dimension and
 * may be D itself (accumulation) or another matrix (a residual added on the way); with beta 0
 * it is not read.  ty is the type of A and B (bf16 or fp32); D is fp32 and the accumulation
 * fp32 (CUBLAS_COMPUTE_32F: no TF32 for fp32 inputs).  cuBLASLt is column-major, so it computes
 * D^T = op(B)^T op(A)^T: B comes first and the bias runs along D^T's rows. */
static void gemm_lt(const cl_llama *m, int ta, int tb, int M, int N, int K, float alpha, const void *A,
                    cudaDataType ty, int lda, const void *B, int ldb, float beta, const float *C, float *D, int ldd,
                    const float *bias)
{
    if (M <= 0 || N <= 0) return;
    dstate *s = S(m);
    int32_t op1 = tb ? CUBLAS_OP_T : CUBLAS_OP_N, op2 = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    uint32_t epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    uint64_t ws = WS_BYTES;
    const float *Cr = beta != 0 ? C : D; /* not read with beta 0 */
    uint32_t al[4] = {align_of(B), align_of(A), align_of(Cr), align_of(D)};
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t l1, l2, lc;
    cublasLtMatmulPreference_t pref;
    BLAS_CK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    BLAS_CK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op1, sizeof op1));
    BLAS_CK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op2, sizeof op2));
    BLAS_CK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (bias) BLAS_CK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    /* stored shapes, column-major: op1's operand is B (N x K, or K x N transposed), op2's is A */
    BLAS_CK(cublasLtMatrixLayoutCreate(&l1, ty, tb ? K : N, tb ? N : K, ldb));
    BLAS_CK(cublasLtMatrixLayoutCreate(&l2, ty, ta ? M : K, ta ? K : M, lda));
    BLAS_CK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, N, M, ldd));
    BLAS_CK(cublasLtMatmulPreferenceCreate(&pref));
    BLAS_CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    for (int i = 0; i < 4; i++)
        BLAS_CK(cublasLtMatmulPreferenceSetAttribute(
            pref, (cublasLtMatmulPreferenceAttributes_t)(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES + i), &al[i],
            sizeof al[i]));
    cublasLtMatmulHeuristicResult_t h;
    int found = 0;
    BLAS_CK(cublasLtMatmulAlgoGetHeuristic(s->lt, desc, l1, l2, lc, lc, pref, 1, &h, &found));
    if (found < 1)
        cl_die(CL_EXIT_SOFTWARE, "cuBLASLt: no algorithm for a %d x %d x %d product (%s, epilogue %u)", M, N, K,
               ty == CUDA_R_16BF ? "bf16" : "fp32", (unsigned)epi);
    BLAS_CK(cublasLtMatmul(s->lt, desc, &alpha, B, l1, A, l2, &beta, Cr, lc, D, lc, &h.algo, s->ws,
                           WS_BYTES, 0));
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(l1);
    cublasLtMatrixLayoutDestroy(l2);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(desc);
}

/* C = alpha op(A) op(B) + beta C (no epilogue), A and B bf16 or fp32 */
static void gemm16(const cl_llama *m, int ta, int tb, int M, int N, int K, float alpha, const cl_bf16 *A, int lda,
                   const cl_bf16 *B, int ldb, float beta, float *C, int ldc)
{
    gemm_lt(m, ta, tb, M, N, K, alpha, A, CUDA_R_16BF, lda, B, ldb, beta, C, C, ldc, NULL);
}

static void gemm32(const cl_llama *m, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc)
{
    gemm_lt(m, ta, tb, M, N, K, alpha, A, CUDA_R_32F, lda, B, ldb, beta, C, C, ldc, NULL);
}

/* ---- activations ------------------------------------------------------------------------ */

typedef struct cursor {
    char *base;
    size_t off;
} cursor;

static void *take(cursor *c, size_t bytes)
{
    void *p = c->base ? c->base + c->off : NULL;
    c->off += (bytes + ALIGN - 1) / ALIGN * ALIGN;
    return p;
}
#define TAKEF(cnt) ((float *)take(&cur, sizeof(float) * (size_t)(cnt)))

/* Rows of the head's vocabulary chunk: about 64 Mi logits at a time. */
static int head_rows(const cl_llama *m, int n)
{
    long r = (64l << 20) / m->cfg.vocab;
    if (r > 4096) r = 4096;
    if (r < 1) r = 1;
    return (int)(r < n ? r : n);
}

/* Lays the device arena out for b x t tokens (twice: to size it, then to assign pointers),
 * growing the allocation only when this shape needs more than any before. */
static dacts *acts_fit(cl_llama *m, int b, int t)
{
    dstate *s = S(m);
    const cl_llama_config *c = &m->cfg;
    int L = c->layers, n = b * t, d = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim,
        I = c->inter, r = m->lora_rank, V = c->vocab, R = head_rows(m, n);
    int max_in = d > I ? (d > qd ? d : qd) : (I > qd ? I : qd);
    dacts *a = s->a;
    if (!a) {
        a = (dacts *)calloc(1, sizeof *a);
        float ***slots[] = {&a->res, &a->ln1, &a->rstd1, &a->q, &a->k, &a->v, &a->y, &a->lse,
                            &a->mid, &a->ln2, &a->rstd2, &a->g, &a->u, &a->h};
        int ns = (int)(sizeof slots / sizeof *slots);
        float **all = (float **)calloc((size_t)L * (ns + CL_NPROJ), sizeof(float *));
        if (!a || !all) cl_die(CL_EXIT_SOFTWARE, "out of memory");
        for (int i = 0; i < ns; i++) *slots[i] = all + (size_t)L * i;
        a->lora_h = all + (size_t)L * ns;
        s->a = a;
    }
    for (int pass = 0; pass < 2; pass++) {
        cursor cur = {pass ? a->mem : NULL, 0};
        a->ids = (int *)take(&cur, sizeof(int) * (size_t)n * 3);
        for (int l = 0; l < L; l++) {
            a->res[l] = TAKEF((long)n * d);
            if (s->recompute && l > 0) {
                /* only layer inputs are kept: every layer shares layer 0's buffers */
                float **shared[] = {a->ln1, a->rstd1, a->q, a->k, a->v, a->y, a->lse, a->mid, a->ln2, a->rstd2,
                                    a->g, a->u, a->h};
                for (size_t i = 0; i < sizeof shared / sizeof *shared; i++) shared[i][l] = shared[i][0];
                for (int p = 0; p < CL_NPROJ; p++) a->lora_h[l * CL_NPROJ + p] = a->lora_h[p];
                continue;
            }
            a->ln1[l] = TAKEF((long)n * d);
            a->rstd1[l] = TAKEF(n);
            a->q[l] = TAKEF((long)n * qd);
            a->k[l] = TAKEF((long)n * kd);
            a->v[l] = TAKEF((long)n * kd);
            a->y[l] = TAKEF((long)n * qd);
            a->lse[l] = TAKEF((long)n * c->heads);
            a->mid[l] = TAKEF((long)n * d);
            a->ln2[l] = TAKEF((long)n * d);
            a->rstd2[l] = TAKEF(n);
            a->g[l] = TAKEF((long)n * I);
            a->u[l] = TAKEF((long)n * I);
            a->h[l] = TAKEF((long)n * I);
            for (int p = 0; p < CL_NPROJ; p++) a->lora_h[l * CL_NPROJ + p] = m->n_lora ? TAKEF((long)n * r) : NULL;
        }
        a->res_final = TAKEF((long)n * d);
        a->lnf = TAKEF((long)n * d);
        a->rstdf = TAKEF(n);
        a->dres = TAKEF((long)n * d);
        a->dln = TAKEF((long)n * d);
        a->dlnf = TAKEF((long)n * d);
        a->dq = TAKEF((long)n * qd);
        a->dy = TAKEF((long)n * qd);
        a->dd = TAKEF((long)n * c->heads);
        a->dk = TAKEF((long)n * kd);
        a->dv = TAKEF((long)n * kd);
        a->dg = TAKEF((long)n * I);
        a->du = TAKEF((long)n * I);
        a->dh = TAKEF((long)n * I);
        a->lora_dh = TAKEF((long)n * (r > 0 ? r : 1));
        a->xd = TAKEF((long)n * max_in);
        a->dxd = TAKEF((long)n * max_in);
        for (int i = 0; i < 2; i++) a->b16[i] = (cl_bf16 *)take(&cur, sizeof(cl_bf16) * (size_t)n * max_in);
        a->hx = TAKEF((long)R * d);
        a->hdx = TAKEF((long)R * d);
        a->hlogits = TAKEF((long)R * V);
        a->hcoef = TAKEF(R);
        a->hlogp = TAKEF(R);
        a->htgt = (int *)take(&cur, sizeof(int) * (size_t)R);
        a->hidx = (int *)take(&cur, sizeof(int) * (size_t)R);
        a->hxb = (cl_bf16 *)take(&cur, sizeof(cl_bf16) * (size_t)R * d);
        a->hlb = (cl_bf16 *)take(&cur, sizeof(cl_bf16) * (size_t)R * V);
        if (pass == 0 && cur.off > a->bytes) {
            dfree(a->mem, a->bytes);
            a->mem = (char *)dalloc(cur.off);
            a->bytes = cur.off;
        }
    }
    if (R > a->rcap) {
        free(a->hidx_h);
        free(a->hcoef_h);
        a->hidx_h = (int *)calloc((size_t)R * 2, sizeof(int));
        a->hcoef_h = (float *)calloc((size_t)R * 2, sizeof(float));
        if (!a->hidx_h || !a->hcoef_h) cl_die(CL_EXIT_SOFTWARE, "out of memory");
        a->rcap = R;
    }
    a->htgt_h = a->hidx_h + R;
    a->hlogp_h = a->hcoef_h + R;
    a->b = b;
    a->t = t;
    a->n = n;
    a->R = R;
    a->pos = a->ids + n;
    a->seg = a->pos + n;
    return a;
}

static void acts_free(dstate *s)
{
    dacts *a = s->a;
    if (!a) return;
    dfree(a->mem, a->bytes);
    free(a->res);
    free(a->hidx_h);
    free(a->hcoef_h);
    free(a);
    s->a = NULL;
}

/* ---- linear layers ---------------------------------------------------------------------- */

/* out = x W^T + b (+ resid when not NULL) (+ the adapter branch on xd); h [n][r] keeps the
 * adapter's hidden rows.  The bias and the residual ride in the product's epilogue. */
static void linear_fwd(cl_llama *m, int l, int p, const float *x, float *out, const float *resid)
{
    dacts *a = S(m)->a;
    const cl_linear *li = &m->layers[l].proj[p];
    int n = a->n;
    cu_to_bf16(a->b16[0], x, (long)n * li->in);
    gemm_lt(m, 0, 1, n, li->out, li->in, 1, a->b16[0], CUDA_R_16BF, li->in, w16(m, li->w), li->in, resid ? 1 : 0,
            resid, out, li->out, li->b ? DF(m, li->b->data) : NULL);
    if (!(a->lora_used && li->lora_a)) return;
    const float *xd = x;
    if (a->training && m->lora_dropout > 0) {
        cu_dropout(a->xd, x, (long)n * li->in, m->lora_dropout, cl_llama_dropout_seed(m, a->step, l, p));
        xd = a->xd;
    }
    float *h = a->lora_h[l * CL_NPROJ + p];
    int r = m->lora_rank;
    gemm32(m, 0, 1, n, r, li->in, 1, xd, li->in, DF(m, li->lora_a->data), li->in, 0, h, r);
    gemm32(m, 0, 1, n, li->out, r, m->lora_scale, h, r, DF(m, li->lora_b->data), r, 1, out, li->out);
}

/* dx += dout W; dW += dout^T x; db += column sums; adapter gradients as ops.c's cl_lora_bwd. */
static void linear_bwd(cl_llama *m, int l, int p, const float *dout, const float *x, float *dx)
{
    dacts *a = S(m)->a;
    const cl_linear *li = &m->layers[l].proj[p];
    int n = a->n, in = li->in, od = li->out;
    cu_to_bf16(a->b16[1], dout, (long)n * od);
    gemm16(m, 0, 0, n, in, od, 1, a->b16[1], od, w16(m, li->w), in, 1, dx, in);
    if (li->w->grad) {
        cu_to_bf16(a->b16[0], x, (long)n * in);
        gemm16(m, 1, 0, od, in, n, 1, a->b16[1], od, a->b16[0], in, 1, DF(m, li->w->grad), in);
    }
    if (li->b && li->b->grad) cu_colsum(DF(m, li->b->grad), dout, n, od);
    if (!(a->lora_used && li->lora_a)) return;
    const float *xd = x;
    int drop = a->training && m->lora_dropout > 0, r = m->lora_rank;
    long cnt = (long)n * in;
    uint64_t seed = cl_llama_dropout_seed(m, a->step, l, p);
    if (drop) {
        cu_dropout(a->xd, x, cnt, m->lora_dropout, seed);
        xd = a->xd;
        CL_CK(cudaMemset(a->dxd, 0, sizeof(float) * (size_t)cnt));
    }
    const float *h = a->lora_h[l * CL_NPROJ + p], *A = DF(m, li->lora_a->data), *B = DF(m, li->lora_b->data);
    float *dA = DF(m, li->lora_a->grad), *dB = DF(m, li->lora_b->grad), *dxd = drop ? a->dxd : dx;
    float sc = m->lora_scale;
    if (dB) gemm32(m, 1, 0, od, r, n, sc, dout, od, h, r, 1, dB, r);
    gemm32(m, 0, 0, n, r, od, sc, dout, od, B, r, 0, a->lora_dh, r);
    if (dA) gemm32(m, 1, 0, r, in, n, 1, a->lora_dh, r, xd, in, 1, dA, in);
    gemm32(m, 0, 0, n, in, r, 1, a->lora_dh, r, A, in, 1, dxd, in);
    if (drop) {
        cu_dropout(a->dxd, a->dxd, cnt, m->lora_dropout, seed);
        cu_add(dx, a->dxd, cnt);
    }
}

/* ---- attention -------------------------------------------------------------------------- */

/* Flash-style tiled attention (kernels.cuh): y[l] and each row's log-sum-exp, no T x T scores. */
static void att_fwd(cl_llama *m, int l)
{
    const cl_llama_config *c = &m->cfg;
    dacts *a = S(m)->a;
    cu_flash_fwd(a->y[l], a->lse[l], a->q[l], a->k[l], a->v[l], a->has_seg ? a->seg : NULL, a->b, a->t, c->heads,
                 c->kv_heads, c->head_dim);
}

/* dq, dk, dv accumulate (ops.c's cl_attention_bwd), from y[l] and lse[l] of the forward. */
static void att_bwd(cl_llama *m, int l)
{
    const cl_llama_config *c = &m->cfg;
    dacts *a = S(m)->a;
    cu_flash_bwd(a->dq, a->dk, a->dv, a->dd, a->dy, a->y[l], a->lse[l], a->q[l], a->k[l], a->v[l],
                 a->has_seg ? a->seg : NULL, a->b, a->t, c->heads, c->kv_heads, c->head_dim);
}

/* ---- the table -------------------------------------------------------------------------- */

/* One layer's forward from a->res[l] into the next layer's input, keeping what backward needs
 * (in shared buffers when recomputing: backward calls this again first). */
static void layer_fwd(cl_llama *m, int l)
{
    const cl_llama_config *c = &m->cfg;
    dacts *a = S(m)->a;
    int n = a->n, d = c->hidden, I = c->inter;
    const cl_layer *ly = &m->layers[l];
    float *out = l + 1 < c->layers ? a->res[l + 1] : a->res_final;
    cu_rmsnorm_fwd(a->ln1[l], a->rstd1[l], a->res[l], DF(m, ly->ln1->data), n, d, c->rms_eps);
    linear_fwd(m, l, CL_Q, a->ln1[l], a->q[l], NULL);
    linear_fwd(m, l, CL_K, a->ln1[l], a->k[l], NULL);
    linear_fwd(m, l, CL_V, a->ln1[l], a->v[l], NULL);
    cu_rope(a->q[l], a->pos, S(m)->inv_freq, n, c->heads, c->head_dim, 1);
    cu_rope(a->k[l], a->pos, S(m)->inv_freq, n, c->kv_heads, c->head_dim, 1);
    att_fwd(m, l);
    linear_fwd(m, l, CL_O, a->y[l], a->mid[l], a->res[l]);
    cu_rmsnorm_fwd(a->ln2[l], a->rstd2[l], a->mid[l], DF(m, ly->ln2->data), n, d, c->rms_eps);
    linear_fwd(m, l, CL_GATE, a->ln2[l], a->g[l], NULL);
    linear_fwd(m, l, CL_UP, a->ln2[l], a->u[l], NULL);
    cu_swiglu_fwd(a->h[l], a->g[l], a->u[l], (long)n * I);
    linear_fwd(m, l, CL_DOWN, a->h[l], out, a->mid[l]);
}

static int d_forward(cl_llama *m, const int *ids, const int *pos, const int *seg, int b, int t, cl_err *e)
{
    const cl_llama_config *c = &m->cfg;
    dacts *a = acts_fit(m, b, t);
    int n = a->n, d = c->hidden;
    int *hp = (int *)malloc(sizeof(int) * (size_t)n * 3);
    if (!hp) return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    memcpy(hp, ids, sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
        hp[n + i] = pos ? pos[i] : i % t;
        hp[2 * n + i] = seg ? seg[i] : 0;
    }
    CL_CK(cudaMemcpy(a->ids, hp, sizeof(int) * (size_t)n * 3, cudaMemcpyHostToDevice));
    free(hp);
    a->has_seg = seg != NULL;
    a->lora_used = m->n_lora && m->lora_on;
    a->training = m->training;
    a->step = m->training ? m->step++ : 0;
    cu_gather_rows(a->res[0], DF(m, m->embed->data), a->ids, n, d);
    for (int l = 0; l < c->layers; l++) layer_fwd(m, l);
    cu_rmsnorm_fwd(a->lnf, a->rstdf, a->res_final, DF(m, m->norm->data), n, d, c->rms_eps);
    CL_CK(cudaMemset(a->dlnf, 0, sizeof(float) * (size_t)n * d));
    return 0;
}

static void head_chunk(cl_llama *m, int rows, int with_coef, float *logp)
{
    dacts *a = S(m)->a;
    int d = m->cfg.hidden, V = m->cfg.vocab;
    const cl_bf16 *w = w16(m, m->lm_head);
    CL_CK(cudaMemcpy(a->hidx, a->hidx_h, sizeof(int) * (size_t)rows, cudaMemcpyHostToDevice));
    CL_CK(cudaMemcpy(a->htgt, a->htgt_h, sizeof(int) * (size_t)rows, cudaMemcpyHostToDevice));
    if (with_coef) CL_CK(cudaMemcpy(a->hcoef, a->hcoef_h, sizeof(float) * (size_t)rows, cudaMemcpyHostToDevice));
    cu_gather_rows(a->hx, a->lnf, a->hidx, rows, d);
    cu_to_bf16(a->hxb, a->hx, (long)rows * d);
    gemm16(m, 0, 1, rows, V, d, 1, a->hxb, d, w, d, 0, a->hlogits, V);
    cu_logprob_rows(a->hlogits, a->htgt, with_coef ? a->hcoef : NULL, rows, V, a->hlogp);
    CL_CK(cudaMemcpy(a->hlogp_h, a->hlogp, sizeof(float) * (size_t)rows, cudaMemcpyDeviceToHost));
    for (int r = 0; r < rows; r++) logp[a->hidx_h[r]] = a->hlogp_h[r];
    if (!with_coef) return;
    cu_to_bf16(a->hlb, a->hlogits, (long)rows * V);
    gemm16(m, 0, 0, rows, d, V, 1, a->hlb, V, w, d, 0, a->hdx, d);
    cu_scatter_add_rows(a->dlnf, a->hdx, a->hidx, rows, d);
    if (m->lm_head->grad) gemm16(m, 1, 0, V, d, rows, 1, a->hlb, V, a->hxb, d, 1, DF(m, m->lm_head->grad), d);
}

static void d_head(cl_llama *m, const int *target, const float *coef, float *logp)
{
    dacts *a = S(m)->a;
    int rows = 0;
    for (int i = 0; i < a->n; i++) {
        logp[i] = 0;
        if (target[i] < 0) continue;
        a->hidx_h[rows] = i;
        a->htgt_h[rows] = target[i];
        if (coef) a->hcoef_h[rows] = coef[i];
        if (++rows == a->R) {
            head_chunk(m, rows, coef != NULL, logp);
            rows = 0;
        }
    }
    if (rows) head_chunk(m, rows, coef != NULL, logp);
}

static void d_logits(cl_llama *m, float *out)
{
    dacts *a = S(m)->a;
    int d = m->cfg.hidden, V = m->cfg.vocab;
    size_t bytes = sizeof(float) * (size_t)a->n * V, bbytes = sizeof(cl_bf16) * (size_t)a->n * d;
    float *lg = (float *)dalloc(bytes);
    cl_bf16 *xb = (cl_bf16 *)dalloc(bbytes);
    cu_to_bf16(xb, a->lnf, (long)a->n * d);
    gemm16(m, 0, 1, a->n, V, d, 1, xb, d, w16(m, m->lm_head), d, 0, lg, V);
    CL_CK(cudaMemcpy(out, lg, bytes, cudaMemcpyDeviceToHost));
    dfree(lg, bytes);
    dfree(xb, bbytes);
}

static void zero(float *p, long n)
{
    CL_CK(cudaMemset(p, 0, sizeof(float) * (size_t)n));
}

static void d_backward(cl_llama *m)
{
    const cl_llama_config *c = &m->cfg;
    dacts *a = S(m)->a;
    int n = a->n, d = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim, I = c->inter;
    long nd = (long)n * d;
    zero(a->dres, nd);
    cu_rmsnorm_bwd(a->dres, DF(m, m->norm->grad), a->dlnf, a->res_final, DF(m, m->norm->data), a->rstdf, n, d);
    for (int l = c->layers - 1; l >= 0; l--) {
        const cl_layer *ly = &m->layers[l];
        if (S(m)->recompute) layer_fwd(m, l); /* refills the shared buffers; res[l + 1] is no longer read */
        zero(a->dh, (long)n * I);
        linear_bwd(m, l, CL_DOWN, a->dres, a->h[l], a->dh);
        zero(a->dg, (long)n * I);
        zero(a->du, (long)n * I);
        cu_swiglu_bwd(a->dg, a->du, a->dh, a->g[l], a->u[l], (long)n * I);
        zero(a->dln, nd);
        linear_bwd(m, l, CL_GATE, a->dg, a->ln2[l], a->dln);
        linear_bwd(m, l, CL_UP, a->du, a->ln2[l], a->dln);
        cu_rmsnorm_bwd(a->dres, DF(m, ly->ln2->grad), a->dln, a->mid[l], DF(m, ly->ln2->data), a->rstd2[l], n, d);
        zero(a->dy, (long)n * qd);
        linear_bwd(m, l, CL_O, a->dres, a->y[l], a->dy);
        zero(a->dq, (long)n * qd);
        zero(a->dk, (long)n * kd);
        zero(a->dv, (long)n * kd);
        att_bwd(m, l);
        cu_rope(a->dq, a->pos, S(m)->inv_freq, n, c->heads, c->head_dim, -1);
        cu_rope(a->dk, a->pos, S(m)->inv_freq, n, c->kv_heads, c->head_dim, -1);
        zero(a->dln, nd);
        linear_bwd(m, l, CL_Q, a->dq, a->ln1[l], a->dln);
        linear_bwd(m, l, CL_K, a->dk, a->ln1[l], a->dln);
        linear_bwd(m, l, CL_V, a->dv, a->ln1[l], a->dln);
        cu_rmsnorm_bwd(a->dres, DF(m, ly->ln1->grad), a->dln, a->res[l], DF(m, ly->ln1->data), a->rstd1[l], n, d);
    }
    if (m->embed->grad) cu_scatter_add_rows(DF(m, m->embed->grad), a->dres, a->ids, n, d);
}

static void d_zero_grad(cl_llama *m)
{
    arena *g = &S(m)->ar[AR_GRAD];
    if (g->dev) CL_CK(cudaMemset(g->dev, 0, g->bytes));
}

static void d_release_acts(cl_llama *m) { acts_free(S(m)); }

static double d_grad_sumsq(cl_llama *m)
{
    dstate *s = S(m);
    double out = 0;
    CL_CK(cudaMemset(s->sumsq, 0, sizeof(double)));
    cu_sumsq(s->sumsq, (const float *)s->ar[AR_GRAD].dev, (long)(s->ar[AR_GRAD].bytes / sizeof(float)));
    CL_CK(cudaMemcpy(&out, s->sumsq, sizeof out, cudaMemcpyDeviceToHost));
    return out;
}

static void d_scale_grads(cl_llama *m, float f)
{
    arena *g = &S(m)->ar[AR_GRAD];
    cu_scale((float *)g->dev, (long)(g->bytes / sizeof(float)), f);
}

/* optim.c's cl_adamw_step: the same float constants, one launch per tensor. */
static void d_adamw(cl_llama *m, const cl_adamw *hp, long step, double lr)
{
    double bc1 = 1 - pow(hp->beta1, (double)step), bc2 = 1 - pow(hp->beta2, (double)step);
    float b1 = (float)hp->beta1, b2 = (float)hp->beta2, eps = (float)hp->eps;
    float step_size = (float)(lr / bc1), rbc2 = (float)(1 / sqrt(bc2));
    cl_tensor *list[8192];
    int nt = cl_llama_trainable(m, list, 8192);
    for (int k = 0; k < nt; k++) {
        cl_tensor *t = list[k];
        float decay = t->no_decay ? 1.0f : (float)(1 - lr * hp->weight_decay);
        cu_adamw(DF(m, t->data), DF(m, t->grad), DF(m, t->m), DF(m, t->v), t->numel, decay, b1, b2, eps, step_size,
                 rbc2);
        refresh_shadow(m, t);
    }
}

static void refresh_all(cl_llama *m)
{
    for (int i = 0; i < m->n_tensors; i++) refresh_shadow(m, &m->tensors[i]);
}

/* A frozen base never changes on the device, so only what training changes comes back. */
static void d_sync(cl_llama *m, int to_host)
{
    dstate *s = S(m);
    if (!to_host || m->train_base)
        for (int i = 0; i < m->n_tensors; i++) {
            const cl_tensor *t = &m->tensors[i];
            if (!to_host)
                CL_CK(cudaMemcpy(s->tdev[i], t->data, tensor_bytes(t), cudaMemcpyHostToDevice));
            else
                CL_CK(cudaMemcpy(t->data, s->tdev[i], tensor_bytes(t), cudaMemcpyDeviceToHost));
        }
    for (int i = AR_BASE + 1; i < AR_N; i++) {
        arena *r = &s->ar[i];
        if (!r->dev) continue;
        if (!to_host)
            CL_CK(cudaMemcpy(r->dev, r->host, r->bytes, cudaMemcpyHostToDevice));
        else
            CL_CK(cudaMemcpy(r->host, r->dev, r->bytes, cudaMemcpyDeviceToHost));
    }
    if (!to_host) refresh_all(m);
}

static void d_linear_rows(cl_llama *m, const cl_tensor *w, const cl_tensor *b, const float *x, float *out, int n)
{
    dstate *s = S(m);
    int in = w->shape[1], od = w->shape[0];
    size_t xb = sizeof(float) * (size_t)n * in, hb = (sizeof(cl_bf16) * (size_t)n * in + ALIGN - 1) / ALIGN * ALIGN,
           ob = sizeof(float) * (size_t)n * od, need = (xb + ALIGN - 1) / ALIGN * ALIGN + hb + ob;
    CL_CK(cudaSetDevice(s->ordinal)); /* roles may hold models on different GPUs */
    if (need > s->rows_bytes) {
        dfree(s->rows, s->rows_bytes);
        s->rows = (char *)dalloc(need);
        s->rows_bytes = need;
    }
    float *dx = (float *)s->rows, *dout = (float *)(s->rows + need - ob);
    cl_bf16 *xh = (cl_bf16 *)(s->rows + (xb + ALIGN - 1) / ALIGN * ALIGN);
    CL_CK(cudaMemcpy(dx, x, xb, cudaMemcpyHostToDevice));
    const float *bias = b ? DF(m, b->data) : NULL;
    if (has_bf16(m, w)) {
        cu_to_bf16(xh, dx, (long)n * in);
        gemm_lt(m, 0, 1, n, od, in, 1, xh, CUDA_R_16BF, in, w16(m, w), in, 0, NULL, dout, od, bias);
    } else {
        gemm_lt(m, 0, 1, n, od, in, 1, dx, CUDA_R_32F, in, DF(m, w->data), in, 0, NULL, dout, od, bias);
    }
    CL_CK(cudaMemcpy(out, dout, ob, cudaMemcpyDeviceToHost));
}

static void state_free(cl_llama *m, dstate *s)
{
    acts_free(s);
    dfree(s->rows, s->rows_bytes);
    for (int i = 0; i < AR_N; i++) dfree(s->ar[i].dev, s->ar[i].bytes);
    free(s->tdev);
    if (s->shadow)
        for (int i = 0; i < m->n_tensors; i++) dfree(s->shadow[i], sizeof(cl_bf16) * (size_t)m->tensors[i].numel);
    free(s->shadow);
    dfree(s->inv_freq, sizeof(double) * (size_t)(m->cfg.head_dim / 2));
    dfree(s->sumsq, sizeof(double));
    dfree(s->ws, WS_BYTES);
    if (s->lt) cublasLtDestroy(s->lt);
    free(s);
}

static void d_detach(cl_llama *m)
{
    state_free(m, S(m));
    m->dev = NULL;
    m->dev_state = NULL;
}

static const cl_device_ops cuda_ops = {
    "cuda", d_forward, d_head, d_backward, d_logits, d_zero_grad, d_release_acts,
    d_grad_sumsq, d_scale_grads, d_adamw, d_sync, d_detach, d_linear_rows,
};

/* ---- opening and attaching -------------------------------------------------------------- */

/* Bytes of the device's base arena: the tensors in table order, each 256-byte aligned. */
static size_t base_bytes(const cl_llama *m)
{
    size_t end = 0;
    for (int i = 0; i < m->n_tensors; i++) end += (tensor_bytes(&m->tensors[i]) + 255) & ~(size_t)255;
    return end;
}

static int attach(const cl_device *dv, cl_llama *m, cl_err *e)
{
    if (m->dev) return cl_err_set(e, CL_EXIT_SOFTWARE, "the model is already on %s", m->dev->name);
    if (m->cfg.head_dim % 2 || m->cfg.head_dim > CL_FLASH_MAX_HD || m->cfg.heads % m->cfg.kv_heads)
        return cl_err_set(e, CL_EXIT_CONFIG, "%s: unsupported head layout", dv->name);
    cudaError_t rc = cudaSetDevice(dv->ordinal);
    if (rc != cudaSuccess)
        return cl_err_set(e, CL_EXIT_UNAVAILABLE, "%s: %s", dv->name, cudaGetErrorString(rc));
    dstate *s = (dstate *)calloc(1, sizeof *s);
    if (!s) return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    cublasStatus_t st = cublasLtCreate(&s->lt);
    if (st != CUBLAS_STATUS_SUCCESS) {
        free(s);
        return cl_err_set(e, CL_EXIT_UNAVAILABLE, "%s: cuBLASLt does not start (%s)", dv->name, cublasLtGetStatusString(st));
    }
    s->ordinal = dv->ordinal;
    s->recompute = dv->recompute;
    m->dev_state = s;
    size_t tr = sizeof(float) * (size_t)m->n_train;
    arena init[AR_N] = {{NULL, NULL, base_bytes(m)},
                        {(char *)m->lora_mem, NULL, m->n_lora ? tr : 0},
                        {(char *)m->grad_mem, NULL, m->grad_mem ? tr : 0},
                        {(char *)m->m_mem, NULL, m->m_mem ? tr : 0},
                        {(char *)m->v_mem, NULL, m->v_mem ? tr : 0}};
    for (int i = 0; i < AR_N; i++) {
        s->ar[i] = init[i];
        if ((s->ar[i].host || i == AR_BASE) && s->ar[i].bytes) s->ar[i].dev = (char *)dalloc(s->ar[i].bytes);
        else s->ar[i].host = NULL;
    }
    s->tdev = (char **)calloc((size_t)m->n_tensors, sizeof(char *));
    if (!s->tdev) cl_die(CL_EXIT_SOFTWARE, "out of memory");
    size_t off = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        s->tdev[i] = s->ar[AR_BASE].dev + off;
        off += (tensor_bytes(&m->tensors[i]) + 255) & ~(size_t)255;
    }
    s->shadow = (cl_bf16 **)calloc((size_t)m->n_tensors, sizeof(cl_bf16 *));
    if (!s->shadow) cl_die(CL_EXIT_SOFTWARE, "out of memory");
    for (int i = 0; i < m->n_tensors; i++)
        if (needs_shadow(m, &m->tensors[i]))
            s->shadow[i] = (cl_bf16 *)dalloc(sizeof(cl_bf16) * (size_t)m->tensors[i].numel);
    size_t fb = sizeof(double) * (size_t)(m->cfg.head_dim / 2);
    s->inv_freq = (double *)dalloc(fb);
    CL_CK(cudaMemcpy(s->inv_freq, m->inv_freq, fb, cudaMemcpyHostToDevice));
    s->sumsq = (double *)dalloc(sizeof(double));
    s->ws = dalloc(WS_BYTES);
    m->dev = &cuda_ops;
    cl_llama_release_acts(m); /* the host arena is not used while the device computes */
    d_sync(m, CL_SYNC_TO_DEVICE);
    return 0;
}

extern "C" int cl_cuda_device_count(void)
{
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

extern "C" int cl_cuda_open(cl_device *d, const char *spec, cl_err *e)
{
    int ord = 0;
    int kind = cl_device_parse(spec, &ord, e);
    if (kind < 0) return -1;
    if (kind == 0) return cl_err_set(e, CL_EXIT_USAGE, "device \"%s\" is not a CUDA GPU", spec);
    int n = 0;
    cudaError_t rc = cudaGetDeviceCount(&n);
    if (rc != cudaSuccess)
        return cl_err_set(e, CL_EXIT_UNAVAILABLE, "device %s: no usable CUDA GPU on this machine (%s: %s)", spec,
                          cudaGetErrorName(rc), cudaGetErrorString(rc));
    if (ord >= n)
        return cl_err_set(e, CL_EXIT_UNAVAILABLE, "device %s: this machine has %d CUDA GPU%s", spec, n,
                          n == 1 ? "" : "s");
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "cuda:%d", ord);
    d->ordinal = ord;
    d->attach = attach;
    return 0;
}

extern "C" int cl_cuda_describe(int ordinal, char *name, size_t size, size_t *total_bytes)
{
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, ordinal) != cudaSuccess) return -1;
    snprintf(name, size, "%s", p.name);
    if (total_bytes) *total_bytes = p.totalGlobalMem;
    return 0;
}

extern "C" void cl_cuda_memory(size_t *used, size_t *peak)
{
    if (used) *used = held_bytes;
    if (peak) *peak = peak_bytes;
}

extern "C" void cl_cuda_synchronize(void) { CL_CK(cudaDeviceSynchronize()); }

extern "C" double cl_cuda_peak_tflops(const char *name)
{
    static const struct {
        const char *a, *b;
        double tf;
    } table[] = {{"H100", "PCIe", 756}, {"H100", "NVL", 835}, {"H100", "", 989}, {"H200", "", 989},
                 {"A100", "", 312}};
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        if (strstr(name, table[i].a) && strstr(name, table[i].b)) return table[i].tf;
    return 0;
}
