/* The CUDA device path against the CPU path on the tiny torch-fixture models (a Llama: untied,
 * GQA 3:1, one packed row; a Qwen2: tied, q/k/v bias, GQA 2:1): the same weights go to both,
 * then logits, SFT loss, every gradient, the gradient norm, a three-step loss trajectory, AdamW
 * from identical gradients, LoRA on a bf16
 * base with dropout on (the masks must match), the same with activations recomputed in
 * backward (full and LoRA), and a DPO step (reference with adapters off,
 * sigmoid loss, gradients, update), the engine's decode product (linear_rows) on a bf16
 * base matrix with its bias and on an fp32 adapter matrix, and the local: engine's logits
 * with its products on the device (prefill and decode).
 *
 * Tolerances (the device multiplies bf16 inputs with fp32 accumulation, so each product
 * carries bf16's relative rounding of 2^-9 per input): errors are max |gpu - cpu| over the
 * tensor divided by max |cpu| (floor 1e-3); logits 2e-2, every gradient 5e-2, gradient norm
 * 2e-2, losses 1e-2 relative (also after AdamW steps each side took on its own gradients).
 * The optimizer itself is compared exactly: both sides step from the CPU's gradients, and
 * weights and moments must agree to 1e-5 (fp32 arithmetic, contraction aside).  Weights after
 * steps on each side's own gradients are not compared: AdamW's first steps move every value by
 * about lr times the sign of its gradient, so bf16 noise in a near-zero gradient flips a step.
 *
 * Without a CUDA build, or on a machine without a GPU, the whole file skips LOUDLY: TAP
 * "1..0 # SKIP ..." and a line on stderr.  make CUDA=1 builds it with the device path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/device.h"
#include "model/engine.h"
#include "model/lora.h"
#include "model/loss.h"
#include "model/ops.h"
#include "torch_fixture.h"
#include "train/finetune.h"
#ifdef CL_HAVE_CUDA
#include "cuda/cuda.h"
#endif

#define TOL_LOGITS 2e-2
#define TOL_GRAD 5e-2
#define TOL_NORM 2e-2
#define TOL_LOSS 1e-2
#define TOL_OPTIM 1e-5

#ifdef CL_HAVE_CUDA

static cl_device gpu_dev;

typedef clfx_model fixture;

/* Two identical models; the second is moved to the GPU (recomputing activations in backward
 * when recompute is set). */
static void make_pair_rc(fixture *fx, int lora, int recompute, cl_llama **cpu, cl_llama **gpu)
{
    cl_llama *m[2];
    for (int i = 0; i < 2; i++) {
        cl_err e = {0};
        m[i] = cl_llama_new(&fx->cfg, lora ? CL_BF16 : CL_F32, !lora, &e);
        assert_non_null(m[i]);
        if (lora) {
            cl_lora_config lc = {.rank = 4, .alpha = 8, .dropout = 0.25, .targets = 0x7f, .seed = 7};
            assert_int_equal(cl_lora_add(m[i], &lc, &e), 0);
        }
        cl_llama_init_uniform(m[i], (uint64_t)fx->seed, lora);
    }
    cl_err e = {0};
    cl_device dv = gpu_dev;
    dv.recompute = recompute;
    if (dv.attach(&dv, m[1], &e)) fail_msg("attach: %s", e.msg);
    assert_non_null(m[1]->dev);
    *cpu = m[0];
    *gpu = m[1];
}

static void make_pair(fixture *fx, int lora, cl_llama **cpu, cl_llama **gpu) { make_pair_rc(fx, lora, 0, cpu, gpu); }

static double rel_err(const float *ref, const float *got, long n)
{
    double mx = 1e-3, d = 0;
    for (long i = 0; i < n; i++) {
        if (fabs(ref[i]) > mx) mx = fabs(ref[i]);
        if (fabs((double)got[i] - ref[i]) > d) d = fabs((double)got[i] - ref[i]);
    }
    return d / mx;
}

#define EXPECT_CLOSE(err, tol, ...) do { \
    double e_ = (err); \
    char w_[256]; \
    snprintf(w_, sizeof w_, __VA_ARGS__); \
    if (!(e_ <= (tol))) fail_msg("%s: relative error %.3g exceeds %.1g", w_, e_, (double)(tol)); \
    print_message("# %s: relative error %.3g (tolerance %.1g)\n", w_, e_, (double)(tol)); \
} while (0)

static double rel(double ref, double got) { return fabs(got - ref) / (fabs(ref) > 1e-6 ? fabs(ref) : 1e-6); }


enum { CMP_GRAD, CMP_DATA, CMP_MOMENTS };

/* Gradients, values or AdamW moments of every trainable tensor, GPU against CPU. */
static void compare_trainable(cl_llama *cpu, cl_llama *gpu, int what_cmp, double tol, const char *what)
{
    static cl_tensor *tc[4096], *tg[4096];
    cl_llama_sync(gpu, CL_SYNC_TO_HOST);
    int nc = cl_llama_trainable(cpu, tc, 4096), ng = cl_llama_trainable(gpu, tg, 4096);
    assert_int_equal(nc, ng);
    double worst = 0;
    const char *wname = "";
    for (int i = 0; i < nc; i++) {
        assert_string_equal(tc[i]->name, tg[i]->name);
        long n = tc[i]->numel;
        double er = what_cmp == CMP_GRAD ? rel_err(tc[i]->grad, tg[i]->grad, n)
                    : what_cmp == CMP_DATA ? rel_err(tc[i]->data, tg[i]->data, n)
                                           : fmax(rel_err(tc[i]->m, tg[i]->m, n), rel_err(tc[i]->v, tg[i]->v, n));
        if (er > tol) fail_msg("%s %s: relative error %.3g exceeds %.1g", what, tc[i]->name, er, tol);
        if (er >= worst) {
            worst = er;
            wname = tc[i]->name;
        }
    }
    print_message("# %s: worst relative error %.3g in %s (tolerance %.1g, %d tensors)\n", what, worst, wname, tol, nc);
}

static void full_sft_matches(const char *file)
{
    fixture *fx = clfx_model_open(file);
    cl_llama *cpu, *gpu;
    make_pair(fx, 0, &cpu, &gpu);
    static cl_tensor *tr[4096], *trg[4096];
    int nt = cl_llama_trainable(cpu, tr, 4096), ntg = cl_llama_trainable(gpu, trg, 4096);
    cl_adamw h = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    for (long step = 0; step < 3; step++) {
        cl_llama_zero_grad(cpu);
        cl_llama_zero_grad(gpu);
        double lc = clfx_sft(cpu, fx, 1), lg = clfx_sft(gpu, fx, 1);
        EXPECT_CLOSE(rel(lc, lg), TOL_LOSS, "%s step %ld SFT loss (cpu %.6f, gpu %.6f)", file, step, lc, lg);
        if (step == 0) {
            long cnt = (long)fx->b * fx->t * fx->cfg.vocab;
            float *a = malloc(sizeof(float) * (size_t)cnt), *b = malloc(sizeof(float) * (size_t)cnt);
            cl_llama_logits(cpu, a);
            cl_llama_logits(gpu, b);
            EXPECT_CLOSE(rel_err(a, b, cnt), TOL_LOGITS, "%s logits", file);
            free(a);
            free(b);
            compare_trainable(cpu, gpu, CMP_GRAD, TOL_GRAD, "full fine-tuning gradient");
        }
        double nc = cl_llama_clip_grad_norm(cpu, tr, nt, 1.0), ng = cl_llama_clip_grad_norm(gpu, trg, ntg, 1.0);
        EXPECT_CLOSE(rel(nc, ng), TOL_NORM, "%s step %ld gradient norm", file, step);
        double lr = cl_lr_at(CL_SCHED_COSINE, 3e-3, step, 1, 3);
        cl_llama_adamw_step(cpu, &h, tr, nt, step + 1, lr);
        cl_llama_adamw_step(gpu, &h, trg, ntg, step + 1, lr);
    }
    cl_llama_free(cpu);
    cl_llama_free(gpu);
    clfx_model_free(fx);
}

static void lora_sft_matches(const char *file, int recompute)
{
    fixture *fx = clfx_model_open(file);
    cl_llama *cpu, *gpu;
    make_pair_rc(fx, 1, recompute, &cpu, &gpu);
    cpu->training = gpu->training = 1; /* dropout on: the device must draw the CPU's masks */
    double lc = clfx_sft(cpu, fx, 1), lg = clfx_sft(gpu, fx, 1);
    EXPECT_CLOSE(rel(lc, lg), TOL_LOSS, "%s LoRA (bf16 base, dropout 0.25) loss", file);
    assert_int_equal(cpu->step, gpu->step);
    compare_trainable(cpu, gpu, CMP_GRAD, TOL_GRAD, recompute ? "LoRA gradient, recomputed activations" : "LoRA gradient");
    cl_llama_free(cpu);
    cl_llama_free(gpu);
    clfx_model_free(fx);
}

/* Full fine-tuning gradients with activations recomputed in backward (only layer inputs kept). */
static void recompute_full_matches(const char *file)
{
    fixture *fx = clfx_model_open(file);
    cl_llama *cpu, *gpu;
    make_pair_rc(fx, 0, 1, &cpu, &gpu);
    double lc = clfx_sft(cpu, fx, 1), lg = clfx_sft(gpu, fx, 1);
    EXPECT_CLOSE(rel(lc, lg), TOL_LOSS, "%s SFT loss, recomputing", file);
    compare_trainable(cpu, gpu, CMP_GRAD, TOL_GRAD, "full fine-tuning gradient, recomputed activations");
    cl_llama_free(cpu);
    cl_llama_free(gpu);
    clfx_model_free(fx);
}

/* Both sides step from the CPU's gradients (full fine-tuning, clipping, weight decay): the
 * device's gradient norm, scaling, AdamW, bf16 shadow refresh and host <-> device copies. */
static void optimizer_matches(const char *file)
{
    fixture *fx = clfx_model_open(file);
    cl_llama *cpu, *gpu;
    make_pair(fx, 0, &cpu, &gpu);
    static cl_tensor *tr[4096], *trg[4096];
    int nt = cl_llama_trainable(cpu, tr, 4096), ntg = cl_llama_trainable(gpu, trg, 4096);
    cl_llama_zero_grad(cpu);
    clfx_sft(cpu, fx, 1);
    memcpy(gpu->grad_mem, cpu->grad_mem, sizeof(float) * (size_t)cpu->n_train);
    cl_llama_sync(gpu, CL_SYNC_TO_DEVICE);
    double nc = cl_llama_clip_grad_norm(cpu, tr, nt, 0.5), ng = cl_llama_clip_grad_norm(gpu, trg, ntg, 0.5);
    EXPECT_CLOSE(rel(nc, ng), TOL_OPTIM, "%s gradient norm of the same gradients", file);
    cl_adamw h = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    cl_llama_adamw_step(cpu, &h, tr, nt, 1, 1e-2);
    cl_llama_adamw_step(gpu, &h, trg, ntg, 1, 1e-2);
    compare_trainable(cpu, gpu, CMP_DATA, TOL_OPTIM, "weights after AdamW from the same gradients");
    compare_trainable(cpu, gpu, CMP_MOMENTS, TOL_OPTIM, "AdamW moments from the same gradients");
    double lc = clfx_sft(cpu, fx, 0), lg = clfx_sft(gpu, fx, 0);
    EXPECT_CLOSE(rel(lc, lg), TOL_LOSS, "%s loss with the updated weights (bf16 copies refreshed)", file);
    cl_llama_free(cpu);
    cl_llama_free(gpu);
    clfx_model_free(fx);
}

/* The fixture batch as cl-finetune lays it out for DPO: rows 2k and 2k+1 are pair k. */
static cl_ft_batch dpo_batch(fixture *fx)
{
    cl_ft_batch bt = {.b = fx->b, .t = fx->t, .nseq = fx->b, .nex = fx->b / 2, .ids = fx->ids, .pos = fx->pos,
                      .seg = fx->seg, .target = fx->targets, .seqid = malloc(sizeof(int) * (size_t)fx->b * fx->t)};
    for (int i = 0; i < fx->b * fx->t; i++) bt.seqid[i] = i / fx->t;
    return bt;
}

/* One DPO micro-step of cl-finetune (train/finetune.h): reference log-probs with the adapters
 * off, then the sigmoid loss and its gradients.  Returns the loss. */
static double dpo_step(cl_llama *m, fixture *fx)
{
    cl_ft_batch bt = dpo_batch(fx);
    double ref[64];
    int len[64];
    cl_err e = {0};
    assert_true(fx->b >= 2 && fx->b <= 64);
    cl_lora_enable(m, 0);
    assert_int_equal(cl_ft_seq_logps(m, &bt, ref, len, &e), 0);
    cl_lora_enable(m, 1);
    cl_llama_zero_grad(m);
    cl_dpo_config c = {.type = CL_DPO_SIGMOID, .beta = 0.1};
    cl_ft_dpo_out out;
    assert_int_equal(cl_ft_dpo_micro(m, &bt, &c, ref, bt.nex, 0, 0, &out, &e), 0);
    free(bt.seqid);
    return out.loss;
}

static void dpo_matches(const char *file)
{
    fixture *fx = clfx_model_open(file);
    cl_llama *cpu, *gpu;
    make_pair(fx, 1, &cpu, &gpu);
    double lc = dpo_step(cpu, fx), lg = dpo_step(gpu, fx);
    EXPECT_CLOSE(rel(lc, lg), TOL_LOSS, "%s DPO sigmoid loss (cpu %.6f, gpu %.6f)", file, lc, lg);
    compare_trainable(cpu, gpu, CMP_GRAD, TOL_GRAD, "DPO adapter gradient");
    static cl_tensor *tr[4096], *trg[4096];
    int nt = cl_llama_trainable(cpu, tr, 4096), ntg = cl_llama_trainable(gpu, trg, 4096);
    cl_adamw h = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    cl_llama_adamw_step(cpu, &h, tr, nt, 1, 5e-3);
    cl_llama_adamw_step(gpu, &h, trg, ntg, 1, 5e-3);
    lc = dpo_step(cpu, fx);
    lg = dpo_step(gpu, fx);
    EXPECT_CLOSE(rel(lc, lg), TOL_LOSS, "%s DPO loss after the step (cpu %.6f, gpu %.6f)", file, lc, lg);
    cl_llama_free(cpu);
    cl_llama_free(gpu);
    clfx_model_free(fx);
}

/* out = x W^T + b through the device's resident copy, against ops.c on the CPU model's values. */
static void rows_match(cl_llama *cpu, cl_llama *gpu, int is_lora, int proj, const char *what)
{
    const cl_linear *lc = &cpu->layers[0].proj[proj], *lg = &gpu->layers[0].proj[proj];
    const cl_tensor *wc = is_lora ? lc->lora_a : lc->w, *wg = is_lora ? lg->lora_a : lg->w;
    int n = 5, in = wc->shape[1], od = wc->shape[0];
    float *x = malloc(sizeof(float) * (size_t)n * in), *w = malloc(sizeof(float) * (size_t)wc->numel),
          *want = malloc(sizeof(float) * (size_t)n * od), *got = malloc(sizeof(float) * (size_t)n * od);
    for (long i = 0; i < (long)n * in; i++) x[i] = (float)(2 * cl_hash_uniform(3, (uint64_t)i) - 1);
    for (long i = 0; i < wc->numel; i++)
        w[i] = wc->dtype == CL_BF16 ? cl_bf16_to_f32(((const uint16_t *)wc->data)[i]) : ((const float *)wc->data)[i];
    const cl_tensor *bc = is_lora ? NULL : lc->b, *bg = is_lora ? NULL : lg->b;
    cl_linear_fwd(want, x, w, bc ? bc->data : NULL, n, in, od, 0);
    gpu->dev->linear_rows(gpu, wg, bg, x, got, n);
    EXPECT_CLOSE(rel_err(want, got, (long)n * od), TOL_LOGITS, "%s", what);
    free(x);
    free(w);
    free(want);
    free(got);
}

static void decode_products_match(const char *file)
{
    fixture *fx = clfx_model_open(file);
    cl_llama *cpu, *gpu;
    make_pair(fx, 1, &cpu, &gpu);
    char what[128];
    snprintf(what, sizeof what, "%s decode product, bf16 q_proj (with its bias if any)", file);
    rows_match(cpu, gpu, 0, CL_Q, what);
    snprintf(what, sizeof what, "%s decode product, fp32 LoRA A of down_proj", file);
    rows_match(cpu, gpu, 1, CL_DOWN, what);
    cl_llama_free(cpu);
    cl_llama_free(gpu);
    clfx_model_free(fx);
}

/* The local: engine with its products on the device (local:DIR+device=cuda): a prompt's
 * logits (prefill rows), then three decode steps', against the CPU engine over the same
 * weights: fp32 weights through their bf16 copies (full), and a bf16 base with unmerged fp32
 * adapters (LoRA). */
static void engine_matches(const char *file, int lora)
{
    fixture *fx = clfx_model_open(file);
    cl_llama *cpu, *gpu;
    make_pair(fx, lora, &cpu, &gpu);
    cl_err e = {0};
    int t = fx->t < 24 ? fx->t : 24, V = fx->cfg.vocab;
    cl_engine *ec = cl_engine_new(cpu, t + 8, &e), *eg = cl_engine_new(gpu, t + 8, &e);
    assert_non_null(ec);
    assert_non_null(eg);
    float *lc = malloc(sizeof(float) * (size_t)V), *lg = malloc(sizeof(float) * (size_t)V);
    assert_int_equal(cl_engine_feed(ec, fx->ids, t, lc, &e), 0);
    assert_int_equal(cl_engine_feed(eg, fx->ids, t, lg, &e), 0);
    EXPECT_CLOSE(rel_err(lc, lg, V), TOL_LOGITS, "%s engine (%s) prefill logits, %d tokens", file,
                 lora ? "bf16 base + LoRA" : "fp32", t);
    for (int step = 0; step < 3; step++) {
        int tok = fx->ids[t + step < fx->b * fx->t ? t + step : 0];
        assert_int_equal(cl_engine_feed(ec, &tok, 1, lc, &e), 0);
        assert_int_equal(cl_engine_feed(eg, &tok, 1, lg, &e), 0);
        EXPECT_CLOSE(rel_err(lc, lg, V), TOL_LOGITS, "%s engine (%s) decode step %d logits", file,
                     lora ? "bf16 base + LoRA" : "fp32", step);
    }
    free(lc);
    free(lg);
    cl_engine_free(ec);
    cl_engine_free(eg);
    cl_llama_free(cpu);
    cl_llama_free(gpu);
    clfx_model_free(fx);
}

/* cuda, cuda:N and what is not a device name; the dense bf16 peaks MFU divides by. */
static void device_names_and_peaks(void **st)
{
    (void)st;
    cl_device d;
    cl_err e = {0};
    assert_int_equal(cl_cuda_open(&d, "cuda", &e), 0);
    assert_string_equal(d.name, "cuda:0");
    assert_int_equal(d.ordinal, 0);
    const char *bad[] = {"cuda:x", "cuda:", "cudax", "gpu", "cuda:-1", "cpu"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        e.code = 0;
        assert_int_equal(cl_cuda_open(&d, bad[i], &e), -1);
        assert_int_equal(e.code, CL_EXIT_USAGE);
    }
    e.code = 0;
    assert_int_equal(cl_cuda_open(&d, "cuda:1023", &e), -1);
    assert_int_equal(e.code, CL_EXIT_UNAVAILABLE);
    assert_non_null(strstr(e.msg, "CUDA GPU"));
    assert_true(cl_cuda_peak_tflops("NVIDIA H100 80GB HBM3") == 989);
    assert_true(cl_cuda_peak_tflops("NVIDIA H100 PCIe") == 756);
    assert_true(cl_cuda_peak_tflops("NVIDIA H100 NVL") == 835);
    assert_true(cl_cuda_peak_tflops("NVIDIA H200") == 989);
    assert_true(cl_cuda_peak_tflops("NVIDIA A100-SXM4-80GB") == 312);
    assert_true(cl_cuda_peak_tflops("Tesla T4") == 0);
}

static void llama_full_sft_logits_gradients_and_adamw_match_cpu(void **s) { (void)s; full_sft_matches("llama.fx"); }
static void qwen2_full_sft_logits_gradients_and_adamw_match_cpu(void **s) { (void)s; full_sft_matches("qwen2.fx"); }
static void llama_adamw_from_the_same_gradients_matches_cpu(void **s) { (void)s; optimizer_matches("llama.fx"); }
static void qwen2_adamw_from_the_same_gradients_matches_cpu(void **s) { (void)s; optimizer_matches("qwen2.fx"); }
static void llama_lora_bf16_dropout_gradients_match_cpu(void **s) { (void)s; lora_sft_matches("llama.fx", 0); }
static void qwen2_lora_bf16_dropout_gradients_match_cpu(void **s) { (void)s; lora_sft_matches("qwen2.fx", 0); }
static void llama_recomputed_lora_dropout_gradients_match_cpu(void **s) { (void)s; lora_sft_matches("llama.fx", 1); }
static void qwen2_recomputed_full_gradients_match_cpu(void **s) { (void)s; recompute_full_matches("qwen2.fx"); }
static void llama_dpo_step_matches_cpu(void **s) { (void)s; dpo_matches("llama.fx"); }
static void qwen2_dpo_step_matches_cpu(void **s) { (void)s; dpo_matches("qwen2.fx"); }
static void llama_decode_products_match_cpu(void **s) { (void)s; decode_products_match("llama.fx"); }
static void qwen2_decode_products_match_cpu(void **s) { (void)s; decode_products_match("qwen2.fx"); }
static void llama_engine_on_the_device_matches_cpu(void **s) { (void)s; engine_matches("llama.fx", 0); }
static void qwen2_engine_lora_on_the_device_matches_cpu(void **s) { (void)s; engine_matches("qwen2.fx", 1); }

#endif

int main(void)
{
#ifdef CL_HAVE_CUDA
    cl_err e = {0};
    if (cl_cuda_device_count() <= 0 || cl_cuda_open(&gpu_dev, "cuda:0", &e)) {
        fprintf(stderr, "test_cuda_parity: SKIP: no CUDA device on this machine; the GPU path is NOT tested here\n");
        printf("1..0 # SKIP no CUDA device\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(device_names_and_peaks),
        cmocka_unit_test(llama_full_sft_logits_gradients_and_adamw_match_cpu),
        cmocka_unit_test(qwen2_full_sft_logits_gradients_and_adamw_match_cpu),
        cmocka_unit_test(llama_adamw_from_the_same_gradients_matches_cpu),
        cmocka_unit_test(qwen2_adamw_from_the_same_gradients_matches_cpu),
        cmocka_unit_test(llama_lora_bf16_dropout_gradients_match_cpu),
        cmocka_unit_test(qwen2_lora_bf16_dropout_gradients_match_cpu),
        cmocka_unit_test(llama_recomputed_lora_dropout_gradients_match_cpu),
        cmocka_unit_test(qwen2_recomputed_full_gradients_match_cpu),
        cmocka_unit_test(llama_dpo_step_matches_cpu),
        cmocka_unit_test(qwen2_dpo_step_matches_cpu),
        cmocka_unit_test(llama_decode_products_match_cpu),
        cmocka_unit_test(qwen2_decode_products_match_cpu),
        cmocka_unit_test(llama_engine_on_the_device_matches_cpu),
        cmocka_unit_test(qwen2_engine_lora_on_the_device_matches_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
#else
    fprintf(stderr, "test_cuda_parity: SKIP: built without CUDA (make CUDA=1 builds the GPU path and this test)\n");
    printf("1..0 # SKIP built without CUDA\n");
    return 0;
#endif
}
