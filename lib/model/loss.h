/* loss.h — training objectives on top of per-token log-probabilities.
 *
 * Owns: masked next-token cross-entropy (SFT), per-sequence summed / mean completion
 * log-probabilities, and the DPO family (sigmoid with label smoothing, hinge, IPO, robust) with
 * their gradients and TRL's metrics.  Inputs are the per-token log-probs cl_llama_head returns
 * and outputs are the per-token coefficients it takes back, so no vocabulary-sized tensor is
 * ever seen here.  Must not know about the model's layers. */
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

/* log(sigmoid(x)) without overflow. */
double cl_log_sigmoid(double x);

#endif
