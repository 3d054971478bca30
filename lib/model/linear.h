/* linear.h — the decode-time matrix product: out[m][o] = x[m][:] . W[o][:] + b[o] over weights
 * as the checkpoint stores them ([out][in], fp32 or bf16), for the few rows (m = tokens of one
 * engine step) that decoding has, without packing the weights per call.
 *
 * Batch invariance (the reason this is not gemm.c): every output element is one dot product
 * whose reduction order depends only on `in` — four vector accumulators taking k blocks in
 * turn, folded in a fixed tree, then the k tail in order (linear.c) — never on m, on which other
 * rows share the call, on the thread count or on the tiling, so a sequence decodes to the same
 * bits alone or among 127 others.  One row's weights stream as one sequence (batch-1 decode is
 * a read of every weight, and the prefetchers follow one stream best); for batches, tiles of
 * 4 rows x 6 outputs (AVX2: 3 x 3) compute each element's four accumulators in four passes,
 * one accumulator live per element, so each weight vector serves 4 rows and each activation
 * vector 6 outputs; the rows and outputs left over take two-row tiles.
 * OpenMP threads split the output dimension.  The kernel is chosen at run time per CPU:
 * AVX-512 (16 lanes, folded to the same eight-lane tree) when the CPU has AVX512F/DQ, else
 * AVX2+FMA, else portable C; they differ in rounding (FMA, lane count), never within one.
 * CL_SIMD=avx2 or scalar forces a narrower one (tests of the paths other machines take, and
 * machines where the detection is wrong); CL_SIMD=avx512 is the default order.
 * Must not know: models, layers or sequences. */
#ifndef CL_MODEL_LINEAR_H
#define CL_MODEL_LINEAR_H

#include "model/llama.h"

/* out [m][out_dim] = x [m][in] . W^T (+ b when non-NULL); w is float * (CL_F32) or uint16_t *
 * bf16 (CL_BF16), row-major [out_dim][in]. */
void cl_linear_rows(float *out, const float *x, const void *w, cl_dtype dt, const float *b, int m, int in,
                    int out_dim);

/* out [n] = x [in] . w_o for the n rows w_o = w + o * ldw (fp32): attention scores over a
 * cache whose rows are strided.  The order of each dot product is the one above, one thread. */
void cl_linear_strided(float *out, const float *x, const float *w, size_t ldw, int in, int n);

/* The first index of the largest of v [n] (NaNs never win; 0 when n <= 0 or none is larger
 * than v[0]): greedy sampling's scan of the vocabulary. */
int cl_argmax(const float *v, int n);

/* The kernel in use: "avx512", "avx2" or "scalar". */
const char *cl_linear_isa(void);

#endif
