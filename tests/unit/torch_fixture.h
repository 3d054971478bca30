/* torch_fixture.h — reader for the CLFX files tests/torch/gen_model_fixtures.py writes (float64
 * PyTorch reference values): b"CLFX", u32 version 1, u32 count, then records of u16 name
 * length, name, u8 type ('f' f32, 'd' f64, 'i' i32, 's' bytes), u32 element count, payload.
 * Header-only so each test binary that compares against torch reads them the same way. */
#ifndef CL_TESTS_TORCH_FIXTURE_H
#define CL_TESTS_TORCH_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#endif
