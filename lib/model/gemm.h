/* gemm.h — the single matrix-multiply entry point of the model core.
 *
 * Owns: cl_gemm (row-major C = alpha * op(A) * op(B) + beta * C with transpose flags), the
 * backend table it dispatches through, the built-in blocked/packed OpenMP SGEMM ("cpu") and,
 * when built with BLAS=openblas, the cblas_sgemm backend ("openblas").  A CUDA backend
 * registers itself through cl_gemm_register at start-up; nothing here names a CUDA symbol.
 * Must not know about models, layers or losses. */
#ifndef CL_MODEL_GEMM_H
#define CL_MODEL_GEMM_H

enum { CL_N = 0, CL_T = 1 };

/* Row-major SGEMM: op(A) is m x k, op(B) is k x n, C is m x n; ta/tb are CL_N or CL_T; lda, ldb,
 * ldc are the row strides of the stored (untransposed) matrices.  beta == 0 never reads C. */
typedef void cl_sgemm_fn(int ta, int tb, int m, int n, int k, float alpha, const float *a,
                         int lda, const float *b, int ldb, float beta, float *c, int ldc);

typedef struct cl_gemm_backend {
    const char *name;   /* "cpu", "openblas", "cuda" */
    cl_sgemm_fn *sgemm;
} cl_gemm_backend;

/* Multiplies through the current backend (the fastest built one unless cl_gemm_use chose). */
void cl_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc);

/* Selects a backend by name; -1 when that backend is not built into this binary. */
int cl_gemm_use(const char *name);
const char *cl_gemm_backend_name(void);
/* Adds (or replaces, by name) a backend; at most 8.  Returns -1 when the table is full. */
int cl_gemm_register(const cl_gemm_backend *b);

/* The built-in kernel, callable directly (benchmarks compare it with the others). */
void cl_sgemm_cpu(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc);

#endif
