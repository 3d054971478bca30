/* loss.c — SFT cross-entropy, sequence log-probs and the DPO losses. */
#include "model/loss.h"

#include <math.h>
#include <string.h>

int cl_loss_tokens(const int *target, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++) k += target[i] >= 0;
    return k;
}

double cl_sft_loss(const float *logp, const int *target, int n, double norm, float *coef)
{
    double s = 0;
    for (int i = 0; i < n; i++) {
        int on = target[i] >= 0 && norm > 0;
        if (on) s -= logp[i];
        if (coef) coef[i] = on ? (float)(-1.0 / norm) : 0.0f;
    }
    return norm > 0 ? s / norm : 0;
}

void cl_seq_logps(const float *logp, const int *target, const int *seq, int n, int nseq, double *sum,
                  int *count)
{
    memset(sum, 0, sizeof(double) * (size_t)nseq);
    memset(count, 0, sizeof(int) * (size_t)nseq);
    for (int i = 0; i < n; i++)
        if (target[i] >= 0 && seq[i] >= 0 && seq[i] < nseq) {
            sum[seq[i]] += logp[i];
            count[seq[i]]++;
        }
}

void cl_seq_coef(const int *target, const int *seq, int n, const double *dseq, float *coef)
{
    for (int i = 0; i < n; i++) coef[i] = target[i] >= 0 && seq[i] >= 0 ? (float)dseq[seq[i]] : 0.0f;
}

int cl_dpo_type_parse(const char *name)
{
    static const char *const names[] = {"sigmoid", "hinge", "ipo", "robust"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

double cl_log_sigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }

static double sigmoid(double x) { return exp(cl_log_sigmoid(x)); }

double cl_dpo_loss(const cl_dpo_config *c, int npairs, const double *pol_c, const double *pol_r,
                   const double *ref_c, const double *ref_r, const int *len_c, const int *len_r,
                   double *d_pol_c, double *d_pol_r, cl_dpo_metrics *metrics)
{
    double b = c->beta, eps = c->label_smoothing, total = 0;
    cl_dpo_metrics mt = {0};
    for (int i = 0; i < npairs; i++) {
        /* IPO compares length-normalised log-probs; the others compare sums. */
        double nc = c->type == CL_DPO_IPO && len_c[i] > 0 ? len_c[i] : 1;
        double nr = c->type == CL_DPO_IPO && len_r[i] > 0 ? len_r[i] : 1;
        double pc = pol_c[i] / nc, pr = pol_r[i] / nr, rc = ref_c[i] / nc, rr = ref_r[i] / nr;
        double z = (pc - pr) - (rc - rr), u = b * z, loss, dz;
        switch (c->type) {
        case CL_DPO_HINGE:
            loss = 1 - u > 0 ? 1 - u : 0;
            dz = 1 - u > 0 ? -b : 0;
            break;
        case CL_DPO_IPO: {
            double g = z - 1 / (2 * b);
            loss = g * g;
            dz = 2 * g;
            break;
        }
        case CL_DPO_ROBUST:
            loss = (-(1 - eps) * cl_log_sigmoid(u) + eps * cl_log_sigmoid(-u)) / (1 - 2 * eps);
            dz = b * (-(1 - eps) * sigmoid(-u) - eps * sigmoid(u)) / (1 - 2 * eps);
            break;
        default:
            loss = -(1 - eps) * cl_log_sigmoid(u) - eps * cl_log_sigmoid(-u);
            dz = b * (-(1 - eps) * sigmoid(-u) + eps * sigmoid(u));
            break;
        }
        total += loss;
        if (d_pol_c) d_pol_c[i] = dz / nc / npairs;
        if (d_pol_r) d_pol_r[i] = -dz / nr / npairs;
        double rwc = b * (pc - rc), rwr = b * (pr - rr);
        mt.rewards_chosen += rwc;
        mt.rewards_rejected += rwr;
        mt.rewards_margins += rwc - rwr;
        mt.rewards_accuracies += rwc > rwr;
        mt.logps_chosen += pc;
        mt.logps_rejected += pr;
    }
    double inv = npairs ? 1.0 / npairs : 0;
    mt.loss = total * inv;
    mt.rewards_chosen *= inv;
    mt.rewards_rejected *= inv;
    mt.rewards_margins *= inv;
    mt.rewards_accuracies *= inv;
    mt.logps_chosen *= inv;
    mt.logps_rejected *= inv;
    if (metrics) *metrics = mt;
    return mt.loss;
}

void cl_grpo_advantages(const cl_grpo_config *c, const double *r, int n, double *adv)
{
    double mean = 0, sd = 1;
    if (n > 1) {
        for (int i = 0; i < n; i++) mean += r[i];
        mean /= n;
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (r[i] - mean) * (r[i] - mean);
        sd = sqrt(ss / (n - 1));
    }
    double div = c->adv_mean_only ? 1 : sd + c->adv_eps;
    for (int i = 0; i < n; i++) adv[i] = (r[i] - mean) / div;
}

static double clampd(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

double cl_grpo_loss(const cl_grpo_config *c, const float *logp, const int *target, const int *seq,
                    const double *adv, const float *old, const float *ref, int n, double norm, float *coef,
                    cl_grpo_metrics *mt)
{
    cl_grpo_metrics m = {0};
    double total = 0;
    for (int i = 0; i < n; i++) {
        if (coef) coef[i] = 0;
        if (target[i] < 0 || seq[i] < 0 || norm <= 0) continue;
        double lp = logp[i], o = old && !isnan(old[i]) ? old[i] : lp, a = adv[seq[i]];
        double lr = lp - o, ratio = exp(clampd(lr, -20, 20));
        /* the log-ratio clamp and the ratio clip stop the gradient where they bind */
        double dratio = lr >= -20 && lr <= 20 ? ratio : 0;
        double l1 = -a * ratio, l2 = -a * clampd(ratio, 1 - c->clip_low, 1 + c->clip_high);
        double pg = l1 >= l2 ? l1 : l2, d = l1 >= l2 ? -a * dratio : 0;
        if (l2 > l1) m.clipfrac += 1;
        if (a < 0 && c->clip_c > 1 && -a * c->clip_c < pg) {
            pg = -a * c->clip_c;
            d = 0;
        }
        double kl = 0, dkl = 0;
        if (ref && c->kl_coef != 0) {
            double x = ref[i] - lp, k = exp(x) - x - 1;
            kl = clampd(k, -10, 10);
            dkl = k >= -10 && k <= 10 ? 1 - exp(x) : 0;
        }
        m.pg_loss += pg;
        m.kl += kl;
        total += pg + c->kl_coef * kl;
        if (coef) coef[i] = (float)((d + c->kl_coef * dkl) / norm);
    }
    if (norm > 0) {
        m.pg_loss /= norm;
        m.kl /= norm;
        m.clipfrac /= norm;
        total /= norm;
    }
    if (mt) *mt = m;
    return total;
}
