/*
 * cmd_gradcheck.c - `backprop gradcheck`: backprop's gradients against
 * finite differences on random data (bp_gradcheck), for a user's network.
 *
 * Precision. In float32 a finite difference is only good to ~1e-3 (the
 * step cannot shrink below ~1e-2 without rounding noise taking over), which
 * is too coarse to tell a small bug from noise and makes every kink within
 * 2e-2 of a unit's input a false alarm. So the check runs by default on the
 * double-precision build of the same sources (CMake target backprop_f64,
 * -DBP_DOUBLE), where it resolves errors of 1e-10.
 *
 * The float and double libraries export the same symbol names, so they
 * cannot share one binary. Rather than renaming one library's symbols
 * (objcopy over an nm list, a prefixing header for bp_real-dependent
 * calls: a second, hidden ABI to keep in step with every new function),
 * this file is also compiled, with -DBP_DOUBLE and util.c/usage.c, into a
 * small program of its own linked against backprop_f64: `backprop-gradcheck`
 * in LIBEXECDIR/backprop/ (next to `backprop` in the build tree). The float
 * CLI parses the options first (so usage errors and --help need no helper)
 * and then execs that program with the same arguments. --precision float
 * runs the check here, on the float library itself (its own GEMM paths).
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef BP_GRADCHECK_LIBEXEC
#define BP_GRADCHECK_LIBEXEC "../libexec/backprop" /* relative to the binary's folder */
#endif
#define BP_GRADCHECK_PROGRAM "backprop-gradcheck"

/* splitmix64 -> uniform [0, 1) */
static double urand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

#ifndef BP_DOUBLE
/* Exec the double-precision checker with argv (argv[0] replaced). It is
 * looked for relative to this executable (/proc/self/exe), so an installed
 * tree and a build tree both work wherever they are moved: first
 * DIR/BP_GRADCHECK_LIBEXEC/backprop-gradcheck (installed), then
 * DIR/backprop-gradcheck (build tree). Returns only on failure. */
static int exec_double(int argc, char **argv)
{
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0 || (size_t)len >= sizeof self - 1)
        return cli_fail(CLI_FAIL, "gradcheck: cannot find this program's folder (/proc/self/exe: %s); "
                        "use --precision float", len < 0 ? strerror(errno) : "path too long");
    self[len] = 0;
    char *slash = strrchr(self, '/');
    if (slash) *slash = 0;
    char *cand[2] = {cli_printf("%s/%s/%s", self, BP_GRADCHECK_LIBEXEC, BP_GRADCHECK_PROGRAM),
                     cli_printf("%s/%s", self, BP_GRADCHECK_PROGRAM)};
    char **args = malloc(((size_t)argc + 1) * sizeof *args);
    if (!cand[0] || !cand[1] || !args) {
        free(cand[0]);
        free(cand[1]);
        free(args);
        return cli_fail(CLI_FAIL, "out of memory");
    }
    for (int i = 1; i < argc; i++) args[i] = argv[i];
    args[argc] = NULL;
    fflush(NULL);
    for (int c = 0; c < 2; c++) {
        if (access(cand[c], X_OK) != 0) continue;
        args[0] = cand[c];
        execv(cand[c], args);
        int e = errno;
        cli_fail(CLI_FAIL, "gradcheck: cannot run %s: %s", cand[c], strerror(e));
        free(cand[0]);
        free(cand[1]);
        free(args);
        return CLI_FAIL;
    }
    cli_fail(CLI_FAIL, "gradcheck: the double-precision checker is missing (looked for %s and %s); "
             "reinstall backprop, or use --precision float", cand[0], cand[1]);
    free(cand[0]);
    free(cand[1]);
    free(args);
    return CLI_FAIL;
}
#endif

/* "relu", "leaky_relu" or "relu/leaky_relu": the kinked layers of net. */
/* "relu", "leaky_relu/maxpool", ...: the kinked kinds in the network. */
static const char *kink_kinds(const bp_net *net)
{
    static const char *const names[8] = {"relu", "relu", "leaky_relu", "relu/leaky_relu",
                                         "maxpool", "relu/maxpool", "leaky_relu/maxpool",
                                         "relu/leaky_relu/maxpool"};
    int m = 0;
    for (int i = 0; i < bp_net_layers(net); i++) {
        bp_layer_kind k = bp_net_layer(net, i).kind;
        m |= (k == BP_RELU) | (k == BP_LEAKY_RELU) << 1 | (k == BP_MAXPOOL) << 2;
    }
    return names[m];
}

int cmd_gradcheck(int argc, char **argv)
{
    enum { G_HELP, G_ARCH, G_INPUTS, G_OUTPUTS, G_LOSS, G_SAMPLES, G_SEED, G_EPS, G_TOL, G_QUIET,
           G_PREC, G_SHAPE };
    static const cli_opt opts[] = {
        [G_HELP] = {"--help", "-h", 0},       [G_ARCH] = {"--arch", NULL, 1},
        [G_INPUTS] = {"--inputs", NULL, 1},   [G_OUTPUTS] = {"--outputs", NULL, 1},
        [G_LOSS] = {"--loss", NULL, 1},       [G_SAMPLES] = {"--samples", NULL, 1},
        [G_SEED] = {"--seed", NULL, 1},       [G_EPS] = {"--eps", NULL, 1},
        [G_TOL] = {"--tolerance", NULL, 1},   [G_QUIET] = {"--quiet", "-q", 0},
        [G_PREC] = {"--precision", NULL, 1},  [G_SHAPE] = {"--input-shape", NULL, 1},
        {NULL, NULL, 0},
    };
    static const char *const losses[] = {"mse", "cross-entropy", "bce", NULL};
    static const char *const precisions[] = {"double", "float", NULL};
    enum { P_DOUBLE, P_FLOAT };
    const char *arch = "dense(16) tanh dense(8) sigmoid";
    int inputs = 5, outputs = 3, samples = 8, loss = BP_LOSS_CROSS_ENTROPY, quiet = 0;
    int precision = P_DOUBLE, inputs_given = 0;
    bp_shape shape = {0, {0, 0, 0}}; /* --input-shape (rank 0: flat, --inputs) */
    double eps = 0, tol = -1;
    uint64_t seed = 42;
    cli_parser p = {"gradcheck", argc, argv, 1, 0};
    const char *v;
    int k, r = 0;
    while ((k = cli_next(&p, opts, &v)) != CLI_ARG_END) {
        switch (k) {
        case CLI_ARG_ERROR: return CLI_USAGE;
        case CLI_ARG_POSITIONAL: return cli_fail(CLI_USAGE, "gradcheck: unexpected argument '%s'", v);
        case G_HELP: fputs(usage_gradcheck, stdout); return CLI_OK;
        case G_ARCH: arch = v; break;
        case G_INPUTS: r = cli_int("--inputs", v, 1, 100000, &inputs), inputs_given = 1; break;
        case G_SHAPE: r = cli_shape("--input-shape", v, &shape); break;
        case G_OUTPUTS: r = cli_int("--outputs", v, 1, 100000, &outputs); break;
        case G_LOSS: r = cli_choice("--loss", v, losses, &loss); break;
        case G_SAMPLES: r = cli_int("--samples", v, 1, 100000, &samples); break;
        case G_SEED: r = cli_u64("--seed", v, &seed); break;
        case G_EPS: r = cli_double("--eps", v, 0, 1, &eps); break;
        case G_TOL: r = cli_double("--tolerance", v, 0, 1e300, &tol); break;
        case G_QUIET: quiet = 1; break;
        case G_PREC: r = cli_choice("--precision", v, precisions, &precision); break;
        default: break;
        }
        if (r) return r;
    }
    if (loss == BP_LOSS_CROSS_ENTROPY && outputs < 2)
        return cli_fail(CLI_USAGE, "gradcheck: cross-entropy needs --outputs >= 2");
    if (shape.rank) {
        size_t count = bp_shape_size(shape);
        if (count > 100000)
            return cli_fail(CLI_USAGE, "--input-shape: %s holds %zu values per sample, more than "
                            "gradcheck's 100000", v ? v : "it", count);
        if (inputs_given && (size_t)inputs != count)
            return cli_fail(CLI_USAGE, "gradcheck: --inputs %d and --input-shape (%zu values) "
                            "disagree; give one", inputs, count);
        inputs = (int)count;
    }

    {
        static bp_layer_desc layers[4096];
        int nl = 0;
        bp_error perr = {0};
        if (arch[strspn(arch, " \t")] && bp_spec_parse(arch, layers, 4096, &nl, &perr) == BP_ESPEC)
            return cli_fail(CLI_USAGE, "--arch: %s", perr.message);
    }
#ifdef BP_DOUBLE
    if (precision != P_DOUBLE)
        return cli_fail(CLI_USAGE, "gradcheck: this checker is the double-precision one; "
                        "run 'backprop gradcheck --precision float'");
    const char *prec_name = "double";
#else
    if (precision == P_DOUBLE) return exec_double(argc, argv);
    const char *prec_name = "float32";
#endif
    /* Defaults for the precision: the library's eps, and a tolerance a few
     * orders above what a correct network reaches (double: ~1e-9 for most
     * seeds; float: ~1e-3). The floor of the relative error's denominator
     * sits above the rounding noise of the difference quotient, about
     * ulp(loss) / eps: up to ~1e-13 in double (measured 4e-14), which the
     * library's 1e-9 would turn into errors near 1e-4 on gradients of 1e-9. */
    int dbl = sizeof(bp_real) == sizeof(double);
    if (tol < 0) tol = dbl ? 1e-6 : 1e-2;
    double rel_floor = dbl ? 1e-6 : 1e-3;
    size_t al = strlen(arch);
    while (al && (arch[al - 1] == ' ' || arch[al - 1] == '\t')) al--;
    char *spec = cli_printf("%.*s%sdense(%d)", (int)al, arch, al ? " " : "", outputs);
    if (!spec) return cli_fail(CLI_FAIL, "out of memory");
    bp_net *net = NULL;
    bp_error err = {0};
    int st = CLI_OK;
    bp_status cs = shape.rank ? bp_net_create_shaped(&net, shape, spec, seed, &err)
                              : bp_net_create(&net, inputs, spec, seed, &err);
    if (cs != BP_OK) {
        st = cli_fail(err.code == BP_ESPEC ? CLI_USAGE : CLI_FAIL, "--arch: %s", err.message);
        free(spec);
        return st;
    }
    free(spec);
    uint64_t rs = seed * 2654435761u + 17;
    /* Small random biases so the bias paths are exercised too (every
     * "bias" tensor, whatever its layer's output size: a batchnorm on an
     * image has one per channel). */
    for (int j = 0; j < bp_net_tensor_count(net); j++) {
        bp_tensor t;
        if (!bp_net_tensor(net, j, &t) || !t.data) continue;
        size_t len = strlen(t.name);
        if (len < 5 || strcmp(t.name + len - 5, ".bias") != 0) continue;
        for (size_t q = 0; q < t.count; q++) t.data[q] = (bp_real)(0.2 * (urand(&rs) - 0.5));
    }
    /* Targets: one class per step of a sequence output (cross-entropy), else
     * every output value; an embedding first reads token ids. */
    int steps = bp_net_loss_steps(net, (bp_loss)loss);
    int tw = loss == BP_LOSS_CROSS_ENTROPY ? steps : bp_net_outputs(net);
    bp_layer_desc first = bp_net_layer(net, 0);
    int vocab = first.kind == BP_EMBEDDING ? first.vocab : 0;
    bp_real *x = malloc((size_t)samples * inputs * sizeof *x);
    bp_real *y = malloc((size_t)samples * tw * sizeof *y);
    if (!x || !y) {
        st = cli_fail(CLI_FAIL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < (size_t)samples * inputs; i++)
        x[i] = vocab ? (bp_real)(int)(urand(&rs) * vocab) : (bp_real)(2 * urand(&rs) - 1);
    for (size_t i = 0; i < (size_t)samples * tw; i++) {
        if (loss == BP_LOSS_CROSS_ENTROPY) y[i] = (bp_real)(int)(urand(&rs) * outputs);
        else if (loss == BP_LOSS_BCE) y[i] = (bp_real)(urand(&rs) < 0.5 ? 0 : 1);
        else y[i] = (bp_real)(2 * urand(&rs) - 1);
    }
    bp_gradcheck_result res;
    if (bp_gradcheck(net, (bp_loss)loss, x, y, samples, eps, rel_floor, &res, &err) != BP_OK) {
        st = cli_fail(CLI_FAIL, "%s", err.message);
        goto done;
    }
    size_t judged = res.checked - res.kinks;
    int pass = judged > 0 && res.max_rel_error <= tol;
    if (!quiet) {
        char sh[48] = "";
        if (shape.rank > 1) {
            char b[40];
            bp_shape_format(shape, b, sizeof b);
            snprintf(sh, sizeof sh, " as %s", b);
        }
        printf("network     %s (%d inputs%s, %zu parameters)\n", bp_net_spec(net), inputs, sh,
               bp_net_param_count(net));
        printf("loss        %s on %d random samples (seed %llu)\n", bp_loss_name((bp_loss)loss),
               samples, (unsigned long long)seed);
        printf("checked     %zu parameters against central finite differences (%s, eps %g)\n",
               res.checked, prec_name, eps > 0 ? eps : dbl ? 1e-3 : 1e-2);
        if (res.kinks)
            printf("kinks       %zu of %zu entries cross a %s kink: not judged "
                   "(their worst relative error %.3e)\n",
                   res.kinks, res.checked, kink_kinds(net), res.kink_max_rel_error);
        if (judged)
            printf("worst       layer %d, parameter %zu: analytic %.17g, numeric %.17g\n",
                   res.worst_layer, res.worst_index, res.analytic, res.numeric);
    }
    if (res.kinks)
        printf("max relative error %.3e over %zu judged entries (tolerance %g; %zu cross a kink): %s\n",
               res.max_rel_error, judged, tol, res.kinks, pass ? "PASS" : "FAIL");
    else
        printf("max relative error %.3e (tolerance %g): %s\n", res.max_rel_error, tol,
               pass ? "PASS" : "FAIL");
    if (!judged)
        st = cli_fail(CLI_FAIL, "gradient check judged no entry: all %zu cross a kink "
                      "(try a smaller --eps or another --seed)", res.checked);
    else if (!pass)
        st = cli_fail(CLI_FAIL, "gradient check failed: max relative error %.3e > tolerance %g",
                      res.max_rel_error, tol);
done:
    free(x);
    free(y);
    bp_net_free(net);
    return st;
}

#ifdef BP_DOUBLE
/* The double-precision checker `backprop-gradcheck` (see the top): run by
 * `backprop gradcheck` with the same arguments. */
int main(int argc, char **argv)
{
    return cmd_gradcheck(argc, argv);
}
#endif
