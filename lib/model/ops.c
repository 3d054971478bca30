/* ops.c — forward and backward kernels of the transformer layers (see ops.h).
 *
 * Parallelism: loops over tokens or (batch, head) pairs use OpenMP; reductions into weight
 * gradients (RMSNorm, embedding, bias) run serially in a fixed order so results do not depend
 * on the thread count. */
#include "model/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/clones.h"

#ifdef CL_DOUBLE
/* The double build multiplies naively: it exists to be obviously right, not fast. */
static void matmul(int ta, int tb, int m, int n, int k, double alpha, const double *a, int lda,
                   const double *b, int ldb, double beta, double *c, int ldc)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++)
                s += (ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]) *
                     (tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j]);
            double *cij = &c[(size_t)i * ldc + j];
            *cij = alpha * s + (beta == 0 ? 0 : beta * *cij);
        }
}
#else
#include "model/gemm.h"
#define matmul cl_gemm
#endif

#ifdef CL_DOUBLE
static inline double vexp(double x) { return exp(x); }
#else
static inline float vexp(float x) { return cl_vexpf(x); }
#endif

void CL_R(cl_embed_fwd)(cl_real *out, const int *ids, const cl_real *wte, int n, int c)
{
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * c, wte + (size_t)ids[i] * c, sizeof(cl_real) * c);
}

void CL_R(cl_embed_bwd)(cl_real *dwte, const int *ids, const cl_real *dout, int n, int c)
{
    for (int i = 0; i < n; i++) {
        cl_real *restrict d = dwte + (size_t)ids[i] * c;
        const cl_real *restrict g = dout + (size_t)i * c;
        for (int j = 0; j < c; j++) d[j] += g[j];
    }
}

/* One row of the normalised output: the same operations whether computed in the forward or
 * again in the backward (cl_rmsnorm_apply), so the two agree to the bit. */
static void norm_row(cl_real *restrict out, const cl_real *restrict x, const cl_real *restrict w, cl_real r,
                     int c)
{
    for (int j = 0; j < c; j++) out[j] = x[j] * r * w[j];
}

static void rmsnorm_row(cl_real *out, cl_real *rstd, const cl_real *restrict x, const cl_real *w, int c,
                        double eps)
{
    double ss = 0;
    for (int j = 0; j < c; j++) ss += (double)x[j] * x[j];
    cl_real r = (cl_real)(1.0 / sqrt(ss / c + eps));
    *rstd = r;
    norm_row(out, x, w, r, c);
}

void CL_R(cl_rmsnorm_fwd)(cl_real *out, cl_real *rstd, const cl_real *x, const cl_real *w, int n,
                          int c, double eps)
{
    /* A parallel region whose `if` is false still costs a team of one: about 0.4 us, as much
     * as the row itself when the engine normalises each of a step's rows from its own threads
     * (0.3 s of a 14 s cl-rollout run at 128 calls in flight). */
    if ((long)n * c <= 65536) {
        for (int i = 0; i < n; i++) rmsnorm_row(out + (size_t)i * c, rstd + i, x + (size_t)i * c, w, c, eps);
        return;
    }
#pragma omp parallel for
    for (int i = 0; i < n; i++) rmsnorm_row(out + (size_t)i * c, rstd + i, x + (size_t)i * c, w, c, eps);
}

void CL_R(cl_rmsnorm_apply)(cl_real *out, const cl_real *x, const cl_real *w, const cl_real *rstd, int n,
                            int c)
{
#pragma omp parallel for if ((long)n * c > 65536)
    for (int i = 0; i < n; i++) norm_row(out + (size_t)i * c, x + (size_t)i * c, w, rstd[i], c);
}

void CL_R(cl_rmsnorm_bwd)(cl_real *dx, cl_real *dw, const cl_real *dout, const cl_real *x,
                          const cl_real *w, const cl_real *rstd, int n, int c)
{
#pragma omp parallel for if ((long)n * c > 65536)
    for (int i = 0; i < n; i++) {
        const cl_real *restrict xi = x + (size_t)i * c, *restrict gi = dout + (size_t)i * c;
        cl_real *restrict dxi = dx + (size_t)i * c;
        cl_real r = rstd[i];
        double dot = 0;
        for (int j = 0; j < c; j++) dot += (double)gi[j] * w[j] * xi[j];
        cl_real m = (cl_real)(dot * r / c);
        for (int j = 0; j < c; j++) dxi[j] += r * (gi[j] * w[j] - xi[j] * r * m);
    }
    if (!dw) return;
    for (int i = 0; i < n; i++) {
        const cl_real *restrict xi = x + (size_t)i * c, *restrict gi = dout + (size_t)i * c;
        cl_real r = rstd[i];
        for (int j = 0; j < c; j++) dw[j] += gi[j] * xi[j] * r;
    }
}

void CL_R(cl_linear_fwd)(cl_real *out, const cl_real *x, const cl_real *w, const cl_real *b, int n,
                         int in, int out_dim, cl_real beta)
{
    matmul(0, 1, n, out_dim, in, 1, x, in, w, in, beta, out, out_dim);
    if (!b) return;
    for (int i = 0; i < n; i++) {
        cl_real *restrict o = out + (size_t)i * out_dim;
        for (int j = 0; j < out_dim; j++) o[j] += b[j];
    }
}

void CL_R(cl_linear_bwd)(cl_real *dx, cl_real *dw, cl_real *db, const cl_real *dout,
                         const cl_real *x, const cl_real *w, int n, int in, int out_dim)
{
    if (dx) matmul(0, 0, n, in, out_dim, 1, dout, out_dim, w, in, 1, dx, in);
    if (dw) matmul(1, 0, out_dim, in, n, 1, dout, out_dim, x, in, 1, dw, in);
    if (db)
        for (int i = 0; i < n; i++) {
            const cl_real *restrict g = dout + (size_t)i * out_dim;
            for (int j = 0; j < out_dim; j++) db[j] += g[j];
        }
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void CL_R(cl_dropout)(cl_real *xd, const cl_real *x, long count, double p, uint64_t seed)
{
    cl_real keep = (cl_real)(1.0 / (1.0 - p));
    uint64_t s = splitmix64(seed);
#pragma omp parallel for if (count > 65536)
    for (long i = 0; i < count; i++) {
        double u = (double)(splitmix64(s ^ (uint64_t)i) >> 11) * 0x1.0p-53;
        xd[i] = u < p ? 0 : x[i] * keep;
    }
}

void CL_R(cl_lora_fwd)(cl_real *out, cl_real *h, const cl_real *xd, const cl_real *a,
                       const cl_real *b, cl_real scale, int n, int in, int out_dim, int r)
{
    matmul(0, 1, n, r, in, 1, xd, in, a, in, 0, h, r);
    matmul(0, 1, n, out_dim, r, scale, h, r, b, r, 1, out, out_dim);
}

void CL_R(cl_lora_bwd)(cl_real *dxd, cl_real *da, cl_real *db, cl_real *dh, const cl_real *dout,
                       const cl_real *h, const cl_real *xd, const cl_real *a, const cl_real *b,
                       cl_real scale, int n, int in, int out_dim, int r)
{
    if (db) matmul(1, 0, out_dim, r, n, scale, dout, out_dim, h, r, 1, db, r);
    matmul(0, 0, n, r, out_dim, scale, dout, out_dim, b, r, 0, dh, r);
    if (da) matmul(1, 0, r, in, n, 1, dh, r, xd, in, 1, da, in);
    if (dxd) matmul(0, 0, n, in, r, 1, dh, r, a, in, 1, dxd, in);
}

/* x [heads][hd] of one row rotated by the angles cs, sn [hd/2] */
static inline void rope_row(cl_real *x, const cl_real *cs, const cl_real *sn, int heads, int hd)
{
    int half = hd / 2;
    for (int h = 0; h < heads; h++) {
        cl_real *restrict x1 = x + (size_t)h * hd, *restrict x2 = x1 + half;
        for (int f = 0; f < half; f++) {
            cl_real a = x1[f], b = x2[f];
            x1[f] = a * cs[f] - b * sn[f];
            x2[f] = b * cs[f] + a * sn[f];
        }
    }
}

static inline void rope_angles_row(cl_real *cs, cl_real *sn, int pos, const double *inv_freq, int half, int sign)
{
    for (int f = 0; f < half; f++) {
        double ang = pos * inv_freq[f];
        cs[f] = (cl_real)cos(ang);
        sn[f] = (cl_real)(sign * sin(ang));
    }
}

void CL_R(cl_rope)(cl_real *x, const int *pos, const double *inv_freq, int n, int heads, int hd,
                   int sign)
{
#pragma omp parallel for if ((long)n * heads * hd > 65536)
    for (int i = 0; i < n; i++) {
        cl_real cs[256], sn[256]; /* head_dim <= 512 is checked by the config */
        rope_angles_row(cs, sn, pos[i], inv_freq, hd / 2, sign);
        rope_row(x + (size_t)i * heads * hd, cs, sn, heads, hd);
    }
}

void CL_R(cl_rope_angles)(cl_real *cs, cl_real *sn, const int *pos, const double *inv_freq, int n, int hd)
{
    int half = hd / 2;
    for (int i = 0; i < n; i++) rope_angles_row(cs + (size_t)i * half, sn + (size_t)i * half, pos[i], inv_freq, half, 1);
}

void CL_R(cl_rope_rotate)(cl_real *x, const cl_real *cs, const cl_real *sn, int n, int heads, int hd)
{
    int half = hd / 2;
    for (int i = 0; i < n; i++)
        rope_row(x + (size_t)i * heads * hd, cs + (size_t)i * half, sn + (size_t)i * half, heads, hd);
}

/* Attention runs as matrix products per (batch row, head) — S = Q K^T, O = P V and the four
 * backward products — on the strided head slices in place (row stride nh*hd or nkv*hd), inside
 * a parallel loop, so each product is single-threaded.  Each product runs in bands of BAND
 * rows cut at the causal diagonal (band_* below): the zeros past it cost no multiply-adds
 * beyond the band's edge (5/8 of the dense work at t = 256) and every element still sums its
 * remaining terms in order.  Masked entries of other segments stay in the products.  The
 * probabilities P are not kept between forward and backward ([B][nh][T][T] per layer, the
 * largest activation at long T): the backward computes them again with the forward's own code
 * (probs), the same bits. */

/* P [t][t] of one (batch row, head): row softmax of scale * Q K^T, causal and, with seg (the
 * row's [t] segment ids), confined to the query's own segment; entries past the diagonal are 0. */
#define BAND 64

/* c [t][t] = alpha x y^T (x, y [t][k]) up to the diagonal band: row i gets columns below the end
 * of its band; the rest of c is left for the caller to zero. */
static void band_outer(int t, int k, cl_real alpha, const cl_real *x, int ldx, const cl_real *y, int ldy, cl_real *c)
{
    for (int r0 = 0; r0 < t; r0 += BAND) {
        int r1 = r0 + BAND < t ? r0 + BAND : t;
        matmul(0, 1, r1 - r0, r1, k, alpha, x + (size_t)r0 * ldx, ldx, y, ldy, 0, c + (size_t)r0 * t, t);
    }
}

/* c [t][nb] = a b + beta c, a [t][t] zero past the diagonal, b [t][nb]. */
static void band_left(int t, int nb, const cl_real *a, const cl_real *b, int ldb, cl_real beta, cl_real *c, int ldc)
{
    for (int r0 = 0; r0 < t; r0 += BAND) {
        int r1 = r0 + BAND < t ? r0 + BAND : t;
        matmul(0, 0, r1 - r0, nb, r1, 1, a + (size_t)r0 * t, t, b, ldb, beta, c + (size_t)r0 * ldc, ldc);
    }
}

/* c [t][nb] += a^T b, a [t][t] zero past the diagonal: output row s needs rows i >= s of a. */
static void band_left_t(int t, int nb, const cl_real *a, const cl_real *b, int ldb, cl_real *c, int ldc)
{
    for (int c0 = 0; c0 < t; c0 += BAND) {
        int c1 = c0 + BAND < t ? c0 + BAND : t;
        matmul(1, 0, c1 - c0, nb, t - c0, 1, a + (size_t)c0 * t + c0, t, b + (size_t)c0 * ldb, ldb, 1,
               c + (size_t)c0 * ldc, ldc);
    }
}

static void probs(cl_real *p, const cl_real *qh, int qs, const cl_real *kh, int ks, const int *seg, int t, int hd)
{
    cl_real scale = (cl_real)(1.0 / sqrt((double)hd));
    band_outer(t, hd, scale, qh, qs, kh, ks, p);
    for (int ti = 0; ti < t; ti++) {
        cl_real *pr = p + (size_t)ti * t, mx = -INFINITY;
        if (seg)
            for (int s = 0; s <= ti; s++)
                if (seg[s] != seg[ti]) pr[s] = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int s = 0; s <= ti; s++) mx = pr[s] > mx ? pr[s] : mx; /* a maximum has no order */
#pragma omp simd
        for (int s = 0; s <= ti; s++) pr[s] = vexp(pr[s] - mx); /* masked: exp(-inf) = 0 */
        double sum = 0;
        for (int s = 0; s <= ti; s++) sum += pr[s];
        cl_real inv = (cl_real)(1.0 / sum);
#pragma omp simd
        for (int s = 0; s <= ti; s++) pr[s] *= inv;
        for (int s = ti + 1; s < t; s++) pr[s] = 0;
    }
}

static cl_real *scratch_tt(int t)
{
    cl_real *p = malloc(sizeof(cl_real) * (size_t)t * t);
    if (!p) abort();
    return p;
}

void CL_R(cl_attention_fwd)(cl_real *out, const cl_real *q, const cl_real *k, const cl_real *v, const int *seg,
                            int b, int t, int nh, int nkv, int hd)
{
    int group = nh / nkv, qs = nh * hd, ks = nkv * hd;
#pragma omp parallel if ((long)b * nh * t * t * hd > 100000)
    {
        cl_real *p = scratch_tt(t);
#pragma omp for collapse(2) schedule(dynamic)
        for (int bi = 0; bi < b; bi++)
            for (int h = 0; h < nh; h++) {
                size_t r0 = (size_t)bi * t, qo = r0 * qs + (size_t)h * hd, ko = r0 * ks + (size_t)(h / group) * hd;
                probs(p, q + qo, qs, k + ko, ks, seg ? seg + r0 : NULL, t, hd);
                band_left(t, hd, p, v + ko, ks, 0, out + qo, qs);
            }
        free(p);
    }
}

void CL_R(cl_attention_bwd)(cl_real *dq, cl_real *dk, cl_real *dv, const cl_real *dout, const cl_real *q,
                            const cl_real *k, const cl_real *v, const int *seg, int b, int t, int nh, int nkv,
                            int hd)
{
    int group = nh / nkv, qs = nh * hd, ks = nkv * hd;
    cl_real scale = (cl_real)(1.0 / sqrt((double)hd));
    /* One task per (batch row, kv head) owns that head's dk/dv rows: no races, fixed order. */
#pragma omp parallel if ((long)b * nh * t * t * hd > 100000)
    {
        cl_real *p = scratch_tt(t), *ds = scratch_tt(t);
#pragma omp for collapse(2) schedule(dynamic)
        for (int bi = 0; bi < b; bi++)
            for (int kh = 0; kh < nkv; kh++)
                for (int h = kh * group; h < (kh + 1) * group; h++) {
                    size_t r0 = (size_t)bi * t, qo = r0 * qs + (size_t)h * hd, ko = r0 * ks + (size_t)kh * hd;
                    probs(p, q + qo, qs, k + ko, ks, seg ? seg + r0 : NULL, t, hd);
                    /* dP = dO V^T, then dS = P (dP - rowsum(P dP)) * scale */
                    band_outer(t, hd, 1, dout + qo, qs, v + ko, ks, ds);
                    for (int ti = 0; ti < t; ti++) {
                        const cl_real *pr = p + (size_t)ti * t;
                        cl_real *dr = ds + (size_t)ti * t;
                        double sum = 0;
                        for (int s = 0; s <= ti; s++) sum += (double)pr[s] * dr[s];
                        for (int s = 0; s <= ti; s++) dr[s] = pr[s] * (dr[s] - (cl_real)sum) * scale;
                        for (int s = ti + 1; s < t; s++) dr[s] = 0; /* past the band, never written */
                    }
                    band_left(t, hd, ds, k + ko, ks, 1, dq + qo, qs);
                    band_left_t(t, hd, ds, q + qo, qs, dk + ko, ks);
                    band_left_t(t, hd, p, dout + qo, qs, dv + ko, ks);
                }
        free(p);
        free(ds);
    }
}

/* The element-wise exp loops in the widest vectors the CPU has, chosen when the program loads
 * (in the baseline build's SSE2 they were 3% of a cl-rollout run at 128 calls in flight).
 * Every copy runs the same IEEE operations (ISO C does not contract, cl_vexpf has no FMA), so
 * the bits do not depend on the copy. */

CL_WIDEST_VECTORS void CL_R(cl_swiglu_fwd)(cl_real *h, const cl_real *g, const cl_real *u, long count)
{
    /* an exp an element: two threads pay for their wake-up from a few thousand on (a decode
     * step's few rows) */
#pragma omp parallel for simd if (parallel : count > 8192)
    for (long i = 0; i < count; i++) h[i] = g[i] / (1 + vexp(-g[i])) * u[i];
}

CL_WIDEST_VECTORS void CL_R(cl_swiglu_bwd)(cl_real *dg, cl_real *du, const cl_real *dh, const cl_real *g,
                                     const cl_real *u, long count)
{
#pragma omp parallel for simd if (parallel : count > 65536)
    for (long i = 0; i < count; i++) {
        cl_real sg = 1 / (1 + vexp(-g[i]));
        dg[i] += dh[i] * u[i] * sg * (1 + g[i] * (1 - sg));
        du[i] += dh[i] * g[i] * sg;
    }
}

/* Vocabulary chunk of the streaming log-sum-exp: small enough to stay in L1 between its
 * max pass and its exp pass. */
#define VCHUNK 2048

void CL_R(cl_logprob_rows)(cl_real *logits, const int *target, const cl_real *coef, int rows, int v,
                           cl_real *logp)
{
#pragma omp parallel for schedule(dynamic) if ((long)rows * v > 65536)
    for (int r = 0; r < rows; r++) {
        cl_real *restrict l = logits + (size_t)r * v;
        double m = -INFINITY, s = 0;
        cl_real e[VCHUNK]; /* the chunk's exponentials: computed in SIMD, summed in order */
        for (int c0 = 0; c0 < v; c0 += VCHUNK) {
            int c1 = c0 + VCHUNK < v ? c0 + VCHUNK : v;
            cl_real cm = l[c0];
#pragma omp simd reduction(max : cm)
            for (int j = c0 + 1; j < c1; j++) cm = l[j] > cm ? l[j] : cm;
            if (cm > m) {
                s *= exp(m - cm);
                m = cm;
            }
#pragma omp simd
            for (int j = c0; j < c1; j++) e[j - c0] = vexp((cl_real)((double)l[j] - m));
            double cs = 0;
            for (int j = c0; j < c1; j++) cs += e[j - c0];
            s += cs;
        }
        double lse = m + log(s);
        logp[r] = (cl_real)((double)l[target[r]] - lse);
        if (!coef) continue;
        cl_real cf = coef[r];
#pragma omp simd
        for (int j = 0; j < v; j++) l[j] = -cf * vexp((cl_real)((double)l[j] - lse));
        l[target[r]] += cf;
    }
}
