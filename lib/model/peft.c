/* peft.c — PEFT LoRA adapter read/write (see peft.h). */
#include "model/peft.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/files.h"
#include "core/json.h"

static const char *const modules[] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                      "gate_proj", "up_proj", "down_proj"};
#define N_MODULES 7

static int module_index(const char *m, size_t n)
{
    for (int i = 0; i < N_MODULES; i++)
        if (strlen(modules[i]) == n && memcmp(modules[i], m, n) == 0)
            return i;
    return -1;
}

static const char *module_group(int i) { return i < 4 ? "self_attn" : "mlp"; }

double cl_peft_scale(const cl_peft_config *c)
{
    return c->use_rslora ? c->alpha / sqrt((double)c->r) : c->alpha / c->r;
}

int cl_peft_tensor_name(char *buf, size_t size, int layer, const char *module, char which)
{
    int m = module_index(module, strlen(module));
    if (m < 0 || (which != 'A' && which != 'B'))
        return -1;
    snprintf(buf, size, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer,
             module_group(m), module, which);
    return 0;
}

/* ---- adapter_config.json ------------------------------------------------------------- */

static int is_empty_or_null(const jv *obj, const char *key)
{
    jv v = cl_json_get(obj, key);
    jv_kind k = jv_get_kind(v);
    int empty = k == JV_KIND_INVALID || k == JV_KIND_NULL ||
                (k == JV_KIND_OBJECT && jv_object_length(jv_copy(v)) == 0) ||
                (k == JV_KIND_ARRAY && jv_array_length(jv_copy(v)) == 0);
    jv_free(v);
    return empty;
}

int cl_peft_config_parse(const char *buf, size_t len, const char *name, cl_peft_config *c,
                         cl_err *e)
{
    memset(c, 0, sizeof *c);
    cl_json_check chk;
    if (cl_json_validate(buf, len, &chk))
        return cl_err_set(e, CL_EXIT_DATAERR, "%s: byte %zu: %s", name, chk.err_off, chk.err_what);
    jv v = cl_json_parse(buf, len);
    int rc = 0;
    const char *type = cl_json_str(&v, "peft_type");
    double r = cl_json_num(&v, "r", -1);
    if (jv_get_kind(v) != JV_KIND_OBJECT)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: not a JSON object", name);
    else if (!type || strcmp(type, "LORA") != 0)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: peft_type: %s is not LORA", name,
                        type ? type : "(missing)");
    else if (!(r >= 1 && r <= 65536 && r == floor(r)))
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: r: must be a positive integer", name);
    else if (cl_json_has(&v, "lora_alpha") && cl_json_kind(&v, "lora_alpha") != JV_KIND_NUMBER)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: lora_alpha: not a number", name);
    else if (cl_json_bool(&v, "use_dora", 0))
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: use_dora: DoRA adapters are not supported", name);
    else if (cl_json_bool(&v, "fan_in_fan_out", 0))
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: fan_in_fan_out: transposed weights are not supported",
                        name);
    else if (cl_json_str(&v, "bias") && strcmp(cl_json_str(&v, "bias"), "none") != 0)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: bias: only \"none\" is supported", name);
    else if (!is_empty_or_null(&v, "rank_pattern") || !is_empty_or_null(&v, "alpha_pattern"))
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: rank_pattern/alpha_pattern: per-module ranks are not supported",
                        name);
    else if (!is_empty_or_null(&v, "modules_to_save") || !is_empty_or_null(&v, "layers_to_transform"))
        rc = cl_err_set(e, CL_EXIT_DATAERR,
                        "%s: modules_to_save/layers_to_transform: not supported", name);
    if (rc == 0) {
        c->r = (int)r;
        c->alpha = cl_json_num(&v, "lora_alpha", 8);
        c->dropout = cl_json_num(&v, "lora_dropout", 0);
        c->use_rslora = cl_json_bool(&v, "use_rslora", 0);
        const char *init = cl_json_str(&v, "init_lora_weights");
        c->gaussian_init = init && strcmp(init, "gaussian") == 0;
        const char *base = cl_json_str(&v, "base_model_name_or_path");
        snprintf(c->base_model, sizeof c->base_model, "%s", base ? base : "");
        jv tm = cl_json_get(&v, "target_modules");
        if (jv_get_kind(tm) != JV_KIND_ARRAY)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: target_modules: expected a list of module names",
                            name);
        for (int i = 0; rc == 0 && i < jv_array_length(jv_copy(tm)); i++) {
            jv m = jv_array_get(jv_copy(tm), i);
            if (jv_get_kind(m) != JV_KIND_STRING ||
                module_index(jv_string_value(m), strlen(jv_string_value(m))) < 0)
                rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: target_modules[%d]: not one of q/k/v/o/gate/up/down_proj",
                                name, i);
            else if (c->n_targets == CL_PEFT_MAX_TARGETS)
                rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: target_modules: too many", name);
            else
                snprintf(c->targets[c->n_targets++], sizeof c->targets[0], "%s", jv_string_value(m));
            jv_free(m);
        }
        jv_free(tm);
    }
    jv_free(v);
    return rc;
}

static jv config_json(const cl_peft_config *c)
{
    jv v = jv_object();
    v = cl_json_set(v, "alpha_pattern", jv_object());
    v = cl_json_set(v, "auto_mapping", jv_null());
    v = cl_json_set(v, "base_model_name_or_path", c->base_model[0] ? jv_string(c->base_model) : jv_null());
    v = cl_json_set(v, "bias", jv_string("none"));
    v = cl_json_set(v, "fan_in_fan_out", jv_false());
    v = cl_json_set(v, "inference_mode", jv_true());
    v = cl_json_set(v, "init_lora_weights", c->gaussian_init ? jv_string("gaussian") : jv_true());
    v = cl_json_set(v, "layers_pattern", jv_null());
    v = cl_json_set(v, "layers_to_transform", jv_null());
    v = cl_json_set_num(v, "lora_alpha", c->alpha);
    v = cl_json_set_num(v, "lora_dropout", c->dropout);
    v = cl_json_set(v, "modules_to_save", jv_null());
    v = cl_json_set_str(v, "peft_type", "LORA");
    v = cl_json_set_num(v, "r", c->r);
    v = cl_json_set(v, "rank_pattern", jv_object());
    v = cl_json_set(v, "revision", jv_null());
    jv tm = jv_array();
    for (size_t i = 0; i < c->n_targets; i++)
        tm = jv_array_append(tm, jv_string(c->targets[i]));
    v = cl_json_set(v, "target_modules", tm);
    v = cl_json_set_str(v, "task_type", "CAUSAL_LM");
    v = cl_json_set(v, "use_dora", jv_false());
    return cl_json_set(v, "use_rslora", jv_bool(c->use_rslora));
}

int cl_peft_write(const char *dir, const cl_peft_config *c, const cl_peft_lora *l, size_t n,
                  cl_err *e)
{
    cl_st_tensor *t = calloc(2 * n + 1, sizeof *t);
    char (*names)[160] = calloc(2 * n + 1, sizeof *names);
    int rc = 0;
    if (!t || !names)
        rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (cl_peft_tensor_name(names[2 * i], sizeof names[0], l[i].layer, l[i].module, 'A') ||
            cl_peft_tensor_name(names[2 * i + 1], sizeof names[0], l[i].layer, l[i].module, 'B')) {
            rc = cl_err_set(e, CL_EXIT_SOFTWARE, "%s: module %s is not a LoRA target", dir, l[i].module);
            break;
        }
        t[2 * i] = (cl_st_tensor){names[2 * i], l[i].dtype, 2, {c->r, l[i].in}, l[i].A, 0};
        t[2 * i + 1] = (cl_st_tensor){names[2 * i + 1], l[i].dtype, 2, {l[i].out, c->r}, l[i].B, 0};
    }
    char *sp = cl_path_join(dir, "adapter_model.safetensors"), *cp = cl_path_join(dir, "adapter_config.json");
    if (rc == 0 && (!sp || !cp))
        rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    if (rc == 0)
        rc = cl_st_write(sp, t, 2 * n, e);
    if (rc == 0) {
        jv v = config_json(c);
        jv s = jv_dump_string(v, JV_PRINT_PRETTY | JV_PRINT_SORTED);
        FILE *f = fopen(cp, "wb");
        if (!f)
            rc = cl_err_set(e, CL_EXIT_IOERR, "%s: %s", cp, strerror(errno));
        else if ((fputs(jv_string_value(s), f) == EOF || fputc('\n', f) == EOF) | (fclose(f) != 0))
            rc = cl_err_set(e, CL_EXIT_IOERR, "%s: write failed", cp);
        jv_free(s);
    }
    free(sp);
    free(cp);
    free(t);
    free(names);
    return rc;
}

/* ---- reading ------------------------------------------------------------------------- */

struct cl_peft {
    cl_peft_config c;
    cl_safetensors *f;
    cl_peft_lora *l;
    size_t n;
};

void cl_peft_close(cl_peft *p)
{
    if (!p)
        return;
    cl_st_close(p->f);
    free(p->l);
    free(p);
}

/* Parses a PEFT tensor name; -1 when it is not one. */
static int parse_name(const char *s, int *layer, int *module, char *which)
{
    static const char pre[] = "base_model.model.model.layers.";
    if (strncmp(s, pre, sizeof pre - 1) != 0)
        return -1;
    s += sizeof pre - 1;
    char *end;
    long li = strtol(s, &end, 10);
    if (end == s || *end != '.' || li < 0 || li > 100000 || (s[0] == '0' && end - s > 1))
        return -1;
    s = end + 1;
    const char *grp = strncmp(s, "self_attn.", 10) == 0 ? "self_attn" : strncmp(s, "mlp.", 4) == 0 ? "mlp" : NULL;
    if (!grp)
        return -1;
    s += strlen(grp) + 1;
    const char *dot = strchr(s, '.');
    int m = dot ? module_index(s, (size_t)(dot - s)) : -1;
    if (m < 0 || strcmp(module_group(m), grp) != 0)
        return -1;
    if (strcmp(dot, ".lora_A.weight") == 0)
        *which = 'A';
    else if (strcmp(dot, ".lora_B.weight") == 0)
        *which = 'B';
    else
        return -1;
    *layer = (int)li;
    *module = m;
    return 0;
}

static int lora_cmp(const void *a, const void *b)
{
    const cl_peft_lora *x = a, *y = b;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return module_index(x->module, strlen(x->module)) - module_index(y->module, strlen(y->module));
}

cl_peft *cl_peft_open(const char *dir, cl_err *e)
{
    cl_peft *p = calloc(1, sizeof *p);
    char *cp = cl_path_join(dir, "adapter_config.json"), *sp = cl_path_join(dir, "adapter_model.safetensors");
    int rc = p && cp && sp ? 0 : cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    size_t len;
    char *buf = rc ? NULL : cl_file_read(cp, &len, e);
    if (rc == 0 && !buf)
        rc = -1;
    if (rc == 0)
        rc = cl_peft_config_parse(buf, len, cp, &p->c, e);
    free(buf);
    if (rc == 0 && !(p->f = cl_st_open(sp, e)))
        rc = -1;
    size_t nt = rc ? 0 : cl_st_count(p->f);
    if (rc == 0 && !(p->l = calloc(nt + 1, sizeof *p->l)))
        rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    for (size_t i = 0; rc == 0 && i < nt; i++) {
        const cl_st_tensor *t = cl_st_at(p->f, i);
        int layer = 0, m = 0;
        char which = 0;
        if (parse_name(t->name, &layer, &m, &which))
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: not a PEFT LoRA tensor name", sp, t->name);
        else if (t->ndim != 2 || (t->dtype != CL_ST_F32 && t->dtype != CL_ST_F16 && t->dtype != CL_ST_BF16))
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: must be a 2-D F32/F16/BF16 matrix", sp, t->name);
        else if ((which == 'A' ? t->shape[0] : t->shape[1]) != p->c.r)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: shape [%lld, %lld] does not have rank r=%d %s",
                            sp, t->name, (long long)t->shape[0], (long long)t->shape[1], p->c.r,
                            which == 'A' ? "rows (A is r x in)" : "columns (B is out x r)");
        else {
            int listed = 0;
            for (size_t k = 0; k < p->c.n_targets; k++)
                listed |= strcmp(p->c.targets[k], modules[m]) == 0;
            if (!listed)
                rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: %s is not in target_modules", sp, t->name,
                                modules[m]);
        }
        if (rc)
            break;
        size_t k = 0;
        while (k < p->n && !(p->l[k].layer == layer && strcmp(p->l[k].module, modules[m]) == 0))
            k++;
        if (k == p->n)
            p->l[p->n++] = (cl_peft_lora){layer, modules[m], -1, -1, t->dtype, NULL, NULL};
        cl_peft_lora *x = &p->l[k];
        if (x->dtype != t->dtype)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: A and B differ in dtype", sp, t->name);
        else if (which == 'A') {
            x->A = t->data;
            x->in = t->shape[1];
        } else {
            x->B = t->data;
            x->out = t->shape[0];
        }
    }
    for (size_t k = 0; rc == 0 && k < p->n; k++)
        if (!p->l[k].A || !p->l[k].B)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: layer %d %s: lora_%c is missing", sp, p->l[k].layer,
                            p->l[k].module, p->l[k].A ? 'B' : 'A');
    if (rc == 0)
        qsort(p->l, p->n, sizeof *p->l, lora_cmp);
    free(cp);
    free(sp);
    if (rc) {
        cl_peft_close(p);
        return NULL;
    }
    return p;
}

const cl_peft_config *cl_peft_config_of(const cl_peft *p) { return &p->c; }
size_t cl_peft_count(const cl_peft *p) { return p->n; }
const cl_peft_lora *cl_peft_at(const cl_peft *p, size_t i) { return i < p->n ? &p->l[i] : NULL; }
