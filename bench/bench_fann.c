/*
 * bench_fann.c - time FANN 2.2 (Debian libfann-dev, float build) on the
 * workloads of issue 4 and print one JSON line.
 *
 *   bench_fann W1|W2|W3|W4 [--algo incremental|batch] [--samples K]
 *              [--reps R] [--min-time S] [--data DIR] [--seed N]
 *
 * FANN has no mini-batches, no Adam, no ReLU and no softmax/cross-entropy,
 * so the FANN networks are the nearest it can build:
 *   W1  784-256-128-10: hidden FANN_LINEAR_PIECE (max(0, min(1, x)), FANN
 *       2.2's nearest to ReLU), output FANN_SIGMOID, one-hot targets, MSE
 *       (FANN_ERRORFUNC_LINEAR);
 *   W2  10-32-32-1: hidden FANN_SIGMOID_SYMMETRIC (tanh), output linear, MSE;
 *   W3  784-2048-2048-10 as W1 (slow: time a few hundred samples);
 *   W4  the W1 network, fann_run on each of the 10,000 test images.
 * Training algorithm (--algo):
 *   incremental (default): FANN_TRAIN_INCREMENTAL, plain SGD with a weight
 *       update after every sample (learning rate 0.01, momentum 0) — the
 *       per-sample trainer the others are compared with;
 *   batch: FANN_TRAIN_BATCH, gradients summed over the epoch, one update.
 * Both go through fann_train_epoch on a fann_train_data holding the first
 * --samples rows (W1 6000, W2 10000, W3 256), reshuffled with
 * fann_shuffle_train_data before every epoch (inside the timing, as the
 * others reshuffle). A repetition = whole epochs until --min-time seconds;
 * one warm-up epoch on 256 rows first. FANN is single-threaded.
 * Weights: He uniform U(+-sqrt(6/in)) before a hidden layer, Xavier uniform
 * U(+-sqrt(6/(in+out))) for the output layer, biases 0 (written straight
 * into ann->weights through FANN's public struct: fann_set_weight_array
 * searches every connection for each one, O(connections^2)).
 * The IDX files are read here with zlib (bytes / 255), not with libbackprop.
 */
#include "bench_common.h"

#include <floatfann.h>
#include <zlib.h>

static void die(const char *msg)
{
    fprintf(stderr, "bench_fann: %s\n", msg);
    exit(1);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_fann W1|W2|W3|W4 [--algo incremental|batch] [--samples K]\n"
                    "                  [--reps R] [--min-time S] [--data DIR] [--seed N]\n");
    exit(2);
}

/* Read a whole gzip (or plain) IDX file; returns the payload after the
 * header and the first dimension in *n, the product of the others in *w. */
static unsigned char *read_idx(const char *path, int *n, int *w)
{
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_fann: %s: cannot open\n", path);
        exit(1);
    }
    size_t cap = 1 << 20, len = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (!buf) die("out of memory");
        int got = gzread(f, buf + len, (unsigned)(cap - len));
        if (got < 0) die("gzip read error");
        len += (size_t)got;
        if (got == 0) break;
        if (len == cap) buf = realloc(buf, cap *= 2);
    }
    gzclose(f);
    if (len < 4 || buf[0] || buf[1] || buf[2] != 8) {
        fprintf(stderr, "bench_fann: %s: not an unsigned-byte IDX file\n", path);
        exit(1);
    }
    int nd = buf[3];
    size_t hdr = 4 + 4 * (size_t)nd, total = 1;
    if (nd < 1 || len < hdr) die("bad IDX header");
    long dims[8] = {0};
    for (int i = 0; i < nd && i < 8; i++) {
        const unsigned char *p = buf + 4 + 4 * i;
        dims[i] = (long)p[0] << 24 | (long)p[1] << 16 | (long)p[2] << 8 | (long)p[3];
        total *= (size_t)dims[i];
    }
    if (len != hdr + total) die("IDX size mismatch");
    *n = (int)dims[0];
    *w = (int)(total / (size_t)dims[0]);
    memmove(buf, buf + hdr, total);
    return buf;
}

/* He/Xavier uniform init through the public struct (see the header). */
static void init_weights(struct fann *ann, uint64_t *rng)
{
    struct fann_layer *first = ann->first_layer, *last = ann->last_layer;
    for (struct fann_layer *L = first + 1; L < last; L++) {
        int prev = (int)((L - 1)->last_neuron - (L - 1)->first_neuron) - 1; /* minus bias */
        int units = 0;
        for (struct fann_neuron *u = L->first_neuron; u < L->last_neuron; u++)
            units += u->last_con > u->first_con;
        int output = L + 1 == last;
        double a = output ? sqrt(6.0 / (prev + units)) : sqrt(6.0 / prev);
        for (struct fann_neuron *u = L->first_neuron; u < L->last_neuron; u++) {
            unsigned nc = u->last_con - u->first_con;
            if (nc == 0) continue; /* the layer's bias neuron */
            if ((int)nc != prev + 1) die("unexpected FANN connection layout");
            for (unsigned c = 0; c < nc - 1; c++)
                ann->weights[u->first_con + c] = (fann_type)((2 * bench_uniform(rng) - 1) * a);
            ann->weights[u->first_con + nc - 1] = 0; /* bias */
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) usage();
    const char *wl = argv[1];
    int W1 = !strcmp(wl, "W1"), W2 = !strcmp(wl, "W2"), W3 = !strcmp(wl, "W3"),
        W4 = !strcmp(wl, "W4");
    if (!W1 && !W2 && !W3 && !W4) usage();
    const char *algo = "incremental";
    int samples = W1 ? 6000 : W2 ? 10000 : W3 ? 256 : 10000, reps = 3;
    double min_time = 1.0;
    const char *dir = getenv("BP_BENCH_DATA") ? getenv("BP_BENCH_DATA") : BENCH_DEFAULT_DATA;
    uint64_t seed = 42;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--algo")) algo = v;
        else if (!strcmp(a, "--samples")) samples = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--min-time")) min_time = atof(v);
        else if (!strcmp(a, "--data")) dir = v;
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else usage();
    }
    int batch_algo = !strcmp(algo, "batch");
    if ((!batch_algo && strcmp(algo, "incremental")) || reps < 1 || reps > BENCH_MAX_REPS ||
        samples < 1)
        usage();

    unsigned in = W2 ? 10 : 784, h = W2 ? 32 : W3 ? 2048 : 256, h2 = W2 ? 32 : W3 ? 2048 : 128,
             out = W2 ? 1 : 10;
    struct fann *ann = fann_create_standard(4, in, h, h2, out);
    if (!ann) die("fann_create_standard failed");
    fann_set_activation_function_hidden(ann, W2 ? FANN_SIGMOID_SYMMETRIC : FANN_LINEAR_PIECE);
    fann_set_activation_function_output(ann, W2 ? FANN_LINEAR : FANN_SIGMOID);
    fann_set_train_error_function(ann, FANN_ERRORFUNC_LINEAR);
    fann_set_training_algorithm(ann, batch_algo ? FANN_TRAIN_BATCH : FANN_TRAIN_INCREMENTAL);
    fann_set_learning_rate(ann, 0.01f);
    fann_set_learning_momentum(ann, 0.0f);
    uint64_t rng = seed;
    init_weights(ann, &rng);
    /* Parameters as the others count them: weights + biases of the 3 layers. */
    double params = (double)in * h + h + (double)h * h2 + h2 + (double)h2 * out + out;

    /* Data. */
    int n;
    struct fann_train_data *data;
    if (W2) {
        n = 10000;
        float *x = malloc((size_t)n * 10 * sizeof *x), *y = malloc((size_t)n * sizeof *y);
        if (!x || !y) die("out of memory");
        bench_w2_data(n, seed, x, y);
        if (samples > n) samples = n;
        data = fann_create_train((unsigned)samples, in, out);
        if (!data) die("fann_create_train failed");
        for (int i = 0; i < samples; i++) {
            for (unsigned j = 0; j < in; j++) data->input[i][j] = x[(size_t)i * 10 + j];
            data->output[i][0] = y[i];
        }
        free(x);
        free(y);
    } else {
        char img[4096], lab[4096];
        const char *pre = W4 ? "t10k" : "train";
        snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", dir, pre);
        snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte.gz", dir, pre);
        int w, nl, wl1;
        unsigned char *pix = read_idx(img, &n, &w);
        unsigned char *labels = read_idx(lab, &nl, &wl1);
        if (w != (int)in || nl != n || wl1 != 1) die("unexpected IDX shapes");
        if (samples > n) samples = n;
        data = fann_create_train((unsigned)samples, in, out);
        if (!data) die("fann_create_train failed");
        for (int i = 0; i < samples; i++) {
            for (unsigned j = 0; j < in; j++)
                data->input[i][j] = (fann_type)(pix[(size_t)i * in + j] / 255.0f);
            for (unsigned k = 0; k < out; k++) data->output[i][k] = labels[i] == k ? 1.0f : 0.0f;
        }
        free(pix);
        free(labels);
    }

    double rate[BENCH_MAX_REPS], secs[BENCH_MAX_REPS];
    double mse = NAN, checksum = 0;
    if (!W4) {
        struct fann_train_data *warm =
            fann_subset_train_data(data, 0, (unsigned)(samples < 256 ? samples : 256));
        if (!warm) die("fann_subset_train_data failed");
        fann_train_epoch(ann, warm);
        fann_destroy_train(warm);
        for (int r = 0; r < reps; r++) {
            long done = 0;
            double t0 = bench_now(), t;
            do {
                fann_shuffle_train_data(data);
                mse = fann_train_epoch(ann, data);
                done += samples;
                t = bench_now() - t0;
            } while (t < min_time);
            secs[r] = t;
            rate[r] = (double)done / t;
        }
    } else {
        for (int r = -1; r < reps; r++) { /* r = -1: warm-up pass */
            long done = 0;
            double t0 = bench_now(), t;
            do {
                for (int i = 0; i < samples; i++) checksum += fann_run(ann, data->input[i])[0];
                done += samples;
                t = bench_now() - t0;
            } while (r >= 0 && t < min_time);
            if (r >= 0) {
                secs[r] = t;
                rate[r] = (double)done / t;
            }
        }
    }

    double best, median;
    bench_stats(rate, reps, &best, &median);
    double fps = (W4 ? 2.0 : 6.0) * params;
    /* Every FANN training sample is one weight update (incremental) or one
     * gradient accumulation (batch); steps/s is reported per sample. */
    printf("{\"prog\":\"fann\",\"workload\":\"%s\",\"api\":\"%s\",\"threads\":1,\"batch\":1,"
           "\"params\":%.0f,\"flop_per_sample\":%.0f,\"samples\":%d,\"reps\":%d,\"rep_seconds\":",
           wl, W4 ? "fann_run" : algo, params, fps, samples, reps);
    bench_print_rates(secs, reps);
    printf(",\"rates\":");
    bench_print_rates(rate, reps);
    printf(",\"samples_per_s\":%.6g,\"samples_per_s_median\":%.6g,\"steps_per_s\":%.6g,"
           "\"us_per_step\":%.6g,\"gflops\":%.6g,",
           best, median, best, 1e6 / best, best * fps * 1e-9);
    if (!W4) printf("\"loss\":%.6g,", mse);
    else printf("\"checksum\":%.6g,", checksum);
    printf("\"rss_kb\":%ld}\n", bench_peak_rss_kb());
    fann_destroy_train(data);
    fann_destroy(ann);
    return 0;
}
