/* lib/train: the trainer's DPO step against the float64 PyTorch reference of the model core
 * (tests/torch/gen_model_fixtures.py), gradient accumulation across micro-batches, chat
 * rendering with completion-only masks, keep_end truncation, batch plans and packing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "model/bpe_train.h"
#include "train/data.h"
#include "train/finetune.h"
#include "torch_fixture.h"

#define EXPECT_CLOSE(err, tol, what) do { \
    double e_ = (err); \
    if (!(e_ <= (tol))) fail_msg("%s: relative error %.3g exceeds %.1g", (what), e_, (double)(tol)); \
} while (0)

/* ---- DPO step vs torch ------------------------------------------------------------------- */

typedef struct fxmodel {
    clfx *fx;
    cl_llama *m;
    int b, t, *ids, *pos, *seg, *target, *seqid;
} fxmodel;

static int *ints(const clfx *fx, const char *name)
{
    const clfx_rec *r = clfx_get(fx, name);
    assert_non_null(r);
    int *out = malloc(sizeof(int) * r->count);
    memcpy(out, r->data, 4 * r->count);
    return out;
}

static void fx_open(fxmodel *f, const char *file)
{
    memset(f, 0, sizeof *f);
    f->fx = clfx_load(file);
    if (!f->fx) fail_msg("cannot read fixture %s", file);
    const clfx_rec *c = clfx_get(f->fx, "config");
    cl_llama_config cfg;
    cl_err e = {0};
    assert_int_equal(cl_config_parse(&cfg, (const char *)c->data, c->count, file, &e), 0);
    f->m = cl_llama_new(&cfg, CL_F32, 0, &e);
    assert_non_null(f->m);
    cl_lora_config lc = {.rank = (int)clfx_val(f->fx, "lora_rank", 0), .alpha = clfx_val(f->fx, "lora_alpha", 0),
                         .rslora = (int)clfx_val(f->fx, "lora_rslora", 0),
                         .targets = (unsigned)clfx_val(f->fx, "lora_targets", 0), .seed = 1};
    assert_int_equal(cl_lora_add(f->m, &lc, &e), 0);
    cl_llama_init_uniform(f->m, (uint64_t)clfx_val(f->fx, "seed", 0), 1);
    f->b = (int)clfx_val(f->fx, "B", 0);
    f->t = (int)clfx_val(f->fx, "T", 0);
    f->ids = ints(f->fx, "ids");
    f->pos = ints(f->fx, "pos");
    f->seg = ints(f->fx, "seg");
    f->target = ints(f->fx, "targets");
    f->seqid = malloc(sizeof(int) * (size_t)f->b * f->t);
    for (int i = 0; i < f->b * f->t; i++) f->seqid[i] = f->target[i] >= 0 ? i / f->t : -1;
}

static void fx_close(fxmodel *f)
{
    free(f->ids); free(f->pos); free(f->seg); free(f->target); free(f->seqid);
    cl_llama_free(f->m);
    clfx_free(f->fx);
}

/* rows [r0, r0 + rows) of the fixture batch as a cl_ft_batch (sequence ids renumbered from 0) */
static cl_ft_batch rows_of(fxmodel *f, int r0, int rows, int *seqbuf)
{
    long off = (long)r0 * f->t;
    for (long i = 0; i < (long)rows * f->t; i++) seqbuf[i] = f->seqid[off + i] >= 0 ? f->seqid[off + i] - r0 : -1;
    cl_ft_batch bt = {.b = rows, .t = f->t, .nseq = rows, .nex = rows / 2, .ids = f->ids + off, .pos = f->pos + off,
                      .seg = f->seg + off, .target = f->target + off, .seqid = seqbuf};
    return bt;
}

static double grad_err(const clfx *fx, const char *key, const float *g, long n)
{
    const clfx_rec *r = clfx_get(fx, key);
    if (!r) fail_msg("fixture lacks %s", key);
    assert_int_equal(r->count, n);
    double mx = 1e-3, d = 0;
    for (long i = 0; i < n; i++) {
        double v = clfx_val(fx, key, (uint32_t)i);
        mx = fmax(mx, fabs(v));
        d = fmax(d, fabs(g[i] - v));
    }
    return d / mx;
}

/* Largest difference between the model's gradients and g, relative to g's largest value (the
 * same step accumulated over micro-batches against it in one). */
static double grads_vs(const cl_llama *m, const float *g)
{
    double d = 0, mx = 1e-6;
    for (long i = 0; i < m->n_train; i++) {
        d = fmax(d, fabs(m->grad_mem[i] - g[i]));
        mx = fmax(mx, fabs(g[i]));
    }
    return d / mx;
}

static void first_dpo_step_matches_torch(const char *file)
{
    fxmodel f;
    fx_open(&f, file);
    cl_err e = {0};
    int *sq = malloc(sizeof(int) * (size_t)f.b * f.t);
    cl_ft_batch all = rows_of(&f, 0, f.b, sq);
    double ref[8];
    int len[8];
    /* the reference as the trainer computes it: the same model with the adapters off */
    cl_lora_enable(f.m, 0);
    assert_int_equal(cl_ft_seq_logps(f.m, &all, ref, len, &e), 0);
    cl_lora_enable(f.m, 1);
    for (int s = 0; s < f.b; s++)
        EXPECT_CLOSE(fabs(ref[s] - clfx_val(f.fx, "dpo_ref", (uint32_t)s)) / fabs(clfx_val(f.fx, "dpo_ref", (uint32_t)s)),
                     1e-5, "reference log-prob");
    static const char *const kinds[] = {"sigmoid", "hinge", "ipo", "robust"};
    for (int k = 0; k < 4; k++) {
        cl_dpo_config dc = {.type = (cl_dpo_type)cl_dpo_type_parse(kinds[k]), .beta = 0.1,
                            .label_smoothing = k == 0 || k == 3 ? 0.1 : 0.0};
        char key[200];
        snprintf(key, sizeof key, "dpo_loss_%s", kinds[k]);
        double want = clfx_val(f.fx, key, 0);
        /* one micro-batch of both pairs */
        cl_ft_dpo_out out;
        cl_llama_zero_grad(f.m);
        f.m->training = 1;
        assert_int_equal(cl_ft_dpo_micro(f.m, &all, &dc, ref, f.b / 2, 0, 0, &out, &e), 0);
        EXPECT_CLOSE(fabs(out.loss - want) / fabs(want), 1e-5, key);
        float *g1 = malloc(sizeof(float) * (size_t)f.m->n_train);
        memcpy(g1, f.m->grad_mem, sizeof(float) * (size_t)f.m->n_train);
        if (k == 0 || k == 2)
            for (int i = 0; i < f.m->n_lora; i++) {
                snprintf(key, sizeof key, "dpo_grad_%s:%s", kinds[k], f.m->lora[i].name);
                EXPECT_CLOSE(grad_err(f.fx, key, f.m->lora[i].grad, f.m->lora[i].numel), 2e-4, key);
            }
        /* the same step accumulated over two micro-batches of one pair each */
        cl_llama_zero_grad(f.m);
        double loss = 0;
        int *sq2 = malloc(sizeof(int) * (size_t)f.b * f.t);
        for (int p = 0; p < f.b / 2; p++) {
            cl_ft_batch half = rows_of(&f, 2 * p, 2, sq2);
            assert_int_equal(cl_ft_dpo_micro(f.m, &half, &dc, ref + 2 * p, f.b / 2, 0, 0, &out, &e), 0);
            loss += out.loss;
        }
        EXPECT_CLOSE(fabs(loss - want) / fabs(want), 1e-5, "accumulated loss");
        EXPECT_CLOSE(grads_vs(f.m, g1), 1e-5, "accumulated gradients");
        free(sq2);
        free(g1);
    }
    free(sq);
    fx_close(&f);
}

static void llama_first_dpo_step_equals_the_torch_reference(void **s) { (void)s; first_dpo_step_matches_torch("llama.fx"); }
static void qwen2_first_dpo_step_equals_the_torch_reference(void **s) { (void)s; first_dpo_step_matches_torch("qwen2.fx"); }

static void rpo_term_adds_the_mean_chosen_token_nll(void **s)
{
    (void)s;
    fxmodel f;
    fx_open(&f, "llama.fx");
    cl_err e = {0};
    int *sq = malloc(sizeof(int) * (size_t)f.b * f.t), len[8];
    cl_ft_batch all = rows_of(&f, 0, f.b, sq);
    double ref[8], pol[8];
    assert_int_equal(cl_ft_seq_logps(f.m, &all, pol, len, &e), 0);
    for (int i = 0; i < f.b; i++) ref[i] = pol[i]; /* reference = policy: z = 0 */
    cl_dpo_config dc = {.type = CL_DPO_SIGMOID, .beta = 0.1};
    cl_ft_dpo_out out;
    int chosen = len[0] + len[2];
    assert_int_equal(cl_ft_dpo_micro(f.m, &all, &dc, ref, 2, 1.0, chosen, &out, &e), 0);
    assert_true(fabs(out.loss - log(2.0)) < 1e-6);
    assert_true(fabs(out.nll - (-(pol[0] + pol[2]) / chosen)) < 1e-4 * fabs(out.nll));
    free(sq);
    fx_close(&f);
}

/* ---- GRPO vs torch ------------------------------------------------------------------------ */

/* Per-position log-probs of the fixture batch under the model as it stands. */
static float *position_logps(fxmodel *f)
{
    cl_err e = {0};
    float *lp = malloc(sizeof(float) * (size_t)f->b * f->t);
    assert_int_equal(cl_llama_forward(f->m, f->ids, f->pos, f->seg, f->b, f->t, &e), 0);
    cl_llama_head(f->m, f->target, NULL, lp);
    return lp;
}

static void first_grpo_step_matches_torch(const char *file)
{
    fxmodel f;
    fx_open(&f, file);
    cl_err e = {0};
    long n = (long)f.b * f.t;
    int *sq = malloc(sizeof(int) * (size_t)n), *sq2 = malloc(sizeof(int) * (size_t)n);
    cl_ft_batch all = rows_of(&f, 0, f.b, sq);
    /* the reference as the trainer computes it: the adapters off */
    cl_lora_enable(f.m, 0);
    float *ref = position_logps(&f);
    cl_lora_enable(f.m, 1);
    float *old = malloc(sizeof(float) * (size_t)n);
    int norm = 0;
    for (long i = 0; i < n; i++) {
        old[i] = (float)clfx_val(f.fx, "grpo_old", (uint32_t)i);
        if (f.target[i] < 0) continue;
        norm++;
        double want = clfx_val(f.fx, "grpo_ref", (uint32_t)i);
        EXPECT_CLOSE(fabs(ref[i] - want) / fmax(1, fabs(want)), 1e-5, "reference log-prob");
    }
    double rw[4], adv[4];
    for (int i = 0; i < 4; i++) rw[i] = clfx_val(f.fx, "grpo_rewards", (uint32_t)i);
    cl_grpo_config c = {.clip_low = 0.2, .clip_high = 0.2, .clip_c = 3, .kl_coef = 0.1, .adv_eps = 1e-6};
    cl_grpo_advantages(&c, rw, 4, adv);
    for (int i = 0; i < 4; i++) EXPECT_CLOSE(fabs(adv[i] - clfx_val(f.fx, "grpo_adv", (uint32_t)i)), 1e-12, "advantage");
    cl_ft_grpo_out out;
    cl_llama_zero_grad(f.m);
    f.m->training = 1;
    assert_int_equal(cl_ft_grpo_micro(f.m, &all, &c, adv, old, ref, norm, &out, &e), 0);
    double want = clfx_val(f.fx, "grpo_loss", 0);
    EXPECT_CLOSE(fabs(out.loss - want) / fabs(want), 1e-5, "GRPO loss");
    EXPECT_CLOSE(fabs(out.mt.pg_loss - clfx_val(f.fx, "grpo_pg", 0)) / fabs(want), 1e-5, "policy-gradient term");
    EXPECT_CLOSE(fabs(out.mt.kl - clfx_val(f.fx, "grpo_kl", 0)) / clfx_val(f.fx, "grpo_kl", 0), 1e-5, "KL term");
    assert_true(out.mt.clipfrac > 0 && out.mt.clipfrac < 1); /* the fixture clips some tokens */
    char key[200];
    for (int i = 0; i < f.m->n_lora; i++) {
        snprintf(key, sizeof key, "grpo_grad:%s", f.m->lora[i].name);
        EXPECT_CLOSE(grad_err(f.fx, key, f.m->lora[i].grad, f.m->lora[i].numel), 2e-4, key);
    }
    /* the same step over two micro-batches of two replies: token-mean over the whole step */
    float *g1 = malloc(sizeof(float) * (size_t)f.m->n_train);
    memcpy(g1, f.m->grad_mem, sizeof(float) * (size_t)f.m->n_train);
    cl_llama_zero_grad(f.m);
    double loss = 0;
    for (int p = 0; p < 2; p++) {
        cl_ft_batch half = rows_of(&f, 2 * p, 2, sq2);
        long off = (long)2 * p * f.t;
        assert_int_equal(cl_ft_grpo_micro(f.m, &half, &c, adv + 2 * p, old + off, ref + off, norm, &out, &e), 0);
        loss += out.loss;
    }
    EXPECT_CLOSE(fabs(loss - want) / fabs(want), 1e-5, "accumulated loss");
    EXPECT_CLOSE(grads_vs(f.m, g1), 1e-5, "accumulated gradients");
    free(g1);
    free(old);
    free(ref);
    free(sq);
    free(sq2);
    fx_close(&f);
}

static void llama_first_grpo_step_equals_the_torch_reference(void **s) { (void)s; first_grpo_step_matches_torch("grpo-llama.fx"); }
static void qwen2_first_grpo_step_equals_the_torch_reference(void **s) { (void)s; first_grpo_step_matches_torch("grpo-qwen2.fx"); }

static void equal_rewards_give_zero_advantages_and_only_the_kl_term(void **s)
{
    (void)s;
    double same[4] = {0.7, 0.7, 0.7, 0.7}, two[2] = {1, 0}, one = 0.5, adv[4];
    cl_grpo_config by_std = {.adv_eps = 1e-6}, no_eps = {0}, mean_only = {.adv_eps = 1e-6, .adv_mean_only = 1};
    cl_grpo_advantages(&by_std, same, 4, adv);
    for (int i = 0; i < 4; i++) assert_true(adv[i] == 0.0);
    cl_grpo_advantages(&mean_only, same, 4, adv);
    for (int i = 0; i < 4; i++) assert_true(adv[i] == 0.0);
    /* sample std of {1, 0} is 1/sqrt(2): advantages +-1/sqrt(2) */
    cl_grpo_advantages(&no_eps, two, 2, adv);
    assert_true(fabs(adv[0] - sqrt(0.5)) < 1e-15 && fabs(adv[1] + sqrt(0.5)) < 1e-15);
    /* a group of one: mean 0, std 1 (verl) */
    cl_grpo_advantages(&by_std, &one, 1, adv);
    assert_true(fabs(adv[0] - 0.5 / (1 + 1e-6)) < 1e-15);
    /* without the std, a group that differs by 0.01 weighs 0.01, not as much as one of 0 and 1 */
    double small[2] = {0.30, 0.29};
    cl_grpo_advantages(&mean_only, small, 2, adv);
    assert_true(fabs(adv[0] - 0.005) < 1e-12 && fabs(adv[1] + 0.005) < 1e-12);
    cl_grpo_advantages(&by_std, small, 2, adv);
    assert_true(fabs(adv[0] - sqrt(0.5)) < 1e-3);

    fxmodel f;
    fx_open(&f, "grpo-llama.fx");
    cl_err e = {0};
    int *sq = malloc(sizeof(int) * (size_t)f.b * f.t);
    cl_ft_batch all = rows_of(&f, 0, f.b, sq);
    cl_lora_enable(f.m, 0);
    float *ref = position_logps(&f);
    cl_lora_enable(f.m, 1);
    double zero[4] = {0, 0, 0, 0};
    cl_grpo_config c = {.clip_low = 0.2, .clip_high = 0.2, .clip_c = 3, .kl_coef = 0.1, .adv_eps = 1e-6};
    cl_ft_grpo_out out;
    /* no reference: nothing to learn from a flat group */
    cl_llama_zero_grad(f.m);
    assert_int_equal(cl_ft_grpo_micro(f.m, &all, &c, zero, NULL, NULL, 20, &out, &e), 0);
    assert_true(out.loss == 0 && out.mt.pg_loss == 0);
    for (long i = 0; i < f.m->n_train; i++) assert_true(f.m->grad_mem[i] == 0);
    /* with the reference: the loss and gradient are the KL term's alone */
    cl_llama_zero_grad(f.m);
    assert_int_equal(cl_ft_grpo_micro(f.m, &all, &c, zero, NULL, ref, 20, &out, &e), 0);
    assert_true(out.mt.pg_loss == 0 && out.mt.kl > 0);
    assert_true(fabs(out.loss - 0.1 * out.mt.kl) < 1e-12 * out.loss);
    double gn = 0;
    for (long i = 0; i < f.m->n_train; i++) gn += fabs(f.m->grad_mem[i]);
    assert_true(gn > 0);
    free(ref);
    free(sq);
    fx_close(&f);
}

/* ---- data -------------------------------------------------------------------------------- */

static cl_tokenizer *tokenizer(void)
{
    static const cl_bpe_added sp[] = {
        {"<|begin_of_text|>", 1, 0, 0}, {"<|end_of_text|>", 1, 0, 0}, {"<|start_header_id|>", 1, 0, 0},
        {"<|end_header_id|>", 1, 0, 0}, {"<|eot_id|>", 1, 0, 0},
    };
    const char *texts[] = {"the cat sat on the mat", "what is the colour of the sky", "blue is the colour", "hello there"};
    size_t lens[4], len;
    for (int i = 0; i < 4; i++) lens[i] = strlen(texts[i]);
    cl_bpe_train_opts o = {.vocab_size = 300, .ignore_merges = 1, .bos = "<|begin_of_text|>", .added = sp, .n_added = 5};
    cl_err e = {0};
    char *json = cl_bpe_train(texts, lens, 4, &o, &len, &e);
    assert_non_null(json);
    cl_tokenizer *t = cl_tokenizer_from_json(json, len, "test", &e);
    free(json);
    assert_non_null(t);
    return t;
}

/* The decoded text of the trained tokens of a sequence. */
static char *masked_text(cl_tokenizer *t, const cl_ft_seq *s)
{
    int32_t v[4096];
    size_t n = 0, len;
    for (int i = 0; i < s->len; i++)
        if (s->mask[i]) v[n++] = s->ids[i];
    cl_err e = {0};
    char *out = cl_tokenizer_decode(t, v, n, 0, &len, &e);
    assert_non_null(out);
    return out;
}

static int render(cl_tokenizer *t, const char *json, cl_ft_kind kind, int max_len, cl_ft_example *ex, int *tr)
{
    cl_ft_data_opts o = {.kind = kind, .format = CL_CHAT_LLAMA3, .max_len = max_len};
    jv row = cl_json_parse(json, strlen(json));
    cl_err e = {0};
    int rc = cl_ft_render_row(&row, t, &o, ex, tr, &e);
    jv_free(row);
    if (rc < 0) fail_msg("%s", e.msg);
    return rc;
}

static void sft_dialogues_train_every_assistant_turn_and_its_end_of_turn_only(void **s)
{
    (void)s;
    cl_tokenizer *t = tokenizer();
    cl_ft_example ex;
    int tr;
    assert_int_equal(render(t, "{\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":"
                               "\"hello\"},{\"role\":\"assistant\",\"content\":\"hello there\"},{\"role\":\"user\","
                               "\"content\":\"the sky?\"},{\"role\":\"assistant\",\"content\":\"blue\"}]}",
                            CL_FT_SFT, 1024, &ex, &tr), 1);
    char *m = masked_text(t, &ex.seq[0]);
    assert_string_equal(m, "hello there<|eot_id|>blue<|eot_id|>");
    assert_int_equal(tr, 0);
    assert_int_equal(ex.nseq, 1);
    free(m);
    cl_ft_example_free(&ex);
    /* {prompt, completion}: only the completion, even when the prompt holds assistant turns */
    assert_int_equal(render(t, "{\"prompt\":[{\"role\":\"user\",\"content\":\"hello\"},{\"role\":\"assistant\",\"content\":"
                               "\"hello there\"},{\"role\":\"user\",\"content\":\"sky?\"}],\"completion\":\"blue\"}",
                            CL_FT_SFT, 1024, &ex, &tr), 1);
    m = masked_text(t, &ex.seq[0]);
    assert_string_equal(m, "blue<|eot_id|>");
    free(m);
    cl_ft_example_free(&ex);
    cl_tokenizer_free(t);
}

static void pairs_share_the_prompt_and_train_only_the_replies(void **s)
{
    (void)s;
    cl_tokenizer *t = tokenizer();
    cl_ft_example ex;
    int tr;
    assert_int_equal(render(t, "{\"prompt\":[{\"role\":\"user\",\"content\":\"the sky?\"}],\"chosen\":[{\"role\":\"assistant\","
                               "\"content\":\"blue\"}],\"rejected\":\"the cat sat on the mat\"}",
                            CL_FT_PAIRS, 1024, &ex, &tr), 1);
    assert_int_equal(ex.nseq, 2);
    char *c = masked_text(t, &ex.seq[0]), *r = masked_text(t, &ex.seq[1]);
    assert_string_equal(c, "blue<|eot_id|>");
    assert_string_equal(r, "the cat sat on the mat<|eot_id|>");
    int p = 0;
    while (!ex.seq[0].mask[p]) p++;
    assert_true(p > 5 && ex.seq[1].len > p);
    assert_memory_equal(ex.seq[0].ids, ex.seq[1].ids, sizeof(int) * (size_t)p);
    free(c);
    free(r);
    cl_ft_example_free(&ex);
    cl_tokenizer_free(t);
}

static void truncation_cuts_the_prompt_from_the_left_and_keeps_the_reply(void **s)
{
    (void)s;
    cl_tokenizer *t = tokenizer();
    cl_ft_example full, cut;
    int tr;
    const char *row = "{\"prompt\":\"what is the colour of the sky what is the colour of the sky\",\"chosen\":\"blue\","
                      "\"rejected\":\"hello there\"}";
    assert_int_equal(render(t, row, CL_FT_PAIRS, 1024, &full, &tr), 1);
    assert_int_equal(tr, 0);
    int reply = full.seq[1].loss_tokens; /* the longer reply */
    assert_int_equal(render(t, row, CL_FT_PAIRS, reply + 6, &cut, &tr), 1);
    assert_int_equal(tr, 1);
    for (int q = 0; q < 2; q++) {
        assert_true(cut.seq[q].len <= reply + 6);
        assert_int_equal(cut.seq[q].loss_tokens, full.seq[q].loss_tokens);
        /* the kept tokens are the end of the full sequence */
        int d = full.seq[q].len - cut.seq[q].len;
        assert_true(d > 0);
        assert_memory_equal(cut.seq[q].ids, full.seq[q].ids + d, sizeof(int) * (size_t)cut.seq[q].len);
    }
    cl_ft_example_free(&cut);
    /* a reply longer than max_len keeps its start */
    assert_int_equal(render(t, row, CL_FT_PAIRS, 4, &cut, &tr), 1);
    assert_true(cut.seq[1].len == 4 && cut.seq[1].loss_tokens == 3);
    cl_ft_example_free(&cut);
    cl_ft_example_free(&full);
    /* no assistant turn: nothing to train */
    assert_int_equal(render(t, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", CL_FT_SFT, 1024, &cut, &tr), 0);
    cl_tokenizer_free(t);
}

/* ---- batches ----------------------------------------------------------------------------- */

static void fake_data(cl_ft_data *d, int n)
{
    memset(d, 0, sizeof *d);
    d->kind = CL_FT_SFT;
    d->ex = calloc((size_t)n, sizeof *d->ex);
    d->n = d->cap = n;
    for (int i = 0; i < n; i++) {
        cl_ft_seq *s = &d->ex[i].seq[0];
        s->len = 3 + (i * 7) % 11;
        s->ids = malloc(sizeof(int) * (size_t)s->len);
        s->mask = malloc((size_t)s->len);
        for (int j = 0; j < s->len; j++) {
            s->ids[j] = 100 * i + j;
            s->mask[j] = j >= 2;
        }
        s->loss_tokens = s->len - 2;
        d->ex[i].nseq = 1;
        d->ex[i].len = s->len;
    }
}

static void epoch_orders_are_seeded_permutations_of_length_sorted_batches(void **s)
{
    (void)s;
    cl_ft_data d;
    fake_data(&d, 23);
    cl_ft_plan p, q;
    cl_err e = {0};
    assert_int_equal(cl_ft_plan_new(&p, &d, 4, &e), 0);
    assert_int_equal(cl_ft_plan_new(&q, &d, 4, &e), 0);
    assert_int_equal(p.nbatches, 6);
    for (int i = 1; i < d.n; i++) assert_true(d.ex[p.sorted[i - 1]].len <= d.ex[p.sorted[i]].len);
    cl_ft_plan_epoch(&p, 3, 42);
    cl_ft_plan_epoch(&q, 3, 42);
    assert_memory_equal(p.order, q.order, sizeof(int) * 6);
    int seen = 0;
    for (int i = 0; i < 6; i++) seen |= 1 << p.order[i];
    assert_int_equal(seen, 63);
    int differs = 0;
    for (long ep = 0; ep < 8; ep++) {
        cl_ft_plan_epoch(&q, ep, 42);
        differs += memcmp(p.order, q.order, sizeof(int) * 6) != 0;
    }
    assert_true(differs >= 5);
    cl_ft_plan_free(&p);
    cl_ft_plan_free(&q);
    cl_ft_data_free(&d);
}

static void packing_restarts_positions_and_separates_sequences(void **s)
{
    (void)s;
    cl_ft_data d;
    fake_data(&d, 5);
    int idx[5] = {0, 1, 2, 3, 4}, total = 0;
    for (int i = 0; i < 5; i++) total += d.ex[i].len;
    cl_ft_batch bt = {0};
    cl_err e = {0};
    assert_int_equal(cl_ft_batch_build(&bt, &d, idx, 5, 1, 16, 0, &e), 0);
    assert_true(bt.b < 5 && bt.t <= 16);
    int seen = 0, loss = 0;
    for (int i = 0; i < bt.b * bt.t; i++) {
        if (bt.seg[i] < 0) continue;
        const cl_ft_seq *sq = &d.ex[bt.seg[i]].seq[0];
        assert_int_equal(bt.ids[i], sq->ids[bt.pos[i]]);
        int next = bt.pos[i] + 1 < sq->len && sq->mask[bt.pos[i] + 1];
        assert_int_equal(bt.target[i], next ? sq->ids[bt.pos[i] + 1] : -1);
        seen++;
        loss += bt.target[i] >= 0;
    }
    assert_int_equal(seen, total);
    assert_int_equal(loss, bt.loss_tokens);
    assert_int_equal(loss, (int)cl_ft_loss_tokens(&d, idx, 5, 0) - 0);
    /* unpacked: one row each, right-padded */
    assert_int_equal(cl_ft_batch_build(&bt, &d, idx, 5, 0, 16, 7, &e), 0);
    assert_int_equal(bt.b, 5);
    assert_int_equal(bt.ids[(long)0 * bt.t + bt.t - 1], 7);
    cl_ft_batch_free(&bt);
    cl_ft_data_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama_first_dpo_step_equals_the_torch_reference),
        cmocka_unit_test(qwen2_first_dpo_step_equals_the_torch_reference),
        cmocka_unit_test(rpo_term_adds_the_mean_chosen_token_nll),
        cmocka_unit_test(llama_first_grpo_step_equals_the_torch_reference),
        cmocka_unit_test(qwen2_first_grpo_step_equals_the_torch_reference),
        cmocka_unit_test(equal_rewards_give_zero_advantages_and_only_the_kl_term),
        cmocka_unit_test(sft_dialogues_train_every_assistant_turn_and_its_end_of_turn_only),
        cmocka_unit_test(pairs_share_the_prompt_and_train_only_the_replies),
        cmocka_unit_test(truncation_cuts_the_prompt_from_the_left_and_keeps_the_reply),
        cmocka_unit_test(epoch_orders_are_seeded_permutations_of_length_sorted_batches),
        cmocka_unit_test(packing_restarts_positions_and_separates_sequences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
