#include "collab/prompts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/buf.h"
#include "core/files.h"
#include "core/json.h"

int cl_prompt_set_parse(const char *name, cl_prompt_set *s, cl_err *e)
{
    if (strcmp(name, "official") == 0)
        *s = CL_PROMPTS_OFFICIAL;
    else if (strcmp(name, "cl") == 0)
        *s = CL_PROMPTS_CL;
    else
        return cl_err_set(e, CL_EXIT_USAGE, "--prompt-set: '%s' is not official or cl", name);
    return 0;
}

const char *cl_prompt_set_name(cl_prompt_set s) { return s == CL_PROMPTS_CL ? "cl" : "official"; }

const char *cl_prompt_in_set(cl_prompt_set s, const char *name)
{
    static const char *const own[][2] = {
        {"proact_assistant", "proact_assistant_cl"},
        {"collabllm_system", "collabllm_system_cl"},
    };
    if (s == CL_PROMPTS_CL)
        for (size_t i = 0; i < sizeof own / sizeof *own; i++)
            if (strcmp(name, own[i][0]) == 0)
                return own[i][1];
    return name;
}

char *cl_prompt_load(const char *dir, const char *name, cl_err *e)
{
    if (dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.txt", dir, name);
        struct stat st;
        if (stat(path, &st) == 0) {
            size_t n;
            char *s = cl_file_read(path, &n, e);
            if (!s && e)
                e->code = CL_EXIT_CONFIG;
            return s;
        }
        if (errno != ENOENT) {
            cl_err_set(e, CL_EXIT_CONFIG, "%s: %s", path, strerror(errno));
            return NULL;
        }
    }
    for (const cl_prompt_text *p = cl_builtin_prompts; p->name; p++)
        if (strcmp(p->name, name) == 0)
            return strdup(p->text);
    cl_err_set(e, CL_EXIT_CONFIG, "no prompt named '%s'%s%s", name, dir ? " in " : "", dir ? dir : "");
    return NULL;
}

char *cl_prompt_render(const char *tmpl, const jv *vars, cl_err *e)
{
    cl_buf b = {0};
    const char *p = tmpl;
    for (;;) {
        const char *open = strstr(p, "{{");
        if (!open) {
            cl_buf_put(&b, p, strlen(p));
            break;
        }
        const char *close = strstr(open + 2, "}}");
        if (!close) {
            cl_buf_put(&b, p, strlen(p));
            break;
        }
        cl_buf_put(&b, p, (size_t)(open - p));
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
        if (jv_get_kind(v) == JV_KIND_STRING) {
            cl_buf_put(&b, jv_string_value(v), (size_t)jv_string_length_bytes(jv_copy(v)));
            jv_free(v);
        } else {
            size_t n;
            char *s = cl_json_dump(&v, &n);
            jv_free(v);
            if (s)
                cl_buf_put(&b, s, n);
            else
                b.oom = 1;
            free(s);
        }
        p = close + 2;
    }
    cl_buf_put(&b, "", 0); /* an empty result is still a string */
    if (b.oom) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        goto fail;
    }
    return b.p;
fail:
    free(b.p);
    return NULL;
}
