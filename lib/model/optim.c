/* optim.c — AdamW, clipping, schedules. */
#include "model/optim.h"

#include <math.h>
#include <string.h>

void cl_adamw_step(const cl_adamw *h, cl_tensor *const *ts, int nt, long step, double lr)
{
    double bc1 = 1 - pow(h->beta1, (double)step), bc2 = 1 - pow(h->beta2, (double)step);
    float b1 = (float)h->beta1, b2 = (float)h->beta2, eps = (float)h->eps;
    float step_size = (float)(lr / bc1), rbc2 = (float)(1 / sqrt(bc2));
    for (int k = 0; k < nt; k++) {
        const cl_tensor *t = ts[k];
        float *restrict p = t->data, *restrict g = t->grad, *restrict m = t->m, *restrict v = t->v;
        float decay = t->no_decay ? 1.0f : (float)(1 - lr * h->weight_decay);
#pragma omp parallel for simd if (t->numel > 65536)
        for (long i = 0; i < t->numel; i++) {
            p[i] *= decay;
            m[i] = b1 * m[i] + (1 - b1) * g[i];
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
            p[i] -= step_size * m[i] / (sqrtf(v[i]) * rbc2 + eps);
        }
    }
}

double cl_grad_norm(cl_tensor *const *ts, int nt)
{
    double s = 0;
    for (int k = 0; k < nt; k++) {
        const float *g = ts[k]->grad;
        double ts_sum = 0;
#pragma omp parallel for simd reduction(+ : ts_sum) if (ts[k]->numel > 65536)
        for (long i = 0; i < ts[k]->numel; i++) ts_sum += (double)g[i] * g[i];
        s += ts_sum;
    }
    return sqrt(s);
}

double cl_clip_grad_norm(cl_tensor *const *ts, int nt, double max_norm)
{
    double norm = cl_grad_norm(ts, nt), coef = max_norm / (norm + 1e-6);
    if (coef < 1)
        for (int k = 0; k < nt; k++) {
            float *g = ts[k]->grad, cf = (float)coef;
#pragma omp parallel for simd if (ts[k]->numel > 65536)
            for (long i = 0; i < ts[k]->numel; i++) g[i] *= cf;
        }
    return norm;
}

int cl_sched_parse(const char *name)
{
    static const char *const names[] = {"constant", "linear", "cosine"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

double cl_lr_at(cl_sched s, double lr, long done, long warmup, long total)
{
    if (done < warmup) return lr * (double)done / (double)warmup;
    if (s == CL_SCHED_CONSTANT || total <= warmup) return lr;
    double progress = (double)(done - warmup) / (double)(total - warmup);
    if (progress > 1) progress = 1;
    if (s == CL_SCHED_LINEAR) return lr * (1 - progress);
    return lr * 0.5 * (1 + cos(3.14159265358979323846 * progress));
}
