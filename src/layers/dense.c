/*
 * dense.c - the fully connected layer, torch.nn.Linear.
 *
 *   y = x W^T + b        x [n, in], W [out, in], b [out], y [n, out]
 *
 * On a sequence [T, F] it applies to every step, as torch does: the batch
 * is then n*T rows of F features. The GEMMs are oneDNN matmul primitives
 * prepared per batch size (bp_net_prepare), else bp_gemm.
 */
#include "layer.h"
#include "../kernels.h"

#include <math.h>
#include <stdio.h>
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

/* Plain data only: a missing GEMM primitive falls back to bp_gemm, so it
 * always succeeds. */
static int dense_prepare(bp_net *net, bp_layer *L, int slot, int n, int training, int need_dx)
{
    int rows = n * L->rows, in = dense_fan_in(L), out = L->desc.units;
    bp_mm **mm = &L->mm[BP_MM_FWD][slot];
    /* forward: y [rows, out] = x [rows, in] W^T + b */
    if (!*mm) *mm = bp_mm_create(net->gemm, 0, 1, rows, out, in, 1);
    if (!training) return 1;
    /* dW [out, in] = dy^T [out, rows] x [rows, in] */
    mm = &L->mm[BP_MM_DW][slot];
    if (!*mm) *mm = bp_mm_create(net->gemm, 1, 0, out, in, rows, 0);
    /* dx [rows, in] = dy [rows, out] W [out, in] */
    mm = &L->mm[BP_MM_DX][slot];
    if (!*mm && need_dx) *mm = bp_mm_create(net->gemm, 0, 0, rows, in, out, 0);
    return 1;
}

static void dense_release(bp_layer *L, int slot)
{
    for (int k = 0; k < BP_MM_KINDS; k++)
        for (int q = 0; q < BP_MM_SLOTS; q++) {
            if (!bp_slot_selected(q, slot)) continue;
            bp_mm_free(L->mm[k][q]);
            L->mm[k][q] = NULL;
        }
}

static bp_mm *dense_mm(const bp_net *net, const bp_layer *L, int kind, int n, int training)
{
    int q = bp_net_slot(net, n, training);
    return q < 0 ? NULL : L->mm[kind][q];
}

/* y [n, out] = x [n, in] W^T + b, with W [out, in]. */
static void dense_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n,
                          int training)
{
    (void)training;
    int rows = n * L->rows, in = dense_fan_in(L), out = L->desc.units;
    if (bp_mm_run(dense_mm(net, L, BP_MM_FWD, n, training), x, L->w, L->b, y)) return;
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
    if (dparam) {
        bp_real *dw = dparam, *db = dparam + (size_t)out * in;
        if (!bp_mm_run(dense_mm(net, L, BP_MM_DW, n, 1), dy, x, NULL, dw))
            bp_gemm(1, 0, out, in, rows, 1, dy, out, x, in, 0, dw, in);
        bp_k_colsum(db, dy, rows, out);
    }
    if (dx && !bp_mm_run(dense_mm(net, L, BP_MM_DX, n, 1), dy, L->w, NULL, dx))
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
