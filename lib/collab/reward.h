/* reward.h — the conversation-level reward R* and the multiturn-aware reward MR.
 *
 * Owns: turning named scores into R* under each reward mode, and the Monte-Carlo estimate of MR
 * over a candidate's forward samples.  Modes (collabllm.md §1.3–1.4):
 *   weights  R* = Σ w_i · score_i, weights given by the user ("bleu=1,interactivity=1,
 *            tokens=-5e-4");
 *   paper    R* = task + interactivity − min(λ · tokens, 1); λ 1e-4 document, 5e-4 code and
 *            math; task = bleu (document), pass_rate (code), accuracy (math);
 *   v2       the release code's weighted sum with token_amount = tokens / 1000, uncapped:
 *            math accuracy 1, interactivity 0.5, token_amount −0.5; document bleu 1,
 *            token_amount −0.1; code pass_rate 1, token_amount −0.5;
 *   verl     Σ_i clamp(w_i · score_i, −1, 1) with task 1, interactivity 1, tokens −1e-4; for
 *            MR the clamp applies to each metric's mean over the futures.
 * Knows nothing of records or JSON: callers hand over numbers by name. */
#ifndef CL_REWARD_H
#define CL_REWARD_H

#include <stddef.h>

#include "core/err.h"

typedef enum reward_mode { REWARD_NONE, REWARD_WEIGHTS, REWARD_PAPER, REWARD_V2, REWARD_VERL } reward_mode;

enum { REWARD_MAX_TERMS = 16, REWARD_NAME = 32 };

typedef enum reward_shape {
    TERM_LINEAR,  /* w · scale · x */
    TERM_CAPPED,  /* w · min(scale · x, 1)       (the paper's token penalty) */
    TERM_CLAMPED  /* clamp(w · scale · x, −1, 1) (verl) */
} reward_shape;

typedef struct reward_term {
    char metric[REWARD_NAME]; /* score name, e.g. "bleu", "tokens" */
    double w, scale;
    reward_shape shape;
} reward_term;

/* The terms R* adds up for one task. */
typedef struct reward_plan {
    reward_mode mode;
    int n;
    reward_term t[REWARD_MAX_TERMS];
} reward_plan;

typedef struct reward_cfg {
    reward_mode mode;
    reward_plan weights;     /* REWARD_WEIGHTS: parsed --weights */
    const char *task_metric; /* overrides the task's metric in paper/v2/verl, or NULL */
    double lambda;           /* paper: overrides λ when >= 0 */
} reward_cfg;

/* "bleu=1,interactivity=1,tokens=-5e-4" → c->weights.  -1 with e set on a malformed spec. */
int reward_parse_weights(const char *spec, reward_cfg *c, cl_err *e);
/* "paper" | "v2" | "verl" → c->mode.  -1 with e set otherwise. */
int reward_parse_mode(const char *name, reward_cfg *c, cl_err *e);
/* The mode's name as parsed ("weights" for --weights, "none"). */
const char *reward_mode_name(reward_mode m);

/* The plan for a task ("document", "code", "math", or anything with --task-metric/--lambda
 * given).  -1 with e set when the mode has no rule for the task. */
int reward_plan_for(const reward_cfg *c, const char *task, reward_plan *p, cl_err *e);

/* Looks up a score by name; returns 0 and sets *x, or -1 when absent. */
typedef int (*reward_lookup)(void *ctx, const char *metric, double *x);

/* R* of one future (or conversation).  -1 with e naming the first missing score. */
int reward_star(const reward_plan *p, reward_lookup get, void *ctx, double *r, cl_err *e);

typedef struct mr_result {
    double mean, std;                    /* std: population (ddof 0) over the futures' R* */
    int n;                               /* futures */
    double metric_mean[REWARD_MAX_TERMS];/* per plan term, mean of the raw score */
} mr_result;

/* MR of one candidate from its futures' scores: rstar[k] is future k's R*, x[k * p->n + i]
 * its raw score for term i.  Mean of R* for every mode but verl, whose mean is
 * Σ_i clamp(w_i · scale_i · mean_k x_ki, −1, 1).  n = 0 gives mean 0 (verl's rule for a
 * candidate that ended the conversation); callers decide whether that is allowed. */
void mr_estimate(const reward_plan *p, const double *rstar, const double *x, int n,
                 mr_result *out);

#endif
