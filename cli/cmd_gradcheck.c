/*
 * cmd_gradcheck.c - `backprop gradcheck`: backprop's gradients against
 * finite differences on random data (bp_gradcheck), for a user's network.
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64 -> uniform [0, 1) */
static double urand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

int cmd_gradcheck(int argc, char **argv)
{
    enum { G_HELP, G_ARCH, G_INPUTS, G_OUTPUTS, G_LOSS, G_SAMPLES, G_SEED, G_EPS, G_TOL, G_QUIET };
    static const cli_opt opts[] = {
        [G_HELP] = {"--help", "-h", 0},       [G_ARCH] = {"--arch", NULL, 1},
        [G_INPUTS] = {"--inputs", NULL, 1},   [G_OUTPUTS] = {"--outputs", NULL, 1},
        [G_LOSS] = {"--loss", NULL, 1},       [G_SAMPLES] = {"--samples", NULL, 1},
        [G_SEED] = {"--seed", NULL, 1},       [G_EPS] = {"--eps", NULL, 1},
        [G_TOL] = {"--tolerance", NULL, 1},   [G_QUIET] = {"--quiet", "-q", 0},
        {NULL, NULL, 0},
    };
    static const char *const losses[] = {"mse", "cross-entropy", "bce", NULL};
    const char *arch = "dense(16) tanh dense(8) sigmoid";
    int inputs = 5, outputs = 3, samples = 8, loss = BP_LOSS_CROSS_ENTROPY, quiet = 0;
    double eps = 0, tol = 1e-2;
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
        case G_INPUTS: r = cli_int("--inputs", v, 1, 100000, &inputs); break;
        case G_OUTPUTS: r = cli_int("--outputs", v, 1, 100000, &outputs); break;
        case G_LOSS: r = cli_choice("--loss", v, losses, &loss); break;
        case G_SAMPLES: r = cli_int("--samples", v, 1, 100000, &samples); break;
        case G_SEED: r = cli_u64("--seed", v, &seed); break;
        case G_EPS: r = cli_double("--eps", v, 0, 1, &eps); break;
        case G_TOL: r = cli_double("--tolerance", v, 0, 1e300, &tol); break;
        case G_QUIET: quiet = 1; break;
        default: break;
        }
        if (r) return r;
    }
    if (loss == BP_LOSS_CROSS_ENTROPY && outputs < 2)
        return cli_fail(CLI_USAGE, "gradcheck: cross-entropy needs --outputs >= 2");

    {
        static bp_layer_desc layers[4096];
        int nl = 0;
        bp_error perr = {0};
        if (arch[strspn(arch, " \t")] && bp_spec_parse(arch, layers, 4096, &nl, &perr) == BP_ESPEC)
            return cli_fail(CLI_USAGE, "--arch: %s", perr.message);
    }
    size_t al = strlen(arch);
    while (al && (arch[al - 1] == ' ' || arch[al - 1] == '\t')) al--;
    char *spec = cli_printf("%.*s%sdense(%d)", (int)al, arch, al ? " " : "", outputs);
    if (!spec) return cli_fail(CLI_FAIL, "out of memory");
    bp_net *net = NULL;
    bp_error err = {0};
    int st = CLI_OK;
    if (bp_net_create(&net, inputs, spec, seed, &err) != BP_OK) {
        st = cli_fail(err.code == BP_ESPEC ? CLI_USAGE : CLI_FAIL, "--arch: %s", err.message);
        free(spec);
        return st;
    }
    free(spec);
    uint64_t rs = seed * 2654435761u + 17;
    /* Small random biases so the bias paths are exercised too. */
    for (int i = 0; i < bp_net_layers(net); i++) {
        bp_real *b = bp_net_bias(net, i);
        if (b)
            for (int j = 0; j < bp_net_layer(net, i).units; j++) b[j] = (bp_real)(0.2 * (urand(&rs) - 0.5));
    }
    int tw = loss == BP_LOSS_CROSS_ENTROPY ? 1 : outputs;
    bp_real *x = malloc((size_t)samples * inputs * sizeof *x);
    bp_real *y = malloc((size_t)samples * tw * sizeof *y);
    if (!x || !y) {
        st = cli_fail(CLI_FAIL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < (size_t)samples * inputs; i++) x[i] = (bp_real)(2 * urand(&rs) - 1);
    for (size_t i = 0; i < (size_t)samples * tw; i++) {
        if (loss == BP_LOSS_CROSS_ENTROPY) y[i] = (bp_real)(int)(urand(&rs) * outputs);
        else if (loss == BP_LOSS_BCE) y[i] = (bp_real)(urand(&rs) < 0.5 ? 0 : 1);
        else y[i] = (bp_real)(2 * urand(&rs) - 1);
    }
    bp_gradcheck_result res;
    if (bp_gradcheck(net, (bp_loss)loss, x, y, samples, eps, 0, &res, &err) != BP_OK) {
        st = cli_fail(CLI_FAIL, "%s", err.message);
        goto done;
    }
    int pass = res.max_rel_error <= tol;
    if (!quiet) {
        printf("network     %s (%d inputs, %zu parameters)\n", bp_net_spec(net), inputs,
               bp_net_param_count(net));
        printf("loss        %s on %d random samples (seed %llu)\n", bp_loss_name((bp_loss)loss),
               samples, (unsigned long long)seed);
        printf("checked     %zu parameters against central finite differences\n", res.checked);
        printf("worst       layer %d, parameter %zu: analytic %.9g, numeric %.9g\n", res.worst_layer,
               res.worst_index, res.analytic, res.numeric);
    }
    printf("max relative error %.3e (tolerance %g): %s\n", res.max_rel_error, tol,
           pass ? "PASS" : "FAIL");
    if (!pass)
        st = cli_fail(CLI_FAIL, "gradient check failed: max relative error %.3e > tolerance %g",
                      res.max_rel_error, tol);
done:
    free(x);
    free(y);
    bp_net_free(net);
    return st;
}
