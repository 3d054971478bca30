/* loss.h — training objectives on top of per-token log-probabilities.
 *
 * Owns: masked next-token cross-entropy (SFT), per-sequence summed / mean completion
 * log-probabilities, and the DPO family (sigmoid with label smoothing, hinge, IPO, robust) with
 * their gradients and TRL's metrics; GRPO's group-normalised advantages and its clipped
 * policy-ratio objective with the k3 KL to a reference (verl's formulas).  Inputs are the
 * per-token log-probs cl_llama_head returns and outputs are the per-token coefficients it
 * takes back, so no vocabulary-sized tensor is ever seen here.  Must not know about the model's layers. */
#ifndef CL_MODEL_LOSS_H
#define CL_MODEL_LOSS_H

/* Token i takes part when target[i] >= 0 (the loss mask).  For SFT the loss is
 * -sum(logp) / norm, where norm is the number of loss tokens of the WHOLE accumulated batch
 * (so micro-batches of different lengths weigh tokens equally).  Fills coef[i] = -1/norm on
 * loss tokens, 0 elsewhere; returns the loss contribution of these n tokens. */
double cl_sft_loss(const float *logp, const int *target, int n, double norm, float *coef);

/* Loss tokens among n. */
int cl_loss_tokens(const int *target, int n);

/* Per-sequence sums of logp over loss tokens: seq[i] (0 <= seq < nseq, or -1) names the
 * sequence of token i.  sum[s] and count[s] are overwritten. */
void cl_seq_logps(const float *logp, const int *target, const int *seq, int n, int nseq, double *sum,
                  int *count);

/* coef[i] = dseq[seq[i]] on loss tokens, 0 elsewhere (the chain rule from sequence sums). */
void cl_seq_coef(const int *target, const int *seq, int n, const double *dseq, float *coef);

typedef enum cl_dpo_type { CL_DPO_SIGMOID = 0, CL_DPO_HINGE, CL_DPO_IPO, CL_DPO_ROBUST } cl_dpo_type;

/* "sigmoid", "hinge", "ipo", "robust"; -1 when unknown. */
int cl_dpo_type_parse(const char *name);

typedef struct cl_dpo_config {
    cl_dpo_type type;
    double beta;              /* 0.1 in TRL and CollabLLM */
    double label_smoothing;   /* epsilon of cDPO / robust DPO; 0 default */
} cl_dpo_config;

typedef struct cl_dpo_metrics {      /* means over the pairs, TRL's names */
    double loss;
    double rewards_chosen, rewards_rejected, rewards_margins, rewards_accuracies;
    double logps_chosen, logps_rejected;
} cl_dpo_metrics;

/* Mean DPO loss over npairs.  pol_* / ref_* are SUMMED completion log-probs of the policy and
 * the reference, len_* the completion token counts (IPO divides by them, as TRL does).
 * d_pol_c / d_pol_r (may be NULL) receive d loss / d pol_* (per summed log-prob).  The
 * reference gets no gradient.  metrics may be NULL. */
double cl_dpo_loss(const cl_dpo_config *c, int npairs, const double *pol_c, const double *pol_r,
                   const double *ref_c, const double *ref_r, const int *len_c, const int *len_r,
                   double *d_pol_c, double *d_pol_r, cl_dpo_metrics *metrics);

/* ---- GRPO ------------------------------------------------------------------------------ */

typedef struct cl_grpo_config {
    double clip_low, clip_high;  /* the ratio is clipped to [1 - clip_low, 1 + clip_high]; 0.2 */
    double clip_c;               /* dual clip: a negative advantage's token loss is at most
                                  * -A * clip_c (verl's clip_ratio_c, 3); <= 1 turns it off */
    double kl_coef;              /* weight of the k3 KL to the reference (verl's kl_loss_coef) */
    double adv_eps;              /* added to the group's std (1e-6) */
    int adv_mean_only;           /* advantages r - mean, not divided by the std (verl's
                                  * norm_adv_by_std_in_grpo=False, Dr. GRPO): a group whose
                                  * rewards differ a little then weighs a little */
} cl_grpo_config;

/* Group-normalised advantages of one group of n rewards, as verl's
 * compute_grpo_outcome_advantage: adv = (r - mean) / (std + eps) with the SAMPLE standard
 * deviation (n - 1 in the denominator, torch.std's default); a group of one has mean 0 and
 * std 1.  With c->adv_mean_only, adv = r - mean.  Equal rewards give zero advantages. */
void cl_grpo_advantages(const cl_grpo_config *c, const double *r, int n, double *adv);

typedef struct cl_grpo_metrics {  /* each already divided by the norm, so micro-batches add up */
    double pg_loss, kl, clipfrac;
} cl_grpo_metrics;

/* The GRPO loss of n tokens, summed over the loss tokens (target >= 0) and divided by norm
 * (the loss tokens of the whole step: verl's token-mean).  Token i of sequence seq[i] has
 * advantage adv[seq[i]], log-prob logp[i] under the policy, old[i] under the sampling policy
 * (old NULL or old[i] NaN: the policy's own value, detached, so the ratio is 1) and ref[i]
 * under the reference (NULL: no KL term).  Per token:
 *   ratio = exp(clamp(logp - old, -20, 20))
 *   pg = max(-A ratio, -A clamp(ratio, 1 - clip_low, 1 + clip_high)), then for A < 0
 *        min(pg, -A clip_c) when clip_c > 1
 *   kl = clamp(exp(ref - logp) - (ref - logp) - 1, -10, 10)     (k3, verl's low_var_kl)
 *   loss = pg + kl_coef kl.
 * coef[i] (may be NULL) receives d loss / d logp[i], 0 off the loss tokens.  mt may be NULL. */
double cl_grpo_loss(const cl_grpo_config *c, const float *logp, const int *target, const int *seq,
                    const double *adv, const float *old, const float *ref, int n, double norm, float *coef,
                    cl_grpo_metrics *mt);

/* log(sigmoid(x)) without overflow. */
double cl_log_sigmoid(double x);

#endif
