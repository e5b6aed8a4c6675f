/*
 * test_conv_kernels.c - the convolution kernels of src/conv_kernels.c.
 *
 * Built twice:
 *   test_conv_kernels (float): the reference forward against hand-computed
 *     numbers and against an independently written zero-padded formula; the
 *     oneDNN primitive (forward, backward dx / dw / db, inference-only and
 *     need_dx = 0 variants) against the reference loops on odd geometries,
 *     ||prim - ref|| / ||ref|| < 1e-5; and a malloc counter showing the
 *     primitive's forward and backward allocate nothing in libbackprop.
 *   test_conv_kernels_f64 (double): the same reference checks, plus the
 *     reference backward against central differences of L = sum(dy * y),
 *     worst relative error < 1e-6.
 */
#ifndef BP_DOUBLE
#define _GNU_SOURCE
#include <dlfcn.h>
#endif

#include "blocked.h"
#include "cnn_kernels.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef BP_DOUBLE
#define NAME "test_conv_kernels_f64"
#else
#define NAME "test_conv_kernels"
#endif

/* ---- malloc counter (float build; as tests/test_noalloc.c) ----
 * Allocations whose return address lies in this executable are
 * libbackprop's (linked statically here); those made inside shared
 * libraries (oneDNN's per-execute argument maps) are counted apart and
 * printed. Not under AddressSanitizer, which owns malloc. */
#if defined(__SANITIZE_ADDRESS__)
#define COUNT_ALLOCS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COUNT_ALLOCS 0
#endif
#endif
#if !defined(COUNT_ALLOCS) && !defined(BP_DOUBLE)
#define COUNT_ALLOCS 1
#endif
#ifndef COUNT_ALLOCS
#define COUNT_ALLOCS 0
#endif

#if COUNT_ALLOCS
#include "count_allocs.h"
#endif

static double urand(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) * 0x1.0p-53;
}

static bp_real *rnd(size_t n, uint64_t *s)
{
    bp_real *a = malloc((n ? n : 1) * sizeof *a);
    if (!a) abort();
    for (size_t i = 0; i < n; i++) a[i] = (bp_real)(2 * urand(s) - 1);
    return a;
}

static bp_real *nans(size_t n)
{
    bp_real *a = malloc((n ? n : 1) * sizeof *a);
    if (!a) abort();
    for (size_t i = 0; i < n; i++) a[i] = (bp_real)NAN;
    return a;
}

static size_t xsize(const bp_conv_geom *g) { return (size_t)g->N * g->C * g->H * g->W; }
static size_t wsize(const bp_conv_geom *g) { return (size_t)g->OC * g->C * g->K * g->K; }
static size_t ysize(const bp_conv_geom *g) { return (size_t)g->N * g->OC * g->OH * g->OW; }

static bp_conv_geom geom(int N, int C, int H, int W, int OC, int K, int s, int pad)
{
    bp_conv_geom g = {N, C, H, W, OC, K, s, pad, 0, 0};
    CHECK(bp_conv_geom_init(&g), "geometry N%d C%d %dx%d OC%d K%d s%d p%d is valid", N, C, H, W,
          OC, K, s, pad);
    return g;
}

/* ---- geometry ---- */
static void test_geom(void)
{
    bp_conv_geom g = {1, 1, 7, 9, 1, 3, 2, 1, 0, 0};
    CHECK(bp_conv_geom_init(&g) && g.OH == 4 && g.OW == 5, "7x9 K3 s2 p1 -> 4x5 (got %dx%d)",
          g.OH, g.OW);
    bp_conv_geom e = {1, 1, 3, 3, 1, 6, 1, 1, 0, 0};
    CHECK(!bp_conv_geom_init(&e), "K 6 > 3 + 2*1: empty output refused");
    bp_conv_geom z = {1, 1, 3, 3, 1, 1, 0, 0, 0, 0};
    CHECK(!bp_conv_geom_init(&z), "stride 0 refused");
}

/* ---- (2) forward reference against hand-computed numbers ----
 * x (1x1x3x3) = [1 2 3; 4 5 6; 7 8 9], w (1x1x2x2) = [1 2; 3 4].
 * Stride 1, pad 0, bias 0.5: y (2x2) = w . each 2x2 window + 0.5:
 *   y00 = 1*1 + 2*2 + 3*4 + 4*5 + .5 = 37.5   y01 = 1*2 + 2*3 + 3*5 + 4*6 + .5 = 47.5
 *   y10 = 1*4 + 2*5 + 3*7 + 4*8 + .5 = 67.5   y11 = 1*5 + 2*6 + 3*8 + 4*9 + .5 = 77.5
 * Stride 2, pad 1, no bias: OH = (3 + 2 - 2) / 2 + 1 = 2; window (i, j) covers
 * rows 2i-1, 2i and columns 2j-1, 2j, the -1 row / column being zero:
 *   y00 = 4*x00 = 4                 y01 = 3*x01 + 4*x02 = 6 + 12 = 18
 *   y10 = 2*x10 + 4*x20 = 8 + 28 = 36   y11 = 1*5 + 2*6 + 3*8 + 4*9 = 77 */
static void test_forward_by_hand(void)
{
    const bp_real x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w[4] = {1, 2, 3, 4}, b[1] = {0.5};
    bp_real y[4];
    bp_conv_geom g = geom(1, 1, 3, 3, 1, 2, 1, 0);
    bp_conv_forward_ref(y, x, w, b, &g);
    const double want1[4] = {37.5, 47.5, 67.5, 77.5};
    for (int i = 0; i < 4; i++) CHECK_CLOSE(y[i], want1[i], 1e-12, "hand case s1 p0 bias");
    g = geom(1, 1, 3, 3, 1, 2, 2, 1);
    CHECK(g.OH == 2 && g.OW == 2, "hand case s2 p1: 2x2 output (got %dx%d)", g.OH, g.OW);
    bp_conv_forward_ref(y, x, w, NULL, &g);
    const double want2[4] = {4, 18, 36, 77};
    for (int i = 0; i < 4; i++) CHECK_CLOSE(y[i], want2[i], 1e-12, "hand case s2 p1 no bias");
}

/* The geometries of the checks: stride 1 and 2, pad 0 and 1, K 1, 3, 5,
 * C 1 and 3, OC 1 and 4, N 1 and 3, odd sizes; and some where oneDNN's
 * right padding is negative (the last input rows / columns unused). */
static int n_geoms(void) { return 2 * 2 * 3 * 2; }
static bp_conv_geom geom_at(int k)
{
    int s = 1 + k % 2, pad = (k / 2) % 2, K = 1 + 2 * ((k / 4) % 3), v = k / 12;
    int N = v ? 3 : 1, C = v ? 3 : 1, OC = v ? 1 : 4;
    if (k % 5 == 0) C = 3, OC = 4; /* some with both > 1 */
    int H = v ? 7 : 6, W = v ? 5 : 9;
    return geom(N, C, H, W, OC, K, s, pad);
}

/* ---- forward reference against an independent formula ----
 * Copy x into a zero-bordered image first, then correlate without any
 * bounds test: y = b + sum w * xpad[i*s + p, j*s + q]. */
static void naive_forward(double *y, const bp_real *x, const bp_real *w, const bp_real *b,
                          const bp_conv_geom *g)
{
    int HP = g->H + 2 * g->pad, WP = g->W + 2 * g->pad;
    double *xp = calloc((size_t)g->N * g->C * HP * WP, sizeof *xp);
    if (!xp) abort();
    for (int n = 0; n < g->N; n++)
        for (int c = 0; c < g->C; c++)
            for (int h = 0; h < g->H; h++)
                for (int v = 0; v < g->W; v++)
                    xp[((n * g->C + c) * HP + h + g->pad) * WP + v + g->pad] =
                        x[((n * g->C + c) * g->H + h) * g->W + v];
    for (int n = 0; n < g->N; n++)
        for (int o = 0; o < g->OC; o++)
            for (int i = 0; i < g->OH; i++)
                for (int j = 0; j < g->OW; j++) {
                    double acc = b[o];
                    for (int c = 0; c < g->C; c++)
                        for (int p = 0; p < g->K; p++)
                            for (int q = 0; q < g->K; q++)
                                acc += w[((o * g->C + c) * g->K + p) * g->K + q] *
                                       xp[((n * g->C + c) * HP + i * g->stride + p) * WP +
                                          j * g->stride + q];
                    y[((n * g->OC + o) * g->OH + i) * g->OW + j] = acc;
                }
    free(xp);
}

static void test_forward_naive(void)
{
    uint64_t s = 7;
    double worst = 0;
    for (int k = 0; k < n_geoms(); k++) {
        bp_conv_geom g = geom_at(k);
        bp_real *x = rnd(xsize(&g), &s), *w = rnd(wsize(&g), &s), *b = rnd((size_t)g.OC, &s);
        bp_real *y = nans(ysize(&g));
        double *want = malloc(ysize(&g) * sizeof *want);
        if (!want) abort();
        bp_conv_forward_ref(y, x, w, b, &g);
        naive_forward(want, x, w, b, &g);
        for (size_t i = 0; i < ysize(&g); i++) {
            double d = fabs(y[i] - want[i]) / fmax(1, fabs(want[i]));
            if (!(d <= worst)) worst = d;
        }
        free(x), free(w), free(b), free(y), free(want);
    }
#ifdef BP_DOUBLE
    const double tol = 1e-12;
#else
    const double tol = 1e-6;
#endif
    printf("  forward ref vs zero-padded formula, %d geometries: worst error %.3g (tol %g)\n",
           n_geoms(), worst, tol);
    CHECK(worst < tol, "forward ref vs independent formula: %g (tol %g)", worst, tol);
}

/* ---- the test helper plain [N, C, S] <-> blocked [N, C/B, S, B] (blocked.h) ----
 * plain[i] = i, N 2, C 32, S 15: element (n 1, c 19, s 4) is plain[(1*32 + 19)*15 + 4]
 * = 769. Blocked B 16 puts it in block 1, lane 3: ((1*2 + 1)*15 + 4)*16 + 3 = 787;
 * B 8 in block 2, lane 3: ((1*4 + 2)*15 + 4)*8 + 3 = 755; B 1 leaves it at 769.
 * from_blocked undoes to_blocked exactly. */
static void test_blocked_helper(void)
{
    const int N = 2, C = 32;
    const size_t S = 15, n = (size_t)N * C * S;
    bp_real *plain = nans(n), *blk = nans(n), *back = nans(n);
    for (size_t i = 0; i < n; i++) plain[i] = (bp_real)i;
    const int Bs[3] = {1, 8, 16};
    const size_t at[3] = {769, 755, 787};
    for (int k = 0; k < 3; k++) {
        out_nan(blk, n);
        out_nan(back, n);
        to_blocked(blk, plain, N, C, S, Bs[k]);
        from_blocked(back, blk, N, C, S, Bs[k]);
        double got = blk[at[k]];
        CHECK(got == 769, "to_blocked B %d: (n 1, c 19, s 4) at %zu holds %g (want 769)", Bs[k],
              at[k], got);
        size_t moved = 0;
        for (size_t i = 0; i < n; i++) moved += blk[i] != plain[i];
        CHECK((Bs[k] == 1) == (moved == 0), "to_blocked B %d moves %zu of %zu elements", Bs[k],
              moved, n);
        int same = memcmp(back, plain, n * sizeof *back) == 0;
        CHECK(same, "from_blocked(to_blocked(x)) == x for B %d", Bs[k]);
    }
    free(plain), free(blk), free(back);
}

#ifdef BP_DOUBLE
/* ---- (1) reference backward against central differences ----
 * L = sum(dy * y) with a random dy, so dL/dx, dL/dw, dL/db are exactly
 * the backward's dx, dw, db. L is linear in each of x, w, b: the central
 * difference has no truncation error, only rounding. */
static double loss(const bp_real *dy, const bp_real *x, const bp_real *w, const bp_real *b,
                   const bp_conv_geom *g, bp_real *y)
{
    bp_conv_forward_ref(y, x, w, b, g);
    double L = 0;
    for (size_t i = 0; i < ysize(g); i++) L += (double)dy[i] * y[i];
    return L;
}

static double fd_worst(bp_real *v, size_t n, const bp_real *grad, const bp_real *dy,
                       const bp_real *x, const bp_real *w, const bp_real *b,
                       const bp_conv_geom *g, bp_real *y)
{
    const double h = 1e-4;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        bp_real keep = v[i];
        v[i] = keep + h;
        double lp = loss(dy, x, w, b, g, y);
        v[i] = keep - h;
        double lm = loss(dy, x, w, b, g, y);
        v[i] = keep;
        double fd = (lp - lm) / (2 * h);
        double d = fabs(fd - grad[i]) / fmax(1e-3, fmax(fabs(fd), fabs(grad[i])));
        if (!(d <= worst)) worst = d;
    }
    return worst;
}

static void test_backward_fd(void)
{
    uint64_t s = 11;
    double wx = 0, ww = 0, wb = 0;
    for (int k = 0; k < n_geoms(); k++) {
        bp_conv_geom g = geom_at(k);
        bp_real *x = rnd(xsize(&g), &s), *w = rnd(wsize(&g), &s), *b = rnd((size_t)g.OC, &s);
        bp_real *dy = rnd(ysize(&g), &s), *y = nans(ysize(&g));
        bp_real *dx = nans(xsize(&g)), *dw = nans(wsize(&g)), *db = nans((size_t)g.OC);
        bp_conv_backward_ref(dx, dw, db, dy, x, w, &g);
        double ex = fd_worst(x, xsize(&g), dx, dy, x, w, b, &g, y);
        double ew = fd_worst(w, wsize(&g), dw, dy, x, w, b, &g, y);
        double eb = fd_worst(b, (size_t)g.OC, db, dy, x, w, b, &g, y);
        CHECK(ex < 1e-6 && ew < 1e-6 && eb < 1e-6,
              "N%d C%d %dx%d OC%d K%d s%d p%d: finite differences dx %g dw %g db %g (tol 1e-6)",
              g.N, g.C, g.H, g.W, g.OC, g.K, g.stride, g.pad, ex, ew, eb);
        wx = fmax(wx, ex), ww = fmax(ww, ew), wb = fmax(wb, eb);
        /* NULL outputs are skipped, the others still written. */
        bp_real *dw2 = nans(wsize(&g));
        bp_conv_backward_ref(NULL, dw2, NULL, dy, x, w, &g);
        CHECK(memcmp(dw2, dw, wsize(&g) * sizeof *dw) == 0, "dx, db NULL: dw unchanged");
        free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(db), free(dw2);
    }
    printf("  ref backward vs central differences, %d geometries: worst relative error dx %.3g, "
           "dw %.3g, db %.3g (tol 1e-6)\n",
           n_geoms(), wx, ww, wb);
}
#endif

#ifndef BP_DOUBLE
/* ||a - b|| / ||b|| (every a finite, else infinity). */
static double rel(const bp_real *a, const bp_real *b, size_t n)
{
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

#define REL_TOL 1e-5

/* ---- (3) primitive against the reference loops ---- */
static void check_prim(bp_gemm_ctx *ctx, bp_conv_geom g, uint64_t *s, int verbose)
{
    const char *fmt = "N%d C%d %dx%d OC%d K%d s%d p%d";
    char name[96];
    snprintf(name, sizeof name, fmt, g.N, g.C, g.H, g.W, g.OC, g.K, g.stride, g.pad);
    size_t nx = xsize(&g), nw = wsize(&g), ny = ysize(&g), nb = (size_t)g.OC;
    bp_real *x = rnd(nx, s), *w = rnd(nw, s), *b = rnd(nb, s), *dy = rnd(ny, s);
    bp_real *y0 = nans(ny), *dx0 = nans(nx), *dw0 = nans(nw), *db0 = nans(nb);
    bp_real *y = nans(ny), *dx = nans(nx), *dw = nans(nw), *db = nans(nb);
    bp_conv_forward_ref(y0, x, w, b, &g);
    bp_conv_backward_ref(dx0, dw0, db0, dy, x, w, &g);

    /* Training, with dx. */
    bp_conv_prim *p = bp_conv_prim_create(ctx, &g, 1, 1, 1, 1, 0);
    CHECK(p != NULL, "%s: primitive created (training, need_dx)", name);
    if (p) {
        CHECK(bp_conv_prim_forward(p, y, x, w, b), "%s: forward runs", name);
        CHECK(bp_conv_prim_backward(p, dx, dw, db, dy, x, w), "%s: backward runs", name);
        double ey = rel(y, y0, ny), ex = rel(dx, dx0, nx), ew = rel(dw, dw0, nw),
               eb = rel(db, db0, nb);
        if (verbose)
            printf("  %-28s prim vs ref: y %.2g dx %.2g dw %.2g db %.2g (tol %g)\n", name, ey, ex,
                   ew, eb, REL_TOL);
        CHECK(ey < REL_TOL && ex < REL_TOL && ew < REL_TOL && eb < REL_TOL,
              "%s: prim vs ref y %g dx %g dw %g db %g (tol %g)", name, ey, ex, ew, eb, REL_TOL);
        /* No bias: y = conv without b. */
        bp_real *y1 = nans(ny);
        bp_conv_forward_ref(y1, x, w, NULL, &g);
        for (size_t i = 0; i < ny; i++) y[i] = (bp_real)NAN;
        CHECK(bp_conv_prim_forward(p, y, x, w, NULL), "%s: forward without bias runs", name);
        double e1 = rel(y, y1, ny);
        CHECK(e1 < REL_TOL, "%s: prim forward without bias %g (tol %g)", name, e1, REL_TOL);
        /* Each output alone (the others NULL, skipped). */
        for (size_t i = 0; i < nw; i++) dw[i] = (bp_real)NAN;
        CHECK(bp_conv_prim_backward(p, NULL, dw, NULL, dy, x, w), "%s: dw alone runs", name);
        ew = rel(dw, dw0, nw);
        CHECK(ew < REL_TOL, "%s: dw alone %g (tol %g)", name, ew, REL_TOL);
        for (size_t i = 0; i < nb; i++) db[i] = (bp_real)NAN;
        CHECK(bp_conv_prim_backward(p, NULL, NULL, db, dy, x, w), "%s: db alone runs", name);
        eb = rel(db, db0, nb);
        CHECK(eb < REL_TOL, "%s: db alone %g (tol %g)", name, eb, REL_TOL);
        for (size_t i = 0; i < nx; i++) dx[i] = (bp_real)NAN;
        CHECK(bp_conv_prim_backward(p, dx, NULL, NULL, dy, x, w), "%s: dx alone runs", name);
        ex = rel(dx, dx0, nx);
        CHECK(ex < REL_TOL, "%s: dx alone %g (tol %g)", name, ex, REL_TOL);
        free(y1);
        bp_conv_prim_free(p);
    }

    /* Training without dx (a first layer): dw, db only; asking dx does nothing. */
    p = bp_conv_prim_create(ctx, &g, 1, 0, 1, 1, 0);
    CHECK(p != NULL, "%s: primitive created (training, no dx)", name);
    if (p) {
        for (size_t i = 0; i < nw; i++) dw[i] = (bp_real)NAN;
        for (size_t i = 0; i < nb; i++) db[i] = (bp_real)NAN;
        CHECK(bp_conv_prim_forward(p, y, x, w, b), "%s (no dx): forward runs", name);
        double ey = rel(y, y0, ny);
        CHECK(bp_conv_prim_backward(p, NULL, dw, db, dy, x, w), "%s (no dx): backward runs", name);
        double ew = rel(dw, dw0, nw), eb = rel(db, db0, nb);
        CHECK(ey < REL_TOL && ew < REL_TOL && eb < REL_TOL,
              "%s (no dx): y %g dw %g db %g (tol %g)", name, ey, ew, eb, REL_TOL);
        for (size_t i = 0; i < nw; i++) dw[i] = (bp_real)NAN;
        CHECK(!bp_conv_prim_backward(p, dx, dw, db, dy, x, w), "%s (no dx): dx refused", name);
        int untouched = 1;
        for (size_t i = 0; i < nw; i++) untouched &= isnan(dw[i]);
        CHECK(untouched, "%s (no dx): a refused backward leaves dw alone", name);
        bp_conv_prim_free(p);
    }

    /* Inference: forward only. */
    p = bp_conv_prim_create(ctx, &g, 0, 1, 1, 1, 0);
    CHECK(p != NULL, "%s: primitive created (inference)", name);
    if (p) {
        for (size_t i = 0; i < ny; i++) y[i] = (bp_real)NAN;
        CHECK(bp_conv_prim_forward(p, y, x, w, b), "%s (inference): forward runs", name);
        double ey = rel(y, y0, ny);
        CHECK(ey < REL_TOL, "%s (inference): y %g (tol %g)", name, ey, REL_TOL);
        CHECK(!bp_conv_prim_backward(p, NULL, dw, db, dy, x, w),
              "%s (inference): backward refused", name);
        bp_conv_prim_free(p);
    }
    free(x), free(w), free(b), free(dy), free(y0), free(dx0), free(dw0), free(db0);
    free(y), free(dx), free(dw), free(db);
}

static void test_prim(void)
{
    bp_gemm_ctx *ctx = bp_gemm_ctx_create();
    CHECK(ctx != NULL, "oneDNN context available in the float build");
    if (!ctx) return;
    uint64_t s = 5;
    for (int k = 0; k < n_geoms(); k++) check_prim(ctx, geom_at(k), &s, 1);
    /* oneDNN's right padding negative: rows / columns past the last window. */
    check_prim(ctx, geom(2, 3, 8, 6, 4, 1, 2, 0), &s, 1);
    check_prim(ctx, geom(2, 2, 10, 9, 3, 3, 3, 1), &s, 1);
    /* The target network's two layers, small batch (the reference is slow). */
    check_prim(ctx, geom(4, 1, 28, 28, 32, 3, 1, 1), &s, 1);
    check_prim(ctx, geom(4, 32, 14, 14, 64, 3, 1, 1), &s, 1);

    /* A geometry whose OH / OW disagree with bp_conv_geom_init: refused. */
    bp_conv_geom bad = geom(1, 1, 5, 5, 1, 3, 1, 0);
    bad.OH = 5;
    CHECK(bp_conv_prim_create(ctx, &bad, 1, 1, 1, 1, 0) == NULL, "inconsistent OH refused");

    /* Made for 2 threads, run after bp_set_threads(1): does nothing (the
     * caller falls back), as bp_mm_run. Needs 2 cores to mean anything. */
    if (bp_cores() >= 2) {
        bp_set_threads(2);
        bp_conv_geom g = geom(8, 32, 14, 14, 64, 3, 1, 1);
        bp_conv_prim *p = bp_conv_prim_create(ctx, &g, 1, 1, 1, 1, 0);
        CHECK(p != NULL, "2-thread primitive created");
        bp_set_threads(1);
        bp_real *x = rnd(xsize(&g), &s), *w = rnd(wsize(&g), &s), *y = nans(ysize(&g));
        bp_real *dy = rnd(ysize(&g), &s), *dw = nans(wsize(&g));
        CHECK(p && !bp_conv_prim_forward(p, y, x, w, NULL),
              "primitive made for 2 threads refuses to run on 1");
        CHECK(p && !bp_conv_prim_backward(p, NULL, dw, NULL, dy, x, w), "... backward too");
        int untouched = 1;
        for (size_t i = 0; i < ysize(&g); i++) untouched &= isnan(y[i]);
        for (size_t i = 0; i < wsize(&g); i++) untouched &= isnan(dw[i]);
        CHECK(untouched, "a refused forward / backward writes nothing");
        bp_set_threads(0);
        bp_conv_prim_free(p);
        free(x), free(w), free(y), free(dy), free(dw);
    } else {
        printf("  thread-count fallback not checked: %d core(s)\n", bp_cores());
    }
    bp_gemm_ctx_free(ctx);
}

/* ---- (4) the primitive on blocked layouts ----
 * x / dx in layout bx, y / dy in layout by (1: plain nchw, 8 / 16: nChw8c /
 * nChw16c): the inputs are the reference's plain data converted to those
 * layouts, the outputs converted back and compared with the reference
 * loops (REL_TOL, as the plain checks). Each output buffer is filled with
 * NaN before each run (every element must be written) and followed by a
 * canary (must survive); the inputs are unchanged at the end. */

/* bp_act_md's layouts are what to_blocked writes: oneDNN's own reorder
 * nchw -> nChw{B}c gives the same bytes. */
static void test_layout_onednn(bp_gemm_ctx *ctx)
{
    const int N = 2, C = 32, H = 3, W = 5;
    const size_t S = (size_t)H * W, n = (size_t)N * C * S;
    dnnl_engine_t eng = bp_gemm_ctx_engine(ctx);
    dnnl_stream_t st = bp_gemm_ctx_stream(ctx);
    uint64_t s = 21;
    bp_real *x = rnd(n, &s), *theirs = nans(n), *mine = nans(n);
    for (int B = 8; B <= 16; B *= 2) {
        dnnl_memory_desc_t pmd, bmd;
        int ok = bp_act_md(&pmd, N, C, H, W, 1) && bp_act_md(&bmd, N, C, H, W, B);
        CHECK(ok, "bp_act_md: nchw and nChw%dc for C %d", B, C);
        if (!ok) continue;
        dnnl_memory_t pm = NULL, bm = NULL;
        dnnl_primitive_desc_t rpd = NULL;
        dnnl_primitive_t r = NULL;
        out_nan(theirs, n);
        ok = !dnnl_memory_create(&pm, &pmd, eng, x) && !dnnl_memory_create(&bm, &bmd, eng, theirs) &&
             !dnnl_reorder_primitive_desc_create(&rpd, &pmd, eng, &bmd, eng, NULL) &&
             !dnnl_primitive_create(&r, rpd);
        if (ok) {
            dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, pm}, {DNNL_ARG_TO, bm}};
            ok = !dnnl_primitive_execute(r, st, 2, a) && !dnnl_stream_wait(st);
        }
        CHECK(ok, "oneDNN reorder nchw -> nChw%dc runs", B);
        to_blocked(mine, x, N, C, S, B);
        int same = ok && memcmp(mine, theirs, n * sizeof *mine) == 0;
        CHECK(same, "to_blocked B %d writes what oneDNN's reorder to nChw%dc writes", B, B);
        if (r) dnnl_primitive_destroy(r);
        if (rpd) dnnl_primitive_desc_destroy(rpd);
        if (pm) dnnl_memory_destroy(pm);
        if (bm) dnnl_memory_destroy(bm);
    }
    dnnl_memory_desc_t md;
    CHECK(!bp_act_md(&md, N, 24, H, W, 16), "bp_act_md: 16 does not divide C 24: refused");
    CHECK(bp_act_md(&md, N, 24, H, W, 8), "bp_act_md: C 24 in nChw8c accepted");
    free(x), free(theirs), free(mine);
}

static bp_real *dup(const bp_real *a, size_t n)
{
    bp_real *b = malloc((n ? n : 1) * sizeof *b);
    if (!b) abort();
    memcpy(b, a, n * sizeof *b);
    return b;
}

/* e: the error of output `what`, counted as quantity q (y, y infer, dx, dw, db). */
static void check_err(const char *name, const char *what, const char *q, int bx, int by,
                      double e)
{
    char key[48];
    snprintf(key, sizeof key, "conv x blk %-2d y blk %-2d %s", bx, by, q);
    track(key, e);
    CHECK(e < REL_TOL, "%s: %s prim vs ref %g (tol %g)", name, what, e, REL_TOL);
}

static void check_prim_blk(bp_gemm_ctx *ctx, bp_conv_geom g, int bx, int by, uint64_t *s)
{
    char name[112];
    snprintf(name, sizeof name, "N%d C%d %dx%d OC%d K%d s%d p%d, x blk %d y blk %d", g.N, g.C, g.H,
             g.W, g.OC, g.K, g.stride, g.pad, bx, by);
    const size_t nx = xsize(&g), nw = wsize(&g), ny = ysize(&g), nb = (size_t)g.OC;
    const size_t sx = (size_t)g.H * g.W, sy = (size_t)g.OH * g.OW;
    bp_real *x = rnd(nx, s), *w = rnd(nw, s), *b = rnd(nb, s), *dy = rnd(ny, s);
    bp_real *y0 = nans(ny), *y1 = nans(ny), *dx0 = nans(nx), *dw0 = nans(nw), *db0 = nans(nb);
    bp_conv_forward_ref(y0, x, w, b, &g);
    bp_conv_forward_ref(y1, x, w, NULL, &g);
    bp_conv_backward_ref(dx0, dw0, db0, dy, x, w, &g);
    bp_real *xb = blocked_copy(x, g.N, g.C, sx, bx), *dyb = blocked_copy(dy, g.N, g.OC, sy, by);
    bp_real *xb_in = dup(xb, nx), *dyb_in = dup(dyb, ny), *w_in = dup(w, nw), *b_in = dup(b, nb);
    bp_real *yb = out_alloc(ny), *dxb = out_alloc(nx), *dw = out_alloc(nw), *db = out_alloc(nb);
    bp_real *yp = nans(ny), *dxp = nans(nx);
    int ok;

    /* Training, with dx. */
    bp_conv_prim *p = bp_conv_prim_create(ctx, &g, 1, 1, bx, by, 0);
    CHECK(p != NULL, "%s: primitive created (training, need_dx)", name);
    if (p) {
        ok = bp_conv_prim_forward(p, yb, xb, w, b);
        CHECK(ok, "%s: forward runs", name);
        check_out(name, "y", yb, ny);
        from_blocked(yp, yb, g.N, g.OC, sy, by);
        check_err(name, "y", "y", bx, by, rel(yp, y0, ny));

        out_nan(yb, ny);
        ok = bp_conv_prim_forward(p, yb, xb, w, NULL);
        CHECK(ok, "%s: forward without bias runs", name);
        check_out(name, "y (no bias)", yb, ny);
        from_blocked(yp, yb, g.N, g.OC, sy, by);
        check_err(name, "y (no bias)", "y", bx, by, rel(yp, y1, ny));

        ok = bp_conv_prim_backward(p, dxb, dw, db, dyb, xb, w);
        CHECK(ok, "%s: backward runs", name);
        check_out(name, "dx", dxb, nx);
        check_out(name, "dw", dw, nw);
        check_out(name, "db", db, nb);
        from_blocked(dxp, dxb, g.N, g.C, sx, bx);
        check_err(name, "dx", "dx", bx, by, rel(dxp, dx0, nx));
        check_err(name, "dw", "dw", bx, by, rel(dw, dw0, nw));
        check_err(name, "db", "db", bx, by, rel(db, db0, nb));

        /* Each output alone, the others NULL. */
        out_nan(dw, nw);
        ok = bp_conv_prim_backward(p, NULL, dw, NULL, dyb, xb, w);
        CHECK(ok, "%s: dw alone runs", name);
        check_out(name, "dw alone", dw, nw);
        check_err(name, "dw alone", "dw", bx, by, rel(dw, dw0, nw));
        out_nan(db, nb);
        ok = bp_conv_prim_backward(p, NULL, NULL, db, dyb, xb, w);
        CHECK(ok, "%s: db alone runs", name);
        check_out(name, "db alone", db, nb);
        check_err(name, "db alone", "db", bx, by, rel(db, db0, nb));
        out_nan(dxb, nx);
        ok = bp_conv_prim_backward(p, dxb, NULL, NULL, dyb, xb, w);
        CHECK(ok, "%s: dx alone runs", name);
        check_out(name, "dx alone", dxb, nx);
        from_blocked(dxp, dxb, g.N, g.C, sx, bx);
        check_err(name, "dx alone", "dx", bx, by, rel(dxp, dx0, nx));
        bp_conv_prim_free(p);
    }

    /* Training without dx (a first layer): dw and db; asking dx writes nothing. */
    p = bp_conv_prim_create(ctx, &g, 1, 0, bx, by, 0);
    CHECK(p != NULL, "%s: primitive created (training, no dx)", name);
    if (p) {
        out_nan(yb, ny);
        out_nan(dw, nw);
        out_nan(db, nb);
        ok = bp_conv_prim_forward(p, yb, xb, w, b);
        CHECK(ok, "%s (no dx): forward runs", name);
        check_out(name, "y (no dx)", yb, ny);
        from_blocked(yp, yb, g.N, g.OC, sy, by);
        check_err(name, "y (no dx)", "y", bx, by, rel(yp, y0, ny));
        ok = bp_conv_prim_backward(p, NULL, dw, db, dyb, xb, w);
        CHECK(ok, "%s (no dx): backward runs", name);
        check_out(name, "dw (no dx)", dw, nw);
        check_out(name, "db (no dx)", db, nb);
        check_err(name, "dw (no dx)", "dw", bx, by, rel(dw, dw0, nw));
        check_err(name, "db (no dx)", "db", bx, by, rel(db, db0, nb));
        out_nan(dxb, nx);
        out_nan(dw, nw);
        ok = bp_conv_prim_backward(p, dxb, dw, NULL, dyb, xb, w);
        CHECK(!ok, "%s (no dx): a backward asking dx is refused", name);
        check_untouched(name, "dx of a refused backward", dxb, nx);
        check_untouched(name, "dw of a refused backward", dw, nw);
        bp_conv_prim_free(p);
    }

    /* Inference: forward only. */
    p = bp_conv_prim_create(ctx, &g, 0, 1, bx, by, 0);
    CHECK(p != NULL, "%s: primitive created (inference)", name);
    if (p) {
        out_nan(yb, ny);
        ok = bp_conv_prim_forward(p, yb, xb, w, b);
        CHECK(ok, "%s (inference): forward runs", name);
        check_out(name, "y (inference)", yb, ny);
        from_blocked(yp, yb, g.N, g.OC, sy, by);
        check_err(name, "y (inference)", "y infer", bx, by, rel(yp, y0, ny));
        out_nan(dw, nw);
        ok = bp_conv_prim_backward(p, NULL, dw, NULL, dyb, xb, w);
        CHECK(!ok, "%s (inference): backward refused", name);
        check_untouched(name, "dw of a refused backward", dw, nw);
        bp_conv_prim_free(p);
    }

    int inputs_kept = !memcmp(xb, xb_in, nx * sizeof *xb) && !memcmp(dyb, dyb_in, ny * sizeof *dyb) &&
                      !memcmp(w, w_in, nw * sizeof *w) && !memcmp(b, b_in, nb * sizeof *b);
    CHECK(inputs_kept, "%s: x, dy, w, b unchanged by the primitives", name);
    free(x), free(w), free(b), free(dy), free(y0), free(y1), free(dx0), free(dw0), free(db0);
    free(xb), free(dyb), free(xb_in), free(dyb_in), free(w_in), free(b_in);
    free(yb), free(dxb), free(dw), free(db), free(yp), free(dxp);
}

static void test_prim_blocked(void)
{
    bp_gemm_ctx *ctx = bp_gemm_ctx_create();
    CHECK(ctx != NULL, "oneDNN context available in the float build");
    if (!ctx) return;
    int cb = bp_conv_block(ctx);
    printf("  bp_conv_block: %d (%s)\n", cb,
           cb == 16 ? "nChw16c" : cb == 8 ? "nChw8c" : cb == 1 ? "plain nchw" : "?");
    CHECK(cb == 1 || cb == 8 || cb == 16, "bp_conv_block returns 1, 8 or 16 (got %d)", cb);
    test_layout_onednn(ctx);

    /* Every case in blocks of 8 and 16 (both work whatever the CPU prefers),
     * and in plain (B 1) for comparison. */
    uint64_t s = 9;
    const int Bs[3] = {1, 8, 16};
    for (int k = 0; k < 3; k++) {
        const int B = Bs[k];
        /* First layers: one input channel (plain x), blocked y. */
        check_prim_blk(ctx, geom(2, 1, 7, 9, 16, 3, 1, 1), 1, B, &s);
        check_prim_blk(ctx, geom(3, 1, 9, 7, 32, 5, 2, 0), 1, B, &s);
        check_prim_blk(ctx, geom(2, 1, 28, 28, 32, 3, 1, 1), 1, B, &s);
        check_prim_blk(ctx, geom(2, 3, 7, 9, 16, 3, 2, 1), 1, B, &s);
        /* Hidden layers: C and OC multiples of 16, both blocked. */
        check_prim_blk(ctx, geom(2, 16, 7, 9, 32, 3, 1, 1), B, B, &s);
        check_prim_blk(ctx, geom(2, 32, 7, 9, 16, 3, 2, 1), B, B, &s);
        check_prim_blk(ctx, geom(3, 16, 7, 9, 16, 1, 1, 0), B, B, &s);
        check_prim_blk(ctx, geom(2, 32, 7, 9, 16, 5, 1, 1), B, B, &s);
        check_prim_blk(ctx, geom(1, 16, 9, 7, 32, 5, 2, 0), B, B, &s);
        check_prim_blk(ctx, geom(2, 32, 9, 7, 32, 3, 2, 0), B, B, &s);
        /* oneDNN's right padding negative (last row / column unused). */
        check_prim_blk(ctx, geom(2, 16, 8, 6, 32, 1, 2, 0), B, B, &s);
        check_prim_blk(ctx, geom(2, 32, 10, 9, 16, 3, 3, 1), B, B, &s);
        /* Mixed: blocked x, plain y (OC not a multiple of 8), and blocked x
         * with plain y of 16 channels. */
        check_prim_blk(ctx, geom(2, 32, 7, 9, 10, 3, 2, 1), B, 1, &s);
        check_prim_blk(ctx, geom(2, 16, 7, 9, 16, 3, 1, 1), B, 1, &s);
        /* 24 and 40 channels: multiples of 8, not of 16. */
        if (B == 8) check_prim_blk(ctx, geom(2, 24, 7, 9, 40, 3, 1, 1), 8, 8, &s);
    }

    /* A block that does not divide the channels is refused; the same
     * geometry in blocks of 8 is not (so the refusals are the block's). */
    bp_conv_geom g24 = geom(1, 24, 5, 5, 24, 3, 1, 1);
    for (int training = 0; training < 2; training++) {
        bp_conv_prim *p = bp_conv_prim_create(ctx, &g24, training, 1, 16, 1, 0);
        CHECK(p == NULL, "C 24, blk_x 16 (training %d): refused", training);
        bp_conv_prim_free(p);
        p = bp_conv_prim_create(ctx, &g24, training, 1, 1, 16, 0);
        CHECK(p == NULL, "OC 24, blk_y 16 (training %d): refused", training);
        bp_conv_prim_free(p);
        p = bp_conv_prim_create(ctx, &g24, training, 1, 8, 8, 0);
        CHECK(p != NULL, "C 24, OC 24 in blocks of 8 (training %d): created", training);
        bp_conv_prim_free(p);
    }
    track_print("conv primitive vs reference, by layout (x blk, y blk)");
    bp_gemm_ctx_free(ctx);
}

#if COUNT_ALLOCS
/* The primitive's forward and backward allocate nothing in libbackprop. */
static void test_noalloc(void)
{
    count_allocs_start((void *)test_noalloc);
    bp_gemm_ctx *ctx = bp_gemm_ctx_create();
    if (!ctx) return;
    uint64_t s = 3;
    bp_conv_geom g = geom(8, 32, 14, 14, 64, 3, 1, 1);
    bp_real *x = rnd(xsize(&g), &s), *w = rnd(wsize(&g), &s), *b = rnd((size_t)g.OC, &s);
    bp_real *dy = rnd(ysize(&g), &s), *y = nans(ysize(&g));
    bp_real *dx = nans(xsize(&g)), *dw = nans(wsize(&g)), *db = nans((size_t)g.OC);
    bp_conv_prim *p = bp_conv_prim_create(ctx, &g, 1, 1, 1, 1, 0);
    CHECK(p != NULL, "noalloc: primitive created");
    if (p) {
        int ok = bp_conv_prim_forward(p, y, x, w, b) &&
                 bp_conv_prim_backward(p, dx, dw, db, dy, x, w); /* warm-up */
        allocations = foreign = 0;
        counting = 1;
        for (int k = 0; k < 5; k++)
            ok &= bp_conv_prim_forward(p, y, x, w, b) &&
                  bp_conv_prim_backward(p, dx, dw, db, dy, x, w);
        counting = 0;
        CHECK(ok, "noalloc: forward and backward run");
        CHECK(allocations == 0, "prim forward + backward: %ld libbackprop allocations in 5 runs",
              allocations);
        printf("  prim forward + backward x5: libbackprop %ld, oneDNN/OpenMP libraries %ld "
               "allocations\n",
               allocations, foreign);
        bp_conv_prim_free(p);
    }
    free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(db);
    bp_gemm_ctx_free(ctx);
}
#endif
#endif /* !BP_DOUBLE */

int main(void)
{
    test_geom();
    test_forward_by_hand();
    test_forward_naive();
    test_blocked_helper();
#ifdef BP_DOUBLE
    test_backward_fd();
    bp_gemm_ctx *ctx = bp_gemm_ctx_create();
    bp_conv_geom g = geom(1, 1, 5, 5, 1, 3, 1, 1), g16 = geom(1, 16, 5, 5, 16, 3, 1, 1);
    CHECK(bp_conv_prim_create(ctx, &g, 1, 1, 1, 1, 0) == NULL, "double build: no primitive");
    CHECK(bp_conv_prim_create(ctx, &g16, 1, 1, 16, 16, 0) == NULL &&
              bp_conv_prim_create(ctx, &g16, 0, 0, 8, 8, 0) == NULL,
          "double build: no blocked primitive");
    int cb = bp_conv_block(ctx);
    CHECK(cb == 1, "double build: bp_conv_block is 1 (got %d)", cb);
    bp_gemm_ctx_free(ctx);
#else
    test_prim();
    test_prim_blocked();
#if COUNT_ALLOCS
    test_noalloc();
#else
    printf("  allocation count skipped under AddressSanitizer\n");
#endif
#endif
    return check_done(NAME);
}
