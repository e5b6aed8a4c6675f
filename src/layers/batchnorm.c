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
 * oneDNN's batch-normalization primitive; the backward too on a blocked
 * input (after a conv, nChw{B}c: oneDNN's JIT kernels), and on the
 * reference loop on a plain one (faster there, see bn_backward). In a bf16
 * network's slot its blocked x, y, dx and dy may be bfloat16 (oneDNN's
 * bf16 batch normalization; statistics and parameters stay float).
 *
 * Synchronized (data-parallel training with sync_batchnorm, net->comm):
 * the sums behind mean, var, dbeta and dgamma are summed over the ranks,
 * whose slices make a global batch of net->global_n samples, so each rank
 * normalizes and differentiates as one process would on the whole batch
 * (torch's SyncBatchNorm). Three blocking reductions of C doubles per step
 * (sum x; sum (x - mean)^2; then sum dy and sum dy xhat together); the
 * parameter gradients stay each rank's own part, summed with the others.
 */
#include "layer.h"
#include "../cnn_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BN_EPS 1e-5
#define BN_MOMENTUM 0.1

/* A slot's primitives: `train` (batch statistics, and the backward; NULL
 * in an inference slot) and `infer` (running statistics: evaluation, and
 * a frozen layer in training), both for the slot's layout. */
typedef struct bn_fast {
    bp_bn_prim *train, *infer;
    int training;
    int relu; /* both compute the relu that follows too (bn_fused_next) */
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

/* The workspace: mean and invstd [C] each, then (at an 8-byte boundary)
 * 2 C doubles for the synchronized sums. */
static size_t bn_sums_offset(const bp_layer *L)
{
    return (2 * (size_t)bn_channels(L) * sizeof(bp_real) + 7) & ~(size_t)7;
}

static uint64_t bn_ws(const bp_layer *L, int batch)
{
    (void)batch;
    return bn_sums_offset(L) + 2 * (uint64_t)bn_channels(L) * sizeof(double);
}

static double *bn_sums(const bp_layer *L)
{
    return (double *)(void *)((unsigned char *)L->ws + bn_sums_offset(L));
}

static int bn_synced(const bp_net *net, const bp_layer *L)
{
    return net->sync_bn && net->comm && net->comm->size > 1 && net->global_n > 0 && !L->frozen;
}

/* The synchronized passes walk x [n, C, S] in memory order (plain: blk 1;
 * nChw{blk}c: C a multiple of blk), each row of `blk` channels at
 * x + row(...) + j, channel c = cb blk + j: contiguous, vectorizable, and
 * for each channel the same order over (sample, position) as the
 * reference loop (bp_bn_forward_train_ref). */
static inline size_t bn_row(int C, int S, int blk, int b, int cb, int k)
{
    return (size_t)b * C * S + ((size_t)cb * S + k) * blk;
}

/* Training forward over the ranks' global batch (layout blk). */
static void bn_forward_sync(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n, int blk)
{
    int C = bn_channels(L), S = bn_spatial(L), CB = C / blk;
    bp_real *mean = L->ws, *invstd = (bp_real *)L->ws + C;
    double *mu = bn_sums(L), *sq = mu + C; /* sums, then mean and sum of squares, then invstd */
    const long M = (long)(net->global_n > n ? net->global_n : n) * S;
    memset(mu, 0, 2 * (size_t)C * sizeof(double));
    for (int b = 0; b < n; b++)
        for (int cb = 0; cb < CB; cb++)
            for (int k = 0; k < S; k++) {
                const bp_real *r = x + bn_row(C, S, blk, b, cb, k);
                double *a = mu + (size_t)cb * blk;
                for (int j = 0; j < blk; j++) a[j] += r[j];
            }
    if (bp_comm_sum(net->comm, mu, (size_t)C, BP_COMM_F64)) {
        bp_layer_fail(y, (size_t)n * L->out);
        return;
    }
    for (int c = 0; c < C; c++) mu[c] /= (double)M;
    for (int b = 0; b < n; b++)
        for (int cb = 0; cb < CB; cb++)
            for (int k = 0; k < S; k++) {
                const bp_real *r = x + bn_row(C, S, blk, b, cb, k);
                const double *m = mu + (size_t)cb * blk;
                double *a = sq + (size_t)cb * blk;
                for (int j = 0; j < blk; j++) {
                    double d = r[j] - m[j];
                    a[j] += d * d;
                }
            }
    if (bp_comm_sum(net->comm, sq, (size_t)C, BP_COMM_F64)) {
        bp_layer_fail(y, (size_t)n * L->out);
        return;
    }
    for (int c = 0; c < C; c++) {
        double var = sq[c] / (double)M;
        sq[c] = 1 / sqrt(var + BN_EPS);
        mean[c] = (bp_real)mu[c];
        invstd[c] = (bp_real)sq[c];
        bp_bn_running_update(L->buf, L->buf + C, c, mu[c], var, M, BN_MOMENTUM);
    }
    const bp_real *gamma = L->w, *beta = L->b;
    for (int b = 0; b < n; b++)
        for (int cb = 0; cb < CB; cb++)
            for (int k = 0; k < S; k++) {
                size_t o = bn_row(C, S, blk, b, cb, k);
                int c0 = cb * blk;
                for (int j = 0; j < blk; j++)
                    y[o + j] = (bp_real)(gamma[c0 + j] * (x[o + j] - mu[c0 + j]) * sq[c0 + j] +
                                         beta[c0 + j]);
            }
}

/* Training backward over the ranks' global batch: dgamma and dbeta are
 * this rank's part (the trainer sums them), dx uses the global sums. */
static void bn_backward_sync(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dgamma,
                             bp_real *dbeta, const bp_real *dy, const bp_real *x, int n, int blk)
{
    int C = bn_channels(L), S = bn_spatial(L), CB = C / blk;
    const bp_real *mean = L->ws, *invstd = (const bp_real *)L->ws + C;
    double *db = bn_sums(L), *dg = db + C;
    const long M = (long)(net->global_n > n ? net->global_n : n) * S;
    memset(db, 0, 2 * (size_t)C * sizeof(double));
    for (int b = 0; b < n; b++)
        for (int cb = 0; cb < CB; cb++)
            for (int k = 0; k < S; k++) {
                size_t o = bn_row(C, S, blk, b, cb, k);
                int c0 = cb * blk;
                for (int j = 0; j < blk; j++) {
                    double g = dy[o + j];
                    db[c0 + j] += g;
                    dg[c0 + j] += g * (x[o + j] - (double)mean[c0 + j]) * (double)invstd[c0 + j];
                }
            }
    for (int c = 0; c < C; c++) {
        if (dgamma) dgamma[c] = (bp_real)dg[c];
        if (dbeta) dbeta[c] = (bp_real)db[c];
    }
    if (bp_comm_sum(net->comm, db, 2 * (size_t)C, BP_COMM_F64)) {
        bp_layer_fail(dx, (size_t)n * L->in);
        return;
    }
    if (!dx) return;
    for (int b = 0; b < n; b++)
        for (int cb = 0; cb < CB; cb++)
            for (int k = 0; k < S; k++) {
                size_t o = bn_row(C, S, blk, b, cb, k);
                int c0 = cb * blk;
                for (int j = 0; j < blk; j++) {
                    int c = c0 + j;
                    double mu = mean[c], is = invstd[c], scale = L->w[c] * is / (double)M;
                    double xhat = (x[o + j] - mu) * is;
                    dx[o + j] = (bp_real)(scale * ((double)M * dy[o + j] - db[c] - xhat * dg[c]));
                }
            }
}

/* The primitive for the slot's layout (blk) and type (bf: bfloat16), the
 * relu after it fused or not, for training or inference. */
static bp_bn_prim *bn_prim(bp_net *net, int n, int C, int S, int training, int blk, int bf,
                           int relu)
{
    if (bf) return bp_bn_prim_create_bf16(net->gemm, n, C, S, BN_EPS, training, blk, relu);
    return relu ? bp_bn_prim_create_relu(net->gemm, n, C, S, BN_EPS, training, blk)
                : bp_bn_prim_create(net->gemm, n, C, S, BN_EPS, training, blk);
}

static int bn_prepare(bp_net *net, bp_layer *L, int slot, int n, int training, int need_dx)
{
    (void)need_dx;
    bn_fast *f = L->fast[slot];
    if (f && (f->training || !training)) return f->infer && (!training || f->train);
    if (!f) {
        f = calloc(1, sizeof *f);
        if (!f) return 0;
        L->fast[slot] = f;
    }
    int C = bn_channels(L), S = bn_spatial(L), blk = L->blk_in[slot], bf = L->bf_in[slot];
    /* Synchronized statistics are loops of this file on float data: a
     * bfloat16 slot is refused (bp_net_prepare plans it again in float). */
    if (bf && net->sync_bn) return 0;
    if (!f->infer) {
        /* A relu right after, on the same blocked layout: oneDNN applies it
         * in the same pass (dnnl_fuse_norm_relu), and the relu layer's own
         * passes are skipped in this slot (net.c, train.c). Not with
         * synchronized statistics, whose forward and backward are loops
         * of this file. */
        int i = (int)(L - net->layers);
        const bp_layer *next = i + 1 < net->n_layers ? &net->layers[i + 1] : NULL;
        f->relu = blk > 1 && next && next->kind == BP_RELU && next->blk_in[slot] == blk &&
                  !net->sync_bn;
        f->infer = bn_prim(net, n, C, S, 0, blk, bf, f->relu);
    }
    if (training)
        f->train = bn_prim(net, n, C, S, 1, blk, bf, f->relu);
    f->training = training;
    return f->infer && (!training || f->train);
}

static int bn_fused_next(const bp_layer *L, int slot)
{
    const bn_fast *f = L->fast[slot];
    return f && f->relu;
}

static void bn_release(bp_layer *L, int slot)
{
    for (int q = 0; q < BP_MM_SLOTS; q++) {
        if (!bp_slot_selected(q, slot)) continue;
        bn_fast *f = L->fast[q];
        if (f) {
            bp_bn_prim_free(f->train);
            bp_bn_prim_free(f->infer);
        }
        free(f);
        L->fast[q] = NULL;
    }
}

static bn_fast *bn_fast_for(const bp_net *net, const bp_layer *L, int n, int training)
{
    int q = bp_net_slot(net, n, training);
    return q < 0 ? NULL : L->fast[q];
}

/* x and y in the slot's layout (plain, or nChw{B}c after a conv). */
static void bn_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n,
                       int training)
{
    int C = bn_channels(L), S = bn_spatial(L);
    bp_real *gamma = L->w, *beta = L->b, *rm = L->buf, *rv = L->buf + C;
    bn_fast *f = bn_fast_for(net, L, n, training);
    int blocked = bp_blk_in(net, L, n, training) > 1;
    if (training && bn_synced(net, L)) {
        L->count++;
        bn_forward_sync(net, L, y, x, n, bp_blk_in(net, L, n, training));
        return;
    }
    if (training && !L->frozen) {
        bp_real *mean = L->ws, *invstd = (bp_real *)L->ws + C;
        L->count++;
        if (f && f->train &&
            bp_bn_prim_forward_train(f->train, y, mean, invstd, x, gamma, beta, rm, rv, BN_MOMENTUM))
            return;
        if (blocked) bp_layer_fail(y, (size_t)n * L->out);
        else bp_bn_forward_train_ref(y, mean, invstd, x, gamma, beta, rm, rv, n, C, S, BN_EPS,
                                     BN_MOMENTUM);
        return;
    }
    if (f && f->infer && bp_bn_prim_forward_infer(f->infer, y, x, gamma, beta, rm, rv)) return;
    if (blocked) bp_layer_fail(y, (size_t)n * L->out);
    else bp_bn_forward_infer_ref(y, x, gamma, beta, rm, rv, n, C, S, BN_EPS);
}

/* Training mode, from the saved mean and invstd (xhat = (x - mean) invstd):
 *   dgamma = sum dy xhat, dbeta = sum dy,
 *   dx = gamma invstd / M (M dy - dbeta - xhat dgamma).
 * Frozen (running statistics, y = gamma (x - rm) r + beta, r = 1/sqrt(rv + eps)):
 *   dx = dy gamma r, dgamma = sum dy (x - rm) r, dbeta = sum dy. */
static void bn_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dparam,
                        const bp_real *dy, const bp_real *x, const bp_real *y, int n)
{
    int C = bn_channels(L), S = bn_spatial(L), blk = bp_blk_in(net, L, n, 1);
    bp_real *dgamma = dparam, *dbeta = dparam ? dparam + C : NULL;
    if (L->frozen) {
        /* With the relu fused, y is its output and dy its gradient: the
         * relu passes dy where y > 0. */
        bn_fast *f = bn_fast_for(net, L, n, 1);
        int relu = f && f->relu, bf = bp_bf_in(net, L, n, 1); /* x, y, dx, dy alike */
        for (int c = 0; c < C; c++) {
            double r = 1 / sqrt((double)L->buf[C + c] + BN_EPS), sg = 0, sb = 0;
            for (int b = 0; b < n; b++)
                for (int k = 0; k < S; k++) {
                    size_t o = bp_blk_at(blk, C, S, b, c, k);
                    bp_real g = relu && !(bp_act_get(y, bf, o) > 0) ? 0 : bp_act_get(dy, bf, o);
                    if (dx) bp_act_set(dx, bf, o, (bp_real)(g * L->w[c] * r));
                    sg += (double)g * (bp_act_get(x, bf, o) - L->buf[c]) * r;
                    sb += g;
                }
            if (dgamma) dgamma[c] = (bp_real)sg;
            if (dbeta) dbeta[c] = (bp_real)sb;
        }
        return;
    }
    if (bn_synced(net, L)) {
        bn_backward_sync(net, L, dx, dgamma, dbeta, dy, x, n, blk);
        return;
    }
    const bp_real *mean = L->ws, *invstd = (const bp_real *)L->ws + C;
    if (blk > 1) {
        /* Blocked: oneDNN's JIT backward. */
        bn_fast *f = bn_fast_for(net, L, n, 1);
        if (f && f->train &&
            bp_bn_prim_backward(f->train, dx, dgamma, dbeta, dy, x, mean, invstd, L->w))
            return;
        bp_layer_fail(dx, (size_t)n * L->in);
        bp_layer_fail(dparam, L->n_params);
        return;
    }
    /* Plain: the reference loop, not bp_bn_prim_backward: on plain
     * [N, C, H, W] data oneDNN 2.6's batch-norm backward (ncsp_bnorm) took
     * 13.7 ms where the loop takes 8.9 (W5's first batchnorm, batch 128,
     * one thread; bench/NOTES.md). */
    bp_bn_backward_ref(dx, dgamma, dbeta, dy, x, mean, invstd, L->w, n, C, S);
}

const bp_layer_ops bp_batchnorm_ops = {
    .word = "batchnorm", .kind = BP_BATCHNORM, .usage = "batchnorm",
    .parametric = 1, .layout = BP_BLK_KEEP, .bf16 = BP_BF16_KEEP,
    .shape = bn_shape, .tensors = bn_tensors, .init = bn_init, .ws_bytes = bn_ws,
    .prepare = bn_prepare, .release = bn_release, .fused_next = bn_fused_next,
    .forward = bn_forward, .backward = bn_backward,
};
