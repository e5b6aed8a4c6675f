/*
 * export_c.c - bp_export_c: a network as standalone C99 (float and int8).
 *
 * The generated NAME.c holds the parameters as `static const` arrays and
 * one straight-line function per precision, a block of plain loops per
 * layer with its shapes in a comment:
 *
 *   void NAME_predict(const float *in, float *out)       (needs <math.h>)
 *   void NAME_predict_int8(const float *in, float *out)  (opt->int8; no libm)
 *
 * Activations alternate between two local arrays `a` and `b` of NAME_BUF
 * values (the widest tensor: the input or a layer's output); which one a
 * layer reads is decided here, at export time, so the generated code has
 * no pointer juggling. Elementwise layers (activations, batch norm) work
 * in place; flatten, dropout and identity generate nothing. Recurrent
 * layers keep their gates (and an LSTM's cell) in a third array `t`;
 * stride-1 convolutions their sums in `cacc` and a padded input channel in
 * `cpad` (see conv_geometry).
 *
 * Float: the layers' inference semantics of the files of src/layers, in float with
 * the library's formulas (batch norm as x * a + b with a = gamma /
 * sqrt(running_var + eps), b = beta - running_mean * a, computed here in
 * double); the input normalization x' = (x - shift) * scale first; a
 * regression model's outputs mapped back (y / scale + shift, in double).
 *
 * Int8 (TFLite / CMSIS-NN post-training quantization):
 *   - a tensor is int8 q with real value s * (q - z): per-tensor scale s and
 *     zero point z from the min/max of the float network's values on the
 *     calibration rows (computed here by a double-precision forward pass
 *     that mirrors the generated code), the range widened to include 0:
 *     s = (max - min) / 255, z = round(-128 - min / s);
 *   - dense and conv weights: symmetric per output channel, z = 0,
 *     s_w[o] = max|w[o]| / 127, after folding a batch norm that directly
 *     follows (w' = w a, b' = (b - running_mean) a + beta); biases int32
 *     with scale s_in s_w[o]; accumulation in int32;
 *   - requantization: acc * (s_in s_w[o] / s_out) as a Q31 multiplier and a
 *     power-of-two shift per output channel (gemmlowp's
 *     SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT: round
 *     half away from zero), plus z_out, saturated to int8; a relu right
 *     after (batch norm folded or not) is fused as the lower clamp z_out,
 *     the output range being the relu's;
 *   - relu, leaky_relu, sigmoid, tanh elsewhere: a 256-entry table computed
 *     here (sigmoid's output has TFLite's fixed s = 1/256, z = -128; tanh's
 *     s = 1/128, z = 0);
 *   - maxpool on int8; avgpool and global_avgpool as the rounded mean of
 *     the int8 values (the parameters of the input kept);
 *   - the output dequantized to float; a final softmax computed on the
 *     dequantized logits with a small exp of its own (no libm).
 * Recurrent layers, embedding, `last`, a softmax that is not last and a
 * batch norm that no dense/conv precedes are BP_EUNSUPPORTED for int8.
 */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BN_EPS 1e-5

/* ------------------------------------------------------------------------ */
/* A growing text buffer                                                     */
/* ------------------------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
    int inf; /* a value finite in double became infinite in float (sb_float) */
} sbuf;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->p ? b->p + b->n : NULL, room, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap - b->n <= (size_t)k) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

/* A float as a C float constant that reads back exactly ("%.9g", ".0" when
 * it would look like an integer, the 'f' suffix). */
static void sb_float(sbuf *b, double v)
{
    char t[48];
    if (!isfinite((float)v)) b->inf = 1;
    snprintf(t, sizeof t, "%.9g", (double)(float)v);
    if (!strpbrk(t, ".e")) strcat(t, ".0");
    sb_printf(b, "%sf", t);
}

/* A double constant that reads back exactly. */
static void sb_double(sbuf *b, double v)
{
    char t[48];
    snprintf(t, sizeof t, "%.17g", v);
    if (!strpbrk(t, ".e")) strcat(t, ".0");
    sb_printf(b, "%s", t);
}

static void sb_float_array(sbuf *b, const char *name, const char *suffix, const double *v,
                           size_t n, const char *comment)
{
    sb_printf(b, "/* %s */\nstatic const float %s%s[%zu] = {", comment, name, suffix, n);
    for (size_t k = 0; k < n; k++) {
        sb_printf(b, k % 6 ? " " : "\n    ");
        sb_float(b, v[k]);
        if (k + 1 < n) sb_printf(b, ",");
    }
    sb_printf(b, "\n};\n\n");
}

static void sb_int_array(sbuf *b, const char *type, const char *name, const char *suffix,
                         const long *v, size_t n, int per_line)
{
    sb_printf(b, "static const %s %s%s[%zu] = {", type, name, suffix, n);
    for (size_t k = 0; k < n; k++)
        sb_printf(b, "%s%ld%s", k % (size_t)per_line ? " " : "\n    ", v[k],
                  k + 1 < n ? "," : "");
    sb_printf(b, "\n};\n");
}

/* ------------------------------------------------------------------------ */
/* The network as the exporter sees it                                       */
/* ------------------------------------------------------------------------ */

static const char *kind_word(bp_layer_kind k)
{
    static const char *const w[] = {"dense", "identity", "sigmoid", "tanh", "relu",
                                    "leaky_relu", "softmax", "dropout", "conv", "maxpool",
                                    "avgpool", "global_avgpool", "flatten", "batchnorm", "rnn",
                                    "lstm", "gru", "last", "embedding"};
    return (unsigned)k < sizeof w / sizeof *w ? w[k] : "?";
}

typedef struct xlayer {
    bp_layer_desc d;
    bp_shape in, out;
    size_t in_n, out_n;
    /* parameters as double copies (NULL where the kind has none):
     * dense/conv: w, b; batchnorm: a, b (the inference affine form, for
     * int8 folding and calibration) and w = running_mean, w2 = beta (the
     * float code computes (x - mean) a + beta, as the library does: x a + b
     * would cancel when the mean is large);
     * recurrent: w (W_ih), w2 (W_hh), b (b_ih), b2 (b_hh); embedding: w */
    double *w, *w2, *b, *b2, *a;
    size_t nw, nw2, nb;
} xlayer;

typedef struct xnet {
    bp_net *net;
    int L;
    xlayer *l;
    bp_shape in_shape;
    size_t inputs, outputs, buf, tmp;
    size_t cpad, cacc; /* stride-1 convs: the padded input and accumulator sizes (values) */
    bp_norm norm, tnorm;
} xnet;

/* A stride-1 conv runs as K*K shifted multiply-adds over the whole output
 * plane: with the input zero-padded into cpad (Hp = H + 2P rows of
 * Wp = W + 2P; the input itself when P = 0), output (oy, ox) of tap (ky, kx)
 * reads v[oy * Wp + ox] with v = the channel's plane + ky * Wp + kx, so the
 * accumulator cacc holds the plane with row stride Wp (columns OW..Wp-1 are
 * scratch, never stored; cpad holds one input channel at a time, its
 * border written once a layer) and the innermost loop is one run of
 * T = (OH - 1) * Wp + OW values with unit stride and a length known at
 * export time, which compilers vectorize at -O2 (gcc's very-cheap model
 * wants a trip count that is a multiple of the vector length: with padding
 * T is rounded up to CONV_VEC, the padded copy given the slack; without, a
 * scalar loop takes the rest). */
#define CONV_VEC 16
typedef struct conv_geo {
    int Hp, Wp, T, Tv, Tn; /* Tv: the vector part; Tn: the values run (T, or T rounded up) */
    size_t pad;            /* values of cpad, one channel (0 without padding) */
} conv_geo;

static conv_geo conv_geometry(const xlayer *l)
{
    conv_geo g;
    int H = l->in.dim[1], W = l->in.dim[2];
    int OH = l->out.dim[1], OW = l->out.dim[2], P = l->d.pad;
    g.Hp = H + 2 * P, g.Wp = W + 2 * P;
    g.T = (OH - 1) * g.Wp + OW;
    if (P > 0) {
        g.Tn = g.Tv = (g.T + CONV_VEC - 1) / CONV_VEC * CONV_VEC;
        g.pad = (size_t)g.Hp * (size_t)g.Wp + (size_t)(g.Tn - g.T);
    } else {
        g.Tn = g.T;
        g.Tv = g.T - g.T % CONV_VEC;
        g.pad = 0;
    }
    return g;
}

static void xnet_free(xnet *x)
{
    if (x->l)
        for (int i = 0; i < x->L; i++) {
            free(x->l[i].w), free(x->l[i].w2), free(x->l[i].b), free(x->l[i].b2);
            free(x->l[i].a);
        }
    free(x->l);
    bp_norm_free(&x->norm);
    bp_norm_free(&x->tnorm);
}

/* The tensor "I.SUFFIX" copied to doubles; NULL if absent, *n its count. */
static double *tensor_copy(bp_net *net, int layer, const char *suffix, size_t *n, int *bad)
{
    bp_tensor t;
    if (!bp_net_find_tensor(net, layer, suffix, &t) || t.dtype != BP_DTYPE_F32) return NULL;
    double *v = bp_alloc_array(t.count ? t.count : 1, sizeof *v);
    if (!v) return NULL;
    for (size_t k = 0; k < t.count; k++) {
        v[k] = (double)t.data[k];
        if (!isfinite(v[k])) *bad = 1;
    }
    *n = t.count;
    return v;
}

static bp_status xnet_build(xnet *x, bp_net *net, bp_error *err)
{
    memset(x, 0, sizeof *x);
    x->net = net;
    x->L = bp_net_layers(net);
    x->in_shape = bp_net_input_shape(net);
    x->inputs = (size_t)bp_net_inputs(net);
    x->outputs = (size_t)bp_net_outputs(net);
    bp_status s = bp_norm_from_meta(&x->norm, net, err);
    if (s != BP_OK) return s;
    if ((s = bp_norm_targets_from_meta(&x->tnorm, net, err)) != BP_OK) {
        xnet_free(x);
        return s;
    }
    x->l = bp_alloc_array(x->L > 0 ? (size_t)x->L : 1, sizeof *x->l);
    if (!x->l) {
        xnet_free(x);
        return bp_fail(err, BP_ENOMEM, "bp_export_c: out of memory");
    }
    x->buf = x->inputs;
    bp_shape cur = x->in_shape;
    for (int i = 0; i < x->L; i++) {
        xlayer *l = &x->l[i];
        l->d = bp_net_layer(net, i);
        l->in = cur;
        l->out = cur = bp_net_layer_shape(net, i);
        l->in_n = bp_shape_size(l->in);
        l->out_n = bp_shape_size(l->out);
        if (l->out_n > x->buf) x->buf = l->out_n;
        if (l->d.kind == BP_CONV && l->d.stride == 1) {
            conv_geo g = conv_geometry(l);
            if (g.pad > x->cpad) x->cpad = g.pad;
            if ((size_t)g.Tn > x->cacc) x->cacc = (size_t)g.Tn;
        }
        int bad = 0, need = 0;
        size_t n1 = 0, n2 = 0, n3 = 0, n4 = 0;
        switch (l->d.kind) {
        case BP_DENSE:
        case BP_CONV:
            l->w = tensor_copy(net, i, "weight", &l->nw, &bad);
            l->b = tensor_copy(net, i, "bias", &l->nb, &bad);
            need = !l->w || !l->b;
            break;
        case BP_EMBEDDING:
            l->w = tensor_copy(net, i, "weight", &l->nw, &bad);
            need = !l->w;
            break;
        case BP_BATCHNORM: {
            double *g = tensor_copy(net, i, "weight", &n1, &bad);
            double *be = tensor_copy(net, i, "bias", &n2, &bad);
            double *m = tensor_copy(net, i, "running_mean", &n3, &bad);
            double *v = tensor_copy(net, i, "running_var", &n4, &bad);
            if (g && be && m && v && n1 == n2 && n2 == n3 && n3 == n4) {
                l->a = bp_alloc_array(n1, sizeof *l->a);
                l->b = bp_alloc_array(n1, sizeof *l->b);
                if (l->a && l->b)
                    for (size_t c = 0; c < n1; c++) {
                        l->a[c] = g[c] / sqrt(v[c] + BN_EPS);
                        l->b[c] = be[c] - m[c] * l->a[c];
                        if (!isfinite(l->a[c]) || !isfinite(l->b[c])) bad = 1;
                    }
                /* keep the running mean for folding: b = beta - mean a, so
                 * mean = (beta - b) / a is not needed; the fold uses a, b */
                l->nb = n1;
                l->nw = l->nw2 = n1;
                l->w = m;
                l->w2 = be;
                m = be = NULL;
            }
            free(g), free(be), free(m), free(v);
            need = !l->a || !l->b || !l->w || !l->w2;
            break;
        }
        case BP_RNN:
        case BP_LSTM:
        case BP_GRU: {
            int G = l->d.kind == BP_LSTM ? 4 : l->d.kind == BP_GRU ? 3 : 1;
            size_t H = (size_t)l->d.units;
            l->w = tensor_copy(net, i, "weight_ih_l0", &l->nw, &bad);
            l->w2 = tensor_copy(net, i, "weight_hh_l0", &l->nw2, &bad);
            l->b = tensor_copy(net, i, "bias_ih_l0", &l->nb, &bad);
            l->b2 = tensor_copy(net, i, "bias_hh_l0", &n1, &bad);
            need = !l->w || !l->w2 || !l->b || !l->b2;
            size_t t = 2 * G * H + (l->d.kind == BP_LSTM ? H : 0);
            if (t > x->tmp) x->tmp = t;
            break;
        }
        default:
            break;
        }
        if (need) {
            xnet_free(x);
            return bp_fail(err, BP_ENOMEM, "bp_export_c: out of memory (or the parameters "
                           "of layer %d (%s) missing)", i, kind_word(l->d.kind));
        }
        if (bad) {
            xnet_free(x);
            return bp_fail(err, BP_EFORMAT, "bp_export_c: layer %d (%s) holds a NaN or "
                           "infinite parameter", i, kind_word(l->d.kind));
        }
    }
    return BP_OK;
}

/* ------------------------------------------------------------------------ */
/* Float code                                                                */
/* ------------------------------------------------------------------------ */

static void shape_str(bp_shape s, char *buf, size_t n) { bp_shape_format(s, buf, n); }

static void layer_comment(sbuf *b, const xnet *x, int i)
{
    const xlayer *l = &x->l[i];
    char si[64], so[64];
    shape_str(l->in, si, sizeof si);
    shape_str(l->out, so, sizeof so);
    const char *w = kind_word(l->d.kind);
    switch (l->d.kind) {
    case BP_DENSE:
    case BP_RNN:
    case BP_LSTM:
    case BP_GRU:
        sb_printf(b, "    /* layer %d: %s(%d) %s -> %s */\n", i, w, l->d.units, si, so);
        break;
    case BP_EMBEDDING:
        sb_printf(b, "    /* layer %d: embedding(%d,%d) %s -> %s */\n", i, l->d.units,
                  l->d.vocab, si, so);
        break;
    case BP_CONV:
        sb_printf(b, "    /* layer %d: conv(%d,%d,%d,%d) %s -> %s */\n", i, l->d.units,
                  l->d.kernel, l->d.stride, l->d.pad, si, so);
        break;
    case BP_MAXPOOL:
    case BP_AVGPOOL:
        sb_printf(b, "    /* layer %d: %s(%d,%d) %s -> %s */\n", i, w, l->d.kernel,
                  l->d.stride, si, so);
        break;
    case BP_LEAKY_RELU:
    case BP_DROPOUT:
        sb_printf(b, "    /* layer %d: %s(%g) %s -> %s */\n", i, w, l->d.param, si, so);
        break;
    default:
        sb_printf(b, "    /* layer %d: %s %s -> %s */\n", i, w, si, so);
        break;
    }
}

/* Rows and width of an activation for the kinds that work on the last
 * dimension (dense, softmax): [F] is one row, [T, F] T rows. */
static void rows_of(bp_shape s, size_t n, int *rows, int *width)
{
    *width = s.rank ? s.dim[s.rank - 1] : (int)n;
    *rows = *width ? (int)(n / (size_t)*width) : 1;
}

typedef struct uses {
    int sigmoid, tanh_, exp_;
} uses;

static void gen_float_params(sbuf *b, const xnet *x, const char *name)
{
    char pre[96];
    if (x->norm.kind != BP_NORM_NONE) {
        double *v = bp_alloc_array(x->inputs, sizeof *v);
        if (!v) {
            b->oom = 1;
            return;
        }
        for (size_t k = 0; k < x->inputs; k++) v[k] = (double)x->norm.shift[k];
        sb_float_array(b, name, "_norm_shift", v, x->inputs, "input normalization: x' = (x - shift) * scale");
        for (size_t k = 0; k < x->inputs; k++) v[k] = (double)x->norm.scale[k];
        sb_float_array(b, name, "_norm_scale", v, x->inputs, "input normalization: scale");
        free(v);
    }
    for (int i = 0; i < x->L; i++) {
        const xlayer *l = &x->l[i];
        snprintf(pre, sizeof pre, "%s_l%d", name, i);
        char c[128];
        switch (l->d.kind) {
        case BP_DENSE:
            snprintf(c, sizeof c, "layer %d: dense weight [%d, %zu]", i, l->d.units,
                     l->nw / (size_t)l->d.units);
            sb_float_array(b, pre, "_w", l->w, l->nw, c);
            sb_float_array(b, pre, "_b", l->b, l->nb, "bias");
            break;
        case BP_CONV:
            snprintf(c, sizeof c, "layer %d: conv weight [%d, %d, %d, %d]", i, l->d.units,
                     l->in.dim[0], l->d.kernel, l->d.kernel);
            sb_float_array(b, pre, "_w", l->w, l->nw, c);
            sb_float_array(b, pre, "_b", l->b, l->nb, "bias");
            break;
        case BP_BATCHNORM:
            snprintf(c, sizeof c, "layer %d: batchnorm as y = (x - running_mean) a + beta, "
                     "a = gamma / sqrt(running_var + 1e-5)", i);
            sb_float_array(b, pre, "_a", l->a, l->nb, c);
            sb_float_array(b, pre, "_m", l->w, l->nb, "running_mean");
            sb_float_array(b, pre, "_b", l->w2, l->nb, "beta");
            break;
        case BP_EMBEDDING:
            snprintf(c, sizeof c, "layer %d: embedding weight [%d, %d]", i, l->d.vocab,
                     l->d.units);
            sb_float_array(b, pre, "_w", l->w, l->nw, c);
            break;
        case BP_RNN:
        case BP_LSTM:
        case BP_GRU:
            snprintf(c, sizeof c, "layer %d: %s weight_ih [%zu, %zu]", i, kind_word(l->d.kind),
                     l->nb, l->nw / l->nb);
            sb_float_array(b, pre, "_wih", l->w, l->nw, c);
            sb_float_array(b, pre, "_whh", l->w2, l->nw2, "weight_hh");
            sb_float_array(b, pre, "_bih", l->b, l->nb, "bias_ih");
            sb_float_array(b, pre, "_bhh", l->b2, l->nb, "bias_hh");
            break;
        default:
            break;
        }
    }
}

/* The loops of a conv up to the sum `s` of output (co, oy, ox), left open
 * for the caller's store: s = init + sum w x over the kernel's positions
 * inside the input (padding contributes nothing). With padding, an output
 * whose kernel lies wholly inside the input (most of them) takes loops
 * with constant bounds starting from init_full; one on the border takes
 * the kernel's rows and columns inside, from init, subtracting the int8
 * input zero point zin from x where given (the border's sum cannot fold it
 * into the bias). Without padding every output is of the first kind. */
static void gen_conv_loops(sbuf *b, const char *type, const char *init, const char *init_full,
                           int C, int H, int W, int CO, int OH, int OW, int K, int S, int P,
                           const char *p, char X, const char *zin)
{
    int q8 = strcmp(type, "float") != 0;
    const char *cast = q8 ? "(int32_t)" : "", *el = q8 ? "int8_t" : "float";
    sb_printf(b,
              "    for (int co = 0; co < %d; co++)\n"
              "        for (int oy = 0; oy < %d; oy++)\n"
              "            for (int ox = 0; ox < %d; ox++) {\n"
              "                int y0 = oy * %d - %d, x0 = ox * %d - %d;\n",
              CO, OH, OW, S, P, S, P);
    const char *ind = "                ";
    if (P > 0) {
        sb_printf(b,
                  "                int ky0 = y0 < 0 ? -y0 : 0, ky1 = y0 + %d > %d ? %d - y0 : %d;\n"
                  "                int kx0 = x0 < 0 ? -x0 : 0, kx1 = x0 + %d > %d ? %d - x0 : %d;\n"
                  "                %s s;\n"
                  "                if (ky0 == 0 && ky1 == %d && kx0 == 0 && kx1 == %d) {\n",
                  K, H, H, K, K, W, W, K, type, K, K);
        ind = "                    ";
        sb_printf(b, "%ss = %s;\n", ind, init_full);
    } else {
        sb_printf(b, "%s%s s = %s;\n", ind, type, init_full);
    }
    sb_printf(b,
              "%sfor (int ci = 0; ci < %d; ci++)\n"
              "%s    for (int ky = 0; ky < %d; ky++) {\n"
              "%s        const %s *w = %s_w + ((co * %d + ci) * %d + ky) * %d;\n"
              "%s        const %s *v = %c + (ci * %d + y0 + ky) * %d + x0;\n"
              "%s        for (int kx = 0; kx < %d; kx++) s += %sw[kx] * %sv[kx];\n"
              "%s    }\n",
              ind, C, ind, K, ind, el, p, C, K, K, ind, el, X, H, W, ind, K, cast, cast, ind);
    if (P == 0) return;
    sb_printf(b,
              "                } else {\n"
              "                    s = %s;\n"
              "                    for (int ci = 0; ci < %d; ci++)\n"
              "                        for (int ky = ky0; ky < ky1 && kx0 < kx1; ky++) {\n"
              "                            const %s *w = %s_w + ((co * %d + ci) * %d + ky) * %d;\n"
              "                            const %s *v = %c + (ci * %d + y0 + ky) * %d + x0 + kx0;\n"
              "                            for (int kx = kx0; kx < kx1; kx++, v++) s += %sw[kx] * ",
              init, C, el, p, C, K, K, el, X, H, W, cast);
    if (zin) sb_printf(b, "((int32_t)*v - (%s));\n", zin);
    else sb_printf(b, "%s*v;\n", cast);
    sb_printf(b, "                        }\n"
              "                }\n");
}

/* A stride-1 conv (see conv_geometry) up to the accumulated plane of
 * output channel co in cacc, left open for the caller's store of
 * cacc[oy * Wp + ox] (two braces to close). q8: int8 codes, the padding
 * being the input zero point padv (the real 0), so every window sums
 * w x over all its taps and the bias with the zero point folded in
 * (b - z sum w) is exact for the windows over the padding too; float:
 * padv 0.0f. */
static void gen_conv_s1(sbuf *b, int q8, const xlayer *l, const char *p, char X,
                        const char *padv, const char *bias)
{
    int C = l->in.dim[0], H = l->in.dim[1], W = l->in.dim[2];
    int CO = l->out.dim[0], OH = l->out.dim[1], OW = l->out.dim[2];
    int K = l->d.kernel, P = l->d.pad;
    conv_geo g = conv_geometry(l);
    const char *el = q8 ? "int8_t" : "float", *wt = q8 ? "int32_t" : "float";
    const char *ind = "            ";
    if (P > 0)
        sb_printf(b, "    /* one input channel at a time, zero-padded to %d x %d */\n"
                  "    for (int k = 0; k < %zu; k++) cpad[k] = %s;\n",
                  g.Hp, g.Wp, g.pad, padv);
    sb_printf(b,
              "    /* each output channel: its bias, plus each tap times the input shifted, "
              "in rows of %d */\n"
              "    for (int co = 0; co < %d; co++) {\n"
              "        for (int k = 0; k < %d; k++) cacc[k] = %s;\n",
              g.Wp, CO, g.Tn, bias);
    if (P > 0) {
        sb_printf(b,
                  "        for (int ci = 0; ci < %d; ci++) {\n"
                  "            for (int y = 0; y < %d; y++)\n"
                  "                for (int x = 0; x < %d; x++)\n"
                  "                    cpad[(y + %d) * %d + x + %d] = %c[(ci * %d + y) * %d + x];\n",
                  C, H, W, P, g.Wp, P, X, H, W);
    } else {
        sb_printf(b, "        for (int ci = 0; ci < %d; ci++) {\n", C);
    }
    char src[32];
    if (P > 0) snprintf(src, sizeof src, "cpad");
    else snprintf(src, sizeof src, "%c + ci * %d", X, H * W);
    sb_printf(b,
              "%sfor (int ky = 0; ky < %d; ky++)\n"
              "%s    for (int kx = 0; kx < %d; kx++) {\n"
              "%s        const %s *v = %s + ky * %d + kx;\n"
              "%s        %s w = %s_w[((co * %d + ci) * %d + ky) * %d + kx];\n",
              ind, K, ind, K, ind, el, src, g.Wp, ind, wt, p, C, K, K);
    if (g.Tv > 0)
        sb_printf(b, "%s        for (int k = 0; k < %d; k++) cacc[k] += w * v[k];\n", ind, g.Tv);
    if (g.Tv < g.Tn)
        sb_printf(b, "%s        for (int k = %d; k < %d; k++) cacc[k] += w * v[k];\n", ind, g.Tv,
                  g.Tn);
    sb_printf(b,
              "%s    }\n"
              "        }\n"
              "        for (int oy = 0; oy < %d; oy++)\n"
              "            for (int ox = 0; ox < %d; ox++) {\n",
              ind, OH, OW);
}

/* Emit layer i reading buffer X and writing Y (or X in place); returns 1
 * when the output is in Y (the buffers swap), 0 when in X. */
static int gen_float_layer(sbuf *b, const xnet *x, int i, const char *name, char X, char Y,
                           uses *u)
{
    const xlayer *l = &x->l[i];
    char p[96];
    snprintf(p, sizeof p, "%s_l%d", name, i);
    int rows, F;
    layer_comment(b, x, i);
    switch (l->d.kind) {
    case BP_DENSE: {
        rows_of(l->in, l->in_n, &rows, &F);
        int N = l->d.units;
        sb_printf(b,
                  "    for (int r = 0; r < %d; r++)\n"
                  "        for (int o = 0; o < %d; o++) {\n"
                  "            const float *w = %s_w + o * %d;\n"
                  "            const float *v = %c + r * %d;\n"
                  "            float s = 0.0f;\n"
                  "            for (int i = 0; i < %d; i++) s += w[i] * v[i];\n"
                  "            %c[r * %d + o] = s + %s_b[o];\n"
                  "        }\n",
                  rows, N, p, F, X, F, F, Y, N, p);
        return 1;
    }
    case BP_CONV: {
        int C = l->in.dim[0], H = l->in.dim[1], W = l->in.dim[2];
        int CO = l->out.dim[0], OH = l->out.dim[1], OW = l->out.dim[2];
        int K = l->d.kernel, S = l->d.stride, P = l->d.pad;
        if (S == 1) {
            char bias[128];
            snprintf(bias, sizeof bias, "%s_b[co]", p);
            gen_conv_s1(b, 0, l, p, X, "0.0f", bias);
            sb_printf(b, "                %c[(co * %d + oy) * %d + ox] = cacc[oy * %d + ox];\n"
                      "            }\n    }\n", Y, OH, OW, conv_geometry(l).Wp);
            return 1;
        }
        gen_conv_loops(b, "float", "0.0f", "0.0f", C, H, W, CO, OH, OW, K, S, P, p, X, NULL);
        sb_printf(b, "                %c[(co * %d + oy) * %d + ox] = s + %s_b[co];\n"
                  "            }\n", Y, OH, OW, p);
        return 1;
    }
    case BP_BATCHNORM: {
        int C = l->in.dim[0];
        size_t S = l->in_n / (size_t)C;
        sb_printf(b,
                  "    for (int c = 0; c < %d; c++)\n"
                  "        for (int k = 0; k < %zu; k++)\n"
                  "            %c[c * %zu + k] = (%c[c * %zu + k] - %s_m[c]) * %s_a[c] + %s_b[c];\n",
                  C, S, X, S, X, S, p, p, p);
        return 0;
    }
    case BP_SIGMOID:
        u->sigmoid = 1;
        sb_printf(b, "    for (int k = 0; k < %zu; k++) %c[k] = %s_sigmoid(%c[k]);\n", l->in_n, X,
                  name, X);
        return 0;
    case BP_TANH:
        sb_printf(b, "    for (int k = 0; k < %zu; k++) %c[k] = tanhf(%c[k]);\n", l->in_n, X, X);
        return 0;
    case BP_RELU:
        sb_printf(b, "    for (int k = 0; k < %zu; k++) %c[k] = %c[k] > 0.0f ? %c[k] : 0.0f;\n",
                  l->in_n, X, X, X);
        return 0;
    case BP_LEAKY_RELU:
        sb_printf(b, "    for (int k = 0; k < %zu; k++) %c[k] = %c[k] > 0.0f ? %c[k] : ", l->in_n,
                  X, X, X);
        sb_float(b, l->d.param);
        sb_printf(b, " * %c[k];\n", X);
        return 0;
    case BP_SOFTMAX:
        rows_of(l->in, l->in_n, &rows, &F);
        sb_printf(b,
                  "    for (int r = 0; r < %d; r++) {\n"
                  "        float *v = %c + r * %d, m = v[0], s = 0.0f;\n"
                  "        for (int j = 1; j < %d; j++) m = v[j] > m ? v[j] : m;\n"
                  "        for (int j = 0; j < %d; j++) s += v[j] = expf(v[j] - m);\n"
                  "        for (int j = 0; j < %d; j++) v[j] *= 1.0f / s;\n"
                  "    }\n",
                  rows, X, F, F, F, F);
        return 0;
    case BP_MAXPOOL:
    case BP_AVGPOOL: {
        int C = l->in.dim[0], H = l->in.dim[1], W = l->in.dim[2];
        int OH = l->out.dim[1], OW = l->out.dim[2], K = l->d.kernel, S = l->d.stride;
        int mx = l->d.kind == BP_MAXPOOL;
        sb_printf(b,
                  "    for (int c = 0; c < %d; c++)\n"
                  "        for (int oy = 0; oy < %d; oy++)\n"
                  "            for (int ox = 0; ox < %d; ox++) {\n"
                  "                const float *v = %c + (c * %d + oy * %d) * %d + ox * %d;\n"
                  "                float s = %s;\n"
                  "                for (int ky = 0; ky < %d; ky++)\n"
                  "                    for (int kx = 0; kx < %d; kx++)\n",
                  C, OH, OW, X, H, S, W, S, mx ? "v[0]" : "0.0f", K, K);
        if (mx)
            sb_printf(b, "                        s = v[ky * %d + kx] > s ? v[ky * %d + kx] : s;\n"
                      "                %c[(c * %d + oy) * %d + ox] = s;\n", W, W, Y, OH, OW);
        else
            sb_printf(b, "                        s += v[ky * %d + kx];\n"
                      "                %c[(c * %d + oy) * %d + ox] = s / %d.0f;\n", W, Y, OH, OW,
                      K * K);
        sb_printf(b, "            }\n");
        return 1;
    }
    case BP_GLOBAL_AVGPOOL: {
        int C = l->in.dim[0];
        size_t S = l->in_n / (size_t)C;
        sb_printf(b,
                  "    for (int c = 0; c < %d; c++) {\n"
                  "        float s = 0.0f;\n"
                  "        for (int k = 0; k < %zu; k++) s += %c[c * %zu + k];\n"
                  "        %c[c] = s / %zu.0f;\n"
                  "    }\n",
                  C, S, X, S, Y, S);
        return 1;
    }
    case BP_LAST: {
        int T = l->in.dim[0], Fd = l->in.dim[1];
        sb_printf(b, "    for (int j = 0; j < %d; j++) %c[j] = %c[%d + j];\n", Fd, Y, X,
                  (T - 1) * Fd);
        return 1;
    }
    case BP_EMBEDDING: {
        int T = (int)l->in_n, D = l->d.units, V = l->d.vocab;
        sb_printf(b,
                  "    for (int t = 0; t < %d; t++) {\n"
                  "        float v = %c[t];\n"
                  "        int id = v >= 0.0f && v < %d.0f ? (int)v : -1;\n"
                  "        if (id < 0 || (float)id != v) { /* not a token id: NaN, as the library */\n"
                  "            for (int d = 0; d < %d; d++) %c[t * %d + d] = NAN;\n"
                  "            continue;\n"
                  "        }\n"
                  "        for (int d = 0; d < %d; d++) %c[t * %d + d] = %s_w[id * %d + d];\n"
                  "    }\n",
                  T, X, V, D, Y, D, D, Y, D, p, D);
        return 1;
    }
    case BP_RNN:
    case BP_LSTM:
    case BP_GRU: {
        int T = l->in.dim[0], Fi = l->in.dim[1], H = l->d.units;
        int G = l->d.kind == BP_LSTM ? 4 : l->d.kind == BP_GRU ? 3 : 1;
        u->sigmoid |= l->d.kind != BP_RNN;
        /* t[0, GH): W_ih x_t + b_ih; t[GH, 2GH): W_hh h + b_hh; LSTM c after */
        if (l->d.kind == BP_LSTM)
            sb_printf(b, "    for (int j = 0; j < %d; j++) t[%d + j] = 0.0f;\n", H, 2 * G * H);
        sb_printf(b,
                  "    for (int s = 0; s < %d; s++) {\n"
                  "        const float *xs = %c + s * %d;\n"
                  "        const float *hp = s > 0 ? %c + (s - 1) * %d : 0;\n"
                  "        float *h = %c + s * %d;\n"
                  "        for (int j = 0; j < %d; j++) {\n"
                  "            const float *w = %s_wih + j * %d, *u = %s_whh + j * %d;\n"
                  "            float gi = 0.0f, gh = 0.0f;\n"
                  "            for (int i = 0; i < %d; i++) gi += w[i] * xs[i];\n"
                  "            if (hp)\n"
                  "                for (int i = 0; i < %d; i++) gh += u[i] * hp[i];\n"
                  "            t[j] = gi + %s_bih[j];\n"
                  "            t[%d + j] = gh + %s_bhh[j];\n"
                  "        }\n",
                  T, X, Fi, Y, H, Y, H, G * H, p, Fi, p, H, Fi, H, p, G * H, p);
        const char *hprev = "(hp ? hp[j] : 0.0f)";
        if (l->d.kind == BP_RNN)
            sb_printf(b, "        for (int j = 0; j < %d; j++) h[j] = tanhf(t[j] + t[%d + j]);\n",
                      H, H);
        else if (l->d.kind == BP_LSTM)
            sb_printf(b,
                      "        for (int j = 0; j < %d; j++) {\n"
                      "            float ig = %s_sigmoid(t[j] + t[%d + j]);\n"
                      "            float fg = %s_sigmoid(t[%d + j] + t[%d + j]);\n"
                      "            float gg = tanhf(t[%d + j] + t[%d + j]);\n"
                      "            float og = %s_sigmoid(t[%d + j] + t[%d + j]);\n"
                      "            float c = fg * t[%d + j] + ig * gg;\n"
                      "            t[%d + j] = c;\n"
                      "            h[j] = og * tanhf(c);\n"
                      "        }\n",
                      H, name, 4 * H, name, H, 5 * H, 2 * H, 6 * H, name, 3 * H, 7 * H, 8 * H,
                      8 * H);
        else
            sb_printf(b,
                      "        for (int j = 0; j < %d; j++) {\n"
                      "            float r = %s_sigmoid(t[j] + t[%d + j]);\n"
                      "            float z = %s_sigmoid(t[%d + j] + t[%d + j]);\n"
                      "            float n = tanhf(t[%d + j] + r * t[%d + j]);\n"
                      "            h[j] = (1.0f - z) * n + z * %s;\n"
                      "        }\n",
                      H, name, 3 * H, name, H, 4 * H, 2 * H, 5 * H, hprev);
        sb_printf(b, "    }\n");
        return 1;
    }
    case BP_IDENTITY:
    case BP_DROPOUT:
    case BP_FLATTEN:
    default:
        sb_printf(b, "    /* (nothing to compute) */\n");
        return 0;
    }
}

static void gen_output(sbuf *b, const xnet *x, const char *name, char X)
{
    if (x->tnorm.kind == BP_NORM_NONE) {
        sb_printf(b, "    for (int j = 0; j < %zu; j++) out[j] = %c[j];\n", x->outputs, X);
        return;
    }
    sb_printf(b, "    /* regression targets back in their units: y / scale + shift */\n");
    for (size_t j = 0; j < x->outputs; j++) {
        sb_printf(b, "    out[%zu] = (float)((double)%c[%zu] / ", j, X, j);
        sb_double(b, (double)x->tnorm.scale[j]);
        sb_printf(b, " + ");
        sb_double(b, (double)x->tnorm.shift[j]);
        sb_printf(b, ");\n");
    }
}

static void gen_float_predict(sbuf *b, const xnet *x, const char *name)
{
    sbuf body = {0};
    uses u = {0};
    char X = 'a', Y = 'b';
    for (int i = 0; i < x->L; i++)
        if (gen_float_layer(&body, x, i, name, X, Y, &u)) {
            char t = X;
            X = Y;
            Y = t;
        }
    gen_output(&body, x, name, X);
    b->inf |= body.inf;
    if (body.oom) {
        b->oom = 1;
        free(body.p);
        return;
    }
    if (u.sigmoid)
        sb_printf(b, "static float %s_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }\n\n",
                  name);
    sb_printf(b,
              "void %s_predict(const float *in, float *out)\n"
              "{\n"
              "    float a[%s_BUF], b[%s_BUF];\n",
              name, name, name);
    if (x->tmp) sb_printf(b, "    float t[%zu];\n", x->tmp);
    if (x->cpad) sb_printf(b, "    float cpad[%zu];\n", x->cpad);
    if (x->cacc) sb_printf(b, "    float cacc[%zu];\n", x->cacc);
    if (x->norm.kind != BP_NORM_NONE)
        sb_printf(b, "    for (int k = 0; k < %zu; k++) a[k] = (in[k] - %s_norm_shift[k]) * "
                  "%s_norm_scale[k];\n", x->inputs, name, name);
    else
        sb_printf(b, "    for (int k = 0; k < %zu; k++) a[k] = in[k];\n", x->inputs);
    sb_printf(b, "%s", body.p ? body.p : "");
    sb_printf(b, "    (void)b;\n}\n");
    free(body.p);
}

/* ------------------------------------------------------------------------ */
/* Int8: calibration                                                         */
/* ------------------------------------------------------------------------ */

static int int8_kind_ok(const xnet *x, int i)
{
    switch (x->l[i].d.kind) {
    case BP_DENSE:
    case BP_CONV:
    case BP_IDENTITY:
    case BP_DROPOUT:
    case BP_FLATTEN:
    case BP_RELU:
    case BP_LEAKY_RELU:
    case BP_SIGMOID:
    case BP_TANH:
    case BP_MAXPOOL:
    case BP_AVGPOOL:
    case BP_GLOBAL_AVGPOOL:
        return 1;
    case BP_SOFTMAX:
        return i == x->L - 1;
    case BP_BATCHNORM: {
        int j = i - 1;
        return j >= 0 && (x->l[j].d.kind == BP_DENSE || x->l[j].d.kind == BP_CONV);
    }
    default:
        return 0;
    }
}

/* One layer of the float network in double (the int8 kinds only), x -> y
 * (elementwise ones in place: y == x allowed for them). Mirrors the
 * generated float code. */
static void ref_layer(const xlayer *l, const double *x, double *y)
{
    switch (l->d.kind) {
    case BP_DENSE: {
        int rows, F, N = l->d.units;
        rows_of(l->in, l->in_n, &rows, &F);
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < N; o++) {
                double s = l->b[o];
                for (int i = 0; i < F; i++) s += l->w[(size_t)o * F + i] * x[(size_t)r * F + i];
                y[(size_t)r * N + o] = s;
            }
        break;
    }
    case BP_CONV: {
        int C = l->in.dim[0], H = l->in.dim[1], W = l->in.dim[2];
        int CO = l->out.dim[0], OH = l->out.dim[1], OW = l->out.dim[2];
        int K = l->d.kernel, S = l->d.stride, P = l->d.pad;
        for (int co = 0; co < CO; co++)
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    double s = l->b[co];
                    for (int ci = 0; ci < C; ci++)
                        for (int ky = 0; ky < K; ky++) {
                            int iy = oy * S - P + ky;
                            if (iy < 0 || iy >= H) continue;
                            for (int kx = 0; kx < K; kx++) {
                                int ix = ox * S - P + kx;
                                if (ix < 0 || ix >= W) continue;
                                s += l->w[(((size_t)co * C + ci) * K + ky) * K + kx] *
                                     x[((size_t)ci * H + iy) * W + ix];
                            }
                        }
                    y[((size_t)co * OH + oy) * OW + ox] = s;
                }
        break;
    }
    case BP_BATCHNORM: {
        int C = l->in.dim[0];
        size_t S = l->in_n / (size_t)C;
        for (int c = 0; c < C; c++)
            for (size_t k = 0; k < S; k++) y[c * S + k] = x[c * S + k] * l->a[c] + l->b[c];
        break;
    }
    case BP_RELU:
        for (size_t k = 0; k < l->in_n; k++) y[k] = x[k] > 0 ? x[k] : 0;
        break;
    case BP_LEAKY_RELU:
        for (size_t k = 0; k < l->in_n; k++) y[k] = x[k] > 0 ? x[k] : l->d.param * x[k];
        break;
    case BP_SIGMOID:
        for (size_t k = 0; k < l->in_n; k++) y[k] = 1 / (1 + exp(-x[k]));
        break;
    case BP_TANH:
        for (size_t k = 0; k < l->in_n; k++) y[k] = tanh(x[k]);
        break;
    case BP_SOFTMAX: {
        int rows, F;
        rows_of(l->in, l->in_n, &rows, &F);
        for (int r = 0; r < rows; r++) {
            const double *v = x + (size_t)r * F;
            double *o = y + (size_t)r * F, m = v[0], s = 0;
            for (int j = 1; j < F; j++) m = v[j] > m ? v[j] : m;
            for (int j = 0; j < F; j++) s += o[j] = exp(v[j] - m);
            for (int j = 0; j < F; j++) o[j] /= s;
        }
        break;
    }
    case BP_MAXPOOL:
    case BP_AVGPOOL: {
        int C = l->in.dim[0], H = l->in.dim[1], W = l->in.dim[2];
        int OH = l->out.dim[1], OW = l->out.dim[2], K = l->d.kernel, S = l->d.stride;
        for (int c = 0; c < C; c++)
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    const double *v = x + ((size_t)c * H + (size_t)oy * S) * W + (size_t)ox * S;
                    double s = l->d.kind == BP_MAXPOOL ? v[0] : 0;
                    for (int ky = 0; ky < K; ky++)
                        for (int kx = 0; kx < K; kx++) {
                            double e = v[(size_t)ky * W + kx];
                            s = l->d.kind == BP_MAXPOOL ? (e > s ? e : s) : s + e;
                        }
                    y[((size_t)c * OH + oy) * OW + ox] =
                        l->d.kind == BP_MAXPOOL ? s : s / (K * K);
                }
        break;
    }
    case BP_GLOBAL_AVGPOOL: {
        int C = l->in.dim[0];
        size_t S = l->in_n / (size_t)C;
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (size_t k = 0; k < S; k++) s += x[c * S + k];
            y[c] = s / (double)S;
        }
        break;
    }
    default: /* identity, dropout, flatten */
        if (y != x) memcpy(y, x, l->in_n * sizeof *y);
        break;
    }
}

/* lo[k], hi[k]: range of tensor k (0: the normalized input, i + 1: layer
 * i's output) over the calibration rows. */
static bp_status calibrate(const xnet *x, const bp_real *calib, int n, double *lo, double *hi,
                           bp_error *err)
{
    double *A = bp_alloc_array(x->buf, sizeof *A), *B = bp_alloc_array(x->buf, sizeof *B);
    if (!A || !B) {
        free(A), free(B);
        return bp_fail(err, BP_ENOMEM, "bp_export_c: out of memory");
    }
    for (int k = 0; k <= x->L; k++) lo[k] = INFINITY, hi[k] = -INFINITY;
    for (int r = 0; r < n; r++) {
        const bp_real *row = calib + (size_t)r * x->inputs;
        for (size_t j = 0; j < x->inputs; j++) {
            double v = (double)row[j];
            if (x->norm.kind != BP_NORM_NONE)
                v = (double)(float)(((float)row[j] - (float)x->norm.shift[j]) *
                                    (float)x->norm.scale[j]);
            A[j] = v;
            if (v < lo[0]) lo[0] = v;
            if (v > hi[0]) hi[0] = v;
        }
        double *cur = A, *oth = B;
        for (int i = 0; i < x->L; i++) {
            const xlayer *l = &x->l[i];
            ref_layer(l, cur, oth);
            double *t = cur;
            cur = oth, oth = t;
            for (size_t k = 0; k < l->out_n; k++) {
                if (cur[k] < lo[i + 1]) lo[i + 1] = cur[k];
                if (cur[k] > hi[i + 1]) hi[i + 1] = cur[k];
            }
        }
    }
    free(A), free(B);
    for (int k = 0; k <= x->L; k++)
        if (!isfinite(lo[k]) || !isfinite(hi[k]))
            return bp_fail(err, BP_EINVAL, "bp_export_c: int8: the calibration rows make %s%d "
                           "non-finite", k ? "the output of layer " : "the input", k ? k - 1 : 0);
    return BP_OK;
}

/* ------------------------------------------------------------------------ */
/* Int8: quantization and code                                               */
/* ------------------------------------------------------------------------ */

typedef struct qparam {
    double s;
    int z;
} qparam;

/* Asymmetric int8 parameters covering [lo, hi] widened to include 0. */
static qparam qparam_of(double lo, double hi)
{
    if (lo > 0) lo = 0;
    if (hi < 0) hi = 0;
    qparam q;
    if (hi - lo < 1e-30) {
        q.s = 1.0 / 255, q.z = -128;
        return q;
    }
    q.s = (hi - lo) / 255;
    double z = -128 - lo / q.s;
    q.z = (int)lround(z);
    if (q.z < -128) q.z = -128;
    if (q.z > 127) q.z = 127;
    return q;
}

static int clamp_int(long v, long lo, long hi) { return (int)(v < lo ? lo : v > hi ? hi : v); }

/* real multiplier m > 0 as q * 2^(shift - 31), q in [2^30, 2^31) (TFLite's
 * QuantizeMultiplier). */
static void quantize_multiplier(double m, long *q, long *shift)
{
    if (!(m > 0)) {
        *q = 0, *shift = 0;
        return;
    }
    int e;
    double f = frexp(m, &e);
    long long qf = llround(f * 2147483648.0);
    if (qf == 2147483648LL) qf /= 2, e++;
    if (e < -31) qf = 0, e = 0;
    if (e > 30) qf = 2147483647LL, e = 30;
    *q = (long)qf, *shift = e;
}

/* The 256-entry table of an elementwise op: input code c (index c + 128)
 * to output code. */
static void make_lut(long *lut, bp_layer_kind k, double param, qparam in, qparam out)
{
    for (int c = -128; c < 128; c++) {
        double v = in.s * (c - in.z), y;
        switch (k) {
        case BP_RELU: y = v > 0 ? v : 0; break;
        case BP_LEAKY_RELU: y = v > 0 ? v : param * v; break;
        case BP_SIGMOID: y = 1 / (1 + exp(-v)); break;
        default: y = tanh(v); break;
        }
        lut[c + 128] = clamp_int(lround(y / out.s) + out.z, -128, 127);
    }
}

static const char *q8_helpers =
    "/* x * 2^shift / 2^31 with m: acc * m * 2^(shift - 31), rounded as gemmlowp's\n"
    " * SaturatingRoundingDoublingHighMul then RoundingDivideByPOT (TFLite's\n"
    " * MultiplyByQuantizedMultiplier). */\n"
    "static inline int32_t NAME_rq(int32_t acc, int32_t m, int shift)\n"
    "{\n"
    "    int64_t v = acc;\n"
    "    int32_t a, r;\n"
    "    int64_t ab;\n"
    "    if (shift > 0) {\n"
    "        v *= (int64_t)1 << shift;\n"
    "        if (v > INT32_MAX) v = INT32_MAX;\n"
    "        if (v < INT32_MIN) v = INT32_MIN;\n"
    "    }\n"
    "    a = (int32_t)v;\n"
    "    if (a == INT32_MIN && m == INT32_MIN) return INT32_MAX;\n"
    "    ab = (int64_t)a * m;\n"
    "    r = (int32_t)((ab + (ab >= 0 ? ((int64_t)1 << 30) : 1 - ((int64_t)1 << 30))) /\n"
    "                  ((int64_t)1 << 31));\n"
    "    if (shift < 0) {\n"
    "        int e = -shift;\n"
    "        int32_t mask = (int32_t)(((int64_t)1 << e) - 1);\n"
    "        int32_t rem = r & mask, th = (mask >> 1) + (r < 0 ? 1 : 0);\n"
    "        /* floor(r / 2^e) without shifting a negative value */\n"
    "        int32_t q = r >= 0 ? r >> e : -((-(r + 1)) >> e) - 1;\n"
    "        r = q + (rem > th ? 1 : 0);\n"
    "    }\n"
    "    /* far outside int8 either way: the caller adds a zero point */\n"
    "    return r > 65536 ? 65536 : r < -65536 ? -65536 : r;\n"
    "}\n\n";

static const char *q8_quant =
    "/* float -> int8 code: round(v / s) + z, saturated */\n"
    "static int8_t NAME_quantize(float v, float inv_s, int z)\n"
    "{\n"
    "    float f = v * inv_s + (float)z;\n"
    "    if (!(f > -128.0f)) return -128; /* NaN too */\n"
    "    if (f > 127.0f) return 127;\n"
    "    return (int8_t)(f >= 0.0f ? (int)(f + 0.5f) : -(int)(-f + 0.5f));\n"
    "}\n\n";

static const char *q8_exp =
    "/* exp(v) for v <= 0, without libm: v = k ln2 + r, |r| <= ln2/2, a degree-7\n"
    " * Taylor polynomial for e^r (relative error < 3e-7), 2^k from the exponent bits. */\n"
    "static float NAME_exp(float v)\n"
    "{\n"
    "    union { float f; uint32_t u; } p2;\n"
    "    float kf, r, e;\n"
    "    int k;\n"
    "    if (v < -87.0f) return 0.0f;\n"
    "    kf = v * 1.44269504f;\n"
    "    k = (int)(kf - 0.5f);\n"
    "    r = (v - (float)k * 0.693145752f) - (float)k * 1.42860677e-06f;\n"
    "    e = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +\n"
    "        r * (1.0f / 720 + r * (1.0f / 5040)))))));\n"
    "    p2.u = (uint32_t)(k + 127) << 23;\n"
    "    return e * p2.f;\n"
    "}\n\n";

static void sb_template(sbuf *b, const char *t, const char *name)
{
    for (const char *p = t; *p;) {
        const char *q = strstr(p, "NAME");
        if (!q) {
            sb_printf(b, "%s", p);
            break;
        }
        sb_printf(b, "%.*s%s", (int)(q - p), p, name);
        p = q + 4;
    }
}

/* Generate the int8 parameters (into P) and NAME_predict_int8 (into F). */
static bp_status gen_int8(sbuf *P, sbuf *F, const xnet *x, const char *name, const double *lo,
                          const double *hi, bp_error *err)
{
    qparam cur = qparam_of(lo[0], hi[0]);
    sbuf body = {0};
    char X = 'a', Y = 'b';
    int need_rq = 0, need_exp = 0;
    long *lut = malloc(256 * sizeof *lut);
    if (!lut) return bp_fail(err, BP_ENOMEM, "bp_export_c: out of memory");
    {
        char si[64];
        shape_str(x->in_shape, si, sizeof si);
        sb_printf(&body, "    /* input %s: s = %.9g, z = %d */\n", si, cur.s, cur.z);
    }
    if (x->norm.kind != BP_NORM_NONE)
        sb_printf(&body, "    for (int k = 0; k < %zu; k++)\n"
                  "        a[k] = %s_quantize((in[k] - %s_norm_shift[k]) * %s_norm_scale[k], ",
                  x->inputs, name, name, name);
    else
        sb_printf(&body, "    for (int k = 0; k < %zu; k++)\n        a[k] = %s_quantize(in[k], ",
                  x->inputs, name);
    sb_float(&body, 1 / cur.s);
    sb_printf(&body, ", %d);\n", cur.z);

    bp_status st = BP_OK;
    int softmax_last = 0;
    for (int i = 0; i < x->L && st == BP_OK; i++) {
        const xlayer *l = &x->l[i];
        char p[96];
        snprintf(p, sizeof p, "%s_q%d", name, i);
        bp_layer_kind k = l->d.kind;
        if (k == BP_DENSE || k == BP_CONV) {
            int j = i + 1;
            const xlayer *bn = NULL;
            int relu = 0;
            if (j < x->L && x->l[j].d.kind == BP_BATCHNORM) bn = &x->l[j++];
            if (j < x->L && x->l[j].d.kind == BP_RELU) relu = 1, j++;
            int last = j - 1; /* the layer whose output this op produces */
            qparam out = qparam_of(lo[last + 1], hi[last + 1]);
            int N = k == BP_DENSE ? l->d.units : l->out.dim[0];
            size_t per = l->nw / (size_t)N;
            long *wq = malloc(l->nw * sizeof *wq);
            long *bq = malloc((size_t)N * sizeof *bq), *mq = malloc((size_t)N * sizeof *mq);
            long *bu = malloc((size_t)N * sizeof *bu);
            long *sh = malloc((size_t)N * sizeof *sh);
            if (!wq || !bq || !mq || !sh || !bu) {
                free(wq), free(bq), free(mq), free(sh), free(bu);
                st = bp_fail(err, BP_ENOMEM, "bp_export_c: out of memory");
                break;
            }
            /* windows over the padding, in the loops of a conv of stride > 1 */
            int border = k == BP_CONV && l->d.pad > 0 && l->d.stride > 1;
            for (int o = 0; o < N; o++) {
                double ga = bn ? bn->a[o] : 1, bb = l->b[o] * ga + (bn ? bn->b[o] : 0);
                double m = 0;
                for (size_t q = 0; q < per; q++) {
                    double v = fabs(l->w[o * per + q] * ga);
                    if (v > m) m = v;
                }
                double sw = m > 0 ? m / 127 : 1;
                /* The bias code b / (s_in s_w) must stay far inside int32
                 * (|b| < 2^30 codes): a tiny input scale (an almost dead
                 * relu) or weight scale would overflow it. Raise s_w then,
                 * as TFLite does: the weights lose precision that cannot
                 * matter next to such a bias. */
                double smin = fabs(bb) / (cur.s * 1073741824.0);
                if (sw < smin) sw = smin;
                long sum = 0, asum = 0;
                for (size_t q = 0; q < per; q++) {
                    long c = clamp_int(lround(l->w[o * per + q] * ga / sw), -127, 127);
                    wq[o * per + q] = c;
                    sum += c;
                    asum += labs(c);
                }
                long bqi = lround(bb / (cur.s * sw));
                bu[o] = bqi;
                /* sum w (x - z) = sum w x - z sum w */
                long long t = (long long)bqi - (long long)cur.z * sum;
                /* The sums must fit int32 for any input: |v| <= 128 inside,
                 * |v - z| <= 255 over a padding. */
                long long bound = (llabs(t) > llabs(bqi) ? llabs(t) : llabs(bqi)) +
                                  255LL * (long long)asum;
                if (bound > 2147483647LL) {
                    st = bp_fail(err, BP_EUNSUPPORTED, "bp_export_c: int8: layer %d (%s): the "
                                 "int32 sums of channel %d could overflow (%zu inputs a "
                                 "channel); export it in float", i, kind_word(k), o, per);
                    break;
                }
                bq[o] = (long)t;
                quantize_multiplier(cur.s * sw / out.s, &mq[o], &sh[o]);
            }
            if (st != BP_OK) {
                free(wq), free(bq), free(mq), free(sh), free(bu);
                break;
            }
            sb_printf(P, "/* layer %d: %s%s%s, int8 weights per output channel [%d, %zu] */\n",
                      i, kind_word(k), bn ? " + batchnorm (folded)" : "", relu ? " + relu" : "",
                      N, per);
            sb_int_array(P, "int8_t", p, "_w", wq, l->nw, 24);
            sb_printf(P, "/* int32 biases (scale s_in s_w), the input zero point folded in: "
                      "b - z_in sum w */\n");
            sb_int_array(P, "int32_t", p, "_b", bq, (size_t)N, 8);
            if (border) {
                sb_printf(P, "/* the same without the zero point, for windows over the padding */\n");
                sb_int_array(P, "int32_t", p, "_bu", bu, (size_t)N, 8);
            }
            sb_printf(P, "/* requantization: Q31 multipliers and shifts */\n");
            sb_int_array(P, "int32_t", p, "_m", mq, (size_t)N, 8);
            sb_int_array(P, "int8_t", p, "_s", sh, (size_t)N, 16);
            sb_printf(P, "\n");
            free(wq), free(bq), free(mq), free(sh), free(bu);
            need_rq = 1;
            for (int q = i; q <= last; q++) layer_comment(&body, x, q);
            sb_printf(&body, "    /* out: s = %.9g, z = %d */\n", out.s, out.z);
            int lo8 = relu ? out.z : -128;
            if (k == BP_DENSE) {
                int rows, Fw;
                rows_of(l->in, l->in_n, &rows, &Fw);
                sb_printf(&body,
                          "    for (int r = 0; r < %d; r++)\n"
                          "        for (int o = 0; o < %d; o++) {\n"
                          "            const int8_t *w = %s_w + o * %d, *v = %c + r * %d;\n"
                          "            int32_t acc = %s_b[o], y;\n"
                          "            for (int i = 0; i < %d; i++) acc += (int32_t)w[i] * v[i];\n"
                          "            y = %d + %s_rq(acc, %s_m[o], %s_s[o]);\n"
                          "            %c[r * %d + o] = (int8_t)(y < %d ? %d : y > 127 ? 127 : y);\n"
                          "        }\n",
                          rows, N, p, Fw, X, Fw, p, Fw, out.z, name, p, p, Y, N, lo8, lo8);
            } else {
                int C = l->in.dim[0], H = l->in.dim[1], W = l->in.dim[2];
                int OH = l->out.dim[1], OW = l->out.dim[2];
                int K = l->d.kernel, S = l->d.stride, Pd = l->d.pad;
                char zin[32];
                snprintf(zin, sizeof zin, "%d", cur.z);
                char acc0[128], accf[128];
                snprintf(acc0, sizeof acc0, "%s_bu[co]", p);
                snprintf(accf, sizeof accf, "%s_b[co]", p);
                /* With a fused relu a sum <= 0 gives z_out without the
                 * requantization: M >= 0, so rq(acc <= 0) <= 0 and the
                 * lower clamp z_out takes it (the same code, faster). */
                char fast[64] = "";
                if (relu) snprintf(fast, sizeof fast, "c <= 0 ? %d : ", lo8);
                if (S == 1) {
                    gen_conv_s1(&body, 1, l, p, X, zin, accf);
                    sb_printf(&body,
                              "                int32_t c = cacc[oy * %d + ox], s = %s%d + %s_rq(c, %s_m[co], %s_s[co]);\n"
                              "                %c[(co * %d + oy) * %d + ox] = (int8_t)(s < %d ? %d : s > 127 ? 127 : s);\n"
                              "            }\n    }\n",
                              conv_geometry(l).Wp, fast, out.z, name, p, p, Y, OH, OW, lo8, lo8);
                } else {
                    gen_conv_loops(&body, "int32_t", acc0, accf, C, H, W, l->out.dim[0], OH, OW,
                                   K, S, Pd, p, X, zin);
                    sb_printf(&body,
                              "                int32_t c = s;\n"
                              "                s = %s%d + %s_rq(c, %s_m[co], %s_s[co]);\n"
                              "                %c[(co * %d + oy) * %d + ox] = (int8_t)(s < %d ? %d : s > 127 ? 127 : s);\n"
                              "            }\n",
                              fast, out.z, name, p, p, Y, OH, OW, lo8, lo8);
                }
            }
            char t = X;
            X = Y, Y = t;
            cur = out;
            i = last;
            continue;
        }
        if (!int8_kind_ok(x, i)) {
            if (k == BP_BATCHNORM)
                st = bp_fail(err, BP_EUNSUPPORTED, "bp_export_c: int8: layer %d (batchnorm) "
                             "does not follow a dense or conv layer, into which int8 folds it "
                             "(export it in float, or put the batchnorm right after one)", i);
            else if (k == BP_SOFTMAX)
                st = bp_fail(err, BP_EUNSUPPORTED, "bp_export_c: int8: layer %d (softmax) is "
                             "not the last layer; int8 computes softmax only at the output", i);
            else
                st = bp_fail(err, BP_EUNSUPPORTED, "bp_export_c: int8: layer %d (%s) is not "
                             "quantized (int8 covers dense, conv, batchnorm after them, relu, "
                             "leaky_relu, sigmoid, tanh, pools, flatten, dropout, identity and a "
                             "final softmax); export it in float (without --int8)", i,
                             kind_word(k));
            break;
        }
        layer_comment(&body, x, i);
        switch (k) {
        case BP_RELU:
        case BP_LEAKY_RELU:
        case BP_SIGMOID:
        case BP_TANH: {
            qparam out;
            if (k == BP_SIGMOID) out.s = 1.0 / 256, out.z = -128;
            else if (k == BP_TANH) out.s = 1.0 / 128, out.z = 0;
            else out = qparam_of(lo[i + 1], hi[i + 1]);
            make_lut(lut, k, l->d.param, cur, out);
            sb_printf(P, "/* layer %d: %s as a table of the 256 input codes (in: s = %.9g, z = %d; "
                      "out: s = %.9g, z = %d) */\n", i, kind_word(k), cur.s, cur.z, out.s, out.z);
            sb_int_array(P, "int8_t", p, "_lut", lut, 256, 16);
            sb_printf(P, "\n");
            sb_printf(&body, "    for (int k = 0; k < %zu; k++) %c[k] = %s_lut[%c[k] + 128];\n",
                      l->in_n, X, p, X);
            cur = out;
            break;
        }
        case BP_MAXPOOL:
        case BP_AVGPOOL: {
            int C = l->in.dim[0], H = l->in.dim[1], W = l->in.dim[2];
            int OH = l->out.dim[1], OW = l->out.dim[2], K = l->d.kernel, S = l->d.stride;
            int mx = k == BP_MAXPOOL;
            sb_printf(&body,
                      "    for (int c = 0; c < %d; c++)\n"
                      "        for (int oy = 0; oy < %d; oy++)\n"
                      "            for (int ox = 0; ox < %d; ox++) {\n"
                      "                const int8_t *v = %c + (c * %d + oy * %d) * %d + ox * %d;\n"
                      "                int32_t s = %s;\n"
                      "                for (int ky = 0; ky < %d; ky++)\n"
                      "                    for (int kx = 0; kx < %d; kx++)\n",
                      C, OH, OW, X, H, S, W, S, mx ? "v[0]" : "0", K, K);
            if (mx)
                sb_printf(&body,
                          "                        s = v[ky * %d + kx] > s ? v[ky * %d + kx] : s;\n"
                          "                %c[(c * %d + oy) * %d + ox] = (int8_t)s;\n",
                          W, W, Y, OH, OW);
            else
                sb_printf(&body,
                          "                        s += v[ky * %d + kx];\n"
                          "                %c[(c * %d + oy) * %d + ox] = (int8_t)(s >= 0 ? (s + %d) / %d : "
                          "-((-s + %d) / %d));\n",
                          W, Y, OH, OW, K * K / 2, K * K, K * K / 2, K * K);
            sb_printf(&body, "            }\n");
            char t = X;
            X = Y, Y = t;
            break;
        }
        case BP_GLOBAL_AVGPOOL: {
            int C = l->in.dim[0];
            size_t S = l->in_n / (size_t)C;
            sb_printf(&body,
                      "    for (int c = 0; c < %d; c++) {\n"
                      "        int32_t s = 0;\n"
                      "        for (int k = 0; k < %zu; k++) s += %c[c * %zu + k];\n"
                      "        %c[c] = (int8_t)(s >= 0 ? (s + %zu) / %zu : -((-s + %zu) / %zu));\n"
                      "    }\n",
                      C, S, X, S, Y, S / 2, S, S / 2, S);
            char t = X;
            X = Y, Y = t;
            break;
        }
        case BP_SOFTMAX:
            softmax_last = 1;
            sb_printf(&body, "    /* (computed on the dequantized logits below) */\n");
            break;
        default:
            sb_printf(&body, "    /* (nothing to compute) */\n");
            break;
        }
    }
    free(lut);
    if (st != BP_OK) {
        free(body.p);
        return st;
    }
    /* dequantize */
    sb_printf(&body, "    /* dequantize: s = %.9g, z = %d */\n", cur.s, cur.z);
    sb_printf(&body, "    for (int j = 0; j < %zu; j++) out[j] = ", x->outputs);
    sb_float(&body, cur.s);
    sb_printf(&body, " * (float)(%c[j] - (%d));\n", X, cur.z);
    if (softmax_last) {
        const xlayer *l = &x->l[x->L - 1];
        int rows, Fw;
        rows_of(l->in, l->in_n, &rows, &Fw);
        need_exp = 1;
        sb_printf(&body,
                  "    for (int r = 0; r < %d; r++) {\n"
                  "        float *v = out + r * %d, m = v[0], s = 0.0f;\n"
                  "        for (int j = 1; j < %d; j++) m = v[j] > m ? v[j] : m;\n"
                  "        for (int j = 0; j < %d; j++) s += v[j] = %s_exp(v[j] - m);\n"
                  "        for (int j = 0; j < %d; j++) v[j] *= 1.0f / s;\n"
                  "    }\n",
                  rows, Fw, Fw, Fw, name, Fw);
    }
    if (x->tnorm.kind != BP_NORM_NONE) {
        sb_printf(&body, "    /* regression targets back in their units: y / scale + shift */\n");
        for (size_t j = 0; j < x->outputs; j++) {
            sb_printf(&body, "    out[%zu] = (float)((double)out[%zu] / ", j, j);
            sb_double(&body, (double)x->tnorm.scale[j]);
            sb_printf(&body, " + ");
            sb_double(&body, (double)x->tnorm.shift[j]);
            sb_printf(&body, ");\n");
        }
    }
    F->inf |= body.inf;
    if (body.oom) {
        free(body.p);
        return bp_fail(err, BP_ENOMEM, "bp_export_c: out of memory");
    }
    sb_template(F, q8_quant, name);
    if (need_rq) sb_template(F, q8_helpers, name);
    if (need_exp) sb_template(F, q8_exp, name);
    sbuf decl = {0};
    if (x->cpad) sb_printf(&decl, "    int8_t cpad[%zu];\n", x->cpad);
    if (x->cacc) sb_printf(&decl, "    int32_t cacc[%zu];\n", x->cacc);
    if (decl.oom) {
        free(decl.p), free(body.p);
        return bp_fail(err, BP_ENOMEM, "bp_export_c: out of memory");
    }
    sb_printf(F,
              "void %s_predict_int8(const float *in, float *out)\n"
              "{\n"
              "    int8_t a[%s_BUF], b[%s_BUF];\n"
              "%s%s"
              "    (void)b;\n"
              "}\n",
              name, name, name, decl.p ? decl.p : "", body.p);
    free(decl.p);
    free(body.p);
    return BP_OK;
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */
/* ------------------------------------------------------------------------ */

static int is_keyword(const char *s)
{
    static const char *const kw[] = {
        "auto", "break", "case", "char", "const", "continue", "default", "do", "double",
        "else", "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long",
        "register", "restrict", "return", "short", "signed", "sizeof", "static", "struct",
        "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "_Bool",
        "_Complex", "_Imaginary", "_Alignas", "_Alignof", "_Atomic", "_Generic", "_Noreturn",
        "_Static_assert", "_Thread_local"};
    for (size_t k = 0; k < sizeof kw / sizeof *kw; k++)
        if (!strcmp(s, kw[k])) return 1;
    return 0;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 63 || (s[0] >= '0' && s[0] <= '9')) return 0;
    for (size_t k = 0; k < n; k++) {
        char c = s[k];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return !is_keyword(s);
}

static char *join(const char *dir, const char *name, const char *ext)
{
    size_t n = strlen(dir) + strlen(name) + strlen(ext) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s%s", dir, name, ext);
    return p;
}

/* Both temporaries written, then renamed into place: the .c first, then
 * the .h. If the second rename fails, the .c is put back as it was (from a
 * hard link made beforehand, or removed when there was none), so a
 * failure leaves both files as they were. */
static bp_status write_pair(const char *cpath, const sbuf *cbuf, const char *hpath,
                            const sbuf *hbuf, bp_error *err)
{
    char *ct = NULL, *ht = NULL, *bak = NULL;
    bp_status s = bp_write_temp(cpath, cpath, cbuf->p, cbuf->n, 0644, &ct, err);
    if (s == BP_OK) s = bp_write_temp(hpath, hpath, hbuf->p, hbuf->n, 0644, &ht, err);
    if (s != BP_OK) goto done;
    struct stat st;
    int had_c = stat(cpath, &st) == 0;
    if (had_c) {
        size_t n = strlen(cpath) + sizeof ".bak.XXXXXX";
        bak = malloc(n);
        if (!bak) {
            s = bp_fail(err, BP_ENOMEM, "bp_export_c: out of memory");
            goto done;
        }
        /* a unique name: mkstemp makes it, link() needs it absent */
        snprintf(bak, n, "%s.bak.XXXXXX", cpath);
        int fd = mkstemp(bak);
        if (fd >= 0) close(fd), unlink(bak);
        if (fd < 0 || link(cpath, bak) != 0) {
            free(bak);
            bak = NULL; /* no way back: still try, the .h rename rarely fails */
        }
    }
    if (rename(ct, cpath) != 0) {
        int e = errno;
        s = bp_fail(err, BP_EIO, "%s: cannot rename the temporary file into place: %s", cpath,
                    strerror(e));
        goto done;
    }
    free(ct);
    ct = NULL;
    if (rename(ht, hpath) != 0) {
        int e = errno;
        if (bak) rename(bak, cpath);
        else if (!had_c) unlink(cpath);
        s = bp_fail(err, BP_EIO, "%s: cannot rename the temporary file into place: %s", hpath,
                    strerror(e));
        goto done;
    }
done:
    if (ct) unlink(ct);
    if (ht) unlink(ht);
    if (bak) unlink(bak);
    free(ct), free(ht), free(bak);
    return s;
}

/* ------------------------------------------------------------------------ */
/* bp_export_c                                                               */
/* ------------------------------------------------------------------------ */

bp_status bp_export_c(bp_net *net, const char *dir, const bp_export_options *opt,
                      bp_error *err)
{
    if (!net || !dir)
        return bp_fail(err, BP_EINVAL, "bp_export_c: %s is NULL", !net ? "net" : "dir");
    if (!*dir) return bp_fail(err, BP_EINVAL, "bp_export_c: empty directory name");
    bp_export_options none;
    memset(&none, 0, sizeof none);
    if (!opt) opt = &none;
    const char *name = opt->name ? opt->name : "model";
    if (!valid_name(name))
        return bp_fail(err, BP_EINVAL, "bp_export_c: name '%s' is not a C identifier of 1 to "
                       "63 characters that is not a keyword", name);
    if (opt->int8 && (!opt->calib || opt->calib_n < 1))
        return bp_fail(err, BP_EINVAL, "bp_export_c: int8 needs calibration rows (calib, "
                       "calib_n >= 1)");
    if (bp_net_layers(net) < 1) return bp_fail(err, BP_EINVAL, "bp_export_c: empty network");

    xnet x;
    bp_status s = xnet_build(&x, net, err);
    if (s != BP_OK) return s;
    double *lo = NULL, *hi = NULL;
    sbuf C = {0}, Hd = {0}, P8 = {0}, F8 = {0};
    char *cpath = NULL, *hpath = NULL;

    if (opt->int8) {
        for (size_t r = 0; r < (size_t)opt->calib_n; r++)
            for (size_t j = 0; j < x.inputs; j++)
                if (!isfinite((double)opt->calib[r * x.inputs + j])) {
                    s = bp_fail(err, BP_EINVAL, "bp_export_c: calibration row %zu, feature %zu "
                                "is NaN or infinite", r + 1, j + 1);
                    goto done;
                }
        for (int i = 0; i < x.L; i++)
            if (!int8_kind_ok(&x, i)) {
                /* gen_int8 words the message; reach it without calibrating */
                lo = bp_alloc_array((size_t)x.L + 1, sizeof *lo);
                hi = bp_alloc_array((size_t)x.L + 1, sizeof *hi);
                if (!lo || !hi) {
                    s = bp_fail(err, BP_ENOMEM, "bp_export_c: out of memory");
                    goto done;
                }
                s = gen_int8(&P8, &F8, &x, name, lo, hi, err);
                if (s == BP_OK) s = bp_fail(err, BP_EUNSUPPORTED, "bp_export_c: int8: layer %d "
                                            "(%s) is not quantized", i, kind_word(x.l[i].d.kind));
                goto done;
            }
        lo = bp_alloc_array((size_t)x.L + 1, sizeof *lo);
        hi = bp_alloc_array((size_t)x.L + 1, sizeof *hi);
        if (!lo || !hi) {
            s = bp_fail(err, BP_ENOMEM, "bp_export_c: out of memory");
            goto done;
        }
        if ((s = calibrate(&x, opt->calib, opt->calib_n, lo, hi, err)) != BP_OK) goto done;
        if ((s = gen_int8(&P8, &F8, &x, name, lo, hi, err)) != BP_OK) goto done;
    }

    /* the code */
    sb_printf(&C, "/* %s.c - generated by backprop (bp_export_c): %s */\n"
              "#include \"%s.h\"\n\n#include <math.h>\n", name, bp_net_spec(net), name);
    if (opt->int8) sb_printf(&C, "#include <stdint.h>\n");
    /* Indices and loop bounds are ints: a 16-bit int (AVR, MSP430) would
     * overflow on any real network; say so at compile time. */
    sb_printf(&C, "#include <limits.h>\n\n#if INT_MAX < 2147483647\n"
              "#error \"%s.c needs an int of at least 32 bits (for its array indices)\"\n"
              "#endif\n", name);
    sb_printf(&C, "\n");
    gen_float_params(&C, &x, name);
    gen_float_predict(&C, &x, name);
    if (opt->int8) {
        sb_printf(&C, "\n/* ---- int8 (post-training quantized on %d calibration rows) ---- */\n\n",
                  opt->calib_n);
        sb_printf(&C, "%s", P8.p ? P8.p : "");
        sb_printf(&C, "%s", F8.p ? F8.p : "");
    }
    int libm = C.p && (strstr(C.p, "expf(") || strstr(C.p, "tanhf("));
    /* the header */
    size_t stack = (2 * x.buf + x.tmp + x.cpad + x.cacc) * sizeof(float);
    size_t stack8 = 2 * x.buf + x.cpad + x.cacc * sizeof(int32_t);
    const char *conv_note = x.cpad || x.cacc ? ", the convolutions' padded input and sums" : "";
    char sin[64], sout[64];
    shape_str(x.in_shape, sin, sizeof sin);
    shape_str(bp_net_layer_shape(net, x.L - 1), sout, sizeof sout);
    sb_printf(&Hd,
              "/*\n"
              " * %s.h - generated by backprop (bp_export_c) from the network\n"
              " *   %s\n"
              " * Input %s (%zu floats, raw: %s), output %s (%zu floats%s).\n"
              " * No allocation, no mutable globals. %s_predict %s.\n"
              " */\n"
              "#ifndef %s_H_INCLUDED\n"
              "#define %s_H_INCLUDED\n\n"
              "#define %s_INPUTS %zu\n"
              "#define %s_OUTPUTS %zu\n"
              "/* values in each of the two activation arrays (the widest tensor) */\n"
              "#define %s_BUF %zu\n"
              "/* stack of %s_predict: two float arrays of %s_BUF%s%s (plus a few locals) */\n"
              "#define %s_STACK_BYTES %zu\n",
              name, bp_net_spec(net), sin, x.inputs,
              x.norm.kind != BP_NORM_NONE ? "the code applies the model's input normalization"
                                          : "the model has no input normalization",
              sout, x.outputs,
              x.tnorm.kind != BP_NORM_NONE ? ", in the targets' units" : "", name,
              libm ? "calls <math.h> functions (link with -lm)" : "calls no libm function",
              name, name, name, x.inputs, name, x.outputs, name, x.buf, name, name,
              x.tmp ? ", the recurrent gates" : "", conv_note, name, stack);
    if (opt->int8)
        sb_printf(&Hd, "/* stack of %s_predict_int8: two int8 arrays of %s_BUF%s (no libm) */\n"
                  "#define %s_INT8_STACK_BYTES %zu\n", name, name, conv_note, name, stack8);
    sb_printf(&Hd, "\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
              "/* in: %s_INPUTS values; out: %s_OUTPUTS values (%s). */\n"
              "void %s_predict(const float *in, float *out);\n",
              name, name,
              x.tnorm.kind != BP_NORM_NONE ? "regression predictions"
              : x.l[x.L - 1].d.kind == BP_SOFTMAX ? "probabilities"
                                                : "the last layer's outputs: logits for a classifier",
              name);
    if (opt->int8)
        sb_printf(&Hd, "/* The same with int8 weights and activations (post-training quantized),\n"
                  " * the output dequantized to float. */\n"
                  "void %s_predict_int8(const float *in, float *out);\n", name);
    sb_printf(&Hd, "\n#ifdef __cplusplus\n}\n#endif\n#endif\n");

    if (C.oom || Hd.oom || P8.oom || F8.oom) {
        s = bp_fail(err, BP_ENOMEM, "bp_export_c: out of memory");
        goto done;
    }
    if (C.inf || P8.inf || F8.inf) {
        s = bp_fail(err, BP_EFORMAT, "bp_export_c: a parameter or normalization value is "
                    "beyond float32's range (it would be written as infinity)");
        goto done;
    }
    cpath = join(dir, name, ".c");
    hpath = join(dir, name, ".h");
    if (!cpath || !hpath) {
        s = bp_fail(err, BP_ENOMEM, "bp_export_c: out of memory");
        goto done;
    }
    s = write_pair(cpath, &C, hpath, &Hd, err);
done:
    free(cpath), free(hpath);
    free(C.p), free(Hd.p), free(P8.p), free(F8.p);
    free(lo), free(hi);
    xnet_free(&x);
    return s;
}
