/* test_export_c.c - bp_export_c's contract: argument errors (NULL, bad
 * names, int8 without calibration rows or with a NaN in them, a layer kind
 * int8 does not quantize, a batchnorm with no dense/conv before it), write
 * errors (a missing directory, a path that is a file, a read-only
 * directory, NAME.h that cannot be replaced) leave no file and no
 * temporary behind and NAME.c as it was, and a good export writes both
 * files with the documented names. The generated code's results are
 * checked by tests/cli/test_cli_export_c.sh, which compiles it. */
#include "backprop.h"
#include "check.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bp_error err;

static char dir[256];

static void path(char *buf, size_t n, const char *file) { snprintf(buf, n, "%s/%s", dir, file); }

static int exists(const char *file)
{
    char p[512];
    path(p, sizeof p, file);
    struct stat st;
    return stat(p, &st) == 0;
}

/* Entries of dir (not . and ..); *tmp set when one holds ".tmp" or ".bak". */
static int entries(const char *d, int *tmp)
{
    DIR *h = opendir(d);
    int n = 0;
    *tmp = 0;
    if (!h) return -1;
    struct dirent *e;
    while ((e = readdir(h)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            n++;
            if (strstr(e->d_name, ".tmp") || strstr(e->d_name, ".bak")) *tmp = 1;
        }
    closedir(h);
    return n;
}

static char *slurp(const char *file)
{
    char p[512];
    path(p, sizeof p, file);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

static void clean(void)
{
    DIR *h = opendir(dir);
    if (!h) return;
    struct dirent *e;
    while ((e = readdir(h))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[512];
        path(p, sizeof p, e->d_name);
        if (remove(p) != 0) rmdir(p);
    }
    closedir(h);
}

static bp_net *make(const char *spec, bp_shape in)
{
    bp_net *net = NULL;
    bp_status s = bp_net_create_shaped(&net, in, spec, 7, &err);
    CHECK(s == BP_OK, "create %s: %s", spec, err.message);
    return net;
}

static void test_arguments(void)
{
    bp_net *net = make("dense(4) relu dense(3)", bp_shape_flat(5));
    bp_export_options o;
    memset(&o, 0, sizeof o);
    CHECK(bp_export_c(NULL, dir, &o, &err) == BP_EINVAL, "NULL net");
    CHECK(bp_export_c(net, NULL, &o, &err) == BP_EINVAL, "NULL dir");
    const char *bad[] = {"", "1abc", "a-b", "a b", "int", "while", "_Bool",
                         "a123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        o.name = bad[k];
        CHECK(bp_export_c(net, dir, &o, &err) == BP_EINVAL && strstr(err.message, "name"),
              "name '%s' refused: %s", bad[k], err.message);
    }
    o.name = "net_1";
    o.int8 = 1;
    CHECK(bp_export_c(net, dir, &o, &err) == BP_EINVAL && strstr(err.message, "calibration"),
          "int8 without rows: %s", err.message);
    bp_real rows[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    o.calib = rows;
    o.calib_n = 0;
    CHECK(bp_export_c(net, dir, &o, &err) == BP_EINVAL, "calib_n 0");
    rows[7] = (bp_real)NAN;
    o.calib_n = 2;
    CHECK(bp_export_c(net, dir, &o, &err) == BP_EINVAL && strstr(err.message, "row 2, feature 3"),
          "NaN in the rows named: %s", err.message);
    rows[7] = (bp_real)INFINITY;
    CHECK(bp_export_c(net, dir, &o, &err) == BP_EINVAL, "Inf in the rows");
    int tmp, n = entries(dir, &tmp);
    CHECK(n == 0, "no file written by the failures (%d entries)", n);
    bp_net_free(net);
}

static void test_int8_unsupported(void)
{
    bp_shape seq = {2, {4, 3, 0}};
    bp_net *net = make("lstm(5) last dense(2)", seq);
    bp_real rows[12] = {0};
    bp_export_options o;
    memset(&o, 0, sizeof o);
    o.int8 = 1, o.calib = rows, o.calib_n = 1;
    bp_status s = bp_export_c(net, dir, &o, &err);
    CHECK(s == BP_EUNSUPPORTED && strstr(err.message, "layer 0 (lstm)"), "lstm: %d %s", (int)s,
          err.message);
    o.int8 = 0;
    CHECK(bp_export_c(net, dir, &o, &err) == BP_OK, "lstm in float: %s", err.message);
    CHECK(exists("model.c") && exists("model.h"), "the default name is 'model'");
    bp_net_free(net);
    clean();

    bp_shape img = {3, {1, 6, 6}};
    net = make("conv(2,3) relu batchnorm", img);
    bp_real px[36] = {0};
    o.int8 = 1, o.calib = px, o.calib_n = 1;
    s = bp_export_c(net, dir, &o, &err);
    CHECK(s == BP_EUNSUPPORTED && strstr(err.message, "layer 2 (batchnorm)"),
          "batchnorm after relu: %d %s", (int)s, err.message);
    bp_net_free(net);
    net = make("conv(2,3) batchnorm relu maxpool(2) dense(3) softmax", img);
    CHECK(bp_export_c(net, dir, &o, &err) == BP_OK, "conv batchnorm relu ... softmax: %s",
          err.message);
    char *c = slurp("model.c"), *h = slurp("model.h");
    CHECK(c && strstr(c, "void model_predict_int8(const float *in, float *out)"),
          "the int8 function is defined");
    CHECK(c && strstr(c, "batchnorm (folded)"), "the batchnorm is folded");
    CHECK(h && strstr(h, "#define model_INT8_STACK_BYTES"), "the int8 stack in the header");
    free(c), free(h);
    bp_net_free(net);
    clean();
}

/* A dense layer whose int32 sums could overflow for some input (70,000
 * inputs, every weight at full scale): refused, naming the layer; with
 * half the inputs (a bound of about 1.1e9) it is exported. */
static void test_int8_accumulator_bound(void)
{
    for (int half = 0; half < 2; half++) {
        int n = half ? 35000 : 70000;
        bp_net *net = make("dense(2)", bp_shape_flat(n));
        bp_real *w = bp_net_weight(net, 0);
        for (int k = 0; k < 2 * n; k++) w[k] = k % 2 ? -0.01f : 0.01f;
        bp_real *rows = calloc((size_t)2 * (size_t)n, sizeof *rows);
        for (int k = 0; rows && k < n; k++) rows[k] = 1, rows[n + k] = -1;
        bp_export_options o;
        memset(&o, 0, sizeof o);
        o.int8 = 1, o.calib = rows, o.calib_n = 2;
        bp_status s = bp_export_c(net, dir, &o, &err);
        if (!half)
            CHECK(s == BP_EUNSUPPORTED && strstr(err.message, "layer 0 (dense)") &&
                  strstr(err.message, "overflow"), "70,000 inputs at full scale: %d %s", (int)s,
                  err.message);
        else
            CHECK(s == BP_OK, "35,000 inputs: %s", err.message);
        int tmp = 0, k = entries(dir, &tmp);
        CHECK(half ? k == 2 : k == 0, "files after the export: %d", k);
        free(rows);
        bp_net_free(net);
        clean();
    }
}

static void test_files(void)
{
    bp_net *net = make("dense(4) tanh dense(3)", bp_shape_flat(5));
    bp_export_options o;
    memset(&o, 0, sizeof o);
    o.name = "tiny";
    CHECK(bp_export_c(net, dir, &o, &err) == BP_OK, "export: %s", err.message);
    char *c = slurp("tiny.c"), *h = slurp("tiny.h");
    CHECK(h && strstr(h, "#define tiny_INPUTS 5") && strstr(h, "#define tiny_OUTPUTS 3") &&
              strstr(h, "#define tiny_BUF 5") && strstr(h, "#define tiny_STACK_BYTES 40") &&
              strstr(h, "void tiny_predict(const float *in, float *out);") &&
              !strstr(h, "int8"),
          "the header: %s", h ? h : "(none)");
    CHECK(c && strstr(c, "#include \"tiny.h\"") && strstr(c, "static const float tiny_l0_w[20]") &&
              strstr(c, "tanhf("),
          "the code");
    int tmp, n = entries(dir, &tmp);
    CHECK(n == 2 && !tmp, "two files, no temporary (%d entries)", n);
    struct stat st;
    char p[512];
    path(p, sizeof p, "tiny.c");
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0644, "mode 0644");
    free(c), free(h);

    /* NAME.h cannot be replaced (a directory): BP_EIO, NAME.c as it was */
    clean();
    path(p, sizeof p, "tiny.c");
    FILE *f = fopen(p, "w");
    fputs("old\n", f);
    fclose(f);
    path(p, sizeof p, "tiny.h");
    mkdir(p, 0755);
    char sub[600];
    snprintf(sub, sizeof sub, "%s/keep", p);
    f = fopen(sub, "w");
    fclose(f);
    CHECK(bp_export_c(net, dir, &o, &err) == BP_EIO, "tiny.h a non-empty directory: %s",
          err.message);
    c = slurp("tiny.c");
    CHECK(c && !strcmp(c, "old\n"), "tiny.c put back as it was: %.20s", c ? c : "(none)");
    free(c);
    n = entries(dir, &tmp);
    CHECK(n == 2 && !tmp, "no temporary left (%d entries)", n);
    remove(sub);
    clean();
    /* same without an earlier tiny.c: it is removed again */
    mkdir(p, 0755);
    f = fopen(sub, "w");
    fclose(f);
    CHECK(bp_export_c(net, dir, &o, &err) == BP_EIO, "tiny.h a directory, no tiny.c");
    CHECK(!exists("tiny.c"), "no tiny.c left");
    remove(sub);
    clean();

    /* a directory that does not exist, a path that is a file */
    char missing[512];
    snprintf(missing, sizeof missing, "%s/missing", dir);
    CHECK(bp_export_c(net, missing, &o, &err) == BP_EIO, "missing dir: %s", err.message);
    CHECK(entries(dir, &tmp) == 0, "nothing created");
    path(p, sizeof p, "file");
    f = fopen(p, "w");
    fclose(f);
    CHECK(bp_export_c(net, p, &o, &err) == BP_EIO, "dir is a file: %s", err.message);
    clean();
    /* a read-only directory (root writes anyway: checked as another user only) */
    char ro[512];
    snprintf(ro, sizeof ro, "%s/ro", dir);
    mkdir(ro, 0555);
    if (geteuid() != 0) {
        CHECK(bp_export_c(net, ro, &o, &err) == BP_EIO, "read-only dir: %s", err.message);
        CHECK(entries(ro, &tmp) == 0, "nothing in the read-only dir");
    } else {
        printf("note: running as root, the read-only directory case is not checked\n");
    }
    rmdir(ro);
    bp_net_free(net);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_export_c.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_arguments();
    test_int8_unsupported();
    test_int8_accumulator_bound();
    test_files();
    clean();
    rmdir(dir);
    return check_done("test_export_c");
}
