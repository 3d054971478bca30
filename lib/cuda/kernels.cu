/* kernels.cu — CUDA kernels of the transformer (see kernels.cuh).
 *
 * Patterns kept deliberately plain, because they are written where no GPU runs them: grid-stride
 * loops for elementwise work, one 256-thread block per row for row reductions (warp shuffles,
 * then one shared slot per warp), and column sums split over row blocks with one atomicAdd per
 * (block, column).  Reductions that the CPU does in double accumulate in double here too where
 * it is cheap (per-row sums of the softmax over the vocabulary, the gradient norm). */
#include "cuda/kernels.cuh"

#include <cuda_runtime.h>
#include <math.h>

#include "cuda/chost.cuh"

#ifdef CL_CUDA_EMU
/* tests/cuda-emu: these kernels run on the CPU, one coroutine per CUDA thread, for the tests */
#include <kernel_emu.h> /* found in tests/cuda-emu by the emulated build only */
#define THREADS 64
#define UNROLL
#else
#define UNROLL _Pragma("unroll")
#define LAUNCH(kernel, blocks, threads, ...) kernel<<<(blocks), (threads)>>>(__VA_ARGS__)
#define THREADS 256
#endif

void cl_cuda_check(int rc, const char *what, const char *file, int line)
{
    if (rc == 0) return;
    cudaError_t c = (cudaError_t)rc;
    cl_die(CL_EXIT_SOFTWARE, "CUDA error %d (%s: %s) in %s at %s:%d", rc, cudaGetErrorName(c), cudaGetErrorString(c),
           what, file, line);
}

void cl_cuda_check_launch(const char *what, const char *file, int line)
{
    cl_cuda_check((int)cudaGetLastError(), what, file, line);
}

/* Blocks for a grid-stride loop over n items (a grid never needs to exceed 2^20 blocks). */
static unsigned grid(long n)
{
    long b = (n + THREADS - 1) / THREADS;
    if (b < 1) b = 1;
    return (unsigned)(b > (1l << 20) ? (1l << 20) : b);
}

#define FOR_N(i, n) for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < (n); i += (long)gridDim.x * blockDim.x)

/* ---- block reductions (blockDim.x a multiple of 32; every thread gets the result) -------- */

template <typename T> __device__ T warp_sum(T v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

template <typename T> __device__ T block_sum(T v)
{
    __shared__ T sh[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* the slots may still be read by an earlier reduction */
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    return warp_sum(lane < nw ? sh[lane] : (T)0);
}

__device__ float block_max(float v)
{
    __shared__ float sh[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    return warp_max(lane < nw ? sh[lane] : -INFINITY);
}

/* ---- elementwise ------------------------------------------------------------------------ */

__global__ void k_to_bf16(cl_bf16 *y, const float *x, long n)
{
    FOR_N(i, n) y[i] = __float2bfloat16(x[i]); /* round to nearest even, as cl_f32_to_bf16 */
}

void cu_to_bf16(cl_bf16 *y, const float *x, long n)
{
    if (n <= 0) return;
    LAUNCH(k_to_bf16, grid(n), THREADS, y, x, n);
    CL_CK_LAUNCH("k_to_bf16");
}

__global__ void k_rope(float *x, const int *pos, const double *inv_freq, int n, int heads, int hd, int sign)
{
    int half = hd / 2;
    long total = (long)n * heads * half;
    FOR_N(idx, total) {
        int f = (int)(idx % half);
        long hi = idx / half; /* token * heads + head */
        long tok = hi / heads;
        double ang = pos[tok] * inv_freq[f];
        float cs = (float)cos(ang), sn = (float)(sign * sin(ang));
        float *x1 = x + hi * hd, *x2 = x1 + half;
        float a = x1[f], b = x2[f];
        x1[f] = a * cs - b * sn;
        x2[f] = b * cs + a * sn;
    }
}

void cu_rope(float *x, const int *pos, const double *inv_freq, int n, int heads, int hd, int sign)
{
    LAUNCH(k_rope, grid((long)n * heads * (hd / 2)), THREADS, x, pos, inv_freq, n, heads, hd, sign);
    CL_CK_LAUNCH("k_rope");
}

__global__ void k_swiglu_fwd(float *h, const float *g, const float *u, long n)
{
    FOR_N(i, n) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void cu_swiglu_fwd(float *h, const float *g, const float *u, long n)
{
    LAUNCH(k_swiglu_fwd, grid(n), THREADS, h, g, u, n);
    CL_CK_LAUNCH("k_swiglu_fwd");
}

__global__ void k_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, long n)
{
    FOR_N(i, n) {
        float sg = 1.0f / (1.0f + expf(-g[i]));
        dg[i] += dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
        du[i] += dh[i] * g[i] * sg;
    }
}

void cu_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, long n)
{
    LAUNCH(k_swiglu_bwd, grid(n), THREADS, dg, du, dh, g, u, n);
    CL_CK_LAUNCH("k_swiglu_bwd");
}

__global__ void k_add(float *out, const float *x, long n)
{
    FOR_N(i, n) out[i] += x[i];
}

void cu_add(float *out, const float *x, long n)
{
    LAUNCH(k_add, grid(n), THREADS, out, x, n);
    CL_CK_LAUNCH("k_add");
}

__global__ void k_scale(float *x, long n, float s)
{
    FOR_N(i, n) x[i] *= s;
}

void cu_scale(float *x, long n, float s)
{
    if (n <= 0) return;
    LAUNCH(k_scale, grid(n), THREADS, x, n, s);
    CL_CK_LAUNCH("k_scale");
}

/* ops.c's splitmix64 and cl_dropout: u = top 53 bits of splitmix64(splitmix64(seed) ^ i). */
__device__ uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

__global__ void k_dropout(float *xd, const float *x, long n, double p, float keep, uint64_t s)
{
    FOR_N(i, n) {
        double u = (double)(splitmix64(s ^ (uint64_t)i) >> 11) * (1.0 / 9007199254740992.0);
        xd[i] = u < p ? 0.0f : x[i] * keep;
    }
}

void cu_dropout(float *xd, const float *x, long n, double p, uint64_t seed)
{
    uint64_t s = seed; /* host splitmix64(seed), the same finaliser as the device one */
    s += 0x9e3779b97f4a7c15ull;
    s = (s ^ (s >> 30)) * 0xbf58476d1ce4e5b9ull;
    s = (s ^ (s >> 27)) * 0x94d049bb133111ebull;
    s ^= s >> 31;
    LAUNCH(k_dropout, grid(n), THREADS, xd, x, n, p, (float)(1.0 / (1.0 - p)), s);
    CL_CK_LAUNCH("k_dropout");
}

__global__ void k_adamw(float *p, const float *g, float *m, float *v, long n, float decay, float b1, float b2,
                        float eps, float step_size, float rbc2)
{
    FOR_N(i, n) {
        float pi = p[i] * decay, gi = g[i];
        float mi = b1 * m[i] + (1 - b1) * gi;
        float vi = b2 * v[i] + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (sqrtf(vi) * rbc2 + eps);
    }
}

void cu_adamw(float *p, const float *g, float *m, float *v, long n, float decay, float b1, float b2, float eps,
              float step_size, float rbc2)
{
    if (n <= 0) return;
    LAUNCH(k_adamw, grid(n), THREADS, p, g, m, v, n, decay, b1, b2, eps, step_size, rbc2);
    CL_CK_LAUNCH("k_adamw");
}

__global__ void k_sumsq(double *out, const float *x, long n)
{
    double s = 0;
    FOR_N(i, n) s += (double)x[i] * x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) atomicAdd(out, s);
}

void cu_sumsq(double *out, const float *x, long n)
{
    if (n <= 0) return;
    long b = (n + THREADS - 1) / THREADS;
    LAUNCH(k_sumsq, (unsigned)(b > 4096 ? 4096 : b), THREADS, out, x, n);
    CL_CK_LAUNCH("k_sumsq");
}

__global__ void k_gather_rows(float *dst, const float *src, const int *idx, int rows, int d)
{
    long total = (long)rows * d;
    FOR_N(i, total) dst[i] = src[(long)idx[i / d] * d + i % d];
}

void cu_gather_rows(float *dst, const float *src, const int *idx, int rows, int d)
{
    LAUNCH(k_gather_rows, grid((long)rows * d), THREADS, dst, src, idx, rows, d);
    CL_CK_LAUNCH("k_gather_rows");
}

__global__ void k_scatter_add_rows(float *dst, const float *src, const int *idx, int rows, int d)
{
    long total = (long)rows * d;
    FOR_N(i, total) atomicAdd(&dst[(long)idx[i / d] * d + i % d], src[i]);
}

void cu_scatter_add_rows(float *dst, const float *src, const int *idx, int rows, int d)
{
    LAUNCH(k_scatter_add_rows, grid((long)rows * d), THREADS, dst, src, idx, rows, d);
    CL_CK_LAUNCH("k_scatter_add_rows");
}

/* ---- column sums: blockIdx.x picks 256 columns, blockIdx.y a slice of ROWS_PER rows ---- */

#define ROWS_PER 64

__global__ void k_colsum(float *db, const float *dout, int n, int od)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x, r0 = blockIdx.y * ROWS_PER;
    if (j >= od) return;
    int r1 = r0 + ROWS_PER < n ? r0 + ROWS_PER : n;
    float s = 0;
    for (int r = r0; r < r1; r++) s += dout[(long)r * od + j];
    atomicAdd(&db[j], s);
}

void cu_colsum(float *db, const float *dout, int n, int od)
{
    dim3 g((unsigned)((od + THREADS - 1) / THREADS), (unsigned)((n + ROWS_PER - 1) / ROWS_PER));
    LAUNCH(k_colsum, g, THREADS, db, dout, n, od);
    CL_CK_LAUNCH("k_colsum");
}

/* ---- RMSNorm ---------------------------------------------------------------------------- */

__global__ void k_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int c, double eps)
{
    const float *xi = x + (long)blockIdx.x * c;
    float *oi = out + (long)blockIdx.x * c;
    float ss = 0;
    for (int j = threadIdx.x; j < c; j += blockDim.x) ss += xi[j] * xi[j];
    ss = block_sum(ss);
    float r = (float)(1.0 / sqrt((double)ss / c + eps));
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
    for (int j = threadIdx.x; j < c; j += blockDim.x) oi[j] = xi[j] * r * w[j];
}

void cu_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int n, int c, double eps)
{
    LAUNCH(k_rmsnorm_fwd, (unsigned)n, THREADS, out, rstd, x, w, c, eps);
    CL_CK_LAUNCH("k_rmsnorm_fwd");
}

__global__ void k_rmsnorm_bwd_dx(float *dx, const float *dout, const float *x, const float *w, const float *rstd,
                                 int c)
{
    long o = (long)blockIdx.x * c;
    const float *xi = x + o, *gi = dout + o;
    float *dxi = dx + o;
    float r = rstd[blockIdx.x], dot = 0;
    for (int j = threadIdx.x; j < c; j += blockDim.x) dot += gi[j] * w[j] * xi[j];
    dot = block_sum(dot);
    float mm = dot * r / c;
    for (int j = threadIdx.x; j < c; j += blockDim.x) dxi[j] += r * (gi[j] * w[j] - xi[j] * r * mm);
}

__global__ void k_rmsnorm_bwd_dw(float *dw, const float *dout, const float *x, const float *rstd, int n, int c)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x, r0 = blockIdx.y * ROWS_PER;
    if (j >= c) return;
    int r1 = r0 + ROWS_PER < n ? r0 + ROWS_PER : n;
    float s = 0;
    for (int r = r0; r < r1; r++) s += dout[(long)r * c + j] * x[(long)r * c + j] * rstd[r];
    atomicAdd(&dw[j], s);
}

void cu_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                    int n, int c)
{
    LAUNCH(k_rmsnorm_bwd_dx, (unsigned)n, THREADS, dx, dout, x, w, rstd, c);
    CL_CK_LAUNCH("k_rmsnorm_bwd_dx");
    if (!dw) return;
    dim3 g((unsigned)((c + THREADS - 1) / THREADS), (unsigned)((n + ROWS_PER - 1) / ROWS_PER));
    LAUNCH(k_rmsnorm_bwd_dw, g, THREADS, dw, dout, x, rstd, n, c);
    CL_CK_LAUNCH("k_rmsnorm_bwd_dw");
}

/* ---- flash attention ------------------------------------------------------------------ */

/* One thread per query row (forward, dq) or key row (dk, dv), FA_ROWS to a block; the other
 * side streams through shared memory in tiles of fa_tile<HD>::N rows.  HD is the head size
 * when it is one of the common ones (unrolled, in registers), 0 for any other up to
 * CL_FLASH_MAX_HD (bounded loops).  Scores use q pre-multiplied by the scale, so the forward,
 * both backward kernels and lse agree on every score to the last bit. */
#define FA_ROWS 64

template <int HD> struct fa_tile {
    enum { D = HD ? HD : CL_FLASH_MAX_HD, N = D <= 128 ? 32 : 16 }; /* 2 N D floats: 32 KiB of shared memory at most */
};

__device__ inline int imin(int a, int b) { return a < b ? a : b; }

/* Rows [r0, r0 + n) of a [.][ld] matrix's head slice (col0, hd wide) into sh[n][D], times mul;
 * the block's threads share the work. */
template <int D>
__device__ void fa_load(float (*sh)[D], const float *x, long r0, int n, int ld, int col0, int hd, float mul)
{
    for (int e = threadIdx.x; e < n * hd; e += blockDim.x) sh[e / hd][e % hd] = x[(r0 + e / hd) * ld + col0 + e % hd] * mul;
}

template <int HD>
__device__ float fa_dot(const float *a, const float *b, int hd)
{
    float s = 0;
UNROLL
    for (int d = 0; d < (HD ? HD : hd); d++) s += a[d] * b[d];
    return s;
}

template <int HD>
__global__ void k_flash_fwd(float *y, float *lse, const float *q, const float *k, const float *v, const int *seg, int t,
                            int nh, int nkv, int hd_rt, float scale)
{
    const int D = fa_tile<HD>::D, N = fa_tile<HD>::N, hd = HD ? HD : hd_rt;
    __shared__ float ks[N][D], vs[N][D];
    __shared__ int kseg[N];
    int bh = blockIdx.y, bi = bh / nh, h = bh % nh, g = h / (nh / nkv), qs = nh * hd, kvs = nkv * hd;
    int i0 = blockIdx.x * FA_ROWS, i = i0 + threadIdx.x, live = i < t;
    long r0 = (long)bi * t;
    int si = live && seg ? seg[r0 + i] : 0;
    float qr[D], o[D], sc[N], mx = -INFINITY, l = 0;
UNROLL
    for (int d = 0; d < hd; d++) {
        qr[d] = live ? q[(r0 + i) * qs + h * hd + d] * scale : 0.0f;
        o[d] = 0;
    }
    int last = imin(t, i0 + FA_ROWS); /* no query of this block sees a key at or past `last` */
    for (int j0 = 0; j0 < last; j0 += N) {
        int nk = imin(N, last - j0);
        __syncthreads(); /* everyone has read the previous tile */
        fa_load<D>(ks, k, r0 + j0, nk, kvs, g * hd, hd, 1.0f);
        fa_load<D>(vs, v, r0 + j0, nk, kvs, g * hd, hd, 1.0f);
        for (int jj = threadIdx.x; jj < nk; jj += blockDim.x) kseg[jj] = seg ? seg[r0 + j0 + jj] : 0;
        __syncthreads();
        if (!live) continue;
        float tmax = -INFINITY;
        for (int jj = 0; jj < nk; jj++) {
            sc[jj] = j0 + jj <= i && kseg[jj] == si ? fa_dot<HD>(qr, ks[jj], hd) : -INFINITY;
            tmax = fmaxf(tmax, sc[jj]);
        }
        if (tmax == -INFINITY) continue; /* nothing visible in this tile */
        float mnew = fmaxf(mx, tmax), corr = expf(mx - mnew);
        l *= corr;
UNROLL
        for (int d = 0; d < hd; d++) o[d] *= corr;
        for (int jj = 0; jj < nk; jj++) {
            if (sc[jj] == -INFINITY) continue;
            float p = expf(sc[jj] - mnew);
            l += p;
UNROLL
            for (int d = 0; d < hd; d++) o[d] += p * vs[jj][d];
        }
        mx = mnew;
    }
    if (!live) return; /* l > 0: every query sees itself */
    float inv = 1.0f / l;
UNROLL
    for (int d = 0; d < hd; d++) y[(r0 + i) * qs + h * hd + d] = o[d] * inv;
    lse[(long)bh * t + i] = mx + logf(l);
}

/* dd[b][h][i] = sum over the head's columns of dy * y: rowsum(P * dP) of the softmax backward. */
__global__ void k_flash_dd(float *dd, const float *dy, const float *y, int t, int nh, int hd, long rows)
{
    FOR_N(r, rows) {
        long bh = r / t, bi = bh / nh;
        const float *a = dy + (bi * t + r % t) * nh * hd + (bh % nh) * hd, *b = y + (a - dy);
        float s = 0;
        for (int d = 0; d < hd; d++) s += a[d] * b[d];
        dd[r] = s;
    }
}

template <int HD>
__global__ void k_flash_dq(float *dq, const float *dy, const float *lse, const float *dd, const float *q,
                           const float *k, const float *v, const int *seg, int t, int nh, int nkv, int hd_rt,
                           float scale)
{
    const int D = fa_tile<HD>::D, N = fa_tile<HD>::N, hd = HD ? HD : hd_rt;
    __shared__ float ks[N][D], vs[N][D];
    __shared__ int kseg[N];
    int bh = blockIdx.y, bi = bh / nh, h = bh % nh, g = h / (nh / nkv), qs = nh * hd, kvs = nkv * hd;
    int i0 = blockIdx.x * FA_ROWS, i = i0 + threadIdx.x, live = i < t;
    long r0 = (long)bi * t, row = (r0 + i) * qs + h * hd;
    int si = live && seg ? seg[r0 + i] : 0;
    float L = live ? lse[(long)bh * t + i] : 0.0f, Di = live ? dd[(long)bh * t + i] : 0.0f;
    float qr[D], dor[D], acc[D];
UNROLL
    for (int d = 0; d < hd; d++) {
        qr[d] = live ? q[row + d] * scale : 0.0f;
        dor[d] = live ? dy[row + d] : 0.0f;
        acc[d] = 0;
    }
    int last = imin(t, i0 + FA_ROWS);
    for (int j0 = 0; j0 < last; j0 += N) {
        int nk = imin(N, last - j0);
        __syncthreads();
        fa_load<D>(ks, k, r0 + j0, nk, kvs, g * hd, hd, 1.0f);
        fa_load<D>(vs, v, r0 + j0, nk, kvs, g * hd, hd, 1.0f);
        for (int jj = threadIdx.x; jj < nk; jj += blockDim.x) kseg[jj] = seg ? seg[r0 + j0 + jj] : 0;
        __syncthreads();
        if (!live) continue;
        for (int jj = 0; jj < nk; jj++) {
            if (j0 + jj > i || kseg[jj] != si) continue;
            float p = expf(fa_dot<HD>(qr, ks[jj], hd) - L);
            float ds = p * (fa_dot<HD>(dor, vs[jj], hd) - Di);
UNROLL
            for (int d = 0; d < hd; d++) acc[d] += ds * ks[jj][d];
        }
    }
    if (!live) return;
UNROLL
    for (int d = 0; d < hd; d++) dq[row + d] += scale * acc[d];
}

/* One thread per key row of kv head g: it sums over every query head of its group, in order. */
template <int HD>
__global__ void k_flash_dkv(float *dk, float *dv, const float *dy, const float *lse, const float *dd, const float *q,
                            const float *k, const float *v, const int *seg, int t, int nh, int nkv, int hd_rt,
                            float scale)
{
    const int D = fa_tile<HD>::D, N = fa_tile<HD>::N, hd = HD ? HD : hd_rt;
    __shared__ float qsh[N][D], dos[N][D], ls[N], dsh[N];
    __shared__ int qseg[N];
    int bkv = blockIdx.y, bi = bkv / nkv, g = bkv % nkv, rep = nh / nkv, qs = nh * hd, kvs = nkv * hd;
    int jbase = blockIdx.x * FA_ROWS, j = jbase + threadIdx.x, live = j < t;
    long r0 = (long)bi * t, row = (r0 + j) * kvs + g * hd;
    int sj = live && seg ? seg[r0 + j] : 0;
    float kr[D], vr[D], dkr[D], dvr[D];
UNROLL
    for (int d = 0; d < hd; d++) {
        kr[d] = live ? k[row + d] : 0.0f;
        vr[d] = live ? v[row + d] : 0.0f;
        dkr[d] = dvr[d] = 0;
    }
    for (int h = g * rep; h < (g + 1) * rep; h++)
        for (int i0 = jbase; i0 < t; i0 += N) { /* earlier queries see none of this block's keys */
            int nq = imin(N, t - i0);
            __syncthreads();
            fa_load<D>(qsh, q, r0 + i0, nq, qs, h * hd, hd, scale);
            fa_load<D>(dos, dy, r0 + i0, nq, qs, h * hd, hd, 1.0f);
            for (int ii = threadIdx.x; ii < nq; ii += blockDim.x) {
                long at = ((long)bi * nh + h) * t + i0 + ii;
                ls[ii] = lse[at];
                dsh[ii] = dd[at];
                qseg[ii] = seg ? seg[r0 + i0 + ii] : 0;
            }
            __syncthreads();
            if (!live) continue;
            for (int ii = 0; ii < nq; ii++) {
                if (i0 + ii < j || qseg[ii] != sj) continue;
                float p = expf(fa_dot<HD>(qsh[ii], kr, hd) - ls[ii]);
                float ds = p * (fa_dot<HD>(dos[ii], vr, hd) - dsh[ii]);
UNROLL
                for (int d = 0; d < hd; d++) {
                    dvr[d] += p * dos[ii][d];
                    dkr[d] += ds * qsh[ii][d]; /* qsh holds scale * q: dK = scale sum dS q */
                }
            }
        }
    if (!live) return;
UNROLL
    for (int d = 0; d < hd; d++) {
        dk[row + d] += dkr[d];
        dv[row + d] += dvr[d];
    }
}

/* Calls kernel<HD> for the head size at hand (64 and 128 specialised, the rest bounded). */
#define FA_CALL(kernel, blocks, ...)                                                                                   \
    do {                                                                                                               \
        if (hd == 64) LAUNCH(kernel<64>, blocks, FA_ROWS, __VA_ARGS__);                                              \
        else if (hd == 128) LAUNCH(kernel<128>, blocks, FA_ROWS, __VA_ARGS__);                                       \
        else LAUNCH(kernel<0>, blocks, FA_ROWS, __VA_ARGS__);                                                        \
        CL_CK_LAUNCH(#kernel);                                                                                         \
    } while (0)

static void fa_check(int hd, int nh, int nkv)
{
    if (hd < 1 || hd > CL_FLASH_MAX_HD || nkv < 1 || nh % nkv)
        cl_die(CL_EXIT_SOFTWARE, "flash attention: head size %d, %d/%d heads unsupported (internal error)", hd, nh, nkv);
}

void cu_flash_fwd(float *y, float *lse, const float *q, const float *k, const float *v, const int *seg, int b, int t,
                  int nh, int nkv, int hd)
{
    fa_check(hd, nh, nkv);
    dim3 g((unsigned)((t + FA_ROWS - 1) / FA_ROWS), (unsigned)(b * nh));
    float scale = (float)(1.0 / sqrt((double)hd));
    FA_CALL(k_flash_fwd, g, y, lse, q, k, v, seg, t, nh, nkv, hd, scale);
}

void cu_flash_bwd(float *dq, float *dk, float *dv, float *dd, const float *dy, const float *y, const float *lse,
                  const float *q, const float *k, const float *v, const int *seg, int b, int t, int nh, int nkv,
                  int hd)
{
    fa_check(hd, nh, nkv);
    long rows = (long)b * nh * t;
    float scale = (float)(1.0 / sqrt((double)hd));
    LAUNCH(k_flash_dd, grid(rows), THREADS, dd, dy, y, t, nh, hd, rows);
    CL_CK_LAUNCH("k_flash_dd");
    unsigned tiles = (unsigned)((t + FA_ROWS - 1) / FA_ROWS);
    FA_CALL(k_flash_dq, dim3(tiles, (unsigned)(b * nh)), dq, dy, lse, dd, q, k, v, seg, t, nh, nkv, hd, scale);
    FA_CALL(k_flash_dkv, dim3(tiles, (unsigned)(b * nkv)), dk, dv, dy, lse, dd, q, k, v, seg, t, nh, nkv, hd, scale);
}

/* ---- log-softmax over the vocabulary: one block per row ------------------------------- */

__global__ void k_logprob_rows(float *logits, const int *target, const float *coef, int v, float *logp)
{
    float *l = logits + (long)blockIdx.x * v;
    int tg = target[blockIdx.x];
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < v; j += blockDim.x) mx = fmaxf(mx, l[j]);
    mx = block_max(mx);
    double s = 0;
    for (int j = threadIdx.x; j < v; j += blockDim.x) s += (double)expf(l[j] - mx);
    s = block_sum(s);
    double lse = (double)mx + log(s);
    if (threadIdx.x == 0) logp[blockIdx.x] = (float)((double)l[tg] - lse);
    if (!coef) return;
    __syncthreads(); /* thread 0 has read l[tg] before anyone overwrites it */
    float cf = coef[blockIdx.x], flse = (float)lse;
    for (int j = threadIdx.x; j < v; j += blockDim.x) l[j] = -cf * expf(l[j] - flse);
    __syncthreads();
    if (threadIdx.x == 0) l[tg] += cf;
}

void cu_logprob_rows(float *logits, const int *target, const float *coef, int rows, int v, float *logp)
{
    LAUNCH(k_logprob_rows, (unsigned)rows, THREADS, logits, target, coef, v, logp);
    CL_CK_LAUNCH("k_logprob_rows");
}
