/* ops.h — the numeric kernels of the transformer: forward and backward of each layer.
 *
 * Owns: embedding, RMSNorm, linear (+bias, through cl_gemm), LoRA branch, half-split RoPE,
 * causal grouped-query attention with optional packing segments, SwiGLU, and the
 * per-row log-softmax/cross-entropy kernel.  Free functions over raw arrays with explicit sizes
 * (llm.c style).  Every backward ACCUMULATES (+=) into its gradient outputs; a NULL gradient
 * output means "frozen, skip".  Layout: activations are row-major [N][C] with N = B*T tokens.
 *
 * Compiled twice: in float for libcl.a and in double (-DCL_DOUBLE, names suffixed _f64 by
 * CL_R) for the finite-difference tests.  Must not know about configs, parameter tables or
 * optimisers. */
#ifndef CL_MODEL_OPS_H
#define CL_MODEL_OPS_H

#include <stdint.h>
#include <string.h>

#include "model/real.h"

/* exp in float for the element-wise kernels (SwiGLU, softmax, log-softmax) and the sampler, in
 * plain arithmetic that the compiler vectorises, where a libm call per element cost a training
 * step about 5% of its CPU and a 32000-word sampler most of its time: 2^k e^r with k the
 * nearest integer to x log2(e) (the 1.5 * 2^23 rounding trick), r = x - k ln 2 in two parts
 * (Cody-Waite: k * the high part is exact), e^r by its degree-7 Taylor polynomial (truncation
 * below 6e-9 on |r| <= ln(2)/2).  Within 1 ulp of the correctly rounded value over the whole
 * range (0.8% of arguments differ from (float)exp((double)x)); below -87.33 (where float turns
 * subnormal) it returns 0, above 88 it saturates near FLT_MAX, and a NaN stays NaN.
 * The vector and scalar paths run the same IEEE operations (no FMA: the library is built for
 * baseline x86-64, and ISO C does not contract a * b + c, so linear.c's AVX2 and AVX-512 copies
 * of the sampler's and attention's weights, and ops.c's of SwiGLU, round each operation too), so
 * every element gets the same bits wherever it sits and on every CPU. */
static inline float cl_vexpf(float x)
{
    float c = x < 88.0f ? x : 88.0f; /* NaN too: the int conversion below needs a finite k */
    c = c > -87.33f ? c : -87.33f;
    float kf = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = c - kf * 0.693359375f;
    r = r - kf * -2.12194440e-4f;
    float p = 1.0f / 5040 + r * (1.0f / 40320);
    p = 1.0f / 720 + r * p;
    p = 1.0f / 120 + r * p;
    p = 1.0f / 24 + r * p;
    p = 1.0f / 6 + r * p;
    p = 0.5f + r * p;
    p = 1.0f + r * p;
    p = 1.0f + r * p;
    int32_t bits = ((int32_t)kf + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = x < -87.33f ? 0.0f : p * scale;
    return x == x ? y : x; /* NaN in, NaN out */
}

/* out[n] = wte[ids[n]] */
void CL_R(cl_embed_fwd)(cl_real *out, const int *ids, const cl_real *wte, int n, int c);
void CL_R(cl_embed_bwd)(cl_real *dwte, const int *ids, const cl_real *dout, int n, int c);

/* out = x / sqrt(mean(x^2) + eps) * w; rstd[n] saved for backward. */
void CL_R(cl_rmsnorm_fwd)(cl_real *out, cl_real *rstd, const cl_real *x, const cl_real *w, int n,
                          int c, double eps);
/* The forward's output again from the saved rstd, bit for bit: training recomputes it in the
 * backward instead of keeping it per layer. */
void CL_R(cl_rmsnorm_apply)(cl_real *out, const cl_real *x, const cl_real *w, const cl_real *rstd, int n,
                            int c);
void CL_R(cl_rmsnorm_bwd)(cl_real *dx, cl_real *dw, const cl_real *dout, const cl_real *x,
                          const cl_real *w, const cl_real *rstd, int n, int c);

/* out[n][o] = x[n][:] . w[o][:] + b[o]  (w is [out][in] as HF stores it; b may be NULL);
 * beta 0 overwrites out, 1 accumulates. */
void CL_R(cl_linear_fwd)(cl_real *out, const cl_real *x, const cl_real *w, const cl_real *b, int n,
                         int in, int out_dim, cl_real beta);
/* dx += dout . w; dw += dout^T . x; db += column sums of dout (each skipped when NULL). */
void CL_R(cl_linear_bwd)(cl_real *dx, cl_real *dw, cl_real *db, const cl_real *dout,
                         const cl_real *x, const cl_real *w, int n, int in, int out_dim);

/* Dropout mask of the LoRA branch: a counter-based hash of (seed, index), so backward can
 * regenerate it instead of storing it.  Writes x * keep / (1 - p) into xd. */
void CL_R(cl_dropout)(cl_real *xd, const cl_real *x, long count, double p, uint64_t seed);

/* LoRA branch: h = xd . A^T ([n][r], saved), out += scale * h . B^T.  A is [r][in], B [out][r]. */
void CL_R(cl_lora_fwd)(cl_real *out, cl_real *h, const cl_real *xd, const cl_real *a,
                       const cl_real *b, cl_real scale, int n, int in, int out_dim, int r);
/* dB += scale dout^T h; dh = scale dout B; dA += dh^T xd; dxd += dh A.  dh is [n][r] scratch. */
void CL_R(cl_lora_bwd)(cl_real *dxd, cl_real *da, cl_real *db, cl_real *dh, const cl_real *dout,
                       const cl_real *h, const cl_real *xd, const cl_real *a, const cl_real *b,
                       cl_real scale, int n, int in, int out_dim, int r);

/* In-place rotation of each head's halves (i, i + hd/2) by pos[n] * inv_freq[i]; `sign` -1
 * applies the inverse rotation, which is the backward of the forward rotation. */
void CL_R(cl_rope)(cl_real *x, const int *pos, const double *inv_freq, int n, int heads, int hd,
                   int sign);

/* The same rotation in two steps, for a decode step that rotates q and k of every layer at the
 * same positions: cs, sn [n][hd/2] the angles' cosines and sines (forward sign), then x [n][heads]
 * [hd] rotated by them (bitwise cl_rope's). */
void CL_R(cl_rope_angles)(cl_real *cs, cl_real *sn, const int *pos, const double *inv_freq, int n, int hd);
void CL_R(cl_rope_rotate)(cl_real *x, const cl_real *cs, const cl_real *sn, int n, int heads, int hd);

/* Causal attention over B rows of T tokens; query head h reads kv head h / (nh / nkv).
 * q [N][nh*hd], k, v [N][nkv*hd], out [N][nh*hd].  seg (NULL or [N]) confines attention to
 * tokens of the same packed sequence.  Nothing of size T*T is kept: the backward recomputes the
 * softmax from q and k (the forward's exact values), so it takes the same seg. */
void CL_R(cl_attention_fwd)(cl_real *out, const cl_real *q, const cl_real *k, const cl_real *v,
                            const int *seg, int b, int t, int nh, int nkv, int hd);
/* dq, dk, dv accumulate. */
void CL_R(cl_attention_bwd)(cl_real *dq, cl_real *dk, cl_real *dv, const cl_real *dout,
                            const cl_real *q, const cl_real *k, const cl_real *v, const int *seg,
                            int b, int t, int nh, int nkv, int hd);

/* h = silu(g) * u */
void CL_R(cl_swiglu_fwd)(cl_real *h, const cl_real *g, const cl_real *u, long count);
void CL_R(cl_swiglu_bwd)(cl_real *dg, cl_real *du, const cl_real *dh, const cl_real *g,
                         const cl_real *u, long count);

/* For each of the rows rows of logits [rows][v]: logp[r] = log softmax(logits[r])[target[r]]
 * by one streaming (online max / sum) pass over the vocabulary.  When coef is non-NULL the row
 * is overwritten IN PLACE with d(sum_r coef[r] * logp[r]) / dlogits = coef * (onehot - softmax),
 * so no second vocab-sized buffer ever exists. */
void CL_R(cl_logprob_rows)(cl_real *logits, const int *target, const cl_real *coef, int rows, int v,
                           cl_real *logp);

#endif
