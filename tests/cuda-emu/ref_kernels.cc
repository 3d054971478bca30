// ref_kernels.cc — kernels.cuh's contracts served by the CPU reference (ops.c, optim.c and
// short loops), for the fast emulated builds (test_cuda_emu, cl-finetune-emu): they test
// lib/cuda/llama.cu's orchestration in every `make test`.  The real kernels.cu runs under the
// coroutine emulation (kernel_emu.h) in `make cuda-emu-kernels` instead.  Every device pointer
// is checked against its allocation (emu.cc) with the extent the call reads or writes.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/chost.cuh"
#include "cuda/kernels.cuh"
#include "emu.h"
extern "C" {
#include "model/ops.h"
}


void cl_cuda_check(int rc, const char *what, const char *file, int line)
{
    if (rc) cl_die(CL_EXIT_SOFTWARE, "CUDA emulation: error %d in %s at %s:%d", rc, what, file, line);
}

void cl_cuda_check_launch(const char *what, const char *file, int line) { (void)what, (void)file, (void)line; }

#define F(n) (sizeof(float) * (size_t)(n))

void cu_to_bf16(cl_bf16 *y, const float *x, long n)
{
    emu_dev(y, 2 * (size_t)n, "to_bf16 y");
    emu_dev(x, F(n), "to_bf16 x");
    for (long i = 0; i < n; i++) y[i].bits = cl_f32_to_bf16(x[i]);
}

void cu_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int n, int c, double eps)
{
    emu_dev(out, F((long)n * c), "rmsnorm out");
    emu_dev(rstd, F(n), "rmsnorm rstd");
    emu_dev(x, F((long)n * c), "rmsnorm x");
    emu_dev(w, F(c), "rmsnorm w");
    cl_rmsnorm_fwd(out, rstd, x, w, n, c, eps);
}

void cu_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                    int n, int c)
{
    emu_dev(dx, F((long)n * c), "rmsnorm dx");
    if (dw) emu_dev(dw, F(c), "rmsnorm dw");
    emu_dev(dout, F((long)n * c), "rmsnorm dout");
    emu_dev(x, F((long)n * c), "rmsnorm x");
    emu_dev(w, F(c), "rmsnorm w");
    emu_dev(rstd, F(n), "rmsnorm rstd");
    cl_rmsnorm_bwd(dx, dw, dout, x, w, rstd, n, c);
}

void cu_rope(float *x, const int *pos, const double *inv_freq, int n, int heads, int hd, int sign)
{
    emu_dev(x, F((long)n * heads * hd), "rope x");
    emu_dev(pos, F(n), "rope pos");
    emu_dev(inv_freq, sizeof(double) * (size_t)(hd / 2), "rope inv_freq");
    cl_rope(x, pos, inv_freq, n, heads, hd, sign);
}

/* The flash contracts over ops.c's attention, which keeps the t x t probabilities: the backward
 * recomputes them from q and k rather than reading lse (the real kernels' use of it is tested by
 * tests/cuda-emu/test_flash.cc). */
static void att_extents(const float *q, const float *k, const float *v, const float *lse, const int *seg, int b,
                        int t, int nh, int nkv, int hd)
{
    long n = (long)b * t;
    emu_dev(q, F(n * nh * hd), "flash q");
    emu_dev(k, F(n * nkv * hd), "flash k");
    emu_dev(v, F(n * nkv * hd), "flash v");
    emu_dev(lse, F(n * nh), "flash lse");
    if (seg) emu_dev(seg, F(n), "flash seg");
}

void cu_flash_fwd(float *y, float *lse, const float *q, const float *k, const float *v, const int *seg, int b, int t,
                  int nh, int nkv, int hd)
{
    att_extents(q, k, v, lse, seg, b, t, nh, nkv, hd);
    emu_dev(y, F((long)b * t * nh * hd), "flash y");
    cl_attention_fwd(y, q, k, v, seg, b, t, nh, nkv, hd);
    double scale = 1.0 / sqrt((double)hd);
    for (int bi = 0; bi < b; bi++)
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < t; i++) {
                const float *qi = q + ((long)bi * t + i) * nh * hd + h * hd;
                double s[4096], mx = -INFINITY, sum = 0;
                if (t > 4096) cl_die(CL_EXIT_SOFTWARE, "CUDA emulation: t %d > 4096", t);
                for (int j = 0; j <= i; j++) {
                    const float *kj = k + ((long)bi * t + j) * nkv * hd + h / (nh / nkv) * hd;
                    s[j] = -INFINITY;
                    if (seg && seg[(long)bi * t + j] != seg[(long)bi * t + i]) continue;
                    s[j] = 0;
                    for (int d = 0; d < hd; d++) s[j] += (double)qi[d] * kj[d];
                    s[j] *= scale;
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j <= i; j++) sum += exp(s[j] - mx);
                lse[((long)bi * nh + h) * t + i] = (float)(mx + log(sum));
            }
}

void cu_flash_bwd(float *dq, float *dk, float *dv, float *dd, const float *dy, const float *y, const float *lse,
                  const float *q, const float *k, const float *v, const int *seg, int b, int t, int nh, int nkv,
                  int hd)
{
    long n = (long)b * t;
    att_extents(q, k, v, lse, seg, b, t, nh, nkv, hd);
    emu_dev(dq, F(n * nh * hd), "flash dq");
    emu_dev(dk, F(n * nkv * hd), "flash dk");
    emu_dev(dv, F(n * nkv * hd), "flash dv");
    emu_dev(dd, F(n * nh), "flash dd");
    emu_dev(dy, F(n * nh * hd), "flash dy");
    emu_dev(y, F(n * nh * hd), "flash y");
    cl_attention_bwd(dq, dk, dv, dy, q, k, v, seg, b, t, nh, nkv, hd);
}

void cu_swiglu_fwd(float *h, const float *g, const float *u, long n)
{
    emu_dev(h, F(n), "swiglu h");
    emu_dev(g, F(n), "swiglu g");
    emu_dev(u, F(n), "swiglu u");
    cl_swiglu_fwd(h, g, u, n);
}

void cu_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, long n)
{
    emu_dev(dg, F(n), "swiglu dg");
    emu_dev(du, F(n), "swiglu du");
    emu_dev(dh, F(n), "swiglu dh");
    emu_dev(g, F(n), "swiglu g");
    emu_dev(u, F(n), "swiglu u");
    cl_swiglu_bwd(dg, du, dh, g, u, n);
}

void cu_add(float *out, const float *x, long n)
{
    emu_dev(out, F(n), "add out");
    emu_dev(x, F(n), "add x");
    for (long i = 0; i < n; i++) out[i] += x[i];
}

void cu_colsum(float *db, const float *dout, int n, int od)
{
    emu_dev(db, F(od), "colsum db");
    emu_dev(dout, F((long)n * od), "colsum dout");
    for (int i = 0; i < n; i++)
        for (int j = 0; j < od; j++) db[j] += dout[(long)i * od + j];
}

void cu_dropout(float *xd, const float *x, long n, double p, uint64_t seed)
{
    emu_dev(xd, F(n), "dropout xd");
    emu_dev(x, F(n), "dropout x");
    cl_dropout(xd, x, n, p, seed);
}

void cu_logprob_rows(float *logits, const int *target, const float *coef, int rows, int v, float *logp)
{
    emu_dev(logits, F((long)rows * v), "logprob logits");
    emu_dev(target, F(rows), "logprob target");
    if (coef) emu_dev(coef, F(rows), "logprob coef");
    emu_dev(logp, F(rows), "logprob logp");
    cl_logprob_rows(logits, target, coef, rows, v, logp);
}

void cu_gather_rows(float *dst, const float *src, const int *idx, int rows, int d)
{
    emu_dev(dst, F((long)rows * d), "gather dst");
    emu_dev(idx, F(rows), "gather idx");
    for (int r = 0; r < rows; r++) {
        emu_dev(src + (long)idx[r] * d, F(d), "gather source row");
        memcpy(dst + (long)r * d, src + (long)idx[r] * d, F(d));
    }
}

void cu_scatter_add_rows(float *dst, const float *src, const int *idx, int rows, int d)
{
    emu_dev(src, F((long)rows * d), "scatter src");
    emu_dev(idx, F(rows), "scatter idx");
    for (int r = 0; r < rows; r++) {
        emu_dev(dst + (long)idx[r] * d, F(d), "scatter destination row");
        for (int j = 0; j < d; j++) dst[(long)idx[r] * d + j] += src[(long)r * d + j];
    }
}

void cu_sumsq(double *out, const float *x, long n)
{
    emu_dev(out, sizeof(double), "sumsq out");
    emu_dev(x, F(n), "sumsq x");
    for (long i = 0; i < n; i++) *out += (double)x[i] * x[i];
}

void cu_scale(float *x, long n, float s)
{
    emu_dev(x, F(n), "scale x");
    for (long i = 0; i < n; i++) x[i] *= s;
}

void cu_adamw(float *p, const float *g, float *m, float *v, long n, float decay, float b1, float b2, float eps,
              float step_size, float rbc2)
{
    emu_dev(p, F(n), "adamw p");
    emu_dev(g, F(n), "adamw g");
    emu_dev(m, F(n), "adamw m");
    emu_dev(v, F(n), "adamw v");
    for (long i = 0; i < n; i++) {
        p[i] *= decay;
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        p[i] -= step_size * m[i] / (sqrtf(v[i]) * rbc2 + eps);
    }
}
