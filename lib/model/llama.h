/* llama.h — the Llama/Qwen2 decoder: parameters, training forward, backward, logits.
 *
 * Owns: the parameter table (every tensor under its exact HF name with shape, dtype and data
 * pointer, so safetensors loading/saving is a loop over cl_llama_tensors), the llm.c-style
 * arenas (one buffer each for base parameters, trainable gradients, AdamW m, AdamW v and
 * activations), the training forward that keeps what backward needs, the backward that
 * accumulates gradients, and the head that turns final hidden states into log-probabilities
 * of given targets only where the loss mask is on.
 * Layer maths live in ops.h, matrix products in gemm.h, adapters in lora.h, loss formulas in
 * loss.h, the optimiser in optim.h.  With a device attached (device.h), forward, head,
 * backward, logits and zero_grad run there instead.  Must not know about files, tokenizers or losses' formulas.
 *
 * Storage: 2-D projection weights of the frozen base may be bf16 (converted to fp32 per use);
 * norms, biases, embedding and lm_head are always fp32.  Full fine-tuning needs an fp32 base. */
#ifndef CL_MODEL_LLAMA_H
#define CL_MODEL_LLAMA_H

#include <stdint.h>
#include <string.h>

#include "core/err.h"
#include "model/config.h"

typedef enum cl_dtype { CL_F32 = 0, CL_BF16 = 1 } cl_dtype;

typedef struct cl_tensor {
    char name[96];        /* HF name; PEFT save name for LoRA tensors */
    int ndim;
    int shape[2];         /* PyTorch order: [out][in] for linear weights */
    long numel;
    cl_dtype dtype;
    void *data;           /* float * or uint16_t * (bf16), inside the owning arena; NULL once
                           * given up for panels (cl_llama_pack_decode) */
    void *panels;         /* the decode layout (linear.h) of a 2-D tensor, or NULL */
    cl_dtype panels_dt;
    float *grad, *m, *v;  /* trainable tensors only (NULL when frozen) */
    int no_decay;         /* norms and biases: no AdamW weight decay (HF Trainer's rule) */
} cl_tensor;

enum cl_proj { CL_Q, CL_K, CL_V, CL_O, CL_GATE, CL_UP, CL_DOWN, CL_NPROJ };

/* "q_proj" ... "down_proj" */
const char *cl_proj_name(int proj);

typedef struct cl_linear {
    cl_tensor *w, *b;              /* b NULL without bias */
    cl_tensor *lora_a, *lora_b;    /* NULL when this projection has no adapter */
    int in, out;
} cl_linear;

typedef struct cl_layer {
    cl_tensor *ln1, *ln2;          /* input_layernorm, post_attention_layernorm */
    cl_linear proj[CL_NPROJ];
} cl_layer;

typedef struct cl_llama_acts cl_llama_acts;

typedef struct cl_llama {
    cl_llama_config cfg;
    double *inv_freq;                  /* [head_dim / 2] */
    cl_tensor *tensors;                /* base tensors, HF order */
    int n_tensors;
    cl_tensor *embed, *norm, *lm_head; /* lm_head == embed when tied */
    cl_layer *layers;
    int train_base;                    /* full fine-tuning: base tensors carry gradients */
    int own_weights;                   /* CL_LLAMA_DECODE: never used in place from a file */
    /* adapters (lora.h) */
    cl_tensor *lora;
    int n_lora, lora_rank, lora_on;
    float lora_scale;
    double lora_dropout;
    /* dropout is active only while training; its masks derive from (seed, step, layer, proj) */
    int training;
    uint64_t seed;
    long step;
    /* arenas */
    void *base_mem, *lora_mem;
    /* Storage some frozen base tensors point into instead of base_mem (weights.c uses the file
     * mapping in place); cl_llama_free releases it with unmap. */
    void *mapped;
    void (*unmap)(void *mapped);
    float *grad_mem, *m_mem, *v_mem;
    long n_train;                      /* floats in each of grad/m/v */
    float *wbuf;                       /* fp32 copy of one bf16 weight */
    void *panels_mem;                  /* every tensor's panels (cl_llama_pack_decode) */
    cl_llama_acts *acts;
    /* an accelerator's copy of the model (device.h); NULL computes on the CPU */
    const struct cl_device_ops *dev;
    void *dev_state;
} cl_llama;

/* cl_llama_new's flags.  CL_LLAMA_TRAIN_BASE: gradients and AdamW moments for every base tensor
 * (full fine-tuning; fp32 only).  CL_LLAMA_DECODE: a model that an engine decodes with, which
 * reads every weight once per step: cl_weights_load copies the weights into the model's own
 * arena, which asks the kernel for 2 MB pages, instead of using the file mapping's 4 KB pages in
 * place (those cost batch-1 decode TLB misses on every weight row: A/B in BENCHMARKS.md). */
enum { CL_LLAMA_TRAIN_BASE = 1, CL_LLAMA_DECODE = 2 };

/* Allocates a model with zeroed weights.  base_dtype CL_BF16 stores the 2-D projections in
 * bf16; flags as above (0: inference, or LoRA over a frozen base used in place). */
cl_llama *cl_llama_new(const cl_llama_config *c, cl_dtype base_dtype, int flags, cl_err *e);
void cl_llama_free(cl_llama *m);

/* Packs every matrix a decode step multiplies (the projections, their adapters, the head)
 * into the decode layout (linear.h), once: t->panels.  The head's panels are bf16 when the
 * projections are (half the bytes per token for them, so for the head too).  A model that owns
 * its weights (CL_LLAMA_DECODE) then gives up the row-major copy of each (t->data NULL, its
 * pages returned), so it holds one copy; the embedding of a tied head reads the fp32 panels
 * (cl_linear_unpack_row), or keeps its rows when the panels are bf16.  Decoding only: a
 * training forward needs the row-major weights.  0, or -1 with e set (out of memory). */
int cl_llama_pack_decode(cl_llama *m, cl_err *e);

/* The base table (HF names).  Loading is: for each tensor, find the file's tensor by name, check
 * shape, convert into data according to dtype. */
cl_tensor *cl_llama_tensors(cl_llama *m, int *n);
cl_tensor *cl_llama_find(cl_llama *m, const char *name);  /* base or LoRA; NULL if absent */

/* Tensors that carry gradients (the base for full fine-tuning, else the adapters). */
int cl_llama_trainable(cl_llama *m, cl_tensor **list, int max);

/* Deterministic pseudo-random weights for tests and benchmarks: each value is a function of
 * (seed, tensor name, index) only — hash_uniform below — so other languages can reproduce
 * them.  Norm weights 1 + 0.2(u - 0.5); biases 0.2(u - 0.5); matrices 2(u - 0.5)/sqrt(in).
 * LoRA tensors are included when include_lora is set (B is otherwise left at zero). */
void cl_llama_init_uniform(cl_llama *m, uint64_t seed, int include_lora);
/* u in [0, 1) from splitmix64(seed ^ splitmix64(i)). */
double cl_hash_uniform(uint64_t seed, uint64_t i);
/* A standard normal from the uniforms 2i and 2i+1 (Box-Muller): LoRA's Gaussian A and new
 * models' N(0, 0.02) weights. */
double cl_hash_gauss(uint64_t seed, uint64_t i);

/* Training forward over b rows of t tokens: ids [b*t]; pos (NULL: 0..t-1 per row) and seg
 * (NULL: one sequence per row) describe packed rows.  Keeps every activation backward needs.
 * Returns -1 on bad ids. */
int cl_llama_forward(cl_llama *m, const int *ids, const int *pos, const int *seg, int b, int t,
                     cl_err *e);

/* Log-probabilities of targets at the rows where target[i] >= 0 (logp[i] = 0 elsewhere),
 * computed in row chunks so no rows x vocab table beyond one chunk exists.  When coef is
 * non-NULL, also accumulates the gradient of sum_i coef[i] * logp[i] into the head weight (if
 * trainable) and into the final hidden state for cl_llama_backward.  May be called several
 * times after one forward (DPO: once for values, once with coefficients). */
void cl_llama_head(cl_llama *m, const int *target, const float *coef, float *logp);

/* Back-propagates what cl_llama_head accumulated through every layer, adding into the grads. */
void cl_llama_backward(cl_llama *m);

/* Full logits [b*t][vocab] of the last forward (tests, inference). */
void cl_llama_logits(cl_llama *m, float *out);

void cl_llama_zero_grad(cl_llama *m);

/* Inference projection for the engine: out [n][proj out] = x W^T + b plus the adapter branch
 * when adapters are enabled (no dropout); h is [n][lora rank] scratch (unused without LoRA).
 * Always on the host copy (cl_llama_sync first when a device trained the model). */
void cl_llama_project(cl_llama *m, int layer, int proj, const float *x, float *out, int n, float *h);

/* The seed of the LoRA dropout mask of (forward count, layer, projection): cl_dropout's seed,
 * so a device regenerates the CPU's masks exactly. */
uint64_t cl_llama_dropout_seed(const cl_llama *m, long step, int layer, int proj);

/* Frees the activation arena (the next forward allocates it again). */
void cl_llama_release_acts(cl_llama *m);

/* bf16 <-> fp32, round to nearest even (NaN kept quiet). */
static inline float cl_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline uint16_t cl_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

#endif
