/* linear.c — batch-invariant small-m W.x kernels (see linear.h for the contract). */
#include "model/linear.h"

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
    /* rows in blocks of 8 so their activations stay in L1 while the block's weights stream */       \
    TGT_##ISA static void rows_##SUF##_##ISA(float *out, const float *x, const void *w, const float *b, int m, \
                                             int in, int o0, int o1, int ldo)                                  \
    {                                                                                                          \
        for (int rb = 0; rb < m; rb += 8) {                                                                    \
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
    }
KERNEL(avx2)
KERNEL(avx512)
#undef KERNEL
#undef TILES
#undef STEP
#undef QUAD
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
