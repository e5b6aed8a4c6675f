/* test_cnn_pool_bn_f64.c - the reference loops of pooling and batch
 * normalization (src/pool_kernels.c, src/bn_kernels.c) in double precision:
 *   - small cases computed by hand (numbers in the comments),
 *   - every backward against central finite differences of f = sum(dy y),
 *     worst relative error |a - n| / max(|a|, |n|, 1e-3) below 1e-6,
 *   - the running-statistics update of batch norm on a hand-computed case.
 * Linked against backprop_f64 (bp_real = double). */
#include "cnn_kernels.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FD_TOL 1e-6
#define FD_H 1e-5

static uint64_t g_seed = 12345;
static double urand(void) /* [-1, 1) */
{
    g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(g_seed >> 11) / (double)(1ULL << 53) * 2 - 1;
}

static void fill(bp_real *a, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] = urand();
}

/* Distinct values 0.01 apart (a shuffled ramp), so no window of the max
 * pool has a tie or a runner-up within the finite-difference step. */
static void fill_distinct(bp_real *a, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] = 0.01 * (double)i - 0.005 * (double)n;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)((urand() + 1) / 2 * (double)(i + 1));
        if (j > i) j = i;
        bp_real t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static double rel_err(double a, double n)
{
    double d = fabs(a - n), s = fabs(a) > fabs(n) ? fabs(a) : fabs(n);
    return d / (s > 1e-3 ? s : 1e-3);
}

static double dot(const bp_real *a, const bp_real *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static int close_to(double a, double b) { return fabs(a - b) <= 1e-12 * (fabs(b) > 1 ? fabs(b) : 1); }

/* ---- pooling ---- */

typedef enum { P_MAX, P_AVG, P_GLOBAL } pool_kind;
static const char *pool_name[] = {"maxpool", "avgpool", "global_avgpool"};

static void pool_fwd(pool_kind k, bp_real *y, int32_t *idx, const bp_real *x, const bp_pool_geom *g)
{
    if (k == P_MAX) bp_maxpool_forward_ref(y, idx, x, g);
    else if (k == P_AVG) bp_avgpool_forward_ref(y, x, g);
    else bp_global_avgpool_forward_ref(y, x, g->N, g->C, g->H, g->W);
}

/* d/dx of sum(dy y) by the backward loop, against central differences. */
static void pool_gradcheck(pool_kind k, int N, int C, int H, int W, int K, int stride)
{
    bp_pool_geom g = {N, C, H, W, K, stride, 0, 0};
    if (k == P_GLOBAL) g.OH = g.OW = 1;
    else CHECK(bp_pool_geom_init(&g), "%s geometry %dx%d K=%d s=%d valid", pool_name[k], H, W, K, stride);
    size_t nx = (size_t)N * C * H * W, ny = (size_t)N * C * g.OH * g.OW;
    bp_real *x = malloc(sizeof *x * nx), *dx = malloc(sizeof *dx * nx);
    bp_real *y = malloc(sizeof *y * ny), *dy = malloc(sizeof *dy * ny);
    int32_t *idx = malloc(sizeof *idx * ny);
    if (k == P_MAX) fill_distinct(x, nx);
    else fill(x, nx);
    fill(dy, ny);
    pool_fwd(k, y, idx, x, &g);
    for (size_t i = 0; i < nx; i++) dx[i] = NAN; /* the backward must overwrite every element */
    if (k == P_MAX) bp_maxpool_backward_ref(dx, dy, idx, &g);
    else if (k == P_AVG) bp_avgpool_backward_ref(dx, dy, &g);
    else bp_global_avgpool_backward_ref(dx, dy, N, C, H, W);
    double worst = 0;
    for (size_t i = 0; i < nx; i++) {
        bp_real keep = x[i];
        x[i] = keep + FD_H;
        pool_fwd(k, y, NULL, x, &g);
        double fp = dot(dy, y, ny);
        x[i] = keep - FD_H;
        pool_fwd(k, y, NULL, x, &g);
        double fm = dot(dy, y, ny);
        x[i] = keep;
        double e = rel_err(dx[i], (fp - fm) / (2 * FD_H));
        if (!(e <= worst)) worst = e;
    }
    CHECK(worst < FD_TOL, "%s N=%d C=%d %dx%d K=%d s=%d: dx vs finite differences, worst rel err %.3g (tol %g)",
          pool_name[k], N, C, H, W, K, stride, worst, FD_TOL);
    printf("%s N=%d C=%d %dx%d K=%d s=%d: worst rel err %.3g\n", pool_name[k], N, C, H, W, K, stride, worst);
    free(x), free(dx), free(y), free(dy), free(idx);
}

static void pool_by_hand(void)
{
    /* x (1x1x3x3) = [1 5 2; 4 3 9; 0 8 6], K=2, stride 1 (overlapping):
     * windows {1,5,4,3} {5,2,3,9} {4,3,0,8} {3,9,8,6}
     *   max: y = [5, 9, 8, 9], idx = [1, 5, 7, 5];
     *   avg: y = [13/4, 19/4, 15/4, 26/4] = [3.25, 4.75, 3.75, 6.5].
     * dy = [1, 2, 3, 4]:
     *   max dx = [0 1 0; 0 0 6; 0 3 0] (9 is the max of windows 1 and 3: 2 + 4);
     *   avg dx = 1/4 * [1 3 2; 4 10 6; 3 7 4]
     *          = [0.25 0.75 0.5; 1 2.5 1.5; 0.75 1.75 1]. */
    const bp_real x[9] = {1, 5, 2, 4, 3, 9, 0, 8, 6}, dy[4] = {1, 2, 3, 4};
    const bp_real ymax[4] = {5, 9, 8, 9}, yavg[4] = {3.25, 4.75, 3.75, 6.5};
    const int32_t imax[4] = {1, 5, 7, 5};
    const bp_real dmax[9] = {0, 1, 0, 0, 0, 6, 0, 3, 0};
    const bp_real davg[9] = {0.25, 0.75, 0.5, 1, 2.5, 1.5, 0.75, 1.75, 1};
    bp_pool_geom g = {1, 1, 3, 3, 2, 1, 0, 0};
    CHECK(bp_pool_geom_init(&g) && g.OH == 2 && g.OW == 2, "3x3 K=2 s=1 gives 2x2 (got %dx%d)", g.OH, g.OW);
    bp_real y[4], dx[9];
    int32_t idx[4];
    int ok = 1;
    bp_maxpool_forward_ref(y, idx, x, &g);
    for (int i = 0; i < 4; i++) ok &= y[i] == ymax[i] && idx[i] == imax[i];
    CHECK(ok, "maxpool by hand: y = [%g %g %g %g], idx = [%d %d %d %d]", y[0], y[1], y[2], y[3], idx[0],
          idx[1], idx[2], idx[3]);
    bp_maxpool_backward_ref(dx, dy, idx, &g);
    ok = 1;
    for (int i = 0; i < 9; i++) ok &= dx[i] == dmax[i];
    CHECK(ok, "maxpool backward by hand (dx[5] = %g, expected 6)", dx[5]);
    bp_avgpool_forward_ref(y, x, &g);
    ok = 1;
    for (int i = 0; i < 4; i++) ok &= close_to(y[i], yavg[i]);
    CHECK(ok, "avgpool by hand: y = [%g %g %g %g]", y[0], y[1], y[2], y[3]);
    bp_avgpool_backward_ref(dx, dy, &g);
    ok = 1;
    for (int i = 0; i < 9; i++) ok &= close_to(dx[i], davg[i]);
    CHECK(ok, "avgpool backward by hand (dx[4] = %g, expected 2.5)", dx[4]);

    /* Ties and NaN, 2x2 window K=2: [2 2; 2 2] takes index 0 (the first
     * maximum); [1 NaN; 3 2] gives NaN at index 1 (a NaN wins). */
    bp_pool_geom g2 = {1, 1, 2, 2, 2, 2, 0, 0};
    bp_pool_geom_init(&g2);
    const bp_real tie[4] = {2, 2, 2, 2}, withnan[4] = {1, NAN, 3, 2};
    bp_maxpool_forward_ref(y, idx, tie, &g2);
    CHECK(y[0] == 2 && idx[0] == 0, "maxpool tie: first maximum (idx %d)", idx[0]);
    bp_maxpool_forward_ref(y, idx, withnan, &g2);
    CHECK(isnan(y[0]) && idx[0] == 1, "maxpool NaN wins (y %g, idx %d)", y[0], idx[0]);

    /* Floor mode: 7x9, K=3, s=2 -> (7-3)/2+1 = 3, (9-3)/2+1 = 4; K > H: empty. */
    bp_pool_geom g3 = {1, 1, 7, 9, 3, 2, 0, 0}, g4 = {1, 1, 2, 9, 3, 1, 0, 0};
    CHECK(bp_pool_geom_init(&g3) && g3.OH == 3 && g3.OW == 4, "7x9 K=3 s=2 gives 3x4 (got %dx%d)", g3.OH, g3.OW);
    CHECK(!bp_pool_geom_init(&g4), "K=3 on H=2 pools to nothing");

    /* Global average: x (1x2x2x2) = c0 [1 2 3 4], c1 [-1 0 5 0] -> y = [2.5, 1];
     * dy = [4, 8] -> dx = c0 all 1, c1 all 2. */
    const bp_real gx[8] = {1, 2, 3, 4, -1, 0, 5, 0}, gdy[2] = {4, 8};
    bp_real gy[2], gdx[8];
    bp_global_avgpool_forward_ref(gy, gx, 1, 2, 2, 2);
    CHECK(close_to(gy[0], 2.5) && close_to(gy[1], 1), "global avgpool by hand: y = [%g %g]", gy[0], gy[1]);
    bp_global_avgpool_backward_ref(gdx, gdy, 1, 2, 2, 2);
    ok = 1;
    for (int i = 0; i < 8; i++) ok &= gdx[i] == (i < 4 ? 1 : 2);
    CHECK(ok, "global avgpool backward by hand (dx[0] = %g, dx[7] = %g)", gdx[0], gdx[7]);
}

/* ---- batch normalization ---- */

static double bn_objective(const bp_real *dy, const bp_real *x, const bp_real *gamma,
                           const bp_real *beta, int N, int C, int S, bp_real *y, bp_real *mean,
                           bp_real *invstd)
{
    bp_bn_forward_train_ref(y, mean, invstd, x, gamma, beta, NULL, NULL, N, C, S, 1e-5, 0.1);
    return dot(dy, y, (size_t)N * C * S);
}

/* d/dx, d/dgamma, d/dbeta of sum(dy y) (training mode) against central differences. */
static void bn_gradcheck(int N, int C, int S)
{
    size_t nx = (size_t)N * C * S;
    bp_real *x = malloc(sizeof *x * nx), *y = malloc(sizeof *y * nx), *dy = malloc(sizeof *dy * nx);
    bp_real *dx = malloc(sizeof *dx * nx);
    bp_real *gamma = malloc(sizeof *gamma * C), *beta = malloc(sizeof *beta * C);
    bp_real *mean = malloc(sizeof *mean * C), *invstd = malloc(sizeof *invstd * C);
    bp_real *dg = malloc(sizeof *dg * C), *db = malloc(sizeof *db * C);
    fill(x, nx);
    for (size_t i = 0; i < nx; i++) x[i] = 2 * x[i] + 0.5; /* a mean away from 0 */
    fill(dy, nx);
    for (int c = 0; c < C; c++) gamma[c] = 1 + 0.5 * urand(), beta[c] = urand();
    bn_objective(dy, x, gamma, beta, N, C, S, y, mean, invstd);
    for (size_t i = 0; i < nx; i++) dx[i] = NAN;
    bp_bn_backward_ref(dx, dg, db, dy, x, mean, invstd, gamma, N, C, S);
    bp_real *mt = malloc(sizeof *mt * C), *it = malloc(sizeof *it * C);
    double wx = 0, wg = 0, wb = 0;
    struct { bp_real *v, *grad; size_t n; double *worst; } part[3] = {
        {x, dx, nx, &wx}, {gamma, dg, (size_t)C, &wg}, {beta, db, (size_t)C, &wb}};
    for (int q = 0; q < 3; q++)
        for (size_t i = 0; i < part[q].n; i++) {
            bp_real keep = part[q].v[i];
            part[q].v[i] = keep + FD_H;
            double fp = bn_objective(dy, x, gamma, beta, N, C, S, y, mt, it);
            part[q].v[i] = keep - FD_H;
            double fm = bn_objective(dy, x, gamma, beta, N, C, S, y, mt, it);
            part[q].v[i] = keep;
            double e = rel_err(part[q].grad[i], (fp - fm) / (2 * FD_H));
            if (!(e <= *part[q].worst)) *part[q].worst = e;
        }
    CHECK(wx < FD_TOL, "batchnorm N=%d C=%d S=%d: dx worst rel err %.3g (tol %g)", N, C, S, wx, FD_TOL);
    CHECK(wg < FD_TOL, "batchnorm N=%d C=%d S=%d: dgamma worst rel err %.3g (tol %g)", N, C, S, wg, FD_TOL);
    CHECK(wb < FD_TOL, "batchnorm N=%d C=%d S=%d: dbeta worst rel err %.3g (tol %g)", N, C, S, wb, FD_TOL);
    printf("batchnorm N=%d C=%d S=%d: worst rel err dx %.3g, dgamma %.3g, dbeta %.3g\n", N, C, S, wx, wg, wb);

    /* Partial outputs: NULL dx / dgamma / dbeta are skipped, the rest unchanged. */
    bp_real *dx2 = malloc(sizeof *dx2 * nx), *dg2 = malloc(sizeof *dg2 * C);
    bp_bn_backward_ref(dx2, NULL, NULL, dy, x, mean, invstd, gamma, N, C, S);
    bp_bn_backward_ref(NULL, dg2, NULL, dy, x, mean, invstd, gamma, N, C, S);
    CHECK(memcmp(dx2, dx, sizeof *dx * nx) == 0 && memcmp(dg2, dg, sizeof *dg * C) == 0,
          "batchnorm backward with NULL outputs gives the same dx, dgamma");
    free(dx2), free(dg2);
    free(x), free(y), free(dy), free(dx), free(gamma), free(beta), free(mean), free(invstd);
    free(dg), free(db), free(mt), free(it);
}

static void bn_by_hand(void)
{
    /* N=2, C=1, S=2, x = [[1, 3], [5, 7]], eps = 4 (so var + eps = 9):
     * mean = 4, var = (9 + 1 + 1 + 9) / 4 = 5, invstd = 1/3;
     * gamma = 2, beta = 1: y = 2 (x - 4) / 3 + 1 = [-1, 1/3, 5/3, 3].
     * Running stats from rm = 1, rv = 2, momentum 0.1 (unbiased var 5 * 4/3 = 20/3):
     *   rm = 0.9 * 1 + 0.1 * 4 = 1.3, rv = 0.9 * 2 + 0.1 * 20/3 = 1.8 + 2/3 = 2.4666...
     * Backward, dy = [1, 0, 0, 0]: xhat = [-1, -1/3, 1/3, 1], dbeta = 1, dgamma = -1,
     *   dx = (2/3)/4 (4 dy - 1 + xhat) = (1/6) [2, -4/3, -2/3, 0] = [1/3, -2/9, -1/9, 0].
     * Inference with rm = 1, rv = 5 (sqrt(5 + 4) = 3): y = 2 (x - 1) / 3 + 1 = [1, 7/3, 11/3, 5]. */
    const bp_real x[4] = {1, 3, 5, 7}, gamma[1] = {2}, beta[1] = {1}, dy[4] = {1, 0, 0, 0};
    const double yt[4] = {-1, 1.0 / 3, 5.0 / 3, 3}, dxt[4] = {1.0 / 3, -2.0 / 9, -1.0 / 9, 0};
    const double yi[4] = {1, 7.0 / 3, 11.0 / 3, 5};
    bp_real y[4], mean[1], invstd[1], rm[1] = {1}, rv[1] = {2}, dx[4], dg[1], db[1];
    bp_bn_forward_train_ref(y, mean, invstd, x, gamma, beta, rm, rv, 2, 1, 2, 4.0, 0.1);
    int ok = close_to(mean[0], 4) && close_to(invstd[0], 1.0 / 3);
    for (int i = 0; i < 4; i++) ok &= close_to(y[i], yt[i]);
    CHECK(ok, "batchnorm train by hand: mean %g invstd %g y = [%g %g %g %g]", mean[0], invstd[0], y[0], y[1],
          y[2], y[3]);
    CHECK(close_to(rm[0], 1.3) && close_to(rv[0], 1.8 + 2.0 / 3),
          "running stats by hand: mean %.12g (1.3), var %.12g (2.466666666667)", rm[0], rv[0]);
    bp_bn_backward_ref(dx, dg, db, dy, x, mean, invstd, gamma, 2, 1, 2);
    ok = close_to(dg[0], -1) && close_to(db[0], 1);
    for (int i = 0; i < 4; i++) ok &= close_to(dx[i], dxt[i]);
    CHECK(ok, "batchnorm backward by hand: dgamma %g dbeta %g dx = [%g %g %g %g]", dg[0], db[0], dx[0], dx[1],
          dx[2], dx[3]);
    const bp_real rmi[1] = {1}, rvi[1] = {5};
    bp_bn_forward_infer_ref(y, x, gamma, beta, rmi, rvi, 2, 1, 2, 4.0);
    ok = 1;
    for (int i = 0; i < 4; i++) ok &= close_to(y[i], yi[i]);
    CHECK(ok, "batchnorm inference by hand: y = [%g %g %g %g]", y[0], y[1], y[2], y[3]);

    /* M = N*S = 1: var = 0, the unbiased variance is left as 0 (torch would
     * fail): rm = 0.9 * 0 + 0.1 * 3 = 0.3, rv = 0.9 * 1 + 0.1 * 0 = 0.9;
     * y = beta (x - mean = 0). */
    const bp_real x1[1] = {3};
    bp_real rm1[1] = {0}, rv1[1] = {1};
    bp_bn_forward_train_ref(y, mean, invstd, x1, gamma, beta, rm1, rv1, 1, 1, 1, 1e-5, 0.1);
    CHECK(close_to(rm1[0], 0.3) && close_to(rv1[0], 0.9) && close_to(y[0], 1),
          "M=1: running mean %g (0.3), var %g (0.9), y %g (1)", rm1[0], rv1[0], y[0]);
}

int main(void)
{
    pool_by_hand();
    pool_gradcheck(P_MAX, 2, 3, 7, 9, 2, 2);
    pool_gradcheck(P_MAX, 2, 3, 7, 9, 3, 2); /* overlapping */
    pool_gradcheck(P_MAX, 2, 2, 6, 5, 2, 1); /* overlapping */
    pool_gradcheck(P_AVG, 2, 3, 7, 9, 2, 2);
    pool_gradcheck(P_AVG, 2, 3, 7, 9, 3, 2); /* overlapping */
    pool_gradcheck(P_AVG, 2, 2, 6, 5, 2, 1); /* overlapping */
    pool_gradcheck(P_GLOBAL, 2, 3, 5, 7, 0, 0);
    bn_by_hand();
    bn_gradcheck(6, 3, 1);  /* BatchNorm1d */
    bn_gradcheck(3, 2, 12); /* BatchNorm2d, S = H*W = 3*4 */
    return check_done("test_cnn_pool_bn_f64");
}
