/*
 * bench_mpi.c - data-parallel training (issue 10) timed through bp_fit, and
 * the MPI allreduce it rests on. Run under mpirun; only rank 0 prints (one
 * JSON line per measurement, the shape of bench_backprop's).
 *
 *   mpirun -np N bench_mpi W3|W5 [--threads T] [--reps R] [--steps S]
 *                         [--batch B] [--data DIR] [--seed N] [--sync-bn 0|1]
 *   mpirun -np N bench_mpi sweep [--reps R] [--min-bytes B] [--max-bytes B]
 *
 * W3, W5: bench_backprop's networks, loss, Adam(1e-3) and global batch (W3
 * 256, W5 128). A repetition is one bp_fit call (epochs = 1, shuffled) on S
 * global batches (W3 60, W5 40) of consecutive Fashion-MNIST training rows
 * (repetition r takes slice r mod 60000 / (S B) of S B rows): the same
 * global work, the same data and the same number of optimizer steps for any
 * N. With N = 1 the trainer gets a communicator of size 1 (no
 * communication: the 1-rank baseline); with N > 1 each rank takes its B / N
 * rows of every batch, the gradients are summed by the trainer's bucketed
 * MPI_Iallreduce. Every rank runs T threads (bp_set_threads; default 1).
 * Warm-up: one bp_fit of 3 global batches. The rate of a repetition is
 * S B / (the slowest rank's wall time of the bp_fit call, after a barrier).
 * Also reported (rank 0's figures unless said otherwise):
 *   us_per_step_steady  the steps inside bp_fit (on_step to on_step, so
 *                       bp_fit's data checks and hash are left out);
 *   comm_us_per_step    time inside the communicator's functions
 *                       (iallreduce, test, wait: the reductions' exposed
 *                       cost plus waiting for the slower rank), per step,
 *                       best repetition's; _max over the ranks;
 *   allreduce_grad_s    one MPI_Iallreduce + MPI_Wait of the whole gradient
 *                       (params floats) alone, before training (best and
 *                       median of 10), and the same with MPI_Allreduce.
 * sweep: MPI_Allreduce (MPI_IN_PLACE, float, MPI_SUM) and MPI_Iallreduce +
 * MPI_Wait of 1 KiB .. 32 MiB in powers of 2; a line per size and op with
 * the best and median time of R repetitions (each the mean of enough calls
 * for ~20 ms), GB/s (bytes / time) and the ring model's bus bandwidth
 * (2 (N-1) / N bytes / time), then a line with the model's parameters
 * fitted to the nonblocking op (the trainer's): alpha = t(smallest) /
 * (2 (N - 1)); B the least-squares fit, in relative error, of
 * t - 2 (N-1) alpha = 2 (N-1) / N bytes / B over the sizes >= 256 KiB.
 */
#include "backprop.h"
#include "backprop_mpi.h"
#include "bench_common.h"

#include <mpi.h>

#define CNN_SPEC "conv(32,3,1,1) batchnorm relu maxpool(2) conv(64,3,1,1) batchnorm relu " \
                 "maxpool(2) dense(128) relu dropout(0.3) dense(10)"

static int g_rank;

static void die(const char *what, const bp_error *e)
{
    fprintf(stderr, "bench_mpi (rank %d): %s: %s\n", g_rank, what, e ? e->message : "failed");
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static void usage(void)
{
    if (g_rank == 0)
        fprintf(stderr,
                "usage: mpirun -np N bench_mpi W3|W5 [--threads T] [--reps R] [--steps S] "
                "[--batch B]\n"
                "                 [--data DIR] [--seed N] [--sync-bn 0|1]\n"
                "       mpirun -np N bench_mpi sweep [--reps R] [--min-bytes B] [--max-bytes B]\n");
    MPI_Finalize();
    exit(2);
}

/* Forward FLOPs per sample of the dense and conv layers (2 per multiply-add;
 * bench_backprop's forward_flops without the recurrent case). */
static double forward_flops(const bp_net *net)
{
    double f = 0;
    for (int i = 0; i < bp_net_layers(net); i++) {
        bp_layer_desc d = bp_net_layer(net, i);
        if (d.kind != BP_DENSE && d.kind != BP_CONV) continue;
        double weights = (double)bp_net_layer_param_count(net, i) - d.units;
        bp_shape s = bp_net_layer_shape(net, i);
        double positions = d.kind == BP_CONV ? (double)s.dim[1] * s.dim[2] : 1;
        f += 2 * weights * positions;
    }
    return f;
}

/* ------------------------------------------------------------------------ */
/* A communicator around bp_mpi's that times its calls                       */
/* ------------------------------------------------------------------------ */

typedef struct timed_comm {
    bp_comm inner;
    double seconds; /* inside iallreduce, test and wait */
    long calls;
} timed_comm;

static int t_iallreduce(void *ctx, int slot, void *buf, size_t count, bp_comm_type type)
{
    timed_comm *c = ctx;
    double t0 = bench_now();
    int r = c->inner.iallreduce(c->inner.ctx, slot, buf, count, type);
    c->seconds += bench_now() - t0;
    c->calls++;
    return r;
}

static int t_test(void *ctx, int slot)
{
    timed_comm *c = ctx;
    double t0 = bench_now();
    int r = c->inner.test(c->inner.ctx, slot);
    c->seconds += bench_now() - t0;
    return r;
}

static int t_wait(void *ctx, int slot)
{
    timed_comm *c = ctx;
    double t0 = bench_now();
    int r = c->inner.wait(c->inner.ctx, slot);
    c->seconds += bench_now() - t0;
    return r;
}

static int t_bcast(void *ctx, void *buf, size_t bytes, int root)
{
    timed_comm *c = ctx;
    return c->inner.bcast(c->inner.ctx, buf, bytes, root);
}

/* ------------------------------------------------------------------------ */
/* on_step: when each step of the current bp_fit call ended                  */
/* ------------------------------------------------------------------------ */

typedef struct step_clock {
    double first, last;
    int steps;
} step_clock;

static int on_step(const bp_step_info *info, void *user)
{
    (void)info;
    step_clock *s = user;
    double t = bench_now();
    if (s->steps++ == 0) s->first = t;
    s->last = t;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Allreduce timing                                                          */
/* ------------------------------------------------------------------------ */

/* Seconds per call of an in-place float sum of `count` values (nonblock:
 * MPI_Iallreduce + MPI_Wait), the mean of `iters` calls after a barrier,
 * the slowest rank's. */
static double allreduce_time(float *buf, int count, int iters, int nonblock)
{
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int i = 0; i < iters; i++) {
        if (nonblock) {
            MPI_Request rq;
            MPI_Iallreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &rq);
            MPI_Wait(&rq, MPI_STATUS_IGNORE);
        } else {
            MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        }
    }
    double t = (MPI_Wtime() - t0) / iters, tmax;
    MPI_Allreduce(&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return tmax;
}

/* Best and median (seconds) of `reps` timings of `iters` calls each. */
static void allreduce_stats(float *buf, int count, int reps, int iters, int nonblock,
                            double *best, double *median)
{
    double t[BENCH_MAX_REPS], r[BENCH_MAX_REPS];
    allreduce_time(buf, count, 2, nonblock); /* warm-up */
    for (int i = 0; i < reps; i++) {
        t[i] = allreduce_time(buf, count, iters, nonblock);
        r[i] = 1.0 / t[i];
    }
    double rb, rm;
    bench_stats(r, reps, &rb, &rm);
    *best = 1.0 / rb;
    *median = 1.0 / rm;
}

static int sweep(int size, int reps, size_t min_bytes, size_t max_bytes)
{
    float *buf = malloc(max_bytes);
    if (!buf) die("allocating the sweep buffer", NULL);
    for (size_t i = 0; i < max_bytes / sizeof(float); i++) buf[i] = 0;
    double bus = size > 1 ? 2.0 * (size - 1) / size : 1.0;
    double t_small = 0, t_nb[64];
    size_t b_nb[64];
    int n_nb = 0;
    for (int nb = 0; nb < 2; nb++) {
        for (size_t bytes = min_bytes; bytes <= max_bytes; bytes *= 2) {
            int count = (int)(bytes / sizeof(float));
            /* ~20 ms a repetition: from one trial call's time */
            double one = allreduce_time(buf, count, 1, nb);
            int iters = (int)(0.02 / (one > 1e-7 ? one : 1e-7));
            if (iters < 3) iters = 3;
            if (iters > 20000) iters = 20000;
            MPI_Bcast(&iters, 1, MPI_INT, 0, MPI_COMM_WORLD);
            double best, median;
            allreduce_stats(buf, count, reps, iters, nb, &best, &median);
            if (nb) {
                if (bytes == min_bytes) t_small = best;
                if (n_nb < 64) {
                    t_nb[n_nb] = best;
                    b_nb[n_nb++] = bytes;
                }
            }
            if (g_rank == 0)
                printf("{\"prog\":\"mpi_sweep\",\"op\":\"%s\",\"ranks\":%d,\"bytes\":%zu,"
                       "\"iters\":%d,\"seconds\":%.6g,\"seconds_median\":%.6g,\"gbps\":%.6g,"
                       "\"busbw_gbps\":%.6g}\n",
                       nb ? "iallreduce+wait" : "allreduce", size, bytes, iters, best, median,
                       bytes / best * 1e-9, bus * bytes / best * 1e-9);
        }
    }
    /* Ring model t = 2 (N-1) alpha + 2 (N-1)/N bytes / B, fitted to the
     * nonblocking op: with r = 2 (N-1)/N bytes / (t - 2 (N-1) alpha), the
     * 1 / B minimizing the sum of (1 - r / B)^2 is sum r / sum r^2. */
    double alpha = size > 1 ? t_small / (2.0 * (size - 1)) : 0;
    double sr = 0, srr = 0;
    size_t fit_lo = 0, fit_hi = 0;
    for (int i = 0; i < n_nb; i++) {
        double rest = t_nb[i] - 2.0 * (size - 1) * alpha;
        if (b_nb[i] < ((size_t)256 << 10) || rest <= 0) continue;
        double r = bus * b_nb[i] / rest;
        sr += r;
        srr += r * r;
        if (!fit_lo) fit_lo = b_nb[i];
        fit_hi = b_nb[i];
    }
    double B = sr > 0 ? srr / sr : 0;
    if (g_rank == 0) {
        printf("{\"prog\":\"mpi_sweep\",\"op\":\"model\",\"ranks\":%d,\"alpha_us\":%.6g,"
               "\"bandwidth_gbps\":%.6g,\"fit_small_bytes\":%zu,\"fit_from_bytes\":%zu,"
               "\"fit_to_bytes\":%zu,\"rss_kb\":%ld}\n",
               size, alpha * 1e6, B * 1e-9, min_bytes, fit_lo, fit_hi, bench_peak_rss_kb());
        fflush(stdout);
    }
    free(buf);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Training                                                                  */
/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    bp_comm world;
    bp_error e;
    if (bp_mpi_init(&world, &argc, &argv, &e)) {
        fprintf(stderr, "bench_mpi: %s\n", e.message);
        return 1;
    }
    g_rank = world.rank;
    if (argc < 2) usage();
    int is_sweep = !strcmp(argv[1], "sweep");
    int w3 = !strcmp(argv[1], "W3"), w5 = !strcmp(argv[1], "W5");
    if (!is_sweep && !w3 && !w5) usage();

    int threads = 1, reps = 3, batch = w3 ? 256 : 128, steps = w3 ? 60 : 40, sync_bn = 0;
    size_t min_bytes = 1024, max_bytes = (size_t)32 << 20;
    const char *dir = getenv("BP_BENCH_DATA") ? getenv("BP_BENCH_DATA") : BENCH_DEFAULT_DATA;
    uint64_t seed = 42;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--data")) dir = v;
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--sync-bn")) sync_bn = atoi(v);
        else if (!strcmp(a, "--min-bytes")) min_bytes = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--max-bytes")) max_bytes = strtoull(v, NULL, 10);
        else usage();
    }
    if (reps < 1 || reps > BENCH_MAX_REPS || threads < 1 || batch < world.size || steps < 1 ||
        min_bytes < sizeof(float) || max_bytes < min_bytes || max_bytes > ((size_t)1 << 30))
        usage();
    if (is_sweep) {
        sweep(world.size, reps, min_bytes, max_bytes);
        bp_mpi_finalize(&world);
        return 0;
    }
    int used_threads = bp_set_threads(threads);

    /* Data: every rank reads the whole training set (bp_fit checks that
     * they agree). */
    bp_data all;
    memset(&all, 0, sizeof all);
    char img[4096], lab[4096];
    snprintf(img, sizeof img, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(lab, sizeof lab, "%s/train-labels-idx1-ubyte.gz", dir);
    bp_status s = bp_read_idx(&all, img, lab, &e);
    if (bp_comm_agree(&world, s, s ? &e : NULL, &e)) die("reading the data", &e);
    int rows = steps * batch;
    if (rows > all.n) {
        if (g_rank == 0)
            fprintf(stderr, "bench_mpi: %d steps of %d rows exceed the %d training rows\n", steps,
                    batch, all.n);
        MPI_Finalize();
        return 2;
    }

    bp_net *net;
    const char *spec = w3 ? "dense(2048) relu dense(2048) relu dense(10)" : CNN_SPEC;
    bp_shape in = w3 ? bp_shape_flat(784) : (bp_shape){3, {1, 28, 28}};
    if (bp_net_create_shaped(&net, in, spec, seed, &e)) die("bp_net_create", &e);
    size_t params = bp_net_param_count(net);
    double flop_per_sample = 3.0 * forward_flops(net);

    step_clock clock_ = {0, 0, 0};
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.loss = BP_LOSS_CROSS_ENTROPY;
    cfg.lr = 1e-3;
    cfg.batch_size = batch;
    cfg.epochs = 1;
    cfg.shuffle = 1;
    cfg.seed = seed;
    cfg.sync_batchnorm = sync_bn;
    cfg.on_step = on_step;
    cfg.user = &clock_;
    bp_trainer *tr;
    int local_batch = (batch + world.size - 1) / world.size;
    if (bp_trainer_create(&tr, net, &cfg, local_batch, &e)) die("bp_trainer_create", &e);
    timed_comm tc = {world, 0, 0};
    bp_comm comm = world;
    comm.ctx = &tc;
    comm.iallreduce = t_iallreduce;
    comm.test = world.test ? t_test : NULL;
    comm.wait = t_wait;
    comm.bcast = t_bcast;
    if (bp_trainer_set_comm(tr, &comm, &e)) die("bp_trainer_set_comm", &e);

    /* The whole gradient reduced alone, as the model's check. */
    double ar_best = 0, ar_median = 0, arb_best = 0, arb_median = 0;
    if (world.size > 1) {
        float *g = calloc(params, sizeof(float));
        if (!g) die("allocating the gradient buffer", NULL);
        allreduce_stats(g, (int)params, 10, 1, 1, &ar_best, &ar_median);
        allreduce_stats(g, (int)params, 10, 1, 0, &arb_best, &arb_median);
        free(g);
    }

    bp_data slice = all;
    slice.owned = 0;
    slice.class_names = NULL;
    bp_fit_result fr;
    /* Warm-up: 3 global batches. */
    slice.n = 3 * batch;
    if (bp_fit(tr, &slice, NULL, &fr, &e)) die("bp_fit (warm-up)", &e);

    double rate[BENCH_MAX_REPS], step_rate[BENCH_MAX_REPS], secs[BENCH_MAX_REPS];
    double steady[BENCH_MAX_REPS], comm_s[BENCH_MAX_REPS], loss = NAN;
    int slices = all.n / rows;
    double region0 = bench_now();
    for (int r = 0; r < reps; r++) {
        slice.n = rows;
        slice.x = all.x + (size_t)(r % slices) * rows * all.n_inputs;
        slice.y = all.y + (size_t)(r % slices) * rows * all.n_targets;
        clock_.steps = 0;
        tc.seconds = 0;
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = bench_now();
        if (bp_fit(tr, &slice, NULL, &fr, &e)) die("bp_fit", &e);
        double t = bench_now() - t0, tmax;
        MPI_Allreduce(&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        secs[r] = tmax;
        rate[r] = rows / tmax;
        step_rate[r] = steps / tmax;
        steady[r] = clock_.steps > 1 ? (clock_.last - clock_.first) / (clock_.steps - 1) : NAN;
        comm_s[r] = tc.seconds / steps;
        loss = fr.final_train_loss;
    }
    double region1 = bench_now();
    int best_r = 0;
    for (int r = 1; r < reps; r++)
        if (rate[r] > rate[best_r]) best_r = r;
    double comm_max = 0;
    MPI_Reduce(&comm_s[best_r], &comm_max, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);

    if (g_rank == 0) {
        double best, median, sbest, smedian, st_best, st_median, inv[BENCH_MAX_REPS];
        bench_stats(rate, reps, &best, &median);
        bench_stats(step_rate, reps, &sbest, &smedian);
        for (int r = 0; r < reps; r++) inv[r] = 1.0 / steady[r];
        bench_stats(inv, reps, &st_best, &st_median);
        printf("{\"prog\":\"backprop_mpi\",\"workload\":\"%s\",\"api\":\"fit\",\"ranks\":%d,"
               "\"threads\":%d,\"batch\":%d,\"rank_batch\":%d,\"sync_bn\":%d,\"params\":%zu,"
               "\"grad_bytes\":%zu,\"flop_per_sample\":%.0f,\"steps\":%d,\"reps\":%d,"
               "\"rep_seconds\":",
               w3 ? "W3" : "W5", world.size, used_threads, batch, local_batch, sync_bn, params,
               params * sizeof(float), flop_per_sample, steps, reps);
        bench_print_rates(secs, reps);
        printf(",\"rates\":");
        bench_print_rates(rate, reps);
        printf(",\"samples_per_s\":%.6g,\"samples_per_s_median\":%.6g,\"steps_per_s\":%.6g,"
               "\"steps_per_s_median\":%.6g,\"us_per_step\":%.6g,\"us_per_step_median\":%.6g,"
               "\"gflops\":%.6g,\"us_per_step_steady\":%.6g,\"us_per_step_steady_median\":%.6g,"
               "\"comm_us_per_step\":%.6g,\"comm_us_per_step_max\":%.6g,",
               best, median, sbest, smedian, 1e6 / sbest, 1e6 / smedian,
               best * flop_per_sample * 1e-9, 1e6 / st_best, 1e6 / st_median,
               comm_s[best_r] * 1e6, comm_max * 1e6);
        if (world.size > 1)
            printf("\"allreduce_grad_s\":%.6g,\"allreduce_grad_s_median\":%.6g,"
                   "\"allreduce_blocking_grad_s\":%.6g,\"allreduce_blocking_grad_s_median\":%.6g,",
                   ar_best, ar_median, arb_best, arb_median);
        printf("\"loss\":%.6g,\"timed_monotonic\":[%.6f,%.6f],\"rss_kb\":%ld}\n", loss, region0,
               region1, bench_peak_rss_kb());
        fflush(stdout);
    }
    bp_trainer_free(tr);
    bp_net_free(net);
    bp_data_free(&all);
    bp_mpi_finalize(&world);
    return 0;
}
