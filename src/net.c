/*
 * net.c - networks: the architecture spec, construction, shapes,
 * initialization, workspaces, metadata and the forward pass. Layers are
 * driven only through their tables (src/layers/layer.h).
 *
 * Memory layout: every parameter lives in one 64-byte aligned array
 * net->params, layer after layer, each layer's tensors in the order its
 * table lists them (dense and conv: weight then bias). Gradients and
 * optimizer state (train.c) use the same layout, so an optimizer is one loop
 * over one array, and freezing the first K parametric layers is training a
 * suffix of it. Buffers (batchnorm's running statistics) live in
 * net->buffers, in the same layer order.
 */
#include "internal.h"
#include "cnn_kernels.h"
#include "kernels.h"
#include "layers/layer.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BP_MAX_LAYERS 1024
#define BP_MAX_ARG 100000000

/* ------------------------------------------------------------------------ */
/* Shapes                                                                    */
/* ------------------------------------------------------------------------ */

bp_shape bp_shape_flat(int features)
{
    bp_shape s = {1, {features, 0, 0}};
    return s;
}

size_t bp_shape_size(bp_shape s)
{
    if (s.rank < 1 || s.rank > BP_MAX_RANK) return 0;
    size_t n = 1;
    for (int i = 0; i < s.rank; i++) {
        if (s.dim[i] < 1) return 0;
        n *= (size_t)s.dim[i];
    }
    return n;
}

void bp_shape_format(bp_shape s, char *buf, size_t size)
{
    size_t len = 0;
    if (!size) return;
    buf[0] = 0;
    int k = snprintf(buf, size, "[");
    for (int i = 0; k >= 0 && i < s.rank && i < BP_MAX_RANK; i++) {
        len = strlen(buf);
        k = snprintf(buf + len, size - len, "%s%d", i ? ", " : "", s.dim[i]);
    }
    len = strlen(buf);
    if (len + 1 < size) snprintf(buf + len, size - len, "]");
}

bp_status bp_need_sequence(const bp_layer *L, int col, bp_error *err)
{
    char sh[64];
    bp_shape_format(L->in_shape, sh, sizeof sh);
    return bp_fail(err, BP_ESPEC, "spec:1:%d: %s needs a sequence input [T, F], got %s "
                   "(give the input shape T,F, or put an embedding or a recurrent layer first)",
                   col, L->ops->word, sh);
}

bp_status bp_need_image(const bp_layer *L, int col, bp_error *err)
{
    char sh[64];
    bp_shape_format(L->in_shape, sh, sizeof sh);
    return bp_fail(err, BP_ESPEC, "spec:1:%d: %s needs an image input [C, H, W], got %s "
                   "(give the input shape C,H,W)", col, L->ops->word, sh);
}

/* ------------------------------------------------------------------------ */
/* Architecture spec                                                         */
/* ------------------------------------------------------------------------ */

/* Fill the defaults of a description's optional arguments. */
static void fill_defaults(bp_layer_desc *d)
{
    if (d->kind == BP_CONV) {
        if (d->stride == 0) d->stride = 1;
    } else if (d->kind == BP_MAXPOOL || d->kind == BP_AVGPOOL) {
        if (d->stride == 0) d->stride = d->kernel;
    }
}

static bp_status check_desc(const bp_layer_desc *d, int col, bp_error *err)
{
    const bp_layer_ops *ops = bp_layer_ops_of(d->kind);
    if (!ops) return bp_fail(err, BP_ESPEC, "spec:1:%d: unknown layer kind %d", col, (int)d->kind);
    return ops->check ? ops->check(d, col, err) : BP_OK;
}

/* bp_spec_parse, also giving each layer's column (cols may be NULL). */
static bp_status spec_parse(const char *spec, bp_layer_desc *layers, int *cols, int max,
                            int *n_layers, bp_error *err)
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
        const bp_layer_ops *ops = bp_layer_ops_find(w, wlen);
        if (!ops) {
            char words[512];
            bp_layer_words(words, sizeof words);
            return bp_fail(err, BP_ESPEC, "spec:1:%d: unknown layer '%.*s' (expected %s)", col,
                           wlen > 64 ? 64 : (int)wlen, w, words);
        }
        bp_layer_desc d;
        memset(&d, 0, sizeof d);
        d.kind = ops->kind;
        d.param = ops->real_def;
        int takes = ops->n_int_max > 0 || ops->real_arg;
        /* Optional "(a, b, ...)", spaces allowed inside. */
        const char *q = p;
        while (*q == ' ' || *q == '\t') q++;
        int nint = 0;
        if (*q == '(') {
            if (!takes)
                return bp_fail(err, BP_ESPEC, "spec:1:%d: '%s' takes no argument",
                               (int)(q - spec) + 1, ops->word);
            const char *close = strchr(q + 1, ')');
            if (!close)
                return bp_fail(err, BP_ESPEC, "spec:1:%d: missing ')'", (int)(q - spec) + 1);
            const char *a = q + 1;
            int nargs = 0;
            for (;;) {
                const char *e = a;
                while (e < close && *e != ',') e++;
                const char *s0 = a, *s1 = e;
                while (s0 < s1 && isspace((unsigned char)*s0)) s0++;
                while (s1 > s0 && isspace((unsigned char)s1[-1])) s1--;
                int acol = (int)(s0 - spec) + 1;
                char buf[64];
                size_t alen = (size_t)(s1 - s0);
                int max_args = ops->real_arg ? 1 : ops->n_int_max;
                if (nargs >= max_args)
                    return bp_fail(err, BP_ESPEC, "spec:1:%d: too many arguments for %s (usage: %s)",
                                   acol, ops->word, ops->usage);
                if (alen == 0 || alen >= sizeof buf)
                    return bp_fail(err, BP_ESPEC, "spec:1:%d: bad argument of '%s' (usage: %s)", acol,
                                   ops->word, ops->usage);
                memcpy(buf, s0, alen);
                buf[alen] = 0;
                char *end;
                errno = 0;
                if (ops->real_arg) {
                    double v = strtod(buf, &end);
                    if (*end || errno)
                        return bp_fail(err, BP_ESPEC, "spec:1:%d: '%s' needs a number, got '%s'",
                                       acol, ops->word, buf);
                    d.param = v;
                } else {
                    long v = strtol(buf, &end, 10);
                    int slot = ops->int_slot[nargs];
                    long lo = slot == BP_ARG_PAD ? 0 : 1;
                    if (*end || errno || v < lo || v > BP_MAX_ARG)
                        return bp_fail(err, BP_ESPEC,
                                       "spec:1:%d: '%s' needs whole numbers in %ld..%d, got '%s' "
                                       "(usage: %s)", acol, ops->word, lo, BP_MAX_ARG, buf, ops->usage);
                    switch (slot) {
                    case BP_ARG_UNITS: d.units = (int)v; break;
                    case BP_ARG_KERNEL: d.kernel = (int)v; break;
                    case BP_ARG_STRIDE: d.stride = (int)v; break;
                    case BP_ARG_VOCAB: d.vocab = (int)v; break;
                    default: d.pad = (int)v; break;
                    }
                    nint++;
                }
                nargs++;
                if (e == close) break;
                a = e + 1;
            }
            p = close + 1;
        }
        if (nint < ops->n_int_min)
            return bp_fail(err, BP_ESPEC, "spec:1:%d: '%s' needs %s, e.g. %s", col, ops->word,
                           ops->n_int_min == 1 ? "a size" : "more arguments", ops->usage);
        if (*p && !isspace((unsigned char)*p))
            return bp_fail(err, BP_ESPEC, "spec:1:%d: expected a space after '%.*s'",
                           (int)(p - spec) + 1, wlen > 64 ? 64 : (int)wlen, w);
        fill_defaults(&d);
        bp_status s = check_desc(&d, col, err);
        if (s) return s;
        if (n >= BP_MAX_LAYERS)
            return bp_fail(err, BP_ESPEC, "spec:1:%d: more than %d layers", col, BP_MAX_LAYERS);
        if (layers && n < max) {
            layers[n] = d;
            if (cols) cols[n] = col;
        }
        n++;
    }
    if (n == 0) return bp_fail(err, BP_ESPEC, "spec:1:1: empty architecture (no layers)");
    *n_layers = n;
    return BP_OK;
}

bp_status bp_spec_parse(const char *spec, bp_layer_desc *layers, int max, int *n_layers,
                        bp_error *err)
{
    return spec_parse(spec, layers, NULL, max, n_layers, err);
}

/* Shortest %g form of v that reads back as exactly v. */
static void format_real(char *buf, size_t size, double v)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* Canonical text of one layer: optional arguments at their defaults are
 * left out. */
static int layer_text(char *buf, size_t size, const bp_layer_desc *d)
{
    const bp_layer_ops *ops = bp_layer_ops_of(d->kind);
    const char *w = ops ? ops->word : "?";
    char num[32];
    switch (d->kind) {
    case BP_DENSE:
        return snprintf(buf, size, "dense(%d)", d->units);
    case BP_CONV:
        if (d->pad) return snprintf(buf, size, "conv(%d,%d,%d,%d)", d->units, d->kernel, d->stride, d->pad);
        if (d->stride != 1) return snprintf(buf, size, "conv(%d,%d,%d)", d->units, d->kernel, d->stride);
        return snprintf(buf, size, "conv(%d,%d)", d->units, d->kernel);
    case BP_MAXPOOL: case BP_AVGPOOL:
        if (d->stride != d->kernel) return snprintf(buf, size, "%s(%d,%d)", w, d->kernel, d->stride);
        return snprintf(buf, size, "%s(%d)", w, d->kernel);
    case BP_RNN: case BP_LSTM: case BP_GRU:
        return snprintf(buf, size, "%s(%d)", w, d->units);
    case BP_EMBEDDING:
        if (d->vocab) return snprintf(buf, size, "embedding(%d,%d)", d->units, d->vocab);
        return snprintf(buf, size, "embedding(%d)", d->units);
    case BP_LEAKY_RELU: case BP_DROPOUT:
        format_real(num, sizeof num, d->param);
        return snprintf(buf, size, "%s(%s)", w, num);
    default:
        return snprintf(buf, size, "%s", w);
    }
}

/* Canonical text of the layers; malloc'd. */
static char *spec_string(const bp_layer *layers, int n)
{
    size_t cap = 64 * (size_t)n + 1, len = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i) s[len++] = ' ';
        int k = layer_text(s + len, cap - len, &layers[i].desc);
        if (k < 0 || (size_t)k >= cap - len) { free(s); return NULL; }
        len += (size_t)k;
    }
    return s;
}

/* ------------------------------------------------------------------------ */
/* Construction                                                              */
/* ------------------------------------------------------------------------ */

/* The training reservation: every layer's output and workspace. */
static void free_train_workspaces(bp_net *net)
{
    net->act = NULL; /* the last pass's views point into what is freed here */
    if (net->act_full)
        for (int i = 0; i < net->n_layers; i++) free(net->act_full[i]);
    free(net->act_full);
    free(net->ws);
    net->act_full = NULL;
    net->ws = NULL;
    for (int i = 0; i < net->n_layers && net->layers; i++) net->layers[i].ws = NULL;
    net->max_batch = 0;
}

/* The inference reservation: the two buffers the outputs take in turn. */
static void free_infer_workspaces(bp_net *net)
{
    net->act = NULL;
    free(net->iws);
    net->iws = NULL;
    free(net->pp[0]);
    free(net->pp[1]);
    net->pp[0] = net->pp[1] = NULL;
    net->infer_batch = 0;
}

static void free_workspaces(bp_net *net)
{
    free_train_workspaces(net);
    free_infer_workspaces(net);
}

void bp_net_free(bp_net *net)
{
    if (!net) return;
    free_workspaces(net);
    for (int i = 0; i < net->n_layers && net->layers; i++) free(net->layers[i].state);
    for (int i = 0; i < net->n_layers && net->layers; i++)
        if (net->layers[i].ops && net->layers[i].ops->release)
            net->layers[i].ops->release(&net->layers[i], -1);
    bp_gemm_ctx_free(net->gemm);
    free(net->params_bf16);
    for (int i = 0; i < net->n_meta; i++) {
        free(net->meta_key[i]);
        free(net->meta_val[i]);
    }
    free(net->meta_key);
    free(net->meta_val);
    free(net->layers);
    free(net->act_view);
    free(net->params);
    free(net->buffers);
    free(net->spec);
    free(net);
}

/* Element count of a tensor spec (saturating). */
static uint64_t spec_count(const bp_tensor_spec *t)
{
    uint64_t c = 1;
    for (int k = 0; k < t->rank; k++) c = bp_mul_sat(c, (uint64_t)t->shape[k]);
    return c;
}

/* Lay the layers out from their descriptions: shapes (inserting a flatten
 * before a dense that follows an image), parameter and buffer sizes. On
 * success *out_layers [*out_n] is malloc'd and the totals are set; with
 * cols (may be NULL) giving each description's spec column. */
static bp_status layout(bp_shape input, const bp_layer_desc *descs, const int *cols, int n,
                        bp_layer **out_layers, int *out_n, uint64_t *n_params,
                        uint64_t *n_buffers, bp_error *err)
{
    int extra = 0;
    for (int i = 0; i < n; i++) extra += descs[i].kind == BP_DENSE; /* at most one flatten each */
    bp_layer *layers = bp_alloc_array((size_t)(n + extra), sizeof *layers);
    if (!layers) return bp_fail(err, BP_ENOMEM, "out of memory creating a network");
    bp_shape cur = input;
    uint64_t np = 0, nb = 0;
    int m = 0;
    for (int i = 0; i < n; i++) {
        int col = cols ? cols[i] : i + 1;
        bp_layer_desc d = descs[i];
        fill_defaults(&d);
        bp_status s = check_desc(&d, col, err);
        if (!s && i > 0 && bp_layer_ops_of(d.kind)->first_only)
            s = bp_fail(err, BP_ESPEC, "spec:1:%d: %s must be the first layer (it reads token ids)",
                        col, bp_layer_ops_of(d.kind)->word);
        if (s) {
            free(layers);
            return s;
        }
        for (int pass = 0; pass < 2; pass++) {
            bp_layer *L = &layers[m];
            if (pass == 0) {
                /* A dense after an image shape gets its flatten. */
                if (!(d.kind == BP_DENSE && cur.rank == 3)) continue;
                memset(&L->desc, 0, sizeof L->desc);
                L->desc.kind = BP_FLATTEN;
            } else {
                L->desc = d;
            }
            L->kind = L->desc.kind;
            L->ops = bp_layer_ops_of(L->kind);
            L->param = L->desc.param;
            L->in_shape = cur;
            L->rows = 1;
            L->in = (int)bp_shape_size(cur);
            s = L->ops->shape(L, col, err);
            if (s) {
                free(layers);
                return s;
            }
            size_t out = bp_shape_size(L->out_shape);
            if (out < 1 || out > 0x7fffffff) {
                char sh[64];
                bp_shape_format(L->out_shape, sh, sizeof sh);
                const char *word = L->ops->word;
                free(layers);
                return bp_fail(err, BP_ESPEC, "spec:1:%d: %s gives the output shape %s, "
                               "which is empty or too large", col, word, sh);
            }
            L->out = (int)out;
            bp_tensor_spec t[BP_LAYER_MAX_TENSORS];
            int nt = L->ops->tensors ? L->ops->tensors(L, t) : 0;
            uint64_t lp = 0, lb = 0;
            for (int k = 0; k < nt; k++) {
                if (t[k].dtype != BP_DTYPE_F32) continue;
                if (t[k].trainable) lp = bp_add_sat(lp, spec_count(&t[k]));
                else lb = bp_add_sat(lb, spec_count(&t[k]));
            }
            L->offset = (size_t)(np > SIZE_MAX / 4 ? SIZE_MAX / 4 : np);
            L->buf_offset = (size_t)(nb > SIZE_MAX / 4 ? SIZE_MAX / 4 : nb);
            L->n_params = (size_t)(lp > SIZE_MAX / 4 ? SIZE_MAX / 4 : lp);
            L->n_buf = (size_t)(lb > SIZE_MAX / 4 ? SIZE_MAX / 4 : lb);
            np = bp_add_sat(np, lp);
            nb = bp_add_sat(nb, lb);
            cur = L->out_shape;
            m++;
        }
    }
    if (m > BP_MAX_LAYERS) {
        free(layers);
        return bp_fail(err, BP_ESPEC, "spec:1:1: more than %d layers", BP_MAX_LAYERS);
    }
    *out_layers = layers;
    *out_n = m;
    *n_params = np;
    *n_buffers = nb;
    return BP_OK;
}

/* Point each layer's w, b and buf into the network's arrays. */
static void bind_tensors(bp_net *net)
{
    for (int i = 0; i < net->n_layers; i++) {
        bp_layer *L = &net->layers[i];
        bp_tensor_spec t[BP_LAYER_MAX_TENSORS];
        int nt = L->ops->tensors ? L->ops->tensors(L, t) : 0;
        L->w = L->b = NULL;
        L->buf = L->n_buf ? net->buffers + L->buf_offset : NULL;
        size_t off = L->offset;
        int k2 = 0;
        for (int k = 0; k < nt; k++) {
            if (!t[k].trainable || t[k].dtype != BP_DTYPE_F32) continue;
            /* w: the first parameter tensor; b: the one named "bias" (none
             * for recurrent layers, whose four tensors are weight_ih,
             * weight_hh, bias_ih, bias_hh) */
            if (k2 == 0) L->w = net->params + off;
            else if (strcmp(t[k].name, "bias") == 0) L->b = net->params + off;
            off += (size_t)spec_count(&t[k]);
            k2++;
        }
    }
}

static bp_status create_shaped(bp_net **out, bp_shape input, const bp_layer_desc *descs,
                               const int *cols, int n_layers, uint64_t seed, bp_error *err)
{
    if (!out) return bp_fail(err, BP_EINVAL, "bp_net_create: NULL output pointer");
    *out = NULL;
    size_t n_inputs = bp_shape_size(input);
    if (n_inputs < 1 || n_inputs > BP_MAX_ARG)
        return bp_fail(err, BP_EINVAL, "network needs 1..%d inputs, got %zu", BP_MAX_ARG, n_inputs);
    if (!descs || n_layers < 1 || n_layers > BP_MAX_LAYERS)
        return bp_fail(err, BP_EINVAL, "network needs 1..%d layers, got %d", BP_MAX_LAYERS, n_layers);
    bp_layer *layers = NULL;
    int n = 0;
    uint64_t np = 0, nb = 0;
    bp_status s = layout(input, descs, cols, n_layers, &layers, &n, &np, &nb, err);
    if (s) return s;
    {
        /* Before the (zeroing, so committing) allocation: a spec too large
         * for the machine is BP_ENOMEM with its size, not an OOM kill. */
        uint64_t bytes = bp_mul_sat(bp_add_sat(np, nb), sizeof(bp_real));
        bp_status ms = bp_mem_check(bytes, bytes, "this network", "parameters", err);
        if (ms) {
            free(layers);
            return ms;
        }
    }
    bp_net *net = calloc(1, sizeof *net);
    if (!net) {
        free(layers);
        return bp_fail(err, BP_ENOMEM, "out of memory creating a network");
    }
    net->n_inputs = (int)n_inputs;
    net->input_shape = input;
    net->n_layers = n;
    net->layers = layers;
    net->n_params = (size_t)np;
    net->n_buffers = (size_t)nb;
    net->params = bp_alloc_aligned(np ? (size_t)np : 1, sizeof(bp_real));
    net->buffers = bp_alloc_aligned(nb ? (size_t)nb : 1, sizeof(bp_real));
    net->act_view = bp_alloc_array((size_t)n, sizeof *net->act_view);
    if (!net->params || !net->buffers || !net->act_view) goto nomem;
    bind_tensors(net);
    net->spec = spec_string(net->layers, n);
    if (!net->spec) goto nomem;
    bp_rng_seed(&net->rng, seed ^ 0x5bd1e995u);
    bp_net_init(net, BP_INIT_DEFAULT, seed, NULL);
    *out = net;
    return BP_OK;
nomem:
    bp_net_free(net);
    return bp_fail(err, BP_ENOMEM, "out of memory creating a network");
}

/* Parse `spec` into malloc'd descriptions *d [*n] and their columns *cols
 * (free both with free(), also on failure). */
static bp_status spec_parse_alloc(const char *spec, bp_layer_desc **d, int **cols, int *n,
                                  bp_error *err)
{
    *d = NULL;
    *cols = NULL;
    bp_status s = spec_parse(spec, NULL, NULL, 0, n, err);
    if (s) return s;
    *d = bp_alloc_array((size_t)*n, sizeof **d);
    *cols = bp_alloc_array((size_t)*n, sizeof **cols);
    if (!*d || !*cols) return bp_fail(err, BP_ENOMEM, "out of memory parsing the spec");
    return spec_parse(spec, *d, *cols, *n, n, err);
}

bp_status bp_net_skeleton(bp_net *shape, bp_shape input, const char *spec, bp_error *err)
{
    memset(shape, 0, sizeof *shape);
    if (input.rank < 1 || input.rank > BP_MAX_RANK || bp_shape_size(input) < 1 ||
        bp_shape_size(input) > BP_MAX_ARG)
        return bp_fail(err, BP_EINVAL, "input shape must have 1..%d positive dimensions", BP_MAX_RANK);
    int n = 0;
    bp_layer_desc *d;
    int *cols;
    bp_status s = spec_parse_alloc(spec, &d, &cols, &n, err);
    uint64_t np = 0, nb = 0;
    if (!s) s = layout(input, d, cols, n, &shape->layers, &shape->n_layers, &np, &nb, err);
    free(d);
    free(cols);
    if (s) return s;
    shape->n_inputs = (int)bp_shape_size(input);
    shape->input_shape = input;
    shape->n_params = np > SIZE_MAX / 4 ? SIZE_MAX / 4 : (size_t)np;
    shape->n_buffers = nb > SIZE_MAX / 4 ? SIZE_MAX / 4 : (size_t)nb;
    return BP_OK;
}

bp_status bp_net_create_layers(bp_net **out, int n_inputs, const bp_layer_desc *descs,
                               int n_layers, uint64_t seed, bp_error *err)
{
    if (out) *out = NULL;
    if (n_inputs < 1 || n_inputs > BP_MAX_ARG)
        return bp_fail(err, BP_EINVAL, "network needs 1..%d inputs, got %d", BP_MAX_ARG, n_inputs);
    return create_shaped(out, bp_shape_flat(n_inputs), descs, NULL, n_layers, seed, err);
}

bp_status bp_net_create_shaped(bp_net **out, bp_shape input, const char *spec, uint64_t seed,
                               bp_error *err)
{
    if (!out) return bp_fail(err, BP_EINVAL, "bp_net_create: NULL output pointer");
    *out = NULL;
    if (input.rank < 1 || input.rank > BP_MAX_RANK || bp_shape_size(input) < 1)
        return bp_fail(err, BP_EINVAL, "input shape must have 1..%d positive dimensions", BP_MAX_RANK);
    int n = 0;
    bp_layer_desc *d;
    int *cols;
    bp_status s = spec_parse_alloc(spec, &d, &cols, &n, err);
    if (!s) s = create_shaped(out, input, d, cols, n, seed, err);
    free(d);
    free(cols);
    return s;
}

bp_status bp_net_create(bp_net **out, int n_inputs, const char *spec, uint64_t seed,
                        bp_error *err)
{
    if (!out) return bp_fail(err, BP_EINVAL, "bp_net_create: NULL output pointer");
    *out = NULL;
    if (n_inputs < 1 || n_inputs > BP_MAX_ARG)
        return bp_fail(err, BP_EINVAL, "network needs 1..%d inputs, got %d", BP_MAX_ARG, n_inputs);
    return bp_net_create_shaped(out, bp_shape_flat(n_inputs), spec, seed, err);
}

bp_status bp_net_clone(bp_net **out, const bp_net *net, bp_error *err)
{
    if (!out || !net) return bp_fail(err, BP_EINVAL, "bp_net_clone: NULL argument");
    *out = NULL;
    bp_layer_desc *d = bp_alloc_array((size_t)net->n_layers, sizeof *d);
    if (!d) return bp_fail(err, BP_ENOMEM, "out of memory cloning a network");
    for (int i = 0; i < net->n_layers; i++) d[i] = net->layers[i].desc;
    bp_net *c = NULL;
    bp_status s = create_shaped(&c, net->input_shape, d, NULL, net->n_layers, 0, err);
    free(d);
    if (s) return s;
    memcpy(c->params, net->params, net->n_params * sizeof(bp_real));
    memcpy(c->buffers, net->buffers, net->n_buffers * sizeof(bp_real));
    for (int i = 0; i < net->n_layers; i++) c->layers[i].count = net->layers[i].count;
    c->rng = net->rng;
    s = bp_net_set_precision(c, net->precision, err);
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

/* A relu or leaky_relu follows layer i, through the layers that keep the
 * signal's scale structure (dropout, batchnorm, pooling, flatten). */
static int relu_follows(const bp_net *net, int i)
{
    for (int j = i + 1; j < net->n_layers; j++) {
        bp_layer_kind k = net->layers[j].kind;
        if (k == BP_DROPOUT || k == BP_BATCHNORM || k == BP_MAXPOOL || k == BP_AVGPOOL ||
            k == BP_GLOBAL_AVGPOOL || k == BP_FLATTEN)
            continue;
        return k == BP_RELU || k == BP_LEAKY_RELU;
    }
    return 0;
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
        if (L->ops->init) L->ops->init(L, scheme, relu_follows(net, i), &rng);
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
    bp_layer_desc d;
    memset(&d, 0, sizeof d);
    d.kind = BP_IDENTITY;
    if (!net || i < 0 || i >= net->n_layers) return d;
    d = net->layers[i].desc;
    /* units stays the spec's argument where the word has one (dense, conv,
     * recurrent, embedding), else it is the flat output width */
    const bp_layer_ops *ops = net->layers[i].ops;
    if (!(ops->n_int_max > 0 && ops->int_slot[0] == BP_ARG_UNITS)) d.units = net->layers[i].out;
    return d;
}

bp_shape bp_net_input_shape(const bp_net *net)
{
    bp_shape s = {0, {0, 0, 0}};
    return net ? net->input_shape : s;
}

bp_shape bp_net_layer_shape(const bp_net *net, int i)
{
    bp_shape s = {0, {0, 0, 0}};
    return (net && i >= 0 && i < net->n_layers) ? net->layers[i].out_shape : s;
}

size_t bp_net_layer_param_count(const bp_net *net, int i)
{
    return (net && i >= 0 && i < net->n_layers) ? net->layers[i].n_params : 0;
}

int bp_layer_is_parametric(bp_layer_kind kind)
{
    const bp_layer_ops *ops = bp_layer_ops_of(kind);
    return ops && ops->parametric;
}

bp_real *bp_net_weight(bp_net *net, int i)
{
    return (net && i >= 0 && i < net->n_layers) ? net->layers[i].w : NULL;
}

bp_real *bp_net_bias(bp_net *net, int i)
{
    return (net && i >= 0 && i < net->n_layers) ? net->layers[i].b : NULL;
}

int bp_net_tensor_count(const bp_net *net)
{
    if (!net) return 0;
    int c = 0;
    for (int i = 0; i < net->n_layers; i++) {
        const bp_layer *L = &net->layers[i];
        bp_tensor_spec t[BP_LAYER_MAX_TENSORS];
        c += L->ops->tensors ? L->ops->tensors(L, t) : 0;
    }
    return c;
}

int bp_net_tensor(bp_net *net, int j, bp_tensor *out)
{
    if (!net || !out || j < 0) return 0;
    for (int i = 0; i < net->n_layers; i++) {
        bp_layer *L = &net->layers[i];
        bp_tensor_spec t[BP_LAYER_MAX_TENSORS];
        int nt = L->ops->tensors ? L->ops->tensors(L, t) : 0;
        if (j >= nt) {
            j -= nt;
            continue;
        }
        /* Its place: after the earlier tensors of its group. */
        size_t poff = L->offset, boff = L->buf_offset;
        for (int k = 0; k < j; k++) {
            if (t[k].dtype != BP_DTYPE_F32) continue;
            if (t[k].trainable) poff += (size_t)spec_count(&t[k]);
            else boff += (size_t)spec_count(&t[k]);
        }
        memset(out, 0, sizeof *out);
        snprintf(out->name, sizeof out->name, "%d.%s", i, t[j].name);
        out->layer = i;
        out->rank = t[j].rank;
        for (int k = 0; k < t[j].rank; k++) out->shape[k] = t[j].shape[k];
        out->count = (size_t)spec_count(&t[j]);
        out->dtype = t[j].dtype;
        out->trainable = t[j].trainable;
        if (t[j].dtype == BP_DTYPE_I64) out->i64 = &L->count;
        else out->data = t[j].trainable ? net->params + poff : net->buffers + boff;
        return 1;
    }
    return 0;
}

int bp_net_find_tensor(bp_net *net, int layer, const char *name, bp_tensor *out)
{
    char want[48];
    snprintf(want, sizeof want, "%d.%s", layer, name);
    for (int j = 0; bp_net_tensor(net, j, out); j++)
        if (out->layer == layer && strcmp(out->name, want) == 0) return 1;
    return 0;
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

/* Bytes of every layer's activations and workspace for `batch` samples. */
static uint64_t workspace_bytes(const bp_net *net, int batch)
{
    uint64_t need = 0;
    for (int i = 0; i < net->n_layers; i++) {
        const bp_layer *L = &net->layers[i];
        need = bp_add_sat(need, bp_mul_sat(bp_mul_sat((uint64_t)batch, (uint64_t)L->out),
                                           sizeof(bp_real)));
        if (L->ops->ws_bytes) need = bp_add_sat(need, (L->ops->ws_bytes(L, batch) + 63) & ~(uint64_t)63);
    }
    return need;
}

uint64_t bp_net_workspace_bytes(const bp_net *net, int batch) { return workspace_bytes(net, batch); }

size_t bp_net_widest(const bp_net *net)
{
    size_t w = (size_t)net->n_inputs;
    for (int i = 0; i < net->n_layers; i++)
        if ((size_t)net->layers[i].out > w) w = (size_t)net->layers[i].out;
    return w;
}

/* Whether `need` more bytes of workspaces for max_batch samples fit, checked
 * before anything is freed or allocated (sizes saturate, never wrap). */
static bp_status reserve_check(const bp_net *net, uint64_t need, int max_batch, bp_error *err)
{
    char detail[96];
    snprintf(detail, sizeof detail, "parameters, activations for batch %d", max_batch);
    uint64_t params = bp_mul_sat((uint64_t)(net->n_params + net->n_buffers), sizeof(bp_real));
    return bp_mem_check(bp_add_sat(params, need), need, "this network", detail, err);
}

bp_status bp_net_reserve_train(bp_net *net, int max_batch, bp_error *err)
{
    if (!net) return bp_fail(err, BP_EINVAL, "bp_net_reserve_train: NULL network");
    if (max_batch < 1) return bp_fail(err, BP_ESHAPE, "batch size must be >= 1, got %d", max_batch);
    if (max_batch <= net->max_batch) return BP_OK;
    /* Activations of every layer and their workspaces. */
    bp_status ms = reserve_check(net, workspace_bytes(net, max_batch), max_batch, err);
    if (ms) return ms;
    free_train_workspaces(net);
    net->act_full = bp_alloc_array((size_t)net->n_layers, sizeof *net->act_full);
    if (!net->act_full) goto nomem;
    size_t ws = 0;
    for (int i = 0; i < net->n_layers; i++) {
        bp_layer *L = &net->layers[i];
        net->act_full[i] = bp_alloc_aligned((size_t)max_batch * (size_t)L->out, sizeof(bp_real));
        if (!net->act_full[i]) goto nomem;
        if (L->ops->ws_bytes) ws += (size_t)((L->ops->ws_bytes(L, max_batch) + 63) & ~(uint64_t)63);
    }
    if (ws) {
        net->ws = bp_alloc_aligned(ws, 1);
        if (!net->ws) goto nomem;
        size_t o = 0;
        for (int i = 0; i < net->n_layers; i++) {
            bp_layer *L = &net->layers[i];
            if (!L->ops->ws_bytes) continue;
            size_t b = (size_t)((L->ops->ws_bytes(L, max_batch) + 63) & ~(uint64_t)63);
            L->ws = b ? net->ws + o : NULL;
            o += b;
        }
    }
    net->max_batch = max_batch;
    return BP_OK;
nomem:
    free_train_workspaces(net);
    return bp_fail(err, BP_ENOMEM, "out of memory reserving workspaces for batch %d", max_batch);
}

/* Inference needs each layer's input and output only: two buffers of the
 * widest output, which the layers' outputs take in turn. Within the
 * training reservation (max_batch) nothing more is needed. */
bp_status bp_net_reserve(bp_net *net, int max_batch, bp_error *err)
{
    if (!net) return bp_fail(err, BP_EINVAL, "bp_net_reserve: NULL network");
    if (max_batch < 1) return bp_fail(err, BP_ESHAPE, "batch size must be >= 1, got %d", max_batch);
    if (max_batch <= net->max_batch || max_batch <= net->infer_batch) return BP_OK;
    uint64_t one = bp_mul_sat(bp_mul_sat((uint64_t)max_batch, (uint64_t)bp_net_widest(net)),
                              sizeof(bp_real));
    uint64_t scratch = 0;
    for (int i = 0; i < net->n_layers; i++) {
        const bp_layer *L = &net->layers[i];
        if (!L->ops->infer_ws || !L->ops->ws_bytes) continue;
        uint64_t b = L->ops->ws_bytes(L, max_batch);
        if (b > scratch) scratch = b;
    }
    bp_status ms = reserve_check(net, bp_add_sat(bp_mul_sat(2, one), scratch), max_batch, err);
    if (ms) return ms;
    free_infer_workspaces(net);
    net->pp[0] = bp_alloc_aligned((size_t)one, 1);
    net->pp[1] = bp_alloc_aligned((size_t)one, 1);
    if (scratch) net->iws = bp_alloc_aligned((size_t)scratch, 1);
    if (!net->pp[0] || !net->pp[1] || (scratch && !net->iws)) {
        free_infer_workspaces(net);
        return bp_fail(err, BP_ENOMEM, "out of memory reserving workspaces for batch %d", max_batch);
    }
    net->infer_batch = max_batch;
    return BP_OK;
}

/* ------------------------------------------------------------------------ */
/* Prepared fast paths                                                       */
/* ------------------------------------------------------------------------ */

/* The slot holding batch size n, whatever thread count it was made for. */
static int slot_of(const bp_net *net, int n)
{
    for (int q = 0; q < BP_MM_SLOTS; q++)
        if (net->mm_batch[q] == n) return q;
    return -1;
}

int bp_net_slot(const bp_net *net, int n, int training)
{
    /* Its primitives split their work for the thread count of their
     * making; after bp_set_threads changed it, every layer takes its
     * unprepared (plain) path until bp_net_prepare rebuilds the slot. */
    int q = slot_of(net, n);
    if (q < 0 || (training && !net->mm_training[q])) return -1;
    return net->mm_threads[q] == bp_threads_max() ? q : -1;
}

void bp_layer_fail(bp_real *a, size_t m)
{
    /* All bits set is a NaN as a float, a double and a bfloat16 alike, so
     * a buffer holding a bf16 chain's values reads NaN everywhere too. */
    if (a) memset(a, 0xff, m * sizeof *a);
}

/* Free every layer's objects of slot q and the slot itself. */
static void release_slot(bp_net *net, int q)
{
    for (int i = 0; i < net->n_layers; i++) {
        bp_layer *L = &net->layers[i];
        if (L->ops->release) L->ops->release(L, q);
        L->blk_in[q] = L->blk_out[q] = 1;
        L->bf_in[q] = L->bf_out[q] = 0;
        L->skip[q] = 0;
    }
    net->mm_batch[q] = net->mm_training[q] = net->mm_threads[q] = 0;
}

/* The element types of slot q's activations (after its layouts are
 * planned): with bf16, bfloat16 on blocked data wherever every layer that
 * reads it takes it. Going backwards, ok[i] says whether layer i's output
 * may be bfloat16: the next layer takes it and, if it keeps the type
 * (KEEP), may itself output bfloat16; an END or MAKE layer takes it and
 * decides its own output. Then forwards: a MAKE layer (conv) outputs
 * bfloat16 where ok[i] and its output is blocked, a KEEP layer passes its
 * input's type on, the others output float. So a chain that meets a layer
 * without bfloat16 (sigmoid, a synchronized batchnorm: its prepare
 * refuses, and bp_net_prepare plans again without) stays float from the
 * conv that starts it, as without bf16. bf_out holds ok[i] in between. */
static void plan_types(bp_net *net, int q, int bf16)
{
    int nl = net->n_layers;
    for (int i = nl - 1; i >= 0; i--) {
        int ok = 0;
        if (bf16 && i + 1 < nl && net->layers[i].blk_out[q] > 1) {
            const bp_layer *next = &net->layers[i + 1];
            bp_bf16_kind k = next->ops->bf16;
            ok = k == BP_BF16_MAKE || k == BP_BF16_END || (k == BP_BF16_KEEP && next->bf_out[q]);
        }
        net->layers[i].bf_out[q] = (unsigned char)ok;
    }
    int in = 0;
    for (int i = 0; i < nl; i++) {
        bp_layer *L = &net->layers[i];
        int out = 0;
        if (L->ops->bf16 == BP_BF16_KEEP) out = in;
        else if (L->ops->bf16 == BP_BF16_MAKE) out = L->bf_out[q] && L->blk_out[q] > 1;
        L->bf_in[q] = (unsigned char)in;
        L->bf_out[q] = (unsigned char)out;
        in = out;
    }
}

/* Whether slot q's plan holds a bfloat16 activation. */
static int slot_has_bf16(const bp_net *net, int q)
{
    for (int i = 0; i < net->n_layers; i++)
        if (net->layers[i].bf_out[q]) return 1;
    return 0;
}

/* The layouts of slot q for channel block B (1: plain everywhere). Going
 * backwards, ok[i] says whether layer i's output may be blocked: the next
 * layer takes a blocked input (KEEP, MAKE, END) and, if it keeps the
 * layout, may itself output blocked data. The last two outputs (the
 * network's, and the logits a fused softmax or sigmoid reads) stay plain.
 * Then forwards: a MAKE layer (conv) outputs blocked data where ok[i] and
 * B divides its channels, a KEEP layer passes its input's layout on, the
 * others output plain data. blk_out holds ok[i] between the two passes. */
static void plan_layouts(bp_net *net, int q, int B, int bf16)
{
    int nl = net->n_layers;
    for (int i = nl - 1; i >= 0; i--) {
        int ok = 0;
        if (B > 1 && i < nl - 2) {
            const bp_layer *next = &net->layers[i + 1];
            bp_blk_kind k = next->ops->layout;
            ok = k == BP_BLK_MAKE || k == BP_BLK_END || (k == BP_BLK_KEEP && next->blk_out[q]);
        }
        net->layers[i].blk_out[q] = ok;
    }
    int in = 1;
    for (int i = 0; i < nl; i++) {
        bp_layer *L = &net->layers[i];
        int out = 1;
        if (L->ops->layout == BP_BLK_KEEP) out = in;
        else if (L->ops->layout == BP_BLK_MAKE && L->blk_out[q] && L->out_shape.rank == 3 &&
                 L->out_shape.dim[0] % B == 0)
            out = B;
        L->blk_in[q] = in;
        L->blk_out[q] = out;
        in = out;
    }
    plan_types(net, q, bf16);
}

/* Run every layer's prepare for slot q; returns 0 when a layer on a
 * blocked tensor failed (one on plain data may fail: it falls back to its
 * reference loop or bp_gemm). */
static int prepare_layers(bp_net *net, int q, int n, int training)
{
    int ok = 1, parametric_before = 0;
    for (int i = 0; i < net->n_layers; i++) {
        bp_layer *L = &net->layers[i];
        /* dx is needed only where a parameter lies before the layer. */
        if (L->ops->prepare && !L->ops->prepare(net, L, q, n, training, parametric_before) &&
            (L->blk_in[q] > 1 || L->blk_out[q] > 1))
            ok = 0;
        parametric_before |= L->n_params > 0;
    }
    /* Layers computed by the one before (a batchnorm's fused relu). */
    for (int i = 0; i + 1 < net->n_layers; i++) {
        const bp_layer *L = &net->layers[i];
        net->layers[i + 1].skip[q] = ok && L->ops->fused_next && L->ops->fused_next(L, q);
    }
    return ok;
}

void bp_net_remake_slots(bp_net *net)
{
    int batch[BP_MM_SLOTS], training[BP_MM_SLOTS];
    for (int q = 0; q < BP_MM_SLOTS; q++) {
        batch[q] = net->mm_batch[q];
        training[q] = net->mm_training[q];
        if (batch[q]) release_slot(net, q);
    }
    for (int q = 0; q < BP_MM_SLOTS; q++)
        if (batch[q]) bp_net_prepare(net, batch[q], training[q]);
}

bp_status bp_net_set_precision(bp_net *net, bp_precision p, bp_error *err)
{
    if (!net) return bp_fail(err, BP_EINVAL, "bp_net_set_precision: NULL network");
    if (p != BP_PRECISION_F32 && p != BP_PRECISION_BF16)
        return bp_fail(err, BP_EINVAL, "unknown precision %d", (int)p);
    if (p == net->precision) return BP_OK;
    if (p == BP_PRECISION_BF16) {
#ifdef BP_DOUBLE
        return bp_fail(err, BP_EINVAL, "bf16 precision needs the float build of the library");
#else
        if (!bp_bf16_supported())
            return bp_fail(err, BP_EINVAL, "bf16 precision needs a CPU with AVX512_BF16 "
                           "instructions, which this one lacks (or ONEDNN_MAX_CPU_ISA forbids)");
        bp_status ms = bp_mem_check(bp_mul_sat(net->n_params, 2), bp_mul_sat(net->n_params, 2),
                                    "the bfloat16 copy of the weights", NULL, err);
        if (ms) return ms;
        uint16_t *wb = bp_alloc_aligned(net->n_params ? net->n_params : 1, sizeof *wb);
        if (!wb) return bp_fail(err, BP_ENOMEM, "out of memory for the bfloat16 weights");
        free(net->params_bf16);
        net->params_bf16 = wb;
#endif
    } else {
        free(net->params_bf16);
        net->params_bf16 = NULL;
    }
    net->precision = p;
    bp_net_remake_slots(net); /* they were made for the other precision */
    return BP_OK;
}

bp_precision bp_net_precision(const bp_net *net)
{
    return net ? net->precision : BP_PRECISION_F32;
}

/* Slot q holds batches of n (training or not) for `threads`, on the
 * layouts and types planned there: prepare_layers' answer. */
static int make_slot(bp_net *net, int q, int n, int training, int threads)
{
    net->mm_batch[q] = n;
    net->mm_training[q] = training;
    net->mm_threads[q] = threads;
    return prepare_layers(net, q, n, training);
}

void bp_net_prepare(bp_net *net, int n, int training)
{
    if (n < 1) return;
    int threads = bp_threads_max();
    int slot = slot_of(net, n);
    if (slot >= 0 && net->mm_threads[slot] != threads) {
        release_slot(net, slot);
        slot = -1;
    }
    if (slot >= 0 && (net->mm_training[slot] || !training)) return;
    int fresh = slot < 0; /* else: an inference slot becomes a training one */
    for (int q = 0; q < BP_MM_SLOTS && slot < 0; q++)
        if (net->mm_batch[q] == 0) slot = q;
    if (slot < 0) return;
    if (!net->gemm) {
        net->gemm = bp_gemm_ctx_create();
        if (!net->gemm) return;
    }
    if (!net->cblk) net->cblk = bp_conv_block(net->gemm);
    int bf16 = net->precision == BP_PRECISION_BF16;
    if (fresh) plan_layouts(net, slot, net->cblk, bf16);
    if (make_slot(net, slot, n, training, threads)) return;
    /* A primitive for a bfloat16 activation could not be made: the same
     * layouts in float, as without bfloat16 activations. */
    if (slot_has_bf16(net, slot)) {
        release_slot(net, slot);
        plan_layouts(net, slot, net->cblk, 0);
        if (make_slot(net, slot, n, training, threads)) return;
    }
    /* A primitive for a blocked layout could not be made: plain layouts
     * for the whole slot, as the layers' reference paths expect. */
    release_slot(net, slot);
    plan_layouts(net, slot, 1, 0);
    make_slot(net, slot, n, training, threads);
}

const bp_real *bp_net_forward_ws(bp_net *net, const bp_real *x, int n, int training)
{
    int full = training || n <= net->max_batch, q = bp_net_slot(net, n, training);
    bp_real **v = net->act_view;
    net->act = v;
    const bp_real *in = x;
    for (int i = 0; i < net->n_layers; i++) {
        bp_layer *L = &net->layers[i];
        if (q >= 0 && L->skip[q] && i > 0) {
            v[i] = v[i - 1]; /* the layer before computed it */
            continue;
        }
        if (full) v[i] = net->act_full[i];
        else v[i] = i > 0 && v[i - 1] == net->pp[0] ? net->pp[1] : net->pp[0];
        L->ops->forward(net, L, v[i], in, n, training);
        in = v[i];
    }
    return in;
}

bp_status bp_forward(bp_net *net, const bp_real *x, int n, bp_real *y, bp_error *err)
{
    if (!net || !x || !y) return bp_fail(err, BP_EINVAL, "bp_forward: NULL argument");
    if (n < 1) return bp_fail(err, BP_ESHAPE, "bp_forward: batch size must be >= 1, got %d", n);
    long bad = bp_net_bad_id(net, x, n);
    if (bad >= 0)
        return bp_fail(err, BP_EINVAL, "bp_forward: sample %ld, step %ld holds %g, not a token id "
                       "in 0..%d", bad / net->n_inputs + 1, bad % net->n_inputs + 1, (double)x[bad],
                       net->layers[0].desc.vocab - 1);
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

const char *bp_layer_name(bp_layer_kind k)
{
    const bp_layer_ops *ops = bp_layer_ops_of(k);
    return ops ? ops->word : "?";
}

void *bp_layer_scratch(const bp_net *net, const bp_layer *L, int n, int training)
{
    if ((training || n <= net->max_batch) && L->ws) return L->ws;
    return net->iws;
}

int bp_net_loss_steps(const bp_net *net, bp_loss loss)
{
    if (!net) return 0;
    const bp_layer *L = &net->layers[bp_loss_input_layer(net, loss)];
    return L->out_shape.rank == 2 ? L->out_shape.dim[0] : 1;
}

int bp_net_loss_width(const bp_net *net, bp_loss loss)
{
    return net->layers[bp_loss_input_layer(net, loss)].out / bp_net_loss_steps(net, loss);
}

double bp_net_loss_of(const bp_net *net, bp_loss loss, const bp_real *y, int n, bp_real *dz,
                      long *correct)
{
    /* A rank's slice of a global batch: the gradient of the global mean. */
    int steps = bp_net_loss_steps(net, loss);
    long gn = (long)(net->global_n > n ? net->global_n : n) * steps;
    return bp_loss_eval_part(loss, net->act[bp_loss_input_layer(net, loss)], y, n * steps,
                             bp_net_loss_width(net, loss), gn, dz, correct);
}

/* ------------------------------------------------------------------------ */
/* Carried recurrent state                                                   */
/* ------------------------------------------------------------------------ */

int bp_net_is_recurrent(const bp_net *net)
{
    for (int i = 0; net && i < net->n_layers; i++)
        if (net->layers[i].state_w > 0) return 1;
    return 0;
}

bp_status bp_net_set_stateful(bp_net *net, int streams, bp_error *err)
{
    if (!net) return bp_fail(err, BP_EINVAL, "bp_net_set_stateful: NULL network");
    if (streams < 0 || streams > (1 << 20))
        return bp_fail(err, BP_EINVAL, "streams must be in 0..%d, got %d", 1 << 20, streams);
    uint64_t need = 0;
    for (int i = 0; i < net->n_layers; i++)
        need = bp_add_sat(need, bp_mul_sat(bp_mul_sat((uint64_t)streams,
                                                      (uint64_t)net->layers[i].state_w),
                                           sizeof(bp_real)));
    bp_status ms = bp_mem_check(need, need, "the carried state", NULL, err);
    if (ms) return ms;
    bp_real **fresh = bp_alloc_array((size_t)net->n_layers, sizeof *fresh);
    if (!fresh) return bp_fail(err, BP_ENOMEM, "out of memory for the carried state");
    for (int i = 0; i < net->n_layers && streams; i++) {
        const bp_layer *L = &net->layers[i];
        if (!L->state_w) continue;
        fresh[i] = bp_alloc_aligned((size_t)streams * (size_t)L->state_w, sizeof(bp_real));
        if (!fresh[i]) {
            for (int j = 0; j < i; j++) free(fresh[j]);
            free(fresh);
            return bp_fail(err, BP_ENOMEM, "out of memory for the carried state");
        }
    }
    for (int i = 0; i < net->n_layers; i++) {
        free(net->layers[i].state);
        net->layers[i].state = fresh[i];
    }
    free(fresh);
    net->streams = streams;
    return BP_OK;
}

int bp_net_stateful(const bp_net *net) { return net ? net->streams : 0; }

void bp_net_reset_state(bp_net *net)
{
    for (int i = 0; net && i < net->n_layers; i++) {
        bp_layer *L = &net->layers[i];
        if (L->state) memset(L->state, 0, (size_t)net->streams * L->state_w * sizeof(bp_real));
    }
}
