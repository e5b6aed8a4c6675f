/*
 * bn_kernels.c - batch normalization (contracts in cnn_kernels.h), as
 * torch.nn.BatchNorm1d / BatchNorm2d: the reference loops, which define the
 * semantics, and a oneDNN batch-normalization primitive for the float
 * build.
 *
 * Layout: x [N, C, S] row-major (S = H*W, or 1 for BatchNorm1d on [N, C]);
 * channel c's M = N*S values are x[n, c, s] for every n, s.
 */
#include "cnn_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef BP_DOUBLE
#include <omp.h>
#endif

/* running = (1 - momentum) running + momentum stat, with the unbiased
 * variance var M / (M - 1) (M = 1: var itself). */
void bp_bn_running_update(bp_real *running_mean, bp_real *running_var, int c, double mean,
                          double var, long M, double momentum)
{
    double uvar = M > 1 ? var * (double)M / (double)(M - 1) : var;
    if (running_mean) running_mean[c] = (bp_real)((1 - momentum) * running_mean[c] + momentum * mean);
    if (running_var) running_var[c] = (bp_real)((1 - momentum) * running_var[c] + momentum * uvar);
}

/* mean = E[x], var = E[(x - mean)^2] (biased, two passes), invstd =
 * 1 / sqrt(var + eps), y = gamma (x - mean) invstd + beta. */
void bp_bn_forward_train_ref(bp_real *y, bp_real *mean, bp_real *invstd, const bp_real *x,
                             const bp_real *gamma, const bp_real *beta, bp_real *running_mean,
                             bp_real *running_var, int N, int C, int S, double eps,
                             double momentum)
{
    /* y, x [N, C, S]; mean, invstd, gamma, beta, running_mean, running_var [C]
     * (running_* may be NULL: not updated) */
    const long M = (long)N * S;
    for (int c = 0; c < C; c++) {
        double sum = 0;
        for (int n = 0; n < N; n++)
            for (int s = 0; s < S; s++) sum += x[((long)n * C + c) * S + s];
        double mu = sum / (double)M, sq = 0;
        for (int n = 0; n < N; n++)
            for (int s = 0; s < S; s++) {
                double d = x[((long)n * C + c) * S + s] - mu;
                sq += d * d;
            }
        double var = sq / (double)M, is = 1 / sqrt(var + eps);
        mean[c] = (bp_real)mu;
        invstd[c] = (bp_real)is;
        for (int n = 0; n < N; n++)
            for (int s = 0; s < S; s++) {
                long k = ((long)n * C + c) * S + s;
                y[k] = (bp_real)(gamma[c] * (x[k] - mu) * is + beta[c]);
            }
        bp_bn_running_update(running_mean, running_var, c, mu, var, M, momentum);
    }
}

/* y = gamma (x - running_mean) / sqrt(running_var + eps) + beta. */
void bp_bn_forward_infer_ref(bp_real *y, const bp_real *x, const bp_real *gamma,
                             const bp_real *beta, const bp_real *running_mean,
                             const bp_real *running_var, int N, int C, int S, double eps)
{
    /* y, x [N, C, S]; gamma, beta, running_mean, running_var [C] */
    for (int c = 0; c < C; c++) {
        double is = 1 / sqrt((double)running_var[c] + eps);
        for (int n = 0; n < N; n++)
            for (int s = 0; s < S; s++) {
                long k = ((long)n * C + c) * S + s;
                y[k] = (bp_real)(gamma[c] * (x[k] - (double)running_mean[c]) * is + beta[c]);
            }
    }
}

/* Differentiates y = gamma xhat + beta, xhat = (x - mean) invstd, with
 * mean and invstd functions of x (training mode):
 *   dbeta = sum dy, dgamma = sum dy xhat,
 *   dx = gamma invstd / M (M dy - dbeta - xhat dgamma). */
void bp_bn_backward_ref(bp_real *dx, bp_real *dgamma, bp_real *dbeta, const bp_real *dy,
                        const bp_real *x, const bp_real *mean, const bp_real *invstd,
                        const bp_real *gamma, int N, int C, int S)
{
    /* dx, dy, x [N, C, S]; dgamma, dbeta, mean, invstd, gamma [C]
     * (dx, dgamma, dbeta may be NULL) */
    const long M = (long)N * S;
    for (int c = 0; c < C; c++) {
        double db = 0, dg = 0, mu = mean[c], is = invstd[c];
        for (int n = 0; n < N; n++)
            for (int s = 0; s < S; s++) {
                long k = ((long)n * C + c) * S + s;
                db += dy[k];
                dg += dy[k] * (x[k] - mu) * is;
            }
        if (dgamma) dgamma[c] = (bp_real)dg;
        if (dbeta) dbeta[c] = (bp_real)db;
        if (!dx) continue;
        double scale = gamma[c] * is / (double)M;
        for (int n = 0; n < N; n++)
            for (int s = 0; s < S; s++) {
                long k = ((long)n * C + c) * S + s;
                double xhat = (x[k] - mu) * is;
                dx[k] = (bp_real)(scale * ((double)M * dy[k] - db - xhat * dg));
            }
    }
}

/* ------------------------------------------------------------------------ */
/* oneDNN batch-normalization primitive (float build)                       */
/* ------------------------------------------------------------------------ */

#ifdef BP_DOUBLE

bp_bn_prim *bp_bn_prim_create(bp_gemm_ctx *ctx, int N, int C, int S, double eps, int training,
                              int blk)
{
    (void)ctx, (void)N, (void)C, (void)S, (void)eps, (void)training, (void)blk;
    return NULL;
}
bp_bn_prim *bp_bn_prim_create_relu(bp_gemm_ctx *ctx, int N, int C, int S, double eps,
                                   int training, int blk)
{
    (void)ctx, (void)N, (void)C, (void)S, (void)eps, (void)training, (void)blk;
    return NULL;
}
bp_bn_prim *bp_bn_prim_create_bf16(bp_gemm_ctx *ctx, int N, int C, int S, double eps,
                                   int training, int blk, int relu)
{
    (void)ctx, (void)N, (void)C, (void)S, (void)eps, (void)training, (void)blk, (void)relu;
    return NULL;
}
int bp_bn_prim_forward_train(bp_bn_prim *p, bp_real *y, bp_real *mean, bp_real *invstd,
                             const bp_real *x, const bp_real *gamma, const bp_real *beta,
                             bp_real *running_mean, bp_real *running_var, double momentum)
{
    (void)p, (void)y, (void)mean, (void)invstd, (void)x, (void)gamma, (void)beta;
    (void)running_mean, (void)running_var, (void)momentum;
    return 0;
}
int bp_bn_prim_forward_infer(bp_bn_prim *p, bp_real *y, const bp_real *x, const bp_real *gamma,
                             const bp_real *beta, const bp_real *running_mean,
                             const bp_real *running_var)
{
    (void)p, (void)y, (void)x, (void)gamma, (void)beta, (void)running_mean, (void)running_var;
    return 0;
}
int bp_bn_prim_backward(bp_bn_prim *p, bp_real *dx, bp_real *dgamma, bp_real *dbeta,
                        const bp_real *dy, const bp_real *x, const bp_real *mean,
                        const bp_real *invstd, const bp_real *gamma)
{
    (void)p, (void)dx, (void)dgamma, (void)dbeta, (void)dy, (void)x, (void)mean, (void)invstd;
    (void)gamma;
    return 0;
}
void bp_bn_prim_free(bp_bn_prim *p) { (void)p; }

#else

/* oneDNN's batch normalization computes what the reference does (biased
 * variance, 1 / sqrt(var + eps), y = scale xhat + shift) but takes and
 * returns the variance, not invstd, and keeps no running statistics: the
 * training forward converts its variance to the caller's invstd and
 * updates the running statistics here; the backward converts the caller's
 * invstd back to a variance. */
struct bp_bn_prim {
    bp_gemm_ctx *ctx;
    int N, C, S, training, threads;
    double eps;
    dnnl_primitive_t fwd, bwd;   /* bwd: training only */
    dnnl_memory_t src, dst;      /* x, y: handles set per run */
    dnnl_memory_t ddst, dsrc;    /* dy, dx: handles set per run */
    dnnl_memory_t scale, shift;  /* gamma, beta: handles set per run */
    dnnl_memory_t dscale, dshift; /* dgamma, dbeta: set per run, else the spares below */
    dnnl_memory_t mean, var;     /* handles set per run (var: to p->varbuf in training) */
    dnnl_memory_t pad_f, pad_b;  /* scratchpads over p->scratch */
    dnnl_memory_t ws;            /* fused relu, training: its mask (forward -> backward) */
    float *varbuf;               /* [C] the batch variance (training) */
    float *spare_dg, *spare_db;  /* [C] dgamma, dbeta when the caller passes NULL */
    float *spare_dx;             /* [N, C, S] dx when the caller passes NULL */
    float *zero_shift;           /* [C] zeros: the shift the backward demands but never reads */
    void *scratch;
};

void bp_bn_prim_free(bp_bn_prim *p)
{
    if (!p) return;
    dnnl_memory_t mems[] = {p->src,    p->dst,    p->ddst, p->dsrc, p->scale, p->shift, p->dscale,
                            p->dshift, p->mean,   p->var,  p->pad_f, p->pad_b, p->ws};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    if (p->fwd) dnnl_primitive_destroy(p->fwd);
    if (p->bwd) dnnl_primitive_destroy(p->bwd);
    free(p->varbuf);
    free(p->spare_dg);
    free(p->spare_db);
    free(p->spare_dx);
    free(p->zero_shift);
    free(p->scratch);
    free(p);
}

static bp_bn_prim *bn_create(bp_gemm_ctx *ctx, int N, int C, int S, double eps, int training,
                             int blk, int relu, int bf16)
{
    if (!ctx || N < 1 || C < 1 || S < 1 || (blk > 1 && S == 1) || (bf16 && blk == 1) ||
        (bf16 && !bp_bf16_supported()))
        return NULL;
    bp_bn_prim *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->ctx = ctx;
    p->N = N, p->C = C, p->S = S, p->eps = eps, p->training = training;
    dnnl_engine_t eng = bp_gemm_ctx_engine(ctx);
    p->threads = bp_threads_for(8.0 * N * C * S, BP_GEMM_GRAIN);
    int old = omp_get_max_threads();
    if (p->threads != old) omp_set_num_threads(p->threads);

    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
    /* [N, C, S] is nchw (or nChw{blk}c) with H = S, W = 1; nc when S = 1. */
    dnnl_memory_desc_t xmd, cmd;
    dnnl_dims_t xd = {N, C, S, 1}, cd = {C};
    unsigned flags = dnnl_use_scale | dnnl_use_shift | (training ? 0u : dnnl_use_global_stats) |
                     (relu ? (unsigned)dnnl_fuse_norm_relu : 0u);
    dnnl_batch_normalization_desc_t fdesc, bdesc;
    if ((S == 1 ? dnnl_memory_desc_init_by_tag(&xmd, 2, xd, dnnl_f32, dnnl_nc)
                : !bp_act_md_t(&xmd, N, C, S, 1, blk, bf16)) ||
        dnnl_memory_desc_init_by_tag(&cmd, 1, cd, dnnl_f32, dnnl_a) ||
        !(attr = bp_dnnl_user_scratch_attr()) ||
        dnnl_batch_normalization_forward_desc_init(
            &fdesc, training ? dnnl_forward_training : dnnl_forward_inference, &xmd, (float)eps,
            flags) ||
        dnnl_primitive_desc_create(&fpd, &fdesc, attr, eng, NULL))
        goto fail;
    if (training && (dnnl_batch_normalization_backward_desc_init(&bdesc, dnnl_backward, &xmd, &xmd,
                                                                 (float)eps, flags) ||
                     dnnl_primitive_desc_create(&bpd, &bdesc, attr, eng, fpd)))
        goto fail;
    size_t sf = bp_dnnl_scratch_size(fpd), sb = bpd ? bp_dnnl_scratch_size(bpd) : 0;
    size_t ss = sf > sb ? sf : sb;
    if (ss && !(p->scratch = bp_alloc_aligned(ss, 1))) goto fail;
    if (!bp_dnnl_scratch_mem(&p->pad_f, fpd, ctx, p->scratch) ||
        (bpd && !bp_dnnl_scratch_mem(&p->pad_b, bpd, ctx, p->scratch)))
        goto fail;
    if (training && (!(p->varbuf = bp_alloc_array((size_t)C, sizeof(float))) ||
                     !(p->spare_dg = bp_alloc_array((size_t)C, sizeof(float))) ||
                     !(p->spare_db = bp_alloc_array((size_t)C, sizeof(float))) ||
                     !(p->zero_shift = bp_alloc_array((size_t)C, sizeof(float))) ||
                     !(p->spare_dx = bp_alloc_aligned((size_t)N * C * S, sizeof(float)))))
        goto fail;
    dnnl_memory_t *plain[] = {&p->src, &p->dst}, *chan[] = {&p->scale, &p->shift, &p->mean, &p->var};
    for (size_t i = 0; i < 2; i++)
        if (dnnl_memory_create(plain[i], &xmd, eng, DNNL_MEMORY_NONE)) goto fail;
    for (size_t i = 0; i < 4; i++)
        if (dnnl_memory_create(chan[i], &cmd, eng, DNNL_MEMORY_NONE)) goto fail;
    if (training && (dnnl_memory_create(&p->ddst, &xmd, eng, DNNL_MEMORY_NONE) ||
                     dnnl_memory_create(&p->dsrc, &xmd, eng, DNNL_MEMORY_NONE) ||
                     dnnl_memory_create(&p->dscale, &cmd, eng, DNNL_MEMORY_NONE) ||
                     dnnl_memory_create(&p->dshift, &cmd, eng, DNNL_MEMORY_NONE)))
        goto fail;
    if (relu && training) {
        const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(fpd, dnnl_query_workspace_md, 0);
        if (!wmd || dnnl_memory_create(&p->ws, wmd, eng, DNNL_MEMORY_ALLOCATE)) goto fail;
    }
    if (dnnl_primitive_create(&p->fwd, fpd) || (bpd && dnnl_primitive_create(&p->bwd, bpd)))
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
    bp_bn_prim_free(p);
    return NULL;
}

bp_bn_prim *bp_bn_prim_create(bp_gemm_ctx *ctx, int N, int C, int S, double eps, int training,
                              int blk)
{
    return bn_create(ctx, N, C, S, eps, training, blk, 0, 0);
}

bp_bn_prim *bp_bn_prim_create_relu(bp_gemm_ctx *ctx, int N, int C, int S, double eps,
                                   int training, int blk)
{
    return bn_create(ctx, N, C, S, eps, training, blk, 1, 0);
}

bp_bn_prim *bp_bn_prim_create_bf16(bp_gemm_ctx *ctx, int N, int C, int S, double eps,
                                   int training, int blk, int relu)
{
    return bn_create(ctx, N, C, S, eps, training, blk, relu != 0, 1);
}

/* oneDNN takes non-const handles; it only reads what is passed as const. */
#define BN_HANDLE(m, ptr) (dnnl_memory_set_data_handle((m), (void *)(uintptr_t)(ptr)) == dnnl_success)

int bp_bn_prim_forward_train(bp_bn_prim *p, bp_real *y, bp_real *mean, bp_real *invstd,
                             const bp_real *x, const bp_real *gamma, const bp_real *beta,
                             bp_real *running_mean, bp_real *running_var, double momentum)
{
    /* y, x [N, C, S]; mean, invstd, gamma, beta, running_mean, running_var [C] */
    if (!p || !p->training) return 0;
    if (!BN_HANDLE(p->src, x) || !BN_HANDLE(p->dst, y) || !BN_HANDLE(p->scale, gamma) ||
        !BN_HANDLE(p->shift, beta) || !BN_HANDLE(p->mean, mean) || !BN_HANDLE(p->var, p->varbuf))
        return 0;
    dnnl_exec_arg_t args[8] = {{DNNL_ARG_SRC, p->src},     {DNNL_ARG_DST, p->dst},
                               {DNNL_ARG_SCALE, p->scale}, {DNNL_ARG_SHIFT, p->shift},
                               {DNNL_ARG_MEAN, p->mean},   {DNNL_ARG_VARIANCE, p->var}};
    int n = 6;
    if (p->pad_f) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->pad_f};
    if (p->ws) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, p->ws};
    if (!bp_dnnl_run(p->ctx, p->threads, p->fwd, n, args)) return 0;
    const long M = (long)p->N * p->S;
    for (int c = 0; c < p->C; c++) {
        double var = p->varbuf[c];
        invstd[c] = (bp_real)(1 / sqrt(var + p->eps));
        bp_bn_running_update(running_mean, running_var, c, mean[c], var, M, momentum);
    }
    return 1;
}

int bp_bn_prim_forward_infer(bp_bn_prim *p, bp_real *y, const bp_real *x, const bp_real *gamma,
                             const bp_real *beta, const bp_real *running_mean,
                             const bp_real *running_var)
{
    /* y, x [N, C, S]; gamma, beta, running_mean, running_var [C] */
    if (!p || p->training) return 0;
    if (!BN_HANDLE(p->src, x) || !BN_HANDLE(p->dst, y) || !BN_HANDLE(p->scale, gamma) ||
        !BN_HANDLE(p->shift, beta) || !BN_HANDLE(p->mean, running_mean) ||
        !BN_HANDLE(p->var, running_var))
        return 0;
    dnnl_exec_arg_t args[7] = {{DNNL_ARG_SRC, p->src},     {DNNL_ARG_DST, p->dst},
                               {DNNL_ARG_SCALE, p->scale}, {DNNL_ARG_SHIFT, p->shift},
                               {DNNL_ARG_MEAN, p->mean},   {DNNL_ARG_VARIANCE, p->var}};
    int n = 6;
    if (p->pad_f) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->pad_f};
    return bp_dnnl_run(p->ctx, p->threads, p->fwd, n, args);
}

/* The reference backward's equations (dbeta = sum dy, dgamma = sum dy xhat,
 * dx = gamma invstd / M (M dy - dbeta - xhat dgamma)), computed by oneDNN
 * from mean and var = 1 / invstd^2 - eps (it recomputes 1 / sqrt(var + eps)).
 * oneDNN 2.6 refuses to execute it without a DNNL_ARG_SHIFT (dnnl_use_shift
 * is set), though the backward never reads beta: it gets p->zero_shift. */
int bp_bn_prim_backward(bp_bn_prim *p, bp_real *dx, bp_real *dgamma, bp_real *dbeta,
                        const bp_real *dy, const bp_real *x, const bp_real *mean,
                        const bp_real *invstd, const bp_real *gamma)
{
    /* dx, dy, x [N, C, S]; dgamma, dbeta, mean, invstd, gamma [C]
     * (dx, dgamma, dbeta may be NULL) */
    if (!p || !p->bwd) return 0;
    for (int c = 0; c < p->C; c++) {
        double is = invstd[c], var = 1 / (is * is) - p->eps;
        p->varbuf[c] = (float)(var > 0 ? var : 0);
    }
    if (!BN_HANDLE(p->src, x) || !BN_HANDLE(p->ddst, dy) || !BN_HANDLE(p->scale, gamma) ||
        !BN_HANDLE(p->shift, p->zero_shift) || !BN_HANDLE(p->mean, mean) ||
        !BN_HANDLE(p->var, p->varbuf) ||
        !BN_HANDLE(p->dsrc, dx ? dx : p->spare_dx) ||
        !BN_HANDLE(p->dscale, dgamma ? dgamma : p->spare_dg) ||
        !BN_HANDLE(p->dshift, dbeta ? dbeta : p->spare_db))
        return 0;
    dnnl_exec_arg_t args[11] = {{DNNL_ARG_SRC, p->src},           {DNNL_ARG_DIFF_DST, p->ddst},
                                {DNNL_ARG_SCALE, p->scale},       {DNNL_ARG_SHIFT, p->shift},
                                {DNNL_ARG_MEAN, p->mean},         {DNNL_ARG_VARIANCE, p->var},
                                {DNNL_ARG_DIFF_SRC, p->dsrc},     {DNNL_ARG_DIFF_SCALE, p->dscale},
                                {DNNL_ARG_DIFF_SHIFT, p->dshift}};
    int n = 9;
    if (p->pad_b) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->pad_b};
    if (p->ws) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, p->ws};
    return bp_dnnl_run(p->ctx, p->threads, p->bwd, n, args);
}

#endif
