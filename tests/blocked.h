/* blocked.h - test helpers for the blocked activation layouts of the CNN
 * primitives (tests/test_conv_kernels.c, tests/test_cnn_pool_bn.c):
 *   - plain [N, C, S] <-> blocked [N, C/B, S, B] (oneDNN's nChw{B}c with
 *     S = H*W: channel c in block c/B, lane c%B), B = 1 a plain copy;
 *   - output buffers with a NaN canary past their end: out_alloc(n) gives
 *     n elements set to NaN followed by OUT_CANARY elements holding one NaN
 *     bit pattern, out_canary_ok checks those bits survived and
 *     out_unwritten counts the elements of the n still not finite
 *     (check_out / check_untouched CHECK both);
 *   - worst-error bookkeeping by name (track / track_print).
 * Test code only; written for bp_real (float, or double in the _f64 build). */
#ifndef BP_TEST_BLOCKED_H
#define BP_TEST_BLOCKED_H

#include "check.h"
#include "internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* plain [N, C, S] -> blocked [N, C/B, S, B] (B divides C). */
static inline void to_blocked(bp_real *dst, const bp_real *src, int N, int C, size_t S, int B)
{
    const int CB = C / B;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (size_t s = 0; s < S; s++)
                dst[(((size_t)n * CB + c / B) * S + s) * B + c % B] =
                    src[((size_t)n * C + c) * S + s];
}

/* blocked [N, C/B, S, B] -> plain [N, C, S]. */
static inline void from_blocked(bp_real *dst, const bp_real *src, int N, int C, size_t S, int B)
{
    const int CB = C / B;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (size_t s = 0; s < S; s++)
                dst[((size_t)n * C + c) * S + s] =
                    src[(((size_t)n * CB + c / B) * S + s) * B + c % B];
}

/* A freshly malloc'd blocked copy of plain x. */
static inline bp_real *blocked_copy(const bp_real *x, int N, int C, size_t S, int B)
{
    size_t n = (size_t)N * C * S;
    bp_real *b = malloc((n ? n : 1) * sizeof *b);
    if (!b) abort();
    to_blocked(b, x, N, C, S, B);
    return b;
}

#define OUT_CANARY 16

/* A quiet NaN with a payload no arithmetic produces by chance. */
static inline bp_real canary_value(void)
{
    bp_real v;
    if (sizeof v == 4) {
        uint32_t u = 0x7fc0beefu;
        memcpy(&v, &u, sizeof v);
    } else {
        uint64_t u = 0x7ff80000deadbeefull;
        memcpy(&v, &u, sizeof v);
    }
    return v;
}

/* n elements of NaN (to be overwritten) followed by the canary. */
static inline bp_real *out_alloc(size_t n)
{
    bp_real *a = malloc((n + OUT_CANARY) * sizeof *a), c = canary_value();
    if (!a) abort();
    for (size_t i = 0; i < n; i++) a[i] = (bp_real)NAN;
    for (size_t i = 0; i < OUT_CANARY; i++) memcpy(&a[n + i], &c, sizeof c);
    return a;
}

static inline void out_nan(bp_real *a, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] = (bp_real)NAN;
}

/* 1 when the OUT_CANARY elements after a[n - 1] still hold the canary bits. */
static inline int out_canary_ok(const bp_real *a, size_t n)
{
    bp_real c = canary_value();
    for (size_t i = 0; i < OUT_CANARY; i++)
        if (memcmp(&a[n + i], &c, sizeof c)) return 0;
    return 1;
}

/* How many of a[0 .. n-1] are not finite (left NaN: unwritten). */
static inline size_t out_unwritten(const bp_real *a, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += !isfinite(a[i]);
    return bad;
}

/* CHECK that every element of a[0 .. n-1] was written (finite) and the
 * canary after it is intact; name and what label the message. */
static inline void check_out(const char *name, const char *what, const bp_real *a, size_t n)
{
    size_t bad = out_unwritten(a, n);
    int canary = out_canary_ok(a, n);
    CHECK(bad == 0, "%s: %s: %zu of %zu elements unwritten (NaN)", name, what, bad, n);
    CHECK(canary, "%s: %s: the canary past its end was overwritten", name, what);
}

/* CHECK that nothing of a[0 .. n-1] was written (all NaN) nor the canary. */
static inline void check_untouched(const char *name, const char *what, const bp_real *a, size_t n)
{
    size_t written = n - out_unwritten(a, n);
    int canary = out_canary_ok(a, n);
    CHECK(written == 0 && canary, "%s: %s: %zu elements written, canary %s", name, what, written,
          canary ? "intact" : "overwritten");
}

/* Worst error seen per name ("conv x16 y16 dw", ...), printed at the end. */
#define TRACK_MAX 96
static struct {
    char key[48];
    double worst;
    int count;
} track_tab[TRACK_MAX];
static int track_n;

static inline void track(const char *key, double e)
{
    int i = 0;
    while (i < track_n && strcmp(track_tab[i].key, key)) i++;
    if (i == track_n) {
        if (track_n == TRACK_MAX) return;
        snprintf(track_tab[i].key, sizeof track_tab[i].key, "%s", key);
        track_tab[i].worst = 0;
        track_tab[i].count = 0;
        track_n++;
    }
    if (!(e <= track_tab[i].worst)) track_tab[i].worst = e; /* NaN sticks */
    track_tab[i].count++;
}

static inline void track_print(const char *title)
{
    printf("  %s (worst ||a-b||/||b|| over the cases):\n", title);
    for (int i = 0; i < track_n; i++)
        printf("    %-30s %9.3g  (%d checks)\n", track_tab[i].key, track_tab[i].worst,
               track_tab[i].count);
}

#endif
