/* test_cnn.c - convolutional networks through the public API: spec words,
 * shapes and their errors, the inserted flatten, tensors and model files
 * (batchnorm's buffers), batchnorm's running statistics in training,
 * evaluation and when frozen, augmentation, and (double build,
 * test_cnn_f64.c) gradient checks of every layer and of whole CNNs against
 * finite differences, worst relative error < 1e-6. */
#include "check.h"
#include "internal.h"

#include <backprop.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef BP_DOUBLE
#define TEST_NAME "test_cnn_f64"
#else
#define TEST_NAME "test_cnn"
#endif

/* Only the internal buffer loaders/savers, declared here (src/internal.h). */
bp_status bp_net_load_buffer(bp_net **out, const uint8_t *data, size_t size, const char *name,
                             bp_error *err);
bp_status bp_net_save_buffer(const bp_net *net, uint8_t **out, size_t *out_size, bp_error *err);

static uint64_t rs = 0x1234567u;
static double urand(void)
{
    rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rs >> 11) / 9007199254740992.0;
}

static bp_net *make(bp_shape in, const char *spec)
{
    bp_error e = {BP_OK, ""};
    bp_net *net = NULL;
    bp_status s = bp_net_create_shaped(&net, in, spec, 7, &e);
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
    bp_shape img = {3, {1, 28, 28}};
    bp_net *net = make(img, "conv(32,3,1,1) batchnorm relu maxpool(2) conv(64,3,1,1) batchnorm "
                            "relu maxpool(2) dense(128) relu dropout(0.3) dense(10)");
    if (!net) return;
    CHECK(strcmp(bp_net_spec(net), "conv(32,3,1,1) batchnorm relu maxpool(2) conv(64,3,1,1) "
                                   "batchnorm relu maxpool(2) flatten dense(128) relu "
                                   "dropout(0.3) dense(10)") == 0,
          "stored spec shows the inserted flatten: '%s'", bp_net_spec(net));
    CHECK(bp_net_layers(net) == 13, "13 layers, got %d", bp_net_layers(net));
    bp_shape s = bp_net_layer_shape(net, 7);
    CHECK(s.rank == 3 && s.dim[0] == 64 && s.dim[1] == 7 && s.dim[2] == 7, "maxpool out [64,7,7]");
    s = bp_net_layer_shape(net, 8);
    CHECK(s.rank == 1 && s.dim[0] == 3136, "flatten out [3136], got rank %d dim %d", s.rank, s.dim[0]);
    /* parameters: conv 32*9+32, bn 64, conv 64*32*9+64, bn 128, dense 3136*128+128, 128*10+10 */
    size_t want = 320 + 64 + 18496 + 128 + 401536 + 1290;
    CHECK(bp_net_param_count(net) == want, "param count %zu, want %zu", bp_net_param_count(net), want);
    CHECK(bp_net_layer_param_count(net, 0) == 320 && bp_net_layer_param_count(net, 1) == 64,
          "per-layer counts");
    CHECK(bp_net_outputs(net) == 10 && bp_net_inputs(net) == 784, "inputs/outputs");
    /* tensors: names, shapes, dtypes */
    bp_tensor t;
    int nt = bp_net_tensor_count(net);
    CHECK(nt == 2 + 5 + 2 + 5 + 2 + 2, "tensor count %d", nt);
    CHECK(bp_net_tensor(net, 0, &t) && strcmp(t.name, "0.weight") == 0 && t.rank == 4 &&
              t.shape[0] == 32 && t.shape[1] == 1 && t.shape[2] == 3 && t.shape[3] == 3,
          "0.weight [32,1,3,3]");
    CHECK(bp_net_tensor(net, 5, &t) && strcmp(t.name, "1.running_var") == 0 && !t.trainable &&
              t.count == 32 && t.data && t.data[0] == 1,
          "1.running_var starts at 1");
    CHECK(bp_net_tensor(net, 6, &t) && strcmp(t.name, "1.num_batches_tracked") == 0 &&
              t.dtype == BP_DTYPE_I64 && t.rank == 0 && t.i64 && *t.i64 == 0,
          "1.num_batches_tracked I64 scalar");
    CHECK(bp_net_weight(net, 1) && bp_net_weight(net, 1)[0] == 1 && bp_net_bias(net, 1)[0] == 0,
          "batchnorm gamma 1, beta 0");
    bp_net_free(net);

    /* global_avgpool, then dense gets its flatten */
    bp_shape s3 = {3, {3, 5, 7}};
    net = make(s3, "conv(4,3,2,1) global_avgpool dense(2)");
    if (net) {
        CHECK(strcmp(bp_net_spec(net), "conv(4,3,2,1) global_avgpool flatten dense(2)") == 0,
              "spec '%s'", bp_net_spec(net));
        s = bp_net_layer_shape(net, 0);
        CHECK(s.dim[0] == 4 && s.dim[1] == 3 && s.dim[2] == 4, "conv stride 2 pad 1: [4,3,4] got [%d,%d,%d]",
              s.dim[0], s.dim[1], s.dim[2]);
        s = bp_net_layer_shape(net, 1);
        CHECK(s.rank == 3 && s.dim[0] == 4 && s.dim[1] == 1 && s.dim[2] == 1, "gap [4,1,1]");
    }
    bp_net_free(net);
    /* defaults are left out of the canonical spec */
    net = make(img, "conv(2,3,1,0) maxpool(2,2) avgpool(3,1)");
    if (net) CHECK(strcmp(bp_net_spec(net), "conv(2,3) maxpool(2) avgpool(3,1)") == 0, "'%s'", bp_net_spec(net));
    bp_net_free(net);

    /* errors */
    bp_shape small = {3, {1, 4, 4}};
    expect_spec_error(small, "conv(2,5)", "spec:1:1: conv kernel 5 is larger than its input 4x4");
    expect_spec_error(small, "relu maxpool(5)", "spec:1:6: maxpool(5) pools its input 4x4 to nothing");
    expect_spec_error(small, "conv(2,3) avgpool(3)", "spec:1:11: avgpool(3) pools its input 2x2 to nothing");
    expect_spec_error(bp_shape_flat(16), "dense(4) conv(2,3)", "spec:1:10: conv needs an image input [C, H, W], got [4]");
    expect_spec_error(bp_shape_flat(16), "maxpool(2)", "spec:1:1: maxpool needs an image input");
    expect_spec_error(small, "conv(2)", "spec:1:1: 'conv' needs more arguments");
    expect_spec_error(small, "conv(2,3,1,1,1)", "too many arguments for conv");
    expect_spec_error(small, "conv(0,3)", "needs whole numbers in 1..");
    expect_spec_error(small, "conv(2,3,0)", "needs whole numbers in 1..");
    expect_spec_error(small, "conv(2,3,1,-1)", "needs whole numbers in 0..");
    expect_spec_error(small, "conv(2, x)", "spec:1:9:");
    expect_spec_error(small, "batchnorm(3)", "'batchnorm' takes no argument");
    expect_spec_error(small, "pool(2)", "unknown layer 'pool'");
}

/* Save to a buffer, load back: same spec, shape, tensors, predictions. */
static void test_model_file(void)
{
    bp_shape in = {3, {2, 6, 6}};
    bp_net *net = make(in, "conv(3,3,1,1) batchnorm relu maxpool(2) conv(2,2) avgpool(2) dense(4)");
    if (!net) return;
    int n = 5;
    bp_real *x = malloc(sizeof(bp_real) * 72 * n), *y = malloc(sizeof(bp_real) * n);
    for (int i = 0; i < 72 * n; i++) x[i] = (bp_real)(urand() * 2 - 1);
    for (int i = 0; i < n; i++) y[i] = (bp_real)(i % 4);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    bp_trainer *tr = NULL;
    bp_error e = {BP_OK, ""};
    CHECK(bp_trainer_create(&tr, net, &cfg, n, &e) == BP_OK, "trainer: %s", e.message);
    for (int k = 0; tr && k < 3; k++) CHECK(bp_train_step(tr, x, y, n, NULL, &e) == BP_OK, "step: %s", e.message);
    bp_trainer_free(tr);
    /* Fill t before CHECK: a function's arguments have no order, so the
     * message's *t.i64 could be read before bp_net_tensor sets t. */
    bp_tensor t;
    memset(&t, 0, sizeof t);
    int have = bp_net_tensor(net, 6, &t);
    long long steps = have && t.i64 ? (long long)*t.i64 : -1LL;
    CHECK(steps == 3, "num_batches_tracked counts steps: %lld", steps);
    uint8_t *buf = NULL;
    size_t size = 0;
    CHECK(bp_net_save_buffer(net, &buf, &size, &e) == BP_OK, "save: %s", e.message);
    bp_net *back = NULL;
    CHECK(buf && bp_net_load_buffer(&back, buf, size, "cnn", &e) == BP_OK, "load: %s", e.message);
    if (back) {
        CHECK(strcmp(bp_net_spec(back), bp_net_spec(net)) == 0, "spec");
        bp_shape bs = bp_net_input_shape(back);
        CHECK(bs.rank == 3 && bs.dim[0] == 2 && bs.dim[1] == 6 && bs.dim[2] == 6, "input shape kept");
        bp_real o1[20], o2[20];
        CHECK(bp_forward(net, x, n, o1, &e) == BP_OK && bp_forward(back, x, n, o2, &e) == BP_OK, "forward");
        /* The reloaded network runs inference primitives where the trained
         * one runs its training ones (or the reference loop): the same
         * function to rounding. Double build: the file holds float32. */
        double tol = 1e-6;
        double worst = 0;
        for (int i = 0; i < 4 * n; i++) worst = fmax(worst, fabs((double)o1[i] - o2[i]));
        CHECK(worst <= tol, "predictions after load differ by %g (tol %g)", worst, tol);
        bp_tensor a, b;
        bp_net_tensor(net, 5, &a);
        bp_net_tensor(back, 5, &b);
        CHECK(a.data[1] == (bp_real)(float)b.data[1] || fabs((double)a.data[1] - b.data[1]) < 1e-6,
              "running_var kept");
        bp_net_tensor(back, 6, &b);
        CHECK(*b.i64 == 3, "num_batches_tracked kept");
    }
    bp_net_free(back);
    /* a truncated file never loads */
    int bad = 0;
    for (size_t cut = 0; buf && cut < size; cut += 1 + cut / 7) {
        bp_net *m = NULL;
        if (bp_net_load_buffer(&m, buf, cut, "cut", &e) == BP_OK) bad++;
        bp_net_free(m);
    }
    CHECK(bad == 0, "%d truncations loaded", bad);
    free(buf);
    free(x);
    free(y);
    bp_net_free(net);
}

/* Running statistics: training updates them as torch does, evaluation
 * uses them, a frozen batchnorm neither updates nor uses the batch's. */
static void test_batchnorm_stats(void)
{
    bp_net *net = make(bp_shape_flat(3), "batchnorm dense(2)");
    if (!net) return;
    int n = 4;
    bp_real x[12], y[4] = {0, 1, 0, 1};
    for (int i = 0; i < 12; i++) x[i] = (bp_real)(i * 0.5 + (i % 3) * (i % 3));
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_SGD);
    cfg.lr = 1e-9;
    bp_trainer *tr = NULL;
    bp_error e = {BP_OK, ""};
    CHECK(bp_trainer_create(&tr, net, &cfg, n, &e) == BP_OK, "trainer: %s", e.message);
    CHECK(tr && bp_train_step(tr, x, y, n, NULL, &e) == BP_OK, "step: %s", e.message);
    bp_trainer_free(tr);
    bp_tensor rm, rv;
    bp_net_tensor(net, 2, &rm);
    bp_net_tensor(net, 3, &rv);
    for (int c = 0; c < 3; c++) {
        double m = 0, v = 0;
        for (int r = 0; r < n; r++) m += x[r * 3 + c];
        m /= n;
        for (int r = 0; r < n; r++) v += (x[r * 3 + c] - m) * (x[r * 3 + c] - m);
        double unbiased = v / (n - 1);
        CHECK_CLOSE(rm.data[c], 0.1 * m, 1e-6, "running_mean = 0.1 mean");
        CHECK_CLOSE(rv.data[c], 0.9 + 0.1 * unbiased, 1e-6, "running_var = 0.9 + 0.1 unbiased var");
    }
    /* evaluation uses the running statistics: the output of sample r is
     * dense(gamma (x - rm)/sqrt(rv + eps) + beta) */
    bp_real out[8];
    bp_forward(net, x, n, out, &e);
    const bp_real *g = bp_net_weight(net, 0), *be = bp_net_bias(net, 0);
    const bp_real *W = bp_net_weight(net, 1), *b = bp_net_bias(net, 1);
    double worst = 0;
    for (int r = 0; r < n; r++)
        for (int o = 0; o < 2; o++) {
            double z = b[o];
            for (int c = 0; c < 3; c++)
                z += W[o * 3 + c] * (g[c] * (x[r * 3 + c] - rm.data[c]) / sqrt(rv.data[c] + 1e-5) + be[c]);
            worst = fmax(worst, fabs(z - out[r * 2 + o]));
        }
    CHECK(worst < 1e-5, "evaluation with running statistics: max error %g", worst);
    /* frozen: statistics stay, gamma/beta stay */
    double rm0 = rm.data[0], g0 = g[0];
    cfg.freeze = 1;
    cfg.lr = 0.5;
    CHECK(bp_trainer_create(&tr, net, &cfg, n, &e) == BP_OK, "frozen trainer: %s", e.message);
    for (int k = 0; tr && k < 3; k++) CHECK(bp_train_step(tr, x, y, n, NULL, &e) == BP_OK, "step: %s", e.message);
    bp_trainer_free(tr);
    CHECK(rm.data[0] == rm0 && g[0] == g0, "frozen batchnorm unchanged (%g %g)", (double)rm.data[0], (double)g[0]);
    bp_tensor cnt;
    bp_net_tensor(net, 4, &cnt);
    CHECK(*cnt.i64 == 1, "frozen: count stays 1, got %lld", (long long)*cnt.i64);
    bp_net_free(net);
}

/* bp_fit with augment_hflip on a data set whose label is "left half bright":
 * flipping swaps the halves, so the trainer with flips cannot fit what it
 * fits without them (a check that flips happen on training rows). */
static void test_augment(void)
{
    int n = 64, H = 4, W = 4;
    bp_real *x = calloc((size_t)n * H * W, sizeof(bp_real)), *y = calloc((size_t)n, sizeof(bp_real));
    for (int i = 0; i < n; i++) {
        int left = i % 2;
        y[i] = (bp_real)left;
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++)
                x[(size_t)i * 16 + h * W + w] = (bp_real)(((w < W / 2) == left ? 1.0 : 0.0) + 0.1 * urand());
    }
    bp_data d = {0};
    d.x = x;
    d.y = y;
    d.n = n;
    d.n_inputs = 16;
    d.n_targets = 1;
    d.n_classes = 2;
    double acc[2];
    for (int flip = 0; flip < 2; flip++) {
        bp_shape s = {3, {1, H, W}};
        bp_net *net = make(s, "conv(2,1) flatten dense(2)");
        if (!net) return;
        bp_train_config cfg;
        bp_train_config_default(&cfg, BP_ADAM);
        cfg.lr = 0.05;
        cfg.epochs = 30;
        cfg.batch_size = 16;
        cfg.augment_hflip = flip;
        bp_trainer *tr = NULL;
        bp_error e = {BP_OK, ""};
        CHECK(bp_trainer_create(&tr, net, &cfg, 16, &e) == BP_OK, "trainer: %s", e.message);
        CHECK(tr && bp_fit(tr, &d, NULL, NULL, &e) == BP_OK, "fit: %s", e.message);
        double loss = 0;
        bp_evaluate(net, BP_LOSS_CROSS_ENTROPY, &d, &loss, &acc[flip], &e);
        bp_trainer_free(tr);
        bp_net_free(net);
    }
    CHECK(acc[0] > 0.95, "without flips the halves are learned: accuracy %.3f", acc[0]);
    CHECK(acc[1] < 0.8, "with flips they cannot be: accuracy %.3f", acc[1]);
    /* augmentation needs images */
    bp_net *flat = make(bp_shape_flat(16), "dense(2)");
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.augment_shift = 1;
    bp_trainer *tr = NULL;
    bp_error e = {BP_OK, ""};
    CHECK(bp_trainer_create(&tr, flat, &cfg, 4, &e) == BP_EINVAL && strstr(e.message, "image"),
          "augment on flat input refused: %s", e.message);
    bp_trainer_free(tr);
    bp_net_free(flat);
    free(x);
    free(y);
}

#ifdef BP_DOUBLE
/* Gradient check of `spec` on `in` with n samples of random data. */
static void gradcheck(bp_shape in, const char *spec, int n, bp_loss loss)
{
    bp_net *net = make(in, spec);
    if (!net) return;
    int f = bp_net_inputs(net), outs = bp_net_outputs(net);
    bp_real *x = malloc(sizeof(bp_real) * (size_t)f * n), *y = malloc(sizeof(bp_real) * (size_t)outs * n);
    for (int i = 0; i < f * n; i++) x[i] = (bp_real)(urand() * 2 - 1);
    for (int i = 0; i < n; i++) y[i] = (bp_real)(i % outs);
    if (loss == BP_LOSS_MSE)
        for (int i = 0; i < outs * n; i++) y[i] = (bp_real)(urand() - 0.5);
    /* non-trivial biases and batchnorm affine parameters */
    for (int l = 0; l < bp_net_layers(net); l++) {
        bp_real *b = bp_net_bias(net, l);
        bp_layer_desc d = bp_net_layer(net, l);
        int nb = d.kind == BP_BATCHNORM ? (int)(bp_net_layer_param_count(net, l) / 2)
               : d.kind == BP_CONV || d.kind == BP_DENSE ? d.units : 0;
        for (int k = 0; b && k < nb; k++) b[k] = (bp_real)(0.2 * (urand() - 0.5));
        bp_real *w = bp_net_weight(net, l);
        if (d.kind == BP_BATCHNORM)
            for (int k = 0; k < nb; k++) w[k] = (bp_real)(0.5 + urand());
    }
    bp_gradcheck_result r;
    bp_error e = {BP_OK, ""};
    /* floor 1e-5: a conv or dense bias before a batchnorm has a true
     * gradient of exactly 0 (the normalization removes any per-channel
     * shift); its finite difference is rounding noise of ~1e-11. */
    bp_status s = bp_gradcheck(net, loss, x, y, n, 1e-4, 1e-5, &r, &e);
    CHECK(s == BP_OK, "gradcheck '%s': %s", spec, e.message);
    CHECK(s == BP_OK && r.max_rel_error < 1e-6 && r.checked > 0,
          "gradcheck '%s': worst %.3g (layer %d), %zu checked, %zu at kinks", spec, r.max_rel_error,
          r.worst_layer, (size_t)r.checked, (size_t)r.kinks);
    printf("gradcheck %-58s worst %.2e over %zu (%zu kinks)\n", spec, r.max_rel_error, (size_t)r.checked,
           (size_t)r.kinks);
    free(x);
    free(y);
    bp_net_free(net);
}

static void test_gradchecks(void)
{
    bp_shape a = {3, {2, 7, 6}}, b = {3, {3, 9, 9}}, c = {3, {1, 8, 8}};
    gradcheck(a, "conv(3,3) flatten dense(3)", 3, BP_LOSS_CROSS_ENTROPY);
    gradcheck(a, "conv(2,3,2) dense(3)", 2, BP_LOSS_CROSS_ENTROPY);
    gradcheck(a, "conv(4,3,1,1) tanh dense(2)", 2, BP_LOSS_MSE);
    gradcheck(a, "conv(2,3,2,1) dense(3)", 3, BP_LOSS_CROSS_ENTROPY);
    gradcheck(b, "conv(2,5) dense(3)", 2, BP_LOSS_CROSS_ENTROPY);
    gradcheck(b, "conv(3,5,2,2) sigmoid dense(3)", 2, BP_LOSS_CROSS_ENTROPY);
    gradcheck(b, "conv(4,1) tanh conv(2,3,1,1) dense(3)", 2, BP_LOSS_CROSS_ENTROPY);
    gradcheck(b, "conv(1,3) dense(2)", 1, BP_LOSS_MSE);
    gradcheck(b, "conv(3,3) maxpool(2) dense(3)", 3, BP_LOSS_CROSS_ENTROPY);
    gradcheck(b, "conv(3,3) maxpool(3,2) dense(3)", 2, BP_LOSS_CROSS_ENTROPY);   /* overlapping */
    gradcheck(b, "conv(2,2) avgpool(2) dense(3)", 3, BP_LOSS_CROSS_ENTROPY);
    gradcheck(b, "conv(2,2) avgpool(3,1) dense(3)", 2, BP_LOSS_CROSS_ENTROPY);   /* overlapping */
    gradcheck(b, "conv(3,3,1,1) global_avgpool dense(3)", 3, BP_LOSS_CROSS_ENTROPY);
    gradcheck(c, "conv(3,3) batchnorm tanh dense(3)", 4, BP_LOSS_CROSS_ENTROPY); /* BatchNorm2d */
    gradcheck(bp_shape_flat(5), "dense(6) batchnorm tanh dense(3)", 6, BP_LOSS_CROSS_ENTROPY); /* 1d */
    gradcheck(c, "conv(2,3) flatten dense(4) dropout(0.3) dense(2)", 3, BP_LOSS_MSE);
    gradcheck(c, "conv(4,3,1,1) batchnorm relu maxpool(2) conv(3,3) avgpool(2) flatten dense(3)", 4,
              BP_LOSS_CROSS_ENTROPY); /* the fixture CNN */
}
#endif

/* Inference holds two activations (bp_net_reserve): outputs beyond the
 * training reservation, where the layers' outputs take two buffers in
 * turn, are the same, bit for bit, as within it, where every layer keeps
 * its own; and each reservation allocates what it says. */
static void test_inference_buffers(void)
{
    const char *specs[2] = {"conv(16,3,1,1) batchnorm relu maxpool(2) conv(8,3) relu avgpool(2) "
                            "dropout(0.3) dense(5) softmax",
                            "dense(32) relu dropout(0.2) dense(16) tanh dense(3)"};
    bp_shape shapes[2] = {{3, {2, 10, 10}}, {1, {200}}};
    for (int k = 0; k < 2; k++) {
        bp_net *a = make(shapes[k], specs[k]), *b = make(shapes[k], specs[k]);
        if (!a || !b) {
            bp_net_free(a);
            bp_net_free(b);
            continue;
        }
        int n = 40, in = (int)bp_shape_size(shapes[k]), outs = bp_net_outputs(a);
        bp_real *x = malloc(sizeof(bp_real) * (size_t)n * in);
        bp_real *ya = malloc(sizeof(bp_real) * (size_t)n * outs);
        bp_real *yb = malloc(sizeof(bp_real) * (size_t)n * outs);
        for (int i = 0; i < n * in; i++) x[i] = (bp_real)(urand() * 2 - 1);
        /* Non-trivial running statistics, the same in both networks. */
        bp_tensor t;
        memset(&t, 0, sizeof t);
        for (int j = 0; j < bp_net_tensor_count(a); j++)
            if (bp_net_tensor(a, j, &t) && t.data && !t.trainable) {
                bp_tensor u;
                memset(&u, 0, sizeof u);
                bp_net_tensor(b, j, &u);
                for (size_t q = 0; q < t.count; q++)
                    t.data[q] = u.data[q] = (bp_real)(0.5 + urand());
            }
        bp_error e = {BP_OK, ""};
        bp_status sa = bp_forward(a, x, n, ya, &e);
        CHECK(sa == BP_OK, "%s: forward: %s", specs[k], e.message);
        CHECK(a->max_batch == 0 && a->act_full == NULL && a->infer_batch == n && a->pp[0] && a->pp[1],
              "%s: a forward on a fresh network reserves two buffers only (max_batch %d, "
              "infer_batch %d)", specs[k], a->max_batch, a->infer_batch);
        bp_status sb = bp_net_reserve_train(b, n, &e);
        sb = sb ? sb : bp_forward(b, x, n, yb, &e);
        CHECK(sb == BP_OK && b->act_full && b->infer_batch == 0,
              "%s: within the training reservation nothing more: %s", specs[k], e.message);
        CHECK(sa == BP_OK && sb == BP_OK && memcmp(ya, yb, sizeof(bp_real) * (size_t)n * outs) == 0,
              "%s: outputs through two buffers equal those through every layer's", specs[k]);
        /* Then a trainer on the network that only did inference. */
        bp_train_config cfg;
        bp_train_config_default(&cfg, BP_ADAM);
        cfg.loss = BP_LOSS_MSE;
        bp_trainer *tr = NULL;
        bp_real *y = calloc((size_t)8 * outs, sizeof(bp_real));
        double loss = NAN;
        CHECK(bp_trainer_create(&tr, a, &cfg, 8, &e) == BP_OK && a->max_batch == 8 && a->act_full,
              "%s: a trainer reserves every layer's output: %s", specs[k], e.message);
        CHECK(tr && bp_train_step(tr, x, y, 8, &loss, &e) == BP_OK && isfinite(loss),
              "%s: and steps: %s", specs[k], e.message);
        /* bp_evaluate beyond its batch: the inference buffers again. */
        bp_data d = {n, in, outs, 0, x, yb, NULL, 0, shapes[k]};
        double l2 = NAN;
        CHECK(bp_evaluate(a, BP_LOSS_MSE, &d, &l2, NULL, &e) == BP_OK && isfinite(l2),
              "%s: evaluate after training: %s", specs[k], e.message);
        bp_trainer_free(tr);
        free(y);
        free(x);
        free(ya);
        free(yb);
        bp_net_free(a);
        bp_net_free(b);
    }
}

int main(void)
{
    test_shapes();
    test_model_file();
    test_batchnorm_stats();
    test_augment();
    test_inference_buffers();
#ifdef BP_DOUBLE
    test_gradchecks();
#endif
    return check_done(TEST_NAME);
}
