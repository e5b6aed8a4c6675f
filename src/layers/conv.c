/*
 * conv.c - 2-D convolution, torch.nn.Conv2d(in_ch, C, K, stride, padding).
 *
 *   y[n,o,i,j] = b[o] + sum_{c,p,q} W[o,c,p,q] x[n,c, i*s + p - pad, j*s + q - pad]
 *
 * x [n, in_ch, H, W], W [C, in_ch, K, K], b [C], y [n, C, OH, OW] with
 * OH = (H + 2 pad - K) / s + 1. The fast path is oneDNN's convolution
 * (src/conv_kernels.c), prepared per batch size; the reference loop is the
 * definition and the double build's path. Its output starts the blocked
 * layout (nChw{B}c) where the slot's plan keeps the next layers blocked,
 * in bfloat16 where a bf16 network's plan keeps them so; it reads a
 * bfloat16 input (and writes a bfloat16 dx) where the layer before
 * outputs one.
 */
#include "layer.h"
#include "../cnn_kernels.h"

#include <math.h>
#include <stdlib.h>

#define MAX_KERNEL 1024

typedef struct conv_fast {
    bp_conv_prim *prim;
    int training;
} conv_fast;

static bp_status conv_check(const bp_layer_desc *d, int col, bp_error *err)
{
    if (d->units < 1 || d->kernel < 1 || d->kernel > MAX_KERNEL || d->stride < 1 ||
        d->stride > MAX_KERNEL || d->pad < 0 || d->pad > MAX_KERNEL)
        return bp_fail(err, BP_ESPEC, "spec:1:%d: conv needs C >= 1, 1 <= K <= %d, stride >= 1 "
                       "and 0 <= pad <= %d (got conv(%d,%d,%d,%d))", col, MAX_KERNEL, MAX_KERNEL,
                       d->units, d->kernel, d->stride, d->pad);
    return BP_OK;
}

static bp_conv_geom conv_geom(const bp_layer *L, int n)
{
    bp_conv_geom g = {n, L->in_shape.dim[0], L->in_shape.dim[1], L->in_shape.dim[2],
                      L->desc.units, L->desc.kernel, L->desc.stride, L->desc.pad, 0, 0};
    bp_conv_geom_init(&g);
    return g;
}

static bp_status conv_shape(bp_layer *L, int col, bp_error *err)
{
    if (L->in_shape.rank != 3) return bp_need_image(L, col, err);
    bp_conv_geom g = conv_geom(L, 1);
    if (!bp_conv_geom_init(&g))
        return bp_fail(err, BP_ESPEC, "spec:1:%d: conv kernel %d is larger than its input %dx%d "
                       "(padding %d)", col, g.K, g.H, g.W, g.pad);
    L->out_shape = bp_shape3(g.OC, g.OH, g.OW);
    return BP_OK;
}

static int conv_tensors(const bp_layer *L, bp_tensor_spec *t)
{
    int k = L->desc.kernel;
    t[0] = (bp_tensor_spec){"weight", 4, {L->desc.units, L->in_shape.dim[0], k, k}, 1, BP_DTYPE_F32};
    t[1] = (bp_tensor_spec){"bias", 1, {L->desc.units}, 1, BP_DTYPE_F32};
    return 2;
}

/* He or Xavier with fan_in = in_ch K K, fan_out = C K K (torch's fans). */
static void conv_init(bp_layer *L, bp_init scheme, int relu_next, bp_rng *rng)
{
    bp_init s = scheme;
    if (s == BP_INIT_DEFAULT) s = relu_next ? BP_INIT_HE_UNIFORM : BP_INIT_XAVIER_UNIFORM;
    double kk = (double)L->desc.kernel * L->desc.kernel;
    double fan_in = L->in_shape.dim[0] * kk, fan_out = L->desc.units * kk;
    double var = (s == BP_INIT_HE_UNIFORM || s == BP_INIT_HE_NORMAL) ? 2.0 / fan_in
                                                                      : 2.0 / (fan_in + fan_out);
    int normal = (s == BP_INIT_HE_NORMAL || s == BP_INIT_XAVIER_NORMAL);
    double a = sqrt(3.0 * var);
    size_t nw = (size_t)(L->b - L->w);
    for (size_t k = 0; k < nw; k++)
        L->w[k] = (bp_real)(normal ? sqrt(var) * bp_rng_normal(rng)
                                   : a * (2.0 * bp_rng_uniform(rng) - 1.0));
    for (int o = 0; o < L->desc.units; o++) L->b[o] = 0;
}

static int conv_prepare(bp_net *net, bp_layer *L, int slot, int n, int training, int need_dx)
{
    conv_fast *f = L->fast[slot];
    if (f && (f->training || !training)) return f->prim != NULL;
    if (!f) {
        f = calloc(1, sizeof *f);
        if (!f) return 0;
        L->fast[slot] = f;
    }
    bp_conv_prim_free(f->prim);
    bp_conv_geom g = conv_geom(L, n);
    int bf16 = net->precision == BP_PRECISION_BF16
                   ? BP_CONV_BF16 | (L->bf_in[slot] ? BP_CONV_BF16_X : 0) |
                         (L->bf_out[slot] ? BP_CONV_BF16_Y : 0)
                   : 0;
    f->prim = bp_conv_prim_create(net->gemm, &g, training, need_dx, L->blk_in[slot],
                                  L->blk_out[slot], bf16);
    f->training = training && f->prim;
    return f->prim != NULL;
}

static void conv_release(bp_layer *L, int slot)
{
    for (int q = 0; q < BP_MM_SLOTS; q++) {
        if (!bp_slot_selected(q, slot)) continue;
        conv_fast *f = L->fast[q];
        if (f) bp_conv_prim_free(f->prim);
        free(f);
        L->fast[q] = NULL;
    }
}

static conv_fast *conv_fast_for(const bp_net *net, const bp_layer *L, int n, int training)
{
    int q = bp_net_slot(net, n, training);
    return q < 0 ? NULL : L->fast[q];
}

/* x and y in the slot's layouts (plain, or nChw{B}c between blocked layers)
 * and types (bfloat16 where the slot keeps them so: blocked, so always on
 * the primitive). */
static void conv_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n,
                         int training)
{
    conv_fast *f = conv_fast_for(net, L, n, training);
    if (f && f->prim && bp_conv_prim_forward(f->prim, y, x, L->w, L->b)) return;
    if (bp_blk_in(net, L, n, training) > 1 || bp_blk_out(net, L, n, training) > 1) {
        bp_layer_fail(y, (size_t)n * L->out);
        return;
    }
    bp_conv_geom g = conv_geom(L, n);
    bp_conv_forward_ref(y, x, L->w, L->b, &g);
}

/* Differentiates the forward sum above:
 *   dW[o,c,p,q] = sum_{n,i,j} dy[n,o,i,j] x[n,c, i*s+p-pad, j*s+q-pad]
 *   db[o]       = sum_{n,i,j} dy[n,o,i,j]
 *   dx[n,c,h,w] = sum_{o,p,q : h = i*s+p-pad, w = j*s+q-pad} dy[n,o,i,j] W[o,c,p,q] */
static void conv_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dparam,
                          const bp_real *dy, const bp_real *x, const bp_real *y, int n)
{
    (void)y;
    bp_real *dw = dparam, *db = dparam ? dparam + (L->b - L->w) : NULL;
    conv_fast *f = conv_fast_for(net, L, n, 1);
    if (f && f->training && bp_conv_prim_backward(f->prim, dx, dw, db, dy, x, L->w)) return;
    if (bp_blk_in(net, L, n, 1) > 1 || bp_blk_out(net, L, n, 1) > 1) {
        bp_layer_fail(dx, (size_t)n * L->in);
        bp_layer_fail(dparam, L->n_params);
        return;
    }
    bp_conv_geom g = conv_geom(L, n);
    bp_conv_backward_ref(dx, dw, db, dy, x, L->w, &g);
}

const bp_layer_ops bp_conv_ops = {
    .word = "conv", .kind = BP_CONV, .usage = "conv(C,K[,stride[,pad]])",
    .n_int_min = 2, .n_int_max = 4,
    .int_slot = {BP_ARG_UNITS, BP_ARG_KERNEL, BP_ARG_STRIDE, BP_ARG_PAD},
    .parametric = 1, .layout = BP_BLK_MAKE, .bf16 = BP_BF16_MAKE,
    .check = conv_check, .shape = conv_shape, .tensors = conv_tensors, .init = conv_init,
    .prepare = conv_prepare, .release = conv_release,
    .forward = conv_forward, .backward = conv_backward,
};
