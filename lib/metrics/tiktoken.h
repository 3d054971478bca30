/* tiktoken.h — token counts with a tiktoken rank file (cl100k_base and its kin).
 *
 * Owns: reading a `.tiktoken` file (one "base64-token rank" per line), splitting text into
 * pieces with cl100k_base's pre-tokenisation pattern (PCRE2, Unicode properties), and byte-pair
 * merging each piece (lowest-rank adjacent pair first, leftmost on ties, as tiktoken does) to
 * count its tokens.  Counting only: no ids out, no special tokens (encode_ordinary).
 * A loaded table is read-only and may be shared by threads. */
#ifndef CL_METRICS_TIKTOKEN_H
#define CL_METRICS_TIKTOKEN_H

#include <stddef.h>

#include "err.h"

typedef struct tiktoken tiktoken;

/* NULL with e naming the file and line on a malformed or unreadable rank file. */
tiktoken *tiktoken_load(const char *path, cl_err *e);
void tiktoken_free(tiktoken *t);

/* Tokens of text[0..len) (valid UTF-8).  -1 when out of memory or the matcher fails. */
long tiktoken_count(const tiktoken *t, const char *text, size_t len);

#endif
