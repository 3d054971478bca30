/* gemm.h — the single matrix-multiply entry point of the model core.
 *
 * Owns: cl_gemm (row-major C = alpha * op(A) * op(B) + beta * C with transpose flags), the
 * backend table it dispatches through, the built-in blocked/packed OpenMP SGEMM ("cpu") with
 * one micro-kernel per ISA level chosen at run time, and, unless built with BLAS=none, the
 * OpenBLAS cblas_sgemm backend ("openblas", the default: it dispatches per CPU itself).  A CUDA backend
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

/* The built-in kernel, callable directly (benchmarks compare it with the others).
 * Batch invariance: an element of C depends only on its row of op(A), its column of op(B), k,
 * alpha, beta and the ISA kernel in use — never on m, n or the thread count.  K is blocked at
 * fixed offsets, each element is summed in one order, and edge tiles run the same instructions
 * as whole ones.  So a row's result does not change with the other rows of the batch.  The
 * OpenBLAS backend promises no such thing (its kernels and blocking may vary with the shape):
 * code that needs the guarantee calls cl_sgemm_cpu. */
void cl_sgemm_cpu(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc);

/* The built-in kernel's ISA level: "avx512", "avx2" (with FMA), "generic" (x86-64 lists all three,
 * other targets only "generic").  By default the best the running CPU supports; the environment
 * variable CL_CPU, read at first use, may name a lower one.  cl_gemm_isa_use returns -1 for a
 * name that is unknown or that this CPU cannot run (the level stays as it was). */
int cl_gemm_isa_use(const char *name);
const char *cl_gemm_isa_name(void);
/* The i-th level this build knows, best first; NULL past the end. */
const char *cl_gemm_isa_list(int i);

#endif
