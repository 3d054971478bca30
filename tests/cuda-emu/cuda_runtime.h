/* cuda_runtime.h (emulation) — the part of the CUDA runtime API that lib/cuda/llama.cu calls,
 * served on the CPU by emu.cc so that the backend's host code runs in the test suite on
 * machines without a GPU (tests/unit/test_cuda_parity.c built as test_cuda_emu).  "Device"
 * memory is host memory from a registry of allocations: every copy, kernel and product checks
 * that its device pointers lie inside one allocation (and host pointers outside), which is the
 * class of mistake this emulation exists to catch.  Not the real API: only what llama.cu uses. */
#ifndef CL_EMU_CUDA_RUNTIME_H
#define CL_EMU_CUDA_RUNTIME_H

#include <stddef.h>

typedef enum cudaError { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2 } cudaError_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2 };

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
};

cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind);
cudaError_t cudaMemset(void *p, int v, size_t bytes);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total);
cudaError_t cudaSetDevice(int ordinal);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int ordinal);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorName(cudaError_t e);
const char *cudaGetErrorString(cudaError_t e);

#endif
