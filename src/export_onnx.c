/*
 * export_onnx.c - bp_export_onnx: a network as an ONNX model (opset 13).
 *
 * The model is one protobuf message (onnx.proto's ModelProto) built in
 * memory by the small writer below and written with bp_write_file_atomic.
 * The writer is the library's own: a dozen messages written once need no
 * code generator and no protobuf runtime (protobuf-c would need onnx.proto
 * compiled by protoc-c at build time). It knows three wire types:
 *   0 varint            key = field << 3 | 0, then the value 7 bits a byte
 *   2 length-delimited  key, the length as a varint, the bytes (strings,
 *                       nested messages, raw tensor data)
 *   5 32-bit            key, 4 little-endian bytes (a float attribute)
 * A nested message is opened with pb_begin (its key written, its start
 * remembered) and closed with pb_end, which moves the body to make room
 * for its length: every byte moves once per level, and the levels are few
 * (model > graph > initializer).
 *
 * The graph, per layer (x: the layer's input, [N, per-sample shape]):
 *   dense        [N,F]: Gemm(x, W, b, transB=1); [N,T,F]: MatMul(x, W^T), Add b
 *   identity, dropout -> Identity; sigmoid, tanh, relu, leaky_relu(a),
 *   softmax      -> Sigmoid, Tanh, Relu, LeakyRelu(alpha=a), Softmax(axis=-1)
 *   conv         Conv(kernel_shape, strides, pads: the same on every side)
 *   maxpool, avgpool  MaxPool / AveragePool (no padding, floor mode)
 *   global_avgpool    GlobalAveragePool ([N,C,H,W] -> [N,C,1,1])
 *   flatten      Flatten(axis=1)
 *   batchnorm    BatchNormalization(epsilon=1e-5; running statistics)
 *   rnn/lstm/gru Transpose [N,T,F] -> [T,N,F], RNN / LSTM / GRU (one
 *                direction: Y [T,1,N,H]), Squeeze axis 1, Transpose back
 *                to [N,T,H]. Gates reordered from torch's (LSTM i,f,g,o ->
 *                ONNX i,o,f,c; GRU r,z,n -> z,r,h), B = [bias_ih, bias_hh],
 *                GRU with linear_before_reset=1 (torch's n gate).
 *   last         Gather(x, T-1, axis=1): [N,T,F] -> [N,F]
 *   embedding    Gather(W, ids, axis=0): the graph input is int64 [N,T]
 * The stored input normalization is Sub(shift), Mul(scale) before the
 * first layer (constants of the per-sample shape); a regression model's
 * target normalization is Div(scale), Add(shift) after the last.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* onnx.proto field numbers */
enum {
    MODEL_IR_VERSION = 1, MODEL_PRODUCER_NAME = 2, MODEL_PRODUCER_VERSION = 3,
    MODEL_DOC_STRING = 6, MODEL_GRAPH = 7, MODEL_OPSET_IMPORT = 8, MODEL_METADATA_PROPS = 14,
    OPSET_DOMAIN = 1, OPSET_VERSION = 2,
    ENTRY_KEY = 1, ENTRY_VALUE = 2,
    GRAPH_NODE = 1, GRAPH_NAME = 2, GRAPH_INITIALIZER = 5, GRAPH_DOC_STRING = 10,
    GRAPH_INPUT = 11, GRAPH_OUTPUT = 12,
    NODE_INPUT = 1, NODE_OUTPUT = 2, NODE_NAME = 3, NODE_OP_TYPE = 4, NODE_ATTRIBUTE = 5,
    ATTR_NAME = 1, ATTR_F = 2, ATTR_I = 3, ATTR_INTS = 8, ATTR_TYPE = 20,
    TENSOR_DIMS = 1, TENSOR_DATA_TYPE = 2, TENSOR_NAME = 8, TENSOR_RAW_DATA = 9,
    VALUE_NAME = 1, VALUE_TYPE = 2,
    TYPE_TENSOR = 1, TTENSOR_ELEM_TYPE = 1, TTENSOR_SHAPE = 2,
    SHAPE_DIM = 1, DIM_VALUE = 1, DIM_PARAM = 2,
};
enum { WIRE_VARINT = 0, WIRE_LEN = 2, WIRE_32 = 5 };
enum { ATTR_TYPE_FLOAT = 1, ATTR_TYPE_INT = 2, ATTR_TYPE_INTS = 7 };
enum { DT_FLOAT = 1, DT_INT64 = 7 };

#define IR_VERSION 7
#define OPSET 13
#define PROTOBUF_MAX 2147483647u /* bytes: protobuf's limit on one message */

/* ------------------------------------------------------------------------ */
/* Protobuf writer                                                           */
/* ------------------------------------------------------------------------ */

typedef struct pb {
    uint8_t *p;
    size_t n, cap;
    int oom; /* an allocation failed: everything after is dropped */
} pb;

static int pb_reserve(pb *b, size_t more)
{
    if (b->oom) return 0;
    if (more > SIZE_MAX / 2 - b->n) return !(b->oom = 1);
    if (b->n + more <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) return !(b->oom = 1);
    b->p = p;
    b->cap = cap;
    return 1;
}

static void pb_free(pb *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void pb_bytes(pb *b, const void *v, size_t n)
{
    if (!n || !pb_reserve(b, n)) return;
    memcpy(b->p + b->n, v, n);
    b->n += n;
}

static int varint_size(uint64_t v)
{
    int k = 1;
    while (v >= 0x80) v >>= 7, k++;
    return k;
}

/* v into out (at least 10 bytes); returns the bytes written */
static int varint_put(uint8_t *out, uint64_t v)
{
    int k = 0;
    while (v >= 0x80) out[k++] = (uint8_t)(v | 0x80), v >>= 7;
    out[k++] = (uint8_t)v;
    return k;
}

static void pb_varint(pb *b, uint64_t v)
{
    uint8_t t[10];
    pb_bytes(b, t, (size_t)varint_put(t, v));
}

static void pb_key(pb *b, int field, int wire) { pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire); }

/* int64 fields: negative values are ten-byte two's complement varints */
static void pb_int(pb *b, int field, int64_t v)
{
    pb_key(b, field, WIRE_VARINT);
    pb_varint(b, (uint64_t)v);
}

static void pb_float(pb *b, int field, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t t[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    pb_key(b, field, WIRE_32);
    pb_bytes(b, t, 4);
}

static void pb_lenbytes(pb *b, int field, const void *v, size_t n)
{
    pb_key(b, field, WIRE_LEN);
    pb_varint(b, n);
    pb_bytes(b, v, n);
}

static void pb_str(pb *b, int field, const char *s) { pb_lenbytes(b, field, s, strlen(s)); }

/* Protobuf strings are UTF-8: a byte that does not start or continue a
 * valid sequence (metadata is whatever a user stored) becomes '?'. */
static void pb_utf8(pb *b, int field, const char *s)
{
    size_t n = strlen(s);
    pb_key(b, field, WIRE_LEN);
    pb_varint(b, n);
    if (!pb_reserve(b, n)) return;
    uint8_t *o = b->p + b->n;
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        uint8_t c = u[i];
        int k = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
                : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        int ok = k > 0 && i + (size_t)k <= n;
        for (int j = 1; ok && j < k; j++) ok = (u[i + j] & 0xC0) == 0x80;
        /* overlong 3- and 4-byte forms, surrogates, beyond U+10FFFF */
        if (ok && k == 3)
            ok = !(c == 0xE0 && u[i + 1] < 0xA0) && !(c == 0xED && u[i + 1] >= 0xA0);
        if (ok && k == 4)
            ok = !(c == 0xF0 && u[i + 1] < 0x90) && !(c == 0xF4 && u[i + 1] >= 0x90);
        if (!ok) {
            o[i++] = '?';
            continue;
        }
        memcpy(o + i, u + i, (size_t)k);
        i += (size_t)k;
    }
    b->n += n;
}

/* Open a nested message: its key now, its length at pb_end. */
static size_t pb_begin(pb *b, int field)
{
    pb_key(b, field, WIRE_LEN);
    return b->n;
}

static void pb_end(pb *b, size_t start)
{
    if (b->oom) return;
    size_t len = b->n - start;
    int k = varint_size(len);
    if (!pb_reserve(b, (size_t)k)) return;
    memmove(b->p + start + k, b->p + start, len);
    varint_put(b->p + start, len);
    b->n += (size_t)k;
}

/* ------------------------------------------------------------------------ */
/* Graph builder                                                             */
/* ------------------------------------------------------------------------ */

#define NAME_MAX_LEN 64
#define NODE_MAX_IN 5

/* A node waits in `pending` until the next one comes, so that the last
 * node of the graph can get the output name "output". */
typedef struct node {
    const char *op;
    char name[NAME_MAX_LEN];
    char in[NODE_MAX_IN][NAME_MAX_LEN];
    int n_in;
    char out[NAME_MAX_LEN];
    pb attrs; /* encoded AttributeProto messages (field 5 of NodeProto) */
} node;

typedef struct graph {
    pb nodes;      /* NodeProto messages, as GraphProto field 1 */
    pb inits;      /* TensorProto messages, as GraphProto field 5 */
    node pending;
    int has_pending;
    int n_nodes;
    char cur[NAME_MAX_LEN]; /* the tensor the next layer reads */
} graph;

static void node_flush(graph *g)
{
    if (!g->has_pending) return;
    node *d = &g->pending;
    size_t at = pb_begin(&g->nodes, GRAPH_NODE);
    for (int k = 0; k < d->n_in; k++) pb_str(&g->nodes, NODE_INPUT, d->in[k]);
    pb_str(&g->nodes, NODE_OUTPUT, d->out);
    pb_str(&g->nodes, NODE_NAME, d->name);
    pb_str(&g->nodes, NODE_OP_TYPE, d->op);
    if (d->attrs.oom) g->nodes.oom = 1;
    pb_bytes(&g->nodes, d->attrs.p, d->attrs.n);
    pb_end(&g->nodes, at);
    pb_free(&d->attrs);
    g->has_pending = 0;
}

/* Start node `op` named NAME reading the listed inputs (NULL-terminated)
 * and writing NAME; the graph's current tensor becomes its output.
 * Attributes are added with attr_* before the next node. */
static node *node_add(graph *g, const char *op, const char *name, const char *in0, const char *in1,
                      const char *in2, const char *in3, const char *in4)
{
    node_flush(g);
    node *d = &g->pending;
    memset(d, 0, sizeof *d);
    d->op = op;
    snprintf(d->name, sizeof d->name, "%s", name);
    snprintf(d->out, sizeof d->out, "%s", name);
    const char *in[NODE_MAX_IN] = {in0, in1, in2, in3, in4};
    for (int k = 0; k < NODE_MAX_IN && in[k]; k++)
        snprintf(d->in[d->n_in++], NAME_MAX_LEN, "%s", in[k]);
    g->has_pending = 1;
    g->n_nodes++;
    snprintf(g->cur, sizeof g->cur, "%s", name);
    return d;
}

static void attr_int(node *d, const char *name, int64_t v)
{
    size_t at = pb_begin(&d->attrs, NODE_ATTRIBUTE);
    pb_str(&d->attrs, ATTR_NAME, name);
    pb_int(&d->attrs, ATTR_TYPE, ATTR_TYPE_INT);
    pb_int(&d->attrs, ATTR_I, v);
    pb_end(&d->attrs, at);
}

static void attr_float(node *d, const char *name, float v)
{
    size_t at = pb_begin(&d->attrs, NODE_ATTRIBUTE);
    pb_str(&d->attrs, ATTR_NAME, name);
    pb_int(&d->attrs, ATTR_TYPE, ATTR_TYPE_FLOAT);
    pb_float(&d->attrs, ATTR_F, v);
    pb_end(&d->attrs, at);
}

static void attr_ints(node *d, const char *name, const int64_t *v, int n)
{
    size_t at = pb_begin(&d->attrs, NODE_ATTRIBUTE);
    pb_str(&d->attrs, ATTR_NAME, name);
    pb_int(&d->attrs, ATTR_TYPE, ATTR_TYPE_INTS);
    for (int k = 0; k < n; k++) pb_int(&d->attrs, ATTR_INTS, v[k]);
    pb_end(&d->attrs, at);
}

/* An initializer: float32 from bp_real values (v[idx[k]] when idx is
 * given, else v[k]), or int64 (i64 non-NULL). */
static void init_tensor(graph *g, const char *name, const int64_t *dims, int rank,
                        const bp_real *v, const size_t *idx, const int64_t *i64)
{
    size_t count = 1;
    for (int k = 0; k < rank; k++) count *= (size_t)dims[k];
    pb *b = &g->inits;
    size_t at = pb_begin(b, GRAPH_INITIALIZER);
    for (int k = 0; k < rank; k++) pb_int(b, TENSOR_DIMS, dims[k]);
    pb_int(b, TENSOR_DATA_TYPE, i64 ? DT_INT64 : DT_FLOAT);
    pb_str(b, TENSOR_NAME, name);
    size_t bytes = count * (i64 ? 8 : 4);
    pb_key(b, TENSOR_RAW_DATA, WIRE_LEN);
    pb_varint(b, bytes);
    if (pb_reserve(b, bytes)) {
        uint8_t *o = b->p + b->n;
        for (size_t k = 0; k < count; k++) {
            if (i64) {
                uint64_t u = (uint64_t)i64[k];
                for (int j = 0; j < 8; j++) *o++ = (uint8_t)(u >> (8 * j));
            } else {
                float f = (float)v[idx ? idx[k] : k];
                uint32_t u;
                memcpy(&u, &f, 4);
                for (int j = 0; j < 4; j++) *o++ = (uint8_t)(u >> (8 * j));
            }
        }
        b->n += bytes;
    }
    pb_end(b, at);
}

static void init_floats(graph *g, const char *name, const int64_t *dims, int rank,
                        const bp_real *v)
{
    init_tensor(g, name, dims, rank, v, NULL, NULL);
}

/* A ValueInfoProto: NAME, a tensor of elem_type with dims [N, dims...]. */
static void value_info(pb *b, int field, const char *name, int elem_type, const int *dims, int rank)
{
    size_t v = pb_begin(b, field);
    pb_str(b, VALUE_NAME, name);
    size_t t = pb_begin(b, VALUE_TYPE);
    size_t tt = pb_begin(b, TYPE_TENSOR);
    pb_int(b, TTENSOR_ELEM_TYPE, elem_type);
    size_t sh = pb_begin(b, TTENSOR_SHAPE);
    size_t d = pb_begin(b, SHAPE_DIM);
    pb_str(b, DIM_PARAM, "N");
    pb_end(b, d);
    for (int k = 0; k < rank; k++) {
        d = pb_begin(b, SHAPE_DIM);
        pb_int(b, DIM_VALUE, dims[k]);
        pb_end(b, d);
    }
    pb_end(b, sh);
    pb_end(b, tt);
    pb_end(b, t);
    pb_end(b, v);
}

/* ------------------------------------------------------------------------ */
/* Layers                                                                    */
/* ------------------------------------------------------------------------ */

/* The data of tensor "I.NAME" of the network (NULL when absent). */
static const bp_real *tensor_of(bp_net *net, int i, const char *name)
{
    bp_tensor t;
    return bp_net_find_tensor(net, i, name, &t) && t.dtype == BP_DTYPE_F32 ? t.data : NULL;
}

/* dense: y = x W^T + b. Gemm on [N, F]; MatMul with W^T and Add on [N, T, F]. */
static bp_status emit_dense(graph *g, bp_net *net, int i, bp_shape in, bp_error *err)
{
    bp_layer_desc d = bp_net_layer(net, i);
    int U = d.units, F = in.dim[in.rank - 1];
    const bp_real *W = tensor_of(net, i, "weight"), *B = tensor_of(net, i, "bias");
    if (!W || !B) return bp_fail(err, BP_EFORMAT, "bp_export_onnx: layer %d (dense) has no weights", i);
    char wn[NAME_MAX_LEN], bn[NAME_MAX_LEN], nm[NAME_MAX_LEN], x[NAME_MAX_LEN];
    snprintf(bn, sizeof bn, "%d.bias", i);
    snprintf(x, sizeof x, "%s", g->cur);
    init_floats(g, bn, (int64_t[]){U}, 1, B);
    if (in.rank == 1) {
        snprintf(wn, sizeof wn, "%d.weight", i);
        init_floats(g, wn, (int64_t[]){U, F}, 2, W);
        snprintf(nm, sizeof nm, "%d.Gemm", i);
        node *n = node_add(g, "Gemm", nm, x, wn, bn, NULL, NULL);
        attr_int(n, "transB", 1);
        return BP_OK;
    }
    /* W^T [F, U]: element (f, u) is W[u, f] */
    size_t *idx = bp_alloc_array((size_t)F * U, sizeof *idx);
    if (!idx) return bp_fail(err, BP_ENOMEM, "bp_export_onnx: out of memory");
    for (size_t f = 0; f < (size_t)F; f++)
        for (size_t u = 0; u < (size_t)U; u++) idx[f * U + u] = u * F + f;
    snprintf(wn, sizeof wn, "%d.weight_t", i);
    init_tensor(g, wn, (int64_t[]){F, U}, 2, W, idx, NULL);
    free(idx);
    snprintf(nm, sizeof nm, "%d.MatMul", i);
    node_add(g, "MatMul", nm, x, wn, NULL, NULL, NULL);
    char mm[NAME_MAX_LEN];
    snprintf(mm, sizeof mm, "%s", nm);
    snprintf(nm, sizeof nm, "%d.Add", i);
    node_add(g, "Add", nm, mm, bn, NULL, NULL, NULL);
    return BP_OK;
}

static bp_status emit_conv(graph *g, bp_net *net, int i, bp_shape in, bp_error *err)
{
    bp_layer_desc d = bp_net_layer(net, i);
    const bp_real *W = tensor_of(net, i, "weight"), *B = tensor_of(net, i, "bias");
    if (!W || !B) return bp_fail(err, BP_EFORMAT, "bp_export_onnx: layer %d (conv) has no weights", i);
    char wn[NAME_MAX_LEN], bn[NAME_MAX_LEN], nm[NAME_MAX_LEN], x[NAME_MAX_LEN];
    snprintf(wn, sizeof wn, "%d.weight", i);
    snprintf(bn, sizeof bn, "%d.bias", i);
    snprintf(x, sizeof x, "%s", g->cur);
    init_floats(g, wn, (int64_t[]){d.units, in.dim[0], d.kernel, d.kernel}, 4, W);
    init_floats(g, bn, (int64_t[]){d.units}, 1, B);
    snprintf(nm, sizeof nm, "%d.Conv", i);
    node *n = node_add(g, "Conv", nm, x, wn, bn, NULL, NULL);
    attr_ints(n, "kernel_shape", (int64_t[]){d.kernel, d.kernel}, 2);
    attr_ints(n, "strides", (int64_t[]){d.stride, d.stride}, 2);
    attr_ints(n, "pads", (int64_t[]){d.pad, d.pad, d.pad, d.pad}, 4);
    return BP_OK;
}

static bp_status emit_pool(graph *g, bp_net *net, int i)
{
    bp_layer_desc d = bp_net_layer(net, i);
    char nm[NAME_MAX_LEN], x[NAME_MAX_LEN];
    snprintf(x, sizeof x, "%s", g->cur);
    const char *op = d.kind == BP_MAXPOOL ? "MaxPool" : "AveragePool";
    snprintf(nm, sizeof nm, "%d.%s", i, op);
    node *n = node_add(g, op, nm, x, NULL, NULL, NULL, NULL);
    attr_ints(n, "kernel_shape", (int64_t[]){d.kernel, d.kernel}, 2);
    attr_ints(n, "strides", (int64_t[]){d.stride, d.stride}, 2);
    /* No padding (pads default to 0) and floor mode (ceil_mode 0), so
     * count_include_pad does not matter; torch's default, for the record. */
    if (d.kind == BP_AVGPOOL) attr_int(n, "count_include_pad", 1);
    return BP_OK;
}

static bp_status emit_batchnorm(graph *g, bp_net *net, int i, bp_shape in, bp_error *err)
{
    static const char *names[4] = {"weight", "bias", "running_mean", "running_var"};
    char tn[4][NAME_MAX_LEN], nm[NAME_MAX_LEN], x[NAME_MAX_LEN];
    snprintf(x, sizeof x, "%s", g->cur);
    int64_t C = in.dim[0];
    for (int k = 0; k < 4; k++) {
        const bp_real *v = tensor_of(net, i, names[k]);
        if (!v)
            return bp_fail(err, BP_EFORMAT, "bp_export_onnx: layer %d (batchnorm) has no %s", i,
                           names[k]);
        snprintf(tn[k], sizeof tn[k], "%d.%s", i, names[k]);
        init_floats(g, tn[k], &C, 1, v);
    }
    snprintf(nm, sizeof nm, "%d.BatchNormalization", i);
    node *n = node_add(g, "BatchNormalization", nm, x, tn[0], tn[1], tn[2], tn[3]);
    attr_float(n, "epsilon", 1e-5f);
    attr_float(n, "momentum", 0.9f); /* ONNX's convention: torch's 0.1; unused in inference */
    return BP_OK;
}

/* rnn / lstm / gru, batch first: Transpose, the op, Squeeze, Transpose. */
static bp_status emit_recurrent(graph *g, bp_net *net, int i, bp_shape in, bp_error *err)
{
    bp_layer_desc d = bp_net_layer(net, i);
    int H = d.units, F = in.dim[1];
    int G = d.kind == BP_LSTM ? 4 : d.kind == BP_GRU ? 3 : 1;
    /* ONNX gate block k is torch's block order[k] */
    static const int lstm_order[4] = {0, 3, 1, 2}; /* i,f,g,o -> i,o,f,c */
    static const int gru_order[3] = {1, 0, 2};     /* r,z,n -> z,r,h */
    static const int rnn_order[1] = {0};
    const int *order = d.kind == BP_LSTM ? lstm_order : d.kind == BP_GRU ? gru_order : rnn_order;
    const char *op = d.kind == BP_LSTM ? "LSTM" : d.kind == BP_GRU ? "GRU" : "RNN";
    const bp_real *wih = tensor_of(net, i, "weight_ih_l0"), *whh = tensor_of(net, i, "weight_hh_l0");
    const bp_real *bih = tensor_of(net, i, "bias_ih_l0"), *bhh = tensor_of(net, i, "bias_hh_l0");
    if (!wih || !whh || !bih || !bhh)
        return bp_fail(err, BP_EFORMAT, "bp_export_onnx: layer %d (%s) has no weights", i, op);
    size_t GH = (size_t)G * H, cols = (size_t)(F > H ? F : H);
    size_t *idx = bp_alloc_array(GH * cols, sizeof *idx);
    bp_real *bias = bp_alloc_array(2 * GH, sizeof *bias);
    if (!idx || !bias) {
        free(idx), free(bias);
        return bp_fail(err, BP_ENOMEM, "bp_export_onnx: out of memory");
    }
    char wn[NAME_MAX_LEN], rn[NAME_MAX_LEN], bn[NAME_MAX_LEN], an[NAME_MAX_LEN];
    char nm[NAME_MAX_LEN], x[NAME_MAX_LEN];
    snprintf(x, sizeof x, "%s", g->cur);
    /* W [1, G*H, F] and R [1, G*H, H]: row k*H + r is torch's row order[k]*H + r */
    for (int pass = 0; pass < 2; pass++) {
        size_t C = pass ? (size_t)H : (size_t)F;
        for (size_t k = 0; k < (size_t)G; k++)
            for (size_t r = 0; r < (size_t)H; r++)
                for (size_t c = 0; c < C; c++)
                    idx[(k * H + r) * C + c] = ((size_t)order[k] * H + r) * C + c;
        snprintf(pass ? rn : wn, NAME_MAX_LEN, "%d.%s", i, pass ? "R" : "W");
        init_tensor(g, pass ? rn : wn, (int64_t[]){1, (int64_t)GH, (int64_t)C}, 3,
                    pass ? whh : wih, idx, NULL);
    }
    /* B [1, 2*G*H] = [Wb, Rb] = [bias_ih, bias_hh], reordered alike */
    for (size_t k = 0; k < (size_t)G; k++)
        for (size_t r = 0; r < (size_t)H; r++) {
            bias[k * H + r] = bih[(size_t)order[k] * H + r];
            bias[GH + k * H + r] = bhh[(size_t)order[k] * H + r];
        }
    snprintf(bn, sizeof bn, "%d.B", i);
    init_floats(g, bn, (int64_t[]){1, 2 * (int64_t)GH}, 2, bias);
    free(idx);
    free(bias);
    snprintf(an, sizeof an, "%d.squeeze_axes", i);
    init_tensor(g, an, (int64_t[]){1}, 1, NULL, NULL, (int64_t[]){1});

    snprintf(nm, sizeof nm, "%d.Transpose_in", i);
    node *n = node_add(g, "Transpose", nm, x, NULL, NULL, NULL, NULL);
    attr_ints(n, "perm", (int64_t[]){1, 0, 2}, 3);
    snprintf(x, sizeof x, "%s", g->cur);
    snprintf(nm, sizeof nm, "%d.%s", i, op);
    n = node_add(g, op, nm, x, wn, rn, bn, NULL);
    attr_int(n, "hidden_size", H);
    if (d.kind == BP_GRU) attr_int(n, "linear_before_reset", 1);
    snprintf(x, sizeof x, "%s", g->cur);
    snprintf(nm, sizeof nm, "%d.Squeeze", i);
    node_add(g, "Squeeze", nm, x, an, NULL, NULL, NULL);
    snprintf(x, sizeof x, "%s", g->cur);
    snprintf(nm, sizeof nm, "%d.Transpose_out", i);
    n = node_add(g, "Transpose", nm, x, NULL, NULL, NULL, NULL);
    attr_ints(n, "perm", (int64_t[]){1, 0, 2}, 3);
    return BP_OK;
}

static bp_status emit_layer(graph *g, bp_net *net, int i, bp_shape in, bp_error *err)
{
    bp_layer_desc d = bp_net_layer(net, i);
    char nm[NAME_MAX_LEN], x[NAME_MAX_LEN], t[NAME_MAX_LEN];
    snprintf(x, sizeof x, "%s", g->cur);
    const char *op = NULL;
    switch (d.kind) {
    case BP_DENSE: return emit_dense(g, net, i, in, err);
    case BP_CONV: return emit_conv(g, net, i, in, err);
    case BP_MAXPOOL:
    case BP_AVGPOOL: return emit_pool(g, net, i);
    case BP_BATCHNORM: return emit_batchnorm(g, net, i, in, err);
    case BP_RNN:
    case BP_LSTM:
    case BP_GRU: return emit_recurrent(g, net, i, in, err);
    case BP_IDENTITY:
    case BP_DROPOUT: op = "Identity"; break;
    case BP_SIGMOID: op = "Sigmoid"; break;
    case BP_TANH: op = "Tanh"; break;
    case BP_RELU: op = "Relu"; break;
    case BP_GLOBAL_AVGPOOL: op = "GlobalAveragePool"; break;
    case BP_LEAKY_RELU:
        snprintf(nm, sizeof nm, "%d.LeakyRelu", i);
        attr_float(node_add(g, "LeakyRelu", nm, x, NULL, NULL, NULL, NULL), "alpha",
                   (float)d.param);
        return BP_OK;
    case BP_SOFTMAX:
        snprintf(nm, sizeof nm, "%d.Softmax", i);
        attr_int(node_add(g, "Softmax", nm, x, NULL, NULL, NULL, NULL), "axis", -1);
        return BP_OK;
    case BP_FLATTEN:
        snprintf(nm, sizeof nm, "%d.Flatten", i);
        attr_int(node_add(g, "Flatten", nm, x, NULL, NULL, NULL, NULL), "axis", 1);
        return BP_OK;
    case BP_LAST:
        /* a scalar index: Gather drops the axis, [N, T, F] -> [N, F] */
        snprintf(t, sizeof t, "%d.last_step", i);
        init_tensor(g, t, NULL, 0, NULL, NULL, (int64_t[]){in.dim[0] - 1});
        snprintf(nm, sizeof nm, "%d.Gather", i);
        attr_int(node_add(g, "Gather", nm, x, t, NULL, NULL, NULL), "axis", 1);
        return BP_OK;
    case BP_EMBEDDING: {
        const bp_real *W = tensor_of(net, i, "weight");
        if (!W)
            return bp_fail(err, BP_EFORMAT, "bp_export_onnx: layer %d (embedding) has no weights", i);
        snprintf(t, sizeof t, "%d.weight", i);
        init_floats(g, t, (int64_t[]){d.vocab, d.units}, 2, W);
        snprintf(nm, sizeof nm, "%d.Gather", i);
        attr_int(node_add(g, "Gather", nm, t, x, NULL, NULL, NULL), "axis", 0);
        return BP_OK;
    }
    }
    if (!op)
        return bp_fail(err, BP_EUNSUPPORTED, "bp_export_onnx: layer %d: kind %d has no ONNX form",
                       i, (int)d.kind);
    snprintf(nm, sizeof nm, "%d.%s", i, op);
    node_add(g, op, nm, x, NULL, NULL, NULL, NULL);
    return BP_OK;
}

/* Sub(shift), Mul(scale) on the input (`first` 1) or Div(scale),
 * Add(shift) on the output; constants of shape dims[rank]. */
static void emit_norm(graph *g, const bp_norm *nm, const char *prefix, int first,
                      const int *dims, int rank)
{
    int64_t d64[BP_MAX_RANK];
    for (int k = 0; k < rank; k++) d64[k] = dims[k];
    char sh[NAME_MAX_LEN], sc[NAME_MAX_LEN], name[NAME_MAX_LEN], x[NAME_MAX_LEN];
    snprintf(sh, sizeof sh, "%s_shift", prefix);
    snprintf(sc, sizeof sc, "%s_scale", prefix);
    init_floats(g, sh, d64, rank, nm->shift);
    init_floats(g, sc, d64, rank, nm->scale);
    snprintf(x, sizeof x, "%s", g->cur);
    snprintf(name, sizeof name, "%s.%s", prefix, first ? "Sub" : "Div");
    node_add(g, first ? "Sub" : "Div", name, x, first ? sh : sc, NULL, NULL, NULL);
    snprintf(x, sizeof x, "%s", g->cur);
    snprintf(name, sizeof name, "%s.%s", prefix, first ? "Mul" : "Add");
    node_add(g, first ? "Mul" : "Add", name, x, first ? sc : sh, NULL, NULL, NULL);
}

/* ------------------------------------------------------------------------ */
/* The model                                                                 */
/* ------------------------------------------------------------------------ */

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 255) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
    return 1;
}

/* "backprop 0.1.0 model: spec; input; output; task, classes..." */
static void doc_string(pb *b, int field, bp_net *net)
{
    static const char *keys[] = {"task", "loss", "classes", "targets", "normalize",
                                 "normalize_target", "encoding", "seq_len"};
    pb d = {0};
    char line[512];
    snprintf(line, sizeof line, "backprop %s model. spec: ", bp_version());
    pb_bytes(&d, line, strlen(line));
    pb_bytes(&d, bp_net_spec(net), strlen(bp_net_spec(net)));
    pb_bytes(&d, "\n", 1);
    bp_shape s = bp_net_input_shape(net);
    int emb = bp_net_layers(net) > 0 && bp_net_layer(net, 0).kind == BP_EMBEDDING;
    int r = emb ? 1 : s.rank;
    snprintf(line, sizeof line, "input \"input\": %s [N", emb ? "int64 token ids" : "float32");
    for (int k = 0; k < r; k++)
        snprintf(line + strlen(line), sizeof line - strlen(line), ", %d", s.dim[k]);
    snprintf(line + strlen(line), sizeof line - strlen(line), "]%s\n",
             emb ? "" : ", raw (the model's input normalization is in the graph)");
    pb_bytes(&d, line, strlen(line));
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        const char *v = bp_net_get_meta(net, keys[k]);
        if (!v || !*v) continue;
        pb_bytes(&d, keys[k], strlen(keys[k]));
        pb_bytes(&d, ": ", 2);
        pb_bytes(&d, v, strlen(v));
        pb_bytes(&d, "\n", 1);
    }
    if (pb_reserve(&d, 1)) {
        d.p[d.n] = 0;
        pb_utf8(b, field, (const char *)d.p);
    } else {
        b->oom = 1;
    }
    pb_free(&d);
}

bp_status bp_export_onnx(bp_net *net, const char *path, const bp_export_options *opt,
                         bp_error *err)
{
    if (!net || !path) return bp_fail(err, BP_EINVAL, "bp_export_onnx: NULL argument");
    const char *gname = opt && opt->name ? opt->name : "model"; /* opt NULL: the defaults */
    if (!name_ok(gname))
        return bp_fail(err, BP_EINVAL, "bp_export_onnx: the graph name must be 1 to 255 "
                       "printable characters");
#ifdef BP_DOUBLE
    (void)doc_string, (void)emit_layer, (void)emit_norm, (void)value_info;
    return bp_fail(err, BP_EUNSUPPORTED, "bp_export_onnx: this is the double build; ONNX models "
                   "hold float32 (export from the float build)");
#else
    bp_norm norm, tnorm;
    memset(&norm, 0, sizeof norm);
    memset(&tnorm, 0, sizeof tnorm);
    bp_status s = bp_norm_from_meta(&norm, net, err);
    if (s) return s;
    if ((s = bp_norm_targets_from_meta(&tnorm, net, err))) {
        bp_norm_free(&norm);
        return s;
    }
    int L = bp_net_layers(net);
    int emb = L > 0 && bp_net_layer(net, 0).kind == BP_EMBEDDING;
    bp_shape in = bp_net_input_shape(net);
    if (emb && norm.kind != BP_NORM_NONE) {
        bp_norm_free(&norm);
        bp_norm_free(&tnorm);
        return bp_fail(err, BP_EUNSUPPORTED, "bp_export_onnx: the model normalizes the token ids "
                       "its embedding reads (metadata \"normalize\" is \"%s\")",
                       bp_norm_name(norm.kind));
    }

    graph g;
    memset(&g, 0, sizeof g);
    pb m = {0};
    snprintf(g.cur, sizeof g.cur, "input");
    if (norm.kind != BP_NORM_NONE) emit_norm(&g, &norm, "input_norm", 1, in.dim, in.rank);
    bp_shape cur = in;
    for (int i = 0; i < L && !s; i++) {
        s = emit_layer(&g, net, i, cur, err);
        cur = bp_net_layer_shape(net, i);
    }
    if (!s && tnorm.kind != BP_NORM_NONE)
        emit_norm(&g, &tnorm, "target_norm", 0, (int[]){tnorm.n}, 1);
    if (!s && !g.has_pending) node_add(&g, "Identity", "Identity", "input", NULL, NULL, NULL, NULL);
    if (!s) {
        /* the last node writes the graph's output */
        snprintf(g.pending.out, sizeof g.pending.out, "output");
        node_flush(&g);

        pb_int(&m, MODEL_IR_VERSION, IR_VERSION);
        pb_str(&m, MODEL_PRODUCER_NAME, "backprop");
        pb_str(&m, MODEL_PRODUCER_VERSION, bp_version());
        doc_string(&m, MODEL_DOC_STRING, net);
        size_t ga = pb_begin(&m, MODEL_GRAPH);
        if (g.nodes.oom || g.inits.oom) m.oom = 1;
        pb_bytes(&m, g.nodes.p, g.nodes.n);
        pb_free(&g.nodes);
        pb_utf8(&m, GRAPH_NAME, gname);
        pb_bytes(&m, g.inits.p, g.inits.n);
        pb_free(&g.inits);
        doc_string(&m, GRAPH_DOC_STRING, net);
        if (emb) value_info(&m, GRAPH_INPUT, "input", DT_INT64, in.dim, 1);
        else value_info(&m, GRAPH_INPUT, "input", DT_FLOAT, in.dim, in.rank);
        value_info(&m, GRAPH_OUTPUT, "output", DT_FLOAT, cur.dim, cur.rank);
        pb_end(&m, ga);
        size_t oa = pb_begin(&m, MODEL_OPSET_IMPORT);
        pb_str(&m, OPSET_DOMAIN, "");
        pb_int(&m, OPSET_VERSION, OPSET);
        pb_end(&m, oa);
        for (int k = 0; k < bp_net_meta_count(net); k++) {
            const char *key, *val;
            if (!bp_net_meta_at(net, k, &key, &val)) continue;
            size_t ea = pb_begin(&m, MODEL_METADATA_PROPS);
            pb_utf8(&m, ENTRY_KEY, key);
            pb_utf8(&m, ENTRY_VALUE, val);
            pb_end(&m, ea);
        }
        if (m.oom)
            s = bp_fail(err, BP_ENOMEM, "bp_export_onnx: out of memory");
        else if (m.n > PROTOBUF_MAX)
            s = bp_fail(err, BP_EUNSUPPORTED, "bp_export_onnx: the model needs %.1f GiB, above "
                        "protobuf's 2 GiB limit (ONNX's external data files are not written)",
                        (double)m.n / (1u << 30));
        else
            s = bp_write_file_atomic(path, m.p, m.n, err);
    }
    if (g.has_pending) pb_free(&g.pending.attrs);
    pb_free(&g.nodes);
    pb_free(&g.inits);
    pb_free(&m);
    bp_norm_free(&norm);
    bp_norm_free(&tnorm);
    return s;
#endif
}
