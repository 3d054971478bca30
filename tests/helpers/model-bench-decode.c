/* model-bench-decode — decode throughput of the local: engine (bench/bench-local.sh).
 *
 *   model-bench-decode init CONFIG TOKENIZER DIR    a random model (cl-finetune --init's
 *                         weights, seed 1) in DIR plus DIR/model-f32.gguf, model-f16.gguf
 *                         and model-bf16.gguf
 *   model-bench-decode run DIR [--bf16] [--batch B] [--new N]
 *                         B sequences of a 1-token prompt decode N tokens each (greedy, no
 *                         stop) in one continuous batch; prints "tokens seconds tokens/s isa
 *                         cpu_seconds": on a loaded machine, tokens per CPU-second of a
 *                         one-thread run is the figure that does not depend on the load
 *   model-bench-decode bandwidth                    read bandwidth: GB/s summing 1 GiB, timed
 *                         by CPU time (per thread: on a shared machine the wall clock also
 *                         counts the time other processes held the CPU)
 *   model-bench-decode ceiling DIR [--batch B]
 *                         the products of one decode step of B rows (every projection of every
 *                         layer, the head, on the model's own fp32 weights) through cl_gemm's
 *                         backend (OpenBLAS unless built with BLAS=none) and through the
 *                         engine's batch-invariant kernel on the decode layout, the best of
 *                         10 wall-clock timings each; prints "flop_per_token backend backend_step_s ours_step_s":
 *                         B / backend_step_s bounds the batched rate of any engine whose
 *                         products run no faster than the backend's, attention and sampling
 *                         free */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "model/engine.h"
#include "model/gemm.h"
#include "model/linear.h"
#include "model/weights.h"
#include "train/modelio.h"

static int die(const cl_err *e)
{
    fprintf(stderr, "model-bench-decode: %s\n", e->msg);
    return e->code ? e->code : 70;
}

static int cmd_init(const char *cfg, const char *tok, const char *dir)
{
    cl_err e = {0};
    cl_ft_model fm;
    char path[4200];
    if (cl_ft_model_init(&fm, cfg, tok, NULL, 0, 1, 0, &e) || cl_ft_model_save(&fm, dir, &e) ||
        cl_ft_model_export_gguf(&fm, CL_GGUF_AS_STORED, cl_ft_path(path, sizeof path, dir, "model-f32.gguf"), &e) ||
        cl_ft_model_export_gguf(&fm, CL_GGUF_AS_F16, cl_ft_path(path, sizeof path, dir, "model-f16.gguf"), &e))
        return die(&e);
    cl_ft_model_free(&fm);
    if (cl_ft_model_load(&fm, dir, CL_BF16, 0, &e) ||
        cl_ft_model_export_gguf(&fm, CL_GGUF_AS_STORED, cl_ft_path(path, sizeof path, dir, "model-bf16.gguf"), &e))
        return die(&e);
    cl_ft_model_free(&fm);
    return 0;
}

static int never_stop(void *ctx, int token, const float *logits)
{
    (void)token;
    (void)logits;
    ++*(long *)ctx;
    return 0;
}

static int cmd_run(const char *dir, cl_dtype dt, int batch, int n_new)
{
    cl_err e = {0};
    cl_ft_model fm;
    if (cl_ft_model_load(&fm, dir, dt, CL_LLAMA_DECODE, &e))
        return die(&e);
    cl_batch *b = cl_batch_new(fm.m, (size_t)8 << 30, 64, &e);
    if (!b)
        return die(&e);
    long made = 0;
    int prompt = 1;
    cl_gen_req q = {.prompt = &prompt, .n = 1, .max_new = n_new, .on_token = never_stop, .ctx = &made};
    for (int i = 0; i < batch; i++) {
        prompt = 1 + i % 100;
        if (!cl_batch_submit(b, &q, &e))
            return die(&e);
    }
    cl_batch_step(b); /* the 1-token prompts: a decode-shaped step, untimed (first touch) */
    long before = made;
    double t0 = bench_now(), c0 = bench_cpu_now();
    while (cl_batch_busy(b))
        cl_batch_step(b);
    double dt_s = bench_now() - t0, cpu = bench_cpu_now() - c0;
    printf("%ld %.4f %.2f %s %.4f\n", made - before, dt_s, (double)(made - before) / dt_s, cl_linear_isa(), cpu);
    cl_batch_free(b);
    cl_ft_model_free(&fm);
    return 0;
}

/* What one pass over a model's bytes costs at best: threads summing a buffer larger than every
 * cache, as the decode kernels read weights. */
static int cmd_bandwidth(void)
{
    size_t n = ((size_t)1 << 30) / sizeof(float);
    float *a = malloc(n * sizeof *a);
    if (!a)
        return 70;
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 7);
    double best = 1e9, sum = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = bench_cpu_now();
        float s = 0;
#pragma omp parallel for simd reduction(+ : s)
        for (size_t i = 0; i < n; i++) s += a[i];
        double t = (bench_cpu_now() - t0) / omp_get_max_threads();
        sum += s;
        best = t < best ? t : best;
    }
    printf("%.2f\n", (double)n * sizeof *a / best / 1e9 + 0 * sum);
    free(a);
    return 0;
}

/* outs[i] = x w_i^T for the cnt projections li[0..] that read the same x, batch rows: the
 * engine's kernel, the group in one loop as the engine runs q/k/v and gate/up
 * (cl_linear_parts), or cl_gemm's backend, one product each; the outputs side by side in out. */
static void products(int ours, const cl_linear *li, int cnt, const float *x, float *out, int batch)
{
    cl_linear_part parts[CL_LINEAR_MAX_PARTS];
    float *o = out;
    for (int i = 0; i < cnt; o += (size_t)batch * li[i].out, i++) {
        if (ours)
            parts[i] = (cl_linear_part){o, li[i].w->panels, li[i].w->panels_dt, NULL, li[i].out};
        else
            cl_gemm(CL_N, CL_T, batch, li[i].out, li[i].in, 1.0f, x, li[i].in, li[i].w->data, li[i].in, 0.0f, o,
                    li[i].out);
    }
    if (ours) cl_linear_parts(parts, cnt, x, batch, li->in);
}

/* The best of 10 wall-clock timings (after one that warms the threads) of one step's products:
 * every projection of every layer, then the head, each layer's weights read as a real step
 * reads them (from memory, when the model is larger than the caches). */
static double step_seconds(int ours, const cl_llama *m, const float *x, float *out, int batch)
{
    double best = 1e9;
    const cl_linear head = {.w = m->lm_head, .in = m->cfg.hidden, .out = m->cfg.vocab};
    for (int rep = 0; rep < 11; rep++) {
        double t0 = bench_now();
        for (int l = 0; l < m->cfg.layers; l++) {
            const cl_linear *li = m->layers[l].proj;
            products(ours, li + CL_Q, 3, x, out, batch);
            products(ours, li + CL_O, 1, x, out, batch);
            products(ours, li + CL_GATE, 2, x, out, batch);
            products(ours, li + CL_DOWN, 1, x, out, batch);
        }
        products(ours, &head, 1, x, out, batch);
        double t = bench_now() - t0;
        if (rep > 0 && t < best)
            best = t;
    }
    return best;
}

static int cmd_ceiling(const char *dir, int batch)
{
    cl_err e = {0};
    cl_ft_model fm;
    /* not CL_LLAMA_DECODE: the backend's products need the row-major weights beside the panels */
    if (cl_ft_model_load(&fm, dir, CL_F32, 0, &e) || cl_llama_pack_decode(fm.m, &e))
        return die(&e);
    const cl_llama *m = fm.m;
    const cl_llama_config *c = &m->cfg;
    size_t qkv = (size_t)(c->heads + 2 * c->kv_heads) * (size_t)c->head_dim,
           widest = (size_t)(c->vocab > 2 * c->inter ? c->vocab : 2 * c->inter);
    widest = widest > qkv ? widest : qkv;
    float *x = malloc(sizeof(float) * (size_t)batch * widest), *out = malloc(sizeof(float) * (size_t)batch * widest);
    if (!x || !out)
        return 70;
    for (size_t i = 0; i < (size_t)batch * widest; i++) x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    double flop = 2.0 * (double)m->lm_head->numel;
    for (int l = 0; l < c->layers; l++)
        for (int p = 0; p < CL_NPROJ; p++) flop += 2.0 * (double)m->layers[l].proj[p].w->numel;
    printf("%.0f %s %.6f %.6f\n", flop, cl_gemm_backend_name(), step_seconds(0, m, x, out, batch),
           step_seconds(1, m, x, out, batch));
    free(x);
    free(out);
    cl_ft_model_free(&fm);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "init") == 0)
        return cmd_init(argv[2], argv[3], argv[4]);
    if (argc == 2 && strcmp(argv[1], "bandwidth") == 0)
        return cmd_bandwidth();
    if ((argc == 3 || (argc == 5 && strcmp(argv[3], "--batch") == 0)) && strcmp(argv[1], "ceiling") == 0) {
        int batch = argc == 5 ? atoi(argv[4]) : 32;
        if (batch >= 1)
            return cmd_ceiling(argv[2], batch);
        fprintf(stderr, "model-bench-decode: --batch must be a positive number of rows\n");
        return 2;
    }
    if (argc >= 3 && strcmp(argv[1], "run") == 0) {
        cl_dtype dt = CL_F32;
        int batch = 1, n_new = 128;
        for (int i = 3; i < argc; i++) {
            if (strcmp(argv[i], "--bf16") == 0)
                dt = CL_BF16;
            else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
                batch = atoi(argv[++i]);
            else if (strcmp(argv[i], "--new") == 0 && i + 1 < argc)
                n_new = atoi(argv[++i]);
        }
        return cmd_run(argv[2], dt, batch, n_new);
    }
    fprintf(stderr, "usage: model-bench-decode init CONFIG TOKENIZER DIR | run DIR [--bf16] [--batch B] "
                    "[--new N] | bandwidth | ceiling DIR [--batch B]\n");
    return 2;
}
