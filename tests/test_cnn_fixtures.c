/* test_cnn_fixtures.c - convolutional networks trained against PyTorch.
 *
 * Every tests/fixtures/cnn/NAME.txt (written by tools/make_cnn_fixtures.py,
 * whose docstring documents the format and the exact step semantics) holds
 * a configuration, an input shape, a spec, a data set, every state_dict
 * tensor before training (init.KEY) and after `steps` torch.optim steps
 * over consecutive mini-batches (final.KEY), in float64, and the final
 * network's eval() outputs on all of x (eval.logits). This test builds the
 * same network with bp_net_create_shaped, writes every init tensor by name
 * through bp_net_tensor (parameters, running statistics and
 * num_batches_tracked), configures the trainer like the fixture (freeze
 * included), runs bp_train_step over the same batches and compares:
 *   - the learning rate of every step (bp_trainer_lr before the step),
 *   - the data loss of every step (loss_out),
 *   - every final tensor, running_mean / running_var included, and
 *     num_batches_tracked exactly,
 *   - bp_forward (inference: batchnorm on its running statistics) of the
 *     final network on all of x against eval.logits.
 * The tensor set must be the same both ways (no fixture key the network
 * lacks, no network tensor the fixture lacks).
 *
 * Tolerances. Double build (test_cnn_fixtures_f64.c, the reference loops):
 * every element to 1e-9 by max |a - b| / max(|b|, 1e-3), losses, logits
 * too. Float build (the oneDNN convolution, pooling and batch-norm
 * primitives the trainer prepares): every tensor as a whole to 1e-5 of its
 * norm, ||a - b|| / ||b||; losses to 1e-5 relative; the logits as a whole
 * to 1e-5 of their norm, or 4 times torch's own float32 error on them (the
 * fixture's float32_error_eval_norm) where that is larger: on cnn_gap
 * torch's float32 run misses its float64 run by 7.9e-6 of the logits'
 * norm (and by 5.1e-6 on the tensor 4.bias: the dense bias before a
 * BatchNorm1d on 8 samples has a gradient of exactly zero, so float32
 * rounding is all that moves it), so 1e-5 would be a coin toss there.
 * The per-element error of the float build is printed next to torch's
 * own float32 errors (float32_error, float32_error_norm) for information:
 * a weight that ends near zero cannot be right to 1e-5 of a floor of 1e-3
 * in float32 (torch misses that too).
 *
 * Usage: test_cnn_fixtures [FIXTURE_DIR]
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
#define FX_ELEM_TOL 1e-9   /* per element, asserted */
#define FX_NORM_TOL 1e-9   /* per tensor, asserted */
#define FX_LOSS_TOL 1e-9
#define FX_BUILD "double"
#define FX_TEST_NAME "test_cnn_fixtures_f64"
#else
#define FX_ELEM_TOL 0.0    /* per element: printed only */
#define FX_NORM_TOL 1e-5
#define FX_LOSS_TOL 1e-5
#define FX_BUILD "float"
#define FX_TEST_NAME "test_cnn_fixtures"
#endif

#define FX_FLOOR 1e-3

/* ------------------------------------------------------------------------ */
/* One case                                                                  */
/* ------------------------------------------------------------------------ */


/* What the cases covered, so that a lost fixture file is noticed. */
static int seen_opt[7], seen_freeze, seen_frozen_bn, seen_bn2d, seen_bn1d, seen_kind[16];
static int n_cases;

static void run_case(const char *name, fixture *f)
{
    bp_error err;
    bp_train_config cfg;
    bp_net *net = NULL;
    bp_trainer *tr = NULL;
    bp_real *x = NULL, *y = NULL, *out = NULL;
    double worst_elem = 0, worst_norm = 0, worst_loss = 0, worst_lr = 0;
    double logits_elem = 0, logits_norm = 0;
    char worst_where[200] = "-", worst_norm_where[64] = "-";
    long failed_step = -1;
    int n_tensors = 0, n_unused = 0;

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
    fx_item *f32n = fx_find(f, "float32_error_norm", 0);
    fx_item *f32en = fx_find(f, "float32_error_eval_norm", 0);
    double torch_f32 = f32 ? atof(f32->text) : NAN;
    double torch_f32_norm = f32n ? atof(f32n->text) : NAN;
    double logits_tol = FX_NORM_TOL;
#ifndef BP_DOUBLE
    if (f32en && 4 * atof(f32en->text) > logits_tol) logits_tol = 4 * atof(f32en->text);
#else
    (void)f32en;
#endif

    bp_shape shape = fx_shape(f, name, "input_shape");
    {
        CHECK(shape.rank == 3, "%s: input_shape is not C H W", name);
        CHECK((long)bp_shape_size(shape) == n_inputs, "%s: input_shape has %zu values, "
              "n_inputs %d", name, bp_shape_size(shape), n_inputs);
        if (shape.rank != 3 || (long)bp_shape_size(shape) != n_inputs) goto done;
    }

    seen_opt[cfg.optimizer] = 1;
    seen_freeze |= cfg.freeze > 0;
    n_cases++;

    fx_item *tx = fx_tensor(f, name, "x", (long)n_samples * n_inputs);
    fx_item *ty = fx_tensor(f, name, "y", (long)n_samples * n_targets);
    fx_item *tloss = fx_tensor(f, name, "loss", steps);
    fx_item *tlr = fx_tensor(f, name, "lr", steps);
    if (!tx || !ty || !tloss || !tlr || batch < 1 || steps < 1) goto done;
    tx->used = ty->used = tloss->used = tlr->used = 1;

    if (bp_net_create_shaped(&net, shape, spec, 0, &err) != BP_OK) {
        CHECK(0, "%s: bp_net_create_shaped(\"%s\"): %s", name, spec, err.message);
        goto done;
    }
    CHECK(strcmp(bp_net_spec(net), spec) == 0, "%s: stored spec \"%s\" is not the "
          "fixture's \"%s\" (indices would differ)", name, bp_net_spec(net), spec);

    /* What the case covers. */
    {
        int parametric = 0;
        for (int i = 0; i < bp_net_layers(net); i++) {
            bp_layer_desc d = bp_net_layer(net, i);
            if ((int)d.kind < 16) seen_kind[d.kind] = 1;
            if (d.kind == BP_BATCHNORM) {
                bp_shape in = i ? bp_net_layer_shape(net, i - 1) : bp_net_input_shape(net);
                if (in.rank == 3) seen_bn2d = 1;
                else seen_bn1d = 1;
                if (parametric < cfg.freeze) seen_frozen_bn = 1;
            }
            parametric += bp_layer_is_parametric(d.kind);
        }
    }

    /* Initial state, every tensor by name. */
    n_tensors = bp_net_tensor_count(net);
    for (int j = 0; j < n_tensors; j++) {
        bp_tensor t;
        char key[64];
        if (!bp_net_tensor(net, j, &t)) {
            CHECK(0, "%s: bp_net_tensor(%d) of %d failed", name, j, n_tensors);
            goto done;
        }
        snprintf(key, sizeof key, "init.%s", t.name);
        fx_item *it = fx_tensor(f, name, key, (long)t.count);
        if (!it) goto done;
        it->used = 1;
        if (t.dtype == BP_DTYPE_I64) {
            CHECK(t.i64 && it->v[0] == floor(it->v[0]) && it->v[0] >= 0,
                  "%s: %s: %g is not a count", name, key, it->v[0]);
            if (t.i64) t.i64[0] = (int64_t)it->v[0];
        } else {
            for (long q = 0; q < it->n; q++) t.data[q] = (bp_real)it->v[q];
        }
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
        double lr_err = fx_rel_err(bp_trainer_lr(tr), tlr->v[s], FX_FLOOR);
        if (lr_err > worst_lr) worst_lr = lr_err;
        double step_loss = NAN;
        bp_status st = bp_train_step(tr, x + (size_t)lo * n_inputs,
                                     y + (size_t)lo * n_targets, nb, &step_loss, &err);
        if (st != BP_OK) {
            CHECK(0, "%s: step %d: %s: %s", name, s + 1, bp_status_name(st), err.message);
            failed_step = s + 1;
            break;
        }
        double le = fx_rel_err(step_loss, tloss->v[s], FX_FLOOR);
        if (le > worst_loss) worst_loss = le;
    }
    CHECK(bp_trainer_steps(tr) == (failed_step < 0 ? steps : failed_step - 1),
          "%s: bp_trainer_steps = %ld", name, bp_trainer_steps(tr));

    /* Final state, every tensor by name. */
    for (int j = 0; j < n_tensors; j++) {
        bp_tensor t;
        char key[64];
        if (!bp_net_tensor(net, j, &t)) continue;
        snprintf(key, sizeof key, "final.%s", t.name);
        fx_item *it = fx_tensor(f, name, key, (long)t.count);
        if (!it) continue;
        it->used = 1;
        if (t.dtype == BP_DTYPE_I64) {
            CHECK(t.i64 && (double)t.i64[0] == it->v[0], "%s: %s = %lld, torch %.0f", name,
                  key, t.i64 ? (long long)t.i64[0] : -1LL, it->v[0]);
            continue;
        }
        double ne = fx_norm_err(t.data, it->v, it->n);
        if (ne > worst_norm) {
            worst_norm = ne;
            snprintf(worst_norm_where, sizeof worst_norm_where, "%s", t.name);
        }
        for (long q = 0; q < it->n; q++) {
            double e = fx_rel_err((double)t.data[q], it->v[q], FX_FLOOR);
            if (e > worst_elem) {
                worst_elem = e;
                snprintf(worst_where, sizeof worst_where, "%s[%ld] %.10g vs %.10g",
                         t.name, q, (double)t.data[q], it->v[q]);
            }
        }
    }

    /* Inference of the trained network on all of x (running statistics). */
    {
        int n_out = bp_net_outputs(net);
        fx_item *tl = fx_tensor(f, name, "eval.logits", (long)n_samples * n_out);
        out = malloc((size_t)n_samples * (size_t)n_out * sizeof *out);
        if (tl && out) {
            tl->used = 1;
            bp_status st = bp_forward(net, x, n_samples, out, &err);
            CHECK(st == BP_OK, "%s: bp_forward: %s", name, err.message);
            if (st == BP_OK) {
                logits_norm = fx_norm_err(out, tl->v, tl->n);
                for (long q = 0; q < tl->n; q++) {
                    double e = fx_rel_err((double)out[q], tl->v[q], FX_FLOOR);
                    if (e > logits_elem) logits_elem = e;
                }
            } else {
                logits_norm = logits_elem = INFINITY;
            }
        }
    }

    /* Strict both ways: no fixture tensor left unmatched. */
    for (int i = 0; i < f->n_items; i++) {
        if (!f->items[i].v || f->items[i].used) continue;
        CHECK(0, "%s: fixture tensor %s has no counterpart in the network", name,
              f->items[i].key);
        n_unused++;
    }

    printf("  %-13s %-8s %2d tensors: per tensor %.3e (tol %.0e; %s; torch f32 %.1e)\n"
           "  %-22s per element %.3e (%s%s; torch f32 %.1e)\n"
           "  %-22s loss %.3e (tol %.0e)  lr %.1e  eval logits: per element %.3e, "
           "norm %.3e (tol %.1e)\n",
           name, bp_optimizer_name(cfg.optimizer), n_tensors, worst_norm, FX_NORM_TOL, worst_norm_where,
           torch_f32_norm, "", worst_elem, FX_ELEM_TOL > 0 ? "tol 1e-09, " : "not asserted, ",
           worst_where, torch_f32, "", worst_loss, FX_LOSS_TOL, worst_lr, logits_elem,
           logits_norm, FX_ELEM_TOL > 0 ? FX_ELEM_TOL : logits_tol);
    CHECK(failed_step < 0 && worst_norm <= FX_NORM_TOL,
          "%s: tensor %s differs from torch's by %.3e of its norm (tolerance %g, %s build)",
          name, worst_norm_where, worst_norm, FX_NORM_TOL, FX_BUILD);
    if (FX_ELEM_TOL > 0)
        CHECK(failed_step < 0 && worst_elem <= FX_ELEM_TOL,
              "%s: state differs from torch's by %.3e (tolerance %g, %s build): %s", name,
              worst_elem, FX_ELEM_TOL, FX_BUILD, worst_where);
    CHECK(failed_step < 0 && worst_loss <= FX_LOSS_TOL,
          "%s: step losses differ from torch's by %.3e (tolerance %g)", name, worst_loss,
          FX_LOSS_TOL);
    CHECK(worst_lr <= 1e-12, "%s: learning rates differ from torch's by %.3e", name, worst_lr);
    CHECK(failed_step < 0 && (FX_ELEM_TOL > 0 ? logits_elem <= FX_ELEM_TOL
                                              : logits_norm <= logits_tol),
          "%s: eval logits differ from torch's by %.3e per element, %.3e of their norm", name,
          logits_elem, logits_norm);
    CHECK(n_unused == 0, "%s: %d fixture tensors unmatched", name, n_unused);

done:
    bp_trainer_free(tr);
    bp_net_free(net);
    free(x);
    free(y);
    free(out);
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : BP_SOURCE_DIR "/tests/fixtures/cnn";
    printf("%s: fixtures in %s, %s build\n", FX_TEST_NAME, dir, FX_BUILD);
    int n = fx_each(dir, run_case);
    if (n < 0) return check_done(FX_TEST_NAME);
    printf("%s: %d fixture files\n", FX_TEST_NAME, n);

    CHECK(n_cases >= 5, "only %d CNN fixtures", n_cases);
    CHECK(seen_opt[BP_MOMENTUM] && seen_opt[BP_ADAM] && seen_opt[BP_ADAMW],
          "no fixture for momentum, adam or adamw");
    CHECK(seen_freeze && seen_frozen_bn, "no fixture with a frozen batchnorm");
    CHECK(seen_bn2d && seen_bn1d, "no fixture with BatchNorm2d and BatchNorm1d");
    CHECK(seen_kind[BP_CONV] && seen_kind[BP_MAXPOOL] && seen_kind[BP_AVGPOOL] &&
              seen_kind[BP_GLOBAL_AVGPOOL] && seen_kind[BP_FLATTEN],
          "a CNN layer kind has no fixture");
    return check_done(FX_TEST_NAME);
}
