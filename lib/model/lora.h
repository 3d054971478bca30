/* lora.h — LoRA adapters on the projections of a cl_llama.
 *
 * Owns: adding fp32 A [r][in] / B [out][r] pairs (PEFT names, so adapter files are a loop over
 * the table), their initialisation (A Kaiming-uniform(a=sqrt 5) or Gaussian N(0, 1/r); B = 0),
 * the scale alpha/r (rsLoRA alpha/sqrt r), dropout probability, enabling/disabling (the DPO
 * reference is the base with adapters off) and merging into the base weights.
 * The forward/backward maths is cl_lora_fwd/bwd in ops.h, called by llama.c. */
#ifndef CL_MODEL_LORA_H
#define CL_MODEL_LORA_H

#include "model/llama.h"

enum { CL_LORA_INIT_KAIMING = 0, CL_LORA_INIT_GAUSSIAN = 1 };

typedef struct cl_lora_config {
    int rank;
    double alpha;
    int rslora;        /* scale alpha / sqrt(rank) instead of alpha / rank */
    double dropout;
    unsigned targets;  /* bit (1 << CL_Q) ... (1 << CL_DOWN) */
    int init;          /* CL_LORA_INIT_* */
    uint64_t seed;
} cl_lora_config;

/* Parses "q_proj,k_proj,..." (or "all") into a target mask; -1 on an unknown name. */
int cl_lora_targets(const char *list, unsigned *mask, cl_err *e);

/* Adds adapters (once per model; the base becomes frozen).  Adapters start enabled. */
int cl_lora_add(cl_llama *m, const cl_lora_config *c, cl_err *e);

void cl_lora_enable(cl_llama *m, int on);

/* The adapter table (PEFT save names, fp32, A [r][in] then B [out][r] per projection); NULL and
 * *n = 0 without adapters.  Saving a PEFT adapter is a loop over it. */
cl_tensor *cl_lora_tensors(cl_llama *m, int *n);

/* W += scale * B . A for every adapter (bf16 bases are rounded back), then disables the
 * adapters so the merged model computes what the adapted one did. */
void cl_lora_merge(cl_llama *m);

#endif
