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

/* Plain libm references of the approximated functions, for the tests. */
void bp_k_ref_exp(bp_real *y, const bp_real *x, size_t m);
void bp_k_ref_tanh(bp_real *y, const bp_real *x, size_t m);
void bp_k_ref_sigmoid(bp_real *y, const bp_real *x, size_t m);

#endif
