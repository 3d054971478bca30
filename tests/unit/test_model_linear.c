/* The decode kernels (model/linear.h): the decode layout (panels of 16 outputs, zero padding,
 * rows read back, bf16 rounding from fp32); products right against a double reference for fp32
 * and bf16 weights at awkward sizes (k shorter than a vector, outputs short of a panel, partial
 * last panels and tiles), each row bitwise the same whatever else shares the call (m = 1, 2, 3,
 * 7, 33: every partial row tile, a row block of 32 and one past it; one row, whose four streams
 * split the panels in quarters) and however many threads run, in every kernel this CPU has
 * (CL_SIMD=avx512, avx2 — the path of machines without AVX-512, forced here — and scalar); the
 * kernels bitwise equal to each other (one FMA chain an element); products run together
 * (cl_linear_parts) bitwise equal to each alone; the strided product (attention scores) right;
 * the weighted sum in blocks of positions equal to one call;
 * argmax's first-maximum rule; the sampler's weights and sums right and the same in every kernel. */
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

enum { M = 33 }; /* m = 7 is past the threading threshold at the largest shape */
static const int shapes[][2] = {{301, 131}, {5, 7}, {48, 50}, {64, 12}, {288, 97}, {1030, 49}, {96, 1003}, {16, 64}};
static int IN, OUT;

static float *randoms(int n, uint64_t seed)
{
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < n; i++) x[i] = (float)(2 * cl_hash_uniform(seed, (uint64_t)i) - 1);
    return x;
}

/* w [out][in] (src_dt) in the decode layout as dt, in a new buffer */
static void *packed(const void *w, cl_dtype src_dt, cl_dtype dt, int out, int in)
{
    void *p = malloc(cl_linear_panels_bytes(out, in, dt));
    cl_linear_pack(p, dt, w, src_dt, out, in);
    return p;
}

/* every row read back as it went in (bf16: exactly, or rounded from fp32), the padding zeros */
static void the_layout_holds_the_rows(const float *w, const uint16_t *w16)
{
    void *p32 = packed(w, CL_F32, CL_F32, OUT, IN), *p16 = packed(w16, CL_BF16, CL_BF16, OUT, IN),
         *r16 = packed(w, CL_F32, CL_BF16, OUT, IN);
    float *row = malloc(sizeof(float) * (size_t)IN);
    assert_int_equal(cl_linear_panels_bytes(OUT, IN, CL_BF16) * 2, cl_linear_panels_bytes(OUT, IN, CL_F32));
    for (int o = 0; o < OUT; o++) {
        cl_linear_unpack_row(row, p32, CL_F32, o, IN);
        assert_memory_equal(row, w + (size_t)o * IN, sizeof(float) * (size_t)IN);
        cl_linear_unpack_row(row, p16, CL_BF16, o, IN);
        for (int k = 0; k < IN; k++) assert_true(row[k] == cl_bf16_to_f32(w16[(size_t)o * IN + k]));
        cl_linear_unpack_row(row, r16, CL_BF16, o, IN);
        for (int k = 0; k < IN; k++) assert_true(row[k] == cl_bf16_to_f32(cl_f32_to_bf16(w[(size_t)o * IN + k])));
    }
    for (int o = OUT; o % 16; o++) {
        cl_linear_unpack_row(row, p32, CL_F32, o, IN);
        for (int k = 0; k < IN; k++) assert_true(row[k] == 0.0f);
    }
    free(p32);
    free(p16);
    free(r16);
    free(row);
}

/* each row of an m-row call, bitwise equal to the same row alone */
static void rows_are_batch_invariant(const void *w, cl_dtype dt, const float *b, const float *x)
{
    float *all = malloc(sizeof(float) * M * OUT), *seven = malloc(sizeof(float) * 7 * OUT),
          *one = malloc(sizeof(float) * 3 * OUT);
    cl_linear_rows(all, x, w, dt, b, M, IN, OUT);
    for (int r = 0; r < M; r++) {
        cl_linear_rows(one, x + (size_t)r * IN, w, dt, b, 1, IN, OUT);
        assert_memory_equal(one, all + (size_t)r * OUT, sizeof(float) * OUT);
    }
    for (int m = 2; m <= 3; m++) {
        cl_linear_rows(one, x + (size_t)(M - m) * IN, w, dt, b, m, IN, OUT);
        assert_memory_equal(one, all + (size_t)(M - m) * OUT, sizeof(float) * (size_t)(m * OUT));
    }
    cl_linear_rows(seven, x + 5 * IN, w, dt, b, 7, IN, OUT);
    assert_memory_equal(seven, all + 5 * OUT, sizeof(float) * 7 * OUT);
    int threads = omp_get_max_threads();
    omp_set_num_threads(threads > 1 ? 1 : 2);
    cl_linear_rows(seven, x + 5 * IN, w, dt, b, 7, IN, OUT);
    cl_linear_rows(one, x + 9 * IN, w, dt, b, 1, IN, OUT); /* one row splits the outputs per thread */
    omp_set_num_threads(threads);
    assert_memory_equal(seven, all + 5 * OUT, sizeof(float) * 7 * OUT);
    assert_memory_equal(one, all + 9 * OUT, sizeof(float) * OUT);
    free(all);
    free(seven);
    free(one);
}

/* cl_linear_parts: each part (fp32 with and without bias, bf16; more parts than one loop
 * takes, for the rest run after) bitwise what cl_linear_rows gives it alone, at m = 1, 7, M */
static void parts_are_each_alone(const float *w, const uint16_t *w16, const float *b, const float *x)
{
    enum { P = CL_LINEAR_MAX_PARTS + 2 };
    float *got[P], *want = malloc(sizeof(float) * M * OUT);
    void *pw[P];
    cl_linear_part p[P];
    for (int i = 0; i < P; i++) {
        got[i] = malloc(sizeof(float) * M * OUT);
        int sub = OUT - i % 3 > 0 ? OUT - i % 3 : 1; /* parts of differing widths: the first rows of W */
        cl_dtype dt = i % 3 == 2 ? CL_BF16 : CL_F32;
        pw[i] = packed(dt == CL_BF16 ? (const void *)w16 : w, dt, dt, sub, IN);
        p[i] = (cl_linear_part){got[i], pw[i], dt, i % 3 == 1 ? b : NULL, sub};
    }
    const int ms[] = {1, 7, M};
    for (int k = 0; k < 3; k++) {
        cl_linear_parts(p, P, x, ms[k], IN);
        for (int i = 0; i < P; i++) {
            cl_linear_rows(want, x, p[i].w, p[i].dt, p[i].b, ms[k], IN, p[i].out_dim);
            assert_memory_equal(got[i], want, sizeof(float) * (size_t)(ms[k] * p[i].out_dim));
        }
    }
    for (int i = 0; i < P; i++) {
        free(got[i]);
        free(pw[i]);
    }
    free(want);
}

static void check_kernel(void)
{
    float *w = randoms(OUT * IN, 1), *x = randoms(M * IN, 2), *b = randoms(OUT, 3);
    uint16_t *w16 = malloc(sizeof(uint16_t) * OUT * IN);
    for (int i = 0; i < OUT * IN; i++) w16[i] = cl_f32_to_bf16(w[i]);
    void *p32 = packed(w, CL_F32, CL_F32, OUT, IN), *p16 = packed(w16, CL_BF16, CL_BF16, OUT, IN);
    float *out = malloc(sizeof(float) * M * OUT), *o16 = malloc(sizeof(float) * M * OUT),
          *sc = malloc(sizeof(float) * OUT);
    the_layout_holds_the_rows(w, w16);
    cl_linear_rows(out, x, p32, CL_F32, b, M, IN, OUT);
    cl_linear_rows(o16, x, p16, CL_BF16, NULL, M, IN, OUT);
    for (int r = 0; r < M; r++) {
        cl_linear_strided(sc, x + (size_t)r * IN, w, (size_t)IN, IN, OUT);
        for (int o = 0; o < OUT; o++) {
            /* one rounding an FMA, in k's order: |error| <= in * eps * sum |x w| (loosely) */
            double ref = b[o], ref16 = 0, mag = 0;
            for (int k = 0; k < IN; k++) {
                ref += (double)x[r * IN + k] * w[o * IN + k];
                ref16 += (double)x[r * IN + k] * cl_bf16_to_f32(w16[o * IN + k]);
                mag += fabs((double)x[r * IN + k] * w[o * IN + k]);
            }
            double tol = 1e-6 + IN * 6e-8 * mag;
            assert_true(fabs(out[r * OUT + o] - ref) < tol);
            assert_true(fabs(o16[r * OUT + o] - ref16) < tol);
            assert_true(fabs(sc[o] - (ref - b[o])) < tol);
        }
    }
    rows_are_batch_invariant(p32, CL_F32, b, x);
    parts_are_each_alone(w, w16, b, x);
    rows_are_batch_invariant(p32, CL_F32, NULL, x);
    rows_are_batch_invariant(p16, CL_BF16, NULL, x);
    free(w);
    free(x);
    free(b);
    free(w16);
    free(p32);
    free(p16);
    free(out);
    free(o16);
    free(sc);
}

static const char *const isas[] = {"avx512", "avx2", "scalar"};

static void every_kernel_is_right_and_batch_invariant(void **s)
{
    (void)s;
    int ran = 0;
    for (int i = 0; i < 3; i++) {
        setenv("CL_SIMD", isas[i], 1);
        if (strcmp(cl_linear_isa(), isas[i]) != 0) continue; /* this CPU lacks it */
        for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
            IN = shapes[k][0], OUT = shapes[k][1];
            check_kernel();
        }
        ran++;
    }
    unsetenv("CL_SIMD");
    cl_linear_isa();
    assert_true(ran >= 1);
    print_message("kernels checked: %d (default here: %s)\n", ran, cl_linear_isa());
}

/* one fixed order with FMAs: the same bits in every kernel — products (fp32 and bf16, one row
 * and many), attention's strided dot products (k with and without a tail) and weighted sums */
static void the_kernels_agree(void **s)
{
    (void)s;
    IN = 301, OUT = 131;
    float *w = randoms(OUT * IN, 4), *x = randoms(M * IN, 5), *b = randoms(OUT, 6);
    int ran = 0;
    for (int d = 0; d < 2; d++) {
        cl_dtype dt = d ? CL_BF16 : CL_F32;
        void *p = packed(w, CL_F32, dt, OUT, IN);
        float *a = malloc(sizeof(float) * M * OUT), *c = malloc(sizeof(float) * M * OUT);
        for (int m = 1; m <= M; m += M - 1) {
            setenv("CL_SIMD", "scalar", 1);
            assert_string_equal(cl_linear_isa(), "scalar");
            cl_linear_rows(a, x, p, dt, b, m, IN, OUT);
            for (int k = 0; k < 2; k++) {
                setenv("CL_SIMD", isas[k], 1);
                if (strcmp(cl_linear_isa(), isas[k]) != 0) continue;
                cl_linear_rows(c, x, p, dt, b, m, IN, OUT);
                assert_memory_equal(a, c, sizeof(float) * (size_t)(m * OUT));
                ran++;
            }
        }
        free(p);
        free(a);
        free(c);
    }
    const int ks[] = {64, 48, 77, 5};
    float sa[131], sc[131];
    for (int i = 0; i < 4; i++)
        for (int f = 0; f < 2; f++) { /* f: strided scores over OUT rows of w; mix of M rows of x */
            setenv("CL_SIMD", "scalar", 1);
            assert_string_equal(cl_linear_isa(), "scalar");
            if (f)
                cl_linear_mix(sa, b, x, (size_t)IN, M, ks[i], 0);
            else
                cl_linear_strided(sa, x, w, (size_t)IN, ks[i], OUT);
            for (int k = 0; k < 2; k++) {
                setenv("CL_SIMD", isas[k], 1);
                if (strcmp(cl_linear_isa(), isas[k]) != 0) continue;
                if (f)
                    cl_linear_mix(sc, b, x, (size_t)IN, M, ks[i], 0);
                else
                    cl_linear_strided(sc, x, w, (size_t)IN, ks[i], OUT);
                assert_memory_equal(sa, sc, sizeof(float) * (size_t)(f ? ks[i] : OUT));
                if (f) { /* in two blocks of positions, the second going on from the first */
                    cl_linear_mix(sc, b, x, (size_t)IN, 13, ks[i], 0);
                    cl_linear_mix(sc, b + 13, x + (size_t)13 * IN, (size_t)IN, M - 13, ks[i], 1);
                    assert_memory_equal(sa, sc, sizeof(float) * (size_t)ks[i]);
                }
                ran++;
            }
        }
    unsetenv("CL_SIMD");
    cl_linear_isa();
    assert_true(ran >= 4);
    free(w);
    free(x);
    free(b);
}

/* greedy decoding's scan: the first of equal maxima, NaNs passed over (a NaN first stays:
 * nothing compares larger), -inf everywhere gives 0; every length around the vector width and
 * the maximum in every lane */
static int first_max(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

static void argmax_takes_the_first_maximum(void **s)
{
    (void)s;
    float v[40];
    for (int i = 0; i < 3; i++) {
        setenv("CL_SIMD", isas[i], 1);
        cl_linear_isa();
        for (int n = 1; n <= 40; n++) {
            for (int j = 0; j < n; j++) v[j] = (float)((j * 7) % 5); /* 0 2 4 1 3 0 2 4 ...: ties */
            assert_int_equal(cl_argmax(v, n), first_max(v, n));
            for (int at = 0; at < n; at++) { /* a NaN anywhere */
                float keep = v[at];
                v[at] = NAN;
                assert_int_equal(cl_argmax(v, n), first_max(v, n));
                v[at] = keep;
            }
            for (int j = 0; j < n; j++) v[j] = -INFINITY;
            assert_int_equal(cl_argmax(v, n), 0);
            v[n - 1] = 1;
            assert_int_equal(cl_argmax(v, n), n - 1);
        }
    }
    unsetenv("CL_SIMD");
    cl_linear_isa();
}

/* the sampler's weights (exp((x - top) / T), the top weighing 1) and their sums in dot16's
 * order: right against libm and a double sum, and the same bits in every kernel, at lengths
 * around the 16 lanes and the vocabulary's */
static void sampler_weights_and_sums_agree(void **s)
{
    (void)s;
    enum { N = 1000 };
    static float w[2][N];
    float *x = randoms(N, 9), sum[2][4];
    const int ns[] = {N, 64, 17, 3};
    for (int i = 0; i < N; i++) x[i] *= 8;
    int top = cl_argmax(x, N), ran = 0;
    for (int k = 2; k >= 0; k--) { /* scalar first: the reference */
        float *o = w[k < 2];
        setenv("CL_SIMD", isas[k], 1);
        if (strcmp(cl_linear_isa(), isas[k]) != 0) continue; /* this CPU lacks it */
        cl_linear_weights(o, x, N, x[top], 1.0f / 0.7f);
        for (int j = 0; j < 4; j++) sum[k < 2][j] = cl_linear_sum16(o, ns[j]);
        if (k == 2) continue;
        assert_memory_equal(w[0], w[1], sizeof w[0]);
        assert_memory_equal(sum[0], sum[1], sizeof sum[0]);
        ran++;
    }
    unsetenv("CL_SIMD");
    cl_linear_isa();
    assert_true(w[0][top] == 1.0f);
    for (int j = 0; j < 4; j++) {
        double ref = 0;
        for (int i = 0; i < ns[j]; i++) {
            double want = exp((double)((x[i] - x[top]) * (1.0f / 0.7f))); /* the argument as rounded */
            assert_true(fabs(w[0][i] - want) <= 4e-7 * want + 1e-30);
            ref += w[0][i];
        }
        assert_true(fabs(sum[0][j] - ref) <= 1e-6 * ref);
    }
#ifdef __x86_64__
    assert_true(ran >= 1);
#endif
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_kernel_is_right_and_batch_invariant),
        cmocka_unit_test(the_kernels_agree),
        cmocka_unit_test(argmax_takes_the_first_maximum),
        cmocka_unit_test(sampler_weights_and_sums_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
