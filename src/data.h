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

#endif /* BP_DATA_H */
