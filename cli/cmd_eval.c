/*
 * cmd_eval.c - `backprop eval` (metrics of a model on labelled data) and
 * `backprop predict` (one output row per input row).
 *
 * Both load the model, read DATA with the model's classes and target
 * columns, apply the model's stored input normalization and run
 * bp_forward in batches.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FORWARD_BATCH 256
#define LOAD_TEXT (-5) /* load(): the model is a text model (eval takes cli_eval_text) */

typedef struct model_data {
    bp_net *net;
    cli_model_info mi;
    cli_dataset ds;
    bp_norm norm;
    bp_norm tnorm;      /* regression targets' scaling, inverted on the outputs */
    bp_real *out;       /* [n, outputs] network outputs (in the targets' units) */
} model_data;

static void md_free(model_data *m)
{
    bp_net_free(m->net);
    cli_model_info_free(&m->mi);
    cli_dataset_free(&m->ds);
    bp_norm_free(&m->norm);
    bp_norm_free(&m->tnorm);
    free(m->out);
    memset(m, 0, sizeof *m);
}

/* Read DATA for a loaded (non-text) model: its CSV dialect, its feature
 * and target columns by name where it stored them, its classes; checks
 * the width and an image model's [C, H, W]. need: targets required (eval)
 * or optional (predict, export's calibration rows). The rows are raw (not
 * normalized). CLI_OK, or CLI_USAGE / CLI_FAIL with the message printed. */
int cli_read_model_rows(const bp_net *net, const cli_model_info *mi, const char *model,
                        const char *data, const char *labels, const char *target, cli_need need,
                        cli_dataset *ds)
{
    int st;
    if ((st = cli_csv_from_model(net, model))) return st;
    int inputs = bp_net_inputs(net);

    cli_read_opts ro;
    memset(&ro, 0, sizeof ro);
    ro.labels = labels;
    ro.task = mi->classify ? BP_TASK_CLASSIFY : BP_TASK_REGRESS;
    ro.need = need;
    if (need == CLI_TARGET_REQUIRED && mi->classify) {
        ro.class_names = (const char *const *)mi->classes;
        ro.n_class_names = mi->n_classes;
    }
    int idx = labels ? 1 : cli_is_idx(data);
    if (idx < 0) return CLI_FAIL;
    char *auto_target = NULL;
    int by_name = !idx && mi->features;
    if (by_name) {
        /* The model knows its CSV columns: match features and targets by
         * name, so a reordered, missing or extra column is caught. */
        ro.feature_names = (const char *const *)mi->features;
        ro.n_feature_names = mi->n_features;
        if (!target && mi->targets) {
            auto_target = cli_join_names(mi->targets, mi->n_target_names);
            if (!auto_target) return cli_fail(CLI_FAIL, "out of memory");
        }
        ro.target = target ? target : auto_target;
    } else if (!idx && !target) {
        auto_target = cli_target_for(data, mi->targets, mi->n_target_names, mi->n_targets);
        ro.target = auto_target;
    } else {
        ro.target = target;
    }
    char msg[768];
    if (need == CLI_TARGET_OPTIONAL && !idx && !target && !by_name) {
        /* predict: the file may hold the target column(s) or only features.
         * Read it with the model's target columns first; if that does not
         * give the model's width, read every column as a feature. */
        st = cli_read_data_quiet(ds, data, &ro, msg, sizeof msg);
        if (st || ds->d.n_inputs != inputs) {
            cli_read_opts nt = ro;
            nt.no_target = 1;
            nt.target = NULL;
            cli_dataset alt;
            char msg2[768];
            if (cli_read_data_quiet(&alt, data, &nt, msg2, sizeof msg2) == CLI_OK &&
                (st || alt.d.n_inputs == inputs)) {
                cli_dataset_free(ds);
                *ds = alt;
                st = CLI_OK;
            } else {
                cli_dataset_free(&alt);
            }
        }
    } else {
        st = cli_read_data_quiet(ds, data, &ro, msg, sizeof msg);
    }
    free(auto_target);
    cli_inputs_release();
    /* A CSV file that lacks the model's target columns (or has other ones)
     * is a data error, not a usage error, unless --target named them. */
    if (st == CLI_USAGE && !idx && !target) st = CLI_FAIL;
    if (st) return cli_fail(st, "%s", msg);

    bp_data *d = &ds->d;
    if (d->n_inputs != inputs) {
        /* A conv model reads flat rows too: the product of its input shape. */
        bp_shape ish = bp_net_input_shape(net);
        char sh[64] = "";
        if (ish.rank > 1) {
            char b[48];
            bp_shape_format(ish, b, sizeof b);
            snprintf(sh, sizeof sh, " (input shape %s)", b);
        }
        return cli_fail(CLI_FAIL, "%s has %d features per sample, the model %s takes %d inputs%s",
                        data, d->n_inputs, model, inputs, sh);
    }
    {
        /* Images of another height and width with as many pixels would
         * pass the count above and be read as nonsense by the convolutions. */
        bp_shape ish = bp_net_input_shape(net);
        if (ish.rank == 3 && d->shape.rank == 3 &&
            (d->shape.dim[0] != ish.dim[0] || d->shape.dim[1] != ish.dim[1] ||
             d->shape.dim[2] != ish.dim[2])) {
            char a[48], b[48];
            bp_shape_format(d->shape, a, sizeof a);
            bp_shape_format(ish, b, sizeof b);
            return cli_fail(CLI_FAIL, "%s holds images %s, the model %s takes %s", data, a, model,
                            b);
        }
    }
    if (need == CLI_TARGET_REQUIRED) {
        if (ds->is_idx && !mi->classify) {
            bp_strings_free(d->class_names, d->n_classes);
            d->class_names = NULL;
            d->n_classes = 0;
        }
        if (d->n_targets != mi->n_targets)
            return cli_fail(CLI_FAIL, "%s has %d target columns, the model %s predicts %d", data,
                            d->n_targets, model, mi->n_targets);
        if (mi->classify && d->n_classes == 0)
            return cli_fail(CLI_FAIL, "%s: the targets are real numbers, the model %s classifies",
                            data, model);
    }
    if (idx && target) fprintf(stderr, "backprop: note: --target does nothing with IDX data (the "
                               "labels come from --labels)\n");
    return CLI_OK;
}

/* Load MODEL and DATA; need: targets required (eval) or optional (predict).
 * The network computes in `precision` (--precision; float32 by default,
 * whatever the model was trained with). */
static int load(model_data *m, const char *model, const char *data, const char *labels,
                const char *target, cli_need need, int precision)
{
    bp_error err = {0};
    int st;
    if (bp_net_load(&m->net, model, &err) != BP_OK) return cli_fail(CLI_FAIL, "%s", err.message);
    if (bp_net_set_precision(m->net, (bp_precision)precision, &err) != BP_OK)
        return cli_fail(CLI_FAIL, "%s", err.message);
    if ((st = cli_model_info_get(&m->mi, m->net, model))) return st;
    if (m->mi.text) {
        /* A language model reads plain text: eval and predict have their
         * own paths (text.c). */
        if (labels || target)
            return cli_fail(CLI_USAGE, "%s: %s does nothing with a text model (%s reads plain "
                            "text)", need == CLI_TARGET_OPTIONAL ? "predict" : "eval",
                            labels ? "--labels" : "--target", model);
        return LOAD_TEXT;
    }
    if ((st = cli_read_model_rows(m->net, &m->mi, model, data, labels, target, need, &m->ds)))
        return st;
    bp_data *d = &m->ds.d;
    if (bp_norm_from_meta(&m->norm, m->net, &err) != BP_OK)
        return cli_fail(CLI_FAIL, "%s: %s", model, err.message);
    if (m->norm.kind != BP_NORM_NONE && bp_norm_apply(&m->norm, d, &err) != BP_OK)
        return cli_fail(CLI_FAIL, "%s", err.message);

    int outs = bp_net_outputs(m->net);
    /* n and outs are ints, so the product fits 64 bits; check it against
     * the machine before the allocation (a wide output layer times many
     * rows can exceed it). */
    uint64_t out_bytes = (uint64_t)d->n * (uint64_t)outs * sizeof(bp_real);
    char what[96];
    snprintf(what, sizeof what, "%d rows x %d outputs", d->n, outs);
    if (bp_memory_check(out_bytes, "the output buffer", what, &err) != BP_OK)
        return cli_fail(CLI_FAIL, "%s: %s", model, err.message);
    m->out = malloc((size_t)out_bytes);
    if (!m->out) return cli_fail(CLI_FAIL, "out of memory");
    if (bp_net_reserve(m->net, d->n < FORWARD_BATCH ? d->n : FORWARD_BATCH, &err) != BP_OK)
        return cli_fail(CLI_FAIL, "%s", err.message);
    for (int s = 0; s < d->n; s += FORWARD_BATCH) {
        int k = d->n - s < FORWARD_BATCH ? d->n - s : FORWARD_BATCH;
        if (bp_forward(m->net, d->x + (size_t)s * d->n_inputs, k, m->out + (size_t)s * outs, &err) !=
            BP_OK)
            return cli_fail(CLI_FAIL, "%s", err.message);
    }
    if (!m->mi.classify) {
        /* A model trained on standardized targets: outputs back in the
         * targets' units (predictions and every error measure). */
        if (bp_norm_targets_from_meta(&m->tnorm, m->net, &err) != BP_OK)
            return cli_fail(CLI_FAIL, "%s: %s", model, err.message);
        if (bp_norm_invert(&m->tnorm, m->out, d->n, &err) != BP_OK)
            return cli_fail(CLI_FAIL, "%s", err.message);
    }
    return CLI_OK;
}

/* Predicted class of row r. */
static int predict_class(const model_data *m, int r)
{
    int outs = bp_net_outputs(m->net);
    const bp_real *o = m->out + (size_t)r * outs;
    if (m->mi.loss == BP_LOSS_BCE) return m->mi.out_kind == BP_SIGMOID ? o[0] > 0.5f : o[0] > 0;
    int best = 0;
    for (int j = 1; j < outs; j++)
        if (o[j] > o[best]) best = j;
    return best;
}

/* Class probabilities of row r into p[n_classes]. */
static void class_proba(const model_data *m, int r, double *p)
{
    int outs = bp_net_outputs(m->net);
    const bp_real *o = m->out + (size_t)r * outs;
    if (m->mi.loss == BP_LOSS_BCE) {
        double z = o[0];
        double p1 = m->mi.out_kind == BP_SIGMOID ? z : z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z));
        p[0] = 1 - p1;
        p[1] = p1;
        return;
    }
    if (m->mi.out_kind == BP_SOFTMAX) { /* already probabilities */
        for (int j = 0; j < outs; j++) p[j] = o[j];
        return;
    }
    double mx = o[0], sum = 0;
    for (int j = 1; j < outs; j++) mx = fmax(mx, o[j]);
    for (int j = 0; j < outs; j++) sum += p[j] = exp((double)o[j] - mx);
    for (int j = 0; j < outs; j++) p[j] /= sum;
}

/* ------------------------------------------------------------------------ */
/* eval                                                                      */
/* ------------------------------------------------------------------------ */

static void print_classification(const model_data *m, double loss, const long *conf,
                                 const char *model, const char *data)
{
    int K = m->mi.n_classes, n = m->ds.d.n;
    long correct = 0;
    for (int k = 0; k < K; k++) correct += conf[(size_t)k * K + k];
    int w = 9;
    for (int k = 0; k < K; k++) {
        int l = (int)strlen(m->mi.classes[k]);
        if (l > w) w = l;
    }
    if (w > 24) w = 24;
    printf("model     %s (%s)\n", model, bp_net_spec(m->net));
    printf("data      %s\n", data);
    printf("samples   %d\n", n);
    printf("loss      %.6f (%s)\n", loss, bp_loss_name(m->mi.loss));
    printf("accuracy  %.4f (%ld of %d correct)\n\n", (double)correct / n, correct, n);
    printf("%-*s  %9s  %9s  %9s  %7s\n", w, "class", "precision", "recall", "f1", "support");
    double mp = 0, mr = 0, mf = 0;
    for (int k = 0; k < K; k++) {
        long tp = conf[(size_t)k * K + k], pred = 0, sup = 0;
        for (int j = 0; j < K; j++) pred += conf[(size_t)j * K + k], sup += conf[(size_t)k * K + j];
        double p = pred ? (double)tp / pred : 0, r = sup ? (double)tp / sup : 0;
        double f = p + r > 0 ? 2 * p * r / (p + r) : 0;
        mp += p, mr += r, mf += f;
        printf("%-*.*s  %9.4f  %9.4f  %9.4f  %7ld\n", w, w, m->mi.classes[k], p, r, f, sup);
    }
    printf("%-*s  %9.4f  %9.4f  %9.4f  %7d\n\n", w, "macro avg", mp / K, mr / K, mf / K, n);
    printf("confusion matrix (rows: true class, columns: predicted class)\n");
    int cw = 5;
    for (int k = 0; k < K; k++) {
        int l = (int)strlen(m->mi.classes[k]);
        if (l > cw) cw = l;
    }
    for (int k = 0; k < K * K; k++) {
        char b[32];
        int l = snprintf(b, sizeof b, "%ld", conf[k]);
        if (l > cw) cw = l;
    }
    if (cw > 12) cw = 12;
    printf("%-*s", w, "");
    for (int k = 0; k < K; k++) printf("  %*.*s", cw, cw, m->mi.classes[k]);
    printf("\n");
    for (int k = 0; k < K; k++) {
        printf("%-*.*s", w, w, m->mi.classes[k]);
        for (int j = 0; j < K; j++) printf("  %*ld", cw, conf[(size_t)k * K + j]);
        printf("\n");
    }
}

static int json_print(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    if (!s) return cli_fail(CLI_FAIL, "out of memory");
    puts(s);
    cJSON_free(s);
    return CLI_OK;
}

/* cJSON prints NaN/Inf as null; keep that (JSON has no NaN). */
static int eval_classification(const model_data *m, double loss, int json, const char *model,
                               const char *data)
{
    int K = m->mi.n_classes, n = m->ds.d.n;
    /* K x K counts: a model with 10^5 outputs would need 80 GB. K < 2^31,
     * so the product fits 64 bits. */
    bp_error err = {0};
    char what[64];
    snprintf(what, sizeof what, "%d x %d classes", K, K);
    if (bp_memory_check((uint64_t)K * (uint64_t)K * sizeof(long), "the confusion matrix", what,
                        &err) != BP_OK)
        return cli_fail(CLI_FAIL, "%s: %s", model, err.message);
    long *conf = calloc((size_t)K * K, sizeof *conf);
    if (!conf) return cli_fail(CLI_FAIL, "out of memory");
    for (int r = 0; r < n; r++) {
        int t = (int)m->ds.d.y[r], p = predict_class(m, r);
        if (t >= 0 && t < K && p >= 0 && p < K) conf[(size_t)t * K + p]++;
    }
    int st = CLI_OK;
    if (!json) {
        print_classification(m, loss, conf, model, data);
    } else {
        long correct = 0;
        for (int k = 0; k < K; k++) correct += conf[(size_t)k * K + k];
        cJSON *o = cJSON_CreateObject(), *pc = cJSON_CreateArray(), *cm = cJSON_CreateArray(),
              *cl = cJSON_CreateArray();
        int ok = o && pc && cm && cl;
        if (ok) {
            cJSON_AddNumberToObject(o, "samples", n);
            cJSON_AddNumberToObject(o, "loss", loss);
            cJSON_AddNumberToObject(o, "accuracy", (double)correct / n);
            cJSON_AddStringToObject(o, "task", "classify");
            cJSON_AddStringToObject(o, "loss_name", bp_loss_name(m->mi.loss));
            cJSON_AddNumberToObject(o, "correct", (double)correct);
            double mp = 0, mr = 0, mf = 0;
            for (int k = 0; k < K; k++) {
                long tp = conf[(size_t)k * K + k], pred = 0, sup = 0;
                for (int j = 0; j < K; j++)
                    pred += conf[(size_t)j * K + k], sup += conf[(size_t)k * K + j];
                double p = pred ? (double)tp / pred : 0, r = sup ? (double)tp / sup : 0;
                double f = p + r > 0 ? 2 * p * r / (p + r) : 0;
                mp += p, mr += r, mf += f;
                cJSON *e = cJSON_CreateObject();
                cJSON *row = cJSON_CreateArray();
                if (!e || !row) {
                    cJSON_Delete(e);
                    cJSON_Delete(row);
                    ok = 0;
                    break;
                }
                cJSON_AddStringToObject(e, "class", m->mi.classes[k]);
                cJSON_AddNumberToObject(e, "precision", p);
                cJSON_AddNumberToObject(e, "recall", r);
                cJSON_AddNumberToObject(e, "f1", f);
                cJSON_AddNumberToObject(e, "support", (double)sup);
                cJSON_AddItemToArray(pc, e);
                for (int j = 0; j < K; j++)
                    cJSON_AddItemToArray(row, cJSON_CreateNumber((double)conf[(size_t)k * K + j]));
                cJSON_AddItemToArray(cm, row);
                cJSON_AddItemToArray(cl, cJSON_CreateString(m->mi.classes[k]));
            }
            cJSON_AddNumberToObject(o, "macro_precision", mp / K);
            cJSON_AddNumberToObject(o, "macro_recall", mr / K);
            cJSON_AddNumberToObject(o, "macro_f1", mf / K);
            cJSON_AddItemToObject(o, "classes", cl);
            cJSON_AddItemToObject(o, "per_class", pc);
            cJSON_AddItemToObject(o, "confusion", cm);
            pc = cm = cl = NULL;
        }
        if (ok) st = json_print(o);
        else st = cli_fail(CLI_FAIL, "out of memory");
        cJSON_Delete(o);
        cJSON_Delete(pc);
        cJSON_Delete(cm);
        cJSON_Delete(cl);
    }
    free(conf);
    return st;
}

static int eval_regression(const model_data *m, double loss, int json, const char *model,
                           const char *data)
{
    const bp_data *d = &m->ds.d;
    int T = d->n_targets, n = d->n;
    int scaled = m->tnorm.kind != BP_NORM_NONE;
    double *mse = calloc((size_t)T, sizeof *mse), *mae = calloc((size_t)T, sizeof *mae);
    double *mean = calloc((size_t)T, sizeof *mean), *r2 = calloc((size_t)T, sizeof *r2);
    int st = CLI_OK;
    if (!mse || !mae || !mean || !r2) {
        st = cli_fail(CLI_FAIL, "out of memory");
        goto done;
    }
    for (int r = 0; r < n; r++)
        for (int t = 0; t < T; t++) mean[t] += d->y[(size_t)r * T + t];
    for (int t = 0; t < T; t++) mean[t] /= n;
    double all_mse = 0, all_mae = 0, all_r2 = 0;
    for (int t = 0; t < T; t++) {
        double ss_res = 0, ss_tot = 0, ab = 0;
        for (int r = 0; r < n; r++) {
            double y = d->y[(size_t)r * T + t], p = m->out[(size_t)r * T + t];
            ss_res += (y - p) * (y - p);
            ss_tot += (y - mean[t]) * (y - mean[t]);
            ab += fabs(y - p);
        }
        mse[t] = ss_res / n;
        mae[t] = ab / n;
        /* A constant target (ss_tot == 0): 1 when predicted exactly, else 0 (as scikit-learn). */
        r2[t] = ss_tot > 0 ? 1 - ss_res / ss_tot : ss_res == 0 ? 1 : 0;
        all_mse += mse[t] / T;
        all_mae += mae[t] / T;
        all_r2 += r2[t] / T;
    }
    /* The mse loss is the mean over rows and targets: with scaled targets
     * the network's own loss is in the scaled units; report the data's. */
    if (scaled) loss = all_mse;
    if (!json) {
        printf("model     %s (%s)\n", model, bp_net_spec(m->net));
        printf("data      %s\n", data);
        printf("samples   %d\n", n);
        printf("loss      %.6g (%s)\n", loss, bp_loss_name(m->mi.loss));
        printf("mse       %.6g\n", all_mse);
        printf("rmse      %.6g\n", sqrt(all_mse));
        printf("mae       %.6g\n", all_mae);
        printf("r2        %.6f\n", all_r2);
        if (T > 1) {
            printf("\n%-16s  %12s  %12s  %10s\n", "target", "mse", "mae", "r2");
            for (int t = 0; t < T; t++)
                printf("%-16.16s  %12.6g  %12.6g  %10.6f\n",
                       m->mi.targets ? m->mi.targets[t] : m->ds.targets[t], mse[t], mae[t], r2[t]);
        }
    } else {
        cJSON *o = cJSON_CreateObject(), *pt = cJSON_CreateArray();
        if (!o || !pt) {
            cJSON_Delete(o);
            cJSON_Delete(pt);
            st = cli_fail(CLI_FAIL, "out of memory");
            goto done;
        }
        cJSON_AddNumberToObject(o, "samples", n);
        cJSON_AddNumberToObject(o, "loss", loss);
        cJSON_AddNumberToObject(o, "mse", all_mse);
        cJSON_AddNumberToObject(o, "rmse", sqrt(all_mse));
        cJSON_AddNumberToObject(o, "mae", all_mae);
        cJSON_AddNumberToObject(o, "r2", all_r2);
        cJSON_AddStringToObject(o, "task", "regress");
        for (int t = 0; t < T; t++) {
            cJSON *e = cJSON_CreateObject();
            if (!e) continue;
            cJSON_AddStringToObject(e, "target", m->mi.targets ? m->mi.targets[t] : m->ds.targets[t]);
            cJSON_AddNumberToObject(e, "mse", mse[t]);
            cJSON_AddNumberToObject(e, "mae", mae[t]);
            cJSON_AddNumberToObject(e, "r2", r2[t]);
            cJSON_AddItemToArray(pt, e);
        }
        cJSON_AddItemToObject(o, "per_target", pt);
        st = json_print(o);
        cJSON_Delete(o);
    }
done:
    free(mse);
    free(mae);
    free(mean);
    free(r2);
    return st;
}

static const cli_opt eval_opts[] = {
    {"--help", "-h", 0},
    {"--labels", NULL, 1},
    {"--target", NULL, 1},
    {"--threads", NULL, 1},
    {"--precision", NULL, 1},
    {"--delimiter", NULL, 1},
    {"--skip-rows", NULL, 1},
    {"--no-header", NULL, 0},
    {"--json", NULL, 0},
    {"--streams", NULL, 1},
    {NULL, NULL, 0},
};

static const cli_opt predict_opts[] = {
    {"--help", "-h", 0},
    {"--labels", NULL, 1},
    {"--target", NULL, 1},
    {"--threads", NULL, 1},
    {"--precision", NULL, 1},
    {"--delimiter", NULL, 1},
    {"--skip-rows", NULL, 1},
    {"--no-header", NULL, 0},
    {"--output", "-o", 1},
    {"--proba", NULL, 0},
    {NULL, NULL, 0},
};

typedef struct eval_args {
    const char *model, *data, *labels, *target, *out;
    int json, proba, threads;
    int precision;        /* --precision: a bp_precision */
    int streams;          /* eval of a text model: parallel streams (0: the model's) */
} eval_args;

/* Parse eval/predict arguments: MODEL DATA and options. -1 after --help. */
static int parse(eval_args *a, const char *cmd, const cli_opt *opts, const char *usage, int argc,
                 char **argv)
{
    memset(a, 0, sizeof *a);
    a->threads = -1;
    cli_parser p = {cmd, argc, argv, 1, 0};
    const char *v;
    int k, r = 0;
    while ((k = cli_next(&p, opts, &v)) != CLI_ARG_END) {
        if (k == CLI_ARG_ERROR) return CLI_USAGE;
        if (k == CLI_ARG_POSITIONAL) {
            if (!a->model) a->model = v;
            else if (!a->data) a->data = v;
            else return cli_fail(CLI_USAGE, "%s: unexpected argument '%s'", cmd, v);
            continue;
        }
        const char *name = opts[k].name;
        if (!strcmp(name, "--help")) {
            fputs(usage, stdout);
            return -1;
        }
        if (!strcmp(name, "--labels")) a->labels = v;
        else if (!strcmp(name, "--target")) a->target = v;
        else if (!strcmp(name, "--threads")) r = cli_int(name, v, 0, 4096, &a->threads);
        else if (!strcmp(name, "--precision")) r = cli_precision(name, v, &a->precision);
        else if (!strcmp(name, "--json")) a->json = 1;
        else if (!strcmp(name, "--streams")) r = cli_int(name, v, 1, 1 << 20, &a->streams);
        else if (cli_dialect_option(name, v, &r)) { /* into cli_csv */ }
        else if (!strcmp(name, "--output")) a->out = v;
        else if (!strcmp(name, "--proba")) a->proba = 1;
        if (r) return r;
    }
    if (!a->model || !a->data)
        return cli_fail(CLI_USAGE, "%s: needs MODEL and DATA (see 'backprop %s --help')", cmd, cmd);
    if ((r = cli_precision_check(a->precision))) return r; /* before any file is read */
    cli_set_threads(a->threads);
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    eval_args a;
    int st = parse(&a, "eval", eval_opts, usage_eval, argc, argv);
    if (st) return st < 0 ? CLI_OK : st;
    model_data m;
    memset(&m, 0, sizeof m);
    st = load(&m, a.model, a.data, a.labels, a.target, CLI_TARGET_REQUIRED, a.precision);
    if (st == LOAD_TEXT) {
        st = cli_eval_text(m.net, &m.mi, a.model, a.data, a.streams, a.json);
    } else if (!st && a.streams) {
        st = cli_fail(CLI_USAGE, "eval: --streams is for text models; %s is a %s model", a.model,
                      m.mi.classify ? "classification" : "regression");
    } else if (!st) {
        bp_error err = {0};
        double loss = NAN;
        bp_data *d = &m.ds.d;
        int scaled = !m.mi.classify && m.tnorm.kind != BP_NORM_NONE; /* loss from m.out */
        if (!scaled && bp_evaluate(m.net, m.mi.loss, d, &loss, NULL, &err) != BP_OK)
            st = cli_fail(CLI_FAIL, "%s", err.message);
        else if (m.mi.classify)
            st = eval_classification(&m, loss, a.json, a.model, a.data);
        else
            st = eval_regression(&m, loss, a.json, a.model, a.data);
    }
    md_free(&m);
    return st;
}

/* ------------------------------------------------------------------------ */
/* predict                                                                   */
/* ------------------------------------------------------------------------ */

static void put_num(FILE *f, double v)
{
    char b[64];
    cli_fmt_num(b, sizeof b, v);
    fputs(b, f);
}

static void write_predictions(FILE *f, const model_data *m, int proba)
{
    const bp_data *d = &m->ds.d;
    if (m->mi.classify) {
        int K = m->mi.n_classes;
        double *p = malloc((size_t)K * sizeof *p);
        fputs("class", f);
        if (proba)
            for (int k = 0; k < K; k++) fputc(',', f), cli_csv_field(f, m->mi.classes[k]);
        fputc('\n', f);
        for (int r = 0; r < d->n; r++) {
            int c = predict_class(m, r);
            cli_csv_field(f, m->mi.classes[c]);
            if (proba && p) {
                class_proba(m, r, p);
                for (int k = 0; k < K; k++) fputc(',', f), put_num(f, p[k]);
            }
            fputc('\n', f);
        }
        free(p);
        return;
    }
    int T = bp_net_outputs(m->net);
    for (int t = 0; t < T; t++) {
        if (t) fputc(',', f);
        if (m->mi.targets) cli_csv_field(f, m->mi.targets[t]);
        else if (T == 1) fputs("target", f);
        else fprintf(f, "target_%d", t + 1);
    }
    fputc('\n', f);
    for (int r = 0; r < d->n; r++) {
        for (int t = 0; t < T; t++) {
            if (t) fputc(',', f);
            put_num(f, m->out[(size_t)r * T + t]);
        }
        fputc('\n', f);
    }
}

int cmd_predict(int argc, char **argv)
{
    eval_args a;
    int st = parse(&a, "predict", predict_opts, usage_predict, argc, argv);
    if (st) return st < 0 ? CLI_OK : st;
    const char *outs[] = {a.out}, *on[] = {"-o"};
    const char *ins[] = {a.model, a.data, a.labels}, *in_names[] = {"MODEL", "DATA file", "--labels file"};
    if ((st = cli_check_outputs(outs, on, 1, ins, in_names, 3))) return st;
    model_data m;
    memset(&m, 0, sizeof m);
    st = load(&m, a.model, a.data, a.labels, a.target, CLI_TARGET_OPTIONAL, a.precision);
    int text = st == LOAD_TEXT;
    if (text) st = CLI_OK;
    if (!st && a.proba && !m.mi.classify && !text)
        st = cli_fail(CLI_USAGE, "predict: --proba is for classification models; %s is a "
                      "regression model", a.model);
    if (!st) {
        if (a.out) {
            cli_outfile o;
            st = cli_out_open(&o, a.out);
            if (!st) {
                if (text) st = cli_predict_text(m.net, &m.mi, a.data, a.proba, o.f);
                else write_predictions(o.f, &m, a.proba);
                if (st) cli_out_abort(&o);
                else st = cli_out_commit(&o);
            }
        } else {
            if (text) st = cli_predict_text(m.net, &m.mi, a.data, a.proba, stdout);
            else write_predictions(stdout, &m, a.proba);
            if (!st && fflush(stdout) != 0) st = cli_fail(CLI_FAIL, "cannot write the predictions to stdout");
        }
    }
    md_free(&m);
    return st;
}
