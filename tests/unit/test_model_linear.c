/* The decode kernels (model/linear.h): products right against a double reference for fp32
 * and bf16 weights at awkward sizes, each row bitwise the same whatever else shares the call
 * (m = 1, 7, 32) and however many threads run, in every kernel this CPU has (CL_SIMD=avx512,
 * avx2 — the path of machines without AVX-512, forced here — and scalar), and the kernels
 * close to each other. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/linear.h"

enum { IN = 301, OUT = 131, M = 32 }; /* m = 7 is past the threading threshold */

static float *randoms(int n, uint64_t seed)
{
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < n; i++) x[i] = (float)(2 * cl_hash_uniform(seed, (uint64_t)i) - 1);
    return x;
}

/* each row of an m-row call, bitwise equal to the same row alone */
static void rows_are_batch_invariant(const void *w, cl_dtype dt, const float *b, const float *x)
{
    float *all = malloc(sizeof(float) * M * OUT), *seven = malloc(sizeof(float) * 7 * OUT), one[OUT];
    cl_linear_rows(all, x, w, dt, b, M, IN, OUT);
    for (int r = 0; r < M; r++) {
        cl_linear_rows(one, x + (size_t)r * IN, w, dt, b, 1, IN, OUT);
        assert_memory_equal(one, all + (size_t)r * OUT, sizeof one);
    }
    cl_linear_rows(seven, x + 5 * IN, w, dt, b, 7, IN, OUT);
    assert_memory_equal(seven, all + 5 * OUT, sizeof(float) * 7 * OUT);
    int threads = omp_get_max_threads();
    omp_set_num_threads(threads > 1 ? 1 : 2);
    cl_linear_rows(seven, x + 5 * IN, w, dt, b, 7, IN, OUT);
    omp_set_num_threads(threads);
    assert_memory_equal(seven, all + 5 * OUT, sizeof(float) * 7 * OUT);
    free(all);
    free(seven);
}

static void check_kernel(void)
{
    float *w = randoms(OUT * IN, 1), *x = randoms(M * IN, 2), *b = randoms(OUT, 3);
    uint16_t *w16 = malloc(sizeof(uint16_t) * OUT * IN);
    for (int i = 0; i < OUT * IN; i++) w16[i] = cl_f32_to_bf16(w[i]);
    float *out = malloc(sizeof(float) * M * OUT), *o16 = malloc(sizeof(float) * M * OUT);
    cl_linear_rows(out, x, w, CL_F32, b, M, IN, OUT);
    cl_linear_rows(o16, x, w16, CL_BF16, NULL, M, IN, OUT);
    for (int r = 0; r < M; r++)
        for (int o = 0; o < OUT; o++) {
            double ref = b[o], ref16 = 0;
            for (int k = 0; k < IN; k++) {
                ref += (double)x[r * IN + k] * w[o * IN + k];
                ref16 += (double)x[r * IN + k] * cl_bf16_to_f32(w16[o * IN + k]);
            }
            assert_true(fabs(out[r * OUT + o] - ref) < 1e-5);
            assert_true(fabs(o16[r * OUT + o] - ref16) < 1e-5);
        }
    rows_are_batch_invariant(w, CL_F32, b, x);
    rows_are_batch_invariant(w16, CL_BF16, NULL, x);
    free(w);
    free(x);
    free(b);
    free(w16);
    free(out);
    free(o16);
}

static const char *const isas[] = {"avx512", "avx2", "scalar"};

static void every_kernel_is_right_and_batch_invariant(void **s)
{
    (void)s;
    int ran = 0;
    for (int i = 0; i < 3; i++) {
        setenv("CL_SIMD", isas[i], 1);
        if (strcmp(cl_linear_isa(), isas[i]) != 0) continue; /* this CPU lacks it */
        check_kernel();
        ran++;
    }
    unsetenv("CL_SIMD");
    assert_true(ran >= 1);
    print_message("kernels checked: %d (default here: %s)\n", ran, cl_linear_isa());
}

static void the_kernels_agree(void **s)
{
    (void)s;
    float *w = randoms(OUT * IN, 4), *x = randoms(M * IN, 5), a[M * OUT], c[M * OUT];
    setenv("CL_SIMD", "scalar", 1);
    cl_linear_rows(a, x, w, CL_F32, NULL, M, IN, OUT);
    for (int k = 0; k < 2; k++) {
        setenv("CL_SIMD", isas[k], 1);
        cl_linear_rows(c, x, w, CL_F32, NULL, M, IN, OUT);
        for (int i = 0; i < M * OUT; i++) assert_true(fabsf(a[i] - c[i]) < 1e-5f);
    }
    unsetenv("CL_SIMD");
    free(w);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_kernel_is_right_and_batch_invariant),
        cmocka_unit_test(the_kernels_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
