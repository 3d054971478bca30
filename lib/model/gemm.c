/* gemm.c — backend table and the built-in packed SGEMM.
 *
 * The kernel follows the usual Goto/BLIS structure: op(B) is packed in KC x NC panels of NR-wide
 * strips, op(A) in MC x KC blocks of MR-high strips (zero padded at the edges, so the
 * micro-kernel never branches on shape), and an MR x NR register tile accumulates a rank-KC
 * update.  Transposes are absorbed by the packing, so the one micro-kernel serves NN, NT and TN
 * (the three products of a linear layer's forward and backward).  The micro-kernel is written
 * with GCC vector extensions and cloned per ISA level (AVX-512, AVX2+FMA, baseline); the
 * loader picks the clone for the running CPU. */
#include "model/gemm.h"

#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifdef CL_HAVE_CBLAS
#include <cblas.h>
#endif

#define MR 12
#define NR 32
#define KC 256
#define MC 192
#define NC 3072

typedef float v16 __attribute__((vector_size(64)));

#if defined(__x86_64__) && !defined(__clang__)
#define CL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CL_CLONES
#endif

/* Vector FMA needs contraction, which -std=c11 turns off by default. */
#pragma GCC push_options
#pragma GCC optimize("O3", "fp-contract=fast")

/* c[0..mr) x [0..nr) (row stride ldc) = alpha * A_strip * B_strip + beta * c. */
CL_CLONES
static void micro_kernel(int kc, const float *restrict a, const float *restrict b, float *restrict c,
                         int ldc, int mr, int nr, float alpha, float beta)
{
    v16 acc[MR][2];
    memset(acc, 0, sizeof acc);
    for (int p = 0; p < kc; p++) {
        v16 b0, b1;
        memcpy(&b0, b + (size_t)p * NR, sizeof b0);
        memcpy(&b1, b + (size_t)p * NR + 16, sizeof b1);
        const float *ap = a + (size_t)p * MR;
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            v16 ai = ap[i] - (v16){0};
            acc[i][0] += ai * b0;
            acc[i][1] += ai * b1;
        }
    }
    float tile[MR][NR];
    memcpy(tile, acc, sizeof tile);
    for (int i = 0; i < mr; i++) {
        float *restrict ci = c + (size_t)i * ldc;
        if (beta == 0.0f)
            for (int j = 0; j < nr; j++) ci[j] = alpha * tile[i][j];
        else
            for (int j = 0; j < nr; j++) ci[j] = alpha * tile[i][j] + beta * ci[j];
    }
}

/* Packs rows [i0, i0+mc) x cols [p0, p0+kc) of op(A) into MR-high strips. */
static void pack_a(int ta, const float *a, int lda, int i0, int mc, int p0, int kc, float *restrict dst,
                   int strip)
{
    int i = i0 + strip * MR, rows = mc - strip * MR < MR ? mc - strip * MR : MR;
    float *d = dst + (size_t)strip * MR * kc;
    if (!ta) {
        for (int r = 0; r < rows; r++) {
            const float *src = a + (size_t)(i + r) * lda + p0;
            for (int p = 0; p < kc; p++) d[(size_t)p * MR + r] = src[p];
        }
    } else {
        for (int p = 0; p < kc; p++) {
            const float *src = a + (size_t)(p0 + p) * lda + i;
            for (int r = 0; r < rows; r++) d[(size_t)p * MR + r] = src[r];
        }
    }
    for (int r = rows; r < MR; r++)
        for (int p = 0; p < kc; p++) d[(size_t)p * MR + r] = 0.0f;
}

/* Packs rows [p0, p0+kc) x cols [j0, j0+nc) of op(B) into NR-wide strips. */
static void pack_b(int tb, const float *b, int ldb, int p0, int kc, int j0, int nc, float *restrict dst,
                   int strip)
{
    int j = j0 + strip * NR, cols = nc - strip * NR < NR ? nc - strip * NR : NR;
    float *d = dst + (size_t)strip * NR * kc;
    if (!tb) {
        for (int p = 0; p < kc; p++) {
            const float *src = b + (size_t)(p0 + p) * ldb + j;
            float *dp = d + (size_t)p * NR;
            for (int c = 0; c < cols; c++) dp[c] = src[c];
            for (int c = cols; c < NR; c++) dp[c] = 0.0f;
        }
    } else {
        for (int c = 0; c < cols; c++) {
            const float *src = b + (size_t)(j + c) * ldb + p0;
            for (int p = 0; p < kc; p++) d[(size_t)p * NR + c] = src[p];
        }
        for (int c = cols; c < NR; c++)
            for (int p = 0; p < kc; p++) d[(size_t)p * NR + c] = 0.0f;
    }
}

#pragma GCC pop_options

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

/* The serial blocked product on one thread, with that thread's packing buffers. */
static void gemm_serial(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc)
{
    int ncmax = n < NC ? n : NC, kcmax = k < KC ? k : KC, mcmax = m < MC ? m : MC;
    size_t bsize = (size_t)(ncmax + NR - 1) / NR * NR * kcmax, asize = (size_t)(mcmax + MR - 1) / MR * MR * kcmax;
    float *bp = pack_space(bsize + asize + 16), *ap = bp + ((bsize + 15) & ~(size_t)15);
    for (int jc = 0; jc < n; jc += NC) {
        int nc = n - jc < NC ? n - jc : NC, nstrips = (nc + NR - 1) / NR;
        for (int pc = 0; pc < k; pc += KC) {
            int kc = k - pc < KC ? k - pc : KC;
            float bet = pc == 0 ? beta : 1.0f;
            for (int s = 0; s < nstrips; s++) pack_b(tb, b, ldb, pc, kc, jc, nc, bp, s);
            for (int ic = 0; ic < m; ic += MC) {
                int mc = m - ic < MC ? m - ic : MC, mstrips = (mc + MR - 1) / MR;
                for (int s = 0; s < mstrips; s++) pack_a(ta, a, lda, ic, mc, pc, kc, ap, s);
                for (int jr = 0; jr < nstrips; jr++) {
                    int nr = nc - jr * NR < NR ? nc - jr * NR : NR;
                    for (int ir = 0; ir < mstrips; ir++) {
                        int mr = mc - ir * MR < MR ? mc - ir * MR : MR;
                        micro_kernel(kc, ap + (size_t)ir * MR * kc, bp + (size_t)jr * NR * kc,
                                     c + (size_t)(ic + ir * MR) * ldc + jc + jr * NR, ldc, mr, nr,
                                     alpha, bet);
                    }
                }
            }
        }
    }
}

/* Runs a single-threaded product over OpenMP threads.  Threads take independent column (or
 * row) panels from a dynamic queue: no barrier inside the product, so a thread the OS preempts
 * on a shared machine delays only its own panels.  The price is that each panel packs the
 * shared operand again (four panels per thread).  Every backend on the CPU threads this way, so OpenMP
 * and a BLAS's own thread pool never compete for the cores. */
static void run_panels(cl_sgemm_fn *serial, int ta, int tb, int m, int n, int k, float alpha, const float *a,
                       int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    int nth = omp_in_parallel() || (double)m * n * k < 4e6 ? 1 : omp_get_max_threads();
    if (nth == 1) {
        serial(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    int by_cols = n / NR >= m / MR;
    int tile = by_cols ? NR : MR, dim = by_cols ? n : m;
    int chunk = (dim + 4 * nth - 1) / (4 * nth);
    chunk = (chunk + tile - 1) / tile * tile;
    if (chunk < 4 * tile) chunk = 4 * tile;
    int chunks = (dim + chunk - 1) / chunk;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth)
    for (int q = 0; q < chunks; q++) {
        int lo = q * chunk, len = dim - lo < chunk ? dim - lo : chunk;
        if (by_cols)
            serial(ta, tb, m, len, k, alpha, a, lda, tb ? b + (size_t)lo * ldb : b + lo, ldb, beta, c + lo, ldc);
        else
            serial(ta, tb, len, n, k, alpha, ta ? a + lo : a + (size_t)lo * lda, lda, b, ldb, beta,
                   c + (size_t)lo * ldc, ldc);
    }
}

void cl_sgemm_cpu(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc)
{
    run_panels(gemm_serial, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

#ifdef CL_HAVE_CBLAS
static void cblas_serial(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                         const float *b, int ldb, float beta, float *c, int ldc)
{
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
