// emu.cc — a CPU emulation of what lib/cuda/llama.cu needs from the CUDA runtime and cuBLAS, so
// the backend's host code (arena mirroring, pointer mapping, operand order of every product,
// head chunking, dropout seeds, AdamW and sync) runs in the tests on
// machines without a GPU.  The kernels come from ref_kernels.cc (the CPU reference: fast) or
// from kernels.cu itself under kernel_emu.h (coroutines: slow, `make cuda-emu-kernels`).  Every
// device pointer is checked against a registry of allocations with the extent the call reads or
// writes; a stray host pointer or an out-of-bounds operand fails loudly.
#include <cublas_v2.h>
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
