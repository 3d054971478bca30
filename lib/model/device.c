/* device.c — optimizer dispatch between the CPU (optim.c) and an attached device. */
#include "model/device.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int cl_device_parse(const char *spec, int *ordinal, cl_err *e)
{
    *ordinal = 0;
    if (strcmp(spec, "cpu") == 0) return 0;
    if (strncmp(spec, "cuda", 4) || (spec[4] && spec[4] != ':'))
        return cl_err_set(e, CL_EXIT_USAGE, "--device: cpu, cuda or cuda:N, not \"%s\"", spec);
    if (spec[4] == ':') {
        char *end;
        long v = strtol(spec + 5, &end, 10);
        if (end == spec + 5 || *end || v < 0 || v > 1023)
            return cl_err_set(e, CL_EXIT_USAGE, "--device %s: N in cuda:N is a GPU number (0, 1, ...)", spec);
        *ordinal = (int)v;
    }
    return 1;
}

/* One opener per process, set once by main() before any thread starts. */
static int (*device_opener)(cl_device *d, const char *spec, cl_err *e);

void cl_device_register(int (*open)(cl_device *d, const char *spec, cl_err *e)) { device_opener = open; }

int cl_device_open(cl_device *d, const char *spec, cl_err *e)
{
    int ordinal, kind = cl_device_parse(spec, &ordinal, e);
    if (kind <= 0) return kind < 0 ? -1 : 1;
    if (!device_opener)
        return cl_err_set(e, CL_EXIT_UNAVAILABLE, "device %s: this program was built without CUDA (rebuild with "
                          "make CUDA=1)", spec);
    return device_opener(d, spec, e) ? -1 : 0;
}

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
