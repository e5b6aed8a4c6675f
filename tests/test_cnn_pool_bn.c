/* test_cnn_pool_bn.c - the oneDNN pooling and batch-normalization
 * primitives (float build) against the reference loops, on odd sizes
 * (N=5, C=3, 7x9 for pooling; S=1 and S=35 for batch norm): every output
 * compared as ||a - b|| / ||b|| < 1e-5. Max pooling's routing of dy to the
 * argmax is checked through dx (distinct inputs: no ties). Outputs are
 * filled with NaN first, so an element left unwritten fails. A create that
 * returns NULL in the float build fails the test. */
#include "cnn_kernels.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5

static uint64_t g_seed = 777;
static float urand(void) /* [-1, 1) */
{
    g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(g_seed >> 11) / (double)(1ULL << 53) * 2 - 1);
}

static void fill(float *a, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] = urand();
}

/* Distinct values (a shuffled ramp, exactly representable steps of 1/64). */
static void fill_distinct(float *a, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] = (float)((double)i - 0.5 * (double)n) / 64;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)((urand() + 1) / 2 * (float)(i + 1));
        if (j > i) j = i;
        float t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static void nan_fill(float *a, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] = NAN;
}

/* ||a - b|| / ||b|| (1 when b is 0 and a is not; NaN anywhere gives NaN). */
static double rel(const float *a, const float *b, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - b[i];
        d += e * e;
        s += (double)b[i] * b[i];
    }
    return s > 0 ? sqrt(d / s) : (d > 0 ? 1 : 0);
}

static void report(const char *what, double r)
{
    CHECK(r < TOL, "%s: ||a-b||/||b|| = %.3g (tol %g)", what, r, TOL);
    printf("%-44s ||a-b||/||b|| = %.3g\n", what, r);
}

static void test_pool(bp_gemm_ctx *ctx, int max, int K, int stride)
{
    bp_pool_geom g = {5, 3, 7, 9, K, stride, 0, 0};
    CHECK(bp_pool_geom_init(&g), "geometry 7x9 K=%d s=%d", K, stride);
    size_t nx = (size_t)g.N * g.C * g.H * g.W, ny = (size_t)g.N * g.C * g.OH * g.OW;
    float *x = malloc(sizeof *x * nx), *dx = malloc(sizeof *dx * nx), *dx_ref = malloc(sizeof *dx * nx);
    float *y = malloc(sizeof *y * ny), *y_ref = malloc(sizeof *y * ny), *dy = malloc(sizeof *dy * ny);
    int32_t *idx = malloc(sizeof *idx * ny);
    if (max) fill_distinct(x, nx);
    else fill(x, nx);
    fill(dy, ny);
    const char *name = max ? "maxpool" : "avgpool";
    char what[96];
    if (max) bp_maxpool_forward_ref(y_ref, idx, x, &g);
    else bp_avgpool_forward_ref(y_ref, x, &g);
    for (int training = 0; training < 2; training++) {
        bp_pool_prim *p = bp_pool_prim_create(ctx, &g, max, training, 1);
        CHECK(p != NULL, "%s K=%d s=%d training=%d: primitive created", name, K, stride, training);
        if (!p) continue;
        nan_fill(y, ny);
        CHECK(bp_pool_prim_forward(p, y, x), "%s forward runs", name);
        snprintf(what, sizeof what, "%s K=%d s=%d %s forward y", name, K, stride, training ? "train" : "infer");
        report(what, rel(y, y_ref, ny));
        if (!training) {
            CHECK(!bp_pool_prim_backward(p, dx, dy), "%s inference primitive has no backward", name);
        } else {
            if (max) bp_maxpool_backward_ref(dx_ref, dy, idx, &g);
            else bp_avgpool_backward_ref(dx_ref, dy, &g);
            nan_fill(dx, nx);
            CHECK(bp_pool_prim_backward(p, dx, dy), "%s backward runs", name);
            snprintf(what, sizeof what, "%s K=%d s=%d backward dx%s", name, K, stride,
                     max ? " (argmax routing)" : "");
            report(what, rel(dx, dx_ref, nx));
            if (max) {
                /* Every nonzero of dx sits where the reference's argmax put it. */
                size_t wrong = 0;
                for (size_t i = 0; i < nx; i++) wrong += (dx[i] != 0) != (dx_ref[i] != 0);
                CHECK(wrong == 0, "maxpool K=%d s=%d: %zu inputs routed differently", K, stride, wrong);
            }
        }
        bp_pool_prim_free(p);
    }
    free(x), free(dx), free(dx_ref), free(y), free(y_ref), free(dy), free(idx);
}

static void test_bn(bp_gemm_ctx *ctx, int S)
{
    const int N = 5, C = 3;
    const double eps = 1e-5, momentum = 0.1;
    size_t nx = (size_t)N * C * S;
    float *x = malloc(sizeof *x * nx), *y = malloc(sizeof *y * nx), *y_ref = malloc(sizeof *y * nx);
    float *dy = malloc(sizeof *dy * nx), *dx = malloc(sizeof *dx * nx), *dx_ref = malloc(sizeof *dx * nx);
    float gamma[3], beta[3], mean[3], invstd[3], mean_ref[3], invstd_ref[3];
    float rm[3] = {0.5f, -0.25f, 0}, rv[3] = {1, 2, 0.5f}, rm_ref[3], rv_ref[3];
    float dg[3], db[3], dg_ref[3], db_ref[3], dg2[3];
    fill(x, nx);
    for (size_t i = 0; i < nx; i++) x[i] = 3 * x[i] + 1.5f; /* mean 1.5, var 3 */
    fill(dy, nx);
    for (int c = 0; c < C; c++) gamma[c] = 1 + 0.5f * urand(), beta[c] = urand();
    memcpy(rm_ref, rm, sizeof rm);
    memcpy(rv_ref, rv, sizeof rv);
    bp_bn_forward_train_ref(y_ref, mean_ref, invstd_ref, x, gamma, beta, rm_ref, rv_ref, N, C, S, eps,
                            momentum);
    bp_bn_backward_ref(dx_ref, dg_ref, db_ref, dy, x, mean_ref, invstd_ref, gamma, N, C, S);
    char what[96];

    bp_bn_prim *p = bp_bn_prim_create(ctx, N, C, S, eps, 1, 1);
    CHECK(p != NULL, "batchnorm S=%d training: primitive created", S);
    if (p) {
        CHECK(!bp_bn_prim_forward_infer(p, y, x, gamma, beta, rm, rv),
              "a training primitive refuses the inference forward");
        nan_fill(y, nx);
        nan_fill(mean, 3);
        nan_fill(invstd, 3);
        CHECK(bp_bn_prim_forward_train(p, y, mean, invstd, x, gamma, beta, rm, rv, momentum),
              "batchnorm forward train runs");
        snprintf(what, sizeof what, "batchnorm S=%d train y", S);
        report(what, rel(y, y_ref, nx));
        snprintf(what, sizeof what, "batchnorm S=%d train mean", S);
        report(what, rel(mean, mean_ref, 3));
        snprintf(what, sizeof what, "batchnorm S=%d train invstd", S);
        report(what, rel(invstd, invstd_ref, 3));
        snprintf(what, sizeof what, "batchnorm S=%d running mean", S);
        report(what, rel(rm, rm_ref, 3));
        snprintf(what, sizeof what, "batchnorm S=%d running var (unbiased)", S);
        report(what, rel(rv, rv_ref, 3));

        nan_fill(dx, nx);
        nan_fill(dg, 3);
        nan_fill(db, 3);
        /* From the reference's saved statistics, as a layer would pass them. */
        CHECK(bp_bn_prim_backward(p, dx, dg, db, dy, x, mean_ref, invstd_ref, gamma), "batchnorm backward runs");
        snprintf(what, sizeof what, "batchnorm S=%d backward dx", S);
        report(what, rel(dx, dx_ref, nx));
        snprintf(what, sizeof what, "batchnorm S=%d backward dgamma", S);
        report(what, rel(dg, dg_ref, 3));
        snprintf(what, sizeof what, "batchnorm S=%d backward dbeta", S);
        report(what, rel(db, db_ref, 3));
        /* NULL outputs are skipped: dx alone, then dgamma alone. */
        nan_fill(dx, nx);
        nan_fill(dg2, 3);
        CHECK(bp_bn_prim_backward(p, dx, NULL, NULL, dy, x, mean, invstd, gamma) &&
                  bp_bn_prim_backward(p, NULL, dg2, NULL, dy, x, mean, invstd, gamma),
              "batchnorm backward with NULL outputs runs");
        snprintf(what, sizeof what, "batchnorm S=%d backward dx (dgamma NULL)", S);
        report(what, rel(dx, dx_ref, nx));
        snprintf(what, sizeof what, "batchnorm S=%d backward dgamma (dx NULL)", S);
        report(what, rel(dg2, dg_ref, 3));
        bp_bn_prim_free(p);
    }

    /* Inference from running statistics (the ones just updated). */
    bp_bn_forward_infer_ref(y_ref, x, gamma, beta, rm_ref, rv_ref, N, C, S, eps);
    p = bp_bn_prim_create(ctx, N, C, S, eps, 0, 1);
    CHECK(p != NULL, "batchnorm S=%d inference: primitive created", S);
    if (p) {
        nan_fill(y, nx);
        CHECK(bp_bn_prim_forward_infer(p, y, x, gamma, beta, rm_ref, rv_ref), "batchnorm forward infer runs");
        snprintf(what, sizeof what, "batchnorm S=%d infer y", S);
        report(what, rel(y, y_ref, nx));
        CHECK(!bp_bn_prim_backward(p, dx, dg, db, dy, x, mean, invstd, gamma),
              "an inference primitive has no backward");
        CHECK(!bp_bn_prim_forward_train(p, y, mean, invstd, x, gamma, beta, NULL, NULL, momentum),
              "an inference primitive refuses the training forward");
        bp_bn_prim_free(p);
    }
    free(x), free(y), free(y_ref), free(dy), free(dx), free(dx_ref);
}

int main(void)
{
    bp_gemm_ctx *ctx = bp_gemm_ctx_create();
    CHECK(ctx != NULL, "oneDNN context in the float build");
    if (ctx) {
        const int shapes[][2] = {{2, 2}, {3, 2}, {2, 1}, {3, 1}};
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            test_pool(ctx, 1, shapes[i][0], shapes[i][1]);
            test_pool(ctx, 0, shapes[i][0], shapes[i][1]);
        }
        test_bn(ctx, 1);
        test_bn(ctx, 35);
    }
    bp_gemm_ctx_free(ctx);
    return check_done("test_cnn_pool_bn");
}
