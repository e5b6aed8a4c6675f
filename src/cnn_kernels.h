/*
 * cnn_kernels.h - the kernels of the convolutional layers: convolution,
 * max / average / global average pooling and batch normalization, each as
 *   - a plain reference loop (bp_*_ref), exact PyTorch semantics, used by the
 *     double build and by the tests as the definition, and
 *   - a prepared oneDNN primitive (bp_*_prim), float build only: created for
 *     one fixed geometry (batch size included) when workspaces are reserved,
 *     run inside a training step without allocating (every buffer, the
 *     scratchpad included, is owned by the primitive object and allocated
 *     at creation). In the double build, or when oneDNN fails, the create
 *     functions return NULL and callers use the reference loop.
 *
 * Layout: the reference loops take plain row-major tensors, batch first,
 * as in PyTorch: activations [N, C, H, W], conv weights [OC, C, K, K].
 * A primitive takes its activations either plain (blk = 1) or in oneDNN's
 * blocked layout nChw{blk}c ([N, C/blk, H, W, blk], blk dividing C), as
 * its creator says; weights are always plain [OC, C, K, K]. Inside, it may
 * keep data in the layouts oneDNN prefers, reordering at its edges.
 *
 * Backward functions OVERWRITE their outputs (dx, dw, db, dgamma, dbeta),
 * never accumulate. Any output pointer documented "may be NULL" is skipped.
 * Outputs never alias inputs.
 */
#ifndef BP_CNN_KERNELS_H
#define BP_CNN_KERNELS_H

#include "internal.h"

/* ---- convolution: torch.nn.Conv2d(C, OC, K, stride, padding=pad) ----
 * y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] x[n,c, i*s + p - pad, j*s + q - pad]
 * (x is zero outside [0,H) x [0,W)); OH = (H + 2 pad - K) / s + 1 (floor). */
typedef struct bp_conv_geom {
    int N, C, H, W;  /* input [N, C, H, W] */
    int OC, K;       /* OC output channels, K x K kernel */
    int stride, pad; /* stride >= 1, zero padding >= 0 on every side */
    int OH, OW;      /* output spatial size (bp_conv_geom_init computes them) */
} bp_conv_geom;

/* Fill OH, OW; returns 0 when the output would be empty (K > H + 2 pad, or
 * any size < 1), 1 otherwise. */
int bp_conv_geom_init(bp_conv_geom *g);

/* y [N, OC, OH, OW] = conv(x [N, C, H, W], w [OC, C, K, K]) + b [OC]
 * (b may be NULL: no bias). */
void bp_conv_forward_ref(bp_real *y, const bp_real *x, const bp_real *w, const bp_real *b,
                         const bp_conv_geom *g);
/* From dy [N, OC, OH, OW]: dx [N, C, H, W] (may be NULL), dw [OC, C, K, K]
 * (may be NULL), db [OC] = sum of dy over n, i, j (may be NULL). */
void bp_conv_backward_ref(bp_real *dx, bp_real *dw, bp_real *db, const bp_real *dy,
                          const bp_real *x, const bp_real *w, const bp_conv_geom *g);

/* The channel block of the engine's preferred activation layout for
 * convolutions: 16 (AVX-512), 8 (AVX2), or 1 when it prefers a plain
 * layout or cannot tell (double build: 1). Creates a small primitive
 * descriptor; ask once (bp_net_prepare keeps the answer in net->cblk). */
int bp_conv_block(bp_gemm_ctx *ctx);

typedef struct bp_conv_prim bp_conv_prim;
/* The bf16 argument of bp_conv_prim_create: flags. */
enum {
    BP_CONV_BF16 = 1,   /* products on bfloat16 x, w and dy */
    BP_CONV_BF16_X = 2, /* x and dx are the caller's bfloat16 tensors (with BP_CONV_BF16) */
    BP_CONV_BF16_Y = 4  /* y and dy are the caller's bfloat16 tensors (with BP_CONV_BF16) */
};
/* training: also prepare the backward (weights, and data when need_dx).
 * blk_x: layout of x and dx (1 or a block dividing C); blk_y: of y and dy
 * (1 or a block dividing OC). bf16 & BP_CONV_BF16: the passes read x, w and
 * dy rounded to bfloat16 and accumulate in float (BP_PRECISION_BF16); the
 * caller's x and dx are float (rounded inside), or bfloat16 with
 * BP_CONV_BF16_X (uint16_t values behind the bp_real pointers, read and
 * written as they are); y and dy likewise with BP_CONV_BF16_Y (y rounded
 * from the float accumulation); dw and db are float. The backward may
 * read x as the last forward rounded it (the trainer's order: the
 * backward of the batch the forward just ran). NULL when unavailable
 * (double build, oneDNN failure, a block that does not divide its
 * channels, bf16 where bp_bf16_supported() is 0). */
bp_conv_prim *bp_conv_prim_create(bp_gemm_ctx *ctx, const bp_conv_geom *g, int training,
                                  int need_dx, int blk_x, int blk_y, int bf16);
/* Same contracts as the reference loops; return 1 on success, 0 if nothing
 * was done (the caller then runs the reference loop). */
int bp_conv_prim_forward(bp_conv_prim *p, bp_real *y, const bp_real *x, const bp_real *w,
                         const bp_real *b);
int bp_conv_prim_backward(bp_conv_prim *p, bp_real *dx, bp_real *dw, bp_real *db,
                          const bp_real *dy, const bp_real *x, const bp_real *w);
void bp_conv_prim_free(bp_conv_prim *p);

/* ---- pooling: torch.nn.MaxPool2d(K, stride) / AvgPool2d(K, stride) ----
 * no padding, floor mode: OH = (H - K) / stride + 1. Windows may overlap
 * (stride < K); the backward then adds every window's share. */
typedef struct bp_pool_geom {
    int N, C, H, W; /* input [N, C, H, W] */
    int K, stride;
    int OH, OW;     /* bp_pool_geom_init computes them */
} bp_pool_geom;
int bp_pool_geom_init(bp_pool_geom *g); /* 0 when pooling to nothing (K > H or K > W) */

/* Max pooling. idx [N, C, OH, OW] (may be NULL in inference) receives, for
 * each output, the flat index h*W + w inside its input plane of the value
 * taken: the first maximum in row-major window order, as torch does (a NaN
 * wins). The backward routes dy to those indices. */
void bp_maxpool_forward_ref(bp_real *y, int32_t *idx, const bp_real *x, const bp_pool_geom *g);
void bp_maxpool_backward_ref(bp_real *dx, const bp_real *dy, const int32_t *idx,
                             const bp_pool_geom *g);
/* Average pooling: y = mean of the K*K window. */
void bp_avgpool_forward_ref(bp_real *y, const bp_real *x, const bp_pool_geom *g);
void bp_avgpool_backward_ref(bp_real *dx, const bp_real *dy, const bp_pool_geom *g);
/* Global average pooling: y [N, C] = mean over H, W of x [N, C, H, W]. */
void bp_global_avgpool_forward_ref(bp_real *y, const bp_real *x, int N, int C, int H, int W);
void bp_global_avgpool_backward_ref(bp_real *dx, const bp_real *dy, int N, int C, int H, int W);

typedef struct bp_pool_prim bp_pool_prim;
/* max != 0: max pooling (training keeps oneDNN's workspace inside the
 * primitive, so backward must follow the forward of the same batch);
 * max == 0: average. blk: layout of x, y, dx, dy (1 or a block dividing
 * C). NULL when unavailable. */
bp_pool_prim *bp_pool_prim_create(bp_gemm_ctx *ctx, const bp_pool_geom *g, int max, int training,
                                  int blk);
/* The same on bfloat16 x, y, dx and dy (uint16_t values behind the bp_real
 * pointers; blocked layouts only, blk > 1). NULL where unavailable. */
bp_pool_prim *bp_pool_prim_create_bf16(bp_gemm_ctx *ctx, const bp_pool_geom *g, int max,
                                       int training, int blk);
int bp_pool_prim_forward(bp_pool_prim *p, bp_real *y, const bp_real *x);
int bp_pool_prim_backward(bp_pool_prim *p, bp_real *dx, const bp_real *dy);
void bp_pool_prim_free(bp_pool_prim *p);

/* ---- batch normalization: torch.nn.BatchNorm1d / BatchNorm2d ----
 * x [N, C, S] with S = H*W (S = 1 for BatchNorm1d on [N, C]); statistics
 * per channel over N*S values.
 * Training: mean = E[x], var = E[(x - mean)^2] (biased), invstd =
 *   1 / sqrt(var + eps), y = gamma (x - mean) invstd + beta; and, when
 *   running_mean/running_var are not NULL, running = (1 - momentum) running
 *   + momentum stat, the variance unbiased (var * M / (M - 1), M = N*S;
 *   M = 1 leaves the unbiased variance as var, torch would fail).
 * Inference: y = gamma (x - running_mean) / sqrt(running_var + eps) + beta. */
/* Channel c's running statistics from a batch's mean and biased variance
 * over M values (either pointer may be NULL: not updated). */
void bp_bn_running_update(bp_real *running_mean, bp_real *running_var, int c, double mean,
                          double var, long M, double momentum);
void bp_bn_forward_train_ref(bp_real *y, bp_real *mean, bp_real *invstd, const bp_real *x,
                             const bp_real *gamma, const bp_real *beta, bp_real *running_mean,
                             bp_real *running_var, int N, int C, int S, double eps,
                             double momentum);
void bp_bn_forward_infer_ref(bp_real *y, const bp_real *x, const bp_real *gamma,
                             const bp_real *beta, const bp_real *running_mean,
                             const bp_real *running_var, int N, int C, int S, double eps);
/* Backward of the training-mode forward, from the mean and invstd it saved:
 * dgamma[c] = sum dy xhat, dbeta[c] = sum dy,
 * dx = gamma invstd / M (M dy - dbeta - xhat dgamma), xhat = (x - mean) invstd.
 * dx, dgamma, dbeta may each be NULL. */
void bp_bn_backward_ref(bp_real *dx, bp_real *dgamma, bp_real *dbeta, const bp_real *dy,
                        const bp_real *x, const bp_real *mean, const bp_real *invstd,
                        const bp_real *gamma, int N, int C, int S);

typedef struct bp_bn_prim bp_bn_prim;
/* training: forward computes the batch statistics (mean, invstd out, as the
 * reference) and backward is prepared; else inference from running stats.
 * blk: layout of x, y, dx, dy (1: [N, C, S]; a block dividing C:
 * [N, C/blk, S, blk]). NULL when unavailable. */
bp_bn_prim *bp_bn_prim_create(bp_gemm_ctx *ctx, int N, int C, int S, double eps, int training,
                              int blk);
/* The same with a relu fused after it (oneDNN's dnnl_fuse_norm_relu):
 * y = max(0, batchnorm(x)); the backward takes dy of that output (the
 * relu's gradient is applied from a mask the training forward saves in
 * the primitive: run the backward after the forward of the same batch). */
bp_bn_prim *bp_bn_prim_create_relu(bp_gemm_ctx *ctx, int N, int C, int S, double eps,
                                   int training, int blk);
/* Either of those (relu) on bfloat16 x, y, dx and dy (uint16_t values
 * behind the bp_real pointers; blocked layouts only, blk > 1): the
 * statistics, gamma, beta, their gradients and the running statistics
 * stay float. NULL where unavailable. */
bp_bn_prim *bp_bn_prim_create_bf16(bp_gemm_ctx *ctx, int N, int C, int S, double eps,
                                   int training, int blk, int relu);
int bp_bn_prim_forward_train(bp_bn_prim *p, bp_real *y, bp_real *mean, bp_real *invstd,
                             const bp_real *x, const bp_real *gamma, const bp_real *beta,
                             bp_real *running_mean, bp_real *running_var, double momentum);
int bp_bn_prim_forward_infer(bp_bn_prim *p, bp_real *y, const bp_real *x, const bp_real *gamma,
                             const bp_real *beta, const bp_real *running_mean,
                             const bp_real *running_var);
int bp_bn_prim_backward(bp_bn_prim *p, bp_real *dx, bp_real *dgamma, bp_real *dbeta,
                        const bp_real *dy, const bp_real *x, const bp_real *mean,
                        const bp_real *invstd, const bp_real *gamma);
void bp_bn_prim_free(bp_bn_prim *p);

/* The engine and stream of a context (float build), for the primitives. */
#ifndef BP_DOUBLE
#include <oneapi/dnnl/dnnl.h>
dnnl_engine_t bp_gemm_ctx_engine(bp_gemm_ctx *ctx);
/* Helpers shared by the primitives (src/gemm.c, which owns the context):
 * the bytes of pd's scratchpad (0: none); a memory object over `buf` as
 * pd's scratchpad in *m (left untouched when it needs none; 0 on failure);
 * an attribute asking for a user-managed scratchpad (NULL on failure); and
 * running `prim` on the context's stream with `threads` OpenMP threads
 * (the count it was made for), waiting for it (1 on success). */
size_t bp_dnnl_scratch_size(const_dnnl_primitive_desc_t pd);
int bp_dnnl_scratch_mem(dnnl_memory_t *m, const_dnnl_primitive_desc_t pd, bp_gemm_ctx *ctx,
                        void *buf);
dnnl_primitive_attr_t bp_dnnl_user_scratch_attr(void);
int bp_dnnl_run(bp_gemm_ctx *ctx, int threads, dnnl_primitive_t prim, int nargs,
                const dnnl_exec_arg_t *args);
/* *md = an f32 activation [N, C, H, W] in layout blk (1: nchw; 8, 16:
 * nChw8c, nChw16c). Returns 0 for another blk or a oneDNN failure.
 * bp_act_md_t: the same in bfloat16 where bf16 != 0. */
int bp_act_md(dnnl_memory_desc_t *md, int N, int C, int H, int W, int blk);
int bp_act_md_t(dnnl_memory_desc_t *md, int N, int C, int H, int W, int blk, int bf16);
dnnl_stream_t bp_gemm_ctx_stream(bp_gemm_ctx *ctx);
#endif

#endif /* BP_CNN_KERNELS_H */
