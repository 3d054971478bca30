/* optim.h — AdamW with PyTorch semantics, global-norm clipping and learning-rate schedules.
 *
 * Owns: the update rule over a list of cl_tensor (each with grad, m, v), the global gradient
 * norm and its clipping (torch.nn.utils.clip_grad_norm_), and the HF Trainer schedules
 * (constant, linear, cosine; linear warmup).  Must not know about models or losses. */
#ifndef CL_MODEL_OPTIM_H
#define CL_MODEL_OPTIM_H

#include "model/llama.h"

typedef struct cl_adamw {
    double beta1, beta2, eps, weight_decay;  /* torch defaults 0.9, 0.999, 1e-8, 0.01 */
} cl_adamw;

/* One AdamW step (step >= 1 is the bias-correction count) with learning rate lr:
 * p -= lr*wd*p (skipped for no_decay tensors); m, v moments; p -= lr * m^ / (sqrt(v^) + eps). */
void cl_adamw_step(const cl_adamw *h, cl_tensor *const *ts, int nt, long step, double lr);

/* sqrt of the sum of squared gradients over all tensors. */
double cl_grad_norm(cl_tensor *const *ts, int nt);

/* Scales gradients by max_norm / (norm + 1e-6) when that is below 1; returns the norm before
 * clipping (torch.nn.utils.clip_grad_norm_). */
double cl_clip_grad_norm(cl_tensor *const *ts, int nt, double max_norm);

typedef enum cl_sched { CL_SCHED_CONSTANT = 0, CL_SCHED_LINEAR, CL_SCHED_COSINE } cl_sched;

/* "constant", "linear", "cosine"; -1 when unknown. */
int cl_sched_parse(const char *name);

/* Learning rate for the optimizer step that follows `done` completed steps out of `total`,
 * as HF's get_*_schedule_with_warmup: warmup ramps lr * done / warmup, then constant, linear
 * decay to 0 at total, or half-cosine to 0 at total. */
double cl_lr_at(cl_sched s, double lr, long done, long warmup, long total);

#endif
