/* device.c — optimizer dispatch between the CPU (optim.c) and an attached device. */
#include "model/device.h"

#include <math.h>

void cl_llama_sync(cl_llama *m, int to_host)
{
    if (m->dev) m->dev->sync(m, to_host);
}

double cl_llama_grad_norm(cl_llama *m, cl_tensor *const *ts, int nt)
{
    return m->dev ? sqrt(m->dev->grad_sumsq(m)) : cl_grad_norm(ts, nt);
}

double cl_llama_clip_grad_norm(cl_llama *m, cl_tensor *const *ts, int nt, double max_norm)
{
    if (!m->dev) return cl_clip_grad_norm(ts, nt, max_norm);
    /* the same rule as cl_clip_grad_norm: scale by max_norm / (norm + 1e-6) when below 1 */
    double norm = sqrt(m->dev->grad_sumsq(m)), coef = max_norm / (norm + 1e-6);
    if (coef < 1) m->dev->scale_grads(m, (float)coef);
    return norm;
}

void cl_llama_adamw_step(cl_llama *m, const cl_adamw *h, cl_tensor *const *ts, int nt, long step, double lr)
{
    if (m->dev)
        m->dev->adamw(m, h, step, lr);
    else
        cl_adamw_step(h, ts, nt, step, lr);
}
