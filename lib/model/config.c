/* config.c — HF config.json to cl_llama_config. */
#include "model/config.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

static int get_int(const jv *o, const char *key, int fallback, int *out, const char *what, cl_err *e)
{
    jv_kind k = cl_json_kind(o, key);
    if (k == JV_KIND_INVALID || k == JV_KIND_NULL) {
        if (fallback == INT32_MIN) return cl_err_set(e, CL_EXIT_CONFIG, "%s: missing field \"%s\"", what, key);
        *out = fallback;
        return 0;
    }
    double x = cl_json_num(o, key, NAN);
    if (k != JV_KIND_NUMBER || x != floor(x) || x < 0 || x > 1e9)
        return cl_err_set(e, CL_EXIT_CONFIG, "%s: field \"%s\" must be a non-negative integer", what, key);
    *out = (int)x;
    return 0;
}

static int get_num(const jv *o, const char *key, double fallback, double *out, const char *what, cl_err *e)
{
    jv_kind k = cl_json_kind(o, key);
    if (k == JV_KIND_INVALID || k == JV_KIND_NULL) {
        *out = fallback;
        return 0;
    }
    if (k != JV_KIND_NUMBER) return cl_err_set(e, CL_EXIT_CONFIG, "%s: field \"%s\" must be a number", what, key);
    *out = cl_json_num(o, key, fallback);
    return 0;
}

static int get_ids(const jv *o, const char *key, cl_llama_config *c, const char *what, cl_err *e)
{
    jv v = cl_json_get(o, key);
    int rc = 0;
    if (jv_get_kind(v) == JV_KIND_NUMBER) {
        c->eos_ids[c->n_eos++] = (int)jv_number_value(v);
    } else if (jv_get_kind(v) == JV_KIND_ARRAY) {
        int n = jv_array_length(jv_copy(v));
        for (int i = 0; i < n && rc == 0; i++) {
            jv x = jv_array_get(jv_copy(v), i);
            if (jv_get_kind(x) != JV_KIND_NUMBER || c->n_eos == CL_MAX_EOS)
                rc = cl_err_set(e, CL_EXIT_CONFIG, "%s: field \"%s\" must list at most %d integer ids",
                                what, key, CL_MAX_EOS);
            else
                c->eos_ids[c->n_eos++] = (int)jv_number_value(x);
            jv_free(x);
        }
    } else if (jv_get_kind(v) != JV_KIND_INVALID && jv_get_kind(v) != JV_KIND_NULL) {
        rc = cl_err_set(e, CL_EXIT_CONFIG, "%s: field \"%s\" must be an id or a list of ids", what, key);
    }
    jv_free(v);
    return rc;
}

int cl_config_check(const cl_llama_config *c, const char *what, cl_err *e)
{
    if (c->vocab <= 0 || c->hidden <= 0 || c->inter <= 0 || c->layers <= 0 || c->heads <= 0 ||
        c->kv_heads <= 0 || c->head_dim <= 0)
        return cl_err_set(e, CL_EXIT_CONFIG, "%s: sizes must be positive", what);
    if (c->heads % c->kv_heads)
        return cl_err_set(e, CL_EXIT_CONFIG,
                          "%s: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)",
                          what, c->heads, c->kv_heads);
    if (c->head_dim % 2 || c->head_dim > 512)
        return cl_err_set(e, CL_EXIT_CONFIG, "%s: head_dim %d must be even and at most 512", what, c->head_dim);
    if (!(c->rms_eps > 0) || !(c->rope_theta > 0))
        return cl_err_set(e, CL_EXIT_CONFIG, "%s: rms_norm_eps and rope_theta must be positive", what);
    if (c->rope_llama3 && !(c->rope_factor > 0 && c->rope_high_freq > c->rope_low_freq && c->rope_orig_max > 0))
        return cl_err_set(e, CL_EXIT_CONFIG, "%s: rope_scaling needs factor > 0, high_freq_factor > "
                          "low_freq_factor and original_max_position_embeddings", what);
    return 0;
}

int cl_config_parse(cl_llama_config *c, const char *text, size_t len, const char *what, cl_err *e)
{
    memset(c, 0, sizeof *c);
    jv o = cl_json_parse(text, len);
    if (jv_get_kind(o) != JV_KIND_OBJECT) {
        jv_free(o);
        return cl_err_set(e, CL_EXIT_CONFIG, "%s: not a JSON object", what);
    }
    int rc = -1;
    const char *mt = cl_json_str(&o, "model_type");
    const char *act = cl_json_str(&o, "hidden_act");
    if (!mt || (strcmp(mt, "llama") && strcmp(mt, "qwen2"))) {
        cl_err_set(e, CL_EXIT_CONFIG, "%s: model_type \"%s\" is not supported (llama, qwen2)", what,
                   mt ? mt : "(missing)");
        goto out;
    }
    if (act && strcmp(act, "silu")) {
        cl_err_set(e, CL_EXIT_CONFIG, "%s: hidden_act \"%s\" is not supported (silu)", what, act);
        goto out;
    }
    snprintf(c->model_type, sizeof c->model_type, "%s", mt);
    int qwen = !strcmp(mt, "qwen2");
    if (get_int(&o, "vocab_size", INT32_MIN, &c->vocab, what, e) ||
        get_int(&o, "hidden_size", INT32_MIN, &c->hidden, what, e) ||
        get_int(&o, "intermediate_size", INT32_MIN, &c->inter, what, e) ||
        get_int(&o, "num_hidden_layers", INT32_MIN, &c->layers, what, e) ||
        get_int(&o, "num_attention_heads", INT32_MIN, &c->heads, what, e) ||
        get_int(&o, "num_key_value_heads", c->heads, &c->kv_heads, what, e) ||
        get_int(&o, "head_dim", c->heads ? c->hidden / c->heads : 0, &c->head_dim, what, e) ||
        get_int(&o, "max_position_embeddings", 2048, &c->max_pos, what, e) ||
        get_int(&o, "bos_token_id", -1, &c->bos_id, what, e) ||
        get_num(&o, "rms_norm_eps", 1e-6, &c->rms_eps, what, e) ||
        get_num(&o, "rope_theta", 10000.0, &c->rope_theta, what, e) ||
        get_ids(&o, "eos_token_id", c, what, e))
        goto out;
    c->tie_embeddings = cl_json_bool(&o, "tie_word_embeddings", 0);
    int ab = cl_json_bool(&o, "attention_bias", 0);
    c->qkv_bias = qwen ? 1 : ab;
    c->o_bias = qwen ? 0 : ab;
    c->mlp_bias = qwen ? 0 : cl_json_bool(&o, "mlp_bias", 0);
    jv rs = cl_json_get(&o, "rope_scaling");
    if (jv_get_kind(rs) == JV_KIND_OBJECT) {
        const char *rt = cl_json_str(&rs, "rope_type");
        if (!rt) rt = cl_json_str(&rs, "type");
        if (!rt || strcmp(rt, "llama3")) {
            cl_err_set(e, CL_EXIT_CONFIG, "%s: rope_scaling type \"%s\" is not supported (llama3)", what,
                       rt ? rt : "(missing)");
            jv_free(rs);
            goto out;
        }
        c->rope_llama3 = 1;
        if (get_num(&rs, "factor", 0, &c->rope_factor, what, e) ||
            get_num(&rs, "low_freq_factor", 1, &c->rope_low_freq, what, e) ||
            get_num(&rs, "high_freq_factor", 4, &c->rope_high_freq, what, e) ||
            get_int(&rs, "original_max_position_embeddings", 8192, &c->rope_orig_max, what, e)) {
            jv_free(rs);
            goto out;
        }
    }
    jv_free(rs);
    rc = cl_config_check(c, what, e);
out:
    jv_free(o);
    return rc;
}

int cl_config_load(cl_llama_config *c, const char *path, cl_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f) return cl_err_set(e, CL_EXIT_NOINPUT, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            char *nb = cap < (64u << 20) ? realloc(buf, cap *= 2) : NULL;
            if (!nb) free(buf);
            buf = nb;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) return cl_err_set(e, CL_EXIT_CONFIG, "%s: too large or out of memory", path);
    int rc = bad ? cl_err_set(e, CL_EXIT_IOERR, "%s: read error", path) : cl_config_parse(c, buf, len, path, e);
    free(buf);
    return rc;
}

void cl_rope_inv_freq(const cl_llama_config *c, double *inv_freq)
{
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow(c->rope_theta, (2.0 * i) / c->head_dim);
        if (c->rope_llama3) {
            /* Meta's Llama-3.1 remap: long wavelengths slowed by `factor`, short ones kept,
             * a smooth blend in between. */
            double lo_wl = c->rope_orig_max / c->rope_low_freq, hi_wl = c->rope_orig_max / c->rope_high_freq;
            double wl = 2 * 3.14159265358979323846 / f;
            if (wl > lo_wl) {
                f /= c->rope_factor;
            } else if (wl >= hi_wl) {
                double sm = (c->rope_orig_max / wl - c->rope_low_freq) / (c->rope_high_freq - c->rope_low_freq);
                f = (1 - sm) * f / c->rope_factor + sm * f;
            }
        }
        inv_freq[i] = f;
    }
}

long cl_config_params(const cl_llama_config *c)
{
    long d = c->hidden, q = (long)c->heads * c->head_dim, kv = (long)c->kv_heads * c->head_dim;
    long layer = 2 * d + d * q + 2 * d * kv + q * d + 3 * d * c->inter;
    if (c->qkv_bias) layer += q + 2 * kv;
    if (c->o_bias) layer += d;
    if (c->mlp_bias) layer += 2 * c->inter + d;
    return (long)c->vocab * d * (c->tie_embeddings ? 1 : 2) + d + c->layers * layer;
}
