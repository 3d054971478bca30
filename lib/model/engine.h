/* engine.h — forward-only generation with a KV cache, the in-process engine behind `local:`.
 *
 * Owns: one sequence's key/value cache [layers][max_seq][kv_heads * head_dim], chunked batched
 * prefill (GEMMs over up to 64 new tokens at a time, each attending to the cache), single-token
 * decode, and the sampler (greedy, temperature, top-k, top-p, seeded).  Shares the cl_llama
 * weights with training, adapters included (as enabled).  Must not know about tokenizers, chat
 * templates or HTTP. */
#ifndef CL_MODEL_ENGINE_H
#define CL_MODEL_ENGINE_H

#include <stdint.h>

#include "model/llama.h"

typedef struct cl_engine cl_engine;

cl_engine *cl_engine_new(cl_llama *m, int max_seq, cl_err *e);
void cl_engine_free(cl_engine *g);

/* Empties the cache (a new conversation). */
void cl_engine_reset(cl_engine *g);

/* Tokens held in the cache. */
int cl_engine_len(const cl_engine *g);

/* Appends n tokens at the next positions and writes the logits of the last one into logits
 * [vocab] (may be NULL).  -1 with e set when the cache would overflow or an id is invalid. */
int cl_engine_feed(cl_engine *g, const int *ids, int n, float *logits, cl_err *e);

typedef struct cl_sampler {
    double temperature;  /* <= 0: greedy */
    int top_k;           /* 0: off */
    double top_p;        /* >= 1 or <= 0: off */
} cl_sampler;

/* Draws a token from logits [v] (left unchanged); rng is advanced.  scratch needs v floats
 * and v ints. */
int cl_sample(const float *logits, int v, const cl_sampler *s, uint64_t *rng, float *pscratch,
              int *iscratch);

/* Feeds prompt, then samples up to max_new tokens into out, stopping after any stop id (kept in
 * out).  Returns the number of tokens generated, -1 on error. */
int cl_engine_generate(cl_engine *g, const int *prompt, int n, int max_new, const int *stop, int nstop,
                       const cl_sampler *s, uint64_t seed, int *out, cl_err *e);

#endif
