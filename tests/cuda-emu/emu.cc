// emu.cc — a CPU emulation of what lib/cuda/llama.cu needs from the CUDA runtime, cuBLAS and
// lib/cuda/kernels.cuh, so the backend's host code (arena mirroring, pointer mapping, operand
// order of every product, strided-batched attention, head chunking, dropout seeds, AdamW and
// sync) is exercised by the test suite on machines without a GPU.  The kernels here are NOT
// kernels.cu: they are the CPU reference (ops.c, optim.c) behind kernels.cuh's contracts, so
// this checks the orchestration, not the device kernels (scripts/device-check does that on a
// GPU).  Every device pointer is checked against a registry of allocations with the extent the
// call reads or writes; a stray host pointer or an out-of-bounds operand fails loudly.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <map>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/chost.cuh"
#include "cuda/kernels.cuh"
extern "C" {
#include "model/ops.h"
}

static std::map<const char *, size_t> allocs;

static bool inside(const void *p, size_t bytes)
{
    const char *c = (const char *)p;
    auto it = allocs.upper_bound(c);
    if (it == allocs.begin()) return false;
    --it;
    return c >= it->first && c + bytes <= it->first + it->second;
}

static void dev(const void *p, size_t bytes, const char *what)
{
    if (bytes && !inside(p, bytes))
        cl_die(CL_EXIT_SOFTWARE, "CUDA emulation: %s: %p (%zu bytes) is not inside one device allocation", what, p,
               bytes);
}

static void host(const void *p, size_t bytes, const char *what)
{
    if (bytes && inside(p, 1)) cl_die(CL_EXIT_SOFTWARE, "CUDA emulation: %s: %p is device memory", what, p);
}

// ---- runtime ----------------------------------------------------------------------------

cudaError_t cudaMalloc(void **p, size_t bytes)
{
    *p = aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xa5, bytes); // device memory starts as garbage, not zeros
    allocs[(const char *)*p] = bytes;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
    if (!p) return cudaSuccess;
    auto it = allocs.find((const char *)p);
    if (it == allocs.end()) return cudaErrorInvalidValue;
    allocs.erase(it);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind)
{
    if (kind == cudaMemcpyHostToDevice) {
        dev(dst, bytes, "cudaMemcpy destination");
        host(src, bytes, "cudaMemcpy host source");
    } else {
        dev(src, bytes, "cudaMemcpy source");
        host(dst, bytes, "cudaMemcpy host destination");
    }
    memcpy(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *p, int v, size_t bytes)
{
    dev(p, bytes, "cudaMemset");
    memset(p, v, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total)
{
    *free_bytes = *total = (size_t)1 << 34;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int ordinal) { return ordinal == 0 ? cudaSuccess : cudaErrorInvalidValue; }

cudaError_t cudaGetDeviceCount(int *n)
{
    *n = 1;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int ordinal)
{
    if (ordinal) return cudaErrorInvalidValue;
    snprintf(p->name, sizeof p->name, "CUDA emulation on the CPU");
    p->totalGlobalMem = (size_t)1 << 34;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char *cudaGetErrorName(cudaError_t e) { return e ? "cudaErrorEmulated" : "cudaSuccess"; }
const char *cudaGetErrorString(cudaError_t e) { return e ? "emulated failure" : "no error"; }

// ---- cuBLAS ------------------------------------------------------------------------------

struct emu_blas {
    int unused;
};

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = new emu_blas();
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t s) { return s ? "CUBLAS_STATUS_INVALID_VALUE" : "CUBLAS_STATUS_SUCCESS"; }

static float elem(const void *p, cudaDataType t, long i)
{
    return t == CUDA_R_16BF ? cl_bf16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

// Column-major C (m x n) = alpha op(A) op(B) + beta C, as cuBLAS defines it.
static cublasStatus_t gemm1(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                            const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt, int ldb,
                            float beta, float *C, int ldc)
{
    int ra = ta == CUBLAS_OP_N ? m : k, ca = ta == CUBLAS_OP_N ? k : m;
    int rb = tb == CUBLAS_OP_N ? k : n, cb = tb == CUBLAS_OP_N ? n : k;
    if (m < 0 || n < 0 || k < 0 || lda < (ra > 1 ? ra : 1) || ldb < (rb > 1 ? rb : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!m || !n) return CUBLAS_STATUS_SUCCESS;
    size_t ea = at == CUDA_R_16BF ? 2 : 4, eb = bt == CUDA_R_16BF ? 2 : 4;
    if (k) {
        dev(A, ((size_t)(ca - 1) * lda + ra) * ea, "gemm A");
        dev(B, ((size_t)(cb - 1) * ldb + rb) * eb, "gemm B");
    }
    dev(C, ((size_t)(n - 1) * ldc + m) * 4, "gemm C");
    // op(A) as m rows of k and op(B) as n rows of k, so each dot product reads contiguously
    float *a = (float *)malloc(sizeof(float) * ((size_t)m * k + 1)), *b = (float *)malloc(sizeof(float) * ((size_t)n * k + 1));
    if (!a || !b) cl_die(CL_EXIT_SOFTWARE, "out of memory");
    for (int i = 0; i < m; i++)
        for (int p = 0; p < k; p++) a[(long)i * k + p] = elem(A, at, ta == CUBLAS_OP_N ? i + (long)p * lda : p + (long)i * lda);
    for (int j = 0; j < n; j++)
        for (int p = 0; p < k; p++) b[(long)j * k + p] = elem(B, bt, tb == CUBLAS_OP_N ? p + (long)j * ldb : j + (long)p * ldb);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            const float *ai = a + (long)i * k, *bj = b + (long)j * k;
            for (int p = 0; p < k; p++) s += (double)ai[p] * bj[p];
            float *c = &C[i + (long)j * ldc];
            *c = (float)(alpha * s + (beta == 0 ? 0.0 : (double)beta * *c));
        }
    free(a);
    free(b);
    return CUBLAS_STATUS_SUCCESS;
}

static cublasStatus_t types_ok(cudaDataType at, cudaDataType bt, cudaDataType ct, cublasComputeType_t cp)
{
    return at == bt && ct == CUDA_R_32F && cp == CUBLAS_COMPUTE_32F ? CUBLAS_STATUS_SUCCESS
                                                                   : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B,
                            cudaDataType bt, int ldb, const void *beta, void *C, cudaDataType ct, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo)
{
    (void)algo;
    if (!h || types_ok(at, bt, ct, compute)) return CUBLAS_STATUS_INVALID_VALUE;
    return gemm1(ta, tb, m, n, k, *(const float *)alpha, A, at, lda, B, bt, ldb, *(const float *)beta, (float *)C,
                 ldc);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType at, int lda,
                                          long long sa, const void *B, cudaDataType bt, int ldb, long long sb,
                                          const void *beta, void *C, cudaDataType ct, int ldc, long long sc,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t algo)
{
    (void)algo;
    if (!h || batch < 0 || types_ok(at, bt, ct, compute)) return CUBLAS_STATUS_INVALID_VALUE;
    size_t ea = at == CUDA_R_16BF ? 2 : 4;
    for (int i = 0; i < batch; i++) {
        cublasStatus_t st = gemm1(ta, tb, m, n, k, *(const float *)alpha, (const char *)A + i * sa * (long long)ea, at,
                                  lda, (const char *)B + i * sb * (long long)ea, bt, ldb, *(const float *)beta,
                                  (float *)C + i * sc, ldc);
        if (st) return st;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// ---- kernels.cuh on the CPU -------------------------------------------------------------

void cl_cuda_check(int rc, const char *what, const char *file, int line)
{
    if (rc) cl_die(CL_EXIT_SOFTWARE, "CUDA emulation: error %d in %s at %s:%d", rc, what, file, line);
}

void cl_cuda_check_launch(const char *what, const char *file, int line) { (void)what, (void)file, (void)line; }

#define F(n) (sizeof(float) * (size_t)(n))

void cu_to_bf16(cl_bf16 *y, const float *x, long n)
{
    dev(y, 2 * (size_t)n, "to_bf16 y");
    dev(x, F(n), "to_bf16 x");
    for (long i = 0; i < n; i++) y[i].bits = cl_f32_to_bf16(x[i]);
}

void cu_embed_fwd(float *out, const int *ids, const float *wte, int n, int c)
{
    dev(out, F((long)n * c), "embed out");
    dev(ids, F(n), "embed ids");
    for (int i = 0; i < n; i++) dev(wte + (long)ids[i] * c, F(c), "embed table row");
    cl_embed_fwd(out, ids, wte, n, c);
}

void cu_embed_bwd(float *dwte, const int *ids, const float *dout, int n, int c)
{
    dev(dout, F((long)n * c), "embed dout");
    dev(ids, F(n), "embed ids");
    for (int i = 0; i < n; i++) dev(dwte + (long)ids[i] * c, F(c), "embed gradient row");
    cl_embed_bwd(dwte, ids, dout, n, c);
}

void cu_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int n, int c, double eps)
{
    dev(out, F((long)n * c), "rmsnorm out");
    dev(rstd, F(n), "rmsnorm rstd");
    dev(x, F((long)n * c), "rmsnorm x");
    dev(w, F(c), "rmsnorm w");
    cl_rmsnorm_fwd(out, rstd, x, w, n, c, eps);
}

void cu_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                    int n, int c)
{
    dev(dx, F((long)n * c), "rmsnorm dx");
    if (dw) dev(dw, F(c), "rmsnorm dw");
    dev(dout, F((long)n * c), "rmsnorm dout");
    dev(x, F((long)n * c), "rmsnorm x");
    dev(w, F(c), "rmsnorm w");
    dev(rstd, F(n), "rmsnorm rstd");
    cl_rmsnorm_bwd(dx, dw, dout, x, w, rstd, n, c);
}

void cu_rope(float *x, const int *pos, const double *inv_freq, int n, int heads, int hd, int sign)
{
    dev(x, F((long)n * heads * hd), "rope x");
    dev(pos, F(n), "rope pos");
    dev(inv_freq, sizeof(double) * (size_t)(hd / 2), "rope inv_freq");
    cl_rope(x, pos, inv_freq, n, heads, hd, sign);
}

void cu_softmax_causal(float *att, const int *seg, int b, int nh, int t)
{
    long rows = (long)b * nh * t;
    dev(att, F(rows * t), "softmax att");
    if (seg) dev(seg, F((long)b * t), "softmax seg");
    for (long row = 0; row < rows; row++) {
        int i = (int)(row % t);
        const int *sg = seg ? seg + row / ((long)nh * t) * t : NULL;
        float *p = att + row * t, mx = -INFINITY;
        for (int j = 0; j <= i; j++)
            if (!sg || sg[j] == sg[i]) mx = fmaxf(mx, p[j]);
        double sum = 0;
        for (int j = 0; j < t; j++) {
            p[j] = j <= i && (!sg || sg[j] == sg[i]) ? expf(p[j] - mx) : 0.0f;
            sum += p[j];
        }
        for (int j = 0; j < t; j++) p[j] = (float)(p[j] / sum);
    }
}

void cu_softmax_bwd(float *ds, const float *att, long rows, int t, float scale)
{
    dev(ds, F(rows * t), "softmax_bwd ds");
    dev(att, F(rows * t), "softmax_bwd att");
    for (long row = 0; row < rows; row++) {
        const float *p = att + row * t;
        float *d = ds + row * t;
        double s = 0;
        for (int j = 0; j < t; j++) s += (double)p[j] * d[j];
        for (int j = 0; j < t; j++) d[j] = p[j] * (d[j] - (float)s) * scale;
    }
}

void cu_swiglu_fwd(float *h, const float *g, const float *u, long n)
{
    dev(h, F(n), "swiglu h");
    dev(g, F(n), "swiglu g");
    dev(u, F(n), "swiglu u");
    cl_swiglu_fwd(h, g, u, n);
}

void cu_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, long n)
{
    dev(dg, F(n), "swiglu dg");
    dev(du, F(n), "swiglu du");
    dev(dh, F(n), "swiglu dh");
    dev(g, F(n), "swiglu g");
    dev(u, F(n), "swiglu u");
    cl_swiglu_bwd(dg, du, dh, g, u, n);
}

void cu_add(float *out, const float *x, long n)
{
    dev(out, F(n), "add out");
    dev(x, F(n), "add x");
    for (long i = 0; i < n; i++) out[i] += x[i];
}

void cu_add_bias(float *out, const float *b, int n, int od)
{
    dev(out, F((long)n * od), "bias out");
    dev(b, F(od), "bias b");
    for (long i = 0; i < (long)n * od; i++) out[i] += b[i % od];
}

void cu_colsum(float *db, const float *dout, int n, int od)
{
    dev(db, F(od), "colsum db");
    dev(dout, F((long)n * od), "colsum dout");
    for (int i = 0; i < n; i++)
        for (int j = 0; j < od; j++) db[j] += dout[(long)i * od + j];
}

void cu_dropout(float *xd, const float *x, long n, double p, uint64_t seed)
{
    dev(xd, F(n), "dropout xd");
    dev(x, F(n), "dropout x");
    cl_dropout(xd, x, n, p, seed);
}

void cu_logprob_rows(float *logits, const int *target, const float *coef, int rows, int v, float *logp)
{
    dev(logits, F((long)rows * v), "logprob logits");
    dev(target, F(rows), "logprob target");
    if (coef) dev(coef, F(rows), "logprob coef");
    dev(logp, F(rows), "logprob logp");
    cl_logprob_rows(logits, target, coef, rows, v, logp);
}

void cu_gather_rows(float *dst, const float *src, const int *idx, int rows, int d)
{
    dev(dst, F((long)rows * d), "gather dst");
    dev(idx, F(rows), "gather idx");
    for (int r = 0; r < rows; r++) {
        dev(src + (long)idx[r] * d, F(d), "gather source row");
        memcpy(dst + (long)r * d, src + (long)idx[r] * d, F(d));
    }
}

void cu_scatter_add_rows(float *dst, const float *src, const int *idx, int rows, int d)
{
    dev(src, F((long)rows * d), "scatter src");
    dev(idx, F(rows), "scatter idx");
    for (int r = 0; r < rows; r++) {
        dev(dst + (long)idx[r] * d, F(d), "scatter destination row");
        for (int j = 0; j < d; j++) dst[(long)idx[r] * d + j] += src[(long)r * d + j];
    }
}

void cu_sumsq(double *out, const float *x, long n)
{
    dev(out, sizeof(double), "sumsq out");
    dev(x, F(n), "sumsq x");
    for (long i = 0; i < n; i++) *out += (double)x[i] * x[i];
}

void cu_scale(float *x, long n, float s)
{
    dev(x, F(n), "scale x");
    for (long i = 0; i < n; i++) x[i] *= s;
}

void cu_adamw(float *p, const float *g, float *m, float *v, long n, float decay, float b1, float b2, float eps,
              float step_size, float rbc2)
{
    dev(p, F(n), "adamw p");
    dev(g, F(n), "adamw g");
    dev(m, F(n), "adamw m");
    dev(v, F(n), "adamw v");
    for (long i = 0; i < n; i++) {
        p[i] *= decay;
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        p[i] -= step_size * m[i] / (sqrtf(v[i]) * rbc2 + eps);
    }
}
