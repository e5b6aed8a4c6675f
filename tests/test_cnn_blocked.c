/*
 * test_cnn_blocked.c - convolutional networks on oneDNN's blocked layout
 * (nChw{B}c, B = 16, or 8 on AVX2 machines) against the plain layout
 * [n, C, H, W] (float build).
 *
 * How one binary gets both runs of the same network: fast paths exist per
 * batch size ("slots", bp_net_prepare). A trainer made for max batch n
 * prepares a slot for n, so bp_train_step(n) runs blocked; a trainer made
 * for max batch n + 1 has no slot for n and bp_train_step(n) runs every
 * layer's plain reference path. Where bp_fit or bp_forward would prepare
 * a slot themselves, the plain twin's three slots are filled first with
 * batch sizes the test never runs (61, 62, 63): bp_net_prepare then finds
 * no free slot and the twin stays plain. Each comparison also checks which
 * layout really ran: the input of the flatten (or global_avgpool) is
 * matched against its plain output read as plain and as blocked data
 * (observed_layout), so a "blocked" run that silently ran plain, or the
 * reverse, fails instead of comparing a path with itself.
 *
 *  1. plan: blk_in / blk_out of every layer of a slot for several specs;
 *  2. training equivalence, blocked vs plain: every state_dict tensor
 *     (running statistics and num_batches_tracked included) and the loss
 *     of every step; dropout trains on blocked data (not compared: its
 *     mask is drawn by position, so the layouts drop different values);
 *  3. inference: bp_forward in prepared (blocked) and unprepared (plain)
 *     batch sizes agree per sample;
 *  3b. a relu after a blocked batchnorm fused into it (its layer skipped):
 *     plan, training (a frozen prefix too), inference: fused = plain;
 *  4. frozen batchnorm on blocked data: blocked = plain, statistics kept;
 *  5. bp_set_threads between steps: a stale slot is not used, bp_fit
 *     rebuilds it;
 *  6. bp_gradcheck on a blocked net with max pooling, and max pooling's
 *     kink signature on blocked data;
 *  7. bp_fit's epoch report (relu dead fractions, gradient norms, losses,
 *     accuracies), relus as layers and fused into batchnorms: blocked = plain.
 *
 * Tolerances: a tensor agrees when ||a - b|| / ||b|| <= TOL_TENSOR (3e-5),
 * a loss when |a - b| / |b| <= TOL_LOSS (2e-5), predictions when
 * max |a - b| / max |b| <= TOL_PRED (1e-5), bp_fit's gradient norms to
 * TOL_GRADNORM (1e-4). The blocked path sums in other orders (oneDNN's JIT
 * kernels) than the reference loops; float rounding, amplified by up to
 * 15 training steps, stays below these: measured on an AVX-512 machine
 * (B = 16), worst tensor 5.9e-6 (the conv bias before sigmoid ->
 * batchnorm, whose gradient mostly cancels), worst loss 4.0e-6, worst
 * prediction 3.1e-7 (every run prints its worst values; B = 8 machines
 * were not measured). A layout error shows as differences of order 1.
 *
 * test_cnn_blocked_f64.c builds this file against the double library,
 * which has no oneDNN primitives: there it checks that no slot is ever
 * made and every layer stays plain (the double build is what the gradient
 * checks of test_cnn_f64 run on, so its reference paths must be the ones
 * that run), and that training still works.
 */
#include "check.h"
#include "internal.h"
#include "layers/layer.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef BP_DOUBLE
#define TEST_NAME "test_cnn_blocked_f64"
#else
#define TEST_NAME "test_cnn_blocked"
#endif

#define TOL_TENSOR 3e-5
#define TOL_LOSS 2e-5
#define TOL_PRED 1e-5
#define TOL_GRADNORM 1e-4

/* Batch sizes that fill a plain twin's slots; never run by the tests. */
static const int FILLER[3] = {61, 62, 63};

static int g_B = 1; /* this machine's channel block (1: no blocked layout here) */

static uint64_t g_rs = 0x9e3779b97f4a7c15ULL;
static double urand(void) /* [0, 1) */
{
    g_rs = g_rs * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(g_rs >> 11) / 9007199254740992.0;
}

static void fill_uniform(bp_real *a, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++) a[i] = (bp_real)(lo + (hi - lo) * urand());
}

/* CHECK that a call succeeded; the message is read here, after the call
 * filled it (never as an argument evaluated beside the call). */
static void expect_ok(bp_status s, const char *what, const bp_error *e)
{
    CHECK(s == BP_OK, "%s: %s (%s)", what, bp_status_name(s), e->message);
}

static bp_net *make(bp_shape in, const char *spec, uint64_t seed)
{
    bp_error e = {BP_OK, ""};
    bp_net *net = NULL;
    bp_status s = bp_net_create_shaped(&net, in, spec, seed, &e);
    CHECK(s == BP_OK, "create '%s': %s", spec, e.message);
    return net;
}

static bp_shape img(int c, int h, int w)
{
    bp_shape s = {3, {c, h, w}};
    return s;
}

/* Index of the first layer that ends the blocked run (flatten,
 * global_avgpool), or -1. */
static int end_layer(const bp_net *net)
{
    for (int i = 1; i < net->n_layers; i++)
        if (net->layers[i].ops->layout == BP_BLK_END) return i;
    return -1;
}

/* Which layout the last pass over n samples fed the END layer e with:
 * its input act[e-1] [n, C, S] is read as plain and as blocked, and
 * compared with its output act[e] (plain): flatten copies (exact),
 * global_avgpool averages (to 1e-5). Returns 1 or g_B for the one reading
 * that matches, 0 if none or both do. */
static int observed_layout(const bp_net *net, int e, int n)
{
    const bp_layer *L = &net->layers[e];
    int C = L->in_shape.dim[0], S = L->in / C, gap = L->kind == BP_GLOBAL_AVGPOOL;
    const bp_real *x = net->act[e - 1], *y = net->act[e];
    int cand[2] = {1, g_B}, found = 0, matches = 0;
    for (int k = 0; k < (g_B > 1 ? 2 : 1); k++) {
        int blk = cand[k];
        if (C % blk) continue;
        double worst = 0, scale = 0;
        for (int b = 0; b < n; b++)
            for (int c = 0; c < C; c++) {
                if (gap) {
                    double acc = 0;
                    for (int s = 0; s < S; s++) acc += x[bp_blk_at(blk, C, S, b, c, s)];
                    double v = y[(size_t)b * C + c];
                    worst = fmax(worst, fabs(v - acc / S));
                    scale = fmax(scale, fabs(v));
                } else {
                    for (int s = 0; s < S; s++) {
                        double v = y[((size_t)b * C + c) * S + s];
                        worst = fmax(worst, fabs(v - x[bp_blk_at(blk, C, S, b, c, s)]));
                        scale = fmax(scale, fabs(v));
                    }
                }
            }
        int ok = gap ? worst <= 1e-5 * scale : worst == 0;
        if (ok) {
            found = blk;
            matches++;
        }
    }
    return matches == 1 ? found : 0;
}

/* Random labels (cross-entropy) or targets (mse) for n samples. */
static void fill_targets(bp_real *y, int n, bp_loss loss, int outs)
{
    for (int i = 0; i < n; i++)
        if (loss == BP_LOSS_CROSS_ENTROPY) y[i] = (bp_real)(int)(urand() * outs);
        else
            for (int j = 0; j < outs; j++) y[(size_t)i * outs + j] = (bp_real)(2 * urand() - 1);
}

/* ------------------------------------------------------------------------ */
/* 1. The plan                                                               */
/* ------------------------------------------------------------------------ */

/* `want`: one character per layer for its output: 'B' blocked, '.' plain.
 * Inputs follow: layer 0 reads the (plain) data, layer i the output of
 * layer i-1. Checks the slot's arrays and what the layers see
 * (bp_blk_in / bp_blk_out) for an inference slot and, after it is made a
 * training slot, for training (an inference slot is not a training one). */
static void check_plan(bp_shape in, const char *spec, const char *want)
{
    bp_net *net = make(in, spec, 3);
    if (!net) return;
    int nl = net->n_layers, n = 4;
    CHECK((int)strlen(want) == nl, "'%s': %d layers, expectation has %d", spec, nl,
          (int)strlen(want));
    if ((int)strlen(want) != nl) {
        bp_net_free(net);
        return;
    }
    for (int training = 0; training < 2; training++) {
        bp_net_prepare(net, n, training);
        int q = bp_net_slot(net, n, training);
#ifdef BP_DOUBLE
        CHECK(q < 0 && net->mm_batch[0] == 0, "'%s': the double build made a slot", spec);
#else
        CHECK(q >= 0, "'%s': no slot for batch %d (training %d)", spec, n, training);
        if (training == 0) {
            int qt = bp_net_slot(net, n, 1);
            CHECK(qt < 0, "'%s': an inference slot must not serve a training pass", spec);
        }
#endif
        int bad = 0, prev = 1;
        char got[64] = {0};
        for (int i = 0; i < nl; i++) {
            bp_layer *L = &net->layers[i];
            int wo = want[i] == 'B' ? g_B : 1;
            int bi = bp_blk_in(net, L, n, training), bo = bp_blk_out(net, L, n, training);
            if (q >= 0 && (L->blk_in[q] != bi || L->blk_out[q] != bo)) bad++;
            if (bi != prev || bo != wo) bad++;
            if (i < 63) got[i] = bo > 1 ? 'B' : '.';
            prev = wo;
        }
        CHECK(bad == 0, "'%s' (training %d): layouts %s, want %s (B = %d)", spec, training, got,
              want, g_B);
    }
    /* The plan runs: a training step and a prediction give finite values. */
    bp_real *x = malloc(sizeof(bp_real) * (size_t)n * net->n_inputs);
    bp_real *out = malloc(sizeof(bp_real) * (size_t)n * bp_net_outputs(net));
    bp_real y[4] = {0, 1, 1, 0};
    fill_uniform(x, (size_t)n * net->n_inputs, -1, 1);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_SGD);
    cfg.loss = BP_LOSS_CROSS_ENTROPY;
    bp_trainer *tr = NULL;
    bp_error e = {BP_OK, ""};
    double loss = NAN;
    bp_status s = bp_trainer_create(&tr, net, &cfg, n, &e);
    if (!s) s = bp_train_step(tr, x, y, n, &loss, &e);
    CHECK(s == BP_OK && isfinite(loss), "'%s': training step: %s", spec, e.message);
    s = bp_forward(net, x, n, out, &e);
    int finite = 1;
    for (int k = 0; k < n * bp_net_outputs(net); k++) finite &= isfinite(out[k]) != 0;
    CHECK(s == BP_OK && finite, "'%s': prediction not finite (%s)", spec, e.message);
    bp_trainer_free(tr);
    free(x);
    free(out);
    bp_net_free(net);
}

static void test_plan(void)
{
    bp_shape in12 = img(1, 12, 12);
    /* From the first conv to the flatten. */
    check_plan(in12, "conv(16,3,1,1) relu batchnorm maxpool(2) conv(32,3,1,1) relu batchnorm "
                     "avgpool(2) flatten dense(10)",
               "BBBBBBBB..");
    /* 10 channels: no block divides them. */
    check_plan(in12, "conv(10,3) relu maxpool(2) flatten dense(4)", ".....");
    /* A blocked conv feeding a conv that cannot block: the second takes
     * blocked input and writes plain. */
    check_plan(in12, "conv(16,3) relu conv(10,3) relu flatten dense(4)", "BB....");
    /* A PLAIN layer (softmax) between: plain from the conv on. */
    check_plan(in12, "conv(16,3) relu softmax flatten dense(4)", ".....");
    check_plan(in12, "conv(16,3) softmax", "..");
    /* The last two outputs are plain: the conv feeding the output layer... */
    check_plan(in12, "conv(16,3) relu", "..");
    check_plan(in12, "conv(16,3) relu global_avgpool", "...");
    /* ... and a conv that is second to last, after a blocked one. */
    check_plan(in12, "conv(16,3) conv(16,3) relu", "B..");
    /* conv -> flatten directly (inserted before the dense), and
     * conv -> global_avgpool -> (flatten) dense. */
    check_plan(in12, "conv(16,3) dense(4)", "B..");
    check_plan(in12, "conv(16,3,2,1) global_avgpool dense(4)", "B...");
    /* batchnorm on flat data after the flatten stays plain. */
    check_plan(in12, "conv(16,3) flatten batchnorm relu dense(4)", "B....");
    /* No conv: nothing makes blocked data, even with 16 channels. */
    check_plan(img(16, 8, 8), "maxpool(2) batchnorm relu avgpool(2) flatten dense(4)", "......");
    check_plan(bp_shape_flat(20), "dense(32) batchnorm relu dropout(0.2) dense(4)", ".....");
    /* Every KEEP kind passes the layout on. */
    check_plan(img(3, 12, 12), "conv(16,3) identity sigmoid tanh leaky_relu(0.1) dropout(0.1) "
                               "maxpool(2) avgpool(2) batchnorm flatten dense(4)",
               "BBBBBBBBB..");
}

#ifndef BP_DOUBLE /* 2.-7. need the blocked layout: float build only */

/* Fill every free slot of `net` with an inference slot for a batch size
 * the tests never run; returns the number of free slots left (0). */
static int fill_slots(bp_net *net)
{
    for (int k = 0; k < 3; k++) bp_net_prepare(net, FILLER[k], 0);
    int free_left = 0;
    for (int q = 0; q < BP_MM_SLOTS; q++) free_left += net->mm_batch[q] == 0;
    return free_left;
}

/* ||a - b|| / ||b|| over every F32 tensor and equality of the I64 ones;
 * returns the worst relative difference. */
static double compare_nets(bp_net *a, bp_net *b, double tol, const char *what)
{
    double worst = 0;
    int nt = bp_net_tensor_count(a), ntb = bp_net_tensor_count(b);
    CHECK(nt == ntb && nt > 0, "%s: tensor counts %d and %d", what, nt, ntb);
    for (int j = 0; j < nt && j < ntb; j++) {
        bp_tensor ta, tb;
        memset(&ta, 0, sizeof ta);
        memset(&tb, 0, sizeof tb);
        int ha = bp_net_tensor(a, j, &ta), hb = bp_net_tensor(b, j, &tb);
        int same = ha && hb && strcmp(ta.name, tb.name) == 0 && ta.count == tb.count &&
                   ta.dtype == tb.dtype;
        CHECK(same, "%s: tensor %d differs in name or size", what, j);
        if (!same) continue;
        if (ta.dtype == BP_DTYPE_I64) {
            long long va = (long long)*ta.i64, vb = (long long)*tb.i64;
            CHECK(va == vb, "%s: %s %lld vs %lld", what, ta.name, va, vb);
            continue;
        }
        double d = 0, s = 0;
        for (size_t k = 0; k < ta.count; k++) {
            double e = (double)ta.data[k] - tb.data[k];
            d += e * e;
            s += (double)tb.data[k] * tb.data[k];
        }
        double rel = s > 0 ? sqrt(d / s) : (d > 0 ? INFINITY : 0);
        if (!(rel <= worst)) worst = rel;
        CHECK(rel <= tol, "%s: %s differs by %.3g of its norm (tol %g)", what, ta.name, rel, tol);
    }
    return worst;
}

static double rel_diff(double a, double b)
{
    double s = fabs(b) > 1e-30 ? fabs(b) : 1e-30;
    double r = fabs(a - b) / s;
    return r == r ? r : INFINITY;
}

/* ------------------------------------------------------------------------ */
/* 2. Training: blocked vs plain                                             */
/* ------------------------------------------------------------------------ */

typedef struct eq_case {
    bp_shape in;
    const char *spec;
    bp_optimizer opt;
    double lr;
    bp_loss loss;
    int n, steps;
    int freeze; /* cfg.freeze (0 in the cases that list no more) */
} eq_case;

static double g_worst_tensor, g_worst_loss, g_worst_pred;

static void note(double *worst, double v)
{
    if (!(v <= *worst)) *worst = v;
}

static void train_pair(const eq_case *c)
{
    bp_net *A = make(c->in, c->spec, 21), *P = make(c->in, c->spec, 21);
    if (!A || !P) {
        bp_net_free(A);
        bp_net_free(P);
        return;
    }
    /* Non-zero biases, like a network in training. */
    for (int i = 0; i < A->n_layers; i++)
        if (A->layers[i].kind == BP_CONV)
            for (int o = 0; o < A->layers[i].desc.units; o++)
                A->layers[i].b[o] = P->layers[i].b[o] = (bp_real)(0.2 * urand() - 0.1);
    int n = c->n, in = A->n_inputs, outs = bp_net_outputs(A);
    int tw = c->loss == BP_LOSS_CROSS_ENTROPY ? 1 : outs, pool = 4;
    bp_real *x = malloc(sizeof(bp_real) * (size_t)pool * n * in);
    bp_real *y = malloc(sizeof(bp_real) * (size_t)pool * n * tw);
    fill_uniform(x, (size_t)pool * n * in, -1, 1);
    fill_targets(y, pool * n, c->loss, outs);
    bp_train_config cfg;
    bp_train_config_default(&cfg, c->opt);
    cfg.loss = c->loss;
    cfg.lr = c->lr;
    cfg.seed = 5;
    cfg.freeze = c->freeze;
    bp_trainer *ta = NULL, *tp = NULL;
    bp_error e = {BP_OK, ""};
    expect_ok(bp_trainer_create(&ta, A, &cfg, n, &e), "trainer", &e);
    expect_ok(bp_trainer_create(&tp, P, &cfg, n + 1, &e), "trainer", &e);
    int qa = bp_net_slot(A, n, 1), qp = bp_net_slot(P, n, 1);
    CHECK(qa >= 0 && qp < 0, "'%s': slots for batch %d: blocked net %d, plain net %d", c->spec, n,
          qa, qp);
    int e_l = end_layer(A);
    double worst_loss = 0;
    int lay_a_bad = 0, lay_p_bad = 0, fails = 0;
    for (int step = 0; ta && tp && step < c->steps; step++) {
        const bp_real *xb = x + (size_t)(step % pool) * n * in;
        const bp_real *yb = y + (size_t)(step % pool) * n * tw;
        double la = NAN, lp = NAN;
        fails += bp_train_step(ta, xb, yb, n, &la, &e) != BP_OK;
        if (e_l > 0) lay_a_bad += observed_layout(A, e_l, n) != g_B;
        fails += bp_train_step(tp, xb, yb, n, &lp, &e) != BP_OK;
        if (e_l > 0) lay_p_bad += observed_layout(P, e_l, n) != 1;
        double r = rel_diff(la, lp);
        note(&worst_loss, r);
        CHECK(r <= TOL_LOSS, "'%s' %s step %d: loss %.9g blocked, %.9g plain", c->spec,
              bp_optimizer_name(c->opt), step + 1, la, lp);
    }
    CHECK(fails == 0, "'%s': %d steps failed: %s", c->spec, fails, e.message);
    CHECK(e_l > 0 && lay_a_bad == 0 && lay_p_bad == 0,
          "'%s': layouts seen at layer %d: blocked run off in %d steps, plain run in %d", c->spec,
          e_l, lay_a_bad, lay_p_bad);
    char what[160];
    snprintf(what, sizeof what, "'%s' %s", c->spec, bp_optimizer_name(c->opt));
    double wt = compare_nets(A, P, TOL_TENSOR, what);
    note(&g_worst_tensor, wt);
    note(&g_worst_loss, worst_loss);
    printf("  %-80s %-8s tensors %.2e, losses %.2e\n", c->spec, bp_optimizer_name(c->opt), wt,
           worst_loss);
    bp_trainer_free(ta);
    bp_trainer_free(tp);
    free(x);
    free(y);
    bp_net_free(A);
    bp_net_free(P);
}

static void test_training(void)
{
    const char *main_net = "conv(16,3,1,1) relu batchnorm maxpool(2) conv(32,3,1,1) relu batchnorm "
                           "avgpool(2) flatten dense(10)";
    const eq_case cases[] = {
        {img(1, 12, 12), main_net, BP_MOMENTUM, 0.05, BP_LOSS_CROSS_ENTROPY, 8, 15, 0},
        {img(1, 12, 12), main_net, BP_ADAM, 2e-3, BP_LOSS_CROSS_ENTROPY, 8, 15, 0},
        /* overlapping average pooling, stride-2 pad-1 conv, leaky_relu and tanh */
        {img(3, 12, 12), "conv(16,3) leaky_relu(0.1) avgpool(3,2) conv(32,3,2,1) tanh flatten dense(5)",
         BP_ADAM, 2e-3, BP_LOSS_CROSS_ENTROPY, 6, 12, 0},
        /* global_avgpool, sigmoid, stride-2 pad-0 conv */
        {img(2, 10, 10), "conv(16,3,1,1) sigmoid batchnorm conv(32,3,2) relu global_avgpool dense(4)",
         BP_MOMENTUM, 0.05, BP_LOSS_CROSS_ENTROPY, 8, 15, 0},
        /* overlapping max pooling, 5x5 kernels, identity, mse. (Not
         * leaky_relu between the second conv and the batchnorm: on 125
         * values a channel can have every input on the linear side, and
         * then its conv bias has a true gradient of exactly 0, as with a
         * conv directly before a batchnorm, which Adam turns into full
         * steps of rounding noise: 3% differences in that bias. relu
         * before batchnorm in the nets above: no channel of 1152 values
         * all positive.) */
        {img(1, 11, 11), "conv(16,5,1,2) tanh maxpool(3,2) identity conv(16,3,1,1) tanh batchnorm "
                         "leaky_relu(0.2) flatten dense(3)",
         BP_ADAM, 1e-3, BP_LOSS_MSE, 5, 12, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) train_pair(&cases[k]);
}

/* Dropout on blocked data: not compared with plain (masks are drawn by
 * position), but it runs blocked, masks the right fraction, applies its
 * mask elementwise, and the net learns a fixed batch. */
static void test_dropout_blocked(void)
{
    bp_net *net = make(img(1, 10, 10), "conv(16,3,1,1) relu dropout(0.25) maxpool(2) flatten dense(4)", 4);
    if (!net) return;
    int n = 8, in = net->n_inputs;
    bp_real *x = malloc(sizeof(bp_real) * (size_t)n * in), y[8];
    fill_uniform(x, (size_t)n * in, -1, 1);
    fill_targets(y, n, BP_LOSS_CROSS_ENTROPY, 4);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.lr = 1e-2;
    bp_trainer *tr = NULL;
    bp_error e = {BP_OK, ""};
    expect_ok(bp_trainer_create(&tr, net, &cfg, n, &e), "trainer", &e);
    int q = bp_net_slot(net, n, 1);
    int blk = q >= 0 ? net->layers[2].blk_out[q] : -1;
    CHECK(blk == g_B, "dropout's output layout %d, want %d", blk, g_B);
    double first = NAN, last = NAN;
    int fails = 0, lay_bad = 0;
    for (int step = 0; tr && step < 30; step++) {
        double l = NAN;
        fails += bp_train_step(tr, x, y, n, &l, &e) != BP_OK;
        lay_bad += observed_layout(net, 4, n) != g_B;
        if (step == 0) first = l;
        last = l;
    }
    CHECK(fails == 0 && lay_bad == 0, "dropout net: %d failed steps, %d not blocked (%s)", fails,
          lay_bad, e.message);
    CHECK(last < 0.5 * first, "dropout net on blocked data does not learn: loss %.4g -> %.4g", first,
          last);
    /* The last step's mask: ~25% zeros, y = x * mask elementwise. */
    size_t m = (size_t)n * net->layers[2].out, zeros = 0, off = 0;
    const bp_real *mask = net->layers[2].ws, *xa = net->act[1], *ya = net->act[2];
    for (size_t k = 0; k < m; k++) {
        zeros += mask[k] == 0;
        off += ya[k] != xa[k] * mask[k];
    }
    double frac = (double)zeros / (double)m;
    CHECK(fabs(frac - 0.25) < 0.03, "dropout dropped %.3f of the values, want 0.25", frac);
    CHECK(off == 0, "dropout output differs from input * mask in %zu places", off);
    printf("  dropout on blocked data: loss %.3f -> %.3f, dropped %.3f\n", first, last, frac);
    bp_trainer_free(tr);
    free(x);
    bp_net_free(net);
}

/* ------------------------------------------------------------------------ */
/* 3. Inference                                                              */
/* ------------------------------------------------------------------------ */

/* Predictions of `total` samples in chunks of `chunk` (total % chunk == 0);
 * returns how many chunks ran in layout `want` (observed at the flatten). */
static int predict_chunks(bp_net *net, const bp_real *x, int total, int chunk, bp_real *out, int want)
{
    int in = net->n_inputs, outs = bp_net_outputs(net), e_l = end_layer(net), ok = 0;
    bp_error e = {BP_OK, ""};
    for (int s = 0; s < total; s += chunk) {
        bp_status st = bp_forward(net, x + (size_t)s * in, chunk, out + (size_t)s * outs, &e);
        CHECK(st == BP_OK, "forward of %d: %s", chunk, e.message);
        ok += observed_layout(net, e_l, chunk) == want;
    }
    return ok;
}

/* Train on blocked data, then predict 24 samples in batches of 8 (the
 * trainer's slot, made for training, serving inference), 6 and 3 (new
 * inference slots): blocked. Those fill the three slots, so batches of 4
 * and 12 get none and run the plain path: the plain reference for the
 * same weights in the same network, without any internal call. */
static void test_inference(void)
{
    bp_net *net = make(img(1, 12, 12), "conv(16,3,1,1) relu batchnorm dropout(0.25) maxpool(2) "
                                       "conv(32,3,1,1) relu batchnorm avgpool(2) flatten dense(10)", 8);
    if (!net) return;
    int n = 8, in = net->n_inputs, outs = bp_net_outputs(net), total = 24;
    bp_real *x = malloc(sizeof(bp_real) * (size_t)total * in), y[24];
    fill_uniform(x, (size_t)total * in, -1, 1);
    fill_targets(y, total, BP_LOSS_CROSS_ENTROPY, outs);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    bp_trainer *tr = NULL;
    bp_error e = {BP_OK, ""};
    expect_ok(bp_trainer_create(&tr, net, &cfg, n, &e), "trainer", &e);
    for (int step = 0; tr && step < 10; step++) {
        bp_status st = bp_train_step(tr, x + (size_t)(step % 3) * n * in, y + (step % 3) * n, n, NULL, &e);
        CHECK(st == BP_OK, "step: %s", e.message);
    }
    bp_trainer_free(tr);
    /* An inference pass beyond the training reservation keeps only the
     * last two layers' outputs (bp_net_reserve); observed_layout reads the
     * flatten's input, so reserve every layer's output for all 24 samples. */
    expect_ok(bp_net_reserve_train(net, total, &e), "reserve_train", &e);
    size_t no = (size_t)total * outs;
    bp_real *blk[3], *pl[2];
    static const int bchunk[3] = {8, 6, 3}, pchunk[2] = {4, 12};
    for (int k = 0; k < 3; k++) {
        blk[k] = malloc(sizeof(bp_real) * no);
        int ok = predict_chunks(net, x, total, bchunk[k], blk[k], g_B);
        CHECK(ok == total / bchunk[k], "batches of %d: %d of %d ran blocked", bchunk[k], ok,
              total / bchunk[k]);
    }
    int slots_full = net->mm_batch[0] && net->mm_batch[1] && net->mm_batch[2];
    CHECK(slots_full, "three prepared batch sizes fill the slots");
    for (int k = 0; k < 2; k++) {
        pl[k] = malloc(sizeof(bp_real) * no);
        int ok = predict_chunks(net, x, total, pchunk[k], pl[k], 1);
        int q = bp_net_slot(net, pchunk[k], 0);
        CHECK(ok == total / pchunk[k] && q < 0, "batches of %d: %d of %d ran plain (slot %d)",
              pchunk[k], ok, total / pchunk[k], q);
    }
    double scale = 0;
    for (size_t k = 0; k < no; k++) scale = fmax(scale, fabs((double)pl[0][k]));
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 2; b++) {
            double worst = 0;
            for (size_t k = 0; k < no; k++) worst = fmax(worst, fabs((double)blk[a][k] - pl[b][k]));
            double r = scale > 0 ? worst / scale : INFINITY;
            note(&g_worst_pred, r);
            CHECK(r <= TOL_PRED, "predictions, batches of %d (blocked) vs %d (plain): %.3g of max |y| %.3g",
                  bchunk[a], pchunk[b], r, scale);
        }
    /* The plain batch sizes agree with each other to rounding too. */
    double wpp = 0;
    for (size_t k = 0; k < no; k++) wpp = fmax(wpp, fabs((double)pl[0][k] - pl[1][k]));
    CHECK(wpp <= TOL_PRED * scale, "plain batches of 4 vs 12 differ by %.3g", wpp);
    printf("  inference: blocked vs plain predictions, worst %.2e of max |y| %.3g\n", g_worst_pred,
           scale);
    for (int k = 0; k < 3; k++) free(blk[k]);
    for (int k = 0; k < 2; k++) free(pl[k]);
    free(x);
    bp_net_free(net);
}

/* ------------------------------------------------------------------------ */
/* 3b. A relu right after a blocked batchnorm runs inside it                 */
/* ------------------------------------------------------------------------ */

/* conv -> batchnorm -> relu, W5's order: the slot's batchnorm primitives
 * compute the relu (dnnl_fuse_norm_relu) and the relu layer is skipped
 * (bp_layer.skip): its output is the batchnorm's buffer, its backward
 * passes dy on. Training, a frozen prefix, and inference (with and
 * without the training reservation: act_full and the two ping-pong
 * buffers) against the plain, unfused run. */
static void test_fused(void)
{
    const char *fused = "conv(16,3,1,1) batchnorm relu maxpool(2) conv(32,3,1,1) batchnorm relu "
                        "avgpool(2) flatten dense(10)";
    bp_net *A = make(img(1, 12, 12), fused, 3), *R = make(img(1, 12, 12),
                     "conv(16,3,1,1) relu batchnorm maxpool(2) flatten dense(4)", 3);
    if (!A || !R) {
        bp_net_free(A);
        bp_net_free(R);
        return;
    }
    bp_net_prepare(A, 8, 1);
    bp_net_prepare(R, 8, 1);
    int q = bp_net_slot(A, 8, 1), qr = bp_net_slot(R, 8, 1);
    int skips = 0, rskips = 0;
    for (int i = 0; q >= 0 && i < A->n_layers; i++) skips += A->layers[i].skip[q];
    for (int i = 0; qr >= 0 && i < R->n_layers; i++) rskips += R->layers[i].skip[qr];
    CHECK(q >= 0 && A->layers[2].skip[q] && A->layers[6].skip[q] && skips == 2,
          "'%s': the two relus after a blocked batchnorm are skipped (%d skipped)", fused, skips);
    CHECK(qr >= 0 && rskips == 0, "relu before batchnorm: nothing skipped (%d)", rskips);
    bp_net_free(R);
    /* Training: momentum (Adam turns the zero gradient of a conv bias
     * before batchnorm into full steps of rounding noise, see above). */
    eq_case c = {img(1, 12, 12), fused, BP_MOMENTUM, 0.05, BP_LOSS_CROSS_ENTROPY, 8, 15, 0};
    train_pair(&c);
    c.freeze = 2; /* conv 0 and batchnorm 1: its fused relu in inference form */
    train_pair(&c);

    /* Inference. A's batchnorms get statistics from 8 training steps first. */
    int n = 10, in = A->n_inputs, outs = bp_net_outputs(A);
    bp_real *x = malloc(sizeof(bp_real) * (size_t)n * in), y[8];
    fill_uniform(x, (size_t)n * in, -1, 1);
    fill_targets(y, 8, BP_LOSS_CROSS_ENTROPY, outs);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_MOMENTUM);
    bp_trainer *tr = NULL;
    bp_error e = {BP_OK, ""};
    expect_ok(bp_trainer_create(&tr, A, &cfg, 8, &e), "trainer", &e);
    for (int step = 0; tr && step < 8; step++) bp_train_step(tr, x, y, 8, NULL, &e);
    bp_trainer_free(tr);
    bp_net *B = NULL, *P = NULL;
    expect_ok(bp_net_clone(&B, A, &e), "clone", &e);
    expect_ok(bp_net_clone(&P, A, &e), "clone", &e);
    bp_real *o_full = malloc(sizeof(bp_real) * n * outs), *o_pp = malloc(sizeof(bp_real) * n * outs);
    bp_real *o_plain = malloc(sizeof(bp_real) * n * outs), tmp[3 * 10];
    expect_ok(bp_net_reserve_train(A, n, &e), "reserve_train", &e);
    expect_ok(bp_forward(A, x, n, o_full, &e), "forward (act_full)", &e);
    expect_ok(bp_forward(B, x, n, o_pp, &e), "forward (ping-pong buffers)", &e);
    int qb = bp_net_slot(B, n, 0);
    CHECK(qb >= 0 && B->layers[2].skip[qb] && B->max_batch == 0,
          "inference slot of batch %d: relu skipped on the ping-pong buffers", n);
    /* P: three other batch sizes fill the slots, so batch 10 runs plain. */
    for (int m = 1; m <= 3; m++) bp_forward(P, x, m, tmp, &e);
    expect_ok(bp_forward(P, x, n, o_plain, &e), "forward (plain)", &e);
    CHECK(bp_net_slot(P, n, 0) < 0, "the plain reference has no slot");
    double scale = 0, w1 = 0, w2 = 0;
    for (int k = 0; k < n * outs; k++) {
        scale = fmax(scale, fabs((double)o_plain[k]));
        w1 = fmax(w1, fabs((double)o_full[k] - o_plain[k]));
        w2 = fmax(w2, fabs((double)o_pp[k] - o_plain[k]));
    }
    note(&g_worst_pred, w1 / scale);
    note(&g_worst_pred, w2 / scale);
    CHECK(scale > 0 && w1 <= TOL_PRED * scale && w2 <= TOL_PRED * scale,
          "fused inference vs plain: %.3g (act_full), %.3g (ping-pong) of max |y| %.3g", w1, w2,
          scale);
    printf("  fused batchnorm+relu inference: %.2e / %.2e of max |y|\n", w1 / scale, w2 / scale);
    free(x), free(o_full), free(o_pp), free(o_plain);
    bp_net_free(A);
    bp_net_free(B);
    bp_net_free(P);
}

/* ------------------------------------------------------------------------ */
/* 4. Frozen batchnorm                                                       */
/* ------------------------------------------------------------------------ */

static void test_frozen(void)
{
    const char *spec = "conv(16,3,1,1) relu batchnorm maxpool(2) conv(16,3,1,1) relu batchnorm "
                       "flatten dense(6)";
    bp_net *A = make(img(1, 10, 10), spec, 9), *P = make(img(1, 10, 10), spec, 9);
    if (!A || !P) {
        bp_net_free(A);
        bp_net_free(P);
        return;
    }
    /* The frozen batchnorm (layer 2) gets statistics and an affine map
     * far from the identity, so normalizing with them matters. */
    for (int i = 0; i < 16; i++) {
        bp_real m = (bp_real)(urand() - 0.3), v = (bp_real)(0.2 + urand());
        bp_real g = (bp_real)(0.5 + urand()), b = (bp_real)(urand() - 0.5);
        A->layers[2].buf[i] = P->layers[2].buf[i] = m;
        A->layers[2].buf[16 + i] = P->layers[2].buf[16 + i] = v;
        A->layers[2].w[i] = P->layers[2].w[i] = g;
        A->layers[2].b[i] = P->layers[2].b[i] = b;
    }
    A->layers[2].count = P->layers[2].count = 7;
    /* What must not move: batchnorm 2's statistics, and the frozen
     * parameters (conv 0: 144 weights, 16 biases; batchnorm 2: gamma, beta). */
    bp_real frozen[32 + 192];
    memcpy(frozen, A->layers[2].buf, 32 * sizeof(bp_real));
    memcpy(frozen + 32, A->params, 192 * sizeof(bp_real));
    int n = 6, in = A->n_inputs, steps = 6;
    bp_real *x = malloc(sizeof(bp_real) * (size_t)2 * n * in), y[12];
    fill_uniform(x, (size_t)2 * n * in, -1, 1);
    fill_targets(y, 2 * n, BP_LOSS_CROSS_ENTROPY, 6);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_MOMENTUM);
    cfg.lr = 0.05;
    cfg.freeze = 2; /* conv 0 and batchnorm 2 */
    bp_trainer *ta = NULL, *tp = NULL;
    bp_error e = {BP_OK, ""};
    expect_ok(bp_trainer_create(&ta, A, &cfg, n, &e), "trainer", &e);
    expect_ok(bp_trainer_create(&tp, P, &cfg, n + 1, &e), "trainer", &e);
    int qa = bp_net_slot(A, n, 1), qp = bp_net_slot(P, n, 1);
    int bn_blk = qa >= 0 ? A->layers[2].blk_in[qa] : -1;
    CHECK(qa >= 0 && qp < 0 && bn_blk == g_B, "frozen: slots %d / %d, frozen batchnorm layout %d",
          qa, qp, bn_blk);
    double worst_loss = 0;
    int lay_bad = 0;
    for (int step = 0; ta && tp && step < steps; step++) {
        const bp_real *xb = x + (size_t)(step % 2) * n * in, *yb = y + (step % 2) * n;
        double la = NAN, lp = NAN;
        bp_status sa = bp_train_step(ta, xb, yb, n, &la, &e);
        lay_bad += observed_layout(A, 7, n) != g_B;
        bp_status sp = bp_train_step(tp, xb, yb, n, &lp, &e);
        lay_bad += observed_layout(P, 7, n) != 1;
        double r = rel_diff(la, lp);
        note(&worst_loss, r);
        CHECK(sa == BP_OK && sp == BP_OK && r <= TOL_LOSS, "frozen step %d: loss %.9g vs %.9g (%s)",
              step + 1, la, lp, e.message);
    }
    CHECK(lay_bad == 0, "frozen: %d passes ran in the wrong layout", lay_bad);
    double wt = compare_nets(A, P, TOL_TENSOR, "frozen batchnorm");
    note(&g_worst_tensor, wt);
    note(&g_worst_loss, worst_loss);
    bp_net *nets[2] = {A, P};
    for (int k = 0; k < 2; k++) {
        bp_net *N = nets[k];
        int kept = memcmp(frozen, N->layers[2].buf, 32 * sizeof(bp_real)) == 0;
        int params_kept = memcmp(frozen + 32, N->params, 192 * sizeof(bp_real)) == 0;
        long long c2 = (long long)N->layers[2].count, c6 = (long long)N->layers[6].count;
        CHECK(kept && params_kept && c2 == 7, "%s: frozen layers changed (statistics kept %d, "
              "parameters kept %d, num_batches_tracked %lld, want 7)", k ? "plain" : "blocked", kept,
              params_kept, c2);
        CHECK(c6 == steps, "%s: trained batchnorm counted %lld batches, want %d",
              k ? "plain" : "blocked", c6, steps);
    }
    printf("  frozen batchnorm: tensors %.2e, losses %.2e\n", wt, worst_loss);
    bp_trainer_free(ta);
    bp_trainer_free(tp);
    free(x);
    bp_net_free(A);
    bp_net_free(P);
}

/* ------------------------------------------------------------------------ */
/* 5. bp_set_threads between steps                                           */
/* ------------------------------------------------------------------------ */

typedef struct epoch_log {
    int epochs;
    double train_loss[4], train_acc[4], val_loss[4], val_acc[4];
    int n_layers;
    double grad_norm[4][16], dead[4][16];
} epoch_log;

static int log_epoch(const bp_epoch_info *info, void *user)
{
    epoch_log *lg = user;
    int k = lg->epochs;
    if (k >= 4) return 0;
    lg->train_loss[k] = info->train_loss;
    lg->train_acc[k] = info->train_accuracy;
    lg->val_loss[k] = info->val_loss;
    lg->val_acc[k] = info->val_accuracy;
    lg->n_layers = info->n_layers;
    for (int i = 0; i < info->n_layers && i < 16; i++) {
        lg->grad_norm[k][i] = info->grad_norm[i];
        lg->dead[k][i] = info->dead_fraction[i];
    }
    lg->epochs++;
    return 0;
}

static void test_threads(void)
{
    if (bp_cores() < 2) {
        printf("  skip bp_set_threads between steps: %d core available\n", bp_cores());
        return;
    }
    CHECK(bp_set_threads(2) == 2, "bp_set_threads(2)");
    const char *spec = "conv(16,3,1,1) relu batchnorm maxpool(2) conv(32,3,1,1) relu batchnorm "
                       "avgpool(2) flatten dense(10)";
    bp_net *A = make(img(1, 12, 12), spec, 13), *P = make(img(1, 12, 12), spec, 13);
    if (!A || !P) {
        bp_net_free(A);
        bp_net_free(P);
        bp_set_threads(0);
        return;
    }
    int n = 8, in = A->n_inputs, total = 24, e_l = end_layer(A);
    bp_real *x = malloc(sizeof(bp_real) * (size_t)total * in), y[24];
    fill_uniform(x, (size_t)total * in, -1, 1);
    fill_targets(y, total, BP_LOSS_CROSS_ENTROPY, 10);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_MOMENTUM);
    cfg.lr = 0.05;
    cfg.batch_size = n;
    cfg.epochs = 1;
    cfg.seed = 17;
    epoch_log la = {0}, lp = {0};
    bp_trainer *ta = NULL, *tp = NULL;
    bp_error e = {BP_OK, ""};
    cfg.on_epoch = log_epoch;
    cfg.user = &la;
    expect_ok(bp_trainer_create(&ta, A, &cfg, n, &e), "trainer", &e);
    cfg.user = &lp;
    expect_ok(bp_trainer_create(&tp, P, &cfg, n + 1, &e), "trainer", &e);
    /* bp_fit would prepare batch n for the plain twin: fill its slots. */
    CHECK(fill_slots(P) == 0, "plain twin's slots filled");
    int qa = bp_net_slot(A, n, 1);
    CHECK(qa >= 0 && A->mm_threads[qa] == 2 && bp_net_slot(P, n, 1) < 0,
          "blocked net has a 2-thread slot for %d", n);
    double worst_loss = 0;
    int wrong = 0, fails = 0;
    for (int step = 0; ta && tp && step < 8; step++) {
        if (step == 4) {
            bp_set_threads(1);
            int stale = bp_net_slot(A, n, 1);
            int kept = 0;
            for (int q = 0; q < BP_MM_SLOTS; q++) kept += A->mm_batch[q] == n && A->mm_threads[q] == 2;
            CHECK(stale < 0 && kept == 1, "after bp_set_threads(1) the 2-thread slot is %d (kept %d): "
                  "it must not be used until rebuilt", stale, kept);
        }
        const bp_real *xb = x + (size_t)(step % 3) * n * in, *yb = y + (step % 3) * n;
        double l1 = NAN, l2 = NAN;
        fails += bp_train_step(ta, xb, yb, n, &l1, &e) != BP_OK;
        int seen = observed_layout(A, e_l, n);
        fails += bp_train_step(tp, xb, yb, n, &l2, &e) != BP_OK;
        int seen_p = observed_layout(P, e_l, n);
        int want = step < 4 ? g_B : 1;
        wrong += seen != want || seen_p != 1;
        double r = rel_diff(l1, l2);
        note(&worst_loss, r);
        CHECK(r <= TOL_LOSS, "threads: step %d loss %.9g vs %.9g", step + 1, l1, l2);
    }
    CHECK(fails == 0 && wrong == 0, "threads: %d failed steps, %d passes in an unexpected layout (%s)",
          fails, wrong, e.message);
    /* bp_fit prepares its batch sizes: the stale slot is rebuilt for one
     * thread and blocked again; the twin finds no free slot. */
    bp_data d = {total, in, 1, 10, x, y, NULL, 0, img(1, 12, 12)};
    bp_fit_result ra, rp;
    bp_status sa = bp_fit(ta, &d, NULL, &ra, &e);
    int seen = observed_layout(A, e_l, n);
    bp_status sp = bp_fit(tp, &d, NULL, &rp, &e);
    int seen_p = observed_layout(P, e_l, n);
    CHECK(sa == BP_OK && sp == BP_OK, "threads: bp_fit: %s", e.message);
    qa = bp_net_slot(A, n, 1);
    CHECK(qa >= 0 && A->mm_threads[qa] == 1 && seen == g_B && seen_p == 1,
          "bp_fit rebuilt the slot for 1 thread (slot %d, layouts seen %d / %d)", qa, seen, seen_p);
    double r = rel_diff(la.train_loss[0], lp.train_loss[0]);
    note(&worst_loss, r);
    CHECK(la.epochs == 1 && lp.epochs == 1 && r <= TOL_LOSS, "threads: epoch loss %.9g vs %.9g",
          la.train_loss[0], lp.train_loss[0]);
    double wt = compare_nets(A, P, TOL_TENSOR, "threads");
    note(&g_worst_tensor, wt);
    note(&g_worst_loss, worst_loss);
    printf("  bp_set_threads 2 -> 1 between steps, bp_fit rebuilds: tensors %.2e, losses %.2e\n", wt,
           worst_loss);
    bp_trainer_free(ta);
    bp_trainer_free(tp);
    free(x);
    bp_net_free(A);
    bp_net_free(P);
    bp_set_threads(0);
}

/* ------------------------------------------------------------------------ */
/* 6. Gradient check on blocked data                                         */
/* ------------------------------------------------------------------------ */

/* Max pooling's kink signature (the argmax of every window, as a spatial
 * index) from a blocked training pass must be the one of the plain pass,
 * and the one computed here from the plain conv output. */
static void check_kink_signature(bp_net *G, bp_net *GP, const bp_real *x, int n, int mp)
{
    bp_net_forward_ws(G, x, n, 1);
    bp_net_forward_ws(GP, x, n, 1);
    const bp_layer *L = &G->layers[mp], *LP = &GP->layers[mp];
    int blk = bp_blk_in(G, L, n, 1), blkp = bp_blk_in(GP, LP, n, 1);
    CHECK(blk == g_B && blkp == 1, "maxpool input layouts %d (blocked net) and %d (plain)", blk, blkp);
    size_t m = L->ops->kinks(G, L, G->act[mp - 1], n, NULL);
    size_t mp_ = LP->ops->kinks(GP, LP, GP->act[mp - 1], n, NULL);
    CHECK(m == mp_ && m == (size_t)n * L->out * sizeof(int32_t), "signature sizes %zu, %zu", m, mp_);
    if (m != mp_) return;
    int32_t *s1 = malloc(m), *s2 = malloc(m), *s3 = malloc(m);
    L->ops->kinks(G, L, G->act[mp - 1], n, (unsigned char *)s1);
    LP->ops->kinks(GP, LP, GP->act[mp - 1], n, (unsigned char *)s2);
    /* The argmax of each window of the plain conv output, first maximum. */
    int C = L->in_shape.dim[0], H = L->in_shape.dim[1], W = L->in_shape.dim[2];
    int K = L->desc.kernel, st = L->desc.stride, OH = L->out_shape.dim[1], OW = L->out_shape.dim[2];
    const bp_real *xp = GP->act[mp - 1];
    size_t o = 0;
    for (int b = 0; b < n; b++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < OH; i++)
                for (int j = 0; j < OW; j++) {
                    const bp_real *ch = xp + ((size_t)b * C + c) * H * W;
                    int best = i * st * W + j * st;
                    for (int p = 0; p < K; p++)
                        for (int q = 0; q < K; q++) {
                            int at = (i * st + p) * W + j * st + q;
                            if (ch[at] > ch[best]) best = at;
                        }
                    s3[o++] = best;
                }
    size_t count = m / sizeof(int32_t), d12 = 0, d23 = 0;
    for (size_t k = 0; k < count; k++) {
        d12 += s1[k] != s2[k];
        d23 += s2[k] != s3[k];
    }
    CHECK(d12 == 0 && d23 == 0, "max pooling argmax: blocked vs plain differ in %zu of %zu windows, "
          "plain vs recomputed in %zu", d12, count, d23);
    free(s1);
    free(s2);
    free(s3);
}

static void gradcheck_pair(const char *spec, bp_shape in, int n, int mp)
{
    bp_net *G = make(in, spec, 31);
    if (!G) return;
    for (int o = 0; o < 16; o++) G->layers[0].b[o] = (bp_real)(0.2 * urand() - 0.1);
    bp_net *GP = NULL;
    bp_error e = {BP_OK, ""};
    expect_ok(bp_net_clone(&GP, G, &e), "clone", &e);
    if (!GP) {
        bp_net_free(G);
        return;
    }
    CHECK(fill_slots(GP) == 0, "plain twin's slots filled");
    int outs = bp_net_outputs(G);
    bp_real *x = malloc(sizeof(bp_real) * (size_t)n * G->n_inputs), y[8];
    fill_uniform(x, (size_t)n * G->n_inputs, -1, 1);
    fill_targets(y, n, BP_LOSS_CROSS_ENTROPY, outs);
    int before = bp_net_slot(G, n, 1);
    CHECK(before < 0, "no slot before bp_gradcheck");
    bp_gradcheck_result r, rp;
    memset(&r, 0, sizeof r);
    memset(&rp, 0, sizeof rp);
    bp_status s = bp_gradcheck(G, BP_LOSS_CROSS_ENTROPY, x, y, n, 0, 0, &r, &e);
    CHECK(s == BP_OK, "gradcheck: %s", e.message);
    /* bp_gradcheck's trainer prepared batch n: the check ran blocked. */
    int q = bp_net_slot(G, n, 1);
    int blk = q >= 0 ? G->layers[0].blk_out[q] : -1;
    CHECK(q >= 0 && blk == g_B, "'%s': bp_gradcheck left slot %d, conv layout %d (want %d)", spec, q,
          blk, g_B);
    s = bp_gradcheck(GP, BP_LOSS_CROSS_ENTROPY, x, y, n, 0, 0, &rp, &e);
    CHECK(s == BP_OK, "gradcheck (plain): %s", e.message);
    CHECK(bp_net_slot(GP, n, 1) < 0, "the plain twin got a slot");
    size_t np = bp_net_param_count(G);
    CHECK(r.checked == np && rp.checked == np, "checked %zu and %zu of %zu", r.checked, rp.checked, np);
    CHECK(r.max_rel_error < 1e-2, "'%s' blocked: worst relative error %.3g at layer %d index %zu "
          "(analytic %.9g, numeric %.9g)", spec, r.max_rel_error, r.worst_layer, r.worst_index,
          r.analytic, r.numeric);
    CHECK(rp.max_rel_error < 1e-2, "'%s' plain: worst relative error %.3g", spec, rp.max_rel_error);
    /* The same kinks are crossed whatever the layout; one crossed on one
     * side only would be a signature read in the wrong layout. */
    CHECK(r.kinks == rp.kinks, "'%s': %zu kinks flagged blocked, %zu plain", spec, r.kinks, rp.kinks);
    printf("  gradcheck %-46s blocked: worst %.2e, %zu/%zu kinks; plain: worst %.2e, %zu kinks\n",
           spec, r.max_rel_error, r.kinks, r.checked, rp.max_rel_error, rp.kinks);
    check_kink_signature(G, GP, x, n, mp);
    free(x);
    bp_net_free(G);
    bp_net_free(GP);
}

static void test_gradcheck(void)
{
    gradcheck_pair("conv(16,3,1,1) maxpool(2) tanh flatten dense(3)", img(1, 6, 6), 2, 1);
    gradcheck_pair("conv(16,3) relu maxpool(3,2) flatten dense(3)", img(2, 9, 9), 2, 2);
}

/* ------------------------------------------------------------------------ */
/* 7. The epoch report                                                       */
/* ------------------------------------------------------------------------ */

/* fused: W5's order, conv batchnorm relu, the relus inside the batchnorms
 * on the blocked side (their dead units counted from the batchnorm's
 * output); momentum there (Adam turns the conv bias's zero gradient into
 * rounding-noise steps, see test_training). */
static void test_epoch_report(int fused)
{
    const char *spec = fused ? "conv(16,3,1,1) batchnorm relu maxpool(2) conv(32,3,1,1) batchnorm "
                               "relu avgpool(2) flatten dense(10)"
                             : "conv(16,3,1,1) relu batchnorm maxpool(2) conv(32,3,1,1) relu batchnorm "
                               "avgpool(2) flatten dense(10)";
    int relu1 = fused ? 2 : 1, relu2 = fused ? 6 : 5;
    bp_net *A = make(img(1, 12, 12), spec, 41), *P = make(img(1, 12, 12), spec, 41);
    if (!A || !P) {
        bp_net_free(A);
        bp_net_free(P);
        return;
    }
    /* Four channels dead for every input (|x| < 1, small weights), so the
     * report has dead units to count: a conv bias of -50 before the first
     * relu, or with the relu fused, the batchnorm's beta. */
    for (int o = 0; o < 16; o++) {
        bp_real v = (bp_real)(o < 4 ? -50 : 0.05);
        if (fused) A->layers[1].b[o] = P->layers[1].b[o] = v;
        else A->layers[0].b[o] = P->layers[0].b[o] = v;
    }
    /* A conv bias right before a batchnorm has a zero gradient: only
     * rounding noise moves it, which a bias of 0 would turn into a large
     * relative difference; compared on a bias of 0.05. */
    if (fused)
        for (int i = 0; i < A->n_layers; i++)
            if (A->layers[i].kind == BP_CONV)
                for (int o = 0; o < A->layers[i].desc.units; o++)
                    A->layers[i].b[o] = P->layers[i].b[o] = (bp_real)0.05;
    CHECK(fill_slots(P) == 0, "plain twin's slots filled");
    int ntr = 36, nval = 20, batch = 16, in = A->n_inputs;
    bp_real *x = malloc(sizeof(bp_real) * (size_t)(ntr + nval) * in), y[56];
    fill_uniform(x, (size_t)(ntr + nval) * in, -1, 1);
    fill_targets(y, ntr + nval, BP_LOSS_CROSS_ENTROPY, 10);
    bp_data dtr = {ntr, in, 1, 10, x, y, NULL, 0, img(1, 12, 12)};
    bp_data dval = {nval, in, 1, 10, x + (size_t)ntr * in, y + ntr, NULL, 0, img(1, 12, 12)};
    bp_train_config cfg;
    bp_train_config_default(&cfg, fused ? BP_MOMENTUM : BP_ADAM);
    cfg.lr = 2e-3;
    cfg.batch_size = batch;
    cfg.epochs = 3;
    cfg.seed = 23;
    cfg.on_epoch = log_epoch;
    epoch_log la = {0}, lp = {0};
    bp_trainer *ta = NULL, *tp = NULL;
    bp_error e = {BP_OK, ""};
    cfg.user = &la;
    expect_ok(bp_trainer_create(&ta, A, &cfg, batch, &e), "trainer", &e);
    cfg.user = &lp;
    expect_ok(bp_trainer_create(&tp, P, &cfg, batch, &e), "trainer", &e);
    bp_status sa = ta ? bp_fit(ta, &dtr, &dval, NULL, &e) : BP_EINVAL;
    /* The last pass was the validation's last chunk (4 samples). */
    int seen = observed_layout(A, end_layer(A), nval - batch);
    bp_status sp = tp ? bp_fit(tp, &dtr, &dval, NULL, &e) : BP_EINVAL;
    int seen_p = observed_layout(P, end_layer(P), nval - batch);
    CHECK(sa == BP_OK && sp == BP_OK, "report: bp_fit: %s", e.message);
    int qa = bp_net_slot(A, batch, 1), qa2 = bp_net_slot(A, ntr % batch, 1);
    CHECK(qa >= 0 && qa2 >= 0 && seen == g_B && seen_p == 1 && bp_net_slot(P, batch, 1) < 0,
          "report: slots %d, %d; layouts seen %d (blocked) and %d (plain)", qa, qa2, seen, seen_p);
    CHECK(qa < 0 || (A->layers[relu1].skip[qa] == fused && A->layers[relu2].skip[qa] == fused),
          "report: relus %s", fused ? "fused into the batchnorms" : "run as layers");
    CHECK(la.epochs == 3 && lp.epochs == 3, "report: %d and %d epochs reported", la.epochs, lp.epochs);
    double worst_loss = 0, worst_gn = 0;
    int dead_diff = 0, acc_diff = 0;
    for (int k = 0; k < la.epochs && k < lp.epochs; k++) {
        double r1 = rel_diff(la.train_loss[k], lp.train_loss[k]);
        double r2 = rel_diff(la.val_loss[k], lp.val_loss[k]);
        note(&worst_loss, fmax(r1, r2));
        CHECK(r1 <= TOL_LOSS && r2 <= TOL_LOSS, "epoch %d: train loss %.9g / %.9g, val %.9g / %.9g",
              k + 1, la.train_loss[k], lp.train_loss[k], la.val_loss[k], lp.val_loss[k]);
        acc_diff += la.train_acc[k] != lp.train_acc[k] || la.val_acc[k] != lp.val_acc[k];
        for (int i = 0; i < la.n_layers && i < 16; i++) {
            dead_diff += la.dead[k][i] != lp.dead[k][i];
            double g = rel_diff(la.grad_norm[k][i], lp.grad_norm[k][i]);
            if (lp.grad_norm[k][i] == 0 && la.grad_norm[k][i] == 0) g = 0;
            note(&worst_gn, g);
        }
    }
    CHECK(acc_diff == 0, "report: accuracies differ in %d epochs", acc_diff);
    CHECK(dead_diff == 0, "report: dead fractions differ in %d places", dead_diff);
    CHECK(worst_gn <= TOL_GRADNORM, "report: gradient norms differ by %.3g (tol %g)", worst_gn,
          TOL_GRADNORM);
    /* The dead units are counted (four channels of sixteen into the first relu). */
    double dead1 = la.dead[la.epochs > 0 ? la.epochs - 1 : 0][relu1];
    double other = la.dead[0][0];
    CHECK(dead1 >= 0.25 && dead1 < 1 && other == -1, "report: relu %d dead fraction %.4f (want "
          ">= 4/16), conv's entry %.1f (want -1)", relu1, dead1, other);
    double wt = compare_nets(A, P, TOL_TENSOR, "epoch report");
    note(&g_worst_tensor, wt);
    note(&g_worst_loss, worst_loss);
    printf("  epoch report%s: losses %.2e, gradient norms %.2e, dead fractions equal (relu %d: "
           "%.4f, relu %d: %.4f), tensors %.2e\n", fused ? " (fused relus)" : "", worst_loss,
           worst_gn, relu1, dead1, relu2, la.dead[0][relu2], wt);
    bp_trainer_free(ta);
    bp_trainer_free(tp);
    free(x);
    bp_net_free(A);
    bp_net_free(P);
}

#endif /* !BP_DOUBLE */

/* ------------------------------------------------------------------------ */

/* The channel block of this machine's convolutions (as bp_net_prepare
 * finds it), or 1. */
static int probe_block(void)
{
    bp_net *net = make(img(1, 6, 6), "conv(16,3) flatten dense(2)", 1);
    if (!net) return 1;
    bp_net_prepare(net, 2, 0);
    int b = net->cblk > 1 ? net->cblk : 1;
    bp_net_free(net);
    return b;
}

#ifdef BP_DOUBLE
/* The double build has no primitives: no slot, every pass plain. */
static void test_double_plain(void)
{
    bp_net *net = make(img(1, 12, 12), "conv(16,3,1,1) relu batchnorm maxpool(2) flatten dense(4)", 5);
    if (!net) return;
    int n = 4;
    bp_real *x = malloc(sizeof(bp_real) * (size_t)n * net->n_inputs), y[4];
    fill_uniform(x, (size_t)n * net->n_inputs, -1, 1);
    fill_targets(y, n, BP_LOSS_CROSS_ENTROPY, 4);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.lr = 1e-2;
    bp_trainer *tr = NULL;
    bp_error e = {BP_OK, ""};
    expect_ok(bp_trainer_create(&tr, net, &cfg, n, &e), "trainer", &e);
    double first = NAN, last = NAN;
    int lay_bad = 0;
    for (int step = 0; tr && step < 20; step++) {
        bp_status st = bp_train_step(tr, x, y, n, &last, &e);
        CHECK(st == BP_OK, "step: %s", e.message);
        lay_bad += observed_layout(net, end_layer(net), n) != 1;
        if (step == 0) first = last;
    }
    int any = net->mm_batch[0] | net->mm_batch[1] | net->mm_batch[2];
    CHECK(!any && net->gemm == NULL && lay_bad == 0, "double build: slots %d %d %d, %d passes not plain",
          net->mm_batch[0], net->mm_batch[1], net->mm_batch[2], lay_bad);
    CHECK(last < 0.5 * first, "double build trains: loss %.4g -> %.4g", first, last);
    bp_trainer_free(tr);
    free(x);
    bp_net_free(net);
}
#endif

int main(void)
{
    /* The blocked layout needs oneDNN's primitives, which BP_GEMM=sgemm
     * turns off: this test is about them. */
    unsetenv("BP_GEMM");
    g_B = probe_block();
#ifdef BP_DOUBLE
    CHECK(g_B == 1, "double build: channel block %d, want 1", g_B);
    g_B = 1;
    test_plan();
    test_double_plain();
#else
    printf("channel block of this machine's convolutions: %d\n", g_B);
    test_plan();
    if (g_B == 1) {
        printf("skip blocked-vs-plain comparisons: the convolutions here use plain layouts\n");
        return check_done(TEST_NAME);
    }
    test_training();
    test_dropout_blocked();
    test_inference();
    test_fused();
    test_frozen();
    test_threads();
    test_gradcheck();
    test_epoch_report(0);
    test_epoch_report(1);
    printf("worst: tensors %.2e (tol %g), losses %.2e (tol %g), predictions %.2e (tol %g)\n",
           g_worst_tensor, TOL_TENSOR, g_worst_loss, TOL_LOSS, g_worst_pred, TOL_PRED);
#endif
    return check_done(TEST_NAME);
}
