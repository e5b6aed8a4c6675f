/*
 * sequence.c - the layers around recurrent ones:
 *   last:           x[:, -1], the final step of a sequence: [T, F] -> [F]
 *   embedding(D,V): torch.nn.Embedding(V, D): token ids [T] -> [T, D],
 *                   y[t] = W[id_t]; the network's first layer (it reads
 *                   the data's ids, stored as exact integral values)
 */
#include "layer.h"

#include <math.h>
#include <string.h>

/* ---- last ---- */

static bp_status last_shape(bp_layer *L, int col, bp_error *err)
{
    if (L->in_shape.rank != 2) return bp_need_sequence(L, col, err);
    L->out_shape = bp_shape_flat(L->in_shape.dim[1]);
    return BP_OK;
}

static void last_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n,
                         int training)
{
    (void)net, (void)training;
    int T = L->in_shape.dim[0], F = L->in_shape.dim[1];
    for (int b = 0; b < n; b++)
        memcpy(y + (size_t)b * F, x + ((size_t)b * T + T - 1) * F, (size_t)F * sizeof(bp_real));
}

/* Differentiates y = x[:, T-1]: dx[:, T-1] = dy, zero elsewhere. */
static void last_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dparam,
                          const bp_real *dy, const bp_real *x, const bp_real *y, int n)
{
    (void)net, (void)dparam, (void)x, (void)y;
    if (!dx) return;
    int T = L->in_shape.dim[0], F = L->in_shape.dim[1];
    memset(dx, 0, (size_t)n * T * F * sizeof(bp_real));
    for (int b = 0; b < n; b++)
        memcpy(dx + ((size_t)b * T + T - 1) * F, dy + (size_t)b * F, (size_t)F * sizeof(bp_real));
}

const bp_layer_ops bp_last_ops = {
    .word = "last", .kind = BP_LAST, .usage = "last",
    .shape = last_shape, .forward = last_forward, .backward = last_backward,
};

/* ---- embedding ---- */

#define BP_MAX_VOCAB 16777216

static bp_status emb_check(const bp_layer_desc *d, int col, bp_error *err)
{
    if (d->units < 1 || d->units > 1000000)
        return bp_fail(err, BP_ESPEC, "spec:1:%d: embedding needs a dimension in 1..1000000, got %d",
                       col, d->units);
    if (d->vocab < 0 || d->vocab > BP_MAX_VOCAB)
        return bp_fail(err, BP_ESPEC, "spec:1:%d: embedding vocabulary must be in 1..%d, got %d",
                       col, BP_MAX_VOCAB, d->vocab);
    return BP_OK;
}

/* [T] (or [T, 1]) token ids -> [T, D]. */
static bp_status emb_shape(bp_layer *L, int col, bp_error *err)
{
    bp_shape s = L->in_shape;
    if (L->desc.vocab < 1)
        return bp_fail(err, BP_ESPEC, "spec:1:%d: embedding needs its vocabulary size: "
                       "embedding(D,V) for ids 0..V-1 (the command line fills V from the text)", col);
    if (!(s.rank == 1 || (s.rank == 2 && s.dim[1] == 1))) {
        char sh[64];
        bp_shape_format(s, sh, sizeof sh);
        return bp_fail(err, BP_ESPEC, "spec:1:%d: embedding needs a sequence of token ids [T], "
                       "got %s", col, sh);
    }
    L->out_shape = (bp_shape){2, {s.dim[0], L->desc.units, 0}};
    return BP_OK;
}

static int emb_tensors(const bp_layer *L, bp_tensor_spec *t)
{
    t[0] = (bp_tensor_spec){"weight", 2, {L->desc.vocab, L->desc.units}, 1, BP_DTYPE_F32};
    return 1;
}

/* torch's default: N(0, 1). */
static void emb_init(bp_layer *L, bp_init scheme, int relu_next, bp_rng *rng)
{
    (void)scheme, (void)relu_next;
    for (size_t q = 0; q < L->n_params; q++) L->w[q] = (bp_real)bp_rng_normal(rng);
}

/* The row of id v, or -1 when v is not an id of the vocabulary. */
static long emb_row(const bp_layer *L, bp_real v)
{
    if (!(v >= 0 && v < L->desc.vocab) || v != floor(v)) return -1;
    return (long)v;
}

static void emb_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n,
                        int training)
{
    (void)net, (void)training;
    int D = L->desc.units;
    size_t m = (size_t)n * L->in;
    for (size_t k = 0; k < m; k++) {
        long r = emb_row(L, x[k]);
        if (r < 0) bp_layer_fail(y + k * D, (size_t)D); /* bp_forward and bp_fit check ids first */
        else memcpy(y + k * D, L->w + (size_t)r * D, (size_t)D * sizeof(bp_real));
    }
}

/* Differentiates y[t] = W[id_t]: dW[v] = sum of dy[t] over the steps whose
 * id is v. The ids have no gradient (dx, if asked, is zero). */
static void emb_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dparam,
                         const bp_real *dy, const bp_real *x, const bp_real *y, int n)
{
    (void)net, (void)y;
    int D = L->desc.units;
    size_t m = (size_t)n * L->in;
    if (dx) memset(dx, 0, m * sizeof(bp_real));
    if (!dparam) return;
    memset(dparam, 0, L->n_params * sizeof(bp_real));
    for (size_t k = 0; k < m; k++) {
        long r = emb_row(L, x[k]);
        if (r < 0) continue;
        bp_real *g = dparam + (size_t)r * D;
        const bp_real *d = dy + k * D;
        for (int j = 0; j < D; j++) g[j] += d[j];
    }
}

const bp_layer_ops bp_embedding_ops = {
    .word = "embedding", .kind = BP_EMBEDDING, .usage = "embedding(D[,V])",
    .n_int_min = 1, .n_int_max = 2, .int_slot = {BP_ARG_UNITS, BP_ARG_VOCAB},
    .parametric = 1, .first_only = 1,
    .check = emb_check, .shape = emb_shape, .tensors = emb_tensors, .init = emb_init,
    .forward = emb_forward, .backward = emb_backward,
};

/* The first row and step of x [n, T] that is not a token id of the
 * network's embedding (-1 when all are, or the network has none). */
long bp_net_bad_id(const bp_net *net, const bp_real *x, int n)
{
    if (!net->n_layers || net->layers[0].kind != BP_EMBEDDING) return -1;
    const bp_layer *L = &net->layers[0];
    size_t m = (size_t)n * L->in;
    for (size_t k = 0; k < m; k++)
        if (emb_row(L, x[k]) < 0) return (long)k;
    return -1;
}
