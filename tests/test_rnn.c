/* test_rnn.c - recurrent networks through the public API: spec words,
 * shapes and their errors, tensors (torch's state_dict names and shapes),
 * torch's default initialization, the loss over every step of a sequence
 * output, the carried state of truncated BPTT (windows of a stream equal
 * one long sequence), stateful bp_fit's rules, token-id checks, inference
 * equal to training-mode forward, and (double build, test_rnn_f64.c)
 * gradient checks of every cell with T >= 5, stacked cells, last,
 * embedding, dense on a sequence and truncated BPTT with carried state
 * against finite differences, worst relative error < 1e-6. */
#include "check.h"
#include "internal.h"

#include <backprop.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef BP_DOUBLE
#define TEST_NAME "test_rnn_f64"
#else
#define TEST_NAME "test_rnn"
#endif

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static double urand(void)
{
    rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rs >> 11) / 9007199254740992.0;
}

static bp_shape seq(int T, int F)
{
    bp_shape s = {2, {T, F, 0}};
    return s;
}

static bp_net *make(bp_shape in, const char *spec)
{
    bp_error e = {BP_OK, ""};
    bp_net *net = NULL;
    bp_status s = bp_net_create_shaped(&net, in, spec, 11, &e);
    CHECK(s == BP_OK, "create '%s': %s", spec, e.message);
    return net;
}

static void expect_spec_error(bp_shape in, const char *spec, const char *want)
{
    bp_error e = {BP_OK, ""};
    bp_net *net = NULL;
    bp_status s = bp_net_create_shaped(&net, in, spec, 1, &e);
    CHECK(s == BP_ESPEC && net == NULL && strstr(e.message, want) != NULL,
          "'%s': status %d, message '%s' (want '%s')", spec, (int)s, e.message, want);
    bp_net_free(net);
}

static void test_shapes(void)
{
    bp_net *net = make(seq(7, 3), "lstm(5) gru(4) rnn(6) dense(2)");
    if (!net) return;
    CHECK(strcmp(bp_net_spec(net), "lstm(5) gru(4) rnn(6) dense(2)") == 0, "spec '%s'",
          bp_net_spec(net));
    bp_shape s = bp_net_layer_shape(net, 0);
    CHECK(s.rank == 2 && s.dim[0] == 7 && s.dim[1] == 5, "lstm out [7, 5]");
    s = bp_net_layer_shape(net, 3);
    CHECK(s.rank == 2 && s.dim[0] == 7 && s.dim[1] == 2, "dense on a sequence: [7, 2]");
    /* lstm: 4*5*(3+5) + 2*4*5; gru: 3*4*(5+4) + 2*3*4; rnn: 6*(4+6) + 2*6; dense 6*2+2 */
    size_t want = 160 + 40 + 108 + 24 + 60 + 12 + 14;
    CHECK(bp_net_param_count(net) == want, "param count %zu, want %zu", bp_net_param_count(net),
          want);
    CHECK(bp_net_outputs(net) == 14, "outputs %d", bp_net_outputs(net));
    CHECK(bp_net_loss_steps(net, BP_LOSS_CROSS_ENTROPY) == 7, "7 loss steps");
    CHECK(bp_net_is_recurrent(net) == 1, "recurrent");
    CHECK(bp_layer_is_parametric(BP_LSTM) && bp_layer_is_parametric(BP_EMBEDDING) &&
              !bp_layer_is_parametric(BP_LAST),
          "parametric kinds");
    CHECK(bp_net_layer(net, 0).units == 5, "units of lstm(5)");
    CHECK(bp_net_bias(net, 0) == NULL && bp_net_weight(net, 0) != NULL,
          "recurrent: weight is weight_ih, no tensor named bias");
    /* torch's names and shapes */
    const char *names[] = {"0.weight_ih_l0", "0.weight_hh_l0", "0.bias_ih_l0", "0.bias_hh_l0",
                           "1.weight_ih_l0"};
    int64_t d0[] = {20, 20, 20, 20, 12}, d1[] = {3, 5, 0, 0, 5};
    for (int j = 0; j < 5; j++) {
        bp_tensor t;
        int ok = bp_net_tensor(net, j, &t);
        CHECK(ok && strcmp(t.name, names[j]) == 0 && t.shape[0] == d0[j] &&
                  (t.rank == 1 || t.shape[1] == d1[j]) && t.trainable,
              "tensor %d: %s [%lld, %lld]", j, ok ? t.name : "?", (long long)t.shape[0],
              (long long)(t.rank > 1 ? t.shape[1] : 0));
    }
    /* torch's reset_parameters: U(-1/sqrt(H), 1/sqrt(H)) on all four */
    double k = 1 / sqrt(5.0), mx = 0;
    const bp_real *w = bp_net_weight(net, 0);
    for (int q = 0; q < 200; q++) mx = fabs(w[q]) > mx ? fabs(w[q]) : mx;
    CHECK(mx <= k && mx > 0.8 * k, "lstm(5) init within 1/sqrt(5) = %g, max |w| %g", k, mx);
    bp_net_free(net);

    net = make(bp_shape_flat(9), "embedding(4,30) gru(8) last dense(3)");
    if (net) {
        CHECK(strcmp(bp_net_spec(net), "embedding(4,30) gru(8) last dense(3)") == 0, "spec '%s'",
              bp_net_spec(net));
        bp_tensor t;
        CHECK(bp_net_tensor(net, 0, &t) && strcmp(t.name, "0.weight") == 0 && t.shape[0] == 30 &&
                  t.shape[1] == 4,
              "embedding weight [30, 4]");
        bp_shape s2 = bp_net_layer_shape(net, 2);
        CHECK(s2.rank == 1 && s2.dim[0] == 8, "last: [8]");
        CHECK(bp_net_loss_steps(net, BP_LOSS_CROSS_ENTROPY) == 1, "1 loss step after last");
        CHECK(bp_net_layer(net, 0).units == 4, "units of embedding(4,30)");
        bp_net_free(net);
    }

    expect_spec_error(bp_shape_flat(12), "lstm(4) dense(2)", "spec:1:1: lstm needs a sequence input");
    expect_spec_error(bp_shape_flat(12), "dense(4) last", "spec:1:10: last needs a sequence");
    expect_spec_error((bp_shape){3, {1, 8, 8}}, "gru(4)", "gru needs a sequence input [T, F], got [1, 8, 8]");
    expect_spec_error(seq(5, 2), "rnn(0)", "spec:1:5: 'rnn' needs whole numbers in 1..");
    expect_spec_error(seq(5, 2), "lstm(2000000)", "spec:1:1: lstm needs 1..1000000 hidden units");
    expect_spec_error(bp_shape_flat(5), "embedding(8) lstm(4)", "embedding needs its vocabulary size");
    expect_spec_error(seq(5, 2), "lstm(4) embedding(3,9)", "spec:1:9: embedding must be the first layer");
    expect_spec_error(seq(5, 2), "embedding(3,9)", "embedding needs a sequence of token ids [T]");
    expect_spec_error(seq(5, 2), "lstm(4) embedding(3,9,2)", "too many arguments");
}

/* bp_forward refuses values that are not token ids; bp_fit names the row. */
static void test_ids(void)
{
    bp_net *net = make(bp_shape_flat(4), "embedding(3,5) rnn(4) dense(5)");
    if (!net) return;
    bp_real x[8] = {0, 1, 2, 4, 3, 2, 1, 0}, y[40];
    bp_error e = {BP_OK, ""};
    CHECK(bp_forward(net, x, 2, y, &e) == BP_OK, "good ids: %s", e.message);
    x[6] = 5;
    bp_status s = bp_forward(net, x, 2, y, &e);
    CHECK(s == BP_EINVAL && strstr(e.message, "sample 2, step 3 holds 5, not a token id in 0..4"),
          "id 5 refused: %s", e.message);
    x[6] = 1.5;
    CHECK(bp_forward(net, x, 2, y, &e) == BP_EINVAL, "id 1.5 refused");
    x[6] = (bp_real)NAN;
    CHECK(bp_forward(net, x, 2, y, &e) == BP_EINVAL, "NaN id refused");
    x[6] = 1;
    /* bp_fit: targets per step, checked against the vocabulary */
    bp_real t[8] = {1, 2, 4, 3, 2, 1, 0, 0};
    bp_data d = {2, 4, 4, 5, x, t, NULL, 0, {1, {4, 0, 0}}};
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.epochs = 2;
    cfg.batch_size = 2;
    bp_trainer *tr = NULL;
    CHECK(bp_trainer_create(&tr, net, &cfg, 2, &e) == BP_OK, "trainer: %s", e.message);
    CHECK(bp_fit(tr, &d, NULL, NULL, &e) == BP_OK, "fit on ids: %s", e.message);
    t[5] = 7;
    s = bp_fit(tr, &d, NULL, NULL, &e);
    CHECK(s == BP_EINVAL && strstr(e.message, "row 2 has label 7, the network has classes 0..4"),
          "target 7 refused: %s", e.message);
    t[5] = 1;
    x[3] = -1;
    s = bp_fit(tr, &d, NULL, NULL, &e);
    CHECK(s == BP_EINVAL && strstr(e.message, "row 1, step 4 holds -1, not a token id"),
          "id -1 refused by bp_fit: %s", e.message);
    d.n_targets = 1;
    x[3] = 2;
    s = bp_fit(tr, &d, NULL, NULL, &e);
    CHECK(s == BP_ESHAPE && strstr(e.message, "the cross-entropy loss needs 4"),
          "one target per step: %s", e.message);
    bp_trainer_free(tr);
    bp_net_free(net);
}

/* Reference cross-entropy over every step: mean over n*T rows. */
static void test_sequence_loss(void)
{
    bp_net *net = make(seq(5, 2), "gru(3) dense(4)");
    if (!net) return;
    int n = 3, T = 5, V = 4;
    bp_real x[30], y[15], out[60];
    for (int k = 0; k < 30; k++) x[k] = (bp_real)(2 * urand() - 1);
    for (int k = 0; k < 15; k++) y[k] = (bp_real)(k % V);
    bp_error e = {BP_OK, ""};
    CHECK(bp_forward(net, x, n, out, &e) == BP_OK, "forward: %s", e.message);
    double want = 0;
    for (int r = 0; r < n * T; r++) {
        double m = -INFINITY, z = 0;
        for (int j = 0; j < V; j++) m = out[r * V + j] > m ? out[r * V + j] : m;
        for (int j = 0; j < V; j++) z += exp(out[r * V + j] - m);
        want += -(out[r * V + (int)y[r]] - m - log(z));
    }
    want /= n * T;
    bp_data d = {n, 10, T, V, x, y, NULL, 0, {2, {5, 2, 0}}};
    double loss = 0, acc = 0;
    CHECK(bp_evaluate(net, BP_LOSS_CROSS_ENTROPY, &d, &loss, &acc, &e) == BP_OK, "evaluate: %s",
          e.message);
    CHECK_CLOSE(loss, want, 1e-5, "cross-entropy averaged over every step");
    CHECK(acc >= 0 && acc <= 1, "accuracy over steps %g", acc);
    bp_net_free(net);
}

/* Windows of a stream with carried state give exactly the outputs of the
 * whole sequence; a pass of another batch size starts from zero. */
static void test_carried_state(const char *cell)
{
    char spec_long[64], spec_win[64];
    snprintf(spec_long, sizeof spec_long, "%s(6) %s(5) dense(3)", cell, cell);
    snprintf(spec_win, sizeof spec_win, "%s(6) %s(5) dense(3)", cell, cell);
    int n = 2, T = 4, W = 3, F = 2; /* 3 windows of 4 steps = 12 steps */
    bp_net *whole = make(seq(T * W, F), spec_long);
    bp_net *win = make(seq(T, F), spec_win);
    if (!whole || !win) goto done;
    CHECK(bp_net_param_count(whole) == bp_net_param_count(win), "same parameters");
    memcpy(win->params, whole->params, whole->n_params * sizeof(bp_real));
    bp_real x[2 * 12 * 2], yw[2 * 12 * 3], yv[2 * 4 * 3], xs[2 * 4 * 2];
    for (size_t k = 0; k < sizeof x / sizeof x[0]; k++) x[k] = (bp_real)(2 * urand() - 1);
    bp_error e = {BP_OK, ""};
    CHECK(bp_forward(whole, x, n, yw, &e) == BP_OK, "whole: %s", e.message);
    CHECK(bp_net_set_stateful(win, n, &e) == BP_OK && bp_net_stateful(win) == n, "stateful");
    double worst = 0, first_diff = 0;
    for (int k = 0; k < W; k++) {
        for (int b = 0; b < n; b++)
            memcpy(xs + (size_t)b * T * F, x + ((size_t)b * T * W + (size_t)k * T) * F,
                   (size_t)T * F * sizeof(bp_real));
        CHECK(bp_forward(win, xs, n, yv, &e) == BP_OK, "window %d: %s", k, e.message);
        for (int b = 0; b < n; b++)
            for (int q = 0; q < T * 3; q++) {
                double a = yv[(size_t)b * T * 3 + q];
                double c = yw[((size_t)b * T * W + (size_t)k * T) * 3 + q];
                worst = fabs(a - c) > worst ? fabs(a - c) : worst;
            }
    }
    CHECK(worst < 1e-5, "%s: windows with carried state = the whole sequence (worst %g)", cell, worst);
    /* Reset: the first window again gives the first window's outputs. */
    bp_net_reset_state(win);
    for (int b = 0; b < n; b++)
        memcpy(xs + (size_t)b * T * F, x + (size_t)b * T * W * F, (size_t)T * F * sizeof(bp_real));
    CHECK(bp_forward(win, xs, n, yv, &e) == BP_OK, "after reset");
    for (int q = 0; q < T * 3; q++) first_diff = fmax(first_diff, fabs(yv[q] - yw[q]));
    CHECK(first_diff < 1e-5, "%s: reset state gives the first window again (%g)", cell, first_diff);
    /* A pass of one sample (another size) starts from zero and leaves the state. */
    bp_real y1[12];
    CHECK(bp_forward(win, xs, 1, y1, &e) == BP_OK, "batch of 1");
    double d1 = 0;
    for (int q = 0; q < T * 3; q++) d1 = fmax(d1, fabs(y1[q] - yw[q]));
    CHECK(d1 < 1e-5, "%s: another batch size starts from zero (%g)", cell, d1);
    /* Without carry the second window differs (the state matters). */
    CHECK(bp_net_set_stateful(win, 0, &e) == BP_OK && bp_net_stateful(win) == 0, "stateless");
    for (int b = 0; b < n; b++)
        memcpy(xs + (size_t)b * T * F, x + ((size_t)b * T * W + T) * F, (size_t)T * F * sizeof(bp_real));
    CHECK(bp_forward(win, xs, n, yv, &e) == BP_OK, "stateless window 2");
    double d2 = 0;
    for (int q = 0; q < T * 3; q++) d2 = fmax(d2, fabs(yv[q] - yw[(size_t)T * 3 + q]));
    CHECK(d2 > 1e-4, "%s: the zero state gives other outputs than the carried one (%g)", cell, d2);
done:
    bp_net_free(whole);
    bp_net_free(win);
}

/* Stateful bp_fit: in order, batch = streams; every epoch starts from zero. */
static void test_stateful_fit(void)
{
    bp_net *net = make(bp_shape_flat(6), "embedding(4,5) lstm(8) dense(5)");
    if (!net) return;
    int rows = 8, T = 6;
    bp_real x[48], y[48];
    for (int k = 0; k < 48; k++) x[k] = (bp_real)(k % 5), y[k] = (bp_real)((k + 1) % 5);
    bp_data d = {rows, T, T, 5, x, y, NULL, 0, {1, {6, 0, 0}}};
    bp_error e = {BP_OK, ""};
    CHECK(bp_net_set_stateful(net, 4, &e) == BP_OK, "stateful 4");
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.lr = 0.05;
    cfg.epochs = 60;
    cfg.batch_size = 4;
    bp_trainer *tr = NULL;
    CHECK(bp_trainer_create(&tr, net, &cfg, 4, &e) == BP_OK, "trainer: %s", e.message);
    bp_fit_result r;
    bp_status s = bp_fit(tr, &d, NULL, &r, &e);
    CHECK(s == BP_EINVAL && strstr(e.message, "trains in order"), "shuffle refused: %s", e.message);
    bp_trainer_free(tr);
    cfg.shuffle = 0;
    CHECK(bp_trainer_create(&tr, net, &cfg, 4, &e) == BP_OK, "trainer: %s", e.message);
    s = bp_fit(tr, &d, &d, &r, &e);
    CHECK(s == BP_OK, "stateful fit: %s", e.message);
    CHECK(r.final_train_loss < 0.1, "a cyclic sequence is learned: loss %g", r.final_train_loss);
    double l1 = 0, l2 = 0, acc = 0;
    CHECK(bp_evaluate(net, BP_LOSS_CROSS_ENTROPY, &d, &l1, &acc, &e) == BP_OK, "evaluate");
    CHECK(bp_evaluate(net, BP_LOSS_CROSS_ENTROPY, &d, &l2, NULL, &e) == BP_OK, "evaluate again");
    CHECK(l1 == l2, "evaluation resets the state: %g vs %g", l1, l2);
    CHECK(acc > 0.9, "accuracy per step %g", acc);
    bp_trainer_free(tr);
    bp_net_free(net);
}

/* Inference equals the training-mode forward (no dropout), and a batch
 * beyond the training reservation (the shared inference scratch) too. */
static void test_inference_paths(void)
{
    bp_net *net = make(seq(5, 3), "lstm(7) gru(6) last dense(2)");
    if (!net) return;
    int n = 9;
    bp_real x[9 * 15], a[18], b[18];
    for (int k = 0; k < 9 * 15; k++) x[k] = (bp_real)(2 * urand() - 1);
    bp_error e = {BP_OK, ""};
    CHECK(bp_forward(net, x, n, a, &e) == BP_OK, "inference: %s", e.message);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_SGD);
    cfg.loss = BP_LOSS_MSE;
    bp_trainer *tr = NULL;
    CHECK(bp_trainer_create(&tr, net, &cfg, 4, &e) == BP_OK, "trainer");
    const bp_real *o = bp_net_forward_ws(net, x, 4, 1);
    double d = 0;
    for (int q = 0; q < 8; q++) d = fmax(d, fabs(o[q] - a[q]));
    CHECK(d < 1e-6, "training-mode forward = inference (%g)", d);
    CHECK(bp_forward(net, x, n, b, &e) == BP_OK, "inference of 9 > max batch 4");
    d = 0;
    for (int q = 0; q < 18; q++) d = fmax(d, fabs(b[q] - a[q]));
    CHECK(d == 0, "same outputs through the shared scratch (%g)", d);
    bp_trainer_free(tr);
    bp_net_free(net);
}

#ifdef BP_DOUBLE
static void gradcheck(bp_net *net, bp_loss loss, const bp_real *x, const bp_real *y, int n,
                      const char *what)
{
    bp_gradcheck_result r;
    bp_error e = {BP_OK, ""};
    bp_status s = bp_gradcheck(net, loss, x, y, n, 1e-4, 1e-5, &r, &e);
    CHECK(s == BP_OK, "%s: %s", what, e.message);
    CHECK(r.max_rel_error < 1e-6 && r.checked == bp_net_param_count(net) && r.kinks == 0,
          "%s: worst relative error %.3g (layer %d, index %zu: %.9g vs %.9g), %zu checked",
          what, r.max_rel_error, r.worst_layer, r.worst_index, r.analytic, r.numeric, r.checked);
    printf("  %-52s worst %.2e over %zu parameters\n", what, r.max_rel_error, r.checked);
}

static void gradcheck_spec(bp_shape in, const char *spec, bp_loss loss, int n, int vocab)
{
    bp_net *net = make(in, spec);
    if (!net) return;
    int ni = bp_net_inputs(net), steps = bp_net_loss_steps(net, loss);
    int tw = loss == BP_LOSS_CROSS_ENTROPY ? steps : bp_net_outputs(net);
    int classes = bp_net_outputs(net) / steps;
    bp_real *x = malloc(sizeof(bp_real) * n * ni), *y = malloc(sizeof(bp_real) * n * tw);
    for (int k = 0; k < n * ni; k++)
        x[k] = vocab ? (bp_real)(int)(urand() * vocab) : (bp_real)(2 * urand() - 1);
    for (int k = 0; k < n * tw; k++)
        y[k] = loss == BP_LOSS_CROSS_ENTROPY ? (bp_real)(int)(urand() * classes) : (bp_real)urand();
    char what[128];
    snprintf(what, sizeof what, "%s (%s)", spec, bp_loss_name(loss));
    gradcheck(net, loss, x, y, n, what);
    free(x);
    free(y);
    bp_net_free(net);
}

static void test_gradchecks(void)
{
    printf("gradient checks, double build, worst relative error < 1e-6:\n");
    gradcheck_spec(seq(6, 3), "rnn(4) last dense(3)", BP_LOSS_CROSS_ENTROPY, 3, 0);
    gradcheck_spec(seq(6, 3), "lstm(4) last dense(3)", BP_LOSS_CROSS_ENTROPY, 3, 0);
    gradcheck_spec(seq(6, 3), "gru(4) last dense(3)", BP_LOSS_CROSS_ENTROPY, 3, 0);
    gradcheck_spec(seq(5, 2), "rnn(3) dense(2)", BP_LOSS_MSE, 2, 0);
    gradcheck_spec(seq(5, 2), "lstm(3) dense(4)", BP_LOSS_CROSS_ENTROPY, 2, 0);
    gradcheck_spec(seq(5, 2), "gru(3) dense(4) softmax", BP_LOSS_CROSS_ENTROPY, 2, 0);
    gradcheck_spec(seq(5, 3), "lstm(4) gru(3) rnn(4) last dense(2)", BP_LOSS_CROSS_ENTROPY, 2, 0);
    gradcheck_spec(seq(7, 2), "gru(4) tanh dropout(0.3) lstm(3) dense(2)", BP_LOSS_BCE, 2, 0);
    gradcheck_spec(bp_shape_flat(6), "embedding(3,7) lstm(4) dense(7)", BP_LOSS_CROSS_ENTROPY, 3, 7);
    gradcheck_spec(bp_shape_flat(5), "embedding(4,6) gru(3) last dense(2)", BP_LOSS_CROSS_ENTROPY, 2, 6);
    gradcheck_spec(seq(5, 3), "dense(4) tanh rnn(3) dense(2)", BP_LOSS_MSE, 2, 0);

    /* Truncated BPTT: a second window whose initial state was carried
     * from the first; the gradient stops at the window's start. */
    const char *cells[] = {"lstm(4) rnn(3) dense(5)", "gru(4) dense(5)", "rnn(4) dense(5)"};
    for (int c = 0; c < 3; c++) {
        bp_net *net = make(bp_shape_flat(5), "embedding(3,5) lstm(4) dense(5)");
        bp_net_free(net);
        net = make(seq(5, 2), cells[c]);
        if (!net) continue;
        int n = 2;
        bp_real x1[20], x2[20], y[10];
        for (int k = 0; k < 20; k++) x1[k] = (bp_real)(2 * urand() - 1), x2[k] = (bp_real)(2 * urand() - 1);
        for (int k = 0; k < 10; k++) y[k] = (bp_real)(int)(urand() * 5);
        bp_error e = {BP_OK, ""};
        bp_real out[50];
        CHECK(bp_net_set_stateful(net, n, &e) == BP_OK, "stateful");
        CHECK(bp_forward(net, x1, n, out, &e) == BP_OK, "first window");
        double nz = 0;
        for (int i = 0; i < net->n_layers; i++)
            for (int q = 0; net->layers[i].state && q < n * net->layers[i].state_w; q++)
                nz += fabs(net->layers[i].state[q]);
        CHECK(nz > 0.1, "the first window leaves a state (%g)", nz);
        char what[96];
        snprintf(what, sizeof what, "%s, carried state (truncated BPTT)", cells[c]);
        gradcheck(net, BP_LOSS_CROSS_ENTROPY, x2, y, n, what);
        double nz2 = 0;
        for (int i = 0; i < net->n_layers; i++)
            for (int q = 0; net->layers[i].state && q < n * net->layers[i].state_w; q++)
                nz2 += fabs(net->layers[i].state[q]);
        CHECK(nz2 == nz, "the gradient check leaves the carried state alone");
        bp_net_free(net);
    }
}
#endif

/* A step's cells split their units across threads once n * G * H reaches
 * 65,536 (src/layers/recurrent.c): outputs and gradients on two threads
 * equal those on one, bit for bit in the double build (reference GEMM
 * loops; only the split changes), within 1e-5 of the largest value in the
 * float build (the GEMM library may split its own sums). gru(88) splits
 * at unit 32 (spans start on 64-byte lines), not at 44. */
static void test_thread_split(void)
{
    if (bp_cores() < 2) {
        printf("  skip the thread split: %d core available\n", bp_cores());
        return;
    }
    const char *specs[] = {"rnn(256) dense(3)", "lstm(64) dense(3)", "gru(88) dense(3)"};
    int n = 256, T = 3, F = 4;
    for (int c = 0; c < 3; c++) {
        bp_net *net = make(seq(T, F), specs[c]);
        if (!net) continue;
        size_t np = bp_net_param_count(net);
        int outs = bp_net_outputs(net);
        bp_real *x = malloc(sizeof(bp_real) * n * T * F), *y = malloc(sizeof(bp_real) * n * T);
        bp_real *g[2] = {malloc(sizeof(bp_real) * np), malloc(sizeof(bp_real) * np)};
        bp_real *out[2] = {malloc(sizeof(bp_real) * n * outs), malloc(sizeof(bp_real) * n * outs)};
        for (int k = 0; k < n * T * F; k++) x[k] = (bp_real)(2 * urand() - 1);
        for (int k = 0; k < n * T; k++) y[k] = (bp_real)(int)(urand() * 3);
        for (int v = 0; v < 2; v++) {
            CHECK(bp_set_threads(v + 1) == v + 1, "bp_set_threads(%d)", v + 1);
            bp_train_config cfg;
            bp_train_config_default(&cfg, BP_ADAM);
            bp_trainer *tr = NULL;
            bp_error e = {BP_OK, ""};
            CHECK(bp_trainer_create(&tr, net, &cfg, n, &e) == BP_OK, "trainer: %s", e.message);
            if (!tr) continue;
            double loss;
            CHECK(bp_trainer_backward(tr, x, y, n, &loss, &e) == BP_OK, "backward: %s", e.message);
            for (int i = 0; i < net->n_layers; i++)
                if (net->layers[i].n_params)
                    memcpy(g[v] + net->layers[i].offset, bp_trainer_weight_grad(tr, i),
                           net->layers[i].n_params * sizeof(bp_real));
            CHECK(bp_forward(net, x, n, out[v], &e) == BP_OK, "forward: %s", e.message);
            bp_trainer_free(tr);
        }
        bp_set_threads(0);
        double dg = 0, mg = 0, dy = 0, my = 0;
        for (size_t q = 0; q < np; q++)
            dg = fmax(dg, fabs(g[0][q] - g[1][q])), mg = fmax(mg, fabs(g[0][q]));
        for (int q = 0; q < n * outs; q++)
            dy = fmax(dy, fabs(out[0][q] - out[1][q])), my = fmax(my, fabs(out[0][q]));
#ifdef BP_DOUBLE
        CHECK(dg == 0 && dy == 0, "%s: 2 threads = 1 thread bit for bit (gradients %g, outputs %g)",
              specs[c], dg, dy);
#else
        CHECK(dg <= 1e-5 * mg && dy <= 1e-5 * my,
              "%s: 2 threads = 1 thread (gradients %g of %g, outputs %g of %g)", specs[c], dg, mg,
              dy, my);
#endif
        free(x), free(y), free(g[0]), free(g[1]), free(out[0]), free(out[1]);
        bp_net_free(net);
    }
}

/* The cross-entropy over many rows (a loss at every step) runs in blocks
 * shared among threads: the same loss and gradients, bit for bit, on one
 * and two threads, and the loss equal to the plain sum over rows. */
static void test_loss_blocks(void)
{
    int n = 4096, d = 96;
    bp_real *z = malloc(sizeof(bp_real) * n * d), *t = malloc(sizeof(bp_real) * n);
    bp_real *g1 = malloc(sizeof(bp_real) * n * d), *g2 = malloc(sizeof(bp_real) * n * d);
    /* rows of very different scales, so that another grouping of the sum
     * would round differently */
    for (int r = 0; r < n; r++) {
        double scale = pow(10, 4 * urand() - 2);
        for (int j = 0; j < d; j++) z[r * d + j] = (bp_real)(scale * (6 * urand() - 3));
    }
    for (int r = 0; r < n; r++) t[r] = (bp_real)(int)(urand() * d);
    long c1 = -1, c2 = -2;
    bp_set_threads(1);
    double l1 = bp_loss_eval(BP_LOSS_CROSS_ENTROPY, z, t, n, d, g1, &c1);
    bp_set_threads(2);
    double l2 = bp_loss_eval(BP_LOSS_CROSS_ENTROPY, z, t, n, d, g2, &c2);
    bp_set_threads(0);
    CHECK(l1 == l2 && c1 == c2 && memcmp(g1, g2, sizeof(bp_real) * n * d) == 0,
          "cross-entropy over %d rows: 1 and 2 threads agree bit for bit (%.17g, %.17g)", n, l1, l2);
    double want = 0;
    for (int r = 0; r < n; r++) {
        double m = -INFINITY, s = 0;
        for (int j = 0; j < d; j++) m = fmax(m, z[r * d + j]);
        for (int j = 0; j < d; j++) s += exp(z[r * d + j] - m);
        want += m + log(s) - z[r * d + (int)t[r]];
    }
    want /= n;
    CHECK(fabs(l1 - want) <= 1e-10 * fabs(want), "blocked sum %.17g = plain sum %.17g", l1, want);
    free(z), free(t), free(g1), free(g2);
}

int main(void)
{
    test_shapes();
    test_ids();
    test_sequence_loss();
    test_carried_state("lstm");
    test_carried_state("gru");
    test_carried_state("rnn");
    test_stateful_fit();
    test_inference_paths();
    test_thread_split();
    test_loss_blocks();
#ifdef BP_DOUBLE
    test_gradchecks();
#endif
    return check_done(TEST_NAME);
}
