/*
 * cmd_train.c - `backprop train`: read data, build (or load) a network,
 * train it with bp_fit, show progress, write the model, log and plot.
 *
 * Order of work, so that nothing is written on failure:
 *   1. parse and check every option (usage errors, exit 2);
 *   2. read the training (and validation) data, split, normalize;
 *   3. build the network, the trainer, open the log/plot temporaries;
 *   4. bp_fit with the progress callbacks (Ctrl-C sets a flag that stops
 *      it: exit 130, nothing written);
 *   5. save the model atomically, then move the log and plot in place.
 */
#include "cli.h"

#include <math.h>
#include <signal.h>
#ifndef M_LN2
#define M_LN2 0.69314718055994530942
#endif
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

enum {
    O_HELP, O_LABELS, O_OUT, O_TARGET, O_TASK, O_ARCH, O_LOSS, O_INIT, O_OPTIMIZER, O_LR,
    O_MOMENTUM, O_WD, O_L1, O_L2, O_CLIP_NORM, O_CLIP_VALUE, O_SCHEDULE, O_WARMUP, O_STEP_SIZE,
    O_GAMMA, O_MIN_LR, O_BATCH, O_EPOCHS, O_VAL, O_VAL_LABELS, O_VAL_SPLIT, O_EARLY_STOP,
    O_MIN_DELTA, O_NO_SHUFFLE, O_SEED, O_NORMALIZE, O_NORMALIZE_TARGET, O_INIT_FROM, O_FREEZE,
    O_THREADS, O_LOG, O_PLOT, O_QUIET, O_DELIMITER, O_SKIP_ROWS, O_NO_HEADER, O_INPUT_SHAPE,
    O_AUGMENT, O_NEW_HEAD, O_SEQ_LEN, O_ENCODING, O_SYNC_BN, O_PRECISION, O_COUNT
};

/* rnn, lstm, gru: the layers with gradient norms through time in the log. */
static int is_recurrent(bp_layer_kind k) { return k == BP_RNN || k == BP_LSTM || k == BP_GRU; }

static const cli_opt train_opts[] = {
    [O_HELP] = {"--help", "-h", 0},
    [O_LABELS] = {"--labels", NULL, 1},
    [O_OUT] = {"--output", "-o", 1},
    [O_TARGET] = {"--target", NULL, 1},
    [O_TASK] = {"--task", NULL, 1},
    [O_ARCH] = {"--arch", NULL, 1},
    [O_LOSS] = {"--loss", NULL, 1},
    [O_INIT] = {"--init", NULL, 1},
    [O_OPTIMIZER] = {"--optimizer", NULL, 1},
    [O_LR] = {"--lr", NULL, 1},
    [O_MOMENTUM] = {"--momentum", NULL, 1},
    [O_WD] = {"--weight-decay", NULL, 1},
    [O_L1] = {"--l1", NULL, 1},
    [O_L2] = {"--l2", NULL, 1},
    [O_CLIP_NORM] = {"--clip-norm", NULL, 1},
    [O_CLIP_VALUE] = {"--clip-value", NULL, 1},
    [O_SCHEDULE] = {"--schedule", NULL, 1},
    [O_WARMUP] = {"--warmup", NULL, 1},
    [O_STEP_SIZE] = {"--step-size", NULL, 1},
    [O_GAMMA] = {"--gamma", NULL, 1},
    [O_MIN_LR] = {"--min-lr", NULL, 1},
    [O_BATCH] = {"--batch", NULL, 1},
    [O_EPOCHS] = {"--epochs", NULL, 1},
    [O_VAL] = {"--val", NULL, 1},
    [O_VAL_LABELS] = {"--val-labels", NULL, 1},
    [O_VAL_SPLIT] = {"--val-split", NULL, 1},
    [O_EARLY_STOP] = {"--early-stop", NULL, 1},
    [O_MIN_DELTA] = {"--min-delta", NULL, 1},
    [O_NO_SHUFFLE] = {"--no-shuffle", NULL, 0},
    [O_SEED] = {"--seed", NULL, 1},
    [O_NORMALIZE] = {"--normalize", NULL, 1},
    [O_NORMALIZE_TARGET] = {"--normalize-target", NULL, 1},
    [O_INIT_FROM] = {"--init-from", NULL, 1},
    [O_FREEZE] = {"--freeze", NULL, 1},
    [O_THREADS] = {"--threads", NULL, 1},
    [O_LOG] = {"--log", NULL, 1},
    [O_PLOT] = {"--plot", NULL, 1},
    [O_QUIET] = {"--quiet", "-q", 0},
    [O_DELIMITER] = {"--delimiter", NULL, 1},
    [O_SKIP_ROWS] = {"--skip-rows", NULL, 1},
    [O_NO_HEADER] = {"--no-header", NULL, 0},
    [O_INPUT_SHAPE] = {"--input-shape", NULL, 1},
    [O_AUGMENT] = {"--augment", NULL, 1},
    [O_NEW_HEAD] = {"--new-head", NULL, 0},
    [O_SEQ_LEN] = {"--seq-len", NULL, 1},
    [O_ENCODING] = {"--encoding", NULL, 1},
    [O_SYNC_BN] = {"--sync-batchnorm", NULL, 0},
    [O_PRECISION] = {"--precision", NULL, 1},
    {NULL, NULL, 0},
};

#define DEFAULT_ARCH "dense(64) relu"
#define DEFAULT_MODEL "model.safetensors"
/* --task text: the defaults (see docs/cli.md). */
#define TEXT_ARCH "embedding(32) lstm(128)"
#define TEXT_SEQ_LEN 64
#define TEXT_VAL_SPLIT 0.1

typedef struct train_args {
    const char *data, *labels, *out, *target, *arch, *val, *val_labels, *init_from, *log, *plot;
    int task;            /* -1 unset, else bp_task */
    int loss;            /* -1 unset, else bp_loss */
    int init;            /* -1 unset, 0 he, 1 xavier */
    bp_optimizer optimizer;
    double lr, momentum, weight_decay, l1, l2, clip_norm, clip_value, gamma, min_lr, val_split,
        min_delta;
    int has_lr, has_momentum, has_wd, has_gamma;
    bp_schedule schedule;
    int warmup, step_size, batch, epochs, early_stop, no_shuffle, freeze, threads, quiet;
    int normalize;       /* -1 unset, else bp_norm_kind */
    int normalize_target; /* -1 unset, else bp_norm_kind */
    uint64_t seed;
    bp_shape input_shape;  /* --input-shape (rank 0: not given) */
    int hflip, shift;      /* --augment hflip, shift(N) */
    int sync_bn;           /* --sync-batchnorm */
    int precision;         /* --precision: a bp_precision (f32 0, bf16 1) */
    const char *augment;   /* the --augment text, for the metadata */
    int new_head;          /* --new-head */
    int text;              /* --task text (or --init-from a text model) */
    int seq_len;           /* --seq-len (0: not given) */
    bp_text_encoding encoding; /* --encoding */
    int val_split_default; /* --task text: the default --val-split (a short tail drops it) */
    char given[O_COUNT]; /* 1 for each option on the command line (for the notices) */
} train_args;

/* --augment hflip,shift(N): either word or both, comma-separated. */
static int parse_augment(const char *v, int *hflip, int *shift)
{
    *hflip = *shift = 0;
    const char *p = v;
    while (1) {
        size_t n = strcspn(p, ",");
        int d = 0, used = 0;
        if (n == 5 && !strncmp(p, "hflip", 5)) {
            *hflip = 1;
        } else if (n > 7 && !strncmp(p, "shift(", 6) && p[n - 1] == ')' &&
                   sscanf(p + 6, "%d)%n", &d, &used) == 1 && (size_t)used == n - 6 && d >= 1 &&
                   d <= 1000 && p[6] >= '0' && p[6] <= '9') {
            *shift = d;
        } else {
            return cli_fail(CLI_USAGE, "--augment: '%.*s' is not an augmentation (hflip, shift(N) "
                            "with N >= 1 pixels; comma-separated, e.g. hflip,shift(2))", (int)n, p);
        }
        if (!p[n]) return 0;
        p += n + 1;
    }
}

/* The options that --task text takes or refuses (usage errors), and its
 * defaults. Also run when --init-from names a text model. */
static int text_args(train_args *a)
{
    static const struct {
        int opt;
        const char *why;
    } refused[] = {
        {O_LABELS, "is for IDX images; --task text reads DATA as plain text"},
        {O_VAL_LABELS, "is for IDX images; --task text reads --val as plain text"},
        {O_TARGET, "names a CSV column; --task text predicts each next character of DATA"},
        {O_INPUT_SHAPE, "does not apply to --task text: its inputs are --seq-len token ids (CSV "
                        "rows become sequences with --input-shape T,F without --task text)"},
        {O_AUGMENT, "is for image inputs, not --task text"},
        {O_NEW_HEAD, "does not apply to --task text (the output layer is the vocabulary's)"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (a->given[refused[i].opt])
            return cli_fail(CLI_USAGE, "train: %s %s", train_opts[refused[i].opt].name, refused[i].why);
    if (a->loss >= 0 && a->loss != BP_LOSS_CROSS_ENTROPY)
        return cli_fail(CLI_USAGE, "train: --loss %s: a text model is trained with cross-entropy "
                        "(the next character is a class of the vocabulary)",
                        bp_loss_name((bp_loss)a->loss));
    if (a->batch == 0)
        return cli_fail(CLI_USAGE, "train: --batch 0 (full batch) does not apply to --task text: "
                        "--batch is the number of parallel streams the text is cut into (at least 1)");
    if (a->arch) {
        /* (A malformed spec is reported by parse_args with its column.) */
        static bp_layer_desc layers[4096];
        int nl = 0, blank = !a->arch[strspn(a->arch, " \t")];
        bp_status ps = blank ? BP_OK : bp_spec_parse(a->arch, layers, 4096, &nl, NULL);
        if (ps == BP_OK && (nl < 1 || layers[0].kind != BP_EMBEDDING))
            return cli_fail(CLI_USAGE, "--arch: --task text reads character ids, so the first layer "
                            "must be embedding(D) (e.g. \"%s\"); got \"%s\"", TEXT_ARCH, a->arch);
    }
    if (!a->given[O_VAL_SPLIT] && !a->val) {
        a->val_split = TEXT_VAL_SPLIT;
        a->val_split_default = 1;
    }
    return CLI_OK;
}

static int parse_args(train_args *a, int argc, char **argv)
{
    static const char *const tasks[] = {"classify", "regress", "text", NULL};
    static const char *const encodings[] = {"utf8", "bytes", NULL};
    static const char *const inits[] = {"he", "xavier", NULL};
    static const char *const opts[] = {"sgd", "momentum", "nesterov", "adam", "adamw",
                                       "rmsprop", "adagrad", NULL};
    static const char *const losses[] = {"mse", "cross-entropy", "bce", NULL};
    static const char *const scheds[] = {"constant", "step", "exp", "cosine", NULL};
    static const char *const norms[] = {"none", "standard", "minmax", NULL};
    memset(a, 0, sizeof *a);
    a->task = a->loss = a->init = a->normalize = a->normalize_target = -1;
    a->optimizer = BP_ADAM;
    a->schedule = BP_SCHED_CONSTANT;
    a->step_size = 10;
    a->batch = 32;
    a->epochs = 10;
    a->seed = 42;
    a->threads = -1;
    cli_parser p = {"train", argc, argv, 1, 0};
    const char *v;
    int k, r = 0, choice;
    while ((k = cli_next(&p, train_opts, &v)) != CLI_ARG_END) {
        const char *name = k >= 0 ? train_opts[k].name : NULL;
        if (k >= 0) a->given[k] = 1;
        switch (k) {
        case CLI_ARG_ERROR: return CLI_USAGE;
        case CLI_ARG_POSITIONAL:
            if (a->data) return cli_fail(CLI_USAGE, "train: unexpected argument '%s' (one DATA file)", v);
            a->data = v;
            break;
        case O_HELP: fputs(usage_train, stdout); return -1;
        case O_LABELS: a->labels = v; break;
        case O_OUT: a->out = v; break;
        case O_TARGET: a->target = v; break;
        case O_TASK:
            r = cli_choice(name, v, tasks, &choice);
            a->task = choice == 0 ? BP_TASK_CLASSIFY : BP_TASK_REGRESS;
            a->text = choice == 2;
            break;
        case O_ARCH: a->arch = v; break;
        case O_LOSS: r = cli_choice(name, v, losses, &a->loss); break;
        case O_INIT: r = cli_choice(name, v, inits, &a->init); break;
        case O_OPTIMIZER:
            r = cli_choice(name, v, opts, &choice);
            a->optimizer = (bp_optimizer)choice;
            break;
        case O_LR: r = cli_double(name, v, 1e-300, 1e300, &a->lr), a->has_lr = 1; break;
        case O_MOMENTUM: r = cli_double(name, v, 0, 1, &a->momentum), a->has_momentum = 1; break;
        case O_WD: r = cli_double(name, v, 0, 1e300, &a->weight_decay), a->has_wd = 1; break;
        case O_L1: r = cli_double(name, v, 0, 1e300, &a->l1); break;
        case O_L2: r = cli_double(name, v, 0, 1e300, &a->l2); break;
        case O_CLIP_NORM: r = cli_double(name, v, 0, 1e300, &a->clip_norm); break;
        case O_CLIP_VALUE: r = cli_double(name, v, 0, 1e300, &a->clip_value); break;
        case O_SCHEDULE:
            r = cli_choice(name, v, scheds, &choice);
            a->schedule = (bp_schedule)choice;
            break;
        case O_WARMUP: r = cli_int(name, v, 0, 1000000000, &a->warmup); break;
        case O_STEP_SIZE: r = cli_int(name, v, 1, 1000000, &a->step_size); break;
        case O_GAMMA: r = cli_double(name, v, 1e-300, 1e300, &a->gamma), a->has_gamma = 1; break;
        case O_MIN_LR: r = cli_double(name, v, 0, 1e300, &a->min_lr); break;
        case O_BATCH: r = cli_int(name, v, 0, 1000000000, &a->batch); break;
        case O_EPOCHS: r = cli_int(name, v, 1, 1000000, &a->epochs); break;
        case O_VAL: a->val = v; break;
        case O_VAL_LABELS: a->val_labels = v; break;
        case O_VAL_SPLIT: r = cli_double(name, v, 0, 1, &a->val_split); break;
        case O_EARLY_STOP: r = cli_int(name, v, 0, 1000000, &a->early_stop); break;
        case O_MIN_DELTA: r = cli_double(name, v, 0, 1e300, &a->min_delta); break;
        case O_NO_SHUFFLE: a->no_shuffle = 1; break;
        case O_SEED: r = cli_u64(name, v, &a->seed); break;
        case O_NORMALIZE: r = cli_choice(name, v, norms, &a->normalize); break;
        case O_NORMALIZE_TARGET: r = cli_choice(name, v, norms, &a->normalize_target); break;
        case O_INIT_FROM: a->init_from = v; break;
        case O_FREEZE: r = cli_int(name, v, 0, 1000000, &a->freeze); break;
        case O_THREADS: r = cli_int(name, v, 0, 4096, &a->threads); break;
        case O_LOG: a->log = v; break;
        case O_PLOT: a->plot = v; break;
        case O_QUIET: a->quiet = 1; break;
        case O_DELIMITER: r = cli_delimiter(name, v, &cli_csv.delimiter), cli_csv.set_delimiter = 1; break;
        case O_SKIP_ROWS: r = cli_int(name, v, 0, 1000000000, &cli_csv.skip_rows), cli_csv.set_skip_rows = 1; break;
        case O_NO_HEADER: cli_csv.no_header = cli_csv.set_no_header = 1; break;
        case O_INPUT_SHAPE: r = cli_shape("--input-shape", v, &a->input_shape); break;
        case O_AUGMENT: r = parse_augment(v, &a->hflip, &a->shift), a->augment = v; break;
        case O_NEW_HEAD: a->new_head = 1; break;
        case O_SYNC_BN: a->sync_bn = 1; break;
        case O_PRECISION: r = cli_precision(name, v, &a->precision); break;
        case O_SEQ_LEN: r = cli_int(name, v, 1, 1000000, &a->seq_len); break;
        case O_ENCODING:
            r = cli_choice(name, v, encodings, &choice);
            a->encoding = choice == 1 ? BP_TEXT_BYTES : BP_TEXT_UTF8;
            break;
        default: break;
        }
        if (r) return r;
    }
    if (!a->data) return cli_fail(CLI_USAGE, "train: missing DATA file (see 'backprop train --help')");
    if (a->plot) {
        /* The plot is SVG; a raster or PDF name would mislabel the file. */
        static const char *const raster[] = {".png", ".jpg", ".jpeg", ".gif", ".pdf", ".bmp", ".tif", ".tiff"};
        const char *dot = strrchr(a->plot, '.');
        for (size_t i = 0; dot && i < sizeof raster / sizeof raster[0]; i++)
            if (strcasecmp(dot, raster[i]) == 0)
                return cli_fail(CLI_USAGE, "--plot writes SVG; name the file .svg, not '%s'", dot);
    }
    if (a->val && a->val_split > 0)
        return cli_fail(CLI_USAGE, "train: give either --val FILE or --val-split F, not both");
    if (a->val_split >= 1)
        return cli_fail(CLI_USAGE, "--val-split: %g is out of range (a fraction in (0, 1))", a->val_split);
    if (a->val_labels && !a->val)
        return cli_fail(CLI_USAGE, "train: --val-labels needs --val FILE");
    if (!a->text && !a->init_from && (a->given[O_SEQ_LEN] || a->given[O_ENCODING]))
        return cli_fail(CLI_USAGE, "train: %s is for --task text (CSV rows become sequences with "
                        "--input-shape T,F)", a->given[O_SEQ_LEN] ? "--seq-len" : "--encoding");
    if (a->text && (r = text_args(a))) return r;
    if (a->val && !a->val_labels && !a->text) {
        int vi = cli_is_idx(a->val);
        if (vi < 0) return CLI_FAIL; /* cannot open: message printed */
        if (vi == 1) return cli_fail(CLI_USAGE, "train: IDX validation images need --val-labels FILE");
    }
    if (a->arch) {
        /* A bad spec is a usage error, found before any data is read. */
        static bp_layer_desc layers[4096];
        int nl = 0;
        bp_error err = {0};
        if (a->arch[strspn(a->arch, " \t")] && bp_spec_parse(a->arch, layers, 4096, &nl, &err) == BP_ESPEC)
            return cli_fail(CLI_USAGE, "--arch: %s", err.message);
    }
    if (a->new_head && !a->init_from)
        return cli_fail(CLI_USAGE, "train: --new-head needs --init-from MODEL (it replaces that "
                        "model's output layer)");
    if (a->freeze && !a->init_from)
        return cli_fail(CLI_USAGE, "train: --freeze K needs --init-from MODEL (frozen layers keep "
                        "their loaded weights)");
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Progress, log and history                                                 */
/* ------------------------------------------------------------------------ */

static volatile sig_atomic_t g_interrupted = 0;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

/* Killed (mpirun ends the other ranks with SIGTERM when one fails): no
 * temporary file stays behind; then die of the signal as before. */
static void on_sigterm(int sig)
{
    cli_remove_temps();
    signal(sig, SIG_DFL);
    raise(sig);
}

typedef struct progress {
    const bp_net *net;
    int tty, quiet, classify;
    int text;               /* --task text: bits per character, characters per second */
    int steps;              /* characters per sample (text: T), for the rate */
    int n_train;
    double t_start, last_draw;
    int drawn;              /* a '\r' line is on screen */
    FILE *log;              /* the log's temporary file or NULL */
    cli_history hist;
    int oom;
} progress;

static void fmt_duration(char *buf, size_t size, double s)
{
    if (!(s >= 0) || s > 360000) {
        snprintf(buf, size, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

static void fmt_rate(char *buf, size_t size, double r)
{
    if (r >= 1e6) snprintf(buf, size, "%.1fM", r / 1e6);
    else if (r >= 1e4) snprintf(buf, size, "%.1fk", r / 1e3);
    else snprintf(buf, size, "%.0f", r);
}

static int on_step(const bp_step_info *si, void *user)
{
    progress *pg = user;
    if (g_interrupted) return 1;
    if (!pg->tty || pg->quiet) return 0;
    double now = cli_now();
    /* At most 10 redraws a second, and none in the first 0.2 s of an epoch
     * (the rate and ETA are noise until then). */
    if (si->batch != si->batches && (now - pg->last_draw < 0.1 || si->seconds < 0.2)) return 0;
    pg->last_draw = now;
    double rate = si->seconds > 0 ? (double)si->samples / si->seconds : 0;
    double left = (double)(pg->n_train - si->samples) + (double)(si->epochs - si->epoch) * pg->n_train;
    double unit = pg->steps > 1 ? pg->steps : 1;
    char eta[32], rs[32];
    fmt_duration(eta, sizeof eta, rate > 0 ? left / rate : -1);
    fmt_rate(rs, sizeof rs, rate * unit);
    int w = 1;
    for (int e = si->epochs; e >= 10; e /= 10) w++;
    int wb = 1;
    for (int b = si->batches; b >= 10; b /= 10) wb++;
    fprintf(stderr, "\r\033[Kepoch %*d/%d  batch %*d/%d  loss %.4f  %s %s/s  ETA %s", w,
            si->epoch, si->epochs, wb, si->batch, si->batches, si->loss, rs,
            pg->text ? "chars" : "samples", eta);
    fflush(stderr);
    pg->drawn = 1;
    return 0;
}

static void log_num(FILE *f, double v)
{
    fputc(',', f);
    if (isnan(v)) return; /* an empty field: no value */
    char b[64];
    cli_fmt_num(b, sizeof b, v);
    fputs(b, f);
}

static int on_epoch(const bp_epoch_info *ei, void *user)
{
    progress *pg = user;
    if (cli_history_add(&pg->hist, ei->train_loss, ei->val_loss, ei->train_accuracy,
                        ei->val_accuracy))
        pg->oom = 1;
    if (pg->log) {
        fprintf(pg->log, "%d", ei->epoch);
        log_num(pg->log, ei->train_loss);
        log_num(pg->log, ei->train_accuracy);
        log_num(pg->log, ei->val_loss);
        log_num(pg->log, ei->val_accuracy);
        log_num(pg->log, ei->lr);
        fprintf(pg->log, ",%.6f", ei->seconds);
        for (int i = 0; i < ei->n_layers; i++)
            if (bp_layer_is_parametric(bp_net_layer(pg->net, i).kind)) log_num(pg->log, ei->grad_norm[i]);
        for (int i = 0; i < ei->n_layers; i++)
            if (bp_net_layer(pg->net, i).kind == BP_RELU) log_num(pg->log, ei->dead_fraction[i]);
        for (int i = 0; i < ei->n_layers; i++)
            if (is_recurrent(bp_net_layer(pg->net, i).kind)) {
                log_num(pg->log, ei->grad_first_step[i]);
                log_num(pg->log, ei->grad_last_step[i]);
            }
        fputc('\n', pg->log);
    }
    if (!pg->quiet && !g_interrupted) {
        if (pg->drawn) fputs("\r\033[K", stderr);
        pg->drawn = 0;
        int w = 1;
        for (int e = ei->epochs; e >= 10; e /= 10) w++;
        fprintf(stderr, "epoch %*d/%d  loss %.4f", w, ei->epoch, ei->epochs, ei->train_loss);
        if (pg->text) fprintf(stderr, "  bpc %.4f", ei->train_loss / M_LN2);
        if (pg->classify || pg->text) fprintf(stderr, "  acc %.4f", ei->train_accuracy);
        if (!isnan(ei->val_loss)) {
            fprintf(stderr, "  val_loss %.4f", ei->val_loss);
            if (pg->text) fprintf(stderr, "  val_bpc %.4f", ei->val_loss / M_LN2);
            if (pg->classify || pg->text) fprintf(stderr, "  val_acc %.4f", ei->val_accuracy);
        }
        fprintf(stderr, "  lr %.3g  %.2fs\n", ei->lr, ei->seconds);
        fflush(stderr);
    }
    return g_interrupted ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Data preparation                                                          */
/* ------------------------------------------------------------------------ */

/* splitmix64: the seeded generator of the validation split. */
static uint64_t split_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* A data set owned by the CLI (x, y malloc'd, no class names). */
static void own_free(bp_data *d)
{
    if (!d) return;
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

/* Move a seeded random `frac` of d's rows into val (and keep the rest in
 * train); both are new arrays. */
static int split_data(const bp_data *d, double frac, uint64_t seed, bp_data *train, bp_data *val)
{
    long nv = lround(frac * d->n);
    if (nv < 1 || nv >= d->n)
        return cli_fail(CLI_USAGE, "--val-split %g of %d rows leaves %ld for validation and %ld "
                        "for training; both need at least 1", frac, d->n, nv, d->n - nv);
    int *perm = malloc((size_t)d->n * sizeof *perm);
    if (!perm) return cli_fail(CLI_FAIL, "out of memory");
    for (int i = 0; i < d->n; i++) perm[i] = i;
    uint64_t s = seed ^ 0x5EEDULL;
    for (int i = d->n - 1; i > 0; i--) {
        int j = (int)(split_next(&s) % (uint64_t)(i + 1));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    /* Keep each part in file order (so --no-shuffle still means file order). */
    char *is_val = calloc((size_t)d->n, 1);
    int st = CLI_OK;
    if (!is_val) st = cli_fail(CLI_FAIL, "out of memory");
    for (long i = 0; !st && i < nv; i++) is_val[perm[d->n - 1 - i]] = 1;
    bp_data *parts[2] = {train, val};
    int counts[2] = {d->n - (int)nv, (int)nv};
    for (int p = 0; !st && p < 2; p++) {
        bp_data *o = parts[p];
        memset(o, 0, sizeof *o);
        o->n = counts[p];
        o->n_inputs = d->n_inputs;
        o->n_targets = d->n_targets;
        o->n_classes = d->n_classes;
        o->shape = d->shape;
        o->x = malloc((size_t)o->n * d->n_inputs * sizeof(bp_real));
        o->y = malloc((size_t)o->n * d->n_targets * sizeof(bp_real));
        if (!o->x || !o->y) {
            st = cli_fail(CLI_FAIL, "out of memory");
            break;
        }
        int q = 0;
        for (int r = 0; r < d->n; r++) {
            if (is_val[r] != p) continue;
            memcpy(o->x + (size_t)q * d->n_inputs, d->x + (size_t)r * d->n_inputs,
                   (size_t)d->n_inputs * sizeof(bp_real));
            memcpy(o->y + (size_t)q * d->n_targets, d->y + (size_t)r * d->n_targets,
                   (size_t)d->n_targets * sizeof(bp_real));
            q++;
        }
    }
    if (st) {
        own_free(train);
        own_free(val);
    }
    free(is_val);
    free(perm);
    return st;
}

/* 1 when every name is a column of the CSV header of `path`. */
static int header_has(const char *path, char *const *names, int n)
{
    int nh = 0, all = 1;
    char **h = cli_csv_header(path, &nh);
    if (!h) return 0;
    for (int i = 0; i < n && all; i++) {
        int found = 0;
        for (int j = 0; j < nh && !found; j++) found = !strcmp(h[j], names[i]);
        all = found;
    }
    bp_strings_free(h, nh);
    return all;
}

/* A warning when the class labels look wrong: integer labels are class
 * indices, so one stray label (200 among 0..9) makes 191 classes that no
 * row has; and a class count near the row count is rather a numeric target
 * or an id column. `src` names the file of the labels. */
static void warn_classes(const bp_data *d, const char *src, char *w, size_t wsize)
{
    int K = d->n_classes, n = d->n;
    int *count = calloc((size_t)K, sizeof *count);
    if (!count) return; /* only a warning */
    for (int r = 0; r < n; r++) {
        int c = (int)d->y[r];
        if (c >= 0 && c < K) count[c]++;
    }
    int empty = 0;
    for (int k = 0; k < K; k++) empty += count[k] == 0;
    if (empty > 0) {
        char list[160];
        size_t len = 0;
        int shown = 0;
        list[0] = '\0';
        for (int k = 0; k < K && shown < 6; k++) {
            if (count[k]) continue;
            const char *nm = d->class_names ? d->class_names[k] : NULL;
            char b[32];
            if (!nm) snprintf(b, sizeof b, "%d", k), nm = b;
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%.20s", shown ? ", " : "", nm);
            if (len >= sizeof list) len = sizeof list - 1;
            shown++;
        }
        snprintf(w, wsize, "%s: %d classes for %d rows, and %d of them have no rows (%s%s): "
                 "integer labels are class indices, so one stray label adds classes (numeric "
                 "targets: --task regress)", src, K, n, empty, list, empty > shown ? ", ..." : "");
    } else if (K >= 10 && 2L * K > n) {
        snprintf(w, wsize, "%s: %d classes for %d rows, most with a single row: is the target "
                 "numeric (--task regress) or an id column (--target)?", src, K, n);
    }
    free(count);
}

/* ------------------------------------------------------------------------ */
/* Metadata                                                                  */
/* ------------------------------------------------------------------------ */

static int meta_set(bp_net *net, const char *key, const char *value)
{
    bp_error err = {0};
    if (!value) return cli_fail(CLI_FAIL, "out of memory");
    if (bp_net_set_meta(net, key, value, &err) != BP_OK) return cli_fail(CLI_FAIL, "%s", err.message);
    return CLI_OK;
}

static int meta_num(bp_net *net, const char *key, double v)
{
    char b[64];
    if (isnan(v)) snprintf(b, sizeof b, "nan");
    else snprintf(b, sizeof b, "%.9g", v);
    return meta_set(net, key, b);
}

static int meta_int(bp_net *net, const char *key, long v)
{
    char b[32];
    snprintf(b, sizeof b, "%ld", v);
    return meta_set(net, key, b);
}

static int meta_names(bp_net *net, const char *key, char *const *names, int n)
{
    char *j = cli_json_array(names, n);
    int st = meta_set(net, key, j);
    free(j);
    return st;
}

/* ------------------------------------------------------------------------ */
/* The command                                                               */
/* ------------------------------------------------------------------------ */

typedef struct train_state {
    train_args a;
    cli_dataset ds, vds;          /* as read */
    bp_data tsplit, vsplit;       /* owned copies after --val-split */
    bp_data *train, *val;         /* what bp_fit sees */
    char **classes;
    int n_classes;
    int classify;
    bp_loss loss;
    bp_norm norm;
    bp_norm tnorm;                /* regression targets' scaling (kind NONE to classify) */
    bp_net *net, *base;
    cli_model_info base_info;
    bp_trainer *tr;
    cli_outfile log, plot;
    progress pg;
    char *spec;
    char warning[512];            /* printed when training starts (an error stays one line) */
    /* --task text */
    int text;
    cli_text tx;                  /* DATA as ids, its vocabulary */
    int seq_len;                  /* T */
    size_t train_chars, val_chars;
    char text_note[512];          /* a note printed when training starts */
} train_state;

static void state_free(train_state *s)
{
    cli_dataset_free(&s->ds);
    cli_dataset_free(&s->vds);
    own_free(&s->tsplit);
    own_free(&s->vsplit);
    bp_strings_free(s->classes, s->n_classes);
    bp_norm_free(&s->norm);
    bp_norm_free(&s->tnorm);
    bp_trainer_free(s->tr);
    bp_net_free(s->net);
    bp_net_free(s->base);
    cli_model_info_free(&s->base_info);
    cli_out_abort(&s->log);
    cli_out_abort(&s->plot);
    cli_history_free(&s->pg.hist);
    free(s->spec);
    cli_text_free(&s->tx);
}

/* 1 when a read failed on the columns matched by name (the message then
 * says by what they were matched). */
static int by_name_error(const char *msg)
{
    return strstr(msg, "missing feature column") || strstr(msg, "is neither a feature") ||
           strstr(msg, "appears twice");
}

/* A CSV whose header names a column twice trains, but its model cannot
 * match the columns by name later (eval, predict), and --target NAME
 * would silently pick the first: refuse it now. */
static int check_unique_columns(const char *path)
{
    int idx = cli_is_idx(path);
    if (idx < 0) return CLI_FAIL;
    if (idx) return CLI_OK;
    int nh = 0, a = 0, b = 0;
    char **h = cli_csv_header(path, &nh);
    if (!h) return CLI_OK; /* the reader reports what is wrong */
    int dup = cli_csv_duplicate(h, nh, &a, &b);
    int st = CLI_OK;
    if (dup < 0) st = cli_fail(CLI_FAIL, "out of memory");
    else if (dup)
        st = cli_fail(CLI_FAIL, "%s: columns %d and %d are both named '%s'; a model finds its "
                      "columns by name, so each name must be unique (rename one)",
                      cli_input_name(path), a + 1, b + 1, h[a]);
    bp_strings_free(h, nh);
    return st;
}

static int prepare_data_reads(train_state *s);

/* Read training and validation data; decide task, loss and classes. The
 * input bytes (read once, see input.c) are released afterwards. */
static int prepare_data(train_state *s)
{
    int st = prepare_data_reads(s);
    cli_inputs_release();
    return st;
}

static int prepare_data_reads(train_state *s)
{
    train_args *a = &s->a;
    cli_read_opts ro;
    memset(&ro, 0, sizeof ro);
    ro.labels = a->labels;
    ro.target = a->target;
    ro.task = a->task >= 0 ? (bp_task)a->task : BP_TASK_AUTO;
    ro.need = CLI_TARGET_REQUIRED;
    char *model_target = NULL;
    if (s->base) {
        cli_model_info *mi = &s->base_info;
        if (a->task < 0) ro.task = mi->classify ? BP_TASK_CLASSIFY : BP_TASK_REGRESS;
        /* --new-head: the data brings its own classes (a fresh output layer). */
        if (mi->classify && ro.task == BP_TASK_CLASSIFY && !a->new_head) {
            ro.class_names = (const char *const *)mi->classes;
            ro.n_class_names = mi->n_classes;
        }
        if (!a->target && mi->targets && !a->labels && header_has(a->data, mi->targets, mi->n_target_names)) {
            model_target = cli_join_names(mi->targets, mi->n_target_names);
            if (!model_target) return cli_fail(CLI_FAIL, "out of memory");
            ro.target = model_target;
        }
        /* The first layer's weights belong to the base model's columns:
         * match them by name, as eval and predict do, so a reordered file
         * is reordered (and a missing or extra column is an error). IDX
         * reads ignore the names. */
        if (!a->labels && mi->features) {
            ro.feature_names = (const char *const *)mi->features;
            ro.n_feature_names = mi->n_features;
        }
    }
    char msg[768];
    msg[0] = '\0';
    int st = a->labels ? 0 : check_unique_columns(a->data);
    if (st) {
        free(model_target);
        return st; /* message printed */
    }
    st = cli_read_data_quiet(&s->ds, a->data, &ro, msg, sizeof msg);
    free(model_target);
    if (st && ro.feature_names && by_name_error(msg))
        return cli_fail(st, "%s (with --init-from, the columns are matched to %s's features by "
                        "name)", msg, a->init_from);
    if (st && ro.class_names && (strstr(msg, "unknown class label") || strstr(msg, "is not a class")))
        return cli_fail(st, "%s (--init-from keeps %s's classes; --new-head replaces its output "
                        "layer to fine-tune on other classes)", msg, a->init_from);
    if (st) return cli_fail(st, "%s", msg);
    bp_data *d = &s->ds.d;
    if (s->base && bp_net_inputs(s->base) != d->n_inputs)
        return cli_fail(CLI_FAIL, "%s takes %d inputs, %s has %d features", a->init_from,
                        bp_net_inputs(s->base), a->data, d->n_inputs);
    if (s->ds.is_idx && a->task == BP_TASK_REGRESS) {
        /* IDX labels as numbers: a regression target. */
        bp_strings_free(d->class_names, d->n_classes);
        d->class_names = NULL;
        d->n_classes = 0;
    }
    s->classify = d->n_classes > 0;
    if (s->classify && !ro.class_names)
        warn_classes(d, a->labels ? a->labels : a->data, s->warning, sizeof s->warning);

    /* Loss for the task. */
    if (a->loss >= 0) s->loss = (bp_loss)a->loss;
    else if (s->base) s->loss = s->base_info.loss;
    else s->loss = s->classify ? BP_LOSS_CROSS_ENTROPY : BP_LOSS_MSE;
    if (s->classify && s->loss == BP_LOSS_MSE)
        return cli_fail(CLI_USAGE, "train: --loss mse is for regression; %s has class labels (use "
                        "--task regress for numeric targets)", a->data);
    if (!s->classify && s->loss != BP_LOSS_MSE)
        return cli_fail(CLI_USAGE, "train: --loss %s needs class labels; the targets of %s are "
                        "real numbers (use --task classify, or --loss mse)", bp_loss_name(s->loss),
                        a->data);
    if (s->loss == BP_LOSS_BCE && d->n_classes != 2)
        return cli_fail(CLI_USAGE, "train: --loss bce needs exactly 2 classes, %s has %d", a->data,
                        d->n_classes);

    /* Class names: the file's, else the indices. */
    if (s->classify) {
        s->n_classes = d->n_classes;
        s->classes = calloc((size_t)s->n_classes, sizeof *s->classes);
        if (!s->classes) return cli_fail(CLI_FAIL, "out of memory");
        for (int i = 0; i < s->n_classes; i++) {
            s->classes[i] = d->class_names ? cli_strdup(d->class_names[i]) : cli_printf("%d", i);
            if (!s->classes[i]) return cli_fail(CLI_FAIL, "out of memory");
        }
    }

    s->train = d;
    if (a->val) {
        cli_read_opts vo = ro;
        vo.labels = a->val_labels;
        vo.task = s->classify ? BP_TASK_CLASSIFY : BP_TASK_REGRESS;
        vo.class_names = s->classify ? (const char *const *)s->classes : NULL;
        vo.n_class_names = s->classify ? s->n_classes : 0;
        /* The validation columns by the training file's names (reordered
         * to its order), not by position. */
        vo.feature_names = (const char *const *)s->ds.features;
        vo.n_feature_names = s->ds.features ? d->n_inputs : 0;
        /* The training targets by name too (also when --target gave an
         * index: the validation file's columns may be in another order). */
        if (!s->ds.is_idx && s->ds.targets &&
            header_has(a->val, s->ds.targets, s->ds.n_target_names)) {
            model_target = cli_join_names(s->ds.targets, s->ds.n_target_names);
            if (!model_target) return cli_fail(CLI_FAIL, "out of memory");
            vo.target = model_target;
        }
        st = cli_read_data_quiet(&s->vds, a->val, &vo, msg, sizeof msg);
        free(model_target);
        if (st && vo.feature_names && by_name_error(msg))
            return cli_fail(st, "%s (--val columns are matched to %s's by name)", msg, a->data);
        if (st) return cli_fail(st, "%s", msg);
        bp_data *v = &s->vds.d;
        if (s->vds.is_idx && !s->classify) {
            bp_strings_free(v->class_names, v->n_classes);
            v->class_names = NULL;
            v->n_classes = 0;
        }
        if (v->n_inputs != d->n_inputs)
            return cli_fail(CLI_FAIL, "%s has %d features, the training data %s has %d", a->val,
                            v->n_inputs, a->data, d->n_inputs);
        if (v->n_targets != d->n_targets)
            return cli_fail(CLI_FAIL, "%s has %d targets, the training data %s has %d", a->val,
                            v->n_targets, a->data, d->n_targets);
        s->val = v;
    } else if (a->val_split > 0) {
        st = split_data(d, a->val_split, a->seed, &s->tsplit, &s->vsplit);
        if (st) return st;
        s->train = &s->tsplit;
        s->val = &s->vsplit;
        /* The full copy is no longer needed (keep the names). */
        free(d->x);
        free(d->y);
        d->x = d->y = NULL;
    }
    /* (bce takes 0/1 targets: the class index of two classes is exactly that.) */
    return CLI_OK;
}

/* Give a and b one vocabulary, the union of theirs (sorted), and renumber
 * their ids. 0, or -1 out of memory. */
static int text_union(cli_text *a, cli_text *b)
{
    const bp_vocab *va = &a->vocab, *vb = &b->vocab;
    uint32_t *u = malloc((size_t)(va->size + vb->size) * sizeof *u);
    int *ma = malloc((size_t)va->size * sizeof *ma), *mb = malloc((size_t)vb->size * sizeof *mb);
    if (!u || !ma || !mb) {
        free(u);
        free(ma);
        free(mb);
        return -1;
    }
    int i = 0, j = 0, n = 0;
    while (i < va->size || j < vb->size) {
        uint32_t x = i < va->size ? va->symbols[i] : UINT32_MAX;
        uint32_t y = j < vb->size ? vb->symbols[j] : UINT32_MAX;
        if (x <= y) ma[i++] = n;
        if (y <= x) mb[j++] = n;
        u[n++] = x < y ? x : y;
    }
    for (size_t k = 0; k < a->n; k++) a->ids[k] = ma[a->ids[k]];
    for (size_t k = 0; k < b->n; k++) b->ids[k] = mb[b->ids[k]];
    free(ma);
    free(mb);
    free(a->vocab.symbols);
    a->vocab.symbols = u;
    a->vocab.size = n;
    return 0;
}

/* --task text: DATA as ids, split into the training text and the held-out
 * tail (or --val), each laid out as --batch streams of --seq-len windows. */
static int prepare_text_reads(train_state *s)
{
    train_args *a = &s->a;
    char msg[768];
    const char *name = cli_input_name(a->data);
    const bp_vocab *fixed = s->base ? &s->base_info.vocab : NULL;
    bp_text_encoding enc = fixed ? fixed->encoding : a->encoding;
    int B = a->batch, st;
    if (fixed && a->given[O_ENCODING] && a->encoding != enc)
        return cli_fail(CLI_USAGE, "--encoding %s, but %s reads %s (--init-from keeps its "
                        "vocabulary)", bp_text_encoding_name(a->encoding), a->init_from,
                        bp_text_encoding_name(enc));
    s->seq_len = a->seq_len ? a->seq_len : TEXT_SEQ_LEN;
    if (fixed) {
        if (a->seq_len && a->seq_len != s->base_info.seq_len)
            return cli_fail(CLI_USAGE, "--seq-len %d, but %s reads windows of %d (--init-from keeps "
                            "its input shape)", a->seq_len, a->init_from, s->base_info.seq_len);
        s->seq_len = s->base_info.seq_len;
    }
    int T = s->seq_len;
    const char *hint = enc == BP_TEXT_UTF8 ? (fixed ? "; the model reads UTF-8"
                                                    : "; not UTF-8? --encoding bytes reads any file "
                                                      "as bytes")
                                           : NULL;
    if ((st = cli_text_read(&s->tx, a->data, enc, fixed, hint, msg, sizeof msg)))
        return cli_fail(st, "%s", msg);
    size_t N = s->tx.n;
    int V = s->tx.vocab.size;
    if (N == 0) return cli_fail(CLI_FAIL, "%s: empty text (nothing to learn)", name);
    if (N == 1) return cli_fail(CLI_FAIL, "%s: a text of 1 character has nothing to learn (training "
                                "predicts each next character)", name);
    if (V < 2) {
        return cli_fail(CLI_FAIL, "%s: the text repeats a single character: nothing to learn (the "
                        "vocabulary needs at least 2 distinct characters)", name);
    }
    /* The held-out tail, or --val FILE with DATA's vocabulary. */
    size_t nv = 0;
    cli_text vt;
    memset(&vt, 0, sizeof vt);
    if (a->val) {
        /* The vocabulary is DATA's and --val's characters together (a
         * fine-tuned model's own: a character outside it is an error). */
        if ((st = cli_text_read(&vt, a->val, enc, fixed, hint, msg, sizeof msg)))
            return cli_fail(st, "%s%s", msg, fixed ? " (--init-from keeps the model's vocabulary)" : "");
        if (!fixed && text_union(&s->tx, &vt)) {
            cli_text_free(&vt);
            return cli_fail(CLI_FAIL, "out of memory");
        }
        V = s->tx.vocab.size;
    } else if (a->val_split > 0) {
        nv = (size_t)llround(a->val_split * (double)N);
    }
    size_t nt = N - nv;
    long need = (long)B * T + 1;
    if ((long)nt - 1 < (long)B * T || nt > (size_t)0x7fffffff * (size_t)T) {
        cli_text_free(&vt);
        if (nv && (long)N - 1 >= (long)B * T)
            return cli_fail(CLI_FAIL, "%s: the training text has %zu characters after holding out "
                            "the last %zu for validation (--val-split %g); %d streams (--batch) of "
                            "windows of %d characters (--seq-len) need at least %ld: lower --batch "
                            "or --seq-len", name, nt, nv, a->val_split, B, T, need);
        return cli_fail(CLI_FAIL, "%s: the text has %zu characters; %d streams (--batch) of windows "
                        "of %d characters (--seq-len) need at least %ld: lower --batch or --seq-len",
                        name, N, B, T, need);
    }
    if (cli_text_windows(s->tx.ids, nt, B, T, V, &s->tsplit) < 0) {
        cli_text_free(&vt);
        return cli_fail(CLI_FAIL, "out of memory");
    }
    s->train = &s->tsplit;
    s->train_chars = nt;
    const int32_t *vids = a->val ? vt.ids : s->tx.ids + nt;
    size_t vn = a->val ? vt.n : nv;
    if (a->val || nv) {
        int rows = cli_text_windows(vids, vn, B, T, V, &s->vsplit);
        cli_text_free(&vt);
        if (rows < 0) return cli_fail(CLI_FAIL, "out of memory");
        if (rows == 0 && a->val_split_default) {
            /* The default split of a short text: train on all of it. */
            snprintf(s->text_note, sizeof s->text_note, "no validation: the last 10%% of %s (%zu "
                     "characters) is shorter than one window per stream (%ld for %d streams of "
                     "%d); --val-split F or --val FILE sets one", name, vn, need, B, T);
            own_free(&s->tsplit);
            a->val_split = 0;
            nt = N;
            if (cli_text_windows(s->tx.ids, nt, B, T, V, &s->tsplit) < 0)
                return cli_fail(CLI_FAIL, "out of memory");
            s->train_chars = nt;
        } else if (rows == 0) {
            return cli_fail(CLI_FAIL, "%s: the validation text has %zu characters; %d streams "
                            "(--batch) of windows of %d characters (--seq-len) need at least %ld: %s",
                            a->val ? cli_input_name(a->val) : name, vn, B, T, need,
                            a->val ? "give a longer text, or lower --batch or --seq-len"
                                   : "raise --val-split, lower --batch or --seq-len, or --val-split 0");
        } else {
            s->val = &s->vsplit;
            s->val_chars = vn;
        }
    }
    s->classify = 0;
    s->loss = BP_LOSS_CROSS_ENTROPY;
    return CLI_OK;
}

static int prepare_text(train_state *s)
{
    int st = prepare_text_reads(s);
    cli_inputs_release();
    return st;
}

static int prepare_norm(train_state *s)
{
    train_args *a = &s->a;
    bp_error err = {0};
    if (s->text) return CLI_OK; /* token ids */
    if (a->normalize < 0 && s->base && bp_net_get_meta(s->base, "normalize")) {
        /* Fine-tuning keeps the input scaling the weights were trained with. */
        if (bp_norm_from_meta(&s->norm, s->base, &err) != BP_OK)
            return cli_fail(CLI_FAIL, "%s: %s", a->init_from, err.message);
    } else {
        bp_norm_kind k = a->normalize >= 0 ? (bp_norm_kind)a->normalize
                       : s->ds.is_idx      ? BP_NORM_NONE
                                           : BP_NORM_STANDARD;
        if (bp_norm_fit(&s->norm, s->train, k, &err) != BP_OK)
            return cli_fail(CLI_FAIL, "%s", err.message);
    }
    if (s->norm.kind != BP_NORM_NONE) {
        if (s->norm.n != s->train->n_inputs)
            return cli_fail(CLI_FAIL, "%s: the model normalizes %d features, %s has %d",
                            a->init_from, s->norm.n, a->data, s->train->n_inputs);
        if (bp_norm_apply(&s->norm, s->train, &err) != BP_OK ||
            (s->val && bp_norm_apply(&s->norm, s->val, &err) != BP_OK))
            return cli_fail(CLI_FAIL, "%s", err.message);
    }
    if (s->classify) return CLI_OK;
    /* Regression targets: standardized by default (as sklearn's
     * TransformedTargetRegressor with a StandardScaler), so that targets in
     * the thousands train with the default learning rate; eval and predict
     * invert it. Fine-tuning keeps the base model's scaling (none for a
     * model that has none stored): its output weights were trained for it. */
    if (a->normalize_target < 0 && s->base) {
        if (bp_norm_targets_from_meta(&s->tnorm, s->base, &err) != BP_OK)
            return cli_fail(CLI_FAIL, "%s: %s", a->init_from, err.message);
    } else {
        bp_norm_kind k = a->normalize_target >= 0 ? (bp_norm_kind)a->normalize_target
                                                  : BP_NORM_STANDARD;
        if (bp_norm_fit_targets(&s->tnorm, s->train, k, &err) != BP_OK)
            return cli_fail(CLI_FAIL, "%s", err.message);
    }
    if (s->tnorm.kind != BP_NORM_NONE) {
        if (s->tnorm.n != s->train->n_targets)
            return cli_fail(CLI_FAIL, "%s: the model scales %d targets, %s has %d", a->init_from,
                            s->tnorm.n, a->data, s->train->n_targets);
        if (bp_norm_apply_targets(&s->tnorm, s->train, &err) != BP_OK ||
            (s->val && bp_norm_apply_targets(&s->tnorm, s->val, &err) != BP_OK))
            return cli_fail(CLI_FAIL, "%s", err.message);
    }
    return CLI_OK;
}

/* Mean squared error of `net` on d in the targets' own units: d->y and the
 * outputs are standardized, and an error e there is e / scale in the
 * original units. (The mse loss is the mean over rows and targets.) */
static int original_mse(bp_net *net, const bp_data *d, const bp_norm *tn, double *out)
{
    enum { B = 256 };
    int T = d->n_targets;
    bp_real *o = malloc((size_t)B * T * sizeof *o);
    if (!o) return cli_fail(CLI_FAIL, "out of memory");
    bp_error err = {0};
    double sum = 0;
    for (int r0 = 0; r0 < d->n; r0 += B) {
        int k = d->n - r0 < B ? d->n - r0 : B;
        if (bp_forward(net, d->x + (size_t)r0 * d->n_inputs, k, o, &err) != BP_OK) {
            free(o);
            return cli_fail(CLI_FAIL, "%s", err.message);
        }
        for (int i = 0; i < k; i++)
            for (int t = 0; t < T; t++) {
                double e = ((double)o[(size_t)i * T + t] - d->y[(size_t)(r0 + i) * T + t]) /
                           tn->scale[t];
                sum += e * e;
            }
    }
    free(o);
    *out = sum / ((double)d->n * T);
    return CLI_OK;
}

/* 1 when the spec's first layer that is one of kinds[0..n) exists. */
static int spec_has(const char *spec, const bp_layer_kind *kinds, int nk)
{
    int n = 0;
    if (bp_spec_parse(spec, NULL, 0, &n, NULL) != BP_OK || n < 1) return 0;
    bp_layer_desc *d = calloc((size_t)n, sizeof *d);
    int has = 0;
    if (d && bp_spec_parse(spec, d, n, &n, NULL) == BP_OK)
        for (int i = 0; i < n; i++)
            for (int k = 0; k < nk; k++) has |= d[i].kind == kinds[k];
    free(d);
    return has;
}

/* 1 when the spec has a layer that needs image inputs (conv, pools). */
static int spec_needs_image(const char *spec)
{
    static const bp_layer_kind img[] = {BP_CONV, BP_MAXPOOL, BP_AVGPOOL, BP_GLOBAL_AVGPOOL};
    return spec_has(spec, img, 4);
}

static int shape_equal(bp_shape a, bp_shape b)
{
    if (a.rank <= 1 && b.rank <= 1) return bp_shape_size(a) == bp_shape_size(b);
    if (a.rank != b.rank) return 0;
    for (int k = 0; k < a.rank; k++)
        if (a.dim[k] != b.dim[k]) return 0;
    return 1;
}

/* "C,H,W" (no spaces) into buf. */
static void shape_arg(char *buf, size_t size, bp_shape sh)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int k = 0; k < sh.rank && len < size; k++)
        len += (size_t)snprintf(buf + len, size - len, "%s%d", k ? "," : "", sh.dim[k]);
}

/* The input shape of the network: --input-shape, else the base model's
 * (--init-from), else the data's (IDX images are [1, H, W]), else flat. */
static int choose_shape(train_state *s, bp_shape *out)
{
    train_args *a = &s->a;
    int n_in = s->train->n_inputs;
    char b1[64], b2[64];
    if (s->text) {
        *out = bp_shape_flat(s->seq_len); /* --seq-len token ids */
    } else if (a->input_shape.rank > 0) {
        shape_arg(b1, sizeof b1, a->input_shape);
        if (bp_shape_size(a->input_shape) != (size_t)n_in)
            return cli_fail(CLI_USAGE, "--input-shape %s has %zu values, but %s has %d features "
                            "per row", b1, bp_shape_size(a->input_shape), a->data, n_in);
        *out = a->input_shape;
    } else if (s->base) {
        *out = bp_net_input_shape(s->base);
    } else if (s->train->shape.rank > 1 && bp_shape_size(s->train->shape) == (size_t)n_in) {
        *out = s->train->shape;
    } else {
        *out = bp_shape_flat(n_in);
    }
    if (s->base && !shape_equal(*out, bp_net_input_shape(s->base))) {
        shape_arg(b1, sizeof b1, *out);
        shape_arg(b2, sizeof b2, bp_net_input_shape(s->base));
        return cli_fail(CLI_USAGE, "--input-shape %s, but %s takes inputs of shape %s", b1,
                        a->init_from, b2);
    }
    if ((a->hflip || a->shift) && out->rank != 3)
        return cli_fail(CLI_USAGE, "--augment needs image inputs [C,H,W] (IDX images, or "
                        "--input-shape C,H,W for CSV rows); %s is %s (%d features)", a->data,
                        out->rank == 2 ? "a sequence [T,F]" : "flat", n_in);
    return CLI_OK;
}

/* A network creation error: a spec error is a usage error; on flat data a
 * conv or pool layer gets the hint to give the rows a shape. */
static int create_error(const train_state *s, bp_shape sh, const bp_error *err)
{
    if (err->code != BP_ESPEC) return cli_fail(CLI_FAIL, "--arch: %s", err->message);
    if (sh.rank <= 1 && spec_needs_image(s->spec))
        return cli_fail(CLI_USAGE, "--arch: %s; the rows of %s are flat (%zu features): pass "
                        "--input-shape C,H,W", err->message, s->a.data, bp_shape_size(sh));
    static const bp_layer_kind seq[] = {BP_RNN, BP_LSTM, BP_GRU, BP_LAST};
    static const bp_layer_kind emb[] = {BP_EMBEDDING};
    if (!s->text && spec_has(s->spec, emb, 1))
        return cli_fail(CLI_USAGE, "--arch: %s; embedding reads token ids: --task text trains on "
                        "plain text", err->message);
    if (!s->text && sh.rank != 2 && spec_has(s->spec, seq, 4)) {
        char b[64];
        bp_shape_format(sh, b, sizeof b);
        return cli_fail(CLI_USAGE, "--arch: %s; the samples of %s are %s: --input-shape T,F reads "
                        "each as a sequence of T steps of F features%s", err->message, s->a.data, b,
                        sh.rank == 3 && sh.dim[0] == 1 ? " (images row by row: --input-shape H,W)" : "");
    }
    return cli_fail(CLI_USAGE, "--arch: %s", err->message);
}

/* The base's spec with its last dense layer replaced by dense(outs)
 * (--new-head); *head the index of that layer. The canonical spec holds
 * one word per layer, separated by single spaces. */
static char *new_head_spec(const bp_net *base, int outs, int *head)
{
    const char *spec = bp_net_spec(base);
    *head = -1;
    for (int i = 0; i < bp_net_layers(base); i++)
        if (bp_net_layer(base, i).kind == BP_DENSE) *head = i;
    if (*head < 0) return NULL;
    const char *p = spec;
    for (int i = 0; i < *head && p; i++) {
        p = strchr(p, ' ');
        if (p) p++;
    }
    if (!p || strncmp(p, "dense(", 6)) return NULL;
    const char *q = strchr(p, ' ');
    return cli_printf("%.*sdense(%d)%s", (int)(p - spec), spec, outs, q ? q : "");
}

static int prepare_net(train_state *s)
{
    train_args *a = &s->a;
    bp_error err = {0};
    int outs = s->loss == BP_LOSS_BCE ? 1 : s->classify ? s->n_classes : s->train->n_targets;
    if (s->text) {
        /* embedding(D) gets the vocabulary size; dense(V) acts on every step. */
        int V = s->tx.vocab.size;
        outs = s->seq_len * V;
        const char *arch = a->arch ? a->arch : TEXT_ARCH;
        bp_layer_desc d0;
        int nl = 0;
        bp_layer_desc *all = NULL;
        if (bp_spec_parse(arch, NULL, 0, &nl, &err) != BP_OK || nl < 1 ||
            !(all = calloc((size_t)nl, sizeof *all)) || bp_spec_parse(arch, all, nl, &nl, &err) != BP_OK) {
            free(all);
            return cli_fail(CLI_USAGE, "--arch: %s", err.message[0] ? err.message : "out of memory");
        }
        d0 = all[0];
        free(all);
        if (d0.vocab && d0.vocab != V)
            return cli_fail(CLI_USAGE, "--arch: embedding(%d,%d) takes %d token ids, but %s has %d "
                            "distinct characters (give embedding(%d): the command line fills in the "
                            "vocabulary size)", d0.units, d0.vocab, d0.vocab, a->data, V, d0.units);
        const char *rest = strchr(arch, ')');
        rest = rest ? rest + 1 : "";
        size_t rl = strlen(rest);
        while (rl && (rest[rl - 1] == ' ' || rest[rl - 1] == '\t')) rl--;
        s->spec = cli_printf("embedding(%d,%d)%.*s dense(%d)", d0.units, V, (int)rl, rest, V);
    } else {
        const char *arch = a->arch ? a->arch : DEFAULT_ARCH;
        size_t al = strlen(arch);
        while (al && (arch[al - 1] == ' ' || arch[al - 1] == '\t')) al--;
        s->spec = cli_printf("%.*s%sdense(%d)", (int)al, arch, al ? " " : "", outs);
    }
    if (!s->spec) return cli_fail(CLI_FAIL, "out of memory");
    int n_in = s->train->n_inputs, st;
    bp_shape sh;
    if (s->base && bp_net_inputs(s->base) != n_in)
        return cli_fail(CLI_FAIL, "%s takes %d inputs, %s has %d features", a->init_from,
                        bp_net_inputs(s->base), a->data, n_in);
    if ((st = choose_shape(s, &sh))) return st;
    if (s->base) {
        /* The network to build: the base's, or with --new-head the base's
         * with a fresh output layer for this data. */
        int head = -1;
        char *target = NULL;
        if (a->new_head) {
            target = new_head_spec(s->base, outs, &head);
            if (!target)
                return cli_fail(CLI_FAIL, "%s: --new-head replaces the last dense layer, and '%s' "
                                "has none", a->init_from, bp_net_spec(s->base));
        } else if (bp_net_outputs(s->base) != outs) {
            return cli_fail(CLI_FAIL, "%s has %d outputs, the data and loss need %d (--new-head "
                            "replaces the output layer to fine-tune on other classes)",
                            a->init_from, bp_net_outputs(s->base), outs);
        } else if (!(target = cli_strdup(bp_net_spec(s->base)))) {
            return cli_fail(CLI_FAIL, "out of memory");
        }
        if (!target) return cli_fail(CLI_FAIL, "out of memory");
        if (a->arch) {
            bp_net *probe = NULL;
            if (bp_net_create_shaped(&probe, sh, s->spec, 1, &err) != BP_OK) {
                free(target);
                return create_error(s, sh, &err);
            }
            int same = !strcmp(bp_net_spec(probe), target);
            if (!same)
                cli_fail(CLI_USAGE, "--arch gives '%s', but %s is '%s'", bp_net_spec(probe),
                         a->init_from, target);
            bp_net_free(probe);
            if (!same) {
                free(target);
                return CLI_USAGE;
            }
        }
        /* A new network with the base's tensors (parameters and buffers;
         * all but the new head's): the metadata starts empty, so nothing
         * of the base's training settings lingers. */
        bp_status cs = bp_net_create_shaped(&s->net, sh, target, a->seed, &err);
        free(target);
        if (cs != BP_OK) return cli_fail(CLI_FAIL, "%s: %s", a->init_from, err.message);
        if (bp_net_tensor_count(s->net) != bp_net_tensor_count(s->base))
            return cli_fail(CLI_FAIL, "%s: the rebuilt network has %d tensors, the model %d",
                            a->init_from, bp_net_tensor_count(s->net), bp_net_tensor_count(s->base));
        for (int j = 0; j < bp_net_tensor_count(s->net); j++) {
            bp_tensor t, b;
            bp_net_tensor(s->net, j, &t);
            bp_net_tensor(s->base, j, &b);
            if (t.layer == head) continue; /* fresh, from --seed */
            if (strcmp(t.name, b.name) || t.count != b.count || t.dtype != b.dtype)
                return cli_fail(CLI_FAIL, "%s: tensor %s does not match the rebuilt network's %s",
                                a->init_from, b.name, t.name);
            if (t.dtype == BP_DTYPE_I64) memcpy(t.i64, b.i64, t.count * sizeof *t.i64);
            else memcpy(t.data, b.data, t.count * sizeof *t.data);
        }
    } else {
        /* Refuse a network too large for the machine before creating it
         * (bp_trainer_create checks again with the exact settings). */
        bp_train_config mc;
        bp_train_config_default(&mc, a->optimizer == BP_SGD && a->has_momentum && a->momentum > 0
                                         ? BP_MOMENTUM : a->optimizer);
        mc.loss = s->loss;
        mc.patience = a->early_stop;
        int n = s->train->n, mb = a->batch == 0 || a->batch > n ? n : a->batch;
        if (bp_train_memory_check_shaped(s->spec, sh, &mc, mb, &err) == BP_ENOMEM)
            return cli_fail(CLI_FAIL, "%s", err.message);
        if (bp_net_create_shaped(&s->net, sh, s->spec, a->seed, &err) != BP_OK)
            return create_error(s, sh, &err);
        if (a->init >= 0) {
            bp_init scheme = a->init == 0 ? BP_INIT_HE_UNIFORM : BP_INIT_XAVIER_UNIFORM;
            if (bp_net_init(s->net, scheme, a->seed, &err) != BP_OK)
                return cli_fail(CLI_FAIL, "%s", err.message);
        }
    }
    if (s->text && (bp_net_loss_steps(s->net, s->loss) != s->seq_len || bp_net_outputs(s->net) != outs)) {
        char b[64];
        bp_shape_format(bp_net_layer_shape(s->net, bp_net_layers(s->net) - 1), b, sizeof b);
        return cli_fail(CLI_USAGE, "--arch: --task text predicts the next character at each of the "
                        "%d steps, so the network must keep the sequence up to its output layer "
                        "(dense(%d) on every step); '%s' gives %s per sample (leave out last and "
                        "flatten)", s->seq_len, s->tx.vocab.size, bp_net_spec(s->net), b);
    }
    if (bp_net_outputs(s->net) != outs) {
        /* A dense on [T, F] acts on each step: [T, units] outputs. */
        char b[64];
        bp_shape_format(bp_net_layer_shape(s->net, bp_net_layers(s->net) - 1), b, sizeof b);
        return cli_fail(CLI_USAGE, "--arch: the network gives %d outputs per sample (%s), the data "
                        "and loss need %d (a dense on a sequence [T,F] acts on each step: put last "
                        "(its final step) or flatten before it)", bp_net_outputs(s->net), b, outs);
    }
    return CLI_OK;
}

/* What a text model reads: its vocabulary and windows. */
static int store_text_meta(train_state *s)
{
    bp_net *net = s->net;
    bp_error err = {0};
    int st = 0;
    st = st ? st : meta_set(net, "task", "text");
    st = st ? st : meta_set(net, "loss", bp_loss_name(s->loss));
    if (!st && bp_vocab_to_meta(&s->tx.vocab, net, &err) != BP_OK)
        return cli_fail(CLI_FAIL, "%s", err.message);
    st = st ? st : meta_int(net, "vocab_size", s->tx.vocab.size);
    st = st ? st : meta_int(net, "seq_len", s->seq_len);
    st = st ? st : meta_set(net, "data_format", "text");
    st = st ? st : meta_int(net, "train_chars", (long)s->train_chars);
    if (s->val) st = st ? st : meta_int(net, "val_chars", (long)s->val_chars);
    return st;
}

/* What a CSV or IDX model reads: task, classes, columns, normalization. */
static int store_data_meta(train_state *s)
{
    bp_net *net = s->net;
    bp_error err = {0};
    int st = 0;
    st = st ? st : meta_set(net, "task", s->classify ? "classify" : "regress");
    st = st ? st : meta_set(net, "loss", bp_loss_name(s->loss));
    if (s->classify) {
        st = st ? st : meta_names(net, "classes", s->classes, s->n_classes);
        st = st ? st : meta_int(net, "n_classes", s->n_classes);
    }
    st = st ? st : meta_int(net, "n_targets", s->classify ? 1 : s->train->n_targets);
    if (s->ds.targets) st = st ? st : meta_names(net, "targets", s->ds.targets, s->ds.n_target_names);
    if (s->ds.features) st = st ? st : meta_names(net, "features", s->ds.features, s->ds.d.n_inputs);
    st = st ? st : meta_set(net, "data_format", s->ds.is_idx ? "idx" : "csv");
    if (!s->ds.is_idx) {
        /* The CSV dialect, so eval and predict read files the same way. */
        char delim[2] = {cli_csv.delimiter ? cli_csv.delimiter : ',', '\0'};
        st = st ? st : meta_set(net, "csv_delimiter", delim);
        st = st ? st : meta_int(net, "csv_skip_rows", cli_csv.skip_rows);
        st = st ? st : meta_set(net, "csv_header", cli_csv.no_header ? "0" : "1");
    }
    if (st) return st;
    if (bp_norm_to_meta(&s->norm, net, &err) != BP_OK) return cli_fail(CLI_FAIL, "%s", err.message);
    if (!s->classify && bp_norm_targets_to_meta(&s->tnorm, net, &err) != BP_OK)
        return cli_fail(CLI_FAIL, "%s", err.message);
    return CLI_OK;
}

/* Training settings and data description, stored in the model. */
static int store_meta(train_state *s, long batches)
{
    train_args *a = &s->a;
    bp_net *net = s->net;
    int st = s->text ? store_text_meta(s) : store_data_meta(s);
    if (st) return st;
    const char *hidden = a->arch ? a->arch : s->text ? TEXT_ARCH : DEFAULT_ARCH;
    if (a->init_from && !a->arch) hidden = bp_net_get_meta(s->base, "hidden");
    if (hidden) st = st ? st : meta_set(net, "hidden", hidden);
    if (!a->init_from)
        st = st ? st : meta_set(net, "init", a->init < 0 ? "default" : a->init == 0 ? "he" : "xavier");
    if (a->init_from) st = st ? st : meta_set(net, "init_from", a->init_from);
    st = st ? st : meta_set(net, "optimizer", bp_optimizer_name(a->optimizer));
    st = st ? st : meta_num(net, "lr", a->lr);
    st = st ? st : meta_num(net, "momentum", a->momentum);
    st = st ? st : meta_num(net, "weight_decay", a->weight_decay);
    st = st ? st : meta_num(net, "l1", a->l1);
    st = st ? st : meta_num(net, "l2", a->l2);
    st = st ? st : meta_num(net, "clip_norm", a->clip_norm);
    st = st ? st : meta_num(net, "clip_value", a->clip_value);
    st = st ? st : meta_set(net, "schedule", bp_schedule_name(a->schedule));
    st = st ? st : meta_int(net, "warmup", a->warmup);
    if (a->schedule == BP_SCHED_STEP) st = st ? st : meta_int(net, "step_size", a->step_size);
    if (a->schedule == BP_SCHED_STEP || a->schedule == BP_SCHED_EXP)
        st = st ? st : meta_num(net, "gamma", a->gamma);
    if (a->schedule == BP_SCHED_COSINE) st = st ? st : meta_num(net, "min_lr", a->min_lr);
    st = st ? st : meta_int(net, "batch", a->batch);
    const bp_comm *comm = cli_dist_comm();
    st = st ? st : meta_int(net, "ranks", comm ? comm->size : 1);
    if (a->sync_bn) st = st ? st : meta_set(net, "sync_batchnorm", "1");
    /* The products' arithmetic in training; the tensors are float32 either way. */
    st = st ? st : meta_set(net, "precision", cli_precision_name(a->precision));
    st = st ? st : meta_int(net, "steps_per_epoch", batches);
    st = st ? st : meta_int(net, "epochs", a->epochs);
    st = st ? st : meta_set(net, "shuffle", a->no_shuffle || s->text ? "0" : "1");
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)a->seed);
    st = st ? st : meta_set(net, "seed", seed);
    if (a->val) st = st ? st : meta_set(net, "validation", a->val);
    if (a->val_split > 0) st = st ? st : meta_num(net, "val_split", a->val_split);
    st = st ? st : meta_int(net, "early_stop", a->early_stop);
    st = st ? st : meta_int(net, "freeze", a->freeze);
    st = st ? st : meta_set(net, "augment", a->augment ? a->augment : "none");
    if (a->new_head) st = st ? st : meta_set(net, "new_head", "1");
    st = st ? st : meta_int(net, "train_samples", s->train->n);
    if (s->val) st = st ? st : meta_int(net, "val_samples", s->val->n);
    st = st ? st : meta_set(net, "backprop_version", bp_version());
    return st;
}

static void write_log_header(FILE *f, const bp_net *net)
{
    fputs("epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds", f);
    for (int i = 0; i < bp_net_layers(net); i++)
        if (bp_layer_is_parametric(bp_net_layer(net, i).kind)) fprintf(f, ",grad_norm_%d", i);
    for (int i = 0; i < bp_net_layers(net); i++)
        if (bp_net_layer(net, i).kind == BP_RELU) fprintf(f, ",dead_%d", i);
    for (int i = 0; i < bp_net_layers(net); i++)
        if (is_recurrent(bp_net_layer(net, i).kind)) fprintf(f, ",grad_first_step_%d,grad_last_step_%d", i, i);
    fputc('\n', f);
}

static int run_steps(train_state *s);

static void note(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("backprop: note: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* One line on stderr for each option that was given but does nothing with
 * the others (not an error: the run is what it would be without it).
 * `opt` is the optimizer used (sgd with a momentum is the momentum one). */
static void notices(const train_state *s, bp_optimizer opt, long batches)
{
    const train_args *a = &s->a;
    const char *sched = bp_schedule_name(a->schedule);
    if (s->warning[0]) fprintf(stderr, "backprop: warning: %s\n", s->warning);
    /* torch's Adam, AdamW and Adagrad have no momentum (Adam's is its betas);
     * RMSprop has one. */
    if (a->given[O_MOMENTUM] && (opt == BP_ADAM || opt == BP_ADAMW || opt == BP_ADAGRAD))
        note("--momentum does nothing with --optimizer %s (it is used by momentum, nesterov, "
             "rmsprop and sgd)", bp_optimizer_name(opt));
    if (a->given[O_MIN_LR] && a->schedule != BP_SCHED_COSINE)
        note("--min-lr does nothing with --schedule %s (it is the floor of cosine)", sched);
    if (a->given[O_GAMMA] && a->schedule != BP_SCHED_STEP && a->schedule != BP_SCHED_EXP)
        note("--gamma does nothing with --schedule %s (it is the factor of step and exp)", sched);
    if (a->given[O_STEP_SIZE] && a->schedule != BP_SCHED_STEP)
        note("--step-size does nothing with --schedule %s (it is for step)", sched);
    long steps = batches * (long)a->epochs;
    if (a->warmup > 0 && a->warmup >= steps)
        note("--warmup %d lasts the whole training (%ld steps): the learning rate never reaches "
             "--lr and the schedule never starts", a->warmup, steps);
    if (a->given[O_MIN_DELTA] && a->early_stop == 0)
        note("--min-delta does nothing without --early-stop");
    if (a->given[O_TARGET] && s->ds.is_idx)
        note("--target does nothing with IDX data (the labels come from --labels)");
    if (a->given[O_INIT] && a->init_from)
        note("--init does nothing with --init-from (the weights come from %s)", a->init_from);
    if (a->given[O_NORMALIZE_TARGET] && s->classify)
        note("--normalize-target does nothing when classifying (it scales regression targets)");
    if (a->no_shuffle && batches == 1 && !s->text)
        note("--no-shuffle does nothing with full batches (every step sees all samples)");
    if (s->text) {
        if (s->text_note[0]) note("%s", s->text_note);
        static const int csv_only[] = {O_NO_SHUFFLE, O_NORMALIZE, O_NORMALIZE_TARGET, O_DELIMITER,
                                       O_SKIP_ROWS, O_NO_HEADER};
        for (size_t i = 0; i < sizeof csv_only / sizeof csv_only[0]; i++)
            if (a->given[csv_only[i]])
                note("%s does nothing with --task text (%s)", train_opts[csv_only[i]].name,
                     csv_only[i] == O_NO_SHUFFLE ? "the streams are always read in order"
                                                 : "DATA is plain text, read as token ids");
    }
}

/* Train with Ctrl-C caught: it only sets a flag, checked after each step. */
static int run(train_state *s)
{
    cli_set_threads(s->a.threads >= 0 ? s->a.threads : cli_dist_default_threads());
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C kills at once */
    sigaction(SIGINT, &sa, &old);
    struct sigaction ta, told;
    memset(&ta, 0, sizeof ta);
    ta.sa_handler = on_sigterm;
    sigemptyset(&ta.sa_mask);
    sigaction(SIGTERM, &ta, &told);
    int st = run_steps(s);
    sigaction(SIGINT, &old, NULL);
    sigaction(SIGTERM, &told, NULL);
    return st;
}

static int run_steps(train_state *s)
{
    train_args *a = &s->a;
    bp_error err = {0};
    int st;
    const char *out = a->out ? a->out : DEFAULT_MODEL;
    /* Before any file is read or written (the trainer would refuse it only
     * after the data are read). With several ranks each checks its own CPU. */
    if ((st = cli_precision_check(a->precision))) return st;
    {
        /* -o may equal --init-from (fine-tuning in place: read first, then replaced). */
        const char *outs[] = {out, a->log, a->plot}, *on[] = {"-o", "--log", "--plot"};
        const char *ins[] = {a->data, a->labels, a->val, a->val_labels};
        const char *in_names[] = {"training DATA", "--labels file", "--val file", "--val-labels file"};
        if ((st = cli_check_outputs(outs, on, 3, ins, in_names, 4))) return st;
    }
    if (a->init_from) {
        if (bp_net_load(&s->base, a->init_from, &err) != BP_OK)
            return cli_fail(CLI_FAIL, "%s", err.message);
        if ((st = cli_model_info_get(&s->base_info, s->base, a->init_from))) return st;
        if (s->base_info.text && !a->text) {
            if (a->task >= 0)
                return cli_fail(CLI_USAGE, "train: %s is a text model; --task %s cannot fine-tune it "
                                "(leave --task out, or give --task text)", a->init_from,
                                a->task == BP_TASK_CLASSIFY ? "classify" : "regress");
            a->text = 1; /* the base model's task */
            if ((st = text_args(a))) return st;
        } else if (!s->base_info.text && a->text) {
            return cli_fail(CLI_USAGE, "train: --task text needs a text model to fine-tune; %s is a "
                            "%s model", a->init_from, s->base_info.classify ? "classification" : "regression");
        }
    }
    if (!a->text && (a->given[O_SEQ_LEN] || a->given[O_ENCODING]))
        return cli_fail(CLI_USAGE, "train: %s is for --task text; %s is not a text model",
                        a->given[O_SEQ_LEN] ? "--seq-len" : "--encoding", a->init_from);
    s->text = a->text;
    const bp_comm *comm = cli_dist_comm();
    int leader = cli_dist_leader();
    if (s->text) {
        if ((st = prepare_text(s))) return st;
    } else if ((st = prepare_data(s))) return st;
    if ((st = prepare_norm(s))) return st;
    if ((st = prepare_net(s))) return st;
    /* Truncated BPTT: each pass of --batch rows continues the streams
     * (data-parallel: each rank carries the streams of its share). */
    int streams = comm ? (int)((int64_t)a->batch * (comm->rank + 1) / comm->size -
                               (int64_t)a->batch * comm->rank / comm->size)
                       : a->batch;
    if (s->text && streams < 1)
        return cli_fail(CLI_USAGE, "train: --batch %d gives no stream to each of %d ranks", a->batch,
                        comm ? comm->size : 1);
    if (s->text && bp_net_set_stateful(s->net, streams, &err) != BP_OK)
        return cli_fail(CLI_FAIL, "%s", err.message);

    /* Trainer configuration. */
    bp_train_config cfg;
    bp_optimizer opt = a->optimizer;
    if (opt == BP_SGD && a->has_momentum && a->momentum > 0) opt = BP_MOMENTUM; /* torch's SGD(momentum=m) */
    bp_train_config_default(&cfg, opt);
    a->optimizer = opt;
    cfg.loss = s->loss;
    if (a->has_lr) cfg.lr = a->lr;
    if (a->has_momentum) cfg.momentum = a->momentum;
    if (a->has_wd) cfg.weight_decay = a->weight_decay;
    cfg.l1 = a->l1;
    cfg.l2 = a->l2;
    cfg.clip_norm = a->clip_norm;
    cfg.clip_value = a->clip_value;
    cfg.schedule = a->schedule;
    cfg.warmup = a->warmup;
    cfg.min_lr = a->min_lr;
    cfg.freeze = a->freeze;
    cfg.augment_hflip = a->hflip;
    cfg.augment_shift = a->shift;
    cfg.batch_size = a->batch;
    cfg.epochs = a->epochs;
    cfg.shuffle = !a->no_shuffle && !s->text; /* text: the streams in order */
    cfg.seed = a->seed;
    cfg.patience = a->early_stop;
    cfg.min_delta = a->min_delta;
    cfg.sync_batchnorm = a->sync_bn;
    cfg.precision = (bp_precision)a->precision;
    int n = s->train->n;
    int batch = a->batch == 0 || a->batch > n ? n : a->batch;
    long batches = (n + batch - 1) / batch;
    if (a->schedule == BP_SCHED_STEP) {
        long steps = (long)a->step_size * batches;
        cfg.step_size = steps > 2000000000L ? 2000000000 : (int)steps;
        cfg.gamma = a->has_gamma ? a->gamma : 0.1;
    } else if (a->schedule == BP_SCHED_EXP) {
        /* --gamma is the factor per epoch; the library applies it per step. */
        cfg.gamma = pow(a->has_gamma ? a->gamma : 0.9, 1.0 / (double)batches);
    }
    a->lr = cfg.lr;
    a->momentum = cfg.momentum;
    a->weight_decay = cfg.weight_decay;
    a->gamma = a->schedule == BP_SCHED_STEP ? cfg.gamma : a->has_gamma ? a->gamma : 0.9;

    s->pg.net = s->net;
    s->pg.tty = isatty(STDERR_FILENO);
    s->pg.quiet = a->quiet || !leader; /* rank 0 shows the progress */
    s->pg.classify = s->classify;
    s->pg.text = s->text;
    s->pg.steps = s->text ? s->seq_len : 1;
    s->pg.n_train = n;
    cfg.on_step = on_step;
    cfg.on_epoch = on_epoch;
    cfg.user = &s->pg;
    /* Data-parallel: each rank holds its share of a batch. */
    int ranks = comm ? comm->size : 1;
    if (bp_trainer_create(&s->tr, s->net, &cfg, (batch + ranks - 1) / ranks, &err) != BP_OK)
        return cli_fail(err.code == BP_EINVAL ? CLI_USAGE : CLI_FAIL, "%s", err.message);
    if ((st = store_meta(s, batches))) return st;

    /* Output files (rank 0 writes them): fail now, not after training. */
    if (leader) {
        cli_outfile probe;
        if ((st = cli_out_open(&probe, out))) return st;
        cli_out_abort(&probe);
        if (a->log) {
            if ((st = cli_out_open(&s->log, a->log))) return st;
            write_log_header(s->log.f, s->net);
            s->pg.log = s->log.f;
        }
        if (a->plot && (st = cli_out_open(&s->plot, a->plot))) return st;
    }
    if (comm) {
        /* Collective: the ranks agree on network and settings, rank 0's
         * weights go to all. A failure here is every rank's. */
        bp_status cs = bp_trainer_set_comm(s->tr, comm, &err);
        if (cs == BP_ECOMM) cli_dist_settled();
        if (cs != BP_OK) return leader || cs != BP_ECOMM ? cli_fail(CLI_FAIL, "%s", err.message) : CLI_FAIL;
    }
    if (leader) notices(s, opt, batches); /* after every check: an error stays one line */

    if (!a->quiet && leader) {
        if (comm)
            fprintf(stderr, "data-parallel: %d ranks, global batch %d (%d-%d rows per rank), "
                    "%s batchnorm statistics\n", ranks, batch, batch / ranks,
                    (batch + ranks - 1) / ranks, a->sync_bn ? "synchronized" : "per-rank");
        if (s->text) {
            char c1[32], c2[32];
            cli_fmt_count(c1, sizeof c1, s->train_chars);
            cli_fmt_count(c2, sizeof c2, s->val_chars);
            fprintf(stderr, "training %s on %s characters (%d streams of %d windows of %d, "
                    "vocabulary %d, %s)", bp_net_spec(s->net), c1, a->batch, s->train->n / a->batch,
                    s->seq_len, s->tx.vocab.size, bp_text_encoding_name(s->tx.vocab.encoding));
            if (s->val) fprintf(stderr, " (validation %s characters)", c2);
        } else {
            fprintf(stderr, "training %s on %d samples", bp_net_spec(s->net), s->train->n);
            if (s->val) fprintf(stderr, " (validation %d)", s->val->n);
        }
        /* The first `freeze` parametric layers keep their weights. */
        size_t total = bp_net_param_count(s->net), frozen = 0;
        for (int i = 0, par = 0; i < bp_net_layers(s->net) && par < a->freeze; i++)
            if (bp_layer_is_parametric(bp_net_layer(s->net, i).kind)) {
                frozen += bp_net_layer_param_count(s->net, i);
                par++;
            }
        char t1[32], t2[32], t3[32];
        cli_fmt_count(t1, sizeof t1, total);
        cli_fmt_count(t2, sizeof t2, frozen);
        cli_fmt_count(t3, sizeof t3, total - frozen);
        fprintf(stderr, ", %s parameters: %s frozen, %s trainable, %s lr %g, ", t1, t2, t3,
                bp_optimizer_name(a->optimizer), cfg.lr);
        if (a->batch == 0) fprintf(stderr, "full batch");
        else fprintf(stderr, "batch %d", a->batch);
        fprintf(stderr, ", %d epochs, precision %s\n", a->epochs, cli_precision_name(a->precision));
        if (s->tnorm.kind != BP_NORM_NONE)
            fprintf(stderr, "targets scaled (%s, --normalize-target): the epoch losses below are "
                    "in scaled units, the final ones in the targets' units\n",
                    bp_norm_name(s->tnorm.kind));
    }

    if (g_interrupted) return cli_fail(CLI_INTERRUPTED, "interrupted (nothing written)");
    s->pg.t_start = cli_now();
    bp_fit_result res;
    bp_status fs = bp_fit(s->tr, s->train, s->val, &res, &err);
    if (s->pg.drawn) fputs("\r\033[K", stderr);
    if (g_interrupted) {
        return cli_fail(CLI_INTERRUPTED, "interrupted (nothing written)");
    }
    /* With several ranks the failure is the same on each: rank 0 says it. */
    /* Outcomes the ranks agree on (the library decides them together):
     * no rank waits for another. Any other failure is this rank's alone. */
    if (fs == BP_OK || fs == BP_ECOMM || fs == BP_ENONFINITE) cli_dist_settled();
    if (fs == BP_ECOMM || fs == BP_ENONFINITE)
        return leader ? cli_fail(CLI_FAIL, "training failed: %s", err.message) : CLI_FAIL;
    if (fs != BP_OK) return cli_fail(CLI_FAIL, "training failed: %s", err.message);
    if (!leader) return CLI_OK; /* rank 0 writes the model, log and plot */
    if (s->pg.oom) return cli_fail(CLI_FAIL, "out of memory");
    double seconds = cli_now() - s->pg.t_start;

    /* Results of the epoch whose weights are kept: the best one with early
     * stopping (bp_fit restores it), else the last one. */
    int be = a->early_stop > 0 && res.best_epoch >= 1 && res.best_epoch <= s->pg.hist.n ? res.best_epoch
                                                                                        : s->pg.hist.n;
    const cli_history *h = &s->pg.hist;
    double tl = h->train_loss[be - 1], ta = h->train_acc[be - 1];
    double vl = h->val_loss[be - 1], va = h->val_acc[be - 1];
    if (s->tnorm.kind != BP_NORM_NONE) {
        /* In the targets' units, with the kept weights (the epoch's loss
         * is a running mean over its steps in the scaled units). */
        if ((st = original_mse(s->net, s->train, &s->tnorm, &tl))) return st;
        if (s->val && (st = original_mse(s->net, s->val, &s->tnorm, &vl))) return st;
    }
    st = 0;
    st = st ? st : meta_int(s->net, "epochs_run", res.epochs_run);
    st = st ? st : meta_int(s->net, "best_epoch", res.best_epoch);
    st = st ? st : meta_int(s->net, "kept_epoch", be);
    st = st ? st : meta_num(s->net, "train_loss", tl);
    if (s->classify || s->text) st = st ? st : meta_num(s->net, "train_accuracy", ta);
    if (s->text) st = st ? st : meta_num(s->net, "train_bits_per_char", tl / M_LN2);
    if (s->val) {
        st = st ? st : meta_num(s->net, "val_loss", vl);
        if (s->classify || s->text) st = st ? st : meta_num(s->net, "val_accuracy", va);
        if (s->text) st = st ? st : meta_num(s->net, "val_bits_per_char", vl / M_LN2);
    }
    if (st) return st;

    if (s->plot.f) {
        char title[512];
        snprintf(title, sizeof title, "%s: %s", out, bp_net_spec(s->net));
        /* The curves are the epochs' losses: in the scaled units. */
        cli_plot_svg(s->plot.f, h, s->classify || s->text, title,
                     s->tnorm.kind != BP_NORM_NONE ? "mse of the scaled targets"
                     : s->text ? "cross-entropy (nats per character)" : bp_loss_name(s->loss));
    }
    if (bp_net_save(s->net, out, &err) != BP_OK) return cli_fail(CLI_FAIL, "%s", err.message);
    if (s->log.f && (st = cli_out_commit(&s->log))) return st;
    if (s->plot.f && (st = cli_out_commit(&s->plot))) return st;

    if (res.stopped_early && !a->quiet)
        fprintf(stderr, "early stop after epoch %d: no improvement for %d epochs, keeping epoch %d\n",
                res.epochs_run, a->early_stop, be);
    printf("saved %s: %d epoch%s in %.1fs, train loss %.4f", out, res.epochs_run,
           res.epochs_run == 1 ? "" : "s", seconds, tl);
    if (s->text) printf(" (%.4f bits/char)", tl / M_LN2);
    if (s->classify || s->text) printf(" accuracy %.4f", ta);
    if (s->val) {
        printf(", validation loss %.4f", vl);
        if (s->text) printf(" (%.4f bits/char)", vl / M_LN2);
        if (s->classify || s->text) printf(" accuracy %.4f", va);
    }
    if (s->tnorm.kind != BP_NORM_NONE) printf(" (mse in the targets' units)");
    if (be != res.epochs_run) printf(" (epoch %d, kept by early stopping)", be);
    printf("\n");
    return CLI_OK;
}

int cmd_train(int argc, char **argv)
{
    train_state s;
    memset(&s, 0, sizeof s);
    cli_dist_guess_rank(); /* for messages before MPI starts */
    int st = parse_args(&s.a, argc, argv);
    if (st < 0) return CLI_OK; /* --help */
    if (st) return st;
    /* mpirun -np N: one rank of a data-parallel run (dist.c). */
    if ((st = cli_dist_start(NULL, NULL))) return cli_dist_end(st);
    st = run(&s);
    state_free(&s);
    return cli_dist_end(st);
}
