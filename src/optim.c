/*
 * optim.c - optimizer update rules, learning-rate schedules, default
 * training configuration, and the names of optimizers, losses and
 * schedules.
 *
 * Every update rule is torch.optim's single-tensor path (torch 1.13,
 * foreach=False, maximize=False, amsgrad=False, centered=False), written
 * over one flat array of n parameters:
 *
 *   p  [n]  parameters, updated in place
 *   g  [n]  gradients (penalties and clipping already applied)
 *   s1 [n]  first state array, s2 [n] second (zero at the start):
 *
 *   optimizer   s1                  s2
 *   sgd         -                   -
 *   momentum    momentum buffer     -
 *   nesterov    momentum buffer     -
 *   adam/adamw  exp_avg (m)         exp_avg_sq (v)
 *   rmsprop     square_avg (v)      momentum buffer (only if momentum > 0)
 *   adagrad     sum of g^2          -
 *
 * Elementwise work is done in bp_real; scalar factors (bias corrections,
 * the AdamW decay factor, Adagrad's decayed rate) are computed in double
 * and rounded once to bp_real, as torch does for a float32 tensor. Each
 * optimizer has its own loop with no branch and no call inside, so the
 * compiler can vectorize it (the square roots need -fno-math-errno for
 * that; the results are the same with or without it).
 */
#include "internal.h"
#include "kernels.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Update rules                                                              */
/* ------------------------------------------------------------------------ */

/* Square root in the build's precision (sqrtf keeps the float loops in
 * single precision). */
#ifdef BP_DOUBLE
#define REAL_SQRT(x) sqrt(x)
#else
#define REAL_SQRT(x) sqrtf(x)
#endif

/* Weight decay, coupled (torch: d_p = d_p.add(param, alpha=weight_decay)).
 * With wd == 0 the sum is exactly g, so no branch is needed. */

/* torch.optim.SGD without momentum: p -= lr (g + wd p). */
static void sgd_update(bp_real *restrict p, const bp_real *restrict g,
                       size_t n, bp_real lr, bp_real wd)
{
    for (size_t i = 0; i < n; i++) {
        bp_real d = g[i] + wd * p[i];
        p[i] -= lr * d;
    }
}

/* torch.optim.SGD(momentum=mu, dampening=damp, nesterov=nest):
 *   d = g + wd p
 *   buf = d                           (first step)
 *   buf = mu buf + (1 - damp) d       (later steps)
 *   p -= lr (nest ? d + mu buf : buf) */
static void momentum_update(bp_real *restrict p, const bp_real *restrict g,
                            bp_real *restrict buf, size_t n, bp_real lr,
                            bp_real wd, bp_real mu, bp_real one_minus_damp,
                            int first)
{
    if (first) {
        for (size_t i = 0; i < n; i++) {
            bp_real d = g[i] + wd * p[i];
            buf[i] = d;
            p[i] -= lr * d;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            bp_real d = g[i] + wd * p[i];
            bp_real b = mu * buf[i] + one_minus_damp * d;
            buf[i] = b;
            p[i] -= lr * b;
        }
    }
}

static void nesterov_update(bp_real *restrict p, const bp_real *restrict g,
                            bp_real *restrict buf, size_t n, bp_real lr,
                            bp_real wd, bp_real mu, bp_real one_minus_damp,
                            int first)
{
    if (first) {
        for (size_t i = 0; i < n; i++) {
            bp_real d = g[i] + wd * p[i];
            buf[i] = d;
            p[i] -= lr * (d + mu * d);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            bp_real d = g[i] + wd * p[i];
            bp_real b = mu * buf[i] + one_minus_damp * d;
            buf[i] = b;
            p[i] -= lr * (d + mu * b);
        }
    }
}

/* torch.optim.Adam (wd coupled) and AdamW (decay = 1 - lr wd first, wd
 * coupled = 0):
 *   p *= decay
 *   d = g + wd p
 *   m = b1 m + (1 - b1) d
 *   v = b2 v + (1 - b2) d^2
 *   p -= step_size m / (sqrt(v) / bc2_sqrt + eps)
 * with step_size = lr / (1 - b1^t), bc2_sqrt = sqrt(1 - b2^t). The loop
 * multiplies by inv_bc2_sqrt = 1 / bc2_sqrt (computed in double) instead
 * of dividing: one division less per element (~30% faster), at most one
 * rounding apart from torch's quotient. */
static void adam_update(bp_real *restrict p, const bp_real *restrict g,
                        bp_real *restrict m, bp_real *restrict v, size_t n,
                        bp_real decay, bp_real wd, bp_real b1, bp_real c1,
                        bp_real b2, bp_real c2, bp_real step_size,
                        bp_real inv_bc2_sqrt, bp_real eps)
{
    for (size_t i = 0; i < n; i++) {
        bp_real pi = p[i] * decay;
        bp_real d = g[i] + wd * pi;
        bp_real mi = b1 * m[i] + c1 * d;
        bp_real vi = b2 * v[i] + c2 * d * d;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * (mi / (REAL_SQRT(vi) * inv_bc2_sqrt + eps));
    }
}

/* torch.optim.RMSprop (not centered):
 *   d = g + wd p
 *   v = alpha v + (1 - alpha) d^2
 *   avg = sqrt(v) + eps
 *   momentum > 0:  buf = mu buf + d / avg;  p -= lr buf
 *   else:          p -= lr d / avg */
static void rmsprop_update(bp_real *restrict p, const bp_real *restrict g,
                           bp_real *restrict v, size_t n, bp_real lr,
                           bp_real wd, bp_real alpha, bp_real c, bp_real eps)
{
    for (size_t i = 0; i < n; i++) {
        bp_real d = g[i] + wd * p[i];
        bp_real vi = alpha * v[i] + c * d * d;
        v[i] = vi;
        p[i] -= lr * (d / (REAL_SQRT(vi) + eps));
    }
}

static void rmsprop_momentum_update(bp_real *restrict p,
                                    const bp_real *restrict g,
                                    bp_real *restrict v, bp_real *restrict buf,
                                    size_t n, bp_real lr, bp_real wd,
                                    bp_real alpha, bp_real c, bp_real eps,
                                    bp_real mu)
{
    for (size_t i = 0; i < n; i++) {
        bp_real d = g[i] + wd * p[i];
        bp_real vi = alpha * v[i] + c * d * d;
        bp_real b = mu * buf[i] + d / (REAL_SQRT(vi) + eps);
        v[i] = vi;
        buf[i] = b;
        p[i] -= lr * b;
    }
}

/* torch.optim.Adagrad (initial accumulator 0):
 *   d = g + wd p
 *   sum += d^2
 *   p -= clr d / (sqrt(sum) + eps),  clr = lr / (1 + (t - 1) lr_decay) */
static void adagrad_update(bp_real *restrict p, const bp_real *restrict g,
                           bp_real *restrict sum, size_t n, bp_real clr,
                           bp_real wd, bp_real eps)
{
    for (size_t i = 0; i < n; i++) {
        bp_real d = g[i] + wd * p[i];
        bp_real si = sum[i] + d * d;
        sum[i] = si;
        p[i] -= clr * (d / (REAL_SQRT(si) + eps));
    }
}

BP_HOT void bp_optim_update(const bp_train_config *cfg, bp_real *p, const bp_real *g,
                     bp_real *s1, bp_real *s2, size_t n, long t, double lr)
{
    const bp_real wd = (bp_real)cfg->weight_decay;
    const int first = t <= 1;
    const double step = (double)(t < 1 ? 1 : t);

    switch (cfg->optimizer) {
    case BP_SGD:
        sgd_update(p, g, n, (bp_real)lr, wd);
        return;
    case BP_MOMENTUM:
    case BP_NESTEROV:
        /* torch skips the buffer entirely when momentum == 0. */
        if (cfg->momentum == 0) {
            sgd_update(p, g, n, (bp_real)lr, wd);
        } else if (cfg->optimizer == BP_MOMENTUM) {
            momentum_update(p, g, s1, n, (bp_real)lr, wd,
                            (bp_real)cfg->momentum,
                            (bp_real)(1.0 - cfg->dampening), first);
        } else {
            nesterov_update(p, g, s1, n, (bp_real)lr, wd,
                            (bp_real)cfg->momentum,
                            (bp_real)(1.0 - cfg->dampening), first);
        }
        return;
    case BP_ADAM:
    case BP_ADAMW: {
        double bc1 = 1.0 - pow(cfg->beta1, step);
        double bc2 = 1.0 - pow(cfg->beta2, step);
        int decoupled = cfg->optimizer == BP_ADAMW;
        double decay = decoupled ? 1.0 - lr * cfg->weight_decay : 1.0;
        adam_update(p, g, s1, s2, n, (bp_real)decay, decoupled ? (bp_real)0 : wd,
                    (bp_real)cfg->beta1, (bp_real)(1.0 - cfg->beta1),
                    (bp_real)cfg->beta2, (bp_real)(1.0 - cfg->beta2),
                    (bp_real)(lr / bc1), (bp_real)(1.0 / sqrt(bc2)),
                    (bp_real)cfg->eps);
        return;
    }
    case BP_RMSPROP:
        if (cfg->momentum > 0)
            rmsprop_momentum_update(p, g, s1, s2, n, (bp_real)lr, wd,
                                    (bp_real)cfg->alpha,
                                    (bp_real)(1.0 - cfg->alpha),
                                    (bp_real)cfg->eps, (bp_real)cfg->momentum);
        else
            rmsprop_update(p, g, s1, n, (bp_real)lr, wd, (bp_real)cfg->alpha,
                           (bp_real)(1.0 - cfg->alpha), (bp_real)cfg->eps);
        return;
    case BP_ADAGRAD: {
        double clr = lr / (1.0 + (step - 1.0) * cfg->lr_decay);
        adagrad_update(p, g, s1, n, (bp_real)clr, wd, (bp_real)cfg->eps);
        return;
    }
    }
}

int bp_optim_state_count(const bp_train_config *cfg)
{
    switch (cfg->optimizer) {
    case BP_SGD: return 0;
    case BP_MOMENTUM:
    case BP_NESTEROV: return 1;
    case BP_ADAM:
    case BP_ADAMW: return 2;
    case BP_RMSPROP: return cfg->momentum > 0 ? 2 : 1;
    case BP_ADAGRAD: return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Learning-rate schedules                                                   */
/* ------------------------------------------------------------------------ */

/* The formula of the bp_schedule comment in backprop.h, for step t >= 0.
 * A step_size below 1 counts as 1; a negative t as 0. */
double bp_schedule_lr(const bp_train_config *cfg, long t)
{
    const double pi = 3.14159265358979323846;
    double lr = cfg->lr;
    if (t < 0) t = 0;
    if (t < cfg->warmup) return lr * ((double)(t + 1) / (double)cfg->warmup);
    long s = t - (cfg->warmup > 0 ? cfg->warmup : 0);
    double factor = 1.0;
    switch (cfg->schedule) {
    case BP_SCHED_CONSTANT:
        break;
    case BP_SCHED_STEP: {
        long size = cfg->step_size > 0 ? cfg->step_size : 1;
        factor = pow(cfg->gamma, (double)(s / size));
        break;
    }
    case BP_SCHED_EXP:
        factor = pow(cfg->gamma, (double)s);
        break;
    case BP_SCHED_COSINE: {
        if (lr == 0) return 0;
        long T = cfg->total_steps - (cfg->warmup > 0 ? cfg->warmup : 0);
        if (T < 1) T = 1;
        double m = cfg->min_lr / lr;
        double x = (double)(s < T ? s : T) / (double)T;
        factor = m + (1.0 - m) * (1.0 + cos(pi * x)) / 2.0;
        break;
    }
    }
    return lr * factor;
}

/* ------------------------------------------------------------------------ */
/* Default configuration                                                     */
/* ------------------------------------------------------------------------ */

/* PyTorch's defaults for each optimizer, plus:
 *   loss cross-entropy; schedule constant, no warm-up; step schedule
 *   step_size 1000 and gamma 0.1 (torch's StepLR gamma; for BP_SCHED_EXP,
 *   which applies gamma every step, set a value near 1 such as 0.999);
 *   min_lr 0; total_steps 0 (bp_fit: epochs * steps per epoch);
 *   batch 32, 10 epochs, shuffling on, seed 42, no early stopping. */
void bp_train_config_default(bp_train_config *cfg, bp_optimizer opt)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->loss = BP_LOSS_CROSS_ENTROPY;
    cfg->optimizer = opt;
    cfg->lr = (opt == BP_ADAM || opt == BP_ADAMW) ? 1e-3 : 1e-2;
    cfg->momentum = (opt == BP_MOMENTUM || opt == BP_NESTEROV) ? 0.9 : 0.0;
    cfg->dampening = 0.0;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = opt == BP_ADAGRAD ? 1e-10 : 1e-8;
    cfg->alpha = 0.99;
    cfg->lr_decay = 0.0;
    cfg->weight_decay = opt == BP_ADAMW ? 1e-2 : 0.0;
    cfg->l1 = 0.0;
    cfg->l2 = 0.0;
    cfg->clip_value = 0.0;
    cfg->clip_norm = 0.0;
    cfg->schedule = BP_SCHED_CONSTANT;
    cfg->warmup = 0;
    cfg->step_size = 1000;
    cfg->gamma = 0.1;
    cfg->min_lr = 0.0;
    cfg->total_steps = 0;
    cfg->freeze = 0;
    cfg->batch_size = 32;
    cfg->epochs = 10;
    cfg->shuffle = 1;
    cfg->seed = 42;
    cfg->patience = 0;
    cfg->min_delta = 0.0;
    cfg->on_epoch = NULL;
    cfg->on_step = NULL;
    cfg->user = NULL;
}

/* ------------------------------------------------------------------------ */
/* Names                                                                     */
/* ------------------------------------------------------------------------ */

static const char *const optimizer_names[] = {
    "sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"};
static const char *const loss_names[] = {"mse", "cross-entropy", "bce"};
static const char *const schedule_names[] = {"constant", "step", "exp", "cosine"};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const char *name_at(const char *const *names, int count, int i)
{
    return i >= 0 && i < count ? names[i] : "unknown";
}

/* Index of `name` in `names`, or a BP_EINVAL failure that lists them. */
static bp_status parse_name(const char *what, const char *name,
                            const char *const *names, int count, int *out,
                            bp_error *err)
{
    char list[256];
    size_t used = 0;
    for (int i = 0; name && i < count; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = i;
            return BP_OK;
        }
    }
    list[0] = '\0';
    for (int i = 0; i < count; i++) {
        size_t len = strlen(names[i]);
        if (used + len + 3 > sizeof list) break;
        if (i > 0) {
            memcpy(list + used, ", ", 2);
            used += 2;
        }
        memcpy(list + used, names[i], len + 1);
        used += len;
    }
    if (!name)
        return bp_fail(err, BP_EINVAL, "no %s given (expected one of: %s)",
                       what, list);
    return bp_fail(err, BP_EINVAL, "unknown %s '%.64s' (expected one of: %s)",
                   what, name, list);
}

const char *bp_optimizer_name(bp_optimizer o)
{
    return name_at(optimizer_names, COUNT(optimizer_names), (int)o);
}

const char *bp_loss_name(bp_loss l)
{
    return name_at(loss_names, COUNT(loss_names), (int)l);
}

const char *bp_schedule_name(bp_schedule s)
{
    return name_at(schedule_names, COUNT(schedule_names), (int)s);
}

bp_status bp_optimizer_parse(const char *name, bp_optimizer *out, bp_error *err)
{
    int i = 0;
    bp_status st = parse_name("optimizer", name, optimizer_names,
                              COUNT(optimizer_names), &i, err);
    if (st == BP_OK && out) *out = (bp_optimizer)i;
    return st;
}

bp_status bp_loss_parse(const char *name, bp_loss *out, bp_error *err)
{
    int i = 0;
    bp_status st = parse_name("loss", name, loss_names, COUNT(loss_names), &i,
                              err);
    if (st == BP_OK && out) *out = (bp_loss)i;
    return st;
}

bp_status bp_schedule_parse(const char *name, bp_schedule *out, bp_error *err)
{
    int i = 0;
    bp_status st = parse_name("schedule", name, schedule_names,
                              COUNT(schedule_names), &i, err);
    if (st == BP_OK && out) *out = (bp_schedule)i;
    return st;
}
