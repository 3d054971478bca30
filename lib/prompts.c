#include "prompts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static char *read_file(const char *path, int *missing)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *missing = errno == ENOENT;
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (cap - n - 1 == 0) {
            char *b = realloc(buf, cap *= 2);
            if (!b) {
                free(buf);
                buf = NULL;
            }
            buf = b;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        *missing = 0;
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

char *cl_prompt_load(const char *dir, const char *name, cl_err *e)
{
    if (dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.txt", dir, name);
        int missing = 0;
        char *s = read_file(path, &missing);
        if (s)
            return s;
        if (!missing) {
            cl_err_set(e, CL_EXIT_CONFIG, "%s: cannot read prompt file", path);
            return NULL;
        }
    }
    for (const cl_prompt_text *p = cl_builtin_prompts; p->name; p++)
        if (strcmp(p->name, name) == 0)
            return strdup(p->text);
    cl_err_set(e, CL_EXIT_CONFIG, "no prompt named '%s'%s%s", name, dir ? " in " : "", dir ? dir : "");
    return NULL;
}

typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

static int sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p)
            return -1;
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return 0;
}

char *cl_prompt_render(const char *tmpl, const jv *vars, cl_err *e)
{
    sbuf b = {0};
    const char *p = tmpl;
    for (;;) {
        const char *open = strstr(p, "{{");
        if (!open) {
            if (sb_add(&b, p, strlen(p)) < 0)
                goto oom;
            break;
        }
        const char *close = strstr(open + 2, "}}");
        if (!close) {
            if (sb_add(&b, p, strlen(p)) < 0)
                goto oom;
            break;
        }
        if (sb_add(&b, p, (size_t)(open - p)) < 0)
            goto oom;
        char key[128];
        size_t klen = (size_t)(close - open - 2);
        if (klen == 0 || klen >= sizeof key) {
            cl_err_set(e, CL_EXIT_CONFIG, "prompt placeholder too long or empty near '%.20s'", open);
            goto fail;
        }
        memcpy(key, open + 2, klen);
        key[klen] = 0;
        jv v = cl_json_get(vars, key);
        if (!jv_is_valid(v)) {
            jv_free(v);
            cl_err_set(e, CL_EXIT_CONFIG, "prompt uses {{%s}}, which is not a known variable", key);
            goto fail;
        }
        int rc;
        if (jv_get_kind(v) == JV_KIND_STRING) {
            rc = sb_add(&b, jv_string_value(v), (size_t)jv_string_length_bytes(jv_copy(v)));
            jv_free(v);
        } else {
            size_t n;
            char *s = cl_json_dump(&v, &n);
            jv_free(v);
            rc = s ? sb_add(&b, s, n) : -1;
            free(s);
        }
        if (rc < 0)
            goto oom;
        p = close + 2;
    }
    if (!b.s && sb_add(&b, "", 0) < 0)
        goto oom;
    return b.s;
oom:
    cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
fail:
    free(b.s);
    return NULL;
}
