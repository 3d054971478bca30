/* ft — test driver for cl-finetune's outputs, through the library's own loaders.
 *
 *   ft generate DIR ADAPTER|- MAXNEW   prompts on stdin (JSON: a string = one user message, or an
 *                                      array of messages); prints each greedy reply (specials
 *                                      left out) as a JSON string, one per line
 *   ft logits DIR ADAPTER|- TEXT        the logits of every position of TEXT (no specials added),
 *                                      one "%.9g" value per line
 * Exit: 0, 2 usage, else the library's error code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "train/modelio.h"

static int fail(const cl_err *e)
{
    fprintf(stderr, "ft: %s\n", e->msg);
    return e->code ? e->code : 70;
}

static int open_model(cl_ft_model *fm, const char *dir, const char *adapter, cl_err *e)
{
    if (cl_ft_model_load(fm, dir, CL_F32, 0, e) || cl_ft_model_set_format(fm, NULL, e)) return -1;
    return strcmp(adapter, "-") ? cl_ft_model_load_adapter(fm, adapter, e) : 0;
}

static int cmd_generate(const char *dir, const char *adapter, int max_new)
{
    cl_err e = {0};
    cl_ft_model fm;
    if (open_model(&fm, dir, adapter, &e)) {
        cl_ft_model_free(&fm);
        return fail(&e);
    }
    char line[65536];
    int rc = 0;
    while (!rc && fgets(line, sizeof line, stdin)) {
        jv v = cl_json_parse(line, strlen(line));
        cl_chat_msg m[64];
        size_t n = 0;
        if (jv_get_kind(v) == JV_KIND_STRING) {
            m[n++] = (cl_chat_msg){"user", jv_string_value(v)};
        } else {
            int k = jv_get_kind(v) == JV_KIND_ARRAY ? jv_array_length(jv_copy(v)) : 0;
            for (int i = 0; i < k && n < 64; i++) {
                jv x = jv_array_get(jv_copy(v), i);
                m[n++] = (cl_chat_msg){cl_json_str(&x, "role"), cl_json_str(&x, "content")};
                jv_free(x);
            }
        }
        cl_chat_tokens ct;
        memset(&ct, 0, sizeof ct);
        cl_ids out = {0};
        rc = cl_chat_render(fm.tok, fm.format, m, n, 1, &ct, &e);
        int *ids = rc ? NULL : malloc(sizeof(int) * (ct.ids.n ? ct.ids.n : 1));
        for (size_t i = 0; ids && i < ct.ids.n; i++) ids[i] = ct.ids.v[i];
        if (!rc) rc = cl_ft_generate_greedy(&fm, ids, (int)ct.ids.n, max_new, &out, &e);
        size_t len;
        char *text = rc ? NULL : cl_tokenizer_decode(fm.tok, out.v, out.n, 1, &len, &e);
        if (text) {
            jv s = jv_string_sized(text, (int)len);
            char *js = cl_json_dump(&s, &len);
            printf("%s\n", js);
            free(js);
            jv_free(s);
        } else if (!rc) {
            rc = -1;
        }
        free(text);
        free(ids);
        cl_ids_free(&out);
        cl_chat_tokens_free(&ct);
        jv_free(v);
    }
    cl_ft_model_free(&fm);
    return rc ? fail(&e) : 0;
}

static int cmd_logits(const char *dir, const char *adapter, const char *text)
{
    cl_err e = {0};
    cl_ft_model fm;
    if (open_model(&fm, dir, adapter, &e)) {
        cl_ft_model_free(&fm);
        return fail(&e);
    }
    cl_ids ids = {0};
    int rc = cl_tokenizer_encode(fm.tok, text, strlen(text), 0, &ids, &e);
    int *x = rc ? NULL : malloc(sizeof(int) * (ids.n ? ids.n : 1));
    for (size_t i = 0; x && i < ids.n; i++) x[i] = ids.v[i];
    if (!rc) rc = cl_llama_forward(fm.m, x, NULL, NULL, 1, (int)ids.n, &e);
    if (!rc) {
        size_t cnt = ids.n * (size_t)fm.m->cfg.vocab;
        float *lg = malloc(sizeof(float) * cnt);
        cl_llama_logits(fm.m, lg);
        for (size_t i = 0; i < cnt; i++) printf("%.9g\n", (double)lg[i]);
        free(lg);
    }
    free(x);
    cl_ids_free(&ids);
    cl_ft_model_free(&fm);
    return rc ? fail(&e) : 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "generate")) return cmd_generate(argv[2], argv[3], atoi(argv[4]));
    if (argc == 5 && !strcmp(argv[1], "logits")) return cmd_logits(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: ft generate DIR ADAPTER|- N < prompts | ft logits DIR ADAPTER|- TEXT\n");
    return 2;
}
