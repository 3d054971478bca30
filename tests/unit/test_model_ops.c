/* Every layer's backward against central finite differences, with the kernels compiled in
 * double precision (ops.c built here with CL_DOUBLE, so names carry _f64 and nothing clashes
 * with the float build in libcl.a).  Shapes are deliberately odd: token counts that are not a
 * multiple of any tile, GQA ratios 1, 2 and 7, head_dim 16 and 64, packed segments, a vocabulary
 * larger than one streaming chunk. */
#define CL_DOUBLE 1
#include "model/ops.c"

#include <float.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>

/* The scalar being differentiated is sum_i w_i * out_i for fixed random w, so dout = w. */
typedef struct fd_case {
    void (*fwd)(struct fd_case *c, double *out);
    long nout;
    double *w;
    void *ctx;
} fd_case;

static uint64_t rng_state = 12345;
static double rnd(void) { return 2 * ((double)(splitmix64(rng_state++) >> 11) * 0x1.0p-53) - 1; }

static double *rand_vec(long n)
{
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (long i = 0; i < n; i++) v[i] = rnd();
    return v;
}

static double objective(fd_case *c)
{
    double *out = calloc((size_t)c->nout, sizeof(double));
    c->fwd(c, out);
    double s = 0;
    for (long i = 0; i < c->nout; i++) s += c->w[i] * out[i];
    free(out);
    return s;
}

/* Compares analytic d objective / d param against central differences on up to 80 elements. */
static void check_grad(fd_case *c, const char *what, double *param, long n, const double *analytic)
{
    const double h = 1e-5;
    long stride = n > 80 ? n / 80 : 1;
    double worst = 0;
    for (long i = (long)(rnd() * 0.5 + 0.5) % stride; i < n; i += stride) {
        double keep = param[i];
        param[i] = keep + h;
        double lp = objective(c);
        param[i] = keep - h;
        double lm = objective(c);
        param[i] = keep;
        double fd = (lp - lm) / (2 * h), err = fabs(fd - analytic[i]) / (1 + fabs(fd));
        if (err > worst) worst = err;
    }
    if (worst > 1e-7) fail_msg("%s: finite-difference mismatch %.3g", what, worst);
}

/* ---- RMSNorm ---- */
typedef struct { int n, c; double *x, *w; } norm_ctx;
static void norm_fwd(fd_case *c, double *out)
{
    norm_ctx *k = c->ctx;
    double *rstd = malloc(sizeof(double) * k->n);
    cl_rmsnorm_fwd_f64(out, rstd, k->x, k->w, k->n, k->c, 1e-5);
    free(rstd);
}

static void rmsnorm_backward_matches_finite_differences(void **s)
{
    (void)s;
    norm_ctx k = {7, 13, rand_vec(7 * 13), rand_vec(13)};
    fd_case c = {norm_fwd, 7 * 13, rand_vec(7 * 13), &k};
    double *out = calloc(91, sizeof(double)), *rstd = calloc(7, sizeof(double)), *dx = calloc(91, sizeof(double)),
           *dw = calloc(13, sizeof(double));
    cl_rmsnorm_fwd_f64(out, rstd, k.x, k.w, 7, 13, 1e-5);
    cl_rmsnorm_bwd_f64(dx, dw, c.w, k.x, k.w, rstd, 7, 13);
    check_grad(&c, "rmsnorm dx", k.x, 91, dx);
    check_grad(&c, "rmsnorm dw", k.w, 13, dw);
    free(out); free(rstd); free(dx); free(dw); free(k.x); free(k.w); free(c.w);
}

/* ---- linear + bias ---- */
typedef struct { int n, in, out; double *x, *w, *b; } lin_ctx;
static void lin_fwd(fd_case *c, double *out)
{
    lin_ctx *k = c->ctx;
    cl_linear_fwd_f64(out, k->x, k->w, k->b, k->n, k->in, k->out, 0);
}

static void linear_backward_matches_finite_differences(void **s)
{
    (void)s;
    lin_ctx k = {5, 7, 3, rand_vec(35), rand_vec(21), rand_vec(3)};
    fd_case c = {lin_fwd, 15, rand_vec(15), &k};
    double *dx = calloc(35, sizeof(double)), *dw = calloc(21, sizeof(double)), *db = calloc(3, sizeof(double));
    cl_linear_bwd_f64(dx, dw, db, c.w, k.x, k.w, 5, 7, 3);
    check_grad(&c, "linear dx", k.x, 35, dx);
    check_grad(&c, "linear dW", k.w, 21, dw);
    check_grad(&c, "linear db", k.b, 3, db);
    free(dx); free(dw); free(db); free(k.x); free(k.w); free(k.b); free(c.w);
}

/* ---- LoRA branch with dropout ---- */
typedef struct { int n, in, out, r; double *x, *a, *b, p, scale; } lora_ctx;
static void lora_fwd(fd_case *c, double *out)
{
    lora_ctx *k = c->ctx;
    double *xd = malloc(sizeof(double) * k->n * k->in), *h = malloc(sizeof(double) * k->n * k->r);
    cl_dropout_f64(xd, k->x, (long)k->n * k->in, k->p, 99);
    cl_lora_fwd_f64(out, h, xd, k->a, k->b, k->scale, k->n, k->in, k->out, k->r);
    free(xd); free(h);
}

static void lora_backward_with_dropout_matches_finite_differences(void **s)
{
    (void)s;
    int n = 6, in = 9, out = 5, r = 3;
    lora_ctx k = {n, in, out, r, rand_vec(n * in), rand_vec(r * in), rand_vec(out * r), 0.3, 1.7};
    fd_case c = {lora_fwd, n * out, rand_vec(n * out), &k};
    double *xd = malloc(sizeof(double) * n * in), *h = malloc(sizeof(double) * n * r), *o = calloc(n * out, sizeof(double)),
           *dxd = calloc(n * in, sizeof(double)), *da = calloc(r * in, sizeof(double)), *db = calloc(out * r, sizeof(double)),
           *dh = malloc(sizeof(double) * n * r);
    cl_dropout_f64(xd, k.x, n * in, k.p, 99);
    int dropped = 0;
    for (int i = 0; i < n * in; i++) dropped += xd[i] == 0;
    assert_true(dropped > 0 && dropped < n * in);
    cl_lora_fwd_f64(o, h, xd, k.a, k.b, k.scale, n, in, out, r);
    cl_lora_bwd_f64(dxd, da, db, dh, c.w, h, xd, k.a, k.b, k.scale, n, in, out, r);
    cl_dropout_f64(dxd, dxd, n * in, k.p, 99);
    check_grad(&c, "lora dx", k.x, n * in, dxd);
    check_grad(&c, "lora dA", k.a, r * in, da);
    check_grad(&c, "lora dB", k.b, out * r, db);
    free(xd); free(h); free(o); free(dxd); free(da); free(db); free(dh); free(k.x); free(k.a); free(k.b); free(c.w);
}

/* ---- RoPE ---- */
typedef struct { int n, heads, hd; double *x; int *pos; double *inv; } rope_ctx;
static void rope_fwd(fd_case *c, double *out)
{
    rope_ctx *k = c->ctx;
    memcpy(out, k->x, sizeof(double) * k->n * k->heads * k->hd);
    cl_rope_f64(out, k->pos, k->inv, k->n, k->heads, k->hd, 1);
}

static void rope_check(int hd)
{
    int n = 5, heads = 3, cnt = n * heads * hd;
    int pos[5] = {0, 3, 1, 17, 250};
    double inv[32];
    for (int i = 0; i < hd / 2; i++) inv[i] = pow(10000.0, -2.0 * i / hd);
    rope_ctx k = {n, heads, hd, rand_vec(cnt), pos, inv};
    fd_case c = {rope_fwd, cnt, rand_vec(cnt), &k};
    double *g = malloc(sizeof(double) * cnt);
    memcpy(g, c.w, sizeof(double) * cnt);
    cl_rope_f64(g, pos, inv, n, heads, hd, -1);
    check_grad(&c, "rope dx", k.x, cnt, g);
    /* half-split layout: element i pairs with i + hd/2, so position 0 is the identity */
    double *y = malloc(sizeof(double) * cnt);
    rope_fwd(&c, y);
    for (int i = 0; i < heads * hd; i++) assert_true(y[i] == k.x[i]);
    double a = k.x[heads * hd], b = k.x[heads * hd + hd / 2], ang = 3 * inv[0];
    assert_true(fabs(y[heads * hd] - (a * cos(ang) - b * sin(ang))) < 1e-12);
    /* the decode step's two steps (angles once, then rotations) give cl_rope's bits */
    double *z = malloc(sizeof(double) * cnt), *cs = malloc(sizeof(double) * n * hd / 2),
           *sn = malloc(sizeof(double) * n * hd / 2);
    memcpy(z, k.x, sizeof(double) * cnt);
    cl_rope_angles_f64(cs, sn, pos, inv, n, hd);
    cl_rope_rotate_f64(z, cs, sn, n, heads, hd);
    assert_memory_equal(z, y, sizeof(double) * cnt);
    free(z); free(cs); free(sn);
    free(g); free(y); free(k.x); free(c.w);
}

/* (and the two-step rotation of the decode engine is bitwise the one-step one) */
static void rope_backward_matches_finite_differences_for_head_dim_16_and_64(void **s)
{
    (void)s;
    rope_check(16);
    rope_check(64);
}

/* ---- attention ---- */
typedef struct { int b, t, nh, nkv, hd; double *q, *k, *v; int *seg; } att_ctx;
static void att_fwd(fd_case *c, double *out)
{
    att_ctx *k = c->ctx;
    cl_attention_fwd_f64(out, k->q, k->k, k->v, k->seg, k->b, k->t, k->nh, k->nkv, k->hd);
}

static void attention_check(int nh, int nkv, int hd, int t, int with_seg)
{
    int b = 2, n = b * t, qn = n * nh * hd, kn = n * nkv * hd;
    int seg[2 * 16];
    for (int i = 0; i < n; i++) seg[i] = with_seg && i % t >= t / 2; /* two packed sequences per row */
    att_ctx k = {b, t, nh, nkv, hd, rand_vec(qn), rand_vec(kn), rand_vec(kn), with_seg ? seg : NULL};
    fd_case c = {att_fwd, qn, rand_vec(qn), &k};
    double *out = calloc(qn, sizeof(double)), *dq = calloc(qn, sizeof(double)), *dk = calloc(kn, sizeof(double)), *dv = calloc(kn, sizeof(double));
    cl_attention_fwd_f64(out, k.q, k.k, k.v, k.seg, b, t, nh, nkv, hd);
    cl_attention_bwd_f64(dq, dk, dv, c.w, k.q, k.k, k.v, k.seg, b, t, nh, nkv, hd);
    char what[64];
    snprintf(what, sizeof what, "attention %d:%d hd %d dq", nh, nkv, hd);
    check_grad(&c, what, k.q, qn, dq);
    check_grad(&c, "attention dk", k.k, kn, dk);
    check_grad(&c, "attention dv", k.v, kn, dv);
    /* causality: the first token of each row attends only to itself (weight exactly 1, the
     * others exactly 0), so its output is its own value vector; with segments, so is the first
     * token of the second sequence, which must ignore the first sequence */
    for (int bi = 0; bi < b; bi++)
        for (int first = 0; first <= (with_seg ? t / 2 : 0); first += t / 2) {
            int i = bi * t + first;
            for (int h = 0; h < nh; h++)
                for (int j = 0; j < hd; j++)
                    assert_true(out[(size_t)i * nh * hd + h * hd + j] == k.v[(size_t)i * nkv * hd + (h / (nh / nkv)) * hd + j]);
        }
    free(out); free(dq); free(dk); free(dv); free(k.q); free(k.k); free(k.v); free(c.w);
}

static void attention_backward_matches_finite_differences_for_gqa_1_2_7(void **s)
{
    (void)s;
    attention_check(2, 2, 16, 5, 0);   /* ratio 1 */
    attention_check(4, 2, 16, 7, 1);   /* ratio 2, packed segments */
    attention_check(7, 1, 16, 5, 0);   /* ratio 7 */
    attention_check(2, 1, 64, 3, 0);   /* head_dim 64 */
}

/* Past one band (BAND = 64 rows, ops.c) the products stop at the causal diagonal: at t = 150
 * (two whole bands and a partial one, two packed sequences per row) the forward equals the
 * softmax formula written out, and each gradient agrees with a central difference along a
 * random direction over all of q, k or v at once. */
static double att_loss(att_ctx *k, const double *w, double *out)
{
    cl_attention_fwd_f64(out, k->q, k->k, k->v, k->seg, k->b, k->t, k->nh, k->nkv, k->hd);
    double l = 0;
    for (long i = 0; i < (long)k->b * k->t * k->nh * k->hd; i++) l += w[i] * out[i];
    return l;
}

static void attention_bands_match_the_formula_and_directional_differences(void **s)
{
    (void)s;
    enum { B = 2, T = 150, NH = 2, NKV = 1, HD = 8 };
    int n = B * T, qn = n * NH * HD, kn = n * NKV * HD, seg[B * T];
    for (int i = 0; i < n; i++) seg[i] = i % T >= 100;
    att_ctx k = {B, T, NH, NKV, HD, rand_vec(qn), rand_vec(kn), rand_vec(kn), seg};
    double *w = rand_vec(qn), *out = calloc(qn, sizeof(double)), *p = malloc(sizeof(double) * T);
    att_loss(&k, w, out);
    double worst = 0;
    for (int bi = 0; bi < B; bi++)
        for (int h = 0; h < NH; h++)
            for (int ti = 0; ti < T; ti++) {
                const double *qi = k.q + ((size_t)(bi * T + ti) * NH + h) * HD;
                double mx = -INFINITY, sum = 0;
                for (int sj = 0; sj <= ti; sj++) {
                    const double *kj = k.k + (size_t)(bi * T + sj) * NKV * HD;
                    double dot = 0;
                    for (int j = 0; j < HD; j++) dot += qi[j] * kj[j];
                    p[sj] = seg[bi * T + sj] == seg[bi * T + ti] ? dot / sqrt(HD) : -INFINITY;
                    mx = p[sj] > mx ? p[sj] : mx;
                }
                for (int sj = 0; sj <= ti; sj++) sum += p[sj] = exp(p[sj] - mx);
                for (int j = 0; j < HD; j++) {
                    double o = 0;
                    for (int sj = 0; sj <= ti; sj++) o += p[sj] / sum * k.v[(size_t)(bi * T + sj) * NKV * HD + j];
                    double diff = fabs(o - out[((size_t)(bi * T + ti) * NH + h) * HD + j]);
                    worst = diff > worst ? diff : worst;
                }
            }
    assert_true(worst < 1e-12);
    double *dq = calloc(qn, sizeof(double)), *dk = calloc(kn, sizeof(double)), *dv = calloc(kn, sizeof(double));
    cl_attention_bwd_f64(dq, dk, dv, w, k.q, k.k, k.v, seg, B, T, NH, NKV, HD);
    double *xs[3] = {k.q, k.k, k.v}, *gs[3] = {dq, dk, dv};
    long ns[3] = {qn, kn, kn};
    for (int which = 0; which < 3; which++) {
        double *dir = rand_vec(ns[which]), *x = xs[which], eps = 1e-5, analytic = 0;
        for (long i = 0; i < ns[which]; i++) analytic += gs[which][i] * dir[i];
        for (long i = 0; i < ns[which]; i++) x[i] += eps * dir[i];
        double up = att_loss(&k, w, out);
        for (long i = 0; i < ns[which]; i++) x[i] -= 2 * eps * dir[i];
        double down = att_loss(&k, w, out);
        for (long i = 0; i < ns[which]; i++) x[i] += eps * dir[i];
        double numeric = (up - down) / (2 * eps);
        if (fabs(numeric - analytic) > 1e-6 * (1 + fabs(analytic)))
            fail_msg("attention d%c along a direction: analytic %.12g, numeric %.12g", "qkv"[which], analytic, numeric);
        free(dir);
    }
    free(k.q); free(k.k); free(k.v); free(w); free(out); free(p); free(dq); free(dk); free(dv);
}

/* ---- SwiGLU ---- */
typedef struct { long n; double *g, *u; } swi_ctx;
static void swi_fwd(fd_case *c, double *out)
{
    swi_ctx *k = c->ctx;
    cl_swiglu_fwd_f64(out, k->g, k->u, k->n);
}

/* The float build (libcl.a) computes exp in its own vectorised arithmetic (ops.c, vexp): through
 * SwiGLU it must stay within a few float ulp of the double kernel wherever exp(-g) neither
 * saturates nor underflows, give an element the same bits alone as inside a longer array (the
 * vector and scalar paths agree), and keep a NaN a NaN.  The library runs the copy of SwiGLU
 * for the widest vectors this CPU has (AVX-512, AVX2 or the baseline's SSE2); each element's
 * bits must be those of the formula computed here, in this baseline-built test, forward and
 * backward. */
void cl_swiglu_fwd(float *h, const float *g, const float *u, long count);
void cl_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, long count);

static void float_swiglu_is_accurate_and_the_same_alone_or_batched(void **s)
{
    (void)s;
    enum { N = 4001 };
    float *g = malloc(sizeof(float) * N), *u = malloc(sizeof(float) * N), *h = malloc(sizeof(float) * N);
    double *gd = malloc(sizeof(double) * N), *ud = malloc(sizeof(double) * N), *hd = malloc(sizeof(double) * N);
    for (int i = 0; i < N; i++) {
        g[i] = -87.0f + 175.0f * (float)i / (N - 1);
        u[i] = 1.0f + (float)(i % 7) / 8;
        gd[i] = g[i];
        ud[i] = u[i];
    }
    cl_swiglu_fwd(h, g, u, N);
    cl_swiglu_fwd_f64(hd, gd, ud, N);
    for (int i = 0; i < N; i++) {
        if (!(fabs(h[i] - hd[i]) <= 8 * FLT_EPSILON * fabs(hd[i])))
            fail_msg("swiglu(%.9g) = %.9g in float, %.17g in double", (double)g[i], (double)h[i], hd[i]);
        float one;
        cl_swiglu_fwd(&one, &g[i], &u[i], 1);
        assert_memory_equal(&one, &h[i], sizeof one);
        float ref = g[i] / (1 + cl_vexpf(-g[i])) * u[i];
        assert_memory_equal(&ref, &h[i], sizeof ref);
    }
    float *dg = calloc(N, sizeof(float)), *du = calloc(N, sizeof(float));
    cl_swiglu_bwd(dg, du, u, g, u, N); /* dh = u: any values do */
    for (int i = 0; i < N; i++) {
        float sg = 1 / (1 + cl_vexpf(-g[i])), rg = 0, ru = 0;
        rg += u[i] * u[i] * sg * (1 + g[i] * (1 - sg));
        ru += u[i] * g[i] * sg;
        assert_memory_equal(&rg, &dg[i], sizeof rg);
        assert_memory_equal(&ru, &du[i], sizeof ru);
    }
    free(dg);
    free(du);
    float nan_in = NAN, one = 1, out;
    cl_swiglu_fwd(&out, &nan_in, &one, 1);
    assert_true(isnan(out));
    free(g); free(u); free(h); free(gd); free(ud); free(hd);
}

static void swiglu_backward_matches_finite_differences(void **s)
{
    (void)s;
    swi_ctx k = {23, rand_vec(23), rand_vec(23)};
    for (int i = 0; i < 23; i++) k.g[i] *= 4; /* reach the curved part of silu */
    fd_case c = {swi_fwd, 23, rand_vec(23), &k};
    double *dg = calloc(23, sizeof(double)), *du = calloc(23, sizeof(double));
    cl_swiglu_bwd_f64(dg, du, c.w, k.g, k.u, 23);
    check_grad(&c, "swiglu dg", k.g, 23, dg);
    check_grad(&c, "swiglu du", k.u, 23, du);
    free(dg); free(du); free(k.g); free(k.u); free(c.w);
}

/* ---- embedding ---- */
typedef struct { int n, c; int *ids; double *wte; } emb_ctx;
static void emb_fwd(fd_case *c, double *out)
{
    emb_ctx *k = c->ctx;
    cl_embed_fwd_f64(out, k->ids, k->wte, k->n, k->c);
}

static void embedding_backward_matches_finite_differences(void **s)
{
    (void)s;
    int ids[6] = {3, 0, 3, 9, 1, 3};
    emb_ctx k = {6, 5, ids, rand_vec(10 * 5)};
    fd_case c = {emb_fwd, 30, rand_vec(30), &k};
    double *d = calloc(50, sizeof(double));
    cl_embed_bwd_f64(d, ids, c.w, 6, 5);
    check_grad(&c, "embedding", k.wte, 50, d);
    free(d); free(k.wte); free(c.w);
}

/* ---- streaming log-softmax ---- */
typedef struct { int rows, v; double *logits; int *tgt; } lp_ctx;
static void lp_fwd(fd_case *c, double *out)
{
    lp_ctx *k = c->ctx;
    double *tmp = malloc(sizeof(double) * k->rows * k->v);
    memcpy(tmp, k->logits, sizeof(double) * k->rows * k->v);
    cl_logprob_rows_f64(tmp, k->tgt, NULL, k->rows, k->v, out);
    free(tmp);
}

static void logprob_rows_are_exact_and_their_gradient_matches_finite_differences(void **s)
{
    (void)s;
    int rows = 3, v = 4099; /* two full streaming chunks and a ragged one */
    int tgt[3] = {0, 4098, 2050};
    lp_ctx k = {rows, v, rand_vec(rows * v), tgt};
    for (int i = 0; i < rows * v; i++) k.logits[i] *= 20; /* large spread: overflow without the max trick */
    fd_case c = {lp_fwd, rows, rand_vec(rows), &k};
    double *g = malloc(sizeof(double) * rows * v), lp[3];
    memcpy(g, k.logits, sizeof(double) * rows * v);
    cl_logprob_rows_f64(g, tgt, c.w, rows, v, lp);
    for (int r = 0; r < rows; r++) {
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < v; j++) mx = fmax(mx, k.logits[r * v + j]);
        for (int j = 0; j < v; j++) sum += exp(k.logits[r * v + j] - mx);
        assert_true(fabs(lp[r] - (k.logits[r * v + tgt[r]] - mx - log(sum))) < 1e-10);
    }
    check_grad(&c, "log-prob dlogits", k.logits, rows * v, g);
    free(g); free(k.logits); free(c.w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rmsnorm_backward_matches_finite_differences),
        cmocka_unit_test(linear_backward_matches_finite_differences),
        cmocka_unit_test(lora_backward_with_dropout_matches_finite_differences),
        cmocka_unit_test(rope_backward_matches_finite_differences_for_head_dim_16_and_64),
        cmocka_unit_test(attention_backward_matches_finite_differences_for_gqa_1_2_7),
        cmocka_unit_test(attention_bands_match_the_formula_and_directional_differences),
        cmocka_unit_test(swiglu_backward_matches_finite_differences),
        cmocka_unit_test(float_swiglu_is_accurate_and_the_same_alone_or_batched),
        cmocka_unit_test(embedding_backward_matches_finite_differences),
        cmocka_unit_test(logprob_rows_are_exact_and_their_gradient_matches_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
