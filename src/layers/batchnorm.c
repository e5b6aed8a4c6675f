/*
 * batchnorm.c - batch normalization: torch.nn.BatchNorm1d(F) on [F],
 * BatchNorm2d(C) on [C, H, W]; eps 1e-5, momentum 0.1.
 *
 * Training (and not frozen), per channel c over the batch's N*S values
 * (S = H*W, or 1 on [F]):
 *   mean = E[x], var = E[(x - mean)^2] (biased), xhat = (x - mean) / sqrt(var + eps)
 *   y = gamma xhat + beta
 *   running_mean = 0.9 running_mean + 0.1 mean
 *   running_var  = 0.9 running_var  + 0.1 var * M / (M - 1)   (unbiased, M = N*S)
 *   num_batches_tracked += 1
 * Evaluation, prediction and a frozen layer (fine-tuning):
 *   y = gamma (x - running_mean) / sqrt(running_var + eps) + beta
 * Parameters weight (gamma) [C] and bias (beta) [C]; buffers running_mean,
 * running_var [C] and num_batches_tracked (I64). The workspace keeps the
 * batch's mean and invstd [C] each for the backward. The forward runs on
 * oneDNN's batch-normalization primitive, the backward on the reference
 * loop (faster here, see bn_backward).
 */
#include "layer.h"
#include "../cnn_kernels.h"

#include <math.h>
#include <stdlib.h>

#define BN_EPS 1e-5
#define BN_MOMENTUM 0.1

typedef struct bn_fast {
    bp_bn_prim *prim;
    int training;
} bn_fast;

static int bn_channels(const bp_layer *L) { return L->in_shape.dim[0]; }
static int bn_spatial(const bp_layer *L) { return L->in / L->in_shape.dim[0]; }

static bp_status bn_shape(bp_layer *L, int col, bp_error *err)
{
    if (L->in_shape.rank == 2)
        return bp_fail(err, BP_ESPEC, "spec:1:%d: batchnorm on a sequence [T, F] is not "
                       "supported (put it on [F] or [C, H, W])", col);
    L->out_shape = L->in_shape;
    return BP_OK;
}

static int bn_tensors(const bp_layer *L, bp_tensor_spec *t)
{
    int64_t c = bn_channels(L);
    t[0] = (bp_tensor_spec){"weight", 1, {c}, 1, BP_DTYPE_F32};
    t[1] = (bp_tensor_spec){"bias", 1, {c}, 1, BP_DTYPE_F32};
    t[2] = (bp_tensor_spec){"running_mean", 1, {c}, 0, BP_DTYPE_F32};
    t[3] = (bp_tensor_spec){"running_var", 1, {c}, 0, BP_DTYPE_F32};
    t[4] = (bp_tensor_spec){"num_batches_tracked", 0, {0}, 0, BP_DTYPE_I64};
    return 5;
}

/* gamma 1, beta 0, running mean 0, running variance 1, count 0 (torch's). */
static void bn_init(bp_layer *L, bp_init scheme, int relu_next, bp_rng *rng)
{
    (void)scheme, (void)relu_next, (void)rng;
    int c = bn_channels(L);
    for (int k = 0; k < c; k++) {
        L->w[k] = 1;
        L->b[k] = 0;
        L->buf[k] = 0;
        L->buf[c + k] = 1;
    }
    L->count = 0;
}

static uint64_t bn_ws(const bp_layer *L, int batch)
{
    (void)batch;
    return 2 * (uint64_t)bn_channels(L) * sizeof(bp_real);
}

static void bn_prepare(bp_net *net, bp_layer *L, int slot, int n, int training, int need_dx)
{
    (void)need_dx;
    bn_fast *f = L->fast[slot];
    if (f && (f->training || !training)) return;
    if (!f) {
        f = calloc(1, sizeof *f);
        if (!f) return;
        L->fast[slot] = f;
    }
    bp_bn_prim_free(f->prim);
    f->prim = bp_bn_prim_create(net->gemm, n, bn_channels(L), bn_spatial(L), BN_EPS, training);
    f->training = training && f->prim;
}

static void bn_release(bp_layer *L)
{
    for (int q = 0; q < BP_MM_SLOTS; q++) {
        bn_fast *f = L->fast[q];
        if (f) bp_bn_prim_free(f->prim);
        free(f);
        L->fast[q] = NULL;
    }
}

static bn_fast *bn_fast_for(const bp_net *net, const bp_layer *L, int n)
{
    int q = bp_net_slot(net, n);
    return q < 0 ? NULL : L->fast[q];
}

static void bn_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n,
                       int training)
{
    int C = bn_channels(L), S = bn_spatial(L);
    bp_real *gamma = L->w, *beta = L->b, *rm = L->buf, *rv = L->buf + C;
    bn_fast *f = bn_fast_for(net, L, n);
    if (training && !L->frozen) {
        bp_real *mean = L->ws, *invstd = (bp_real *)L->ws + C;
        L->count++;
        if (f && f->training &&
            bp_bn_prim_forward_train(f->prim, y, mean, invstd, x, gamma, beta, rm, rv, BN_MOMENTUM))
            return;
        bp_bn_forward_train_ref(y, mean, invstd, x, gamma, beta, rm, rv, n, C, S, BN_EPS,
                                BN_MOMENTUM);
        return;
    }
    if (f && f->prim && bp_bn_prim_forward_infer(f->prim, y, x, gamma, beta, rm, rv)) return;
    bp_bn_forward_infer_ref(y, x, gamma, beta, rm, rv, n, C, S, BN_EPS);
}

/* Training mode, from the saved mean and invstd (xhat = (x - mean) invstd):
 *   dgamma = sum dy xhat, dbeta = sum dy,
 *   dx = gamma invstd / M (M dy - dbeta - xhat dgamma).
 * Frozen (running statistics, y = gamma (x - rm) r + beta, r = 1/sqrt(rv + eps)):
 *   dx = dy gamma r, dgamma = sum dy (x - rm) r, dbeta = sum dy. */
static void bn_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dparam,
                        const bp_real *dy, const bp_real *x, const bp_real *y, int n)
{
    (void)y;
    int C = bn_channels(L), S = bn_spatial(L);
    bp_real *dgamma = dparam, *dbeta = dparam ? dparam + C : NULL;
    if (L->frozen) {
        for (int c = 0; c < C; c++) {
            double r = 1 / sqrt((double)L->buf[C + c] + BN_EPS), sg = 0, sb = 0;
            for (int b = 0; b < n; b++) {
                size_t o = ((size_t)b * C + c) * S;
                for (int k = 0; k < S; k++) {
                    if (dx) dx[o + k] = (bp_real)(dy[o + k] * L->w[c] * r);
                    sg += (double)dy[o + k] * (x[o + k] - L->buf[c]) * r;
                    sb += dy[o + k];
                }
            }
            if (dgamma) dgamma[c] = (bp_real)sg;
            if (dbeta) dbeta[c] = (bp_real)sb;
        }
        return;
    }
    /* The reference loop, not bp_bn_prim_backward: on plain [N, C, H, W]
     * data oneDNN 2.6's batch-norm backward (ncsp_bnorm) took 13.7 ms where
     * the loop takes 8.9 (W5's first batchnorm, batch 128, one thread;
     * bench/NOTES.md). The forward stays on the primitive (as fast). */
    (void)net;
    const bp_real *mean = L->ws, *invstd = (const bp_real *)L->ws + C;
    bp_bn_backward_ref(dx, dgamma, dbeta, dy, x, mean, invstd, L->w, n, C, S);
}

const bp_layer_ops bp_batchnorm_ops = {
    .word = "batchnorm", .kind = BP_BATCHNORM, .usage = "batchnorm",
    .parametric = 1,
    .shape = bn_shape, .tensors = bn_tensors, .init = bn_init, .ws_bytes = bn_ws,
    .prepare = bn_prepare, .release = bn_release,
    .forward = bn_forward, .backward = bn_backward,
};
