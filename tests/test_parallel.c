/*
 * test_parallel.c - the optimizer update split across OpenMP threads gives
 * exactly the serial update for every parameter (no slice missed, none
 * updated twice), for each optimizer's first and second step.
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

int main(void)
{
    for (int o = BP_SGD; o <= BP_ADAGRAD; o++) run((bp_optimizer)o);
    return check_done("test_parallel");
}
