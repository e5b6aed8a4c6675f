/* test_norm_targets.c - regression target normalization: fitting on d->y,
 * applying, inverting (outputs back in the targets' units) and the round
 * trip through a network's metadata, kept apart from the inputs' keys. */
#include "backprop.h"
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bp_error err;

/* y [4, 2]: targets in the thousands and a constant one. */
static bp_real Y[8] = {
    1000, 7,
    3000, 7,
    5000, 7,
    7000, 7,
};
static bp_real X[4] = {1, 2, 3, 4};

static bp_data view(bp_real *y)
{
    bp_data d;
    memset(&d, 0, sizeof d);
    d.n = 4;
    d.n_inputs = 1;
    d.n_targets = 2;
    d.x = X;
    d.y = y;
    return d;
}

static void test_fit_apply_invert(void)
{
    bp_real y[8];
    memcpy(y, Y, sizeof y);
    bp_data d = view(y);
    bp_norm nm;
    CHECK(bp_norm_fit_targets(&nm, &d, BP_NORM_STANDARD, &err) == BP_OK, "fit: %s", err.message);
    CHECK(nm.kind == BP_NORM_STANDARD && nm.n == 2, "one value per target (n %d)", nm.n);
    if (!nm.shift || !nm.scale) return;
    CHECK_CLOSE(nm.shift[0], 4000, 1e-6, "mean of target 1");
    CHECK_CLOSE(nm.scale[0], 1 / sqrt(5e6), 1e-6, "1 / population std of target 1");
    CHECK(nm.shift[1] == 7 && nm.scale[1] == 1, "a constant target: shift = the value, scale 1");
    CHECK(bp_norm_apply_targets(&nm, &d, &err) == BP_OK, "apply: %s", err.message);
    double mean = 0, var = 0;
    for (int r = 0; r < 4; r++) mean += y[2 * r] / 4.0;
    for (int r = 0; r < 4; r++) var += (y[2 * r] - mean) * (y[2 * r] - mean) / 4.0;
    CHECK(fabs(mean) < 1e-6 && fabs(var - 1) < 1e-5, "standardized: mean %g, variance %g", mean, var);
    CHECK(y[1] == 0 && y[3] == 0, "the constant target becomes 0");
    CHECK(X[0] == 1 && X[3] == 4, "the features are left alone");
    CHECK(bp_norm_invert(&nm, y, 4, &err) == BP_OK, "invert: %s", err.message);
    for (int i = 0; i < 8; i++) CHECK_CLOSE(y[i], Y[i], 1e-6, "invert gives the targets back");

    /* wrong shapes and kinds */
    bp_data one = view(y);
    one.n_targets = 1;
    CHECK(bp_norm_apply_targets(&nm, &one, &err) == BP_ESHAPE, "apply with 1 target on a 2-target fit");
    bp_data cls = view(y);
    cls.n_targets = 1;
    cls.n_classes = 3;
    bp_norm c;
    CHECK(bp_norm_fit_targets(&c, &cls, BP_NORM_STANDARD, &err) == BP_EINVAL &&
              strstr(err.message, "class labels") && !c.shift,
          "class labels are not scaled: %s", err.message);
    CHECK(bp_norm_apply_targets(&nm, &cls, &err) == BP_EINVAL, "apply to class labels");
    y[5] = (bp_real)NAN;
    CHECK(bp_norm_fit_targets(&c, &d, BP_NORM_STANDARD, &err) == BP_EINVAL &&
              strstr(err.message, "row 3, target 2"),
          "a NaN target names its row and target: %s", err.message);
    memcpy(y, Y, sizeof y); /* exact values again (the inverse rounds) */
    bp_data empty = view(y);
    empty.n = 0;
    CHECK(bp_norm_fit_targets(&c, &empty, BP_NORM_STANDARD, &err) == BP_EINVAL, "no rows");
    CHECK(bp_norm_fit_targets(&c, &d, BP_NORM_NONE, &err) == BP_OK && c.kind == BP_NORM_NONE &&
              c.n == 2 && !c.shift,
          "none: n targets, no arrays");
    CHECK(bp_norm_invert(&c, y, 4, &err) == BP_OK && y[0] == 1000, "invert none is a no-op");
    CHECK(bp_norm_invert(NULL, y, 4, &err) == BP_EINVAL, "invert NULL norm");
    CHECK(bp_norm_invert(&nm, NULL, 4, &err) == BP_EINVAL, "invert NULL values");
    CHECK(bp_norm_fit_targets(&c, &d, BP_NORM_MINMAX, &err) == BP_OK && c.shift && c.shift[0] == 1000,
          "minmax on targets: shift = min");
    bp_norm_free(&c);
    bp_norm_free(&nm);
}

static void test_meta(void)
{
    bp_net *net = NULL;
    CHECK(bp_net_create(&net, 1, "dense(2)", 1, &err) == BP_OK, "create: %s", err.message);
    if (!net) return;
    bp_norm back;
    CHECK(bp_norm_targets_from_meta(&back, net, &err) == BP_OK && back.kind == BP_NORM_NONE &&
              back.n == 2,
          "a net without the keys: none (an older model)");
    bp_real y[8];
    memcpy(y, Y, sizeof y);
    bp_data d = view(y);
    bp_norm nm;
    if (bp_norm_fit_targets(&nm, &d, BP_NORM_STANDARD, &err) != BP_OK) return;
    CHECK(bp_norm_targets_to_meta(&nm, net, &err) == BP_OK, "to_meta: %s", err.message);
    const char *k = bp_net_get_meta(net, "normalize_target");
    CHECK(k && !strcmp(k, "standard"), "normalize_target key");
    CHECK(bp_net_get_meta(net, "target_shift") && bp_net_get_meta(net, "target_scale"), "lists stored");
    CHECK(!bp_net_get_meta(net, "normalize") && !bp_net_get_meta(net, "norm_shift"),
          "the inputs' keys are untouched");
    CHECK(bp_norm_targets_from_meta(&back, net, &err) == BP_OK, "from_meta: %s", err.message);
    CHECK(back.kind == BP_NORM_STANDARD && back.n == 2 && back.shift && back.scale, "round trip");
    for (int i = 0; back.shift && i < 2; i++) {
        CHECK_CLOSE(back.shift[i], nm.shift[i], 1e-7, "shift");
        CHECK_CLOSE(back.scale[i], nm.scale[i], 1e-7, "scale");
    }
    bp_norm_free(&back);

    /* a net of another output count */
    bp_net *n3 = NULL;
    if (bp_net_create(&n3, 1, "dense(3)", 1, &err) == BP_OK) {
        CHECK(bp_norm_targets_to_meta(&nm, n3, &err) == BP_ESHAPE && strstr(err.message, "outputs"),
              "to_meta with 2 targets on a 3-output net: %s", err.message);
        bp_net_set_meta(n3, "normalize_target", "standard", &err);
        bp_net_set_meta(n3, "target_shift", "1,2", &err);
        bp_net_set_meta(n3, "target_scale", "1,2", &err);
        CHECK(bp_norm_targets_from_meta(&back, n3, &err) == BP_EFORMAT &&
                  strstr(err.message, "has 2 values, the network has 3 outputs"),
              "stored list of the wrong length: %s", err.message);
        bp_net_free(n3);
    }
    struct {
        const char *key, *value, *want;
    } bad[] = {
        {"target_scale", "1,0", "value 2 is 0"},
        {"target_shift", "1,x", "value 2 \"x\""},
        {"target_scale", "1,inf", "not a finite"},
        {"normalize_target", "zscore", "unknown normalization"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(bp_norm_targets_to_meta(&nm, net, &err) == BP_OK, "reset");
        bp_net_set_meta(net, bad[i].key, bad[i].value, &err);
        memset(&back, 0x5a, sizeof back);
        bp_status s = bp_norm_targets_from_meta(&back, net, &err);
        CHECK(s == BP_EFORMAT && strstr(err.message, bad[i].want), "%s=\"%s\": %s, \"%s\"",
              bad[i].key, bad[i].value, bp_status_name(s), err.message);
        CHECK(!back.shift && !back.scale, "failed from_meta leaves nothing");
    }
    bp_norm off;
    memset(&off, 0, sizeof off);
    CHECK(bp_norm_targets_to_meta(&off, net, &err) == BP_OK, "store none");
    const char *sh = bp_net_get_meta(net, "target_shift");
    CHECK(sh && !*sh, "none clears the stored values");
    bp_norm_free(&nm);
    bp_net_free(net);
}

int main(void)
{
    test_fit_apply_invert();
    test_meta();
    return check_done("test_norm_targets");
}
