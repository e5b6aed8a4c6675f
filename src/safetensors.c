/*
 * safetensors.c - model files: bp_net_save, bp_net_load, bp_net_load_weights.
 *
 * A model is one Hugging Face safetensors file:
 *
 *   [0, 8)          u64 little-endian N, the length of the JSON header
 *   [8, 8 + N)      JSON object, padded with spaces to a multiple of 8 bytes:
 *                     "__metadata__": {"format": "backprop/1", "spec": ...,
 *                                      "inputs": "784", ...}   (strings only)
 *                     "0.weight": {"dtype": "F32", "shape": [256, 784],
 *                                  "data_offsets": [0, 802816]}
 *                     "0.bias":   {"dtype": "F32", "shape": [256],
 *                                  "data_offsets": [802816, 803840]}
 *                     ...
 *   [8 + N, end)    raw little-endian tensor data; data_offsets [begin, end)
 *                   are relative to byte 8 + N.
 *
 * Keys follow torch.nn.Sequential's state_dict: dense layer i of the spec
 * (counting every layer, activations and dropout included) owns "{i}.weight"
 * [out, in] and "{i}.bias" [out]. Values are float32 in both builds.
 *
 * Loading never trusts the file: every length, offset, dtype and shape is
 * checked before a byte of tensor data is read, the spec's parameter count
 * is checked against the data size before the network is allocated, and
 * every parameter must be finite. Errors name the file and the tensor.
 */
#define _DEFAULT_SOURCE /* realpath */
#include "internal.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define ST_FORMAT "backprop/1"
#define ST_MAX_HEADER ((uint64_t)100000000)   /* 100 MB, as the HF reader */
#define ST_MAX_RANK 8
#define ST_MAX_META 65536
#define ST_MAX_JSON_INT 9007199254740992.0    /* 2^53: exact in a double */

/* ------------------------------------------------------------------------ */
/* Little-endian helpers                                                     */
/* ------------------------------------------------------------------------ */

static uint64_t get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static float get_f32le(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void put_f32le(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
    p[2] = (uint8_t)(u >> 16);
    p[3] = (uint8_t)(u >> 24);
}

/* ------------------------------------------------------------------------ */
/* Parsed header                                                             */
/* ------------------------------------------------------------------------ */

typedef struct st_tensor {
    const char *name;            /* owned by the cJSON tree */
    int rank;
    uint64_t shape[ST_MAX_RANK];
    uint64_t numel;
    uint64_t begin, end;         /* relative to the data section */
    int order;                   /* position in the header */
    int elsize;                  /* bytes per element: 4 (F32) or 8 (I64) */
    int used;                    /* matched to a network parameter */
} st_tensor;

typedef struct st_file {
    const char *name;            /* file name for messages */
    cJSON *root;
    const cJSON *meta;           /* the __metadata__ object, or NULL */
    st_tensor *t;                /* [n_t], sorted by name */
    int n_t;
    const uint8_t *data;         /* data section */
    uint64_t data_size;
} st_file;

static void st_release(st_file *f)
{
    cJSON_Delete(f->root);
    free(f->t);
    f->root = NULL;
    f->t = NULL;
    f->n_t = 0;
}

/* A JSON number that is an exact non-negative integer <= 2^53. */
static int json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > ST_MAX_JSON_INT || d != floor(d)) return 0;
    *out = (uint64_t)d;
    return 1;
}

/* "[8, 4]" into buf. */
static const char *shape_str(char *buf, size_t cap, const uint64_t *shape, int rank)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%llu", i ? ", " : "",
                              (unsigned long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

typedef struct { uint64_t begin, end; const char *name; } st_span;

static int cmp_span(const void *a, const void *b)
{
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Validate one tensor entry of the header into *t. */
static bp_status st_parse_tensor(const st_file *f, const cJSON *item, st_tensor *t,
                                 bp_error *err)
{
    const char *nm = item->string;
    if (!cJSON_IsObject(item))
        return bp_fail(err, BP_EFORMAT, "%s: tensor %s: entry is not a JSON object",
                       f->name, nm);

    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    if (!cJSON_IsString(dtype))
        return bp_fail(err, BP_EFORMAT, "%s: tensor %s: missing or non-string \"dtype\"",
                       f->name, nm);
    t->elsize = strcmp(dtype->valuestring, "I64") == 0 ? 8 : 4;
    if (strcmp(dtype->valuestring, "F32") != 0 && t->elsize != 8) {
        static const char *const known[] = {
            "F64", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32",
            "U16", "U8", "BOOL", "F8_E4M3", "F8_E5M2", NULL};
        for (int i = 0; known[i]; i++)
            if (strcmp(dtype->valuestring, known[i]) == 0)
                return bp_fail(err, BP_EFORMAT,
                               "%s: tensor %s: dtype %s not supported (need F32)",
                               f->name, nm, known[i]);
        return bp_fail(err, BP_EFORMAT, "%s: tensor %s: unknown dtype \"%.32s\"",
                       f->name, nm, dtype->valuestring);
    }

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    if (!cJSON_IsArray(shape))
        return bp_fail(err, BP_EFORMAT, "%s: tensor %s: missing or non-array \"shape\"",
                       f->name, nm);
    int rank = cJSON_GetArraySize(shape);
    if (rank > ST_MAX_RANK)
        return bp_fail(err, BP_EFORMAT, "%s: tensor %s: rank %d exceeds %d",
                       f->name, nm, rank, ST_MAX_RANK);
    t->rank = rank;
    int zero = 0, k = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) {
        if (!json_uint(d, &t->shape[k]))
            return bp_fail(err, BP_EFORMAT,
                           "%s: tensor %s: shape[%d] is not a non-negative integer",
                           f->name, nm, k);
        if (t->shape[k] == 0) zero = 1;
        k++;
    }
    /* numel, with the product bounded by the data size (so no overflow). */
    t->numel = 1;
    if (zero) {
        t->numel = 0;
    } else {
        for (k = 0; k < rank; k++) {
            if (t->shape[k] > f->data_size / (uint64_t)t->elsize / t->numel) {
                char sb[160];
                return bp_fail(err, BP_EFORMAT,
                               "%s: tensor %s: shape %s needs more data than the file "
                               "holds (%llu bytes)", f->name, nm,
                               shape_str(sb, sizeof sb, t->shape, rank),
                               (unsigned long long)f->data_size);
            }
            t->numel *= t->shape[k];
        }
    }

    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !json_uint(cJSON_GetArrayItem(offs, 0), &t->begin) ||
        !json_uint(cJSON_GetArrayItem(offs, 1), &t->end))
        return bp_fail(err, BP_EFORMAT,
                       "%s: tensor %s: \"data_offsets\" must be two non-negative integers",
                       f->name, nm);
    if (t->begin > t->end || t->end > f->data_size)
        return bp_fail(err, BP_EFORMAT,
                       "%s: tensor %s: data_offsets [%llu, %llu] out of range (data "
                       "section is %llu bytes)", f->name, nm,
                       (unsigned long long)t->begin, (unsigned long long)t->end,
                       (unsigned long long)f->data_size);
    if (t->end - t->begin != t->numel * (uint64_t)t->elsize) {
        char sb[160];
        return bp_fail(err, BP_EFORMAT,
                       "%s: tensor %s: data_offsets [%llu, %llu] hold %llu bytes but "
                       "shape %s of %s needs %llu", f->name, nm,
                       (unsigned long long)t->begin, (unsigned long long)t->end,
                       (unsigned long long)(t->end - t->begin),
                       shape_str(sb, sizeof sb, t->shape, rank), t->elsize == 8 ? "I64" : "F32",
                       (unsigned long long)(t->numel * (uint64_t)t->elsize));
    }
    t->name = nm;
    return BP_OK;
}

static bp_status st_parse_meta(st_file *f, const cJSON *meta, bp_error *err)
{
    if (cJSON_IsNull(meta)) return BP_OK;
    if (!cJSON_IsObject(meta))
        return bp_fail(err, BP_EFORMAT, "%s: __metadata__ is not a JSON object", f->name);
    int n = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, meta) {
        if (!cJSON_IsString(v))
            return bp_fail(err, BP_EFORMAT, "%s: metadata \"%.64s\" is not a string",
                           f->name, v->string);
        if (++n > ST_MAX_META)
            return bp_fail(err, BP_EFORMAT, "%s: more than %d metadata entries",
                           f->name, ST_MAX_META);
    }
    if (n > 1) {
        const char **keys = malloc((size_t)n * sizeof *keys);
        if (!keys) return bp_fail(err, BP_ENOMEM, "%s: out of memory", f->name);
        int i = 0;
        cJSON_ArrayForEach(v, meta) keys[i++] = v->string;
        qsort(keys, (size_t)n, sizeof *keys, cmp_str_ptr);
        for (i = 1; i < n; i++)
            if (strcmp(keys[i - 1], keys[i]) == 0) {
                bp_status s = bp_fail(err, BP_EFORMAT,
                                      "%s: duplicate metadata key \"%.64s\"", f->name,
                                      keys[i]);
                free(keys);
                return s;
            }
        free(keys);
    }
    f->meta = meta;
    return BP_OK;
}

/* Parse and validate the header of a safetensors image buf[0, size). On
 * success f holds the tensor table (sorted by name) and the metadata; the
 * caller releases it with st_release. */
static bp_status st_parse(st_file *f, const uint8_t *buf, size_t size,
                          const char *name, bp_error *err)
{
    memset(f, 0, sizeof *f);
    f->name = name;
    if (size < 8)
        return bp_fail(err, BP_EFORMAT,
                       "%s: truncated file (%zu bytes, the header length alone is 8)",
                       name, size);
    uint64_t hlen = get_u64le(buf);
    if (hlen > ST_MAX_HEADER)
        return bp_fail(err, BP_EFORMAT, "%s: oversized header (%llu bytes, limit %llu)",
                       name, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
    if (hlen > size - 8)
        return bp_fail(err, BP_EFORMAT,
                       "%s: truncated file: header length %llu exceeds the %zu bytes "
                       "after it", name, (unsigned long long)hlen, size - 8);
    if (hlen < 2)
        return bp_fail(err, BP_EFORMAT, "%s: header too short (%llu bytes)", name,
                       (unsigned long long)hlen);
    const char *hdr = (const char *)buf + 8;
    if (hdr[0] != '{')
        return bp_fail(err, BP_EFORMAT, "%s: header does not start with '{'", name);
    if (memchr(hdr, '\0', (size_t)hlen))
        return bp_fail(err, BP_EFORMAT, "%s: header contains a NUL byte", name);
    f->data = buf + 8 + hlen;
    f->data_size = size - 8 - hlen;

    /* A NUL-terminated copy: cJSON never reads past it. */
    char *text = malloc((size_t)hlen + 1);
    if (!text) return bp_fail(err, BP_ENOMEM, "%s: out of memory", name);
    memcpy(text, hdr, (size_t)hlen);
    text[hlen] = '\0';
    const char *end = NULL;
    f->root = cJSON_ParseWithLengthOpts(text, (size_t)hlen + 1, &end, 0);
    if (!f->root) {
        size_t at = end && end >= text && end <= text + hlen ? (size_t)(end - text) : 0;
        free(text);
        return bp_fail(err, BP_EFORMAT, "%s: header is not valid JSON (near byte %zu)",
                       name, at + 8);
    }
    /* Only padding may follow the object. */
    for (const char *p = end; p && *p; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            size_t at = (size_t)(p - text);
            free(text);
            st_release(f);
            return bp_fail(err, BP_EFORMAT, "%s: trailing bytes after the JSON header "
                           "(byte %zu)", name, at + 8);
        }
    free(text);
    if (!cJSON_IsObject(f->root)) {
        st_release(f);
        return bp_fail(err, BP_EFORMAT, "%s: header is not a JSON object", name);
    }

    int n = 0, n_meta_obj = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, f->root) {
        if (strcmp(item->string, "__metadata__") == 0) n_meta_obj++;
        else n++;
    }
    if (n_meta_obj > 1) {
        st_release(f);
        return bp_fail(err, BP_EFORMAT, "%s: duplicate __metadata__", name);
    }
    f->t = bp_alloc_array((size_t)n, sizeof *f->t);
    if (!f->t) {
        st_release(f);
        return bp_fail(err, BP_ENOMEM, "%s: out of memory", name);
    }
    bp_status s = BP_OK;
    int i = 0;
    cJSON_ArrayForEach(item, f->root) {
        if (strcmp(item->string, "__metadata__") == 0) {
            s = st_parse_meta(f, item, err);
        } else {
            s = st_parse_tensor(f, item, &f->t[i], err);
            f->t[i].order = i;
            i++;
        }
        if (s != BP_OK) {
            st_release(f);
            return s;
        }
    }
    f->n_t = n;

    if (n > 1) {
        qsort(f->t, (size_t)n, sizeof *f->t, cmp_tensor_name);
        for (i = 1; i < n; i++)
            if (strcmp(f->t[i - 1].name, f->t[i].name) == 0) {
                s = bp_fail(err, BP_EFORMAT, "%s: duplicate tensor %s", name,
                            f->t[i].name);
                st_release(f);
                return s;
            }
        /* No two non-empty tensors may share bytes. */
        st_span *sp = malloc((size_t)n * sizeof *sp);
        if (!sp) {
            st_release(f);
            return bp_fail(err, BP_ENOMEM, "%s: out of memory", name);
        }
        int m = 0;
        for (i = 0; i < n; i++)
            if (f->t[i].end > f->t[i].begin)
                sp[m++] = (st_span){f->t[i].begin, f->t[i].end, f->t[i].name};
        if (m > 1) qsort(sp, (size_t)m, sizeof *sp, cmp_span);
        for (i = 1; i < m; i++)
            if (sp[i].begin < sp[i - 1].end) {
                s = bp_fail(err, BP_EFORMAT, "%s: tensors %s and %s overlap in the data",
                            name, sp[i - 1].name, sp[i].name);
                break;
            }
        free(sp);
        if (s != BP_OK) {
            st_release(f);
            return s;
        }
    }
    return BP_OK;
}

static st_tensor *st_find(st_file *f, const char *name)
{
    st_tensor key;
    key.name = name;
    return f->n_t ? bsearch(&key, f->t, (size_t)f->n_t, sizeof *f->t, cmp_tensor_name)
                  : NULL;
}

static const char *st_meta(const st_file *f, const char *key)
{
    if (!f->meta) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(f->meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Decode one expected parameter tensor into dst [numel]. */
static bp_status st_take(st_file *f, const char *key, const uint64_t *shape, int rank,
                         bp_real *dst, bp_error *err)
{
    st_tensor *t = st_find(f, key);
    if (!t)
        return bp_fail(err, BP_EFORMAT, "%s: missing tensor %s", f->name, key);
    int same = t->rank == rank;
    for (int k = 0; same && k < rank; k++) same = t->shape[k] == shape[k];
    if (!same) {
        char a[160], b[160];
        return bp_fail(err, BP_ESHAPE, "%s: tensor %s: shape %s does not match the "
                       "network (expected %s)", f->name, key,
                       shape_str(a, sizeof a, t->shape, t->rank),
                       shape_str(b, sizeof b, shape, rank));
    }
    if (t->elsize != 4)
        return bp_fail(err, BP_EFORMAT, "%s: tensor %s: dtype I64, the network needs F32",
                       f->name, key);
    const uint8_t *p = f->data + t->begin;
    for (uint64_t i = 0; i < t->numel; i++) {
        float v = get_f32le(p + 4 * i);
        if (!isfinite(v))
            return bp_fail(err, BP_EFORMAT, "%s: tensor %s: element %llu is %s",
                           f->name, key, (unsigned long long)i,
                           isnan(v) ? "NaN" : "infinite");
        dst[i] = (bp_real)v;
    }
    t->used = 1;
    return BP_OK;
}

/* One I64 counter (batchnorm's num_batches_tracked): shape [] and >= 0. */
static bp_status st_take_i64(st_file *f, const char *key, int64_t *dst, bp_error *err)
{
    st_tensor *t = st_find(f, key);
    if (!t) return bp_fail(err, BP_EFORMAT, "%s: missing tensor %s", f->name, key);
    if (t->elsize != 8 || t->rank != 0 || t->numel != 1)
        return bp_fail(err, BP_ESHAPE, "%s: tensor %s must be one I64 (shape [])", f->name, key);
    const uint8_t *p = f->data + t->begin;
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--) v = (v << 8) | p[k];
    if (v > (uint64_t)INT64_MAX)
        return bp_fail(err, BP_EFORMAT, "%s: tensor %s is negative", f->name, key);
    *dst = (int64_t)v;
    t->used = 1;
    return BP_OK;
}

/* Fill params [net->n_params] and buffers [net->n_buffers] (laid out like
 * net->params and net->buffers) and the I64 counters (counts [n_layers])
 * from the file: every tensor of the network must be present with the
 * right shape and dtype; any other tensor is an error. A file without any
 * buffer at all (a plain state dict of parameters) keeps the network's
 * buffers when `buffers_optional`. */
static bp_status st_fill(st_file *f, bp_net *net, bp_real *params, bp_real *buffers,
                         int64_t *counts, int buffers_optional, bp_error *err)
{
    for (int i = 0; i < f->n_t; i++) f->t[i].used = 0;
    int nt = bp_net_tensor_count(net);
    int skip_buffers = 0;
    if (buffers_optional) {
        skip_buffers = 1;
        for (int j = 0; j < nt && skip_buffers; j++) {
            bp_tensor t;
            bp_net_tensor(net, j, &t);
            if (!t.trainable && st_find(f, t.name)) skip_buffers = 0;
        }
    }
    for (int j = 0; j < nt; j++) {
        bp_tensor t;
        bp_net_tensor(net, j, &t);
        if (!t.trainable && skip_buffers) continue;
        bp_status s;
        if (t.dtype == BP_DTYPE_I64) {
            s = st_take_i64(f, t.name, &counts[t.layer], err);
        } else {
            uint64_t shape[4];
            for (int k = 0; k < t.rank; k++) shape[k] = (uint64_t)t.shape[k];
            bp_real *dst = t.trainable ? params + (t.data - net->params)
                                       : buffers + (t.data - net->buffers);
            s = st_take(f, t.name, shape, t.rank, dst, err);
        }
        if (s != BP_OK) return s;
    }
    /* The first unexpected tensor in header order. */
    const st_tensor *extra = NULL;
    for (int i = 0; i < f->n_t; i++)
        if (!f->t[i].used && (!extra || f->t[i].order < extra->order)) extra = &f->t[i];
    if (extra)
        return bp_fail(err, BP_EFORMAT, "%s: unexpected tensor %s (the network has no "
                       "such parameter)", f->name, extra->name);
    return BP_OK;
}

/* Values (parameters and buffers) the spec needs on `input`, computed
 * without building the network, so a tiny file cannot make the loader
 * allocate gigabytes (saturating). Returns the skeleton's status (message
 * set) on a bad spec. */
static bp_status spec_param_count(const char *spec, bp_shape input, uint64_t *count,
                                  bp_error *err)
{
    bp_net shape;
    bp_status s = bp_net_skeleton(&shape, input, spec, err);
    if (s != BP_OK) return s;
    *count = bp_add_sat((uint64_t)shape.n_params, (uint64_t)shape.n_buffers);
    free(shape.layers);
    return BP_OK;
}

/* "C,H,W" (or "F", "T,F") into *out; 0 when malformed. */
static int parse_shape(const char *text, bp_shape *out)
{
    bp_shape s = {0, {0, 0, 0}};
    const char *p = text;
    for (;;) {
        if (s.rank == BP_MAX_RANK || *p < '0' || *p > '9') return 0;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || v < 1 || v > 0x7fffffffL) return 0;
        s.dim[s.rank++] = (int)v;
        p = end;
        if (!*p) break;
        if (*p != ',') return 0;
        p++;
    }
    *out = s;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */
/* ------------------------------------------------------------------------ */

static bp_status load_from_parsed(bp_net **out, st_file *f, bp_error *err)
{
    const char *spec = st_meta(f, "spec");
    const char *inputs_s = st_meta(f, "inputs");
    const char *format = st_meta(f, "format");
    if (format && strncmp(format, "backprop/", 9) == 0 && strcmp(format, ST_FORMAT) != 0)
        return bp_fail(err, BP_EFORMAT, "%s: model format \"%.64s\" is not supported "
                       "(this library reads %s)", f->name, format, ST_FORMAT);
    if (!spec)
        return bp_fail(err, BP_EFORMAT, "%s: no \"spec\" in __metadata__ (not a backprop "
                       "model; load a plain state dict with bp_net_load_weights)",
                       f->name);
    if (!inputs_s)
        return bp_fail(err, BP_EFORMAT, "%s: no \"inputs\" in __metadata__", f->name);
    char *endp = NULL;
    errno = 0;
    long inputs = inputs_s[0] >= '0' && inputs_s[0] <= '9' ? strtol(inputs_s, &endp, 10) : 0;
    if (!endp || *endp || errno || inputs < 1 || inputs > 0x7fffffffL)
        return bp_fail(err, BP_EFORMAT, "%s: metadata inputs \"%.64s\" is not a positive "
                       "integer", f->name, inputs_s);

    bp_shape input = bp_shape_flat((int)inputs);
    const char *shape_s = st_meta(f, "input_shape");
    if (shape_s && (!parse_shape(shape_s, &input) || bp_shape_size(input) != (size_t)inputs))
        return bp_fail(err, BP_EFORMAT, "%s: metadata input_shape \"%.64s\" is not a shape of "
                       "%ld inputs (C,H,W or T,F)", f->name, shape_s, inputs);
    uint64_t need = 0;
    bp_error sub = {BP_OK, ""};
    bp_status s = spec_param_count(spec, input, &need, &sub);
    if (s == BP_ENOMEM) return bp_fail(err, s, "%s: out of memory", f->name);
    if (s != BP_OK)
        return bp_fail(err, BP_EFORMAT, "%s: metadata spec: %s", f->name, sub.message);
    if (need > f->data_size / 4)
        return bp_fail(err, BP_EFORMAT, "%s: spec \"%.128s\" with %ld inputs needs %llu "
                       "parameters but the file holds %llu bytes of data", f->name, spec,
                       inputs, (unsigned long long)need,
                       (unsigned long long)f->data_size);

    bp_net *net = NULL;
    s = bp_net_create_shaped(&net, input, spec, 0, &sub);
    if (s != BP_OK) {
        bp_net_free(net);
        return bp_fail(err, s == BP_ENOMEM ? BP_ENOMEM : BP_EFORMAT,
                       "%s: metadata spec: %s", f->name, sub.message);
    }
    int64_t *counts = bp_alloc_array((size_t)net->n_layers, sizeof *counts);
    s = counts ? st_fill(f, net, net->params, net->buffers, counts, 0, err)
               : bp_fail(err, BP_ENOMEM, "%s: out of memory", f->name);
    for (int i = 0; s == BP_OK && i < net->n_layers; i++) net->layers[i].count = counts[i];
    free(counts);
    if (s == BP_OK && f->meta) {
        const cJSON *v;
        /* st_parse_meta refused duplicate keys, and the new network has
         * no metadata: append (linear in the number of keys). */
        cJSON_ArrayForEach(v, f->meta) {
            s = bp_net_meta_append(net, v->string, v->valuestring, &sub);
            if (s != BP_OK) {
                bp_fail(err, s, "%s: metadata \"%.64s\": %s", f->name, v->string,
                        sub.message);
                break;
            }
        }
    }
    if (s != BP_OK) {
        bp_net_free(net);
        return s;
    }
    *out = net;
    return BP_OK;
}

bp_status bp_net_load_buffer(bp_net **out, const uint8_t *data, size_t size,
                             const char *name, bp_error *err)
{
    if (!out) return bp_fail(err, BP_EINVAL, "bp_net_load: out is NULL");
    *out = NULL;
    if (!name) name = "<buffer>";
    if (!data && size) return bp_fail(err, BP_EINVAL, "%s: data is NULL", name);
    st_file f;
    bp_status s = st_parse(&f, data, size, name, err);
    if (s != BP_OK) return s;
    s = load_from_parsed(out, &f, err);
    st_release(&f);
    return s;
}

bp_status bp_net_load_weights_buffer(bp_net *net, const uint8_t *data, size_t size,
                                     const char *name, bp_error *err)
{
    if (!name) name = "<buffer>";
    if (!net) return bp_fail(err, BP_EINVAL, "bp_net_load_weights: net is NULL");
    if (!data && size) return bp_fail(err, BP_EINVAL, "%s: data is NULL", name);
    st_file f;
    bp_status s = st_parse(&f, data, size, name, err);
    if (s != BP_OK) return s;
    /* Decode into copies so that a failure leaves the network untouched. */
    bp_real *tmp = bp_alloc_array(net->n_params + 1, sizeof *tmp);
    bp_real *tbuf = bp_alloc_array(net->n_buffers + 1, sizeof *tbuf);
    int64_t *counts = bp_alloc_array((size_t)net->n_layers, sizeof *counts);
    if (!tmp || !tbuf || !counts) {
        free(tmp);
        free(tbuf);
        free(counts);
        st_release(&f);
        return bp_fail(err, BP_ENOMEM, "%s: out of memory", name);
    }
    if (net->n_params) memcpy(tmp, net->params, net->n_params * sizeof *tmp);
    if (net->n_buffers) memcpy(tbuf, net->buffers, net->n_buffers * sizeof *tbuf);
    for (int i = 0; i < net->n_layers; i++) counts[i] = net->layers[i].count;
    s = st_fill(&f, net, tmp, tbuf, counts, 1, err);
    if (s == BP_OK) {
        if (net->n_params) memcpy(net->params, tmp, net->n_params * sizeof *tmp);
        if (net->n_buffers) memcpy(net->buffers, tbuf, net->n_buffers * sizeof *tbuf);
        for (int i = 0; i < net->n_layers; i++) net->layers[i].count = counts[i];
    }
    free(tmp);
    free(tbuf);
    free(counts);
    st_release(&f);
    return s;
}

/* Read up to `want` bytes at b + *n, growing *b (capacity *cap) as data
 * arrives: a header that claims more than the stream holds costs only what
 * the stream holds. Stops at end of file. */
static bp_status read_some(int fd, const char *path, uint8_t **b, size_t *cap, size_t *n,
                           size_t want, bp_error *err)
{
    size_t goal = *n + want;
    while (*n < goal) {
        if (*n == *cap) {
            size_t ncap = *cap < 65536 ? 65536 : *cap * 2;
            if (ncap > goal || ncap < *cap) ncap = goal;
            uint8_t *nb = realloc(*b, ncap);
            if (!nb) return bp_fail(err, BP_ENOMEM, "%s: out of memory", path);
            *b = nb;
            *cap = ncap;
        }
        size_t chunk = *cap - *n;
        if (chunk > ((size_t)1 << 30)) chunk = (size_t)1 << 30;
        ssize_t r = read(fd, *b + *n, chunk);
        if (r < 0) {
            if (errno == EINTR) continue;
            return bp_fail(err, BP_EIO, "%s: read failed: %s", path, strerror(errno));
        }
        if (r == 0) break;
        *n += (size_t)r;
    }
    return BP_OK;
}

/* The end of the data section the header's tensors use: the largest
 * "data_offsets" end (0 when the header does not parse; st_parse then
 * reports why). */
static uint64_t header_data_end(const uint8_t *hdr, size_t hlen)
{
    cJSON *root = cJSON_ParseWithLength((const char *)hdr, hlen);
    uint64_t end = 0;
    const cJSON *item;
    if (cJSON_IsObject(root)) {
        cJSON_ArrayForEach(item, root) {
            const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
            uint64_t e;
            if (cJSON_IsArray(offs) && offs->child && offs->child->next &&
                json_uint(offs->child->next, &e) && e > end)
                end = e;
        }
    }
    cJSON_Delete(root);
    return end;
}

/* Read a model file: the 8-byte header length first, checked against the
 * limit and (for a regular file) the file size before the header is read,
 * then the header, then only as many data bytes as its tensors use. So
 * /dev/zero, an endless pipe or a huge file never make the reader grow
 * without bound: what is read is bounded by ST_MAX_HEADER plus what the
 * header's tensors need, and that is checked against the memory available
 * before it is allocated. */
static bp_status read_file(const char *path, uint8_t **buf, size_t *size, bp_error *err)
{
    *buf = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return bp_fail(err, BP_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return bp_fail(err, BP_EIO, "%s: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return bp_fail(err, BP_EIO, "%s: is a directory", path);
    }
    /* A regular file's size bounds everything (files in /proc say 0:
     * treat those like a stream). */
    int known = S_ISREG(st.st_mode) && st.st_size > 0;
    uint64_t fsize = known ? (uint64_t)st.st_size : 0;
    uint8_t *b = NULL;
    size_t cap = 0, n = 0;
    bp_status s = read_some(fd, path, &b, &cap, &n, 8, err);
    if (s == BP_OK && n == 8) {
        uint64_t hlen = get_u64le(b);
        if (hlen > ST_MAX_HEADER) {
            /* st_parse reports it from the 8 bytes. */
        } else if (known && hlen > fsize - 8) {
            s = bp_fail(err, BP_EFORMAT, "%s: truncated file: header length %llu exceeds the %llu "
                        "bytes after it", path, (unsigned long long)hlen,
                        (unsigned long long)(fsize - 8));
        } else {
            s = read_some(fd, path, &b, &cap, &n, (size_t)hlen, err);
            if (s == BP_OK && n == 8 + hlen) {
                uint64_t dend = header_data_end(b + 8, (size_t)hlen);
                if (known && dend > fsize - 8 - hlen) dend = fsize - 8 - hlen; /* st_parse says why */
                uint64_t total = 8 + hlen + dend;
                s = bp_mem_check(total, total, path, "the tensor data its header declares", err);
                if (s == BP_OK && dend > SIZE_MAX - n) s = bp_fail(err, BP_ENOMEM, "%s: out of memory", path);
                if (s == BP_OK) s = read_some(fd, path, &b, &cap, &n, (size_t)dend, err);
            }
        }
    }
    close(fd);
    if (s != BP_OK) {
        free(b);
        return s;
    }
    if (!b) b = malloc(1); /* an empty file: st_parse reports it */
    if (!b) return bp_fail(err, BP_ENOMEM, "%s: out of memory", path);
    *buf = b;
    *size = n;
    return BP_OK;
}

bp_status bp_net_load(bp_net **out, const char *path, bp_error *err)
{
    if (!out) return bp_fail(err, BP_EINVAL, "bp_net_load: out is NULL");
    *out = NULL;
    if (!path) return bp_fail(err, BP_EINVAL, "bp_net_load: path is NULL");
    uint8_t *buf;
    size_t size;
    bp_status s = read_file(path, &buf, &size, err);
    if (s != BP_OK) return s;
    s = bp_net_load_buffer(out, buf, size, path, err);
    free(buf);
    return s;
}

bp_status bp_net_load_weights(bp_net *net, const char *path, bp_error *err)
{
    if (!net) return bp_fail(err, BP_EINVAL, "bp_net_load_weights: net is NULL");
    if (!path) return bp_fail(err, BP_EINVAL, "bp_net_load_weights: path is NULL");
    uint8_t *buf;
    size_t size;
    bp_status s = read_file(path, &buf, &size, err);
    if (s != BP_OK) return s;
    s = bp_net_load_weights_buffer(net, buf, size, path, err);
    free(buf);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Saving                                                                    */
/* ------------------------------------------------------------------------ */

static cJSON *add_number(cJSON *arr, uint64_t v)
{
    cJSON *n = cJSON_CreateNumber((double)v);
    if (n && !cJSON_AddItemToArray(arr, n)) {
        cJSON_Delete(n);
        n = NULL;
    }
    return n;
}

/* The JSON header text (unpadded), or NULL when out of memory. */
static char *build_header(const bp_net *net)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    char num[32];
    int ok = 1;
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    snprintf(num, sizeof num, "%d", net->n_inputs);
    ok = meta && cJSON_AddStringToObject(meta, "format", ST_FORMAT) &&
         cJSON_AddStringToObject(meta, "spec", bp_net_spec(net)) &&
         cJSON_AddStringToObject(meta, "inputs", num);
    int nm = bp_net_meta_count(net);
    for (int i = 0; ok && i < nm; i++) {
        const char *k, *v;
        if (!bp_net_meta_at(net, i, &k, &v) || !k || !v) continue;
        if (!strcmp(k, "format") || !strcmp(k, "spec") || !strcmp(k, "inputs") ||
            !strcmp(k, "input_shape"))
            continue;
        ok = cJSON_AddStringToObject(meta, k, v) != NULL;
    }
    if (ok && net->input_shape.rank > 1) {
        char sh[64];
        size_t len = 0;
        for (int k = 0; k < net->input_shape.rank; k++)
            len += (size_t)snprintf(sh + len, sizeof sh - len, "%s%d", k ? "," : "",
                                    net->input_shape.dim[k]);
        ok = cJSON_AddStringToObject(meta, "input_shape", sh) != NULL;
    }
    uint64_t off = 0;
    int nt = bp_net_tensor_count(net);
    for (int j = 0; ok && j < nt; j++) {
        bp_tensor tt;
        bp_net_tensor((bp_net *)net, j, &tt);
        uint64_t bytes = (uint64_t)tt.count * (tt.dtype == BP_DTYPE_I64 ? 8 : 4);
        cJSON *t = cJSON_AddObjectToObject(root, tt.name);
        cJSON *shape = t ? cJSON_AddArrayToObject(t, "shape") : NULL;
        cJSON *offs = NULL;
        ok = t && cJSON_AddStringToObject(t, "dtype", tt.dtype == BP_DTYPE_I64 ? "I64" : "F32") &&
             shape != NULL;
        for (int k = 0; ok && k < tt.rank; k++) ok = add_number(shape, (uint64_t)tt.shape[k]) != NULL;
        ok = ok && (offs = cJSON_AddArrayToObject(t, "data_offsets")) != NULL &&
             add_number(offs, off) && add_number(offs, off + bytes);
        off += bytes;
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

bp_status bp_net_save_buffer(const bp_net *net, uint8_t **out, size_t *out_size,
                             bp_error *err)
{
    if (!out || !out_size) return bp_fail(err, BP_EINVAL, "bp_net_save: out is NULL");
    *out = NULL;
    *out_size = 0;
    if (!net) return bp_fail(err, BP_EINVAL, "bp_net_save: net is NULL");

    size_t data_size = 0;
    int nt = bp_net_tensor_count(net);
    for (int j = 0; j < nt; j++) {
        bp_tensor t;
        bp_net_tensor((bp_net *)net, j, &t);
        if (t.dtype == BP_DTYPE_I64) {
            data_size += 8;
            continue;
        }
        for (size_t q = 0; q < t.count; q++) {
            float v = (float)t.data[q];
            if (!isfinite(v))
                return bp_fail(err, BP_EINVAL, "bp_net_save: tensor %s[%zu] is %s "
                               "(in float32); refusing to write an unusable model", t.name, q,
                               isnan(v) ? "NaN" : "infinite");
        }
        data_size += 4 * t.count;
    }

    char *text = build_header(net);
    if (!text) return bp_fail(err, BP_ENOMEM, "bp_net_save: out of memory");
    size_t tlen = strlen(text);
    size_t hlen = (tlen + 7) & ~(size_t)7;
    size_t total = 8 + hlen + data_size;
    uint8_t *buf = malloc(total);
    if (!buf) {
        cJSON_free(text);
        return bp_fail(err, BP_ENOMEM, "bp_net_save: out of memory (%zu bytes)", total);
    }
    put_u64le(buf, (uint64_t)hlen);
    memcpy(buf + 8, text, tlen);
    memset(buf + 8 + tlen, ' ', hlen - tlen);
    cJSON_free(text);

    uint8_t *p = buf + 8 + hlen;
    for (int j = 0; j < nt; j++) {
        bp_tensor t;
        bp_net_tensor((bp_net *)net, j, &t);
        if (t.dtype == BP_DTYPE_I64) {
            uint64_t v = (uint64_t)*t.i64;
            for (int k = 0; k < 8; k++) *p++ = (uint8_t)(v >> (8 * k));
            continue;
        }
        for (size_t q = 0; q < t.count; q++, p += 4) put_f32le(p, (float)t.data[q]);
    }
    *out = buf;
    *out_size = total;
    return BP_OK;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? (size_t)1 << 30 : n;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync the directory holding `path` so the rename itself is durable.
 * Best effort: some file systems do not support it. */
static void sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) dir = bp_strdup(".");
    else if (slash == path) dir = bp_strdup("/");
    else {
        dir = malloc((size_t)(slash - path) + 1);
        if (dir) {
            memcpy(dir, path, (size_t)(slash - path));
            dir[slash - path] = '\0';
        }
    }
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

bp_status bp_write_temp(const char *path, const char *shown, const void *buf, size_t size,
                        unsigned mode, char **tmp, bp_error *err)
{
    size_t n = strlen(path) + sizeof ".tmp.XXXXXX";
    char *t = malloc(n);
    if (!t) return bp_fail(err, BP_ENOMEM, "%s: out of memory", shown);
    snprintf(t, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(t);
    if (fd < 0) {
        int e = errno;
        free(t);
        return bp_fail(err, BP_EIO, "%s: cannot create a temporary file: %s", shown, strerror(e));
    }
    const char *what = NULL;
    if (write_all(fd, buf, size) != 0) what = "write failed";
    else if (fchmod(fd, (mode_t)mode) != 0) what = "cannot set permissions";
    else if (fsync(fd) != 0) what = "fsync failed";
    int e = what ? errno : 0;
    if (close(fd) != 0 && !what) {
        what = "close failed";
        e = errno;
    }
    if (what) {
        unlink(t);
        free(t);
        return bp_fail(err, BP_EIO, "%s: %s: %s", shown, what, strerror(e));
    }
    *tmp = t;
    return BP_OK;
}

bp_status bp_write_file_atomic(const char *path, const void *buf, size_t size, bp_error *err)
{
    if (!path || !*path) return bp_fail(err, BP_EINVAL, "empty path");
    /* A symbolic link is followed: its target is replaced, the link stays.
     * An existing path that is not a regular file (a FIFO, a device) is
     * written in place: renaming over it would replace the node itself. */
    char *real = NULL;
    struct stat lst, st;
    if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) real = realpath(path, NULL);
    const char *shown = path;
    if (real) path = real;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        const char *what = fd < 0 ? "cannot open" : write_all(fd, buf, size) != 0 ? "write failed" : NULL;
        int e = what ? errno : 0;
        if (fd >= 0 && close(fd) != 0 && !what) {
            what = "close failed";
            e = errno;
        }
        free(real);
        return what ? bp_fail(err, BP_EIO, "%s: %s: %s", shown, what, strerror(e)) : BP_OK;
    }

    /* mkstemp makes the file 0600; keep an existing model's mode, else 0644. */
    unsigned mode = stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (st.st_mode & 0777) : 0644;
    char *tmp = NULL;
    bp_status s = bp_write_temp(path, shown, buf, size, mode, &tmp, err);
    if (s != BP_OK) {
        free(real);
        return s;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        bp_fail(err, BP_EIO, "%s: cannot rename the temporary file into place: %s", shown,
                strerror(e));
        free(real);
        return BP_EIO;
    }
    free(tmp);
    sync_parent_dir(path);
    free(real);
    return BP_OK;
}

bp_status bp_net_save(const bp_net *net, const char *path, bp_error *err)
{
    if (!net) return bp_fail(err, BP_EINVAL, "bp_net_save: net is NULL");
    if (!path || !*path) return bp_fail(err, BP_EINVAL, "bp_net_save: empty path");
    uint8_t *buf;
    size_t size;
    bp_status s = bp_net_save_buffer(net, &buf, &size, err);
    if (s != BP_OK) return s;
    s = bp_write_file_atomic(path, buf, size, err);
    free(buf);
    return s;
}
