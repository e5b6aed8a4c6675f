/*
 * idx.c - the IDX reader (the MNIST file format), plain or gzip.
 *
 * An IDX file is: 0x00 0x00, a type byte, a rank byte NDIMS, NDIMS
 * big-endian uint32 sizes, then the product of the sizes in elements of
 * that type, nothing after. Only unsigned bytes (type 0x08) are read:
 * images of any rank >= 2 as x [dims[0], dims[1] * ... ] scaled by 1/255,
 * labels of rank 1 as class indices.
 *
 * A file is read whole; a gzip file (magic 1f 8b) is inflated with zlib
 * (src/gzip.c) into a buffer that grows as data arrives (so a lying header
 * allocates nothing it cannot fill). Inflating stops as soon as the output
 * passes the size its own header declares (known after 4 + 4 * NDIMS
 * bytes), so a small file that inflates to gigabytes costs no more than
 * its header says; a header that declares more than the compressed bytes
 * can hold is refused before inflating. Then the header is checked
 * against the real length and the float array allocated.
 */
#include "data.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Largest decompressed IDX file (header + data) accepted. */
#define BP_IDX_MAX_BYTES ((size_t)1 << 31)
/* Largest compressed/plain file read from disk. */
#define BP_IDX_MAX_FILE (BP_IDX_MAX_BYTES + 4096)

/* Parsed header of an IDX file. */
typedef struct idx_info {
    int ndims;
    uint32_t dims[255];
    uint64_t count;        /* product of the dims */
    const uint8_t *data;   /* count bytes */
} idx_info;

/* bp_gunzip's expect: the size (header + data) an IDX header declares. */
static int idx_declared(const uint8_t *b, size_t len, size_t *size)
{
    if (len < 4) return 0;
    if (b[0] != 0 || b[1] != 0 || b[3] == 0) return -1;
    size_t hdr = 4 + 4 * (size_t)b[3];
    if (len < hdr) return 0;
    uint64_t count = 1;
    for (int i = 0; i < b[3]; i++) {
        const uint8_t *p = b + 4 + 4 * i;
        uint32_t d = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (d == 0 || count > (uint64_t)BP_IDX_MAX_BYTES / d) return -1; /* parse_idx says why */
        count *= d;
    }
    *size = hdr + (size_t)count;
    return 1;
}

static const char *type_name(int t)
{
    switch (t) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    }
    return NULL;
}

/* "60000x28x28" */
static void dims_text(char *dst, size_t cap, const idx_info *h)
{
    size_t k = 0;
    dst[0] = '\0';
    for (int i = 0; i < h->ndims && k + 12 < cap; i++)
        k += (size_t)snprintf(dst + k, cap - k, "%s%u", i ? "x" : "", (unsigned)h->dims[i]);
}

/* Check the header of plain IDX bytes. rank: 0 = images (>= 2), 1 = labels. */
static bp_status parse_idx(const uint8_t *b, size_t len, const char *name, int labels,
                           idx_info *h, bp_error *err)
{
    if (len < 4)
        return bp_fail(err, BP_EFORMAT, "%s: too short for an IDX header (%zu bytes)", name, len);
    if (b[0] != 0 || b[1] != 0)
        return bp_fail(err, BP_EFORMAT, "%s: bad magic %02x %02x %02x %02x (an IDX file starts "
                       "with 00 00 TYPE NDIMS)", name, b[0], b[1], b[2], b[3]);
    int type = b[2];
    const char *tn = type_name(type);
    if (!tn) return bp_fail(err, BP_EFORMAT, "%s: unknown IDX type 0x%02X", name, type);
    if (type != 0x08)
        return bp_fail(err, BP_EFORMAT, "%s: unsupported IDX type 0x%02X (%s); only 0x08 "
                       "(unsigned byte) is supported", name, type, tn);
    h->ndims = b[3];
    if (labels && h->ndims != 1)
        return bp_fail(err, BP_EFORMAT, "%s: a labels file must have 1 dimension (idx1), this "
                       "one has %d", name, h->ndims);
    if (!labels && h->ndims < 2)
        return bp_fail(err, BP_EFORMAT, "%s: an images file needs at least 2 dimensions "
                       "(samples and features), this one has %d", name, h->ndims);
    size_t hdr = 4 + 4 * (size_t)h->ndims;
    if (len < hdr)
        return bp_fail(err, BP_EFORMAT, "%s: truncated header (%d dimensions need %zu bytes, the "
                       "file has %zu)", name, h->ndims, hdr, len);
    uint64_t count = 1;
    for (int i = 0; i < h->ndims; i++) {
        const uint8_t *p = b + 4 + 4 * i;
        uint32_t d = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        h->dims[i] = d;
        if (d == 0) return bp_fail(err, BP_EFORMAT, "%s: dimension %d is 0", name, i + 1);
        if (count > (uint64_t)BP_IDX_MAX_BYTES / d)
            return bp_fail(err, BP_EFORMAT, "%s: the sizes give more than %zu bytes of data", name,
                           (size_t)BP_IDX_MAX_BYTES);
        count *= d;
    }
    char dt[128];
    dims_text(dt, sizeof dt, h);
    if (h->dims[0] > INT_MAX || count / h->dims[0] > INT_MAX)
        return bp_fail(err, BP_EFORMAT, "%s: sizes %s too large", name, dt);
    size_t have = len - hdr;
    if (have < count)
        return bp_fail(err, BP_EFORMAT, "%s: truncated: sizes %s need %llu bytes of data, the "
                       "file has %zu", name, dt, (unsigned long long)count, have);
    if (have > count)
        return bp_fail(err, BP_EFORMAT, "%s: %llu trailing bytes after the %llu bytes of data "
                       "(sizes %s)", name, (unsigned long long)(have - count),
                       (unsigned long long)count, dt);
    h->count = count;
    h->data = b + hdr;
    return BP_OK;
}

/* Plain bytes of a buffer: inflated into *owned when gzip, else the buffer. */
static bp_status plain_bytes(const uint8_t *data, size_t size, const char *name,
                             const uint8_t **plain, size_t *plain_len, uint8_t **owned,
                             bp_error *err)
{
    *owned = NULL;
    if (bp_is_gzip(data, size)) {
        bp_gunzip_opts g = {BP_IDX_MAX_BYTES, 0, idx_declared};
        bp_status s = bp_gunzip(data, size, name, &g, owned, plain_len, err);
        if (s) return s;
        *plain = *owned;
        return BP_OK;
    }
    *plain = data;
    *plain_len = size;
    return BP_OK;
}

static bp_status idx_decode(bp_data *out, const uint8_t *img, size_t img_size,
                            const char *img_name, const uint8_t *lbl, size_t lbl_size,
                            const char *lbl_name, bp_error *err)
{
    const uint8_t *ip, *lp = NULL;
    size_t ilen, llen = 0;
    uint8_t *iown = NULL, *lown = NULL;
    idx_info *ih = malloc(sizeof *ih), *lh = malloc(sizeof *lh);
    bp_real *x = NULL, *y = NULL;
    bp_status s = BP_OK;
    if (!ih || !lh) s = bp_fail(err, BP_ENOMEM, "%s: out of memory", img_name);
    if (!s) s = plain_bytes(img, img_size, img_name, &ip, &ilen, &iown, err);
    if (!s) s = parse_idx(ip, ilen, img_name, 0, ih, err);
    if (!s && lbl) {
        s = plain_bytes(lbl, lbl_size, lbl_name, &lp, &llen, &lown, err);
        if (!s) s = parse_idx(lp, llen, lbl_name, 1, lh, err);
        if (!s && lh->dims[0] != ih->dims[0])
            s = bp_fail(err, BP_EFORMAT, "%s has %u images but %s has %u labels", img_name,
                        (unsigned)ih->dims[0], lbl_name, (unsigned)lh->dims[0]);
    }
    if (!s) {
        x = malloc((size_t)ih->count * sizeof *x);
        if (!x) s = bp_fail(err, BP_ENOMEM, "%s: out of memory for %llu values", img_name,
                            (unsigned long long)ih->count);
    }
    if (!s && lbl) {
        y = malloc((size_t)lh->count * sizeof *y);
        if (!y) s = bp_fail(err, BP_ENOMEM, "%s: out of memory", lbl_name);
    }
    if (!s) {
        bp_real table[256];
        for (int i = 0; i < 256; i++) table[i] = (bp_real)(i / 255.0);
        for (uint64_t i = 0; i < ih->count; i++) x[i] = table[ih->data[i]];
        out->n = (int)ih->dims[0];
        out->n_inputs = (int)(ih->count / ih->dims[0]);
        /* Images [N, H, W] have the per-sample shape [1, H, W]; [N, C, H, W]
         * has [C, H, W]; [N, F] is flat. */
        if (ih->ndims == 3) out->shape = (bp_shape){3, {1, (int)ih->dims[1], (int)ih->dims[2]}};
        else if (ih->ndims == 4)
            out->shape = (bp_shape){3, {(int)ih->dims[1], (int)ih->dims[2], (int)ih->dims[3]}};
        else out->shape = bp_shape_flat(out->n_inputs);
        out->x = x;
        out->owned = 1;
        if (lbl) {
            int maxl = 0;
            for (uint64_t i = 0; i < lh->count; i++) {
                y[i] = (bp_real)lh->data[i];
                if (lh->data[i] > maxl) maxl = lh->data[i];
            }
            out->y = y;
            out->n_targets = 1;
            out->n_classes = maxl + 1 < 2 ? 2 : maxl + 1;
        }
    } else {
        free(x);
        free(y);
    }
    free(iown);
    free(lown);
    free(ih);
    free(lh);
    return s;
}

bp_status bp_read_idx_mem(bp_data *out, const void *images, size_t images_size,
                          const void *labels, size_t labels_size, bp_error *err)
{
    if (!out) return bp_fail(err, BP_EINVAL, "bp_read_idx_mem: out is NULL");
    memset(out, 0, sizeof *out);
    if (!images) return bp_fail(err, BP_EINVAL, "bp_read_idx_mem: images is NULL");
    return idx_decode(out, images, images_size, "images", labels, labels_size, "labels", err);
}

bp_status bp_read_idx_mem_named(bp_data *out, const void *images, size_t images_size,
                                const char *images_name, const void *labels, size_t labels_size,
                                const char *labels_name, bp_error *err)
{
    if (!out) return bp_fail(err, BP_EINVAL, "bp_read_idx_mem_named: out is NULL");
    memset(out, 0, sizeof *out);
    if (!images) return bp_fail(err, BP_EINVAL, "bp_read_idx_mem_named: images is NULL");
    return idx_decode(out, images, images_size, images_name ? images_name : "images", labels,
                      labels_size, labels_name ? labels_name : "labels", err);
}

bp_status bp_read_idx(bp_data *out, const char *images_path, const char *labels_path,
                      bp_error *err)
{
    if (!out) return bp_fail(err, BP_EINVAL, "bp_read_idx: out is NULL");
    memset(out, 0, sizeof *out);
    if (!images_path) return bp_fail(err, BP_EINVAL, "bp_read_idx: images_path is NULL");
    char *img = NULL, *lbl = NULL;
    size_t ilen = 0, llen = 0;
    bp_status s = bp_read_file(images_path, BP_IDX_MAX_FILE, &img, &ilen, err);
    if (!s && labels_path) s = bp_read_file(labels_path, BP_IDX_MAX_FILE, &lbl, &llen, err);
    if (!s)
        s = idx_decode(out, (const uint8_t *)img, ilen, images_path, (const uint8_t *)lbl, llen,
                       labels_path, err);
    free(img);
    free(lbl);
    return s;
}
