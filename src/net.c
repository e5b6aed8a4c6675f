/*
 * net.c - networks: the architecture spec, construction, initialization,
 * workspaces, metadata and the forward pass.
 *
 * Memory layout: every parameter lives in one 64-byte aligned array
 * net->params, layer after layer, each dense layer as weight [out, in]
 * followed by bias [out]. Gradients and optimizer state (train.c) use the
 * same layout, so an optimizer is one loop over one array, and freezing the
 * first K dense layers is training a suffix of it.
 */
#include "internal.h"
#include "kernels.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BP_MAX_LAYERS 1024
#define BP_MAX_UNITS 100000000

/* ------------------------------------------------------------------------ */
/* Architecture spec                                                         */
/* ------------------------------------------------------------------------ */

enum { ARG_NONE, ARG_INT, ARG_REAL_OPT };

static const struct {
    const char *word;
    bp_layer_kind kind;
    int arg;
    double def; /* default of an optional argument */
} LAYER_WORDS[] = {
    {"dense", BP_DENSE, ARG_INT, 0},
    {"identity", BP_IDENTITY, ARG_NONE, 0},
    {"sigmoid", BP_SIGMOID, ARG_NONE, 0},
    {"tanh", BP_TANH, ARG_NONE, 0},
    {"relu", BP_RELU, ARG_NONE, 0},
    {"leaky_relu", BP_LEAKY_RELU, ARG_REAL_OPT, 0.01},
    {"softmax", BP_SOFTMAX, ARG_NONE, 0},
    {"dropout", BP_DROPOUT, ARG_REAL_OPT, 0.5},
};
#define N_WORDS (sizeof LAYER_WORDS / sizeof LAYER_WORDS[0])

/* Words DESIGN.md reserves for convolutional networks. */
static const char *const FUTURE_WORDS[] = {"conv", "maxpool", "avgpool", "flatten", "batchnorm"};

static const char *layer_word(bp_layer_kind k)
{
    for (size_t i = 0; i < N_WORDS; i++)
        if (LAYER_WORDS[i].kind == k) return LAYER_WORDS[i].word;
    return "?";
}

static bp_status check_desc(const bp_layer_desc *d, int col, bp_error *err)
{
    switch (d->kind) {
    case BP_DENSE:
        if (d->units < 1 || d->units > BP_MAX_UNITS)
            return bp_fail(err, BP_ESPEC, "spec:1:%d: dense needs 1..%d units, got %d", col,
                           BP_MAX_UNITS, d->units);
        break;
    case BP_LEAKY_RELU:
        if (!isfinite(d->param))
            return bp_fail(err, BP_ESPEC, "spec:1:%d: leaky_relu slope must be finite", col);
        break;
    case BP_DROPOUT:
        if (!(d->param >= 0 && d->param < 1))
            return bp_fail(err, BP_ESPEC, "spec:1:%d: dropout probability must be in [0, 1), got %g",
                           col, d->param);
        break;
    case BP_IDENTITY: case BP_SIGMOID: case BP_TANH: case BP_RELU: case BP_SOFTMAX:
        break;
    default:
        return bp_fail(err, BP_ESPEC, "spec:1:%d: unknown layer kind %d", col, (int)d->kind);
    }
    return BP_OK;
}

bp_status bp_spec_parse(const char *spec, bp_layer_desc *layers, int max, int *n_layers,
                        bp_error *err)
{
    if (!spec || !n_layers) return bp_fail(err, BP_EINVAL, "spec: NULL argument");
    int n = 0;
    const char *p = spec;
    for (;;) {
        while (*p && isspace((unsigned char)*p)) p++;
        if (!*p) break;
        int col = (int)(p - spec) + 1;
        const char *w = p;
        while (*p && (isalnum((unsigned char)*p) || *p == '_')) p++;
        size_t wlen = (size_t)(p - w);
        if (wlen == 0)
            return bp_fail(err, BP_ESPEC, "spec:1:%d: expected a layer name, found '%c'", col, *p);
        size_t k = 0;
        while (k < N_WORDS && !(strlen(LAYER_WORDS[k].word) == wlen &&
                                strncmp(LAYER_WORDS[k].word, w, wlen) == 0))
            k++;
        if (k == N_WORDS) {
            for (size_t f = 0; f < sizeof FUTURE_WORDS / sizeof FUTURE_WORDS[0]; f++)
                if (strlen(FUTURE_WORDS[f]) == wlen && strncmp(FUTURE_WORDS[f], w, wlen) == 0)
                    return bp_fail(err, BP_ESPEC,
                                   "spec:1:%d: layer '%.*s' is not supported yet (dense layers only)",
                                   col, (int)wlen, w);
            return bp_fail(err, BP_ESPEC,
                           "spec:1:%d: unknown layer '%.*s' (expected dense(N), identity, sigmoid, "
                           "tanh, relu, leaky_relu(a), softmax, dropout(p))",
                           col, (int)wlen, w);
        }
        bp_layer_desc d = {LAYER_WORDS[k].kind, 0, LAYER_WORDS[k].def};
        /* Optional "(arg)", spaces allowed inside. */
        const char *q = p;
        while (*q == ' ' || *q == '\t') q++;
        if (*q == '(') {
            if (LAYER_WORDS[k].arg == ARG_NONE)
                return bp_fail(err, BP_ESPEC, "spec:1:%d: '%s' takes no argument",
                               (int)(q - spec) + 1, LAYER_WORDS[k].word);
            const char *a = q + 1;
            const char *close = strchr(a, ')');
            if (!close)
                return bp_fail(err, BP_ESPEC, "spec:1:%d: missing ')'", (int)(q - spec) + 1);
            char buf[64];
            size_t alen = (size_t)(close - a);
            while (alen && isspace((unsigned char)*a)) a++, alen--;
            while (alen && isspace((unsigned char)a[alen - 1])) alen--;
            int acol = (int)(a - spec) + 1;
            if (alen == 0 || alen >= sizeof buf)
                return bp_fail(err, BP_ESPEC, "spec:1:%d: bad argument of '%s'", acol,
                               LAYER_WORDS[k].word);
            memcpy(buf, a, alen);
            buf[alen] = 0;
            char *end;
            errno = 0;
            if (LAYER_WORDS[k].arg == ARG_INT) {
                long v = strtol(buf, &end, 10);
                if (*end || errno || v < 1 || v > BP_MAX_UNITS)
                    return bp_fail(err, BP_ESPEC,
                                   "spec:1:%d: '%s' needs a whole number of units in 1..%d, got '%s'",
                                   acol, LAYER_WORDS[k].word, BP_MAX_UNITS, buf);
                d.units = (int)v;
            } else {
                double v = strtod(buf, &end);
                if (*end || errno)
                    return bp_fail(err, BP_ESPEC, "spec:1:%d: '%s' needs a number, got '%s'", acol,
                                   LAYER_WORDS[k].word, buf);
                d.param = v;
            }
            p = close + 1;
        } else if (LAYER_WORDS[k].arg == ARG_INT) {
            return bp_fail(err, BP_ESPEC, "spec:1:%d: '%s' needs a size, e.g. %s(64)", col,
                           LAYER_WORDS[k].word, LAYER_WORDS[k].word);
        }
        if (*p && !isspace((unsigned char)*p))
            return bp_fail(err, BP_ESPEC, "spec:1:%d: expected a space after '%.*s'",
                           (int)(p - spec) + 1, (int)wlen, w);
        bp_status s = check_desc(&d, col, err);
        if (s) return s;
        if (n >= BP_MAX_LAYERS)
            return bp_fail(err, BP_ESPEC, "spec:1:%d: more than %d layers", col, BP_MAX_LAYERS);
        if (layers && n < max) layers[n] = d;
        n++;
    }
    if (n == 0) return bp_fail(err, BP_ESPEC, "spec:1:1: empty architecture (no layers)");
    *n_layers = n;
    return BP_OK;
}

/* Shortest %g form of v that reads back as exactly v. */
static void format_real(char *buf, size_t size, double v)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* Canonical text of the layers; malloc'd. */
static char *spec_string(const bp_layer *layers, int n)
{
    size_t cap = 48 * (size_t)n + 1, len = 0; /* longest word: "leaky_relu(" + 17 digits + ")" */
    char *s = malloc(cap);
    if (!s) return NULL;
    s[0] = 0;
    for (int i = 0; i < n; i++) {
        const bp_layer *L = &layers[i];
        const char *sep = i ? " " : "";
        int k;
        if (L->kind == BP_DENSE)
            k = snprintf(s + len, cap - len, "%sdense(%d)", sep, L->out);
        else if (L->kind == BP_LEAKY_RELU || L->kind == BP_DROPOUT) {
            char num[32];
            format_real(num, sizeof num, L->param);
            k = snprintf(s + len, cap - len, "%s%s(%s)", sep, layer_word(L->kind), num);
        }
        else
            k = snprintf(s + len, cap - len, "%s%s", sep, layer_word(L->kind));
        if (k < 0 || (size_t)k >= cap - len) { free(s); return NULL; }
        len += (size_t)k;
    }
    return s;
}

/* ------------------------------------------------------------------------ */
/* Construction                                                              */
/* ------------------------------------------------------------------------ */

static void free_workspaces(bp_net *net)
{
    if (net->act)
        for (int i = 0; i < net->n_layers; i++) free(net->act[i]);
    free(net->act);
    free(net->mask);
    free(net->mask_off);
    net->act = NULL;
    net->mask = NULL;
    net->mask_off = NULL;
    net->max_batch = 0;
}

void bp_net_free(bp_net *net)
{
    if (!net) return;
    free_workspaces(net);
    for (int i = 0; i < net->n_layers && net->layers; i++)
        for (int k = 0; k < BP_MM_KINDS; k++)
            for (int q = 0; q < BP_MM_SLOTS; q++) bp_mm_free(net->layers[i].mm[k][q]);
    bp_gemm_ctx_free(net->gemm);
    for (int i = 0; i < net->n_meta; i++) {
        free(net->meta_key[i]);
        free(net->meta_val[i]);
    }
    free(net->meta_key);
    free(net->meta_val);
    free(net->layers);
    free(net->params);
    free(net->spec);
    free(net);
}

bp_status bp_net_create_layers(bp_net **out, int n_inputs, const bp_layer_desc *descs,
                               int n_layers, uint64_t seed, bp_error *err)
{
    if (!out) return bp_fail(err, BP_EINVAL, "bp_net_create: NULL output pointer");
    *out = NULL;
    if (n_inputs < 1 || n_inputs > BP_MAX_UNITS)
        return bp_fail(err, BP_EINVAL, "network needs 1..%d inputs, got %d", BP_MAX_UNITS, n_inputs);
    if (!descs || n_layers < 1 || n_layers > BP_MAX_LAYERS)
        return bp_fail(err, BP_EINVAL, "network needs 1..%d layers, got %d", BP_MAX_LAYERS, n_layers);
    for (int i = 0; i < n_layers; i++) {
        bp_status s = check_desc(&descs[i], i + 1, err);
        if (s) return s;
    }
    bp_net *net = calloc(1, sizeof *net);
    if (!net) return bp_fail(err, BP_ENOMEM, "out of memory creating a network");
    net->n_inputs = n_inputs;
    net->n_layers = n_layers;
    net->layers = bp_alloc_array((size_t)n_layers, sizeof *net->layers);
    if (!net->layers) goto nomem;
    int width = n_inputs;
    size_t total = 0;
    for (int i = 0; i < n_layers; i++) {
        bp_layer *L = &net->layers[i];
        L->kind = descs[i].kind;
        L->param = descs[i].param;
        L->in = width;
        L->out = L->kind == BP_DENSE ? descs[i].units : width;
        if (L->kind == BP_DENSE) {
            L->offset = total;
            L->n_params = (size_t)L->out * (size_t)L->in + (size_t)L->out;
            /* Saturate instead of wrapping; the memory check below then
             * reports "more than 16 EiB". */
            total = total > SIZE_MAX / 2 - L->n_params ? SIZE_MAX / 2 : total + L->n_params;
        }
        width = L->out;
    }
    net->n_params = total;
    {
        /* Before the (zeroing, so committing) allocation: a spec too large
         * for the machine is BP_ENOMEM with its size, not an OOM kill. */
        uint64_t bytes = total == SIZE_MAX / 2 ? UINT64_MAX
                                               : bp_mul_sat((uint64_t)total, sizeof(bp_real));
        bp_status ms = bp_mem_check(bytes, bytes, "this network", "parameters", err);
        if (ms) {
            bp_net_free(net);
            return ms;
        }
    }
    net->params = bp_alloc_aligned(total, sizeof(bp_real));
    if (!net->params) goto nomem;
    for (int i = 0; i < n_layers; i++) {
        bp_layer *L = &net->layers[i];
        if (L->kind != BP_DENSE) continue;
        L->w = net->params + L->offset;
        L->b = L->w + (size_t)L->out * L->in;
    }
    net->spec = spec_string(net->layers, n_layers);
    if (!net->spec) goto nomem;
    bp_rng_seed(&net->rng, seed ^ 0x5bd1e995u);
    bp_net_init(net, BP_INIT_DEFAULT, seed, NULL);
    *out = net;
    return BP_OK;
nomem:
    bp_net_free(net);
    return bp_fail(err, BP_ENOMEM, "out of memory creating a network");
}

bp_status bp_net_create(bp_net **out, int n_inputs, const char *spec, uint64_t seed,
                        bp_error *err)
{
    if (!out) return bp_fail(err, BP_EINVAL, "bp_net_create: NULL output pointer");
    *out = NULL;
    int n = 0;
    bp_status s = bp_spec_parse(spec, NULL, 0, &n, err);
    if (s) return s;
    bp_layer_desc *d = bp_alloc_array((size_t)n, sizeof *d);
    if (!d) return bp_fail(err, BP_ENOMEM, "out of memory parsing the spec");
    s = bp_spec_parse(spec, d, n, &n, err);
    if (!s) s = bp_net_create_layers(out, n_inputs, d, n, seed, err);
    free(d);
    return s;
}

bp_status bp_net_clone(bp_net **out, const bp_net *net, bp_error *err)
{
    if (!out || !net) return bp_fail(err, BP_EINVAL, "bp_net_clone: NULL argument");
    *out = NULL;
    bp_layer_desc *d = bp_alloc_array((size_t)net->n_layers, sizeof *d);
    if (!d) return bp_fail(err, BP_ENOMEM, "out of memory cloning a network");
    for (int i = 0; i < net->n_layers; i++) d[i] = bp_net_layer(net, i);
    bp_net *c = NULL;
    bp_status s = bp_net_create_layers(&c, net->n_inputs, d, net->n_layers, 0, err);
    free(d);
    if (s) return s;
    memcpy(c->params, net->params, net->n_params * sizeof(bp_real));
    c->rng = net->rng;
    /* The keys are distinct already: append without searching (linear). */
    for (int i = 0; i < net->n_meta && !s; i++)
        s = bp_net_meta_append(c, net->meta_key[i], net->meta_val[i], err);
    if (s) {
        bp_net_free(c);
        return s;
    }
    *out = c;
    return BP_OK;
}

/* The activation that follows dense layer i (skipping dropout), or -1. */
static int next_activation(const bp_net *net, int i)
{
    for (int j = i + 1; j < net->n_layers; j++) {
        if (net->layers[j].kind == BP_DROPOUT) continue;
        return net->layers[j].kind == BP_DENSE ? -1 : (int)net->layers[j].kind;
    }
    return -1;
}

bp_status bp_net_init(bp_net *net, bp_init scheme, uint64_t seed, bp_error *err)
{
    if (!net) return bp_fail(err, BP_EINVAL, "bp_net_init: NULL network");
    if ((int)scheme < BP_INIT_DEFAULT || scheme > BP_INIT_HE_NORMAL)
        return bp_fail(err, BP_EINVAL, "unknown initialization scheme %d", (int)scheme);
    bp_rng rng;
    bp_rng_seed(&rng, seed);
    for (int i = 0; i < net->n_layers; i++) {
        bp_layer *L = &net->layers[i];
        if (L->kind != BP_DENSE) continue;
        bp_init s = scheme;
        if (s == BP_INIT_DEFAULT) {
            int act = next_activation(net, i);
            s = (act == BP_RELU || act == BP_LEAKY_RELU) ? BP_INIT_HE_UNIFORM : BP_INIT_XAVIER_UNIFORM;
        }
        double fan_in = L->in, fan_out = L->out;
        double var = (s == BP_INIT_HE_UNIFORM || s == BP_INIT_HE_NORMAL) ? 2.0 / fan_in
                                                                          : 2.0 / (fan_in + fan_out);
        int normal = (s == BP_INIT_HE_NORMAL || s == BP_INIT_XAVIER_NORMAL);
        double a = sqrt(3.0 * var); /* U(-a, a) has variance a^2 / 3 */
        size_t nw = (size_t)L->out * L->in;
        for (size_t k = 0; k < nw; k++)
            L->w[k] = (bp_real)(normal ? sqrt(var) * bp_rng_normal(&rng)
                                       : a * (2.0 * bp_rng_uniform(&rng) - 1.0));
        memset(L->b, 0, (size_t)L->out * sizeof(bp_real));
    }
    return BP_OK;
}

/* ------------------------------------------------------------------------ */
/* Accessors                                                                 */
/* ------------------------------------------------------------------------ */

int bp_net_inputs(const bp_net *net) { return net ? net->n_inputs : 0; }
int bp_net_outputs(const bp_net *net) { return net ? net->layers[net->n_layers - 1].out : 0; }
int bp_net_layers(const bp_net *net) { return net ? net->n_layers : 0; }
size_t bp_net_param_count(const bp_net *net) { return net ? net->n_params : 0; }
const char *bp_net_spec(const bp_net *net) { return net ? net->spec : NULL; }

bp_layer_desc bp_net_layer(const bp_net *net, int i)
{
    bp_layer_desc d = {BP_IDENTITY, 0, 0};
    if (!net || i < 0 || i >= net->n_layers) return d;
    d.kind = net->layers[i].kind;
    d.units = net->layers[i].out;
    d.param = net->layers[i].param;
    return d;
}

bp_real *bp_net_weight(bp_net *net, int i)
{
    return (net && i >= 0 && i < net->n_layers) ? net->layers[i].w : NULL;
}

bp_real *bp_net_bias(bp_net *net, int i)
{
    return (net && i >= 0 && i < net->n_layers) ? net->layers[i].b : NULL;
}

/* ------------------------------------------------------------------------ */
/* Metadata                                                                  */
/* ------------------------------------------------------------------------ */

bp_status bp_net_set_meta(bp_net *net, const char *key, const char *value, bp_error *err)
{
    if (!net || !key || !value) return bp_fail(err, BP_EINVAL, "bp_net_set_meta: NULL argument");
    for (int i = 0; i < net->n_meta; i++)
        if (strcmp(net->meta_key[i], key) == 0) {
            char *v = bp_strdup(value);
            if (!v) return bp_fail(err, BP_ENOMEM, "out of memory storing metadata");
            free(net->meta_val[i]);
            net->meta_val[i] = v;
            return BP_OK;
        }
    return bp_net_meta_append(net, key, value, err);
}

bp_status bp_net_meta_append(bp_net *net, const char *key, const char *value, bp_error *err)
{
    char *v = bp_strdup(value);
    if (!v) return bp_fail(err, BP_ENOMEM, "out of memory storing metadata");
    if (net->n_meta == net->cap_meta) {
        int cap = net->cap_meta ? 2 * net->cap_meta : 8;
        char **k2 = realloc(net->meta_key, (size_t)cap * sizeof *k2);
        if (k2) net->meta_key = k2;
        char **v2 = k2 ? realloc(net->meta_val, (size_t)cap * sizeof *v2) : NULL;
        if (v2) net->meta_val = v2;
        if (!k2 || !v2) {
            free(v);
            return bp_fail(err, BP_ENOMEM, "out of memory storing metadata");
        }
        net->cap_meta = cap;
    }
    char *k = bp_strdup(key);
    if (!k) {
        free(v);
        return bp_fail(err, BP_ENOMEM, "out of memory storing metadata");
    }
    net->meta_key[net->n_meta] = k;
    net->meta_val[net->n_meta] = v;
    net->n_meta++;
    return BP_OK;
}

const char *bp_net_get_meta(const bp_net *net, const char *key)
{
    if (!net || !key) return NULL;
    for (int i = 0; i < net->n_meta; i++)
        if (strcmp(net->meta_key[i], key) == 0) return net->meta_val[i];
    return NULL;
}

int bp_net_meta_count(const bp_net *net) { return net ? net->n_meta : 0; }

int bp_net_meta_at(const bp_net *net, int i, const char **key, const char **value)
{
    if (!net || i < 0 || i >= net->n_meta) return 0;
    if (key) *key = net->meta_key[i];
    if (value) *value = net->meta_val[i];
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Workspaces and the forward pass                                           */
/* ------------------------------------------------------------------------ */

bp_status bp_net_reserve(bp_net *net, int max_batch, bp_error *err)
{
    if (!net) return bp_fail(err, BP_EINVAL, "bp_net_reserve: NULL network");
    if (max_batch < 1) return bp_fail(err, BP_ESHAPE, "batch size must be >= 1, got %d", max_batch);
    if (max_batch <= net->max_batch) return BP_OK;
    {
        /* Activations of every layer and the dropout masks, checked before
         * anything is freed or allocated (sizes saturate, never wrap). */
        uint64_t need = 0;
        for (int i = 0; i < net->n_layers; i++) {
            uint64_t sz = bp_mul_sat(bp_mul_sat((uint64_t)max_batch, (uint64_t)net->layers[i].out),
                                     sizeof(bp_real));
            need = bp_add_sat(need, net->layers[i].kind == BP_DROPOUT ? bp_add_sat(sz, sz) : sz);
        }
        char detail[96];
        snprintf(detail, sizeof detail, "parameters, activations for batch %d", max_batch);
        uint64_t params = bp_mul_sat((uint64_t)net->n_params, sizeof(bp_real));
        bp_status ms = bp_mem_check(bp_add_sat(params, need), need, "this network", detail, err);
        if (ms) return ms;
    }
    free_workspaces(net);
    net->act = bp_alloc_array((size_t)net->n_layers, sizeof *net->act);
    net->mask_off = bp_alloc_array((size_t)net->n_layers, sizeof *net->mask_off);
    if (!net->act || !net->mask_off) goto nomem;
    size_t masks = 0;
    for (int i = 0; i < net->n_layers; i++) {
        size_t sz = (size_t)max_batch * (size_t)net->layers[i].out;
        net->act[i] = bp_alloc_aligned(sz, sizeof(bp_real));
        if (!net->act[i]) goto nomem;
        if (net->layers[i].kind == BP_DROPOUT) {
            net->mask_off[i] = masks;
            masks += sz;
        }
    }
    if (masks) {
        net->mask = bp_alloc_aligned(masks, sizeof(bp_real));
        if (!net->mask) goto nomem;
    }
    net->max_batch = max_batch;
    return BP_OK;
nomem:
    free_workspaces(net);
    return bp_fail(err, BP_ENOMEM, "out of memory reserving workspaces for batch %d", max_batch);
}

/* ------------------------------------------------------------------------ */
/* Prepared GEMMs                                                            */
/* ------------------------------------------------------------------------ */

void bp_net_prepare(bp_net *net, int n, int training)
{
    if (n < 1) return;
    int slot = -1;
    for (int q = 0; q < BP_MM_SLOTS && slot < 0; q++)
        if (net->mm_batch[q] == n) slot = q;
    for (int q = 0; q < BP_MM_SLOTS && slot < 0; q++)
        if (net->mm_batch[q] == 0) slot = q;
    if (slot < 0) return;
    if (!net->gemm) {
        net->gemm = bp_gemm_ctx_create();
        if (!net->gemm) return;
    }
    net->mm_batch[slot] = n;
    int first_dense = 1;
    for (int i = 0; i < net->n_layers; i++) {
        bp_layer *L = &net->layers[i];
        if (L->kind != BP_DENSE) continue;
        bp_mm **mm = NULL;
        /* forward: y [n, out] = x [n, in] W^T + b */
        mm = &L->mm[BP_MM_FWD][slot];
        if (!*mm) *mm = bp_mm_create(net->gemm, 0, 1, n, L->out, L->in, 1);
        if (training) {
            /* dW [out, in] = dy^T [out, n] x [n, in] */
            mm = &L->mm[BP_MM_DW][slot];
            if (!*mm) *mm = bp_mm_create(net->gemm, 1, 0, L->out, L->in, n, 0);
            /* dx [n, in] = dy [n, out] W [out, in]; never for the first layer */
            mm = &L->mm[BP_MM_DX][slot];
            if (!*mm && !first_dense) *mm = bp_mm_create(net->gemm, 0, 0, n, L->in, L->out, 0);
        }
        first_dense = 0;
    }
}

bp_mm *bp_net_mm(const bp_net *net, const bp_layer *L, int kind, int n)
{
    for (int q = 0; q < BP_MM_SLOTS; q++)
        if (net->mm_batch[q] == n) return L->mm[kind][q];
    return NULL;
}

/* y [n, out] = x [n, in] W^T + b, with W [out, in]. */
static void dense_forward(const bp_net *net, const bp_layer *L, bp_real *y, const bp_real *x, int n)
{
    if (bp_mm_run(bp_net_mm(net, L, BP_MM_FWD, n), x, L->w, L->b, y)) return;
    bp_k_bias_rows(y, L->b, n, L->out);
    bp_gemm(0, 1, n, L->out, L->in, 1, x, L->in, L->w, L->in, 1, y, L->out);
}

const bp_real *bp_net_forward_ws(bp_net *net, const bp_real *x, int n, int training)
{
    const bp_real *in = x;
    for (int i = 0; i < net->n_layers; i++) {
        const bp_layer *L = &net->layers[i];
        bp_real *y = net->act[i];
        size_t m = (size_t)n * L->out;
        switch (L->kind) {
        case BP_DENSE:
            dense_forward(net, L, y, in, n);
            break;
        case BP_IDENTITY:
            memcpy(y, in, m * sizeof(bp_real));
            break;
        case BP_SIGMOID:
            bp_k_sigmoid(y, in, m);
            break;
        case BP_TANH:
            bp_k_tanh(y, in, m);
            break;
        case BP_RELU:
            bp_k_relu(y, in, m);
            break;
        case BP_LEAKY_RELU:
            bp_k_leaky_relu(y, in, m, (bp_real)L->param);
            break;
        case BP_SOFTMAX:
            bp_k_softmax(y, in, n, L->out);
            break;
        case BP_DROPOUT:
            if (training && L->param > 0) {
                bp_real *mask = net->mask + net->mask_off[i];
                bp_real keep = (bp_real)(1 / (1 - L->param));
                for (size_t k = 0; k < m; k++)
                    mask[k] = bp_rng_uniform(&net->rng) < L->param ? 0 : keep;
                bp_k_mul(y, in, mask, m);
            } else {
                memcpy(y, in, m * sizeof(bp_real));
            }
            break;
        }
        in = y;
    }
    return in;
}

bp_status bp_forward(bp_net *net, const bp_real *x, int n, bp_real *y, bp_error *err)
{
    if (!net || !x || !y) return bp_fail(err, BP_EINVAL, "bp_forward: NULL argument");
    if (n < 1) return bp_fail(err, BP_ESHAPE, "bp_forward: batch size must be >= 1, got %d", n);
    bp_status s = bp_net_reserve(net, n, err);
    if (s) return s;
    bp_net_prepare(net, n, 0);
    const bp_real *out = bp_net_forward_ws(net, x, n, 0);
    memcpy(y, out, (size_t)n * bp_net_outputs(net) * sizeof(bp_real));
    return BP_OK;
}

int bp_loss_input_layer(const bp_net *net, bp_loss loss)
{
    int last = net->n_layers - 1;
    bp_layer_kind k = net->layers[last].kind;
    if (last > 0 && ((k == BP_SOFTMAX && loss == BP_LOSS_CROSS_ENTROPY) ||
                     (k == BP_SIGMOID && loss == BP_LOSS_BCE)))
        return last - 1;
    return last;
}

const char *bp_layer_name(bp_layer_kind k) { return layer_word(k); }
