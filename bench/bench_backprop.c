/*
 * bench_backprop.c - time libbackprop on one workload of issue 4 and print
 * one JSON line.
 *
 *   bench_backprop W1|W2|W3|W4|W5|W6|W7 [--threads N] [--api step|fit] [--reps R]
 *                  [--min-time S] [--steps N] [--batch N] [--data DIR]
 *                  [--seed N] [--stateful 0|1] [--precision f32|bf16]
 *
 * W1  MLP 784-256-128-10 relu, cross-entropy, Adam(1e-3), batch 128, on the
 *     60,000 Fashion-MNIST training images (a repetition = whole epochs).
 * W2  10-32-32-1 tanh, MSE, Adam(1e-3), batch 32, on 10,000 synthetic rows
 *     (a repetition = whole epochs).
 * W3  784-2048-2048-10 relu, cross-entropy, Adam(1e-3), batch 256, a
 *     repetition = --steps (60) training steps.
 * W4  forward pass of the W1 network over the 10,000 test images in
 *     batches of 1000 (a repetition = whole passes).
 * W5  the CNN conv(32,3,1,1) batchnorm relu maxpool(2) conv(64,3,1,1)
 *     batchnorm relu maxpool(2) dense(128) relu dropout(0.3) dense(10) on
 *     [1, 28, 28] Fashion-MNIST, cross-entropy, Adam(1e-3), batch 128, a
 *     repetition = --steps (40) training steps.
 * W6  its inference over the 10,000 test images in batches of 1000.
 * W7  character LSTM embedding(48,96) lstm(256) dense(96) on windows of 64
 *     characters (bench_text_ids: the fortunes text, V = 96), cross-entropy
 *     at every step (the next character), Adam(1e-3), batch 64 streams, a
 *     repetition = --steps (20) steps; rates count tokens (64 x 64 a step).
 *     The text is cut into 64 equal streams; step k trains on window k of
 *     every stream with the state carried from window k-1 (bp_net_set_stateful:
 *     truncated BPTT, the gradient stops at the window's start), from zero
 *     after the last window. --stateful 0: every window from a zero state.
 *
 * --api step (default): the benchmark's own loop, the same as PyTorch's
 *     (bench_torch.py): reshuffle the indices every epoch, gather each batch
 *     into a contiguous buffer (its rows split across the threads for a
 *     large batch, as torch's indexing does), bp_train_step. --api fit: bp_fit with
 *     epochs = 1, called once per epoch (W1, W2 only; it also checks the data
 *     and collects the per-epoch diagnostics).
 * --precision bf16: bp_train_config.precision (training) or
 *     bp_net_set_precision (inference) BP_PRECISION_BF16; the JSON line says
 *     which ("precision").
 * Every repetition runs whole units (epochs, W3's step blocks, W4's passes)
 * until at least --min-time seconds have passed; rates are per repetition,
 * after one warm-up unit (W3: 3 steps). The JSON reports the best and the
 * median over --reps repetitions.
 */
#include "backprop.h"
#include "bench_common.h"

#include <errno.h>

typedef struct workload {
    const char *name;
    int inputs;
    const char *spec;
    bp_loss loss;
    int batch;
    int train;  /* 1: training, 0: inference (W4, W6) */
    int image;  /* 1: samples are [1, 28, 28] images */
    int text;   /* 1: windows of `inputs` characters of the text (W7) */
} workload;

#define CNN_SPEC "conv(32,3,1,1) batchnorm relu maxpool(2) conv(64,3,1,1) batchnorm relu " \
                 "maxpool(2) dense(128) relu dropout(0.3) dense(10)"

static const workload WORKLOADS[] = {
    {"W1", 784, "dense(256) relu dense(128) relu dense(10)", BP_LOSS_CROSS_ENTROPY, 128, 1, 0, 0},
    {"W2", 10, "dense(32) tanh dense(32) tanh dense(1)", BP_LOSS_MSE, 32, 1, 0, 0},
    {"W3", 784, "dense(2048) relu dense(2048) relu dense(10)", BP_LOSS_CROSS_ENTROPY, 256, 1, 0, 0},
    {"W4", 784, "dense(256) relu dense(128) relu dense(10)", BP_LOSS_CROSS_ENTROPY, 1000, 0, 0, 0},
    {"W5", 784, CNN_SPEC, BP_LOSS_CROSS_ENTROPY, 128, 1, 1, 0},
    {"W6", 784, CNN_SPEC, BP_LOSS_CROSS_ENTROPY, 1000, 0, 1, 0},
    {"W7", 64, "embedding(48,96) lstm(256) dense(96)", BP_LOSS_CROSS_ENTROPY, 64, 1, 0, 1},
};

/* Forward FLOPs per sample: 2 per multiply-add of the dense, conv and
 * recurrent layers (a conv's weights times its output positions, a dense
 * or recurrent layer's times the steps of its sequence). The embedding's
 * lookup is not counted. */
static double forward_flops(const bp_net *net)
{
    double f = 0;
    for (int i = 0; i < bp_net_layers(net); i++) {
        bp_layer_desc d = bp_net_layer(net, i);
        int gates = d.kind == BP_LSTM ? 4 : d.kind == BP_GRU ? 3 : d.kind == BP_RNN ? 1 : 0;
        if (d.kind != BP_DENSE && d.kind != BP_CONV && !gates) continue;
        /* biases: one per unit; a recurrent layer has two per gate and unit */
        double biases = gates ? 2.0 * gates * d.units : d.units;
        double weights = (double)bp_net_layer_param_count(net, i) - biases;
        bp_shape s = bp_net_layer_shape(net, i);
        double positions = d.kind == BP_CONV ? (double)s.dim[1] * s.dim[2]
                           : s.rank == 2     ? s.dim[0]
                                             : 1;
        f += 2 * weights * positions;
    }
    return f;
}

static void die(const char *what, const bp_error *e)
{
    fprintf(stderr, "bench_backprop: %s: %s\n", what, e ? e->message : strerror(errno));
    exit(1);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_backprop W1|W2|W3|W4|W5|W6|W7 [--threads N] [--api step|fit] [--reps R]\n"
            "                      [--min-time S] [--steps N] [--batch N] [--data DIR] [--seed N]\n"
            "                      [--stateful 0|1] [--precision f32|bf16]\n");
    exit(2);
}

/* State of the benchmark's own training loop (--api step). */
typedef struct loop {
    bp_trainer *tr;
    const bp_data *d;
    int batch;
    int *perm;
    int pos;          /* next index in perm */
    uint64_t rng;
    float *xb, *yb;
    double loss_sum;  /* sum over samples of the batch losses, this unit */
    long seen;
    /* W7: the text's ids as `batch` streams of stream_len, `windows` windows
     * each (pos: the next window); the network, stateful or not */
    const unsigned char *text;
    size_t stream_len;
    int windows, stateful;
    bp_net *net;
} loop;

/* W7: one training step on window k of every stream (x: the window's ids,
 * y: the next character at each position); after the last window, back to
 * the first from a zero state. */
static void text_step(loop *L)
{
    const bp_data *d = L->d;
    int T = d->n_inputs, B = L->batch;
    if (L->pos >= L->windows) {
        L->pos = 0;
        if (L->stateful) bp_net_reset_state(L->net);
    }
    for (int s = 0; s < B; s++) {
        const unsigned char *src = L->text + (size_t)s * L->stream_len + (size_t)L->pos * T;
        for (int t = 0; t < T; t++) {
            L->xb[(size_t)s * T + t] = (float)src[t];
            L->yb[(size_t)s * T + t] = (float)src[t + 1];
        }
    }
    L->pos++;
    double loss;
    bp_error e;
    if (bp_train_step(L->tr, L->xb, L->yb, B, &loss, &e)) die("bp_train_step", &e);
    L->loss_sum += loss * B;
    L->seen += B;
}

/* Threads of the gather (main sets it to --threads). */
static int g_gather_threads = 1;

/* One training step on the next batch of the current permutation (m rows).
 * The gather splits its rows across the threads once a batch holds at
 * least 2 x 16,384 values (W1's 128 x 784), as PyTorch's x[idx]
 * (index_select, at::parallel_for over the rows) does in bench_torch.py. */
static void loop_step(loop *L, int m)
{
    const bp_data *d = L->d;
    int in = d->n_inputs, tw = d->n_targets;
    int t = (double)m * in >= 2 * 16384.0 ? g_gather_threads : 1;
#pragma omp parallel for num_threads(t) schedule(static) if (t > 1)
    for (int q = 0; q < m; q++) {
        int row = L->perm[L->pos + q];
        memcpy(L->xb + (size_t)q * in, d->x + (size_t)row * in, (size_t)in * sizeof(float));
        memcpy(L->yb + (size_t)q * tw, d->y + (size_t)row * tw, (size_t)tw * sizeof(float));
    }
    L->pos += m;
    double loss;
    bp_error e;
    if (bp_train_step(L->tr, L->xb, L->yb, m, &loss, &e)) die("bp_train_step", &e);
    L->loss_sum += loss * m;
    L->seen += m;
}

/* One epoch: reshuffle, then every batch (the last one partial). */
static void loop_epoch(loop *L, long *steps, long *samples)
{
    int n = L->d->n;
    bench_shuffle(L->perm, n, &L->rng);
    L->pos = 0;
    while (L->pos < n) {
        int m = n - L->pos < L->batch ? n - L->pos : L->batch;
        loop_step(L, m);
        (*steps)++;
        *samples += m;
    }
}

/* `k` full-size steps, reshuffling whenever fewer than a batch remain (W3). */
static void loop_steps(loop *L, int k, long *steps, long *samples)
{
    for (int i = 0; i < k; i++) {
        if (L->text) {
            text_step(L);
            (*steps)++;
            *samples += L->batch;
            continue;
        }
        if (L->pos + L->batch > L->d->n) {
            bench_shuffle(L->perm, L->d->n, &L->rng);
            L->pos = 0;
        }
        loop_step(L, L->batch);
        (*steps)++;
        *samples += L->batch;
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) usage();
    const workload *w = NULL;
    for (size_t i = 0; i < sizeof WORKLOADS / sizeof WORKLOADS[0]; i++)
        if (!strcmp(argv[1], WORKLOADS[i].name)) w = &WORKLOADS[i];
    if (!w) usage();

    int threads = 1, reps = 3, batch = w->batch, stateful = 1;
    int steps_per_rep = !strcmp(w->name, "W5") ? 40 : !strcmp(w->name, "W7") ? 20 : 60;
    double min_time = 1.0;
    const char *api = "step", *prec = "f32";
    const char *dir = getenv("BP_BENCH_DATA") ? getenv("BP_BENCH_DATA") : BENCH_DEFAULT_DATA;
    if (w->text) dir = getenv("BP_BENCH_TEXT") ? getenv("BP_BENCH_TEXT") : BENCH_DEFAULT_TEXT;
    uint64_t seed = 42;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--api")) api = v;
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--min-time")) min_time = atof(v);
        else if (!strcmp(a, "--steps")) steps_per_rep = atoi(v);
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--data")) dir = v;
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--stateful")) stateful = atoi(v);
        else if (!strcmp(a, "--precision") && (!strcmp(v, "f32") || !strcmp(v, "bf16")))
            prec = v;
        else usage();
    }
    int fit = !strcmp(api, "fit");
    if ((!fit && strcmp(api, "step")) || reps < 1 || reps > BENCH_MAX_REPS || threads < 1 ||
        batch < 1 || steps_per_rep < 1)
        usage();
    if (fit && strcmp(w->name, "W1") && strcmp(w->name, "W2")) {
        fprintf(stderr, "bench_backprop: --api fit applies to W1 and W2 only\n");
        return 2;
    }
    g_gather_threads = bp_set_threads(threads);

    /* Data. */
    bp_data d;
    memset(&d, 0, sizeof d);
    bp_error e;
    char img[4096], lab[4096];
    unsigned char *text = NULL;
    size_t text_n = 0;
    if (w->text) {
        /* d only carries the window length; the steps read `text` */
        text = bench_text_ids(dir, &text_n);
        if (!text || text_n < (size_t)batch * (w->inputs + 1)) {
            fprintf(stderr, "bench_backprop: no text in %s (W7 reads the fortunes files: "
                    "apt-get install fortunes, or set BP_BENCH_TEXT)\n", dir);
            return 1;
        }
        d.n = batch;
        d.n_inputs = w->inputs;
        d.n_targets = w->inputs;
    } else if (!strcmp(w->name, "W2")) {
        d.n = 10000;
        d.n_inputs = 10;
        d.n_targets = 1;
        d.x = malloc((size_t)d.n * 10 * sizeof(float));
        d.y = malloc((size_t)d.n * sizeof(float));
        if (!d.x || !d.y) die("allocating W2 data", NULL);
        d.owned = 0;
        bench_w2_data(d.n, seed, d.x, d.y);
    } else {
        const char *pre = w->train ? "train" : "t10k";
        snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", dir, pre);
        snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte.gz", dir, pre);
        if (bp_read_idx(&d, img, lab, &e)) die("reading the data", &e);
    }

    bp_net *net;
    bp_shape in = w->image ? (bp_shape){3, {1, 28, 28}} : bp_shape_flat(w->inputs);
    if (bp_net_create_shaped(&net, in, w->spec, seed, &e)) die("bp_net_create", &e);
    if (w->text && stateful && bp_net_set_stateful(net, batch, &e)) die("bp_net_set_stateful", &e);
    bp_precision precision = !strcmp(prec, "bf16") ? BP_PRECISION_BF16 : BP_PRECISION_F32;
    if (bp_net_set_precision(net, precision, &e)) {
        /* 3: "cannot run here" for run.sh (a CPU without AVX512_BF16) */
        fprintf(stderr, "bench_backprop: %s\n", e.message);
        return 3;
    }
    size_t params = bp_net_param_count(net);
    /* FLOPs per sample: the forward's, 3 times that for a training step
     * (forward, input gradient, weight gradient). */
    double flop_per_sample = (w->train ? 3.0 : 1.0) * forward_flops(net);

    double rate[BENCH_MAX_REPS], step_rate[BENCH_MAX_REPS], secs[BENCH_MAX_REPS];
    double last_loss = NAN;
    double region0 = 0, region1 = 0; /* CLOCK_MONOTONIC span of the timed repetitions */

    if (w->train) {
        bp_train_config cfg;
        bp_train_config_default(&cfg, BP_ADAM);
        cfg.loss = w->loss;
        cfg.lr = 1e-3;
        cfg.batch_size = batch;
        cfg.epochs = 1;
        cfg.shuffle = 1;
        cfg.seed = seed;
        cfg.precision = precision;
        bp_trainer *tr;
        if (bp_trainer_create(&tr, net, &cfg, batch, &e)) die("bp_trainer_create", &e);

        loop L;
        memset(&L, 0, sizeof L);
        L.tr = tr;
        L.d = &d;
        L.batch = batch;
        L.rng = seed ^ 0x5DEECE66Dull;
        if (text) {
            L.text = text;
            L.stream_len = (text_n - 1) / (size_t)batch;
            L.windows = (int)((L.stream_len - 1) / (size_t)w->inputs);
            L.stateful = stateful;
            L.net = net;
        }
        L.perm = malloc((size_t)d.n * sizeof *L.perm);
        L.xb = malloc((size_t)batch * d.n_inputs * sizeof(float));
        L.yb = malloc((size_t)batch * d.n_targets * sizeof(float));
        if (!L.perm || !L.xb || !L.yb) die("allocating batch buffers", NULL);
        for (int i = 0; i < d.n; i++) L.perm[i] = i;
        L.pos = text ? 0 : d.n;

        int w3 = !strcmp(w->name, "W3") || !strcmp(w->name, "W5") || w->text; /* step blocks */
        long ws = 0, wn = 0;
        bp_fit_result fr;
        /* Warm-up: one unit (W3: 3 steps), so every GEMM shape has run once. */
        if (w3) loop_steps(&L, 3, &ws, &wn);
        else if (fit) {
            if (bp_fit(tr, &d, NULL, &fr, &e)) die("bp_fit", &e);
        } else loop_epoch(&L, &ws, &wn);

        region0 = bench_now();
        for (int r = 0; r < reps; r++) {
            long steps = 0, samples = 0;
            L.loss_sum = 0;
            L.seen = 0;
            double t0 = bench_now(), t;
            double fit_loss = 0;
            int units = 0;
            do {
                if (w3) loop_steps(&L, steps_per_rep, &steps, &samples);
                else if (fit) {
                    if (bp_fit(tr, &d, NULL, &fr, &e)) die("bp_fit", &e);
                    steps += (d.n + batch - 1) / batch;
                    samples += d.n;
                    fit_loss += fr.final_train_loss;
                } else loop_epoch(&L, &steps, &samples);
                units++;
                t = bench_now() - t0;
            } while (!w3 && t < min_time);
            secs[r] = t;
            /* W7: a sample is a token (batch x window a step) */
            rate[r] = (double)samples * (w->text ? w->inputs : 1) / t;
            step_rate[r] = (double)steps / t;
            last_loss = fit ? fit_loss / units : L.loss_sum / (double)L.seen;
        }
        region1 = bench_now();
        bp_trainer_free(tr);
        free(L.perm);
        free(L.xb);
        free(L.yb);
    } else {
        if (bp_net_reserve(net, batch, &e)) die("bp_net_reserve", &e);
        int outs = bp_net_outputs(net);
        float *yo = malloc((size_t)batch * outs * sizeof(float));
        if (!yo) die("allocating outputs", NULL);
        double checksum = 0;
        for (int r = -1; r < reps; r++) { /* r = -1: warm-up pass */
            long steps = 0, samples = 0;
            double t0 = bench_now(), t;
            if (r == 0) region0 = t0;
            do {
                for (int s = 0; s < d.n; s += batch) {
                    int m = d.n - s < batch ? d.n - s : batch;
                    if (bp_forward(net, d.x + (size_t)s * d.n_inputs, m, yo, &e))
                        die("bp_forward", &e);
                    checksum += yo[0];
                    steps++;
                    samples += m;
                }
                t = bench_now() - t0;
            } while (r >= 0 && t < min_time);
            if (r >= 0) {
                secs[r] = t;
                rate[r] = (double)samples / t;
                step_rate[r] = (double)steps / t;
            }
        }
        region1 = bench_now();
        last_loss = checksum; /* keeps the outputs live; not a loss */
        free(yo);
    }

    double best, median, sbest, smedian;
    bench_stats(rate, reps, &best, &median);
    bench_stats(step_rate, reps, &sbest, &smedian);
    if (w->text) flop_per_sample /= w->inputs; /* per token */
    printf("{\"prog\":\"backprop\",\"workload\":\"%s\",\"api\":\"%s\",\"threads\":%d,"
           "\"precision\":\"%s\",\"batch\":%d,\"params\":%zu,\"flop_per_sample\":%.0f,"
           "\"reps\":%d,\"rep_seconds\":",
           w->name, w->train ? api : "forward", threads, prec, batch, params, flop_per_sample,
           reps);
    bench_print_rates(secs, reps);
    printf(",\"rates\":");
    bench_print_rates(rate, reps);
    printf(",\"samples_per_s\":%.6g,\"samples_per_s_median\":%.6g,\"steps_per_s\":%.6g,"
           "\"steps_per_s_median\":%.6g,\"us_per_step\":%.6g,\"gflops\":%.6g,",
           best, median, sbest, smedian, 1e6 / sbest, best * flop_per_sample * 1e-9);
    if (w->train) printf("\"loss\":%.6g,", last_loss);
    if (w->text)
        printf("\"unit\":\"token\",\"seq\":%d,\"vocab\":%d,\"text_tokens\":%zu,\"stateful\":%d,",
               w->inputs, BENCH_TEXT_VOCAB, text_n, stateful);
    printf("\"timed_monotonic\":[%.6f,%.6f],\"rss_kb\":%ld}\n", region0, region1,
           bench_peak_rss_kb());

    bp_net_free(net);
    if (text) free(text);
    else if (strcmp(w->name, "W2")) bp_data_free(&d);
    else {
        free(d.x);
        free(d.y);
    }
    return 0;
}
