/*
 * mpi_train.c - data-parallel training against one process (issue 10).
 * Run by tests/mpi/run.sh as `mpirun -np 2 mpi_train` (and mpi_train_f64,
 * the double build): every rank trains with bp_trainer_set_comm; rank 0
 * then trains the same network alone with the same global batch, and the
 * two must agree to summation order:
 *   double: every tensor within 1e-12 of its norm; float: 1e-5 of its norm.
 * The ranks' weights must be identical bit for bit (the same update
 * everywhere). Cases: an MLP (cross-entropy, Adam, clipping, shuffling,
 * a ragged last batch, validation), an MLP regression (MSE, Nesterov, l2,
 * cosine schedule, validation split unevenly), a CNN with batchnorm and
 * sync_batchnorm (momentum SGD; blocked layouts in the float build), and
 * failures: data that differ, a bad value on one rank, settings that
 * differ, a batch smaller than the ranks, bp_comm_agree.
 */
#include "backprop_mpi.h"
#include "check.h"
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef BP_DOUBLE
#define TOL 1e-12
#define NAME "mpi_train_f64"
#else
#define TOL 1e-5
#define NAME "mpi_train"
#endif

static bp_comm g_comm;

/* The bytes this rank handed to iallreduce (every rank must receive at
 * least as many from the others): tests/mpi/netns.sh compares them with
 * the traffic it counts on the link between two network namespaces. */
static size_t g_reduced;
static int (*g_mpi_iallreduce)(void *, int, void *, size_t, bp_comm_type);
static int counting_iallreduce(void *ctx, int slot, void *buf, size_t count, bp_comm_type type)
{
    g_reduced += count * (type == BP_COMM_F64 ? sizeof(double) : sizeof(float));
    return g_mpi_iallreduce(ctx, slot, buf, count, type);
}

/* Seeded synthetic data: n rows of f features, labels from a fixed rule
 * (classes > 0) or a smooth target (classes == 0, width tw). */
static void make_data(bp_data *d, int n, int f, int classes, int tw, uint64_t seed)
{
    bp_rng r;
    bp_rng_seed(&r, seed);
    memset(d, 0, sizeof *d);
    d->n = n;
    d->n_inputs = f;
    d->n_targets = classes ? 1 : tw;
    d->x = malloc((size_t)n * f * sizeof(bp_real));
    d->y = malloc((size_t)n * d->n_targets * sizeof(bp_real));
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < f; j++) {
            double v = 2.0 * bp_rng_uniform(&r) - 1.0;
            d->x[(size_t)i * f + j] = (bp_real)v;
            s += v * (j % 3 == 0 ? 1.0 : -0.5);
        }
        if (classes) d->y[i] = (bp_real)((int)floor(fabs(s) * 2.0) % classes);
        else
            for (int k = 0; k < tw; k++) d->y[(size_t)i * tw + k] = (bp_real)sin(s + k);
    }
}

static void free_data(bp_data *d)
{
    free(d->x);
    free(d->y);
}

/* The largest |a - b| of layer i's parameters relative to the norm of b
 * (the one-process tensor). */
static double layer_rel_diff(const bp_net *a, const bp_net *b, int i)
{
    const bp_layer *La = &a->layers[i], *Lb = &b->layers[i];
    double worst = 0, norm = 0;
    for (size_t k = 0; k < Lb->n_params; k++) norm += (double)b->params[Lb->offset + k] * b->params[Lb->offset + k];
    norm = sqrt(norm);
    for (size_t k = 0; k < La->n_params; k++) {
        double d = fabs((double)a->params[La->offset + k] - (double)b->params[Lb->offset + k]);
        if (d > worst) worst = d;
    }
    return norm > 0 ? worst / norm : worst;
}

static double buffers_rel_diff(const bp_net *a, const bp_net *b)
{
    double worst = 0, norm = 0;
    for (size_t k = 0; k < b->n_buffers; k++) norm += (double)b->buffers[k] * b->buffers[k];
    norm = sqrt(norm);
    for (size_t k = 0; k < a->n_buffers; k++) {
        double d = fabs((double)a->buffers[k] - (double)b->buffers[k]);
        if (d > worst) worst = d;
    }
    return norm > 0 ? worst / norm : worst;
}

typedef struct record {
    double train_loss[16], val_loss[16], val_acc[16];
    int epochs;
} record;

static int on_epoch(const bp_epoch_info *ei, void *user)
{
    record *rec = user;
    if (ei->epoch <= 16) {
        rec->train_loss[ei->epoch - 1] = ei->train_loss;
        rec->val_loss[ei->epoch - 1] = ei->val_loss;
        rec->val_acc[ei->epoch - 1] = ei->val_accuracy;
    }
    rec->epochs = ei->epoch;
    return 0;
}

static bp_net *train(bp_shape in, const char *spec, const bp_train_config *cfg0, const bp_data *tr,
                     const bp_data *val, const bp_comm *comm, record *rec, bp_status *st,
                     bp_error *e)
{
    bp_net *net = NULL;
    bp_trainer *t = NULL;
    bp_train_config cfg = *cfg0;
    cfg.on_epoch = on_epoch;
    cfg.user = rec;
    memset(rec, 0, sizeof *rec);
    *st = bp_net_create_shaped(&net, in, spec, 11, e);
    int per_rank = cfg.batch_size / (comm ? comm->size : 1) + 1;
    if (!*st) *st = bp_trainer_create(&t, net, &cfg, per_rank, e);
    if (!*st && comm) *st = bp_trainer_set_comm(t, comm, e);
    if (!*st) *st = bp_fit(t, tr, val, NULL, e);
    bp_trainer_free(t);
    if (*st) {
        bp_net_free(net);
        return NULL;
    }
    return net;
}

/* Train with every rank, then alone on rank 0, and compare. */
static void equal_to_one_process(const char *what, bp_shape in, const char *spec,
                                 const bp_train_config *cfg, const bp_data *tr, const bp_data *val)
{
    record rd, r1;
    bp_status st;
    bp_error e = {0};
    bp_net *dist = train(in, spec, cfg, tr, val, &g_comm, &rd, &st, &e);
    CHECK(dist != NULL, "%s: data-parallel training failed: %s", what, e.message);
    if (!dist) return;
    /* The ranks hold the same weights, bit for bit: rank 1's go to rank 0. */
    size_t np = dist->n_params;
    bp_real *other = malloc(np * sizeof(bp_real));
    memcpy(other, dist->params, np * sizeof(bp_real));
    int bc = g_comm.bcast(g_comm.ctx, other, np * sizeof(bp_real), 1);
    CHECK(bc == 0, "%s: bcast failed", what);
    if (g_comm.rank == 0) {
        CHECK(memcmp(other, dist->params, np * sizeof(bp_real)) == 0,
              "%s: rank 1's weights differ from rank 0's", what);
        bp_net *one = train(in, spec, cfg, tr, val, NULL, &r1, &st, &e);
        CHECK(one != NULL, "%s: one-process training failed: %s", what, e.message);
        if (one) {
            double worst = 0;
            for (int i = 0; i < one->n_layers; i++) {
                if (!one->layers[i].n_params) continue;
                double d = layer_rel_diff(dist, one, i);
                CHECK(d <= TOL, "%s: layer %d (%s) differs by %.3g of its norm (tol %g)", what, i,
                      bp_layer_name(one->layers[i].kind), d, TOL);
                if (d > worst) worst = d;
            }
            double db = buffers_rel_diff(dist, one);
            CHECK(db <= TOL, "%s: buffers differ by %.3g of their norm", what, db);
            CHECK(rd.epochs == r1.epochs && rd.epochs == cfg->epochs, "%s: epochs %d vs %d", what,
                  rd.epochs, r1.epochs);
            for (int k = 0; k < r1.epochs && k < 16; k++) {
                CHECK_CLOSE(rd.train_loss[k], r1.train_loss[k], 1e3 * TOL, "train loss");
                if (val) CHECK_CLOSE(rd.val_loss[k], r1.val_loss[k], 1e3 * TOL, "val loss");
            }
            printf("%s: 2 ranks vs 1 process: worst parameter difference %.3g of a tensor's norm, "
                   "buffers %.3g; epoch losses %.6f vs %.6f\n", what, worst, db,
                   rd.train_loss[r1.epochs - 1], r1.train_loss[r1.epochs - 1]);
            bp_net_free(one);
        }
    }
    free(other);
    bp_net_free(dist);
}

static void expect_comm_error(const char *what, bp_status st, const bp_error *e, const char *want1,
                              const char *want2)
{
    CHECK(st == BP_ECOMM && strstr(e->message, want1) && (!want2 || strstr(e->message, want2)),
          "%s: status %s, message '%s' (want BP_ECOMM with '%s'%s%s)", what, bp_status_name(st),
          e->message, want1, want2 ? " and " : "", want2 ? want2 : "");
}

int main(int argc, char **argv)
{
    bp_error e = {0};
    if (bp_mpi_init(&g_comm, &argc, &argv, &e)) {
        fprintf(stderr, "%s: %s\n", NAME, e.message);
        return 1;
    }
    g_mpi_iallreduce = g_comm.iallreduce;
    g_comm.iallreduce = counting_iallreduce;
    CHECK(g_comm.size == 2, "run with mpirun -np 2 (size %d)", g_comm.size);
    if (g_comm.size != 2) {
        bp_mpi_finalize(&g_comm);
        return check_done(NAME);
    }
    bp_set_threads(1);

    /* 1. MLP, cross-entropy, Adam, clipping, weight decay; 203 rows in
     * batches of 32 (the last has 11: 5 and 6 per rank), validation 57. */
    bp_data tr, val;
    make_data(&tr, 203, 10, 3, 0, 1);
    make_data(&val, 57, 10, 3, 0, 2);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.lr = 0.01;
    cfg.batch_size = 32;
    cfg.epochs = 4;
    cfg.seed = 5;
    cfg.clip_norm = 0.5;
    cfg.weight_decay = 1e-3;
    equal_to_one_process("mlp", bp_shape_flat(10), "dense(16) tanh dense(12) relu dense(3)", &cfg,
                         &tr, &val);

    /* 1b. A layer of 4.4 MB of gradients (8.8 in double): buckets of whole
     * layers well above the 1 MiB target. */
    bp_data wt;
    make_data(&wt, 48, 1000, 3, 0, 7);
    bp_train_config_default(&cfg, BP_MOMENTUM);
    cfg.lr = 0.01;
    cfg.batch_size = 16;
    cfg.epochs = 2;
    cfg.seed = 2;
    equal_to_one_process("mlp-wide", bp_shape_flat(1000), "dense(1100) relu dense(3)", &cfg, &wt,
                         NULL);
    free_data(&wt);

    /* 2. Regression: MSE, Nesterov, l2, cosine; batch 25 (last 3). */
    bp_data rt, rv;
    make_data(&rt, 203, 6, 0, 2, 3);
    make_data(&rv, 31, 6, 0, 2, 4);
    bp_train_config_default(&cfg, BP_NESTEROV);
    cfg.loss = BP_LOSS_MSE;
    cfg.lr = 0.05;
    cfg.l2 = 1e-3;
    cfg.schedule = BP_SCHED_COSINE;
    cfg.batch_size = 25;
    cfg.epochs = 3;
    cfg.seed = 9;
    equal_to_one_process("mlp-mse", bp_shape_flat(6), "dense(8) sigmoid dense(2)", &cfg, &rt, &rv);

    /* 3. CNN with batchnorm, sync_batchnorm; 3x8x8 images, batch 20 (90
     * rows: the last has 10), momentum SGD. */
    bp_data ct, cv;
    make_data(&ct, 90, 3 * 8 * 8, 4, 0, 5);
    make_data(&cv, 23, 3 * 8 * 8, 4, 0, 6);
    bp_shape img = {3, {3, 8, 8}};
    const char *cnn = "conv(16,3,1,1) batchnorm relu maxpool(2) conv(16,3,1,1) batchnorm relu "
                      "flatten dense(4)";
    bp_train_config_default(&cfg, BP_MOMENTUM);
    cfg.lr = 0.05;
    cfg.batch_size = 20;
    cfg.epochs = 3;
    cfg.seed = 3;
    cfg.sync_batchnorm = 1;
    equal_to_one_process("cnn-syncbn", img, cnn, &cfg, &ct, &cv);

    /* Without sync_batchnorm the ranks still agree with each other. */
    cfg.sync_batchnorm = 0;
    record rec;
    bp_status st;
    bp_net *net = train(img, cnn, &cfg, &ct, &cv, &g_comm, &rec, &st, &e);
    CHECK(net != NULL, "cnn per-rank batchnorm: %s", e.message);
    if (net) {
        size_t bytes = (net->n_params + net->n_buffers) * sizeof(bp_real);
        bp_real *mine = malloc(bytes);
        memcpy(mine, net->params, net->n_params * sizeof(bp_real));
        memcpy(mine + net->n_params, net->buffers, net->n_buffers * sizeof(bp_real));
        bp_real *theirs = malloc(bytes);
        memcpy(theirs, mine, bytes);
        g_comm.bcast(g_comm.ctx, theirs, bytes, 1);
        CHECK(memcmp(mine, theirs, bytes) == 0, "per-rank batchnorm: the ranks' weights or "
              "running statistics differ");
        free(mine);
        free(theirs);
        bp_net_free(net);
    }

    /* 3b. A stateful character model (truncated BPTT): 8 streams of 12
     * windows of 6 token ids, in order; each rank carries its 4 streams,
     * validation split by stream too. */
    {
        const int T = 6, V = 9, B = 8, W = 12, WV = 3;
        bp_data tx = {0}, tv = {0};
        tx.n = B * W, tv.n = B * WV;
        tx.n_inputs = tv.n_inputs = tx.n_targets = tv.n_targets = T;
        tx.x = malloc((size_t)tx.n * T * sizeof(bp_real));
        tx.y = malloc((size_t)tx.n * T * sizeof(bp_real));
        tv.x = malloc((size_t)tv.n * T * sizeof(bp_real));
        tv.y = malloc((size_t)tv.n * T * sizeof(bp_real));
        for (int r = 0; r < tx.n + tv.n; r++) /* row = window * B + stream */
            for (int t = 0; t < T; t++) {
                int stream = r % B, pos = (r / B) * T + t, tok = (stream * 5 + pos * pos) % V;
                bp_real *x = r < tx.n ? tx.x + (size_t)r * T : tv.x + (size_t)(r - tx.n) * T;
                bp_real *y = r < tx.n ? tx.y + (size_t)r * T : tv.y + (size_t)(r - tx.n) * T;
                x[t] = (bp_real)tok;
                y[t] = (bp_real)((tok * 2 + 1) % V);
            }
        bp_train_config_default(&cfg, BP_ADAM);
        cfg.lr = 0.01;
        cfg.batch_size = B;
        cfg.shuffle = 0;
        cfg.epochs = 3;
        cfg.clip_norm = 1;
        bp_real *first = NULL;
        record lr[2];
        memset(lr, 0, sizeof lr);
        cfg.on_epoch = on_epoch;
        /* pass 0: every rank with its 4 streams; pass 1: rank 0 alone with 8 */
        for (int pass = 0; pass < 2 && (pass == 0 || g_comm.rank == 0); pass++) {
            bp_net *lm = NULL;
            bp_trainer *t = NULL;
            int streams = pass ? B : B / g_comm.size;
            bp_status s2 = bp_net_create_shaped(&lm, bp_shape_flat(T), "embedding(5,9) lstm(12) dense(9)",
                                                11, &e);
            if (!s2) s2 = bp_net_set_stateful(lm, streams, &e);
            cfg.user = &lr[pass];
            if (!s2) s2 = bp_trainer_create(&t, lm, &cfg, streams, &e);
            if (!s2 && !pass) s2 = bp_trainer_set_comm(t, &g_comm, &e);
            if (!s2) s2 = bp_fit(t, &tx, &tv, NULL, &e);
            CHECK(s2 == BP_OK, "stateful lstm, pass %d: %s", pass, e.message);
            if (!s2 && pass == 0 && g_comm.rank == 0) {
                first = malloc(lm->n_params * sizeof(bp_real));
                memcpy(first, lm->params, lm->n_params * sizeof(bp_real));
            }
            if (!s2 && pass == 1 && first) {
                double worst = 0, norm = 0;
                for (size_t k = 0; k < lm->n_params; k++) {
                    double d = fabs((double)first[k] - (double)lm->params[k]);
                    norm += (double)lm->params[k] * lm->params[k];
                    if (d > worst) worst = d;
                }
                worst /= sqrt(norm);
                CHECK(worst <= TOL, "stateful lstm: 2 ranks vs 1 process differ by %.3g of the "
                      "parameters' norm (tol %g)", worst, TOL);
                for (int k = 0; k < 3; k++) { /* validation split by stream, summed */
                    CHECK_CLOSE(lr[0].val_loss[k], lr[1].val_loss[k], 1e3 * TOL, "stateful val loss");
                    CHECK_CLOSE(lr[0].train_loss[k], lr[1].train_loss[k], 1e3 * TOL, "stateful loss");
                }
                printf("stateful lstm: 2 ranks (4 streams each) vs 1 process (8 streams): worst "
                       "parameter difference %.3g of the parameters' norm; val loss %.6f vs %.6f\n",
                       worst, lr[0].val_loss[2], lr[1].val_loss[2]);
            }
            bp_trainer_free(t);
            bp_net_free(lm);
        }
        free(first);
        free_data(&tx);
        free_data(&tv);
    }

    /* 4. Failures, each on every rank with a message naming the rank. */
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.batch_size = 32;
    cfg.epochs = 1;
    /* rank 1 has one row less */
    bp_data short1 = tr;
    if (g_comm.rank == 1) short1.n = tr.n - 1;
    net = train(bp_shape_flat(10), "dense(4) dense(3)", &cfg, &short1, NULL, &g_comm, &rec, &st, &e);
    expect_comm_error("row counts", st, &e, "rank 1's training row count is 202, rank 0's 203", NULL);
    bp_net_free(net);
    /* the same shape, one value changed on rank 1 */
    bp_data changed = tr;
    bp_real *x2 = malloc((size_t)tr.n * tr.n_inputs * sizeof(bp_real));
    memcpy(x2, tr.x, (size_t)tr.n * tr.n_inputs * sizeof(bp_real));
    if (g_comm.rank == 1) x2[100] += 1;
    changed.x = x2;
    net = train(bp_shape_flat(10), "dense(4) dense(3)", &cfg, &changed, NULL, &g_comm, &rec, &st, &e);
    expect_comm_error("values", st, &e, "rank 1's training inputs' hash", NULL);
    bp_net_free(net);
    /* a NaN on rank 0: its own check fails, and every rank says so */
    if (g_comm.rank == 0) x2[100] = NAN;
    else x2[100] = tr.x[100];
    net = train(bp_shape_flat(10), "dense(4) dense(3)", &cfg, &changed, NULL, &g_comm, &rec, &st, &e);
    expect_comm_error("nan", st, &e, "rank 0: training data: row 11, feature 1 is nan", NULL);
    bp_net_free(net);
    free(x2);
    /* a different learning rate on rank 1 */
    bp_train_config c2 = cfg;
    if (g_comm.rank == 1) c2.lr = 0.5;
    net = train(bp_shape_flat(10), "dense(4) dense(3)", &c2, &tr, NULL, &g_comm, &rec, &st, &e);
    expect_comm_error("settings", st, &e, "rank 1's learning rate is 0.5", NULL);
    bp_net_free(net);
    /* a different architecture (another class count) on rank 1 */
    net = train(bp_shape_flat(10), g_comm.rank ? "dense(4) dense(4)" : "dense(4) dense(3)", &cfg,
                &tr, NULL, &g_comm, &rec, &st, &e);
    expect_comm_error("classes", st, &e, "rank 1's output count (classes) is 4, rank 0's 3", NULL);
    bp_net_free(net);
    /* batch 1 cannot give both ranks a row */
    c2 = cfg;
    c2.batch_size = 1;
    net = train(bp_shape_flat(10), "dense(4) dense(3)", &c2, &tr, NULL, &g_comm, &rec, &st, &e);
    CHECK(st == BP_ECOMM && strstr(e.message, "rank 0: 2 ranks need at least 2 rows in every batch"),
          "batch 1: %s, '%s'", bp_status_name(st), e.message);
    bp_net_free(net);
    /* a loss that overflows on rank 1's share only (the last rows of a
     * full batch in file order): every rank stops with the same message */
    bp_data big = tr;
    bp_real *x3 = malloc((size_t)tr.n * tr.n_inputs * sizeof(bp_real));
    memcpy(x3, tr.x, (size_t)tr.n * tr.n_inputs * sizeof(bp_real));
    for (int j = 0; j < tr.n_inputs; j++) x3[(size_t)(tr.n - 1) * tr.n_inputs + j] = (bp_real)(sizeof(bp_real) == 8 ? 1e308 : 3e38);
    big.x = x3;
    c2 = cfg;
    c2.batch_size = 0;
    c2.shuffle = 0;
    net = train(bp_shape_flat(10), "dense(64) dense(3)", &c2, &big, NULL, &g_comm, &rec, &st, &e);
    /* float: the logits overflow, the loss is not finite on rank 1; double:
     * the loss stays finite, the summed gradient does not (on both ranks) */
    const char *want = sizeof(bp_real) == 4 ? "step 1: non-finite loss on rank 1"
                                            : "step 1: non-finite gradient in layer 1 (dense)";
    CHECK(st == BP_ENONFINITE && strstr(e.message, want), "overflow on rank 1: %s, '%s' (want '%s')",
          bp_status_name(st), e.message, want);
    bp_net_free(net);
    free(x3);
    /* bp_comm_agree: rank 1 failed */
    bp_error mine = {0};
    bp_status local = BP_OK;
    if (g_comm.rank == 1) {
        local = BP_EIO;
        snprintf(mine.message, sizeof mine.message, "cannot open 'x.csv'");
    }
    st = bp_comm_agree(&g_comm, local, &mine, &e);
    expect_comm_error("agree", st, &e, "rank 1: cannot open 'x.csv'", NULL);
    st = bp_comm_agree(&g_comm, BP_OK, NULL, &e);
    CHECK(st == BP_OK, "agree all ok: %s", bp_status_name(st));

    free_data(&tr);
    free_data(&val);
    free_data(&rt);
    free_data(&rv);
    free_data(&ct);
    free_data(&cv);
    printf("%s: rank %d: allreduced %zu bytes\n", NAME, g_comm.rank, g_reduced);
    int rc = check_done(NAME);
    bp_mpi_finalize(&g_comm);
    return rc;
}
