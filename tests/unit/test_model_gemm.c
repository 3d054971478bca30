/* The GEMM entry point: the built-in packed kernel with each ISA micro-kernel this CPU runs (and
 * OpenBLAS when built in) against a naive double-precision product, for every transpose pair,
 * shapes that are not multiples of the register tile or the cache blocks, alpha/beta, sub-matrix
 * strides; a row's result not depending on the batch; and the backend table. */
#include <stdio.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/gemm.h"

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void check_product(cl_sgemm_fn *fn, int ta, int tb, int m, int n, int k, float alpha, float beta, int pad)
{
    unsigned s = (unsigned)(m * 31 + n * 7 + k);
    int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
    float *a = malloc(sizeof(float) * na), *b = malloc(sizeof(float) * nb), *c = malloc(sizeof(float) * nc),
          *c0 = malloc(sizeof(float) * nc);
    for (size_t i = 0; i < na; i++) a[i] = frand(&s);
    for (size_t i = 0; i < nb; i++) b[i] = frand(&s);
    for (size_t i = 0; i < nc; i++) c0[i] = c[i] = beta == 0.0f ? NAN : frand(&s); /* beta 0 must not read C */
    fn(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    double worst = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < ldc; j++) {
            if (j >= n) { /* padding columns stay untouched */
                assert_memory_equal(&c[(size_t)i * ldc + j], &c0[(size_t)i * ldc + j], sizeof(float));
                continue;
            }
            double sum = 0;
            for (int p = 0; p < k; p++)
                sum += (double)(ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]) *
                       (tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j]);
            double want = alpha * sum + (beta == 0.0f ? 0 : beta * (double)c0[(size_t)i * ldc + j]);
            double err = fabs(c[(size_t)i * ldc + j] - want) / (1 + sqrt((double)k));
            if (err > worst) worst = err;
        }
    if (worst > 1e-5)
        fail_msg("ta %d tb %d m %d n %d k %d alpha %g beta %g: error %.3g", ta, tb, m, n, k, alpha, beta, worst);
    free(a); free(b); free(c); free(c0);
}

static void check_backend(cl_sgemm_fn *fn)
{
    static const int shapes[][3] = {{1, 1, 1}, {13, 37, 5}, {12, 32, 256}, {25, 65, 257}, {200, 70, 300},
                                    {7, 3100, 19}, {97, 33, 1}, {3, 5, 700}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                check_product(fn, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f, 0);
                check_product(fn, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], -0.5f, 1.0f, 3);
            }
}

/* Runs fn once per ISA micro-kernel this CPU can run, saying which ones it cannot (an AVX2-only
 * CPU runs avx2 and generic; the avx512 kernel is then covered where CI has AVX-512). */
static void for_each_isa(void (*fn)(void))
{
    const char *was = cl_gemm_isa_name();
    int ran = 0;
    for (int i = 0; cl_gemm_isa_list(i); i++) {
        if (cl_gemm_isa_use(cl_gemm_isa_list(i))) {
            printf("# ISA kernel %s: this CPU cannot run it, not tested here\n", cl_gemm_isa_list(i));
            continue;
        }
        assert_string_equal(cl_gemm_isa_name(), cl_gemm_isa_list(i));
        fn();
        ran++;
    }
    assert_true(ran >= 1);
    assert_int_equal(cl_gemm_isa_use(was), 0);
}

static void odd_shapes(void) { check_backend(cl_sgemm_cpu); }

static void builtin_kernel_matches_naive_product_for_all_transposes_and_odd_shapes(void **st)
{
    (void)st;
    for_each_isa(odd_shapes);
}

static void large_products(void)
{
    check_product(cl_sgemm_cpu, 0, 1, 301, 515, 260, 1.0f, 0.0f, 0);
    check_product(cl_sgemm_cpu, 1, 0, 200, 3200, 33, 2.0f, 0.5f, 1);
}

static void builtin_kernel_threads_large_products_correctly(void **st)
{
    (void)st;
    for_each_isa(large_products);
}

/* Row i of C computed in a batch of m rows equals, bit for bit, the same row computed alone or
 * in a batch of another size (threaded or not): what the local: engine's determinism needs. */
static void rows_alone(void)
{
    enum { M = 75, N = 700, K = 600 };
    unsigned s = 99;
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * N * K), *c = malloc(sizeof(float) * M * N),
          *r = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) a[i] = frand(&s);
    for (int i = 0; i < N * K; i++) b[i] = frand(&s);
    for (int tb = 0; tb < 2; tb++) {
        cl_sgemm_cpu(CL_N, tb, M, N, K, 1.0f, a, K, b, tb ? K : N, 0.0f, c, N);
        for (int i = 0; i < M; i++) cl_sgemm_cpu(CL_N, tb, 1, N, K, 1.0f, a + (size_t)i * K, K, b, tb ? K : N, 0.0f,
                                                 r + (size_t)i * N, N);
        assert_memory_equal(c, r, sizeof(float) * M * N);
        for (int i = 0; i + 7 <= M; i += 7) cl_sgemm_cpu(CL_N, tb, 7, N, K, 1.0f, a + (size_t)i * K, K, b,
                                                         tb ? K : N, 0.0f, r + (size_t)i * N, N);
        assert_memory_equal(c, r, sizeof(float) * M * N);
    }
    free(a); free(b); free(c); free(r);
}

static void builtin_kernel_row_results_do_not_depend_on_the_batch(void **st)
{
    (void)st;
    for_each_isa(rows_alone);
}

static void isa_levels_are_named_and_unknown_ones_refused(void **st)
{
    (void)st;
    const char *was = cl_gemm_isa_name();
    int found = 0;
    for (int i = 0; cl_gemm_isa_list(i); i++) found |= !strcmp(cl_gemm_isa_list(i), was);
    assert_true(found);
    assert_int_equal(cl_gemm_isa_use("generic"), 0); /* every CPU runs the portable kernel */
    assert_int_equal(cl_gemm_isa_use("no-such-isa"), -1);
    assert_string_equal(cl_gemm_isa_name(), "generic");
    assert_int_equal(cl_gemm_isa_use(was), 0);
}

static void zero_k_or_alpha_only_scales_c(void **st)
{
    (void)st;
    float c[6] = {1, 2, 3, 4, 5, 6}, a[1] = {7}, b[1] = {8};
    cl_sgemm_cpu(0, 0, 2, 3, 0, 1.0f, a, 1, b, 3, 2.0f, c, 3);
    assert_true(c[0] == 2.0f && c[5] == 12.0f);
    cl_sgemm_cpu(0, 0, 2, 3, 1, 0.0f, a, 1, b, 3, 0.0f, c, 3);
    for (int i = 0; i < 6; i++) assert_true(c[i] == 0.0f);
}

static void backend_table_selects_by_name_and_refuses_unbuilt_ones(void **st)
{
    (void)st;
    assert_int_equal(cl_gemm_use("cpu"), 0);
    assert_string_equal(cl_gemm_backend_name(), "cpu");
    assert_int_equal(cl_gemm_use("no-such-backend"), -1);
    assert_string_equal(cl_gemm_backend_name(), "cpu");
#ifndef CL_HAVE_CUDA
    assert_int_equal(cl_gemm_use("cuda"), -1);
#endif
    /* a registered backend (what the CUDA module does at start-up) receives the calls */
    cl_gemm_backend mine = {"test", cl_sgemm_cpu};
    assert_int_equal(cl_gemm_register(&mine), 0);
    assert_int_equal(cl_gemm_use("test"), 0);
    float a[2] = {1, 2}, b[2] = {3, 4}, c[1];
    cl_gemm(0, 1, 1, 1, 2, 1.0f, a, 2, b, 2, 0.0f, c, 1);
    assert_true(c[0] == 11.0f);
    assert_int_equal(cl_gemm_use("cpu"), 0);
}

static void openblas_backend_matches_naive_product_when_built(void **st)
{
    (void)st;
#ifdef CL_HAVE_CBLAS
    assert_int_equal(cl_gemm_use("openblas"), 0);
    check_backend(cl_gemm);
    assert_int_equal(cl_gemm_use("cpu"), 0);
#else
    assert_int_equal(cl_gemm_use("openblas"), -1); /* not built into this binary: refused by name */
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(builtin_kernel_matches_naive_product_for_all_transposes_and_odd_shapes),
        cmocka_unit_test(builtin_kernel_threads_large_products_correctly),
        cmocka_unit_test(builtin_kernel_row_results_do_not_depend_on_the_batch),
        cmocka_unit_test(isa_levels_are_named_and_unknown_ones_refused),
        cmocka_unit_test(zero_k_or_alpha_only_scales_c),
        cmocka_unit_test(backend_table_selects_by_name_and_refuses_unbuilt_ones),
        cmocka_unit_test(openblas_backend_matches_naive_product_when_built),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
