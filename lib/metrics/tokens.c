#include "metrics/tokens.h"

#include <string.h>

#include "json.h"
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
    } else
        return cl_err_set(e, CL_EXIT_USAGE,
                          "--tokens: unknown method '%s' (usage, words, tiktoken:FILE)", s);
    return 0;
}

const char *tokens_method_name(tokens_method m)
{
    static const char *names[] = {"usage", "words", "tiktoken"};
    return names[m];
}

int tokens_of_message(tokens_method m, const tiktoken *tk, const jv *msg, double *n, cl_err *e)
{
    if (m != TOKENS_USAGE) {
        jv content = cl_json_get(msg, "content");
        if (jv_get_kind(content) != JV_KIND_STRING) {
            jv_free(content);
            return cl_err_set(e, CL_EXIT_DATAERR, "content is not a string");
        }
        const char *text = jv_string_value(content);
        size_t len = (size_t)jv_string_length_bytes(jv_copy(content));
        long k = m == TOKENS_WORDS ? (long)utext_count_words(text, len) : tiktoken_count(tk, text, len);
        jv_free(content);
        if (k < 0)
            return cl_err_set(e, CL_EXIT_SOFTWARE, "tiktoken: out of memory");
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
