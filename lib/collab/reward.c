#include "collab/reward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli.h"

static int add_term(reward_plan *p, const char *metric, double w, double scale, reward_shape shape)
{
    if (p->n >= REWARD_MAX_TERMS)
        return -1;
    reward_term *t = &p->t[p->n++];
    size_t n = strlen(metric) < sizeof t->metric ? strlen(metric) : sizeof t->metric - 1;
    memcpy(t->metric, metric, n);
    t->metric[n] = 0;
    t->w = w;
    t->scale = scale;
    t->shape = shape;
    return 0;
}

int reward_parse_weights(const char *spec, reward_cfg *c, cl_err *e)
{
    c->mode = REWARD_WEIGHTS;
    c->weights = (reward_plan){.mode = REWARD_WEIGHTS};
    const char *p = spec;
    while (*p) {
        size_t len = strcspn(p, ",");
        char item[128];
        if (len >= sizeof item)
            return cl_err_set(e, CL_EXIT_USAGE, "--weights: term too long: %.*s", (int)len, p);
        memcpy(item, p, len);
        item[len] = 0;
        char *eq = strchr(item, '=');
        if (!eq || eq == item || (size_t)(eq - item) >= REWARD_NAME)
            return cl_err_set(e, CL_EXIT_USAGE, "--weights: '%s' is not NAME=WEIGHT", item);
        *eq = 0;
        double w;
        if (cl_parse_double(eq + 1, -1e300, 1e300, "--weights", &w, e) != 0)
            return -1;
        for (int i = 0; i < c->weights.n; i++)
            if (strcmp(c->weights.t[i].metric, item) == 0)
                return cl_err_set(e, CL_EXIT_USAGE, "--weights: '%s' given twice", item);
        if (add_term(&c->weights, item, w, 1, TERM_LINEAR) != 0)
            return cl_err_set(e, CL_EXIT_USAGE, "--weights: more than %d terms", REWARD_MAX_TERMS);
        p += len;
        if (*p == ',')
            p++;
    }
    if (c->weights.n == 0)
        return cl_err_set(e, CL_EXIT_USAGE, "--weights: no terms");
    return 0;
}

/* Indexed by reward_mode. */
static const char *const mode_names[] = {"none", "weights", "paper", "v2", "verl"};

int reward_parse_mode(const char *name, reward_cfg *c, cl_err *e)
{
    for (int m = REWARD_PAPER; m <= REWARD_VERL; m++)
        if (strcmp(name, mode_names[m]) == 0) {
            c->mode = (reward_mode)m;
            return 0;
        }
    return cl_err_set(e, CL_EXIT_USAGE, "--reward: unknown mode '%s' (paper, v2, verl)", name);
}

const char *reward_mode_name(reward_mode m) { return mode_names[m]; }

typedef struct task_rule {
    const char *task, *metric;
    double lambda;       /* paper [P Table 6] */
    double v2_itr, v2_tokens; /* v2 example weights of interactivity and token_amount */
} task_rule;

static const task_rule rules[] = {
    {"document", "bleu", 1e-4, 0.0, -0.1},
    {"code", "pass_rate", 5e-4, 0.0, -0.5},
    {"math", "accuracy", 5e-4, 0.5, -0.5},
};

int reward_plan_for(const reward_cfg *c, const char *task, reward_plan *p, cl_err *e)
{
    if (c->mode == REWARD_WEIGHTS) {
        *p = c->weights;
        return 0;
    }
    const task_rule *r = NULL;
    for (size_t i = 0; task && i < sizeof rules / sizeof *rules; i++)
        if (strcmp(task, rules[i].task) == 0)
            r = &rules[i];
    const char *metric = c->task_metric ? c->task_metric : r ? r->metric : NULL;
    if (!metric)
        return cl_err_set(e, CL_EXIT_DATAERR,
                          "task '%s' has no task metric in this reward mode (give --task-metric)",
                          task ? task : "(none)");
    *p = (reward_plan){.mode = c->mode};
    switch (c->mode) {
    case REWARD_PAPER: {
        double lambda = c->lambda >= 0 ? c->lambda : r ? r->lambda : -1;
        if (lambda < 0)
            return cl_err_set(e, CL_EXIT_DATAERR, "task '%s' has no λ (give --lambda)",
                              task ? task : "(none)");
        add_term(p, metric, 1, 1, TERM_LINEAR);
        add_term(p, "interactivity", 1, 1, TERM_LINEAR);
        add_term(p, "tokens", -1, lambda, TERM_CAPPED);
        return 0;
    }
    case REWARD_V2:
        if (!r)
            return cl_err_set(e, CL_EXIT_DATAERR, "v2 has weights for document, code and math, "
                              "not '%s' (use --weights)", task ? task : "(none)");
        add_term(p, metric, 1, 1, TERM_LINEAR);
        if (r->v2_itr != 0)
            add_term(p, "interactivity", r->v2_itr, 1, TERM_LINEAR);
        add_term(p, "tokens", r->v2_tokens, 1e-3, TERM_LINEAR);
        return 0;
    case REWARD_VERL:
        add_term(p, metric, 1, 1, TERM_CLAMPED);
        add_term(p, "interactivity", 1, 1, TERM_CLAMPED);
        add_term(p, "tokens", -1e-4, 1, TERM_CLAMPED);
        return 0;
    default:
        return cl_err_set(e, CL_EXIT_SOFTWARE, "no reward mode");
    }
}

static double term_value(const reward_term *t, double x)
{
    double v = t->scale * x;
    switch (t->shape) {
    case TERM_CAPPED: return t->w * (v < 1 ? v : 1);
    case TERM_CLAMPED: v *= t->w; return v < -1 ? -1 : v > 1 ? 1 : v;
    default: return t->w * v;
    }
}

int reward_star(const reward_plan *p, reward_lookup get, void *ctx, double *r, cl_err *e)
{
    double sum = 0;
    for (int i = 0; i < p->n; i++) {
        double x;
        if (get(ctx, p->t[i].metric, &x) != 0)
            return cl_err_set(e, CL_EXIT_DATAERR, "score '%s' is missing", p->t[i].metric);
        sum += term_value(&p->t[i], x);
    }
    *r = sum;
    return 0;
}

void mr_estimate(const reward_plan *p, const double *rstar, const double *x, int n,
                 mr_result *out)
{
    memset(out, 0, sizeof *out);
    out->n = n;
    if (n == 0)
        return;
    double mean = 0;
    for (int k = 0; k < n; k++)
        mean += rstar[k];
    mean /= n;
    double var = 0;
    for (int k = 0; k < n; k++)
        var += (rstar[k] - mean) * (rstar[k] - mean);
    out->std = sqrt(var / n);
    for (int i = 0; i < p->n; i++) {
        double s = 0;
        for (int k = 0; k < n; k++)
            s += x[k * p->n + i];
        out->metric_mean[i] = s / n;
    }
    if (p->mode == REWARD_VERL) {
        mean = 0;
        for (int i = 0; i < p->n; i++)
            mean += term_value(&p->t[i], out->metric_mean[i]);
    }
    out->mean = mean;
}
