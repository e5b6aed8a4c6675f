/*
 * pool_kernels.c - max, average and global average pooling (contracts in
 * cnn_kernels.h): the reference loops, which define the semantics (those
 * of torch.nn.MaxPool2d(K, stride) / AvgPool2d(K, stride) / AdaptiveAvg-
 * Pool2d(1): no padding, floor mode, windows may overlap), and oneDNN
 * pooling primitives for the float build.
 *
 * Layout: x [N, C, H, W], y [N, C, OH, OW], row-major; a window's top-left
 * input element of output (i, j) is (i*stride, j*stride).
 */
#include "cnn_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef BP_DOUBLE
#include <omp.h>
#endif

int bp_pool_geom_init(bp_pool_geom *g)
{
    if (g->N < 1 || g->C < 1 || g->H < 1 || g->W < 1 || g->K < 1 || g->stride < 1 || g->K > g->H ||
        g->K > g->W) {
        g->OH = g->OW = 0;
        return 0;
    }
    g->OH = (g->H - g->K) / g->stride + 1;
    g->OW = (g->W - g->K) / g->stride + 1;
    return 1;
}

/* ---- max pooling ----
 * y[n,c,i,j] = max_{p,q < K} x[n,c, i*s + p, j*s + q], idx = the argmax as
 * h*W + w. The scan is torch's CPU kernel: start from -inf at the window's
 * first element, take v when v > best or v is NaN. So the first maximum
 * wins a tie, any NaN beats every number (among several NaNs, the last). */
void bp_maxpool_forward_ref(bp_real *y, int32_t *idx, const bp_real *x, const bp_pool_geom *g)
{
    /* y, idx [N, C, OH, OW] (idx may be NULL); x [N, C, H, W] */
    const int H = g->H, W = g->W, K = g->K, s = g->stride, OH = g->OH, OW = g->OW;
    for (long nc = 0; nc < (long)g->N * g->C; nc++) {
        const bp_real *xp = x + nc * H * W;
        bp_real *yp = y + nc * OH * OW;
        int32_t *ip = idx ? idx + nc * OH * OW : NULL;
        for (int i = 0; i < OH; i++)
            for (int j = 0; j < OW; j++) {
                bp_real best = -INFINITY;
                int32_t at = (int32_t)(i * s * W + j * s);
                for (int p = 0; p < K; p++)
                    for (int q = 0; q < K; q++) {
                        int32_t k = (int32_t)((i * s + p) * W + j * s + q);
                        bp_real v = xp[k];
                        if (v > best || isnan(v)) {
                            best = v;
                            at = k;
                        }
                    }
                yp[i * OW + j] = best;
                if (ip) ip[i * OW + j] = at;
            }
    }
}

/* Backward of y[o] = x[idx[o]]: dx[k] = sum over outputs o with idx[o] = k
 * of dy[o] (an input that is the max of several overlapping windows gets
 * each one's dy). */
void bp_maxpool_backward_ref(bp_real *dx, const bp_real *dy, const int32_t *idx,
                             const bp_pool_geom *g)
{
    /* dx [N, C, H, W]; dy, idx [N, C, OH, OW] */
    const long plane = (long)g->H * g->W, oplane = (long)g->OH * g->OW;
    memset(dx, 0, sizeof(bp_real) * (size_t)g->N * g->C * plane);
    for (long nc = 0; nc < (long)g->N * g->C; nc++)
        for (long o = 0; o < oplane; o++)
            dx[nc * plane + idx[nc * oplane + o]] += dy[nc * oplane + o];
}

/* ---- average pooling ----
 * y[n,c,i,j] = 1/K^2 sum_{p,q < K} x[n,c, i*s + p, j*s + q] */
void bp_avgpool_forward_ref(bp_real *y, const bp_real *x, const bp_pool_geom *g)
{
    /* y [N, C, OH, OW]; x [N, C, H, W] */
    const int H = g->H, W = g->W, K = g->K, s = g->stride, OH = g->OH, OW = g->OW;
    for (long nc = 0; nc < (long)g->N * g->C; nc++) {
        const bp_real *xp = x + nc * H * W;
        for (int i = 0; i < OH; i++)
            for (int j = 0; j < OW; j++) {
                double acc = 0;
                for (int p = 0; p < K; p++)
                    for (int q = 0; q < K; q++) acc += xp[(i * s + p) * W + j * s + q];
                y[nc * OH * OW + i * OW + j] = (bp_real)(acc / ((double)K * K));
            }
    }
}

/* Backward of the line above: dx[n,c,h,w] = sum over the windows (i, j)
 * holding (h, w) of dy[n,c,i,j] / K^2. */
void bp_avgpool_backward_ref(bp_real *dx, const bp_real *dy, const bp_pool_geom *g)
{
    /* dx [N, C, H, W]; dy [N, C, OH, OW] */
    const int H = g->H, W = g->W, K = g->K, s = g->stride, OH = g->OH, OW = g->OW;
    const double inv = 1.0 / ((double)K * K);
    memset(dx, 0, sizeof(bp_real) * (size_t)g->N * g->C * H * W);
    for (long nc = 0; nc < (long)g->N * g->C; nc++) {
        bp_real *dxp = dx + nc * H * W;
        for (int i = 0; i < OH; i++)
            for (int j = 0; j < OW; j++) {
                bp_real share = (bp_real)(dy[nc * OH * OW + i * OW + j] * inv);
                for (int p = 0; p < K; p++)
                    for (int q = 0; q < K; q++) dxp[(i * s + p) * W + j * s + q] += share;
            }
    }
}

/* ---- global average pooling: y[n,c] = 1/(H W) sum_{h,w} x[n,c,h,w] ----
 * Cheap (one pass over x): the reference loop is also the fast path. */
void bp_global_avgpool_forward_ref(bp_real *y, const bp_real *x, int N, int C, int H, int W)
{
    /* y [N, C]; x [N, C, H, W] */
    const long plane = (long)H * W;
    for (long nc = 0; nc < (long)N * C; nc++) {
        double acc = 0;
        for (long k = 0; k < plane; k++) acc += x[nc * plane + k];
        y[nc] = (bp_real)(acc / (double)plane);
    }
}

/* Backward of the line above: dx[n,c,h,w] = dy[n,c] / (H W). */
void bp_global_avgpool_backward_ref(bp_real *dx, const bp_real *dy, int N, int C, int H, int W)
{
    /* dx [N, C, H, W]; dy [N, C] */
    const long plane = (long)H * W;
    for (long nc = 0; nc < (long)N * C; nc++) {
        bp_real v = (bp_real)(dy[nc] / (double)plane);
        for (long k = 0; k < plane; k++) dx[nc * plane + k] = v;
    }
}

/* ------------------------------------------------------------------------ */
/* oneDNN pooling primitives (float build)                                   */
/* ------------------------------------------------------------------------ */
/* The primitives compute the same y and dx; which element of a tie or of
 * a window holding NaN takes the gradient is oneDNN's choice (the tests
 * compare them on distinct values). */

#ifdef BP_DOUBLE

bp_pool_prim *bp_pool_prim_create(bp_gemm_ctx *ctx, const bp_pool_geom *g, int max, int training,
                                  int blk)
{
    (void)ctx, (void)g, (void)max, (void)training, (void)blk;
    return NULL;
}
bp_pool_prim *bp_pool_prim_create_bf16(bp_gemm_ctx *ctx, const bp_pool_geom *g, int max,
                                       int training, int blk)
{
    (void)ctx, (void)g, (void)max, (void)training, (void)blk;
    return NULL;
}
int bp_pool_prim_forward(bp_pool_prim *p, bp_real *y, const bp_real *x)
{
    (void)p, (void)y, (void)x;
    return 0;
}
int bp_pool_prim_backward(bp_pool_prim *p, bp_real *dx, const bp_real *dy)
{
    (void)p, (void)dx, (void)dy;
    return 0;
}
void bp_pool_prim_free(bp_pool_prim *p) { (void)p; }

#else

struct bp_pool_prim {
    bp_gemm_ctx *ctx;
    int threads;               /* OpenMP threads it was made for and runs on */
    int max;                   /* max pooling (else average) */
    dnnl_primitive_t fwd, bwd; /* bwd: training only */
    dnnl_memory_t src, dst;    /* x, y (nchw or nChw{blk}c): handles set per run */
    dnnl_memory_t dsrc, ddst;  /* dx, dy (the same layouts): handles set per run */
    dnnl_memory_t ws;          /* max pooling in training: argmax workspace (owned) */
    dnnl_memory_t pad_f, pad_b; /* the scratchpad for each, over one buffer */
    void *scratch;             /* the user scratchpad, sized for the larger */
};

void bp_pool_prim_free(bp_pool_prim *p)
{
    if (!p) return;
    dnnl_memory_t mems[] = {p->src, p->dst, p->dsrc, p->ddst, p->ws, p->pad_f, p->pad_b};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    if (p->fwd) dnnl_primitive_destroy(p->fwd);
    if (p->bwd) dnnl_primitive_destroy(p->bwd);
    free(p->scratch);
    free(p);
}

static bp_pool_prim *pool_create(bp_gemm_ctx *ctx, const bp_pool_geom *g, int max, int training,
                                 int blk, int bf16)
{
    if (!ctx || g->OH < 1 || g->OW < 1 || (bf16 && (blk == 1 || !bp_bf16_supported())))
        return NULL;
    bp_pool_prim *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->ctx = ctx;
    p->max = max;
    dnnl_engine_t eng = bp_gemm_ctx_engine(ctx);
    p->threads = bp_threads_for((double)g->N * g->C * g->OH * g->OW * g->K * g->K, BP_GEMM_GRAIN);
    int old = omp_get_max_threads();
    if (p->threads != old) omp_set_num_threads(p->threads);

    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
    dnnl_memory_desc_t xmd, ymd;
    /* Floor mode without padding: (H - K) / s + 1 = OH holds with zero
     * padding on both sides, which is what oneDNN checks. */
    dnnl_dims_t strides = {g->stride, g->stride}, kernel = {g->K, g->K}, pad = {0, 0};
    dnnl_alg_kind_t alg = max ? dnnl_pooling_max : dnnl_pooling_avg_exclude_padding;
    dnnl_prop_kind_t prop = training ? dnnl_forward_training : dnnl_forward_inference;
    dnnl_pooling_desc_t fdesc, bdesc;
    if (!bp_act_md_t(&xmd, g->N, g->C, g->H, g->W, blk, bf16) ||
        !bp_act_md_t(&ymd, g->N, g->C, g->OH, g->OW, blk, bf16) ||
        !(attr = bp_dnnl_user_scratch_attr()) ||
        dnnl_pooling_forward_desc_init(&fdesc, prop, alg, &xmd, &ymd, strides, kernel, pad, pad) ||
        dnnl_primitive_desc_create(&fpd, &fdesc, attr, eng, NULL))
        goto fail;
    if (training &&
        (dnnl_pooling_backward_desc_init(&bdesc, alg, &xmd, &ymd, strides, kernel, pad, pad) ||
         dnnl_primitive_desc_create(&bpd, &bdesc, attr, eng, fpd)))
        goto fail;
    size_t sf = bp_dnnl_scratch_size(fpd), sb = bpd ? bp_dnnl_scratch_size(bpd) : 0;
    size_t ss = sf > sb ? sf : sb;
    if (ss && !(p->scratch = bp_alloc_aligned(ss, 1))) goto fail;
    if (!bp_dnnl_scratch_mem(&p->pad_f, fpd, ctx, p->scratch) ||
        (bpd && !bp_dnnl_scratch_mem(&p->pad_b, bpd, ctx, p->scratch)))
        goto fail;
    if (training && max) {
        /* The argmax oneDNN keeps between forward and backward. */
        const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(fpd, dnnl_query_workspace_md, 0);
        if (!wmd || dnnl_memory_desc_get_size(wmd) == 0 ||
            dnnl_memory_create(&p->ws, wmd, eng, DNNL_MEMORY_ALLOCATE))
            goto fail;
    }
    if (dnnl_memory_create(&p->src, &xmd, eng, DNNL_MEMORY_NONE) ||
        dnnl_memory_create(&p->dst, &ymd, eng, DNNL_MEMORY_NONE) ||
        (bpd && (dnnl_memory_create(&p->dsrc, &xmd, eng, DNNL_MEMORY_NONE) ||
                 dnnl_memory_create(&p->ddst, &ymd, eng, DNNL_MEMORY_NONE))) ||
        dnnl_primitive_create(&p->fwd, fpd) || (bpd && dnnl_primitive_create(&p->bwd, bpd)))
        goto fail;
    dnnl_primitive_desc_destroy(fpd);
    if (bpd) dnnl_primitive_desc_destroy(bpd);
    dnnl_primitive_attr_destroy(attr);
    if (p->threads != old) omp_set_num_threads(old);
    return p;
fail:
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (bpd) dnnl_primitive_desc_destroy(bpd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (p->threads != old) omp_set_num_threads(old);
    bp_pool_prim_free(p);
    return NULL;
}

bp_pool_prim *bp_pool_prim_create(bp_gemm_ctx *ctx, const bp_pool_geom *g, int max, int training,
                                  int blk)
{
    return pool_create(ctx, g, max, training, blk, 0);
}

bp_pool_prim *bp_pool_prim_create_bf16(bp_gemm_ctx *ctx, const bp_pool_geom *g, int max,
                                       int training, int blk)
{
    return pool_create(ctx, g, max, training, blk, 1);
}

int bp_pool_prim_forward(bp_pool_prim *p, bp_real *y, const bp_real *x)
{
    /* y [N, C, OH, OW]; x [N, C, H, W] */
    if (!p) return 0;
    /* oneDNN takes non-const handles; it only reads x. */
    if (dnnl_memory_set_data_handle(p->src, (void *)(uintptr_t)x) ||
        dnnl_memory_set_data_handle(p->dst, y))
        return 0;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p->src}, {DNNL_ARG_DST, p->dst}};
    int n = 2;
    if (p->pad_f) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->pad_f};
    if (p->ws) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, p->ws};
    return bp_dnnl_run(p->ctx, p->threads, p->fwd, n, args);
}

/* Same equations as the reference backward loops (max: dy routed to the
 * argmax the last forward of this primitive recorded; average: dy / K^2 to
 * every element of each window); oneDNN overwrites dx. */
int bp_pool_prim_backward(bp_pool_prim *p, bp_real *dx, const bp_real *dy)
{
    /* dx [N, C, H, W]; dy [N, C, OH, OW] */
    if (!p || !p->bwd) return 0;
    if (dnnl_memory_set_data_handle(p->ddst, (void *)(uintptr_t)dy) ||
        dnnl_memory_set_data_handle(p->dsrc, dx))
        return 0;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, p->ddst}, {DNNL_ARG_DIFF_SRC, p->dsrc}};
    int n = 2;
    if (p->pad_b) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->pad_b};
    if (p->ws) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, p->ws};
    return bp_dnnl_run(p->ctx, p->threads, p->bwd, n, args);
}

#endif
