/*
 * activation.c - elementwise activations and softmax: identity, sigmoid,
 * tanh, relu, leaky_relu(a), softmax. Any shape; the output has the shape
 * of the input. softmax normalizes over the last dimension (torch's
 * Softmax(dim=-1)). Each backward sits under its forward and quotes the
 * equation it differentiates.
 */
#include "layer.h"
#include "../kernels.h"

#include <float.h>
#include <math.h>
#include <string.h>

static bp_status same_shape(bp_layer *L, int col, bp_error *err)
{
    (void)col, (void)err;
    L->out_shape = L->in_shape;
    return BP_OK;
}

/* relu and leaky_relu: the sign of each input is the kink's side. */
static size_t sign_kinks(const bp_net *net, const bp_layer *L, const bp_real *x, int n,
                         unsigned char *sig)
{
    /* Any layout: the signature is elementwise. Float data: the gradient
     * check runs in float32 (bp_gradcheck), so no slot it uses holds
     * bfloat16. */
    (void)net;
    size_t m = (size_t)n * L->in;
    if (L->kind == BP_LEAKY_RELU && L->param == 1) return 0; /* the identity */
    if (sig)
        for (size_t k = 0; k < m; k++) sig[k] = x[k] > 0;
    return m;
}

#define M ((size_t)n * L->out)

/* identity: y = x */
static void identity_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n, int t)
{
    (void)net, (void)t;
    memcpy(y, x, M * sizeof(bp_real));
}
/* dx = dy */
static void identity_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dp,
                              const bp_real *dy, const bp_real *x, const bp_real *y, int n)
{
    (void)net, (void)dp, (void)x, (void)y;
    if (dx) memcpy(dx, dy, M * sizeof(bp_real));
}

/* sigmoid: y = 1 / (1 + exp(-x)) */
static void sigmoid_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n, int t)
{
    (void)net, (void)t;
    bp_k_sigmoid(y, x, M);
}
/* dx = dy y (1 - y) */
static void sigmoid_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dp,
                             const bp_real *dy, const bp_real *x, const bp_real *y, int n)
{
    (void)net, (void)dp, (void)x;
    if (dx) bp_k_sigmoid_grad(dx, dy, y, M);
}

/* tanh: y = tanh(x) */
static void tanh_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n, int t)
{
    (void)net, (void)t;
    bp_k_tanh(y, x, M);
}
/* dx = dy (1 - y^2) */
static void tanh_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dp, const bp_real *dy,
                          const bp_real *x, const bp_real *y, int n)
{
    (void)net, (void)dp, (void)x;
    if (dx) bp_k_tanh_grad(dx, dy, y, M);
}

/* relu and leaky_relu on a bf16 network's blocked chain take bfloat16
 * x, y, dx and dy (uint16_t values behind the bp_real pointers) where the
 * slot says so (bp_bf_in); the double build has none. */
#define BF16(p) ((uint16_t *)(void *)(p))
#define BF16C(p) ((const uint16_t *)(const void *)(p))

/* relu: y = max(0, x) */
static void relu_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n, int t)
{
#ifndef BP_DOUBLE
    if (bp_bf_in(net, L, n, t)) {
        bp_k_relu_bf16(BF16(y), BF16C(x), M);
        return;
    }
#endif
    (void)net, (void)t;
    bp_k_relu(y, x, M);
}
/* dx = dy [x > 0] */
static void relu_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dp, const bp_real *dy,
                          const bp_real *x, const bp_real *y, int n)
{
    (void)net, (void)dp, (void)y;
    if (!dx) return;
#ifndef BP_DOUBLE
    if (bp_bf_in(net, L, n, 1)) {
        bp_k_relu_grad_bf16(BF16(dx), BF16C(dy), BF16C(x), M);
        return;
    }
#endif
    bp_k_relu_grad(dx, dy, x, M);
}

/* leaky_relu(a): y = x > 0 ? x : a x */
static bp_status leaky_check(const bp_layer_desc *d, int col, bp_error *err)
{
    /* Finite in bp_real too: a slope beyond FLT_MAX is inf in the float
     * build, and inf * 0 makes NaN outputs (found by fuzz_spec). */
    double lim = sizeof(bp_real) == sizeof(float) ? FLT_MAX : DBL_MAX;
    if (!isfinite(d->param) || fabs(d->param) > lim)
        return bp_fail(err, BP_ESPEC, "spec:1:%d: leaky_relu slope must be finite (at most %g "
                       "in magnitude)", col, lim);
    return BP_OK;
}
static void leaky_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n, int t)
{
#ifndef BP_DOUBLE
    if (bp_bf_in(net, L, n, t)) {
        bp_k_leaky_relu_bf16(BF16(y), BF16C(x), M, (float)L->param);
        return;
    }
#endif
    (void)net, (void)t;
    bp_k_leaky_relu(y, x, M, (bp_real)L->param);
}
/* dx = dy (x > 0 ? 1 : a) */
static void leaky_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dp, const bp_real *dy,
                           const bp_real *x, const bp_real *y, int n)
{
    (void)net, (void)dp, (void)y;
    if (!dx) return;
#ifndef BP_DOUBLE
    if (bp_bf_in(net, L, n, 1)) {
        bp_k_leaky_relu_grad_bf16(BF16(dx), BF16C(dy), BF16C(x), M, (float)L->param);
        return;
    }
#endif
    bp_k_leaky_relu_grad(dx, dy, x, M, (bp_real)L->param);
}

/* softmax over the last dimension: y_i = exp(x_i) / sum_j exp(x_j) */
static int last_dim(const bp_layer *L) { return L->in_shape.dim[L->in_shape.rank - 1]; }
static void softmax_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n, int t)
{
    (void)net, (void)t;
    int d = last_dim(L);
    bp_k_softmax(y, x, (int)(M / (size_t)d), d);
}
/* dx = y (dy - sum_j dy_j y_j), per row */
static void softmax_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dp,
                             const bp_real *dy, const bp_real *x, const bp_real *y, int n)
{
    (void)net, (void)dp, (void)x;
    if (!dx) return;
    size_t d = (size_t)last_dim(L), rows = M / d;
    for (size_t r = 0; r < rows; r++) {
        const bp_real *yr = y + r * d, *gr = dy + r * d;
        double dot = 0;
        for (size_t j = 0; j < d; j++) dot += (double)gr[j] * yr[j];
        bp_real *xr = dx + r * d;
        for (size_t j = 0; j < d; j++) xr[j] = (bp_real)(yr[j] * (gr[j] - dot));
    }
}
#undef M

/* The elementwise ones take any layout (BP_BLK_KEEP); softmax reads rows
 * along the last dimension, so plain data only. relu and leaky_relu take
 * bfloat16 activations too (BP_BF16_KEEP); identity, sigmoid and tanh end
 * a bf16 network's bfloat16 chain before them (float only). */
#define ACT(name_, word_, usage_, kind_, fwd, bwd, ...)                                      \
    const bp_layer_ops name_ = {.word = word_, .kind = kind_, .usage = usage_,               \
                                .shape = same_shape, .forward = fwd, .backward = bwd, __VA_ARGS__}

ACT(bp_identity_ops, "identity", "identity", BP_IDENTITY, identity_forward, identity_backward,
    .layout = BP_BLK_KEEP);
ACT(bp_sigmoid_ops, "sigmoid", "sigmoid", BP_SIGMOID, sigmoid_forward, sigmoid_backward,
    .layout = BP_BLK_KEEP);
ACT(bp_tanh_ops, "tanh", "tanh", BP_TANH, tanh_forward, tanh_backward, .layout = BP_BLK_KEEP);
ACT(bp_relu_ops, "relu", "relu", BP_RELU, relu_forward, relu_backward, .kinks = sign_kinks,
    .layout = BP_BLK_KEEP, .bf16 = BP_BF16_KEEP);
ACT(bp_leaky_relu_ops, "leaky_relu", "leaky_relu(a)", BP_LEAKY_RELU, leaky_forward,
    leaky_backward, .real_arg = 1, .real_def = 0.01, .check = leaky_check, .kinks = sign_kinks,
    .layout = BP_BLK_KEEP, .bf16 = BP_BF16_KEEP);
ACT(bp_softmax_ops, "softmax", "softmax", BP_SOFTMAX, softmax_forward, softmax_backward);
