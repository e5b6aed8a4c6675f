/*
 * kernels.h - elementwise kernels of the forward and backward passes
 * (src/kernels.c). All arrays are row-major; m is an element count, n rows
 * and d columns. Large ones split across the threads their size is worth
 * (bp_threads_for), with the same result on any thread count. Output and input may alias only where the parameter names
 * are not marked restrict in kernels.c (relu, leaky_relu, their gradients
 * and bp_k_mul may run in place).
 */
#ifndef BP_KERNELS_H
#define BP_KERNELS_H

#include "internal.h"

/* Compile a hot loop for several instruction sets, chosen at load time. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define BP_HOT __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define BP_HOT
#endif

void bp_k_exp(bp_real *y, const bp_real *x, size_t m);             /* y = exp(x) */
void bp_k_bias_rows(bp_real *y, const bp_real *b, int n, int d);   /* y[r] = b */
void bp_k_sigmoid(bp_real *y, const bp_real *x, size_t m);         /* y = 1/(1+exp(-x)) */
void bp_k_tanh(bp_real *y, const bp_real *x, size_t m);            /* y = tanh(x) */
void bp_k_relu(bp_real *y, const bp_real *x, size_t m);            /* y = max(0, x) */
void bp_k_leaky_relu(bp_real *y, const bp_real *x, size_t m, bp_real a);
void bp_k_softmax(bp_real *y, const bp_real *x, int n, int d);     /* per row, max-shifted */
void bp_k_sigmoid_grad(bp_real *dx, const bp_real *dy, const bp_real *y, size_t m); /* dy y (1-y) */
void bp_k_tanh_grad(bp_real *dx, const bp_real *dy, const bp_real *y, size_t m);    /* dy (1-y^2) */
void bp_k_relu_grad(bp_real *dx, const bp_real *dy, const bp_real *x, size_t m);    /* dy [x>0] */
void bp_k_leaky_relu_grad(bp_real *dx, const bp_real *dy, const bp_real *x, size_t m, bp_real a);
void bp_k_mul(bp_real *dx, const bp_real *dy, const bp_real *mask, size_t m);       /* dy mask */
void bp_k_colsum(bp_real *s, const bp_real *a, int n, int d);      /* s[j] = sum_r a[r][j] */
void bp_k_colmax(bp_real *acc, const bp_real *a, int n, int d);    /* acc[j] = max(acc[j], a[r][j]) */
double bp_k_sumsq(const bp_real *g, size_t m);                     /* sum g^2 in double */
int bp_k_all_finite(const bp_real *x, size_t m);                   /* 1: no NaN or Inf in x */
/* (bp_k_sumsq adds fixed chunks of 65,536 values in order: split across the
 * threads for large m, the same sum on any thread count) */
#ifndef BP_DOUBLE
/* y = x rounded to bfloat16 (to nearest, ties to even; NaN stays NaN). */
void bp_k_to_bf16(uint16_t *y, const float *x, size_t m);
/* The elementwise layers on bfloat16 activations (a bf16 network's blocked
 * chain, layer.h): the float kernels' equations on the values widened to
 * float, each result rounded to bfloat16 as bp_k_to_bf16 (relu and its
 * gradient only select values, so they round nothing); the dropout mask
 * and the slope stay float. bp_k_colmax_bf16: bp_k_colmax of a bfloat16
 * a [n, d] into the float acc [d]. */
void bp_k_relu_bf16(uint16_t *y, const uint16_t *x, size_t m);
void bp_k_relu_grad_bf16(uint16_t *dx, const uint16_t *dy, const uint16_t *x, size_t m);
void bp_k_leaky_relu_bf16(uint16_t *y, const uint16_t *x, size_t m, float a);
void bp_k_leaky_relu_grad_bf16(uint16_t *dx, const uint16_t *dy, const uint16_t *x, size_t m,
                               float a);
void bp_k_mul_bf16(uint16_t *y, const uint16_t *x, const float *mask, size_t m);
void bp_k_colmax_bf16(float *acc, const uint16_t *a, int n, int d);
#endif

/* Recurrent cells (src/layers/recurrent.c): one sample, one step, units
 * [0, m) of each gate block (blocks H apart: every pointer into a row of
 * gates is offset by the span's first unit), so a step splits its units
 * across threads.
 * Forward: a holds the input projection (x W_ih^T + b_ih) of the gates and
 * receives their activated values (rnn: read only); r the recurrent one
 * (h W_hh^T + b_hh); the new state goes to h (the state the next step's
 * product reads) and to y (the layer's output row).
 *   rnn:  h = tanh(a + r)
 *   lstm: a = [i, f, g, o] [4H]; cc (in: c_{t-1}, out: c_t) and c (the
 *         step's cell, kept for the backward pass); h = o tanh(c)
 *   gru:  a = [r, z, n] [3H] with n = tanh(a_n + r rr_n); rn receives rr_n
 *         (kept for the backward pass); hc (in: h_{t-1}, out: h_t) =
 *         (1 - z) n + z h_{t-1}
 * Backward (dy: the step's output gradient; dh / dhr: the gradient that
 * reached h from the next step, through W_hh): the gates' pre-activation
 * gradients go to da (the step's row of dA) and dac (the step's contiguous
 * [n, G*H] block for the product with W_hh), and are added to db (the bias
 * gradient, summed over the steps and samples):
 *   rnn:  da = (dy + dh)(1 - h^2)
 *   lstm: dc (in: from the next step; out: to the previous one), da [4H];
 *         c = c_t and cprev = c_{t-1} from the forward pass
 *   gru:  dhd (in: the direct part z dh from the next step; out: this
 *         step's); dai [3H] the input-side pre-activation gradients (bias
 *         dbi), dah the recurrent side's (its n part is dai_n r: rr_n sits
 *         inside r; bias dbh); dac = dah. */
void bp_k_rnn_fwd(const bp_real *a, const bp_real *r, bp_real *h, bp_real *y, int m);
void bp_k_lstm_fwd(bp_real *a, const bp_real *r, bp_real *cc, bp_real *c, bp_real *h, bp_real *y,
                   int H, int m);
void bp_k_gru_fwd(bp_real *a, const bp_real *rr, bp_real *rn, bp_real *hc, bp_real *y, int H, int m);
void bp_k_rnn_bwd(bp_real *da, bp_real *dac, bp_real *db, const bp_real *dy, const bp_real *dh,
                  const bp_real *h, int m);
void bp_k_lstm_bwd(bp_real *da, bp_real *dac, bp_real *db, bp_real *dc, const bp_real *dy,
                   const bp_real *dh, const bp_real *g, const bp_real *c, const bp_real *cprev,
                   int H, int m);
void bp_k_gru_bwd(bp_real *dai, bp_real *dah, bp_real *dac, bp_real *dbi, bp_real *dbh,
                  bp_real *dhd, const bp_real *dy, const bp_real *dhr, const bp_real *g,
                  const bp_real *hn, const bp_real *hprev, int H, int m);

/* Plain libm references of the approximated functions, for the tests. */
void bp_k_ref_exp(bp_real *y, const bp_real *x, size_t m);
void bp_k_ref_tanh(bp_real *y, const bp_real *x, size_t m);
void bp_k_ref_sigmoid(bp_real *y, const bp_real *x, size_t m);

#endif
