/* test_norm.c - input normalization: fitting, applying, names, and the
 * round trip through a network's metadata (including bad stored values). */
#include "backprop.h"
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bp_error err;

/* x [4, 3]: a spread column, a constant column, a column of two values. */
static bp_real X[12] = {
    1, 5, -2,
    2, 5, 2,
    3, 5, -2,
    6, 5, 2,
};

static bp_data view(void)
{
    bp_data d;
    memset(&d, 0, sizeof d);
    d.n = 4;
    d.n_inputs = 3;
    d.x = X;
    return d;
}

static void test_names(void)
{
    bp_norm_kind k = BP_NORM_NONE;
    CHECK(strcmp(bp_norm_name(BP_NORM_NONE), "none") == 0, "name none");
    CHECK(strcmp(bp_norm_name(BP_NORM_STANDARD), "standard") == 0, "name standard");
    CHECK(strcmp(bp_norm_name(BP_NORM_MINMAX), "minmax") == 0, "name minmax");
    CHECK(bp_norm_parse("minmax", &k, &err) == BP_OK && k == BP_NORM_MINMAX, "parse minmax");
    CHECK(bp_norm_parse("standard", &k, &err) == BP_OK && k == BP_NORM_STANDARD, "parse standard");
    CHECK(bp_norm_parse("none", &k, &err) == BP_OK && k == BP_NORM_NONE, "parse none");
    CHECK(bp_norm_parse("zscore", &k, &err) == BP_EINVAL && strstr(err.message, "zscore"),
          "parse unknown: %s", err.message);
    CHECK(bp_norm_parse(NULL, &k, &err) == BP_EINVAL, "parse NULL");
}

static void test_fit_apply(void)
{
    bp_data d = view();
    bp_norm nm;
    CHECK(bp_norm_fit(&nm, &d, BP_NORM_STANDARD, &err) == BP_OK, "fit standard: %s", err.message);
    CHECK(nm.kind == BP_NORM_STANDARD && nm.n == 3 && nm.shift && nm.scale, "standard shape");
    if (nm.shift && nm.scale) {
        /* column 0: mean 3, population variance (4 + 1 + 0 + 9) / 4 = 3.5 */
        CHECK_CLOSE(nm.shift[0], 3.0, 1e-6, "mean 0");
        CHECK_CLOSE(nm.scale[0], 1.0 / sqrt(3.5), 1e-6, "1/std 0 (population)");
        CHECK(nm.shift[1] == 5 && nm.scale[1] == 1, "constant column: shift %g scale %g",
              (double)nm.shift[1], (double)nm.scale[1]);
        CHECK_CLOSE(nm.shift[2], 0.0, 1e-7, "mean 2");
        CHECK_CLOSE(nm.scale[2], 0.5, 1e-7, "1/std 2");
    }
    bp_real copy[12];
    memcpy(copy, X, sizeof copy);
    bp_data c = view();
    c.x = copy;
    CHECK(bp_norm_apply(&nm, &c, &err) == BP_OK, "apply: %s", err.message);
    double mean[3] = {0}, var[3] = {0};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) mean[j] += copy[i * 3 + j] / 4.0;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) var[j] += (copy[i * 3 + j] - mean[j]) * (copy[i * 3 + j] - mean[j]) / 4;
    CHECK(fabs(mean[0]) < 1e-6 && fabs(var[0] - 1) < 1e-5, "standardized column 0: mean %g var %g",
          mean[0], var[0]);
    CHECK(copy[1] == 0 && copy[4] == 0, "constant column becomes 0");
    CHECK(copy[2] == -1 && copy[5] == 1, "column 2 becomes -1/1: %g %g", (double)copy[2],
          (double)copy[5]);

    /* width mismatch */
    bp_data w = view();
    w.n_inputs = 2;
    CHECK(bp_norm_apply(&nm, &w, &err) == BP_ESHAPE, "apply with another width -> BP_ESHAPE");
    bp_norm_free(&nm);
    CHECK(nm.shift == NULL && nm.scale == NULL && nm.n == 0, "bp_norm_free zeroes");
    bp_norm_free(NULL);

    CHECK(bp_norm_fit(&nm, &d, BP_NORM_MINMAX, &err) == BP_OK, "fit minmax: %s", err.message);
    if (nm.shift && nm.scale) {
        CHECK(nm.shift[0] == 1 && fabs(nm.scale[0] - 0.2) < 1e-7, "minmax 0");
        CHECK(nm.shift[1] == 5 && nm.scale[1] == 1, "minmax constant column");
        CHECK(nm.shift[2] == -2 && nm.scale[2] == 0.25f, "minmax 2");
    }
    memcpy(copy, X, sizeof copy);
    CHECK(bp_norm_apply(&nm, &c, &err) == BP_OK, "apply minmax");
    CHECK(copy[0] == 0 && fabs(copy[9] - 1) < 1e-6 && fabs(copy[3] - 0.2) < 1e-6 && copy[2] == 0 &&
              copy[5] == 1,
          "minmax maps to [0, 1]");
    bp_norm_free(&nm);

    CHECK(bp_norm_fit(&nm, &d, BP_NORM_NONE, &err) == BP_OK && nm.kind == BP_NORM_NONE &&
              nm.n == 3 && !nm.shift,
          "fit none");
    memcpy(copy, X, sizeof copy);
    CHECK(bp_norm_apply(&nm, &c, &err) == BP_OK && memcmp(copy, X, sizeof copy) == 0,
          "apply none leaves data alone");
    bp_norm_free(&nm);

    /* bad input */
    bp_data e = view();
    e.n = 0;
    CHECK(bp_norm_fit(&nm, &e, BP_NORM_STANDARD, &err) == BP_EINVAL, "fit on no rows");
    memcpy(copy, X, sizeof copy);
    copy[4] = NAN;
    CHECK(bp_norm_fit(&nm, &c, BP_NORM_STANDARD, &err) == BP_EINVAL &&
              strstr(err.message, "row 2, feature 2"),
          "fit on NaN names the place: %s", err.message);
    CHECK(nm.shift == NULL && nm.scale == NULL, "failed fit leaves nothing");
    CHECK(bp_norm_fit(&nm, &d, (bp_norm_kind)42, &err) == BP_EINVAL, "unknown kind");

    /* a large offset: double accumulation keeps the variance */
    static bp_real big[2000];
    for (int i = 0; i < 2000; i++) big[i] = (bp_real)(10000.0 + (i % 2 ? 0.5 : -0.5));
    bp_data b;
    memset(&b, 0, sizeof b);
    b.n = 2000;
    b.n_inputs = 1;
    b.x = big;
    CHECK(bp_norm_fit(&nm, &b, BP_NORM_STANDARD, &err) == BP_OK, "fit big");
    if (nm.scale) CHECK_CLOSE(nm.scale[0], 2.0, 1e-6, "std of 10000 +- 0.5");
    bp_norm_free(&nm);
}

static void test_meta(void)
{
    bp_net *net = NULL;
    bp_status s = bp_net_create(&net, 3, "dense(1)", 1, &err);
    CHECK(s == BP_OK && net, "bp_net_create: %s", err.message);
    if (!net) return;

    bp_norm none;
    CHECK(bp_norm_from_meta(&none, net, &err) == BP_OK && none.kind == BP_NORM_NONE && !none.shift,
          "a net without the keys gives none: %s", err.message);
    bp_norm_free(&none);

    /* values that need all 9 digits survive the round trip exactly */
    bp_norm nm;
    memset(&nm, 0, sizeof nm);
    nm.kind = BP_NORM_STANDARD;
    nm.n = 3;
    nm.shift = calloc(3, sizeof *nm.shift);
    nm.scale = calloc(3, sizeof *nm.scale);
    if (!nm.shift || !nm.scale) return;
    nm.shift[0] = (bp_real)0.1;
    nm.shift[1] = (bp_real)-123456.789;
    nm.shift[2] = (bp_real)3.0e-30;
    nm.scale[0] = (bp_real)1.0 / 3;
    nm.scale[1] = (bp_real)7.0e20;
    nm.scale[2] = 1;
    CHECK(bp_norm_to_meta(&nm, net, &err) == BP_OK, "to_meta: %s", err.message);
    const char *k = bp_net_get_meta(net, "normalize");
    CHECK(k && strcmp(k, "standard") == 0, "normalize key: %s", k ? k : "(null)");
    const char *sh = bp_net_get_meta(net, "norm_shift");
    CHECK(sh && strchr(sh, ',') && !strchr(sh, ' '), "norm_shift is a comma list: %s",
          sh ? sh : "(null)");
    bp_norm back;
    CHECK(bp_norm_from_meta(&back, net, &err) == BP_OK, "from_meta: %s", err.message);
    CHECK(back.kind == BP_NORM_STANDARD && back.n == 3, "round trip kind/n");
    if (back.shift && back.scale) {
        int same = 1;
        for (int i = 0; i < 3; i++) {
#ifdef BP_DOUBLE
            same &= fabs(back.shift[i] - nm.shift[i]) <= 1e-8 * fabs(nm.shift[i]) &&
                    fabs(back.scale[i] - nm.scale[i]) <= 1e-8 * fabs(nm.scale[i]);
#else
            same &= back.shift[i] == nm.shift[i] && back.scale[i] == nm.scale[i];
#endif
        }
        CHECK(same, "round trip values exact to float");
    }
    bp_norm_free(&back);

    /* a width that does not match the net */
    nm.n = 2;
    CHECK(bp_norm_to_meta(&nm, net, &err) == BP_ESHAPE, "to_meta with 2 features on a 3-input net");
    nm.n = 3;

    /* bad stored values */
    struct {
        const char *key, *value, *want;
    } bad[] = {
        {"norm_shift", "1,2", "has 2 values"},
        {"norm_shift", "1,2,3,4", "more than 3"},
        {"norm_shift", "1,x,3", "value 2 \"x\""},
        {"norm_shift", "1,,3", "value 2"},
        {"norm_shift", "1,nan,3", "not a finite"},
        {"norm_scale", "1,2,1e999", "not a finite"},
        {"norm_scale", "", "value 1"},
        {"normalize", "zscore", "unknown normalization"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(bp_norm_to_meta(&nm, net, &err) == BP_OK, "reset meta");
        bp_net_set_meta(net, bad[i].key, bad[i].value, &err);
        memset(&back, 0x5a, sizeof back);
        s = bp_norm_from_meta(&back, net, &err);
        CHECK(s == BP_EFORMAT && strstr(err.message, bad[i].want), "%s=\"%s\": %s, \"%s\"",
              bad[i].key, bad[i].value, bp_status_name(s), err.message);
        CHECK(back.shift == NULL && back.scale == NULL, "failed from_meta leaves nothing");
    }
    /* missing list */
    bp_net *n2 = NULL;
    if (bp_net_create(&n2, 3, "dense(1)", 1, &err) == BP_OK) {
        bp_net_set_meta(n2, "normalize", "minmax", &err);
        CHECK(bp_norm_from_meta(&back, n2, &err) == BP_EFORMAT && strstr(err.message, "missing"),
              "normalize without values: %s", err.message);
        bp_net_free(n2);
    }

    /* none clears the stored values */
    bp_norm off;
    memset(&off, 0, sizeof off);
    CHECK(bp_norm_to_meta(&off, net, &err) == BP_OK, "to_meta none: %s", err.message);
    const char *kk = bp_net_get_meta(net, "normalize");
    const char *ss = bp_net_get_meta(net, "norm_shift");
    CHECK(kk && strcmp(kk, "none") == 0 && (!ss || !*ss), "none stored, values cleared");
    CHECK(bp_norm_from_meta(&back, net, &err) == BP_OK && back.kind == BP_NORM_NONE,
          "none read back");
    bp_norm_free(&back);
    bp_norm_free(&nm);
    bp_net_free(net);
}

int main(void)
{
    test_names();
    test_fit_apply();
    test_meta();
    return check_done("test_norm");
}
