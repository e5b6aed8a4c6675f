/*
 * cmd_info.c - `backprop info MODEL`: what a model file holds.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a (32 bit) over the bytes of the layer's weight then bias: equal
 * checksums mean equal parameters (e.g. a frozen layer after fine-tuning). */
static uint32_t layer_checksum(bp_net *net, int i, int in)
{
    uint32_t h = 2166136261u;
    bp_layer_desc L = bp_net_layer(net, i);
    const bp_real *w = bp_net_weight(net, i), *b = bp_net_bias(net, i);
    size_t nw = (size_t)L.units * in;
    for (size_t k = 0; k < nw + (size_t)L.units; k++) {
        float v = (float)(k < nw ? w[k] : b[k - nw]);
        unsigned char bytes[sizeof v];
        memcpy(bytes, &v, sizeof v);
        for (size_t j = 0; j < sizeof v; j++) h = (h ^ bytes[j]) * 16777619u;
    }
    return h;
}

static void layer_word(char *buf, size_t size, bp_layer_desc L)
{
    switch (L.kind) {
    case BP_DENSE: snprintf(buf, size, "dense(%d)", L.units); break;
    case BP_IDENTITY: snprintf(buf, size, "identity"); break;
    case BP_SIGMOID: snprintf(buf, size, "sigmoid"); break;
    case BP_TANH: snprintf(buf, size, "tanh"); break;
    case BP_RELU: snprintf(buf, size, "relu"); break;
    case BP_LEAKY_RELU: snprintf(buf, size, "leaky_relu(%g)", L.param); break;
    case BP_SOFTMAX: snprintf(buf, size, "softmax"); break;
    case BP_DROPOUT: snprintf(buf, size, "dropout(%g)", L.param); break;
    default: snprintf(buf, size, "layer%d", (int)L.kind); break;
    }
}

static int info_json(bp_net *net, const char *path, const cli_model_info *mi)
{
    cJSON *o = cJSON_CreateObject(), *layers = cJSON_CreateArray(), *meta = cJSON_CreateObject();
    if (!o || !layers || !meta) {
        cJSON_Delete(o);
        cJSON_Delete(layers);
        cJSON_Delete(meta);
        return cli_fail(CLI_FAIL, "out of memory");
    }
    cJSON_AddStringToObject(o, "model", path);
    cJSON_AddStringToObject(o, "spec", bp_net_spec(net));
    cJSON_AddNumberToObject(o, "inputs", bp_net_inputs(net));
    cJSON_AddNumberToObject(o, "outputs", bp_net_outputs(net));
    cJSON_AddNumberToObject(o, "parameters", (double)bp_net_param_count(net));
    cJSON_AddStringToObject(o, "task", mi->classify ? "classify" : "regress");
    cJSON_AddStringToObject(o, "loss", bp_loss_name(mi->loss));
    if (mi->classify) {
        cJSON *c = cJSON_CreateArray();
        for (int k = 0; c && k < mi->n_classes; k++)
            cJSON_AddItemToArray(c, cJSON_CreateString(mi->classes[k]));
        if (c) cJSON_AddItemToObject(o, "classes", c);
    }
    int in = bp_net_inputs(net);
    for (int i = 0; i < bp_net_layers(net); i++) {
        bp_layer_desc L = bp_net_layer(net, i);
        cJSON *e = cJSON_CreateObject();
        if (!e) continue;
        char w[64];
        layer_word(w, sizeof w, L);
        cJSON_AddNumberToObject(e, "index", i);
        cJSON_AddStringToObject(e, "layer", w);
        cJSON_AddNumberToObject(e, "inputs", in);
        cJSON_AddNumberToObject(e, "outputs", L.units);
        if (L.kind == BP_DENSE) {
            char cs[16];
            snprintf(cs, sizeof cs, "%08x", (unsigned)layer_checksum(net, i, in));
            cJSON_AddNumberToObject(e, "parameters", (double)L.units * in + L.units);
            cJSON_AddStringToObject(e, "checksum", cs);
        } else {
            cJSON_AddNumberToObject(e, "parameters", 0);
        }
        cJSON_AddItemToArray(layers, e);
        in = L.units;
    }
    cJSON_AddItemToObject(o, "layers", layers);
    for (int i = 0; i < bp_net_meta_count(net); i++) {
        const char *k, *v;
        if (bp_net_meta_at(net, i, &k, &v)) cJSON_AddStringToObject(meta, k, v);
    }
    cJSON_AddItemToObject(o, "metadata", meta);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return cli_fail(CLI_FAIL, "out of memory");
    puts(s);
    cJSON_free(s);
    return CLI_OK;
}

static void print_value(const char *v, int full)
{
    size_t n = strlen(v);
    if (full || n <= 96) {
        fputs(v, stdout);
    } else {
        int commas = 0;
        for (const char *p = v; *p; p++) commas += *p == ',';
        printf("%.80s... (%zu characters, %d values; --full shows all)", v, n, commas + 1);
    }
    fputc('\n', stdout);
}

static void info_text(bp_net *net, const char *path, const cli_model_info *mi, int full)
{
    printf("model       %s\n", path);
    printf("spec        %s\n", bp_net_spec(net));
    printf("inputs      %d\n", bp_net_inputs(net));
    printf("outputs     %d\n", bp_net_outputs(net));
    printf("parameters  %zu\n", bp_net_param_count(net));
    if (mi->classify) {
        printf("task        classify (%s), %d classes:", bp_loss_name(mi->loss), mi->n_classes);
        for (int k = 0; k < mi->n_classes; k++) printf("%s %s", k ? "," : "", mi->classes[k]);
        printf("\n");
    } else {
        printf("task        regress (%s), %d target%s", bp_loss_name(mi->loss), mi->n_targets,
               mi->n_targets == 1 ? "" : "s");
        if (mi->targets) {
            printf(":");
            for (int t = 0; t < mi->n_target_names; t++) printf("%s %s", t ? "," : "", mi->targets[t]);
        }
        printf("\n");
    }
    bp_norm nm;
    bp_error err = {0};
    if (bp_norm_from_meta(&nm, net, &err) == BP_OK) {
        printf("normalize   %s", bp_norm_name(nm.kind));
        if (nm.kind != BP_NORM_NONE) printf(" (%d features, x' = (x - shift) * scale)", nm.n);
        printf("\n");
        bp_norm_free(&nm);
    } else {
        printf("normalize   invalid: %s\n", err.message);
    }
    if (!mi->classify) {
        if (bp_norm_targets_from_meta(&nm, net, &err) == BP_OK) {
            printf("targets     %s", bp_norm_name(nm.kind));
            if (nm.kind != BP_NORM_NONE)
                printf(" (trained on y' = (y - shift) * scale; outputs mapped back)");
            printf("\n");
            bp_norm_free(&nm);
        } else {
            printf("targets     invalid: %s\n", err.message);
        }
    }

    printf("\n%-5s  %-18s  %-8s  %10s  %-28s  %s\n", "layer", "kind", "output", "parameters",
           "tensors", "checksum");
    int in = bp_net_inputs(net);
    for (int i = 0; i < bp_net_layers(net); i++) {
        bp_layer_desc L = bp_net_layer(net, i);
        char w[64], shape[32], tensors[96] = "", cs[16] = "";
        layer_word(w, sizeof w, L);
        snprintf(shape, sizeof shape, "[%d]", L.units);
        size_t np = 0;
        if (L.kind == BP_DENSE) {
            np = (size_t)L.units * in + L.units;
            snprintf(tensors, sizeof tensors, "%d.weight [%d,%d], %d.bias [%d]", i, L.units, in, i,
                     L.units);
            snprintf(cs, sizeof cs, "%08x", (unsigned)layer_checksum(net, i, in));
        }
        printf("%-5d  %-18s  %-8s  %10zu  %-28s  %s\n", i, w, shape, np, tensors, cs);
        in = L.units;
    }
    printf("\nmetadata\n");
    int kw = 0;
    for (int i = 0; i < bp_net_meta_count(net); i++) {
        const char *k, *v;
        if (bp_net_meta_at(net, i, &k, &v) && (int)strlen(k) > kw) kw = (int)strlen(k);
    }
    for (int i = 0; i < bp_net_meta_count(net); i++) {
        const char *k, *v;
        if (!bp_net_meta_at(net, i, &k, &v)) continue;
        printf("  %-*s  ", kw, k);
        print_value(v, full);
    }
}

int cmd_info(int argc, char **argv)
{
    static const cli_opt opts[] = {
        {"--help", "-h", 0}, {"--json", NULL, 0}, {"--full", NULL, 0}, {NULL, NULL, 0}};
    cli_parser p = {"info", argc, argv, 1, 0};
    const char *v, *model = NULL;
    int k, json = 0, full = 0;
    while ((k = cli_next(&p, opts, &v)) != CLI_ARG_END) {
        if (k == CLI_ARG_ERROR) return CLI_USAGE;
        if (k == CLI_ARG_POSITIONAL) {
            if (model) return cli_fail(CLI_USAGE, "info: unexpected argument '%s'", v);
            model = v;
        } else if (k == 0) {
            fputs(usage_info, stdout);
            return CLI_OK;
        } else if (k == 1) {
            json = 1;
        } else {
            full = 1;
        }
    }
    if (!model) return cli_fail(CLI_USAGE, "info: missing MODEL (see 'backprop info --help')");
    bp_net *net = NULL;
    bp_error err = {0};
    if (bp_net_load(&net, model, &err) != BP_OK) return cli_fail(CLI_FAIL, "%s", err.message);
    cli_model_info mi;
    int st = cli_model_info_get(&mi, net, model);
    if (!st) {
        if (json) st = info_json(net, model, &mi);
        else info_text(net, model, &mi, full);
        cli_model_info_free(&mi);
    }
    bp_net_free(net);
    return st;
}
