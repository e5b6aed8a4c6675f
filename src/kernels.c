/*
 * kernels.c - the elementwise loops of the forward and backward passes.
 *
 * Each kernel is a flat loop with no call and no data-dependent branch, so
 * gcc vectorizes it; BP_HOT compiles it for AVX-512, AVX2 and baseline
 * x86-64 and picks one at load time. Floating-point contraction stays off
 * (ISO C mode), so every version computes bit-identical results.
 *
 * In the float build exp and tanh are computed by the polynomial
 * approximations below (max relative error ~2e-7 against libm, checked by
 * test_kernels); the double build, used for gradient checks, calls libm.
 */
#include "kernels.h"

#include <math.h>
#include <string.h>

/* The elementwise kernels below are memory-bound: on a large activation
 * (a conv layer's, 12.8 MB at batch 128 in W5) each thread of the split
 * brings its own core's bandwidth. SPLIT runs STMT on spans [a, b) of
 * [0, m), one per thread its size is worth (bp_threads_for, at least
 * ELEM_GRAIN elements each: ~256 KB, well above a fork and join); small
 * ones run on the calling thread alone. Each element is computed the same
 * way whatever the split, so results do not depend on the thread count. */
#define ELEM_GRAIN 65536.0
#define SPLIT(m, STMT)                                                          \
    do {                                                                        \
        size_t m_ = (m);                                                        \
        int t_n = bp_threads_for((double)m_, ELEM_GRAIN);                       \
        if (t_n <= 1) {                                                         \
            size_t a = 0, b = m_;                                               \
            STMT;                                                               \
        } else {                                                                \
            _Pragma("omp parallel for num_threads(t_n) schedule(static)")       \
            for (int t_ = 0; t_ < t_n; t_++) {                                  \
                size_t a = m_ * (size_t)t_ / (size_t)t_n;                       \
                size_t b = m_ * (size_t)(t_ + 1) / (size_t)t_n;                 \
                STMT;                                                           \
            }                                                                   \
        }                                                                       \
    } while (0)

#ifndef BP_DOUBLE
/* exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in [-0.35, 0.35],
 * exp(r) by its degree-7 Taylor polynomial (truncation < 5e-9). x is
 * clamped to [-87.3, 88] so 2^n stays a normal float; NaN stays NaN: the
 * comparisons are false for it, so the clamp computes it on -87.3 and it is
 * returned as NaN below (one compare and blend fewer than testing x != x
 * first, with the same result for every input). */
static inline float fast_expf(float x0)
{
    float x = x0 > -87.3f ? x0 : -87.3f;
    x = x < 88.0f ? x : 88.0f;
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float n = (x * 1.44269504088896341f + shifter) - shifter;
    float r = x - n * 0.693145751953125f; /* ln 2, high part (exact product) */
    r = r - n * 1.42860682030941723e-6f;  /* ln 2, low part */
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23; /* n + 127 in [1, 254] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x0 != x0 ? x0 : p * scale;
}

/* tanh: x P(x^2) for |x| < 0.625 (least-squares fit, rel. error 2e-8),
 * else sign(x) (1 - 2 / (exp(2|x|) + 1)); both computed, one selected. */
static inline float fast_tanhf(float x)
{
    float a = x < 0 ? -x : x;
    float t = x * x;
    float p = -0.00615424f;
    p = p * t + 0.02104488f;
    p = p * t - 0.05386369f;
    p = p * t + 0.13332888f;
    p = p * t - 0.33333331f;
    float small = x + x * t * p;
    float big = 1.0f - 2.0f / (fast_expf(2.0f * a) + 1.0f);
    big = x < 0 ? -big : big;
    return a < 0.625f ? small : big;
}
#define EXP(x) fast_expf(x)
#define TANH(x) fast_tanhf(x)
#else
#define EXP(x) exp(x)
#define TANH(x) tanh(x)
#endif

BP_HOT void bp_k_exp(bp_real *restrict y, const bp_real *restrict x, size_t m)
{
    for (size_t k = 0; k < m; k++) y[k] = EXP(x[k]);
}

BP_HOT void bp_k_bias_rows(bp_real *restrict y, const bp_real *restrict b, int n, int d)
{
    for (int r = 0; r < n; r++) memcpy(y + (size_t)r * d, b, (size_t)d * sizeof(bp_real));
}

static BP_HOT void sigmoid_span(bp_real *restrict y, const bp_real *restrict x, size_t m)
{
    for (size_t k = 0; k < m; k++) y[k] = 1 / (1 + EXP(-x[k]));
}

void bp_k_sigmoid(bp_real *y, const bp_real *x, size_t m)
{
    SPLIT(m, sigmoid_span(y + a, x + a, b - a));
}

static BP_HOT void tanh_span(bp_real *restrict y, const bp_real *restrict x, size_t m)
{
    for (size_t k = 0; k < m; k++) y[k] = TANH(x[k]);
}

void bp_k_tanh(bp_real *y, const bp_real *x, size_t m)
{
    SPLIT(m, tanh_span(y + a, x + a, b - a));
}

static BP_HOT void relu_span(bp_real *y, const bp_real *x, size_t m)
{
    for (size_t k = 0; k < m; k++) y[k] = x[k] > 0 ? x[k] : 0;
}

void bp_k_relu(bp_real *y, const bp_real *x, size_t m)
{
    SPLIT(m, relu_span(y + a, x + a, b - a));
}

#ifndef BP_DOUBLE
/* Round to nearest even on the upper 16 bits; a NaN stays a (quiet) NaN
 * rather than rounding into infinity. Written with integer operations so
 * it vectorizes on every instruction set. */
static BP_HOT void to_bf16_span(uint16_t *restrict y, const float *restrict x, size_t m)
{
    for (size_t k = 0; k < m; k++) y[k] = bp_bf16_round(x[k]);
}

void bp_k_to_bf16(uint16_t *y, const float *x, size_t m)
{
    SPLIT(m, to_bf16_span(y + a, x + a, b - a));
}

static BP_HOT void relu_bf16_span(uint16_t *y, const uint16_t *x, size_t m)
{
    for (size_t k = 0; k < m; k++) y[k] = bp_bf16_wide(x[k]) > 0 ? x[k] : 0;
}

void bp_k_relu_bf16(uint16_t *y, const uint16_t *x, size_t m)
{
    SPLIT(m, relu_bf16_span(y + a, x + a, b - a));
}

static BP_HOT void relu_grad_bf16_span(uint16_t *dx, const uint16_t *dy, const uint16_t *x,
                                       size_t m)
{
    for (size_t k = 0; k < m; k++) dx[k] = bp_bf16_wide(x[k]) > 0 ? dy[k] : 0;
}

void bp_k_relu_grad_bf16(uint16_t *dx, const uint16_t *dy, const uint16_t *x, size_t m)
{
    SPLIT(m, relu_grad_bf16_span(dx + a, dy + a, x + a, b - a));
}

static BP_HOT void leaky_relu_bf16_span(uint16_t *y, const uint16_t *x, size_t m, float s)
{
    for (size_t k = 0; k < m; k++) {
        float v = bp_bf16_wide(x[k]);
        y[k] = v > 0 ? x[k] : bp_bf16_round(s * v);
    }
}

void bp_k_leaky_relu_bf16(uint16_t *y, const uint16_t *x, size_t m, float s)
{
    SPLIT(m, leaky_relu_bf16_span(y + a, x + a, b - a, s));
}

static BP_HOT void leaky_relu_grad_bf16_span(uint16_t *dx, const uint16_t *dy, const uint16_t *x,
                                             size_t m, float s)
{
    for (size_t k = 0; k < m; k++)
        dx[k] = bp_bf16_wide(x[k]) > 0 ? dy[k] : bp_bf16_round(s * bp_bf16_wide(dy[k]));
}

void bp_k_leaky_relu_grad_bf16(uint16_t *dx, const uint16_t *dy, const uint16_t *x, size_t m,
                               float s)
{
    SPLIT(m, leaky_relu_grad_bf16_span(dx + a, dy + a, x + a, b - a, s));
}

static BP_HOT void mul_bf16_span(uint16_t *y, const uint16_t *x, const float *mask, size_t m)
{
    for (size_t k = 0; k < m; k++) y[k] = bp_bf16_round(bp_bf16_wide(x[k]) * mask[k]);
}

void bp_k_mul_bf16(uint16_t *y, const uint16_t *x, const float *mask, size_t m)
{
    SPLIT(m, mul_bf16_span(y + a, x + a, mask + a, b - a));
}

static BP_HOT void colmax_bf16_span(float *restrict acc, const uint16_t *restrict a, int n, int d,
                                    size_t j0, size_t j1)
{
    for (int r = 0; r < n; r++) {
        const uint16_t *ar = a + (size_t)r * d;
        for (size_t j = j0; j < j1; j++) {
            float v = bp_bf16_wide(ar[j]);
            acc[j] = acc[j] > v ? acc[j] : v;
        }
    }
}

void bp_k_colmax_bf16(float *acc, const uint16_t *a, int n, int d)
{
    /* As bp_k_colmax: split by columns. */
    int t_n = bp_threads_for((double)n * d, ELEM_GRAIN);
    if (t_n <= 1 || d < 16 * t_n) {
        colmax_bf16_span(acc, a, n, d, 0, (size_t)d);
        return;
    }
#pragma omp parallel for num_threads(t_n) schedule(static)
    for (int t = 0; t < t_n; t++)
        colmax_bf16_span(acc, a, n, d, (size_t)d * t / t_n, (size_t)d * (t + 1) / t_n);
}
#endif

static BP_HOT void leaky_relu_span(bp_real *y, const bp_real *x, size_t m, bp_real s)
{
    for (size_t k = 0; k < m; k++) y[k] = x[k] > 0 ? x[k] : s * x[k];
}

void bp_k_leaky_relu(bp_real *y, const bp_real *x, size_t m, bp_real s)
{
    SPLIT(m, leaky_relu_span(y + a, x + a, b - a, s));
}

BP_HOT void bp_k_softmax(bp_real *restrict y, const bp_real *restrict x, int n, int d)
{
    for (int r = 0; r < n; r++) {
        const bp_real *xr = x + (size_t)r * d;
        bp_real *yr = y + (size_t)r * d;
        bp_real m = xr[0];
        for (int j = 1; j < d; j++) m = xr[j] > m ? xr[j] : m;
        bp_real s = 0;
        for (int j = 0; j < d; j++) {
            yr[j] = EXP(xr[j] - m);
            s += yr[j];
        }
        bp_real inv = 1 / s;
        for (int j = 0; j < d; j++) yr[j] *= inv;
    }
}

static BP_HOT void sigmoid_grad_span(bp_real *restrict dx, const bp_real *restrict dy,
                                     const bp_real *restrict y, size_t m)
{
    for (size_t k = 0; k < m; k++) dx[k] = dy[k] * y[k] * (1 - y[k]);
}

void bp_k_sigmoid_grad(bp_real *dx, const bp_real *dy, const bp_real *y, size_t m)
{
    SPLIT(m, sigmoid_grad_span(dx + a, dy + a, y + a, b - a));
}

static BP_HOT void tanh_grad_span(bp_real *restrict dx, const bp_real *restrict dy,
                                  const bp_real *restrict y, size_t m)
{
    for (size_t k = 0; k < m; k++) dx[k] = dy[k] * (1 - y[k] * y[k]);
}

void bp_k_tanh_grad(bp_real *dx, const bp_real *dy, const bp_real *y, size_t m)
{
    SPLIT(m, tanh_grad_span(dx + a, dy + a, y + a, b - a));
}

static BP_HOT void relu_grad_span(bp_real *dx, const bp_real *dy, const bp_real *x, size_t m)
{
    for (size_t k = 0; k < m; k++) dx[k] = x[k] > 0 ? dy[k] : 0;
}

void bp_k_relu_grad(bp_real *dx, const bp_real *dy, const bp_real *x, size_t m)
{
    SPLIT(m, relu_grad_span(dx + a, dy + a, x + a, b - a));
}

static BP_HOT void leaky_relu_grad_span(bp_real *dx, const bp_real *dy, const bp_real *x,
                                        size_t m, bp_real s)
{
    for (size_t k = 0; k < m; k++) dx[k] = x[k] > 0 ? dy[k] : s * dy[k];
}

void bp_k_leaky_relu_grad(bp_real *dx, const bp_real *dy, const bp_real *x, size_t m, bp_real s)
{
    SPLIT(m, leaky_relu_grad_span(dx + a, dy + a, x + a, b - a, s));
}

static BP_HOT void mul_span(bp_real *dx, const bp_real *dy, const bp_real *mask, size_t m)
{
    for (size_t k = 0; k < m; k++) dx[k] = dy[k] * mask[k];
}

void bp_k_mul(bp_real *dx, const bp_real *dy, const bp_real *mask, size_t m)
{
    SPLIT(m, mul_span(dx + a, dy + a, mask + a, b - a));
}

BP_HOT void bp_k_colsum(bp_real *restrict s, const bp_real *restrict a, int n, int d)
{
    for (int j = 0; j < d; j++) s[j] = 0;
    for (int r = 0; r < n; r++) {
        const bp_real *ar = a + (size_t)r * d;
        for (int j = 0; j < d; j++) s[j] += ar[j];
    }
}

/* Columns [j0, j1) of acc[j] = max(acc[j], a[r][j]) over the n rows. */
static BP_HOT void colmax_span(bp_real *restrict acc, const bp_real *restrict a, int n, int d,
                               size_t j0, size_t j1)
{
    for (int r = 0; r < n; r++) {
        const bp_real *ar = a + (size_t)r * d;
        for (size_t j = j0; j < j1; j++) acc[j] = acc[j] > ar[j] ? acc[j] : ar[j];
    }
}

void bp_k_colmax(bp_real *acc, const bp_real *a, int n, int d)
{
    /* Split by columns (each thread reads its columns of every row), with
     * the grain counted in elements read. */
    int t_n = bp_threads_for((double)n * d, ELEM_GRAIN);
    if (t_n <= 1 || d < 16 * t_n) {
        colmax_span(acc, a, n, d, 0, (size_t)d);
        return;
    }
#pragma omp parallel for num_threads(t_n) schedule(static)
    for (int t = 0; t < t_n; t++)
        colmax_span(acc, a, n, d, (size_t)d * t / t_n, (size_t)d * (t + 1) / t_n);
}

static BP_HOT double sumsq_span(const bp_real *g, size_t m)
{
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (size_t k = 0; k < m; k++) s += (double)g[k] * g[k];
    return s;
}

/* Fixed chunks of SUMSQ_CHUNK values, each summed alone, the chunks' sums
 * added in order: the same result on any thread count, and a large layer
 * (W3's 4.2M-weight one: 17 MB to read) shares the reading between the
 * threads. */
#define SUMSQ_CHUNK 65536
double bp_k_sumsq(const bp_real *g, size_t m)
{
    size_t chunks = (m + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    int t_n = bp_threads_for((double)m, ELEM_GRAIN);
    if (chunks <= 1) return sumsq_span(g, m);
    double part[64], s = 0;
    for (size_t c0 = 0; c0 < chunks; c0 += 64) {
        int nc = (int)(chunks - c0 < 64 ? chunks - c0 : 64);
#pragma omp parallel for num_threads(t_n) schedule(static) if (t_n > 1)
        for (int c = 0; c < nc; c++) {
            size_t a = (c0 + (size_t)c) * SUMSQ_CHUNK, b = a + SUMSQ_CHUNK < m ? a + SUMSQ_CHUNK : m;
            part[c] = sumsq_span(g + a, b - a);
        }
        for (int c = 0; c < nc; c++) s += part[c];
    }
    return s;
}

/* x * 0 is 0 for a finite x and NaN for an infinite or NaN one, so the
 * sum is 0 exactly when every value is finite (in any order: the
 * reduction may be reordered freely). */
static BP_HOT int finite_span(const bp_real *restrict x, size_t m)
{
    bp_real s = 0;
#pragma omp simd reduction(+ : s)
    for (size_t k = 0; k < m; k++) s += x[k] * 0;
    return s == 0;
}

int bp_k_all_finite(const bp_real *x, size_t m)
{
    int ok = 1, t_n = bp_threads_for((double)m, ELEM_GRAIN);
#pragma omp parallel for num_threads(t_n) if (t_n > 1) schedule(static) reduction(&& : ok)
    for (int t = 0; t < t_n; t++) {
        size_t a = m * (size_t)t / (size_t)t_n, b = m * (size_t)(t + 1) / (size_t)t_n;
        ok = ok && finite_span(x + a, b - a);
    }
    return ok;
}

/* Reference versions, kept for the tests: libm in double. */
void bp_k_ref_exp(bp_real *y, const bp_real *x, size_t m)
{
    for (size_t k = 0; k < m; k++) y[k] = (bp_real)exp((double)x[k]);
}

void bp_k_ref_tanh(bp_real *y, const bp_real *x, size_t m)
{
    for (size_t k = 0; k < m; k++) y[k] = (bp_real)tanh((double)x[k]);
}

void bp_k_ref_sigmoid(bp_real *y, const bp_real *x, size_t m)
{
    for (size_t k = 0; k < m; k++) y[k] = (bp_real)(1 / (1 + exp(-(double)x[k])));
}

/* ------------------------------------------------------------------------ */
/* Recurrent cells: one sample's units [0, m) of one step                   */
/* (src/layers/recurrent.c; gate blocks H apart)                             */
/* ------------------------------------------------------------------------ */

static inline bp_real sigm(bp_real x) { return 1 / (1 + EXP(-x)); }

/* dac = da and db += da over G gate blocks of units [0, m). A loop of its
 * own: with these stores in the cells' loops gcc no longer if-converts
 * their tanh and leaves them scalar. */
static inline void copy_add(bp_real *restrict dac, bp_real *restrict db,
                            const bp_real *restrict da, int G, int H, int m)
{
    for (int q = 0; q < G; q++)
        for (int j = 0; j < m; j++) {
            bp_real v = da[(size_t)q * H + j];
            dac[(size_t)q * H + j] = v;
            db[(size_t)q * H + j] += v;
        }
}

BP_HOT void bp_k_rnn_fwd(const bp_real *restrict a, const bp_real *restrict r,
                         bp_real *restrict h, bp_real *restrict y, int m)
{
    for (int j = 0; j < m; j++) {
        bp_real v = TANH(a[j] + r[j]);
        h[j] = v, y[j] = v;
    }
}

BP_HOT void bp_k_lstm_fwd(bp_real *restrict a, const bp_real *restrict r, bp_real *cc,
                          bp_real *restrict c, bp_real *restrict h, bp_real *restrict y, int H,
                          int m)
{
    bp_real *gi = a, *gf = a + H, *gg = a + 2 * H, *go = a + 3 * H;
    const bp_real *ri = r, *rf = r + H, *rg = r + 2 * H, *ro = r + 3 * H;
    for (int j = 0; j < m; j++) {
        bp_real i = sigm(gi[j] + ri[j]), f = sigm(gf[j] + rf[j]);
        bp_real g = TANH(gg[j] + rg[j]), o = sigm(go[j] + ro[j]);
        bp_real cj = f * cc[j] + i * g;
        gi[j] = i, gf[j] = f, gg[j] = g, go[j] = o;
        c[j] = cj, cc[j] = cj;
        bp_real hj = o * TANH(cj);
        h[j] = hj, y[j] = hj;
    }
}

BP_HOT void bp_k_gru_fwd(bp_real *restrict a, const bp_real *restrict rr, bp_real *restrict rn,
                         bp_real *hc, bp_real *restrict y, int H, int m)
{
    bp_real *ar = a, *az = a + H, *an = a + 2 * H;
    const bp_real *hr = rr, *hz = rr + H, *hn = rr + 2 * H;
    for (int j = 0; j < m; j++) {
        bp_real r = sigm(ar[j] + hr[j]), z = sigm(az[j] + hz[j]);
        bp_real nn = TANH(an[j] + r * hn[j]);
        ar[j] = r, az[j] = z, an[j] = nn;
        rn[j] = hn[j];
        bp_real hj = (1 - z) * nn + z * hc[j];
        hc[j] = hj, y[j] = hj;
    }
}

BP_HOT void bp_k_rnn_bwd(bp_real *restrict da, bp_real *restrict dac, bp_real *restrict db,
                         const bp_real *restrict dy, const bp_real *restrict dh,
                         const bp_real *restrict h, int m)
{
    for (int j = 0; j < m; j++) {
        bp_real v = (dy[j] + dh[j]) * (1 - h[j] * h[j]);
        da[j] = v, dac[j] = v;
        db[j] += v;
    }
}

BP_HOT void bp_k_lstm_bwd(bp_real *restrict da, bp_real *restrict dac, bp_real *restrict db,
                          bp_real *restrict dc, const bp_real *restrict dy,
                          const bp_real *restrict dh, const bp_real *restrict g,
                          const bp_real *restrict c, const bp_real *restrict cprev, int H, int m)
{
    const bp_real *gi = g, *gf = g + H, *gg = g + 2 * H, *go = g + 3 * H;
    for (int j = 0; j < m; j++) {
        bp_real i = gi[j], f = gf[j], gv = gg[j], o = go[j];
        /* recomputed, not kept by the forward: this loop waits on memory
         * (gates, cells and gradients of n*T rows), not on arithmetic */
        bp_real tc = TANH(c[j]);
        bp_real d = dy[j] + dh[j];
        bp_real dcj = dc[j] + d * o * (1 - tc * tc);
        da[j] = dcj * gv * i * (1 - i);
        da[H + j] = dcj * cprev[j] * f * (1 - f);
        da[2 * H + j] = dcj * i * (1 - gv * gv);
        da[3 * H + j] = d * tc * o * (1 - o);
        dc[j] = dcj * f;
    }
    copy_add(dac, db, da, 4, H, m);
}

BP_HOT void bp_k_gru_bwd(bp_real *restrict dai, bp_real *restrict dah, bp_real *restrict dac,
                         bp_real *restrict dbi, bp_real *restrict dbh, bp_real *restrict dhd,
                         const bp_real *restrict dy, const bp_real *restrict dhr,
                         const bp_real *restrict g, const bp_real *restrict hn,
                         const bp_real *restrict hprev, int H, int m)
{
    const bp_real *gr = g, *gz = g + H, *gn = g + 2 * H;
    for (int j = 0; j < m; j++) {
        bp_real r = gr[j], z = gz[j], nn = gn[j];
        bp_real d = dy[j] + dhr[j] + dhd[j];
        bp_real dan = d * (1 - z) * (1 - nn * nn);
        bp_real daz = d * (hprev[j] - nn) * z * (1 - z);
        bp_real dar = dan * hn[j] * r * (1 - r);
        dai[j] = dar, dai[H + j] = daz, dai[2 * H + j] = dan;
        dah[j] = dar, dah[H + j] = daz, dah[2 * H + j] = dan * r;
        dhd[j] = d * z;
    }
    copy_add(dac, dbh, dah, 3, H, m);
    for (int q = 0; q < 3; q++)
        for (int j = 0; j < m; j++) dbi[(size_t)q * H + j] += dai[(size_t)q * H + j];
}
