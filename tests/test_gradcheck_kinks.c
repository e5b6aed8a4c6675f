/*
 * test_gradcheck_kinks.c - bp_gradcheck's kink flagging and its verdict.
 *
 * relu and leaky_relu have no derivative at 0; a finite difference whose
 * stencil moves a unit's input across 0 disagrees with backprop although
 * backprop is right. bp_gradcheck must flag exactly those parameters
 * (res.kinks) and judge the rest, and a wrong gradient on a judged
 * parameter must still show up in max_rel_error.
 *
 * Built twice: test_gradcheck_kinks (float32, eps 1e-2, tolerance 1e-2) and
 * test_gradcheck_kinks_f64 (double, eps 1e-3, tolerance 1e-6).
 */
#include "check.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef BP_DOUBLE
#define TOL 1e-6
#define EPS 1e-3
#define BAD_REL 1e-4 /* relative error injected into one gradient entry */
#define NAME "test_gradcheck_kinks_f64"
#else
#define TOL 1e-2
#define EPS 1e-2
#define BAD_REL 5e-2
#define NAME "test_gradcheck_kinks"
#endif

static bp_net *make(int n_in, const char *spec)
{
    bp_net *net = NULL;
    bp_error err = {0};
    CHECK(bp_net_create(&net, n_in, spec, 7, &err) == BP_OK, "create '%s': %s", spec, err.message);
    return net;
}

/* Backprop's gradient of every parameter, in net->params order (each dense
 * layer's weight then bias), through the public trainer API. */
static bp_real *grad_of(bp_net *net, bp_loss loss, const bp_real *x, const bp_real *y, int n)
{
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_SGD);
    cfg.loss = loss;
    bp_trainer *tr = NULL;
    bp_error err = {0};
    bp_real *g = malloc(bp_net_param_count(net) * sizeof *g);
    CHECK(bp_trainer_create(&tr, net, &cfg, n, &err) == BP_OK, "trainer: %s", err.message);
    CHECK(bp_trainer_backward(tr, x, y, n, NULL, &err) == BP_OK, "backward: %s", err.message);
    size_t o = 0;
    for (int i = 0; i < bp_net_layers(net); i++) {
        bp_layer_desc d = bp_net_layer(net, i);
        if (d.kind != BP_DENSE) continue;
        size_t nin = (size_t)net->layers[i].in;
        memcpy(g + o, bp_trainer_weight_grad(tr, i), (size_t)d.units * nin * sizeof *g);
        o += (size_t)d.units * nin;
        memcpy(g + o, bp_trainer_bias_grad(tr, i), (size_t)d.units * sizeof *g);
        o += (size_t)d.units;
    }
    CHECK(o == bp_net_param_count(net), "gradient layout: %zu of %zu", o, bp_net_param_count(net));
    bp_trainer_free(tr);
    return g;
}

/* dense(3) relu dense(2) (or leaky_relu) on one sample x = (0.5, -0.8):
 * unit 0's input is placed at EPS / 4, so perturbing its bias or either of
 * its weights by -EPS (moves of EPS, 0.5 EPS, 0.8 EPS) crosses 0; units 1
 * and 2 sit at +-0.4, out of reach. Exactly those 3 of the 17 parameters
 * must be flagged; the output layer's parameters move no kinked input. */
static void kink_at_first_layer(const char *act)
{
    char spec[64];
    snprintf(spec, sizeof spec, "dense(3) %s dense(2)", act);
    bp_net *net = make(2, spec);
    if (!net) return;
    bp_real *w = bp_net_weight(net, 0), *b = bp_net_bias(net, 0);
    const bp_real x[2] = {0.5, -0.8}, y[2] = {0.3, -0.6};
    static const bp_real w0[3][2] = {{0.6, 0.3}, {0.5, -0.2}, {-0.4, 0.4}};
    for (int j = 0; j < 3; j++) {
        w[2 * j] = w0[j][0];
        w[2 * j + 1] = w0[j][1];
    }
    /* pre-activations: unit 0: 0.3 - 0.24 + b0; unit 1: 0.25 + 0.16 = 0.41; unit 2: -0.52 */
    b[0] = (bp_real)(0.25 * EPS - (0.3 - 0.24));
    b[1] = 0;
    b[2] = (bp_real)0.1; /* -0.42 */
    /* Output weights from unit 0 well away from 0, so the kink matters. */
    bp_real *w2 = bp_net_weight(net, 2);
    w2[0] = (bp_real)0.9;
    w2[3] = (bp_real)-0.7;
    bp_error err = {0};
    bp_gradcheck_result res;
    CHECK(bp_gradcheck(net, BP_LOSS_MSE, x, y, 1, EPS, 0, &res, &err) == BP_OK, "%s", err.message);
    CHECK(res.checked == 17, "%s: checked %zu of 17", act, res.checked);
    CHECK(res.kinks == 3, "%s: %zu entries flagged, expected unit 0's 3", act, res.kinks);
    /* The flagged entries are the ones finite differences get wrong ... */
    CHECK(res.kink_max_rel_error > 0.1, "%s: flagged entries' worst error %.3g: the kink was not crossed?",
          act, res.kink_max_rel_error);
    /* ... and what is judged agrees. */
    CHECK(res.max_rel_error < TOL, "%s: judged worst %.3g at layer %d index %zu", act,
          res.max_rel_error, res.worst_layer, res.worst_index);
    CHECK(res.worst_layer == 0 || res.worst_layer == 2, "%s: worst layer %d", act, res.worst_layer);
    printf("  %-36s %zu of %zu flagged (their worst %.2e), judged worst %.2e\n", spec, res.kinks,
           res.checked, res.kink_max_rel_error, res.max_rel_error);

    /* A wrong gradient on a judged parameter (output bias 0) must fail,
     * kinks or not, and be named as the worst. */
    bp_real *g = grad_of(net, BP_LOSS_MSE, x, y, 1);
    size_t bad = 15; /* 6 + 3 first-layer parameters, 6 output weights, then bias 0 */
    g[bad] *= (bp_real)(1 + BAD_REL);
    bp_gradcheck_result r2;
    CHECK(bp_gradcheck_against(net, BP_LOSS_MSE, x, y, 1, EPS, 0, g, &r2, &err) == BP_OK, "%s",
          err.message);
    CHECK(r2.max_rel_error > TOL, "%s: a %.0e error in one gradient entry passed (worst %.3g)", act,
          BAD_REL, r2.max_rel_error);
    CHECK(r2.worst_layer == 2 && r2.worst_index == 6, "%s: worst at layer %d index %zu, injected at 2/6",
          act, r2.worst_layer, r2.worst_index);
    CHECK(r2.kinks == 3, "%s: flagging must not depend on the gradient (%zu)", act, r2.kinks);
    free(g);
    bp_net_free(net);
}

/* A kink deep in the network: every earlier parameter moves the input of
 * the relu after the second dense layer, whose unit 0 is placed near 0 on
 * sample 0. Its bias (and others) must be flagged, the judged rest pass. */
static void kink_deep(void)
{
    const char *spec = "dense(4) tanh dense(3) relu dense(2)";
    bp_net *net = make(3, spec);
    if (!net) return;
    const bp_real x[6] = {0.3, -0.7, 0.5, -0.2, 0.9, 0.1}, y[2] = {0, 1};
    bp_error err = {0};
    /* Move unit 0 of layer 2 so that its input on sample 0 is EPS / 4. */
    /* A training pass keeps every layer's output (an inference pass keeps
     * only the last two); without dropout or batchnorm it computes the same. */
    CHECK(bp_net_reserve_train(net, 2, &err) == BP_OK, "%s", err.message);
    bp_net_forward_ws(net, x, 2, 1);
    bp_net_bias(net, 2)[0] += (bp_real)(0.25 * EPS) - net->act[2][0];
    bp_net_forward_ws(net, x, 2, 1);
    CHECK(fabs(net->act[2][0] - 0.25 * EPS) < 0.01 * EPS, "placed at %.3g", (double)net->act[2][0]);
    bp_gradcheck_result res;
    CHECK(bp_gradcheck(net, BP_LOSS_CROSS_ENTROPY, x, y, 2, EPS, 0, &res, &err) == BP_OK, "%s",
          err.message);
    size_t before = 4 * 3 + 4 + 3 * 4 + 3; /* parameters of layers 0 and 2 */
    CHECK(res.kinks >= 1 && res.kinks <= before, "deep: %zu flagged (1..%zu expected)", res.kinks, before);
    CHECK(res.max_rel_error < TOL, "deep: judged worst %.3g", res.max_rel_error);
    printf("  %-36s %zu of %zu flagged (their worst %.2e), judged worst %.2e\n", spec, res.kinks,
           res.checked, res.kink_max_rel_error, res.max_rel_error);
    bp_net_free(net);
}

/* Nothing flagged where no kink is near: a smooth network, and a relu
 * network whose units are all far from 0 (one always on, one dead). */
static void no_false_flags(void)
{
    bp_net *net = make(2, "dense(4) tanh dense(3) sigmoid dense(2)");
    const bp_real x[4] = {0.4, -0.3, -0.9, 0.6}, y[4] = {0.2, 0.1, -0.5, 0.7};
    bp_gradcheck_result res;
    bp_error err = {0};
    CHECK(bp_gradcheck(net, BP_LOSS_MSE, x, y, 2, EPS, 0, &res, &err) == BP_OK, "%s", err.message);
    CHECK(res.kinks == 0 && res.max_rel_error < TOL, "smooth: %zu flagged, worst %.3g", res.kinks,
          res.max_rel_error);
    bp_net_free(net);

    net = make(2, "dense(2) relu dense(2) leaky_relu(0.2) dense(2)");
    for (int i = 0; i < 4; i++) bp_net_weight(net, 0)[i] = (bp_real)(i % 2 ? 0.1 : -0.1);
    bp_net_bias(net, 0)[0] = 2;  /* always on */
    bp_net_bias(net, 0)[1] = -2; /* dead: its gradients are 0 both ways */
    bp_net_bias(net, 2)[0] = 3;
    bp_net_bias(net, 2)[1] = -3;
    CHECK(bp_gradcheck(net, BP_LOSS_MSE, x, y, 2, EPS, 0, &res, &err) == BP_OK, "%s", err.message);
    CHECK(res.kinks == 0 && res.max_rel_error < TOL, "far from kinks: %zu flagged, worst %.3g", res.kinks,
          res.max_rel_error);
    CHECK(res.checked == bp_net_param_count(net), "checked %zu", res.checked);
    /* The same gradient handed in explicitly gives the same verdict, and a
     * wrong one on a parameter of the dead unit (true gradient 0) fails. */
    bp_real *g = grad_of(net, BP_LOSS_MSE, x, y, 2);
    bp_gradcheck_result r2;
    CHECK(bp_gradcheck_against(net, BP_LOSS_MSE, x, y, 2, EPS, 0, g, &r2, &err) == BP_OK, "%s",
          err.message);
    CHECK(r2.max_rel_error == res.max_rel_error, "given = computed: %.3g vs %.3g", r2.max_rel_error,
          res.max_rel_error);
    g[5] = (bp_real)1e-2; /* layer 0's bias 1 */
    CHECK(bp_gradcheck_against(net, BP_LOSS_MSE, x, y, 2, EPS, 0, g, &r2, &err) == BP_OK, "%s",
          err.message);
    CHECK(r2.max_rel_error > TOL && r2.worst_layer == 0 && r2.worst_index == 5,
          "a gradient of a dead unit's bias: worst %.3g at %d/%zu", r2.max_rel_error, r2.worst_layer,
          r2.worst_index);
    free(g);
    bp_net_free(net);
}

int main(void)
{
    kink_at_first_layer("relu");
    kink_at_first_layer("leaky_relu(0.1)");
    kink_deep();
    no_false_flags();
    return check_done(NAME);
}
