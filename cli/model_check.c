/*
 * model_check.c - validation of the metadata keys the tool relies on.
 *
 * The library checks what it needs to build the network (format, spec,
 * inputs, every tensor). The keys below are the tool's own conventions
 * (written by `train`, read by eval, predict, info and train --init-from);
 * a file that was edited by hand, by another program or by an attacker may
 * hold anything there. Each key that is present must agree with the network
 * it came with, so that a tampered file fails with one line naming the file
 * and the key instead of silently turning off name matching or inventing
 * classes. Keys that are absent keep their defaults (older models, models
 * written with the library).
 *
 * All checks are linear or n log n in the size of a list (sorted copies for
 * duplicates), so a model with 10^6 features loads in a fraction of a
 * second.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* A metadata value for a message: quoted, shortened, control bytes escaped. */
static void excerpt(char *buf, size_t size, const char *v)
{
    size_t n = 0, len = strlen(v);
    if (size < 8) {
        buf[0] = '\0';
        return;
    }
    buf[n++] = '\'';
    for (size_t i = 0; i < len && n + 6 < size; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == 0x7f) n += (size_t)snprintf(buf + n, size - n, "\\x%02x", c);
        else buf[n++] = (char)c;
        if (i + 1 < len && n + 6 >= size) {
            memcpy(buf + n, "...", 3);
            n += 3;
            break;
        }
    }
    buf[n++] = '\'';
    buf[n] = '\0';
}

/* A decimal integer in [lo, hi], the whole text. */
static int parse_int(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s || (*s != '-' && (*s < '0' || *s > '9'))) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || errno || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A name of a[na] that is also in b[nb], or NULL; *oom on ENOMEM. */
static const char *common(char *const *a, int na, char *const *b, int nb, int *oom)
{
    *oom = 0;
    if (na == 0 || nb == 0) return NULL;
    char **c = malloc((size_t)nb * sizeof *c);
    if (!c) {
        *oom = 1;
        return NULL;
    }
    memcpy(c, b, (size_t)nb * sizeof *c);
    qsort(c, (size_t)nb, sizeof *c, cmp_str);
    const char *d = NULL;
    for (int i = 0; i < na && !d; i++)
        if (bsearch(&a[i], c, (size_t)nb, sizeof *c, cmp_str)) d = a[i];
    free(c);
    return d;
}

/* A JSON array of `want` distinct strings under `key`; on success *out
 * (may be NULL: check only) receives the strings. */
static int check_names(const bp_net *net, const char *path, const char *key, int want,
                       char ***out, int *n_out)
{
    const char *v = bp_net_get_meta(net, key);
    char ex[80];
    if (out) *out = NULL;
    if (n_out) *n_out = 0;
    if (!v) return CLI_OK;
    int n = 0;
    char **s = cli_json_strings(v, &n);
    if (!s) {
        /* Tell "not a list of strings" from "out of memory". */
        cJSON *j = cJSON_Parse(v);
        int is_array = j && cJSON_IsArray(j);
        int all_strings = is_array;
        const cJSON *e;
        if (is_array) cJSON_ArrayForEach(e, j) all_strings = all_strings && cJSON_IsString(e);
        cJSON_Delete(j);
        if (all_strings) return cli_fail(CLI_FAIL, "out of memory");
        excerpt(ex, sizeof ex, v);
        return cli_fail(CLI_FAIL, "%s: metadata \"%s\" is not a JSON array of strings: %s", path, key,
                        ex);
    }
    int st = CLI_OK, d1 = 0, d2 = 0;
    int dup = n == want ? cli_csv_duplicate(s, n, &d1, &d2) : 0;
    if (n != want) {
        st = cli_fail(CLI_FAIL, "%s: metadata \"%s\" has %d names, the model has %d", path, key, n,
                      want);
    } else if (dup < 0) {
        st = cli_fail(CLI_FAIL, "out of memory");
    } else if (dup) {
        excerpt(ex, sizeof ex, s[d1]);
        st = cli_fail(CLI_FAIL, "%s: metadata \"%s\" names %s twice", path, key, ex);
    }
    if (st || !out) {
        bp_strings_free(s, n);
        return st;
    }
    *out = s;
    *n_out = n;
    return CLI_OK;
}

/* 1 when `hidden` (the --arch of train) plus one dense output layer is the
 * network's spec, layer for layer. */
static int hidden_matches(const bp_net *net, const char *hidden)
{
    int blank = 1;
    for (const char *p = hidden; *p; p++) blank = blank && (*p == ' ' || *p == '\t');
    int n = 0, nl = bp_net_layers(net);
    bp_layer_desc *d = NULL;
    if (!blank) {
        if (bp_spec_parse(hidden, NULL, 0, &n, NULL) != BP_OK || n > nl - 1) return 0;
        d = calloc((size_t)n, sizeof *d);
        if (!d || bp_spec_parse(hidden, d, n, &n, NULL) != BP_OK) {
            free(d);
            return 0;
        }
    }
    /* The network may hold a flatten that the library inserted before a
     * dense layer after an image-shaped one (and the hidden text has not):
     * walk both, skipping such a flatten of the network. */
    if (nl < n + 1 || bp_net_layer(net, nl - 1).kind != BP_DENSE) {
        free(d);
        return 0;
    }
    int ok = 1, j = 0;
    for (int i = 0; i < nl - 1 && ok; i++) {
        bp_layer_desc L = bp_net_layer(net, i);
        if (j < n && L.kind == d[j].kind) {
            ok = (L.kind != BP_DENSE && L.kind != BP_CONV) || L.units == d[j].units;
            ok = ok && ((L.kind != BP_LEAKY_RELU && L.kind != BP_DROPOUT) || L.param == d[j].param);
            if (L.kind == BP_CONV || L.kind == BP_MAXPOOL || L.kind == BP_AVGPOOL)
                ok = ok && L.kernel == d[j].kernel &&
                     (d[j].stride == 0 || L.stride == d[j].stride) && L.pad == d[j].pad;
            j++;
        } else {
            ok = L.kind == BP_FLATTEN && bp_net_layer(net, i + 1).kind == BP_DENSE;
        }
    }
    ok = ok && j == n;
    free(d);
    return ok;
}

/* "C,H,W", "T,F" or "F": positive integers; 0 when malformed. */
static int parse_shape_meta(const char *v, bp_shape *out)
{
    bp_shape sh = {0, {0, 0, 0}};
    const char *p = v;
    while (*p >= '0' && *p <= '9' && sh.rank < BP_MAX_RANK) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || x < 1 || x > INT_MAX) return 0;
        sh.dim[sh.rank++] = (int)x;
        p = end;
        if (!*p) {
            *out = sh;
            return 1;
        }
        if (*p++ != ',') return 0;
    }
    return 0;
}

static int check_shape_hidden(const bp_net *net, const char *path);

/* A text model (task "text"): the vocabulary, and a network that reads
 * [T] token ids through an embedding of the vocabulary and gives a
 * dense(vocabulary) at every step. */
static int check_text(const bp_net *net, const char *path)
{
    char ex[80];
    const char *v;
    long k;
    if ((v = bp_net_get_meta(net, "loss")) && strcmp(v, "cross-entropy")) {
        excerpt(ex, sizeof ex, v);
        return cli_fail(CLI_FAIL, "%s: metadata \"loss\" is %s, but a text model needs "
                        "cross-entropy", path, ex);
    }
    static const char *const foreign[] = {"classes", "features", "targets"};
    for (int i = 0; i < 3; i++)
        if (bp_net_get_meta(net, foreign[i]))
            return cli_fail(CLI_FAIL, "%s: metadata \"%s\" is set, but the model is a text model",
                            path, foreign[i]);
    bp_vocab voc;
    bp_error err = {0};
    if (bp_vocab_from_meta(&voc, net, &err) != BP_OK)
        return cli_fail(CLI_FAIL, "%s: %s", path, err.message);
    int V = voc.size;
    bp_vocab_free(&voc);
    bp_shape in = bp_net_input_shape(net);
    int T = bp_net_inputs(net);
    if (in.rank > 1 || bp_net_layer(net, 0).kind != BP_EMBEDDING)
        return cli_fail(CLI_FAIL, "%s: a text model reads token ids [T] through an embedding "
                        "first; this one is '%s' on inputs %s", path, bp_net_spec(net),
                        in.rank > 1 ? "of rank above 1" : "without an embedding");
    if (bp_net_loss_steps(net, BP_LOSS_CROSS_ENTROPY) != T || bp_net_outputs(net) != T * V)
        return cli_fail(CLI_FAIL, "%s: a text model predicts the next character at each of its %d "
                        "steps (%d outputs per step); '%s' gives %d outputs", path, T, V,
                        bp_net_spec(net), bp_net_outputs(net));
    if ((v = bp_net_get_meta(net, "seq_len")) && (!parse_int(v, 1, INT_MAX, &k) || k != T)) {
        excerpt(ex, sizeof ex, v);
        return cli_fail(CLI_FAIL, "%s: metadata \"seq_len\" is %s, the model reads %d steps", path,
                        ex, T);
    }
    if ((v = bp_net_get_meta(net, "vocab_size")) && (!parse_int(v, 1, INT_MAX, &k) || k != V)) {
        excerpt(ex, sizeof ex, v);
        return cli_fail(CLI_FAIL, "%s: metadata \"vocab_size\" is %s, the vocabulary has %d", path,
                        ex, V);
    }
    if ((v = bp_net_get_meta(net, "batch")) && !parse_int(v, 1, 1 << 20, &k)) {
        excerpt(ex, sizeof ex, v);
        return cli_fail(CLI_FAIL, "%s: metadata \"batch\" is %s, not a stream count", path, ex);
    }
    return CLI_OK;
}

int cli_model_check(const bp_net *net, const char *path)
{
    char ex[80];
    int outs = bp_net_outputs(net), inputs = bp_net_inputs(net), st;
    const char *v;

    /* task and loss: what the outputs mean. */
    const char *task = bp_net_get_meta(net, "task");
    const char *loss_s = bp_net_get_meta(net, "loss");
    if (task && !strcmp(task, "text")) {
        if ((st = check_text(net, path))) return st;
        return check_shape_hidden(net, path);
    }
    if (task && strcmp(task, "classify") && strcmp(task, "regress")) {
        excerpt(ex, sizeof ex, task);
        return cli_fail(CLI_FAIL, "%s: metadata \"task\" is %s, expected classify, regress or "
                        "text", path, ex);
    }
    bp_loss loss = BP_LOSS_MSE;
    if (loss_s && bp_loss_parse(loss_s, &loss, NULL) != BP_OK) {
        excerpt(ex, sizeof ex, loss_s);
        return cli_fail(CLI_FAIL, "%s: metadata \"loss\" is an unknown loss %s", path, ex);
    }
    int classify = task ? !strcmp(task, "classify")
                        : loss_s ? loss != BP_LOSS_MSE : bp_net_layer(net, bp_net_layers(net) - 1).kind == BP_SOFTMAX;
    if (loss_s && classify && loss == BP_LOSS_MSE)
        return cli_fail(CLI_FAIL, "%s: metadata \"loss\" is mse, but the model classifies", path);
    if (loss_s && !classify && loss != BP_LOSS_MSE)
        return cli_fail(CLI_FAIL, "%s: metadata \"loss\" is %s, but a regression model needs mse",
                        path, bp_loss_name(loss));
    if (!loss_s) loss = classify ? (outs == 1 ? BP_LOSS_BCE : BP_LOSS_CROSS_ENTROPY) : BP_LOSS_MSE;
    if (classify && loss == BP_LOSS_BCE && outs != 1)
        return cli_fail(CLI_FAIL, "%s: metadata \"loss\" is bce, which needs 1 output; the model "
                        "has %d", path, outs);
    if (classify && loss == BP_LOSS_CROSS_ENTROPY && outs < 2)
        return cli_fail(CLI_FAIL, "%s: metadata \"loss\" is cross-entropy, which needs at least 2 "
                        "outputs; the model has %d", path, outs);
    int n_classes = classify ? (loss == BP_LOSS_BCE ? 2 : outs) : 0;
    int n_targets = classify ? 1 : outs;

    /* classes, n_classes. */
    if (!classify && bp_net_get_meta(net, "classes"))
        return cli_fail(CLI_FAIL, "%s: metadata \"classes\" is set, but the model is a regression "
                        "model", path);
    if (classify && (st = check_names(net, path, "classes", n_classes, NULL, NULL))) return st;
    long k;
    if ((v = bp_net_get_meta(net, "n_classes"))) {
        if (!parse_int(v, 0, INT_MAX, &k)) {
            excerpt(ex, sizeof ex, v);
            return cli_fail(CLI_FAIL, "%s: metadata \"n_classes\" is %s, not a class count", path, ex);
        }
        if (k != n_classes)
            return cli_fail(CLI_FAIL, "%s: metadata \"n_classes\" is %ld, the model has %d %s", path,
                            k, n_classes, classify ? "classes" : "(a regression model)");
    }
    if ((v = bp_net_get_meta(net, "n_targets"))) {
        if (!parse_int(v, 0, INT_MAX, &k)) {
            excerpt(ex, sizeof ex, v);
            return cli_fail(CLI_FAIL, "%s: metadata \"n_targets\" is %s, not a target count", path,
                            ex);
        }
        if (k != n_targets)
            return cli_fail(CLI_FAIL, "%s: metadata \"n_targets\" is %ld, the model predicts %d", path,
                            k, n_targets);
    }

    /* targets and features: the CSV columns, matched by name. */
    char **tn = NULL, **fn = NULL;
    int ntn = 0, nfn = 0, oom = 0;
    if ((st = check_names(net, path, "targets", n_targets, &tn, &ntn))) return st;
    if ((st = check_names(net, path, "features", inputs, &fn, &nfn))) {
        bp_strings_free(tn, ntn);
        return st;
    }
    const char *both = common(fn, nfn, tn, ntn, &oom);
    if (oom) st = cli_fail(CLI_FAIL, "out of memory");
    else if (both) {
        excerpt(ex, sizeof ex, both);
        st = cli_fail(CLI_FAIL, "%s: metadata \"features\" and \"targets\" both name %s", path, ex);
    }
    bp_strings_free(tn, ntn);
    bp_strings_free(fn, nfn);
    if (st) return st;

    /* data_format: csv models name their columns, idx models do not. */
    if ((v = bp_net_get_meta(net, "data_format"))) {
        if (strcmp(v, "csv") && strcmp(v, "idx")) {
            excerpt(ex, sizeof ex, v);
            return cli_fail(CLI_FAIL, "%s: metadata \"data_format\" is %s, expected csv or idx", path,
                            ex);
        }
        if (!strcmp(v, "idx") && bp_net_get_meta(net, "features"))
            return cli_fail(CLI_FAIL, "%s: metadata \"data_format\" is idx, but \"features\" names "
                            "CSV columns", path);
    }

    /* normalize, norm_shift, norm_scale: the input scaling. */
    bp_norm nm;
    bp_error err = {0};
    if (bp_norm_from_meta(&nm, net, &err) != BP_OK)
        return cli_fail(CLI_FAIL, "%s: %s", path, err.message);
    bp_norm_kind kind = nm.kind;
    bp_norm_free(&nm);
    if (kind == BP_NORM_NONE) {
        static const char *const lists[] = {"norm_shift", "norm_scale"};
        for (int i = 0; i < 2; i++)
            if ((v = bp_net_get_meta(net, lists[i])) && *v)
                return cli_fail(CLI_FAIL, "%s: metadata \"%s\" holds values, but \"normalize\" is %s",
                                path, lists[i], bp_net_get_meta(net, "normalize") ? "none" : "missing");
    }

    return check_shape_hidden(net, path);
}

/* input_shape and hidden: checked for every task. */
static int check_shape_hidden(const bp_net *net, const char *path)
{
    char ex[80];
    int inputs = bp_net_inputs(net);
    const char *v;
    /* input_shape: the per-sample shape (written by the library for image
     * and sequence inputs); its values must be the "inputs" and the
     * network's own input shape. */
    if ((v = bp_net_get_meta(net, "input_shape"))) {
        bp_shape sh, in = bp_net_input_shape(net);
        excerpt(ex, sizeof ex, v);
        if (!parse_shape_meta(v, &sh))
            return cli_fail(CLI_FAIL, "%s: metadata \"input_shape\" is %s, not a shape C,H,W", path,
                            ex);
        if (bp_shape_size(sh) != (size_t)inputs)
            return cli_fail(CLI_FAIL, "%s: metadata \"input_shape\" is %s, %zu values, but "
                            "\"inputs\" is %d", path, ex, bp_shape_size(sh), inputs);
        int same = sh.rank == in.rank;
        for (int i = 0; same && i < sh.rank; i++) same = sh.dim[i] == in.dim[i];
        if (!same && !(sh.rank == 1 && in.rank <= 1))
            return cli_fail(CLI_FAIL, "%s: metadata \"input_shape\" is %s, not the network's "
                            "input shape", path, ex);
    }

    /* hidden: the --arch that train --init-from reuses. */
    if ((v = bp_net_get_meta(net, "hidden")) && !hidden_matches(net, v)) {
        excerpt(ex, sizeof ex, v);
        return cli_fail(CLI_FAIL, "%s: metadata \"hidden\" is %s, which is not the spec %s without "
                        "its output layer", path, ex, bp_net_spec(net));
    }
    return CLI_OK;
}
