/* test_cnn_pool_bn.c - the oneDNN pooling and batch-normalization
 * primitives (float build) against the reference loops, on odd sizes
 * (N=5, C=3, 7x9 for pooling; S=1 and S=35 for batch norm): every output
 * compared as ||a - b|| / ||b|| < 1e-5. Max pooling's routing of dy to the
 * argmax is checked through dx (distinct inputs: no ties). Outputs are
 * filled with NaN first, so an element left unwritten fails. A create that
 * returns NULL in the float build fails the test. */
#include "blocked.h"
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

/* ---- the primitives on blocked layouts ----
 * x, y, dx, dy in layout blk (1: plain; 8, 16: [N, C/blk, S, blk], S the
 * spatial size): the inputs are the reference's plain data converted by
 * to_blocked, the outputs converted back by from_blocked and compared with
 * the reference loops (TOL). Every output is filled with NaN before each
 * run (all of it must be written) and followed by a NaN canary (must
 * survive); the inputs are unchanged at the end. Worst errors are
 * tracked per primitive, layout and output (printed at the end). */

static float *dupf(const float *a, size_t n)
{
    float *b = malloc((n ? n : 1) * sizeof *b);
    if (!b) abort();
    memcpy(b, a, n * sizeof *b);
    return b;
}

/* e: the error of output `what` of case `name`, counted under key. */
static void check_err(const char *name, const char *what, const char *key, double e)
{
    track(key, e);
    CHECK(e < TOL, "%s: %s: ||a-b||/||b|| = %.3g (tol %g)", name, what, e, TOL);
}

static void test_pool_blk(bp_gemm_ctx *ctx, int max, int N, int C, int H, int W, int K, int stride,
                          int blk)
{
    bp_pool_geom g = {N, C, H, W, K, stride, 0, 0};
    const char *kind = max ? "maxpool" : "avgpool";
    char name[96], key[48];
    snprintf(name, sizeof name, "%s N%d C%d %dx%d K%d s%d blk %d", kind, N, C, H, W, K, stride, blk);
    int valid = bp_pool_geom_init(&g);
    CHECK(valid, "%s: valid geometry", name);
    if (!valid) return;
    const size_t sx = (size_t)H * W, sy = (size_t)g.OH * g.OW;
    const size_t nx = (size_t)N * C * sx, ny = (size_t)N * C * sy;
    float *x = malloc(sizeof *x * nx), *dy = malloc(sizeof *dy * ny);
    float *y_ref = malloc(sizeof *y_ref * ny), *dx_ref = malloc(sizeof *dx_ref * nx);
    int32_t *idx = malloc(sizeof *idx * ny);
    if (max) fill_distinct(x, nx); /* no ties: which of a tie takes dy is oneDNN's choice */
    else fill(x, nx);
    fill(dy, ny);
    if (max) {
        bp_maxpool_forward_ref(y_ref, idx, x, &g);
        bp_maxpool_backward_ref(dx_ref, dy, idx, &g);
    } else {
        bp_avgpool_forward_ref(y_ref, x, &g);
        bp_avgpool_backward_ref(dx_ref, dy, &g);
    }
    float *xb = blocked_copy(x, N, C, sx, blk), *dyb = blocked_copy(dy, N, C, sy, blk);
    float *xb_in = dupf(xb, nx), *dyb_in = dupf(dyb, ny);
    float *yb = out_alloc(ny), *dxb = out_alloc(nx);
    float *yp = malloc(sizeof *yp * ny), *dxp = malloc(sizeof *dxp * nx);
    for (int training = 0; training < 2; training++) {
        const char *mode = training ? "train" : "infer";
        bp_pool_prim *p = bp_pool_prim_create(ctx, &g, max, training, blk);
        CHECK(p != NULL, "%s %s: primitive created", name, mode);
        if (!p) continue;
        out_nan(yb, ny);
        int ok = bp_pool_prim_forward(p, yb, xb);
        CHECK(ok, "%s %s: forward runs", name, mode);
        check_out(name, training ? "y (train)" : "y (infer)", yb, ny);
        from_blocked(yp, yb, N, C, sy, blk);
        snprintf(key, sizeof key, "%s blk %-2d y %s", kind, blk, mode);
        check_err(name, training ? "y (train)" : "y (infer)", key, rel(yp, y_ref, ny));
        out_nan(dxb, nx);
        if (!training) {
            ok = bp_pool_prim_backward(p, dxb, dyb);
            CHECK(!ok, "%s: an inference primitive has no backward", name);
            check_untouched(name, "dx of a refused backward", dxb, nx);
        } else {
            ok = bp_pool_prim_backward(p, dxb, dyb);
            CHECK(ok, "%s: backward runs", name);
            check_out(name, "dx", dxb, nx);
            from_blocked(dxp, dxb, N, C, sx, blk);
            snprintf(key, sizeof key, "%s blk %-2d dx", kind, blk);
            check_err(name, "dx", key, rel(dxp, dx_ref, nx));
            if (max) {
                /* Every nonzero of dx where the reference's argmax put it. */
                size_t wrong = 0;
                for (size_t i = 0; i < nx; i++) wrong += (dxp[i] != 0) != (dx_ref[i] != 0);
                CHECK(wrong == 0, "%s: %zu inputs routed differently", name, wrong);
            }
        }
        bp_pool_prim_free(p);
    }
    int kept = !memcmp(xb, xb_in, nx * sizeof *xb) && !memcmp(dyb, dyb_in, ny * sizeof *dyb);
    CHECK(kept, "%s: x, dy unchanged by the primitives", name);
    free(x), free(dy), free(y_ref), free(dx_ref), free(idx), free(xb), free(dyb), free(xb_in);
    free(dyb_in), free(yb), free(dxb), free(yp), free(dxp);
}

static void test_bn_blk(bp_gemm_ctx *ctx, int N, int C, int S, int blk)
{
    const double eps = 1e-5, momentum = 0.1;
    const size_t nx = (size_t)N * C * S, nc = (size_t)C;
    char name[96], key[48];
    snprintf(name, sizeof name, "batchnorm N%d C%d S%d blk %d", N, C, S, blk);
    float *x = malloc(sizeof *x * nx), *dy = malloc(sizeof *dy * nx);
    float *y_ref = malloc(sizeof *y_ref * nx), *yi_ref = malloc(sizeof *yi_ref * nx);
    float *dx_ref = malloc(sizeof *dx_ref * nx);
    float *gamma = malloc(sizeof *gamma * nc), *beta = malloc(sizeof *beta * nc);
    float *rm0 = malloc(sizeof *rm0 * nc), *rv0 = malloc(sizeof *rv0 * nc);
    float *rm_ref = malloc(sizeof *rm_ref * nc), *rv_ref = malloc(sizeof *rv_ref * nc);
    float *mean_ref = malloc(sizeof *mean_ref * nc), *invstd_ref = malloc(sizeof *invstd_ref * nc);
    float *dg_ref = malloc(sizeof *dg_ref * nc), *db_ref = malloc(sizeof *db_ref * nc);
    fill(x, nx);
    /* Channel c: mean about 1.5 + 0.25 (c % 7), a spread that varies with c,
     * so a channel put in another's place changes every statistic. */
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int s = 0; s < S; s++) {
                size_t k = ((size_t)n * C + c) * S + s;
                x[k] = (1.5f + 0.5f * (float)(c % 5)) * x[k] + 1.5f + 0.25f * (float)(c % 7);
            }
    fill(dy, nx);
    for (int c = 0; c < C; c++) {
        gamma[c] = 1 + 0.5f * urand(), beta[c] = urand();
        rm0[c] = urand(), rv0[c] = 1 + 0.5f * urand();
    }
    memcpy(rm_ref, rm0, sizeof *rm0 * nc);
    memcpy(rv_ref, rv0, sizeof *rv0 * nc);
    bp_bn_forward_train_ref(y_ref, mean_ref, invstd_ref, x, gamma, beta, rm_ref, rv_ref, N, C, S, eps,
                            momentum);
    bp_bn_backward_ref(dx_ref, dg_ref, db_ref, dy, x, mean_ref, invstd_ref, gamma, N, C, S);
    bp_bn_forward_infer_ref(yi_ref, x, gamma, beta, rm_ref, rv_ref, N, C, S, eps);

    float *xb = blocked_copy(x, N, C, (size_t)S, blk), *dyb = blocked_copy(dy, N, C, (size_t)S, blk);
    float *xb_in = dupf(xb, nx), *dyb_in = dupf(dyb, nx), *gamma_in = dupf(gamma, nc);
    float *beta_in = dupf(beta, nc), *rm_ref_in = dupf(rm_ref, nc), *rv_ref_in = dupf(rv_ref, nc);
    float *yb = out_alloc(nx), *dxb = out_alloc(nx), *mean = out_alloc(nc), *invstd = out_alloc(nc);
    float *dg = out_alloc(nc), *db = out_alloc(nc), *rm = out_alloc(nc), *rv = out_alloc(nc);
    float *yp = malloc(sizeof *yp * nx), *dxp = malloc(sizeof *dxp * nx);
    memcpy(rm, rm0, sizeof *rm0 * nc);
    memcpy(rv, rv0, sizeof *rv0 * nc);
    int ok;

    bp_bn_prim *p = bp_bn_prim_create(ctx, N, C, S, eps, 1, blk);
    CHECK(p != NULL, "%s training: primitive created", name);
    if (p) {
        ok = bp_bn_prim_forward_infer(p, yb, xb, gamma, beta, rm0, rv0);
        CHECK(!ok, "%s: a training primitive refuses the inference forward", name);
        check_untouched(name, "y of a refused inference forward", yb, nx);

        ok = bp_bn_prim_forward_train(p, yb, mean, invstd, xb, gamma, beta, rm, rv, momentum);
        CHECK(ok, "%s: forward train runs", name);
        check_out(name, "y (train)", yb, nx);
        check_out(name, "mean", mean, nc);
        check_out(name, "invstd", invstd, nc);
        check_out(name, "running mean", rm, nc);
        check_out(name, "running var", rv, nc);
        from_blocked(yp, yb, N, C, (size_t)S, blk);
#define BN_ERR(what, q, e)                                                       \
    do {                                                                         \
        snprintf(key, sizeof key, "batchnorm blk %-2d %s", blk, q);              \
        check_err(name, what, key, e);                                           \
    } while (0)
        BN_ERR("y (train)", "y train", rel(yp, y_ref, nx));
        BN_ERR("mean", "mean", rel(mean, mean_ref, nc));
        BN_ERR("invstd", "invstd", rel(invstd, invstd_ref, nc));
        BN_ERR("running mean", "running mean", rel(rm, rm_ref, nc));
        BN_ERR("running var", "running var", rel(rv, rv_ref, nc));

        /* Without running statistics (NULL: not updated). */
        out_nan(yb, nx);
        out_nan(mean, nc);
        out_nan(invstd, nc);
        ok = bp_bn_prim_forward_train(p, yb, mean, invstd, xb, gamma, beta, NULL, NULL, momentum);
        CHECK(ok, "%s: forward train without running statistics runs", name);
        check_out(name, "y (train, no running stats)", yb, nx);
        check_out(name, "mean (no running stats)", mean, nc);
        check_out(name, "invstd (no running stats)", invstd, nc);
        from_blocked(yp, yb, N, C, (size_t)S, blk);
        BN_ERR("y (train, no running stats)", "y train", rel(yp, y_ref, nx));
        BN_ERR("mean (no running stats)", "mean", rel(mean, mean_ref, nc));
        BN_ERR("invstd (no running stats)", "invstd", rel(invstd, invstd_ref, nc));

        /* From the reference's saved statistics, as a layer would pass them. */
        ok = bp_bn_prim_backward(p, dxb, dg, db, dyb, xb, mean_ref, invstd_ref, gamma);
        CHECK(ok, "%s: backward runs", name);
        check_out(name, "dx", dxb, nx);
        check_out(name, "dgamma", dg, nc);
        check_out(name, "dbeta", db, nc);
        from_blocked(dxp, dxb, N, C, (size_t)S, blk);
        BN_ERR("dx", "dx", rel(dxp, dx_ref, nx));
        BN_ERR("dgamma", "dgamma", rel(dg, dg_ref, nc));
        BN_ERR("dbeta", "dbeta", rel(db, db_ref, nc));

        /* Each output alone (the others NULL), from the primitive's own statistics. */
        out_nan(dxb, nx);
        ok = bp_bn_prim_backward(p, dxb, NULL, NULL, dyb, xb, mean, invstd, gamma);
        CHECK(ok, "%s: backward, dx alone, runs", name);
        check_out(name, "dx alone", dxb, nx);
        from_blocked(dxp, dxb, N, C, (size_t)S, blk);
        BN_ERR("dx alone", "dx", rel(dxp, dx_ref, nx));
        out_nan(dg, nc);
        ok = bp_bn_prim_backward(p, NULL, dg, NULL, dyb, xb, mean, invstd, gamma);
        CHECK(ok, "%s: backward, dgamma alone, runs", name);
        check_out(name, "dgamma alone", dg, nc);
        BN_ERR("dgamma alone", "dgamma", rel(dg, dg_ref, nc));
        out_nan(db, nc);
        ok = bp_bn_prim_backward(p, NULL, NULL, db, dyb, xb, mean, invstd, gamma);
        CHECK(ok, "%s: backward, dbeta alone, runs", name);
        check_out(name, "dbeta alone", db, nc);
        BN_ERR("dbeta alone", "dbeta", rel(db, db_ref, nc));
        bp_bn_prim_free(p);
    }

    /* Inference from the reference's running statistics. */
    p = bp_bn_prim_create(ctx, N, C, S, eps, 0, blk);
    CHECK(p != NULL, "%s inference: primitive created", name);
    if (p) {
        out_nan(yb, nx);
        ok = bp_bn_prim_forward_infer(p, yb, xb, gamma, beta, rm_ref, rv_ref);
        CHECK(ok, "%s: forward infer runs", name);
        check_out(name, "y (infer)", yb, nx);
        from_blocked(yp, yb, N, C, (size_t)S, blk);
        BN_ERR("y (infer)", "y infer", rel(yp, yi_ref, nx));
        out_nan(dxb, nx);
        ok = bp_bn_prim_backward(p, dxb, dg, db, dyb, xb, mean_ref, invstd_ref, gamma);
        CHECK(!ok, "%s: an inference primitive has no backward", name);
        check_untouched(name, "dx of a refused backward", dxb, nx);
        out_nan(yb, nx);
        ok = bp_bn_prim_forward_train(p, yb, mean, invstd, xb, gamma, beta, NULL, NULL, momentum);
        CHECK(!ok, "%s: an inference primitive refuses the training forward", name);
        check_untouched(name, "y of a refused training forward", yb, nx);
        bp_bn_prim_free(p);
    }
#undef BN_ERR
    int kept = !memcmp(xb, xb_in, nx * sizeof *xb) && !memcmp(dyb, dyb_in, nx * sizeof *dyb) &&
               !memcmp(gamma, gamma_in, nc * sizeof *gamma) &&
               !memcmp(beta, beta_in, nc * sizeof *beta) &&
               !memcmp(rm_ref, rm_ref_in, nc * sizeof *rm_ref) &&
               !memcmp(rv_ref, rv_ref_in, nc * sizeof *rv_ref);
    CHECK(kept, "%s: x, dy, gamma, beta and the inference's running statistics unchanged", name);
    free(x), free(dy), free(y_ref), free(yi_ref), free(dx_ref), free(gamma), free(beta);
    free(rm0), free(rv0), free(rm_ref), free(rv_ref), free(mean_ref), free(invstd_ref);
    free(dg_ref), free(db_ref), free(xb), free(dyb), free(xb_in), free(dyb_in), free(gamma_in);
    free(beta_in), free(rm_ref_in), free(rv_ref_in), free(yb), free(dxb), free(mean), free(invstd);
    free(dg), free(db), free(rm), free(rv), free(yp), free(dxp);
}

/* A block that does not divide the channels (24 in 16), or batch norm
 * blocked on S = 1, is refused; the same shapes in blocks of 8 (or plain)
 * are made, so the refusals are the block's. */
static void test_refusals(bp_gemm_ctx *ctx)
{
    bp_pool_geom g = {2, 24, 7, 9, 3, 2, 0, 0};
    int valid = bp_pool_geom_init(&g);
    CHECK(valid, "pool geometry C 24 7x9 K3 s2 valid");
    for (int training = 0; training < 2; training++)
        for (int max = 0; max < 2; max++) {
            const char *kind = max ? "maxpool" : "avgpool";
            bp_pool_prim *p = bp_pool_prim_create(ctx, &g, max, training, 16);
            CHECK(p == NULL, "%s C 24 blk 16 (training %d): refused", kind, training);
            bp_pool_prim_free(p);
            p = bp_pool_prim_create(ctx, &g, max, training, 8);
            CHECK(p != NULL, "%s C 24 blk 8 (training %d): created", kind, training);
            bp_pool_prim_free(p);
        }
    for (int training = 0; training < 2; training++) {
        bp_bn_prim *p = bp_bn_prim_create(ctx, 2, 24, 35, 1e-5, training, 16);
        CHECK(p == NULL, "batchnorm C 24 blk 16 (training %d): refused", training);
        bp_bn_prim_free(p);
        p = bp_bn_prim_create(ctx, 2, 24, 35, 1e-5, training, 8);
        CHECK(p != NULL, "batchnorm C 24 blk 8 (training %d): created", training);
        bp_bn_prim_free(p);
        p = bp_bn_prim_create(ctx, 4, 32, 1, 1e-5, training, 16);
        CHECK(p == NULL, "batchnorm C 32 S 1 blk 16 (training %d): refused", training);
        bp_bn_prim_free(p);
        p = bp_bn_prim_create(ctx, 4, 32, 1, 1e-5, training, 1);
        CHECK(p != NULL, "batchnorm C 32 S 1 plain (training %d): created", training);
        bp_bn_prim_free(p);
    }
}

static void test_blocked(bp_gemm_ctx *ctx)
{
    /* Pooling: N 3, odd sizes, windows overlapping (stride < K) or not;
     * C 16 (one block of 16) and 32 (two). */
    const int shapes[][5] = {/* C, H, W, K, stride */
                             {16, 7, 9, 2, 2}, {32, 7, 9, 3, 2}, {16, 7, 9, 2, 1},
                             {32, 9, 7, 3, 1}, {16, 9, 7, 3, 3}, {32, 8, 8, 2, 2}};
    const int Bs[3] = {1, 8, 16};
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            for (int max = 1; max >= 0; max--)
                test_pool_blk(ctx, max, 3, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3],
                              shapes[i][4], Bs[k]);
        if (Bs[k] == 8)
            for (int max = 1; max >= 0; max--) test_pool_blk(ctx, max, 2, 24, 7, 9, 3, 2, 8);
    }
    /* Batch norm: S = H*W odd (35 = 5x7, 63 = 7x9), small (2), N 1. */
    const int bn[][3] = {/* N, C, S */ {3, 16, 35}, {2, 32, 63}, {4, 32, 2}, {1, 16, 9}};
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < sizeof bn / sizeof bn[0]; i++)
            test_bn_blk(ctx, bn[i][0], bn[i][1], bn[i][2], Bs[k]);
        if (Bs[k] == 8) test_bn_blk(ctx, 3, 24, 35, 8);
    }
    test_refusals(ctx);
    track_print("pooling and batch norm primitives vs reference, by layout");
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
        test_blocked(ctx);
    }
    bp_gemm_ctx_free(ctx);
    return check_done("test_cnn_pool_bn");
}
