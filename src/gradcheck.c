/*
 * gradcheck.c - backprop's gradients against central finite differences.
 *
 * For every parameter p, the fourth-order central difference
 *   numeric = [8 (L(p+h) - L(p-h)) - (L(p+2h) - L(p-2h))] / (12 h)
 * (truncation error O(h^4), so rounding noise stays far below the tolerance),
 * compared with the analytic gradient by |a - n| / max(|a|, |n|, floor).
 * The network's RNG is rewound before every evaluation, so dropout draws
 * the same mask each time and the loss is a deterministic function of p.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Loss of the batch in training mode with a fixed dropout draw. */
static double batch_loss(bp_net *net, bp_loss loss, const bp_rng *rng0, const bp_real *x,
                         const bp_real *y, int n)
{
    net->rng = *rng0;
    bp_net_forward_ws(net, x, n, 1);
    int k = bp_loss_input_layer(net, loss);
    return bp_loss_eval(loss, net->act[k], y, n, net->layers[k].out, NULL, NULL);
}

bp_status bp_gradcheck(bp_net *net, bp_loss loss, const bp_real *x, const bp_real *y, int n,
                       double eps, double floor, bp_gradcheck_result *res, bp_error *err)
{
    if (!net || !x || !y || !res) return bp_fail(err, BP_EINVAL, "bp_gradcheck: NULL argument");
    memset(res, 0, sizeof *res);
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
    bp_status s = bp_trainer_create(&tr, net, &cfg, n, err);
    if (s) return s;
    bp_real *analytic = bp_alloc_array(net->n_params, sizeof(bp_real));
    if (!analytic) {
        bp_trainer_free(tr);
        return bp_fail(err, BP_ENOMEM, "out of memory in gradient check");
    }
    bp_rng rng0 = net->rng;
    double l0;
    s = bp_trainer_backward(tr, x, y, n, &l0, err);
    if (s) goto done;
    for (int i = 0; i < net->n_layers; i++) {
        const bp_layer *L = &net->layers[i];
        if (L->kind != BP_DENSE) continue;
        memcpy(analytic + L->offset, bp_trainer_weight_grad(tr, i), L->n_params * sizeof(bp_real));
    }
    for (int i = 0; i < net->n_layers; i++) {
        const bp_layer *L = &net->layers[i];
        if (L->kind != BP_DENSE) continue;
        for (size_t q = 0; q < L->n_params; q++) {
            bp_real *p = net->params + L->offset + q, keep = *p;
            double l[4];
            static const double offs[4] = {1, -1, 2, -2};
            for (int k = 0; k < 4; k++) {
                *p = (bp_real)(keep + offs[k] * eps);
                l[k] = batch_loss(net, loss, &rng0, x, y, n);
            }
            *p = keep;
            double num = (8 * (l[0] - l[1]) - (l[2] - l[3])) / (12 * eps);
            double a = analytic[L->offset + q];
            double scale = fmax(fmax(fabs(a), fabs(num)), floor);
            double rel = fabs(a - num) / scale;
            if (!isfinite(rel)) rel = INFINITY;
            res->checked++;
            if (rel > res->max_rel_error || res->checked == 1) {
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
    bp_trainer_free(tr);
    net->rng = saved;
    return s;
}
