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
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline __m256 load8(const void *w, cl_dtype dt, size_t i)
{
    if (dt == CL_BF16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    return _mm256_loadu_ps((const float *)w + i);
}

AVX2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* t0..t3 */
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                          /* t0+t2, t1+t3 */
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* A tile of NO outputs x NR rows: NO*NR accumulators, each weight vector loaded once per k step
 * and used for every row of the tile. */
#define TILE(NO, NR)                                                                                           \
    AVX2 static void tile_##NO##x##NR(float *out, int ldo, const float *x, const void *w, cl_dtype dt,        \
                                      const float *b, int in, int o)                                         \
    {                                                                                                        \
        __m256 acc[NR][NO];                                                                                  \
        for (int r = 0; r < NR; r++)                                                                         \
            for (int i = 0; i < NO; i++) acc[r][i] = _mm256_setzero_ps();                                    \
        int k8 = in & ~7, k = 0;                                                                             \
        for (; k < k8; k += 8) {                                                                             \
            __m256 wv[NO];                                                                                   \
            for (int i = 0; i < NO; i++) wv[i] = load8(w, dt, (size_t)(o + i) * in + (size_t)k);            \
            for (int r = 0; r < NR; r++) {                                                                   \
                __m256 xv = _mm256_loadu_ps(x + (size_t)r * in + k);                                        \
                for (int i = 0; i < NO; i++) acc[r][i] = _mm256_fmadd_ps(wv[i], xv, acc[r][i]);             \
            }                                                                                                \
        }                                                                                                    \
        for (int r = 0; r < NR; r++)                                                                         \
            for (int i = 0; i < NO; i++) {                                                                   \
                const float *xr = x + (size_t)r * in;                                                        \
                float s = hsum8(acc[r][i]);                                                                  \
                for (int kk = k; kk < in; kk++) s += xr[kk] * wval(w, dt, (size_t)(o + i) * in + (size_t)kk); \
                out[(size_t)r * ldo + o + i] = b ? s + b[o + i] : s;                                         \
            }                                                                                                \
    }
TILE(4, 2)
TILE(4, 1)
TILE(1, 1)
#undef TILE

AVX2 static void rows_avx2(float *out, const float *x, const void *w, cl_dtype dt, const float *b, int m, int in,
                           int o0, int o1, int ldo)
{
    int o = o0;
    for (; o + 4 <= o1; o += 4) {
        int r = 0;
        for (; r + 2 <= m; r += 2) tile_4x2(out + (size_t)r * ldo, ldo, x + (size_t)r * in, w, dt, b, in, o);
        if (r < m) tile_4x1(out + (size_t)r * ldo, ldo, x + (size_t)r * in, w, dt, b, in, o);
    }
    for (; o < o1; o++)
        for (int r = 0; r < m; r++) tile_1x1(out + (size_t)r * ldo, ldo, x + (size_t)r * in, w, dt, b, in, o);
}
#endif

typedef void (*rows_fn)(float *, const float *, const void *, cl_dtype, const float *, int, int, int, int, int);

static rows_fn pick(const char **name)
{
    const char *force = getenv("CL_SIMD");
#ifdef HAVE_X86
    if (!(force && strcmp(force, "scalar") == 0) && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma")) {
        *name = "avx2";
        return rows_avx2;
    }
#else
    (void)force;
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
