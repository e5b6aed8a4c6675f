/*
 * custom_loop.c - your own training loop with bp_train_step, for when
 * bp_fit's epochs do not fit your program (online learning, streaming).
 *
 * Learns y = sin(x) on [-3, 3] with a 1-32-32-1 tanh network, drawing a
 * fresh random mini-batch at every step, with a cosine learning-rate
 * schedule and gradient clipping.
 *
 *   run:  ./build/example_custom_loop
 */
#include <backprop.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { BATCH = 32, STEPS = 3000 };

int main(void)
{
    bp_error err;
    bp_net *net = NULL;
    if (bp_net_create(&net, 1, "dense(32) tanh dense(32) tanh dense(1)", 1, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }

    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.loss = BP_LOSS_MSE;
    cfg.lr = 0.01;
    cfg.schedule = BP_SCHED_COSINE; /* lr falls from 0.01 to 0 over... */
    cfg.total_steps = STEPS;        /* ...this many steps */
    cfg.clip_norm = 1.0;            /* keep every step's gradient norm <= 1 */

    /* The trainer allocates everything a step needs, once. */
    bp_trainer *tr = NULL;
    if (bp_trainer_create(&tr, net, &cfg, BATCH, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }

    bp_real x[BATCH], y[BATCH];
    srand(1);
    for (int step = 1; step <= STEPS; step++) {
        for (int i = 0; i < BATCH; i++) {
            x[i] = (bp_real)(6.0 * rand() / RAND_MAX - 3.0);
            y[i] = (bp_real)sin(x[i]);
        }
        double loss;
        /* forward, loss, backward, clip, Adam update: one call, no allocation */
        if (bp_train_step(tr, x, y, BATCH, &loss, &err)) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        if (step % 500 == 0) printf("step %4d  loss %.6f  lr %.5f\n", step, loss, bp_trainer_lr(tr));
    }

    bp_real q[3] = {-1.5, 0.5, 2.0}, p[3];
    bp_forward(net, q, 3, p, &err);
    for (int i = 0; i < 3; i++) printf("sin(%+.1f) = %+.4f, network says %+.4f\n", q[i], sin(q[i]), p[i]);
    bp_trainer_free(tr);
    bp_net_free(net);
    return 0;
}
