/* linear.c — batch-invariant small-m W.x kernels (see linear.h for the contract). */
#include "model/linear.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

/* The fixed reduction of one output element, whatever the kernel: four accumulators of LANES
 * lanes take the k blocks of LANES in turn (block b into accumulator b mod 4) while four whole
 * blocks remain, then accumulator 0 takes the remaining whole blocks; the accumulators fold as
 * (a0 + a2) + (a1 + a3), the lanes as below, then the k tail is added in order.  Four
 * accumulators let one row's weights stream as one sequence (what the prefetchers follow best)
 * with four independent FMA chains. */
static inline float tree8(const float p[8])
{
    float t0 = p[0] + p[4], t1 = p[1] + p[5], t2 = p[2] + p[6], t3 = p[3] + p[7];
    return (t0 + t2) + (t1 + t3);
}

static inline float wval(const void *w, cl_dtype dt, size_t i)
{
    return dt == CL_BF16 ? cl_bf16_to_f32(((const uint16_t *)w)[i]) : ((const float *)w)[i];
}

/* One output element, portable (eight lanes). */
static float dot_scalar(const float *x, const void *w, cl_dtype dt, size_t wo, int in)
{
    float p[4][8] = {{0}};
    int k32 = in - in % 32, k8 = in - in % 8, k = 0;
    for (; k < k32; k += 32)
        for (int a = 0; a < 4; a++)
            for (int j = 0; j < 8; j++) p[a][j] += x[k + 8 * a + j] * wval(w, dt, wo + (size_t)(k + 8 * a + j));
    for (; k < k8; k += 8)
        for (int j = 0; j < 8; j++) p[0][j] += x[k + j] * wval(w, dt, wo + (size_t)(k + j));
    float v[8];
    for (int j = 0; j < 8; j++) v[j] = (p[0][j] + p[2][j]) + (p[1][j] + p[3][j]);
    float s = tree8(v);
    for (; k < in; k++) s += x[k] * wval(w, dt, wo + (size_t)k);
    return s;
}

static void rows_scalar(float *out, const float *x, const void *w, cl_dtype dt, const float *b, int m, int in,
                        int o0, int o1, int ldo)
{
    for (int o = o0; o < o1; o++)
        for (int r = 0; r < m; r++) {
            float s = dot_scalar(x + (size_t)r * in, w, dt, (size_t)o * in, in);
            out[(size_t)r * ldo + o] = b ? s + b[o] : s;
        }
}

#ifdef HAVE_X86
/* Per instruction set: the vector type, its lane count and the few operations the tiles use,
 * under one naming scheme so that one macro writes the tiles for each. */
#define TGT_avx2 __attribute__((target("avx2,fma")))
#define TGT_avx512 __attribute__((target("avx512f,avx512dq,avx2,fma")))
typedef __m256 vec_avx2;
typedef __m512 vec_avx512;
#define LANES_avx2 8
#define LANES_avx512 16
#define WIDE_avx2 0   /* 2 x 2 tiles need 16 accumulators: AVX-512's 32 registers hold them */
#define WIDE_avx512 1
/* the pass tiles (rows x outputs): accumulators, weight vectors and one activation vector fit
 * the 16 (AVX2) or 32 (AVX-512) vector registers */
#define TR_avx2 3
#define TO_avx2 3
#define TR_avx512 4
#define TO_avx512 6
#define UNROLL _Pragma("GCC unroll 8")

TGT_avx2 static inline __m256 zero_avx2(void) { return _mm256_setzero_ps(); }
TGT_avx2 static inline __m256 loadx_avx2(const float *p) { return _mm256_loadu_ps(p); }
TGT_avx2 static inline __m256 fma_avx2(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
TGT_avx2 static inline __m256 add_avx2(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
TGT_avx2 static inline __m256 F32_avx2(const void *w, size_t i) { return _mm256_loadu_ps((const float *)w + i); }
TGT_avx2 static inline __m256 BF16_avx2(const void *w, size_t i)
{
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
/* the tree8 order: t_j = p_j + p_(j+4), then (t0 + t2) + (t1 + t3) */
TGT_avx2 static inline float hsum_avx2(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

TGT_avx512 static inline __m512 zero_avx512(void) { return _mm512_setzero_ps(); }
TGT_avx512 static inline __m512 loadx_avx512(const float *p) { return _mm512_loadu_ps(p); }
TGT_avx512 static inline __m512 fma_avx512(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
TGT_avx512 static inline __m512 add_avx512(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
TGT_avx512 static inline __m512 F32_avx512(const void *w, size_t i) { return _mm512_loadu_ps((const float *)w + i); }
TGT_avx512 static inline __m512 BF16_avx512(const void *w, size_t i)
{
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
/* sixteen lanes: p_j + p_(j+8), then the eight-lane tree */
TGT_avx512 static inline float hsum_avx512(__m512 v)
{
    return hsum_avx2(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}

/* The end of one output element: the tree, the k tail in order, the bias. */
static inline float finish(float s, const float *x, const void *w, cl_dtype dt, size_t wo, int k, int in,
                           const float *b, int o)
{
    for (; k < in; k++) s += x[k] * wval(w, dt, wo + (size_t)k);
    return b ? s + b[o] : s;
}

/* Tiles of one output x 2 rows (8 accumulators: each weight vector loaded once for both
 * rows) and x 1 row (4), written out by hand per instruction set and weight type so the
 * accumulators never leave the registers (GCC -O2 spills arrays of vectors). */
#define STEP(ISA, SUF, A, X, OFF) A = fma_##ISA(SUF##_##ISA(w, r0 + (size_t)(k + (OFF))), loadx_##ISA((X) + k + (OFF)), A)
/* one k block of a 2 x 2 tile: two weight vectors, two activation vectors, four products */
#define QUAD(ISA, SUF, P, Q, U, V, OFF)                                                                        \
    do {                                                                                                       \
        vec_##ISA wa = SUF##_##ISA(w, r0 + (size_t)(k + (OFF))), wb = SUF##_##ISA(w, r1 + (size_t)(k + (OFF))); \
        vec_##ISA xa = loadx_##ISA(x + k + (OFF)), xb = loadx_##ISA(y + k + (OFF));                            \
        P = fma_##ISA(wa, xa, P);                                                                              \
        Q = fma_##ISA(wa, xb, Q);                                                                              \
        U = fma_##ISA(wb, xa, U);                                                                              \
        V = fma_##ISA(wb, xb, V);                                                                              \
    } while (0)
#define TILES(ISA, SUF)                                                                                        \
    TGT_##ISA static void t1x2_##SUF##_##ISA(float *out, int ldo, const float *x, const void *w,               \
                                             const float *b, int in, int o)                                    \
    {                                                                                                          \
        const int L = LANES_##ISA;                                                                             \
        vec_##ISA a0 = zero_##ISA(), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;            \
        size_t r0 = (size_t)o * in;                                                                            \
        const float *y = x + in;                                                                               \
        int k4 = in - in % (4 * L), kv = in - in % L, k = 0;                                                   \
        for (; k < k4; k += 4 * L) {                                                                           \
            vec_##ISA w0 = SUF##_##ISA(w, r0 + (size_t)k), w1 = SUF##_##ISA(w, r0 + (size_t)(k + L));          \
            vec_##ISA w2 = SUF##_##ISA(w, r0 + (size_t)(k + 2 * L)), w3 = SUF##_##ISA(w, r0 + (size_t)(k + 3 * L)); \
            a0 = fma_##ISA(w0, loadx_##ISA(x + k), a0);                                                        \
            a1 = fma_##ISA(w1, loadx_##ISA(x + k + L), a1);                                                    \
            a2 = fma_##ISA(w2, loadx_##ISA(x + k + 2 * L), a2);                                                \
            a3 = fma_##ISA(w3, loadx_##ISA(x + k + 3 * L), a3);                                                \
            c0 = fma_##ISA(w0, loadx_##ISA(y + k), c0);                                                        \
            c1 = fma_##ISA(w1, loadx_##ISA(y + k + L), c1);                                                    \
            c2 = fma_##ISA(w2, loadx_##ISA(y + k + 2 * L), c2);                                                \
            c3 = fma_##ISA(w3, loadx_##ISA(y + k + 3 * L), c3);                                                \
        }                                                                                                      \
        for (; k < kv; k += L) {                                                                               \
            vec_##ISA w0 = SUF##_##ISA(w, r0 + (size_t)k);                                                     \
            a0 = fma_##ISA(w0, loadx_##ISA(x + k), a0);                                                        \
            c0 = fma_##ISA(w0, loadx_##ISA(y + k), c0);                                                        \
        }                                                                                                      \
        cl_dtype dt = CL_##SUF;                                                                                \
        a0 = add_##ISA(add_##ISA(a0, a2), add_##ISA(a1, a3));                                                  \
        c0 = add_##ISA(add_##ISA(c0, c2), add_##ISA(c1, c3));                                                  \
        out[o] = finish(hsum_##ISA(a0), x, w, dt, r0, k, in, b, o);                                            \
        out[ldo + o] = finish(hsum_##ISA(c0), y, w, dt, r0, k, in, b, o);                                      \
    }                                                                                                          \
    TGT_##ISA static void t1x1_##SUF##_##ISA(float *out, const float *x, const void *w, const float *b, int in, \
                                             int o)                                                            \
    {                                                                                                          \
        const int L = LANES_##ISA;                                                                             \
        vec_##ISA a0 = zero_##ISA(), a1 = a0, a2 = a0, a3 = a0;                                               \
        size_t r0 = (size_t)o * in;                                                                            \
        int k4 = in - in % (4 * L), kv = in - in % L, k = 0;                                                   \
        for (; k < k4; k += 4 * L) {                                                                           \
            STEP(ISA, SUF, a0, x, 0);                                                                          \
            STEP(ISA, SUF, a1, x, L);                                                                          \
            STEP(ISA, SUF, a2, x, 2 * L);                                                                      \
            STEP(ISA, SUF, a3, x, 3 * L);                                                                      \
        }                                                                                                      \
        for (; k < kv; k += L) STEP(ISA, SUF, a0, x, 0);                                                       \
        a0 = add_##ISA(add_##ISA(a0, a2), add_##ISA(a1, a3));                                                  \
        out[o] = finish(hsum_##ISA(a0), x, w, CL_##SUF, r0, k, in, b, o);                                      \
    }                                                                                                          \
    /* 2 outputs x 2 rows (16 accumulators: only where there are 32 vector registers) */                    \
    TGT_##ISA static void t2x2_##SUF##_##ISA(float *out, int ldo, const float *x, const void *w,               \
                                             const float *b, int in, int o)                                    \
    {                                                                                                          \
        const int L = LANES_##ISA;                                                                             \
        vec_##ISA p0 = zero_##ISA(), p1 = p0, p2 = p0, p3 = p0, q0 = p0, q1 = p0, q2 = p0, q3 = p0;            \
        vec_##ISA u0 = p0, u1 = p0, u2 = p0, u3 = p0, v0 = p0, v1 = p0, v2 = p0, v3 = p0;                      \
        size_t r0 = (size_t)o * in, r1 = r0 + in;                                                              \
        const float *y = x + in;                                                                               \
        int k4 = in - in % (4 * L), kv = in - in % L, k = 0;                                                   \
        /* p: (o, x)  q: (o, y)  u: (o+1, x)  v: (o+1, y); the digit is the accumulator */                  \
        for (; k < k4; k += 4 * L) {                                                                           \
            QUAD(ISA, SUF, p0, q0, u0, v0, 0);                                                                 \
            QUAD(ISA, SUF, p1, q1, u1, v1, L);                                                                 \
            QUAD(ISA, SUF, p2, q2, u2, v2, 2 * L);                                                             \
            QUAD(ISA, SUF, p3, q3, u3, v3, 3 * L);                                                             \
        }                                                                                                      \
        for (; k < kv; k += L) QUAD(ISA, SUF, p0, q0, u0, v0, 0);                                              \
        cl_dtype dt = CL_##SUF;                                                                                \
        p0 = add_##ISA(add_##ISA(p0, p2), add_##ISA(p1, p3));                                                  \
        q0 = add_##ISA(add_##ISA(q0, q2), add_##ISA(q1, q3));                                                  \
        u0 = add_##ISA(add_##ISA(u0, u2), add_##ISA(u1, u3));                                                  \
        v0 = add_##ISA(add_##ISA(v0, v2), add_##ISA(v1, v3));                                                  \
        out[o] = finish(hsum_##ISA(p0), x, w, dt, r0, k, in, b, o);                                            \
        out[ldo + o] = finish(hsum_##ISA(q0), y, w, dt, r0, k, in, b, o);                                      \
        out[o + 1] = finish(hsum_##ISA(u0), x, w, dt, r1, k, in, b, o + 1);                                    \
        out[ldo + o + 1] = finish(hsum_##ISA(v0), y, w, dt, r1, k, in, b, o + 1);                              \
    }                                                                                                          \
    /* TR rows x TO outputs in four passes, pass j computing every element's accumulator j alone   \
     * (blocks j, j + 4, ... and, for j = 0, the whole blocks past k4): the same sums in the same   \
     * order as the tiles above, but with one accumulator per element live, so a tile of TR x TO   \
     * products shares each weight vector among TR rows and each activation vector among TO      \
     * outputs (the batched products are compute-bound; this is their kernel). */                 \
    TGT_##ISA static void tp_##SUF##_##ISA(float *out, int ldo, const float *x, const void *w, const float *b, \
                                           int in, int o, int pf)                                      \
    {                                                                                                          \
        const int L = LANES_##ISA;                                                                             \
        int k4 = in - in % (4 * L), kv = in - in % L;                                                          \
        size_t esz = CL_##SUF == CL_BF16 ? 2 : 4;                                                              \
        vec_##ISA part[4][TR_##ISA][TO_##ISA];                                                                 \
        for (int j = 0; j < 4; j++) {                                                                          \
            vec_##ISA acc[TR_##ISA][TO_##ISA];                                                                 \
            UNROLL for (int r = 0; r < TR_##ISA; r++) UNROLL for (int c = 0; c < TO_##ISA; c++) acc[r][c] = zero_##ISA(); \
            for (int k = j * L, e = k4, step = 4 * L;;) {                                                      \
                for (; k < e; k += step) {                                                                     \
                    vec_##ISA wv[TO_##ISA];                                                                    \
                    UNROLL for (int c = 0; c < TO_##ISA; c++) wv[c] = SUF##_##ISA(w, (size_t)(o + c) * in + (size_t)k); \
                    if (pf)                                                                                    \
                        UNROLL for (int c = 0; c < TO_##ISA; c++)                                              \
                            __builtin_prefetch((const char *)w + ((size_t)(o + TO_##ISA + c) * in + (size_t)k) * esz); \
                    UNROLL for (int r = 0; r < TR_##ISA; r++) {                                                \
                        vec_##ISA xv = loadx_##ISA(x + (size_t)r * in + k);                                    \
                        UNROLL for (int c = 0; c < TO_##ISA; c++) acc[r][c] = fma_##ISA(wv[c], xv, acc[r][c]); \
                    }                                                                                          \
                }                                                                                              \
                if (j || e == kv) break;                                                                       \
                k = k4, e = kv, step = L;                                                                      \
            }                                                                                                  \
            UNROLL for (int r = 0; r < TR_##ISA; r++) UNROLL for (int c = 0; c < TO_##ISA; c++) part[j][r][c] = acc[r][c]; \
        }                                                                                                      \
        for (int r = 0; r < TR_##ISA; r++)                                                                     \
            for (int c = 0; c < TO_##ISA; c++) {                                                               \
                vec_##ISA s = add_##ISA(add_##ISA(part[0][r][c], part[2][r][c]), add_##ISA(part[1][r][c], part[3][r][c])); \
                out[(size_t)r * ldo + o + c] = finish(hsum_##ISA(s), x + (size_t)r * in, w, CL_##SUF,         \
                                                      (size_t)(o + c) * in, kv, in, b, o + c);                 \
            }                                                                                                  \
    }                                                                                                          \
    /* rows in blocks of 8 so their activations stay in L1 while the block's weights stream */       \
    TGT_##ISA static void rows_edge_##SUF##_##ISA(float *out, const float *x, const void *w, const float *b,   \
                                                  int r0, int m, int in, int o0, int o1, int ldo)               \
    {                                                                                                          \
        for (int rb = r0; rb < m; rb += 8) {                                                                   \
            int re = rb + 8 < m ? rb + 8 : m, o = o0;                                                          \
            if (WIDE_##ISA && re - rb >= 2)                                                                    \
                for (; o + 2 <= o1; o += 2) {                                                                  \
                    int r = rb;                                                                                \
                    for (; r + 2 <= re; r += 2)                                                                \
                        t2x2_##SUF##_##ISA(out + (size_t)r * ldo, ldo, x + (size_t)r * in, w, b, in, o);       \
                    if (r < re) {                                                                              \
                        t1x1_##SUF##_##ISA(out + (size_t)r * ldo, x + (size_t)r * in, w, b, in, o);            \
                        t1x1_##SUF##_##ISA(out + (size_t)r * ldo, x + (size_t)r * in, w, b, in, o + 1);        \
                    }                                                                                          \
                }                                                                                              \
            for (; o < o1; o++) {                                                                              \
                int r = rb;                                                                                    \
                for (; r + 2 <= re; r += 2)                                                                    \
                    t1x2_##SUF##_##ISA(out + (size_t)r * ldo, ldo, x + (size_t)r * in, w, b, in, o);           \
                if (r < re) t1x1_##SUF##_##ISA(out + (size_t)r * ldo, x + (size_t)r * in, w, b, in, o);         \
            }                                                                                                  \
        }                                                                                                      \
    }                                                                                                           \
    /* whole TR x TO tiles (the first row tile of each prefetching the next tile's weights, which  \
     * the passes' strided reads would otherwise wait for), then the edges with the tiles above */                                    \
    TGT_##ISA static void rows_##SUF##_##ISA(float *out, const float *x, const void *w, const float *b, int m, \
                                             int in, int o0, int o1, int ldo)                                  \
    {                                                                                                          \
        int ot = m >= TR_##ISA ? o0 + (o1 - o0) / TO_##ISA * TO_##ISA : o0, mt = m - m % TR_##ISA;              \
        for (int o = o0; o < ot; o += TO_##ISA)                                                                \
            for (int r = 0; r < mt; r += TR_##ISA)                                                             \
                tp_##SUF##_##ISA(out + (size_t)r * ldo, ldo, x + (size_t)r * in, w, b, in, o,                 \
                                 r == 0 && o + 2 * TO_##ISA <= ot);                                            \
        /* rows past the whole tiles for those outputs, then every row for the outputs left */         \
        if (ot > o0 && mt < m) rows_edge_##SUF##_##ISA(out, x, w, b, mt, m, in, o0, ot, ldo);                  \
        if (ot < o1) rows_edge_##SUF##_##ISA(out, x, w, b, 0, m, in, ot, o1, ldo);                             \
    }

#define KERNEL(ISA)                                                                                            \
    TILES(ISA, F32)                                                                                            \
    TILES(ISA, BF16)                                                                                           \
    static void rows_##ISA(float *out, const float *x, const void *w, cl_dtype dt, const float *b, int m,      \
                           int in, int o0, int o1, int ldo)                                                    \
    {                                                                                                          \
        if (dt == CL_BF16)                                                                                     \
            rows_BF16_##ISA(out, x, w, b, m, in, o0, o1, ldo);                                                 \
        else                                                                                                   \
            rows_F32_##ISA(out, x, w, b, m, in, o0, o1, ldo);                                                  \
    }                                                                                                          \
    /* one row, output o's weights at w + o * ldw: the 1 x 1 tile over each */                               \
    static void strided_##ISA(float *out, const float *x, const float *w, size_t ldw, int in, int n)           \
    {                                                                                                          \
        for (int o = 0; o < n; o++) t1x1_F32_##ISA(out + o, x, w + (size_t)o * ldw, NULL, in, 0);              \
    }
KERNEL(avx2)
KERNEL(avx512)
#undef KERNEL
#undef TILES
#undef STEP
#undef QUAD
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

typedef struct kernels {
    const char *name;
    void (*rows)(float *, const float *, const void *, cl_dtype, const float *, int, int, int, int, int);
    void (*strided)(float *, const float *, const float *, size_t, int, int);
    int (*argmax)(const float *, int);
} kernels;

static void strided_scalar(float *out, const float *x, const float *w, size_t ldw, int in, int n)
{
    for (int o = 0; o < n; o++) out[o] = dot_scalar(x, w + (size_t)o * ldw, CL_F32, 0, in);
}

static const kernels *pick(void)
{
    static const kernels scalar = {"scalar", rows_scalar, strided_scalar, argmax_scalar};
#ifdef HAVE_X86
    static const kernels k512 = {"avx512", rows_avx512, strided_avx512, argmax_avx2},
                         k2 = {"avx2", rows_avx2, strided_avx2, argmax_avx2};
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

/* Picked per call (a getenv and a cached CPUID bit): cheap beside the product, and tests can
 * switch CL_SIMD between calls. */
const char *cl_linear_isa(void) { return pick()->name; }

void cl_linear_rows(float *out, const float *x, const void *w, cl_dtype dt, const float *b, int m, int in,
                    int out_dim)
{
    const kernels *k = pick();
    /* Blocks of 48 outputs (whole pass tiles of 6 or 3): big enough to amortise the x rows,
     * small enough to balance. */
    int nblk = (out_dim + 47) / 48;
#pragma omp parallel for schedule(static) if ((long)m * in * out_dim > 200000)
    for (int bi = 0; bi < nblk; bi++) {
        int o0 = bi * 48, o1 = o0 + 48 < out_dim ? o0 + 48 : out_dim;
        k->rows(out, x, w, dt, b, m, in, o0, o1, out_dim);
    }
}

void cl_linear_strided(float *out, const float *x, const float *w, size_t ldw, int in, int n)
{
    pick()->strided(out, x, w, ldw, in, n);
}

int cl_argmax(const float *v, int n) { return pick()->argmax(v, n); }
