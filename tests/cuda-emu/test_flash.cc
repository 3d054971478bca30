// test_flash.cc — lib/cuda's flash attention kernels (cu_flash_fwd, cu_flash_bwd) against the CPU
// reference (ops.c's cl_attention_fwd/bwd): outputs, log-sum-exps (computed here in double), and the gradients dq, dk, dv, which must ACCUMULATE
// onto what the buffers held.  Shapes cover T below, at and above the 64-query block and
// across the key tiles (1, 31, 37, 64, 65, 130), grouped-query heads (4:2, 6:2, 8:1), plain
// multi-head, packed segments, and head sizes 8 and 16 (the bounded kernels) and 64 and 128 (the
// unrolled ones).  All values fp32; tolerance 1e-5 of the largest reference value per tensor
// (the sums differ only in order).
//
// Without a GPU it runs the real kernels.cu under the coroutine emulation (tests/cuda-emu,
// built with -DCL_CUDA_EMU: every pointer checked against its allocation), in every `make
// test`; `make CUDA=1` builds it against the CUDA runtime and scripts/device-check runs it on
// the GPU, where a machine without one SKIPS loudly.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
extern "C" {
#include <cmocka.h>
}
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/chost.cuh"
#include "cuda/kernels.cuh"
extern "C" {
#include "model/ops.h"
#include "model/llama.h"
}

#define TOL 1e-5

struct shape {
    int b, t, nh, nkv, hd, packed;
};

static float *dcopy(const float *h, size_t n)
{
    void *d = NULL;
    if (cudaMalloc(&d, n * sizeof(float)) != cudaSuccess) fail_msg("cudaMalloc of %zu floats", n);
    if (h) assert_int_equal(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice), 0);
    return (float *)d;
}

static void hcopy(float *h, const float *d, size_t n)
{
    assert_int_equal(cudaMemcpy(h, d, n * sizeof(float), cudaMemcpyDeviceToHost), 0);
}

static float *randv(size_t n, uint64_t seed, float amp)
{
    float *x = (float *)malloc(n * sizeof(float));
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) x[i] = amp * (float)(2 * cl_hash_uniform(seed, (uint64_t)i) - 1);
    return x;
}

static double rel_err(const float *ref, const float *got, size_t n)
{
    double mx = 1e-6, d = 0;
    for (size_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs(ref[i]));
        d = fmax(d, fabs((double)got[i] - ref[i]));
    }
    return d / mx;
}

static void expect(const char *what, const shape &s, const float *ref, const float *got, size_t n)
{
    double e = rel_err(ref, got, n);
    print_message("# b %d t %d heads %d/%d hd %d%s: %s relative error %.3g\n", s.b, s.t, s.nh, s.nkv, s.hd,
                  s.packed ? " packed" : "", what, e);
    if (!(e <= TOL)) fail_msg("%s: relative error %.3g exceeds %g", what, e, TOL);
}

// log-sum-exp of each row's visible scaled scores, in double
static void ref_lse(float *lse, const float *q, const float *k, const int *seg, const shape &s)
{
    double scale = 1.0 / sqrt((double)s.hd);
    for (int bi = 0; bi < s.b; bi++)
        for (int h = 0; h < s.nh; h++)
            for (int i = 0; i < s.t; i++) {
                long ri = (long)bi * s.t + i;
                const float *qi = q + ri * s.nh * s.hd + h * s.hd;
                double mx = -INFINITY, sum = 0, *sc = (double *)malloc(sizeof(double) * (size_t)(i + 1));
                for (int j = 0; j <= i; j++) {
                    long rj = (long)bi * s.t + j;
                    const float *kj = k + rj * s.nkv * s.hd + h / (s.nh / s.nkv) * s.hd;
                    sc[j] = -INFINITY;
                    if (seg && seg[rj] != seg[ri]) continue;
                    double dot = 0;
                    for (int d = 0; d < s.hd; d++) dot += (double)qi[d] * kj[d];
                    sc[j] = dot * scale;
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j <= i; j++) sum += exp(sc[j] - mx);
                lse[((long)bi * s.nh + h) * s.t + i] = (float)(mx + log(sum));
                free(sc);
            }
}

static void check_shape(const shape &s)
{
    size_t n = (size_t)s.b * s.t, nq = n * s.nh * s.hd, nk = n * s.nkv * s.hd, nl = n * s.nh;
    float *q = randv(nq, 1, 2), *k = randv(nk, 2, 2), *v = randv(nk, 3, 1), *dy = randv(nq, 4, 1);
    float *dq0 = randv(nq, 5, 1), *dk0 = randv(nk, 6, 1), *dv0 = randv(nk, 7, 1); // what the gradients hold
    int *seg = NULL;
    if (s.packed) {
        seg = (int *)malloc(sizeof(int) * n);
        assert_non_null(seg);
        for (size_t r = 0; r < n; r++) seg[r] = (int)((r % s.t) / 23 + (r % s.t > 40 ? 5 : 0)); // uneven pieces
    }
    // the reference
    float *y = (float *)malloc(nq * sizeof(float)), *lse = (float *)malloc(nl * sizeof(float));
    float *dq = (float *)malloc(nq * sizeof(float)), *dk = (float *)malloc(nk * sizeof(float)),
          *dv = (float *)malloc(nk * sizeof(float));
    memcpy(dq, dq0, nq * sizeof(float));
    memcpy(dk, dk0, nk * sizeof(float));
    memcpy(dv, dv0, nk * sizeof(float));
    cl_attention_fwd(y, q, k, v, seg, s.b, s.t, s.nh, s.nkv, s.hd);
    cl_attention_bwd(dq, dk, dv, dy, q, k, v, seg, s.b, s.t, s.nh, s.nkv, s.hd);
    ref_lse(lse, q, k, seg, s);
    // the kernels
    float *Q = dcopy(q, nq), *K = dcopy(k, nk), *V = dcopy(v, nk), *DY = dcopy(dy, nq), *Y = dcopy(NULL, nq),
          *L = dcopy(NULL, nl), *DD = dcopy(NULL, nl), *DQ = dcopy(dq0, nq), *DK = dcopy(dk0, nk),
          *DV = dcopy(dv0, nk);
    int *SEG = NULL;
    if (seg) {
        assert_int_equal(cudaMalloc((void **)&SEG, sizeof(int) * n), 0);
        assert_int_equal(cudaMemcpy(SEG, seg, sizeof(int) * n, cudaMemcpyHostToDevice), 0);
    }
    cu_flash_fwd(Y, L, Q, K, V, SEG, s.b, s.t, s.nh, s.nkv, s.hd);
    cu_flash_bwd(DQ, DK, DV, DD, DY, Y, L, Q, K, V, SEG, s.b, s.t, s.nh, s.nkv, s.hd);
    assert_int_equal(cudaDeviceSynchronize(), 0);
    float *got = (float *)malloc(nq * sizeof(float));
    hcopy(got, Y, nq);
    expect("output", s, y, got, nq);
    hcopy(got, L, nl);
    expect("log-sum-exp", s, lse, got, nl);
    hcopy(got, DQ, nq);
    expect("dq (accumulated)", s, dq, got, nq);
    hcopy(got, DK, nk);
    expect("dk (accumulated)", s, dk, got, nk);
    hcopy(got, DV, nk);
    expect("dv (accumulated)", s, dv, got, nk);
    float *dev[] = {Q, K, V, DY, Y, L, DD, DQ, DK, DV};
    for (float *p : dev) cudaFree(p);
    cudaFree(SEG);
    float *host[] = {q, k, v, dy, dq0, dk0, dv0, y, lse, dq, dk, dv, got};
    for (float *p : host) free(p);
    free(seg);
}

static void single_token(void **st) { (void)st, check_shape({1, 1, 2, 1, 16, 0}); }
static void t31_below_one_key_tile_gqa(void **st) { (void)st, check_shape({2, 31, 4, 2, 16, 0}); }
static void t37_across_key_tiles_gqa_packed(void **st) { (void)st, check_shape({2, 37, 4, 2, 16, 1}); }
static void t64_exactly_one_query_block(void **st) { (void)st, check_shape({1, 64, 4, 4, 8, 0}); }
static void t65_one_query_past_the_block(void **st) { (void)st, check_shape({1, 65, 6, 2, 16, 0}); }
static void t130_three_query_blocks_packed(void **st) { (void)st, check_shape({1, 130, 4, 2, 8, 1}); }
static void hd64_unrolled_gqa(void **st) { (void)st, check_shape({2, 70, 4, 2, 64, 0}); }
static void hd128_unrolled_one_kv_head(void **st) { (void)st, check_shape({1, 45, 8, 1, 128, 1}); }

int main(void)
{
#ifndef CL_CUDA_EMU
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
        fprintf(stderr, "test_cuda_flash: SKIP: no CUDA device on this machine; the flash kernels are NOT tested on a "
                        "GPU here (the emulated build tests them on the CPU)\n");
        printf("1..0 # SKIP no CUDA device\n");
        return 0;
    }
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(single_token),
        cmocka_unit_test(t31_below_one_key_tile_gqa),
        cmocka_unit_test(t37_across_key_tiles_gqa_packed),
        cmocka_unit_test(t64_exactly_one_query_block),
        cmocka_unit_test(t65_one_query_past_the_block),
        cmocka_unit_test(t130_three_query_blocks_packed),
        cmocka_unit_test(hd64_unrolled_gqa),
        cmocka_unit_test(hd128_unrolled_one_kv_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
