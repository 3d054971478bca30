/* model-bench-gemm — GFLOP/s of the built-in SGEMM against every other built backend on the
 * shapes one training step of a d=768, ffn=2048, vocab=32000 Llama at 1024 tokens multiplies.
 * Prints one Markdown table row per shape: shape, backend GFLOP/s..., ratio cpu/best-other.
 * Usage: model-bench-gemm [reps]   (median of reps timings per shape and backend) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "model/gemm.h"

#ifdef CL_HAVE_CBLAS
#include <cblas.h>

/* The peer as users call it: OpenBLAS with its own thread pool. */
static void openblas_own_threads(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                                 const float *b, int ldb, float beta, float *c, int ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
                lda, b, ldb, beta, c, ldc);
}
#endif

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1 || reps > 100) reps = 5;
    static const struct { const char *what; int ta, tb, m, n, k; } shapes[] = {
        {"fwd qkvo  x.W^T", CL_N, CL_T, 1024, 768, 768},
        {"fwd up    x.W^T", CL_N, CL_T, 1024, 2048, 768},
        {"fwd down  x.W^T", CL_N, CL_T, 1024, 768, 2048},
        {"fwd head  x.W^T", CL_N, CL_T, 1024, 32000, 768},
        {"bwd dx    dy.W", CL_N, CL_N, 1024, 768, 2048},
        {"bwd dW    dy^T.x", CL_T, CL_N, 2048, 768, 1024},
        {"bwd dW    dy^T.x", CL_T, CL_N, 768, 768, 1024},
    };
#ifdef CL_HAVE_CBLAS
    cl_sgemm_fn *fns[2] = {cl_sgemm_cpu, openblas_own_threads};
#else
    cl_sgemm_fn *fns[2] = {cl_sgemm_cpu, NULL};
#endif
    printf("| shape (m n k) | op | built-in GFLOP/s | OpenBLAS GFLOP/s | built-in / OpenBLAS |\n");
    printf("|---|---|---|---|---|\n");
    double sum_ratio = 0;
    int nratio = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int m = shapes[s].m, n = shapes[s].n, k = shapes[s].k;
        float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n),
              *c = malloc(sizeof(float) * m * n);
        for (long i = 0; i < (long)m * k; i++) a[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
        for (long i = 0; i < (long)k * n; i++) b[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
        double gf[2] = {0, 0};
        for (int be = 0; be < 2; be++) {
            if (!fns[be]) continue;
            int lda = shapes[s].ta ? m : k, ldb = shapes[s].tb ? k : n;
            double t[100];
            fns[be](shapes[s].ta, shapes[s].tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
            for (int r = 0; r < reps; r++) {
                double t0 = bench_now();
                fns[be](shapes[s].ta, shapes[s].tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
                t[r] = bench_now() - t0;
            }
            gf[be] = 2.0 * m * n * k / bench_median(t, reps) * 1e-9;
        }
        if (fns[1]) {
            printf("| %d %d %d | %s | %.0f | %.0f | %.2f |\n", m, n, k, shapes[s].what, gf[0], gf[1],
                   gf[0] / gf[1]);
            sum_ratio += gf[0] / gf[1];
            nratio++;
        } else {
            printf("| %d %d %d | %s | %.0f | not built | - |\n", m, n, k, shapes[s].what, gf[0]);
        }
        free(a);
        free(b);
        free(c);
    }
    if (nratio) printf("\nmean ratio built-in / OpenBLAS: %.2f\n", sum_ratio / nratio);
    return 0;
}
