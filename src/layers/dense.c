/*
 * dense.c - the fully connected layer, torch.nn.Linear.
 *
 *   y = x W^T + b        x [n, in], W [out, in], b [out], y [n, out]
 *
 * On a sequence [T, F] it applies to every step, as torch does: the batch
 * is then n*T rows of F features. The GEMMs are oneDNN matmul primitives
 * prepared per batch size (bp_net_prepare), else bp_gemm.
 *
 * In bfloat16 precision (bp_net_set_precision) the prepared products read
 * bfloat16 copies of their inputs: the forward rounds W into
 * net->params_bf16 and x into the slot's xb (which dW reads again), the
 * backward rounds dy into dyb; the products accumulate and write float.
 */
#include "layer.h"
#include "../kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BP_MAX_UNITS 100000000

static bp_status dense_check(const bp_layer_desc *d, int col, bp_error *err)
{
    if (d->units < 1 || d->units > BP_MAX_UNITS)
        return bp_fail(err, BP_ESPEC, "spec:1:%d: dense needs 1..%d units, got %d", col,
                       BP_MAX_UNITS, d->units);
    return BP_OK;
}

/* [F] -> [units]; [T, F] -> [T, units]. (A dense after an image gets a
 * flatten inserted before it by net.c.) */
static bp_status dense_shape(bp_layer *L, int col, bp_error *err)
{
    bp_shape s = L->in_shape;
    if (s.rank < 1 || s.rank > 2)
        return bp_fail(err, BP_ESPEC, "spec:1:%d: dense needs a flat input or a sequence", col);
    L->rows = s.rank == 2 ? s.dim[0] : 1;
    s.dim[s.rank - 1] = L->desc.units;
    L->out_shape = s;
    return BP_OK;
}

static int dense_fan_in(const bp_layer *L) { return L->in / L->rows; }

static int dense_tensors(const bp_layer *L, bp_tensor_spec *t)
{
    t[0] = (bp_tensor_spec){"weight", 2, {L->desc.units, dense_fan_in(L)}, 1, BP_DTYPE_F32};
    t[1] = (bp_tensor_spec){"bias", 1, {L->desc.units}, 1, BP_DTYPE_F32};
    return 2;
}

/* He or Xavier by the scheme (default: He when a relu follows), biases 0.
 * Draws in row-major weight order (the seed table depends on it). */
static void dense_init(bp_layer *L, bp_init scheme, int relu_next, bp_rng *rng)
{
    bp_init s = scheme;
    if (s == BP_INIT_DEFAULT) s = relu_next ? BP_INIT_HE_UNIFORM : BP_INIT_XAVIER_UNIFORM;
    double fan_in = dense_fan_in(L), fan_out = L->desc.units;
    double var = (s == BP_INIT_HE_UNIFORM || s == BP_INIT_HE_NORMAL) ? 2.0 / fan_in
                                                                      : 2.0 / (fan_in + fan_out);
    int normal = (s == BP_INIT_HE_NORMAL || s == BP_INIT_XAVIER_NORMAL);
    double a = sqrt(3.0 * var); /* U(-a, a) has variance a^2 / 3 */
    size_t nw = (size_t)L->desc.units * (size_t)dense_fan_in(L);
    for (size_t k = 0; k < nw; k++)
        L->w[k] = (bp_real)(normal ? sqrt(var) * bp_rng_normal(rng)
                                   : a * (2.0 * bp_rng_uniform(rng) - 1.0));
    memset(L->b, 0, (size_t)L->desc.units * sizeof(bp_real));
}

/* A slot's bfloat16 buffers (L->fast[slot], bfloat16 precision only). */
typedef struct dense_bf16 {
    uint16_t *xb;  /* [rows, in]: the forward's input, rounded; dW reads it */
    uint16_t *dyb; /* [rows, out]: the backward's dy, rounded */
} dense_bf16;

static bp_mm *make_mm(bp_net *net, int ta, int tb, int M, int N, int K, int bias)
{
    if (net->precision == BP_PRECISION_BF16)
        return bp_mm_create_bf16(net->gemm, ta, tb, M, N, K, bias);
    return bp_mm_create(net->gemm, ta, tb, M, N, K, bias);
}

/* Plain data only: a missing GEMM primitive falls back to bp_gemm (float),
 * so it always succeeds. */
static int dense_prepare(bp_net *net, bp_layer *L, int slot, int n, int training, int need_dx)
{
    int rows = n * L->rows, in = dense_fan_in(L), out = L->desc.units;
    bp_mm **mm = &L->mm[BP_MM_FWD][slot];
    /* forward: y [rows, out] = x [rows, in] W^T + b */
    if (!*mm) *mm = make_mm(net, 0, 1, rows, out, in, 1);
    if (training) {
        /* dW [out, in] = dy^T [out, rows] x [rows, in] */
        mm = &L->mm[BP_MM_DW][slot];
        if (!*mm) *mm = make_mm(net, 1, 0, out, in, rows, 0);
        /* dx [rows, in] = dy [rows, out] W [out, in] */
        mm = &L->mm[BP_MM_DX][slot];
        if (!*mm && need_dx) *mm = make_mm(net, 0, 0, rows, in, out, 0);
    }
    int any = L->mm[BP_MM_FWD][slot] || L->mm[BP_MM_DW][slot] || L->mm[BP_MM_DX][slot];
    if (net->precision == BP_PRECISION_BF16 && any && !L->fast[slot]) {
        dense_bf16 *f = calloc(1, sizeof *f);
        if (f) {
            f->xb = bp_alloc_aligned((size_t)rows * in, sizeof(uint16_t));
            f->dyb = bp_alloc_aligned((size_t)rows * out, sizeof(uint16_t));
        }
        if (!f || !f->xb || !f->dyb) {
            /* no buffers: the slot's products run in float (bp_gemm) */
            if (f) free(f->xb), free(f->dyb);
            free(f);
            for (int k = 0; k < BP_MM_KINDS; k++) {
                bp_mm_free(L->mm[k][slot]);
                L->mm[k][slot] = NULL;
            }
            return 1;
        }
        L->fast[slot] = f;
    }
    return 1;
}

static void dense_release(bp_layer *L, int slot)
{
    for (int q = 0; q < BP_MM_SLOTS; q++) {
        if (!bp_slot_selected(q, slot)) continue;
        for (int k = 0; k < BP_MM_KINDS; k++) {
            bp_mm_free(L->mm[k][q]);
            L->mm[k][q] = NULL;
        }
        dense_bf16 *f = L->fast[q];
        if (f) free(f->xb), free(f->dyb);
        free(f);
        L->fast[q] = NULL;
    }
}

/* The prepared product of `kind` for a pass over n samples (NULL: none),
 * and in *f the slot's bfloat16 buffers (NULL: the products are float). */
static bp_mm *dense_mm(const bp_net *net, const bp_layer *L, int kind, int n, int training,
                       dense_bf16 **f)
{
    int q = bp_net_slot(net, n, training);
    *f = q < 0 ? NULL : L->fast[q];
    return q < 0 ? NULL : L->mm[kind][q];
}

/* y [n, out] = x [n, in] W^T + b, with W [out, in]. */
static void dense_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n,
                          int training)
{
    int rows = n * L->rows, in = dense_fan_in(L), out = L->desc.units;
    dense_bf16 *f;
    bp_mm *mm = dense_mm(net, L, BP_MM_FWD, n, training, &f);
#ifndef BP_DOUBLE
    if (f) {
        /* Every pass rounds the weights (the optimizer changed them) and x. */
        uint16_t *wb = net->params_bf16 + L->offset;
        bp_k_to_bf16(wb, L->w, (size_t)out * in);
        bp_k_to_bf16(f->xb, x, (size_t)rows * in);
        if (bp_mm_run_bf16(mm, f->xb, wb, L->b, y)) return;
        mm = NULL;
    }
#endif
    if (bp_mm_run(mm, x, L->w, L->b, y)) return;
    bp_k_bias_rows(y, L->b, rows, out);
    bp_gemm(0, 1, rows, out, in, 1, x, in, L->w, in, 1, y, out);
}

/* Differentiates y = x W^T + b:
 *   dW [out, in] = dy^T x,  db [out] = sum over rows of dy,  dx [n, in] = dy W. */
static void dense_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dparam,
                           const bp_real *dy, const bp_real *x, const bp_real *y, int n)
{
    (void)y;
    int rows = n * L->rows, in = dense_fan_in(L), out = L->desc.units;
    dense_bf16 *f;
    bp_mm *mw = dense_mm(net, L, BP_MM_DW, n, 1, &f), *mx = dense_mm(net, L, BP_MM_DX, n, 1, &f);
    int bw = 0, bx = 0; /* done in bfloat16 */
#ifndef BP_DOUBLE
    if (f && ((dparam && mw) || (dx && mx))) {
        bp_k_to_bf16(f->dyb, dy, (size_t)rows * out);
        bw = dparam && bp_mm_run_bf16(mw, f->dyb, f->xb, NULL, dparam);
        bx = dx && bp_mm_run_bf16(mx, f->dyb, net->params_bf16 + L->offset, NULL, dx);
    }
    if (f) mw = mx = NULL; /* bfloat16 primitives: the fallback is bp_gemm */
#endif
    if (dparam) {
        bp_real *dw = dparam, *db = dparam + (size_t)out * in;
        if (!bw && !bp_mm_run(mw, dy, x, NULL, dw))
            bp_gemm(1, 0, out, in, rows, 1, dy, out, x, in, 0, dw, in);
        bp_k_colsum(db, dy, rows, out);
    }
    if (dx && !bx && !bp_mm_run(mx, dy, L->w, NULL, dx))
        bp_gemm(0, 0, rows, in, out, 1, dy, out, L->w, in, 0, dx, in);
}

const bp_layer_ops bp_dense_ops = {
    .word = "dense", .kind = BP_DENSE, .usage = "dense(N)",
    .n_int_min = 1, .n_int_max = 1, .int_slot = {BP_ARG_UNITS},
    .parametric = 1,
    .check = dense_check, .shape = dense_shape, .tensors = dense_tensors, .init = dense_init,
    .prepare = dense_prepare, .release = dense_release,
    .forward = dense_forward, .backward = dense_backward,
};
