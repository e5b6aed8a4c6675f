/*
 * test_net.c - the network and trainer API: spec parsing and its errors,
 * shapes, metadata, batch modes, non-finite detection, data validation,
 * early stopping, freezing and the per-epoch diagnostics.
 */
#include "backprop.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_spec(void)
{
    bp_error err;
    bp_net *net = NULL;
    CHECK(bp_net_create(&net, 784, "dense(256) relu dropout(0.2) dense(128) leaky_relu(0.01) dense(10)", 1,
                        &err) == BP_OK, "%s", err.message);
    CHECK(bp_net_layers(net) == 6 && bp_net_outputs(net) == 10 && bp_net_inputs(net) == 784, "shape");
    CHECK(bp_net_param_count(net) == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10, "param count %zu",
          bp_net_param_count(net));
    CHECK(strcmp(bp_net_spec(net), "dense(256) relu dropout(0.2) dense(128) leaky_relu(0.01) dense(10)") == 0,
          "canonical spec '%s'", bp_net_spec(net));
    CHECK(bp_net_weight(net, 1) == NULL && bp_net_weight(net, 0) != NULL, "weights only for dense");
    CHECK(bp_net_layer(net, 4).kind == BP_LEAKY_RELU && bp_net_layer(net, 4).param == 0.01, "layer desc");
    bp_net_free(net);

    /* Spaces, defaults, canonical form. */
    CHECK(bp_net_create(&net, 3, "  dense( 4 )   leaky_relu dropout  dense(2)\t", 1, &err) == BP_OK, "%s",
          err.message);
    CHECK(net && strcmp(bp_net_spec(net), "dense(4) leaky_relu(0.01) dropout(0.5) dense(2)") == 0, "spec '%s'",
          net ? bp_net_spec(net) : "");
    bp_net_free(net);

    /* Parameters print in their shortest exact form. */
    CHECK(bp_net_create(&net, 3, "leaky_relu(0.1000000001) dropout(0.30000000000000004) dense(2)", 1, &err) == BP_OK,
          "%s", err.message);
    CHECK(net && strcmp(bp_net_spec(net), "leaky_relu(0.1000000001) dropout(0.30000000000000004) dense(2)") == 0,
          "exact spec '%s'", net ? bp_net_spec(net) : "");
    CHECK(net && bp_net_layer(net, 1).param == 0.30000000000000004, "parameter kept exactly");
    bp_net_free(net);

    struct {
        const char *spec;
        const char *where;
    } bad[] = {
        {"", "spec:1:1"},
        {"dense(10) rellu", "spec:1:11"},
        {"dense", "spec:1:1"},
        {"dense(0)", "spec:1:7"},
        {"dense(-3)", "spec:1:7"},
        {"dense(2.5)", "spec:1:7"},
        {"dense(10", "spec:1:6"},
        {"relu(3)", "spec:1:5"},
        {"dropout(1.0)", "spec:1:1"},
        {"dropout(abc)", "spec:1:9"},
        {"dense(4)relu", "spec:1:9"},
        {"conv(8,3) dense(2)", "spec:1:1"},
        {"dense(4) $", "spec:1:10"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        net = (bp_net *)1;
        bp_status s = bp_net_create(&net, 3, bad[i].spec, 1, &err);
        CHECK(s == BP_ESPEC && net == NULL, "spec '%s' should fail, got %s", bad[i].spec, bp_status_name(s));
        CHECK(s != BP_ESPEC || strncmp(err.message, bad[i].where, strlen(bad[i].where)) == 0,
              "spec '%s': message '%s' should start with %s", bad[i].spec, err.message, bad[i].where);
    }
    CHECK(bp_net_create(&net, 0, "dense(2)", 1, &err) == BP_EINVAL, "0 inputs");
    CHECK(bp_net_create(NULL, 3, "dense(2)", 1, &err) == BP_EINVAL, "NULL out");

    /* Layer by layer gives the same network as the string. */
    bp_layer_desc d[] = {{.kind = BP_DENSE, .units = 5}, {.kind = BP_TANH}, {.kind = BP_DENSE, .units = 2}};
    bp_net *a = NULL, *b = NULL;
    CHECK(bp_net_create_layers(&a, 3, d, 3, 9, &err) == BP_OK, "%s", err.message);
    CHECK(bp_net_create(&b, 3, "dense(5) tanh dense(2)", 9, &err) == BP_OK, "%s", err.message);
    CHECK(a && b && memcmp(bp_net_weight(a, 0), bp_net_weight(b, 0), 15 * sizeof(bp_real)) == 0,
          "same seed, same weights");
    bp_net_free(a);
    bp_net_free(b);
}

static void test_init(void)
{
    bp_error err;
    bp_net *net = NULL;
    bp_net_create(&net, 400, "dense(300) relu dense(200) tanh dense(10)", 3, &err);
    struct {
        bp_init s;
        int layer;
        double var;
    } cases[] = {
        {BP_INIT_DEFAULT, 0, 2.0 / 400},          /* He before relu */
        {BP_INIT_DEFAULT, 2, 2.0 / (300 + 200)},  /* Xavier before tanh */
        {BP_INIT_HE_NORMAL, 2, 2.0 / 300},
        {BP_INIT_XAVIER_NORMAL, 0, 2.0 / 700},
        {BP_INIT_HE_UNIFORM, 0, 2.0 / 400},
        {BP_INIT_XAVIER_UNIFORM, 2, 2.0 / 500},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        CHECK(bp_net_init(net, cases[c].s, 11, &err) == BP_OK, "%s", err.message);
        bp_layer_desc L = bp_net_layer(net, cases[c].layer);
        int in = cases[c].layer == 0 ? 400 : 300;
        const bp_real *w = bp_net_weight(net, cases[c].layer);
        double sum = 0, sum2 = 0;
        size_t m = (size_t)L.units * in;
        for (size_t k = 0; k < m; k++) {
            sum += w[k];
            sum2 += (double)w[k] * w[k];
        }
        double var = sum2 / m - (sum / m) * (sum / m);
        CHECK(fabs(var / cases[c].var - 1) < 0.05, "init %d layer %d: variance %g, expected %g", (int)cases[c].s,
              cases[c].layer, var, cases[c].var);
        CHECK(bp_net_bias(net, cases[c].layer)[0] == 0, "bias starts at zero");
    }
    CHECK(bp_net_init(net, (bp_init)99, 1, &err) == BP_EINVAL, "unknown scheme");
    bp_net_free(net);
}

static void test_meta_and_forward(void)
{
    bp_error err;
    bp_net *net = NULL;
    bp_net_create(&net, 2, "dense(3) softmax", 1, &err);
    CHECK(bp_net_set_meta(net, "task", "classify", &err) == BP_OK, "set");
    CHECK(bp_net_set_meta(net, "task", "regress", &err) == BP_OK, "overwrite");
    CHECK(bp_net_meta_count(net) == 1 && strcmp(bp_net_get_meta(net, "task"), "regress") == 0, "meta");
    CHECK(bp_net_get_meta(net, "nope") == NULL, "absent key");
    bp_real x[4] = {1, 2, -1, 0.5}, y[6];
    CHECK(bp_forward(net, x, 2, y, &err) == BP_OK, "%s", err.message);
    CHECK(fabs(y[0] + y[1] + y[2] - 1) < 1e-6 && fabs(y[3] + y[4] + y[5] - 1) < 1e-6, "softmax rows sum to 1");
    CHECK(bp_forward(net, x, 0, y, &err) == BP_ESHAPE, "empty batch");
    bp_net *c = NULL;
    CHECK(bp_net_clone(&c, net, &err) == BP_OK, "clone");
    bp_real y2[6];
    bp_forward(c, x, 2, y2, &err);
    CHECK(memcmp(y, y2, sizeof y) == 0 && strcmp(bp_net_get_meta(c, "task"), "regress") == 0, "clone equal");
    bp_net_free(c);
    bp_net_free(net);
}

static void test_config_errors(void)
{
    bp_error err;
    bp_net *net = NULL;
    bp_net_create(&net, 2, "dense(3) relu dense(2)", 1, &err);
    bp_train_config cfg;
    bp_trainer *tr = NULL;
#define BAD_CFG(stmt, code)                                                                    \
    do {                                                                                       \
        bp_train_config_default(&cfg, BP_ADAM);                                                \
        stmt;                                                                                  \
        bp_status s_ = bp_trainer_create(&tr, net, &cfg, 4, &err);                             \
        CHECK(s_ == code && tr == NULL, "%s should give %s, got %s", #stmt, #code, bp_status_name(s_)); \
        bp_trainer_free(tr);                                                                   \
        tr = NULL;                                                                             \
    } while (0)
    BAD_CFG(cfg.lr = 0, BP_EINVAL);
    BAD_CFG(cfg.lr = NAN, BP_EINVAL);
    BAD_CFG(cfg.beta1 = 1, BP_EINVAL);
    BAD_CFG(cfg.optimizer = (bp_optimizer)42, BP_EINVAL);
    BAD_CFG((cfg.optimizer = BP_NESTEROV, cfg.momentum = 0), BP_EINVAL);
    BAD_CFG(cfg.freeze = 2, BP_EINVAL);
    BAD_CFG(cfg.clip_norm = -1, BP_EINVAL);
    BAD_CFG((cfg.schedule = BP_SCHED_STEP, cfg.step_size = 0), BP_EINVAL);
    BAD_CFG(cfg.epochs = 0, BP_EINVAL);
    bp_net_free(net);
    bp_net_create(&net, 2, "dense(1)", 1, &err);
    BAD_CFG(cfg.loss = BP_LOSS_CROSS_ENTROPY, BP_ESHAPE);
    bp_train_config_default(&cfg, BP_SGD);
    cfg.loss = BP_LOSS_MSE;
    CHECK(bp_trainer_create(&tr, net, &cfg, 0, &err) == BP_ESHAPE, "max batch 0");
    CHECK(bp_trainer_create(&tr, net, &cfg, 2, &err) == BP_OK, "%s", err.message);
    bp_real x[6] = {0}, y[3] = {0};
    CHECK(bp_train_step(tr, x, y, 3, NULL, &err) == BP_ESHAPE, "batch above max batch");
    bp_trainer_free(tr);
    bp_net_free(net);
}

/* NaN in data, in the weights, or an exploding loss: a status, not garbage. */
static void test_nonfinite(void)
{
    bp_error err;
    bp_net *net = NULL;
    bp_net_create(&net, 2, "dense(3) tanh dense(1)", 1, &err);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_SGD);
    cfg.loss = BP_LOSS_MSE;
    bp_trainer *tr = NULL;
    bp_trainer_create(&tr, net, &cfg, 4, &err);
    bp_real x[4] = {1, 2, 3, 4}, y[2] = {1, 2};
    bp_net_weight(net, 2)[1] = NAN;
    bp_real before = bp_net_weight(net, 0)[0];
    bp_status s = bp_train_step(tr, x, y, 2, NULL, &err);
    CHECK(s == BP_ENONFINITE, "NaN weight must stop the step, got %s", bp_status_name(s));
    CHECK(strstr(err.message, "step 1") && strstr(err.message, "layer 2"), "message names step and layer: %s",
          err.message);
    CHECK(bp_net_weight(net, 0)[0] == before, "parameters untouched after a non-finite step");

    /* A learning rate that explodes: fit stops with the epoch and step. */
    bp_net_init(net, BP_INIT_DEFAULT, 1, &err);
    bp_trainer_free(tr);
    cfg.lr = 1e30;
    cfg.epochs = 50;
    cfg.batch_size = 1;
    bp_trainer_create(&tr, net, &cfg, 4, &err);
    bp_real xs[8] = {1, 2, 3, 4, 5, 6, 7, 8}, ys[4] = {1, 2, 3, 4};
    bp_data d = {4, 2, 1, 0, xs, ys, NULL, 0, {0, {0}}};
    s = bp_fit(tr, &d, NULL, NULL, &err);
    CHECK(s == BP_ENONFINITE && strstr(err.message, "epoch ") && strstr(err.message, "step "),
          "divergence reported: %s %s", bp_status_name(s), err.message);

    /* NaN in the data is refused before training, with its row. */
    bp_trainer_free(tr);
    cfg.lr = 0.01;
    bp_trainer_create(&tr, net, &cfg, 4, &err);
    xs[5] = NAN;
    s = bp_fit(tr, &d, NULL, NULL, &err);
    CHECK(s == BP_EINVAL && strstr(err.message, "row 3"), "NaN data: %s %s", bp_status_name(s), err.message);
    xs[5] = 1;
    bp_data empty = {0, 2, 1, 0, xs, ys, NULL, 0, {0, {0}}};
    CHECK(bp_fit(tr, &empty, NULL, NULL, &err) == BP_EINVAL, "empty data");
    bp_data wide = {4, 3, 1, 0, xs, ys, NULL, 0, {0, {0}}};
    CHECK(bp_fit(tr, &wide, NULL, NULL, &err) == BP_ESHAPE, "wrong width: %s", err.message);
    bp_trainer_free(tr);
    bp_net_free(net);

    /* Class labels out of range. */
    bp_net_create(&net, 2, "dense(3)", 1, &err);
    bp_train_config_default(&cfg, BP_SGD);
    bp_trainer_create(&tr, net, &cfg, 4, &err);
    bp_real lab[4] = {0, 1, 3, 2};
    bp_data dl = {4, 2, 1, 3, xs, lab, NULL, 0, {0, {0}}};
    s = bp_fit(tr, &dl, NULL, NULL, &err);
    CHECK(s == BP_EINVAL && strstr(err.message, "row 3"), "label 3 of 3 classes: %s", err.message);
    CHECK(bp_train_step(tr, xs, lab, 4, NULL, &err) == BP_EINVAL, "train_step checks labels too");
    bp_trainer_free(tr);
    bp_net_free(net);
}

static int count_epochs(const bp_epoch_info *e, void *user)
{
    int *n = user;
    (*n)++;
    return 0;
}

/* Full batch, mini-batch and stochastic are one code path: steps per epoch. */
static void test_batch_modes(void)
{
    bp_error err;
    bp_real x[10], y[10];
    for (int i = 0; i < 10; i++) {
        x[i] = (bp_real)i / 10;
        y[i] = 3 * x[i] - 1;
    }
    bp_data d = {10, 1, 1, 0, x, y, NULL, 0, {0, {0}}};
    int batches[] = {0, 1, 3, 10, 50};
    long want[] = {1, 10, 4, 1, 1};
    for (int k = 0; k < 5; k++) {
        bp_net *net = NULL;
        bp_net_create(&net, 1, "dense(1)", 1, &err);
        bp_train_config cfg;
        bp_train_config_default(&cfg, BP_SGD);
        cfg.loss = BP_LOSS_MSE;
        cfg.batch_size = batches[k];
        cfg.epochs = 3;
        cfg.lr = 0.1;
        int epochs = 0;
        cfg.on_epoch = count_epochs;
        cfg.user = &epochs;
        bp_trainer *tr = NULL;
        bp_fit_result r;
        CHECK(bp_trainer_create(&tr, net, &cfg, 1, &err) == BP_OK, "%s", err.message);
        CHECK(bp_fit(tr, &d, NULL, &r, &err) == BP_OK, "%s", err.message);
        CHECK(r.steps == 3 * want[k] && epochs == 3, "batch %d: %ld steps, %d epochs", batches[k], r.steps, epochs);
        bp_trainer_free(tr);
        bp_net_free(net);
    }
}

struct log {
    int epochs;
    double dead[8], norm[8];
    double val[64];
};

static int log_epoch(const bp_epoch_info *e, void *user)
{
    struct log *l = user;
    for (int i = 0; i < e->n_layers && i < 8; i++) {
        l->dead[i] = e->dead_fraction[i];
        l->norm[i] = e->grad_norm[i];
    }
    if (l->epochs < 64) l->val[l->epochs] = e->val_loss;
    l->epochs++;
    return 0;
}

/* Early stopping restores the best weights; diagnostics are reported. */
static void test_early_stopping_and_diagnostics(void)
{
    bp_error err;
    enum { N = 40 };
    bp_real x[N * 2], y[N], xv[N * 2], yv[N];
    uint64_t s = 5;
    for (int i = 0; i < N * 2; i++) {
        x[i] = (bp_real)((s = s * 6364136223846793005ULL + 1) >> 40) / (1 << 24) - 0.5f;
        xv[i] = (bp_real)((s = s * 6364136223846793005ULL + 1) >> 40) / (1 << 24) - 0.5f;
    }
    /* Training targets are noise: the validation loss soon rises. */
    for (int i = 0; i < N; i++) {
        y[i] = (bp_real)((s = s * 6364136223846793005ULL + 1) >> 40) / (1 << 24) * 4 - 2;
        yv[i] = 0;
    }
    bp_data tr_d = {N, 2, 1, 0, x, y, NULL, 0, {0, {0}}}, va_d = {N, 2, 1, 0, xv, yv, NULL, 0, {0, {0}}};
    bp_net *net = NULL;
    /* A relu layer with a very negative bias: all of it is dead. */
    bp_net_create(&net, 2, "dense(32) relu dense(4) relu dense(1)", 1, &err);
    for (int j = 0; j < 4; j++) bp_net_bias(net, 2)[j] = -100;
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.loss = BP_LOSS_MSE;
    cfg.lr = 0.05;
    cfg.epochs = 200;
    cfg.batch_size = 8;
    cfg.patience = 5;
    struct log lg = {0};
    cfg.on_epoch = log_epoch;
    cfg.user = &lg;
    bp_trainer *tr = NULL;
    bp_fit_result r;
    bp_trainer_create(&tr, net, &cfg, 8, &err);
    CHECK(bp_fit(tr, &tr_d, &va_d, &r, &err) == BP_OK, "%s", err.message);
    CHECK(r.stopped_early && r.epochs_run < 200, "early stop (ran %d epochs)", r.epochs_run);
    CHECK(r.epochs_run == r.best_epoch + cfg.patience, "stopped %d epochs after the best (%d of %d)", cfg.patience,
          r.best_epoch, r.epochs_run);
    double vl;
    bp_evaluate(net, BP_LOSS_MSE, &va_d, &vl, NULL, &err);
    CHECK(fabs(vl - r.best_loss) < 1e-6 * (1 + r.best_loss), "best weights restored: val loss %g vs best %g", vl,
          r.best_loss);
    CHECK(fabs(lg.val[r.best_epoch - 1] - r.best_loss) < 1e-12, "best loss is the reported epoch's");
    CHECK(lg.dead[3] == 1.0, "layer 3 relu fully dead, got %g", lg.dead[3]);
    CHECK(lg.dead[1] >= 0 && lg.dead[1] < 0.5, "layer 1 relu mostly alive, got %g", lg.dead[1]);
    CHECK(lg.dead[0] == -1 && lg.norm[1] == 0, "non-relu layers: -1 dead fraction, 0 norm");
    CHECK(lg.norm[4] > 0 && lg.norm[0] == 0, "dense norms: output %g, first (behind dead layer) %g", lg.norm[4],
          lg.norm[0]);
    bp_trainer_free(tr);
    bp_net_free(net);
}

/* Frozen layers do not move; the others do. */
static void test_freeze(void)
{
    bp_error err;
    bp_net *net = NULL;
    bp_net_create(&net, 3, "dense(4) tanh dense(4) tanh dense(2)", 1, &err);
    size_t n0 = 4 * 3;
    bp_real w0[12], w1[16];
    memcpy(w0, bp_net_weight(net, 0), sizeof w0);
    memcpy(w1, bp_net_weight(net, 2), sizeof w1);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.freeze = 1;
    cfg.epochs = 3;
    bp_real x[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3}, y[4] = {0, 1, 0, 1};
    bp_data d = {4, 3, 1, 2, x, y, NULL, 0, {0, {0}}};
    bp_trainer *tr = NULL;
    bp_trainer_create(&tr, net, &cfg, 4, &err);
    CHECK(bp_fit(tr, &d, NULL, NULL, &err) == BP_OK, "%s", err.message);
    CHECK(memcmp(w0, bp_net_weight(net, 0), n0 * sizeof(bp_real)) == 0, "frozen layer unchanged");
    CHECK(memcmp(w1, bp_net_weight(net, 2), sizeof w1) != 0, "unfrozen layer trained");
    bp_trainer_free(tr);
    bp_net_free(net);
}

/* Same seed, same run: bit-identical weights. Different seed: different. */
static void test_determinism(void)
{
    bp_error err;
    bp_real x[40], y[20];
    for (int i = 0; i < 20; i++) {
        x[2 * i] = (bp_real)i / 20;
        x[2 * i + 1] = (bp_real)(i % 3);
        y[i] = (bp_real)(i % 2);
    }
    bp_data d = {20, 2, 1, 2, x, y, NULL, 0, {0, {0}}};
    bp_real out[3][2];
    uint64_t seeds[3] = {1, 1, 2};
    for (int k = 0; k < 3; k++) {
        bp_net *net = NULL;
        bp_net_create(&net, 2, "dense(8) relu dropout(0.3) dense(2)", 3, &err);
        bp_train_config cfg;
        bp_train_config_default(&cfg, BP_MOMENTUM);
        cfg.seed = seeds[k];
        cfg.batch_size = 4;
        cfg.epochs = 5;
        bp_trainer *tr = NULL;
        bp_trainer_create(&tr, net, &cfg, 4, &err);
        bp_fit(tr, &d, NULL, NULL, &err);
        memcpy(out[k], bp_net_weight(net, 3), sizeof out[k]);
        bp_trainer_free(tr);
        bp_net_free(net);
    }
    CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0, "same seed reproduces");
    CHECK(memcmp(out[0], out[2], sizeof out[0]) != 0, "another seed differs");
}

static int first_lr(const bp_step_info *si, void *user)
{
    double *lr = user;
    if (si->batch == 1 && si->epoch == 1) *lr = si->lr;
    return 0;
}

/* Cosine with total_steps 0 belongs to each bp_fit call; bp_train_step
 * refuses it instead of training at lr 0. */
static void test_cosine_auto(void)
{
    bp_error err;
    bp_net *net = NULL;
    bp_net_create(&net, 1, "dense(1)", 1, &err);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_SGD);
    cfg.loss = BP_LOSS_MSE;
    cfg.lr = 0.1;
    cfg.schedule = BP_SCHED_COSINE;
    cfg.epochs = 2;
    cfg.batch_size = 3;
    double lr = -1;
    cfg.on_step = first_lr;
    cfg.user = &lr;
    bp_real x[6] = {1, 2, 3, 4, 5, 6}, y[6] = {2, 4, 6, 8, 10, 12};
    bp_data d = {6, 1, 1, 0, x, y, NULL, 0, {0, {0}}};
    bp_trainer *tr = NULL;
    bp_trainer_create(&tr, net, &cfg, 3, &err);
    CHECK(bp_fit(tr, &d, NULL, NULL, &err) == BP_OK, "%s", err.message);
    CHECK(fabs(lr - 0.1) < 1e-12, "first fit starts at lr 0.1, got %g", lr);
    lr = -1;
    CHECK(bp_fit(tr, &d, NULL, NULL, &err) == BP_OK, "%s", err.message);
    CHECK(lr > 0.01, "second fit trains (first lr %g)", lr);
    CHECK(bp_train_step(tr, x, y, 3, NULL, &err) == BP_EINVAL, "train_step with cosine and total_steps 0");
    bp_trainer_free(tr);
    bp_net_free(net);
}

int main(void)
{
    test_cosine_auto();
    test_spec();
    test_init();
    test_meta_and_forward();
    test_config_errors();
    test_nonfinite();
    test_batch_modes();
    test_early_stopping_and_diagnostics();
    test_freeze();
    test_determinism();
    return check_done("test_net");
}
