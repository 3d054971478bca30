// emu.cc — a CPU emulation of what lib/cuda/llama.cu needs from the CUDA runtime and cuBLASLt, so
// the backend's host code (arena mirroring, pointer mapping, operand order of every product,
// epilogues, pointer alignments, head chunking, dropout seeds, AdamW and sync) runs in the tests on
// machines without a GPU.  The kernels come from ref_kernels.cc (the CPU reference: fast) or
// from kernels.cu itself under kernel_emu.h (coroutines: slow, `make cuda-emu-kernels`).  Every
// device pointer is checked against a registry of allocations with the extent the call reads or
// writes; a stray host pointer or an out-of-bounds operand fails loudly.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <map>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/chost.cuh"
#include "emu.h"

static std::map<const char *, size_t> allocs;

static bool inside(const void *p, size_t bytes)
{
    const char *c = (const char *)p;
    auto it = allocs.upper_bound(c);
    if (it == allocs.begin()) return false;
    --it;
    return c >= it->first && c + bytes <= it->first + it->second;
}

void emu_dev(const void *p, size_t bytes, const char *what)
{
    if (bytes && !inside(p, bytes))
        cl_die(CL_EXIT_SOFTWARE, "CUDA emulation: %s: %p (%zu bytes) is not inside one device allocation", what, p,
               bytes);
}

void emu_host(const void *p, size_t bytes, const char *what)
{
    if (bytes && inside(p, 1)) cl_die(CL_EXIT_SOFTWARE, "CUDA emulation: %s: %p is device memory", what, p);
}

// ---- runtime ----------------------------------------------------------------------------

// The emulated device's memory: CL_CUDA_EMU_MEM_MB MiB when set (so the tests can run it out),
// else 16 GiB.
static size_t held;

static size_t capacity(void)
{
    const char *v = getenv("CL_CUDA_EMU_MEM_MB");
    return v && *v ? (size_t)strtoull(v, NULL, 10) << 20 : (size_t)1 << 34;
}

cudaError_t cudaMalloc(void **p, size_t bytes)
{
    *p = NULL;
    if (bytes > capacity() - (held < capacity() ? held : capacity())) return cudaErrorMemoryAllocation;
    *p = aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (!*p) return cudaErrorMemoryAllocation;
    held += bytes;
    memset(*p, 0xa5, bytes); // device memory starts as garbage, not zeros
    allocs[(const char *)*p] = bytes;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
    if (!p) return cudaSuccess;
    auto it = allocs.find((const char *)p);
    if (it == allocs.end()) return cudaErrorInvalidValue;
    held -= it->second;
    allocs.erase(it);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind)
{
    if (kind == cudaMemcpyHostToDevice) {
        emu_dev(dst, bytes, "cudaMemcpy destination");
        emu_host(src, bytes, "cudaMemcpy host source");
    } else {
        emu_dev(src, bytes, "cudaMemcpy source");
        emu_host(dst, bytes, "cudaMemcpy host destination");
    }
    memcpy(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *p, int v, size_t bytes)
{
    emu_dev(p, bytes, "cudaMemset");
    memset(p, v, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total)
{
    *total = capacity();
    *free_bytes = held < *total ? *total - held : 0;
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
    p->totalGlobalMem = capacity();
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char *cudaGetErrorName(cudaError_t e) { return e ? "cudaErrorEmulated" : "cudaSuccess"; }
const char *cudaGetErrorString(cudaError_t e)
{
    return e == cudaErrorMemoryAllocation ? "out of memory" : e ? "emulated failure" : "no error";
}

// ---- products ----------------------------------------------------------------------------

const char *cublasLtGetStatusString(cublasStatus_t s) { return s ? "CUBLAS_STATUS_INVALID_VALUE" : "CUBLAS_STATUS_SUCCESS"; }

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
        emu_dev(A, ((size_t)(ca - 1) * lda + ra) * ea, "gemm A");
        emu_dev(B, ((size_t)(cb - 1) * ldb + rb) * eb, "gemm B");
    }
    emu_dev(C, ((size_t)(n - 1) * ldc + m) * 4, "gemm C");
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


// ---- cuBLASLt ----------------------------------------------------------------------------

struct emu_lt {
    int unused;
};
struct emu_lt_desc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int32_t ta, tb;
    uint32_t epilogue;
    const float *bias;
};
struct emu_lt_layout {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
};
struct emu_lt_pref {
    uint64_t ws;
    uint32_t align[4]; // A, B, C, D
};

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h)
{
    *h = new emu_lt();
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t h)
{
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale)
{
    *d = new emu_lt_desc{compute, scale, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, NULL};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d)
{
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}

// Attribute values are copied from buf, whose size must be the attribute's.
template <typename T> static cublasStatus_t take_attr(T *dst, const void *buf, size_t size)
{
    if (size != sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(dst, buf, sizeof(T));
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t size)
{
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA: return take_attr(&d->ta, buf, size);
    case CUBLASLT_MATMUL_DESC_TRANSB: return take_attr(&d->tb, buf, size);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return take_attr(&d->epilogue, buf, size);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return take_attr(&d->bias, buf, size);
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType type, uint64_t rows, uint64_t cols,
                                          int64_t ld)
{
    if (ld < (int64_t)(rows > 1 ? rows : 1)) return CUBLAS_STATUS_INVALID_VALUE;
    *l = new emu_lt_layout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l)
{
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p)
{
    *p = new emu_lt_pref{0, {256, 256, 256, 256}}; // cuBLASLt's defaults
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p)
{
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                                    size_t size)
{
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) return take_attr(&p->ws, buf, size);
    if (attr >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES && attr <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES)
        return take_attr(&p->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, size);
    return CUBLAS_STATUS_INVALID_VALUE;
}

// Whether the layouts fit the operation: op(A) m x k, op(B) k x n, C and D m x n, fp32 out.
static bool shapes_ok(const emu_lt_desc *d, const emu_lt_layout *a, const emu_lt_layout *b, const emu_lt_layout *c,
                      const emu_lt_layout *dl, uint64_t *m, uint64_t *n, uint64_t *k)
{
    *m = d->ta == CUBLAS_OP_N ? a->rows : a->cols;
    *k = d->ta == CUBLAS_OP_N ? a->cols : a->rows;
    uint64_t kb = d->tb == CUBLAS_OP_N ? b->rows : b->cols;
    *n = d->tb == CUBLAS_OP_N ? b->cols : b->rows;
    return kb == *k && c->rows == *m && c->cols == *n && dl->rows == *m && dl->cols == *n && a->type == b->type &&
           c->type == CUDA_R_32F && dl->type == CUDA_R_32F && d->compute == CUBLAS_COMPUTE_32F &&
           d->scale == CUDA_R_32F && (d->epilogue == CUBLASLT_EPILOGUE_DEFAULT || d->epilogue == CUBLASLT_EPILOGUE_BIAS);
}

// One algorithm, which records the alignments it may assume (the preference's).
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t dl, cublasLtMatmulPreference_t p, int requested,
                                              cublasLtMatmulHeuristicResult_t *results, int *returned)
{
    uint64_t m, n, k;
    if (!h || requested < 1 || !shapes_ok(d, a, b, c, dl, &m, &n, &k)) return CUBLAS_STATUS_INVALID_VALUE;
    memset(&results[0], 0, sizeof results[0]);
    for (int i = 0; i < 4; i++) results[0].algo.data[i] = p->align[i];
    results[0].workspaceSize = p->ws < (1u << 20) ? p->ws : (1u << 20);
    results[0].state = CUBLAS_STATUS_SUCCESS;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

static void aligned(const void *ptr, uint64_t need, const char *what)
{
    if ((uintptr_t)ptr % need)
        cl_die(CL_EXIT_SOFTWARE, "CUDA emulation: cublasLtMatmul: %s %p is not aligned to the %llu bytes promised to "
               "the heuristic", what, ptr, (unsigned long long)need);
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t al, const void *B, cublasLtMatrixLayout_t bl, const void *beta,
                              const void *C, cublasLtMatrixLayout_t cl, void *D, cublasLtMatrixLayout_t dl,
                              const cublasLtMatmulAlgo_t *algo, void *workspace, size_t ws_bytes, cudaStream_t stream)
{
    (void)stream;
    uint64_t m, n, k;
    if (!h || !algo || !shapes_ok(d, al, bl, cl, dl, &m, &n, &k) || cl->ld != dl->ld) return CUBLAS_STATUS_INVALID_VALUE;
    aligned(A, algo->data[0], "A");
    aligned(B, algo->data[1], "B");
    aligned(C, algo->data[2], "C");
    aligned(D, algo->data[3], "D");
    if (ws_bytes) emu_dev(workspace, ws_bytes, "cublasLtMatmul workspace");
    float fb = *(const float *)beta;
    float *out = (float *)D;
    if (m && n) {
        emu_dev(C, ((size_t)(n - 1) * cl->ld + m) * 4, "cublasLtMatmul C");
        if (fb != 0 && C != D)
            for (uint64_t j = 0; j < n; j++) memcpy(out + j * dl->ld, (const float *)C + j * cl->ld, m * sizeof(float));
    }
    cublasStatus_t st = gemm1(d->ta ? CUBLAS_OP_T : CUBLAS_OP_N, d->tb ? CUBLAS_OP_T : CUBLAS_OP_N, (int)m, (int)n,
                              (int)k, *(const float *)alpha, A, al->type, (int)al->ld, B, bl->type, (int)bl->ld, fb, out,
                              (int)dl->ld);
    if (st || d->epilogue != CUBLASLT_EPILOGUE_BIAS || !m || !n) return st;
    emu_dev(d->bias, m * sizeof(float), "cublasLtMatmul bias");
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) out[i + j * dl->ld] += d->bias[i];
    return CUBLAS_STATUS_SUCCESS;
}
