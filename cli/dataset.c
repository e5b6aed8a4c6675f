/*
 * dataset.c - reading DATA (CSV or IDX) for the commands, CSV header
 * names, and the model metadata the commands rely on (task, loss,
 * classes, targets).
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Format detection                                                          */
/* ------------------------------------------------------------------------ */

int cli_is_idx(const char *path)
{
    const unsigned char *data;
    size_t size;
    char msg[512];
    if (cli_input_read(path, &data, &size, msg, sizeof msg)) {
        cli_fail(CLI_FAIL, "%s", msg);
        return -1;
    }
    if (bp_is_idx_data(data, size)) return 1;
    /* Gzip data is decided by its content (a .csv.gz is CSV); a plain file
     * named like MNIST's goes to the IDX reader, which says what is wrong. */
    int gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    if (!gz && (strstr(path, "-ubyte") || strstr(path, ".idx"))) return 1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* CSV header                                                                */
/* ------------------------------------------------------------------------ */

char **cli_csv_header(const char *path, int *n)
{
    *n = 0;
    const unsigned char *data;
    size_t size;
    char msg[512];
    if (cli_input_read(path, &data, &size, msg, sizeof msg)) return NULL;
    bp_csv_options co;
    memset(&co, 0, sizeof co);
    cli_csv_apply(&co);
    char **names = NULL;
    bp_error err = {0};
    if (bp_csv_header(data, size, cli_input_name(path), &co, &names, n, &err) != BP_OK) return NULL;
    return names;
}

/* Sort context for cli_csv_duplicate (qsort has no user pointer). */
static char *const *g_sort_names;
static int cmp_names(const void *pa, const void *pb)
{
    int a = *(const int *)pa, b = *(const int *)pb;
    int c = strcmp(g_sort_names[a], g_sort_names[b]);
    return c ? c : (a > b) - (a < b);
}

int cli_csv_duplicate(char *const *names, int n, int *first, int *second)
{
    if (n < 2) return 0;
    int *ix = malloc((size_t)n * sizeof *ix);
    if (!ix) return -1;
    for (int i = 0; i < n; i++) ix[i] = i;
    g_sort_names = names;
    qsort(ix, (size_t)n, sizeof *ix, cmp_names);
    /* Equal names are adjacent, in column order; the pair reported is the
     * one whose second column comes first, as a reader of the header meets it. */
    int found = 0, run = 0;
    for (int i = 1; i < n; i++) {
        if (strcmp(names[ix[i - 1]], names[ix[i]])) {
            run = i;
            continue;
        }
        if (i == run + 1 && (!found || ix[i] < *second)) {
            *first = ix[run];
            *second = ix[i];
            found = 1;
        }
    }
    free(ix);
    return found;
}

/* Resolve the target option like bp_read_csv does, giving column indices.
 * Returns the count (0 when it cannot tell). */
static int resolve_one(char *const *h, int nh, const char *t, size_t len)
{
    for (int i = 0; i < nh; i++)
        if (strlen(h[i]) == len && !strncmp(h[i], t, len)) return i;
    char buf[32];
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, t, len);
    buf[len] = '\0';
    char *end;
    long v = strtol(buf, &end, 10);
    if (*end || v < 0 || v >= nh) return -1;
    return (int)v;
}

static int resolve_targets(char *const *h, int nh, const char *target, int *idx, int max)
{
    if (!target) {
        idx[0] = nh - 1;
        return 1;
    }
    int k = resolve_one(h, nh, target, strlen(target));
    if (k >= 0) {
        idx[0] = k;
        return 1;
    }
    int n = 0;
    const char *p = target;
    for (;;) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        while (len && *p == ' ') p++, len--;
        while (len && p[len - 1] == ' ') len--;
        k = resolve_one(h, nh, p, len);
        if (k < 0 || n >= max) return 0;
        idx[n++] = k;
        if (!q) break;
        p = q + 1;
    }
    return n;
}

/* ------------------------------------------------------------------------ */
/* Reading DATA                                                              */
/* ------------------------------------------------------------------------ */

void cli_dataset_free(cli_dataset *ds)
{
    if (!ds) return;
    bp_strings_free(ds->features, ds->features ? ds->d.n_inputs : 0);
    bp_strings_free(ds->targets, ds->n_target_names);
    bp_data_free(&ds->d);
    memset(ds, 0, sizeof *ds);
}

/* Failures of the readers below fill `msg` (not printed) and return a status. */
static int msg_fail(char *msg, size_t size, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static int msg_fail(char *msg, size_t size, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, size, fmt, ap);
    va_end(ap);
    return status;
}

static int read_idx(cli_dataset *ds, const char *path, const unsigned char *data, size_t size,
                    const cli_read_opts *o, char *msg, size_t msz)
{
    bp_error err = {0};
    if (!o->labels && o->need == CLI_TARGET_REQUIRED)
        return msg_fail(msg, msz, CLI_USAGE, "%s: IDX images need their labels: --labels FILE",
                        cli_input_name(path));
    const unsigned char *lab = NULL;
    size_t lsize = 0;
    if (o->labels && cli_input_read(o->labels, &lab, &lsize, msg, msz)) return CLI_FAIL;
    if (bp_read_idx_mem_named(&ds->d, data, size, cli_input_name(path), lab, lsize,
                              o->labels ? cli_input_name(o->labels) : NULL, &err) != BP_OK)
        return msg_fail(msg, msz, CLI_FAIL, "%s", err.message);
    ds->is_idx = 1;
    if (o->labels && o->n_class_names > 0) {
        /* A model's classes: the labels must be among them. */
        for (int r = 0; r < ds->d.n; r++) {
            int lab_r = (int)ds->d.y[r];
            if (lab_r >= o->n_class_names) {
                cli_dataset_free(ds);
                return msg_fail(msg, msz, CLI_FAIL, "%s: label %d of image %d is not a class of "
                                "the model (0..%d)", cli_input_name(o->labels), lab_r, r + 1,
                                o->n_class_names - 1);
            }
        }
        ds->d.n_classes = o->n_class_names;
    }
    return CLI_OK;
}

int cli_read_data_quiet(cli_dataset *ds, const char *path, const cli_read_opts *o, char *msg,
                        size_t msz)
{
    memset(ds, 0, sizeof *ds);
    msg[0] = '\0';
    /* DATA is read once (cli_input_read): sniffing, header and parse all
     * use the same bytes, so a pipe or "-" works. */
    const unsigned char *data;
    size_t size;
    if (cli_input_read(path, &data, &size, msg, msz)) return CLI_FAIL;
    int idx = 1;
    if (!o->labels) {
        idx = bp_is_idx_data(data, size);
        int gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
        if (!idx && !gz && (strstr(path, "-ubyte") || strstr(path, ".idx"))) idx = 1;
    }
    if (idx) return read_idx(ds, path, data, size, o, msg, msz);

    const char *name = cli_input_name(path);
    bp_csv_options co;
    memset(&co, 0, sizeof co);
    co.target = o->target;
    co.task = o->task;
    co.class_names = o->class_names;
    co.n_class_names = o->n_class_names;
    co.target_optional = o->need == CLI_TARGET_OPTIONAL;
    co.no_target = o->no_target;
    co.feature_names = o->feature_names;
    co.n_feature_names = o->n_feature_names;
    cli_csv_apply(&co);
    bp_error err = {0};
    char **fn = NULL;
    if (bp_read_csv_mem(&ds->d, data, size, name, &co, &fn, &err) != BP_OK)
        return msg_fail(msg, msz, err.code == BP_EINVAL ? CLI_USAGE : CLI_FAIL, "%s", err.message);
    ds->features = fn;

    /* Names of the target columns (for predict's header and the model). */
    if (ds->d.n_targets > 0) {
        int nh = 0;
        char **h = NULL;
        bp_error herr = {0};
        if (bp_csv_header(data, size, name, &co, &h, &nh, &herr) != BP_OK) h = NULL, nh = 0;
        int tidx[256], nt = h ? resolve_targets(h, nh, o->target, tidx, 256) : 0;
        if (nt == ds->d.n_targets) {
            ds->targets = calloc((size_t)nt, sizeof *ds->targets);
            if (ds->targets) {
                ds->n_target_names = nt;
                for (int i = 0; i < nt; i++) ds->targets[i] = cli_strdup(h[tidx[i]]);
            }
        }
        bp_strings_free(h, nh);
        if (!ds->targets) {
            ds->targets = calloc((size_t)ds->d.n_targets, sizeof *ds->targets);
            if (ds->targets) {
                ds->n_target_names = ds->d.n_targets;
                for (int i = 0; i < ds->d.n_targets; i++)
                    ds->targets[i] = ds->d.n_targets == 1 ? cli_strdup("target")
                                                          : cli_printf("target_%d", i + 1);
            }
        }
        for (int i = 0; i < ds->n_target_names; i++)
            if (!ds->targets[i]) {
                cli_dataset_free(ds);
                return msg_fail(msg, msz, CLI_FAIL, "out of memory");
            }
    }
    return CLI_OK;
}

int cli_read_data(cli_dataset *ds, const char *path, const cli_read_opts *o)
{
    char msg[768];
    int st = cli_read_data_quiet(ds, path, o, msg, sizeof msg);
    if (st) cli_fail(st, "%s", msg);
    return st;
}

char *cli_target_for(const char *path, char *const *names, int n_names, int n_targets)
{
    int nh = 0;
    char **h = cli_csv_header(path, &nh);
    if (!h) return NULL;
    int all = names && n_names == n_targets;
    for (int i = 0; all && i < n_names; i++) {
        int found = 0;
        for (int j = 0; j < nh && !found; j++) found = !strcmp(h[j], names[i]);
        all = found;
    }
    char *out = NULL;
    if (all) {
        out = cli_join_names(names, n_names);
    } else if (n_targets >= 1 && n_targets < nh) {
        /* The last n_targets columns, by index. */
        size_t len = (size_t)n_targets * 12 + 1;
        out = malloc(len);
        if (out) {
            out[0] = '\0';
            for (int i = 0; i < n_targets; i++) {
                size_t l = strlen(out);
                snprintf(out + l, len - l, "%s%d", i ? "," : "", nh - n_targets + i);
            }
        }
    }
    bp_strings_free(h, nh);
    return out;
}

/* ------------------------------------------------------------------------ */
/* JSON string arrays                                                        */
/* ------------------------------------------------------------------------ */

char **cli_json_strings(const char *json, int *n)
{
    *n = 0;
    if (!json) return NULL;
    cJSON *a = cJSON_Parse(json);
    if (!a || !cJSON_IsArray(a)) {
        cJSON_Delete(a);
        return NULL;
    }
    int count = cJSON_GetArraySize(a);
    char **s = calloc((size_t)(count > 0 ? count : 1), sizeof *s);
    int ok = s != NULL, i = 0;
    /* Walk the list once: cJSON_GetArrayItem(a, i) walks from the head
     * every time, which made loading a model with 10^5 features take
     * minutes. */
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (!ok || i >= count) break;
        if (!cJSON_IsString(e)) ok = 0;
        else if (!(s[i++] = cli_strdup(e->valuestring))) ok = 0;
    }
    cJSON_Delete(a);
    if (!ok) {
        bp_strings_free(s, count);
        return NULL;
    }
    *n = count;
    return s;
}

char *cli_json_array(char *const *s, int n)
{
    cJSON *a = cJSON_CreateArray();
    if (!a) return NULL;
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateString(s[i]);
        if (!e) {
            cJSON_Delete(a);
            return NULL;
        }
        cJSON_AddItemToArray(a, e);
    }
    char *text = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    if (!text) return NULL;
    char *out = cli_strdup(text);
    cJSON_free(text);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Model task information                                                    */
/* ------------------------------------------------------------------------ */

void cli_model_info_free(cli_model_info *mi)
{
    if (!mi) return;
    bp_strings_free(mi->classes, mi->n_classes);
    bp_strings_free(mi->targets, mi->n_target_names);
    bp_strings_free(mi->features, mi->n_features);
    bp_vocab_free(&mi->vocab);
    memset(mi, 0, sizeof *mi);
}

int cli_model_info_get(cli_model_info *mi, const bp_net *net, const char *path)
{
    memset(mi, 0, sizeof *mi);
    int vst = cli_model_check(net, path);
    if (vst) return vst;
    int outs = bp_net_outputs(net), nl = bp_net_layers(net);
    mi->out_kind = bp_net_layer(net, nl - 1).kind;
    const char *task = bp_net_get_meta(net, "task");
    const char *loss = bp_net_get_meta(net, "loss");
    if (task && !strcmp(task, "text")) {
        /* Checked by cli_model_check: the vocabulary fits the network. */
        bp_error err = {0};
        if (bp_vocab_from_meta(&mi->vocab, net, &err) != BP_OK)
            return cli_fail(CLI_FAIL, "%s: %s", path, err.message);
        mi->text = 1;
        mi->loss = BP_LOSS_CROSS_ENTROPY;
        mi->seq_len = bp_net_inputs(net);
        mi->n_targets = mi->seq_len;
        const char *b = bp_net_get_meta(net, "batch");
        mi->streams = b ? atoi(b) : 32;
        if (mi->streams < 1) mi->streams = 32;
        return CLI_OK;
    }
    if (task && strcmp(task, "classify") && strcmp(task, "regress"))
        return cli_fail(CLI_FAIL, "%s: metadata \"task\" is '%s', expected classify or regress",
                        path, task);
    if (loss) {
        if (bp_loss_parse(loss, &mi->loss, NULL) != BP_OK)
            return cli_fail(CLI_FAIL, "%s: metadata \"loss\" is an unknown loss '%s'", path, loss);
    } else {
        int cls = task ? !strcmp(task, "classify") : mi->out_kind == BP_SOFTMAX;
        mi->loss = cls ? (outs == 1 ? BP_LOSS_BCE : BP_LOSS_CROSS_ENTROPY) : BP_LOSS_MSE;
    }
    mi->classify = task ? !strcmp(task, "classify") : mi->loss != BP_LOSS_MSE;
    if (mi->classify && mi->loss == BP_LOSS_MSE)
        return cli_fail(CLI_FAIL, "%s: a classification model with the mse loss is not supported",
                        path);
    if (!mi->classify && mi->loss != BP_LOSS_MSE)
        return cli_fail(CLI_FAIL, "%s: a regression model needs the mse loss, it has %s", path,
                        bp_loss_name(mi->loss));
    if (mi->classify) {
        int want = mi->loss == BP_LOSS_BCE ? 2 : outs;
        if (mi->loss == BP_LOSS_BCE && outs != 1)
            return cli_fail(CLI_FAIL, "%s: a bce classifier needs 1 output, the model has %d", path,
                            outs);
        int n = 0;
        char **cls = cli_json_strings(bp_net_get_meta(net, "classes"), &n);
        if (cls && n != want) {
            bp_strings_free(cls, n);
            return cli_fail(CLI_FAIL, "%s: metadata \"classes\" names %d classes, the model has %d",
                            path, n, want);
        }
        if (!cls) {
            cls = calloc((size_t)want, sizeof *cls);
            for (int i = 0; cls && i < want; i++)
                if (!(cls[i] = cli_printf("%d", i))) {
                    bp_strings_free(cls, i);
                    cls = NULL;
                }
            if (!cls) return cli_fail(CLI_FAIL, "out of memory");
            n = want;
        }
        mi->classes = cls;
        mi->n_classes = n;
        mi->n_targets = 1;
    } else {
        mi->n_targets = outs;
    }
    int nt = 0;
    char **t = cli_json_strings(bp_net_get_meta(net, "targets"), &nt);
    if (t && nt != mi->n_targets) {
        bp_strings_free(t, nt);
        t = NULL;
        nt = 0;
    }
    mi->targets = t;
    mi->n_target_names = nt;
    int nf = 0;
    char **fn = cli_json_strings(bp_net_get_meta(net, "features"), &nf);
    if (fn && nf != bp_net_inputs(net)) {
        bp_strings_free(fn, nf);
        fn = NULL;
        nf = 0;
    }
    mi->features = fn;
    mi->n_features = nf;
    return CLI_OK;
}
