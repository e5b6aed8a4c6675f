/*
 * test_noalloc.c - a training step allocates nothing.
 *
 * This binary interposes malloc and its kin (tests/count_allocs.h) and
 * counts the calls made while bp_train_step runs, after a warm-up step
 * that lets the GEMM library and OpenMP set up their thread pools. Calls
 * from the executable are libbackprop's (linked statically) and must be
 * zero; calls made inside the GEMM library (oneDNN's sgemm mallocs a
 * packing buffer per call) are counted and printed, not hidden. Dense,
 * convolutional and recurrent networks (character models, stateful or not),
 * and data-parallel steps inside bp_fit (a stand-in communicator). Disabled
 * under AddressSanitizer, which owns malloc itself.
 */
#define _GNU_SOURCE
#include <dlfcn.h>

#include "backprop.h"
#include "check.h"
#include "count_allocs.h"
#include "fake_comm.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* 20 steps of bp_train_step with the allocation counter on (zeroed first). */
static void counted_steps(bp_trainer *tr, const bp_real *x, const bp_real *y, int batch)
{
    bp_error err = {0};
    double loss_v;
    allocations = foreign = 0;
    counting = 1;
    int ok = 1;
    for (int k = 0; k < 20; k++) ok &= bp_train_step(tr, x, y, batch, &loss_v, &err) == BP_OK;
    counting = 0;
    CHECK(ok, "steps succeed: %s", err.message);
}

/* `threads` threads and a network of `spec` on inputs of shape `shape`
 * (NULL, with a failed check, if it cannot be built). */
static bp_net *make_net(bp_shape shape, const char *spec, int threads)
{
    bp_set_threads(threads);
    bp_error err;
    bp_net *net = NULL;
    if (bp_net_create_shaped(&net, shape, spec, 1, &err) != BP_OK) {
        CHECK(0, "create '%s': %s", spec, err.message);
        return NULL;
    }
    return net;
}

/* The precision run_shaped trains in (main sets bf16 for its last cases). */
static bp_precision g_precision = BP_PRECISION_F32;

/* 20 steps of `spec` on 64 inputs of per-sample shape `shape`. */
static void run_shaped(bp_shape shape, const char *spec, bp_optimizer opt, bp_loss loss, int batch,
                       int threads)
{
    bp_error err;
    bp_net *net = make_net(shape, spec, threads);
    if (!net) return;
    bp_train_config cfg;
    bp_train_config_default(&cfg, opt);
    cfg.loss = loss;
    cfg.clip_norm = 1;
    cfg.l2 = 1e-4;
    cfg.schedule = BP_SCHED_COSINE;
    cfg.total_steps = 100;
    cfg.precision = g_precision;
    bp_trainer *tr = NULL;
    CHECK(bp_trainer_create(&tr, net, &cfg, batch, &err) == BP_OK, "%s", err.message);
    int outs = bp_net_outputs(net), tw = loss == BP_LOSS_CROSS_ENTROPY ? 1 : outs;
    bp_real *x = calloc((size_t)batch * 64, sizeof *x), *y = calloc((size_t)batch * tw, sizeof *y);
    for (int i = 0; i < batch * 64; i++) x[i] = (bp_real)((i * 37) % 11) / 11;
    for (int i = 0; i < batch * tw; i++) y[i] = (bp_real)(i % 2);
    double loss_v;
    bp_train_step(tr, x, y, batch, &loss_v, &err); /* warm-up */
    /* A CNN with 16 or 32 channels runs its convolutions' blocked layout
     * where the engine prefers one: what is counted is that path. */
    int blocked = 0, bf16_acts = 0;
    for (int i = 0; i < net->n_layers; i++)
        for (int q = 0; q < BP_MM_SLOTS; q++) {
            blocked |= net->mm_batch[q] == batch && net->layers[i].blk_out[q] > 1;
            bf16_acts |= net->mm_batch[q] == batch && net->layers[i].bf_out[q];
        }
    if (shape.rank == 3 && net->cblk > 1)
        CHECK(blocked, "%s: runs on the blocked layout (engine block %d)", spec, net->cblk);
    /* In bf16, the blocked activations are bfloat16 (from conv to flatten). */
    if (blocked && g_precision == BP_PRECISION_BF16)
        CHECK(bf16_acts, "%s: bf16 keeps its blocked activations in bfloat16", spec);
    counted_steps(tr, x, y, batch);
    CHECK(allocations == 0, "%s, %s, batch %d, %d thread(s): %ld allocations in 20 steps", spec,
          bp_optimizer_name(opt), batch, threads, allocations);
    printf("  %-52.52s %-8s batch %3d, %d thread(s)%s%s: libbackprop %ld, GEMM/OpenMP libraries "
           "%ld allocations in 20 steps\n", spec, bp_optimizer_name(opt), batch, threads,
           blocked ? ", blocked" : "",
           g_precision == BP_PRECISION_BF16 ? (bf16_acts ? ", bf16 (activations too)" : ", bf16")
                                            : "",
           allocations, foreign);
    free(x);
    free(y);
    bp_trainer_free(tr);
    bp_net_free(net);
}

static void run(const char *spec, bp_optimizer opt, bp_loss loss, int batch, int threads)
{
    run_shaped(bp_shape_flat(64), spec, opt, loss, batch, threads);
}

/* 20 steps of a character model on windows of 24 token ids (vocab 40):
 * cross-entropy at every step; stateful: the state carried between the
 * steps (truncated BPTT, bp_net_set_stateful with streams = batch). */
static void run_seq(const char *spec, int stateful, int batch, int threads)
{
    bp_error err;
    const int T = 24, V = 40;
    bp_net *net = make_net(bp_shape_flat(T), spec, threads);
    if (!net) return;
    if (stateful) CHECK(bp_net_set_stateful(net, batch, &err) == BP_OK, "%s", err.message);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.loss = BP_LOSS_CROSS_ENTROPY;
    cfg.clip_norm = 1;
    bp_trainer *tr = NULL;
    CHECK(bp_trainer_create(&tr, net, &cfg, batch, &err) == BP_OK, "%s", err.message);
    int tw = bp_net_loss_steps(net, BP_LOSS_CROSS_ENTROPY);
    CHECK(tw == T, "a target per step (%d)", tw);
    bp_real *x = calloc((size_t)batch * T, sizeof *x), *y = calloc((size_t)batch * tw, sizeof *y);
    for (int i = 0; i < batch * T; i++) x[i] = (bp_real)((i * 7) % V);
    for (int i = 0; i < batch * tw; i++) y[i] = (bp_real)((i * 7 + 7) % V);
    double loss_v;
    bp_train_step(tr, x, y, batch, &loss_v, &err); /* warm-up */
    counted_steps(tr, x, y, batch);
    CHECK(allocations == 0, "%s%s, batch %d, %d thread(s): %ld allocations in 20 steps", spec,
          stateful ? " stateful" : "", batch, threads, allocations);
    printf("  %-52.52s %-8s batch %3d, %d thread(s): libbackprop %ld, GEMM/OpenMP libraries %ld "
           "allocations in 20 steps\n", spec, stateful ? "stateful" : "", batch, threads,
           allocations, foreign);
    free(x);
    free(y);
    bp_trainer_free(tr);
    bp_net_free(net);
}

/* Data-parallel steps (bp_trainer_set_comm) inside bp_fit, with the
 * stand-in communicator of fake_comm.h. Counted from the end of the first
 * step to the end of the epoch's last: the batch gathers, the bucketed
 * reductions, and synchronized batchnorm when sync. */
static long dist_steps;
static int count_steps(const bp_step_info *si, void *user)
{
    (void)user;
    if (si->batch == 1) counting = 1;                /* after the first step */
    if (si->batch == si->batches) counting = 0;      /* the epoch's last */
    dist_steps += counting;
    return 0;
}

/* `rows` rows in batches of `batch` as rank `rank` of `size` (1 epoch). */
static void run_dist(bp_shape shape, const char *spec, int sync, int threads, int rank, int size,
                     int batch, int rows)
{
    bp_error err;
    bp_net *net = make_net(shape, spec, threads);
    if (!net) return;
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.batch_size = batch;
    cfg.epochs = 1;
    cfg.clip_norm = 1;
    cfg.sync_batchnorm = sync;
    cfg.on_step = count_steps;
    int rs[2] = {rank, size};
    bp_comm comm = {rank, size, rs, fake_sum, fake_test, fake_wait, fake_bcast};
    bp_trainer *tr = NULL;
    CHECK(bp_trainer_create(&tr, net, &cfg, 1, &err) == BP_OK, "%s", err.message);
    CHECK(bp_trainer_set_comm(tr, &comm, &err) == BP_OK, "set_comm: %s", err.message);
    int n = rows, in = (int)bp_shape_size(shape), batches = (rows + batch - 1) / batch;
    bp_data d = {0};
    d.n = n;
    d.n_inputs = in;
    d.n_targets = 1;
    d.x = calloc((size_t)n * in, sizeof(bp_real));
    d.y = calloc((size_t)n, sizeof(bp_real));
    for (size_t i = 0; i < (size_t)n * in; i++) d.x[i] = (bp_real)((i * 37) % 11) / 11;
    for (int i = 0; i < n; i++) d.y[i] = (bp_real)(i % 4);
    allocations = foreign = 0;
    dist_steps = 0;
    bp_status s = bp_fit(tr, &d, NULL, NULL, &err);
    counting = 0;
    CHECK(s == BP_OK, "data-parallel fit: %s", err.message);
    CHECK(dist_steps == batches - 1, "counted %ld data-parallel steps (want steps 2-%d: %d)",
          dist_steps, batches, batches - 1);
    CHECK(allocations == 0, "%s data-parallel%s, %d thread(s): %ld allocations in %ld steps", spec,
          sync ? " sync batchnorm" : "", threads, allocations, dist_steps);
    printf("  %-52.52s %-8s rank %d of %d%s, %d thread(s): libbackprop %ld, GEMM/OpenMP "
           "libraries %ld allocations in %ld steps\n", spec, "adam", rank, size,
           sync ? ", sync bn" : "", threads, allocations, foreign, dist_steps);
    free(d.x);
    free(d.y);
    bp_trainer_free(tr);
    bp_net_free(net);
}

int main(void)
{
    count_allocs_start((void *)main);
    run("dense(128) relu dropout(0.2) dense(64) tanh dense(10)", BP_ADAM, BP_LOSS_CROSS_ENTROPY, 128, 1);
    run("dense(128) relu dropout(0.2) dense(64) tanh dense(10)", BP_ADAM, BP_LOSS_CROSS_ENTROPY, 128, 2);
    run("dense(32) sigmoid dense(3) sigmoid", BP_NESTEROV, BP_LOSS_BCE, 1, 2);
    run("dense(256) leaky_relu(0.1) dense(1)", BP_RMSPROP, BP_LOSS_MSE, 32, 2);
    /* Convolutional networks: conv, batchnorm, pooling primitives and the
     * layers between them on the blocked layout, a frozen-free Adam step. */
    bp_shape img = {3, {1, 8, 8}};
    const char *cnn = "conv(16,3,1,1) batchnorm relu maxpool(2) conv(32,3,1,1) relu batchnorm "
                      "avgpool(2) dropout(0.2) flatten dense(10)";
    run_shaped(img, cnn, BP_ADAM, BP_LOSS_CROSS_ENTROPY, 32, 1);
    run_shaped(img, cnn, BP_ADAM, BP_LOSS_CROSS_ENTROPY, 32, 2);
    run_shaped(img, "conv(16,3) leaky_relu(0.1) global_avgpool dense(4) tanh", BP_MOMENTUM,
               BP_LOSS_MSE, 16, 2);
    /* Recurrent: the input projection, the per-step products and cells,
     * the weight gradients; carried state or not. lstm(256) at batch 64
     * splits each step's cells across two threads. */
    for (int threads = 1; threads <= 2; threads++)
        for (int stateful = 0; stateful <= 1; stateful++)
            run_seq("embedding(16,40) lstm(32) dense(40)", stateful, 32, threads);
    run_seq("embedding(16,40) lstm(256) dense(40)", 1, 64, 2);
    run_seq("embedding(16,40) gru(128) rnn(64) dense(40)", 0, 64, 2);
    /* Data-parallel (a stand-in partner): gathers, buckets, sync batchnorm. */
    run_dist(bp_shape_flat(64), "dense(128) relu dense(64) relu dense(4)", 0, 2, 0, 2, 32, 384);
    run_dist(img, "conv(16,3,1,1) batchnorm relu maxpool(2) flatten dense(4)", 1, 1, 0, 2, 32, 384);
    run_dist(img, "conv(16,3,1,1) batchnorm relu maxpool(2) flatten dense(4)", 0, 2, 0, 2, 32, 384);
    /* Rank 2 of 5, batch 8 of 15 rows: its share of the last batch (2 of 7)
     * is larger than of a full one (1 of 8); the batch buffers hold it. */
    run_dist(bp_shape_flat(64), "dense(16) relu dense(4)", 0, 1, 2, 5, 8, 15);
    /* bfloat16 products (where the CPU has them): the rounding of weights,
     * activations and gradients into the slots' buffers allocates nothing,
     * nor do the CNNs' bfloat16 activations (conv to flatten / global_avgpool). */
    if (bp_bf16_supported()) {
        g_precision = BP_PRECISION_BF16;
        run("dense(128) relu dropout(0.2) dense(64) tanh dense(10)", BP_ADAM,
            BP_LOSS_CROSS_ENTROPY, 128, 2);
        run_shaped(img, cnn, BP_ADAM, BP_LOSS_CROSS_ENTROPY, 32, 1);
        run_shaped(img, cnn, BP_ADAM, BP_LOSS_CROSS_ENTROPY, 32, 2);
        run_shaped(img, "conv(16,3) leaky_relu(0.1) global_avgpool dense(4) tanh", BP_MOMENTUM,
                   BP_LOSS_MSE, 16, 2);
    } else {
        printf("  no AVX512_BF16 on this CPU: the bf16 cases cannot run\n");
    }
    return check_done("test_noalloc");
}
