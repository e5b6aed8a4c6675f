/*
 * pool.c - pooling: maxpool(K[,stride]) = torch.nn.MaxPool2d(K, stride),
 * avgpool(K[,stride]) = AvgPool2d(K, stride) (stride defaults to K; no
 * padding, floor mode), global_avgpool = AdaptiveAvgPool2d(1).
 *
 *   max:    y[n,c,i,j] = max_{p,q < K} x[n,c, i*s + p, j*s + q]
 *   avg:    y[n,c,i,j] = 1/K^2 sum_{p,q < K} x[n,c, i*s + p, j*s + q]
 *   global: y[n,c,0,0] = 1/(H W) sum_{h,w} x[n,c,h,w]
 *
 * Average pooling runs on oneDNN's pooling primitive (src/pool_kernels.c);
 * max pooling too on blocked data (nChw{B}c, after a conv), and on its
 * reference loop on plain data, where that was faster (pool_prepare),
 * keeping the argmax in the layer's workspace; in a bf16 network's slot
 * both take bfloat16 blocked data (oneDNN's bf16 pooling). global_avgpool
 * takes either layout and type and returns plain float [n, C].
 */
#include "layer.h"
#include "../cnn_kernels.h"

#include <stdlib.h>

typedef struct pool_fast {
    bp_pool_prim *prim;
    int training;
    int used;        /* the last forward of this batch size ran the primitive */
} pool_fast;

static bp_status pool_check(const bp_layer_desc *d, int col, bp_error *err)
{
    if (d->kernel < 1 || d->kernel > 1024 || d->stride < 1 || d->stride > 1024)
        return bp_fail(err, BP_ESPEC, "spec:1:%d: pooling needs 1 <= K <= 1024 and 1 <= stride "
                       "<= 1024", col);
    return BP_OK;
}

static bp_pool_geom pool_geom(const bp_layer *L, int n)
{
    bp_pool_geom g = {n, L->in_shape.dim[0], L->in_shape.dim[1], L->in_shape.dim[2],
                      L->desc.kernel, L->desc.stride, 0, 0};
    bp_pool_geom_init(&g);
    return g;
}

static bp_status pool_shape(bp_layer *L, int col, bp_error *err)
{
    if (L->in_shape.rank != 3) return bp_need_image(L, col, err);
    bp_pool_geom g = pool_geom(L, 1);
    if (!bp_pool_geom_init(&g))
        return bp_fail(err, BP_ESPEC, "spec:1:%d: %s(%d) pools its input %dx%d to nothing", col,
                       L->ops->word, g.K, g.H, g.W);
    L->out_shape = bp_shape3(g.C, g.OH, g.OW);
    return BP_OK;
}

/* argmax of max pooling's reference path: int32 [n, out] */
static uint64_t maxpool_ws(const bp_layer *L, int batch)
{
    return bp_mul_sat(bp_mul_sat((uint64_t)batch, (uint64_t)L->out), sizeof(int32_t));
}

static int pool_prepare(bp_net *net, bp_layer *L, int slot, int n, int training, int need_dx)
{
    (void)need_dx;
    int blk = L->blk_in[slot];
    /* Max pooling on plain data stays on the reference loop: there oneDNN
     * 2.6's pooling (simple_nchw forward, 6.1 ms; backward 6.1 ms) lost to
     * it (5.7 ms and 2.1 ms) on W5's first maxpool at batch 128, one
     * thread (bench/NOTES.md). On blocked data (after a conv) it runs
     * oneDNN's JIT kernels; average pooling always uses the primitive. */
    if (L->kind == BP_MAXPOOL && blk == 1) return 1;
    pool_fast *f = L->fast[slot];
    if (f && (f->training || !training)) return f->prim != NULL;
    if (!f) {
        f = calloc(1, sizeof *f);
        if (!f) return 0;
        L->fast[slot] = f;
    }
    bp_pool_prim_free(f->prim);
    bp_pool_geom g = pool_geom(L, n);
    f->prim = L->bf_in[slot]
                  ? bp_pool_prim_create_bf16(net->gemm, &g, L->kind == BP_MAXPOOL, training, blk)
                  : bp_pool_prim_create(net->gemm, &g, L->kind == BP_MAXPOOL, training, blk);
    f->training = training && f->prim;
    return f->prim != NULL;
}

static void pool_release(bp_layer *L, int slot)
{
    for (int q = 0; q < BP_MM_SLOTS; q++) {
        if (!bp_slot_selected(q, slot)) continue;
        pool_fast *f = L->fast[q];
        if (f) bp_pool_prim_free(f->prim);
        free(f);
        L->fast[q] = NULL;
    }
}

static pool_fast *pool_fast_for(const bp_net *net, const bp_layer *L, int n, int training)
{
    int q = bp_net_slot(net, n, training);
    return q < 0 ? NULL : L->fast[q];
}

/* x and y in the slot's layout (plain, or nChw{B}c after a conv). */
static void pool_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n,
                         int training)
{
    pool_fast *f = pool_fast_for(net, L, n, training);
    if (f) f->used = 0;
    /* A training forward of max pooling must keep what its backward needs:
     * the primitive's workspace (a training primitive) or the argmax. */
    if (f && f->prim && (f->training || !training) && bp_pool_prim_forward(f->prim, y, x)) {
        f->used = 1;
        return;
    }
    if (bp_blk_in(net, L, n, training) > 1) {
        bp_layer_fail(y, (size_t)n * L->out);
        return;
    }
    /* The argmax only for a backward (the workspace is the training
     * reservation's; an inference pass may be larger). */
    bp_pool_geom g = pool_geom(L, n);
    if (L->kind == BP_MAXPOOL) bp_maxpool_forward_ref(y, training ? L->ws : NULL, x, &g);
    else bp_avgpool_forward_ref(y, x, &g);
}

/* max: dx[n,c, argmax] += dy[n,c,i,j] for each window, 0 elsewhere;
 * avg: dx[n,c, i*s+p, j*s+q] += dy[n,c,i,j] / K^2 for each window. */
static void pool_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dparam,
                          const bp_real *dy, const bp_real *x, const bp_real *y, int n)
{
    (void)dparam, (void)x, (void)y;
    if (!dx) return;
    pool_fast *f = pool_fast_for(net, L, n, 1);
    if (f && f->used && f->training && bp_pool_prim_backward(f->prim, dx, dy)) return;
    if (bp_blk_in(net, L, n, 1) > 1) {
        bp_layer_fail(dx, (size_t)n * L->in);
        return;
    }
    bp_pool_geom g = pool_geom(L, n);
    if (L->kind == BP_MAXPOOL) bp_maxpool_backward_ref(dx, dy, L->ws, &g);
    else bp_avgpool_backward_ref(dx, dy, &g);
}

/* The argmax of every window, recomputed from x (the kinks of max pooling
 * are where the argmax changes), x in the layout of a training pass. */
static size_t maxpool_kinks(const bp_net *net, const bp_layer *L, const bp_real *x, int n,
                            unsigned char *sig)
{
    size_t m = (size_t)n * L->out * sizeof(int32_t);
    if (!sig) return m;
    bp_pool_geom g = pool_geom(L, n);
    int blk = bp_blk_in(net, L, n, 1), S = g.H * g.W;
    int32_t *idx = (int32_t *)(void *)sig;
    for (int b = 0; b < g.N; b++)
        for (int c = 0; c < g.C; c++) {
            const bp_real *xp = x + bp_blk_at(blk, g.C, S, b, c, 0);
            for (int i = 0; i < g.OH; i++)
                for (int j = 0; j < g.OW; j++) {
                    int best = (i * g.stride) * g.W + j * g.stride;
                    for (int p = 0; p < g.K; p++)
                        for (int q = 0; q < g.K; q++) {
                            int at = (i * g.stride + p) * g.W + j * g.stride + q;
                            if (xp[(size_t)at * blk] > xp[(size_t)best * blk]) best = at;
                        }
                    *idx++ = best;
                }
        }
    return m;
}

static bp_status gap_shape(bp_layer *L, int col, bp_error *err)
{
    if (L->in_shape.rank != 3) return bp_need_image(L, col, err);
    L->out_shape = bp_shape3(L->in_shape.dim[0], 1, 1);
    return BP_OK;
}

/* x in the slot's layout, y [n, C] plain float. A blocked x's mean is the
 * same sum: over each channel's S values, found B apart (bfloat16 ones in
 * a bf16 network's slot: the chain of bfloat16 activations ends here). */
static void gap_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n, int t)
{
    int C = L->in_shape.dim[0], S = L->in_shape.dim[1] * L->in_shape.dim[2];
    int blk = bp_blk_in(net, L, n, t);
    if (blk == 1) {
        bp_global_avgpool_forward_ref(y, x, n, C, L->in_shape.dim[1], L->in_shape.dim[2]);
        return;
    }
    int bf = bp_bf_in(net, L, n, t);
    for (int b = 0; b < n; b++)
        for (int c = 0; c < C; c++) {
            size_t o = bp_blk_at(blk, C, S, b, c, 0);
            double acc = 0;
            for (int k = 0; k < S; k++) acc += bp_act_get(x, bf, o + (size_t)k * blk);
            y[(size_t)b * C + c] = (bp_real)(acc / S);
        }
}

/* dx[n,c,h,w] = dy[n,c] / (H W) (dx in x's layout and type) */
static void gap_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dparam,
                         const bp_real *dy, const bp_real *x, const bp_real *y, int n)
{
    (void)dparam, (void)x, (void)y;
    if (!dx) return;
    int C = L->in_shape.dim[0], S = L->in_shape.dim[1] * L->in_shape.dim[2];
    int blk = bp_blk_in(net, L, n, 1);
    if (blk == 1) {
        bp_global_avgpool_backward_ref(dx, dy, n, C, L->in_shape.dim[1], L->in_shape.dim[2]);
        return;
    }
    int bf = bp_bf_in(net, L, n, 1);
    for (int b = 0; b < n; b++)
        for (int c = 0; c < C; c++) {
            size_t o = bp_blk_at(blk, C, S, b, c, 0);
            bp_real v = (bp_real)(dy[(size_t)b * C + c] / (double)S);
            for (int k = 0; k < S; k++) bp_act_set(dx, bf, o + (size_t)k * blk, v);
        }
}

const bp_layer_ops bp_maxpool_ops = {
    .word = "maxpool", .kind = BP_MAXPOOL, .usage = "maxpool(K[,stride])",
    .n_int_min = 1, .n_int_max = 2, .int_slot = {BP_ARG_KERNEL, BP_ARG_STRIDE},
    .check = pool_check, .shape = pool_shape, .ws_bytes = maxpool_ws, .layout = BP_BLK_KEEP,
    .bf16 = BP_BF16_KEEP,
    .prepare = pool_prepare, .release = pool_release,
    .forward = pool_forward, .backward = pool_backward, .kinks = maxpool_kinks,
};

const bp_layer_ops bp_avgpool_ops = {
    .word = "avgpool", .kind = BP_AVGPOOL, .usage = "avgpool(K[,stride])",
    .n_int_min = 1, .n_int_max = 2, .int_slot = {BP_ARG_KERNEL, BP_ARG_STRIDE},
    .check = pool_check, .shape = pool_shape, .layout = BP_BLK_KEEP, .bf16 = BP_BF16_KEEP,
    .prepare = pool_prepare, .release = pool_release,
    .forward = pool_forward, .backward = pool_backward,
};

const bp_layer_ops bp_global_avgpool_ops = {
    .word = "global_avgpool", .kind = BP_GLOBAL_AVGPOOL, .usage = "global_avgpool",
    .shape = gap_shape, .layout = BP_BLK_END, .bf16 = BP_BF16_END,
    .forward = gap_forward, .backward = gap_backward,
};
