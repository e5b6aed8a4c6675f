/*
 * iris.c - a real data set from a CSV file, start to finish:
 * read, split, normalize, train with validation and early stopping,
 * evaluate, save, load back and predict.
 *
 *   run:  ./build/example_iris [path/to/iris.csv] [model.safetensors]
 *
 * The default CSV is the copy Debian's python3-sklearn ships. Its first
 * line is "150,4,setosa,versicolor,virginica": five fields, like the data
 * rows, so the reader takes it as a header; the target is the last column
 * (integers 0, 1, 2 -> three classes).
 */
#include <backprop.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIE(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)

int main(int argc, char **argv)
{
    const char *csv = argc > 1 ? argv[1] : "/usr/lib/python3/dist-packages/sklearn/datasets/data/iris.csv";
    const char *model = argc > 2 ? argv[2] : "iris.safetensors";
    bp_error err;

    /* 1. Read the CSV: features become x [150, 4], labels y [150]. */
    bp_data all;
    bp_csv_options opt = {0};
    if (bp_read_csv(&all, csv, &opt, NULL, &err) != BP_OK) DIE("%s", err.message);
    printf("read %d rows, %d features, %d classes\n", all.n, all.n_inputs, all.n_classes);

    /* 2. Hold out every 5th row for validation. A bp_data can view any
     *    arrays we own; here we copy rows into two new sets. */
    bp_data train = all, val = all;
    train.owned = val.owned = 0;
    train.class_names = val.class_names = NULL;
    train.x = malloc(sizeof(bp_real) * all.n * all.n_inputs);
    train.y = malloc(sizeof(bp_real) * all.n);
    val.x = malloc(sizeof(bp_real) * all.n * all.n_inputs);
    val.y = malloc(sizeof(bp_real) * all.n);
    train.n = val.n = 0;
    for (int i = 0; i < all.n; i++) {
        bp_data *d = i % 5 == 4 ? &val : &train;
        memcpy(d->x + (size_t)d->n * all.n_inputs, all.x + (size_t)i * all.n_inputs, sizeof(bp_real) * all.n_inputs);
        d->y[d->n++] = all.y[i];
    }

    /* 3. Standardize with statistics of the training part only. */
    bp_norm norm;
    if (bp_norm_fit(&norm, &train, BP_NORM_STANDARD, &err) || bp_norm_apply(&norm, &train, &err) ||
        bp_norm_apply(&norm, &val, &err))
        DIE("%s", err.message);

    /* 4. A small network; the output layer has one unit per class and the
     *    cross-entropy loss applies the softmax itself. */
    bp_net *net = NULL;
    if (bp_net_create(&net, all.n_inputs, "dense(16) relu dense(3)", 1, &err)) DIE("%s", err.message);

    /* 5. Adam, mini-batches of 16, at most 200 epochs, stop when the
     *    validation loss has not improved for 20 epochs (best weights kept). */
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.loss = BP_LOSS_CROSS_ENTROPY;
    cfg.lr = 0.01;
    cfg.batch_size = 16;
    cfg.epochs = 200;
    cfg.patience = 20;
    bp_trainer *tr = NULL;
    bp_fit_result res;
    if (bp_trainer_create(&tr, net, &cfg, 16, &err) || bp_fit(tr, &train, &val, &res, &err))
        DIE("%s", err.message);
    printf("trained %d epochs (best %d, validation loss %.4f)%s\n", res.epochs_run, res.best_epoch,
           res.best_loss, res.stopped_early ? ", stopped early" : "");

    double loss, acc;
    bp_evaluate(net, BP_LOSS_CROSS_ENTROPY, &val, &loss, &acc, &err);
    printf("validation accuracy %.3f\n", acc);

    /* 6. Save: the normalization travels in the model's metadata. */
    bp_norm_to_meta(&norm, net, &err);
    if (bp_net_save(net, model, &err)) DIE("%s", err.message);

    /* 7. Load it back and predict the first validation row. */
    bp_net *loaded = NULL;
    if (bp_net_load(&loaded, model, &err)) DIE("%s", err.message);
    bp_real logits[3];
    bp_forward(loaded, val.x, 1, logits, &err);
    int best = 0;
    for (int j = 1; j < 3; j++)
        if (logits[j] > logits[best]) best = j;
    printf("saved %s; reloaded model predicts class %d for a row of class %d\n", model, best, (int)val.y[0]);

    bp_net_free(loaded);
    bp_trainer_free(tr);
    bp_net_free(net);
    bp_norm_free(&norm);
    free(train.x); free(train.y); free(val.x); free(val.y);
    bp_data_free(&all);
    return 0;
}
