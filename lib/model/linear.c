/* linear.c — batch-invariant small-m W.x kernels (see linear.h for the contract). */
#include "model/linear.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

/* The fixed reduction tree of the eight lanes; the AVX2 horizontal sum below adds in this
 * same order, so the only difference between the kernels is FMA rounding. */
static inline float tree8(const float p[8])
{
    float t0 = p[0] + p[4], t1 = p[1] + p[5], t2 = p[2] + p[6], t3 = p[3] + p[7];
    return (t0 + t2) + (t1 + t3);
}

static inline float wval(const void *w, cl_dtype dt, size_t i)
{
    return dt == CL_BF16 ? cl_bf16_to_f32(((const uint16_t *)w)[i]) : ((const float *)w)[i];
}

/* One output element, portable: lanes over k, the tree, then the tail in order. */
static float dot_scalar(const float *x, const void *w, cl_dtype dt, size_t wo, int in)
{
    float p[8] = {0};
    int k8 = in & ~7, k = 0;
    for (; k < k8; k += 8)
        for (int j = 0; j < 8; j++) p[j] += x[k + j] * wval(w, dt, wo + (size_t)k + (size_t)j);
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
typedef __m256 vec_avx2;
typedef __m512 vec_avx512;
#define LANES_avx2 8
#define LANES_avx512 16

TGT_avx2 static inline __m256 zero_avx2(void) { return _mm256_setzero_ps(); }
TGT_avx2 static inline __m256 loadx_avx2(const float *p) { return _mm256_loadu_ps(p); }
TGT_avx2 static inline __m256 fma_avx2(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
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

/* Tiles of 4 outputs x 2 rows and 4 x 1 (8 and 4 accumulators in registers: each weight
 * vector is loaded once per k step for both rows), and 1 x 1 for the last outputs; written
 * out by hand per instruction set and weight type so the accumulators never leave the
 * registers (GCC -O2 spills arrays of vectors). */
#define TILES(ISA, SUF)                                                                                        \
    TGT_##ISA static void t4x2_##SUF##_##ISA(float *out, int ldo, const float *x, const void *w,               \
                                             const float *b, int in, int o)                                    \
    {                                                                                                          \
        vec_##ISA a0 = zero_##ISA(), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;            \
        size_t r0 = (size_t)o * in, r1 = r0 + in, r2 = r1 + in, r3 = r2 + in;                                   \
        const float *y = x + in;                                                                               \
        int kv = in - in % LANES_##ISA, k = 0;                                                                 \
        for (; k < kv; k += LANES_##ISA) {                                                                     \
            vec_##ISA x0 = loadx_##ISA(x + k), x1 = loadx_##ISA(y + k);                                       \
            vec_##ISA w0 = SUF##_##ISA(w, r0 + k), w1 = SUF##_##ISA(w, r1 + k);                                \
            vec_##ISA w2 = SUF##_##ISA(w, r2 + k), w3 = SUF##_##ISA(w, r3 + k);                                \
            a0 = fma_##ISA(w0, x0, a0);                                                                        \
            a1 = fma_##ISA(w1, x0, a1);                                                                        \
            a2 = fma_##ISA(w2, x0, a2);                                                                        \
            a3 = fma_##ISA(w3, x0, a3);                                                                        \
            c0 = fma_##ISA(w0, x1, c0);                                                                        \
            c1 = fma_##ISA(w1, x1, c1);                                                                        \
            c2 = fma_##ISA(w2, x1, c2);                                                                        \
            c3 = fma_##ISA(w3, x1, c3);                                                                        \
        }                                                                                                      \
        cl_dtype dt = CL_##SUF;                                                                                \
        out[o] = finish(hsum_##ISA(a0), x, w, dt, r0, k, in, b, o);                                            \
        out[o + 1] = finish(hsum_##ISA(a1), x, w, dt, r1, k, in, b, o + 1);                                    \
        out[o + 2] = finish(hsum_##ISA(a2), x, w, dt, r2, k, in, b, o + 2);                                    \
        out[o + 3] = finish(hsum_##ISA(a3), x, w, dt, r3, k, in, b, o + 3);                                    \
        out[ldo + o] = finish(hsum_##ISA(c0), y, w, dt, r0, k, in, b, o);                                      \
        out[ldo + o + 1] = finish(hsum_##ISA(c1), y, w, dt, r1, k, in, b, o + 1);                              \
        out[ldo + o + 2] = finish(hsum_##ISA(c2), y, w, dt, r2, k, in, b, o + 2);                              \
        out[ldo + o + 3] = finish(hsum_##ISA(c3), y, w, dt, r3, k, in, b, o + 3);                              \
    }                                                                                                          \
    TGT_##ISA static void t4x1_##SUF##_##ISA(float *out, const float *x, const void *w, const float *b, int in, \
                                             int o)                                                            \
    {                                                                                                          \
        vec_##ISA a0 = zero_##ISA(), a1 = a0, a2 = a0, a3 = a0;                                               \
        size_t r0 = (size_t)o * in, r1 = r0 + in, r2 = r1 + in, r3 = r2 + in;                                   \
        int kv = in - in % LANES_##ISA, k = 0;                                                                 \
        for (; k < kv; k += LANES_##ISA) {                                                                     \
            vec_##ISA x0 = loadx_##ISA(x + k);                                                                 \
            a0 = fma_##ISA(SUF##_##ISA(w, r0 + k), x0, a0);                                                    \
            a1 = fma_##ISA(SUF##_##ISA(w, r1 + k), x0, a1);                                                    \
            a2 = fma_##ISA(SUF##_##ISA(w, r2 + k), x0, a2);                                                    \
            a3 = fma_##ISA(SUF##_##ISA(w, r3 + k), x0, a3);                                                    \
        }                                                                                                      \
        cl_dtype dt = CL_##SUF;                                                                                \
        out[o] = finish(hsum_##ISA(a0), x, w, dt, r0, k, in, b, o);                                            \
        out[o + 1] = finish(hsum_##ISA(a1), x, w, dt, r1, k, in, b, o + 1);                                    \
        out[o + 2] = finish(hsum_##ISA(a2), x, w, dt, r2, k, in, b, o + 2);                                    \
        out[o + 3] = finish(hsum_##ISA(a3), x, w, dt, r3, k, in, b, o + 3);                                    \
    }                                                                                                          \
    TGT_##ISA static void t1x1_##SUF##_##ISA(float *out, const float *x, const void *w, const float *b, int in, \
                                             int o)                                                            \
    {                                                                                                          \
        vec_##ISA a0 = zero_##ISA();                                                                           \
        size_t r0 = (size_t)o * in;                                                                            \
        int kv = in - in % LANES_##ISA, k = 0;                                                                 \
        for (; k < kv; k += LANES_##ISA) a0 = fma_##ISA(SUF##_##ISA(w, r0 + k), loadx_##ISA(x + k), a0);      \
        out[o] = finish(hsum_##ISA(a0), x, w, CL_##SUF, r0, k, in, b, o);                                      \
    }                                                                                                          \
    TGT_##ISA static void rows_##SUF##_##ISA(float *out, const float *x, const void *w, const float *b, int m, \
                                             int in, int o0, int o1, int ldo)                                  \
    {                                                                                                          \
        int o = o0;                                                                                            \
        for (; o + 4 <= o1; o += 4) {                                                                          \
            int r = 0;                                                                                         \
            for (; r + 2 <= m; r += 2)                                                                         \
                t4x2_##SUF##_##ISA(out + (size_t)r * ldo, ldo, x + (size_t)r * in, w, b, in, o);               \
            if (r < m) t4x1_##SUF##_##ISA(out + (size_t)r * ldo, x + (size_t)r * in, w, b, in, o);              \
        }                                                                                                      \
        for (; o < o1; o++)                                                                                    \
            for (int r = 0; r < m; r++) t1x1_##SUF##_##ISA(out + (size_t)r * ldo, x + (size_t)r * in, w, b, in, o); \
    }                                                                                                          \

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
    }
KERNEL(avx2)
KERNEL(avx512)
#undef KERNEL
#undef TILES
#endif

typedef void (*rows_fn)(float *, const float *, const void *, cl_dtype, const float *, int, int, int, int, int);

static rows_fn pick(const char **name)
{
    const char *force = getenv("CL_SIMD");
    force = force && *force ? force : "auto";
#ifdef HAVE_X86
    int auto_ = strcmp(force, "auto") == 0, fma = __builtin_cpu_supports("fma");
    if ((auto_ || strcmp(force, "avx512") == 0) && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512dq") && fma) {
        *name = "avx512";
        return rows_avx512;
    }
    if ((auto_ || strcmp(force, "avx512") == 0 || strcmp(force, "avx2") == 0) && __builtin_cpu_supports("avx2") &&
        fma) {
        *name = "avx2";
        return rows_avx2;
    }
#endif
    *name = "scalar";
    return rows_scalar;
}

/* Picked per call (a getenv and a cached CPUID bit): cheap beside the product, and tests can
 * switch CL_SIMD between calls. */
const char *cl_linear_isa(void)
{
    const char *n;
    pick(&n);
    return n;
}

void cl_linear_rows(float *out, const float *x, const void *w, cl_dtype dt, const float *b, int m, int in,
                    int out_dim)
{
    const char *name;
    rows_fn f = pick(&name);
    /* Blocks of 64 outputs: big enough to amortise the x rows, small enough to balance. */
    int nblk = (out_dim + 63) / 64;
#pragma omp parallel for schedule(static) if ((long)m * in * out_dim > 200000)
    for (int bi = 0; bi < nblk; bi++) {
        int o0 = bi * 64, o1 = o0 + 64 < out_dim ? o0 + 64 : out_dim;
        f(out, x, w, dt, b, m, in, o0, o1, out_dim);
    }
}
