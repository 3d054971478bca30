/* tokens.h — how many tokens a message costs, and by what count.
 *
 * Owns: the per-message token counts behind the `tokens` score: cl100k_base (the count of the
 * paper and the release code: OpenAI's rank file, found where scripts/install-cl100k puts it
 * and refused unless its SHA-256 is OpenAI's), the API's recorded usage (`usage` on the
 * message, or on a candidate, as cl-rollout writes it), whitespace words (Python's
 * len(text.split()), the count verl's recipe uses) or a tokenizer: any tiktoken rank file
 * (split with cl100k's pattern) or a model's tokenizer.json.  Tokenizing itself is
 * lib/model/tokenizer's; this module only counts.  A message without the number the method
 * needs is an error, never a zero. */
#ifndef CL_METRICS_TOKENS_H
#define CL_METRICS_TOKENS_H

#include <jv.h>

#include "core/err.h"
#include "model/tokenizer.h"

typedef enum tokens_method {
    TOKENS_CL100K, TOKENS_USAGE, TOKENS_WORDS, TOKENS_TIKTOKEN, TOKENS_TOKENIZER
} tokens_method;

/* SHA-256 of OpenAI's cl100k_base.tiktoken (the digest tiktoken itself checks). */
#define TOKENS_CL100K_SHA256 "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"

/* "cl100k" | "usage" | "words" | "tiktoken:FILE" | "tokenizer:FILE" → *m (and *file); -1
 * with e set otherwise. */
int tokens_parse_method(const char *s, tokens_method *m, const char **file, cl_err *e);

/* The name records carry: "cl100k_base", "usage", "words", "tiktoken", "tokenizer". */
const char *tokens_method_name(tokens_method m);

/* Where cl100k_base.tiktoken is, the first found of: $CL_CL100K (then nothing else), the
 * program's ../share/cl/ (the source tree's bin/ and an installed PREFIX/bin/), the cache of
 * Python's tiktoken ($TIKTOKEN_CACHE_DIR, else $DATA_GYM_CACHE_DIR, else $TMPDIR or /tmp plus
 * data-gym-cache; the file is named by the SHA-1 of OpenAI's URL).  Malloc'd path, or NULL
 * with e set (CL_EXIT_NOINPUT) naming where it looked and how to install it. */
char *tokens_find_cl100k(cl_err *e);

/* The tokenizer a file-based method counts with: cl100k (file ignored: found as above, and
 * refused with CL_EXIT_DATAERR unless its SHA-256 is TOKENS_CL100K_SHA256), a tiktoken rank
 * file (no special tokens) or a tokenizer.json; NULL with e set when it cannot be read. */
cl_tokenizer *tokens_load(tokens_method m, const char *file, cl_err *e);

/* Tokens of text[0..len) (valid UTF-8) without added specials; -1 on failure.  Safe from
 * several threads sharing t. */
long tokens_count_text(const cl_tokenizer *t, const char *text, size_t len);

/* Tokens of one message {"role","content",["usage"]} (borrowed); tk is the tokenizer of the
 * file-based methods.  usage: the message's usage.visible_tokens (the reply's share of the
 * call's completion tokens, cl-rollout's estimate when the reply was one field of a JSON
 * answer), else usage.completion_tokens.  -1 with e set when the method's number is missing
 * or the content is not a string. */
int tokens_of_message(tokens_method m, const cl_tokenizer *tk, const jv *msg, double *n, cl_err *e);

#endif
