/* model-bench-gemm — GFLOP/s of the built-in SGEMM, once per ISA micro-kernel this CPU runs,
 * against OpenBLAS cblas_sgemm (when built in) in the same process, on the shapes one training
 * step of a d=768, ffn=2048, vocab=32000 Llama at 1024 tokens multiplies.
 * Prints a Markdown table: shape, GFLOP/s per built-in ISA kernel and OpenBLAS, and each kernel's
 * ratio to OpenBLAS; then the mean ratios.  Threads: OMP_NUM_THREADS for the built-in kernel,
 * OpenBLAS's own pool (OPENBLAS_NUM_THREADS) for the peer, as users call it.
 * Usage: model-bench-gemm [reps [cpu]]  (median of reps timings per shape and kernel; with
 *                                       "cpu", timed in process CPU seconds: on a loaded machine
 *                                       that measures a one-thread kernel, not the scheduler)
 *        model-bench-gemm isa          (prints the ISA kernel the built-in GEMM picks here) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "model/gemm.h"

#ifdef CL_HAVE_CBLAS
#include <cblas.h>
#endif

enum { MAX_K = 8 };

static int cpu_clock;

static double now(void) { return cpu_clock ? bench_cpu_now() : bench_now(); }

static void run(const char *isa, int ta, int tb, int m, int n, int k, const float *a, const float *b, float *c)
{
    int lda = ta ? m : k, ldb = tb ? k : n;
    if (isa) {
        cl_gemm_isa_use(isa);
        cl_sgemm_cpu(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
    }
#ifdef CL_HAVE_CBLAS
    else
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a,
                    lda, b, ldb, 0.0f, c, n);
#endif
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "isa")) {
        puts(cl_gemm_isa_name());
        return 0;
    }
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1 || reps > 100) reps = 5;
    cpu_clock = argc > 2 && !strcmp(argv[2], "cpu");
    static const struct { const char *what; int ta, tb, m, n, k; } shapes[] = {
        {"fwd qkvo  x.W^T", CL_N, CL_T, 1024, 768, 768},
        {"fwd up    x.W^T", CL_N, CL_T, 1024, 2048, 768},
        {"fwd down  x.W^T", CL_N, CL_T, 1024, 768, 2048},
        {"fwd head  x.W^T", CL_N, CL_T, 1024, 32000, 768},
        {"bwd dx    dy.W", CL_N, CL_N, 1024, 768, 2048},
        {"bwd dW    dy^T.x", CL_T, CL_N, 2048, 768, 1024},
        {"bwd dW    dy^T.x", CL_T, CL_N, 768, 768, 1024},
    };
    const char *isas[MAX_K];
    int nisa = 0;
    const char *was = cl_gemm_isa_name();
    for (int i = 0; cl_gemm_isa_list(i) && nisa < MAX_K; i++)
        if (!cl_gemm_isa_use(cl_gemm_isa_list(i))) isas[nisa++] = cl_gemm_isa_list(i);
#ifdef CL_HAVE_CBLAS
    int blas = 1;
    printf("OpenBLAS kernels: %s; %s\n\n", openblas_get_corename(),
           cpu_clock ? "GFLOP per CPU second of the process" : "GFLOP per wall-clock second");
#else
    int blas = 0;
#endif
    printf("| shape (m n k) | op |");
    for (int i = 0; i < nisa; i++) printf(" built-in %s GFLOP/s |", isas[i]);
    printf(" OpenBLAS GFLOP/s |");
    for (int i = 0; blas && i < nisa; i++) printf(" %s / OpenBLAS |", isas[i]);
    printf("\n|---|---|");
    for (int i = 0; i < nisa * (1 + blas) + 1; i++) printf("---|");
    printf("\n");
    double sum[MAX_K] = {0};
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    for (int s = 0; s < ns; s++) {
        int m = shapes[s].m, n = shapes[s].n, k = shapes[s].k;
        float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n),
              *c = malloc(sizeof(float) * m * n);
        for (long i = 0; i < (long)m * k; i++) a[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
        for (long i = 0; i < (long)k * n; i++) b[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
        /* Kernels take turns within each repetition, so that a busy moment on a shared machine
         * falls on all of them alike; the first round warms caches and packing buffers. */
        double t[MAX_K + 1][100], gf[MAX_K + 1];
        int nk = nisa + blas;
        for (int r = 0; r <= reps; r++)
            for (int i = 0; i < nk; i++) {
                double t0 = now();
                run(i < nisa ? isas[i] : NULL, shapes[s].ta, shapes[s].tb, m, n, k, a, b, c);
                if (r) t[i][r - 1] = now() - t0;
            }
        for (int i = 0; i < nk; i++) gf[i] = 2.0 * m * n * k / bench_median(t[i], reps) * 1e-9;
        double peer = blas ? gf[nisa] : 0;
        printf("| %d %d %d | %s |", m, n, k, shapes[s].what);
        for (int i = 0; i < nisa; i++) printf(" %.0f |", gf[i]);
        printf(blas ? " %.0f |" : " not built |", peer);
        for (int i = 0; blas && i < nisa; i++) {
            printf(" %.2f |", gf[i] / peer);
            sum[i] += gf[i] / peer;
        }
        printf("\n");
        free(a);
        free(b);
        free(c);
    }
    if (blas) {
        printf("\nmean ratio to OpenBLAS:");
        for (int i = 0; i < nisa; i++) printf(" %s %.2f%s", isas[i], sum[i] / ns, i + 1 < nisa ? "," : "\n");
    }
    cl_gemm_isa_use(was);
    return 0;
}
