/*
 * flatten.c - torch.nn.Flatten(): [C, H, W] (or [T, F]) -> [C*H*W]. The
 * data are already row-major per sample, so forward and backward copy.
 */
#include "layer.h"

#include <string.h>

static bp_status flatten_shape(bp_layer *L, int col, bp_error *err)
{
    (void)col, (void)err;
    L->out_shape = bp_shape_flat(L->in);
    return BP_OK;
}

/* y = x viewed as [n, C*H*W] */
static void flatten_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n, int t)
{
    (void)net, (void)t;
    memcpy(y, x, (size_t)n * L->out * sizeof(bp_real));
}

/* dx = dy viewed as [n, C, H, W] */
static void flatten_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dparam,
                             const bp_real *dy, const bp_real *x, const bp_real *y, int n)
{
    (void)net, (void)dparam, (void)x, (void)y;
    if (dx) memcpy(dx, dy, (size_t)n * L->in * sizeof(bp_real));
}

const bp_layer_ops bp_flatten_ops = {
    .word = "flatten", .kind = BP_FLATTEN, .usage = "flatten",
    .shape = flatten_shape, .forward = flatten_forward, .backward = flatten_backward,
};
