/* tokens.h — how many tokens a message costs, and by what count.
 *
 * Owns: the per-message token counts behind the `tokens` score: the API's recorded usage
 * (`usage.completion_tokens` on the message, or on a candidate, as cl-rollout writes it) or
 * whitespace words (Python's len(text.split()), the count verl's recipe uses) or a tokenizer:
 * a tiktoken rank file (cl100k_base, the count of the paper and the release code, split with
 * cl100k's pattern) or a model's tokenizer.json.  Tokenizing itself is lib/model/tokenizer's;
 * this module only counts.  A message without the number the method needs is an error, never
 * a zero. */
#ifndef CL_METRICS_TOKENS_H
#define CL_METRICS_TOKENS_H

#include <jv.h>

#include "core/err.h"
#include "model/tokenizer.h"

typedef enum tokens_method { TOKENS_USAGE, TOKENS_WORDS, TOKENS_TIKTOKEN, TOKENS_TOKENIZER } tokens_method;

/* "usage" | "words" | "tiktoken:FILE" | "tokenizer:FILE" → *m (and *file); -1 with e set
 * otherwise. */
int tokens_parse_method(const char *s, tokens_method *m, const char **file, cl_err *e);
const char *tokens_method_name(tokens_method m);

/* The tokenizer a file-based method counts with (a tiktoken rank file without special tokens,
 * or a tokenizer.json); NULL with e set when it cannot be read. */
cl_tokenizer *tokens_load(tokens_method m, const char *file, cl_err *e);

/* Tokens of text[0..len) (valid UTF-8) without added specials; -1 on failure.  Safe from
 * several threads sharing t. */
long tokens_count_text(const cl_tokenizer *t, const char *text, size_t len);

/* Tokens of one message {"role","content",["usage"]} (borrowed); tk is the tokenizer of the
 * file-based methods.  -1 with e set when the method's number is missing or the content is
 * not a string. */
int tokens_of_message(tokens_method m, const cl_tokenizer *tk, const jv *msg, double *n, cl_err *e);

#endif
