#include "metrics/tokens.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/files.h"
#include "core/json.h"
#include "core/sha256.h"
#include "metrics/utext.h"

/* Python's tiktoken caches a download under the SHA-1 of its URL; this is cl100k_base's. */
#define TIKTOKEN_CACHE_NAME "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"

int tokens_parse_method(const char *s, tokens_method *m, const char **file, cl_err *e)
{
    if (strcmp(s, "cl100k") == 0 || strcmp(s, "cl100k_base") == 0)
        *m = TOKENS_CL100K;
    else if (strcmp(s, "usage") == 0)
        *m = TOKENS_USAGE;
    else if (strcmp(s, "words") == 0)
        *m = TOKENS_WORDS;
    else if (strncmp(s, "tiktoken:", 9) == 0 && s[9]) {
        *m = TOKENS_TIKTOKEN;
        *file = s + 9;
    } else if (strncmp(s, "tokenizer:", 10) == 0 && s[10]) {
        *m = TOKENS_TOKENIZER;
        *file = s + 10;
    } else
        return cl_err_set(e, CL_EXIT_USAGE,
                          "--tokens: unknown method '%s' (cl100k, usage, words, tiktoken:FILE, "
                          "tokenizer:FILE)", s);
    return 0;
}

const char *tokens_method_name(tokens_method m)
{
    static const char *names[] = {"cl100k_base", "usage", "words", "tiktoken", "tokenizer"};
    return names[m];
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

char *tokens_find_cl100k(cl_err *e)
{
    const char *env = getenv("CL_CL100K");
    if (env && *env) {
        if (is_file(env))
            return strdup(env);
        cl_err_set(e, CL_EXIT_NOINPUT, "CL_CL100K=%s: no such file", env);
        return NULL;
    }
    char cand[3][PATH_MAX];
    int n = 0;
    char exe[PATH_MAX / 2]; /* leaves room for the suffix below */
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(cand[n++], PATH_MAX, "%s/../share/cl/cl100k_base.tiktoken", exe);
        }
    }
    const char *cache = getenv("TIKTOKEN_CACHE_DIR");
    if (!cache || !*cache)
        cache = getenv("DATA_GYM_CACHE_DIR");
    if (cache && *cache)
        snprintf(cand[n++], PATH_MAX, "%s/" TIKTOKEN_CACHE_NAME, cache);
    else {
        const char *tmp = getenv("TMPDIR");
        snprintf(cand[n++], PATH_MAX, "%s/data-gym-cache/" TIKTOKEN_CACHE_NAME, tmp && *tmp ? tmp : "/tmp");
    }
    for (int i = 0; i < n; i++)
        if (is_file(cand[i]))
            return strdup(cand[i]);
    cl_err_set(e, CL_EXIT_NOINPUT,
               "cl100k_base.tiktoken not found (looked at %s%s%s); `make deps` or "
               "scripts/install-cl100k installs it, CL_CL100K=FILE names one", cand[0],
               n > 1 ? " and " : "", n > 1 ? cand[1] : "");
    return NULL;
}

/* cl100k_base from wherever it is, checked: a rank file that is not OpenAI's byte for byte
 * would give counts that look right and are not the paper's. */
static cl_tokenizer *load_cl100k(cl_err *e)
{
    char *path = tokens_find_cl100k(e);
    if (!path)
        return NULL;
    size_t len;
    char *buf = cl_file_read(path, &len, e);
    cl_tokenizer *t = NULL;
    if (buf) {
        char hex[65];
        cl_sha256_hex(buf, len, hex);
        if (strcmp(hex, TOKENS_CL100K_SHA256) != 0)
            cl_err_set(e, CL_EXIT_DATAERR, "%s: not OpenAI's cl100k_base.tiktoken (SHA-256 %s, want %s)",
                       path, hex, TOKENS_CL100K_SHA256);
        else
            t = cl_tokenizer_from_tiktoken(buf, len, path, NULL, NULL, NULL, 0, e);
    }
    free(buf);
    free(path);
    return t;
}

cl_tokenizer *tokens_load(tokens_method m, const char *file, cl_err *e)
{
    if (m == TOKENS_CL100K)
        return load_cl100k(e);
    if (m == TOKENS_TIKTOKEN)
        return cl_tokenizer_load_tiktoken(file, NULL, NULL, NULL, 0, e);
    return cl_tokenizer_load(file, e);
}

long tokens_count_text(const cl_tokenizer *t, const char *text, size_t len)
{
    /* A work area per call: counting is per message, and areas are what threads must not share. */
    cl_tok_work *w = cl_tokenizer_work_new(t);
    cl_ids ids = {0};
    cl_err e = {0};
    long n = w && cl_tokenizer_encode_with(t, w, text, len, 0, &ids, &e) == 0 ? (long)ids.n : -1;
    cl_ids_free(&ids);
    cl_tokenizer_work_free(w);
    return n;
}

int tokens_of_message(tokens_method m, const cl_tokenizer *tk, const jv *msg, double *n, cl_err *e)
{
    if (m != TOKENS_USAGE) {
        jv content = cl_json_get(msg, "content");
        if (jv_get_kind(content) != JV_KIND_STRING) {
            jv_free(content);
            return cl_err_set(e, CL_EXIT_DATAERR, "content is not a string");
        }
        const char *text = jv_string_value(content);
        size_t len = (size_t)jv_string_length_bytes(jv_copy(content));
        long k = m == TOKENS_WORDS ? (long)utext_count_words(text, len) : tokens_count_text(tk, text, len);
        jv_free(content);
        if (k < 0)
            return cl_err_set(e, CL_EXIT_SOFTWARE, "tokenizer: out of memory or invalid text");
        *n = (double)k;
        return 0;
    }
    jv usage = cl_json_get(msg, "usage");
    double v = -1;
    if (jv_get_kind(usage) == JV_KIND_OBJECT) {
        v = cl_json_num(&usage, "visible_tokens", -1);
        if (v < 0)
            v = cl_json_num(&usage, "completion_tokens", -1);
    }
    jv_free(usage);
    if (v < 0)
        return cl_err_set(e, CL_EXIT_DATAERR,
                          "usage.completion_tokens is missing (count with --tokens cl100k instead)");
    *n = v;
    return 0;
}
