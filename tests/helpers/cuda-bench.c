/* cuda-bench — training throughput of the CUDA backend on a Llama-3.2-1B-shaped model
 * (d 2048, 16 layers, 32 heads, 8 kv heads, SwiGLU 8192, vocab 128256, tied; random weights
 * from cl_llama_init_uniform, so no model file is read or written).
 *   sft: full fine-tuning (fp32 masters, bf16 shadows), b rows of t tokens per step;
 *   dpo: LoRA r 16 alpha 32 on all seven projections over a frozen bf16 base, b/2 pairs of
 *        chosen/rejected rows, sigmoid DPO against reference log-probs computed once up front
 *        (as cl-finetune caches them), one policy forward + backward per step.
 * Each step: cl-finetune's micro-step (cl_ft_sft_micro / cl_ft_dpo_micro: forward, head,
 * backward), clip 1.0, AdamW, then a device synchronisation.  The
 * first step (cuBLASLt start-up) is left out of the median.
 * MFU counts model FLOPs per token as llm.c does: 6N + 6LCT for full fine-tuning and
 * 4N + 6LCT for LoRA (the base computes input gradients but no weight gradients; the adapters'
 * own FLOPs are left out), N the parameters of the matrix products (layers and head),
 * divided by the GPU's dense bf16 peak (cl_cuda_peak_tflops).
 * Usage: cuda-bench sft|dpo [b] [t] [steps] [recompute]  (recompute: cl-finetune --recompute)
 * Prints one JSON object on stdout; exit 69 without a CUDA build or GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "model/device.h"
#include "model/lora.h"
#include "model/loss.h"
#include "train/finetune.h"
#ifdef CL_HAVE_CUDA
#include "cuda/cuda.h"
#endif

#ifdef CL_HAVE_CUDA
#define MAXSEQ 256

static void die(const cl_err *e)
{
    fprintf(stderr, "cuda-bench: %s\n", e->msg);
    exit(e->code ? e->code : 1);
}

static int run(int dpo, int b, int t, int steps, int recompute)
{
    cl_llama_config c = {.vocab = 128256, .hidden = 2048, .inter = 8192, .layers = 16, .heads = 32, .kv_heads = 8,
                         .head_dim = 64, .max_pos = 4096, .rms_eps = 1e-5, .rope_theta = 500000,
                         .tie_embeddings = 1, .bos_id = -1};
    strcpy(c.model_type, "llama");
    cl_err e = {0};
    cl_device dev;
    char gpu[256];
    size_t gmem = 0;
    if (cl_cuda_open(&dev, "cuda:0", &e)) die(&e);
    dev.recompute = recompute;
    if (cl_cuda_describe(0, gpu, sizeof gpu, &gmem)) snprintf(gpu, sizeof gpu, "unknown");
    cl_llama *m = cl_llama_new(&c, dpo ? CL_BF16 : CL_F32, !dpo, &e);
    if (!m) die(&e);
    if (dpo) {
        cl_lora_config lc = {.rank = 16, .alpha = 32, .targets = (1u << CL_NPROJ) - 1, .seed = 1};
        if (cl_lora_add(m, &lc, &e)) die(&e);
    }
    cl_llama_init_uniform(m, 1, 0);
    if (dev.attach(&dev, m, &e)) die(&e);
    int n = b * t, *ids = malloc(sizeof(int) * n), *tgt = malloc(sizeof(int) * n), *seq = malloc(sizeof(int) * n);
    if (!ids || !tgt || !seq) return 1;
    for (int i = 0; i < n; i++) ids[i] = (int)(cl_hash_uniform(5, (uint64_t)i) * c.vocab);
    /* DPO rows: the first quarter of each row is the prompt (no loss), the rest the reply */
    for (int i = 0; i < n; i++) {
        int p = i % t;
        tgt[i] = p < t - 1 && (!dpo || p >= t / 4) ? ids[i + 1] : -1;
        seq[i] = i / t;
    }
    /* one sequence per row; rows 2k and 2k+1 are pair k for DPO */
    cl_ft_batch bt = {.b = b, .t = t, .nseq = b, .nex = dpo ? b / 2 : b, .ids = ids, .target = tgt, .seqid = seq};
    double ref[MAXSEQ];
    int cnt[MAXSEQ];
    if (dpo) {
        cl_lora_enable(m, 0);
        if (cl_ft_seq_logps(m, &bt, ref, cnt, &e)) die(&e);
        cl_lora_enable(m, 1);
    }
    cl_dpo_config dc = {.type = CL_DPO_SIGMOID, .beta = 0.1};
    static cl_tensor *tr[4096];
    int nt = cl_llama_trainable(m, tr, 4096);
    cl_adamw h = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0};
    double times[64], loss = 0;
    for (int s = 0; s < steps; s++) {
        double t0 = bench_now();
        cl_llama_zero_grad(m);
        m->training = 1;
        cl_ft_dpo_out out;
        if (dpo ? cl_ft_dpo_micro(m, &bt, &dc, ref, b / 2, 0, 0, &out, &e)
                : cl_ft_sft_micro(m, &bt, cl_loss_tokens(tgt, n), 1.0, &loss, &e))
            die(&e);
        if (dpo) loss = out.loss;
        m->training = 0;
        cl_llama_clip_grad_norm(m, tr, nt, 1.0);
        cl_llama_adamw_step(m, &h, tr, nt, s + 1, dpo ? 5e-6 : 1e-5);
        cl_cuda_synchronize();
        times[s] = bench_now() - t0;
    }
    double med = bench_median(times + 1, steps - 1), tps = n / med;
    long L = c.layers, d = c.hidden, qd = (long)c.heads * c.head_dim, kd = (long)c.kv_heads * c.head_dim;
    double N = (double)L * (2 * d * qd + 2 * d * kd + 3 * d * c.inter) + (double)c.vocab * d;
    double fpt = (dpo ? 4 : 6) * N + 6.0 * L * d * t, peak = cl_cuda_peak_tflops(gpu);
    size_t held;
    cl_cuda_memory(NULL, &held);
    printf("{\"mode\":\"%s%s\",\"gpu\":\"%s\",\"b\":%d,\"t\":%d,\"steps\":%d,\"step_s_median\":%.4f,"
           "\"tokens_per_s\":%.0f,\"flops_per_token\":%.4g,\"tflops\":%.1f,\"peak_tflops\":%.0f,\"mfu\":%.4f,"
           "\"peak_mib\":%.0f,\"gpu_mib\":%.0f,\"last_loss\":%.5f}\n",
           dpo ? "lora-dpo" : "full-sft", recompute ? "-recompute" : "", gpu, b, t, steps, med, tps, fpt, fpt * tps / 1e12, peak,
           peak > 0 ? fpt * tps / 1e12 / peak : 0, held / 1048576.0, gmem / 1048576.0, loss);
    free(ids);
    free(tgt);
    free(seq);
    cl_llama_free(m);
    return 0;
}
#endif

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "sft") && strcmp(argv[1], "dpo"))) {
        fprintf(stderr, "usage: cuda-bench sft|dpo [b] [t] [steps] [recompute]\n");
        return 2;
    }
    int dpo = !strcmp(argv[1], "dpo");
    int b = argc > 2 ? atoi(argv[2]) : 4, t = argc > 3 ? atoi(argv[3]) : 1024, steps = argc > 4 ? atoi(argv[4]) : 6;
    int recompute = argc > 5 && !strcmp(argv[5], "recompute");
    if (b < 1 || t < 8 || steps < 2 || steps > 64 || (dpo && (b % 2 || b > 256)) || (argc > 5 && !recompute)) {
        fprintf(stderr, "cuda-bench: b >= 1 (even, <= 256 for dpo), t >= 8, 2 <= steps <= 64, then only recompute\n");
        return 2;
    }
#ifdef CL_HAVE_CUDA
    return run(dpo, b, t, steps, recompute);
#else
    fprintf(stderr, "cuda-bench: built without CUDA (make CUDA=1)\n");
    return 69;
#endif
}
