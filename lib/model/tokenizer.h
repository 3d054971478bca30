/* tokenizer.h — byte-level BPE tokenizers as the ecosystem ships them.
 *
 * Owns: loading a Hugging Face tokenizer.json (byte-level BPE: Llama-3, Qwen2/2.5/3, SmolLM,
 * GPT-2 family) or a tiktoken rank file, encoding text to token ids exactly as the reference
 * implementation does, and decoding ids back to the exact bytes.
 *
 * Encoding order (as Hugging Face tokenizers): added tokens are split out of the raw text first
 * (leftmost-longest, with their lstrip/rstrip/single_word rules); each remaining segment is
 * normalised (NFC/NFKC/NFD/NFKD via utf8proc, when the file asks), split by the pre-tokenizer
 * regexes (run verbatim through PCRE2 with UTF+UCP), mapped to bytes and merged by rank
 * (ignore_merges: a pre-token that is itself in the vocabulary is emitted whole); the
 * post-processor's specials (e.g. Llama-3's <|begin_of_text|>) are added only when asked.
 *
 * Must not know: chat formats (chat.h), model weights, files other than the tokenizer's own.
 * Thread safety: a loaded tokenizer is read-only.  Encoding writes a work area (regex match
 * state, the word cache): cl_tokenizer_encode uses the tokenizer's own, so one thread at a
 * time; threads sharing a tokenizer each use cl_tokenizer_encode_with and their own area. */
#ifndef CL_MODEL_TOKENIZER_H
#define CL_MODEL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* A growable array of token ids. Zero-initialise; free with cl_ids_free. */
typedef struct cl_ids {
    int32_t *v;
    size_t n, cap;
} cl_ids;

int cl_ids_push(cl_ids *ids, int32_t id); /* 0, or -1 when out of memory */
void cl_ids_free(cl_ids *ids);

typedef struct cl_tokenizer cl_tokenizer;

/* Unicode White_Space (what lstrip/rstrip and template trims remove). */
int cl_unicode_is_space(int32_t cp);
/* 1 when the normal form ("NFC", "NFD", "NFKC", "NFKD") leaves any text made of ASCII and code
 * points like cp unchanged (no combining class, no decomposition the form applies, never the
 * second half of a composition): text of such code points skips normalising.  -1 for another
 * form name. */
int cl_unicode_nf_stable(const char *form, int32_t cp);

/* The byte-level alphabet (GPT-2's byte->unicode table): writes the 1 or 2 UTF-8 bytes that
 * stand for byte b in vocabulary texts and returns their count. */
size_t cl_byte_text(unsigned char b, char out[2]);

/* Loads tokenizer.json from path.  Anything this module cannot reproduce exactly (another model
 * type, byte_fallback, an unknown normaliser or pre-tokenizer) is refused with a message naming
 * the file and the field, exit code CL_EXIT_DATAERR (CL_EXIT_NOINPUT when unreadable). */
cl_tokenizer *cl_tokenizer_load(const char *path, cl_err *e);
/* The same from a buffer; name is used in messages. */
cl_tokenizer *cl_tokenizer_from_json(const char *buf, size_t len, const char *name, cl_err *e);

/* Loads a tiktoken rank file ("<base64 token> <rank>" per line, ranks 0..n-1 dense) with the
 * pre-tokenizer regex `pattern` (NULL: cl100k's) and optional special tokens (ids given;
 * names may be NULL when n_special is 0). */
cl_tokenizer *cl_tokenizer_load_tiktoken(const char *path, const char *pattern,
                                         const char *const *special_names,
                                         const int32_t *special_ids, size_t n_special, cl_err *e);

/* The same from a buffer; path is used in messages. */
cl_tokenizer *cl_tokenizer_from_tiktoken(const char *buf, size_t len, const char *path,
                                         const char *pattern, const char *const *special_names,
                                         const int32_t *special_ids, size_t n_special, cl_err *e);

void cl_tokenizer_free(cl_tokenizer *t);

/* Appends the ids of text[0..len) to out.  add_special adds the post-processor's specials
 * (Llama-3: <|begin_of_text|> first).  text must be valid UTF-8.  Returns 0, or -1 with e set
 * (invalid UTF-8 names the byte offset). */
int cl_tokenizer_encode(cl_tokenizer *t, const char *text, size_t len, int add_special,
                        cl_ids *out, cl_err *e);

/* A work area for cl_tokenizer_encode_with (one per thread); NULL when out of memory. */
typedef struct cl_tok_work cl_tok_work;
cl_tok_work *cl_tokenizer_work_new(const cl_tokenizer *t);
void cl_tokenizer_work_free(cl_tok_work *w);
/* cl_tokenizer_encode on a shared tokenizer with the caller's work area. */
int cl_tokenizer_encode_with(const cl_tokenizer *t, cl_tok_work *w, const char *text, size_t len,
                             int add_special, cl_ids *out, cl_err *e);

/* Runs the encoder up to the merges: calls word() with the bytes of each pre-token (added
 * tokens are left out).  A non-zero return from word() stops with an error.  For trainers. */
int cl_tokenizer_pretokenize(cl_tokenizer *t, const char *text, size_t len,
                             int (*word)(void *ctx, const char *s, size_t n), void *ctx, cl_err *e);

/* The exact bytes of ids, malloc'd and NUL-terminated (*len excludes the NUL).  skip_special
 * leaves out special added tokens.  NULL with e set on an unknown id. */
char *cl_tokenizer_decode(const cl_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                          size_t *len, cl_err *e);

/* One past the largest id (model vocabulary and added tokens). */
int32_t cl_tokenizer_vocab_size(const cl_tokenizer *t);
/* The id of a token by its text as written in the file (e.g. "<|eot_id|>", "Ġthe"); -1 if none. */
int32_t cl_tokenizer_token_id(const cl_tokenizer *t, const char *token);
/* The token's text as written in the file (NULL for an id that is not used). */
const char *cl_tokenizer_token_text(const cl_tokenizer *t, int32_t id);
/* The bytes the token decodes to; *len set.  NULL for an unused id. */
const char *cl_tokenizer_token_bytes(const cl_tokenizer *t, int32_t id, size_t *len);

enum cl_token_kind {
    CL_TOKEN_UNUSED = 0, /* a hole in the id space */
    CL_TOKEN_NORMAL,     /* model vocabulary */
    CL_TOKEN_SPECIAL,    /* added token with "special": true (control token) */
    CL_TOKEN_ADDED       /* added token that is not special (user-defined) */
};
enum cl_token_kind cl_tokenizer_token_kind(const cl_tokenizer *t, int32_t id);

/* Merges in rank order as (left id, right id) pairs; *n set.  Borrowed. */
const int32_t (*cl_tokenizer_merges(const cl_tokenizer *t, size_t *n))[2];

/* The ids the post-processor adds before/after a sequence (borrowed; *n may be 0). */
const int32_t *cl_tokenizer_prefix(const cl_tokenizer *t, size_t *n);
const int32_t *cl_tokenizer_suffix(const cl_tokenizer *t, size_t *n);

/* The regex of the first pre-tokenizer split (NULL if none), for exporters that must name it. */
const char *cl_tokenizer_pattern(const cl_tokenizer *t);

#endif
