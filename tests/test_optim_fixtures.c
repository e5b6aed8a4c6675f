/* test_optim_fixtures.c - training steps against PyTorch.
 *
 * Every tests/fixtures/optim/NAME.txt (written by tools/make_fixtures.py,
 * which documents the format) holds a configuration, a data set, initial
 * weights and the weights torch.optim reached after `steps` training steps
 * over consecutive mini-batches, in float64. This test builds the same
 * network, loads the initial weights, runs bp_train_step over the same
 * batches and compares, per case:
 *   - the learning rate of every step (bp_trainer_lr before the step),
 *   - the data loss of every step (loss_out),
 *   - every weight and bias after the last step,
 * with the error max |a - b| / max(|b|, 1e-3). The double build
 * (test_optim_fixtures_f64.c includes this file) must match to 1e-9.
 *
 * The float build must match to 1e-5, or, where that is beyond float32
 * itself, to 4 times the error of torch's own float32 run of the case
 * (the fixture's `float32_error`, measured by tools/make_fixtures.py).
 * Why 1e-5 is not always reachable: with the floor of 1e-3, a weight that
 * ends near zero must be right to about 1e-8 absolute, while the weights
 * travel through values of 0.1-0.5 whose float32 spacing is 1.5e-8-6e-8;
 * RMSprop and Adagrad also divide each gradient by its own running RMS,
 * which turns the rounding error of a small, cancelling gradient into a
 * step-sized error. Torch in float32 misses 1e-5 on rmsprop_momentum
 * (2.2e-5); the float build's own errors are within 2x of torch float32's
 * on every case. Each case prints its error and tolerance.
 *
 * Besides, every weight and bias tensor must match as a whole to the fixed
 * tolerance in both builds: ||a - b|| / ||b|| <= 1e-5 (float) or 1e-9
 * (double), with no allowance (float build: ~3e-7 at worst).
 *
 * Usage: test_optim_fixtures [FIXTURE_DIR]
 */
#include "check.h"
#include "fixture_file.h"

#include <backprop.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BP_SOURCE_DIR
#define BP_SOURCE_DIR "."
#endif

#ifdef BP_DOUBLE
#define FX_TOL 1e-9
#define FX_F32_FACTOR 0.0 /* torch's float32 error plays no part */
#define FX_BUILD "double"
#define FX_TEST_NAME "test_optim_fixtures_f64"
#else
#define FX_TOL 1e-5
#define FX_F32_FACTOR 4.0
#define FX_BUILD "float"
#define FX_TEST_NAME "test_optim_fixtures"
#endif

#define FX_FLOOR 1e-3

/* ------------------------------------------------------------------------ */
/* One case                                                                  */
/* ------------------------------------------------------------------------ */

static double rel_err(double a, double b)
{
    double s = fabs(b) > FX_FLOOR ? fabs(b) : FX_FLOOR;
    double e = fabs(a - b) / s;
    return e == e ? e : INFINITY; /* NaN counts as the worst */
}

/* What the cases covered, so that a lost fixture file is noticed. */
static int seen_opt[7], seen_loss[3], seen_sched[4], seen_warmup, seen_freeze;

static void run_case(const char *name, fixture *f)
{
    bp_error err;
    bp_train_config cfg;
    bp_net *net = NULL;
    bp_trainer *tr = NULL;
    bp_real *x = NULL, *y = NULL;
    double worst_w = 0, worst_loss = 0, worst_lr = 0, worst_tensor = 0;
    char worst_where[160] = "-";
    long failed_step = -1;

    memset(&err, 0, sizeof err);
    fx_train_config(f, name, &cfg);
    int n_inputs = (int)fx_num(f, name, "n_inputs");
    int n_targets = (int)fx_num(f, name, "n_targets");
    int n_samples = (int)fx_num(f, name, "n_samples");
    int batch = (int)fx_num(f, name, "batch");
    int steps = (int)fx_num(f, name, "steps");
    const char *spec = fx_text(f, name, "spec");
    cfg.batch_size = batch;
    fx_item *f32 = fx_find(f, "float32_error", 0);
    double tol = FX_TOL;
    if (f32 && FX_F32_FACTOR * atof(f32->text) > tol) tol = FX_F32_FACTOR * atof(f32->text);

    seen_opt[cfg.optimizer] = seen_loss[cfg.loss] = seen_sched[cfg.schedule] = 1;
    seen_warmup |= cfg.warmup > 0;
    seen_freeze |= cfg.freeze > 0;

    fx_item *tx = fx_tensor(f, name, "x", (long)n_samples * n_inputs);
    fx_item *ty = fx_tensor(f, name, "y", (long)n_samples * n_targets);
    fx_item *tloss = fx_tensor(f, name, "loss", steps);
    fx_item *tlr = fx_tensor(f, name, "lr", steps);
    if (!tx || !ty || !tloss || !tlr || batch < 1 || steps < 1) goto done;

    if (bp_net_create(&net, n_inputs, spec, 0, &err) != BP_OK) {
        CHECK(0, "%s: bp_net_create(\"%s\"): %s", name, spec, err.message);
        goto done;
    }

    /* initial weights */
    int width = n_inputs;
    for (int i = 0; i < bp_net_layers(net); i++) {
        bp_layer_desc d = bp_net_layer(net, i);
        bp_real *w = bp_net_weight(net, i), *b = bp_net_bias(net, i);
        if (w && b) {
            char key[64];
            snprintf(key, sizeof key, "init.%d.weight", i);
            fx_item *tw = fx_tensor(f, name, key, (long)d.units * width);
            snprintf(key, sizeof key, "init.%d.bias", i);
            fx_item *tb = fx_tensor(f, name, key, d.units);
            if (!tw || !tb) goto done;
            for (long q = 0; q < tw->n; q++) w[q] = (bp_real)tw->v[q];
            for (long q = 0; q < tb->n; q++) b[q] = (bp_real)tb->v[q];
        }
        width = d.units;
    }

    x = malloc((size_t)tx->n * sizeof *x);
    y = malloc((size_t)ty->n * sizeof *y);
    if (!x || !y) {
        CHECK(0, "%s: out of memory", name);
        goto done;
    }
    for (long q = 0; q < tx->n; q++) x[q] = (bp_real)tx->v[q];
    for (long q = 0; q < ty->n; q++) y[q] = (bp_real)ty->v[q];

    if (bp_trainer_create(&tr, net, &cfg, batch, &err) != BP_OK) {
        CHECK(0, "%s: bp_trainer_create: %s", name, err.message);
        goto done;
    }

    int n_batches = (n_samples + batch - 1) / batch;
    for (int s = 0; s < steps; s++) {
        int lo = (s % n_batches) * batch;
        int nb = n_samples - lo < batch ? n_samples - lo : batch;
        double lr_err = rel_err(bp_trainer_lr(tr), tlr->v[s]);
        if (lr_err > worst_lr) worst_lr = lr_err;
        double step_loss = NAN;
        bp_status st = bp_train_step(tr, x + (size_t)lo * n_inputs,
                                     y + (size_t)lo * n_targets, nb, &step_loss, &err);
        if (st != BP_OK) {
            CHECK(0, "%s: step %d: %s: %s", name, s + 1, bp_status_name(st), err.message);
            failed_step = s + 1;
            break;
        }
        double le = rel_err(step_loss, tloss->v[s]);
        if (le > worst_loss) worst_loss = le;
    }
    CHECK(bp_trainer_steps(tr) == (failed_step < 0 ? steps : failed_step - 1),
          "%s: bp_trainer_steps = %ld", name, bp_trainer_steps(tr));

    /* final weights */
    for (int i = 0; i < bp_net_layers(net); i++) {
        const bp_real *w = bp_net_weight(net, i), *b = bp_net_bias(net, i);
        if (!w || !b) continue;
        for (int part = 0; part < 2; part++) {
            char key[64];
            snprintf(key, sizeof key, "final.%d.%s", i, part ? "bias" : "weight");
            fx_item *t = fx_tensor(f, name, key, -1);
            const bp_real *a = part ? b : w;
            if (!t) continue;
            bp_layer_desc d = bp_net_layer(net, i);
            long want = part ? d.units : (long)d.units * (i ? bp_net_layer(net, i - 1).units
                                                             : n_inputs);
            CHECK(t->n == want, "%s: %s has %ld values, expected %ld", name, key, t->n, want);
            if (t->n != want) continue;
            double d2 = 0, b2 = 0;
            for (long q = 0; q < t->n; q++) {
                d2 += ((double)a[q] - t->v[q]) * ((double)a[q] - t->v[q]);
                b2 += t->v[q] * t->v[q];
            }
            double tensor_err = sqrt(d2 / (b2 > 0 ? b2 : 1));
            if (tensor_err > worst_tensor || tensor_err != tensor_err) worst_tensor = tensor_err;
            for (long q = 0; q < t->n; q++) {
                double e = rel_err((double)a[q], t->v[q]);
                if (e > worst_w || (e != e)) {
                    worst_w = e;
                    snprintf(worst_where, sizeof worst_where, "%s[%ld] %.10g vs %.10g",
                             key, q, (double)a[q], t->v[q]);
                }
            }
        }
    }

    printf("  %-17s %-8s weights %.3e (tol %.2g; %s)  per tensor %.3e  loss %.3e  lr %.1e\n", name,
           bp_optimizer_name(cfg.optimizer), worst_w, tol, worst_where, worst_tensor, worst_loss, worst_lr);
    CHECK(worst_tensor <= FX_TOL, "%s: a tensor differs from torch's by %.3e of its norm (tolerance %g)",
          name, worst_tensor, FX_TOL);
    CHECK(failed_step < 0 && worst_w <= tol, "%s: weights differ from torch by %.3e "
          "(tolerance %g, %s build): %s", name, worst_w, tol, FX_BUILD, worst_where);
    CHECK(failed_step < 0 && worst_loss <= FX_TOL,
          "%s: step losses differ from torch by %.3e (tolerance %g)", name, worst_loss,
          FX_TOL);
    CHECK(worst_lr <= 1e-12, "%s: learning rates differ from torch by %.3e", name, worst_lr);

done:
    bp_trainer_free(tr);
    bp_net_free(net);
    free(x);
    free(y);
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : BP_SOURCE_DIR "/tests/fixtures/optim";
    printf("%s: fixtures in %s, %s build, tolerance %g%s\n", FX_TEST_NAME, dir,
           FX_BUILD, FX_TOL,
           FX_F32_FACTOR > 0 ? " (or 4x torch's float32 error, where larger)" : "");
    int n = fx_each(dir, run_case);
    if (n < 0) return check_done(FX_TEST_NAME);
    printf("%s: %d fixture files\n", FX_TEST_NAME, n);

    for (int i = 0; i < 7; i++)
        CHECK(seen_opt[i], "no fixture for optimizer %s", bp_optimizer_name((bp_optimizer)i));
    for (int i = 0; i < 3; i++)
        CHECK(seen_loss[i], "no fixture for loss %s", bp_loss_name((bp_loss)i));
    for (int i = 0; i < 4; i++)
        CHECK(seen_sched[i], "no fixture for schedule %s", bp_schedule_name((bp_schedule)i));
    CHECK(seen_warmup, "no fixture with warm-up");
    CHECK(seen_freeze, "no fixture with frozen layers");
    return check_done(FX_TEST_NAME);
}
