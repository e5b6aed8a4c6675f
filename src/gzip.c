/*
 * gzip.c - inflating gzip data for the readers (IDX, CSV), bounded.
 *
 * The output buffer grows as data arrives, so a lying size field never
 * allocates what the data cannot fill. Two bounds stop an inflation that
 * would grow without end (a "gzip bomb": deflate reaches ~1032:1):
 *   - g->max, the most bytes the caller accepts;
 *   - g->expect, asked after every step: once the output holds enough of
 *     its own header (IDX: 4 + 4 * NDIMS bytes), it gives the exact size
 *     the data declares, and inflating stops as soon as the output passes
 *     it, instead of after gigabytes.
 * g->prefix > 0 stops quietly after that many bytes (format sniffing and
 * reading a CSV header need only the start).
 */
#include "data.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int bp_is_gzip(const void *data, size_t size)
{
    const uint8_t *p = data;
    return size >= 2 && p[0] == 0x1f && p[1] == 0x8b;
}

/* Deflate's best ratio is 1032:1; with gzip member overhead, `in_len`
 * compressed bytes cannot inflate to more than this. */
static size_t ratio_bound(size_t in_len)
{
    if (in_len > (SIZE_MAX - 65536) / 1040) return SIZE_MAX;
    return in_len * 1040 + 65536;
}

/* Ask g->expect for the declared size: 1 known (limit lowered to one byte
 * past it), 0 not yet, -1 stop (a bad header: *s stays BP_OK for the
 * caller to report it; a size the input cannot hold: *s set). */
static int expect_step(const bp_gunzip_opts *g, const uint8_t *buf, size_t len, size_t in_len,
                       const char *name, size_t *declared, size_t *limit, bp_status *s,
                       bp_error *err)
{
    int k = g->expect(buf, len, declared);
    if (k <= 0) return k;
    if (*declared > ratio_bound(in_len)) {
        *s = bp_fail(err, BP_EFORMAT, "%s: the header declares %zu bytes, more than %zu bytes "
                     "of gzip data can hold", name, *declared, in_len);
        return -1;
    }
    /* One byte more than declared shows that the data is longer. */
    if (*declared < SIZE_MAX && *declared + 1 < *limit) *limit = *declared + 1;
    return 1;
}

bp_status bp_gunzip(const uint8_t *in, size_t in_len, const char *name, const bp_gunzip_opts *g,
                    uint8_t **out, size_t *out_len, bp_error *err)
{
    *out = NULL;
    *out_len = 0;
    size_t max = g->max;
    size_t stop_at = g->prefix > 0 && g->prefix < max ? g->prefix : 0;
    size_t limit = stop_at ? stop_at : max;   /* never hold more than this */
    size_t declared = 0;                      /* exact size once known (expect) */
    int known = 0;
    /* First guess: ISIZE (size mod 2^32) from the trailer, within the bounds. */
    size_t cap = 1 << 16;
    if (in_len >= 18) {
        const uint8_t *t = in + in_len - 4;
        size_t isize = (size_t)t[0] | (size_t)t[1] << 8 | (size_t)t[2] << 16 | (size_t)t[3] << 24;
        if (isize > cap && isize <= ratio_bound(in_len)) cap = isize;
    }
    if (cap > limit) cap = limit;
    if (cap < 64) cap = 64;
    uint8_t *buf = malloc(cap + BP_READ_PAD);
    if (!buf) return bp_fail(err, BP_ENOMEM, "%s: out of memory inflating gzip data", name);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 16) != Z_OK) {
        free(buf);
        return bp_fail(err, BP_ENOMEM, "%s: cannot start zlib", name);
    }
    const uint8_t *next = in;
    size_t left = in_len, len = 0;
    bp_status s = BP_OK;
    for (;;) {
        if (zs.avail_in == 0 && left > 0) {
            uInt chunk = left > UINT_MAX ? UINT_MAX : (uInt)left;
            zs.next_in = (Bytef *)next;
            zs.avail_in = chunk;
            next += chunk;
            left -= chunk;
        }
        if (g->expect && !known) {
            int k = expect_step(g, buf, len, in_len, name, &declared, &limit, &s, err);
            if (k < 0) break; /* a bad header (the caller reports it), or too large */
            known = k;
        }
        if (len >= limit) {
            if (stop_at && len >= stop_at) break; /* the prefix asked for */
            if (known && len > declared) {
                s = bp_fail(err, BP_EFORMAT, "%s: the gzip data holds more than the %zu bytes "
                            "its header declares (stopped inflating there)", name, declared);
                break;
            }
            s = bp_fail(err, BP_EFORMAT, "%s: decompressed data larger than %zu bytes", name, max);
            break;
        }
        if (len == cap) {
            size_t ncap = cap > limit / 2 ? limit : cap * 2;
            uint8_t *nb = realloc(buf, ncap + BP_READ_PAD);
            if (!nb) {
                s = bp_fail(err, BP_ENOMEM, "%s: out of memory inflating gzip data (%zu bytes)",
                            name, ncap);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        /* Inflate in steps of at most 1 MiB so that the header check above
         * comes early and the bounds are checked often. */
        size_t room = cap - len;
        if (room > ((size_t)1 << 20)) room = (size_t)1 << 20;
        zs.next_out = buf + len;
        zs.avail_out = (uInt)room;
        uInt before_out = zs.avail_out, before_in = zs.avail_in;
        int r = inflate(&zs, Z_NO_FLUSH);
        len += before_out - zs.avail_out;
        if (g->expect && !known) { /* the header may be complete now */
            int k = expect_step(g, buf, len, in_len, name, &declared, &limit, &s, err);
            if (k < 0) break;
            known = k;
        }
        if (r == Z_STREAM_END) {
            size_t rest = zs.avail_in + left;
            if (rest == 0) break;
            /* another gzip member may follow; anything else is an error */
            if (zs.avail_in == 0) { /* refill so the magic can be seen */
                uInt chunk = left > UINT_MAX ? UINT_MAX : (uInt)left;
                zs.next_in = (Bytef *)next;
                zs.avail_in = chunk;
                next += chunk;
                left -= chunk;
            }
            if (!bp_is_gzip(zs.next_in, zs.avail_in)) {
                s = bp_fail(err, BP_EFORMAT, "%s: %zu bytes of trailing garbage after the gzip "
                            "data", name, rest);
                break;
            }
            if (inflateReset(&zs) != Z_OK) {
                s = bp_fail(err, BP_EFORMAT, "%s: corrupt gzip data", name);
                break;
            }
            continue;
        }
        if (r == Z_OK) continue;
        if (r == Z_BUF_ERROR) {
            if (zs.avail_out == 0) continue; /* output full: grow */
            if (zs.avail_in == 0 && left == 0) {
                if (stop_at) break; /* sniffing: what there is */
                s = bp_fail(err, BP_EFORMAT, "%s: truncated gzip data (unexpected end of file)",
                            name);
                break;
            }
            if (before_out == zs.avail_out && before_in == zs.avail_in) {
                s = bp_fail(err, BP_EFORMAT, "%s: corrupt gzip data (no progress)", name);
                break;
            }
            continue;
        }
        if (r == Z_MEM_ERROR) {
            s = bp_fail(err, BP_ENOMEM, "%s: out of memory inflating gzip data", name);
            break;
        }
        if (stop_at) break; /* sniffing: what there is */
        s = bp_fail(err, BP_EFORMAT, "%s: corrupt gzip data (%s)", name,
                    zs.msg ? zs.msg : "inflate failed");
        break;
    }
    inflateEnd(&zs);
    /* A step may overshoot a bound smaller than the first buffer. */
    if (!s && !stop_at && len > max)
        s = bp_fail(err, BP_EFORMAT, "%s: decompressed data larger than %zu bytes", name, max);
    if (s) {
        free(buf);
        return s;
    }
    memset(buf + len, 0, BP_READ_PAD);
    *out = buf;
    *out_len = len;
    return BP_OK;
}

int bp_is_idx_data(const void *data, size_t size)
{
    const uint8_t *p = data;
    if (!p) return 0;
    if (bp_is_gzip(p, size)) {
        bp_gunzip_opts g = {SIZE_MAX, 4, NULL};
        uint8_t *buf;
        size_t len;
        if (bp_gunzip(p, size, "", &g, &buf, &len, NULL) != BP_OK) return 0;
        /* A text file never starts with NUL bytes; an IDX file does. */
        int idx = len >= 2 && buf[0] == 0 && buf[1] == 0;
        free(buf);
        return idx;
    }
    return size >= 2 && p[0] == 0 && p[1] == 0;
}
