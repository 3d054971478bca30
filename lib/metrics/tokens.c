#include "metrics/tokens.h"

#include <string.h>

#include "core/json.h"
#include "metrics/utext.h"

int tokens_parse_method(const char *s, tokens_method *m, const char **file, cl_err *e)
{
    if (strcmp(s, "usage") == 0)
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
                          "--tokens: unknown method '%s' (usage, words, tiktoken:FILE, tokenizer:FILE)", s);
    return 0;
}

const char *tokens_method_name(tokens_method m)
{
    static const char *names[] = {"usage", "words", "tiktoken", "tokenizer"};
    return names[m];
}

cl_tokenizer *tokens_load(tokens_method m, const char *file, cl_err *e)
{
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
    double v = jv_get_kind(usage) == JV_KIND_OBJECT ? cl_json_num(&usage, "completion_tokens", -1) : -1;
    jv_free(usage);
    if (v < 0)
        return cl_err_set(e, CL_EXIT_DATAERR,
                          "usage.completion_tokens is missing (count with --tokens words instead)");
    *n = v;
    return 0;
}
