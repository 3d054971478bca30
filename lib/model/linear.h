/* linear.h — the decode-time matrix product: out[m][o] = x[m][:] . W[o][:] + b[o] over weights
 * as the checkpoint stores them ([out][in], fp32 or bf16), for the few rows (m = tokens of one
 * engine step) that decoding has, without packing the weights per call.
 *
 * Batch invariance (the reason this is not gemm.c): every output element is one dot product
 * whose reduction order depends only on `in` — one vector accumulator taking the k blocks in
 * order, its lanes folded by halves, then the k tail in order (linear.c) — never on m, on which
 * other rows share the call, on the thread count or on the tiling, so a sequence decodes to the
 * same bits alone or among 127 others.  With one accumulator per element, a batched tile of
 * 4 rows x 4 outputs (AVX2: 4 x 3) keeps all its elements in registers over the whole of k,
 * loading each weight vector once for its 4 rows and each activation vector once for its
 * outputs, and folds 16 elements' lanes with one shared tree of shuffles; one row (batch-1
 * decode, a read of every weight) runs four outputs at once, each from its own quarter of the
 * rows, so that the weights stream as four long sequences (what the prefetchers follow) with
 * four independent FMA chains.
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

/* One of the products that cl_linear_parts runs together: out [m][out_dim] = x . W^T (+ b). */
typedef struct cl_linear_part {
    float *out;
    const void *w;
    cl_dtype dt;
    const float *b;
    int out_dim;
} cl_linear_part;
#define CL_LINEAR_MAX_PARTS 4

/* cl_linear_rows for up to CL_LINEAR_MAX_PARTS products of the same x (q, k and v; gate and
 * up) as one parallel loop: each part's bits are those cl_linear_rows gives it alone. */
void cl_linear_parts(const cl_linear_part *p, int cnt, const float *x, int m, int in);

/* out [n] = x [in] . w_o for the n rows w_o = w + o * ldw (fp32): attention scores over a
 * cache whose rows are strided.  The order of each dot product is the one above, one thread. */
void cl_linear_strided(float *out, const float *x, const float *w, size_t ldw, int in, int n);

/* out [d] = sum over s = 0..n-1, in order, of p[s] * v[s * ldv + :d] (fp32): attention's
 * weighted sum of the cached values, one thread. */
void cl_linear_mix(float *out, const float *p, const float *v, size_t ldv, int n, int d);

/* The first index of the largest of v [n] (NaNs never win; 0 when n <= 0 or none is larger
 * than v[0]): greedy sampling's scan of the vocabulary. */
int cl_argmax(const float *v, int n);

/* The kernel in use: "avx512", "avx2" or "scalar". */
const char *cl_linear_isa(void);

#endif
