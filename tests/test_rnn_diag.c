/* test_rnn_diag.c - the epoch report's gradient norms at a recurrent
 * layer's first and last time step show a gradient vanishing or exploding
 * through time.
 *
 * A tanh rnn(8) over T = 30 steps, read by `last`: the loss sees only the
 * final step, so whatever gradient reaches step 0 came through 29 products
 * with W_hh^T diag(1 - h^2). With W_hh = 0.1 I it shrinks ~0.1 per step
 * (vanishing: first / last < 1e-6); with W_hh = 1.3 I and tiny inputs the
 * states stay in tanh's linear range and it grows ~1.3 per step
 * (exploding: first / last > 100). The learning rate is ~0 so the weights
 * stay where they are set. */
#include "check.h"

#include <backprop.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { T = 30, F = 2, H = 8, N = 16 };

static double first, last;
static int on_epoch(const bp_epoch_info *ei, void *user)
{
    (void)user;
    CHECK(ei->grad_first_step && ei->grad_last_step, "the arrays are there");
    first = ei->grad_first_step[0], last = ei->grad_last_step[0];
    CHECK(ei->grad_first_step[2] == 0 && ei->grad_last_step[2] == 0, "0 for a dense layer");
    return 0;
}

static double ratio(double scale, double xscale)
{
    bp_error e = {BP_OK, ""};
    bp_net *net = NULL;
    bp_shape in = {2, {T, F, 0}};
    if (bp_net_create_shaped(&net, in, "rnn(8) last dense(2)", 1, &e) != BP_OK) {
        CHECK(0, "create: %s", e.message);
        return NAN;
    }
    /* weight_ih [H, F], weight_hh [H, H], biases zero */
    bp_real *w = bp_net_weight(net, 0), *whh = w + H * F;
    memset(whh, 0, sizeof(bp_real) * (H * H + 2 * H));
    for (int j = 0; j < H; j++) whh[j * H + j] = (bp_real)scale;
    static bp_real x[N * T * F], y[N];
    for (int k = 0; k < N * T * F; k++) x[k] = (bp_real)(xscale * sin(1.7 * k + 0.3));
    for (int r = 0; r < N; r++) y[r] = (bp_real)(r % 2);
    bp_data d = {N, T * F, 1, 2, x, y, NULL, 0, {2, {T, F, 0}}};
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_SGD);
    cfg.lr = 1e-12;
    cfg.epochs = 1;
    cfg.batch_size = N;
    cfg.on_epoch = on_epoch;
    bp_trainer *tr = NULL;
    first = last = NAN;
    bp_status s = bp_trainer_create(&tr, net, &cfg, N, &e);
    if (!s) s = bp_fit(tr, &d, NULL, NULL, &e);
    CHECK(s == BP_OK, "fit: %s", e.message);
    bp_trainer_free(tr);
    bp_net_free(net);
    printf("  W_hh = %.1f I: gradient norm at step 0 %.3g, at step %d %.3g, ratio %.3g\n", scale,
           first, T - 1, last, first / last);
    CHECK(last > 0 && isfinite(first), "norms measured (%g, %g)", first, last);
    return first / last;
}

int main(void)
{
    double v = ratio(0.1, 1.0), x = ratio(1.3, 1e-4);
    CHECK(v < 1e-6, "vanishing through time: first / last = %g < 1e-6", v);
    CHECK(x > 100, "exploding through time: first / last = %g > 100", x);
    return check_done("test_rnn_diag");
}
