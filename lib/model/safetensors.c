/* safetensors.c — safetensors reader/writer (see safetensors.h). */
#include "model/safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/files.h"
#include "core/json.h"
#include "core/pages.h"

#define HEADER_MAX (100u << 20) /* the reference refuses larger headers */

static const struct { const char *name; size_t size; } dtypes[CL_ST_NDTYPES] = {
    [CL_ST_F32] = {"F32", 4},   [CL_ST_F16] = {"F16", 2},         [CL_ST_BF16] = {"BF16", 2},
    [CL_ST_F64] = {"F64", 8},   [CL_ST_I64] = {"I64", 8},         [CL_ST_I32] = {"I32", 4},
    [CL_ST_I16] = {"I16", 2},   [CL_ST_I8] = {"I8", 1},           [CL_ST_U8] = {"U8", 1},
    [CL_ST_BOOL] = {"BOOL", 1}, [CL_ST_F8_E4M3] = {"F8_E4M3", 1}, [CL_ST_F8_E5M2] = {"F8_E5M2", 1},
};

size_t cl_st_dtype_size(cl_st_dtype d) { return d < CL_ST_NDTYPES ? dtypes[d].size : 0; }
const char *cl_st_dtype_name(cl_st_dtype d) { return d < CL_ST_NDTYPES ? dtypes[d].name : "?"; }

int cl_st_dtype_parse(const char *name)
{
    for (int i = 0; i < CL_ST_NDTYPES; i++)
        if (strcmp(name, dtypes[i].name) == 0)
            return i;
    return -1;
}

int64_t cl_st_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] && n > (INT64_C(1) << 62) / shape[i]))
            return -1;
        n *= shape[i];
    }
    return n;
}

/* ---- conversions --------------------------------------------------------------------- */

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, u;
    if (exp == 31)
        u = sign | 0x7f800000u | man << 13;
    else if (exp)
        u = sign | (exp + 112) << 23 | man << 13;
    else if (!man)
        u = sign;
    else { /* subnormal: normalise */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 1024));
        u = sign | (uint32_t)(112 - e) << 23 | (man & 1023) << 13;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    int32_t exp = (int32_t)((u >> 23) & 255) - 127 + 15;
    uint32_t man = u & 0x7fffff;
    if (((u >> 23) & 255) == 255) /* inf or NaN (kept quiet) */
        return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0));
    if (exp >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10)
            return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = 1u << (shift - 1), rest = man & ((1u << shift) - 1);
        uint32_t r = man >> shift;
        if (rest > half || (rest == half && (r & 1)))
            r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = (uint32_t)exp << 10 | man >> 13, rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (r & 1)))
        r++; /* may carry into the exponent, which is the right rounding */
    return (uint16_t)(sign | r);
}

static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

int cl_st_to_f32(cl_st_dtype d, const void *src, float *dst, size_t n)
{
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i++) {
        if (d == CL_ST_F32) {
            memcpy(dst + i, s + 4 * i, 4);
        } else if (d == CL_ST_F16 || d == CL_ST_BF16) {
            uint16_t h = (uint16_t)(s[2 * i] | s[2 * i + 1] << 8);
            if (d == CL_ST_F16)
                dst[i] = f16_to_f32(h);
            else {
                uint32_t u = (uint32_t)h << 16;
                memcpy(dst + i, &u, 4);
            }
        } else {
            return -1;
        }
    }
    return 0;
}

int cl_st_from_f32(cl_st_dtype d, const float *src, void *dst, size_t n)
{
    unsigned char *o = dst;
    if (d == CL_ST_F32) {
        memcpy(dst, src, n * 4);
        return 0;
    }
    if (d != CL_ST_F16 && d != CL_ST_BF16)
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = d == CL_ST_F16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
        o[2 * i] = (unsigned char)h;
        o[2 * i + 1] = (unsigned char)(h >> 8);
    }
    return 0;
}

/* ---- reader -------------------------------------------------------------------------- */

struct cl_safetensors {
    char *name;
    void *map;           /* mmap'd file, or NULL for a caller's buffer */
    size_t map_len;
    cl_st_tensor *t;     /* in offset order */
    size_t n;
    const cl_st_tensor **by_name; /* sorted by name */
    char **meta;         /* key, value pairs */
    size_t n_meta;
};

void cl_st_close(cl_safetensors *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        free((char *)f->t[i].name);
    for (size_t i = 0; i < 2 * f->n_meta; i++)
        free(f->meta[i]);
    free(f->meta);
    free(f->t);
    free(f->by_name);
    cl_file_unmap(f->map, f->map_len);
    free(f->name);
    free(f);
}

typedef struct span {
    uint64_t begin, end;
    size_t idx;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : x->end < y->end ? -1 : x->end > y->end;
}

static int read_u64_num(const jv *v, uint64_t *out)
{
    if (jv_get_kind(*v) != JV_KIND_NUMBER)
        return -1;
    double d = jv_number_value(*v);
    if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d))
        return -1;
    *out = (uint64_t)d;
    return 0;
}

/* Reads one header entry into *t; returns -1 with e naming the tensor and field. */
static int read_entry(const char *file, const char *name, jv v, uint64_t data_len,
                      cl_st_tensor *t, span *sp, cl_err *e)
{
    int rc = 0;
    jv dt = cl_json_get(&v, "dtype"), shape = cl_json_get(&v, "shape"),
       offs = cl_json_get(&v, "data_offsets");
    int d = jv_get_kind(dt) == JV_KIND_STRING ? cl_st_dtype_parse(jv_string_value(dt)) : -1;
    if (jv_get_kind(v) != JV_KIND_OBJECT)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: not an object", file, name);
    else if (d < 0)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: dtype %s is not supported", file, name,
                        jv_get_kind(dt) == JV_KIND_STRING ? jv_string_value(dt) : "(missing)");
    else if (jv_get_kind(shape) != JV_KIND_ARRAY || jv_array_length(jv_copy(shape)) > CL_ST_MAX_DIMS)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: shape must be an array of at most %d sizes",
                        file, name, CL_ST_MAX_DIMS);
    else if (jv_get_kind(offs) != JV_KIND_ARRAY || jv_array_length(jv_copy(offs)) != 2)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: data_offsets must be [begin, end]", file, name);
    if (rc == 0) {
        t->dtype = (cl_st_dtype)d;
        t->ndim = jv_array_length(jv_copy(shape));
        for (int i = 0; rc == 0 && i < t->ndim; i++) {
            jv x = jv_array_get(jv_copy(shape), i);
            uint64_t u;
            if (read_u64_num(&x, &u) || u > (UINT64_C(1) << 40))
                rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: shape[%d] is not a size", file, name, i);
            else
                t->shape[i] = (int64_t)u;
            jv_free(x);
        }
    }
    uint64_t b = 0, en = 0;
    if (rc == 0) {
        jv x = jv_array_get(jv_copy(offs), 0), y = jv_array_get(jv_copy(offs), 1);
        if (read_u64_num(&x, &b) || read_u64_num(&y, &en) || b > en)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: data_offsets are not 0 <= begin <= end",
                            file, name);
        else if (en > data_len)
            rc = cl_err_set(e, CL_EXIT_DATAERR,
                            "%s: %s: data_offsets end %llu is past the data (%llu bytes)", file, name,
                            (unsigned long long)en, (unsigned long long)data_len);
        jv_free(x);
        jv_free(y);
    }
    if (rc == 0) {
        int64_t numel = cl_st_numel(t->ndim, t->shape);
        if (numel < 0 || (uint64_t)numel * dtypes[d].size != en - b)
            rc = cl_err_set(e, CL_EXIT_DATAERR,
                            "%s: %s: %llu bytes for a %s tensor of %lld elements", file, name,
                            (unsigned long long)(en - b), dtypes[d].name, (long long)numel);
    }
    if (rc == 0) {
        sp->begin = b;
        sp->end = en;
        t->nbytes = (size_t)(en - b);
    }
    jv_free(dt);
    jv_free(shape);
    jv_free(offs);
    jv_free(v);
    return rc;
}

static int read_metadata(cl_safetensors *f, jv m, cl_err *e)
{
    int rc = 0;
    if (jv_get_kind(m) != JV_KIND_OBJECT) {
        jv_free(m);
        return cl_err_set(e, CL_EXIT_DATAERR, "%s: __metadata__: not an object", f->name);
    }
    size_t n = (size_t)jv_object_length(jv_copy(m));
    f->meta = calloc(2 * n + 1, sizeof *f->meta);
    if (!f->meta)
        rc = cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", f->name);
    int it = jv_object_iter(m);
    for (; rc == 0 && jv_object_iter_valid(m, it); it = jv_object_iter_next(m, it)) {
        jv k = jv_object_iter_key(m, it), v = jv_object_iter_value(m, it);
        if (jv_get_kind(v) != JV_KIND_STRING)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: __metadata__.%s: not a string", f->name,
                            jv_string_value(k));
        else {
            f->meta[2 * f->n_meta] = strdup(jv_string_value(k));
            f->meta[2 * f->n_meta + 1] = strdup(jv_string_value(v));
            f->n_meta++;
        }
        jv_free(k);
        jv_free(v);
    }
    jv_free(m);
    return rc;
}

static int tensor_ptr_cmp(const void *a, const void *b)
{
    return strcmp((*(const cl_st_tensor *const *)a)->name, (*(const cl_st_tensor *const *)b)->name);
}

static cl_safetensors *parse(const unsigned char *buf, size_t len, const char *name, cl_err *e)
{
    cl_safetensors *f = calloc(1, sizeof *f);
    if (!f || !(f->name = strdup(name))) {
        free(f);
        cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", name);
        return NULL;
    }
    int rc = 0;
    uint64_t hl = 0;
    if (len < 8)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %zu bytes: too short for a header size", name, len);
    else {
        for (int i = 7; i >= 0; i--)
            hl = hl << 8 | buf[i];
        if (hl > HEADER_MAX)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: header size %llu is over the 100 MB limit",
                            name, (unsigned long long)hl);
        else if (hl > len - 8)
            rc = cl_err_set(e, CL_EXIT_DATAERR,
                            "%s: header size %llu is past the end of the file (%zu bytes)", name,
                            (unsigned long long)hl, len);
    }
    cl_json_check chk;
    if (rc == 0 && cl_json_validate((const char *)buf + 8, (size_t)hl, &chk))
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: header byte %zu: %s", name, chk.err_off + 8,
                        chk.err_what);
    jv h = rc ? jv_invalid() : cl_json_parse((const char *)buf + 8, (size_t)hl);
    if (rc == 0 && jv_get_kind(h) != JV_KIND_OBJECT)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: header is not a JSON object", name);
    const unsigned char *data = rc ? buf : buf + 8 + hl;
    uint64_t data_len = rc ? 0 : len - 8 - hl;
    size_t cap = rc ? 0 : (size_t)jv_object_length(jv_copy(h));
    span *sp = NULL;
    if (rc == 0 && (!(f->t = calloc(cap + 1, sizeof *f->t)) || !(sp = calloc(cap + 1, sizeof *sp)) ||
                    !(f->by_name = calloc(cap + 1, sizeof *f->by_name))))
        rc = cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", name);
    if (rc == 0) {
        int it = jv_object_iter(h);
        for (; rc == 0 && jv_object_iter_valid(h, it); it = jv_object_iter_next(h, it)) {
            jv k = jv_object_iter_key(h, it);
            const char *key = jv_string_value(k);
            if (strcmp(key, "__metadata__") == 0)
                rc = read_metadata(f, jv_object_iter_value(h, it), e);
            else if (!(f->t[f->n].name = strdup(key)))
                rc = cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", name);
            else {
                sp[f->n].idx = f->n;
                rc = read_entry(name, key, jv_object_iter_value(h, it), data_len, &f->t[f->n],
                                &sp[f->n], e);
                f->n++;
            }
            jv_free(k);
        }
    }
    jv_free(h);
    if (rc == 0) {
        /* Coverage: sorted by begin, each tensor starts where the previous ended, and the last
         * ends at the end of the file — no gaps, no overlaps, no trailing bytes. */
        qsort(sp, f->n, sizeof *sp, span_cmp);
        uint64_t at = 0;
        for (size_t i = 0; rc == 0 && i < f->n; i++) {
            const char *tn = f->t[sp[i].idx].name;
            if (sp[i].begin < at)
                rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: overlaps the tensor before it at byte %llu",
                                name, tn, (unsigned long long)sp[i].begin);
            else if (sp[i].begin > at)
                rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: gap of %llu bytes before it", name, tn,
                                (unsigned long long)(sp[i].begin - at));
            at = sp[i].end;
        }
        if (rc == 0 && at != data_len)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %llu bytes after the last tensor", name,
                            (unsigned long long)(data_len - at));
    }
    if (rc == 0) {
        cl_st_tensor *ordered = malloc((f->n + 1) * sizeof *ordered);
        if (!ordered)
            rc = cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", name);
        for (size_t i = 0; rc == 0 && i < f->n; i++) {
            ordered[i] = f->t[sp[i].idx];
            ordered[i].data = data + sp[i].begin;
        }
        if (rc == 0) {
            free(f->t);
            f->t = ordered;
            for (size_t i = 0; i < f->n; i++)
                f->by_name[i] = &f->t[i];
            qsort(f->by_name, f->n, sizeof *f->by_name, tensor_ptr_cmp);
            for (size_t i = 1; rc == 0 && i < f->n; i++)
                if (strcmp(f->by_name[i]->name, f->by_name[i - 1]->name) == 0)
                    rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: named twice", name,
                                    f->by_name[i]->name);
        }
    }
    free(sp);
    if (rc) {
        cl_st_close(f);
        return NULL;
    }
    return f;
}

cl_safetensors *cl_st_open_buffer(const void *buf, size_t len, const char *name, cl_err *e)
{
    return parse(buf ? buf : "", buf ? len : 0, name, e);
}

cl_safetensors *cl_st_open(const char *path, cl_err *e)
{
    size_t len;
    void *map = cl_file_map(path, &len, e);
    if (!map && len == (size_t)-1)
        return NULL;
    cl_safetensors *f = cl_st_open_buffer(map, len, path, e);
    if (!f) {
        cl_file_unmap(map, len);
        return NULL;
    }
    f->map = map;
    f->map_len = len;
    return f;
}

size_t cl_st_count(const cl_safetensors *f) { return f->n; }
const cl_st_tensor *cl_st_at(const cl_safetensors *f, size_t i) { return i < f->n ? &f->t[i] : NULL; }

const cl_st_tensor *cl_st_find(const cl_safetensors *f, const char *name)
{
    cl_st_tensor key = {.name = name};
    const cl_st_tensor *kp = &key;
    const cl_st_tensor **hit = bsearch(&kp, f->by_name, f->n, sizeof *f->by_name, tensor_ptr_cmp);
    return hit ? *hit : NULL;
}

const char *cl_st_metadata(const cl_safetensors *f, const char *key)
{
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0)
            return f->meta[2 * i + 1];
    return NULL;
}

/* ---- writer -------------------------------------------------------------------------- */

static int write_order(const void *a, const void *b)
{
    const cl_st_tensor *x = *(const cl_st_tensor *const *)a, *y = *(const cl_st_tensor *const *)b;
    size_t sx = cl_st_dtype_size(x->dtype), sy = cl_st_dtype_size(y->dtype);
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int write_all(FILE *f, const void *p, size_t n) { return n && fwrite(p, 1, n, f) != n; }

int cl_st_write(const char *path, const cl_st_tensor *t, size_t n, cl_err *e)
{
    const cl_st_tensor **order = malloc((n + 1) * sizeof *order);
    if (!order)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        order[i] = &t[i];
        if (t[i].dtype >= CL_ST_NDTYPES || t[i].ndim < 0 || t[i].ndim > CL_ST_MAX_DIMS ||
            cl_st_numel(t[i].ndim, t[i].shape) < 0) {
            free(order);
            return cl_err_set(e, CL_EXIT_SOFTWARE, "%s: %s: bad dtype or shape", path, t[i].name);
        }
    }
    qsort(order, n, sizeof *order, tensor_ptr_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(order[i]->name, order[i - 1]->name) == 0) {
            cl_err_set(e, CL_EXIT_SOFTWARE, "%s: %s: named twice", path, order[i]->name);
            free(order);
            return -1;
        }
    /* Larger dtypes first keeps every tensor aligned to its element size. */
    qsort(order, n, sizeof *order, write_order);
    jv h = jv_object();
    h = cl_json_set(h, "__metadata__", cl_json_set_str(jv_object(), "format", "pt"));
    uint64_t off = 0;
    for (size_t k = 0; k < n; k++) {
        const cl_st_tensor *x = order[k];
        uint64_t nb = (uint64_t)cl_st_numel(x->ndim, x->shape) * cl_st_dtype_size(x->dtype);
        jv shape = jv_array();
        for (int d = 0; d < x->ndim; d++)
            shape = jv_array_append(shape, jv_number((double)x->shape[d]));
        jv ent = cl_json_set_str(jv_object(), "dtype", cl_st_dtype_name(x->dtype));
        ent = cl_json_set(ent, "shape", shape);
        ent = cl_json_set(ent, "data_offsets", JV_ARRAY(jv_number((double)off), jv_number((double)(off + nb))));
        h = jv_object_set(h, jv_string(x->name), ent);
        off += nb;
    }
    size_t hl;
    char *hs = cl_json_dump(&h, &hl);
    jv_free(h);
    if (!hs) {
        free(order);
        return cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", path);
    }
    size_t padded = (hl + 7) & ~(size_t)7;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int rc = 0;
    if (!f)
        rc = cl_err_set(e, CL_EXIT_IOERR, "%s: %s", tmp, strerror(errno));
    else {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++)
            len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
        int bad = write_all(f, len8, 8) || write_all(f, hs, hl);
        for (size_t i = hl; !bad && i < padded; i++)
            bad = fputc(' ', f) == EOF;
        for (size_t k = 0; !bad && k < n; k++) {
            const cl_st_tensor *x = order[k];
            bad = write_all(f, x->data,
                            (size_t)cl_st_numel(x->ndim, x->shape) * cl_st_dtype_size(x->dtype));
        }
        if (fclose(f) != 0 || bad)
            rc = cl_err_set(e, CL_EXIT_IOERR, "%s: write failed: %s", tmp, strerror(errno));
        else if (rename(tmp, path) != 0)
            rc = cl_err_set(e, CL_EXIT_IOERR, "%s: %s", path, strerror(errno));
        if (rc)
            unlink(tmp);
    }
    free(hs);
    free(order);
    return rc;
}

/* ---- checkpoints --------------------------------------------------------------------- */

struct cl_st_model {
    cl_safetensors **files;
    size_t n_files;
    const cl_st_tensor **t;   /* all tensors, sorted by name */
    size_t n;
};

static size_t tensor_bytes(const cl_st_tensor *t)
{
    return (size_t)cl_st_numel(t->ndim, t->shape) * cl_st_dtype_size(t->dtype);
}

int cl_st_write_checkpoint(const char *dir, const cl_st_tensor *t, size_t n,
                           size_t max_shard_bytes, cl_err *e)
{
    size_t total = 0, shards = 1, acc = 0;
    for (size_t i = 0; i < n; i++) {
        size_t b = tensor_bytes(&t[i]);
        if (max_shard_bytes && acc && acc + b > max_shard_bytes) {
            shards++;
            acc = 0;
        }
        acc += b;
        total += b;
    }
    if (shards == 1) {
        char *p = cl_path_join(dir, "model.safetensors");
        int rc = p ? cl_st_write(p, t, n, e) : cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        free(p);
        return rc;
    }
    jv map = jv_object();
    size_t first = 0, shard = 0;
    acc = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i <= n; i++) {
        size_t b = i < n ? tensor_bytes(&t[i]) : 0;
        if (i == n || (acc && acc + b > max_shard_bytes)) {
            char name[64];
            snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", ++shard, shards);
            char *p = cl_path_join(dir, name);
            rc = p ? cl_st_write(p, t + first, i - first, e)
                   : cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
            free(p);
            for (size_t k = first; rc == 0 && k < i; k++)
                map = jv_object_set(map, jv_string(t[k].name), jv_string(name));
            first = i;
            acc = 0;
        }
        acc += b;
    }
    jv idx = cl_json_set(jv_object(), "metadata", cl_json_set_num(jv_object(), "total_size", (double)total));
    idx = cl_json_set(idx, "weight_map", map);
    size_t jl;
    char *js = cl_json_dump(&idx, &jl);
    jv_free(idx);
    char *p = cl_path_join(dir, "model.safetensors.index.json");
    if (rc == 0) {
        FILE *f = p && js ? fopen(p, "wb") : NULL;
        if (!f)
            rc = cl_err_set(e, CL_EXIT_IOERR, "%s: %s", p ? p : dir, strerror(errno));
        else if ((write_all(f, js, jl) || fputc('\n', f) == EOF) | (fclose(f) != 0))
            rc = cl_err_set(e, CL_EXIT_IOERR, "%s: write failed", p);
    }
    free(p);
    free(js);
    return rc;
}

void cl_st_model_close(cl_st_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_files; i++)
        cl_st_close(m->files[i]);
    free(m->files);
    free(m->t);
    free(m);
}

int cl_st_model_private(cl_st_model *m, cl_err *e)
{
    for (size_t i = 0; i < m->n_files; i++) {
        cl_safetensors *f = m->files[i];
        /* MAP_PRIVATE: writing needs no write access to the file itself */
        if (f->map && mprotect(f->map, f->map_len, PROT_READ | PROT_WRITE))
            return cl_err_set(e, CL_EXIT_SOFTWARE, "%s: mprotect: %s", f->name, strerror(errno));
    }
    return 0;
}

void cl_st_release(const cl_st_tensor *t) { cl_pages_release(t->data, t->nbytes); }

static int model_add(cl_st_model *m, cl_safetensors *f, cl_err *e)
{
    cl_safetensors **nf = realloc(m->files, (m->n_files + 1) * sizeof *nf);
    const cl_st_tensor **nt = nf ? realloc(m->t, (m->n + f->n + 1) * sizeof *nt) : NULL;
    if (nf)
        m->files = nf;
    if (!nt) {
        cl_st_close(f);
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    }
    m->t = nt;
    m->files[m->n_files++] = f;
    for (size_t i = 0; i < f->n; i++)
        m->t[m->n++] = &f->t[i];
    return 0;
}

cl_st_model *cl_st_model_open(const char *dir, cl_err *e)
{
    cl_st_model *m = calloc(1, sizeof *m);
    char *ip = cl_path_join(dir, "model.safetensors.index.json");
    if (!m || !ip) {
        free(m);
        free(ip);
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    int rc = 0;
    double total = -1;
    jv wm = jv_invalid();
    size_t len;
    char *buf = NULL;
    if (access(ip, F_OK) == 0 && !(buf = cl_file_read(ip, &len, e))) {
        rc = -1;
    } else if (!buf) { /* no index: one file */
        char *p = cl_path_join(dir, "model.safetensors");
        cl_safetensors *f = p ? cl_st_open(p, e) : NULL;
        free(p);
        rc = f ? model_add(m, f, e) : -1;
    } else {
        cl_json_check chk;
        if (cl_json_validate(buf, len, &chk))
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: not valid JSON", ip);
        jv idx = rc ? jv_invalid() : cl_json_parse(buf, len);
        free(buf);
        wm = cl_json_get(&idx, "weight_map");
        jv meta = cl_json_get(&idx, "metadata");
        total = cl_json_num(&meta, "total_size", -1);
        jv_free(meta);
        jv_free(idx);
        if (rc == 0 && jv_get_kind(wm) != JV_KIND_OBJECT)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: weight_map: not an object", ip);
        /* Open each distinct shard once, in the order first named. */
        int it = rc ? -1 : jv_object_iter(wm);
        for (; rc == 0 && jv_object_iter_valid(wm, it); it = jv_object_iter_next(wm, it)) {
            jv v = jv_object_iter_value(wm, it);
            if (jv_get_kind(v) != JV_KIND_STRING || strchr(jv_string_value(v), '/') ||
                strcmp(jv_string_value(v), "..") == 0) {
                jv k2 = jv_object_iter_key(wm, it);
                rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: weight_map.%s: not a file name in %s", ip,
                                jv_string_value(k2), dir);
                jv_free(k2);
            } else {
                size_t i = 0;
                while (i < m->n_files && strcmp(m->files[i]->name + strlen(dir) + 1, jv_string_value(v)))
                    i++;
                if (i == m->n_files) {
                    char *p = cl_path_join(dir, jv_string_value(v));
                    cl_safetensors *f = p ? cl_st_open(p, e) : NULL;
                    free(p);
                    rc = f ? model_add(m, f, e) : -1;
                }
            }
            jv_free(v);
        }
    }
    if (rc == 0) {
        qsort(m->t, m->n, sizeof *m->t, tensor_ptr_cmp);
        for (size_t i = 1; rc == 0 && i < m->n; i++)
            if (strcmp(m->t[i]->name, m->t[i - 1]->name) == 0)
                rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: in two shards", dir, m->t[i]->name);
    }
    if (rc == 0 && jv_get_kind(wm) == JV_KIND_OBJECT) {
        /* Every tensor listed where the index says, and nothing unlisted. */
        if ((size_t)jv_object_length(jv_copy(wm)) != m->n)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: the index lists %d tensors, the shards hold %zu",
                            ip, jv_object_length(jv_copy(wm)), m->n);
        for (size_t i = 0; rc == 0 && i < m->n_files; i++)
            for (size_t k = 0; rc == 0 && k < m->files[i]->n; k++) {
                jv v = jv_object_get(jv_copy(wm), jv_string(m->files[i]->t[k].name));
                if (jv_get_kind(v) != JV_KIND_STRING ||
                    strcmp(jv_string_value(v), m->files[i]->name + strlen(dir) + 1) != 0)
                    rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: not in the index for %s", ip,
                                    m->files[i]->t[k].name, m->files[i]->name);
                jv_free(v);
            }
    }
    if (rc == 0 && total >= 0) {
        /* A shard the index forgot entirely shows only here. */
        double sum = 0;
        for (size_t i = 0; i < m->n; i++)
            sum += (double)m->t[i]->nbytes;
        if (sum != total)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: metadata.total_size is %.0f, the listed shards hold %.0f bytes",
                            ip, total, sum);
    }
    jv_free(wm);
    free(ip);
    if (rc) {
        cl_st_model_close(m);
        return NULL;
    }
    return m;
}

size_t cl_st_model_count(const cl_st_model *m) { return m->n; }
const cl_st_tensor *cl_st_model_at(const cl_st_model *m, size_t i) { return i < m->n ? m->t[i] : NULL; }

const cl_st_tensor *cl_st_model_find(const cl_st_model *m, const char *name)
{
    cl_st_tensor key = {.name = name};
    const cl_st_tensor *kp = &key;
    const cl_st_tensor **hit = bsearch(&kp, m->t, m->n, sizeof *m->t, tensor_ptr_cmp);
    return hit ? *hit : NULL;
}
