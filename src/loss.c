/*
 * loss.c - losses with their gradients, reduced like PyTorch.
 *
 *   mse:           L = 1/(n d) sum (z - t)^2              dL/dz = 2 (z - t) / (n d)
 *   cross-entropy: L = 1/n sum_r [lse(z_r) - z_r[t_r]]    dL/dz = (softmax(z) - onehot(t)) / n
 *                  lse(z) = m + log sum exp(z - m), m = max z (stable)
 *   bce (logits):  L = 1/(n d) sum [max(z,0) - z t + log(1 + exp(-|z|))]
 *                                                          dL/dz = (sigmoid(z) - t) / (n d)
 */
#include "internal.h"

#include <math.h>

static double loss_mse(const bp_real *z, const bp_real *t, int n, int d, long gn, bp_real *dz)
{
    size_t m = (size_t)n * d;
    double sum = 0, scale = 2.0 / ((double)gn * d);
    for (size_t k = 0; k < m; k++) {
        double e = (double)z[k] - (double)t[k];
        sum += e * e;
        if (dz) dz[k] = (bp_real)(scale * e);
    }
    return sum / (double)m;
}

/* Rows up to this width keep their exp(z - m) for the gradient instead of
 * computing it twice (libm's exp in double: most of the loss's time on a
 * character model's 96 classes at every step). */
#define CE_KEEP 1024

/* Rows [r0, r1): the sum of their losses; their gradients into dz. */
static double ce_rows(const bp_real *z, const bp_real *t, int r0, int r1, int d, bp_real *dz,
                      double inv_n, long *correct)
{
    double sum = 0;
    long hits = 0;
    double e[CE_KEEP];
    int keep = dz && d <= CE_KEEP;
    for (int r = r0; r < r1; r++) {
        const bp_real *zr = z + (size_t)r * d;
        int label = (int)t[r];
        int arg = 0;
        for (int j = 1; j < d; j++)
            if (zr[j] > zr[arg]) arg = j;
        double m = zr[arg], s = 0;
        for (int j = 0; j < d; j++) {
            double v = exp((double)zr[j] - m);
            if (keep) e[j] = v;
            s += v;
        }
        sum += m + log(s) - (double)zr[label];
        hits += arg == label;
        if (dz) {
            bp_real *g = dz + (size_t)r * d;
            double inv_s = 1.0 / s;
            for (int j = 0; j < d; j++)
                g[j] = (bp_real)(((keep ? e[j] : exp((double)zr[j] - m)) * inv_s - (j == label)) *
                                 inv_n);
        }
    }
    *correct = hits;
    return sum;
}

/* Many rows (a sequence model's loss at every step, a large batch) are cut
 * into blocks of at least CE_BLOCK_ROWS rows (at most CE_BLOCKS of them),
 * shared among the threads their logits are worth; the blocks' sums are
 * added in block order, so the loss does not depend on the thread count.
 * Below 2 * CE_BLOCK_ROWS rows it is one block: the plain sum over rows. */
#define CE_BLOCK_ROWS 1024
#define CE_BLOCKS 64

static double loss_cross_entropy(const bp_real *z, const bp_real *t, int n, int d, long gn,
                                 bp_real *dz, long *correct)
{
    double inv_gn = 1.0 / (double)gn, part[CE_BLOCKS];
    long hit[CE_BLOCKS];
    int nb = n / CE_BLOCK_ROWS;
    nb = nb < 1 ? 1 : nb > CE_BLOCKS ? CE_BLOCKS : nb;
    int threads = nb > 1 ? bp_threads_for((double)n * d, 65536.0) : 1;
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
    for (int b = 0; b < nb; b++)
        part[b] = ce_rows(z, t, (int)((int64_t)n * b / nb), (int)((int64_t)n * (b + 1) / nb), d, dz,
                          inv_gn, &hit[b]);
    double sum = 0;
    long hits = 0;
    for (int b = 0; b < nb; b++) sum += part[b], hits += hit[b];
    if (correct) *correct = hits;
    return sum * (1.0 / n);
}

static double loss_bce(const bp_real *z, const bp_real *t, int n, int d, long gn, bp_real *dz,
                       long *correct)
{
    size_t m = (size_t)n * d;
    double sum = 0, inv = 1.0 / ((double)gn * d);
    long hits = 0;
    for (size_t k = 0; k < m; k++) {
        double x = z[k], y = t[k];
        sum += (x > 0 ? x : 0) - x * y + log1p(exp(-fabs(x)));
        hits += (x > 0) == (y > 0.5);
        if (dz) {
            double s = x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
            dz[k] = (bp_real)((s - y) * inv);
        }
    }
    if (correct) *correct = hits;
    return sum * (1.0 / (double)m);
}

double bp_loss_eval_part(bp_loss loss, const bp_real *z, const bp_real *t, int n, int d,
                         long grad_n, bp_real *dz, long *correct)
{
    if (correct) *correct = 0;
    if (grad_n < n) grad_n = n;
    switch (loss) {
    case BP_LOSS_MSE: return loss_mse(z, t, n, d, grad_n, dz);
    case BP_LOSS_CROSS_ENTROPY: return loss_cross_entropy(z, t, n, d, grad_n, dz, correct);
    case BP_LOSS_BCE: return loss_bce(z, t, n, d, grad_n, dz, correct);
    }
    return NAN;
}

double bp_loss_eval(bp_loss loss, const bp_real *z, const bp_real *t, int n, int d,
                    bp_real *dz, long *correct)
{
    return bp_loss_eval_part(loss, z, t, n, d, n, dz, correct);
}
