/* test_optim.c - unit tests of src/optim.c: every update rule against a
 * plain double-precision transcription of torch.optim's single-tensor code
 * (and a few values worked out by hand), the learning-rate schedules, the
 * default configuration, and the name/parse functions. */
#include "check.h"
#include "internal.h"

#include <math.h>
#include <string.h>

#ifdef BP_DOUBLE
#define TOL 1e-12
#else
#define TOL 2e-6
#endif

#define N 5
#define STEPS 6

/* ------------------------------------------------------------------------ */
/* Reference update rules: torch/optim/{sgd,adam,adamw,rmsprop,adagrad}.py,  */
/* _single_tensor_* with maximize=False, amsgrad=False, centered=False.      */
/* ------------------------------------------------------------------------ */

typedef struct ref_state {
    double p[N], m[N], v[N], buf[N];
    int have_buf; /* torch's momentum_buffer is None before the first step */
} ref_state;

static void ref_step(const bp_train_config *c, ref_state *s, const double *g,
                     long t, double lr)
{
    for (int i = 0; i < N; i++) {
        double p = s->p[i], d = g[i];
        switch (c->optimizer) {
        case BP_SGD:
        case BP_MOMENTUM:
        case BP_NESTEROV:
            if (c->weight_decay != 0) d = d + c->weight_decay * p;
            if (c->optimizer != BP_SGD && c->momentum != 0) {
                if (!s->have_buf)
                    s->buf[i] = d;
                else
                    s->buf[i] = s->buf[i] * c->momentum + (1 - c->dampening) * d;
                if (c->optimizer == BP_NESTEROV)
                    d = d + c->momentum * s->buf[i];
                else
                    d = s->buf[i];
            }
            p = p - lr * d;
            break;
        case BP_ADAM:
        case BP_ADAMW: {
            if (c->optimizer == BP_ADAMW)
                p = p * (1 - lr * c->weight_decay);
            else if (c->weight_decay != 0)
                d = d + c->weight_decay * p;
            s->m[i] = s->m[i] * c->beta1 + (1 - c->beta1) * d;
            s->v[i] = s->v[i] * c->beta2 + (1 - c->beta2) * d * d;
            double bc1 = 1 - pow(c->beta1, (double)t);
            double bc2 = 1 - pow(c->beta2, (double)t);
            double denom = sqrt(s->v[i]) / sqrt(bc2) + c->eps;
            p = p - (lr / bc1) * (s->m[i] / denom);
            break;
        }
        case BP_RMSPROP: {
            if (c->weight_decay != 0) d = d + c->weight_decay * p;
            s->v[i] = s->v[i] * c->alpha + (1 - c->alpha) * d * d;
            double avg = sqrt(s->v[i]) + c->eps;
            if (c->momentum > 0) {
                s->buf[i] = s->buf[i] * c->momentum + d / avg;
                p = p - lr * s->buf[i];
            } else {
                p = p - lr * (d / avg);
            }
            break;
        }
        case BP_ADAGRAD: {
            if (c->weight_decay != 0) d = d + c->weight_decay * p;
            double clr = lr / (1 + (double)(t - 1) * c->lr_decay);
            s->v[i] = s->v[i] + d * d;
            p = p - clr * (d / (sqrt(s->v[i]) + c->eps));
            break;
        }
        }
        s->p[i] = p;
    }
    s->have_buf = 1;
}

/* Which reference arrays hold s1 and s2 of bp_optim_update. */
static const double *ref_s1(const bp_train_config *c, const ref_state *s)
{
    switch (c->optimizer) {
    case BP_MOMENTUM:
    case BP_NESTEROV: return s->buf;
    case BP_ADAM:
    case BP_ADAMW: return s->m;
    case BP_RMSPROP:
    case BP_ADAGRAD: return s->v;
    default: return NULL;
    }
}

static const double *ref_s2(const bp_train_config *c, const ref_state *s)
{
    switch (c->optimizer) {
    case BP_ADAM:
    case BP_ADAMW: return s->v;
    case BP_RMSPROP: return c->momentum > 0 ? s->buf : NULL;
    default: return NULL;
    }
}

/* Run STEPS updates of N parameters with varying gradients and learning
 * rates through bp_optim_update and the reference; compare parameters and
 * state after every step. */
static void compare_rule(const char *what, const bp_train_config *c)
{
    bp_real p[N], g[N], s1[N], s2[N];
    ref_state r;
    double gd[N];
    memset(&r, 0, sizeof r);
    memset(s1, 0, sizeof s1);
    memset(s2, 0, sizeof s2);
    const double p0[N] = {0.5, -1.25, 2.0, -0.03125, 0.75};
    for (int i = 0; i < N; i++) {
        p[i] = (bp_real)p0[i];
        r.p[i] = p[i];
    }
    for (long t = 1; t <= STEPS; t++) {
        double lr = c->lr * (1.0 - 0.1 * (double)(t - 1));
        for (int i = 0; i < N; i++) {
            /* exactly representable in float: quarter/eighth steps */
            g[i] = (bp_real)(0.125 * (double)((i * 7 + (int)t * 3) % 11 - 5));
            gd[i] = g[i];
        }
        bp_optim_update(c, p, g, s1, s2, N, t, lr);
        ref_step(c, &r, gd, t, lr);
        const double *r1 = ref_s1(c, &r), *r2 = ref_s2(c, &r);
        for (int i = 0; i < N; i++) {
            char label[160];
            snprintf(label, sizeof label, "%s step %ld p[%d]", what, t, i);
            CHECK_CLOSE(p[i], r.p[i], TOL, label);
            if (r1) {
                snprintf(label, sizeof label, "%s step %ld s1[%d]", what, t, i);
                CHECK_CLOSE(s1[i], r1[i], TOL, label);
            }
            if (r2) {
                snprintf(label, sizeof label, "%s step %ld s2[%d]", what, t, i);
                CHECK_CLOSE(s2[i], r2[i], TOL, label);
            }
        }
    }
}

static void test_rules(void)
{
    bp_train_config c;

    bp_train_config_default(&c, BP_SGD);
    c.lr = 0.1;
    compare_rule("sgd", &c);
    c.weight_decay = 0.1;
    compare_rule("sgd wd", &c);

    bp_train_config_default(&c, BP_MOMENTUM);
    c.lr = 0.05;
    compare_rule("momentum", &c);
    c.dampening = 0.1;
    c.weight_decay = 0.01;
    compare_rule("momentum dampening wd", &c);
    c.momentum = 0; /* torch: plain SGD, dampening unused */
    compare_rule("momentum 0", &c);

    bp_train_config_default(&c, BP_NESTEROV);
    c.lr = 0.05;
    compare_rule("nesterov", &c);
    c.weight_decay = 0.01;
    c.momentum = 0.5;
    compare_rule("nesterov wd", &c);

    bp_train_config_default(&c, BP_ADAM);
    c.lr = 0.01;
    compare_rule("adam", &c);
    c.weight_decay = 0.1;
    c.beta1 = 0.8;
    c.beta2 = 0.95;
    c.eps = 1e-3;
    compare_rule("adam wd betas eps", &c);

    bp_train_config_default(&c, BP_ADAMW);
    c.lr = 0.01;
    compare_rule("adamw", &c);
    c.weight_decay = 0.5;
    c.eps = 1e-4;
    compare_rule("adamw wd 0.5", &c);

    bp_train_config_default(&c, BP_RMSPROP);
    c.lr = 0.01;
    compare_rule("rmsprop", &c);
    c.momentum = 0.5;
    c.alpha = 0.9;
    c.weight_decay = 0.01;
    compare_rule("rmsprop momentum", &c);

    bp_train_config_default(&c, BP_ADAGRAD);
    c.lr = 0.1;
    compare_rule("adagrad", &c);
    c.lr_decay = 0.05;
    c.weight_decay = 0.01;
    compare_rule("adagrad lr_decay wd", &c);
}

/* A few values worked out by hand. */
static void test_hand_values(void)
{
    bp_train_config c;
    bp_real p[2], g[2], s1[2], s2[2];

    /* SGD: 1 - 0.1 * 0.5 = 0.95; with wd 0.1: 1 - 0.1 (0.5 + 0.1) = 0.94 */
    bp_train_config_default(&c, BP_SGD);
    p[0] = 1;
    g[0] = 0.5f;
    bp_optim_update(&c, p, g, NULL, NULL, 1, 1, 0.1);
    CHECK_CLOSE(p[0], 0.95, TOL, "sgd by hand");
    c.weight_decay = 0.1;
    p[0] = 1;
    bp_optim_update(&c, p, g, NULL, NULL, 1, 1, 0.1);
    CHECK_CLOSE(p[0], 0.94, TOL, "sgd wd by hand");

    /* Momentum 0.9, dampening 0.5, lr 0.1, g = 1 then 1:
     * step 1: buf = 1 (no dampening on the first step), p = 1 - 0.1 = 0.9
     * step 2: buf = 0.9 + 0.5 = 1.4, p = 0.9 - 0.14 = 0.76 */
    bp_train_config_default(&c, BP_MOMENTUM);
    c.dampening = 0.5;
    p[0] = 1;
    g[0] = 1;
    s1[0] = 0;
    bp_optim_update(&c, p, g, s1, NULL, 1, 1, 0.1);
    CHECK_CLOSE(s1[0], 1.0, TOL, "momentum buf step 1");
    CHECK_CLOSE(p[0], 0.9, TOL, "momentum p step 1");
    bp_optim_update(&c, p, g, s1, NULL, 1, 2, 0.1);
    CHECK_CLOSE(s1[0], 1.4, TOL, "momentum buf step 2");
    CHECK_CLOSE(p[0], 0.76, TOL, "momentum p step 2");

    /* Nesterov 0.9, lr 0.1, g = 1, 1: step 1: buf 1, p -= 0.1 (1 + 0.9) ->
     * 0.81; step 2: buf 1.9, p -= 0.1 (1 + 1.71) -> 0.539 */
    bp_train_config_default(&c, BP_NESTEROV);
    p[0] = 1;
    s1[0] = 0;
    bp_optim_update(&c, p, g, s1, NULL, 1, 1, 0.1);
    CHECK_CLOSE(p[0], 0.81, TOL, "nesterov p step 1");
    bp_optim_update(&c, p, g, s1, NULL, 1, 2, 0.1);
    CHECK_CLOSE(p[0], 0.539, TOL, "nesterov p step 2");

    /* Adam's first step moves each parameter by lr g / (|g| + eps). */
    bp_train_config_default(&c, BP_ADAM);
    p[0] = 1;
    p[1] = -2;
    g[0] = 0.25f;
    g[1] = -3;
    s1[0] = s1[1] = s2[0] = s2[1] = 0;
    bp_optim_update(&c, p, g, s1, s2, 2, 1, 0.01);
    CHECK_CLOSE(p[0], 1 - 0.01 * 0.25 / (0.25 + 1e-8), TOL, "adam step 1 p[0]");
    CHECK_CLOSE(p[1], -2 + 0.01 * 3 / (3 + 1e-8), TOL, "adam step 1 p[1]");
    CHECK_CLOSE(s1[0], 0.025, TOL, "adam m");
    CHECK_CLOSE(s2[1], 0.009, TOL, "adam v");

    /* AdamW: the same step from p (1 - lr wd): 1 (1 - 0.01 * 0.01) - 0.01 */
    bp_train_config_default(&c, BP_ADAMW);
    p[0] = 1;
    g[0] = 0.25f;
    s1[0] = s2[0] = 0;
    bp_optim_update(&c, p, g, s1, s2, 1, 1, 0.01);
    CHECK_CLOSE(p[0], 0.9999 - 0.01 * 0.25 / (0.25 + 1e-8), TOL, "adamw step 1");

    /* RMSprop alpha 0.99, g = 1: v = 0.01, p -= 0.01 / (0.1 + 1e-8) */
    bp_train_config_default(&c, BP_RMSPROP);
    p[0] = 1;
    g[0] = 1;
    s1[0] = 0;
    bp_optim_update(&c, p, g, s1, NULL, 1, 1, 0.01);
    CHECK_CLOSE(s1[0], 0.01, TOL, "rmsprop v");
    CHECK_CLOSE(p[0], 1 - 0.01 / (0.1 + 1e-8), TOL, "rmsprop p");

    /* Adagrad lr_decay 0.5, g = 2 then 2: step 1: sum 4, p -= 0.1 * 2 / 2
     * ~ 0.1; step 2: clr = 0.1 / 1.5, sum 8, p -= clr 2 / sqrt(8) (eps 1e-10
     * added to the square roots). */
    bp_train_config_default(&c, BP_ADAGRAD);
    c.lr_decay = 0.5;
    p[0] = 1;
    g[0] = 2;
    s1[0] = 0;
    bp_optim_update(&c, p, g, s1, NULL, 1, 1, 0.1);
    double p1 = 1 - 0.1 * 2 / (2 + 1e-10);
    CHECK_CLOSE(p[0], p1, TOL, "adagrad step 1");
    bp_optim_update(&c, p, g, s1, NULL, 1, 2, 0.1);
    CHECK_CLOSE(p[0], p1 - (0.1 / 1.5) * 2 / (sqrt(8.0) + 1e-10), TOL,
                "adagrad step 2");

    /* n == 0 touches nothing (NULL arrays are fine). */
    bp_train_config_default(&c, BP_ADAM);
    bp_optim_update(&c, NULL, NULL, NULL, NULL, 0, 1, 0.01);
    CHECK(1, "n == 0");
}

static void test_state_count(void)
{
    bp_train_config c;
    const struct { bp_optimizer o; int n; } want[] = {
        {BP_SGD, 0}, {BP_MOMENTUM, 1}, {BP_NESTEROV, 1}, {BP_ADAM, 2},
        {BP_ADAMW, 2}, {BP_RMSPROP, 1}, {BP_ADAGRAD, 1}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        bp_train_config_default(&c, want[i].o);
        CHECK(bp_optim_state_count(&c) == want[i].n, "state count of %s: %d",
              bp_optimizer_name(want[i].o), bp_optim_state_count(&c));
    }
    bp_train_config_default(&c, BP_RMSPROP);
    c.momentum = 0.5;
    CHECK(bp_optim_state_count(&c) == 2, "rmsprop with momentum needs 2 arrays");
}

/* ------------------------------------------------------------------------ */
/* Schedules                                                                 */
/* ------------------------------------------------------------------------ */

static void test_schedules(void)
{
    bp_train_config c;
    const double pi = 3.14159265358979323846;
    bp_train_config_default(&c, BP_SGD);
    c.lr = 0.2;

    CHECK_CLOSE(bp_schedule_lr(&c, 0), 0.2, 1e-15, "constant t=0");
    CHECK_CLOSE(bp_schedule_lr(&c, 12345), 0.2, 1e-15, "constant t=12345");

    c.warmup = 4;
    CHECK_CLOSE(bp_schedule_lr(&c, 0), 0.05, 1e-15, "warmup t=0 is lr/warmup");
    CHECK_CLOSE(bp_schedule_lr(&c, 1), 0.1, 1e-15, "warmup t=1");
    CHECK_CLOSE(bp_schedule_lr(&c, 3), 0.2, 1e-15, "warmup t=3 reaches lr");
    CHECK_CLOSE(bp_schedule_lr(&c, 4), 0.2, 1e-15, "after warmup");

    c.warmup = 0;
    c.schedule = BP_SCHED_STEP;
    c.step_size = 3;
    c.gamma = 0.5;
    CHECK_CLOSE(bp_schedule_lr(&c, 0), 0.2, 1e-15, "step t=0");
    CHECK_CLOSE(bp_schedule_lr(&c, 2), 0.2, 1e-15, "step t=2");
    CHECK_CLOSE(bp_schedule_lr(&c, 3), 0.1, 1e-15, "step t=3");
    CHECK_CLOSE(bp_schedule_lr(&c, 5), 0.1, 1e-15, "step t=5");
    CHECK_CLOSE(bp_schedule_lr(&c, 6), 0.05, 1e-15, "step t=6");
    c.warmup = 2;
    CHECK_CLOSE(bp_schedule_lr(&c, 1), 0.2, 1e-15, "step warmup t=1");
    CHECK_CLOSE(bp_schedule_lr(&c, 4), 0.2, 1e-15, "step warmup t=4 (s=2)");
    CHECK_CLOSE(bp_schedule_lr(&c, 5), 0.1, 1e-15, "step warmup t=5 (s=3)");

    c.warmup = 0;
    c.schedule = BP_SCHED_EXP;
    c.gamma = 0.9;
    CHECK_CLOSE(bp_schedule_lr(&c, 0), 0.2, 1e-15, "exp t=0");
    CHECK_CLOSE(bp_schedule_lr(&c, 1), 0.18, 1e-15, "exp t=1");
    CHECK_CLOSE(bp_schedule_lr(&c, 3), 0.2 * 0.729, 1e-15, "exp t=3");
    c.warmup = 3;
    CHECK_CLOSE(bp_schedule_lr(&c, 2), 0.2, 1e-15, "exp warmup t=2");
    CHECK_CLOSE(bp_schedule_lr(&c, 4), 0.18, 1e-15, "exp warmup t=4 (s=1)");

    c.warmup = 0;
    c.schedule = BP_SCHED_COSINE;
    c.total_steps = 10;
    c.min_lr = 0.02;
    CHECK_CLOSE(bp_schedule_lr(&c, 0), 0.2, 1e-15, "cosine start");
    CHECK_CLOSE(bp_schedule_lr(&c, 5), 0.11, 1e-15, "cosine middle");
    CHECK_CLOSE(bp_schedule_lr(&c, 2), 0.02 + 0.18 * (1 + cos(pi * 0.2)) / 2,
                1e-15, "cosine t=2");
    CHECK_CLOSE(bp_schedule_lr(&c, 10), 0.02, 1e-15, "cosine end");
    CHECK_CLOSE(bp_schedule_lr(&c, 50), 0.02, 1e-15, "cosine after the end");
    c.warmup = 2;
    c.total_steps = 12;
    CHECK_CLOSE(bp_schedule_lr(&c, 0), 0.1, 1e-15, "cosine warmup t=0");
    CHECK_CLOSE(bp_schedule_lr(&c, 2), 0.2, 1e-15, "cosine warmup t=2 (s=0)");
    CHECK_CLOSE(bp_schedule_lr(&c, 7), 0.11, 1e-15, "cosine warmup middle");
    CHECK_CLOSE(bp_schedule_lr(&c, 12), 0.02, 1e-15, "cosine warmup end");
    c.warmup = 0;
    c.total_steps = 0; /* T = 1 */
    CHECK_CLOSE(bp_schedule_lr(&c, 0), 0.2, 1e-15, "cosine T=1 t=0");
    CHECK_CLOSE(bp_schedule_lr(&c, 1), 0.02, 1e-15, "cosine T=1 t=1");
    c.lr = 0;
    c.total_steps = 10;
    CHECK(bp_schedule_lr(&c, 3) == 0, "cosine with lr 0 is 0, not NaN");
}

/* ------------------------------------------------------------------------ */
/* Defaults and names                                                        */
/* ------------------------------------------------------------------------ */

static void test_defaults(void)
{
    bp_train_config c;
    memset(&c, 0x5a, sizeof c);
    bp_train_config_default(&c, BP_ADAM);
    CHECK(c.optimizer == BP_ADAM, "optimizer");
    CHECK(c.loss == BP_LOSS_CROSS_ENTROPY, "loss");
    CHECK(c.lr == 1e-3 && c.beta1 == 0.9 && c.beta2 == 0.999 && c.eps == 1e-8,
          "adam defaults");
    CHECK(c.weight_decay == 0 && c.l1 == 0 && c.l2 == 0, "no regularization");
    CHECK(c.clip_value == 0 && c.clip_norm == 0, "no clipping");
    CHECK(c.schedule == BP_SCHED_CONSTANT && c.warmup == 0, "constant schedule");
    CHECK(c.step_size > 0 && c.gamma > 0 && c.gamma < 1, "step schedule params");
    CHECK(c.freeze == 0 && c.patience == 0, "no freeze, no early stop");
    CHECK(c.batch_size == 32 && c.epochs == 10 && c.shuffle == 1, "fit defaults");
    CHECK(c.on_epoch == NULL && c.on_step == NULL && c.user == NULL, "callbacks");

    bp_train_config_default(&c, BP_ADAMW);
    CHECK(c.lr == 1e-3 && c.weight_decay == 1e-2, "adamw defaults");
    bp_train_config_default(&c, BP_SGD);
    CHECK(c.lr == 1e-2 && c.momentum == 0, "sgd defaults");
    bp_train_config_default(&c, BP_MOMENTUM);
    CHECK(c.lr == 1e-2 && c.momentum == 0.9 && c.dampening == 0, "momentum defaults");
    bp_train_config_default(&c, BP_NESTEROV);
    CHECK(c.momentum == 0.9 && c.dampening == 0, "nesterov defaults");
    bp_train_config_default(&c, BP_RMSPROP);
    CHECK(c.lr == 1e-2 && c.alpha == 0.99 && c.eps == 1e-8 && c.momentum == 0,
          "rmsprop defaults");
    bp_train_config_default(&c, BP_ADAGRAD);
    CHECK(c.lr == 1e-2 && c.eps == 1e-10 && c.lr_decay == 0, "adagrad defaults");
}

static void test_names(void)
{
    bp_error err;
    const char *opts[] = {"sgd", "momentum", "nesterov", "adam", "adamw",
                          "rmsprop", "adagrad"};
    for (int i = 0; i < 7; i++) {
        bp_optimizer o = BP_SGD;
        CHECK(strcmp(bp_optimizer_name((bp_optimizer)i), opts[i]) == 0,
              "optimizer name %d", i);
        CHECK(bp_optimizer_parse(opts[i], &o, &err) == BP_OK && (int)o == i,
              "parse optimizer %s", opts[i]);
    }
    const char *losses[] = {"mse", "cross-entropy", "bce"};
    for (int i = 0; i < 3; i++) {
        bp_loss l = BP_LOSS_MSE;
        CHECK(strcmp(bp_loss_name((bp_loss)i), losses[i]) == 0, "loss name %d", i);
        CHECK(bp_loss_parse(losses[i], &l, &err) == BP_OK && (int)l == i,
              "parse loss %s", losses[i]);
    }
    const char *scheds[] = {"constant", "step", "exp", "cosine"};
    for (int i = 0; i < 4; i++) {
        bp_schedule s = BP_SCHED_CONSTANT;
        CHECK(strcmp(bp_schedule_name((bp_schedule)i), scheds[i]) == 0,
              "schedule name %d", i);
        CHECK(bp_schedule_parse(scheds[i], &s, &err) == BP_OK && (int)s == i,
              "parse schedule %s", scheds[i]);
    }
    CHECK(bp_optimizer_name((bp_optimizer)99) != NULL, "out-of-range name");
    CHECK(bp_loss_name((bp_loss)-1) != NULL, "negative name");
    CHECK(bp_schedule_name((bp_schedule)4) != NULL, "out-of-range schedule");

    /* errors */
    bp_optimizer o = BP_ADAM;
    memset(&err, 0, sizeof err);
    CHECK(bp_optimizer_parse("adamx", &o, &err) == BP_EINVAL, "bad optimizer");
    CHECK(err.code == BP_EINVAL, "err.code");
    CHECK(strcmp(err.message, "unknown optimizer 'adamx' (expected one of: sgd, "
                              "momentum, nesterov, adam, adamw, rmsprop, adagrad)") == 0,
          "optimizer message: %s", err.message);
    CHECK(o == BP_ADAM, "output untouched on error");
    CHECK(bp_optimizer_parse("Adam", &o, NULL) == BP_EINVAL, "names are exact");
    CHECK(bp_optimizer_parse("", &o, NULL) == BP_EINVAL, "empty name");
    CHECK(bp_optimizer_parse(NULL, &o, &err) == BP_EINVAL, "NULL name");

    bp_loss l;
    CHECK(bp_loss_parse("cross_entropy", &l, &err) == BP_EINVAL, "bad loss");
    CHECK(strcmp(err.message, "unknown loss 'cross_entropy' (expected one of: "
                              "mse, cross-entropy, bce)") == 0,
          "loss message: %s", err.message);
    bp_schedule s;
    CHECK(bp_schedule_parse("linear", &s, &err) == BP_EINVAL, "bad schedule");
    CHECK(strcmp(err.message, "unknown schedule 'linear' (expected one of: "
                              "constant, step, exp, cosine)") == 0,
          "schedule message: %s", err.message);
}

int main(void)
{
    test_rules();
    test_hand_values();
    test_state_count();
    test_schedules();
    test_defaults();
    test_names();
    return check_done("test_optim");
}
