/* bpe_train.h — learn a byte-level BPE vocabulary from a corpus and write it as tokenizer.json.
 *
 * Owns: word counting through the tokenizer's own pre-tokenizer (so training and encoding split
 * text identically), the merge loop (most frequent adjacent pair, ties to the smaller id pair),
 * and the tokenizer.json it writes — one the reference implementation loads.  The file's layout
 * (normaliser, split regex, ByteLevel step, post-processor, merge encoding) is chosen by the
 * options so tests can produce every flavour the encoder must handle.
 * Must not know: models, chat formats. */
#ifndef CL_MODEL_BPE_TRAIN_H
#define CL_MODEL_BPE_TRAIN_H

#include <stddef.h>

#include "core/err.h"

typedef struct cl_bpe_added {
    const char *content;
    int special;          /* "special": true (control token) */
    int lstrip, rstrip;
} cl_bpe_added;

typedef struct cl_bpe_train_opts {
    size_t vocab_size;    /* wanted size: 256 bytes + merges + added tokens */
    unsigned min_frequency; /* stop when the best pair is rarer (default 2) */
    const char *pattern;  /* Split regex; NULL: Llama-3's */
    int gpt2;             /* GPT-2 layout: ByteLevel(use_regex) instead of Split + ByteLevel */
    int add_prefix_space; /* ByteLevel add_prefix_space (GPT-2 layout) */
    int nfc;              /* NFC normaliser (Qwen2) */
    int ignore_merges;    /* Llama-3 */
    int merges_as_pairs;  /* write merges as ["a","b"] instead of "a b" */
    const char *bos;      /* TemplateProcessing prepends this added token; NULL: ByteLevel */
    const cl_bpe_added *added;
    size_t n_added;
} cl_bpe_train_opts;

/* Learns merges from texts[i][0..lens[i]) and returns tokenizer.json text (malloc'd,
 * NUL-terminated, *len set).  NULL with e set on invalid UTF-8 or a bad option. */
char *cl_bpe_train(const char *const *texts, const size_t *lens, size_t n,
                   const cl_bpe_train_opts *o, size_t *len, cl_err *e);

#endif
