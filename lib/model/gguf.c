/* gguf.c — GGUF writer, reader and llama.cpp exports (see gguf.h). */
#include "model/gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/files.h"

/* ---- writer -------------------------------------------------------------------------- */

typedef struct wtensor {
    char *name;
    uint32_t type;
    int ndim;
    uint64_t ne[4];
    void *data;
    size_t nbytes;
} wtensor;

struct cl_gguf_writer {
    unsigned char *kv;
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    wtensor *t;
    size_t n_t, cap_t;
};

cl_gguf_writer *cl_gguf_writer_new(void) { return calloc(1, sizeof(cl_gguf_writer)); }

void cl_gguf_writer_free(cl_gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    free(w->kv);
    free(w);
}

static int put(cl_gguf_writer *w, const void *p, size_t n)
{
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n)
            cap *= 2;
        unsigned char *k = realloc(w->kv, cap);
        if (!k)
            return -1;
        w->kv = k;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return 0;
}

/* GGUF is little-endian; so is every machine this builds for (checked in cl_gguf_write). */
static int put_u32(cl_gguf_writer *w, uint32_t v) { return put(w, &v, 4); }
static int put_u64(cl_gguf_writer *w, uint64_t v) { return put(w, &v, 8); }
static int put_str(cl_gguf_writer *w, const char *s)
{
    size_t n = strlen(s);
    return put_u64(w, n) || put(w, s, n);
}
static int put_key(cl_gguf_writer *w, const char *key, uint32_t type)
{
    w->n_kv++;
    return put_str(w, key) || put_u32(w, type);
}

int cl_gguf_kv_str(cl_gguf_writer *w, const char *key, const char *val)
{
    return put_key(w, key, CL_GGUF_STRING) || put_str(w, val) ? -1 : 0;
}
int cl_gguf_kv_u32(cl_gguf_writer *w, const char *key, uint32_t val)
{
    return put_key(w, key, CL_GGUF_U32) || put_u32(w, val) ? -1 : 0;
}
int cl_gguf_kv_i32(cl_gguf_writer *w, const char *key, int32_t val)
{
    return put_key(w, key, CL_GGUF_I32) || put(w, &val, 4) ? -1 : 0;
}
int cl_gguf_kv_f32(cl_gguf_writer *w, const char *key, float val)
{
    return put_key(w, key, CL_GGUF_F32) || put(w, &val, 4) ? -1 : 0;
}
int cl_gguf_kv_bool(cl_gguf_writer *w, const char *key, int val)
{
    unsigned char b = val != 0;
    return put_key(w, key, CL_GGUF_BOOL) || put(w, &b, 1) ? -1 : 0;
}
int cl_gguf_kv_strs(cl_gguf_writer *w, const char *key, const char *const *v, size_t n)
{
    if (put_key(w, key, CL_GGUF_ARRAY) || put_u32(w, CL_GGUF_STRING) || put_u64(w, n))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (put_str(w, v[i]))
            return -1;
    return 0;
}
int cl_gguf_kv_i32s(cl_gguf_writer *w, const char *key, const int32_t *v, size_t n)
{
    return put_key(w, key, CL_GGUF_ARRAY) || put_u32(w, CL_GGUF_I32) || put_u64(w, n) ||
                   put(w, v, n * 4)
               ? -1
               : 0;
}

static int ggml_type_of(cl_st_dtype d)
{
    return d == CL_ST_F32 ? CL_GGML_F32 : d == CL_ST_F16 ? CL_GGML_F16 : d == CL_ST_BF16 ? CL_GGML_BF16 : -1;
}

static size_t ggml_type_size(uint32_t t)
{
    return t == CL_GGML_F32 ? 4 : t == CL_GGML_F16 || t == CL_GGML_BF16 ? 2 : 0;
}

int cl_gguf_add_tensor(cl_gguf_writer *w, const char *name, cl_st_dtype dtype, int ndim,
                       const int64_t *shape, const void *data, cl_err *e)
{
    int type = ggml_type_of(dtype);
    int64_t numel = cl_st_numel(ndim, shape);
    if (type < 0 || ndim < 1 || ndim > 4 || numel < 0 || strlen(name) >= 64)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "gguf: %s: needs F32/F16/BF16, 1-4 dims, a name under 64 bytes",
                          name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t)
            return cl_err_set(e, CL_EXIT_SOFTWARE, "gguf: out of memory");
        w->t = t;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    *t = (wtensor){strdup(name), (uint32_t)type, ndim, {1, 1, 1, 1}, NULL,
                   (size_t)numel * ggml_type_size((uint32_t)type)};
    for (int i = 0; i < ndim; i++)
        t->ne[i] = (uint64_t)shape[ndim - 1 - i];
    t->data = malloc(t->nbytes ? t->nbytes : 1);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return cl_err_set(e, CL_EXIT_SOFTWARE, "gguf: out of memory");
    }
    memcpy(t->data, data, t->nbytes);
    w->n_t++;
    return 0;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

int cl_gguf_write(cl_gguf_writer *w, const char *path, cl_err *e)
{
    const uint16_t probe = 1;
    if (*(const unsigned char *)&probe != 1)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "gguf: big-endian hosts are not supported");
    /* Tensor infos go after the key/values in the same buffer. */
    size_t kv_end = w->kv_len;
    uint64_t off = 0;
    int bad = 0;
    for (size_t i = 0; i < w->n_t && !bad; i++) {
        const wtensor *t = &w->t[i];
        bad = put_str(w, t->name) || put_u32(w, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim && !bad; d++)
            bad = put_u64(w, t->ne[d]);
        bad = bad || put_u32(w, t->type) || put_u64(w, off);
        off = align_up(off + t->nbytes, CL_GGUF_ALIGNMENT);
    }
    if (bad) {
        w->kv_len = kv_end;
        return cl_err_set(e, CL_EXIT_SOFTWARE, "gguf: out of memory");
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        w->kv_len = kv_end;
        return cl_err_set(e, CL_EXIT_IOERR, "%s: %s", tmp, strerror(errno));
    }
    uint32_t version = 3;
    uint64_t nt = w->n_t, nkv = w->n_kv;
    bad = fwrite("GGUF", 1, 4, f) != 4 || fwrite(&version, 4, 1, f) != 1 || fwrite(&nt, 8, 1, f) != 1 ||
          fwrite(&nkv, 8, 1, f) != 1 || fwrite(w->kv, 1, w->kv_len, f) != w->kv_len;
    static const unsigned char zeros[CL_GGUF_ALIGNMENT];
    uint64_t pos = 24 + w->kv_len;
    uint64_t pad = align_up(pos, CL_GGUF_ALIGNMENT) - pos;
    bad = bad || fwrite(zeros, 1, pad, f) != pad;
    for (size_t i = 0; i < w->n_t && !bad; i++) {
        const wtensor *t = &w->t[i];
        bad = fwrite(t->data, 1, t->nbytes, f) != t->nbytes;
        pad = align_up(t->nbytes, CL_GGUF_ALIGNMENT) - t->nbytes;
        bad = bad || (i + 1 < w->n_t && fwrite(zeros, 1, pad, f) != pad);
    }
    w->kv_len = kv_end;
    int rc = 0;
    if ((fclose(f) != 0) | bad)
        rc = cl_err_set(e, CL_EXIT_IOERR, "%s: write failed: %s", tmp, strerror(errno));
    else if (rename(tmp, path) != 0)
        rc = cl_err_set(e, CL_EXIT_IOERR, "%s: %s", path, strerror(errno));
    if (rc)
        unlink(tmp);
    return rc;
}

/* ---- reader -------------------------------------------------------------------------- */

typedef struct rkv {
    const char *key;
    size_t key_len;
    uint32_t type, elem_type;
    uint64_t count;
    const unsigned char *val;
} rkv;

struct cl_gguf {
    void *map;
    size_t map_len;
    uint32_t version;
    rkv *kv;
    size_t n_kv;
    cl_gguf_tensor *t;
    size_t n_t;
    char **names;
};

typedef struct cursor {
    const unsigned char *p, *end;
} cursor;

static int need(cursor *c, uint64_t n) { return (uint64_t)(c->end - c->p) < n; }

static int get_u32(cursor *c, uint32_t *v)
{
    if (need(c, 4))
        return -1;
    memcpy(v, c->p, 4);
    c->p += 4;
    return 0;
}

static int get_u64(cursor *c, uint64_t *v)
{
    if (need(c, 8))
        return -1;
    memcpy(v, c->p, 8);
    c->p += 8;
    return 0;
}

static int get_str(cursor *c, const char **s, size_t *n)
{
    uint64_t len;
    if (get_u64(c, &len) || need(c, len))
        return -1;
    *s = (const char *)c->p;
    *n = (size_t)len;
    c->p += len;
    return 0;
}

static size_t scalar_size(uint32_t t)
{
    static const unsigned char sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < sizeof sz ? sz[t] : 0;
}

/* Skips one value of type t; -1 when it runs past the end or the type is unknown. */
static int skip_value(cursor *c, uint32_t t, uint32_t *elem, uint64_t *count)
{
    if (t == CL_GGUF_STRING) {
        const char *s;
        size_t n;
        return get_str(c, &s, &n);
    }
    if (t == CL_GGUF_ARRAY) {
        uint32_t et;
        uint64_t n;
        if (get_u32(c, &et) || get_u64(c, &n) || et == CL_GGUF_ARRAY)
            return -1;
        *elem = et;
        *count = n;
        if (et == CL_GGUF_STRING) {
            if (n > (uint64_t)(c->end - c->p) / 8)
                return -1;
            for (uint64_t i = 0; i < n; i++)
                if (skip_value(c, et, NULL, NULL))
                    return -1;
            return 0;
        }
        size_t s = scalar_size(et);
        if (!s || n > (uint64_t)(c->end - c->p) / s)
            return -1;
        c->p += n * s;
        return 0;
    }
    size_t s = scalar_size(t);
    if (!s || need(c, s))
        return -1;
    if (t == CL_GGUF_BOOL && *c->p > 1)
        return -1;
    c->p += s;
    return 0;
}

void cl_gguf_close(cl_gguf *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_t; i++)
        free(g->names[i]);
    free(g->names);
    free(g->kv);
    free(g->t);
    cl_file_unmap(g->map, g->map_len);
    free(g);
}

static int off_cmp(const void *a, const void *b)
{
    const cl_gguf_tensor *x = *(const cl_gguf_tensor *const *)a, *y = *(const cl_gguf_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

cl_gguf *cl_gguf_open_buffer(const void *buf, size_t len, const char *name, cl_err *e)
{
    cl_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", name);
        return NULL;
    }
    if (!buf) /* an empty mapping */
        buf = "", len = 0;
    cursor c = {buf, (const unsigned char *)buf + len};
    uint64_t nt = 0, nkv = 0;
    int rc = 0;
    if (need(&c, 4) || memcmp(c.p, "GGUF", 4) != 0)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: not a GGUF file (no GGUF magic)", name);
    else {
        c.p += 4;
        if (get_u32(&c, &g->version) || (g->version != 2 && g->version != 3))
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: GGUF version %u is not 2 or 3", name, g->version);
        else if (get_u64(&c, &nt) || get_u64(&c, &nkv) || nt > len / 8 || nkv > len / 12)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: tensor or key count past the end of the file", name);
    }
    if (rc == 0 && (!(g->kv = calloc(nkv + 1, sizeof *g->kv)) || !(g->t = calloc(nt + 1, sizeof *g->t)) ||
                    !(g->names = calloc(nt + 1, sizeof *g->names))))
        rc = cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", name);
    uint64_t alignment = CL_GGUF_ALIGNMENT;
    for (uint64_t i = 0; rc == 0 && i < nkv; i++) {
        rkv *k = &g->kv[i];
        if (get_str(&c, &k->key, &k->key_len) || get_u32(&c, &k->type)) {
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: key %llu runs past the end of the file", name,
                            (unsigned long long)i);
            break;
        }
        k->val = c.p;
        if (skip_value(&c, k->type, &k->elem_type, &k->count)) {
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %.*s: bad value (type %u)", name,
                            (int)(k->key_len > 80 ? 80 : k->key_len), k->key, k->type);
            break;
        }
        if (k->type == CL_GGUF_ARRAY)
            k->val += 12;
        g->n_kv++;
        if (k->key_len == 17 && memcmp(k->key, "general.alignment", 17) == 0) {
            uint32_t a;
            if (k->type != CL_GGUF_U32 || (memcpy(&a, k->val, 4), a == 0 || a % 8))
                rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: general.alignment: must be a u32 multiple of 8",
                                name);
            else
                alignment = a;
        }
    }
    uint64_t *offs = rc ? NULL : calloc(nt + 1, sizeof *offs);
    if (rc == 0 && !offs)
        rc = cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", name);
    for (uint64_t i = 0; rc == 0 && i < nt; i++) {
        cl_gguf_tensor *t = &g->t[i];
        const char *s;
        size_t n;
        uint32_t nd;
        if (get_str(&c, &s, &n) || get_u32(&c, &nd) || nd < 1 || nd > 4) {
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: tensor info %llu: bad name or dimension count", name,
                            (unsigned long long)i);
            break;
        }
        if (!(g->names[i] = malloc(n + 1))) {
            rc = cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", name);
            break;
        }
        memcpy(g->names[i], s, n);
        g->names[i][n] = 0;
        g->n_t++;
        t->name = g->names[i];
        t->ndim = (int)nd;
        uint64_t numel = 1;
        for (int d = 0; d < 4; d++)
            t->ne[d] = 1;
        for (uint32_t d = 0; rc == 0 && d < nd; d++) {
            uint64_t v;
            if (get_u64(&c, &v) || v > (UINT64_C(1) << 40) || (v && numel > (UINT64_C(1) << 50) / v))
                rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: bad dimension", name, t->name);
            else {
                t->ne[d] = (int64_t)v;
                numel *= v;
            }
        }
        if (rc == 0 && (get_u32(&c, &t->type) || get_u64(&c, &offs[i])))
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: tensor info runs past the end", name, t->name);
        else if (rc == 0 && !ggml_type_size(t->type))
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: ggml type %u is not supported (F32/F16/BF16 only)",
                            name, t->name, t->type);
        else if (rc == 0)
            t->nbytes = (size_t)(numel * ggml_type_size(t->type));
    }
    uint64_t data_start = rc ? 0 : align_up((uint64_t)(c.p - (const unsigned char *)buf), alignment);
    if (rc == 0 && data_start > len)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: data section starts past the end of the file", name);
    for (size_t i = 0; rc == 0 && i < g->n_t; i++) {
        cl_gguf_tensor *t = &g->t[i];
        if (offs[i] % alignment)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: offset %llu is not aligned to %llu", name,
                            t->name, (unsigned long long)offs[i], (unsigned long long)alignment);
        else if (offs[i] > len - data_start || t->nbytes > len - data_start - offs[i])
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: data runs past the end of the file", name, t->name);
        else
            t->data = (const unsigned char *)buf + data_start + offs[i];
    }
    if (rc == 0 && g->n_t) {
        const cl_gguf_tensor **o = malloc(g->n_t * sizeof *o);
        if (!o)
            rc = cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", name);
        for (size_t i = 0; rc == 0 && i < g->n_t; i++)
            o[i] = &g->t[i];
        if (rc == 0)
            qsort(o, g->n_t, sizeof *o, off_cmp);
        for (size_t i = 1; rc == 0 && i < g->n_t; i++)
            if ((const unsigned char *)o[i - 1]->data + o[i - 1]->nbytes > (const unsigned char *)o[i]->data)
                rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: overlaps %s", name, o[i]->name, o[i - 1]->name);
        free(o);
    }
    free(offs);
    if (rc) {
        cl_gguf_close(g);
        return NULL;
    }
    return g;
}

cl_gguf *cl_gguf_open(const char *path, cl_err *e)
{
    size_t len;
    void *map = cl_file_map(path, &len, e);
    if (!map && len == (size_t)-1)
        return NULL;
    cl_gguf *g = cl_gguf_open_buffer(map, len, path, e);
    if (!g) {
        cl_file_unmap(map, len);
        return NULL;
    }
    g->map = map;
    g->map_len = len;
    return g;
}

uint32_t cl_gguf_version(const cl_gguf *g) { return g->version; }

const void *cl_gguf_get(const cl_gguf *g, const char *key, uint32_t *type, uint32_t *elem_type,
                        uint64_t *count)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key_len == n && memcmp(g->kv[i].key, key, n) == 0) {
            if (type)
                *type = g->kv[i].type;
            if (elem_type)
                *elem_type = g->kv[i].elem_type;
            if (count)
                *count = g->kv[i].count;
            return g->kv[i].val;
        }
    return NULL;
}

char *cl_gguf_get_str(const cl_gguf *g, const char *key)
{
    uint32_t type;
    const unsigned char *v = cl_gguf_get(g, key, &type, NULL, NULL);
    if (!v || type != CL_GGUF_STRING)
        return NULL;
    uint64_t n;
    memcpy(&n, v, 8);
    char *s = malloc((size_t)n + 1);
    if (s) {
        memcpy(s, v + 8, (size_t)n);
        s[n] = 0;
    }
    return s;
}

size_t cl_gguf_tensor_count(const cl_gguf *g) { return g->n_t; }
const cl_gguf_tensor *cl_gguf_tensor_at(const cl_gguf *g, size_t i) { return i < g->n_t ? &g->t[i] : NULL; }

const cl_gguf_tensor *cl_gguf_find(const cl_gguf *g, const char *name)
{
    for (size_t i = 0; i < g->n_t; i++)
        if (strcmp(g->t[i].name, name) == 0)
            return &g->t[i];
    return NULL;
}

/* ---- exports ------------------------------------------------------------------------- */

int cl_gguf_tensor_name(const char *hf, char *buf, size_t size)
{
    static const struct { const char *hf, *gg; } top[] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
    };
    static const struct { const char *hf, *gg; } layer[] = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},   {"self_attn.q_proj.bias", "attn_q.bias"},
        {"self_attn.k_proj.weight", "attn_k.weight"},   {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.weight", "attn_v.weight"},   {"self_attn.v_proj.bias", "attn_v.bias"},
        {"self_attn.o_proj.weight", "attn_output.weight"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},    {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
    };
    for (size_t i = 0; i < sizeof top / sizeof *top; i++)
        if (strcmp(hf, top[i].hf) == 0) {
            snprintf(buf, size, "%s", top[i].gg);
            return 0;
        }
    int l, used = 0;
    if (sscanf(hf, "model.layers.%d.%n", &l, &used) != 1 || !used || l < 0)
        return -1;
    for (size_t i = 0; i < sizeof layer / sizeof *layer; i++)
        if (strcmp(hf + used, layer[i].hf) == 0) {
            snprintf(buf, size, "blk.%d.%s", l, layer[i].gg);
            return 0;
        }
    return -1;
}

#define LLAMA3_RE                                                                            \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+" \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_RE                                                                             \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"      \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define GPT2_RE "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

const char *cl_gguf_pre_label(const char *pattern)
{
    if (!pattern)
        return "default";
    if (strcmp(pattern, LLAMA3_RE) == 0)
        return "llama-bpe";
    if (strcmp(pattern, QWEN2_RE) == 0)
        return "qwen2";
    if (strcmp(pattern, GPT2_RE) == 0)
        return "gpt-2";
    return "default";
}

/* llama.cpp's `llama` RoPE rotates adjacent pairs; HF weights rotate (i, i + d/2).  Reorder each
 * head's rows from [half0 | half1] to interleaved [h0[0], h1[0], h0[1], h1[1], ...]. */
static int permute_rows(const void *src, void *dst, int64_t rows, size_t row_bytes, uint32_t n_head)
{
    if (!n_head || rows % n_head || (rows / n_head) % 2)
        return -1;
    int64_t hd = rows / n_head, half = hd / 2;
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t i = 0; i < half; i++)
            for (int64_t j = 0; j < 2; j++)
                memcpy((char *)dst + (size_t)(h * hd + 2 * i + j) * row_bytes,
                       (const char *)src + (size_t)(h * hd + j * half + i) * row_bytes, row_bytes);
    return 0;
}

/* Adds a tensor, permuting its rows first when n_head is non-zero and converting 1-D tensors
 * to F32 (llama.cpp wants norms and biases in F32). */
int cl_gguf_matrices_parse(const char *s)
{
    return !strcmp(s, "f32") ? CL_GGUF_AS_F32 : !strcmp(s, "f16") ? CL_GGUF_AS_F16 : !strcmp(s, "bf16") ? CL_GGUF_AS_BF16 : -1;
}

static int add_converted(cl_gguf_writer *w, const char *name, const cl_st_tensor *t, uint32_t n_head,
                         cl_gguf_matrices as, cl_err *e)
{
    static const cl_st_dtype to[] = {[CL_GGUF_AS_F32] = CL_ST_F32, [CL_GGUF_AS_F16] = CL_ST_F16,
                                     [CL_GGUF_AS_BF16] = CL_ST_BF16};
    size_t numel = (size_t)cl_st_numel(t->ndim, t->shape);
    cl_st_dtype d = t->ndim == 1 ? CL_ST_F32 : as != CL_GGUF_AS_STORED ? to[as] : t->dtype;
    size_t es = cl_st_dtype_size(d);
    void *buf = malloc(numel * es + 1), *perm = n_head ? malloc(numel * es + 1) : NULL;
    /* a conversion goes through fp32 (into buf itself when the target is F32) */
    float *f32 = d != t->dtype && d != CL_ST_F32 ? malloc(numel * sizeof(float) + 1) : buf;
    int rc = 0;
    if (!buf || (n_head && !perm) || !f32)
        rc = cl_err_set(e, CL_EXIT_SOFTWARE, "gguf: out of memory");
    else if (d != t->dtype) {
        if (cl_st_to_f32(t->dtype, t->data, f32, numel) || (f32 != buf && cl_st_from_f32(d, f32, buf, numel)))
            rc = cl_err_set(e, CL_EXIT_DATAERR, "gguf: %s: dtype %s cannot be exported", name,
                            cl_st_dtype_name(t->dtype));
    } else {
        memcpy(buf, t->data, numel * es);
    }
    const void *out = buf;
    if (rc == 0 && n_head) {
        if (permute_rows(buf, perm, t->shape[0], numel / (size_t)(t->shape[0] ? t->shape[0] : 1) * es, n_head))
            rc = cl_err_set(e, CL_EXIT_DATAERR, "gguf: %s: %lld rows do not split into %u heads of even size",
                            name, (long long)t->shape[0], n_head);
        out = perm;
    }
    if (rc == 0)
        rc = cl_gguf_add_tensor(w, name, d, t->ndim, t->shape, out, e);
    if (f32 != buf) free(f32);
    free(buf);
    free(perm);
    return rc;
}

static int tokenizer_kvs(cl_gguf_writer *w, const cl_tokenizer *tok, int64_t n_vocab,
                         const cl_gguf_model_info *m, cl_err *e)
{
    int32_t nt = cl_tokenizer_vocab_size(tok);
    if (n_vocab < nt)
        return cl_err_set(e, CL_EXIT_DATAERR, "gguf: the tokenizer has %d tokens, the embedding only %lld rows",
                          (int)nt, (long long)n_vocab);
    const char **tokens = calloc((size_t)n_vocab + 1, sizeof *tokens);
    char **pads = calloc((size_t)n_vocab + 1, sizeof *pads);
    int32_t *types = calloc((size_t)n_vocab + 1, sizeof *types);
    size_t nm;
    const int32_t(*mg)[2] = cl_tokenizer_merges(tok, &nm);
    char **merges = calloc(nm + 1, sizeof *merges);
    int rc = tokens && pads && types && merges ? 0 : cl_err_set(e, CL_EXIT_SOFTWARE, "gguf: out of memory");
    for (int64_t i = 0; rc == 0 && i < n_vocab; i++) {
        enum cl_token_kind k = cl_tokenizer_token_kind(tok, (int32_t)i);
        tokens[i] = k == CL_TOKEN_UNUSED ? NULL : cl_tokenizer_token_text(tok, (int32_t)i);
        types[i] = k == CL_TOKEN_NORMAL ? 1 : k == CL_TOKEN_SPECIAL ? 3 : k == CL_TOKEN_ADDED ? 4 : 5;
        if (!tokens[i]) {
            char b[32];
            snprintf(b, sizeof b, "[PAD%lld]", (long long)i);
            if (!(pads[i] = strdup(b)))
                rc = cl_err_set(e, CL_EXIT_SOFTWARE, "gguf: out of memory");
            tokens[i] = pads[i];
        }
    }
    for (size_t i = 0; rc == 0 && i < nm; i++) {
        const char *a = cl_tokenizer_token_text(tok, mg[i][0]), *b = cl_tokenizer_token_text(tok, mg[i][1]);
        size_t n = strlen(a) + strlen(b) + 2;
        if (!(merges[i] = malloc(n)))
            rc = cl_err_set(e, CL_EXIT_SOFTWARE, "gguf: out of memory");
        else
            snprintf(merges[i], n, "%s %s", a, b);
    }
    size_t np;
    cl_tokenizer_prefix(tok, &np);
    if (rc == 0 &&
        (cl_gguf_kv_str(w, "tokenizer.ggml.model", "gpt2") ||
         cl_gguf_kv_str(w, "tokenizer.ggml.pre", cl_gguf_pre_label(cl_tokenizer_pattern(tok))) ||
         cl_gguf_kv_strs(w, "tokenizer.ggml.tokens", tokens, (size_t)n_vocab) ||
         cl_gguf_kv_i32s(w, "tokenizer.ggml.token_type", types, (size_t)n_vocab) ||
         cl_gguf_kv_strs(w, "tokenizer.ggml.merges", (const char *const *)merges, nm) ||
         (m->bos_id >= 0 && cl_gguf_kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)m->bos_id)) ||
         (m->eos_id >= 0 && cl_gguf_kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)m->eos_id)) ||
         (m->pad_id >= 0 && cl_gguf_kv_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)m->pad_id)) ||
         cl_gguf_kv_bool(w, "tokenizer.ggml.add_bos_token", np > 0) ||
         (m->chat_template && cl_gguf_kv_str(w, "tokenizer.chat_template", m->chat_template))))
        rc = cl_err_set(e, CL_EXIT_SOFTWARE, "gguf: out of memory");
    for (int64_t i = 0; pads && i < n_vocab; i++)
        free(pads[i]);
    for (size_t i = 0; merges && i < nm; i++)
        free(merges[i]);
    free(pads);
    free(merges);
    free(tokens);
    free(types);
    return rc;
}

static int arch_kvs(cl_gguf_writer *w, const cl_gguf_model_info *m, int64_t n_vocab)
{
    char k[128];
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", m->arch, s), k)
    uint32_t hd = m->head_dim ? m->head_dim : m->embedding_length / (m->head_count ? m->head_count : 1);
    int bad = cl_gguf_kv_str(w, "general.architecture", m->arch) ||
              (m->name && cl_gguf_kv_str(w, "general.name", m->name)) ||
              cl_gguf_kv_u32(w, "general.alignment", CL_GGUF_ALIGNMENT) ||
              cl_gguf_kv_u32(w, KEY("vocab_size"), (uint32_t)n_vocab) ||
              cl_gguf_kv_u32(w, KEY("context_length"), m->context_length) ||
              cl_gguf_kv_u32(w, KEY("embedding_length"), m->embedding_length) ||
              cl_gguf_kv_u32(w, KEY("block_count"), m->block_count) ||
              cl_gguf_kv_u32(w, KEY("feed_forward_length"), m->feed_forward_length) ||
              cl_gguf_kv_u32(w, KEY("rope.dimension_count"), hd) ||
              cl_gguf_kv_u32(w, KEY("attention.head_count"), m->head_count) ||
              cl_gguf_kv_u32(w, KEY("attention.head_count_kv"), m->head_count_kv) ||
              cl_gguf_kv_f32(w, KEY("attention.layer_norm_rms_epsilon"), m->rms_eps) ||
              cl_gguf_kv_f32(w, KEY("rope.freq_base"), m->rope_theta);
    if (!bad && hd * m->head_count != m->embedding_length)
        bad = cl_gguf_kv_u32(w, KEY("attention.key_length"), hd) ||
              cl_gguf_kv_u32(w, KEY("attention.value_length"), hd);
#undef KEY
    return bad ? -1 : 0;
}

int cl_gguf_export_model(const char *path, const cl_gguf_model_info *m, const cl_st_tensor *hf,
                         size_t n, const cl_tokenizer *tok, cl_err *e)
{
    int llama = strcmp(m->arch, "llama") == 0;
    if (!llama && strcmp(m->arch, "qwen2") != 0)
        return cl_err_set(e, CL_EXIT_USAGE, "gguf: architecture %s is not llama or qwen2", m->arch);
    int64_t n_vocab = -1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(hf[i].name, "model.embed_tokens.weight") == 0 && hf[i].ndim == 2)
            n_vocab = hf[i].shape[0];
    if (n_vocab < 0)
        return cl_err_set(e, CL_EXIT_DATAERR, "gguf: no 2-D model.embed_tokens.weight");
    cl_gguf_writer *w = cl_gguf_writer_new();
    if (!w)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "gguf: out of memory");
    int rc = arch_kvs(w, m, n_vocab) ? cl_err_set(e, CL_EXIT_SOFTWARE, "gguf: out of memory") : 0;
    if (rc == 0)
        rc = tokenizer_kvs(w, tok, n_vocab, m, e);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char name[64];
        if (cl_gguf_tensor_name(hf[i].name, name, sizeof name)) {
            rc = cl_err_set(e, CL_EXIT_DATAERR, "gguf: %s: no llama.cpp name for this tensor", hf[i].name);
            break;
        }
        uint32_t heads = 0;
        if (llama && strstr(hf[i].name, ".self_attn.q_proj."))
            heads = m->head_count;
        else if (llama && strstr(hf[i].name, ".self_attn.k_proj."))
            heads = m->head_count_kv;
        rc = add_converted(w, name, &hf[i], heads, m->matrices, e);
    }
    if (rc == 0 && m->rope_freqs) {
        int64_t half = (m->head_dim ? m->head_dim : m->embedding_length / m->head_count) / 2;
        rc = cl_gguf_add_tensor(w, "rope_freqs.weight", CL_ST_F32, 1, &half, m->rope_freqs, e);
    }
    if (rc == 0)
        rc = cl_gguf_write(w, path, e);
    cl_gguf_writer_free(w);
    return rc;
}

int cl_gguf_export_lora(const char *path, const char *arch, const cl_peft_config *c,
                        uint32_t head_count, uint32_t head_count_kv, const cl_peft_lora *l,
                        size_t n, cl_err *e)
{
    int llama = strcmp(arch, "llama") == 0;
    cl_gguf_writer *w = cl_gguf_writer_new();
    if (!w)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "gguf: out of memory");
    /* llama.cpp scales by alpha / r itself; rsLoRA's alpha / sqrt(r) is written as the alpha
     * that gives the same scale. */
    float alpha = (float)(c->use_rslora ? cl_peft_scale(c) * c->r : c->alpha);
    int rc = cl_gguf_kv_str(w, "general.architecture", arch) || cl_gguf_kv_str(w, "general.type", "adapter") ||
                     cl_gguf_kv_u32(w, "general.alignment", CL_GGUF_ALIGNMENT) ||
                     cl_gguf_kv_str(w, "adapter.type", "lora") || cl_gguf_kv_f32(w, "adapter.lora.alpha", alpha)
                 ? cl_err_set(e, CL_EXIT_SOFTWARE, "gguf: out of memory")
                 : 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char hfname[160], base[64], name[96];
        const char *grp = strcmp(l[i].module, "q_proj") == 0 || strcmp(l[i].module, "k_proj") == 0 ||
                                  strcmp(l[i].module, "v_proj") == 0 || strcmp(l[i].module, "o_proj") == 0
                              ? "self_attn"
                              : "mlp";
        snprintf(hfname, sizeof hfname, "model.layers.%d.%s.%s.weight", l[i].layer, grp, l[i].module);
        if (cl_gguf_tensor_name(hfname, base, sizeof base)) {
            rc = cl_err_set(e, CL_EXIT_DATAERR, "gguf: %s: not a LoRA target", hfname);
            break;
        }
        uint32_t heads = !llama ? 0 : strcmp(l[i].module, "q_proj") == 0 ? head_count
                                  : strcmp(l[i].module, "k_proj") == 0 ? head_count_kv : 0;
        cl_st_tensor a = {NULL, l[i].dtype, 2, {c->r, l[i].in}, l[i].A, 0};
        cl_st_tensor b = {NULL, l[i].dtype, 2, {l[i].out, c->r}, l[i].B, 0};
        snprintf(name, sizeof name, "%s.lora_a", base);
        rc = add_converted(w, name, &a, 0, CL_GGUF_AS_STORED, e);
        snprintf(name, sizeof name, "%s.lora_b", base);
        if (rc == 0)
            rc = add_converted(w, name, &b, heads, CL_GGUF_AS_STORED, e);
    }
    if (rc == 0)
        rc = cl_gguf_write(w, path, e);
    cl_gguf_writer_free(w);
    return rc;
}
