/* test_rnn_fixtures.c - recurrent networks trained against PyTorch.
 *
 * Every tests/fixtures/rnn/NAME.txt (written by tools/make_rnn_fixtures.py,
 * whose docstring documents the format and the exact step semantics) holds
 * a spec over rnn, lstm, gru, last, embedding and dense, an input shape
 * [T, F] (or [T] token ids), a data set, every state_dict tensor before
 * training (init.KEY) and after `steps` Adam steps with clip_grad_norm_
 * over consecutive mini-batches (final.KEY), in float64, the loss of every
 * step, and the final network's outputs on all of x (eval.logits). This
 * test builds the same network with bp_net_create_shaped, writes every
 * init tensor by name through bp_net_tensor, configures the trainer like
 * the fixture (Adam, clip_norm), runs bp_train_step over the same batches
 * and compares:
 *   - the data loss of every step (loss_out): cross-entropy after `last`
 *     ([n, 1] targets), or averaged over every step of a sequence output
 *     ([n, T] targets, bp_net_loss_steps = T),
 *   - every final tensor,
 *   - bp_forward of the final network on all of x against eval.logits.
 * The tensor set must be the same both ways (no fixture key the network
 * lacks, no network tensor the fixture lacks).
 *
 * Tolerances. Double build (test_rnn_fixtures_f64.c, the reference loops):
 * every element of every final tensor, every loss and every logit to 1e-9
 * by max |a - b| / max(|b|, 1e-3) (relative, absolute below 1e-3), and
 * every tensor as a whole to 1e-9 of its norm. Float build: every tensor
 * and the logits as a whole to 1e-5 of their norm, ||a - b|| / ||b||;
 * losses to 1e-5 relative. The float build's per-element error is printed
 * next to torch's own float32 error (float32_error) for information only.
 *
 * The fixtures must make the check able to fail: in every case clipping
 * must be active on some steps (the fixture's grad_norm, the gradient norm
 * before clipping, above clip_norm) and must matter (clip_effect, how far
 * the same run without clipping ends, far above the tolerance); the cases
 * together must cover rnn, lstm, gru, last, embedding, a stack of two
 * recurrent layers, a sequence output and a last-step output, T >= 5.
 *
 * Usage: test_rnn_fixtures [FIXTURE_DIR]
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
#define FX_ELEM_TOL 1e-9 /* per element, asserted */
#define FX_NORM_TOL 1e-9 /* per tensor, asserted */
#define FX_LOSS_TOL 1e-9
#define FX_BUILD "double"
#define FX_TEST_NAME "test_rnn_fixtures_f64"
#else
#define FX_ELEM_TOL 0.0 /* per element: printed only */
#define FX_NORM_TOL 1e-5
#define FX_LOSS_TOL 1e-5
#define FX_BUILD "float"
#define FX_TEST_NAME "test_rnn_fixtures"
#endif

#define FX_FLOOR 1e-3


/* What the cases covered, so that a lost fixture file is noticed. */
static int seen_rnn, seen_lstm, seen_gru, seen_last, seen_embedding, seen_stack;
static int seen_seq_out, seen_last_out, n_cases;

static void run_case(const char *name, fixture *f)
{
    bp_error err;
    bp_train_config cfg;
    bp_net *net = NULL;
    bp_trainer *tr = NULL;
    bp_real *x = NULL, *y = NULL, *out = NULL;
    double worst_elem = 0, worst_norm = 0, worst_loss = 0;
    double logits_elem = 0, logits_norm = 0;
    char worst_where[200] = "-", worst_norm_where[64] = "-";
    long failed_step = -1;
    int n_tensors = 0, n_unused = 0, clipped = 0;

    memset(&err, 0, sizeof err);
    fx_train_config(f, name, &cfg);
    int n_inputs = (int)fx_num(f, name, "n_inputs");
    int n_targets = (int)fx_num(f, name, "n_targets");
    int n_samples = (int)fx_num(f, name, "n_samples");
    int batch = (int)fx_num(f, name, "batch");
    int steps = (int)fx_num(f, name, "steps");
    double clip_effect = fx_num(f, name, "clip_effect");
    const char *spec = fx_text(f, name, "spec");
    fx_item *f32 = fx_find(f, "float32_error", 0);
    double torch_f32 = f32 ? atof(f32->text) : NAN;
    cfg.batch_size = batch;

    bp_shape shape = fx_shape(f, name, "input_shape");
    {
        CHECK(shape.rank == 1 || shape.rank == 2, "%s: input_shape is not T F or T", name);
        CHECK((long)bp_shape_size(shape) == n_inputs, "%s: input_shape has %zu values, "
              "n_inputs %d", name, bp_shape_size(shape), n_inputs);
        if (shape.rank < 1 || shape.rank > 2 || (long)bp_shape_size(shape) != n_inputs) goto done;
        CHECK(shape.dim[0] >= 5, "%s: T = %d, the cases want T >= 5", name, shape.dim[0]);
    }
    CHECK(cfg.optimizer == BP_ADAM && cfg.clip_norm > 0, "%s: not Adam with clip_norm", name);
    n_cases++;

    fx_item *tx = fx_tensor(f, name, "x", (long)n_samples * n_inputs);
    fx_item *ty = fx_tensor(f, name, "y", (long)n_samples * n_targets);
    fx_item *tloss = fx_tensor(f, name, "loss", steps);
    fx_item *tlr = fx_tensor(f, name, "lr", steps);
    fx_item *tgn = fx_tensor(f, name, "grad_norm", steps);
    if (!tx || !ty || !tloss || !tlr || !tgn || batch < 1 || steps < 1) goto done;
    tx->used = ty->used = tloss->used = tlr->used = tgn->used = 1;

    /* The fixture exercises clipping: active on some steps, and it matters. */
    for (int s = 0; s < steps; s++) clipped += tgn->v[s] > cfg.clip_norm;
    CHECK(clipped > 0, "%s: clip_norm %g never clips (gradient norms below it)", name,
          cfg.clip_norm);
    CHECK(clip_effect > 100 * FX_NORM_TOL, "%s: clipping moves the result by %.3g only", name,
          clip_effect);

    if (bp_net_create_shaped(&net, shape, spec, 0, &err) != BP_OK) {
        CHECK(0, "%s: bp_net_create_shaped(\"%s\"): %s", name, spec, err.message);
        goto done;
    }
    CHECK(strcmp(bp_net_spec(net), spec) == 0, "%s: stored spec \"%s\" is not the "
          "fixture's \"%s\" (indices would differ)", name, bp_net_spec(net), spec);
    int loss_steps = bp_net_loss_steps(net, cfg.loss);
    CHECK(loss_steps == n_targets, "%s: bp_net_loss_steps %d, the fixture has %d targets per "
          "sample", name, loss_steps, n_targets);

    /* What the case covers. */
    {
        int recurrent = 0;
        for (int i = 0; i < bp_net_layers(net); i++) {
            bp_layer_kind k = bp_net_layer(net, i).kind;
            seen_rnn |= k == BP_RNN;
            seen_lstm |= k == BP_LSTM;
            seen_gru |= k == BP_GRU;
            seen_last |= k == BP_LAST;
            seen_embedding |= k == BP_EMBEDDING;
            recurrent += k == BP_RNN || k == BP_LSTM || k == BP_GRU;
        }
        seen_stack |= recurrent >= 2;
        seen_seq_out |= loss_steps > 1;
        seen_last_out |= loss_steps == 1;
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
        CHECK(t.dtype == BP_DTYPE_F32, "%s: %s is not F32", name, t.name);
        snprintf(key, sizeof key, "init.%s", t.name);
        fx_item *it = fx_tensor(f, name, key, (long)t.count);
        if (!it || t.dtype != BP_DTYPE_F32) goto done;
        it->used = 1;
        for (long q = 0; q < it->n; q++) t.data[q] = (bp_real)it->v[q];
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
        CHECK(bp_trainer_lr(tr) == tlr->v[s], "%s: step %d: lr %g, torch %g", name, s + 1,
              bp_trainer_lr(tr), tlr->v[s]);
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

    /* Final state, every tensor by name. */
    for (int j = 0; j < n_tensors; j++) {
        bp_tensor t;
        char key[64];
        if (!bp_net_tensor(net, j, &t)) continue;
        snprintf(key, sizeof key, "final.%s", t.name);
        fx_item *it = fx_tensor(f, name, key, (long)t.count);
        if (!it) continue;
        it->used = 1;
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

    /* Inference of the trained network on all of x. */
    {
        int n_out = bp_net_outputs(net);
        fx_item *tl = fx_tensor(f, name, "eval.logits", (long)n_samples * n_out);
        out = malloc((size_t)n_samples * (size_t)n_out * sizeof *out);
        logits_norm = logits_elem = INFINITY;
        if (tl && out) {
            tl->used = 1;
            bp_status st = bp_forward(net, x, n_samples, out, &err);
            CHECK(st == BP_OK, "%s: bp_forward: %s", name, err.message);
            if (st == BP_OK) {
                logits_norm = fx_norm_err(out, tl->v, tl->n);
                logits_elem = 0;
                for (long q = 0; q < tl->n; q++) {
                    double e = fx_rel_err((double)out[q], tl->v[q], FX_FLOOR);
                    if (e > logits_elem) logits_elem = e;
                }
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

    printf("  %-19s %2d tensors, clipped %2d/%d steps (effect %.1e): per tensor %.3e "
           "(tol %.0e; %s)\n"
           "  %-19s per element %.3e (%s%s; torch f32 %.1e)\n"
           "  %-19s loss %.3e (tol %.0e)  logits: per element %.3e, norm %.3e\n",
           name, n_tensors, clipped, steps, clip_effect, worst_norm, FX_NORM_TOL,
           worst_norm_where, "", worst_elem,
           FX_ELEM_TOL > 0 ? "tol 1e-09, " : "not asserted, ", worst_where, torch_f32, "",
           worst_loss, FX_LOSS_TOL, logits_elem, logits_norm);
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
    CHECK(failed_step < 0 && (FX_ELEM_TOL > 0 ? logits_elem <= FX_ELEM_TOL
                                              : logits_norm <= FX_NORM_TOL),
          "%s: logits differ from torch's by %.3e per element, %.3e of their norm", name,
          logits_elem, logits_norm);
    CHECK(n_unused == 0, "%s: %d fixture tensors unmatched", name, n_unused);

done:
    bp_trainer_free(tr);
    bp_net_free(net);
    free(x);
    free(y);
    free(out);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : BP_SOURCE_DIR "/tests/fixtures/rnn";
    printf("%s: fixtures in %s, %s build\n", FX_TEST_NAME, dir, FX_BUILD);
    int n = fx_each(dir, run_case);
    if (n < 0) return check_done(FX_TEST_NAME);
    printf("%s: %d fixture files\n", FX_TEST_NAME, n);

    CHECK(n_cases >= 6, "only %d recurrent fixtures", n_cases);
    CHECK(seen_rnn && seen_lstm && seen_gru, "no fixture for rnn, lstm or gru");
    CHECK(seen_last && seen_embedding, "no fixture for last or embedding");
    CHECK(seen_stack, "no fixture with two recurrent layers");
    CHECK(seen_seq_out && seen_last_out,
          "no fixture with a loss over every step, or none on the last step");
    return check_done(FX_TEST_NAME);
}
