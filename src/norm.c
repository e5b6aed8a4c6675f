/*
 * norm.c - input normalization x' = (x - shift) * scale, per feature:
 * fitting (in double), applying, and storing in a network's metadata as
 * "normalize" (the kind's name), "norm_shift" and "norm_scale"
 * (comma-separated %.9g lists of n_inputs values).
 *
 * The same transform standardizes regression targets (d->y): stored as
 * "normalize_target", "target_shift" and "target_scale" (n_outputs values),
 * and inverted on the network's outputs to give predictions in the
 * targets' own units.
 */
#include "data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *bp_norm_name(bp_norm_kind k)
{
    switch (k) {
    case BP_NORM_NONE: return "none";
    case BP_NORM_STANDARD: return "standard";
    case BP_NORM_MINMAX: return "minmax";
    }
    return "?";
}

bp_status bp_norm_parse(const char *name, bp_norm_kind *out, bp_error *err)
{
    static const bp_norm_kind kinds[] = {BP_NORM_NONE, BP_NORM_STANDARD, BP_NORM_MINMAX};
    if (!name || !out) return bp_fail(err, BP_EINVAL, "bp_norm_parse: NULL argument");
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(name, bp_norm_name(kinds[i])) == 0) {
            *out = kinds[i];
            return BP_OK;
        }
    return bp_fail(err, BP_EINVAL, "unknown normalization '%s' (expected none, standard or minmax)",
                   name);
}

void bp_norm_free(bp_norm *nm)
{
    if (!nm) return;
    free(nm->shift);
    free(nm->scale);
    memset(nm, 0, sizeof *nm);
}

/* A scale that is not a finite, non-zero bp_real becomes 1. */
static bp_real safe_scale(double s)
{
    bp_real r = (bp_real)s;
    return (isfinite(r) && r != 0) ? r : (bp_real)1;
}

/* Fit on the columns of v [rows, cols] (the features or the targets of a
 * data set); `fn` names the public function and `what` a column in messages. */
static bp_status fit_columns(bp_norm *out, const bp_real *v, int rows, int cols, bp_norm_kind kind,
                             const char *fn, const char *what, bp_error *err)
{
    if (kind != BP_NORM_NONE && kind != BP_NORM_STANDARD && kind != BP_NORM_MINMAX)
        return bp_fail(err, BP_EINVAL, "%s: unknown normalization kind %d", fn, (int)kind);
    if (cols < 1) return bp_fail(err, BP_EINVAL, "%s: the data have no %ss", fn, what);
    if (kind == BP_NORM_NONE) {
        out->kind = BP_NORM_NONE;
        out->n = cols;
        return BP_OK;
    }
    if (rows < 1 || !v) return bp_fail(err, BP_EINVAL, "%s: the data set is empty", fn);
    size_t m = (size_t)cols, n = (size_t)rows;
    /* acc: sum or min, acc2: sum of squared deviations or max, lo/hi: range */
    double *acc = bp_alloc_array(m, sizeof *acc), *acc2 = bp_alloc_array(m, sizeof *acc2);
    double *lo = bp_alloc_array(m, sizeof *lo), *hi = bp_alloc_array(m, sizeof *hi);
    bp_real *shift = bp_alloc_array(m, sizeof *shift), *scale = bp_alloc_array(m, sizeof *scale);
    bp_status s = BP_OK;
    if (!acc || !acc2 || !lo || !hi || !shift || !scale) {
        s = bp_fail(err, BP_ENOMEM, "%s: out of memory", fn);
        goto done;
    }
    for (size_t j = 0; j < m; j++) {
        lo[j] = HUGE_VAL;
        hi[j] = -HUGE_VAL;
    }
    for (size_t i = 0; i < n; i++) {
        const bp_real *r = v + i * m;
        for (size_t j = 0; j < m; j++) {
            double x = r[j];
            if (!isfinite(x)) {
                s = bp_fail(err, BP_EINVAL, "%s: non-finite value at row %zu, %s %zu", fn, i + 1,
                            what, j + 1);
                goto done;
            }
            acc[j] += x;
            if (x < lo[j]) lo[j] = x;
            if (x > hi[j]) hi[j] = x;
        }
    }
    if (kind == BP_NORM_STANDARD) {
        for (size_t j = 0; j < m; j++) acc[j] /= (double)n; /* mean */
        for (size_t i = 0; i < n; i++) {
            const bp_real *r = v + i * m;
            for (size_t j = 0; j < m; j++) {
                double dv = r[j] - acc[j];
                acc2[j] += dv * dv;
            }
        }
        for (size_t j = 0; j < m; j++) {
            if (lo[j] == hi[j]) { /* constant: exact, whatever rounding did to the mean */
                shift[j] = (bp_real)lo[j];
                scale[j] = 1;
                continue;
            }
            double sd = sqrt(acc2[j] / (double)n); /* population std */
            shift[j] = (bp_real)acc[j];
            scale[j] = sd > 0 ? safe_scale(1.0 / sd) : (bp_real)1;
        }
    } else {
        for (size_t j = 0; j < m; j++) {
            shift[j] = (bp_real)lo[j];
            scale[j] = hi[j] > lo[j] ? safe_scale(1.0 / (hi[j] - lo[j])) : (bp_real)1;
        }
    }
    out->kind = kind;
    out->n = (int)m;
    out->shift = shift;
    out->scale = scale;
    shift = scale = NULL;
done:
    free(acc);
    free(acc2);
    free(lo);
    free(hi);
    free(shift);
    free(scale);
    return s;
}

bp_status bp_norm_fit(bp_norm *out, const bp_data *d, bp_norm_kind kind, bp_error *err)
{
    if (!out) return bp_fail(err, BP_EINVAL, "bp_norm_fit: out is NULL");
    memset(out, 0, sizeof *out);
    if (!d) return bp_fail(err, BP_EINVAL, "bp_norm_fit: data is NULL");
    return fit_columns(out, d->x, d->n, d->n_inputs, kind, "bp_norm_fit", "feature", err);
}

bp_status bp_norm_fit_targets(bp_norm *out, const bp_data *d, bp_norm_kind kind, bp_error *err)
{
    if (!out) return bp_fail(err, BP_EINVAL, "bp_norm_fit_targets: out is NULL");
    memset(out, 0, sizeof *out);
    if (!d) return bp_fail(err, BP_EINVAL, "bp_norm_fit_targets: data is NULL");
    if (d->n_classes > 0)
        return bp_fail(err, BP_EINVAL, "bp_norm_fit_targets: the targets are class labels");
    return fit_columns(out, d->y, d->n, d->n_targets, kind, "bp_norm_fit_targets", "target", err);
}

/* v [rows, nm->n] in place: forward (x - shift) * scale, or its inverse
 * x / scale + shift. */
static void map_rows(const bp_norm *nm, bp_real *v, size_t rows, int inverse)
{
    size_t m = (size_t)nm->n;
    for (size_t i = 0; i < rows; i++) {
        bp_real *r = v + i * m;
        if (inverse)
            for (size_t j = 0; j < m; j++) r[j] = (bp_real)((double)r[j] / nm->scale[j] + nm->shift[j]);
        else
            for (size_t j = 0; j < m; j++) r[j] = (bp_real)(((double)r[j] - nm->shift[j]) * nm->scale[j]);
    }
}

bp_status bp_norm_apply(const bp_norm *nm, bp_data *d, bp_error *err)
{
    if (!nm || !d) return bp_fail(err, BP_EINVAL, "bp_norm_apply: NULL argument");
    if (nm->kind == BP_NORM_NONE) return BP_OK;
    if (!nm->shift || !nm->scale)
        return bp_fail(err, BP_EINVAL, "bp_norm_apply: the normalization has no values");
    if (d->n_inputs != nm->n)
        return bp_fail(err, BP_ESHAPE, "bp_norm_apply: the data have %d features, the "
                       "normalization was fitted on %d", d->n_inputs, nm->n);
    if (d->n > 0 && !d->x) return bp_fail(err, BP_EINVAL, "bp_norm_apply: data x is NULL");
    map_rows(nm, d->x, (size_t)(d->n > 0 ? d->n : 0), 0);
    return BP_OK;
}

bp_status bp_norm_apply_targets(const bp_norm *nm, bp_data *d, bp_error *err)
{
    if (!nm || !d) return bp_fail(err, BP_EINVAL, "bp_norm_apply_targets: NULL argument");
    if (nm->kind == BP_NORM_NONE) return BP_OK;
    if (!nm->shift || !nm->scale)
        return bp_fail(err, BP_EINVAL, "bp_norm_apply_targets: the normalization has no values");
    if (d->n_classes > 0)
        return bp_fail(err, BP_EINVAL, "bp_norm_apply_targets: the targets are class labels");
    if (d->n_targets != nm->n)
        return bp_fail(err, BP_ESHAPE, "bp_norm_apply_targets: the data have %d targets, the "
                       "normalization was fitted on %d", d->n_targets, nm->n);
    if (d->n > 0 && !d->y) return bp_fail(err, BP_EINVAL, "bp_norm_apply_targets: data y is NULL");
    map_rows(nm, d->y, (size_t)(d->n > 0 ? d->n : 0), 0);
    return BP_OK;
}

bp_status bp_norm_invert(const bp_norm *nm, bp_real *v, int rows, bp_error *err)
{
    if (!nm) return bp_fail(err, BP_EINVAL, "bp_norm_invert: NULL argument");
    if (nm->kind == BP_NORM_NONE || rows <= 0) return BP_OK;
    if (!v || !nm->shift || !nm->scale || nm->n < 1)
        return bp_fail(err, BP_EINVAL, "bp_norm_invert: NULL argument or no values");
    map_rows(nm, v, (size_t)rows, 1);
    return BP_OK;
}

/* "v0,v1,..." with %.9g; NULL when out of memory. */
static char *format_list(const bp_real *v, int n)
{
    size_t cap = (size_t)n * 24 + 1, k = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[0] = '\0';
    for (int i = 0; i < n; i++)
        k += (size_t)snprintf(s + k, cap - k, "%s%.9g", i ? "," : "", (double)v[i]);
    return s;
}

/* The metadata keys of one normalization: the inputs' or the targets'. */
typedef struct meta_keys {
    const char *kind, *shift, *scale; /* metadata keys */
    const char *to_fn, *from_fn;      /* public names, for messages */
    const char *what, *side;          /* "features"/"inputs" or "targets"/"outputs" */
} meta_keys;

static const meta_keys input_keys = {"normalize", "norm_shift", "norm_scale", "bp_norm_to_meta",
                                     "bp_norm_from_meta", "features", "inputs"};
static const meta_keys target_keys = {"normalize_target", "target_shift", "target_scale",
                                      "bp_norm_targets_to_meta", "bp_norm_targets_from_meta",
                                      "targets", "outputs"};

static int side_count(const bp_net *net, const meta_keys *k)
{
    return k == &target_keys ? bp_net_outputs(net) : bp_net_inputs(net);
}

static bp_status to_meta(const bp_norm *nm, bp_net *net, const meta_keys *k, bp_error *err)
{
    if (!nm || !net) return bp_fail(err, BP_EINVAL, "%s: NULL argument", k->to_fn);
    if (nm->kind != BP_NORM_NONE && nm->kind != BP_NORM_STANDARD && nm->kind != BP_NORM_MINMAX)
        return bp_fail(err, BP_EINVAL, "%s: unknown normalization kind %d", k->to_fn,
                       (int)nm->kind);
    if (nm->kind != BP_NORM_NONE) {
        if (nm->n < 1 || !nm->shift || !nm->scale)
            return bp_fail(err, BP_EINVAL, "%s: the normalization has no values", k->to_fn);
        if (nm->n != side_count(net, k))
            return bp_fail(err, BP_ESHAPE, "%s: %d normalized %s, the network has %d %s",
                           k->to_fn, nm->n, k->what, side_count(net, k), k->side);
    }
    bp_status s = bp_net_set_meta(net, k->kind, bp_norm_name(nm->kind), err);
    if (s) return s;
    if (nm->kind == BP_NORM_NONE) {
        /* clear values a previous normalization may have left */
        if (bp_net_get_meta(net, k->shift)) s = bp_net_set_meta(net, k->shift, "", err);
        if (!s && bp_net_get_meta(net, k->scale)) s = bp_net_set_meta(net, k->scale, "", err);
        return s;
    }
    char *a = format_list(nm->shift, nm->n), *b = format_list(nm->scale, nm->n);
    if (!a || !b) s = bp_fail(err, BP_ENOMEM, "%s: out of memory", k->to_fn);
    if (!s) s = bp_net_set_meta(net, k->shift, a, err);
    if (!s) s = bp_net_set_meta(net, k->scale, b, err);
    free(a);
    free(b);
    return s;
}

bp_status bp_norm_to_meta(const bp_norm *nm, bp_net *net, bp_error *err)
{
    return to_meta(nm, net, &input_keys, err);
}

bp_status bp_norm_targets_to_meta(const bp_norm *nm, bp_net *net, bp_error *err)
{
    return to_meta(nm, net, &target_keys, err);
}

/* Parse exactly n comma-separated finite numbers of metadata `key`. */
static bp_status parse_list(const char *text, const char *key, int n, const char *side,
                            bp_real *dst, bp_error *err)
{
    if (!text) return bp_fail(err, BP_EFORMAT, "model metadata: \"%s\" is missing", key);
    const char *p = text;
    int i = 0;
    for (;;) {
        const char *q = strchr(p, ',');
        const char *e = q ? q : p + strlen(p);
        if (i >= n)
            return bp_fail(err, BP_EFORMAT, "model metadata: \"%s\" has more than %d values", key, n);
        double v;
        const char *stop;
        bp_num_status ns = bp_scan_number(p, e, &v, NULL, &stop);
        if (ns != BP_NUM_OK || stop != e) {
            char ex[64];
            return bp_fail(err, BP_EFORMAT, "model metadata: \"%s\" value %d %s is not a finite "
                           "number", key, i + 1, bp_quote_excerpt(ex, sizeof ex, p, (size_t)(e - p)));
        }
        dst[i++] = (bp_real)v;
        if (!q) break;
        p = q + 1;
    }
    if (i != n)
        return bp_fail(err, BP_EFORMAT, "model metadata: \"%s\" has %d values, the network has %d "
                       "%s", key, i, n, side);
    return BP_OK;
}

static bp_status from_meta(bp_norm *out, const bp_net *net, const meta_keys *k, bp_error *err)
{
    if (!out) return bp_fail(err, BP_EINVAL, "%s: out is NULL", k->from_fn);
    memset(out, 0, sizeof *out);
    if (!net) return bp_fail(err, BP_EINVAL, "%s: net is NULL", k->from_fn);
    int n = side_count(net, k);
    const char *kn = bp_net_get_meta(net, k->kind);
    if (!kn) {
        out->kind = BP_NORM_NONE;
        out->n = n;
        return BP_OK;
    }
    bp_norm_kind kind;
    if (bp_norm_parse(kn, &kind, NULL) != BP_OK) {
        char ex[64];
        return bp_fail(err, BP_EFORMAT, "model metadata: unknown normalization %s in \"%s\"",
                       bp_quote_excerpt(ex, sizeof ex, kn, strlen(kn)), k->kind);
    }
    if (kind == BP_NORM_NONE) {
        out->kind = BP_NORM_NONE;
        out->n = n;
        return BP_OK;
    }
    if (n < 1) return bp_fail(err, BP_EFORMAT, "model metadata: the network has no %s", k->side);
    bp_real *shift = bp_alloc_array((size_t)n, sizeof *shift);
    bp_real *scale = bp_alloc_array((size_t)n, sizeof *scale);
    bp_status s = BP_OK;
    if (!shift || !scale) s = bp_fail(err, BP_ENOMEM, "%s: out of memory", k->from_fn);
    if (!s) s = parse_list(bp_net_get_meta(net, k->shift), k->shift, n, k->side, shift, err);
    if (!s) s = parse_list(bp_net_get_meta(net, k->scale), k->scale, n, k->side, scale, err);
    /* The inverse (predictions back in the targets' units) divides by the
     * scale: a zero one cannot come from a fit. */
    for (int i = 0; !s && k == &target_keys && i < n; i++)
        if (scale[i] == 0)
            s = bp_fail(err, BP_EFORMAT, "model metadata: \"%s\" value %d is 0", k->scale, i + 1);
    if (s) {
        free(shift);
        free(scale);
        return s;
    }
    out->kind = kind;
    out->n = n;
    out->shift = shift;
    out->scale = scale;
    return BP_OK;
}

bp_status bp_norm_from_meta(bp_norm *out, const bp_net *net, bp_error *err)
{
    return from_meta(out, net, &input_keys, err);
}

bp_status bp_norm_targets_from_meta(bp_norm *out, const bp_net *net, bp_error *err)
{
    return from_meta(out, net, &target_keys, err);
}
