/* grpo.h — GRPO groups for cl-finetune: rows -> replies with advantages, and one micro-batch.
 *
 * Owns: reading GRPO rows ({"prompt", "completions", "rewards"[, "logps"]}, cl-records(5)),
 * each reply rendered as an SFT example whose loss falls on the reply alone; the group's
 * advantages (model/loss.h); the sampling policy's per-token log-probs a row may carry,
 * checked against the rendered reply; moving per-token values between example order and a
 * micro-batch's positions; per-token log-probs of a whole data set (the reference); and the
 * GRPO objective of one micro-batch with its gradient.
 * Must not know: the run's loop, checkpoints, options or command line (train/finetune.h). */
#ifndef CL_TRAIN_GRPO_H
#define CL_TRAIN_GRPO_H

#include "model/llama.h"
#include "model/loss.h"
#include "train/data.h"

typedef struct cl_ft_grpo {
    double *adv;         /* [example] the reply's advantage */
    long *off;           /* [example] where its loss tokens start in the token arrays */
    float *old;          /* [token] the sampling policy's log-prob; NaN where the row had none */
    long ntok;           /* loss tokens of all examples */
    long groups;         /* rows read */
    long flat_groups;    /* groups whose rewards were all equal (zero advantages) */
    long recorded;       /* replies that carried their log-probs */
    long mismatched;     /* replies whose log-probs did not count their trained tokens (unused) */
    size_t cap, tcap, dcap;  /* of adv and off, of old, of d->ex */
} cl_ft_grpo;

/* Reads every row of path into *d (one SFT-kind example per reply; d->kind CL_FT_GRPO) and *g.
 * A malformed row is CL_EXIT_DATAERR naming file:line and the field. */
int cl_ft_grpo_load(cl_ft_data *d, cl_ft_grpo *g, const char *path, cl_tokenizer *tok, const cl_ft_data_opts *o,
                    const cl_grpo_config *gc, cl_err *e);
void cl_ft_grpo_free(cl_ft_grpo *g);

/* Per-token values of examples idx[0..n) (laid out in bt by cl_ft_batch_build) between example
 * order (tok, at off[example]) and batch positions (pos, b*t of them; NaN off the loss
 * tokens).  to_pos = 1 gathers tok into pos, 0 scatters pos into tok. */
void cl_ft_grpo_map(const cl_ft_batch *bt, const int *idx, const long *off, float *tok, float *pos, int to_pos);

/* Log-probs of every loss token of d under m as it stands, into out[g->off[k] + j], through
 * micro-batches of `batch` examples (the reference when called with the adapters off). */
int cl_ft_grpo_token_logps(cl_llama *m, const cl_ft_data *d, const cl_ft_grpo *g, int batch, int packing,
                           int max_len, int pad_id, cl_ft_batch *bt, float *out, cl_err *e);

typedef struct cl_ft_grpo_out {
    double loss;
    cl_grpo_metrics mt;
} cl_ft_grpo_out;

/* The GRPO objective of one micro-batch: adv[nseq] per sequence, old and ref per batch position
 * (either may be NULL), norm the loss tokens of the whole step.  Adds the gradient. */
int cl_ft_grpo_micro(cl_llama *m, const cl_ft_batch *bt, const cl_grpo_config *c, const double *adv,
                     const float *old, const float *ref, double norm, cl_ft_grpo_out *out, cl_err *e);

#endif
