/*
 * cmd_export.c - `backprop export`: a model as ONNX (bp_export_onnx) or as
 * standalone C99 (bp_export_c), float and, with --int8 --calibrate DATA,
 * post-training quantized int8.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const cli_opt export_opts[] = {
    {"--help", "-h", 0},
    {"--onnx", NULL, 1},
    {"--c", NULL, 1},
    {"--name", NULL, 1},
    {"--int8", NULL, 0},
    {"--calibrate", NULL, 1},
    {"--calibrate-rows", NULL, 1},
    {"--labels", NULL, 1},
    {"--target", NULL, 1},
    {"--delimiter", NULL, 1},
    {"--skip-rows", NULL, 1},
    {"--no-header", NULL, 0},
    {NULL, NULL, 0},
};

typedef struct export_args {
    const char *model, *onnx, *cdir, *name, *calib, *labels, *target;
    int int8;
    int calib_rows; /* most calibration rows used (the first ones) */
} export_args;

static int parse(export_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->calib_rows = 1000;
    cli_parser p = {"export", argc, argv, 1, 0};
    const char *v;
    int k, r = 0;
    while ((k = cli_next(&p, export_opts, &v)) != CLI_ARG_END) {
        if (k == CLI_ARG_ERROR) return CLI_USAGE;
        if (k == CLI_ARG_POSITIONAL) {
            if (!a->model) a->model = v;
            else return cli_fail(CLI_USAGE, "export: unexpected argument '%s'", v);
            continue;
        }
        const char *name = export_opts[k].name;
        if (!strcmp(name, "--help")) {
            fputs(usage_export, stdout);
            return -1;
        }
        if (!strcmp(name, "--onnx")) a->onnx = v;
        else if (!strcmp(name, "--c")) a->cdir = v;
        else if (!strcmp(name, "--name")) a->name = v;
        else if (!strcmp(name, "--int8")) a->int8 = 1;
        else if (!strcmp(name, "--calibrate")) a->calib = v;
        else if (!strcmp(name, "--calibrate-rows"))
            r = cli_int(name, v, 1, 1000000000, &a->calib_rows);
        else if (!strcmp(name, "--labels")) a->labels = v;
        else if (!strcmp(name, "--target")) a->target = v;
        else if (cli_dialect_option(name, v, &r)) { /* into cli_csv */ }
        if (r) return r;
    }
    if (!a->model)
        return cli_fail(CLI_USAGE, "export: needs MODEL (see 'backprop export --help')");
    if (!a->onnx && !a->cdir)
        return cli_fail(CLI_USAGE, "export: say what to write: --onnx FILE.onnx and/or --c DIR");
    if (a->int8 && !a->cdir)
        return cli_fail(CLI_USAGE, "export: --int8 is for the C code (--c DIR); ONNX is "
                        "exported in float32");
    if (a->int8 && !a->calib)
        return cli_fail(CLI_USAGE, "export: --int8 needs --calibrate DATA (rows like the "
                        "training data, for the activations' ranges)");
    if (a->calib && !a->int8)
        return cli_fail(CLI_USAGE, "export: --calibrate is for --int8");
    if ((a->labels || a->target) && !a->calib)
        return cli_fail(CLI_USAGE, "export: %s is for the --calibrate data",
                        a->labels ? "--labels" : "--target");
    if (a->name) {
        size_t n = strlen(a->name);
        int ok = n > 0 && n <= 63 && !(a->name[0] >= '0' && a->name[0] <= '9');
        for (size_t i = 0; ok && i < n; i++) {
            char c = a->name[i];
            ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_';
        }
        if (!ok)
            return cli_fail(CLI_USAGE, "export: --name '%s': a C identifier of 1 to 63 letters, "
                            "digits and '_', not starting with a digit", a->name);
    }
    return 0;
}

/* The library's message without its "bp_export_...: " prefix (the tool
 * says "export: " itself). */
static const char *lib_message(const bp_error *err)
{
    const char *m = err->message;
    if (!strncmp(m, "bp_export_", 10)) {
        const char *colon = strstr(m, ": ");
        if (colon) return colon + 2;
    }
    return m;
}

int cmd_export(int argc, char **argv)
{
    export_args a;
    int st = parse(&a, argc, argv);
    if (st) return st < 0 ? CLI_OK : st;
    const char *outs[] = {a.onnx}, *on[] = {"--onnx"};
    const char *ins[] = {a.model, a.calib, a.labels},
               *in_names[] = {"MODEL", "--calibrate file", "--labels file"};
    if ((st = cli_check_outputs(outs, on, 1, ins, in_names, 3))) return st;
    if (a.cdir) {
        struct stat sb;
        if (stat(a.cdir, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return cli_fail(CLI_FAIL, "export: --c %s: not a directory (create it first)", a.cdir);
    }

    bp_error err = {0};
    bp_net *net = NULL;
    cli_model_info mi;
    memset(&mi, 0, sizeof mi);
    cli_dataset ds;
    memset(&ds, 0, sizeof ds);
    if (bp_net_load(&net, a.model, &err) != BP_OK) return cli_fail(CLI_FAIL, "%s", err.message);
    if ((st = cli_model_info_get(&mi, net, a.model))) goto done;

    bp_export_options opt;
    memset(&opt, 0, sizeof opt);
    opt.name = a.name;
    if (a.int8) {
        if (mi.text) {
            st = cli_fail(CLI_FAIL, "export: --int8: %s is a text model; int8 covers dense and "
                          "convolutional networks (export it in float: --c without --int8)",
                          a.model);
            goto done;
        }
        if ((st = cli_read_model_rows(net, &mi, a.model, a.calib, a.labels, a.target,
                                      CLI_TARGET_OPTIONAL, &ds)))
            goto done;
        opt.int8 = 1;
        opt.calib = ds.d.x;
        opt.calib_n = ds.d.n < a.calib_rows ? ds.d.n : a.calib_rows;
    }
    /* Each export is prepared in memory and written atomically. The C
     * files go first (their int8 quantization is what can refuse a model);
     * only when the ONNX file then cannot be written do the C files stay. */
    if (a.cdir && bp_export_c(net, a.cdir, &opt, &err) != BP_OK) {
        st = cli_fail(CLI_FAIL, "export: %s", lib_message(&err));
        goto done;
    }
    if (a.onnx && bp_export_onnx(net, a.onnx, &opt, &err) != BP_OK) {
        st = cli_fail(CLI_FAIL, "export: %s%s", lib_message(&err),
                      a.cdir ? " (the C files were written)" : "");
        goto done;
    }
    if (a.onnx) fprintf(stderr, "backprop: wrote %s (ONNX, opset 13)\n", a.onnx);
    if (a.cdir) {
        const char *nm = a.name ? a.name : "model";
        fprintf(stderr, "backprop: wrote %s/%s.h and %s/%s.c (C99%s)\n", a.cdir, nm, a.cdir, nm,
                a.int8 ? ", float and int8" : "");
    }
done:
    cli_dataset_free(&ds);
    cli_model_info_free(&mi);
    bp_net_free(net);
    return st;
}
