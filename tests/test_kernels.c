/*
 * test_kernels.c - the fast elementwise kernels against their reference
 * loops: exp, tanh and sigmoid against libm over their whole useful range,
 * softmax rows, and the backward kernels against the formulas they
 * implement.
 */
#include "kernels.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>

enum { M = 200001 };

static double worst_rel(const bp_real *a, const bp_real *b, size_t m, double floor)
{
    double w = 0;
    for (size_t k = 0; k < m; k++) {
        double d = fabs((double)a[k] - b[k]) / fmax(fabs((double)b[k]), floor);
        if (!(d <= w)) w = d; /* NaN propagates as a failure */
    }
    return w;
}

int main(void)
{
    bp_real *x = malloc(sizeof(bp_real) * M), *y = malloc(sizeof(bp_real) * M), *r = malloc(sizeof(bp_real) * M);
    /* exp over [-87, 88]: relative error */
    for (size_t k = 0; k < M; k++) x[k] = (bp_real)(-87.0 + 175.0 * k / (M - 1));
    bp_k_exp(y, x, M);
    bp_k_ref_exp(r, x, M);
    double e = worst_rel(y, r, M, 0);
    printf("  exp     worst relative error %.3g\n", e);
    CHECK(e < 5e-7, "exp: worst relative error %g", e);
    /* tanh and sigmoid over [-20, 20], dense near 0 */
    for (size_t k = 0; k < M; k++) {
        double t = -1.0 + 2.0 * k / (M - 1);
        x[k] = (bp_real)(20 * t * t * t);
    }
    bp_k_tanh(y, x, M);
    bp_k_ref_tanh(r, x, M);
    e = worst_rel(y, r, M, 1e-30);
    printf("  tanh    worst relative error %.3g\n", e);
    CHECK(e < 5e-7, "tanh: worst relative error %g", e);
    bp_k_sigmoid(y, x, M);
    bp_k_ref_sigmoid(r, x, M);
    e = worst_rel(y, r, M, 1e-30);
    printf("  sigmoid worst relative error %.3g\n", e);
    CHECK(e < 5e-7, "sigmoid: worst relative error %g", e);
    bp_real big[4] = {-1000, 1000, -INFINITY, INFINITY}, out[4];
    bp_k_tanh(out, big, 4);
    CHECK(out[0] == -1 && out[1] == 1 && out[2] == -1 && out[3] == 1, "tanh saturates: %g %g %g %g", out[0], out[1], out[2], out[3]);
    bp_k_sigmoid(out, big, 4);
    CHECK(out[0] >= 0 && out[0] < 1e-30 && out[1] == 1 && out[3] == 1, "sigmoid saturates: %g %g", out[0], out[1]);
    bp_real nan_in = NAN, nan_out;
    bp_k_tanh(&nan_out, &nan_in, 1);
    CHECK(nan_out != nan_out, "tanh(NaN) is NaN, got %g", nan_out);
    bp_k_exp(&nan_out, &nan_in, 1);
    CHECK(nan_out != nan_out, "exp(NaN) is NaN, got %g", nan_out);
    bp_k_sigmoid(&nan_out, &nan_in, 1);
    CHECK(nan_out != nan_out, "sigmoid(NaN) is NaN, got %g", nan_out);

    /* softmax: rows sum to 1, match exp/sum, survive large logits */
    bp_real z[6] = {1000, 999, 998, -3, 0, 2}, p[6];
    bp_k_softmax(p, z, 2, 3);
    CHECK(fabs(p[0] + p[1] + p[2] - 1) < 1e-6 && fabs(p[3] + p[4] + p[5] - 1) < 1e-6, "softmax rows sum to 1");
    double s = exp(-3.0) + exp(0.0) + exp(2.0);
    CHECK(fabs(p[5] - exp(2.0) / s) < 1e-6 && fabs(p[0] - 1 / (1 + exp(-1.0) + exp(-2.0))) < 1e-6, "softmax values");

    /* backward kernels against their formulas */
    bp_real dy[5] = {1, -2, 0.5f, 3, -1}, v[5] = {-1, 0, 0.25f, 2, -0.5f}, dx[5];
    bp_k_relu_grad(dx, dy, v, 5);
    CHECK(dx[0] == 0 && dx[1] == 0 && dx[2] == 0.5f && dx[3] == 3 && dx[4] == 0, "relu grad");
    bp_k_leaky_relu_grad(dx, dy, v, 5, 0.1f);
    CHECK(dx[0] == 0.1f && dx[1] == -2 * 0.1f && dx[2] == 0.5f && dx[4] == -0.1f, "leaky relu grad");
    bp_k_tanh_grad(dx, dy, v, 5);
    CHECK(dx[3] == 3 * (1 - 4) && dx[2] == 0.5f * (1 - 0.0625f), "tanh grad");
    bp_k_sigmoid_grad(dx, dy, v, 5);
    CHECK(dx[2] == 0.5f * 0.25f * 0.75f, "sigmoid grad");
    bp_real cs[2], a[6] = {1, 2, 3, 4, 5, 6};
    bp_k_colsum(cs, a, 3, 2);
    CHECK(cs[0] == 9 && cs[1] == 12, "colsum");
    bp_real mx[2] = {0, 0}, neg[4] = {-1, 3, -2, 1};
    bp_k_colmax(mx, neg, 2, 2);
    CHECK(mx[0] == 0 && mx[1] == 3, "colmax");
    CHECK(bp_k_sumsq(a, 6) == 91, "sumsq");
    /* A large one: chunks of 65,536 values summed alone, then in order;
     * the same double at 1 and 2 threads, and close to a plain double sum. */
    size_t nbig = 5 * 65536 + 17;
    bp_real *g = malloc(nbig * sizeof *g);
    double plain = 0;
    for (size_t k = 0; k < nbig; k++) {
        g[k] = (bp_real)(((k * 2654435761u) % 1000) / 500.0 - 1.0);
        plain += (double)g[k] * g[k];
    }
    bp_set_threads(1);
    double s1 = bp_k_sumsq(g, nbig);
    bp_set_threads(2);
    double s2 = bp_k_sumsq(g, nbig);
    bp_set_threads(0);
    CHECK(s1 == s2, "sumsq of %zu values: %.17g on 1 thread, %.17g on 2", nbig, s1, s2);
    CHECK(fabs(s1 - plain) <= 1e-12 * plain, "sumsq %.17g vs a plain double sum %.17g", s1, plain);
    free(g);
    /* all_finite: every split of a large array sees a bad value anywhere */
    for (size_t k = 0; k < M; k++) x[k] = (bp_real)(k % 7) - 3;
    x[M / 2] = -0.0f;
    CHECK(bp_k_all_finite(x, M) == 1 && bp_k_all_finite(x, 0) == 1, "all_finite on finite values");
    const size_t at[] = {0, 1, M / 2 - 1, M / 2 + 1, M - 2, M - 1};
    const bp_real bad[] = {NAN, INFINITY, -INFINITY};
    int missed = 0;
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
        for (size_t b = 0; b < 3; b++) {
            bp_real keep = x[at[i]];
            x[at[i]] = bad[b];
            missed += bp_k_all_finite(x, M) != 0;
            x[at[i]] = keep;
        }
    CHECK(missed == 0, "all_finite finds NaN and +-Inf at either end and the middle (%d missed)", missed);
    free(x);
    free(y);
    free(r);
    return check_done("test_kernels");
}
