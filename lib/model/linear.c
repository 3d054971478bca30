/* linear.c — batch-invariant small-m W.x kernels (see linear.h for the contract). */
#include "model/linear.h"

#include "model/ops.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

/* The decode layout: panels of 16 outputs, element (o, k) at ((o / 16) * in + k) * 16 + o % 16,
 * the last panel padded with zeros.  Each output element is one FMA chain over k = 0 .. in-1 in
 * order (bias added after), whatever the kernel: a vector of a panel's 16 outputs takes one
 * broadcast activation per k, so no lanes are ever folded, a tile of rows x panels holds every
 * element it computes in registers, and every kernel (FMA, correctly rounded) gives the same
 * bits. */
enum { PANEL = 16 };

static inline size_t esize(cl_dtype dt) { return dt == CL_BF16 ? 2 : 4; }

size_t cl_linear_panels_bytes(int out_dim, int in, cl_dtype dt)
{
    return (size_t)(out_dim + PANEL - 1) / PANEL * PANEL * (size_t)in * esize(dt);
}

void cl_linear_pack(void *dst, cl_dtype dt, const void *src, cl_dtype src_dt, int out_dim, int in)
{
    int np = (out_dim + PANEL - 1) / PANEL;
#pragma omp parallel for if ((long)out_dim * in > 1000000)
    for (int p = 0; p < np; p++)
        for (int k = 0; k < in; k++)
            for (int j = 0; j < PANEL; j++) {
                int o = p * PANEL + j;
                size_t at = ((size_t)p * in + (size_t)k) * PANEL + (size_t)j, from = (size_t)o * in + (size_t)k;
                float v = o >= out_dim ? 0.0f
                          : src_dt == CL_BF16 ? cl_bf16_to_f32(((const uint16_t *)src)[from])
                                              : ((const float *)src)[from];
                if (dt == CL_BF16)
                    ((uint16_t *)dst)[at] = src_dt == CL_BF16 && o < out_dim ? ((const uint16_t *)src)[from]
                                                                              : cl_f32_to_bf16(v);
                else
                    ((float *)dst)[at] = v;
            }
}

void cl_linear_unpack_row(float *dst, const void *panels, cl_dtype dt, int o, int in)
{
    size_t base = (size_t)(o / PANEL) * in * PANEL + (size_t)(o % PANEL);
    for (int k = 0; k < in; k++) {
        size_t at = base + (size_t)k * PANEL;
        dst[k] = dt == CL_BF16 ? cl_bf16_to_f32(((const uint16_t *)panels)[at]) : ((const float *)panels)[at];
    }
}

static inline float wval(const void *w, cl_dtype dt, size_t i)
{
    return dt == CL_BF16 ? cl_bf16_to_f32(((const uint16_t *)w)[i]) : ((const float *)w)[i];
}

/* Portable: the same chains with fmaf (one rounding, as the vector FMAs). */
static void rows_scalar(float *out, const float *x, const void *w, cl_dtype dt, const float *b, int m, int in,
                        int o0, int o1, int ldo)
{
    for (int o = o0; o < o1; o++) {
        size_t base = (size_t)(o / PANEL) * in * PANEL + (size_t)(o % PANEL);
        for (int r = 0; r < m; r++) {
            const float *xr = x + (size_t)r * in;
            float s = 0;
            for (int k = 0; k < in; k++) s = fmaf(wval(w, dt, base + (size_t)k * PANEL), xr[k], s);
            out[(size_t)r * ldo + o] = b ? s + b[o] : s;
        }
    }
}

#ifdef HAVE_X86
/* Per instruction set: the vector type, its lanes, the vectors a panel takes (V), the tiles'
 * largest rows x panels (TR x TP: TR x TP x V accumulators, TP x V weight vectors and one
 * broadcast fit the 32 or 16 vector registers) and the few operations the tiles use, under one
 * naming scheme so that one macro writes the tiles for each. */
#define TGT_avx2 __attribute__((target("avx2,fma")))
#define TGT_avx512 __attribute__((target("avx512f,avx512dq,avx2,fma")))
#define INLINE static inline __attribute__((always_inline))
typedef __m256 vec_avx2;
typedef __m512 vec_avx512;
#define LANES_avx2 8
#define LANES_avx512 16
#define V_avx2 2
#define V_avx512 1
#define TR_avx2 6
#define TP_avx2 1
#define TR_avx512 6
#define TP_avx512 4
#define UNROLL _Pragma("GCC unroll 32")

TGT_avx2 INLINE __m256 zero_avx2(void) { return _mm256_setzero_ps(); }
TGT_avx2 INLINE __m256 set1_avx2(float a) { return _mm256_set1_ps(a); }
TGT_avx2 INLINE void store_avx2(float *p, __m256 v) { _mm256_storeu_ps(p, v); }
TGT_avx2 INLINE __m256 loadx_avx2(const float *p) { return _mm256_loadu_ps(p); }
TGT_avx2 INLINE __m256 add_avx2(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
TGT_avx2 INLINE __m256 fma_avx2(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
TGT_avx2 INLINE __m256 F32_avx2(const void *w, size_t i) { return _mm256_loadu_ps((const float *)w + i); }
TGT_avx2 INLINE __m256 BF16_avx2(const void *w, size_t i)
{
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* a vector's lanes summed by halves */
TGT_avx2 INLINE float hsum_avx2(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* dot16's fold of 16 lanes held in two vectors: lane j + 8 onto lane j, then by halves */
TGT_avx2 INLINE float fold16_avx2(const __m256 *a) { return hsum_avx2(_mm256_add_ps(a[0], a[1])); }

TGT_avx512 INLINE __m512 zero_avx512(void) { return _mm512_setzero_ps(); }
TGT_avx512 INLINE __m512 set1_avx512(float a) { return _mm512_set1_ps(a); }
TGT_avx512 INLINE void store_avx512(float *p, __m512 v) { _mm512_storeu_ps(p, v); }
TGT_avx512 INLINE __m512 loadx_avx512(const float *p) { return _mm512_loadu_ps(p); }
TGT_avx512 INLINE __m512 add_avx512(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
TGT_avx512 INLINE __m512 fma_avx512(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
TGT_avx512 INLINE __m512 F32_avx512(const void *w, size_t i) { return _mm512_loadu_ps((const float *)w + i); }
TGT_avx512 INLINE __m512 BF16_avx512(const void *w, size_t i)
{
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
TGT_avx512 INLINE float fold16_avx512(const __m512 *a)
{
    return hsum_avx2(_mm256_add_ps(_mm512_castps512_ps256(a[0]), _mm512_extractf32x8_ps(a[0], 1)));
}

/* R rows x P panels (constants once inlined): per k, the P panels' weight vectors are loaded
 * once and serve all R rows, each row's activation broadcast once for all P panels.  Rows of x
 * are `in` apart, of out ldo; the tile's panels are p, p + ps, ... (ps 1: adjacent; batch 1:
 * from four quarters of the range, so that the weights stream as four long sequences, what the
 * prefetchers follow).  Outputs past ldo (the last panel's padding) are not stored. */
#define TILE(ISA, SUF)                                                                                         \
    TGT_##ISA INLINE void tile_##SUF##_##ISA(int R, int P, float *out, int ldo, const float *x, const void *w, \
                                             const float *b, int in, int p, int ps)                            \
    {                                                                                                          \
        enum { L = LANES_##ISA, V = V_##ISA };                                                                 \
        vec_##ISA acc[TR_##ISA * 4 * V_##ISA];                                                                 \
        UNROLL for (int i = 0; i < R * P * V; i++) acc[i] = zero_##ISA();                                     \
        for (int k = 0; k < in; k++) {                                                                         \
            vec_##ISA wv[4 * V_##ISA];                                                                         \
            UNROLL for (int c = 0; c < P * V; c++)                                                             \
                wv[c] = SUF##_##ISA(w, ((size_t)(p + c / V * ps) * in + (size_t)k) * PANEL + (size_t)(c % V * L)); \
            UNROLL for (int r = 0; r < R; r++) {                                                               \
                vec_##ISA xv = set1_##ISA(x[(size_t)r * in + (size_t)k]);                                     \
                UNROLL for (int c = 0; c < P * V; c++) acc[r * P * V + c] = fma_##ISA(wv[c], xv, acc[r * P * V + c]); \
            }                                                                                                  \
        }                                                                                                      \
        UNROLL for (int c = 0; c < P * V; c++) {                                                               \
            int o = (p + c / V * ps) * PANEL + c % V * L;                                                      \
            UNROLL for (int r = 0; r < R; r++) {                                                               \
                vec_##ISA s = acc[r * P * V + c];                                                              \
                float *d = out + (size_t)r * ldo + o;                                                          \
                if (o + L <= ldo) {                                                                            \
                    store_##ISA(d, b ? add_##ISA(s, loadx_##ISA(b + o)) : s);                                  \
                } else {                                                                                       \
                    float t[L];                                                                                \
                    store_##ISA(t, s);                                                                         \
                    for (int j = 0; o + j < ldo; j++) d[j] = b ? t[j] + b[o + j] : t[j];                       \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }                                                                                                          \
    /* every tile in use as its own function: R rows x P panels, constant */                                   \
    TGT_##ISA static void tiles_##SUF##_##ISA(int R, int P, float *out, int ldo, const float *x, const void *w, \
                                              const float *b, int in, int p, int ps)                           \
    {                                                                                                          \
        switch (R * 8 + P) {                                                                                   \
            TILE_CASES_##ISA(SUF##_##ISA)                                                                      \
        }                                                                                                      \
    }                                                                                                          \
    /* One row (batch-1 decode, a read of every weight): four panels at once from the four          \
     * quarters of the range.  More rows: blocks of 32 (their activations stay in cache while the    \
     * block's weights are read once per block), each in tiles of TR rows x TP panels. */             \
    TGT_##ISA static void rows_##SUF##_##ISA(float *out, const float *x, const void *w, const float *b, int m, \
                                             int in, int o0, int o1, int ldo)                                  \
    {                                                                                                          \
        int p0 = o0 / PANEL, p1 = (o1 + PANEL - 1) / PANEL;                                                    \
        if (m == 1) {                                                                                          \
            int q = (p1 - p0) / 4;                                                                             \
            for (int p = p0; p < p0 + q; p++) tiles_##SUF##_##ISA(1, 4, out, ldo, x, w, b, in, p, q);          \
            for (int p = p0 + 4 * q; p < p1; p++) tiles_##SUF##_##ISA(1, 1, out, ldo, x, w, b, in, p, 1);      \
            return;                                                                                            \
        }                                                                                                      \
        for (int rb = 0; rb < m; rb += 32) {                                                                   \
            int re = rb + 32 < m ? rb + 32 : m;                                                                \
            for (int p = p0; p < p1; p += TP_##ISA) {                                                          \
                int P = p1 - p < TP_##ISA ? p1 - p : TP_##ISA;                                                 \
                for (int r = rb; r < re; r += TR_##ISA) {                                                      \
                    int R = re - r < TR_##ISA ? re - r : TR_##ISA;                                             \
                    tiles_##SUF##_##ISA(R, P, out + (size_t)r * ldo, ldo, x + (size_t)r * in, w, b, in, p, 1); \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }
#define TILE_CASE(F, R, P)                                                                                     \
    case (R) * 8 + (P):                                                                                        \
        tile_##F(R, P, out, ldo, x, w, b, in, p, ps);                                                          \
        break;
#define TILE_ROWS(F, P) TILE_CASE(F, 1, P) TILE_CASE(F, 2, P) TILE_CASE(F, 3, P) TILE_CASE(F, 4, P) \
    TILE_CASE(F, 5, P) TILE_CASE(F, 6, P)
/* AVX-512: 1-6 rows x 1-4 panels; AVX2: 1-6 rows x one panel, and batch 1's four */
#define TILE_CASES_avx512(F) TILE_ROWS(F, 1) TILE_ROWS(F, 2) TILE_ROWS(F, 3) TILE_ROWS(F, 4)
#define TILE_CASES_avx2(F) TILE_ROWS(F, 1) TILE_CASE(F, 1, 4)

/* out [d] = sum over s in order of p[s] * v[s * ldv + :d]: attention's weighted values, each
 * element one FMA chain over the positions (the lanes past whole vectors: the same chain, scalar) */
#define MIX(ISA)                                                                                               \
    TGT_##ISA static void mix_##ISA(float *out, const float *p, const float *v, size_t ldv, int n, int d, int add) \
    {                                                                                                          \
        const int L = LANES_##ISA;                                                                             \
        int j = 0;                                                                                             \
        for (; j + 4 * L <= d; j += 4 * L) mix_block_##ISA(4, out + j, p, v + j, ldv, n, add);                     \
        switch ((d - j) / L) { /* what is left of whole vectors in one pass: independent chains */             \
        case 3: mix_block_##ISA(3, out + j, p, v + j, ldv, n, add); break;                                          \
        case 2: mix_block_##ISA(2, out + j, p, v + j, ldv, n, add); break;                                          \
        case 1: mix_block_##ISA(1, out + j, p, v + j, ldv, n, add); break;                                          \
        }                                                                                                      \
        j += (d - j) / L * L;                                                                                  \
        for (; j < d; j++) {                                                                                   \
            float o = add ? out[j] : 0;                                                                        \
            for (int s = 0; s < n; s++) o = fmaf(p[s], v[(size_t)s * ldv + (size_t)j], o);                    \
            out[j] = o;                                                                                        \
        }                                                                                                      \
    }
#define KERNEL(ISA)                                                                                            \
    TILE(ISA, F32)                                                                                             \
    TILE(ISA, BF16)                                                                                            \
    static void rows_##ISA(float *out, const float *x, const void *w, cl_dtype dt, const float *b, int m,      \
                           int in, int o0, int o1, int ldo)                                                    \
    {                                                                                                          \
        if (dt == CL_BF16)                                                                                     \
            rows_BF16_##ISA(out, x, w, b, m, in, o0, o1, ldo);                                                 \
        else                                                                                                   \
            rows_F32_##ISA(out, x, w, b, m, in, o0, o1, ldo);                                                  \
    }                                                                                                          \
    /* C rows of w (ldw apart) dotted with x in the order of dot16 (V vectors a block) */                 \
    TGT_##ISA INLINE void dots_##ISA(int C, float *out, const float *x, const float *w, size_t ldw, int in)     \
    {                                                                                                          \
        enum { L = LANES_##ISA, V = V_##ISA };                                                                 \
        int kv = in - in % PANEL;                                                                              \
        vec_##ISA acc[4 * V_##ISA];                                                                            \
        UNROLL for (int c = 0; c < C * V; c++) acc[c] = zero_##ISA();                                         \
        for (int k = 0; k < kv; k += PANEL)                                                                    \
            UNROLL for (int c = 0; c < C * V; c++) {                                                           \
                size_t at = (size_t)(k + c % V * L);                                                           \
                acc[c] = fma_##ISA(loadx_##ISA(w + (size_t)(c / V) * ldw + at), loadx_##ISA(x + at), acc[c]);  \
            }                                                                                                  \
        UNROLL for (int c = 0; c < C; c++) {                                                                   \
            float s = fold16_##ISA(acc + c * V);                                                               \
            for (int k = kv; k < in; k++) s = fmaf(w[(size_t)c * ldw + (size_t)k], x[k], s);                  \
            out[c] = s;                                                                                        \
        }                                                                                                      \
    }                                                                                                          \
    /* one row, output o's weights at w + o * ldw; four outputs at a time for four FMA chains */             \
    TGT_##ISA static void strided_##ISA(float *out, const float *x, const float *w, size_t ldw, int in, int n)  \
    {                                                                                                          \
        int o = 0;                                                                                             \
        for (; o + 4 <= n; o += 4) dots_##ISA(4, out + o, x, w + (size_t)o * ldw, ldw, in);                   \
        for (; o < n; o++) dots_##ISA(1, out + o, x, w + (size_t)o * ldw, ldw, in);                           \
    }                                                                                                          \
    TGT_##ISA INLINE void mix_block_##ISA(int B, float *out, const float *p, const float *v, size_t ldv, int n, \
                                          int add)                                                             \
    {                                                                                                          \
        vec_##ISA acc[4];                                                                                      \
        UNROLL for (int i = 0; i < B; i++) acc[i] = add ? loadx_##ISA(out + i * LANES_##ISA) : zero_##ISA();  \
        for (int s = 0; s < n; s++) {                                                                          \
            vec_##ISA ps = set1_##ISA(p[s]);                                                                   \
            UNROLL for (int i = 0; i < B; i++)                                                                 \
                acc[i] = fma_##ISA(ps, loadx_##ISA(v + (size_t)s * ldv + (size_t)(i * LANES_##ISA)), acc[i]);  \
        }                                                                                                      \
        UNROLL for (int i = 0; i < B; i++) store_##ISA(out + i * LANES_##ISA, acc[i]);                        \
    }                                                                                                          \
    MIX(ISA)
KERNEL(avx2)
KERNEL(avx512)
#undef KERNEL
#undef MIX
#undef TILE
#undef TILE_CASE
#undef TILE_ROWS
#endif

/* first index of the largest value; lanes keep their running maximum and where it was first
 * reached, then the lanes and the tail go in index order (NaNs never win) */
static int argmax_scalar(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++) best = v[i] > v[best] ? i : best;
    return best;
}

#ifdef HAVE_X86
TGT_avx2 static int argmax_avx2(const float *v, int n)
{
    __m256 mx = _mm256_set1_ps(-INFINITY);
    __m256i at = _mm256_setzero_si256(), idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), eight = _mm256_set1_epi32(8);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(v + i), gt = _mm256_cmp_ps(x, mx, _CMP_GT_OQ);
        mx = _mm256_blendv_ps(mx, x, gt);
        at = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(at), _mm256_castsi256_ps(idx), gt));
        idx = _mm256_add_epi32(idx, eight);
    }
    float m[8];
    int a[8], best = 0;
    _mm256_storeu_ps(m, mx);
    _mm256_storeu_si256((__m256i *)a, at);
    float bv = n > 0 ? v[0] : 0;
    for (int j = 0; j < 8 && i > 0; j++)
        if (m[j] > bv || (m[j] == bv && a[j] < best)) bv = m[j], best = a[j];
    for (; i < n; i++)
        if (v[i] > bv) bv = v[i], best = i;
    return best;
}
#endif

/* The sampler's weights and sums (cl_linear_weights, cl_linear_sum16): plain C that each ISA's
 * copy vectorises, every element the same IEEE operations (no FMA: ISO C does not contract), so
 * every copy gives the same bits. */
static inline __attribute__((always_inline)) void weights_body(float *p, const float *x, int n, float top,
                                                               float inv)
{
#pragma omp simd
    for (int i = 0; i < n; i++) p[i] = cl_vexpf((x[i] - top) * inv);
}

static inline __attribute__((always_inline)) float sum16_body(const float *p, int n)
{
    float a[16] = {0};
    int kv = n - n % 16;
    for (int k = 0; k < kv; k += 16)
#pragma omp simd
        for (int j = 0; j < 16; j++) a[j] += p[k + j];
    for (int j = 0; j < 8; j++) a[j] += a[j + 8];
    for (int j = 0; j < 4; j++) a[j] += a[j + 4];
    float s = (a[0] + a[2]) + (a[1] + a[3]);
    for (int k = kv; k < n; k++) s += p[k];
    return s;
}

static void weights_scalar(float *p, const float *x, int n, float top, float inv) { weights_body(p, x, n, top, inv); }
static float sum16_scalar(const float *p, int n) { return sum16_body(p, n); }
#ifdef HAVE_X86
TGT_avx2 static void weights_avx2(float *p, const float *x, int n, float top, float inv)
{
    weights_body(p, x, n, top, inv);
}
TGT_avx2 static float sum16_avx2(const float *p, int n) { return sum16_body(p, n); }
TGT_avx512 static void weights_avx512(float *p, const float *x, int n, float top, float inv)
{
    weights_body(p, x, n, top, inv);
}
TGT_avx512 static float sum16_avx512(const float *p, int n) { return sum16_body(p, n); }
#endif

typedef struct kernels {
    const char *name;
    void (*rows)(float *, const float *, const void *, cl_dtype, const float *, int, int, int, int, int);
    void (*strided)(float *, const float *, const float *, size_t, int, int);
    void (*mix)(float *, const float *, const float *, size_t, int, int, int);
    int (*argmax)(const float *, int);
    void (*weights)(float *, const float *, int, float, float);
    float (*sum16)(const float *, int);
} kernels;

/* The order of every kernel's attention dot products: 16 lanes, lane j taking k = j, j + 16, ...
 * in one FMA chain; lane j + 8 onto lane j, then by halves (j + 4 onto j, j + 2, j + 1); the k
 * tail after, in order.  The vector kernels hold the lanes in one or two vectors. */
static float dot16(const float *x, const float *w, int in)
{
    float p[16] = {0};
    int kv = in - in % PANEL;
    for (int k = 0; k < kv; k += PANEL)
        for (int j = 0; j < PANEL; j++) p[j] = fmaf(w[k + j], x[k + j], p[j]);
    for (int j = 0; j < 8; j++) p[j] += p[j + 8];
    for (int j = 0; j < 4; j++) p[j] += p[j + 4];
    float s = (p[0] + p[2]) + (p[1] + p[3]);
    for (int k = kv; k < in; k++) s = fmaf(w[k], x[k], s);
    return s;
}

static void strided_scalar(float *out, const float *x, const float *w, size_t ldw, int in, int n)
{
    for (int o = 0; o < n; o++) out[o] = dot16(x, w + (size_t)o * ldw, in);
}

static void mix_scalar(float *out, const float *p, const float *v, size_t ldv, int n, int d, int add)
{
    for (int j = 0; j < d; j++) {
        float o = add ? out[j] : 0;
        for (int s = 0; s < n; s++) o = fmaf(p[s], v[(size_t)s * ldv + (size_t)j], o);
        out[j] = o;
    }
}

static const kernels *choose(void)
{
    static const kernels scalar = {"scalar",      rows_scalar,    strided_scalar, mix_scalar,
                                   argmax_scalar, weights_scalar, sum16_scalar};
#ifdef HAVE_X86
    static const kernels k512 = {"avx512", rows_avx512, strided_avx512, mix_avx512,
                                 argmax_avx2, weights_avx512, sum16_avx512},
                         k2 = {"avx2", rows_avx2, strided_avx2, mix_avx2, argmax_avx2, weights_avx2, sum16_avx2};
    const char *force = getenv("CL_SIMD");
    force = force && *force ? force : "auto";
    int auto_ = strcmp(force, "auto") == 0, fma = __builtin_cpu_supports("fma");
    if ((auto_ || strcmp(force, "avx512") == 0) && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512dq") && fma)
        return &k512;
    if ((auto_ || strcmp(force, "avx512") == 0 || strcmp(force, "avx2") == 0) && __builtin_cpu_supports("avx2") &&
        fma)
        return &k2;
#endif
    return &scalar;
}

/* Chosen at the first call and again at each cl_linear_isa(), not per call: attention calls
 * the strided and mix kernels per row and head, thousands of times a step, and a getenv and a
 * string compare each showed in perf. */
static const kernels *chosen;

static const kernels *pick(void)
{
    const kernels *k = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (!k) __atomic_store_n(&chosen, k = choose(), __ATOMIC_RELEASE);
    return k;
}

const char *cl_linear_isa(void)
{
    const kernels *k = choose();
    __atomic_store_n(&chosen, k, __ATOMIC_RELEASE);
    return k->name;
}

void cl_linear_rows(float *out, const float *x, const void *w, cl_dtype dt, const float *b, int m, int in,
                    int out_dim)
{
    cl_linear_part p = {out, w, dt, b, out_dim};
    cl_linear_parts(&p, 1, x, m, in);
}

void cl_linear_parts(const cl_linear_part *p, int cnt, const float *x, int m, int in)
{
    const kernels *k = pick();
    /* Blocks of 64 outputs (one tile of 4 panels): big enough to amortise the x rows, small
     * enough to balance; handed out as threads come free, since two threads streaming weights
     * from memory do not keep pace (static halves left one waiting at every product's end: 4-10%
     * of a batched step, A/B in BENCHMARKS.md); one row: one block per thread, whole panels.  The
     * parts' blocks go in one loop, so q, k and v (or gate and up) cost one wait for the slowest
     * thread, not three.  Which thread computes a block never changes its bits. */
    int threads = omp_get_max_threads(), first[CL_LINEAR_MAX_PARTS + 1] = {0}, bs[CL_LINEAR_MAX_PARTS];
    long work = 0;
    if (cnt > CL_LINEAR_MAX_PARTS) {
        cl_linear_parts(p + CL_LINEAR_MAX_PARTS, cnt - CL_LINEAR_MAX_PARTS, x, m, in);
        cnt = CL_LINEAR_MAX_PARTS;
    }
    for (int i = 0; i < cnt; i++) {
        int per = (p[i].out_dim + threads - 1) / threads;
        bs[i] = m == 1 ? (per + PANEL - 1) / PANEL * PANEL : 4 * PANEL;
        bs[i] = bs[i] > 0 ? bs[i] : PANEL;
        first[i + 1] = first[i] + (p[i].out_dim + bs[i] - 1) / bs[i];
        work += (long)m * in * p[i].out_dim;
    }
#pragma omp parallel for schedule(dynamic) if (work > 200000)
    for (int bi = 0; bi < first[cnt]; bi++) {
        int i = 0;
        while (bi >= first[i + 1]) i++;
        int o0 = (bi - first[i]) * bs[i], o1 = o0 + bs[i] < p[i].out_dim ? o0 + bs[i] : p[i].out_dim;
        k->rows(p[i].out, x, p[i].w, p[i].dt, p[i].b, m, in, o0, o1, p[i].out_dim);
    }
}

void cl_linear_strided(float *out, const float *x, const float *w, size_t ldw, int in, int n)
{
    pick()->strided(out, x, w, ldw, in, n);
}

void cl_linear_mix(float *out, const float *p, const float *v, size_t ldv, int n, int d, int add)
{
    pick()->mix(out, p, v, ldv, n, d, add);
}

int cl_argmax(const float *v, int n) { return pick()->argmax(v, n); }

void cl_linear_weights(float *p, const float *x, int n, float top, float inv) { pick()->weights(p, x, n, top, inv); }

float cl_linear_sum16(const float *p, int n) { return pick()->sum16(p, n); }
