/*
 * test_dist_shares.c - bp_fit's data-parallel row shares, in one process
 * with the stand-in communicator of fake_comm.h (every rank r of N, in
 * turn): a rank's share of the last partial batch can exceed its share of
 * a full one (rank 2 of 5, batch 8 of 15 rows: 2 rows of the last 7, 1 of
 * a full 8), and the batch buffers must hold it (AddressSanitizer watches
 * this test in the suite's second build); the shares of every batch cover
 * its rows exactly once. Also a stateful network with the wrong stream
 * count for its share fails on that rank with a message, before training.
 */
#include "backprop.h"
#include "check.h"
#include "fake_comm.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static long seen_rows;
static int count_rows(const bp_step_info *si, void *user)
{
    (void)user;
    seen_rows = si->samples; /* the global count of the epoch so far */
    return 0;
}

/* One epoch of `rows` rows in batches of `batch`, shuffled, as rank r of n. */
static void fit_as(int r, int n, int batch, int rows)
{
    bp_error err;
    bp_net *net = NULL;
    CHECK(bp_net_create(&net, 64, "dense(5) relu dense(2)", 1, &err) == BP_OK, "%s", err.message);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_SGD);
    cfg.batch_size = batch;
    cfg.epochs = 1;
    cfg.on_step = count_rows;
    int rs[2] = {r, n};
    bp_comm comm = {r, n, rs, fake_sum, fake_test, fake_wait, fake_bcast};
    bp_trainer *tr = NULL;
    CHECK(bp_trainer_create(&tr, net, &cfg, 1, &err) == BP_OK, "%s", err.message);
    CHECK(bp_trainer_set_comm(tr, &comm, &err) == BP_OK, "set_comm: %s", err.message);
    bp_data d = {0};
    d.n = rows;
    d.n_inputs = 64; /* rows of 256 bytes: an allocation's rounding hides no row */
    d.n_targets = 1;
    d.x = calloc((size_t)rows * 64, sizeof(bp_real));
    d.y = calloc((size_t)rows, sizeof(bp_real));
    for (int i = 0; i < rows * 64; i++) d.x[i] = (bp_real)((i * 7) % 5) / 5;
    for (int i = 0; i < rows; i++) d.y[i] = (bp_real)(i % 2);
    seen_rows = 0;
    bp_status s = bp_fit(tr, &d, NULL, NULL, &err);
    CHECK(s == BP_OK, "rank %d of %d, batch %d of %d rows: %s", r, n, batch, rows, err.message);
    CHECK(seen_rows == rows, "rank %d of %d: the epoch covered %ld of %d rows", r, n, seen_rows, rows);
    free(d.x);
    free(d.y);
    bp_trainer_free(tr);
    bp_net_free(net);
}

int main(void)
{
    bp_set_threads(1);
    /* Every rank of jobs whose last batch gives some rank more rows than
     * a full batch does. */
    static const int jobs[][3] = {{5, 8, 15}, {6, 9, 17}, {7, 10, 19}, {3, 7, 13}, {2, 5, 9}};
    for (size_t j = 0; j < sizeof jobs / sizeof jobs[0]; j++) {
        int n = jobs[j][0], batch = jobs[j][1], rows = jobs[j][2];
        int exceeds = 0;
        for (int r = 0; r < n; r++) {
            int full = batch * (r + 1) / n - batch * r / n, m = rows % batch;
            exceeds |= m * (r + 1) / n - m * r / n > full;
            fit_as(r, n, batch, rows);
        }
        if (j < 3) CHECK(exceeds, "job %zu has a rank whose last share exceeds its full one", j);
    }
    /* A stateful network whose stream count is not its share: rank 1 of 2,
     * batch 8, 3 streams (its share is 4). */
    bp_error err;
    bp_net *net = NULL;
    CHECK(bp_net_create(&net, 4, "embedding(3,5) gru(4) dense(5)", 1, &err) == BP_OK, "%s", err.message);
    CHECK(bp_net_set_stateful(net, 3, &err) == BP_OK, "%s", err.message);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.batch_size = 8;
    cfg.shuffle = 0;
    int rs[2] = {1, 2};
    bp_comm comm = {1, 2, rs, fake_sum, fake_test, fake_wait, fake_bcast};
    bp_trainer *tr = NULL;
    CHECK(bp_trainer_create(&tr, net, &cfg, 4, &err) == BP_OK, "%s", err.message);
    CHECK(bp_trainer_set_comm(tr, &comm, &err) == BP_OK, "%s", err.message);
    bp_data d = {0};
    d.n = 16;
    d.n_inputs = d.n_targets = 4;
    d.x = calloc(64, sizeof(bp_real));
    d.y = calloc(64, sizeof(bp_real));
    bp_status s = bp_fit(tr, &d, NULL, NULL, &err);
    CHECK(s == BP_ECOMM && strstr(err.message, ": a stateful network (3 streams) trains in order"),
          "wrong stream count: %s, '%s'", bp_status_name(s), err.message);
    free(d.x);
    free(d.y);
    bp_trainer_free(tr);
    bp_net_free(net);
    return check_done("test_dist_shares");
}
