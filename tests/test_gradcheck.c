/*
 * test_gradcheck.c - backprop's gradients against central finite
 * differences for every layer kind and every loss.
 *
 * Built twice: test_gradcheck (float32, worst relative error < 1e-2) and
 * test_gradcheck_f64 (the library compiled with -DBP_DOUBLE, < 1e-6).
 */
#include "backprop.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>

#ifdef BP_DOUBLE
#define TOL 1e-6
#define NAME "test_gradcheck_f64"
#else
#define TOL 1e-2
#define NAME "test_gradcheck"
#endif

static double urand(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) * 0x1.0p-53;
}

/* Check one architecture with one loss on a random batch. */
static void check_net(const char *spec, bp_loss loss, int n_in, int n, uint64_t seed)
{
    bp_error err = {0};
    bp_net *net = NULL;
    bp_status s = bp_net_create(&net, n_in, spec, seed, &err);
    CHECK(s == BP_OK, "create '%s': %s", spec, err.message);
    if (s) return;
    /* Non-zero biases so every bias gradient path is exercised. */
    uint64_t r = seed * 7 + 1;
    for (int i = 0; i < bp_net_layers(net); i++) {
        bp_real *b = bp_net_bias(net, i);
        if (b)
            for (int j = 0; j < bp_net_layer(net, i).units; j++) b[j] = (bp_real)(0.2 * (urand(&r) - 0.5));
    }
    int outs = bp_net_outputs(net);
    int tw = loss == BP_LOSS_CROSS_ENTROPY ? 1 : outs;
    bp_real *x = malloc(sizeof(bp_real) * n * n_in);
    bp_real *y = malloc(sizeof(bp_real) * n * tw);
    for (int i = 0; i < n * n_in; i++) x[i] = (bp_real)(2 * urand(&r) - 1);
    for (int i = 0; i < n * tw; i++) {
        if (loss == BP_LOSS_CROSS_ENTROPY) y[i] = (bp_real)(int)(urand(&r) * outs);
        else if (loss == BP_LOSS_BCE) y[i] = (bp_real)urand(&r);
        else y[i] = (bp_real)(2 * urand(&r) - 1);
    }
    bp_gradcheck_result res;
    s = bp_gradcheck(net, loss, x, y, n, 0, 0, &res, &err);
    CHECK(s == BP_OK, "gradcheck '%s': %s", spec, err.message);
    CHECK(res.checked == bp_net_param_count(net), "'%s': checked %zu of %zu parameters", spec,
          res.checked, bp_net_param_count(net));
    CHECK(res.max_rel_error < TOL,
          "'%s' with %s: worst relative error %.3g at layer %d index %zu (analytic %.9g, numeric %.9g)",
          spec, bp_loss_name(loss), res.max_rel_error, res.worst_layer, res.worst_index, res.analytic,
          res.numeric);
    printf("  %-48s %-13s worst rel err %.2e over %zu params\n", spec, bp_loss_name(loss),
           res.max_rel_error, res.checked);
    free(x);
    free(y);
    bp_net_free(net);
}

int main(void)
{
    /* Every activation, between dense layers and at the output. */
    check_net("dense(5) sigmoid dense(3)", BP_LOSS_MSE, 4, 6, 1);
    check_net("dense(5) tanh dense(3)", BP_LOSS_CROSS_ENTROPY, 4, 6, 2);
    check_net("dense(6) relu dense(4) relu dense(3)", BP_LOSS_CROSS_ENTROPY, 5, 8, 3);
    check_net("dense(6) leaky_relu(0.1) dense(3)", BP_LOSS_BCE, 5, 7, 4);
    check_net("dense(4) identity dense(2)", BP_LOSS_MSE, 3, 5, 5);
    /* softmax: fused into cross-entropy, and differentiated on its own. */
    check_net("dense(6) tanh dense(4) softmax", BP_LOSS_CROSS_ENTROPY, 3, 6, 6);
    check_net("dense(6) tanh dense(4) softmax", BP_LOSS_MSE, 3, 6, 7);
    check_net("dense(5) softmax dense(3)", BP_LOSS_BCE, 3, 4, 8);
    /* sigmoid: fused into bce, and on its own under mse. */
    check_net("dense(4) tanh dense(2) sigmoid", BP_LOSS_BCE, 3, 5, 9);
    check_net("dense(4) tanh dense(2) sigmoid", BP_LOSS_MSE, 3, 5, 10);
    /* dropout (mask held fixed) and a deeper stack. */
    check_net("dense(8) relu dropout(0.3) dense(6) tanh dropout(0.5) dense(3)",
              BP_LOSS_CROSS_ENTROPY, 4, 10, 11);
    check_net("dense(7) leaky_relu(0.2) dense(7) sigmoid dense(7) tanh dense(2)", BP_LOSS_MSE, 3, 4, 12);
    /* linear and logistic regression: the one-layer cases. */
    check_net("dense(1)", BP_LOSS_MSE, 4, 9, 13);
    check_net("dense(1)", BP_LOSS_BCE, 4, 9, 14);
    check_net("dense(1) sigmoid", BP_LOSS_BCE, 4, 9, 15);
    /* stochastic: batch of one. */
    check_net("dense(5) tanh dense(3)", BP_LOSS_CROSS_ENTROPY, 4, 1, 16);

    /* The measure must be able to fail: with a step far too large for the
     * curvature of tanh, finite differences disagree with backprop. */
    {
        bp_error err;
        bp_net *net = NULL;
        bp_net_create(&net, 2, "dense(3) tanh dense(1)", 3, &err);
        bp_real w[3] = {3, -3, 2};
        for (int j = 0; j < 3; j++) bp_net_weight(net, 0)[2 * j] = w[j];
        bp_real x[4] = {0.5, -0.2, 0.1, 0.9}, y[2] = {0.3, -0.7};
        bp_gradcheck_result res;
        CHECK(bp_gradcheck(net, BP_LOSS_MSE, x, y, 2, 0.7, 0, &res, &err) == BP_OK, "%s", err.message);
        CHECK(res.max_rel_error > TOL, "a coarse step should be detected, got %.3g", res.max_rel_error);
        CHECK(bp_gradcheck(net, BP_LOSS_MSE, NULL, y, 2, 0, 0, &res, &err) == BP_EINVAL,
              "NULL input must be rejected");
        CHECK(bp_gradcheck(net, BP_LOSS_MSE, x, y, 2, NAN, 0, &res, &err) == BP_EINVAL, "NaN eps rejected");
        CHECK(bp_gradcheck(net, BP_LOSS_MSE, x, y, 2, 1e300, 0, &res, &err) == BP_EINVAL, "huge eps rejected");
        bp_net_free(net);
    }
    return check_done(NAME);
}
