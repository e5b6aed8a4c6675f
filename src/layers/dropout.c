/*
 * dropout.c - torch.nn.Dropout(p), on any shape.
 *
 * Training: y = x * mask, mask = 0 with probability p, else 1 / (1 - p),
 * drawn from the network's RNG; inference: y = x. The mask is the layer's
 * workspace [n, F], in the layout of x (elementwise, any layout).
 */
#include "layer.h"
#include "../kernels.h"

#include <string.h>

static bp_status dropout_check(const bp_layer_desc *d, int col, bp_error *err)
{
    if (!(d->param >= 0 && d->param < 1))
        return bp_fail(err, BP_ESPEC, "spec:1:%d: dropout probability must be in [0, 1), got %g",
                       col, d->param);
    return BP_OK;
}

static bp_status dropout_shape(bp_layer *L, int col, bp_error *err)
{
    (void)col, (void)err;
    L->out_shape = L->in_shape;
    return BP_OK;
}

static uint64_t dropout_ws(const bp_layer *L, int batch)
{
    return bp_mul_sat(bp_mul_sat((uint64_t)batch, (uint64_t)L->out), sizeof(bp_real));
}

/* x and y float, or bfloat16 in a bf16 network's blocked chain (then y =
 * x mask rounded to bfloat16; the mask stays float). */
static void dropout_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n,
                            int training)
{
    size_t m = (size_t)n * L->out;
    int bf = bp_bf_in(net, L, n, training);
    if (!(training && L->param > 0)) {
        memcpy(y, x, m * (bf ? sizeof(uint16_t) : sizeof(bp_real)));
        return;
    }
    bp_real *mask = L->ws;
    bp_real keep = (bp_real)(1 / (1 - L->param));
    for (size_t k = 0; k < m; k++) mask[k] = bp_rng_uniform(&net->rng) < L->param ? 0 : keep;
#ifndef BP_DOUBLE
    if (bf) {
        bp_k_mul_bf16((uint16_t *)(void *)y, (const uint16_t *)(const void *)x, mask, m);
        return;
    }
#endif
    bp_k_mul(y, x, mask, m);
}

/* Differentiates y = x mask: dx = dy mask. */
static void dropout_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dparam,
                             const bp_real *dy, const bp_real *x, const bp_real *y, int n)
{
    (void)dparam, (void)x, (void)y;
    if (!dx) return;
    size_t m = (size_t)n * L->out;
    int bf = bp_bf_in(net, L, n, 1);
#ifndef BP_DOUBLE
    if (bf && L->param > 0) {
        bp_k_mul_bf16((uint16_t *)(void *)dx, (const uint16_t *)(const void *)dy, L->ws, m);
        return;
    }
#endif
    if (L->param > 0) bp_k_mul(dx, dy, L->ws, m);
    else memcpy(dx, dy, m * (bf ? sizeof(uint16_t) : sizeof(bp_real)));
}

const bp_layer_ops bp_dropout_ops = {
    .word = "dropout", .kind = BP_DROPOUT, .usage = "dropout(p)",
    .real_arg = 1, .real_def = 0.5, .layout = BP_BLK_KEEP, .bf16 = BP_BF16_KEEP,
    .check = dropout_check, .shape = dropout_shape, .ws_bytes = dropout_ws,
    .forward = dropout_forward, .backward = dropout_backward,
};
