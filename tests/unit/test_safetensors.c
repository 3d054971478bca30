/* Unit tests for lib/model/safetensors: conversions, round trips, checkpoints, validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/safetensors.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/cl-st.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

static void half_precision_rounds_to_nearest_even(void **state)
{
    (void)state;
    float in[] = {1.0f, -2.0f, 0.0f, 65504.0f, 1e-7f, 3.140625f, 1.00390625f, INFINITY};
    uint16_t bf[8], h[8];
    assert_int_equal(cl_st_from_f32(CL_ST_BF16, in, bf, 8), 0);
    assert_int_equal(cl_st_from_f32(CL_ST_F16, in, h, 8), 0);
    assert_int_equal(bf[0], 0x3f80);
    assert_int_equal(bf[1], 0xc000);
    assert_int_equal(bf[6], 0x3f80); /* 1 + 2^-8 is a tie: rounds to even 1.0 */
    assert_int_equal(h[0], 0x3c00);
    assert_int_equal(h[3], 0x7bff);
    assert_int_equal(h[7], 0x7c00);
    float back[8];
    assert_int_equal(cl_st_to_f32(CL_ST_F16, h, back, 8), 0);
    assert_true(back[5] == 3.140625f);
    assert_true(fabsf(back[4] - 1e-7f) < 6e-8f); /* subnormal in f16 */
    assert_int_equal(cl_st_to_f32(CL_ST_BF16, bf, back, 8), 0);
    assert_true(back[1] == -2.0f);
    assert_int_equal(cl_st_to_f32(CL_ST_I32, bf, back, 1), -1);
}

static void a_file_round_trips_with_metadata_and_padding(void **state)
{
    (void)state;
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {1, 2, 3};
    int64_t c = 42;
    cl_st_tensor t[] = {{"z.bf16", CL_ST_BF16, 1, {3}, b, 0}, {"a.f32", CL_ST_F32, 2, {2, 3}, a, 0},
                        {"scalar", CL_ST_I64, 0, {0}, &c, 0}, {"empty", CL_ST_F32, 2, {0, 4}, a, 0}};
    char path[128];
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    cl_err e = {0};
    assert_int_equal(cl_st_write(path, t, 4, &e), 0);
    FILE *f = fopen(path, "rb");
    uint64_t hl;
    assert_int_equal(fread(&hl, 8, 1, f), 1);
    assert_int_equal(hl % 8, 0);
    char *h = malloc(hl + 1);
    assert_int_equal(fread(h, 1, hl, f), hl);
    fclose(f);
    assert_true(h[hl - 1] == ' ' || h[hl - 1] == '}');
    free(h);
    cl_safetensors *r = cl_st_open(path, &e);
    assert_non_null(r);
    assert_string_equal(cl_st_metadata(r, "format"), "pt");
    assert_int_equal(cl_st_count(r), 4);
    const cl_st_tensor *x = cl_st_find(r, "a.f32");
    assert_non_null(x);
    assert_int_equal(x->ndim, 2);
    assert_int_equal(x->shape[1], 3);
    assert_memory_equal(x->data, a, sizeof a);
    assert_int_equal(cl_st_at(r, 0)->dtype, CL_ST_I64); /* 8-byte dtypes first */
    assert_int_equal(cl_st_find(r, "scalar")->ndim, 0);
    assert_int_equal(cl_st_find(r, "empty")->nbytes, 0);
    assert_null(cl_st_find(r, "nope"));
    cl_st_close(r);
    cl_st_tensor dup[] = {{"a", CL_ST_F32, 1, {1}, a, 0}, {"a", CL_ST_BF16, 1, {1}, b, 0}};
    assert_int_equal(cl_st_write(path, dup, 2, &e), -1);
    assert_non_null(strstr(e.msg, "named twice"));
}

static void every_truncation_is_refused(void **state)
{
    (void)state;
    float a[16] = {0};
    cl_st_tensor t[] = {{"w", CL_ST_F32, 2, {4, 4}, a, 0}};
    char path[128];
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    cl_err e = {0};
    assert_int_equal(cl_st_write(path, t, 1, &e), 0);
    FILE *f = fopen(path, "rb");
    unsigned char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    for (size_t k = 0; k < n; k++) {
        cl_safetensors *r = cl_st_open_buffer(buf, k, "cut", &e);
        assert_null(r);
        assert_int_equal(e.code, 65);
    }
    cl_safetensors *r = cl_st_open_buffer(buf, n, "whole", &e);
    assert_non_null(r);
    cl_st_close(r);
}

static void sharded_checkpoints_split_and_reassemble(void **state)
{
    (void)state;
    float w[64];
    for (int i = 0; i < 64; i++)
        w[i] = (float)i;
    cl_st_tensor t[6];
    char names[6][16];
    for (int i = 0; i < 6; i++) {
        snprintf(names[i], sizeof names[i], "t%d", i);
        t[i] = (cl_st_tensor){names[i], CL_ST_F32, 1, {64}, w, 0};
    }
    cl_err e = {0};
    assert_int_equal(cl_st_write_checkpoint(dir, t, 6, 600, &e), 0);
    char p[160];
    snprintf(p, sizeof p, "%s/model-00003-of-00003.safetensors", dir);
    assert_int_equal(access(p, R_OK), 0);
    cl_st_model *m = cl_st_model_open(dir, &e);
    assert_non_null(m);
    assert_int_equal(cl_st_model_count(m), 6);
    assert_memory_equal(cl_st_model_find(m, "t5")->data, w, sizeof w);
    cl_st_model_close(m);
    /* A shard file that vanished is an error naming it. */
    unlink(p);
    assert_null(cl_st_model_open(dir, &e));
    assert_non_null(strstr(e.msg, "model-00003-of-00003"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(half_precision_rounds_to_nearest_even),
        cmocka_unit_test(a_file_round_trips_with_metadata_and_padding),
        cmocka_unit_test(every_truncation_is_refused),
        cmocka_unit_test(sharded_checkpoints_split_and_reassemble),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
