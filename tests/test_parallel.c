/*
 * test_parallel.c - the optimizer update split across OpenMP threads gives
 * exactly the serial update for every parameter (no slice missed, none
 * updated twice), for each optimizer's first and second step; and
 * bp_fit's batch gather split across the threads copies the rows a serial
 * gather does (bp_fit against its own loop written out, bit for bit).
 */
#include "internal.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

static void run(bp_optimizer opt)
{
    bp_error err;
    bp_net *net = NULL;
    bp_net_create(&net, 300, "dense(257) tanh dense(13)", 4, &err); /* 80k params: parallel path */
    size_t np = bp_net_param_count(net);
    bp_train_config cfg;
    bp_train_config_default(&cfg, opt);
    cfg.weight_decay = 0.01;
    bp_trainer *tr = NULL;
    CHECK(bp_trainer_create(&tr, net, &cfg, 8, &err) == BP_OK, "%s", err.message);
    bp_real x[8 * 300], y[8];
    for (int i = 0; i < 8 * 300; i++) x[i] = (bp_real)((i * 7919) % 101) / 101 - 0.5f;
    for (int i = 0; i < 8; i++) y[i] = (bp_real)(i % 13);
    bp_real *p = malloc(np * sizeof *p), *g = malloc(np * sizeof *g);
    bp_real *s1 = calloc(np, sizeof *s1), *s2 = calloc(np, sizeof *s2);
    bp_set_threads(2);
    for (int step = 1; step <= 2; step++) {
        CHECK(bp_trainer_backward(tr, x, y, 8, NULL, &err) == BP_OK, "%s", err.message);
        memcpy(p, net->params, np * sizeof *p);
        memcpy(g, bp_trainer_weight_grad(tr, 0), np * sizeof *g); /* layers are contiguous */
        bp_optim_update(&cfg, p, g, s1, s2, np, step, bp_trainer_lr(tr));
        CHECK(bp_train_step(tr, x, y, 8, NULL, &err) == BP_OK, "%s", err.message);
        size_t diff = 0;
        for (size_t k = 0; k < np; k++) diff += memcmp(&p[k], &net->params[k], sizeof *p) != 0;
        CHECK(diff == 0, "%s step %d: %zu of %zu parameters differ from the serial update",
              bp_optimizer_name(opt), step, diff, np);
    }
    free(p);
    free(g);
    free(s1);
    free(s2);
    bp_trainer_free(tr);
    bp_net_free(net);
}

/* bp_fit's shuffled epoch against the same epoch written out: the trainer's
 * seeded Fisher-Yates shuffle, each batch gathered row by row, then
 * bp_train_step. Batches of 64 rows of 784 values: bp_fit gathers them on
 * two threads (the last, partial one of 22 rows on one). */
static void fit_gather(void)
{
    enum { N = 150, IN = 784, B = 64 };
    bp_error err;
    bp_real *x = malloc(sizeof(bp_real) * N * IN), *y = malloc(sizeof(bp_real) * N);
    bp_real *xb = malloc(sizeof(bp_real) * B * IN), *yb = malloc(sizeof(bp_real) * B);
    for (int i = 0; i < N * IN; i++) x[i] = (bp_real)((i * 7919) % 257) / 257;
    for (int i = 0; i < N; i++) y[i] = (bp_real)((i * 31) % 4);
    bp_data d;
    memset(&d, 0, sizeof d);
    d.n = N;
    d.n_inputs = IN;
    d.n_targets = 1;
    d.x = x;
    d.y = y;
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.loss = BP_LOSS_CROSS_ENTROPY;
    cfg.batch_size = B;
    cfg.epochs = 1;
    cfg.shuffle = 1;
    cfg.seed = 9;
    bp_set_threads(2);
    bp_net *a = NULL, *b = NULL;
    bp_trainer *ta = NULL, *tb = NULL;
    CHECK(bp_net_create(&a, IN, "dense(16) relu dense(4)", 3, &err) == BP_OK, "%s", err.message);
    CHECK(bp_net_create(&b, IN, "dense(16) relu dense(4)", 3, &err) == BP_OK, "%s", err.message);
    CHECK(bp_trainer_create(&ta, a, &cfg, B, &err) == BP_OK, "%s", err.message);
    CHECK(bp_trainer_create(&tb, b, &cfg, B, &err) == BP_OK, "%s", err.message);
    CHECK(bp_fit(ta, &d, NULL, NULL, &err) == BP_OK, "%s", err.message);
    bp_net_prepare(b, B, 1); /* the GEMM kernels bp_fit makes for its batch sizes */
    bp_net_prepare(b, N % B, 1);
    int perm[N];
    for (int i = 0; i < N; i++) perm[i] = i;
    bp_rng rng;
    bp_rng_seed(&rng, cfg.seed);
    for (int i = N - 1; i > 0; i--) {
        int j = (int)bp_rng_below(&rng, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int start = 0; start < N; start += B) {
        int m = N - start < B ? N - start : B;
        for (int q = 0; q < m; q++) {
            memcpy(xb + (size_t)q * IN, x + (size_t)perm[start + q] * IN, IN * sizeof(bp_real));
            yb[q] = y[perm[start + q]];
        }
        CHECK(bp_train_step(tb, xb, yb, m, NULL, &err) == BP_OK, "%s", err.message);
    }
    size_t np = bp_net_param_count(a), diff = 0;
    for (size_t k = 0; k < np; k++) diff += memcmp(&a->params[k], &b->params[k], sizeof(bp_real)) != 0;
    CHECK(diff == 0, "bp_fit with the gather on 2 threads: %zu of %zu parameters differ from its "
          "loop written out", diff, np);
    bp_trainer_free(ta);
    bp_trainer_free(tb);
    bp_net_free(a);
    bp_net_free(b);
    free(x);
    free(y);
    free(xb);
    free(yb);
}

int main(void)
{
    for (int o = BP_SGD; o <= BP_ADAGRAD; o++) run((bp_optimizer)o);
    fit_gather();
    return check_done("test_parallel");
}
