/*
 * fashion_cnn.c - a convolutional network on Fashion-MNIST with the
 * library's C API: two conv + batchnorm + relu + maxpool blocks, a dense
 * head with dropout, Adam with a linear warm-up of one epoch and a cosine
 * schedule (issue 8's recipe), optionally with augmentation.
 *
 *   run:  ./build/example_fashion_cnn [EPOCHS [LR [AUGMENT [DIR]]]]
 *         EPOCHS 15, LR 0.002, AUGMENT 0 (1: random horizontal flips and
 *         shifts by up to 2 pixels), DIR /usr/share/datasets/fashion-mnist
 *
 * After each epoch it prints the training loss, the test accuracy (the
 * test set is only evaluated, never trained on or used to stop) and the
 * epoch's seconds.
 */
#include <backprop.h>

#include <stdio.h>
#include <stdlib.h>

#define DIE(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)

static int on_epoch(const bp_epoch_info *e, void *user)
{
    (void)user;
    printf("epoch %2d/%d  loss %.4f  train acc %.4f  test acc %.4f  lr %.2e  %.1f s\n", e->epoch,
           e->epochs, e->train_loss, e->train_accuracy, e->val_accuracy, e->lr, e->seconds);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    int epochs = argc > 1 ? atoi(argv[1]) : 15;
    double lr = argc > 2 ? atof(argv[2]) : 2e-3;
    int augment = argc > 3 ? atoi(argv[3]) : 0;
    const char *dir = argc > 4 ? argv[4] : "/usr/share/datasets/fashion-mnist";
    char img[512], lab[512];
    bp_error err;
    bp_data train, test;
    snprintf(img, sizeof img, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(lab, sizeof lab, "%s/train-labels-idx1-ubyte.gz", dir);
    if (bp_read_idx(&train, img, lab, &err) != BP_OK) DIE("%s", err.message);
    snprintf(img, sizeof img, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(lab, sizeof lab, "%s/t10k-labels-idx1-ubyte.gz", dir);
    if (bp_read_idx(&test, img, lab, &err) != BP_OK) DIE("%s", err.message);

    /* Images are [1, 28, 28] (train.shape); a flatten goes before dense(128). */
    bp_net *net;
    if (bp_net_create_shaped(&net, train.shape,
                             "conv(32,3,1,1) batchnorm relu maxpool(2) conv(64,3,1,1) batchnorm relu "
                             "maxpool(2) dense(128) relu dropout(0.3) dense(10)",
                             42, &err) != BP_OK)
        DIE("%s", err.message);
    printf("%s: %zu parameters\n", bp_net_spec(net), bp_net_param_count(net));

    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.lr = lr;
    cfg.batch_size = 128;
    cfg.epochs = epochs;
    cfg.schedule = BP_SCHED_COSINE;
    cfg.warmup = (train.n + 127) / 128; /* one epoch */
    cfg.seed = 42;
    cfg.augment_hflip = augment;
    cfg.augment_shift = augment ? 2 : 0;
    cfg.on_epoch = on_epoch;
    bp_trainer *tr;
    if (bp_trainer_create(&tr, net, &cfg, 128, &err) != BP_OK) DIE("%s", err.message);
    bp_fit_result res;
    if (bp_fit(tr, &train, &test, &res, &err) != BP_OK) DIE("%s", err.message);
    double loss, acc;
    if (bp_evaluate(net, BP_LOSS_CROSS_ENTROPY, &test, &loss, &acc, &err) != BP_OK) DIE("%s", err.message);
    printf("test accuracy %.4f (loss %.4f) after %d epochs\n", acc, loss, res.epochs_run);
    if (bp_net_save(net, "fashion_cnn.safetensors", &err) != BP_OK) DIE("%s", err.message);
    bp_trainer_free(tr);
    bp_net_free(net);
    bp_data_free(&train);
    bp_data_free(&test);
    return 0;
}
