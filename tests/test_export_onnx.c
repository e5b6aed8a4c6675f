/*
 * test_export_onnx.c - bp_export_onnx without Python: small networks of
 * every layer kind are exported and the file is read back with a protobuf
 * reader written here from onnx.proto's field numbers (independent of the
 * writer in src/export_onnx.c):
 *   - the model's fixed fields: ir_version 7, opset 13 of the default
 *     domain, producer "backprop" and bp_version(), the graph's name
 *     (opt->name or "model"), a doc string naming the spec, every metadata
 *     pair as metadata_props (invalid UTF-8 replaced by '?');
 *   - the node sequence of each network (every layer kind), the graph
 *     input "input" (float32 [N, per-sample dims], int64 [N, T] ids after
 *     an embedding) and output "output", the last node writing "output";
 *   - initializers: raw little-endian float32 equal to the network's
 *     tensors (dense weight as is for Gemm, transposed for MatMul on a
 *     sequence; LSTM and GRU gates reordered to ONNX's i,o,f,c and z,r,h,
 *     B = [bias_ih, bias_hh]), the normalization constants;
 *   - attributes: Gemm transB, Conv pads/strides, LeakyRelu alpha, GRU
 *     linear_before_reset, Gather axis;
 *   - the input normalization as Sub, Mul first, the target scaling as
 *     Div, Add last;
 *   - errors: NULL arguments and a bad name (BP_EINVAL), malformed
 *     normalization metadata (BP_EFORMAT naming the key), an unknown layer
 *     kind (BP_EUNSUPPORTED naming the layer), a missing directory
 *     (BP_EIO, nothing created), and an existing file left untouched by a
 *     failed export; the same network exports to the same bytes.
 */
#include "backprop.h"
#include "check.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a minimal protobuf reader ---- */

typedef struct span {
    const uint8_t *p;
    size_t n;
} span;

typedef struct field {
    int num, wire;
    uint64_t v;  /* varint, or 32-bit value */
    span s;      /* length-delimited bytes */
} field;

static int rd_varint(span *b, uint64_t *v)
{
    *v = 0;
    for (int sh = 0; sh < 64 && b->n; sh += 7) {
        uint8_t c = *b->p++;
        b->n--;
        *v |= (uint64_t)(c & 0x7f) << sh;
        if (!(c & 0x80)) return 1;
    }
    return 0;
}

/* Next field of a message; 0 at the end (or on malformed data: *bad set). */
static int next_field(span *b, field *f, int *bad)
{
    if (!b->n) return 0;
    uint64_t key;
    if (!rd_varint(b, &key)) return !(*bad = 1);
    f->num = (int)(key >> 3);
    f->wire = (int)(key & 7);
    f->s.p = NULL, f->s.n = 0, f->v = 0;
    if (f->wire == 0) {
        if (!rd_varint(b, &f->v)) return !(*bad = 1);
    } else if (f->wire == 2) {
        uint64_t len;
        if (!rd_varint(b, &len) || len > b->n) return !(*bad = 1);
        f->s.p = b->p, f->s.n = (size_t)len;
        b->p += len, b->n -= len;
    } else if (f->wire == 5) {
        if (b->n < 4) return !(*bad = 1);
        f->v = (uint64_t)b->p[0] | (uint64_t)b->p[1] << 8 | (uint64_t)b->p[2] << 16 |
               (uint64_t)b->p[3] << 24;
        b->p += 4, b->n -= 4;
    } else {
        return !(*bad = 1);
    }
    return 1;
}

/* The model, decoded into what the checks look at. */
#define MAXN 64
typedef struct attr {
    char name[32];
    int type;
    int64_t i;
    float f;
    int64_t ints[8];
    int n_ints;
} attr;
typedef struct pnode {
    char op[32];
    char in[5][64];
    int n_in;
    char out[64];
    attr a[6];
    int n_a;
} pnode;
typedef struct ptensor {
    char name[64];
    int64_t dims[4];
    int rank, dtype;
    span raw;
} ptensor;
typedef struct pvalue {
    char name[32];
    int elem;
    char dims[8][16]; /* "N" or a number */
    int rank;
} pvalue;
typedef struct pmodel {
    uint8_t *buf; /* the file's bytes: the spans point into it */
    int bad;
    int64_t ir_version, opset_version;
    int n_opset;
    char opset_domain[16];
    char producer[32], producer_version[32], graph_name[300];
    char *doc; /* model doc string */
    pnode node[MAXN];
    int n_node;
    ptensor init[MAXN];
    int n_init;
    pvalue input, output;
    int n_input, n_output;
    char meta_key[64][32];
    char *meta_val[64];
    int n_meta;
} pmodel;

static void cpy(char *dst, size_t size, span s)
{
    size_t n = s.n < size - 1 ? s.n : size - 1;
    memcpy(dst, s.p, n);
    dst[n] = 0;
}

static void parse_value(span b, pvalue *v, int *bad)
{
    field f, g, h, d, e;
    while (next_field(&b, &f, bad)) {
        if (f.num == 1) cpy(v->name, sizeof v->name, f.s);
        if (f.num != 2) continue;
        span t = f.s;
        while (next_field(&t, &g, bad)) {
            if (g.num != 1) continue; /* tensor_type */
            span tt = g.s;
            while (next_field(&tt, &h, bad)) {
                if (h.num == 1) v->elem = (int)h.v;
                if (h.num != 2) continue;
                span sh = h.s;
                while (next_field(&sh, &d, bad)) {
                    if (d.num != 1 || v->rank >= 8) continue;
                    span dm = d.s;
                    while (next_field(&dm, &e, bad)) {
                        if (e.num == 1) snprintf(v->dims[v->rank], 16, "%lld", (long long)e.v);
                        if (e.num == 2) cpy(v->dims[v->rank], 16, e.s);
                    }
                    v->rank++;
                }
            }
        }
    }
}

static void parse_graph(span b, pmodel *m)
{
    field f, g;
    while (next_field(&b, &f, &m->bad)) {
        if (f.num == 1 && m->n_node < MAXN) {
            pnode *n = &m->node[m->n_node++];
            span s = f.s;
            while (next_field(&s, &g, &m->bad)) {
                if (g.num == 1 && n->n_in < 5) cpy(n->in[n->n_in++], 64, g.s);
                if (g.num == 2) cpy(n->out, 64, g.s);
                if (g.num == 4) cpy(n->op, 32, g.s);
                if (g.num == 5 && n->n_a < 6) {
                    attr *a = &n->a[n->n_a++];
                    span as = g.s;
                    field h;
                    while (next_field(&as, &h, &m->bad)) {
                        if (h.num == 1) cpy(a->name, 32, h.s);
                        if (h.num == 20) a->type = (int)h.v;
                        if (h.num == 3) a->i = (int64_t)h.v;
                        if (h.num == 2) {
                            uint32_t u = (uint32_t)h.v;
                            memcpy(&a->f, &u, 4);
                        }
                        if (h.num == 8 && h.wire == 0 && a->n_ints < 8) a->ints[a->n_ints++] = (int64_t)h.v;
                    }
                }
            }
        } else if (f.num == 2) {
            cpy(m->graph_name, sizeof m->graph_name, f.s);
        } else if (f.num == 5 && m->n_init < MAXN) {
            ptensor *t = &m->init[m->n_init++];
            span s = f.s;
            while (next_field(&s, &g, &m->bad)) {
                if (g.num == 1 && t->rank < 4) t->dims[t->rank++] = (int64_t)g.v;
                if (g.num == 2) t->dtype = (int)g.v;
                if (g.num == 8) cpy(t->name, 64, g.s);
                if (g.num == 9) t->raw = g.s;
            }
        } else if (f.num == 11) {
            m->n_input++;
            parse_value(f.s, &m->input, &m->bad);
        } else if (f.num == 12) {
            m->n_output++;
            parse_value(f.s, &m->output, &m->bad);
        }
    }
}

static void parse_model(const uint8_t *p, size_t n, pmodel *m)
{
    memset(m, 0, sizeof *m);
    span b = {p, n};
    field f, g;
    while (next_field(&b, &f, &m->bad)) {
        switch (f.num) {
        case 1: m->ir_version = (int64_t)f.v; break;
        case 2: cpy(m->producer, sizeof m->producer, f.s); break;
        case 3: cpy(m->producer_version, sizeof m->producer_version, f.s); break;
        case 6:
            m->doc = calloc(1, f.s.n + 1);
            if (m->doc) memcpy(m->doc, f.s.p, f.s.n);
            break;
        case 7: parse_graph(f.s, m); break;
        case 8: {
            m->n_opset++;
            span s = f.s;
            while (next_field(&s, &g, &m->bad)) {
                if (g.num == 1) cpy(m->opset_domain, sizeof m->opset_domain, g.s);
                if (g.num == 2) m->opset_version = (int64_t)g.v;
            }
            break;
        }
        case 14: {
            if (m->n_meta >= 64) break;
            int k = m->n_meta++;
            span s = f.s;
            while (next_field(&s, &g, &m->bad)) {
                if (g.num == 1) cpy(m->meta_key[k], 32, g.s);
                if (g.num == 2) {
                    m->meta_val[k] = calloc(1, g.s.n + 1);
                    if (m->meta_val[k]) memcpy(m->meta_val[k], g.s.p, g.s.n);
                }
            }
            break;
        }
        default: break;
        }
    }
}

static void free_model(pmodel *m)
{
    free(m->buf);
    free(m->doc);
    for (int k = 0; k < m->n_meta; k++) free(m->meta_val[k]);
}

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(len > 0 ? (size_t)len : 1);
    *n = p ? fread(p, 1, (size_t)len, f) : 0;
    fclose(f);
    return p;
}

/* Export `net` to path and decode it; 1 on success. */
static int export_and_parse(bp_net *net, const char *path, const char *name, pmodel *m)
{
    bp_export_options opt;
    memset(&opt, 0, sizeof opt);
    opt.name = name;
    bp_error err = {0};
    bp_status s = bp_export_onnx(net, path, &opt, &err);
    CHECK(s == BP_OK, "export to %s: %s (%s)", path, bp_status_name(s), err.message);
    if (s) return 0;
    size_t n = 0;
    uint8_t *p = read_all(path, &n);
    CHECK(p && n > 16, "%s read back (%zu bytes)", path, n);
    if (!p) return 0;
    parse_model(p, n, m);
    m->buf = p;
    CHECK(!m->bad, "%s: the protobuf decodes", path);
    if (m->bad) free_model(m);
    return !m->bad;
}

static const ptensor *init_named(const pmodel *m, const char *name)
{
    for (int k = 0; k < m->n_init; k++)
        if (!strcmp(m->init[k].name, name)) return &m->init[k];
    return NULL;
}

static float raw_f(const ptensor *t, size_t k)
{
    const uint8_t *q = t->raw.p + 4 * k;
    uint32_t u = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static const attr *attr_of(const pnode *n, const char *name)
{
    for (int k = 0; k < n->n_a; k++)
        if (!strcmp(n->a[k].name, name)) return &n->a[k];
    return NULL;
}

static const bp_real *tensor_data(bp_net *net, const char *name)
{
    bp_tensor t;
    for (int j = 0; bp_net_tensor(net, j, &t); j++)
        if (!strcmp(t.name, name)) return t.data;
    return NULL;
}

/* The common checks, and the op sequence (comma-separated). */
static void check_model(const char *what, pmodel *m, bp_net *net, const char *ops,
                        const char *graph_name)
{
    CHECK(m->ir_version == 7, "%s: ir_version %lld", what, (long long)m->ir_version);
    CHECK(m->n_opset == 1 && m->opset_version == 13 && m->opset_domain[0] == 0,
          "%s: opset_import (%d, '%s', %lld)", what, m->n_opset, m->opset_domain,
          (long long)m->opset_version);
    CHECK(!strcmp(m->producer, "backprop") && !strcmp(m->producer_version, bp_version()),
          "%s: producer %s %s", what, m->producer, m->producer_version);
    CHECK(!strcmp(m->graph_name, graph_name), "%s: graph name '%s'", what, m->graph_name);
    CHECK(m->doc && strstr(m->doc, bp_net_spec(net)), "%s: the doc string names the spec", what);
    char seq[512] = "";
    for (int k = 0; k < m->n_node; k++)
        snprintf(seq + strlen(seq), sizeof seq - strlen(seq), "%s%s", k ? "," : "", m->node[k].op);
    CHECK(!strcmp(seq, ops), "%s: ops %s, want %s", what, seq, ops);
    CHECK(m->n_input == 1 && !strcmp(m->input.name, "input"), "%s: one input 'input'", what);
    CHECK(m->n_output == 1 && !strcmp(m->output.name, "output") && m->output.elem == 1,
          "%s: one float output 'output'", what);
    CHECK(m->n_node > 0 && !strcmp(m->node[m->n_node - 1].out, "output"),
          "%s: the last node writes 'output'", what);
    CHECK(m->input.rank >= 1 && !strcmp(m->input.dims[0], "N") && !strcmp(m->output.dims[0], "N"),
          "%s: N is symbolic", what);
    /* the output's dims are the last layer's shape */
    bp_shape s = bp_net_layer_shape(net, bp_net_layers(net) - 1);
    int same = m->output.rank == s.rank + 1;
    for (int k = 0; same && k < s.rank; k++) same = atoi(m->output.dims[k + 1]) == s.dim[k];
    CHECK(same, "%s: output rank %d", what, m->output.rank);
    /* every node input is an earlier output, an initializer or the input */
    for (int k = 0; k < m->n_node; k++)
        for (int j = 0; j < m->node[k].n_in; j++) {
            const char *in = m->node[k].in[j];
            int found = !strcmp(in, "input") || init_named(m, in);
            for (int q = 0; !found && q < k; q++) found = !strcmp(m->node[q].out, in);
            CHECK(found, "%s: node %d (%s) reads '%s', which nothing defines", what, k,
                  m->node[k].op, in);
        }
    /* initializers: raw data of the declared size */
    for (int k = 0; k < m->n_init; k++) {
        const ptensor *t = &m->init[k];
        size_t c = 1;
        for (int j = 0; j < t->rank; j++) c *= (size_t)t->dims[j];
        CHECK((t->dtype == 1 || t->dtype == 7) && t->raw.n == c * (t->dtype == 1 ? 4 : 8),
              "%s: initializer %s: %zu bytes for %zu values of type %d", what, t->name, t->raw.n,
              c, t->dtype);
    }
}

static bp_net *make(bp_shape in, const char *spec)
{
    bp_net *net = NULL;
    bp_error err = {0};
    bp_status s = bp_net_create_shaped(&net, in, spec, 7, &err);
    CHECK(s == BP_OK, "create '%s': %s", spec, err.message);
    /* batchnorm running statistics away from 0 / 1 */
    bp_tensor t;
    for (int j = 0; net && bp_net_tensor(net, j, &t); j++)
        if (t.dtype == BP_DTYPE_F32 && !t.trainable)
            for (size_t k = 0; k < t.count; k++) t.data[k] = (bp_real)(0.5 + 0.01 * (double)k);
    return net;
}

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

int main(void)
{
    char dir[] = "/tmp/bp_onnx_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char path[256], path2[256];
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    snprintf(path2, sizeof path2, "%s/m2.onnx", dir);
    pmodel m;

    /* ---- flat: dense and every activation, dropout, identity, batchnorm on [F] ---- */
    bp_net *flat = make(bp_shape_flat(7), "dense(8) relu dropout(0.5) dense(6) sigmoid dense(300) "
                                          "tanh leaky_relu(0.2) identity batchnorm dense(4) softmax");
    if (flat && export_and_parse(flat, path, NULL, &m)) {
        check_model("flat", &m, flat, "Gemm,Relu,Identity,Gemm,Sigmoid,Gemm,Tanh,LeakyRelu,Identity,"
                    "BatchNormalization,Gemm,Softmax", "model");
        CHECK(m.input.elem == 1 && m.input.rank == 2 && !strcmp(m.input.dims[1], "7"),
              "flat: input float [N, 7]");
        const attr *a = attr_of(&m.node[0], "transB");
        CHECK(a && a->i == 1 && a->type == 2, "flat: Gemm transB=1");
        a = attr_of(&m.node[7], "alpha");
        CHECK(a && fabsf(a->f - 0.2f) == 0 && a->type == 1, "flat: LeakyRelu alpha 0.2");
        a = attr_of(&m.node[11], "axis");
        CHECK(a && a->i == -1, "flat: Softmax axis -1");
        a = attr_of(&m.node[9], "epsilon");
        CHECK(a && a->f == 1e-5f, "flat: BatchNormalization epsilon 1e-5");
        /* dense(300) weight [300, 6] as is (a length beyond one varint byte) */
        const ptensor *t = init_named(&m, "5.weight");
        const bp_real *w = bp_net_weight(flat, 5);
        int same = t && t->rank == 2 && t->dims[0] == 300 && t->dims[1] == 6 && w;
        for (size_t k = 0; same && k < 1800; k++) same = raw_f(t, k) == (float)w[k];
        CHECK(same, "flat: 5.weight holds the dense weight [300, 6]");
        t = init_named(&m, "9.running_var");
        const bp_real *rv = tensor_data(flat, "9.running_var");
        CHECK(t && rv && t->dims[0] == 300 && raw_f(t, 3) == (float)rv[3],
              "flat: batchnorm's running_var");
        CHECK(m.n_meta == bp_net_meta_count(flat), "flat: %d metadata_props for %d pairs",
              m.n_meta, bp_net_meta_count(flat));
        free_model(&m);
    }

    /* the same bytes twice; a named graph */
    if (flat) {
        bp_export_options opt;
        memset(&opt, 0, sizeof opt);
        bp_error err = {0};
        size_t n1 = 0, n2 = 0;
        CHECK(bp_export_onnx(flat, path2, &opt, &err) == BP_OK, "second export: %s", err.message);
        uint8_t *a = read_all(path, &n1), *b = read_all(path2, &n2);
        CHECK(a && b && n1 == n2 && !memcmp(a, b, n1), "the same network exports to the same bytes");
        free(a), free(b);
        if (export_and_parse(flat, path2, "my graph", &m)) {
            CHECK(!strcmp(m.graph_name, "my graph"), "opt->name is the graph's name");
            free_model(&m);
        }
    }

    /* ---- images: conv (padding, stride), pools, batchnorm, global_avgpool, flatten ---- */
    bp_shape img = {3, {2, 12, 12}};
    bp_net *cnn = make(img, "conv(4,3,1,1) relu maxpool(2) conv(4,3,2,1) batchnorm avgpool(2,1) "
                            "global_avgpool flatten dense(3)");
    if (cnn && export_and_parse(cnn, path, NULL, &m)) {
        check_model("cnn", &m, cnn, "Conv,Relu,MaxPool,Conv,BatchNormalization,AveragePool,"
                    "GlobalAveragePool,Flatten,Gemm", "model");
        CHECK(m.input.rank == 4 && !strcmp(m.input.dims[1], "2") && !strcmp(m.input.dims[3], "12"),
              "cnn: input [N, 2, 12, 12]");
        const attr *p = attr_of(&m.node[3], "pads"), *s = attr_of(&m.node[3], "strides"),
                   *k = attr_of(&m.node[3], "kernel_shape");
        CHECK(p && p->n_ints == 4 && p->ints[0] == 1 && p->ints[3] == 1 && s && s->n_ints == 2 &&
                  s->ints[0] == 2 && k && k->ints[1] == 3,
              "cnn: Conv pads 1,1,1,1 strides 2,2 kernel 3,3");
        s = attr_of(&m.node[5], "strides");
        k = attr_of(&m.node[5], "kernel_shape");
        CHECK(s && s->ints[0] == 1 && k && k->ints[0] == 2 && !attr_of(&m.node[5], "pads"),
              "cnn: AveragePool kernel 2 stride 1, no pads");
        const ptensor *t = init_named(&m, "0.weight");
        CHECK(t && t->rank == 4 && t->dims[0] == 4 && t->dims[1] == 2 && t->dims[2] == 3,
              "cnn: conv weight [4, 2, 3, 3]");
        free_model(&m);
    }

    /* ---- sequences: rnn, lstm, gru, dense on every step, last ---- */
    bp_shape seq = {2, {5, 3, 0}};
    bp_net *rec = make(seq, "rnn(4) lstm(6) gru(5) dense(2) last");
    if (rec && export_and_parse(rec, path, NULL, &m)) {
        check_model("rec", &m, rec, "Transpose,RNN,Squeeze,Transpose,Transpose,LSTM,Squeeze,Transpose,"
                    "Transpose,GRU,Squeeze,Transpose,MatMul,Add,Gather", "model");
        CHECK(m.input.rank == 3 && !strcmp(m.input.dims[1], "5") && !strcmp(m.input.dims[2], "3"),
              "rec: input [N, 5, 3]");
        const attr *a = attr_of(&m.node[9], "linear_before_reset");
        CHECK(a && a->i == 1, "rec: GRU linear_before_reset=1");
        a = attr_of(&m.node[5], "hidden_size");
        CHECK(a && a->i == 6, "rec: LSTM hidden_size 6");
        a = attr_of(&m.node[0], "perm");
        CHECK(a && a->n_ints == 3 && a->ints[0] == 1 && a->ints[1] == 0 && a->ints[2] == 2,
              "rec: Transpose perm 1,0,2");
        a = attr_of(&m.node[14], "axis");
        CHECK(a && a->i == 1, "rec: last is Gather axis 1");
        const ptensor *t = init_named(&m, m.node[14].in[1]);
        CHECK(t && t->rank == 0 && t->dtype == 7 && t->raw.n == 8 && t->raw.p[0] == 4,
              "rec: last's index is the scalar int64 T-1 = 4");
        t = init_named(&m, m.node[2].in[1]);
        CHECK(t && t->dtype == 7 && t->rank == 1 && t->raw.p[0] == 1, "rec: Squeeze axes [1]");
        /* LSTM: ONNX block 1 (o) is torch's block 3 (o), block 2 (f) torch's 1 */
        const ptensor *W = init_named(&m, "1.W"), *R = init_named(&m, "1.R"), *B = init_named(&m, "1.B");
        const bp_real *wih = tensor_data(rec, "1.weight_ih_l0"), *whh = tensor_data(rec, "1.weight_hh_l0");
        const bp_real *bih = tensor_data(rec, "1.bias_ih_l0"), *bhh = tensor_data(rec, "1.bias_hh_l0");
        int H = 6, F = 4, ok = W && R && B && wih && whh && bih && bhh && W->rank == 3 &&
                              W->dims[0] == 1 && W->dims[1] == 24 && W->dims[2] == 4 &&
                              R->dims[2] == 6 && B->rank == 2 && B->dims[1] == 48;
        static const int lstm_order[4] = {0, 3, 1, 2};
        for (int k = 0; ok && k < 4; k++)
            for (int r = 0; ok && r < H; r++) {
                int tr = lstm_order[k] * H + r, orow = k * H + r;
                for (int c = 0; ok && c < F; c++) ok = raw_f(W, (size_t)orow * F + c) == wih[tr * F + c];
                for (int c = 0; ok && c < H; c++) ok = raw_f(R, (size_t)orow * H + c) == whh[tr * H + c];
                ok = ok && raw_f(B, (size_t)orow) == bih[tr] && raw_f(B, (size_t)(24 + orow)) == bhh[tr];
            }
        CHECK(ok, "rec: LSTM W, R, B in ONNX's gate order i,o,f,c");
        /* GRU: z, r, h = torch's blocks 1, 0, 2 */
        W = init_named(&m, "2.W");
        B = init_named(&m, "2.B");
        wih = tensor_data(rec, "2.weight_ih_l0");
        bhh = tensor_data(rec, "2.bias_hh_l0");
        H = 5, F = 6;
        static const int gru_order[3] = {1, 0, 2};
        ok = W && B && wih && bhh && W->dims[1] == 15 && W->dims[2] == 6;
        for (int k = 0; ok && k < 3; k++)
            for (int r = 0; ok && r < H; r++) {
                int tr = gru_order[k] * H + r, orow = k * H + r;
                for (int c = 0; ok && c < F; c++) ok = raw_f(W, (size_t)orow * F + c) == wih[tr * F + c];
                ok = ok && raw_f(B, (size_t)(15 + orow)) == bhh[tr];
            }
        CHECK(ok, "rec: GRU W and B in ONNX's gate order z,r,h");
        /* dense on [T, F]: MatMul by W^T [5, 2] */
        t = init_named(&m, m.node[12].in[1]);
        const bp_real *w = bp_net_weight(rec, 3);
        ok = t && w && t->rank == 2 && t->dims[0] == 5 && t->dims[1] == 2;
        for (int f = 0; ok && f < 5; f++)
            for (int u = 0; ok && u < 2; u++) ok = raw_f(t, (size_t)f * 2 + u) == w[u * 5 + f];
        CHECK(ok, "rec: the dense on a sequence multiplies by W^T");
        free_model(&m);
    }

    /* ---- embedding: int64 ids [N, T] ---- */
    bp_layer_desc ld[3] = {{BP_EMBEDDING, 4, 0, 0, 0, 0, 10}, {BP_LSTM, 5, 0, 0, 0, 0, 0},
                           {BP_DENSE, 10, 0, 0, 0, 0, 0}};
    bp_net *lm = NULL;
    bp_error err = {0};
    CHECK(bp_net_create_layers(&lm, 6, ld, 3, 1, &err) == BP_OK, "create the language model: %s",
          err.message);
    if (lm && export_and_parse(lm, path, NULL, &m)) {
        check_model("lm", &m, lm, "Gather,Transpose,LSTM,Squeeze,Transpose,MatMul,Add", "model");
        CHECK(m.input.elem == 7 && m.input.rank == 2 && !strcmp(m.input.dims[1], "6"),
              "lm: input int64 [N, 6] (elem %d rank %d)", m.input.elem, m.input.rank);
        CHECK(!strcmp(m.node[0].in[0], "0.weight") && !strcmp(m.node[0].in[1], "input"),
              "lm: Gather(weight, input)");
        const attr *a = attr_of(&m.node[0], "axis");
        CHECK(a && a->i == 0, "lm: Gather axis 0");
        CHECK(m.output.rank == 3 && !strcmp(m.output.dims[2], "10"), "lm: output [N, 6, 10]");
        CHECK(m.doc && strstr(m.doc, "int64 token ids"), "lm: the doc string says int64 token ids");
        free_model(&m);
    }

    /* ---- normalization: Sub, Mul first; targets: Div, Add last; metadata ---- */
    bp_net *reg = make(bp_shape_flat(3), "dense(4) relu dense(2)");
    if (reg) {
        bp_real sh[3] = {1, 2, 3}, sc[3] = {0.5f, 0.25f, 2}, tsh[2] = {10, 20}, tsc[2] = {0.1f, 4};
        bp_norm nm = {BP_NORM_STANDARD, 3, sh, sc}, tn = {BP_NORM_STANDARD, 2, tsh, tsc};
        CHECK(bp_norm_to_meta(&nm, reg, &err) == BP_OK, "norm to meta: %s", err.message);
        CHECK(bp_norm_targets_to_meta(&tn, reg, &err) == BP_OK, "targets to meta: %s", err.message);
        bp_net_set_meta(reg, "task", "regress", &err);
        bp_net_set_meta(reg, "note", "caf\xc3\xa9 \xff\xfe ok", &err);
        if (export_and_parse(reg, path, NULL, &m)) {
            check_model("reg", &m, reg, "Sub,Mul,Gemm,Relu,Gemm,Div,Add", "model");
            const ptensor *s = init_named(&m, m.node[0].in[1]), *c = init_named(&m, m.node[1].in[1]);
            CHECK(s && c && s->rank == 1 && s->dims[0] == 3 && raw_f(s, 2) == 3 && raw_f(c, 1) == 0.25f,
                  "reg: Sub(shift), Mul(scale)");
            const ptensor *d = init_named(&m, m.node[5].in[1]), *e = init_named(&m, m.node[6].in[1]);
            CHECK(d && e && raw_f(d, 1) == 4 && raw_f(e, 0) == 10, "reg: Div(target scale), Add(target shift)");
            int found = 0;
            for (int k = 0; k < m.n_meta; k++)
                if (!strcmp(m.meta_key[k], "note"))
                    found = m.meta_val[k] && !strcmp(m.meta_val[k], "caf\xc3\xa9 ?? ok");
            CHECK(found, "reg: metadata 'note' with its invalid UTF-8 bytes as '?'");
            int all = m.n_meta == bp_net_meta_count(reg);
            for (int k = 0; all && k < m.n_meta; k++) {
                const char *key, *val;
                all = bp_net_meta_at(reg, k, &key, &val) && !strcmp(key, m.meta_key[k]) &&
                      (!strcmp(key, "note") || !strcmp(val, m.meta_val[k]));
            }
            CHECK(all, "reg: every metadata pair in order as metadata_props");
            CHECK(m.doc && strstr(m.doc, "task: regress"), "reg: the doc string has the task");
            free_model(&m);
        }
        /* malformed normalization: BP_EFORMAT naming the key, the file untouched */
        size_t n0 = 0, n1 = 0;
        uint8_t *before = read_all(path, &n0);
        bp_export_options opt;
        memset(&opt, 0, sizeof opt);
        bp_net_set_meta(reg, "norm_shift", "1,2", &err);
        bp_status s = bp_export_onnx(reg, path, &opt, &err);
        CHECK(s == BP_EFORMAT && strstr(err.message, "norm_shift"),
              "a short norm_shift: %s (%s)", bp_status_name(s), err.message);
        bp_net_set_meta(reg, "norm_shift", "1,2,3", &err);
        bp_net_set_meta(reg, "target_scale", "1,x", &err);
        s = bp_export_onnx(reg, path, &opt, &err);
        CHECK(s == BP_EFORMAT && strstr(err.message, "target_scale"),
              "a bad target_scale: %s (%s)", bp_status_name(s), err.message);
        uint8_t *after = read_all(path, &n1);
        CHECK(before && after && n0 == n1 && !memcmp(before, after, n0),
              "a failed export leaves the existing file as it was");
        free(before), free(after);
    }

    /* ---- errors ---- */
    if (flat) {
        bp_export_options opt;
        memset(&opt, 0, sizeof opt);
        CHECK(bp_export_onnx(NULL, path, &opt, &err) == BP_EINVAL, "NULL net: BP_EINVAL");
        CHECK(bp_export_onnx(flat, NULL, &opt, &err) == BP_EINVAL, "NULL path: BP_EINVAL");
        {   /* NULL options: the defaults, the same file as zeroed options */
            size_t n1 = 0, n2 = 0;
            CHECK(bp_export_onnx(flat, path, NULL, &err) == BP_OK, "NULL options: %s", err.message);
            uint8_t *b1 = read_all(path, &n1);
            CHECK(bp_export_onnx(flat, path2, &opt, &err) == BP_OK, "zeroed options: %s",
                  err.message);
            uint8_t *b2 = read_all(path2, &n2);
            CHECK(b1 && b2 && n1 == n2 && n1 > 0 && !memcmp(b1, b2, n1),
                  "NULL options write what zeroed options write (%zu, %zu bytes)", n1, n2);
            free(b1), free(b2);
            remove(path), remove(path2);
        }
        CHECK(bp_export_onnx(NULL, NULL, NULL, NULL) == BP_EINVAL, "NULL error buffer is fine");
        opt.name = "";
        CHECK(bp_export_onnx(flat, path, &opt, &err) == BP_EINVAL, "an empty name: BP_EINVAL");
        opt.name = "a\nb";
        CHECK(bp_export_onnx(flat, path, &opt, &err) == BP_EINVAL, "a control character: BP_EINVAL");
        opt.name = NULL;
        char missing[300];
        snprintf(missing, sizeof missing, "%s/no/such/dir/m.onnx", dir);
        bp_status s = bp_export_onnx(flat, missing, &opt, &err);
        char nodir[300];
        snprintf(nodir, sizeof nodir, "%s/no", dir);
        CHECK(s == BP_EIO && strstr(err.message, "no/such/dir") && !exists(nodir),
              "a missing directory: %s (%s), nothing created", bp_status_name(s), err.message);
        CHECK(bp_export_onnx(flat, "", &opt, &err) != BP_OK, "an empty path fails");
        /* an unknown layer kind (a corrupted network): BP_EUNSUPPORTED naming the layer */
        bp_layer_kind k = flat->layers[3].desc.kind;
        flat->layers[3].desc.kind = (bp_layer_kind)77;
        unlink(path2);
        s = bp_export_onnx(flat, path2, &opt, &err);
        flat->layers[3].desc.kind = k;
        CHECK(s == BP_EUNSUPPORTED && strstr(err.message, "layer 3") && !exists(path2),
              "an unknown kind: %s (%s), nothing written", bp_status_name(s), err.message);
    }

    bp_net_free(flat);
    bp_net_free(cnn);
    bp_net_free(rec);
    bp_net_free(lm);
    bp_net_free(reg);
    unlink(path);
    unlink(path2);
    rmdir(dir);
    return check_done("test_export_onnx");
}
