/* engine.h — forward-only generation with a KV cache, the in-process engine behind `local:`.
 *
 * Owns two engines over the same cl_llama weights:
 *   - cl_batch, the continuous-batching engine behind `local:` (below): many sequences, each
 *     with its own KV cache, advance together; every step is ONE forward over the new tokens of
 *     all of them (a decode row per generating sequence plus chunks of prompts being
 *     prefilled), so the projections are small-m products (linear.h) instead of one GEMV per
 *     sequence.  Sequences join and leave between steps; KV memory is bounded and admission
 *     waits (FIFO) when it is full.  Every per-row computation (linear.h's dot products, RMSNorm,
 *     RoPE, attention over the sequence's own cache, sampling with the sequence's own RNG) is
 *     independent of the other rows, so a sequence's tokens do not depend on what shared its
 *     steps, on the prefill chunking or on the thread count.
 *   - cl_engine, one sequence fed by hand (tests and greedy exports): its key/value cache
 *     [layers][max_seq][kv_heads * head_dim] goes through the same forward, 64 new tokens at a
 *     time, so there is one inference forward.
 * And the sampler (greedy, temperature, top-k, top-p, seeded).  Shares the cl_llama weights with
 * training, adapters included (as enabled; unmerged adapters run through the same per-row
 * kernels).  Must not know about tokenizers, chat templates or HTTP. */
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

/* Constrained decoding: which tokens may come next in a sequence's current state (e.g. a
 * JSON automaton, jsonmask.h).  allows() tests one token; mask() gives every allowed token as a
 * bitset (bit t of word t / 64; NULL when out of memory), the costlier question. */
typedef struct cl_token_filter {
    int (*allows)(void *ctx, int token);
    const uint64_t *(*mask)(void *ctx);
    void *ctx;
} cl_token_filter;

/* cl_sample from the distribution with the tokens f forbids removed and the rest renormalised
 * (temperature, top-k and top-p then apply to what is left); f NULL: cl_sample.  Greedy and
 * temperature-only sampling first take the unconstrained choice and only ask for the mask when
 * it is forbidden: for greedy the argmax stays the argmax, and for sampling a forbidden first
 * draw followed by a draw from the masked distribution picks each allowed t with probability
 * p(t) + (1 - Z) p(t) / Z = p(t) / Z (Z: the allowed mass), exactly the masked distribution.
 * With top-k or top-p the cut depends on what is masked, so the mask comes first.  -1 when f
 * allows nothing. */
int cl_sample_filtered(const float *logits, int v, const cl_sampler *s, uint64_t *rng, float *pscratch,
                       int *iscratch, const cl_token_filter *f);

/* Feeds prompt, then samples up to max_new tokens into out, stopping after any stop id (kept in
 * out).  Returns the number of tokens generated, -1 on error. */
int cl_engine_generate(cl_engine *g, const int *prompt, int n, int max_new, const int *stop, int nstop,
                       const cl_sampler *s, uint64_t seed, int *out, cl_err *e);

/* ---- the continuous-batching engine ------------------------------------------------------ */

typedef struct cl_batch cl_batch;
typedef struct cl_gen cl_gen;   /* one sequence in a cl_batch */

enum { CL_GEN_STOP = 0, CL_GEN_LENGTH = 1 };

typedef struct cl_gen_req {
    const int *prompt;   /* copied by cl_batch_submit */
    int n;               /* >= 1 and < max_position_embeddings */
    int max_new;         /* generated tokens at most (also bounded by the context) */
    cl_sampler sampler;
    uint64_t seed;       /* the sequence's own RNG: its samples depend on nothing else */
    /* After each sampled token (logits: the distribution it was drawn from, [vocab], valid
     * during the call).  Non-zero ends the sequence with CL_GEN_STOP. */
    int (*on_token)(void *ctx, int token, const float *logits);
    /* Once, when the sequence leaves (after its last on_token): CL_GEN_STOP or CL_GEN_LENGTH
     * (max_new or the context reached).  The cl_gen is the engine's after this returns (its
     * cache kept for later prompts, then freed): do not use it again, not even to cancel it. */
    void (*on_end)(void *ctx, int reason);
    void *ctx;
    /* Constrained decoding (filter.allows NULL: none), asked about the state after the last
     * on_token.  A sequence whose filter allows nothing ends with CL_GEN_STOP. */
    cl_token_filter filter;
} cl_gen_req;

/* An engine over m (fp32 or bf16 projections, adapters merged or not; with bf16 projections
 * the output head is read in bf16 too), whose products run over m's decode layout
 * (cl_llama_pack_decode, made here unless m computes on a device); m's weights must not change
 * while it lives.  The KV caches of its sequences take at most kv_bytes (a sequence larger
 * than that runs alone), and finished sequences' caches stay within that budget until a
 * waiting sequence needs the room: a prompt that starts with a kept sequence's tokens (the
 * next turn of a conversation, a shared system prompt) holds the same cache pages for them
 * instead of computing them (copying the rows of a last page it shares in part), to the same
 * bits.  So does one that starts with a running sequence's prompt (one call's choices, one
 * candidate's futures): it waits for that prompt's prefill, then shares.
 * step_tokens bounds the prompt tokens prefilled per step (decode rows always run). */
cl_batch *cl_batch_new(cl_llama *m, size_t kv_bytes, int step_tokens, cl_err *e);
void cl_batch_free(cl_batch *b);   /* sequences still there are dropped without callbacks */

/* Queues a sequence; NULL with e set (CL_EXIT_DATAERR) for an empty prompt, an id outside the
 * vocabulary or a prompt that leaves no room in the context. */
cl_gen *cl_batch_submit(cl_batch *b, const cl_gen_req *r, cl_err *e);

/* Removes a queued or running sequence at once, without callbacks (a hard stop).  Not from
 * inside a callback. */
void cl_batch_cancel(cl_batch *b, cl_gen *g);

/* Sequences waiting or running. */
int cl_batch_busy(const cl_batch *b);

/* One step: admits what fits, runs one forward over every running sequence's next tokens,
 * samples where a prompt is complete, calls back, retires finished sequences.  Returns the
 * number of tokens computed (0 when idle). */
int cl_batch_step(cl_batch *b);

/* Prompt positions taken from other caches (kept, or running: pages shared, rows copied)
 * instead of computed, since the engine started. */
long cl_batch_reused(const cl_batch *b);

/* Bytes of cache pages held: those of running and kept sequences (a shared page once), and the
 * spare pages no cache holds, kept for later sequences (never past the budget together, unless
 * one sequence alone is larger). */
size_t cl_batch_kv_held(const cl_batch *b);

/* The caches are kept in pages of this many positions, and sequences that start with the same
 * tokens share the pages those fill. */
#define CL_BATCH_KV_PAGE 32

/* Bytes of KV cache a sequence of `tokens` positions takes (whole pages). */
size_t cl_batch_kv_bytes(const cl_llama *m, int tokens);

#endif
