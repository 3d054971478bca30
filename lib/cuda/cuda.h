/* cuda.h — the NVIDIA GPU as a cl_llama device (model/device.h), built only with make CUDA=1.
 *
 * Owns: opening "cuda" / "cuda:N" (device count, ordinal, name), and the device copy of a
 * model: weights mirrored byte for byte (fp32 masters and bf16 frozen bases as the host holds
 * them) plus a bf16 shadow of every fp32 matrix, fp32 gradients and AdamW moments, fp32
 * activations; every matrix product through cuBLASLt with bf16 inputs and fp32 accumulation
 * (bias and residual adds fused into the products' epilogues)
 * (the LoRA branch's thin products stay fp32), and fused kernels for RMSNorm, RoPE, flash-style
 * tiled causal attention, SwiGLU, the chunked log-softmax head, dropout, the gradient norm and
 * AdamW (kernels.cuh).  The loss arithmetic stays on the host: only per-token log-probs and
 * coefficients cross the bus.
 * Only tools name this header, and only under CL_HAVE_CUDA, so a CPU build never references a
 * CUDA symbol.  Must not know about files, runs or losses. */
#ifndef CL_CUDA_CUDA_H
#define CL_CUDA_CUDA_H

#include <stddef.h>

#include "core/err.h"
#include "model/device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GPUs the CUDA runtime sees (0 when there is no driver or no device). */
int cl_cuda_device_count(void);

/* Fills d for spec "cuda" (device 0) or "cuda:N".  CL_EXIT_USAGE for any other spec
 * (cl_device_parse), CL_EXIT_UNAVAILABLE when the machine has no usable GPU or no device N;
 * the message says which and what the runtime answered. */
int cl_cuda_open(cl_device *d, const char *spec, cl_err *e);

/* The device's name (e.g. "NVIDIA H100 80GB HBM3") and memory; -1 when it cannot be queried. */
int cl_cuda_describe(int ordinal, char *name, size_t size, size_t *total_bytes);

/* Device bytes this backend holds now and held at most so far (weights, shadows, gradients,
 * moments, activations, scratch and cuBLASLt's 32 MiB workspace; the CUDA context is not counted). */
void cl_cuda_memory(size_t *used, size_t *peak);

/* Waits for the device to finish all queued work (timings). */
void cl_cuda_synchronize(void);

/* Dense bf16 tensor-core peak in TFLOP/s of a GPU named `name` (cl_cuda_describe), from the
 * vendor's datasheets: H100 SXM and H200 (GH200 too) 989, H100 NVL 835, H100 PCIe 756, A100 312; 0 when
 * the name is not known.  MFU figures divide by it. */
double cl_cuda_peak_tflops(const char *name);

#ifdef __cplusplus
}
#endif

#endif
