/*
 * gradcheck.c - backprop's gradients against central finite differences.
 *
 * For every parameter p, the fourth-order central difference
 *   numeric = [8 (L(p+h) - L(p-h)) - (L(p+2h) - L(p-2h))] / (12 h)
 * (truncation error O(h^4), so rounding noise stays far below the tolerance),
 * compared with the analytic gradient by |a - n| / max(|a|, |n|, floor).
 * The network's RNG is rewound before every evaluation, so dropout draws
 * the same mask each time and the loss is a deterministic function of p.
 *
 * Kinks. The stencil assumes L is smooth on [p - 2h, p + 2h]. relu and
 * leaky_relu are not differentiable where their input is 0, max pooling
 * where two inputs of a window tie: when moving p
 * by up to 2h moves some unit's input across 0, the difference quotient
 * mixes two slopes and disagrees with the (correct) one-sided derivative
 * backprop uses, by an amount that says nothing about the code. Such
 * entries are detected (the sign of some kinked input differs between the
 * unperturbed network and one of the four stencil points) and left out of
 * the verdict. These are the only non-smooth points of the library's
 * functions: the max inside softmax and log-sum-exp, and max/|z| in the
 * stable BCE, cancel exactly and leave smooth functions.
 */
#include "internal.h"
#include "layers/layer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Loss of the batch in training mode with a fixed dropout draw. */
static double batch_loss(bp_net *net, bp_loss loss, const bp_rng *rng0, const bp_real *x,
                         const bp_real *y, int n)
{
    net->rng = *rng0;
    bp_net_forward_ws(net, x, n, 1);
    return bp_net_loss_of(net, loss, y, n, NULL, NULL);
}

/* Size of layer i's kink signature (its table's `kinks`: the sides of a
 * relu's kinks, a max pool's argmax). A first layer's input is the data,
 * which no parameter moves... unless the layer itself has parameters
 * (no kinked layer has). */
static size_t kink_size(const bp_net *net, int i, int n)
{
    const bp_layer *L = &net->layers[i];
    if (i == 0 || !L->ops->kinks) return 0;
    return L->ops->kinks(net, L, NULL, n, NULL); /* the size only: no data read */
}

/* Record (save != 0) or compare with `signs` the kink signature of every
 * kinked layer after layer `from` (only those can move when a parameter of
 * layer `from` does). Returns 1 when a compared signature differs. */
static int kink_signs(const bp_net *net, int n, int from, unsigned char *signs,
                      unsigned char *scratch, int save)
{
    size_t o = 0;
    for (int i = 1; i < net->n_layers; i++) {
        size_t m = kink_size(net, i, n);
        if (!m) continue;
        if (i > from) {
            const bp_layer *L = &net->layers[i];
            L->ops->kinks(net, L, net->act[i - 1], n, save ? signs + o : scratch);
            if (!save && memcmp(signs + o, scratch, m) != 0) return 1;
        }
        o += m;
    }
    return 0;
}

bp_status bp_gradcheck_against(bp_net *net, bp_loss loss, const bp_real *x, const bp_real *y,
                               int n, double eps, double floor, const bp_real *given,
                               bp_gradcheck_result *res, bp_error *err)
{
    if (!net || !x || !y || !res) return bp_fail(err, BP_EINVAL, "bp_gradcheck: NULL argument");
    memset(res, 0, sizeof *res);
    res->worst_layer = -1;
    if (!isfinite(eps) || !isfinite(floor) || eps > 1)
        return bp_fail(err, BP_EINVAL, "bp_gradcheck: eps must be in (0, 1] and floor finite (got %g, %g)",
                       eps, floor);
#ifdef BP_DOUBLE
    if (eps <= 0) eps = 1e-3;
    if (floor <= 0) floor = 1e-9;
#else
    if (eps <= 0) eps = 1e-2;
    if (floor <= 0) floor = 1e-3;
#endif
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_SGD);
    cfg.loss = loss;
    bp_trainer *tr = NULL;
    bp_rng saved = net->rng;
    /* The check runs in float32 (finite differences of bfloat16 products
     * measure their rounding); a bf16 network is bf16 again afterwards. */
    bp_precision precision = net->precision;
    bp_status s = bp_trainer_create(&tr, net, &cfg, n, err);
    if (s) return s;
    /* A carried recurrent state stays what it is over the many passes. */
    int hold = net->state_hold;
    net->state_hold = 1;
    size_t n_signs = 0, largest = 1;
    for (int i = 0; i < net->n_layers; i++) {
        size_t m = kink_size(net, i, n);
        n_signs += m;
        if (m > largest) largest = m;
    }
    bp_real *analytic = bp_alloc_array(net->n_params, sizeof(bp_real));
    unsigned char *signs = bp_alloc_array(n_signs ? n_signs : 1, 1);
    unsigned char *scratch = bp_alloc_array(largest, 1);
    if (!analytic || !signs || !scratch) {
        s = bp_fail(err, BP_ENOMEM, "out of memory in gradient check");
        goto done;
    }
    bp_rng rng0 = net->rng;
    double l0;
    s = bp_trainer_backward(tr, x, y, n, &l0, err);
    if (s) goto done;
    if (given) {
        memcpy(analytic, given, net->n_params * sizeof(bp_real));
    } else {
        for (int i = 0; i < net->n_layers; i++) {
            const bp_layer *L = &net->layers[i];
            if (!L->n_params) continue;
            memcpy(analytic + L->offset, bp_trainer_weight_grad(tr, i), L->n_params * sizeof(bp_real));
        }
    }
    /* The sides of the kinks at the unperturbed parameters. */
    batch_loss(net, loss, &rng0, x, y, n);
    kink_signs(net, n, -1, signs, scratch, 1);
    for (int i = 0; i < net->n_layers; i++) {
        const bp_layer *L = &net->layers[i];
        if (!L->n_params) continue;
        for (size_t q = 0; q < L->n_params; q++) {
            bp_real *p = net->params + L->offset + q, keep = *p;
            double l[4];
            static const double offs[4] = {1, -1, 2, -2};
            int kink = 0;
            for (int k = 0; k < 4; k++) {
                *p = (bp_real)(keep + offs[k] * eps);
                l[k] = batch_loss(net, loss, &rng0, x, y, n);
                if (!kink && n_signs) kink = kink_signs(net, n, i, signs, scratch, 0);
            }
            *p = keep;
            double num = (8 * (l[0] - l[1]) - (l[2] - l[3])) / (12 * eps);
            double a = analytic[L->offset + q];
            double scale = fmax(fmax(fabs(a), fabs(num)), floor);
            double rel = fabs(a - num) / scale;
            if (!isfinite(rel)) rel = INFINITY;
            res->checked++;
            if (kink) {
                res->kinks++;
                if (rel > res->kink_max_rel_error || res->kinks == 1) res->kink_max_rel_error = rel;
                continue;
            }
            if (rel > res->max_rel_error || res->worst_layer < 0) {
                res->max_rel_error = rel;
                res->worst_layer = i;
                res->worst_index = q;
                res->analytic = a;
                res->numeric = num;
            }
        }
    }
done:
    free(analytic);
    free(signs);
    free(scratch);
    bp_trainer_free(tr);
    net->rng = saved;
    net->state_hold = hold;
    bp_status ps = bp_net_set_precision(net, precision, s ? NULL : err);
    return s ? s : ps;
}

bp_status bp_gradcheck(bp_net *net, bp_loss loss, const bp_real *x, const bp_real *y, int n,
                       double eps, double floor, bp_gradcheck_result *res, bp_error *err)
{
    return bp_gradcheck_against(net, loss, x, y, n, eps, floor, NULL, res, err);
}
