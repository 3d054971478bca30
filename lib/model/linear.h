/* linear.h — the decode-time matrix product: out[m][o] = x[m][:] . W[o][:] + b[o] for the few
 * rows (m = tokens of one engine step) that decoding has, over weights packed once, when a model
 * starts decoding, into the decode layout: panels of 16 outputs, each panel [in][16] (fp32 or
 * bf16), so that one vector holds one k of 16 outputs.
 *
 * Batch invariance (the reason this is not gemm.c): every output element is one FMA chain over
 * k in order, the bias added after — never dependent on m, on which other rows share the call,
 * on the thread count or on the tiling, so a sequence decodes to the same bits alone or among
 * 127 others; FMA rounds once, so the AVX-512, AVX2 and portable (fmaf) kernels give the same
 * bits too.  A batched tile of up to 6 rows x 4 panels (AVX2: 6 x 1) keeps its elements in
 * registers over the whole of k, loading each weight vector once for its rows and broadcasting
 * each activation once for its panels: no lanes are folded, so short k (d 288) costs nothing
 * extra.  One row (batch-1 decode, a read of every weight) runs four panels at once, each from
 * its own quarter of the range, so that the weights stream as four long sequences (what the
 * prefetchers follow) with four independent FMA chains.
 * OpenMP threads split the output dimension.  The kernel is chosen at run time per CPU:
 * AVX-512 when the CPU has AVX512F/DQ, else AVX2+FMA, else portable C.  CL_SIMD=avx2 or scalar
 * forces a narrower one (tests of the paths other machines take, and machines where the
 * detection is wrong); CL_SIMD=avx512 is the default order.  The same dispatch serves
 * attention's scores and weighted sums and the sampler's scans (argmax, weights, sums), each
 * in one order that every kernel keeps.
 * Must not know: models, layers or sequences. */
#ifndef CL_MODEL_LINEAR_H
#define CL_MODEL_LINEAR_H

#include "model/llama.h"

/* Bytes of a [out_dim][in] matrix in the decode layout (out_dim rounded up to a panel). */
size_t cl_linear_panels_bytes(int out_dim, int in, cl_dtype dt);

/* dst (cl_linear_panels_bytes, element type dt) = src [out_dim][in] row-major (src_dt) in the
 * decode layout; fp32 to bf16 rounds to nearest even; the padding is zeros. */
void cl_linear_pack(void *dst, cl_dtype dt, const void *src, cl_dtype src_dt, int out_dim, int in);

/* dst [in] = row o of a packed matrix, as fp32 (the embedding lookup of a tied head). */
void cl_linear_unpack_row(float *dst, const void *panels, cl_dtype dt, int o, int in);

/* out [m][out_dim] = x [m][in] . W^T (+ b when non-NULL); w is W packed (cl_linear_pack), float
 * * (CL_F32) or uint16_t * (CL_BF16). */
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
 * cache whose rows are strided, one thread.  Each dot product: 16 lanes, lane j an FMA chain
 * over k = j, j + 16, ...; lane j + 8 onto lane j, then by halves; then the k tail in order —
 * the same in every kernel (AVX2 holds the 16 lanes in two vectors), so the same bits. */
void cl_linear_strided(float *out, const float *x, const float *w, size_t ldw, int in, int n);

/* out [d] = sum over s = 0..n-1, in order, of p[s] * v[s * ldv + :d] (fp32): attention's
 * weighted sum of the cached values, one thread; one FMA chain an element, in every kernel.
 * add: the chains go on from out's values (a sum over positions in blocks, in order, gives the
 * bits of one call over all of them). */
void cl_linear_mix(float *out, const float *p, const float *v, size_t ldv, int n, int d, int add);

/* The first index of the largest of v [n] (NaNs never win; 0 when n <= 0 or none is larger
 * than v[0]): greedy sampling's scan of the vocabulary. */
int cl_argmax(const float *v, int n);

/* p [n] = cl_vexpf((x - top) * inv) (ops.h): a sampler's unnormalised weights, attention's
 * softmax before its sum (p may be x). */
void cl_linear_weights(float *p, const float *x, int n, float top, float inv);

/* The sum of p [n] in dot16's order (16 lanes, lane j adding p[j], p[j + 16], ...; folded
 * j + 8 onto j, then by halves; the tail after, in order), the same bits in every kernel. */
float cl_linear_sum16(const float *p, int n);

/* The kernel in use: "avx512", "avx2" or "scalar", CL_SIMD read anew (it is read at the first
 * product and at each call of this, not per product: tests that switch kernels call this). */
const char *cl_linear_isa(void);

#endif
