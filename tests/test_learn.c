/*
 * test_learn.c - end to end: networks learn what they should.
 *   - the seed table 0,3,9,27 -> 0,6,18,54 by one linear neuron: w = 2 +- 1e-3;
 *   - XOR by a 2-4-1 network: all four right;
 *   - logistic regression (dense(1), bce) on a separable set;
 *   - iris and wine (sklearn's CSVs from Debian's python3-sklearn), read by
 *     bp_read_csv, standardized on the training part, 1 row in 4 held out:
 *     test accuracy >= 0.92 (iris) and >= 0.94 (wine).
 */
#include "backprop.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void seed_table(void)
{
    bp_real x[] = {0, 3, 9, 27}, y[] = {0, 6, 18, 54};
    bp_data d = {4, 1, 1, 0, x, y, NULL, 0, {0, {0}}};
    bp_error err;
    bp_net *net = NULL;
    bp_net_create(&net, 1, "dense(1)", 1, &err);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_SGD);
    cfg.loss = BP_LOSS_MSE;
    cfg.lr = 0.004;
    cfg.batch_size = 0;
    cfg.epochs = 6000;
    bp_trainer *tr = NULL;
    CHECK(bp_trainer_create(&tr, net, &cfg, 4, &err) == BP_OK, "%s", err.message);
    CHECK(bp_fit(tr, &d, NULL, NULL, &err) == BP_OK, "%s", err.message);
    double w = bp_net_weight(net, 0)[0], b = bp_net_bias(net, 0)[0];
    CHECK(fabs(w - 2) <= 1e-3, "seed table: w = %.6f, want 2 +- 1e-3", w);
    CHECK(fabs(b) <= 1e-2, "seed table: b = %.6f, want 0", b);
    bp_trainer_free(tr);
    bp_net_free(net);
}

static void xor_net(bp_optimizer opt, double lr, bp_loss loss, const char *spec)
{
    bp_real x[] = {0, 0, 0, 1, 1, 0, 1, 1}, y[] = {0, 1, 1, 0};
    bp_data d = {4, 2, 1, loss == BP_LOSS_CROSS_ENTROPY ? 2 : 0, x, y, NULL, 0, {0, {0}}};
    bp_error err;
    bp_net *net = NULL;
    bp_net_create(&net, 2, spec, 7, &err);
    bp_train_config cfg;
    bp_train_config_default(&cfg, opt);
    cfg.loss = loss;
    cfg.lr = lr;
    cfg.batch_size = 0;
    cfg.epochs = 3000;
    bp_trainer *tr = NULL;
    bp_trainer_create(&tr, net, &cfg, 4, &err);
    CHECK(bp_fit(tr, &d, NULL, NULL, &err) == BP_OK, "%s", err.message);
    double acc = 0;
    if (loss == BP_LOSS_MSE) { /* no accuracy for mse: threshold the outputs */
        bp_real p[4];
        bp_forward(net, x, 4, p, &err);
        for (int i = 0; i < 4; i++) acc += ((p[i] > 0.5f) == (y[i] > 0.5f)) / 4.0;
    } else {
        CHECK(bp_evaluate(net, loss, &d, NULL, &acc, &err) == BP_OK, "%s", err.message);
    }
    CHECK(acc == 1.0, "xor with %s/%s: accuracy %g", bp_optimizer_name(opt), bp_loss_name(loss), acc);
    bp_trainer_free(tr);
    bp_net_free(net);
}

/* Copy rows where (i % 4 == 3) == held into out (owned arrays). */
static void split(const bp_data *d, int held, bp_data *out)
{
    memset(out, 0, sizeof *out);
    out->n_inputs = d->n_inputs;
    out->n_targets = d->n_targets;
    out->n_classes = d->n_classes;
    out->x = malloc(sizeof(bp_real) * d->n * d->n_inputs);
    out->y = malloc(sizeof(bp_real) * d->n * d->n_targets);
    for (int i = 0; i < d->n; i++) {
        if ((i % 4 == 3) != held) continue;
        memcpy(out->x + (size_t)out->n * d->n_inputs, d->x + (size_t)i * d->n_inputs, sizeof(bp_real) * d->n_inputs);
        memcpy(out->y + (size_t)out->n * d->n_targets, d->y + (size_t)i * d->n_targets, sizeof(bp_real) * d->n_targets);
        out->n++;
    }
}

/* sklearn's CSVs start with a line "N,FEATURES,class names..." instead of a
 * header: copy the file with a plain header "f1,...,fK,class". */
static int plain_csv(const char *src, const char *dst)
{
    FILE *in = fopen(src, "r"), *out = fopen(dst, "w");
    if (!in || !out) {
        if (in) fclose(in);
        if (out) fclose(out);
        return -1;
    }
    int n, k;
    if (fscanf(in, "%d,%d", &n, &k) != 2) k = -1;
    int c;
    while ((c = fgetc(in)) != EOF && c != '\n') {}
    for (int j = 1; j <= k; j++) fprintf(out, "f%d,", j);
    fprintf(out, "class\n");
    while ((c = fgetc(in)) != EOF) fputc(c, out);
    fclose(in);
    fclose(out);
    return k > 0 ? 0 : -1;
}

static void real_data(const char *file, const char *spec, double want)
{
    char path[512], plain[] = "/tmp/bp_test_learn_XXXXXX";
    snprintf(path, sizeof path, "/usr/lib/python3/dist-packages/sklearn/datasets/data/%s", file);
    CHECK(access(path, R_OK) == 0, "%s is missing: install python3-sklearn (scripts/deps.sh test)", path);
    int fd = mkstemp(plain);
    if (fd >= 0) close(fd);
    CHECK(fd >= 0 && plain_csv(path, plain) == 0, "%s: cannot make a plain CSV copy", file);
    bp_error err;
    bp_data all;
    bp_csv_options opt = {0};
    bp_status s = bp_read_csv(&all, plain, &opt, NULL, &err);
    unlink(plain);
    CHECK(s == BP_OK, "read %s: %s", file, err.message);
    if (s) return;
    CHECK(all.n_classes == 3, "%s: %d classes", file, all.n_classes);
    bp_data train, test;
    split(&all, 0, &train);
    split(&all, 1, &test);
    bp_norm nm;
    CHECK(bp_norm_fit(&nm, &train, BP_NORM_STANDARD, &err) == BP_OK, "%s", err.message);
    bp_norm_apply(&nm, &train, &err);
    bp_norm_apply(&nm, &test, &err);
    bp_net *net = NULL;
    bp_net_create(&net, all.n_inputs, spec, 3, &err);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.lr = 0.01;
    cfg.batch_size = 16;
    cfg.epochs = 100;
    cfg.seed = 5;
    bp_trainer *tr = NULL;
    bp_trainer_create(&tr, net, &cfg, 16, &err);
    CHECK(bp_fit(tr, &train, NULL, NULL, &err) == BP_OK, "%s", err.message);
    double loss, acc;
    CHECK(bp_evaluate(net, BP_LOSS_CROSS_ENTROPY, &test, &loss, &acc, &err) == BP_OK, "%s", err.message);
    printf("  %s: %d train / %d test rows, test loss %.4f, test accuracy %.4f (want >= %.2f)\n", file,
           train.n, test.n, loss, acc, want);
    CHECK(acc >= want, "%s: test accuracy %.4f < %.2f", file, acc, want);
    bp_trainer_free(tr);
    bp_net_free(net);
    bp_norm_free(&nm);
    free(train.x);
    free(train.y);
    free(test.x);
    free(test.y);
    bp_data_free(&all);
}

/* Logistic regression: the one-layer bce case on a linearly separable set. */
static void logistic(void)
{
    enum { N = 200 };
    bp_real x[2 * N], y[N];
    uint64_t s = 9;
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < 2; j++) x[2 * i + j] = (bp_real)((s = s * 6364136223846793005ULL + 1) >> 40) / (1 << 24) * 4 - 2;
        y[i] = x[2 * i] + 2 * x[2 * i + 1] > 0.5f ? 1 : 0;
    }
    bp_data d = {N, 2, 1, 0, x, y, NULL, 0, {0, {0}}};
    bp_error err;
    bp_net *net = NULL;
    bp_net_create(&net, 2, "dense(1)", 1, &err);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_SGD);
    cfg.loss = BP_LOSS_BCE;
    cfg.lr = 0.5;
    cfg.batch_size = 20;
    cfg.epochs = 200;
    bp_trainer *tr = NULL;
    bp_trainer_create(&tr, net, &cfg, 20, &err);
    CHECK(bp_fit(tr, &d, NULL, NULL, &err) == BP_OK, "%s", err.message);
    double acc;
    bp_evaluate(net, BP_LOSS_BCE, &d, NULL, &acc, &err);
    CHECK(acc >= 0.98, "logistic regression accuracy %g", acc);
    const bp_real *w = bp_net_weight(net, 0);
    CHECK(fabs(w[1] / w[0] - 2) < 0.3, "boundary direction w1/w0 = %g, want ~2", (double)(w[1] / w[0]));
    bp_trainer_free(tr);
    bp_net_free(net);
}

int main(void)
{
    seed_table();
    xor_net(BP_ADAM, 0.05, BP_LOSS_BCE, "dense(4) tanh dense(1) sigmoid");
    xor_net(BP_MOMENTUM, 0.1, BP_LOSS_CROSS_ENTROPY, "dense(4) tanh dense(2)");
    xor_net(BP_RMSPROP, 0.01, BP_LOSS_MSE, "dense(4) tanh dense(1)");
    logistic();
    real_data("iris.csv", "dense(16) relu dense(3)", 0.92);
    real_data("wine_data.csv", "dense(16) relu dense(3)", 0.94);
    return check_done("test_learn");
}
