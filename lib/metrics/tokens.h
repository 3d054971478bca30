/* tokens.h — how many tokens a message costs, and by what count.
 *
 * Owns: the per-message token counts behind the `tokens` score: the API's recorded usage
 * (`usage.completion_tokens` on the message, or on a candidate, as cl-rollout writes it) or
 * whitespace words (Python's len(text.split()), the count verl's recipe uses) or a tiktoken
 * rank file (cl100k_base, the count of the paper and the release code).  A message
 * without the number the method needs is an error, never a zero. */
#ifndef CL_METRICS_TOKENS_H
#define CL_METRICS_TOKENS_H

#include <jv.h>

#include "err.h"
#include "metrics/tiktoken.h"

typedef enum tokens_method { TOKENS_USAGE, TOKENS_WORDS, TOKENS_TIKTOKEN } tokens_method;

/* "usage" | "words" | "tiktoken:FILE" → *m (and *file for tiktoken); -1 with e set otherwise. */
int tokens_parse_method(const char *s, tokens_method *m, const char **file, cl_err *e);
const char *tokens_method_name(tokens_method m);

/* Tokens of one message {"role","content",["usage"]} (borrowed); tk is the rank table for
 * TOKENS_TIKTOKEN.  -1 with e set when the method's number is missing or the content is not
 * a string. */
int tokens_of_message(tokens_method m, const tiktoken *tk, const jv *msg, double *n, cl_err *e);

#endif
