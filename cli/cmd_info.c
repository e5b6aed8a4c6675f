/*
 * cmd_info.c - `backprop info MODEL`: what a model file holds.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a (32 bit) over the bytes of every tensor of layer i in file order
 * (weight, bias, then buffers; F32 values as float, I64 as int64): equal
 * checksums mean an equal layer (e.g. a frozen layer after fine-tuning).
 * For a dense layer that is its weight then its bias, as before. */
static uint32_t layer_checksum(bp_net *net, int i)
{
    uint32_t h = 2166136261u;
    bp_tensor t;
    for (int j = 0; bp_net_tensor(net, j, &t); j++) {
        if (t.layer != i) continue;
        for (size_t k = 0; k < t.count; k++) {
            unsigned char bytes[8] = {0};
            size_t nb;
            if (t.dtype == BP_DTYPE_I64) {
                memcpy(bytes, &t.i64[k], 8);
                nb = 8;
            } else {
                float v = (float)t.data[k];
                memcpy(bytes, &v, sizeof v);
                nb = sizeof v;
            }
            for (size_t q = 0; q < nb; q++) h = (h ^ bytes[q]) * 16777619u;
        }
    }
    return h;
}

/* The spec word of layer i: the i-th word of the canonical spec (one word
 * a layer, single spaces), e.g. "conv(8,3,1,1)". */
static void layer_word(char *buf, size_t size, const bp_net *net, int i)
{
    const char *p = bp_net_spec(net);
    for (int k = 0; k < i && p; k++) {
        p = strchr(p, ' ');
        if (p) p++;
    }
    if (!p) {
        snprintf(buf, size, "?");
        return;
    }
    size_t n = strcspn(p, " ");
    snprintf(buf, size, "%.*s", (int)n, p);
}

/* "[8,14,14]" (no spaces: one column of the table). */
static void shape_word(char *buf, size_t size, bp_shape sh)
{
    size_t len = (size_t)snprintf(buf, size, "[");
    for (int k = 0; k < sh.rank && len < size; k++)
        len += (size_t)snprintf(buf + len, size - len, "%s%d", k ? "," : "", sh.dim[k]);
    if (len < size) snprintf(buf + len, size - len, "]");
}

/* "0.weight [8,1,3,3], 0.bias [8]" for layer i (empty without tensors). */
static void layer_tensors(char *buf, size_t size, bp_net *net, int i)
{
    size_t len = 0;
    bp_tensor t;
    buf[0] = '\0';
    for (int j = 0; bp_net_tensor(net, j, &t) && len < size; j++) {
        if (t.layer != i) continue;
        len += (size_t)snprintf(buf + len, size - len, "%s%s [", len ? ", " : "", t.name);
        for (int k = 0; k < t.rank && len < size; k++)
            len += (size_t)snprintf(buf + len, size - len, "%s%lld", k ? "," : "",
                                    (long long)t.shape[k]);
        if (len < size) len += (size_t)snprintf(buf + len, size - len, "]");
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
    cJSON_AddStringToObject(o, "task", mi->text ? "text" : mi->classify ? "classify" : "regress");
    cJSON_AddStringToObject(o, "loss", bp_loss_name(mi->loss));
    if (mi->text) {
        cJSON_AddNumberToObject(o, "vocab_size", mi->vocab.size);
        cJSON_AddNumberToObject(o, "seq_len", mi->seq_len);
        cJSON_AddStringToObject(o, "encoding", bp_text_encoding_name(mi->vocab.encoding));
        if (mi->vocab.encoding == BP_TEXT_UTF8) {
            /* The characters themselves, as one JSON string. */
            char *chars = malloc((size_t)mi->vocab.size * 4 + 1);
            if (chars) {
                size_t len = 0;
                for (int k = 0; k < mi->vocab.size; k++)
                    len += (size_t)bp_vocab_token_bytes(&mi->vocab, k, chars + len);
                chars[len] = '\0';
                /* A NUL character would end the string: leave it to "vocab". */
                if (strlen(chars) == len) cJSON_AddStringToObject(o, "vocabulary", chars);
                free(chars);
            }
        }
    }
    if (mi->classify) {
        cJSON *c = cJSON_CreateArray();
        for (int k = 0; c && k < mi->n_classes; k++)
            cJSON_AddItemToArray(c, cJSON_CreateString(mi->classes[k]));
        if (c) cJSON_AddItemToObject(o, "classes", c);
    }
    bp_shape ish = bp_net_input_shape(net);
    cJSON *ia = cJSON_CreateArray();
    for (int k = 0; ia && k < ish.rank; k++) cJSON_AddItemToArray(ia, cJSON_CreateNumber(ish.dim[k]));
    if (ia) cJSON_AddItemToObject(o, "input_shape", ia);
    size_t in = bp_shape_size(ish);
    for (int i = 0; i < bp_net_layers(net); i++) {
        bp_layer_desc L = bp_net_layer(net, i);
        bp_shape sh = bp_net_layer_shape(net, i);
        cJSON *e = cJSON_CreateObject();
        if (!e) continue;
        char w[64];
        layer_word(w, sizeof w, net, i);
        cJSON_AddNumberToObject(e, "index", i);
        cJSON_AddStringToObject(e, "layer", w);
        cJSON_AddNumberToObject(e, "inputs", (double)in);
        cJSON_AddNumberToObject(e, "outputs", (double)bp_shape_size(sh));
        cJSON *sa = cJSON_CreateArray();
        for (int k = 0; sa && k < sh.rank; k++) cJSON_AddItemToArray(sa, cJSON_CreateNumber(sh.dim[k]));
        if (sa) cJSON_AddItemToObject(e, "output_shape", sa);
        cJSON_AddNumberToObject(e, "parameters", (double)bp_net_layer_param_count(net, i));
        if (bp_layer_is_parametric(L.kind)) {
            char cs[16];
            snprintf(cs, sizeof cs, "%08x", (unsigned)layer_checksum(net, i));
            cJSON_AddStringToObject(e, "checksum", cs);
        }
        cJSON_AddItemToArray(layers, e);
        in = bp_shape_size(sh);
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

/* The vocabulary as one quoted line: its characters (bytes: printable
 * ASCII), "\n", "\t", "\r", "\\" and "\"" escaped, other control characters
 * and bytes as \xNN or \u{N}; cut after 96 symbols unless `full`. */
static void print_vocab(const bp_vocab *v, int full)
{
    int shown = full || v->size <= 96 ? v->size : 80;
    putchar('"');
    for (int k = 0; k < shown; k++) {
        uint32_t c = v->symbols[k];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\\' || c == '"') printf("\\%c", (int)c);
        else if (c < 0x20 || c == 0x7f || (v->encoding == BP_TEXT_BYTES && c >= 0x80))
            printf("\\x%02X", (unsigned)c);
        else if (c >= 0x80 && (c <= 0x9f || c == 0x2028 || c == 0x2029 || c == 0xFEFF))
            printf("\\u{%X}", (unsigned)c);
        else {
            char b[4];
            int n = bp_vocab_token_bytes(v, k, b);
            fwrite(b, 1, (size_t)n, stdout);
        }
    }
    putchar('"');
    if (shown < v->size) printf("... (%d in all; --full shows all)", v->size);
    putchar('\n');
}

static void info_text(bp_net *net, const char *path, const cli_model_info *mi, int full)
{
    printf("model       %s\n", path);
    printf("spec        %s\n", bp_net_spec(net));
    printf("inputs      %d\n", bp_net_inputs(net));
    printf("outputs     %d\n", bp_net_outputs(net));
    printf("parameters  %zu\n", bp_net_param_count(net));
    if (mi->text) {
        printf("task        text (%s per character): next-character prediction\n",
               bp_loss_name(mi->loss));
        printf("vocabulary  %d %s (%s): ", mi->vocab.size,
               mi->vocab.encoding == BP_TEXT_BYTES ? "bytes" : "characters",
               bp_text_encoding_name(mi->vocab.encoding));
        print_vocab(&mi->vocab, full);
        printf("seq_len     %d (windows of %d characters, trained as %d parallel streams with "
               "carried state)\n", mi->seq_len, mi->seq_len, mi->streams);
    } else if (mi->classify) {
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
    if (mi->text) {
        /* token ids: no input scaling, no targets */
    } else if (bp_norm_from_meta(&nm, net, &err) == BP_OK) {
        printf("normalize   %s", bp_norm_name(nm.kind));
        if (nm.kind != BP_NORM_NONE) printf(" (%d features, x' = (x - shift) * scale)", nm.n);
        printf("\n");
        bp_norm_free(&nm);
    } else {
        printf("normalize   invalid: %s\n", err.message);
    }
    if (!mi->classify && !mi->text) {
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

    /* One row a layer, as Keras' summary(): the spec word, the output
     * shape of one sample, the trainable parameters; then the tensors and a
     * checksum of the layer's tensors (last column: equal means equal). */
    int lw = 5;
    for (int i = 0; i < bp_net_layers(net); i++) {
        char w[64];
        layer_word(w, sizeof w, net, i);
        if ((int)strlen(w) > lw) lw = (int)strlen(w);
    }
    printf("\n%-5s  %-*s  %-14s  %10s  %-30s  %s\n", "index", lw, "layer", "output shape",
           "parameters", "tensors", "checksum");
    char ishape[64], total[32];
    shape_word(ishape, sizeof ishape, bp_net_input_shape(net));
    printf("%-5s  %-*s  %-14s  %10s\n", "-", lw, "input", ishape, "0");
    int n_par = 0;
    for (int i = 0; i < bp_net_layers(net); i++) {
        bp_layer_desc L = bp_net_layer(net, i);
        char w[64], shape[64], tensors[160], cs[16] = "";
        layer_word(w, sizeof w, net, i);
        shape_word(shape, sizeof shape, bp_net_layer_shape(net, i));
        layer_tensors(tensors, sizeof tensors, net, i);
        if (bp_layer_is_parametric(L.kind)) {
            snprintf(cs, sizeof cs, "%08x", (unsigned)layer_checksum(net, i));
            n_par++;
        }
        printf("%-5d  %-*s  %-14s  %10zu  %-30s  %s\n", i, lw, w, shape,
               bp_net_layer_param_count(net, i), tensors, cs);
    }
    cli_fmt_count(total, sizeof total, bp_net_param_count(net));
    printf("total  %s parameters in %d layers with parameters (dense, conv, batchnorm, recurrent, "
           "embedding), input shape %s\n", total, n_par, ishape);
    const char *fr = bp_net_get_meta(net, "freeze");
    if (fr && strcmp(fr, "0"))
        printf("       trained with --freeze %s (the first %s layers with parameters kept)\n", fr, fr);
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
