/* kernels.cuh — the CUDA kernels of the transformer and their launchers (C++ linkage, used by
 * the .cu files of this layer only).
 *
 * Owns: fp32 -> bf16 conversion, row gather and scatter-add (the embedding and the head's loss
 * rows), RMSNorm, RoPE, flash-style tiled causal (and packed-segment) attention and its
 * backward, SwiGLU, residual adds and column sums, LoRA dropout (the CPU's counter hash, so masks
 * match), the chunked log-softmax over the vocabulary with its in-place gradient, sum of
 * squares, scaling and AdamW.  Each mirrors the ops.c / optim.c kernel of the same contract on
 * device pointers; every backward ACCUMULATES into its outputs as there.  Launches go to the
 * default stream; launch errors are checked by the caller through cl_cuda_check_launch.
 * Must not know about models, parameter tables or cuBLASLt. */
#ifndef CL_CUDA_KERNELS_CUH
#define CL_CUDA_KERNELS_CUH

#include <cuda_bf16.h>
#include <stdint.h>

typedef __nv_bfloat16 cl_bf16;

/* Exits with a clear message (CUDA error name, what was called, file:line) when rc failed. */
void cl_cuda_check(int rc, const char *what, const char *file, int line);
#define CL_CK(call) cl_cuda_check((int)(call), #call, __FILE__, __LINE__)
/* Checks the last kernel launch. */
void cl_cuda_check_launch(const char *what, const char *file, int line);
#define CL_CK_LAUNCH(name) cl_cuda_check_launch(name, __FILE__, __LINE__)

void cu_to_bf16(cl_bf16 *y, const float *x, long n);
void cu_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int n, int c, double eps);
/* dx += ...; dw += ... (dw may be NULL) */
void cu_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                    int n, int c);
void cu_rope(float *x, const int *pos, const double *inv_freq, int n, int heads, int hd, int sign);
/* Flash-style causal attention (FlashAttention-2's scheme, fp32 on CUDA cores) over b rows of t
 * tokens: q [b*t][nh*hd], k, v [b*t][nkv*hd], y [b*t][nh*hd], query head h reading kv head
 * h / (nh / nkv); seg NULL or [b*t] confines attention to one packed sequence.  No t x t matrix
 * exists anywhere: each block holds a tile of queries and streams tiles of keys through shared
 * memory with an online softmax; lse [b][nh][t] keeps each row's log-sum-exp of the scaled
 * scores for the backward.  hd <= CL_FLASH_MAX_HD. */
#define CL_FLASH_MAX_HD 256
void cu_flash_fwd(float *y, float *lse, const float *q, const float *k, const float *v, const int *seg, int b, int t,
                  int nh, int nkv, int hd);
/* dq, dk, dv ACCUMULATE the gradients of cu_flash_fwd's y (dy) from the forward's y and lse;
 * dd [b][nh][t] is scratch (rowsum(dy * y)).  Each kv head's dk and dv rows are summed by one
 * thread over its query heads in a fixed order: no atomics, the same result every run. */
void cu_flash_bwd(float *dq, float *dk, float *dv, float *dd, const float *dy, const float *y, const float *lse,
                  const float *q, const float *k, const float *v, const int *seg, int b, int t, int nh, int nkv,
                  int hd);
void cu_swiglu_fwd(float *h, const float *g, const float *u, long n);
void cu_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, long n);
/* out[i] += x[i] */
void cu_add(float *out, const float *x, long n);
/* db[j] += sum over n rows of dout[i][j] */
void cu_colsum(float *db, const float *dout, int n, int od);
/* xd = x * keep / (1 - p) with ops.c's cl_dropout mask of seed (xd may equal x) */
void cu_dropout(float *xd, const float *x, long n, double p, uint64_t seed);
/* ops.c's cl_logprob_rows: logp[r]; with coef the rows become coef * (onehot - softmax). */
void cu_logprob_rows(float *logits, const int *target, const float *coef, int rows, int v, float *logp);
/* dst[r] = src[idx[r]] / dst[idx[r]] += src[r], rows of d floats; idx may repeat (atomic adds):
 * the embedding's forward and backward, and the head's chunk of loss rows. */
void cu_gather_rows(float *dst, const float *src, const int *idx, int rows, int d);
void cu_scatter_add_rows(float *dst, const float *src, const int *idx, int rows, int d);
/* *out += sum of x^2 (out is a device double) */
void cu_sumsq(double *out, const float *x, long n);
void cu_scale(float *x, long n, float s);
/* optim.c's AdamW update of n values with its float constants */
void cu_adamw(float *p, const float *g, float *m, float *v, long n, float decay, float b1, float b2, float eps,
              float step_size, float rbc2);

#endif
