/*
 * conv_kernels.c - 2-D convolution, torch.nn.Conv2d semantics (stride,
 * zero padding, bias): the reference loops (the definition, every build)
 * and a prepared oneDNN primitive (float build). Contracts: cnn_kernels.h.
 *
 * The primitive lets oneDNN pick its preferred (blocked) layouts for
 * source, weights and destination of each of its three passes (forward,
 * backward data, backward weights), and wraps each pass in reorders from /
 * to the caller's layouts: oihw weights, and activations in nchw or, when
 * the network keeps them blocked (bp_net_prepare's plan), nChw16c / nChw8c;
 * a reorder is skipped when the chosen layout is the caller's, which is
 * the point of keeping activations blocked. Every buffer, the scratchpad
 * shared by all the passes and reorders included, is allocated at creation.
 */
#include "cnn_kernels.h"
#include "kernels.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

int bp_conv_geom_init(bp_conv_geom *g)
{
    g->OH = g->OW = 0;
    if (g->N < 1 || g->C < 1 || g->H < 1 || g->W < 1 || g->OC < 1 || g->K < 1 || g->stride < 1 ||
        g->pad < 0)
        return 0;
    if (g->K > g->H + 2 * g->pad || g->K > g->W + 2 * g->pad) return 0;
    g->OH = (g->H + 2 * g->pad - g->K) / g->stride + 1;
    g->OW = (g->W + 2 * g->pad - g->K) / g->stride + 1;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Reference loops                                                           */
/* ------------------------------------------------------------------------ */

/* y [N, OC, OH, OW], x [N, C, H, W], w [OC, C, K, K], b [OC] or NULL:
 * y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] x[n,c, i*s + p - pad, j*s + q - pad],
 * the x terms outside the image being zero. Sums in double. */
void bp_conv_forward_ref(bp_real *y, const bp_real *x, const bp_real *w, const bp_real *b,
                         const bp_conv_geom *g)
{
    const int C = g->C, H = g->H, W = g->W, K = g->K, s = g->stride, pad = g->pad;
    for (int n = 0; n < g->N; n++)
        for (int o = 0; o < g->OC; o++)
            for (int i = 0; i < g->OH; i++)
                for (int j = 0; j < g->OW; j++) {
                    double acc = b ? b[o] : 0;
                    for (int c = 0; c < C; c++)
                        for (int p = 0; p < K; p++) {
                            int h = i * s + p - pad;
                            if (h < 0 || h >= H) continue;
                            for (int q = 0; q < K; q++) {
                                int v = j * s + q - pad;
                                if (v < 0 || v >= W) continue;
                                acc += (double)w[(((size_t)o * C + c) * K + p) * K + q] *
                                       x[(((size_t)n * C + c) * H + h) * W + v];
                            }
                        }
                    y[(((size_t)n * g->OC + o) * g->OH + i) * g->OW + j] = (bp_real)acc;
                }
}

/* Differentiates the forward above, each output gathered (overwritten):
 *   db[o]       = sum_{n,i,j} dy[n,o,i,j]
 *   dw[o,c,p,q] = sum_{n,i,j} dy[n,o,i,j] x[n,c, i*s + p - pad, j*s + q - pad]
 *   dx[n,c,h,v] = sum_{o,p,q} w[o,c,p,q] dy[n,o,i,j] over the (i, j) with
 *                 i*s + p - pad = h, j*s + q - pad = v, 0 <= i < OH, 0 <= j < OW.
 * dx [N, C, H, W], dw [OC, C, K, K], db [OC] (each may be NULL),
 * dy [N, OC, OH, OW], x [N, C, H, W], w [OC, C, K, K]. */
void bp_conv_backward_ref(bp_real *dx, bp_real *dw, bp_real *db, const bp_real *dy,
                          const bp_real *x, const bp_real *w, const bp_conv_geom *g)
{
    const int N = g->N, C = g->C, H = g->H, W = g->W, OC = g->OC, K = g->K;
    const int OH = g->OH, OW = g->OW, s = g->stride, pad = g->pad;
#define DY(n, o, i, j) dy[(((size_t)(n) * OC + (o)) * OH + (i)) * OW + (j)]
    if (db)
        for (int o = 0; o < OC; o++) {
            double acc = 0;
            for (int n = 0; n < N; n++)
                for (int i = 0; i < OH; i++)
                    for (int j = 0; j < OW; j++) acc += DY(n, o, i, j);
            db[o] = (bp_real)acc;
        }
    if (dw)
        for (int o = 0; o < OC; o++)
            for (int c = 0; c < C; c++)
                for (int p = 0; p < K; p++)
                    for (int q = 0; q < K; q++) {
                        double acc = 0;
                        for (int n = 0; n < N; n++)
                            for (int i = 0; i < OH; i++) {
                                int h = i * s + p - pad;
                                if (h < 0 || h >= H) continue;
                                for (int j = 0; j < OW; j++) {
                                    int v = j * s + q - pad;
                                    if (v < 0 || v >= W) continue;
                                    acc += (double)DY(n, o, i, j) *
                                           x[(((size_t)n * C + c) * H + h) * W + v];
                                }
                            }
                        dw[(((size_t)o * C + c) * K + p) * K + q] = (bp_real)acc;
                    }
    if (dx)
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                for (int h = 0; h < H; h++)
                    for (int v = 0; v < W; v++) {
                        double acc = 0;
                        for (int o = 0; o < OC; o++)
                            for (int p = 0; p < K; p++) {
                                int ti = h + pad - p; /* = i*s */
                                if (ti < 0 || ti % s || ti / s >= OH) continue;
                                for (int q = 0; q < K; q++) {
                                    int tj = v + pad - q; /* = j*s */
                                    if (tj < 0 || tj % s || tj / s >= OW) continue;
                                    acc += (double)w[(((size_t)o * C + c) * K + p) * K + q] *
                                           DY(n, o, ti / s, tj / s);
                                }
                            }
                        dx[(((size_t)n * C + c) * H + h) * W + v] = (bp_real)acc;
                    }
#undef DY
}

/* ------------------------------------------------------------------------ */
/* oneDNN primitive                                                          */
/* ------------------------------------------------------------------------ */

#ifdef BP_DOUBLE

int bp_conv_block(bp_gemm_ctx *ctx)
{
    (void)ctx;
    return 1;
}

bp_conv_prim *bp_conv_prim_create(bp_gemm_ctx *ctx, const bp_conv_geom *g, int training,
                                  int need_dx, int blk_x, int blk_y, int bf16)
{
    (void)ctx, (void)g, (void)training, (void)need_dx, (void)blk_x, (void)blk_y, (void)bf16;
    return NULL;
}
int bp_conv_prim_forward(bp_conv_prim *p, bp_real *y, const bp_real *x, const bp_real *w,
                         const bp_real *b)
{
    (void)p, (void)y, (void)x, (void)w, (void)b;
    return 0;
}
int bp_conv_prim_backward(bp_conv_prim *p, bp_real *dx, bp_real *dw, bp_real *db,
                          const bp_real *dy, const bp_real *x, const bp_real *w)
{
    (void)p, (void)dx, (void)dw, (void)db, (void)dy, (void)x, (void)w;
    return 0;
}
void bp_conv_prim_free(bp_conv_prim *p) { (void)p; }

#else

int bp_act_md_t(dnnl_memory_desc_t *md, int N, int C, int H, int W, int blk, int bf16)
{
    dnnl_dims_t d = {N, C, H, W};
    dnnl_format_tag_t tag = blk == 1 ? dnnl_nchw : blk == 8 ? dnnl_nChw8c
                          : blk == 16 ? dnnl_nChw16c : dnnl_format_tag_undef;
    if (tag == dnnl_format_tag_undef || C % blk) return 0;
    return dnnl_memory_desc_init_by_tag(md, 4, d, bf16 ? dnnl_bf16 : dnnl_f32, tag) ==
           dnnl_success;
}

int bp_act_md(dnnl_memory_desc_t *md, int N, int C, int H, int W, int blk)
{
    return bp_act_md_t(md, N, C, H, W, blk, 0);
}

/* The layout oneDNN picks for the output of a typical hidden convolution
 * (32 -> 32 channels, 3x3, on 14x14, batch 8) when left free to choose. */
int bp_conv_block(bp_gemm_ctx *ctx)
{
    dnnl_engine_t eng = ctx ? bp_gemm_ctx_engine(ctx) : NULL;
    if (!eng) return 1;
    dnnl_dims_t dx = {8, 32, 14, 14}, dw = {32, 32, 3, 3}, dy = {8, 32, 14, 14};
    dnnl_dims_t strides = {1, 1}, pad = {1, 1};
    dnnl_memory_desc_t x_any, w_any, y_any;
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_memory_desc_init_by_tag(&x_any, 4, dx, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&w_any, 4, dw, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&y_any, 4, dy, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct,
                                           &x_any, &w_any, NULL, &y_any, strides, pad, pad) ||
        dnnl_primitive_desc_create(&pd, &cd, NULL, eng, NULL))
        return 1;
    const dnnl_memory_desc_t *got = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    int blk = 1;
    for (int b = 16; b >= 8 && blk == 1; b /= 2) {
        dnnl_memory_desc_t want;
        if (got && bp_act_md(&want, 8, 32, 14, 14, b) && dnnl_memory_desc_equal(got, &want))
            blk = b;
    }
    dnnl_primitive_desc_destroy(pd);
    return blk;
}

/* One tensor argument of a pass: `user` wraps the caller's plain buffer
 * (handle set per call); `inner`, when the pass chose another layout, is
 * a buffer in that layout (allocated by oneDNN at creation) with the
 * reorder between the two (plain -> inner for inputs, inner -> plain for
 * outputs). inner == NULL: the pass reads / writes the plain buffer. */
typedef struct conv_port {
    dnnl_memory_t user, inner;
    dnnl_primitive_t reorder;
    dnnl_memory_t reorder_sp; /* its scratchpad (NULL: needs none) */
    /* An input whose inner layout is the caller's in bfloat16: rounded by
     * bp_k_to_bf16 into cvt_to (cvt_n values) instead of the reorder,
     * which is slower at it (~1 ms on a [128, 32, 28, 28] dy). */
    uint16_t *cvt_to;
    size_t cvt_n;
} conv_port;

/* One pass: the primitive and its scratchpad view (NULL: needs none). */
typedef struct conv_pass {
    dnnl_primitive_t prim;
    dnnl_memory_t sp;
} conv_pass;

#define CONV_MAX_SP 16 /* scratchpad views: 3 passes + 9 reorders */

struct bp_conv_prim {
    dnnl_engine_t engine; /* the context's (bp_gemm_ctx_engine / _stream) */
    dnnl_stream_t stream;
    bp_conv_geom g;
    int training, need_dx;
    int threads;   /* OpenMP threads it was made for (bp_threads_for) */
    double flops;  /* 2 N OC OH OW C K K, one pass */
    /* forward: src = x, weights = w, bias = b (or zero_bias), dst = y */
    conv_pass fwd;
    conv_port f_src, f_w, f_dst;
    dnnl_memory_t f_bias;
    bp_real *zero_bias; /* [OC] zeros, for b == NULL */
    /* backward data (training && need_dx): diff_dst = dy, weights = w, diff_src = dx */
    conv_pass bwd_d;
    conv_port d_ddst, d_w, d_dsrc;
    int dy_shared; /* d_ddst unused: dy in backward weights' layout, reordered once */
    int x_shared;  /* bf16 only; w_src unused: backward weights reads x as the
                      forward converted it (same layout and type) */
    /* backward weights (training): src = x, diff_dst = dy, diff_weights = dw, diff_bias = db */
    conv_pass bwd_w;
    conv_port w_src, w_ddst, w_dw;
    dnnl_memory_t w_db;
    bp_real *dw_tmp, *db_tmp; /* [OC*C*K*K], [OC]: targets when dw / db is NULL */
    /* The one scratchpad buffer: passes and reorders run one after the
     * other on one stream, so they share it. */
    void *scratch;
    size_t scratch_size;
    dnnl_memory_t sp_views[CONV_MAX_SP];
    int n_sp;
};

static void port_free(conv_port *pt)
{
    if (pt->reorder) dnnl_primitive_destroy(pt->reorder);
    if (pt->reorder_sp) dnnl_memory_destroy(pt->reorder_sp);
    if (pt->inner) dnnl_memory_destroy(pt->inner);
    if (pt->user) dnnl_memory_destroy(pt->user);
}

void bp_conv_prim_free(bp_conv_prim *p)
{
    if (!p) return;
    conv_pass *passes[3] = {&p->fwd, &p->bwd_d, &p->bwd_w};
    for (int i = 0; i < 3; i++) {
        if (passes[i]->prim) dnnl_primitive_destroy(passes[i]->prim);
        if (passes[i]->sp) dnnl_memory_destroy(passes[i]->sp);
    }
    conv_port *ports[9] = {&p->f_src, &p->f_w,  &p->f_dst, &p->d_ddst, &p->d_w,
                           &p->d_dsrc, &p->w_src, &p->w_ddst, &p->w_dw};
    for (int i = 0; i < 9; i++) port_free(ports[i]);
    if (p->f_bias) dnnl_memory_destroy(p->f_bias);
    if (p->w_db) dnnl_memory_destroy(p->w_db);
    free(p->zero_bias);
    free(p->dw_tmp);
    free(p->db_tmp);
    free(p->scratch);
    free(p);
}

/* A scratchpad view of the shared buffer for `pd` (*out stays NULL when
 * it needs none); the buffer itself is allocated once all sizes are
 * known, and the views' handles set then. 0 on failure. */
static int scratch_view(bp_conv_prim *p, const_dnnl_primitive_desc_t pd, dnnl_memory_t *out)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t size = bp_dnnl_scratch_size(pd);
    if (size == 0) return 1;
    if (p->n_sp == CONV_MAX_SP || dnnl_memory_create(out, md, p->engine, DNNL_MEMORY_NONE))
        return 0;
    p->sp_views[p->n_sp++] = *out;
    if (size > p->scratch_size) p->scratch_size = size;
    return 1;
}

/* Set up a port for a pass argument whose chosen layout is `chosen` and
 * plain layout `plain`; input: the reorder goes plain -> chosen, else
 * chosen -> plain. 0 on failure. */
static int port_init(bp_conv_prim *p, conv_port *pt, const dnnl_memory_desc_t *plain,
                     const dnnl_memory_desc_t *chosen, int input, const_dnnl_primitive_attr_t attr)
{
    dnnl_engine_t e = p->engine;
    if (!chosen || dnnl_memory_create(&pt->user, plain, e, DNNL_MEMORY_NONE)) return 0;
    if (dnnl_memory_desc_equal(plain, chosen)) return 1;
    if (dnnl_memory_create(&pt->inner, chosen, e, DNNL_MEMORY_ALLOCATE)) return 0;
    dnnl_memory_desc_t as_bf16 = *plain;
    as_bf16.data_type = dnnl_bf16;
    if (input && plain->data_type == dnnl_f32 && dnnl_memory_desc_equal(&as_bf16, chosen)) {
        void *h = NULL;
        if (dnnl_memory_get_data_handle(pt->inner, &h) || !h) return 0;
        pt->cvt_to = h;
        pt->cvt_n = dnnl_memory_desc_get_size(plain) / sizeof(float);
        return 1;
    }
    dnnl_primitive_desc_t rpd = NULL;
    if (dnnl_reorder_primitive_desc_create(&rpd, input ? plain : chosen, e, input ? chosen : plain,
                                           e, attr))
        return 0;
    int ok = scratch_view(p, rpd, &pt->reorder_sp) && !dnnl_primitive_create(&pt->reorder, rpd);
    dnnl_primitive_desc_destroy(rpd);
    return ok;
}

/* Create the pass for `desc` (hint: the forward pd, for the backward
 * passes), its scratchpad view; *pd_out receives its pd (caller destroys). */
static int pass_init(bp_conv_prim *p, conv_pass *ps, const void *desc,
                     const_dnnl_primitive_attr_t attr, const_dnnl_primitive_desc_t hint,
                     dnnl_primitive_desc_t *pd_out)
{
    if (dnnl_primitive_desc_create(pd_out, desc, attr, p->engine, hint)) {
        *pd_out = NULL;
        return 0;
    }
    return scratch_view(p, *pd_out, &ps->sp) && !dnnl_primitive_create(&ps->prim, *pd_out);
}

#define MD(pd, what) dnnl_primitive_desc_query_md(pd, what, 0)

bp_conv_prim *bp_conv_prim_create(bp_gemm_ctx *ctx, const bp_conv_geom *g, int training,
                                  int need_dx, int blk_x, int blk_y, int bf16)
{
    if (!ctx || !g || (bf16 && !bp_bf16_supported())) return NULL;
    /* Bfloat16 tensors of the caller's, only with bfloat16 products. */
    int bf_x = (bf16 & BP_CONV_BF16_X) != 0, bf_y = (bf16 & BP_CONV_BF16_Y) != 0;
    if ((bf_x || bf_y) && !(bf16 & BP_CONV_BF16)) return NULL;
    bp_conv_geom gg = *g;
    if (!bp_conv_geom_init(&gg) || gg.OH != g->OH || gg.OW != g->OW) return NULL;
    bp_conv_prim *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->engine = bp_gemm_ctx_engine(ctx);
    p->stream = bp_gemm_ctx_stream(ctx);
    if (!p->engine || !p->stream) {
        free(p);
        return NULL;
    }
    p->g = gg;
    p->training = training != 0;
    p->need_dx = training && need_dx;
    /* The primitives split their work for the thread count current at
     * their creation: make them for the count their size is worth. */
    p->flops = 2.0 * gg.N * gg.OC * gg.OH * gg.OW * gg.C * gg.K * gg.K;
    p->threads = bp_threads_for(p->flops, BP_GEMM_GRAIN);
    int old = omp_get_max_threads();
    if (p->threads != old) omp_set_num_threads(p->threads);

    dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
    dnnl_primitive_attr_t attr = bp_dnnl_user_scratch_attr();
    if (!attr) goto fail;
    size_t wsize = (size_t)gg.OC * gg.C * gg.K * gg.K;
    p->zero_bias = bp_alloc_array((size_t)gg.OC, sizeof(bp_real));
    if (!p->zero_bias) goto fail;

    dnnl_dims_t dx = {gg.N, gg.C, gg.H, gg.W}, dw = {gg.OC, gg.C, gg.K, gg.K}, db = {gg.OC};
    dnnl_dims_t dy = {gg.N, gg.OC, gg.OH, gg.OW};
    dnnl_dims_t strides = {gg.stride, gg.stride}, pad_l = {gg.pad, gg.pad};
    /* Right padding that makes oneDNN's output size the floor formula's:
     * (H - K + pad_l + pad_r) / s + 1 = OH exactly. */
    dnnl_dims_t pad_r = {(gg.OH - 1) * gg.stride + gg.K - gg.H - gg.pad,
                         (gg.OW - 1) * gg.stride + gg.K - gg.W - gg.pad};
    /* x_plain, y_plain: the caller's layouts (plain, or blocked by blk_x /
     * blk_y) and types (float, or bfloat16: bf_x, bf_y). */
    /* The passes' own layouts (any: oneDNN chooses). Outputs x_any (dx),
     * w_any (dw), y_any (y) are float, or bfloat16 where the caller's are;
     * the inputs xi (x), wi (w) and yi (dy) are bfloat16 in bfloat16
     * precision (the ports round the caller's floats into them), else the
     * same as the outputs. */
    dnnl_memory_desc_t x_plain, w_plain, b_plain, y_plain, x_any, w_any, y_any, xi, wi, yi;
    dnnl_data_type_t it = bf16 ? dnnl_bf16 : dnnl_f32;
    if (!bp_act_md_t(&x_plain, gg.N, gg.C, gg.H, gg.W, blk_x, bf_x) ||
        dnnl_memory_desc_init_by_tag(&w_plain, 4, dw, dnnl_f32, dnnl_oihw) ||
        dnnl_memory_desc_init_by_tag(&b_plain, 1, db, dnnl_f32, dnnl_a) ||
        !bp_act_md_t(&y_plain, gg.N, gg.OC, gg.OH, gg.OW, blk_y, bf_y) ||
        dnnl_memory_desc_init_by_tag(&x_any, 4, dx, bf_x ? dnnl_bf16 : dnnl_f32,
                                     dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&w_any, 4, dw, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&y_any, 4, dy, bf_y ? dnnl_bf16 : dnnl_f32,
                                     dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&xi, 4, dx, it, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&wi, 4, dw, it, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&yi, 4, dy, it, dnnl_format_tag_any))
        goto fail;

    /* Inference on blocked activations (the net's plan): the convolution
     * reads and writes the plan's layout itself where oneDNN has a kernel
     * for it. Left free, oneDNN picks nhwc kernels at large batches, and
     * the reorders around them (nChw16c -> nhwc -> nChw16c each call) cost
     * more than they gain: W6 (batch 1000) ran 25-45% faster pinned
     * (bench/NOTES.md). Training keeps "any": its three passes share x
     * and dy in the layouts they choose. In bfloat16 the input is the
     * plan's layout in bf16 (converted by bp_k_to_bf16, no reorder). */
    int pin = !p->training && (blk_x > 1 || blk_y > 1);
    dnnl_memory_desc_t xf = xi, yf = y_any; /* the forward's source and destination */
    if (pin && blk_x > 1) xf = x_plain, xf.data_type = it;
    if (pin && blk_y > 1) yf = y_plain;
    /* Forward (pinned first; without a kernel for the plan's layout, "any"). */
    dnnl_convolution_desc_t fd;
    for (;;) {
        if (!dnnl_convolution_forward_desc_init(&fd,
                                                p->training ? dnnl_forward_training
                                                            : dnnl_forward_inference,
                                                dnnl_convolution_direct, &xf, &wi, &b_plain, &yf,
                                                strides, pad_l, pad_r) &&
            pass_init(p, &p->fwd, &fd, attr, NULL, &fpd))
            break;
        if (!pin || fpd) goto fail; /* fpd made: a later step failed, not the layout */
        pin = 0, xf = xi, yf = y_any;
    }
    if (!port_init(p, &p->f_src, &x_plain, MD(fpd, dnnl_query_src_md), 1, attr) ||
        !port_init(p, &p->f_w, &w_plain, MD(fpd, dnnl_query_weights_md), 1, attr) ||
        !port_init(p, &p->f_dst, &y_plain, MD(fpd, dnnl_query_dst_md), 0, attr) ||
        dnnl_memory_create(&p->f_bias, &b_plain, p->engine, DNNL_MEMORY_NONE))
        goto fail;

    if (p->training) {
        /* Backward weights (and bias). */
        dnnl_convolution_desc_t wd;
        p->dw_tmp = bp_alloc_array(wsize, sizeof(bp_real));
        p->db_tmp = bp_alloc_array((size_t)gg.OC, sizeof(bp_real));
        if (!p->dw_tmp || !p->db_tmp ||
            dnnl_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &xi,
                                                        &w_any, &b_plain, &yi, strides,
                                                        pad_l, pad_r) ||
            !pass_init(p, &p->bwd_w, &wd, attr, fpd, &wpd))
            goto fail;
        /* Both passes read x: when the forward converted it into the
         * layout backward weights wants, the backward reads that. */
        const dnnl_memory_desc_t *wsrc_md = MD(wpd, dnnl_query_src_md);
        p->x_shared = bf16 && p->f_src.inner && wsrc_md &&
                      dnnl_memory_desc_equal(wsrc_md, MD(fpd, dnnl_query_src_md));
        if ((!p->x_shared && !port_init(p, &p->w_src, &x_plain, wsrc_md, 1, attr)) ||
            !port_init(p, &p->w_ddst, &y_plain, MD(wpd, dnnl_query_diff_dst_md), 1, attr) ||
            !port_init(p, &p->w_dw, &w_plain, MD(wpd, dnnl_query_diff_weights_md), 0, attr) ||
            dnnl_memory_create(&p->w_db, &b_plain, p->engine, DNNL_MEMORY_NONE))
            goto fail;
    }
    if (p->need_dx) {
        /* Backward data. */
        dnnl_convolution_desc_t dd;
        if (dnnl_convolution_backward_data_desc_init(&dd, dnnl_convolution_direct, &x_any, &wi,
                                                     &yi, strides, pad_l, pad_r) ||
            !pass_init(p, &p->bwd_d, &dd, attr, fpd, &dpd))
            goto fail;
        /* Both passes read dy: when they want it in the same (non-plain)
         * layout, one reorder serves both. */
        const dnnl_memory_desc_t *ddst_md = MD(dpd, dnnl_query_diff_dst_md);
        p->dy_shared = p->w_ddst.inner && ddst_md &&
                       dnnl_memory_desc_equal(ddst_md, MD(wpd, dnnl_query_diff_dst_md));
        if ((!p->dy_shared && !port_init(p, &p->d_ddst, &y_plain, ddst_md, 1, attr)) ||
            !port_init(p, &p->d_w, &w_plain, MD(dpd, dnnl_query_weights_md), 1, attr) ||
            !port_init(p, &p->d_dsrc, &x_plain, MD(dpd, dnnl_query_diff_src_md), 0, attr))
            goto fail;
    }

    if (p->scratch_size) {
        p->scratch = bp_alloc_aligned(p->scratch_size, 1);
        if (!p->scratch) goto fail;
        for (int i = 0; i < p->n_sp; i++)
            if (dnnl_memory_set_data_handle(p->sp_views[i], p->scratch)) goto fail;
    }
    dnnl_primitive_desc_destroy(fpd);
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    if (wpd) dnnl_primitive_desc_destroy(wpd);
    dnnl_primitive_attr_destroy(attr);
    if (p->threads != old) omp_set_num_threads(old);
    return p;
fail:
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    if (wpd) dnnl_primitive_desc_destroy(wpd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (p->threads != old) omp_set_num_threads(old);
    bp_conv_prim_free(p);
    return NULL;
}

/* Run a primitive with up to 5 arguments plus its scratchpad. */
static int exec(bp_conv_prim *p, dnnl_primitive_t prim, dnnl_memory_t sp, int nargs,
                dnnl_exec_arg_t *args)
{
    if (sp) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, sp};
    return dnnl_primitive_execute(prim, p->stream, nargs, args) == dnnl_success;
}

/* Point the port at the caller's buffer and, for an input in another
 * layout, reorder it in. The memory the pass uses: *m. */
static int port_in(bp_conv_prim *p, conv_port *pt, const bp_real *data, dnnl_memory_t *m)
{
    /* oneDNN takes non-const handles; inputs are only read. */
    if (dnnl_memory_set_data_handle(pt->user, (void *)(uintptr_t)data)) return 0;
    *m = pt->user;
    if (!pt->inner) return 1;
    *m = pt->inner;
    if (pt->cvt_to) {
        bp_k_to_bf16(pt->cvt_to, data, pt->cvt_n);
        return 1;
    }
    dnnl_exec_arg_t a[3] = {{DNNL_ARG_FROM, pt->user}, {DNNL_ARG_TO, pt->inner}};
    return exec(p, pt->reorder, pt->reorder_sp, 2, a);
}

/* For an output: point the port at the caller's buffer; the pass writes *m. */
static int port_out(conv_port *pt, bp_real *data, dnnl_memory_t *m)
{
    if (dnnl_memory_set_data_handle(pt->user, data)) return 0;
    *m = pt->inner ? pt->inner : pt->user;
    return 1;
}

/* After the pass: reorder an output in another layout back to plain. */
static int port_flush(bp_conv_prim *p, conv_port *pt)
{
    if (!pt->inner) return 1;
    dnnl_exec_arg_t a[3] = {{DNNL_ARG_FROM, pt->inner}, {DNNL_ARG_TO, pt->user}};
    return exec(p, pt->reorder, pt->reorder_sp, 2, a);
}

/* Made for another count (bp_set_threads changed since): the caller then
 * runs the reference loop (or makes a new primitive). */
static int threads_match(const bp_conv_prim *p)
{
    return bp_threads_for(p->flops, BP_GEMM_GRAIN) == p->threads;
}

/* y [N, OC, OH, OW] = conv(x [N, C, H, W], w [OC, C, K, K]) + b [OC] (or no bias). */
int bp_conv_prim_forward(bp_conv_prim *p, bp_real *y, const bp_real *x, const bp_real *w,
                         const bp_real *b)
{
    if (!p || !threads_match(p)) return 0;
    int old = omp_get_max_threads();
    if (p->threads != old) omp_set_num_threads(p->threads);
    dnnl_memory_t src, wei, dst;
    int ok = dnnl_memory_set_data_handle(p->f_bias, (void *)(uintptr_t)(b ? b : p->zero_bias)) ==
                 dnnl_success &&
             port_in(p, &p->f_src, x, &src) && port_in(p, &p->f_w, w, &wei) &&
             port_out(&p->f_dst, y, &dst);
    if (ok) {
        dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, src},
                                {DNNL_ARG_WEIGHTS, wei},
                                {DNNL_ARG_BIAS, p->f_bias},
                                {DNNL_ARG_DST, dst}};
        ok = exec(p, p->fwd.prim, p->fwd.sp, 4, a) && port_flush(p, &p->f_dst);
    }
    ok = ok && dnnl_stream_wait(p->stream) == dnnl_success;
    if (p->threads != old) omp_set_num_threads(old);
    return ok;
}

/* The backward of the forward above (equations: bp_conv_backward_ref),
 * as two passes: backward data (dy, w -> dx) and backward weights
 * (x, dy -> dw, db). dx [N, C, H, W], dw [OC, C, K, K], db [OC] (each may
 * be NULL), dy [N, OC, OH, OW], x [N, C, H, W], w [OC, C, K, K].
 * Returns 0 without doing anything when not made for training, or when dx
 * is asked of a primitive made without need_dx. */
int bp_conv_prim_backward(bp_conv_prim *p, bp_real *dx, bp_real *dw, bp_real *db,
                          const bp_real *dy, const bp_real *x, const bp_real *w)
{
    if (!p || !p->training || (dx && !p->need_dx) || !threads_match(p)) return 0;
    int old = omp_get_max_threads();
    if (p->threads != old) omp_set_num_threads(p->threads);
    int ok = 1;
    dnnl_memory_t dy_in = NULL; /* dy as backward weights read it */
    if (dw || db) {
        dnnl_memory_t src, ddst, dwei;
        ok = dnnl_memory_set_data_handle(p->w_db, db ? db : p->db_tmp) == dnnl_success &&
             (p->x_shared ? (src = p->f_src.inner, 1) : port_in(p, &p->w_src, x, &src)) &&
             port_in(p, &p->w_ddst, dy, &ddst) &&
             port_out(&p->w_dw, dw ? dw : p->dw_tmp, &dwei);
        if (ok) {
            dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, src},
                                    {DNNL_ARG_DIFF_DST, ddst},
                                    {DNNL_ARG_DIFF_WEIGHTS, dwei},
                                    {DNNL_ARG_DIFF_BIAS, p->w_db}};
            ok = exec(p, p->bwd_w.prim, p->bwd_w.sp, 4, a) && (!dw || port_flush(p, &p->w_dw));
            dy_in = ddst;
        }
    }
    if (ok && dx) {
        dnnl_memory_t ddst, wei, dsrc;
        if (p->dy_shared && dy_in) ddst = dy_in;
        else ok = port_in(p, p->dy_shared ? &p->w_ddst : &p->d_ddst, dy, &ddst);
        ok = ok && port_in(p, &p->d_w, w, &wei) &&
             port_out(&p->d_dsrc, dx, &dsrc);
        if (ok) {
            dnnl_exec_arg_t a[4] = {{DNNL_ARG_DIFF_DST, ddst},
                                    {DNNL_ARG_WEIGHTS, wei},
                                    {DNNL_ARG_DIFF_SRC, dsrc}};
            ok = exec(p, p->bwd_d.prim, p->bwd_d.sp, 3, a) && port_flush(p, &p->d_dsrc);
        }
    }
    ok = ok && dnnl_stream_wait(p->stream) == dnnl_success;
    if (p->threads != old) omp_set_num_threads(old);
    return ok;
}

#endif
