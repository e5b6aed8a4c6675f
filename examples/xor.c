/*
 * xor.c - XOR, the classic problem a single neuron cannot solve, learned
 * by a 2-4-1 network: 2 inputs, 4 tanh hidden units, 1 sigmoid output.
 *
 * The loss is binary cross-entropy; the final sigmoid is fused into it
 * (computed on the logits, stably), and bp_forward returns probabilities.
 *
 *   run:  ./build/example_xor
 */
#include <backprop.h>

#include <stdio.h>

static int on_epoch(const bp_epoch_info *e, void *user)
{
    (void)user;
    if (e->epoch % 500 == 0)
        printf("xor: epoch %4d  loss %.5f  accuracy %.2f\n", e->epoch, e->train_loss,
               e->train_accuracy);
    return 0; /* non-zero would stop training */
}

int main(void)
{
    bp_real x[] = {0, 0, 0, 1, 1, 0, 1, 1};
    bp_real y[] = {0, 1, 1, 0};
    bp_data data = {.n = 4, .n_inputs = 2, .n_targets = 1, .x = x, .y = y};

    bp_error err;
    bp_net *net = NULL;
    if (bp_net_create(&net, 2, "dense(4) tanh dense(1) sigmoid", 7, &err) != BP_OK) {
        fprintf(stderr, "create: %s\n", err.message);
        return 1;
    }

    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.loss = BP_LOSS_BCE;
    cfg.lr = 0.05;
    cfg.batch_size = 0; /* full batch: all four rows each step */
    cfg.epochs = 2000;
    cfg.on_epoch = on_epoch;

    bp_trainer *tr = NULL;
    if (bp_trainer_create(&tr, net, &cfg, 4, &err) != BP_OK ||
        bp_fit(tr, &data, NULL, NULL, &err) != BP_OK) {
        fprintf(stderr, "train: %s\n", err.message);
        bp_trainer_free(tr);
        bp_net_free(net);
        return 1;
    }

    bp_real p[4];
    bp_forward(net, x, 4, p, &err);
    int correct = 0;
    for (int i = 0; i < 4; i++) {
        printf("xor: %g xor %g -> %.4f (want %g)\n", x[2 * i], x[2 * i + 1], p[i], y[i]);
        correct += (p[i] > 0.5) == (y[i] > 0.5);
    }
    printf("xor: %d of 4 correct\n", correct);
    bp_trainer_free(tr);
    bp_net_free(net);
    return correct == 4 ? 0 : 1;
}
