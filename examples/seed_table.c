/*
 * seed_table.c - the smallest possible network: one linear neuron.
 *
 * The table below follows y = 2 x. A single dense unit computes
 * y = w x + b; full-batch gradient descent on the mean squared error
 * should find w = 2 and b = 0.
 *
 *   build:  cmake -S . -B build && cmake --build build
 *   run:    ./build/example_seed_table
 */
#include <backprop.h>

#include <math.h>
#include <stdio.h>

int main(void)
{
    /* The data: 4 samples, 1 input feature, 1 target each. */
    bp_real x[] = {0, 3, 9, 27};
    bp_real y[] = {0, 6, 18, 54};
    bp_data data = {.n = 4, .n_inputs = 1, .n_targets = 1, .x = x, .y = y};

    /* A network is a spec string: here one dense layer with one unit. */
    bp_error err;
    bp_net *net = NULL;
    if (bp_net_create(&net, 1, "dense(1)", 1, &err) != BP_OK) {
        fprintf(stderr, "create: %s\n", err.message);
        return 1;
    }

    /* Plain gradient descent on the whole table at each step (batch 0). The
     * inputs reach 27, so the learning rate must stay below about
     * 2 / (2 mean(x^2)) = 0.0049 or the updates would diverge. */
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_SGD);
    cfg.loss = BP_LOSS_MSE;
    cfg.lr = 0.004;
    cfg.batch_size = 0;
    cfg.epochs = 6000;

    bp_trainer *tr = NULL;
    bp_fit_result res;
    if (bp_trainer_create(&tr, net, &cfg, 4, &err) != BP_OK ||
        bp_fit(tr, &data, NULL, &res, &err) != BP_OK) {
        fprintf(stderr, "train: %s\n", err.message);
        bp_trainer_free(tr);
        bp_net_free(net);
        return 1;
    }

    double w = bp_net_weight(net, 0)[0], b = bp_net_bias(net, 0)[0];
    printf("seed table: learned y = %.6f x + %.6f after %ld steps (loss %.3g)\n", w, b, res.steps,
           res.final_train_loss);
    bp_real q = 100, out;
    bp_forward(net, &q, 1, &out, &err);
    printf("seed table: prediction for x = 100: %.4f\n", (double)out);

    bp_trainer_free(tr);
    bp_net_free(net);
    /* Exit status tells scripts whether w = 2 was found to 1e-3. */
    return fabs(w - 2) <= 1e-3 ? 0 : 1;
}
