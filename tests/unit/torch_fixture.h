/* torch_fixture.h — reader for the CLFX files tests/torch/gen_model_fixtures.py writes (float64
 * PyTorch reference values): b"CLFX", u32 version 1, u32 count, then records of u16 name
 * length, name, u8 type ('f' f32, 'd' f64, 'i' i32, 's' bytes), u32 element count, payload.
 * Header-only so each test binary that compares against torch reads them the same way.
 * Include it after <cmocka.h>: clfx_model_open fails the running test on a broken fixture. */
#ifndef CL_TESTS_TORCH_FIXTURE_H
#define CL_TESTS_TORCH_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "model/llama.h"
#include "model/loss.h"

typedef struct clfx_rec {
    char name[160];
    char type;
    uint32_t count;
    const unsigned char *data;
} clfx_rec;

typedef struct clfx {
    unsigned char *buf;
    int n;
    clfx_rec *recs;
} clfx;

/* NULL when the file is missing or malformed (the caller fails the test). */
static inline clfx *clfx_load(const char *name)
{
    const char *dir = getenv("CL_MODEL_FIXTURES");
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "tests/data/model", name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    clfx *fx = calloc(1, sizeof *fx);
    fx->buf = malloc((size_t)len);
    size_t got = fread(fx->buf, 1, (size_t)len, f);
    fclose(f);
    uint32_t ver = 0, n = 0;
    if (got != (size_t)len || len < 12 || memcmp(fx->buf, "CLFX", 4)) goto bad;
    memcpy(&ver, fx->buf + 4, 4);
    memcpy(&n, fx->buf + 8, 4);
    if (ver != 1) goto bad;
    fx->recs = calloc(n ? n : 1, sizeof(clfx_rec));
    const unsigned char *p = fx->buf + 12, *end = fx->buf + len;
    for (uint32_t i = 0; i < n; i++, fx->n++) {
        uint16_t nl;
        if (p + 2 > end) goto bad;
        memcpy(&nl, p, 2);
        if (nl >= sizeof fx->recs[i].name || p + 2 + nl + 5 > end) goto bad;
        memcpy(fx->recs[i].name, p + 2, nl);
        fx->recs[i].type = (char)p[2 + nl];
        memcpy(&fx->recs[i].count, p + 3 + nl, 4);
        fx->recs[i].data = p + 7 + nl;
        size_t el = fx->recs[i].type == 'd' ? 8 : fx->recs[i].type == 's' ? 1 : 4;
        p += 7 + nl + el * fx->recs[i].count;
        if (p > end) goto bad;
    }
    return fx;
bad:
    free(fx->recs);
    free(fx->buf);
    free(fx);
    return NULL;
}

static inline void clfx_free(clfx *fx)
{
    if (!fx) return;
    free(fx->recs);
    free(fx->buf);
    free(fx);
}

static inline const clfx_rec *clfx_get(const clfx *fx, const char *name)
{
    for (int i = 0; i < fx->n; i++)
        if (!strcmp(fx->recs[i].name, name)) return &fx->recs[i];
    return NULL;
}

/* Element i as a double (0 when absent: callers check clfx_get first). */
static inline double clfx_val(const clfx *fx, const char *name, uint32_t i)
{
    const clfx_rec *r = clfx_get(fx, name);
    if (!r || i >= r->count) return 0;
    if (r->type == 'd') { double d; memcpy(&d, r->data + 8 * i, 8); return d; }
    if (r->type == 'f') { float f; memcpy(&f, r->data + 4 * i, 4); return f; }
    int32_t v; memcpy(&v, r->data + 4 * i, 4); return v;
}

/* ---- a model fixture: the config and the packed batch every model comparison starts from */

typedef struct clfx_model {
    clfx *raw;
    cl_llama_config cfg;
    int seed, b, t, *ids, *pos, *seg, *targets;
} clfx_model;

/* The record, failing the test when the fixture lacks it. */
static inline const clfx_rec *clfx_need(const clfx *fx, const char *name)
{
    const clfx_rec *r = clfx_get(fx, name);
    if (!r) fail_msg("fixture lacks %s", name);
    return r;
}

/* An i32 record as a malloc'd int array. */
static inline int *clfx_ints(const clfx *fx, const char *name)
{
    const clfx_rec *r = clfx_need(fx, name);
    int *out = malloc(sizeof(int) * r->count);
    memcpy(out, r->data, 4 * (size_t)r->count);
    return out;
}

static inline clfx_model *clfx_model_open(const char *file)
{
    clfx_model *fx = calloc(1, sizeof *fx);
    if (!(fx->raw = clfx_load(file))) fail_msg("cannot read fixture %s", file);
    const clfx_rec *c = clfx_need(fx->raw, "config");
    cl_err e = {0};
    assert_int_equal(cl_config_parse(&fx->cfg, (const char *)c->data, c->count, file, &e), 0);
    fx->seed = (int)clfx_val(fx->raw, clfx_need(fx->raw, "seed")->name, 0);
    fx->b = (int)clfx_val(fx->raw, clfx_need(fx->raw, "B")->name, 0);
    fx->t = (int)clfx_val(fx->raw, clfx_need(fx->raw, "T")->name, 0);
    fx->ids = clfx_ints(fx->raw, "ids");
    fx->pos = clfx_ints(fx->raw, "pos");
    fx->seg = clfx_ints(fx->raw, "seg");
    fx->targets = clfx_ints(fx->raw, "targets");
    return fx;
}

static inline void clfx_model_free(clfx_model *fx)
{
    free(fx->ids); free(fx->pos); free(fx->seg); free(fx->targets);
    clfx_free(fx->raw); free(fx);
}

/* Forward and SFT head over the fixture's batch (and backward when grad): the SFT loss. */
static inline double clfx_sft(cl_llama *m, const clfx_model *fx, int grad)
{
    int n = fx->b * fx->t;
    float *coef = calloc((size_t)n, sizeof(float)), *logp = calloc((size_t)n, sizeof(float));
    cl_err e = {0};
    assert_int_equal(cl_llama_forward(m, fx->ids, fx->pos, fx->seg, fx->b, fx->t, &e), 0);
    double ntok = cl_loss_tokens(fx->targets, n);
    cl_sft_loss(logp, fx->targets, n, ntok, coef);
    cl_llama_head(m, fx->targets, grad ? coef : NULL, logp);
    double loss = cl_sft_loss(logp, fx->targets, n, ntok, NULL);
    if (grad) cl_llama_backward(m);
    free(coef);
    free(logp);
    return loss;
}

#endif
