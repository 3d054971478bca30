/* The whole model against an independent float64 PyTorch implementation (fixtures written by
 * tests/torch/gen_model_fixtures.py): logits, SFT loss, every full-fine-tuning gradient,
 * LoRA logits/loss/gradients, the four DPO losses with sigmoid and IPO gradients, and 10-step
 * AdamW loss trajectories (full and LoRA), for a Llama (untied, GQA 3:1, head_dim 16, llama3
 * rope scaling, one packed row) and a Qwen2 (tied, q/k/v bias, GQA 2:1, rsLoRA).
 * CL_MODEL_FIXTURES names another fixture directory (the regeneration check uses it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/llama.h"
#include "model/lora.h"
#include "model/loss.h"
#include "model/optim.h"
#include "torch_fixture.h"

typedef clfx_rec rec;
typedef clfx_model fixture;

static const rec *fx_get(const fixture *fx, const char *name) { return clfx_need(fx->raw, name); }

static double fx_val(const fixture *fx, const char *name, uint32_t i)
{
    assert_true(i < fx_get(fx, name)->count);
    return clfx_val(fx->raw, name, i);
}

/* max |c - r| relative to the largest |r| of the tensor (floor 1e-3). */
static double tensor_err(const fixture *fx, const char *name, const float *c, long n)
{
    const rec *r = fx_get(fx, name);
    assert_int_equal(r->count, n);
    double mx = 1e-3, d = 0;
    for (long i = 0; i < n; i++) {
        double v = fx_val(fx, name, (uint32_t)i);
        if (fabs(v) > mx) mx = fabs(v);
        if (fabs(c[i] - v) > d) d = fabs(c[i] - v);
    }
    return d / mx;
}

#define EXPECT_CLOSE(err, tol, what) do { \
    double e_ = (err); \
    if (!(e_ <= (tol))) fail_msg("%s: relative error %.3g exceeds %.1g", (what), e_, (double)(tol)); \
} while (0)

static cl_llama *make_model(fixture *fx, int train_base, int lora)
{
    cl_err e = {0};
    cl_llama *m = cl_llama_new(&fx->cfg, CL_F32, train_base, &e);
    assert_non_null(m);
    if (lora) {
        cl_lora_config lc = {.rank = (int)fx_val(fx, "lora_rank", 0), .alpha = fx_val(fx, "lora_alpha", 0),
                             .rslora = (int)fx_val(fx, "lora_rslora", 0),
                             .targets = (unsigned)fx_val(fx, "lora_targets", 0), .seed = 1};
        assert_int_equal(cl_lora_add(m, &lc, &e), 0);
    }
    cl_llama_init_uniform(m, (uint64_t)fx->seed, lora);
    return m;
}

static int n_tokens(const fixture *fx) { return fx->b * fx->t; }

static void check_logits(cl_llama *m, fixture *fx, const char *name)
{
    long cnt = (long)n_tokens(fx) * fx->cfg.vocab;
    float *lg = malloc(sizeof(float) * cnt);
    cl_llama_logits(m, lg);
    EXPECT_CLOSE(tensor_err(fx, name, lg, cnt), 2e-5, name);
    free(lg);
}

/* Every tensor's gradient against the fixture's PREFIX + name. */
static void check_grads(const fixture *fx, const char *prefix, const cl_tensor *ts, int n, double tol)
{
    for (int i = 0; i < n; i++) {
        char key[200];
        snprintf(key, sizeof key, "%s%s", prefix, ts[i].name);
        assert_non_null(ts[i].grad);
        EXPECT_CLOSE(tensor_err(fx, key, ts[i].grad, ts[i].numel), tol, key);
    }
}

/* SFT forward/backward on the fixture batch: logits, loss and the gradients of what trains
 * (the whole base for full fine-tuning, else the adapters, with the base given none). */
static void sft_matches(const char *file, int lora)
{
    fixture *fx = clfx_model_open(file);
    cl_llama *m = make_model(fx, !lora, lora);
    const char *pre = lora ? "lora_" : "";
    char key[64];
    double loss = clfx_sft(m, fx, 1);
    snprintf(key, sizeof key, "%slogits", pre);
    check_logits(m, fx, key);
    snprintf(key, sizeof key, "%sloss", pre);
    EXPECT_CLOSE(fabs(loss - fx_val(fx, key, 0)) / fx_val(fx, key, 0), 1e-5, key);
    int n;
    cl_tensor *ts = cl_llama_tensors(m, &n);
    if (lora) {
        check_grads(fx, "lora_grad:", m->lora, m->n_lora, 1e-4);
        for (int i = 0; i < n; i++) assert_null(ts[i].grad);
    } else {
        check_grads(fx, "grad:", ts, n, 1e-4);
    }
    cl_llama_free(m);
    clfx_model_free(fx);
}

static void dpo_matches(const char *file)
{
    fixture *fx = clfx_model_open(file);
    cl_llama *m = make_model(fx, 0, 1);
    int n = n_tokens(fx), np = fx->b / 2;
    float *logp = calloc((size_t)n, sizeof(float)), *coef = calloc((size_t)n, sizeof(float));
    int *seq = malloc(sizeof(int) * n), cnt[8];
    double ref[8], pol[8], rc[4], rr[4], pc[4], pr[4], dc[4], dr[4], dseq[8];
    int lc[4], lr[4];
    for (int i = 0; i < n; i++) seq[i] = i / fx->t;
    cl_err e = {0};
    /* reference = the same model with adapters off */
    cl_lora_enable(m, 0);
    assert_int_equal(cl_llama_forward(m, fx->ids, fx->pos, fx->seg, fx->b, fx->t, &e), 0);
    cl_llama_head(m, fx->targets, NULL, logp);
    cl_seq_logps(logp, fx->targets, seq, n, fx->b, ref, cnt);
    for (int s = 0; s < fx->b; s++)
        EXPECT_CLOSE(fabs(ref[s] - fx_val(fx, "dpo_ref", (uint32_t)s)) / fabs(fx_val(fx, "dpo_ref", (uint32_t)s)), 1e-5,
                     "reference sequence log-prob");
    cl_lora_enable(m, 1);
    static const char *const kinds[] = {"sigmoid", "hinge", "ipo", "robust"};
    for (int k = 0; k < 4; k++) {
        cl_dpo_config dc_ = {.type = cl_dpo_type_parse(kinds[k]), .beta = 0.1,
                             .label_smoothing = k == 0 || k == 3 ? 0.1 : 0.0};
        cl_llama_zero_grad(m);
        assert_int_equal(cl_llama_forward(m, fx->ids, fx->pos, fx->seg, fx->b, fx->t, &e), 0);
        cl_llama_head(m, fx->targets, NULL, logp);
        cl_seq_logps(logp, fx->targets, seq, n, fx->b, pol, cnt);
        for (int p = 0; p < np; p++) {
            pc[p] = pol[2 * p]; pr[p] = pol[2 * p + 1]; rc[p] = ref[2 * p]; rr[p] = ref[2 * p + 1];
            lc[p] = cnt[2 * p]; lr[p] = cnt[2 * p + 1];
        }
        double loss = cl_dpo_loss(&dc_, np, pc, pr, rc, rr, lc, lr, dc, dr, NULL);
        char key[200];
        snprintf(key, sizeof key, "dpo_loss_%s", kinds[k]);
        EXPECT_CLOSE(fabs(loss - fx_val(fx, key, 0)) / fabs(fx_val(fx, key, 0)), 1e-5, key);
        if (k == 1 || k == 3) continue;
        for (int p = 0; p < np; p++) { dseq[2 * p] = dc[p]; dseq[2 * p + 1] = dr[p]; }
        cl_seq_coef(fx->targets, seq, n, dseq, coef);
        cl_llama_head(m, fx->targets, coef, logp);
        cl_llama_backward(m);
        snprintf(key, sizeof key, "dpo_grad_%s:", kinds[k]);
        check_grads(fx, key, m->lora, m->n_lora, 2e-4);
    }
    free(logp); free(coef); free(seq);
    cl_llama_free(m);
    clfx_model_free(fx);
}

static void trajectory_matches(const char *file, int lora)
{
    fixture *fx = clfx_model_open(file);
    cl_llama *m = make_model(fx, !lora, lora);
    cl_tensor *tr[512];
    int nt = cl_llama_trainable(m, tr, 512);
    assert_true(nt > 0 && nt < 512);
    cl_adamw h = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = lora ? 0.0 : 0.1};
    for (long step = 0; step < 10; step++) {
        cl_llama_zero_grad(m);
        double loss = clfx_sft(m, fx, 1);
        double want = fx_val(fx, lora ? "traj_lora" : "traj_full", (uint32_t)step);
        if (fabs(loss - want) > 1e-4 * fabs(want))
            fail_msg("%s step %ld: loss %.8f, torch %.8f", lora ? "LoRA" : "full", step, loss, want);
        cl_clip_grad_norm(tr, nt, lora ? 0.5 : 1.0);
        double lr = lora ? cl_lr_at(CL_SCHED_LINEAR, 1e-2, step, 0, 10) : cl_lr_at(CL_SCHED_COSINE, 3e-3, step, 2, 10);
        cl_adamw_step(&h, tr, nt, step + 1, lr);
    }
    cl_llama_free(m);
    clfx_model_free(fx);
}

static void llama_logits_loss_and_every_gradient_match_torch(void **s) { (void)s; sft_matches("llama.fx", 0); }
static void qwen2_logits_loss_and_every_gradient_match_torch(void **s) { (void)s; sft_matches("qwen2.fx", 0); }
static void llama_lora_logits_loss_and_adapter_gradients_match_torch(void **s) { (void)s; sft_matches("llama.fx", 1); }
static void qwen2_rslora_logits_loss_and_adapter_gradients_match_torch(void **s) { (void)s; sft_matches("qwen2.fx", 1); }
static void llama_dpo_losses_and_gradients_match_torch(void **s) { (void)s; dpo_matches("llama.fx"); }
static void qwen2_dpo_losses_and_gradients_match_torch(void **s) { (void)s; dpo_matches("qwen2.fx"); }
static void llama_full_adamw_trajectory_matches_torch(void **s) { (void)s; trajectory_matches("llama.fx", 0); }
static void qwen2_full_adamw_trajectory_matches_torch(void **s) { (void)s; trajectory_matches("qwen2.fx", 0); }
static void llama_lora_adamw_trajectory_matches_torch(void **s) { (void)s; trajectory_matches("llama.fx", 1); }
static void qwen2_lora_adamw_trajectory_matches_torch(void **s) { (void)s; trajectory_matches("qwen2.fx", 1); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama_logits_loss_and_every_gradient_match_torch),
        cmocka_unit_test(qwen2_logits_loss_and_every_gradient_match_torch),
        cmocka_unit_test(llama_lora_logits_loss_and_adapter_gradients_match_torch),
        cmocka_unit_test(qwen2_rslora_logits_loss_and_adapter_gradients_match_torch),
        cmocka_unit_test(llama_dpo_losses_and_gradients_match_torch),
        cmocka_unit_test(qwen2_dpo_losses_and_gradients_match_torch),
        cmocka_unit_test(llama_full_adamw_trajectory_matches_torch),
        cmocka_unit_test(qwen2_full_adamw_trajectory_matches_torch),
        cmocka_unit_test(llama_lora_adamw_trajectory_matches_torch),
        cmocka_unit_test(qwen2_lora_adamw_trajectory_matches_torch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
