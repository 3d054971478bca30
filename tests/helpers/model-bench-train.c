/* model-bench-train — training throughput of the C model core on a GPT-2-small-sized Llama
 * (d 768, 12 layers, 12 heads, SwiGLU 2048, vocab 32000) at b x t tokens per step:
 * forward + chunked CE head + backward + clipping + AdamW, full fine-tuning or LoRA
 * (r 32, alpha 16, all seven projections, frozen fp32 base).
 * Usage: model-bench-train full|lora [b] [t] [steps] [backend]
 * Prints: mode backend b t median-seconds-per-step tokens-per-second final-loss
 *         median-CPU-seconds-per-step (the whole process) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "model/gemm.h"
#include "model/llama.h"
#include "model/lora.h"
#include "model/loss.h"
#include "model/optim.h"

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "full") && strcmp(argv[1], "lora"))) {
        fprintf(stderr, "usage: model-bench-train full|lora [b] [t] [steps] [backend]\n");
        return 2;
    }
    int lora = !strcmp(argv[1], "lora");
    int b = argc > 2 ? atoi(argv[2]) : 4, t = argc > 3 ? atoi(argv[3]) : 256, steps = argc > 4 ? atoi(argv[4]) : 3;
    if (argc > 5 && cl_gemm_use(argv[5])) {
        fprintf(stderr, "model-bench-train: backend %s is not built in\n", argv[5]);
        return 2;
    }
    if (b < 1 || t < 2 || steps < 1 || steps > 50) return 2;
    cl_llama_config c = {.vocab = 32000, .hidden = 768, .inter = 2048, .layers = 12, .heads = 12, .kv_heads = 12,
                         .head_dim = 64, .max_pos = 1024, .rms_eps = 1e-5, .rope_theta = 10000, .bos_id = -1};
    strcpy(c.model_type, "llama");
    cl_err e = {0};
    cl_llama *m = cl_llama_new(&c, CL_F32, !lora, &e);
    if (!m) { fprintf(stderr, "%s\n", e.msg); return 1; }
    if (lora) {
        cl_lora_config lc = {.rank = 32, .alpha = 16, .targets = (1u << CL_NPROJ) - 1, .seed = 1};
        if (cl_lora_add(m, &lc, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    }
    cl_llama_init_uniform(m, 1, 0);
    int n = b * t;
    int *ids = malloc(sizeof(int) * n), *tgt = malloc(sizeof(int) * n);
    float *coef = malloc(sizeof(float) * n), *logp = malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) ids[i] = (int)(cl_hash_uniform(5, (uint64_t)i) * c.vocab);
    for (int i = 0; i < n; i++) tgt[i] = i % t < t - 1 ? ids[i + 1] : -1;
    cl_tensor *tr[256];
    int nt = cl_llama_trainable(m, tr, 256);
    cl_adamw h = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0};
    double times[51], cpus[51], loss = 0;
    int ntok = cl_loss_tokens(tgt, n);
    m->training = 1;
    for (int s = 0; s <= steps; s++) { /* step 0 warms caches and allocates activations */
        double t0 = bench_now(), c0 = bench_cpu_now();
        cl_llama_zero_grad(m);
        if (cl_llama_forward(m, ids, NULL, NULL, b, t, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
        cl_sft_loss(logp, tgt, n, ntok, coef);
        cl_llama_head(m, tgt, coef, logp);
        loss = cl_sft_loss(logp, tgt, n, ntok, NULL);
        cl_llama_backward(m);
        cl_clip_grad_norm(tr, nt, 1.0);
        cl_adamw_step(&h, tr, nt, s + 1, 1e-4);
        times[s] = bench_now() - t0;
        cpus[s] = bench_cpu_now() - c0;
    }
    double med = bench_median(times + 1, steps), cmed = bench_median(cpus + 1, steps);
    printf("%s %s %d %d %.3f %.1f %.4f %.3f\n", argv[1], cl_gemm_backend_name(), b, t, med, n / med, loss, cmed);
    cl_llama_free(m);
    free(ids); free(tgt); free(coef); free(logp);
    return 0;
}
