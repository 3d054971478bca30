/* The inference engines: KV-cache prefill (chunked) and decode give the training forward's
 * logits at every position, adapters included; the sampler's greedy, top-k, top-p and seeded
 * temperature modes; stop tokens and context overflow.  The continuous-batching engine: every
 * sequence's tokens and logits are bitwise the same alone, among 7 and among 32 (greedy and
 * seeded sampling, chunked prefill mixed with decode, every kernel) and the same in every
 * kernel, a model that owns its weights keeps one copy and decodes to the same bits, its logits
 * are the training forward's, a bounded KV budget delays admission without dropping anything,
 * prompts reuse finished and running sequences' rows to the same bits (also when the running
 * one is cancelled), sampling over many blocks follows the softmax in every kernel, and
 * sequences can be cancelled. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/engine.h"
#include "model/linear.h"
#include "core/json.h"
#include "model/lora.h"

enum { V = 41, T = 70 };

/* flags: cl_llama_new's; tied: the head is the embedding */
static cl_llama *tiny_as(int flags, int tied)
{
    cl_llama_config c = {.vocab = V, .hidden = 32, .inter = 48, .layers = 2, .heads = 4, .kv_heads = 2,
                         .head_dim = 8, .max_pos = 128, .rms_eps = 1e-6, .rope_theta = 1e6, .qkv_bias = 1,
                         .bos_id = -1, .tie_embeddings = tied};
    strcpy(c.model_type, "qwen2");
    cl_err e = {0};
    cl_llama *m = cl_llama_new(&c, CL_F32, flags, &e);
    cl_lora_config lc = {.rank = 2, .alpha = 4, .targets = (1u << CL_Q) | (1u << CL_DOWN), .seed = 5};
    assert_int_equal(cl_lora_add(m, &lc, &e), 0);
    cl_llama_init_uniform(m, 8, 1);
    return m;
}

static cl_llama *tiny(void) { return tiny_as(0, 0); }

static void cached_decoding_equals_the_full_forward_at_every_position(void **s)
{
    (void)s;
    cl_llama *m = tiny();
    int ids[T];
    for (int i = 0; i < T; i++) ids[i] = (i * 13 + 5) % V;
    cl_err e = {0};
    assert_int_equal(cl_llama_forward(m, ids, NULL, NULL, 1, T, &e), 0);
    float *full = malloc(sizeof(float) * T * V), lg[V];
    cl_llama_logits(m, full);
    cl_engine *g = cl_engine_new(m, T, &e);
    assert_non_null(g);
    /* 67 tokens in one feed: a 64-token chunk and a 3-token chunk */
    assert_int_equal(cl_engine_feed(g, ids, 67, lg, &e), 0);
    for (int j = 0; j < V; j++) assert_true(fabsf(lg[j] - full[66 * V + j]) < 1e-4f);
    for (int i = 67; i < T; i++) {
        assert_int_equal(cl_engine_feed(g, &ids[i], 1, lg, &e), 0);
        for (int j = 0; j < V; j++) assert_true(fabsf(lg[j] - full[(size_t)i * V + j]) < 1e-4f);
    }
    assert_int_equal(cl_engine_len(g), T);
    /* token by token from an empty cache */
    cl_engine_reset(g);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(cl_engine_feed(g, &ids[i], 1, lg, &e), 0);
        for (int j = 0; j < V; j++) assert_true(fabsf(lg[j] - full[(size_t)i * V + j]) < 1e-4f);
    }
    free(full);
    cl_engine_free(g);
    cl_llama_free(m);
}

static void sampler_modes_behave(void **s)
{
    (void)s;
    float lg[5] = {0.5f, 2.0f, 1.9f, -1.0f, 0.0f}, p[5];
    int idx[5];
    uint64_t rng = 1;
    cl_sampler greedy = {0}, k1 = {.temperature = 1, .top_k = 1}, tp = {.temperature = 1, .top_p = 0.01};
    assert_int_equal(cl_sample(lg, 5, &greedy, &rng, p, idx), 1);
    assert_int_equal(cl_sample(lg, 5, &k1, &rng, p, idx), 1);
    assert_int_equal(cl_sample(lg, 5, &tp, &rng, p, idx), 1);
    /* top-k 2 only ever yields the two best; temperature sampling follows softmax */
    cl_sampler k2 = {.temperature = 1, .top_k = 2}, t1 = {.temperature = 1};
    int count[5] = {0};
    for (int i = 0; i < 4000; i++) {
        int a = cl_sample(lg, 5, &k2, &rng, p, idx);
        assert_true(a == 1 || a == 2);
        count[cl_sample(lg, 5, &t1, &rng, p, idx)]++;
    }
    double z = 0;
    for (int i = 0; i < 5; i++) z += exp(lg[i]);
    for (int i = 0; i < 5; i++) assert_true(fabs(count[i] / 4000.0 - exp(lg[i]) / z) < 0.03);
    /* ... at temperature 0.5: softmax of 2 x the logits */
    cl_sampler half = {.temperature = 0.5};
    int hc[5] = {0};
    for (int i = 0; i < 4000; i++) hc[cl_sample(lg, 5, &half, &rng, p, idx)]++;
    z = 0;
    for (int i = 0; i < 5; i++) z += exp(2 * lg[i]);
    for (int i = 0; i < 5; i++) assert_true(fabs(hc[i] / 4000.0 - exp(2 * lg[i]) / z) < 0.03);
    /* the same seed gives the same draws */
    uint64_t r1 = 77, r2 = 77;
    for (int i = 0; i < 20; i++) assert_int_equal(cl_sample(lg, 5, &t1, &r1, p, idx), cl_sample(lg, 5, &t1, &r2, p, idx));
}

/* A vocabulary of many blocks (the draw walks block sums, then one block's tokens): the draws
 * follow the softmax, bucket by bucket, and every kernel draws the same tokens. */
static void sampling_a_large_vocabulary_follows_the_softmax_in_every_kernel(void **s)
{
    (void)s;
    enum { NV = 1000, DRAWS = 20000, BUCKET = 50, SAME = 2000 };
    static float lg[NV], p[NV];
    static int idx[NV], first[SAME];
    for (int i = 0; i < NV; i++) lg[i] = (float)(8 * cl_hash_uniform(5, (uint64_t)i) - 4);
    cl_sampler t1 = {.temperature = 1};
    uint64_t rng = 3;
    double z = 0, want[NV / BUCKET] = {0};
    int got[NV / BUCKET] = {0};
    for (int i = 0; i < NV; i++) z += exp(lg[i]);
    for (int i = 0; i < NV; i++) want[i / BUCKET] += exp(lg[i]) / z;
    for (int i = 0; i < DRAWS; i++) {
        int t = cl_sample(lg, NV, &t1, &rng, p, idx);
        assert_true(t >= 0 && t < NV);
        got[t / BUCKET]++;
    }
    for (int b = 0; b < NV / BUCKET; b++) /* within 5 standard deviations */
        assert_true(fabs(got[b] - DRAWS * want[b]) <= 5 * sqrt(DRAWS * want[b] * (1 - want[b])) + 1);
    rng = 9;
    for (int i = 0; i < SAME; i++) first[i] = cl_sample(lg, NV, &t1, &rng, p, idx);
    const char *isas[] = {"avx2", "scalar"};
    for (int k = 0; k < 2; k++) {
        setenv("CL_SIMD", isas[k], 1);
        if (strcmp(cl_linear_isa(), isas[k]) != 0) continue; /* this CPU lacks it */
        rng = 9;
        for (int i = 0; i < SAME; i++) assert_int_equal(cl_sample(lg, NV, &t1, &rng, p, idx), first[i]);
    }
    unsetenv("CL_SIMD");
    cl_linear_isa();
}

static void generation_stops_at_stop_tokens_and_refuses_overflow(void **s)
{
    (void)s;
    cl_llama *m = tiny();
    cl_err e = {0};
    cl_engine *g = cl_engine_new(m, 16, &e);
    int prompt[3] = {1, 2, 3}, out[16], out2[16];
    cl_sampler greedy = {0};
    int n = cl_engine_generate(g, prompt, 3, 8, NULL, 0, &greedy, 0, out, &e);
    assert_int_equal(n, 8);
    cl_engine_reset(g);
    int n2 = cl_engine_generate(g, prompt, 3, 8, &out[2], 1, &greedy, 0, out2, &e);
    assert_true(n2 >= 1 && n2 <= 3 && out2[n2 - 1] == out[2]); /* stopped at the first occurrence */
    cl_engine_reset(g);
    int many[17] = {0};
    assert_int_equal(cl_engine_feed(g, many, 17, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "context"));
    int bad = V;
    assert_int_equal(cl_engine_feed(g, &bad, 1, NULL, &e), -1);
    assert_int_equal(e.code, CL_EXIT_DATAERR);
    cl_engine_free(g);
    cl_llama_free(m);
}

/* ---- the continuous-batching engine ---- */

enum { NSEQ = 32, NEW = 12 };

typedef struct rec {
    int toks[NEW + 1], n, ended, reason;
    uint64_t logit_hash;  /* of every distribution sampled from, bitwise */
    int first_step;       /* the step of the first token */
    const float *want;    /* training-forward logits check: prompt, or NULL */
    int *prompt, nprompt;
    cl_llama *m;
} rec;

static int step_no;

static int rec_token(void *ctx, int tok, const float *logits)
{
    rec *r = ctx;
    if (!r->n) r->first_step = step_no;
    r->toks[r->n++] = tok;
    r->logit_hash = cl_hash64(logits, sizeof(float) * V, r->logit_hash);
    if (r->m) { /* the logits equal the training forward's over prompt + tokens so far */
        int len = r->nprompt + r->n - 1, *ids = malloc(sizeof(int) * (size_t)len);
        memcpy(ids, r->prompt, sizeof(int) * (size_t)r->nprompt);
        memcpy(ids + r->nprompt, r->toks, sizeof(int) * (size_t)(r->n - 1));
        cl_err e = {0};
        float *full = malloc(sizeof(float) * (size_t)len * V);
        assert_int_equal(cl_llama_forward(r->m, ids, NULL, NULL, 1, len, &e), 0);
        cl_llama_logits(r->m, full);
        for (int j = 0; j < V; j++) assert_true(fabsf(logits[j] - full[(size_t)(len - 1) * V + j]) < 1e-4f);
        free(full);
        free(ids);
    }
    return 0;
}

static void rec_end(void *ctx, int reason)
{
    rec *r = ctx;
    r->ended++;
    r->reason = reason;
}

static int prompt_of(int i, int *ids)
{
    int n = 3 + (i * 37) % 90; /* 3..92 tokens: several prompts span two prefill chunks */
    for (int j = 0; j < n; j++) ids[j] = (i * 7 + j * 13 + 1) % V;
    return n;
}

/* Runs sequences first..first+count-1 together (temperature 0: greedy) into out. */
static void run_batch(cl_llama *m, int first, int count, double temperature, size_t kv, rec *out)
{
    cl_err e = {0};
    cl_batch *b = cl_batch_new(m, kv, 64, &e);
    assert_non_null(b);
    int ids[NSEQ][100];
    for (int i = first; i < first + count; i++) {
        int n = prompt_of(i, ids[i]);
        cl_gen_req q = {.prompt = ids[i], .n = n, .max_new = NEW,
                        .sampler = {.temperature = temperature, .top_k = 20, .top_p = 0.95},
                        .seed = 1000 + (uint64_t)i, .on_token = rec_token, .on_end = rec_end, .ctx = &out[i]};
        assert_non_null(cl_batch_submit(b, &q, &e));
    }
    for (step_no = 0; cl_batch_busy(b); step_no++) assert_true(cl_batch_step(b) > 0);
    assert_int_equal(cl_batch_step(b), 0);
    cl_batch_free(b);
}

static void compare(const rec *a, const rec *b)
{
    for (int i = 0; i < NSEQ; i++) {
        assert_int_equal(a[i].ended, 1);
        assert_int_equal(b[i].ended, 1);
        assert_int_equal(a[i].n, NEW);
        assert_int_equal(a[i].reason, CL_GEN_LENGTH);
        assert_memory_equal(a[i].toks, b[i].toks, sizeof a[i].toks);
        assert_true(a[i].logit_hash == b[i].logit_hash);
    }
}

/* all: the records of every sequence decoded in one batch, checked against one at a time and
 * seven at a time */
static void batched_equals_one_at_a_time(double temperature, rec *all)
{
    cl_llama *m = tiny();
    static rec alone[NSEQ], seven[NSEQ];
    memset(alone, 0, sizeof alone);
    memset(seven, 0, sizeof seven);
    memset(all, 0, sizeof(rec) * NSEQ);
    for (int i = 0; i < NSEQ; i++) run_batch(m, i, 1, temperature, (size_t)1 << 30, alone);
    for (int i = 0; i + 7 <= NSEQ; i += 7) run_batch(m, i, 7, temperature, (size_t)1 << 30, seven);
    for (int i = 28; i < NSEQ; i++) run_batch(m, i, 1, temperature, (size_t)1 << 30, seven);
    run_batch(m, 0, NSEQ, temperature, (size_t)1 << 30, all);
    compare(alone, seven);
    compare(alone, all);
    /* the samples do differ between sequences (the check above is not vacuous) */
    int differ = 0;
    for (int i = 1; i < NSEQ; i++) differ += memcmp(all[i].toks, all[0].toks, sizeof all[0].toks) != 0;
    assert_true(differ > NSEQ / 2);
    cl_llama_free(m);
}

/* A model that owns its weights (CL_LLAMA_DECODE, as local: loads them) keeps one copy once
 * packed: the projections' and the tied head's rows are given up (the embedding then reads the
 * panels), the adapters' kept; it decodes to the same bits as a model that keeps its rows. */
static void a_decoding_model_keeps_one_copy_and_the_same_bits(void **s)
{
    (void)s;
    static rec kept[NSEQ], owned[NSEQ];
    memset(kept, 0, sizeof kept);
    memset(owned, 0, sizeof owned);
    cl_llama *m = tiny_as(0, 1), *o = tiny_as(CL_LLAMA_DECODE, 1);
    run_batch(m, 0, NSEQ, 1.0, (size_t)1 << 30, kept);
    run_batch(o, 0, NSEQ, 1.0, (size_t)1 << 30, owned);
    compare(kept, owned);
    for (int l = 0; l < 2; l++)
        for (int p = 0; p < CL_NPROJ; p++) {
            assert_non_null(m->layers[l].proj[p].w->data);
            assert_null(o->layers[l].proj[p].w->data);
            assert_non_null(o->layers[l].proj[p].w->panels);
        }
    assert_true(o->lm_head == o->embed);
    assert_null(o->embed->data);
    assert_non_null(m->embed->data);
    assert_non_null(o->layers[0].proj[CL_Q].lora_a->data);
    cl_llama_free(m);
    cl_llama_free(o);
}

/* seq: submit prompt (n tokens) to b, sampled at temperature 1 from seed, its record in r */
static void submit_rec(cl_batch *b, const int *prompt, int n, uint64_t seed, rec *r)
{
    cl_err e = {0};
    memset(r, 0, sizeof *r);
    cl_gen_req q = {.prompt = prompt, .n = n, .max_new = NEW, .sampler = {.temperature = 1, .top_p = 0.9},
                    .seed = seed, .on_token = rec_token, .on_end = rec_end, .ctx = r};
    assert_non_null(cl_batch_submit(b, &q, &e));
}

static void drain(cl_batch *b)
{
    while (cl_batch_busy(b)) assert_true(cl_batch_step(b) > 0);
}

/* got decoded the tokens, and sampled from the distributions, that a fresh engine gives the
 * same request alone. */
static void assert_fresh_engine_bits(cl_llama *m, const int *prompt, int n, uint64_t seed, int step_tokens,
                                     const rec *got)
{
    cl_err e = {0};
    static rec fresh;
    cl_batch *f = cl_batch_new(m, (size_t)1 << 30, step_tokens, &e);
    assert_non_null(f);
    submit_rec(f, prompt, n, seed, &fresh);
    drain(f);
    assert_memory_equal(got->toks, fresh.toks, sizeof fresh.toks);
    assert_true(got->logit_hash == fresh.logit_hash);
    cl_batch_free(f);
}

/* A finished sequence's cache is kept: a next turn (its prompt, its reply, more) and prompts
 * that share its start copy those rows instead of computing them, and decode to the bits a
 * fresh engine gives them; prompts submitted together that share a start are prefilled once;
 * under a tight budget the kept caches give way and nothing waits for ever. */
static void later_prompts_reuse_a_finished_prefix_to_the_same_bits(void **s)
{
    (void)s;
    cl_llama *m = tiny();
    cl_err e = {0};
    int first[30], next[30 + NEW + 5], shared[3][40];
    for (int i = 0; i < 30; i++) first[i] = (i * 7 + 3) % V;
    static rec r1, r2, fresh, sr[3], sfresh[3];
    cl_batch *b = cl_batch_new(m, (size_t)1 << 30, 64, &e);
    submit_rec(b, first, 30, 11, &r1);
    drain(b);
    assert_int_equal(r1.n, NEW);
    assert_int_equal(cl_batch_reused(b), 0);
    /* the next turn: the prompt, the reply, five more tokens */
    memcpy(next, first, sizeof first);
    memcpy(next + 30, r1.toks, sizeof(int) * NEW);
    for (int i = 0; i < 5; i++) next[30 + NEW + i] = (i * 5 + 1) % V;
    int nn = 30 + NEW + 5;
    submit_rec(b, next, nn, 12, &r2);
    drain(b);
    /* its cache held the prompt and every reply token but the last (sampled, never fed) */
    assert_int_equal(cl_batch_reused(b), 30 + NEW - 1);
    cl_batch *f = cl_batch_new(m, (size_t)1 << 30, 64, &e);
    submit_rec(f, next, nn, 12, &fresh);
    drain(f);
    assert_int_equal(cl_batch_reused(f), 0);
    assert_memory_equal(r2.toks, fresh.toks, sizeof r2.toks);
    assert_true(r2.logit_hash == fresh.logit_hash);
    /* three prompts that share their first 20 tokens with the first one, then differ */
    for (int j = 0; j < 3; j++) {
        memcpy(shared[j], first, sizeof(int) * 20);
        for (int i = 20; i < 40; i++) shared[j][i] = (i * (j + 2)) % V;
        submit_rec(b, shared[j], 40, 20 + (uint64_t)j, &sr[j]);
        submit_rec(f, shared[j], 40, 20 + (uint64_t)j, &sfresh[j]);
    }
    long before = cl_batch_reused(b);
    drain(b);
    drain(f);
    assert_int_equal(cl_batch_reused(b) - before, 3 * 20);
    for (int j = 0; j < 3; j++) {
        assert_memory_equal(sr[j].toks, sfresh[j].toks, sizeof sr[j].toks);
        assert_true(sr[j].logit_hash == sfresh[j].logit_hash);
    }
    /* submitted together: three times one prompt and one that shares its first 30 tokens — the
     * first is prefilled, the others wait for its rows and copy them */
    int same[60];
    static rec tr[4], tfresh[4];
    for (int i = 0; i < 60; i++) same[i] = (i * 11 + 5) % V;
    cl_batch *t = cl_batch_new(m, (size_t)1 << 30, 64, &e);
    for (int j = 0; j < 4; j++) {
        int n = j < 3 ? 60 : 45;
        if (j == 3)
            for (int i = 30; i < 45; i++) same[i] = (i * 3 + 1) % V;
        submit_rec(t, same, n, 40 + (uint64_t)j, &tr[j]);
        cl_batch *one = cl_batch_new(m, (size_t)1 << 30, 64, &e);
        submit_rec(one, same, n, 40 + (uint64_t)j, &tfresh[j]);
        drain(one);
        cl_batch_free(one);
    }
    drain(t);
    assert_int_equal(cl_batch_reused(t), 2 * 59 + 30);
    for (int j = 0; j < 4; j++) {
        assert_int_equal(tr[j].ended, 1);
        assert_memory_equal(tr[j].toks, tfresh[j].toks, sizeof tr[j].toks);
        assert_true(tr[j].logit_hash == tfresh[j].logit_hash);
    }
    cl_batch_free(t);
    cl_batch_free(f);
    cl_batch_free(b);
    /* room for about two sequences: kept caches are dropped for the waiting ones */
    b = cl_batch_new(m, 2 * cl_batch_kv_bytes(m, 40 + NEW) + 1, 64, &e);
    for (int j = 0; j < 3; j++) submit_rec(b, shared[j], 40, 20 + (uint64_t)j, &sr[j]);
    drain(b);
    for (int j = 0; j < 3; j++) {
        assert_int_equal(sr[j].ended, 1);
        assert_memory_equal(sr[j].toks, sfresh[j].toks, sizeof sr[j].toks);
    }
    cl_batch_free(b);
    cl_llama_free(m);
}

/* A kept cache that a next turn holds whole (its prompt, its reply, more) gives its pages up at
 * once (the next turn holds those its rows fill; the last goes to the spares), and a later,
 * shorter sequence takes the spare instead of new memory: the memory held does not grow, and
 * the stale rows in the page change nothing (a fresh engine's bits). */
static void a_superseded_cache_gives_its_pages_to_later_sequences(void **s)
{
    (void)s;
    cl_llama *m = tiny();
    cl_err e = {0};
    int first[60], next[60 + NEW + 5], other[20];
    for (int i = 0; i < 60; i++) first[i] = (i * 13 + 2) % V;
    for (int i = 0; i < 20; i++) other[i] = (i * 17 + 9) % V;
    static rec r1, r2, r3;
    cl_batch *b = cl_batch_new(m, (size_t)1 << 30, 64, &e);
    submit_rec(b, first, 60, 31, &r1);
    drain(b);
    assert_int_equal(cl_batch_kv_held(b), cl_batch_kv_bytes(m, 60 + NEW));
    memcpy(next, first, sizeof first);
    memcpy(next + 60, r1.toks, sizeof(int) * NEW);
    for (int i = 0; i < 5; i++) next[60 + NEW + i] = (i * 3 + 4) % V;
    submit_rec(b, next, 60 + NEW + 5, 32, &r2);
    drain(b);
    assert_int_equal(cl_batch_reused(b), 60 + NEW - 1);
    /* the next turn holds the pages the first one's rows fill, and the first one's last page
     * went to the spares */
    size_t held = cl_batch_kv_held(b), whole = (60 + NEW - 1) / CL_BATCH_KV_PAGE * CL_BATCH_KV_PAGE;
    assert_int_equal(held, cl_batch_kv_bytes(m, 60 + NEW + 5 + NEW) + cl_batch_kv_bytes(m, 60 + NEW) -
                               cl_batch_kv_bytes(m, (int)whole));
    submit_rec(b, other, 20, 33, &r3);
    drain(b);
    assert_int_equal(r3.ended, 1);
    assert_int_equal(cl_batch_kv_held(b), held);
    assert_fresh_engine_bits(m, other, 20, 33, 64, &r3);
    cl_batch_free(b);
    cl_llama_free(m);
}

/* Prompts meet the caches that start as they do at any shared length from 8 tokens (the prefix
 * index's levels are 8 tokens: the longest source is found across and within them), and the
 * longest of several wins; 7 shared tokens are computed. */
static void a_prefix_is_found_at_any_length_from_eight_tokens(void **s)
{
    (void)s;
    cl_llama *m = tiny();
    cl_err e = {0};
    int base[40], g[40];
    for (int i = 0; i < 40; i++) base[i] = (i * 19 + 7) % V;
    static rec r, one;
    cl_batch *b = cl_batch_new(m, (size_t)1 << 30, 64, &e);
    submit_rec(b, base, 40, 50, &r);
    drain(b);
    /* each shares its first `at` tokens with base (and fewer with those before it) */
    static const int at[] = {7, 8, 12, 9, 23, 17, 33};
    for (size_t c = 0; c < sizeof at / sizeof *at; c++) {
        memcpy(g, base, sizeof g);
        for (int i = at[c]; i < 40; i++) g[i] = (i * 5 + 3 + (int)c) % V;
        long before = cl_batch_reused(b);
        submit_rec(b, g, 40, 60 + c, &one);
        drain(b);
        assert_int_equal(cl_batch_reused(b) - before, at[c] < 8 ? 0 : at[c]);
        assert_fresh_engine_bits(m, g, 40, 60 + c, 64, &one);
    }
    cl_batch_free(b);
    cl_llama_free(m);
}

static void batched_greedy_equals_one_at_a_time(void **s)
{
    (void)s;
    static rec all[NSEQ];
    batched_equals_one_at_a_time(0, all);
}

/* ... in every kernel this CPU has, and every kernel draws the same samples with the same
 * logits: the AVX2 path of machines without AVX-512, the portable one */
static void batched_sampling_equals_one_at_a_time_in_every_kernel(void **s)
{
    (void)s;
    static rec first[NSEQ], other[NSEQ];
    batched_equals_one_at_a_time(1.0, first);
    const char *isas[] = {"avx2", "scalar"};
    for (int i = 0; i < 2; i++) {
        setenv("CL_SIMD", isas[i], 1);
        if (strcmp(cl_linear_isa(), isas[i]) != 0) continue; /* this CPU lacks it */
        batched_equals_one_at_a_time(1.0, other);
        compare(first, other);
    }
    unsetenv("CL_SIMD");
    cl_linear_isa();
}

static void batched_logits_are_the_training_forwards(void **s)
{
    (void)s;
    cl_llama *m = tiny(); /* with enabled (unmerged) adapters */
    cl_err e = {0};
    cl_batch *b = cl_batch_new(m, (size_t)1 << 30, 16, &e);
    static rec r[3];
    int ids[3][100];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 3; i++) {
        r[i].nprompt = prompt_of(i + 1, ids[i]);
        r[i].prompt = ids[i];
        r[i].m = m;
        cl_gen_req q = {.prompt = ids[i], .n = r[i].nprompt, .max_new = 5, .sampler = {.temperature = 1},
                        .seed = (uint64_t)i, .on_token = rec_token, .on_end = rec_end, .ctx = &r[i]};
        assert_non_null(cl_batch_submit(b, &q, &e));
    }
    while (cl_batch_busy(b)) cl_batch_step(b);
    for (int i = 0; i < 3; i++) assert_int_equal(r[i].n, 5);
    cl_batch_free(b);
    cl_llama_free(m);
}

static void a_full_kv_budget_delays_admission_and_drops_nothing(void **s)
{
    (void)s;
    cl_llama *m = tiny();
    static rec free_run[NSEQ], tight[NSEQ];
    memset(free_run, 0, sizeof free_run);
    memset(tight, 0, sizeof tight);
    run_batch(m, 0, NSEQ, 1.0, (size_t)1 << 30, free_run);
    /* room for about two of the longest sequences at a time */
    run_batch(m, 0, NSEQ, 1.0, 2 * cl_batch_kv_bytes(m, 92 + NEW), tight);
    compare(free_run, tight);
    int late = 0;
    for (int i = 0; i < NSEQ; i++) late += tight[i].first_step > free_run[i].first_step;
    assert_true(late > NSEQ / 2);
    /* a sequence larger than the whole budget still runs, alone */
    static rec big[NSEQ];
    memset(big, 0, sizeof big);
    run_batch(m, 0, 2, 0, 1, big);
    assert_int_equal(big[0].ended + big[1].ended, 2);
    cl_llama_free(m);
}

static void stopped_and_cancelled_sequences_leave(void **s)
{
    (void)s;
    cl_llama *m = tiny();
    cl_err e = {0};
    cl_batch *b = cl_batch_new(m, (size_t)1 << 30, 64, &e);
    int ids[2][100], n[2] = {prompt_of(3, ids[0]), prompt_of(4, ids[1])};
    static rec r[3];
    memset(r, 0, sizeof r);
    cl_gen *g[3];
    for (int i = 0; i < 3; i++) { /* 1 differs from 0 and 2, so it runs beside 0 */
        cl_gen_req q = {.prompt = ids[i == 1], .n = n[i == 1], .max_new = 4, .on_token = rec_token,
                        .on_end = rec_end, .ctx = &r[i]};
        assert_non_null(g[i] = cl_batch_submit(b, &q, &e));
    }
    cl_batch_cancel(b, g[2]); /* still waiting */
    cl_batch_step(b);
    cl_batch_cancel(b, g[1]); /* running */
    while (cl_batch_busy(b)) cl_batch_step(b);
    assert_int_equal(r[0].ended, 1);
    assert_int_equal(r[0].n, 4);
    assert_int_equal(r[1].ended + r[2].ended, 0);
    assert_int_equal(r[2].n, 0);
    int bad[2] = {1, V};
    cl_gen_req q = {.prompt = bad, .n = 2, .max_new = 1};
    assert_null(cl_batch_submit(b, &q, &e));
    assert_int_equal(e.code, CL_EXIT_DATAERR);
    int *lng = calloc(200, sizeof(int));
    q = (cl_gen_req){.prompt = lng, .n = 128, .max_new = 1};
    assert_null(cl_batch_submit(b, &q, &e));
    assert_non_null(strstr(e.msg, "context"));
    free(lng);
    cl_batch_free(b);
    cl_llama_free(m);
}

/* A prompt waiting for a running sequence's prefill of the same prompt, when that sequence is
 * cancelled halfway: it is admitted and computes its own rows, to a fresh engine's bits. */
static void a_cancelled_prefill_leaves_its_follower_to_compute(void **s)
{
    (void)s;
    cl_llama *m = tiny();
    cl_err e = {0};
    int ids[100], n = prompt_of(7, ids); /* 82 tokens: five steps of 16 */
    static rec lead, follow;
    cl_batch *b = cl_batch_new(m, (size_t)1 << 30, 16, &e);
    memset(&lead, 0, sizeof lead);
    cl_gen_req q = {.prompt = ids, .n = n, .max_new = NEW, .sampler = {.temperature = 1}, .seed = 5,
                    .on_token = rec_token, .on_end = rec_end, .ctx = &lead};
    cl_gen *first = cl_batch_submit(b, &q, &e);
    assert_non_null(first);
    submit_rec(b, ids, n, 6, &follow);
    assert_int_equal(cl_batch_step(b), 16); /* a fifth of the first's prompt */
    cl_batch_cancel(b, first);
    drain(b);
    assert_int_equal(lead.ended, 0);
    assert_int_equal(follow.ended, 1);
    assert_int_equal(follow.n, NEW);
    assert_int_equal(cl_batch_reused(b), 0);
    assert_fresh_engine_bits(m, ids, n, 6, 16, &follow);
    cl_batch_free(b);
    cl_llama_free(m);
}

/* A cache page that two sequences hold outlives the first to go: a prompt that shares 40
 * tokens with a running sequence holds its first page (and copies 8 rows); that sequence is
 * cancelled and its other pages go to the spares, which a third sequence then writes over.  The
 * sharer still decodes to a fresh engine's bits (it would not if the shared page had gone to the
 * spares with the others). */
static void a_shared_page_outlives_its_first_holder(void **s)
{
    (void)s;
    cl_llama *m = tiny();
    cl_err e = {0};
    int a[50], sharer[50], other[50];
    for (int i = 0; i < 50; i++) {
        a[i] = (i * 23 + 5) % V;
        sharer[i] = i < 40 ? a[i] : (i * 3 + 2) % V;
        other[i] = (i * 29 + 11) % V;
    }
    static rec lead, rs, ro;
    memset(&lead, 0, sizeof lead);
    cl_batch *b = cl_batch_new(m, (size_t)1 << 30, 64, &e);
    cl_gen_req q = {.prompt = a, .n = 50, .max_new = NEW, .sampler = {.temperature = 1}, .seed = 80,
                    .on_token = rec_token, .on_end = rec_end, .ctx = &lead};
    cl_gen *first = cl_batch_submit(b, &q, &e);
    assert_non_null(first);
    assert_int_equal(cl_batch_step(b), 50); /* the whole prompt, and a first token */
    submit_rec(b, sharer, 50, 81, &rs);
    assert_true(cl_batch_step(b) > 0);
    assert_int_equal(cl_batch_reused(b), 40);
    _Static_assert(40 > CL_BATCH_KV_PAGE, "a whole page shared, not only copied rows");
    cl_batch_cancel(b, first);
    submit_rec(b, other, 50, 82, &ro);
    drain(b);
    assert_int_equal(lead.ended, 0);
    assert_int_equal(rs.ended, 1);
    assert_int_equal(ro.ended, 1);
    assert_fresh_engine_bits(m, sharer, 50, 81, 64, &rs);
    assert_fresh_engine_bits(m, other, 50, 82, 64, &ro);
    cl_batch_free(b);
    cl_llama_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cached_decoding_equals_the_full_forward_at_every_position),
        cmocka_unit_test(sampler_modes_behave),
        cmocka_unit_test(generation_stops_at_stop_tokens_and_refuses_overflow),
        cmocka_unit_test(a_superseded_cache_gives_its_pages_to_later_sequences),
        cmocka_unit_test(batched_greedy_equals_one_at_a_time),
        cmocka_unit_test(a_decoding_model_keeps_one_copy_and_the_same_bits),
        cmocka_unit_test(later_prompts_reuse_a_finished_prefix_to_the_same_bits),
        cmocka_unit_test(a_prefix_is_found_at_any_length_from_eight_tokens),
        cmocka_unit_test(sampling_a_large_vocabulary_follows_the_softmax_in_every_kernel),
        cmocka_unit_test(a_cancelled_prefill_leaves_its_follower_to_compute),
        cmocka_unit_test(a_shared_page_outlives_its_first_holder),
        cmocka_unit_test(batched_sampling_equals_one_at_a_time_in_every_kernel),
        cmocka_unit_test(batched_logits_are_the_training_forwards),
        cmocka_unit_test(a_full_kv_budget_delays_admission_and_drops_nothing),
        cmocka_unit_test(stopped_and_cancelled_sequences_leave),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
