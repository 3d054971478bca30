/* kernel_emu.h — runs lib/cuda/kernels.cu's kernels on the CPU for the tests (included by
 * kernels.cu when built with -DCL_CUDA_EMU).  Each CUDA thread of a block is a coroutine
 * (ucontext) on one OS thread and blocks run one after another, so: __shared__ variables are
 * statics (one block lives at a time), atomics are plain updates, and __syncthreads is a
 * barrier over the block's live threads.  A warp shuffle is two such barriers around an
 * exchange buffer: right for kernels whose threads all reach the same reductions, as these do.
 * Not a CUDA implementation: only what kernels.cu uses. */
#ifndef CL_EMU_KERNEL_EMU_H
#define CL_EMU_KERNEL_EMU_H

#include <functional>
#include <stdint.h>

#include "cuda/chost.cuh"
#include "cuda_bf16.h"

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

extern dim3 emu_threadIdx, emu_blockIdx, emu_blockDim, emu_gridDim;
extern double emu_xchg[1024];

#define threadIdx emu_threadIdx
#define blockIdx emu_blockIdx
#define blockDim emu_blockDim
#define gridDim emu_gridDim
#define __global__
#define __device__
#define __shared__ static

void __syncthreads(void);
/* runs body once per thread of every block */
void emu_launch(dim3 grid, dim3 block, const std::function<void()> &body);
#define LAUNCH(kernel, blocks, threads, ...) \
    emu_launch(dim3(blocks), dim3(threads), [=]() { kernel(__VA_ARGS__); })

template <typename T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask)
{
    (void)mask;
    unsigned t = threadIdx.x;
    emu_xchg[t] = (double)v; /* float and double both round-trip exactly */
    __syncthreads();
    T r = (T)emu_xchg[(t & ~31u) | ((t & 31u) ^ (unsigned)lane_mask)];
    __syncthreads();
    return r;
}

inline float atomicAdd(float *p, float v)
{
    float old = *p;
    *p = old + v;
    return old;
}

inline double atomicAdd(double *p, double v)
{
    double old = *p;
    *p = old + v;
    return old;
}

inline __nv_bfloat16 __float2bfloat16(float f)
{
    __nv_bfloat16 h;
    h.bits = cl_f32_to_bf16(f);
    return h;
}

#endif
