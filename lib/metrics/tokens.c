#include "metrics/tokens.h"

#include <string.h>

#include "json.h"
#include "metrics/utext.h"

int tokens_parse_method(const char *s, tokens_method *m, cl_err *e)
{
    if (strcmp(s, "usage") == 0)
        *m = TOKENS_USAGE;
    else if (strcmp(s, "words") == 0)
        *m = TOKENS_WORDS;
    else
        return cl_err_set(e, CL_EXIT_USAGE, "--tokens: unknown method '%s' (usage, words)", s);
    return 0;
}

const char *tokens_method_name(tokens_method m) { return m == TOKENS_USAGE ? "usage" : "words"; }

int tokens_of_message(tokens_method m, const jv *msg, double *n, cl_err *e)
{
    if (m == TOKENS_WORDS) {
        const char *text = cl_json_str(msg, "content");
        if (!text)
            return cl_err_set(e, CL_EXIT_DATAERR, "content is not a string");
        *n = (double)utext_count_words(text, strlen(text));
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
