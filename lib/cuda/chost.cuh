/* chost.cuh — the C headers of this layer and the ones below it, included from C++ (nvcc):
 * C linkage, and C11's _Noreturn (core/err.h) spelled as C++ spells it.  Nothing else. */
#ifndef CL_CUDA_CHOST_CUH
#define CL_CUDA_CHOST_CUH

#define _Noreturn [[noreturn]]
extern "C" {
#include "core/err.h"
#include "cuda/cuda.h"
#include "model/device.h"
}
#undef _Noreturn

#endif
