/*
 * data.h - internal helpers of the data readers (src/csv.c, src/idx.c,
 * src/norm.c). Not installed; the public contract is include/backprop.h.
 */
#ifndef BP_DATA_H
#define BP_DATA_H

#include "internal.h"

/* Outcome of bp_scan_number. */
typedef enum bp_num_status {
    BP_NUM_OK = 0,      /* a finite number in range of bp_real */
    BP_NUM_EMPTY,       /* nothing but spaces/tabs */
    BP_NUM_SYNTAX,      /* not a decimal number */
    BP_NUM_NONFINITE,   /* "nan", "inf", "-Infinity", ... (case-insensitive) */
    BP_NUM_RANGE        /* a decimal number whose magnitude overflows bp_real */
} bp_num_status;

/* Parse one decimal number in [s, end): optional spaces/tabs, optional
 * sign, digits with an optional fraction, an optional exponent, optional
 * spaces/tabs. The value is exact to bp_real rounding (a fast path for up
 * to 19 significant digits, strtod/strtof for the rest; independent of the
 * C locale). Parsing stops at the first character that cannot continue the
 * number (after trailing spaces); *stop (may be NULL) receives that
 * position, so a caller that needs the whole range checks *stop == end.
 * *is_int (may be NULL) is set when the text is an integer literal (no
 * '.', no exponent). *out receives the value rounded to bp_real (as a
 * double). */
bp_num_status bp_scan_number(const char *s, const char *end, double *out,
                             int *is_int, const char **stop);

/* Write `text` (len bytes) into dst (cap bytes, cap >= 8) as a short
 * double-quoted excerpt for an error message: at most ~40 characters,
 * non-printable bytes escaped, "..." when cut. Returns dst. */
char *bp_quote_excerpt(char *dst, size_t cap, const char *text, size_t len);

/* Zero bytes that bp_read_file puts after the data (so parsers may read
 * a few bytes past the end, and the data is NUL-terminated). */
#define BP_READ_PAD 64

/* Read a whole file into a malloc'd buffer followed by BP_READ_PAD zero
 * bytes (so (*buf_out)[*len_out] == '\0'). BP_EIO "PATH: cannot open: REASON" or a
 * read error; BP_EFORMAT when the file is larger than `max` bytes;
 * BP_ENOMEM. On failure *buf_out is NULL. */
bp_status bp_read_file(const char *path, size_t max, char **buf_out, size_t *len_out,
                       bp_error *err);

/* ---- gzip (src/gzip.c) ---- */

/* 1 when data starts with the gzip magic 1f 8b. */
int bp_is_gzip(const void *data, size_t size);

/* Bounds of one bp_gunzip call. */
typedef struct bp_gunzip_opts {
    size_t max;     /* more decompressed bytes than this is BP_EFORMAT */
    size_t prefix;  /* > 0: stop quietly once this many bytes are out */
    /* Optional: the exact decompressed size the data declares, from the
     * first `len` bytes: 1 with *size set once known, 0 while more bytes
     * are needed, -1 when the header is bad (inflating stops, and the
     * caller reports the header). */
    int (*expect)(const uint8_t *buf, size_t len, size_t *size);
} bp_gunzip_opts;

/* Inflate gzip data (one or more members) into a new malloc'd buffer
 * followed by BP_READ_PAD zero bytes. Past g->max bytes, or past the size
 * g->expect found, it stops with BP_EFORMAT (nothing more is inflated or
 * allocated); a declared size larger than in_len bytes of deflate data can
 * hold is BP_EFORMAT at once. BP_EFORMAT for corrupt, truncated or
 * trailing data (not with g->prefix: then what could be inflated is
 * returned), BP_ENOMEM. On failure *out is NULL. */
bp_status bp_gunzip(const uint8_t *in, size_t in_len, const char *name, const bp_gunzip_opts *g,
                    uint8_t **out, size_t *out_len, bp_error *err);

#endif /* BP_DATA_H */
