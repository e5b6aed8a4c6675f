/*
 * flatten.c - torch.nn.Flatten(): [C, H, W] (or [T, F]) -> [C*H*W].
 *
 * Plain data are already row-major per sample, so forward and backward
 * copy. A blocked input (nChw{B}c, the layout convolutions keep; see
 * bp_net_prepare) is where the network returns to plain data: the forward
 * gathers each channel's values into torch's order, the backward scatters
 * the gradient back into the blocked layout. In a bf16 network's slot that
 * blocked input may be bfloat16: the forward widens it to float, the
 * backward rounds the float gradient to bfloat16.
 */
#include "layer.h"

#include <string.h>

static bp_status flatten_shape(bp_layer *L, int col, bp_error *err)
{
    (void)col, (void)err;
    L->out_shape = bp_shape_flat(L->in);
    return BP_OK;
}

/* C and S = H*W of a blocked input (blocked inputs are always [C, H, W]). */
static void flatten_dims(const bp_layer *L, int *C, int *S)
{
    *C = L->in_shape.dim[0];
    *S = L->in / *C;
}

/* y = x viewed as [n, C*H*W]: y[b, c*S + s] = x[b, c, s] */
static void flatten_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n, int t)
{
    int blk = bp_blk_in(net, L, n, t);
    if (blk == 1) {
        memcpy(y, x, (size_t)n * L->out * sizeof(bp_real));
        return;
    }
    int C, S;
    flatten_dims(L, &C, &S);
    if (bp_bf_in(net, L, n, t)) {
        /* The end of a bf16 network's bfloat16 chain: widened to float,
         * the samples split across the threads (memory-bound, as the
         * elementwise kernels: ELEM_GRAIN in src/kernels.c). */
        const uint16_t *xh = (const uint16_t *)(const void *)x;
        int t_n = bp_threads_for((double)n * L->in, 65536.0);
#pragma omp parallel for num_threads(t_n) schedule(static) if (t_n > 1)
        for (int b = 0; b < n; b++)
            for (int c = 0; c < C; c++) {
                const uint16_t *xc = xh + bp_blk_at(blk, C, S, b, c, 0);
                bp_real *yc = y + ((size_t)b * C + c) * S;
                for (int s = 0; s < S; s++) yc[s] = (bp_real)bp_bf16_wide(xc[(size_t)s * blk]);
            }
        return;
    }
    int t_n = bp_threads_for((double)n * L->in, 65536.0); /* as the bf16 path */
#pragma omp parallel for num_threads(t_n) schedule(static) if (t_n > 1)
    for (int b = 0; b < n; b++)
        for (int c = 0; c < C; c++) {
            const bp_real *xc = x + bp_blk_at(blk, C, S, b, c, 0);
            bp_real *yc = y + ((size_t)b * C + c) * S;
            for (int s = 0; s < S; s++) yc[s] = xc[(size_t)s * blk];
        }
}

/* dx = dy viewed as [n, C, H, W]: dx[b, c, s] = dy[b, c*S + s] */
static void flatten_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dparam,
                             const bp_real *dy, const bp_real *x, const bp_real *y, int n)
{
    (void)dparam, (void)x, (void)y;
    if (!dx) return;
    int blk = bp_blk_in(net, L, n, 1);
    if (blk == 1) {
        memcpy(dx, dy, (size_t)n * L->in * sizeof(bp_real));
        return;
    }
    int C, S;
    flatten_dims(L, &C, &S);
    if (bp_bf_in(net, L, n, 1)) {
        /* dx bfloat16: each value rounded (to nearest even); split as the
         * forward. */
        int t_n = bp_threads_for((double)n * L->in, 65536.0);
#pragma omp parallel for num_threads(t_n) schedule(static) if (t_n > 1)
        for (int b = 0; b < n; b++)
            for (int c = 0; c < C; c++) {
                size_t o = bp_blk_at(blk, C, S, b, c, 0);
                const bp_real *gc = dy + ((size_t)b * C + c) * S;
                for (int s = 0; s < S; s++) bp_act_set(dx, 1, o + (size_t)s * blk, gc[s]);
            }
        return;
    }
    int t_n = bp_threads_for((double)n * L->in, 65536.0);
#pragma omp parallel for num_threads(t_n) schedule(static) if (t_n > 1)
    for (int b = 0; b < n; b++)
        for (int c = 0; c < C; c++) {
            bp_real *dc = dx + bp_blk_at(blk, C, S, b, c, 0);
            const bp_real *gc = dy + ((size_t)b * C + c) * S;
            for (int s = 0; s < S; s++) dc[(size_t)s * blk] = gc[s];
        }
}

const bp_layer_ops bp_flatten_ops = {
    .word = "flatten", .kind = BP_FLATTEN, .usage = "flatten", .layout = BP_BLK_END,
    .bf16 = BP_BF16_END,
    .shape = flatten_shape, .forward = flatten_forward, .backward = flatten_backward,
};
