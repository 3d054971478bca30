/* gemm.c — backend table and the built-in packed SGEMM.
 *
 * The kernel follows the usual Goto/BLIS structure: op(B) is packed in KC x NC panels of NR-wide
 * strips, op(A) in MC x KC blocks of MR-high strips (zero padded at the edges, so the
 * micro-kernel never branches on shape), and an MR x NR register tile accumulates a rank-KC
 * update.  Transposes are absorbed by the packing, so one micro-kernel serves NN, NT and TN
 * (the three products of a linear layer's forward and backward).
 *
 * Each ISA level has its own micro-kernel whose tile fits that ISA's register file: AVX-512
 * 12 x 32 (24 of 32 zmm accumulate), AVX2+FMA 6 x 16 (12 of 16 ymm), and a portable 6 x 8 with
 * GCC vector extensions.  The running CPU picks one at first use (__builtin_cpu_supports);
 * CL_CPU or cl_gemm_isa_use can force a lower level, which is how tests and benchmarks cover
 * every kernel on one machine.  A tile compiled for a wider ISA than the CPU has would spill
 * every accumulator (a 12 x 32 tile of 64-byte vectors needs 48 ymm under AVX2). */
#include "model/gemm.h"

#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CL_GEMM_X86 1
#else
#define CL_GEMM_X86 0
#endif

#ifdef CL_HAVE_CBLAS
#include <cblas.h>
#endif

#define KC 256
#define MC 192  /* a multiple of every MR */
#define NC 3072 /* a multiple of every NR */
#define MR_MAX 12
#define NR_MAX 32

/* c (MR x NR, row stride ldc) = alpha * A_strip * B_strip + beta * c; beta == 0 never reads c.
 * Every tile, full or at an edge, goes through the same instructions (edges via a scratch tile),
 * so an element's value depends only on its row of op(A), its column of op(B) and k. */
typedef void micro_fn(int kc, const float *restrict a, const float *restrict b, float *restrict c, int ldc,
                      float alpha, float beta);

typedef struct isa_kernel {
    const char *name;
    int mr, nr;
    micro_fn *kernel;
    int (*supported)(void);
} isa_kernel;

/* Vector FMA needs contraction, which -std=c11 turns off by default. */
#pragma GCC push_options
#pragma GCC optimize("O3", "fp-contract=fast")

typedef float v4 __attribute__((vector_size(16)));

static void micro_generic(int kc, const float *restrict a, const float *restrict b, float *restrict c, int ldc,
                          float alpha, float beta)
{
    v4 acc[6][2];
    memset(acc, 0, sizeof acc);
    for (int p = 0; p < kc; p++) {
        v4 b0, b1;
        memcpy(&b0, b + (size_t)p * 8, sizeof b0);
        memcpy(&b1, b + (size_t)p * 8 + 4, sizeof b1);
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            v4 ai = a[(size_t)p * 6 + i] - (v4){0};
            acc[i][0] += ai * b0;
            acc[i][1] += ai * b1;
        }
    }
    v4 va = alpha - (v4){0}, vb = beta - (v4){0};
    for (int i = 0; i < 6; i++)
        for (int h = 0; h < 2; h++) {
            float *ci = c + (size_t)i * ldc + 4 * h;
            v4 r = va * acc[i][h];
            if (beta != 0.0f) {
                v4 old;
                memcpy(&old, ci, sizeof old);
                r += vb * old;
            }
            memcpy(ci, &r, sizeof r);
        }
}

static int always(void) { return 1; }

#if CL_GEMM_X86
__attribute__((target("avx2,fma"))) static void micro_avx2(int kc, const float *restrict a, const float *restrict b,
                                                          float *restrict c, int ldc, float alpha, float beta)
{
    __m256 acc[6][2];
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int p = 0; p < kc; p++) {
        __m256 b0 = _mm256_load_ps(b + (size_t)p * 16), b1 = _mm256_load_ps(b + (size_t)p * 16 + 8);
        const float *ap = a + (size_t)p * 6;
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            __m256 ai = _mm256_broadcast_ss(ap + i);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) {
        float *ci = c + (size_t)i * ldc;
        if (beta == 0.0f) {
            _mm256_storeu_ps(ci, _mm256_mul_ps(va, acc[i][0]));
            _mm256_storeu_ps(ci + 8, _mm256_mul_ps(va, acc[i][1]));
        } else {
            _mm256_storeu_ps(ci, _mm256_fmadd_ps(va, acc[i][0], _mm256_mul_ps(vb, _mm256_loadu_ps(ci))));
            _mm256_storeu_ps(ci + 8, _mm256_fmadd_ps(va, acc[i][1], _mm256_mul_ps(vb, _mm256_loadu_ps(ci + 8))));
        }
    }
}

__attribute__((target("avx512f"))) static void micro_avx512(int kc, const float *restrict a,
                                                           const float *restrict b, float *restrict c, int ldc,
                                                           float alpha, float beta)
{
    __m512 acc[12][2];
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int p = 0; p < kc; p++) {
        __m512 b0 = _mm512_load_ps(b + (size_t)p * 32), b1 = _mm512_load_ps(b + (size_t)p * 32 + 16);
        const float *ap = a + (size_t)p * 12;
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) {
            __m512 ai = _mm512_set1_ps(ap[i]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) {
        float *ci = c + (size_t)i * ldc;
        if (beta == 0.0f) {
            _mm512_storeu_ps(ci, _mm512_mul_ps(va, acc[i][0]));
            _mm512_storeu_ps(ci + 16, _mm512_mul_ps(va, acc[i][1]));
        } else {
            _mm512_storeu_ps(ci, _mm512_fmadd_ps(va, acc[i][0], _mm512_mul_ps(vb, _mm512_loadu_ps(ci))));
            _mm512_storeu_ps(ci + 16,
                             _mm512_fmadd_ps(va, acc[i][1], _mm512_mul_ps(vb, _mm512_loadu_ps(ci + 16))));
        }
    }
}

static int has_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
static int has_avx512(void) { return __builtin_cpu_supports("avx512f"); }
#endif

/* Packs rows [i0, i0+mc) x cols [p0, p0+kc) of op(A), strip `strip`, into an mr-high strip. */
static void pack_a(int ta, const float *a, int lda, int i0, int mc, int p0, int kc, float *restrict dst, int strip,
                   int mr)
{
    int i = i0 + strip * mr, rows = mc - strip * mr < mr ? mc - strip * mr : mr;
    float *d = dst + (size_t)strip * mr * kc;
    if (!ta) {
        for (int r = 0; r < rows; r++) {
            const float *src = a + (size_t)(i + r) * lda + p0;
            for (int p = 0; p < kc; p++) d[(size_t)p * mr + r] = src[p];
        }
    } else {
        for (int p = 0; p < kc; p++) {
            const float *src = a + (size_t)(p0 + p) * lda + i;
            for (int r = 0; r < rows; r++) d[(size_t)p * mr + r] = src[r];
        }
    }
    for (int r = rows; r < mr; r++)
        for (int p = 0; p < kc; p++) d[(size_t)p * mr + r] = 0.0f;
}

/* Packs rows [p0, p0+kc) x cols [j0, j0+nc) of op(B), strip `strip`, into an nr-wide strip. */
static void pack_b(int tb, const float *b, int ldb, int p0, int kc, int j0, int nc, float *restrict dst, int strip,
                   int nr)
{
    int j = j0 + strip * nr, cols = nc - strip * nr < nr ? nc - strip * nr : nr;
    float *d = dst + (size_t)strip * nr * kc;
    if (!tb) {
        for (int p = 0; p < kc; p++) {
            const float *src = b + (size_t)(p0 + p) * ldb + j;
            float *dp = d + (size_t)p * nr;
            for (int c = 0; c < cols; c++) dp[c] = src[c];
            for (int c = cols; c < nr; c++) dp[c] = 0.0f;
        }
    } else {
        for (int c = 0; c < cols; c++) {
            const float *src = b + (size_t)(j + c) * ldb + p0;
            for (int p = 0; p < kc; p++) d[(size_t)p * nr + c] = src[p];
        }
        for (int c = cols; c < nr; c++)
            for (int p = 0; p < kc; p++) d[(size_t)p * nr + c] = 0.0f;
    }
}

#pragma GCC pop_options

/* Best first: the first supported entry is the default. */
static const isa_kernel isa_kernels[] = {
#if CL_GEMM_X86
    {"avx512", 12, 32, micro_avx512, has_avx512},
    {"avx2", 6, 16, micro_avx2, has_avx2},
#endif
    {"generic", 6, 8, micro_generic, always},
};
#define N_ISA (int)(sizeof isa_kernels / sizeof isa_kernels[0])

static _Atomic(const isa_kernel *) isa_current;

int cl_gemm_isa_use(const char *name)
{
    for (int i = 0; i < N_ISA; i++)
        if (!strcmp(isa_kernels[i].name, name)) {
            if (!isa_kernels[i].supported()) return -1;
            atomic_store(&isa_current, &isa_kernels[i]);
            return 0;
        }
    return -1;
}

/* The best kernel this CPU runs, unless CL_CPU names a supported one (an unknown or unsupported
 * name is ignored: the environment may come from another machine). */
static const isa_kernel *isa_get(void)
{
    const isa_kernel *k = atomic_load(&isa_current);
    if (k) return k;
    const char *want = getenv("CL_CPU");
    if (want && !cl_gemm_isa_use(want)) return atomic_load(&isa_current);
    for (int i = 0; i < N_ISA; i++)
        if (isa_kernels[i].supported()) {
            atomic_store(&isa_current, &isa_kernels[i]);
            return &isa_kernels[i];
        }
    return &isa_kernels[N_ISA - 1];
}

const char *cl_gemm_isa_name(void) { return isa_get()->name; }

const char *cl_gemm_isa_list(int i)
{
    return i >= 0 && i < N_ISA ? isa_kernels[i].name : NULL;
}

/* Packing buffers live as long as the calling thread and only grow, so steady-state training
 * steps allocate nothing. */
static _Thread_local float *pack_buf;
static _Thread_local size_t pack_cap;

static float *pack_space(size_t need)
{
    if (need > pack_cap) {
        free(pack_buf);
        pack_buf = aligned_alloc(64, (need * sizeof(float) + 63) & ~(size_t)63);
        if (!pack_buf) abort();
        pack_cap = need;
    }
    return pack_buf;
}

static void scale_c(int m, int n, float beta, float *c, int ldc)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
}

/* One tile: straight into C when whole, else through a scratch tile so that edge elements take
 * exactly the instructions interior ones do. */
static void tile(const isa_kernel *ik, int kc, const float *ap, const float *bp, float *c, int ldc, int mr,
                 int nr, float alpha, float beta)
{
    if (mr == ik->mr && nr == ik->nr) {
        ik->kernel(kc, ap, bp, c, ldc, alpha, beta);
        return;
    }
    _Alignas(64) float t[MR_MAX * NR_MAX];
    if (beta != 0.0f)
        for (int i = 0; i < mr; i++) memcpy(t + i * ik->nr, c + (size_t)i * ldc, sizeof(float) * nr);
    ik->kernel(kc, ap, bp, t, ik->nr, alpha, beta);
    for (int i = 0; i < mr; i++) memcpy(c + (size_t)i * ldc, t + i * ik->nr, sizeof(float) * nr);
}

/* The serial blocked product on one thread, with that thread's packing buffers.  K is cut at
 * fixed multiples of KC whatever m and n are, so each element sums its k terms in one order. */
static void gemm_serial(const isa_kernel *ik, int ta, int tb, int m, int n, int k, float alpha, const float *a,
                        int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    int MR = ik->mr, NR = ik->nr;
    int ncmax = n < NC ? n : NC, kcmax = k < KC ? k : KC, mcmax = m < MC ? m : MC;
    size_t bsize = (size_t)(ncmax + NR - 1) / NR * NR * kcmax, asize = (size_t)(mcmax + MR - 1) / MR * MR * kcmax;
    float *bp = pack_space(bsize + asize + 16), *ap = bp + ((bsize + 15) & ~(size_t)15);
    for (int jc = 0; jc < n; jc += NC) {
        int nc = n - jc < NC ? n - jc : NC, nstrips = (nc + NR - 1) / NR;
        for (int pc = 0; pc < k; pc += KC) {
            int kc = k - pc < KC ? k - pc : KC;
            float bet = pc == 0 ? beta : 1.0f;
            for (int s = 0; s < nstrips; s++) pack_b(tb, b, ldb, pc, kc, jc, nc, bp, s, NR);
            for (int ic = 0; ic < m; ic += MC) {
                int mc = m - ic < MC ? m - ic : MC, mstrips = (mc + MR - 1) / MR;
                for (int s = 0; s < mstrips; s++) pack_a(ta, a, lda, ic, mc, pc, kc, ap, s, MR);
                for (int jr = 0; jr < nstrips; jr++) {
                    int nr = nc - jr * NR < NR ? nc - jr * NR : NR;
                    for (int ir = 0; ir < mstrips; ir++) {
                        int mr = mc - ir * MR < MR ? mc - ir * MR : MR;
                        tile(ik, kc, ap + (size_t)ir * MR * kc, bp + (size_t)jr * NR * kc,
                             c + (size_t)(ic + ir * MR) * ldc + jc + jr * NR, ldc, mr, nr, alpha, bet);
                    }
                }
            }
        }
    }
}

typedef void serial_fn(const isa_kernel *ik, int ta, int tb, int m, int n, int k, float alpha, const float *a,
                       int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* Runs a single-threaded product over OpenMP threads, one panel each: column panels each pack
 * all of op(A) (m x k) again and row panels all of op(B) (k x n), so the cut goes across the
 * dimension whose repeated packing is smaller (columns when m <= n).  One panel per thread,
 * not several from a queue: each extra panel repacks the shared operand, which cost a 134M
 * model's training step 6% more CPU with four per thread.  No barrier inside the product.
 * Every backend on the CPU threads this way, so OpenMP and a BLAS's own thread pool never
 * compete for the cores.  The split never changes an element's sum: panels cut m or n, never k. */
static void run_panels(serial_fn *serial, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                       const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    const isa_kernel *ik = isa_get();
    int nth = omp_in_parallel() || (double)m * n * k < 4e6 ? 1 : omp_get_max_threads();
    if (nth == 1) {
        serial(ik, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    int by_cols = m <= n;
    if ((by_cols ? n / ik->nr : m / ik->mr) < nth) by_cols = !by_cols; /* too narrow to share */
    int unit = by_cols ? ik->nr : ik->mr, dim = by_cols ? n : m;
    int chunk = (dim + nth - 1) / nth;
    chunk = (chunk + unit - 1) / unit * unit;
    if (chunk < 4 * unit) chunk = 4 * unit;
    int chunks = (dim + chunk - 1) / chunk;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth)
    for (int q = 0; q < chunks; q++) {
        int lo = q * chunk, len = dim - lo < chunk ? dim - lo : chunk;
        if (by_cols)
            serial(ik, ta, tb, m, len, k, alpha, a, lda, tb ? b + (size_t)lo * ldb : b + lo, ldb, beta, c + lo, ldc);
        else
            serial(ik, ta, tb, len, n, k, alpha, ta ? a + lo : a + (size_t)lo * lda, lda, b, ldb, beta,
                   c + (size_t)lo * ldc, ldc);
    }
}

void cl_sgemm_cpu(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc)
{
    run_panels(gemm_serial, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

#ifdef CL_HAVE_CBLAS
static void cblas_serial(const isa_kernel *ik, int ta, int tb, int m, int n, int k, float alpha, const float *a,
                         int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    (void)ik;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
                k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void openblas_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                           const float *b, int ldb, float beta, float *c, int ldc)
{
    static atomic_int single;
    if (!atomic_exchange(&single, 1)) openblas_set_num_threads(1);
    run_panels(cblas_serial, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
#endif
#define MAX_BACKENDS 8
static cl_gemm_backend backends[MAX_BACKENDS] = {
    {"cpu", cl_sgemm_cpu},
#ifdef CL_HAVE_CBLAS
    {"openblas", openblas_sgemm},
#endif
};
static int n_backends =
#ifdef CL_HAVE_CBLAS
    2;
static const cl_gemm_backend *current = &backends[1];
#else
    1;
static const cl_gemm_backend *current = &backends[0];
#endif

void cl_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc)
{
    current->sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int cl_gemm_use(const char *name)
{
    for (int i = 0; i < n_backends; i++)
        if (!strcmp(backends[i].name, name)) {
            current = &backends[i];
            return 0;
        }
    return -1;
}

const char *cl_gemm_backend_name(void) { return current->name; }

int cl_gemm_register(const cl_gemm_backend *b)
{
    for (int i = 0; i < n_backends; i++)
        if (!strcmp(backends[i].name, b->name)) {
            backends[i] = *b;
            return 0;
        }
    if (n_backends == MAX_BACKENDS) return -1;
    backends[n_backends++] = *b;
    return 0;
}
