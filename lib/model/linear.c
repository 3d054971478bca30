/* linear.c — batch-invariant small-m W.x kernels (see linear.h for the contract). */
#include "model/linear.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

/* The fixed reduction of one output element, whatever the kernel: one vector accumulator of
 * LANES lanes takes the k blocks of LANES in order (one chain of FMAs), its lanes fold by halves
 * (lane j + LANES/2 onto lane j, down to one lane), then the k tail is added in order.  One
 * accumulator per element is what lets a batched tile of rows x outputs hold every element it
 * computes in registers and load each weight vector once for all its rows; batch 1 gets its
 * independent FMA chains from several outputs in flight instead. */
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
    float p[8] = {0};
    int k8 = in - in % 8, k = 0;
    for (; k < k8; k += 8)
        for (int j = 0; j < 8; j++) p[j] += x[k + j] * wval(w, dt, wo + (size_t)(k + j));
    float s = tree8(p);
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
#define INLINE static inline __attribute__((always_inline))
typedef __m256 vec_avx2;
typedef __m512 vec_avx512;
#define LANES_avx2 8
#define LANES_avx512 16
/* the tiles (rows x outputs): TR x TO accumulators, TO weight vectors and one activation
 * vector fit the 16 (AVX2) or 32 (AVX-512) vector registers; AVX-512's 16 elements a tile
 * fill exactly one fold16 (4 x 6 tiles left half of a second one idle: slower at k 288) */
#define TR_avx2 4
#define TO_avx2 3
#define TR_avx512 4
#define TO_avx512 4
#define UNROLL _Pragma("GCC unroll 24")

TGT_avx2 INLINE __m256 zero_avx2(void) { return _mm256_setzero_ps(); }
TGT_avx2 INLINE __m256 set1_avx2(float a) { return _mm256_set1_ps(a); }
TGT_avx2 INLINE void store_avx2(float *p, __m256 v) { _mm256_storeu_ps(p, v); }
TGT_avx2 INLINE __m256 loadx_avx2(const float *p) { return _mm256_loadu_ps(p); }
TGT_avx2 INLINE __m256 fma_avx2(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
TGT_avx2 INLINE __m256 F32_avx2(const void *w, size_t i) { return _mm256_loadu_ps((const float *)w + i); }
TGT_avx2 INLINE __m256 BF16_avx2(const void *w, size_t i)
{
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
/* the halving tree of one accumulator (tree8's order) */
TGT_avx2 INLINE float hsum_avx2(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
/* the accumulators v [n] folded into s [n]; AVX2 folds one at a time */
TGT_avx2 INLINE void fold_avx2(const __m256 *v, int n, float *s)
{
    UNROLL for (int i = 0; i < n; i++) s[i] = hsum_avx2(v[i]);
}

TGT_avx512 INLINE __m512 zero_avx512(void) { return _mm512_setzero_ps(); }
TGT_avx512 INLINE __m512 set1_avx512(float a) { return _mm512_set1_ps(a); }
TGT_avx512 INLINE void store_avx512(float *p, __m512 v) { _mm512_storeu_ps(p, v); }
TGT_avx512 INLINE __m512 loadx_avx512(const float *p) { return _mm512_loadu_ps(p); }
TGT_avx512 INLINE __m512 fma_avx512(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
TGT_avx512 INLINE __m512 F32_avx512(const void *w, size_t i) { return _mm512_loadu_ps((const float *)w + i); }
TGT_avx512 INLINE __m512 BF16_avx512(const void *w, size_t i)
{
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
/* sixteen lanes: lane j + 8 onto lane j, then the eight-lane tree */
TGT_avx512 INLINE float hsum_avx512(__m512 v)
{
    return hsum_avx2(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}
/* Sixteen accumulators' halving trees at once (each add serves 16 elements or lanes): halves
 * of 8 lanes, then 4, 2, 1, pairing vectors as it goes; the sums come out with element
 * 4a + b at lane 4b + a, so the inputs go in transposed.  The same additions as hsum_avx512. */
TGT_avx512 INLINE __m512 fold16_avx512(const __m512 *v, int n)
{
    __m512 a[16], h[8], q[4], z[2];
    UNROLL for (int i = 0; i < 16; i++) {
        int e = (i & 3) << 2 | i >> 2;
        a[i] = e < n ? v[e] : _mm512_setzero_ps();
    }
    UNROLL for (int i = 0; i < 8; i++) /* 128-bit lanes [x0 x1 y0 y1] + [x2 x3 y2 y3] */
        h[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xee));
    UNROLL for (int i = 0; i < 4; i++) /* [x0 x2 y0 y2] + [x1 x3 y1 y3]: one element a lane */
        q[i] = _mm512_add_ps(_mm512_shuffle_f32x4(h[2 * i], h[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(h[2 * i], h[2 * i + 1], 0xdd));
    UNROLL for (int i = 0; i < 2; i++) /* within each 128-bit lane: 4 -> 2 floats an element */
        z[i] = _mm512_add_ps(_mm512_shuffle_ps(q[2 * i], q[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(q[2 * i], q[2 * i + 1], 0xee));
    return _mm512_add_ps(_mm512_shuffle_ps(z[0], z[1], 0x88), _mm512_shuffle_ps(z[0], z[1], 0xdd));
}
TGT_avx512 INLINE void fold_avx512(const __m512 *v, int n, float *s)
{
    if (n == 1) {
        s[0] = hsum_avx512(v[0]);
        return;
    }
    for (int g = 0; g < n; g += 16) {
        float t[16];
        _mm512_storeu_ps(t, fold16_avx512(v + g, n - g < 16 ? n - g : 16));
        for (int i = 0; i < 16 && g + i < n; i++) s[g + i] = t[i];
    }
}

/* The end of one output element: the k tail in order, the bias. */
static inline float finish(float s, const float *x, const void *w, cl_dtype dt, size_t wo, int k, int in,
                           const float *b, int o)
{
    for (; k < in; k++) s += x[k] * wval(w, dt, wo + (size_t)k);
    return b ? s + b[o] : s;
}

typedef void tile_fn(float *out, int ldo, const float *x, const void *w, size_t ldw, const float *b, int in,
                     int o, int pf, int os);

/* R rows x C outputs (R x C <= TR x TO, constants once inlined): per k block, the C
 * weight vectors are loaded once and serve all R rows.  Rows of x are `in` apart, those of w
 * ldw; the tile's outputs are o, o + os, ...  pf: also prefetch the next tile's weights, into
 * L2: the L1 hint, which brings a tile's 4-12 KB into the 32 KB L1 during one row tile, made a
 * step's products 5-14% slower (A/B in BENCHMARKS.md). */
#define TILES(ISA, SUF)                                                                                        \
    TGT_##ISA INLINE void tile_##SUF##_##ISA(int R, int C, float *out, int ldo, const float *x, const void *w,  \
                                             size_t ldw, const float *b, int in, int o, int pf, int os)        \
    {                                                                                                          \
        const int L = LANES_##ISA;                                                                             \
        int kv = in - in % L;                                                                                  \
        vec_##ISA acc[TR_##ISA * TO_##ISA];                                                                    \
        UNROLL for (int i = 0; i < R * C; i++) acc[i] = zero_##ISA();                                         \
        for (int k = 0; k < kv; k += L) {                                                                      \
            vec_##ISA wv[TR_##ISA * TO_##ISA];                                                                 \
            UNROLL for (int c = 0; c < C; c++) wv[c] = SUF##_##ISA(w, (size_t)(o + c * os) * ldw + (size_t)k); \
            if (pf)                                                                                            \
                UNROLL for (int c = 0; c < C; c++) __builtin_prefetch(                                         \
                    (const char *)w + ((size_t)(o + (C + c) * os) * ldw + (size_t)k) * (CL_##SUF == CL_BF16 ? 2 : 4), \
                    0, 2);                                                                                     \
            UNROLL for (int r = 0; r < R; r++) {                                                               \
                vec_##ISA xv = loadx_##ISA(x + (size_t)r * in + k);                                            \
                UNROLL for (int c = 0; c < C; c++) acc[r * C + c] = fma_##ISA(wv[c], xv, acc[r * C + c]);     \
            }                                                                                                  \
        }                                                                                                      \
        float s[TR_##ISA * TO_##ISA];                                                                          \
        fold_##ISA(acc, R * C, s);                                                                             \
        for (int r = 0; r < R; r++)                                                                            \
            for (int c = 0; c < C; c++)                                                                        \
                out[(size_t)r * ldo + o + c * os] = finish(s[r * C + c], x + (size_t)r * in, w, CL_##SUF,      \
                                                           (size_t)(o + c * os) * ldw, kv, in, b, o + c * os); \
    }                                                                                                          \
    /* the tiles in use: TR rows or fewer (the last of a block) x TO outputs; one row x 4    \
     * outputs (s4: batch 1); one output (c1: the outputs past the whole tiles, attention) */ \
    TILE(ISA, SUF, t1, 1, TO_##ISA)                                                                            \
    TILE(ISA, SUF, t2, 2, TO_##ISA)                                                                            \
    TILE(ISA, SUF, t3, 3, TO_##ISA)                                                                            \
    TILE(ISA, SUF, t4, 4, TO_##ISA)                                                                            \
    TILE(ISA, SUF, s4, 1, 4)                                                                                   \
    TILE(ISA, SUF, c1, 1, 1)                                                                                   \
    /* One row (batch-1 decode, a read of every weight): four outputs at once, from the four     \
     * quarters of the range, so the weights stream as four long sequences (the prefetchers      \
     * follow long streams; four outputs of adjacent rows would be four short ones) and four     \
     * FMA chains run.  More rows: blocks of 32 (their activations stay in L2 while the block's  \
     * weights are read once per block), each block in tiles of TR rows x TO outputs, the first \
     * row tile of each prefetching the next tile's weights, past o1 too (ldo is the matrix's    \
     * width: the next block of outputs starts there, and a thread often takes it next). */      \
    TGT_##ISA static void rows_##SUF##_##ISA(float *out, const float *x, const void *w, const float *b, int m, \
                                             int in, int o0, int o1, int ldo)                                  \
    {                                                                                                          \
        static tile_fn *const by_rows[4] = {t1_##SUF##_##ISA, t2_##SUF##_##ISA, t3_##SUF##_##ISA,              \
                                            t4_##SUF##_##ISA};                                                 \
        size_t ldw = (size_t)in;                                                                               \
        if (m == 1) {                                                                                          \
            int q = (o1 - o0) / 4;                                                                             \
            for (int o = o0; o < o0 + q; o++) s4_##SUF##_##ISA(out, ldo, x, w, ldw, b, in, o, 0, q);          \
            for (int o = o0 + 4 * q; o < o1; o++) c1_##SUF##_##ISA(out, ldo, x, w, ldw, b, in, o, 0, 1);      \
            return;                                                                                            \
        }                                                                                                      \
        for (int rb = 0; rb < m; rb += 32) {                                                                   \
            int re = rb + 32 < m ? rb + 32 : m, o = o0;                                                        \
            for (; o + TO_##ISA <= o1; o += TO_##ISA)                                                          \
                for (int r = rb; r < re; r += TR_##ISA) {                                                      \
                    int R = re - r < TR_##ISA ? re - r : TR_##ISA;                                             \
                    by_rows[R - 1](out + (size_t)r * ldo, ldo, x + (size_t)r * in, w, ldw, b, in, o,           \
                                   r == rb && o + 2 * TO_##ISA <= ldo, 1);                                     \
                }                                                                                              \
            for (; o < o1; o++)                                                                                \
                for (int r = rb; r < re; r++)                                                                  \
                    c1_##SUF##_##ISA(out + (size_t)r * ldo, ldo, x + (size_t)r * in, w, ldw, b, in, o, 0, 1);  \
        }                                                                                                      \
    }
#define TILE(ISA, SUF, NAME, R, C)                                                                             \
    TGT_##ISA static void NAME##_##SUF##_##ISA(float *out, int ldo, const float *x, const void *w, size_t ldw,  \
                                               const float *b, int in, int o, int pf, int os)                  \
    {                                                                                                          \
        tile_##SUF##_##ISA(R, C, out, ldo, x, w, ldw, b, in, o, pf, os);                                       \
    }

/* out [d] = sum over s in order of p[s] * v[s * ldv + :d]: attention's weighted values, each
 * element one FMA chain over the positions (the lanes past whole vectors: the same chain, scalar) */
#define MIX(ISA)                                                                                               \
    TGT_##ISA static void mix_##ISA(float *out, const float *p, const float *v, size_t ldv, int n, int d)     \
    {                                                                                                          \
        const int L = LANES_##ISA;                                                                             \
        int j = 0;                                                                                             \
        for (; j + 4 * L <= d; j += 4 * L) mix_block_##ISA(4, out + j, p, v + j, ldv, n);                     \
        for (; j + L <= d; j += L) mix_block_##ISA(1, out + j, p, v + j, ldv, n);                              \
        for (; j < d; j++) {                                                                                   \
            float o = 0;                                                                                       \
            for (int s = 0; s < n; s++) o = fmaf(p[s], v[(size_t)s * ldv + (size_t)j], o);                    \
            out[j] = o;                                                                                        \
        }                                                                                                      \
    }
#define KERNEL(ISA)                                                                                            \
    TILES(ISA, F32)                                                                                            \
    TILES(ISA, BF16)                                                                                           \
    /* one row x TR x TO outputs: attention's scores (short k) folded all in one tree */                    \
    TILE(ISA, F32, sN, 1, TR_##ISA * TO_##ISA)                                                                 \
    static void rows_##ISA(float *out, const float *x, const void *w, cl_dtype dt, const float *b, int m,      \
                           int in, int o0, int o1, int ldo)                                                    \
    {                                                                                                          \
        if (dt == CL_BF16)                                                                                     \
            rows_BF16_##ISA(out, x, w, b, m, in, o0, o1, ldo);                                                 \
        else                                                                                                   \
            rows_F32_##ISA(out, x, w, b, m, in, o0, o1, ldo);                                                  \
    }                                                                                                          \
    /* one row, output o's weights at w + o * ldw */                                                         \
    static void strided_##ISA(float *out, const float *x, const float *w, size_t ldw, int in, int n)           \
    {                                                                                                          \
        int o = 0;                                                                                             \
        for (; o + TR_##ISA * TO_##ISA <= n; o += TR_##ISA * TO_##ISA)                                         \
            sN_F32_##ISA(out, 0, x, w, ldw, NULL, in, o, 0, 1);                                                \
        for (; o < n; o++) c1_F32_##ISA(out, 0, x, w, ldw, NULL, in, o, 0, 1);                                \
    }                                                                                                          \
    TGT_##ISA INLINE void mix_block_##ISA(int B, float *out, const float *p, const float *v, size_t ldv, int n) \
    {                                                                                                          \
        vec_##ISA acc[4];                                                                                      \
        UNROLL for (int i = 0; i < B; i++) acc[i] = zero_##ISA();                                             \
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
#undef TILES
#undef TILE
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
    void (*mix)(float *, const float *, const float *, size_t, int, int);
    int (*argmax)(const float *, int);
} kernels;

static void strided_scalar(float *out, const float *x, const float *w, size_t ldw, int in, int n)
{
    for (int o = 0; o < n; o++) out[o] = dot_scalar(x, w + (size_t)o * ldw, CL_F32, 0, in);
}

static void mix_scalar(float *out, const float *p, const float *v, size_t ldv, int n, int d)
{
    for (int j = 0; j < d; j++) {
        float o = 0;
        for (int s = 0; s < n; s++) o += p[s] * v[(size_t)s * ldv + (size_t)j];
        out[j] = o;
    }
}

static const kernels *pick(void)
{
    static const kernels scalar = {"scalar", rows_scalar, strided_scalar, mix_scalar, argmax_scalar};
#ifdef HAVE_X86
    static const kernels k512 = {"avx512", rows_avx512, strided_avx512, mix_avx512, argmax_avx2},
                         k2 = {"avx2", rows_avx2, strided_avx2, mix_avx2, argmax_avx2};
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
    cl_linear_part p = {out, w, dt, b, out_dim};
    cl_linear_parts(&p, 1, x, m, in);
}

void cl_linear_parts(const cl_linear_part *p, int cnt, const float *x, int m, int in)
{
    const kernels *k = pick();
    /* Blocks of 48 outputs (whole pass tiles of 6 or 3): big enough to amortise the x rows,
     * small enough to balance; handed out as threads come free, since two threads streaming
     * weights from memory do not keep pace (static halves left one waiting at every product's
     * end: 4-10% of a batched step, A/B in BENCHMARKS.md).  The parts' blocks go in one loop,
     * so q, k and v (or gate and up) cost one wait for the slowest thread, not three.  Which
     * thread computes a block never changes its bits. */
    int threads = omp_get_max_threads(), first[CL_LINEAR_MAX_PARTS + 1] = {0}, bs[CL_LINEAR_MAX_PARTS];
    long work = 0;
    if (cnt > CL_LINEAR_MAX_PARTS) {
        cl_linear_parts(p + CL_LINEAR_MAX_PARTS, cnt - CL_LINEAR_MAX_PARTS, x, m, in);
        cnt = CL_LINEAR_MAX_PARTS;
    }
    for (int i = 0; i < cnt; i++) {
        bs[i] = m == 1 ? (p[i].out_dim + threads - 1) / threads : 48;
        bs[i] = bs[i] > 0 ? bs[i] : 1;
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

void cl_linear_mix(float *out, const float *p, const float *v, size_t ldv, int n, int d)
{
    pick()->mix(out, p, v, ldv, n, d);
}

int cl_argmax(const float *v, int n) { return pick()->argmax(v, n); }
