/* linear.h — the decode-time matrix product: out[m][o] = x[m][:] . W[o][:] + b[o] over weights
 * as the checkpoint stores them ([out][in], fp32 or bf16), for the few rows (m = tokens of one
 * engine step) that decoding has, without packing the weights per call.
 *
 * Batch invariance (the reason this is not gemm.c): every output element is one dot product
 * whose reduction order depends only on `in` — eight lanes over k, summed in a fixed tree, then
 * the k tail in order — never on m, on which other rows share the call, on the thread count or
 * on the tiling, so a sequence decodes to the same bits alone or among 127 others.
 * OpenMP threads split the output dimension.  The kernel is chosen at run time per CPU: AVX2+FMA
 * when the CPU has it, else portable C (the two differ in rounding: FMA); CL_SIMD=scalar forces
 * the portable one (tests, and machines where the detection is wrong).
 * Must not know: models, layers or sequences. */
#ifndef CL_MODEL_LINEAR_H
#define CL_MODEL_LINEAR_H

#include "model/llama.h"

/* out [m][out_dim] = x [m][in] . W^T (+ b when non-NULL); w is float * (CL_F32) or uint16_t *
 * bf16 (CL_BF16), row-major [out_dim][in]. */
void cl_linear_rows(float *out, const float *x, const void *w, cl_dtype dt, const float *b, int m, int in,
                    int out_dim);

/* The kernel in use: "avx2" or "scalar". */
const char *cl_linear_isa(void);

#endif
