/* Properties of the model core that need no oracle: LoRA with B = 0, merged and disabled
 * adapters; a packed row equals its sequences run apart; micro-batches with global token
 * normalisation equal one batch; bf16 storage; dropout; DPO closed forms and gradients;
 * schedules, clipping and AdamW's first step; and a tiny model memorising 20 sequences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/llama.h"
#include "model/lora.h"
#include "model/loss.h"
#include "model/optim.h"

static cl_llama_config tiny(int tie, int bias)
{
    cl_llama_config c = {.vocab = 37, .hidden = 32, .inter = 40, .layers = 2, .heads = 4, .kv_heads = 2,
                         .head_dim = 8, .max_pos = 64, .rms_eps = 1e-5, .rope_theta = 10000,
                         .qkv_bias = bias, .tie_embeddings = tie, .bos_id = -1};
    strcpy(c.model_type, bias ? "qwen2" : "llama");
    return c;
}

static cl_llama *model(cl_llama_config c, cl_dtype dt, int train, unsigned lora_targets, int init_lora)
{
    cl_err e = {0};
    cl_llama *m = cl_llama_new(&c, dt, train, &e);
    assert_non_null(m);
    if (lora_targets) {
        cl_lora_config lc = {.rank = 4, .alpha = 8, .targets = lora_targets, .seed = 3};
        assert_int_equal(cl_lora_add(m, &lc, &e), 0);
    }
    cl_llama_init_uniform(m, 42, init_lora);
    return m;
}

static int ids[2 * 11];
static void make_ids(void)
{
    for (int i = 0; i < 22; i++) ids[i] = (i * 7 + 3) % 37;
}

static float *logits_of(cl_llama *m, const int *x, const int *pos, const int *seg, int b, int t)
{
    cl_err e = {0};
    assert_int_equal(cl_llama_forward(m, x, pos, seg, b, t, &e), 0);
    float *lg = malloc(sizeof(float) * (size_t)b * t * m->cfg.vocab);
    cl_llama_logits(m, lg);
    return lg;
}

static double max_diff(const float *a, const float *b, long n)
{
    double d = 0;
    for (long i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

static void lora_with_zero_b_equals_the_base_model(void **s)
{
    (void)s;
    make_ids();
    cl_llama *base = model(tiny(0, 1), CL_F32, 0, 0, 0), *ad = model(tiny(0, 1), CL_F32, 0, 0x7f, 0);
    float *a = logits_of(base, ids, NULL, NULL, 2, 11), *b = logits_of(ad, ids, NULL, NULL, 2, 11);
    assert_true(max_diff(a, b, 22 * 37) == 0.0);
    /* and the adapter A is initialised (not zero) while B is zero, under PEFT's names/shapes */
    int nl;
    cl_tensor *lt = cl_lora_tensors(ad, &nl);
    assert_int_equal(nl, 2 * CL_NPROJ * 2);
    assert_string_equal(lt[0].name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    assert_true(lt[0].shape[0] == 4 && lt[0].shape[1] == 32 && lt[1].shape[0] == 32 && lt[1].shape[1] == 4);
    assert_true(((float *)lt[0].data)[0] != 0.0f && ((float *)lt[1].data)[0] == 0.0f);
    assert_ptr_equal(cl_llama_find(ad, lt[13].name), &lt[13]);
    free(a); free(b);
    cl_llama_free(base); cl_llama_free(ad);
}

static void disabled_adapters_equal_the_base_and_merged_equal_unmerged(void **s)
{
    (void)s;
    make_ids();
    cl_llama *base = model(tiny(1, 0), CL_F32, 0, 0, 0), *ad = model(tiny(1, 0), CL_F32, 0, 0x7f, 1);
    float *b0 = logits_of(base, ids, NULL, NULL, 2, 11), *on = logits_of(ad, ids, NULL, NULL, 2, 11);
    assert_true(max_diff(b0, on, 22 * 37) > 1e-2); /* the random adapters do change the model */
    cl_lora_enable(ad, 0);
    float *off = logits_of(ad, ids, NULL, NULL, 2, 11);
    assert_true(max_diff(b0, off, 22 * 37) == 0.0);
    cl_lora_enable(ad, 1);
    cl_lora_merge(ad);
    assert_false(ad->lora_on);
    float *merged = logits_of(ad, ids, NULL, NULL, 2, 11);
    assert_true(max_diff(on, merged, 22 * 37) < 1e-4);
    free(b0); free(on); free(off); free(merged);
    cl_llama_free(base); cl_llama_free(ad);
}

static void a_packed_row_equals_its_sequences_run_apart(void **s)
{
    (void)s;
    make_ids();
    cl_llama *m = model(tiny(0, 1), CL_F32, 0, 0, 0);
    /* row = first 6 tokens of sequence A then 5 of sequence B */
    int packed[11], pos[11], seg[11];
    for (int i = 0; i < 11; i++) {
        packed[i] = i < 6 ? ids[i] : ids[11 + i - 6];
        pos[i] = i < 6 ? i : i - 6;
        seg[i] = i >= 6;
    }
    float *p = logits_of(m, packed, pos, seg, 1, 11);
    float *a = logits_of(m, ids, NULL, NULL, 1, 6);
    float *b = logits_of(m, ids + 11, NULL, NULL, 1, 5);
    assert_true(max_diff(p, a, 6 * 37) < 1e-5);
    assert_true(max_diff(p + 6 * 37, b, 5 * 37) < 1e-5);
    free(p); free(a); free(b);
    cl_llama_free(m);
}

static void sft_step(cl_llama *m, const int *x, const int *tgt, int b, int t, double norm)
{
    cl_err e = {0};
    int n = b * t;
    float *coef = malloc(sizeof(float) * n), *logp = malloc(sizeof(float) * n);
    assert_int_equal(cl_llama_forward(m, x, NULL, NULL, b, t, &e), 0);
    cl_sft_loss(logp, tgt, n, norm, coef);
    cl_llama_head(m, tgt, coef, logp);
    cl_llama_backward(m);
    free(coef); free(logp);
}

static void micro_batches_with_global_normalisation_equal_one_batch(void **s)
{
    (void)s;
    make_ids();
    int tgt[22];
    for (int i = 0; i < 22; i++) tgt[i] = i % 11 < 10 && (i < 11 ? i % 11 >= 2 : i % 11 >= 8) ? ids[i + 1] : -1;
    int ntok = cl_loss_tokens(tgt, 22);
    cl_llama *one = model(tiny(1, 1), CL_F32, 1, 0, 0), *two = model(tiny(1, 1), CL_F32, 1, 0, 0);
    sft_step(one, ids, tgt, 2, 11, ntok);
    sft_step(two, ids, tgt, 1, 11, ntok);
    sft_step(two, ids + 11, tgt + 11, 1, 11, ntok);
    assert_true(max_diff(one->grad_mem, two->grad_mem, one->n_train) < 1e-6);
    cl_llama_free(one); cl_llama_free(two);
}

static void bf16_base_computes_with_the_rounded_weights(void **s)
{
    (void)s;
    make_ids();
    cl_llama *f = model(tiny(0, 0), CL_F32, 0, 0, 0), *h = model(tiny(0, 0), CL_BF16, 0, 0x7f, 0);
    int n;
    cl_tensor *ts = cl_llama_tensors(f, &n), *th = cl_llama_tensors(h, &n);
    int rounded = 0;
    for (int i = 0; i < n; i++) {
        if (th[i].dtype != CL_BF16) continue;
        rounded++;
        float *w = ts[i].data;
        for (long j = 0; j < ts[i].numel; j++) w[j] = cl_bf16_to_f32(cl_f32_to_bf16(w[j]));
    }
    assert_int_equal(rounded, 2 * CL_NPROJ);
    float *a = logits_of(f, ids, NULL, NULL, 2, 11), *b = logits_of(h, ids, NULL, NULL, 2, 11);
    assert_true(max_diff(a, b, 22 * 37) < 1e-5);
    /* adapters on a bf16 base train: gradients reach A through the converted weights */
    int tgt[22];
    for (int i = 0; i < 22; i++) tgt[i] = i % 11 < 10 ? ids[i + 1] : -1;
    cl_llama_init_uniform(h, 42, 1);
    sft_step(h, ids, tgt, 2, 11, 20);
    double g = 0;
    for (long i = 0; i < h->lora[0].numel; i++) g += fabs(h->lora[0].grad[i]);
    assert_true(g > 0);
    free(a); free(b);
    cl_llama_free(f); cl_llama_free(h);
    cl_err e = {0};
    cl_llama_config c = tiny(0, 0);
    assert_null(cl_llama_new(&c, CL_BF16, 1, &e));
    assert_non_null(strstr(e.msg, "fp32"));
}

static void dropout_acts_only_in_training_and_is_reproducible(void **s)
{
    (void)s;
    make_ids();
    cl_err e = {0};
    cl_llama_config c = tiny(0, 0);
    cl_llama *m = cl_llama_new(&c, CL_F32, 0, &e);
    cl_lora_config lc = {.rank = 4, .alpha = 8, .dropout = 0.5, .targets = 0x7f, .seed = 9};
    assert_int_equal(cl_lora_add(m, &lc, &e), 0);
    cl_llama_init_uniform(m, 42, 1);
    float *eval1 = logits_of(m, ids, NULL, NULL, 2, 11);
    m->training = 1;
    long step = m->step;
    float *tr1 = logits_of(m, ids, NULL, NULL, 2, 11);
    m->step = step;
    float *tr2 = logits_of(m, ids, NULL, NULL, 2, 11);
    float *tr3 = logits_of(m, ids, NULL, NULL, 2, 11);
    m->training = 0;
    float *eval2 = logits_of(m, ids, NULL, NULL, 2, 11);
    assert_true(max_diff(eval1, eval2, 22 * 37) == 0.0);
    assert_true(max_diff(eval1, tr1, 22 * 37) > 1e-3);
    assert_true(max_diff(tr1, tr2, 22 * 37) == 0.0); /* same step, same mask */
    assert_true(max_diff(tr2, tr3, 22 * 37) > 1e-3); /* next step, new mask */
    free(eval1); free(eval2); free(tr1); free(tr2); free(tr3);
    cl_llama_free(m);
}

static void bad_token_ids_are_refused(void **s)
{
    (void)s;
    cl_llama *m = model(tiny(0, 0), CL_F32, 0, 0, 0);
    int bad[3] = {1, 37, 2};
    cl_err e = {0};
    assert_int_equal(cl_llama_forward(m, bad, NULL, NULL, 1, 3, &e), -1);
    assert_int_equal(e.code, CL_EXIT_DATAERR);
    assert_non_null(strstr(e.msg, "37"));
    cl_llama_free(m);
}

static void dpo_at_z_zero_has_closed_forms_and_gradients_match_finite_differences(void **s)
{
    (void)s;
    double pc = -12.5, pr = -20.25, rc = -12.5, rr = -20.25;
    int lc = 5, lr = 9;
    for (int t = 0; t < 4; t++) {
        cl_dpo_config c = {.type = t, .beta = 0.1, .label_smoothing = t == CL_DPO_HINGE || t == CL_DPO_IPO ? 0 : 0.2};
        double loss = cl_dpo_loss(&c, 1, &pc, &pr, &rc, &rr, &lc, &lr, NULL, NULL, NULL);
        double want = t == CL_DPO_HINGE ? 1.0 : t == CL_DPO_IPO ? 25.0 : log(2.0);
        assert_true(fabs(loss - want) < 1e-12);
        /* away from z = 0, analytic gradients against central differences */
        double a = -11.0, b = -21.0, da, db, h = 1e-6;
        cl_dpo_metrics mt;
        cl_dpo_loss(&c, 1, &a, &b, &rc, &rr, &lc, &lr, &da, &db, &mt);
        double ap = a + h, am = a - h, bp = b + h, bm = b - h;
        double fa = (cl_dpo_loss(&c, 1, &ap, &b, &rc, &rr, &lc, &lr, NULL, NULL, NULL) -
                     cl_dpo_loss(&c, 1, &am, &b, &rc, &rr, &lc, &lr, NULL, NULL, NULL)) / (2 * h);
        double fb = (cl_dpo_loss(&c, 1, &a, &bp, &rc, &rr, &lc, &lr, NULL, NULL, NULL) -
                     cl_dpo_loss(&c, 1, &a, &bm, &rc, &rr, &lc, &lr, NULL, NULL, NULL)) / (2 * h);
        assert_true(fabs(fa - da) < 1e-7 && fabs(fb - db) < 1e-7);
        assert_true(mt.rewards_accuracies == 1.0 && mt.rewards_margins > 0);
    }
    cl_dpo_config c = {.type = CL_DPO_SIGMOID, .beta = 0.1};
    assert_int_equal(cl_dpo_type_parse("robust"), CL_DPO_ROBUST);
    assert_int_equal(cl_dpo_type_parse("kto"), -1);
    /* a policy that is its own reference (B = 0 adapters) gives exactly log 2 */
    make_ids();
    cl_llama *m = model(tiny(0, 1), CL_F32, 0, 0x7f, 0);
    int tgt[22], seq[22], cnt[2];
    float logp[22];
    double pol[2], ref[2];
    for (int i = 0; i < 22; i++) { tgt[i] = i % 11 >= 3 && i % 11 < 10 ? ids[i + 1] : -1; seq[i] = i / 11; }
    cl_err e = {0};
    assert_int_equal(cl_llama_forward(m, ids, NULL, NULL, 2, 11, &e), 0);
    cl_llama_head(m, tgt, NULL, logp);
    cl_seq_logps(logp, tgt, seq, 22, 2, pol, cnt);
    cl_lora_enable(m, 0);
    assert_int_equal(cl_llama_forward(m, ids, NULL, NULL, 2, 11, &e), 0);
    cl_llama_head(m, tgt, NULL, logp);
    cl_seq_logps(logp, tgt, seq, 22, 2, ref, cnt);
    assert_int_equal(cnt[0], 7);
    assert_true(fabs(cl_dpo_loss(&c, 1, &pol[0], &pol[1], &ref[0], &ref[1], &cnt[0], &cnt[1], NULL, NULL, NULL) -
                     log(2.0)) < 1e-12);
    cl_llama_free(m);
}

static void schedules_clipping_and_first_adamw_step_follow_pytorch(void **s)
{
    (void)s;
    assert_true(cl_lr_at(CL_SCHED_COSINE, 1.0, 0, 2, 12) == 0.0);
    assert_true(cl_lr_at(CL_SCHED_COSINE, 1.0, 1, 2, 12) == 0.5);
    assert_true(fabs(cl_lr_at(CL_SCHED_COSINE, 1.0, 7, 2, 12) - 0.5) < 1e-12);
    assert_true(fabs(cl_lr_at(CL_SCHED_LINEAR, 2.0, 7, 2, 12) - 1.0) < 1e-12);
    assert_true(cl_lr_at(CL_SCHED_LINEAR, 2.0, 12, 2, 12) == 0.0);
    assert_true(cl_lr_at(CL_SCHED_CONSTANT, 2.0, 11, 2, 12) == 2.0);
    assert_int_equal(cl_sched_parse("cosine"), CL_SCHED_COSINE);
    assert_int_equal(cl_sched_parse("step"), -1);
    float w[4] = {1, -1, 2, 0.5f}, g[4] = {3, -4, 0, 0}, mm[4] = {0}, vv[4] = {0};
    cl_tensor t = {.name = "w", .ndim = 2, .shape = {2, 2}, .numel = 4, .data = w, .grad = g, .m = mm, .v = vv};
    cl_tensor *list[1] = {&t};
    assert_true(fabs(cl_clip_grad_norm(list, 1, 1.0) - 5.0) < 1e-9);
    assert_true(fabs(cl_grad_norm(list, 1) - 1.0) < 1e-5);
    cl_adamw h = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.5};
    cl_adamw_step(&h, list, 1, 1, 0.1);
    /* step 1: m^/sqrt(v^) = sign(g); decay multiplies by 1 - lr*wd first */
    assert_true(fabs(w[0] - (1 * 0.95 - 0.1)) < 1e-6 && fabs(w[1] - (-1 * 0.95 + 0.1)) < 1e-6);
    assert_true(fabs(w[2] - 2 * 0.95) < 1e-6);
    t.no_decay = 1;
    g[2] = 1;
    cl_adamw_step(&h, list, 1, 2, 0.1);
    assert_true(w[3] == (float)(0.5 * 0.95)); /* zero gradient, no decay: unchanged */
}

static void a_tiny_model_memorises_twenty_sequences(void **s)
{
    (void)s;
    enum { NSEQ = 20, T = 12 };
    cl_llama_config c = tiny(0, 0);
    c.vocab = 48;
    cl_llama *m = model(c, CL_F32, 1, 0, 0);
    int x[NSEQ * T], tgt[NSEQ * T];
    uint64_t st = 77;
    for (int i = 0; i < NSEQ * T; i++) x[i] = (int)(cl_hash_uniform(st, (uint64_t)i) * 48);
    for (int q = 0; q < NSEQ; q++) x[q * T] = q; /* distinct first tokens: every target is learnable */
    for (int i = 0; i < NSEQ * T; i++) tgt[i] = i % T < T - 1 ? x[i + 1] : -1;
    cl_tensor *tr[64];
    int nt = cl_llama_trainable(m, tr, 64);
    cl_adamw h = {.beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.0};
    float coef[NSEQ * T], logp[NSEQ * T];
    int ntok = cl_loss_tokens(tgt, NSEQ * T);
    double loss = 99;
    cl_err e = {0};
    for (long step = 1; step <= 400 && loss > 0.02; step++) {
        cl_llama_zero_grad(m);
        assert_int_equal(cl_llama_forward(m, x, NULL, NULL, NSEQ, T, &e), 0);
        cl_sft_loss(logp, tgt, NSEQ * T, ntok, coef);
        cl_llama_head(m, tgt, coef, logp);
        loss = cl_sft_loss(logp, tgt, NSEQ * T, ntok, NULL);
        cl_llama_backward(m);
        cl_clip_grad_norm(tr, nt, 1.0);
        cl_adamw_step(&h, tr, nt, step, 1e-2);
    }
    if (loss > 0.02) fail_msg("loss still %.4f after 400 steps", loss);
    /* greedy next tokens reproduce every memorised continuation */
    float *lg = logits_of(m, x, NULL, NULL, NSEQ, T);
    for (int i = 0; i < NSEQ * T; i++) {
        if (tgt[i] < 0) continue;
        int best = 0;
        for (int v = 1; v < 48; v++) if (lg[(size_t)i * 48 + v] > lg[(size_t)i * 48 + best]) best = v;
        assert_int_equal(best, tgt[i]);
    }
    free(lg);
    cl_llama_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lora_with_zero_b_equals_the_base_model),
        cmocka_unit_test(disabled_adapters_equal_the_base_and_merged_equal_unmerged),
        cmocka_unit_test(a_packed_row_equals_its_sequences_run_apart),
        cmocka_unit_test(micro_batches_with_global_normalisation_equal_one_batch),
        cmocka_unit_test(bf16_base_computes_with_the_rounded_weights),
        cmocka_unit_test(dropout_acts_only_in_training_and_is_reproducible),
        cmocka_unit_test(bad_token_ids_are_refused),
        cmocka_unit_test(dpo_at_z_zero_has_closed_forms_and_gradients_match_finite_differences),
        cmocka_unit_test(schedules_clipping_and_first_adamw_step_follow_pytorch),
        cmocka_unit_test(a_tiny_model_memorises_twenty_sequences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
