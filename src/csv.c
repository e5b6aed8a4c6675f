/*
 * csv.c - the CSV reader (RFC 4180) and the shared data helpers: the
 * decimal number scanner, file slurping, bp_data_free, bp_strings_free.
 *
 * How a file is read:
 *   1. the whole file is read into one buffer (NUL-terminated);
 *   2. the header row gives the column count and names; the target
 *      option picks the target column(s), every other column is a feature;
 *   3. each data row is scanned once: a feature field is parsed straight
 *      from the buffer by bp_scan_number into its place in x (rows are
 *      stored in an array sized from an upper bound of the row count, so
 *      nothing is allocated per field or per row); a quoted field is
 *      unescaped in place, in the buffer;
 *   4. target fields are remembered as (text, number, kind, line, column)
 *      cells, and once every row is read they decide the task (with
 *      BP_TASK_AUTO) and become y: numbers for regression, class indices
 *      for classification.
 * Error positions are "PATH:LINE:COL" with the 1-based physical line where
 * the field starts and COL the 1-based field number.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* fileno */
#endif
#include "data.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------------------ */
/* Numbers                                                                   */
/* ------------------------------------------------------------------------ */

static const double POW10[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

static int is_digit(char c) { return (unsigned)(c - '0') < 10u; }
static int is_blank(char c) { return c == ' ' || c == '\t'; }
static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

/* Case-insensitive match of the word w at [p, end); returns its length or 0. */
static size_t match_word(const char *p, const char *end, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(end - p) < n) return 0;
    for (size_t i = 0; i < n; i++)
        if (lower(p[i]) != w[i]) return 0;
    return n;
}

/* Slow path: the validated decimal text [s, e) (sign, digits, '.', digits,
 * exponent) is rewritten as "-DDDDeX" (no decimal point, so the C locale
 * does not matter) keeping up to 780 significant digits plus a sticky
 * digit, which is enough for correct rounding to float and double, then
 * converted by strtof/strtod. */
static double slow_convert(const char *s, const char *e)
{
    enum { MAXD = 780 };
    char buf[MAXD + 40];
    size_t k = 0;
    long exp10 = 0;
    int sticky = 0, seen_nonzero = 0, after_point = 0;
    const char *p = s;
    if (p < e && (*p == '+' || *p == '-')) {
        if (*p == '-') buf[k++] = '-';
        p++;
    }
    size_t start = k;
    for (; p < e; p++) {
        char c = *p;
        if (c == '.') {
            after_point = 1;
            continue;
        }
        if (!is_digit(c)) break;
        if (!seen_nonzero && c == '0') {
            if (after_point) exp10--;
            continue;
        }
        seen_nonzero = 1;
        if (k - start < MAXD) {
            buf[k++] = c;
            if (after_point) exp10--;
        } else {
            if (c != '0') sticky = 1;
            if (!after_point) exp10++;
        }
    }
    if (!seen_nonzero) return 0.0;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        int neg = 0;
        if (p < e && (*p == '+' || *p == '-')) neg = *p++ == '-';
        long ev = 0;
        for (; p < e && is_digit(*p); p++)
            if (ev < 100000000L) ev = ev * 10 + (*p - '0');
        exp10 += neg ? -ev : ev;
    }
    if (sticky) {
        buf[k++] = '1';
        exp10--;
    }
    if (exp10 > 100000000L) exp10 = 100000000L;
    if (exp10 < -100000000L) exp10 = -100000000L;
    snprintf(buf + k, sizeof buf - k, "e%ld", exp10);
#ifdef BP_DOUBLE
    return strtod(buf, NULL);
#else
    return (double)strtof(buf, NULL);
#endif
}

bp_num_status bp_scan_number(const char *s, const char *end, double *out,
                             int *is_int, const char **stop)
{
    const char *p = s;
    while (p < end && is_blank(*p)) p++;
    const char *num = p;
    int neg = 0, has_sign = 0;
    if (p < end && (*p == '+' || *p == '-')) {
        neg = *p == '-';
        has_sign = 1;
        p++;
    }
    uint64_t mant = 0;
    int nd = 0, digits = 0, trunc = 0, integer = 1;
    long e10 = 0;
    while (p < end && is_digit(*p)) {
        unsigned d = (unsigned)(*p - '0');
        if (nd < 19) {
            mant = mant * 10 + d;
            if (mant) nd++;
        } else {
            e10++;
            if (d) trunc = 1;
        }
        digits++;
        p++;
    }
    if (p < end && *p == '.') {
        const char *q = p + 1;
        int frac = 0;
        while (q < end && is_digit(*q)) {
            unsigned d = (unsigned)(*q - '0');
            if (nd < 19) {
                mant = mant * 10 + d;
                e10--;
                if (mant) nd++;
            } else if (d) {
                trunc = 1;
            }
            frac++;
            q++;
        }
        if (digits || frac) { /* "." alone is not a number */
            digits += frac;
            integer = 0;
            p = q;
        }
    }
    if (digits == 0) {
        size_t w = match_word(p, end, "infinity");
        if (!w) w = match_word(p, end, "inf");
        if (!w) w = match_word(p, end, "nan");
        if (w) {
            const char *q = p + w;
            while (q < end && is_blank(*q)) q++;
            if (stop) *stop = q;
            if (is_int) *is_int = 0;
            return BP_NUM_NONFINITE;
        }
        if (stop) *stop = p;
        if (is_int) *is_int = 0;
        if (!has_sign && (p == end || *p == ',' || *p == '\n' || *p == '\r'))
            return BP_NUM_EMPTY;
        return BP_NUM_SYNTAX;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        const char *q = p + 1;
        int eneg = 0;
        if (q < end && (*q == '+' || *q == '-')) eneg = *q++ == '-';
        if (q < end && is_digit(*q)) {
            long ev = 0;
            for (; q < end && is_digit(*q); q++)
                if (ev < 100000000L) ev = ev * 10 + (*q - '0');
            e10 += eneg ? -ev : ev;
            integer = 0;
            p = q;
        }
        /* else: "1e" stops at the 'e'; the caller sees the leftover */
    }
    const char *numend = p;
    while (p < end && is_blank(*p)) p++;
    if (stop) *stop = p;
    if (is_int) *is_int = integer;

    double v;
    if (mant == 0) {
        v = 0.0;
    } else if (!trunc && mant <= (UINT64_C(1) << 53) && e10 >= -22 && e10 <= 22) {
        /* Clinger's fast path: one correctly rounded operation. */
        v = (double)mant;
        v = e10 < 0 ? v / POW10[-e10] : v * POW10[e10];
#ifndef BP_DOUBLE
        /* Rounding the double to float could round twice when the double
         * falls exactly halfway between two floats (or below FLT_MIN):
         * let strtof decide those. */
        uint64_t bits;
        memcpy(&bits, &v, sizeof bits);
        if ((bits & UINT64_C(0x1FFFFFFF)) == UINT64_C(0x10000000) || v < FLT_MIN)
            v = slow_convert(num + has_sign, numend);
#endif
    } else {
        v = slow_convert(num + has_sign, numend);
    }
#ifdef BP_DOUBLE
    if (isinf(v)) return BP_NUM_RANGE;
#else
    {
        float f = (float)v;
        if (isinf(f)) return BP_NUM_RANGE;
        v = f;
    }
#endif
    *out = neg ? -v : v;
    return BP_NUM_OK;
}

char *bp_quote_excerpt(char *dst, size_t cap, const char *text, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t k = 0, i = 0;
    const size_t limit = cap < 48 ? cap : 48; /* keep room for the rest of a message */
    dst[k++] = '"';
    for (; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        size_t need = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? 1 : (c == '"' || c == '\\') ? 2 : 4;
        if (k + need + 5 > limit) break;
        if (need == 1) {
            dst[k++] = (char)c;
        } else if (need == 2) {
            dst[k++] = '\\';
            dst[k++] = (char)c;
        } else {
            dst[k++] = '\\';
            dst[k++] = 'x';
            dst[k++] = hex[c >> 4];
            dst[k++] = hex[c & 15];
        }
    }
    dst[k++] = '"';
    if (i < len) {
        dst[k++] = '.';
        dst[k++] = '.';
        dst[k++] = '.';
    }
    dst[k] = '\0';
    return dst;
}

/* ------------------------------------------------------------------------ */
/* Files and data sets                                                       */
/* ------------------------------------------------------------------------ */

bp_status bp_read_file(const char *path, size_t max, char **buf_out, size_t *len_out,
                       bp_error *err)
{
    *buf_out = NULL;
    *len_out = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return bp_fail(err, BP_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        if ((uint64_t)st.st_size > (uint64_t)max) {
            fclose(f);
            return bp_fail(err, BP_EFORMAT, "%s: file too large (%lld bytes, limit %zu)", path,
                           (long long)st.st_size, max);
        }
        cap = (size_t)st.st_size + 1;
    }
    char *buf = malloc(cap + BP_READ_PAD);
    if (!buf) {
        fclose(f);
        return bp_fail(err, BP_ENOMEM, "%s: out of memory reading %zu bytes", path, cap);
    }
    size_t len = 0;
    for (;;) {
        if (len == cap) {
            if (cap > max) {
                free(buf);
                fclose(f);
                return bp_fail(err, BP_EFORMAT, "%s: file too large (limit %zu bytes)", path, max);
            }
            size_t ncap = cap < SIZE_MAX / 4 ? cap * 2 : SIZE_MAX - 1;
            char *nb = realloc(buf, ncap + BP_READ_PAD);
            if (!nb) {
                free(buf);
                fclose(f);
                return bp_fail(err, BP_ENOMEM, "%s: out of memory reading the file", path);
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) {
                int e = errno;
                free(buf);
                fclose(f);
                return bp_fail(err, BP_EIO, "%s: read error: %s", path, strerror(e));
            }
            break;
        }
    }
    fclose(f);
    if (len > max) {
        free(buf);
        return bp_fail(err, BP_EFORMAT, "%s: file too large (limit %zu bytes)", path, max);
    }
    memset(buf + len, 0, BP_READ_PAD);
    *buf_out = buf;
    *len_out = len;
    return BP_OK;
}

void bp_strings_free(char **s, int n)
{
    if (!s) return;
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

void bp_data_free(bp_data *d)
{
    if (!d) return;
    if (d->owned) {
        free(d->x);
        free(d->y);
    }
    if (d->class_names) bp_strings_free(d->class_names, d->n_classes);
    memset(d, 0, sizeof *d);
}

/* ------------------------------------------------------------------------ */
/* CSV records                                                               */
/* ------------------------------------------------------------------------ */

typedef struct csv_field {
    char *s, *e;   /* content [s, e): unescaped in place when quoted */
    long line;     /* physical line where the field starts */
    int quoted;
    int last;      /* the record ends after this field */
} csv_field;

typedef struct csv_reader {
    char *base;    /* buffer start (buf[len] == '\0') */
    char *p, *end; /* position, buffer end */
    long line;     /* 1-based line at p */
    const char *blk;   /* next_delim's cached 64-byte block and its mask */
    uint64_t mask;
    char delim;        /* the field delimiter (',' unless opt->delimiter) */
    int blank_delim;   /* delim is a space or a tab (not trimmed, not skipped) */
    const char *name;
    bp_error *err;
} csv_reader;

/* Step over the record terminator at q (',' is not one): "\r\n", "\n",
 * "\r" or the end of the buffer. */
static void end_record(csv_reader *c, char *q)
{
    if (q < c->end) {
        if (*q == '\r' && q + 1 < c->end && q[1] == '\n') q++;
        q++;
        c->line++;
    }
    c->p = q;
}

/* Skip empty (or blank) lines before a record. Returns 1 when a record
 * starts at c->p, 0 at the end of the data. */
static int skip_blank_lines(csv_reader *c)
{
    for (;;) {
        char *q = c->p;
        while (q < c->end && is_blank(*q)) q++;
        if (q >= c->end) {
            c->p = c->end;
            return 0;
        }
        if (*q != '\n' && *q != '\r') return 1;
        end_record(c, q);
    }
}

/* A space or tab around a field (trimmed), unless it is the delimiter. */
static inline int pad_char(const csv_reader *c, char ch)
{
    return is_blank(ch) && ch != c->delim;
}

/* Read the field at c->p and step past its delimiter. */
static bp_status read_field(csv_reader *c, csv_field *f, int col)
{
    char *q = c->p, *end = c->end;
    const char delim = c->delim;
    f->line = c->line;
    while (q < end && pad_char(c, *q)) q++;
    if (q < end && *q == '"') {
        long open_line = c->line;
        char *w = ++q;
        f->s = q;
        for (;;) {
            if (q >= end)
                return bp_fail(c->err, BP_EFORMAT,
                               "%s:%ld:%d: unterminated quoted field (the quote opened here "
                               "is never closed)",
                               c->name, open_line, col);
            char ch = *q;
            if (ch == '"') {
                if (q + 1 < end && q[1] == '"') {
                    *w++ = '"';
                    q += 2;
                    continue;
                }
                q++;
                break;
            }
            if (ch == '\n') c->line++;
            *w++ = ch;
            q++;
        }
        f->e = w;
        f->quoted = 1;
        while (q < end && pad_char(c, *q)) q++;
        if (q < end && *q != delim && *q != '\n' && *q != '\r') {
            char ex[64];
            return bp_fail(c->err, BP_EFORMAT,
                           "%s:%ld:%d: unexpected character %s after a closing quote", c->name,
                           c->line, col, bp_quote_excerpt(ex, sizeof ex, q, 1));
        }
    } else {
        q = c->p;
        while (q < end && *q != delim && *q != '\n' && *q != '\r') q++;
        f->s = c->p;
        f->e = q;
        f->quoted = 0;
        while (f->s < f->e && is_blank(*f->s)) f->s++;
        while (f->e > f->s && is_blank(f->e[-1])) f->e--;
    }
    if (q < end && *q == delim) {
        f->last = 0;
        c->p = q + 1;
    } else {
        f->last = 1;
        end_record(c, q);
    }
    return BP_OK;
}

/* ------------------------------------------------------------------------ */
/* Targets                                                                   */
/* ------------------------------------------------------------------------ */

enum { CELL_NUM, CELL_INT, CELL_STR, CELL_NONFINITE, CELL_RANGE };

/* One target field, kept until every row is read. */
typedef struct tcell {
    size_t off, len; /* label text in the buffer */
    double v;        /* value when CELL_NUM / CELL_INT */
    long line;
    int col;         /* 1-based field number */
    int kind;
} tcell;

/* A label while sorting: numbers (by value) before strings (bytewise). */
typedef struct label_ref {
    const char *s;
    size_t len;
    double v;
    int isnum;
    int row;
} label_ref;

static int cmp_text(const char *a, size_t na, const char *b, size_t nb)
{
    int c = memcmp(a, b, na < nb ? na : nb);
    if (c) return c;
    return na < nb ? -1 : na > nb;
}

static int cmp_label(const label_ref *a, const label_ref *b)
{
    if (a->isnum != b->isnum) return a->isnum ? -1 : 1;
    if (a->isnum) return a->v < b->v ? -1 : a->v > b->v;
    return cmp_text(a->s, a->len, b->s, b->len);
}

static int cmp_label_row(const void *pa, const void *pb)
{
    const label_ref *a = pa, *b = pb;
    int c = cmp_label(a, b);
    if (c) return c;
    return a->row < b->row ? -1 : a->row > b->row;
}

static char *strndup_checked(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* "a, b, c, ..." into dst, for messages. */
static void list_names(char *dst, size_t cap, const char *const *names, int n)
{
    size_t k = 0;
    dst[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t len = strlen(names[i]);
        if (k + len + 8 >= cap) {
            snprintf(dst + k, cap - k, "%s...", i ? ", " : "");
            return;
        }
        k += (size_t)snprintf(dst + k, cap - k, "%s%s", i ? ", " : "", names[i]);
    }
}

/* The state of one bp_read_csv call; csv_cleanup frees what is left. */
typedef struct csv_job {
    csv_reader r;
    const bp_csv_options *opt;
    int ncols;
    char **header;      /* [ncols] trimmed names */
    int *role;          /* [ncols] feature index >= 0, or -(target index + 1) */
    int *tcol;          /* [n_targets] column of each target */
    int nin, ntg;
    size_t cap;         /* rows allocated */
    int n;
    bp_real *x;         /* [cap, nin] */
    tcell *cells;       /* [cap, ntg] */
    bp_real *y;
    char **class_names;
    int n_classes;
    label_ref *refs;
} csv_job;

static void csv_cleanup(csv_job *j)
{
    bp_strings_free(j->header, j->ncols);
    free(j->role);
    free(j->tcol);
    free(j->x);
    free(j->cells);
    free(j->y);
    bp_strings_free(j->class_names, j->n_classes);
    free(j->refs);
}

static const char *col_name(const csv_job *j, int col)
{
    return (col >= 0 && col < j->ncols && j->header[col]) ? j->header[col] : "?";
}

/* Fields of the record at c->p, counted without changing the buffer (a
 * quote opens a quoted field only at the start of a field, as in
 * read_field; malformed quoting is left for read_row to report). */
static int count_fields(const csv_reader *c)
{
    int n = 1, inq = 0, at_start = 1;
    for (const char *q = c->p; q < c->end; q++) {
        char ch = *q;
        if (inq) {
            if (ch == '"') {
                if (q + 1 < c->end && q[1] == '"') q++;
                else inq = 0;
            }
        } else if (ch == c->delim) {
            if (n == INT_MAX) return -1;
            n++;
            at_start = 1;
        } else if (ch == '\n' || ch == '\r') {
            break;
        } else if (at_start && pad_char(c, ch)) {
            /* blanks before a field */
        } else {
            if (at_start && ch == '"') inq = 1;
            at_start = 0;
        }
    }
    return n;
}

/* Read the header row into j->header / j->ncols; with opt->no_header the
 * columns are named "0", "1", ... after the first record's field count,
 * and that record stays to be read as data. */
static bp_status read_header(csv_job *j)
{
    csv_reader *c = &j->r;
    if (!skip_blank_lines(c))
        return bp_fail(c->err, BP_EFORMAT, "%s:%ld:1: empty file", c->name, c->line);
    if (j->opt->no_header) {
        int n = count_fields(c);
        if (n < 0) return bp_fail(c->err, BP_EFORMAT, "%s:%ld: too many columns", c->name, c->line);
        j->header = bp_alloc_array((size_t)n, sizeof *j->header);
        if (!j->header) return bp_fail(c->err, BP_ENOMEM, "%s: out of memory", c->name);
        j->ncols = n;
        for (int i = 0; i < n; i++) {
            char b[16];
            snprintf(b, sizeof b, "%d", i);
            if (!(j->header[i] = bp_strdup(b)))
                return bp_fail(c->err, BP_ENOMEM, "%s: out of memory", c->name);
        }
        return BP_OK;
    }
    int cap = 16;
    j->header = bp_alloc_array((size_t)cap, sizeof *j->header);
    if (!j->header) return bp_fail(c->err, BP_ENOMEM, "%s: out of memory", c->name);
    for (;;) {
        csv_field f;
        if (j->ncols == INT_MAX)
            return bp_fail(c->err, BP_EFORMAT, "%s:%ld: too many columns", c->name, c->line);
        bp_status s = read_field(c, &f, j->ncols + 1);
        if (s) return s;
        if (j->ncols == cap) {
            if (cap > INT_MAX / 2) return bp_fail(c->err, BP_ENOMEM, "%s: out of memory", c->name);
            char **nh = realloc(j->header, (size_t)cap * 2 * sizeof *nh);
            if (!nh) return bp_fail(c->err, BP_ENOMEM, "%s: out of memory", c->name);
            j->header = nh;
            cap *= 2;
        }
        j->header[j->ncols] = strndup_checked(f.s, (size_t)(f.e - f.s));
        if (!j->header[j->ncols]) return bp_fail(c->err, BP_ENOMEM, "%s: out of memory", c->name);
        j->ncols++;
        if (f.last) break;
    }
    return BP_OK;
}

/* Column of one target token: a header name, else a 0-based index.
 * Returns the column, or -1 when absent; a name that two columns have is
 * BP_EINVAL (in *s), since picking the first would be a silent guess. */
static int find_column(const csv_job *j, const char *tok, size_t len, bp_status *s)
{
    int first = -1;
    for (int i = 0; i < j->ncols; i++)
        if (strlen(j->header[i]) == len && memcmp(j->header[i], tok, len) == 0) {
            if (first < 0) {
                first = i;
                continue;
            }
            char ex[64];
            bp_quote_excerpt(ex, sizeof ex, tok, len);
            *s = bp_fail(j->r.err, BP_EINVAL, "%s: target %s is ambiguous: columns %d and %d "
                         "are both named so (rename one)", j->r.name, ex, first + 1, i + 1);
            return -1;
        }
    if (first >= 0) return first;
    if (len == 0 || len > 9) return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(tok[i])) return -1;
        v = v * 10 + (tok[i] - '0');
    }
    return v < j->ncols ? (int)v : -1;
}

/* A name and its position, for sorting a list of names. */
typedef struct name_ref {
    const char *s;
    int k;
} name_ref;

/* By name, then by position (so the first of equal names comes first). */
static int cmp_name_ref(const void *pa, const void *pb)
{
    const name_ref *a = pa, *b = pb;
    int c = strcmp(a->s, b->s);
    return c ? c : (a->k > b->k) - (a->k < b->k);
}

/* Position of the first name equal to s in sorted[n], or -1. */
static int find_name(const name_ref *sorted, int n, const char *s)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (strcmp(sorted[mid].s, s) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && strcmp(sorted[lo].s, s) == 0 ? sorted[lo].k : -1;
}

/* Decide the role of every column from the options. */
static bp_status pick_targets(csv_job *j)
{
    const bp_csv_options *o = j->opt;
    const char *name = j->r.name;
    bp_error *err = j->r.err;
    j->role = bp_alloc_array((size_t)j->ncols, sizeof *j->role);
    j->tcol = bp_alloc_array((size_t)j->ncols, sizeof *j->tcol);
    if (!j->role || !j->tcol) return bp_fail(err, BP_ENOMEM, "%s: out of memory", name);
    int nt = 0;
    if (o->no_target) {
        /* every column is a feature */
    } else if (!o->target) {
        j->tcol[nt++] = j->ncols - 1;
    } else {
        const char *t = o->target;
        bp_status fs = BP_OK;
        int whole = find_column(j, t, strlen(t), &fs);
        if (fs) return fs;
        if (whole >= 0) {
            j->tcol[nt++] = whole;
        } else {
            int missing = 0, found = 0;
            const char *miss_tok = NULL;
            size_t miss_len = 0;
            const char *p = t;
            for (;;) {
                const char *q = strchr(p, ',');
                const char *e = q ? q : p + strlen(p);
                const char *a = p, *b = e;
                while (a < b && is_blank(*a)) a++;
                while (b > a && is_blank(b[-1])) b--;
                int col = find_column(j, a, (size_t)(b - a), &fs);
                if (fs) return fs;
                if (col < 0) {
                    if (!missing) {
                        miss_tok = a;
                        miss_len = (size_t)(b - a);
                    }
                    missing++;
                } else {
                    for (int i = 0; i < nt; i++)
                        if (j->tcol[i] == col)
                            return bp_fail(err, BP_EINVAL, "%s: target column '%s' given twice",
                                           name, j->header[col]);
                    if (nt == j->ncols)
                        return bp_fail(err, BP_EINVAL, "%s: too many target columns", name);
                    j->tcol[nt++] = col;
                    found++;
                }
                if (!q) break;
                p = q + 1;
            }
            if (missing && !(o->target_optional && !found)) {
                char cols[256];
                list_names(cols, sizeof cols, (const char *const *)j->header, j->ncols);
                return bp_fail(err, BP_EINVAL, "%s: no column '%.*s' (by name or 0-based index; "
                               "the header has %d columns: %s)",
                               name, (int)(miss_len > 64 ? 64 : miss_len), miss_tok, j->ncols, cols);
            }
            if (missing) nt = 0; /* target_optional and the file has none */
        }
    }
    if (nt > 1 && o->task == BP_TASK_CLASSIFY)
        return bp_fail(err, BP_EINVAL, "%s: classification takes one target column, %d given",
                       name, nt);
    j->ntg = nt;
    for (int i = 0; i < nt; i++) j->role[j->tcol[i]] = -(i + 1);
    int nin = 0;
    if (o->feature_names && o->n_feature_names > 0) {
        /* Features by name: every other column must be one of them, each
         * once, and x follows the given order. The names are sorted once
         * and looked up by binary search, and owner[k] remembers the column
         * of name k, so 10^5 columns cost n log n, not n^2 string
         * comparisons. */
        int nf = o->n_feature_names;
        name_ref *byname = bp_alloc_array((size_t)nf, sizeof *byname);
        int *owner = bp_alloc_array((size_t)nf, sizeof *owner);
        if (!byname || !owner) {
            free(byname);
            free(owner);
            return bp_fail(err, BP_ENOMEM, "%s: out of memory", name);
        }
        for (int k = 0; k < nf; k++) byname[k] = (name_ref){o->feature_names[k], k};
        qsort(byname, (size_t)nf, sizeof *byname, cmp_name_ref);
        bp_status fs = BP_OK;
        for (int c = 0; c < j->ncols && !fs; c++) {
            if (j->role[c] < 0) continue;
            int k = find_name(byname, nf, j->header[c]);
            char ex[64];
            if (k < 0 || owner[k]) {
                bp_quote_excerpt(ex, sizeof ex, j->header[c], strlen(j->header[c]));
                fs = k < 0 ? bp_fail(err, BP_ESHAPE, "%s:1:%d: column %s is neither a feature nor a "
                                     "target of the model", name, c + 1, ex)
                           : bp_fail(err, BP_ESHAPE, "%s:1:%d: feature column %s appears twice",
                                     name, c + 1, ex);
                break;
            }
            owner[k] = c + 1;
            j->role[c] = k + 1; /* shifted by one while 0 still means "unassigned" */
            nin++;
        }
        for (int k = 0; !fs && k < nf && nin < nf; k++) {
            if (!owner[k]) {
                char ex[64];
                bp_quote_excerpt(ex, sizeof ex, o->feature_names[k], strlen(o->feature_names[k]));
                fs = bp_fail(err, BP_ESHAPE, "%s: missing feature column %s", name, ex);
            }
        }
        free(byname);
        free(owner);
        if (fs) return fs;
        for (int c = 0; c < j->ncols; c++)
            if (j->role[c] > 0) j->role[c]--;
    } else {
        for (int c = 0; c < j->ncols; c++)
            if (j->role[c] == 0) j->role[c] = nin++;
    }
    if (nin == 0) {
        char ex[64];
        bp_quote_excerpt(ex, sizeof ex, j->header[0], strlen(j->header[0]));
        if (j->ncols == 1)
            return bp_fail(err, BP_EFORMAT, "%s:1:1: no feature columns: the header has one "
                           "column, %s, and it is the target (is the file comma-separated?)",
                           name, ex);
        return bp_fail(err, BP_EFORMAT, "%s:1:1: no feature columns: all %d columns are targets",
                       name, j->ncols);
    }
    j->nin = nin;
    return BP_OK;
}

/* Make room for ncap rows in x and cells (ncap > j->cap). */
static bp_status resize_rows(csv_job *j, size_t ncap)
{
    if (ncap > (size_t)INT_MAX) ncap = (size_t)INT_MAX;
    if (ncap <= j->cap)
        return bp_fail(j->r.err, BP_EFORMAT, "%s:%ld: too many rows", j->r.name, j->r.line);
    if (ncap > SIZE_MAX / sizeof(bp_real) / (size_t)j->nin ||
        (j->ntg && ncap > SIZE_MAX / sizeof(tcell) / (size_t)j->ntg))
        return bp_fail(j->r.err, BP_ENOMEM, "%s: out of memory", j->r.name);
    bp_real *nx = realloc(j->x, ncap * (size_t)j->nin * sizeof *nx);
    if (!nx) return bp_fail(j->r.err, BP_ENOMEM, "%s: out of memory for %zu rows", j->r.name, ncap);
    j->x = nx;
    if (j->ntg) {
        tcell *nc = realloc(j->cells, ncap * (size_t)j->ntg * sizeof *nc);
        if (!nc) return bp_fail(j->r.err, BP_ENOMEM, "%s: out of memory for %zu rows", j->r.name, ncap);
        j->cells = nc;
    }
    j->cap = ncap;
    return BP_OK;
}

/* ---- The fast path for feature fields ----
 * Real files hold millions of short numeric fields whose lengths vary at
 * random, so a byte-by-byte loop mispredicts a branch per field and the
 * position of each field depends on a chain of loads. Instead:
 *   - fast_fields finds the next ',', '\n', '\r' or '"' from a 64-bit mask
 *     computed once per 64-byte block (SSE2 on x86-64, SWAR elsewhere);
 *   - field_number parses a field of at most 8 bytes ([-]digits, with at
 *     most one '.') with a few word operations and no data-dependent
 *     branches; longer fields take a scalar loop; anything else
 *     (spaces, exponents, quotes, errors) goes to the general path.
 * The buffer must hold BP_READ_PAD (>= 64) zero bytes after `end`. */

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* High bit set in each byte of w equal to byte b (exact, no carries). */
static inline uint64_t bytes_eq(uint64_t w, unsigned char b)
{
    uint64_t t = w ^ (ONES * b);
    return ~(((t & ~HIGHS) + ~HIGHS) | t) & HIGHS;
}

/* Bit i set when byte i of the 64 bytes at b is a delimiter or a quote. */
static inline uint64_t block_mask(const char *b, char delim)
{
#if defined(__SSE2__)
    const __m128i comma = _mm_set1_epi8(delim), nl = _mm_set1_epi8('\n');
    const __m128i cr = _mm_set1_epi8('\r'), quote = _mm_set1_epi8('"');
    uint64_t m = 0;
    for (int k = 0; k < 4; k++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(b + 16 * k));
        __m128i e = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, comma), _mm_cmpeq_epi8(v, nl)),
                                 _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, quote)));
        m |= (uint64_t)(unsigned)_mm_movemask_epi8(e) << (16 * k);
    }
    return m;
#else
    uint64_t m = 0;
    for (int k = 0; k < 8; k++) {
        uint64_t w;
        memcpy(&w, b + 8 * k, sizeof w);
        uint64_t e = bytes_eq(w, (unsigned char)delim) | bytes_eq(w, '\n') | bytes_eq(w, '\r') | bytes_eq(w, '"');
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        for (int i = 0; i < 8; i++) m |= (uint64_t)((e >> (8 * (7 - i) + 7)) & 1) << (8 * k + i);
#else
        /* gather the 8 high bits into one byte */
        m |= (((e >> 7) * UINT64_C(0x0102040810204080)) >> 56) << (8 * k);
#endif
    }
    return m;
#endif
}

static inline unsigned ctz64(uint64_t m)
{
#if defined(__GNUC__)
    return (unsigned)__builtin_ctzll(m);
#else
    unsigned n = 0;
    while (!(m & 1)) {
        m >>= 1;
        n++;
    }
    return n;
#endif
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define BP_CSV_SWAR 1
/* Value of the n (1..8) decimal digits in the low bytes of d (each byte
 * 0..9, first digit lowest), as in "Faster Integer Parsing" (Lemire). */
static inline uint64_t swar_value(uint64_t d, unsigned n)
{
    uint64_t x = d << (8 * (8 - n)); /* leading zero digits below */
    x = (x * 10 + (x >> 8)) & UINT64_C(0x00FF00FF00FF00FF);
    x = (x * 100 + (x >> 16)) & UINT64_C(0x0000FFFF0000FFFF);
    x = (x * 10000 + (x >> 32)) & UINT64_C(0xFFFFFFFF);
    return x;
}
#endif

/* Parse the whole field [p, p + len) when it is [-]digits[.digits] with at
 * most 15 digits (at least one before or after the point). Returns 1 and the
 * exact value, or 0 to let the general path decide. */
static inline int field_number(const char *p, size_t len, double *out)
{
    int neg = len && *p == '-';
    p += neg;
    len -= (size_t)neg;
    if (len == 0) return 0;
    uint64_t m = 0;
    size_t frac = 0;
#ifdef BP_CSV_SWAR
    if (len <= 8) {
        uint64_t w;
        memcpy(&w, p, sizeof w);
        uint64_t keep = (len == 8 ? ~UINT64_C(0) : (UINT64_C(1) << (8 * len)) - 1) & HIGHS;
        /* non-digit bytes: high nibble not 3, or low nibble above 9 */
        uint64_t hi = (w & (ONES * 0xF0)) ^ (ONES * 0x30);
        uint64_t nd = ((((hi & ~HIGHS) + ~HIGHS) | hi) & HIGHS) |
                      ((((w & (ONES * 0x0F)) + ONES * 6) & (ONES * 0x10)) << 3);
        nd &= keep;
        uint64_t d = w & (ONES * 0x0F);
        if (nd == 0) {
            m = swar_value(d, (unsigned)len);
        } else {
            uint64_t dot = bytes_eq(w, '.') & keep;
            if (nd != dot || (dot & (dot - 1)) || len == 1) return 0;
            unsigned k = ctz64(dot) >> 3; /* position of the point */
            uint64_t low = k ? (UINT64_C(1) << (8 * k)) - 1 : 0;
            m = swar_value((d & low) | ((d >> 8) & ~low), (unsigned)len - 1);
            frac = len - 1 - k;
        }
    } else
#endif
    {
        size_t nd = 0, point = 0;
        for (size_t i = 0; i < len; i++) {
            char ch = p[i];
            if (is_digit(ch)) {
                m = m * 10 + (uint64_t)(ch - '0');
                nd++;
                frac += point;
            } else if (ch == '.' && !point) {
                point = 1;
            } else {
                return 0;
            }
        }
        if (nd == 0 || nd > 15) return 0;
    }
    double v = (double)m;
    if (frac) {
        v /= POW10[frac];
#ifndef BP_DOUBLE
        /* the double could fall exactly halfway between two floats (or be
         * a float subnormal): rounding it again is not exact, strtof is */
        uint64_t bits;
        memcpy(&bits, &v, sizeof bits);
        if ((bits & UINT64_C(0x1FFFFFFF)) == UINT64_C(0x10000000) || (v != 0 && v < FLT_MIN))
            return 0;
#endif
    }
    *out = neg ? -v : v;
    return 1;
}

/* Parse consecutive plain numeric feature fields of the current record
 * from column `col` on, into the row xr. Returns the column reached; sets
 * *ended when the record ended (its terminator consumed). Stops before a
 * target column, after the last column, or before a field that the general
 * path must read. Keeps its state in locals (registers) on purpose. */
static int fast_fields(csv_job *j, bp_real *xr, int col, int *ended)
{
    csv_reader *c = &j->r;
    const int *role = j->role;
    const int ncols = j->ncols;
    const char *p = c->p, *base = c->base, *end = c->end, *blk = c->blk;
    uint64_t mask = c->mask;
    *ended = 0;
    while (col < ncols && role[col] >= 0) {
        size_t off = (size_t)(p - base);
        const char *b = base + (off & ~(size_t)63);
        if (b != blk) {
            blk = b;
            mask = block_mask(b, c->delim);
        }
        uint64_t m = mask & (~UINT64_C(0) << (off & 63));
        const char *stop = NULL;
        while (!m) {
            blk += 64;
            if (blk >= end) {
                stop = end;
                blk = NULL; /* no valid cached block */
                break;
            }
            mask = block_mask(blk, c->delim);
            m = mask;
        }
        if (!stop) {
            stop = blk + ctz64(m);
            if (stop > end) stop = end;
        }
        double v;
        if (*stop == '"' || !field_number(p, (size_t)(stop - p), &v)) break;
        xr[role[col]] = (bp_real)v;
        col++;
        if (stop < end && *stop == c->delim) {
            p = stop + 1;
            continue;
        }
        c->blk = blk;
        c->mask = mask;
        end_record(c, (char *)stop);
        *ended = 1;
        return col;
    }
    c->p = (char *)p;
    c->blk = blk;
    c->mask = mask;
    return col;
}

/* Error for a field that is not a usable number. */
static bp_status bad_number(csv_job *j, bp_num_status ns, const csv_field *f, int col,
                            const char *what)
{
    char ex[64];
    const char *name = j->r.name;
    bp_quote_excerpt(ex, sizeof ex, f->s, (size_t)(f->e - f->s));
    switch (ns) {
    case BP_NUM_EMPTY:
        return bp_fail(j->r.err, BP_EFORMAT, "%s:%ld:%d: missing (empty) %s in column '%s'", name,
                       f->line, col, what, col_name(j, col - 1));
    case BP_NUM_NONFINITE:
        return bp_fail(j->r.err, BP_EFORMAT,
                       "%s:%ld:%d: non-finite %s %s in column '%s' (NaN/Inf are not allowed)",
                       name, f->line, col, what, ex, col_name(j, col - 1));
    case BP_NUM_RANGE:
        return bp_fail(j->r.err, BP_EFORMAT, "%s:%ld:%d: %s %s in column '%s' is out of range",
                       name, f->line, col, what, ex, col_name(j, col - 1));
    default:
        return bp_fail(j->r.err, BP_EFORMAT, "%s:%ld:%d: non-numeric %s %s in column '%s'", name,
                       f->line, col, what, ex, col_name(j, col - 1));
    }
}

/* Read one data record into row j->n. */
static bp_status read_row(csv_job *j)
{
    csv_reader *c = &j->r;
    bp_real *xr = j->x + (size_t)j->n * (size_t)j->nin;
    tcell *tr = j->cells ? j->cells + (size_t)j->n * (size_t)j->ntg : NULL;
    long rline = c->line;
    int col = 0;
    csv_field f;
    for (;;) {
        if (col < j->ncols && j->role[col] >= 0) {
            int ended;
            col = fast_fields(j, xr, col, &ended);
            if (ended) break;
            /* else: more fields than columns, a target, or a field the
             * general path must read */
        }
        if (col >= j->ncols) {
            /* count the extra fields for the message */
            int found = col;
            for (;;) {
                bp_status s = read_field(c, &f, found + 1);
                if (s) return s;
                found++;
                if (f.last || found == INT_MAX) break;
            }
            return bp_fail(c->err, BP_EFORMAT, "%s:%ld:%d: row has %d fields, expected %d (as "
                           "in the header)", c->name, rline, j->ncols + 1, found, j->ncols);
        }
        int role = j->role[col];
        if (role >= 0) {
            double v;
            const char *stop;
            /* Fast path: any plain number followed by a delimiter (not
             * with a space or tab delimiter: the scanner skips blanks, so
             * it would read past an empty field). */
            if (!c->blank_delim && bp_scan_number(c->p, c->end, &v, NULL, &stop) == BP_NUM_OK &&
                (stop == c->end || *stop == c->delim || *stop == '\n' || *stop == '\r')) {
                xr[role] = (bp_real)v;
                col++;
                if (stop < c->end && *stop == c->delim) {
                    c->p = (char *)stop + 1;
                    continue;
                }
                end_record(c, (char *)stop);
                break;
            }
            bp_status s = read_field(c, &f, col + 1);
            if (s) return s;
            bp_num_status ns = bp_scan_number(f.s, f.e, &v, NULL, &stop);
            if (stop != f.e) ns = BP_NUM_SYNTAX;
            if (ns != BP_NUM_OK) return bad_number(j, ns, &f, col + 1, "value");
            xr[role] = (bp_real)v;
        } else {
            bp_status s = read_field(c, &f, col + 1);
            if (s) return s;
            tcell *t = &tr[-role - 1];
            t->off = (size_t)(f.s - c->base);
            t->len = (size_t)(f.e - f.s);
            t->line = f.line;
            t->col = col + 1;
            if (f.s == f.e) {
                csv_field g = f;
                return bad_number(j, BP_NUM_EMPTY, &g, col + 1, "target");
            }
            const char *stop;
            int is_int = 0;
            bp_num_status ns = bp_scan_number(f.s, f.e, &t->v, &is_int, &stop);
            if (stop != f.e) ns = BP_NUM_SYNTAX;
            t->kind = ns == BP_NUM_OK ? (is_int ? CELL_INT : CELL_NUM)
                      : ns == BP_NUM_NONFINITE ? CELL_NONFINITE
                      : ns == BP_NUM_RANGE ? CELL_RANGE
                                              : CELL_STR;
        }
        col++;
        if (f.last) break;
    }
    if (col < j->ncols)
        return bp_fail(c->err, BP_EFORMAT, "%s:%ld:%d: row has %d field%s, expected %d (as in "
                       "the header)", c->name, rline, col + 1, col, col == 1 ? "" : "s", j->ncols);
    return BP_OK;
}

static bp_status target_error(csv_job *j, const tcell *t, const char *fmt_reason)
{
    char ex[64];
    bp_quote_excerpt(ex, sizeof ex, j->r.base + t->off, t->len);
    return bp_fail(j->r.err, BP_EFORMAT, "%s:%ld:%d: %s target value %s in column '%s'",
                   j->r.name, t->line, t->col, fmt_reason, ex, col_name(j, t->col - 1));
}

static bp_status make_regression(csv_job *j)
{
    size_t cnt = (size_t)j->n * (size_t)j->ntg;
    j->y = malloc((cnt ? cnt : 1) * sizeof *j->y);
    if (!j->y) return bp_fail(j->r.err, BP_ENOMEM, "%s: out of memory", j->r.name);
    for (size_t i = 0; i < cnt; i++) {
        const tcell *t = &j->cells[i];
        switch (t->kind) {
        case CELL_NUM:
        case CELL_INT:
            j->y[i] = (bp_real)t->v;
            break;
        case CELL_NONFINITE:
            return target_error(j, t, "non-finite (NaN/Inf)");
        case CELL_RANGE:
            return target_error(j, t, "out-of-range");
        default:
            return target_error(j, t, "non-numeric (regression needs numbers)");
        }
    }
    return BP_OK;
}

/* Labels mapped to a fixed class list (exact text, else equal numbers). */
static bp_status map_fixed_classes(csv_job *j)
{
    const bp_csv_options *o = j->opt;
    int k = o->n_class_names;
    for (int i = 0; i < k; i++)
        if (!o->class_names[i])
            return bp_fail(j->r.err, BP_EINVAL, "%s: class name %d is NULL", j->r.name, i);
    /* sorted copy of the names for binary search */
    label_ref *names = bp_alloc_array((size_t)k, sizeof *names);
    if (!names) return bp_fail(j->r.err, BP_ENOMEM, "%s: out of memory", j->r.name);
    for (int i = 0; i < k; i++) {
        names[i].s = o->class_names[i];
        names[i].len = strlen(o->class_names[i]);
        const char *stop;
        names[i].isnum = bp_scan_number(names[i].s, names[i].s + names[i].len, &names[i].v, NULL,
                                        &stop) == BP_NUM_OK &&
                         stop == names[i].s + names[i].len;
        names[i].row = i;
    }
    label_ref *sorted = bp_alloc_array((size_t)k, sizeof *sorted);
    if (!sorted) {
        free(names);
        return bp_fail(j->r.err, BP_ENOMEM, "%s: out of memory", j->r.name);
    }
    memcpy(sorted, names, (size_t)k * sizeof *sorted);
    for (int i = 0; i < k; i++) sorted[i].isnum = 0; /* text order */
    qsort(sorted, (size_t)k, sizeof *sorted, cmp_label_row);

    bp_status s = BP_OK;
    for (int r = 0; r < j->n && s == BP_OK; r++) {
        const tcell *t = &j->cells[r];
        const char *txt = j->r.base + t->off;
        int idx = -1, lo = 0, hi = k - 1;
        while (lo <= hi) {
            int mid = lo + (hi - lo) / 2;
            int c = cmp_text(txt, t->len, sorted[mid].s, sorted[mid].len);
            if (c == 0) {
                /* first of equal names */
                while (mid > 0 && cmp_text(txt, t->len, sorted[mid - 1].s, sorted[mid - 1].len) == 0)
                    mid--;
                idx = sorted[mid].row;
                break;
            }
            if (c < 0) hi = mid - 1;
            else lo = mid + 1;
        }
        if (idx < 0 && (t->kind == CELL_INT || t->kind == CELL_NUM)) {
            for (int i = 0; i < k; i++)
                if (names[i].isnum && names[i].v == t->v) {
                    idx = i;
                    break;
                }
        }
        if (idx < 0) {
            char ex[64], known[200];
            bp_quote_excerpt(ex, sizeof ex, txt, t->len);
            list_names(known, sizeof known, o->class_names, k);
            s = bp_fail(j->r.err, BP_EFORMAT, "%s:%ld:%d: unknown class label %s (the %d known "
                        "classes: %s)", j->r.name, t->line, t->col, ex, k, known);
            break;
        }
        j->y[r] = (bp_real)idx;
    }
    free(sorted);
    free(names);
    if (s) return s;
    j->class_names = bp_alloc_array((size_t)k, sizeof *j->class_names);
    if (!j->class_names) return bp_fail(j->r.err, BP_ENOMEM, "%s: out of memory", j->r.name);
    j->n_classes = k;
    for (int i = 0; i < k; i++) {
        j->class_names[i] = bp_strdup(o->class_names[i]);
        if (!j->class_names[i]) return bp_fail(j->r.err, BP_ENOMEM, "%s: out of memory", j->r.name);
    }
    return BP_OK;
}

#define BP_CSV_MAX_INT_CLASS 65535

static bp_status make_classification(csv_job *j)
{
    const char *name = j->r.name;
    j->y = malloc((size_t)j->n * sizeof *j->y);
    if (!j->y) return bp_fail(j->r.err, BP_ENOMEM, "%s: out of memory", name);
    if (j->opt->class_names && j->opt->n_class_names > 0) return map_fixed_classes(j);

    /* Non-negative integral numbers keep their value. */
    int by_value = 1;
    double maxv = 0;
    for (int r = 0; r < j->n && by_value; r++) {
        const tcell *t = &j->cells[r];
        if ((t->kind != CELL_INT && t->kind != CELL_NUM) || !(t->v >= 0) ||
            t->v > BP_CSV_MAX_INT_CLASS || t->v != floor(t->v))
            by_value = 0;
        else if (t->v > maxv)
            maxv = t->v;
    }
    if (by_value) {
        for (int r = 0; r < j->n; r++) j->y[r] = (bp_real)j->cells[r].v;
        j->n_classes = (int)maxv + 1 < 2 ? 2 : (int)maxv + 1;
        return BP_OK;
    }

    /* Other labels: sorted, numbers by value first, then strings. */
    j->refs = bp_alloc_array((size_t)j->n, sizeof *j->refs);
    if (!j->refs) return bp_fail(j->r.err, BP_ENOMEM, "%s: out of memory", name);
    for (int r = 0; r < j->n; r++) {
        const tcell *t = &j->cells[r];
        label_ref *l = &j->refs[r];
        l->s = j->r.base + t->off;
        l->len = t->len;
        l->isnum = t->kind == CELL_INT || t->kind == CELL_NUM;
        l->v = l->isnum ? t->v : 0;
        l->row = r;
    }
    qsort(j->refs, (size_t)j->n, sizeof *j->refs, cmp_label_row);
    int k = 0;
    for (int i = 0; i < j->n; i++)
        if (i == 0 || cmp_label(&j->refs[i - 1], &j->refs[i]) != 0) k++;
    j->class_names = bp_alloc_array((size_t)k, sizeof *j->class_names);
    if (!j->class_names) return bp_fail(j->r.err, BP_ENOMEM, "%s: out of memory", name);
    j->n_classes = k;
    int cls = -1;
    for (int i = 0; i < j->n; i++) {
        const label_ref *l = &j->refs[i];
        if (i == 0 || cmp_label(&j->refs[i - 1], l) != 0) {
            /* the first row of a group (smallest row number) names the class */
            cls++;
            j->class_names[cls] = strndup_checked(l->s, l->len);
            if (!j->class_names[cls]) return bp_fail(j->r.err, BP_ENOMEM, "%s: out of memory", name);
        }
        j->y[l->row] = (bp_real)cls;
    }
    return BP_OK;
}

static bp_status make_targets(csv_job *j)
{
    if (j->ntg == 0) return BP_OK;
    bp_task task = j->opt->task;
    if (task == BP_TASK_AUTO && j->ntg == 1 && j->opt->class_names && j->opt->n_class_names > 0)
        task = BP_TASK_CLASSIFY; /* a fixed class list means classification */
    if (task == BP_TASK_AUTO) {
        int any_str = 0, all_int = 1;
        size_t cnt = (size_t)j->n * (size_t)j->ntg;
        for (size_t i = 0; i < cnt; i++) {
            if (j->cells[i].kind == CELL_STR) any_str = 1;
            if (j->cells[i].kind != CELL_INT) all_int = 0;
        }
        task = (j->ntg == 1 && (any_str || all_int)) ? BP_TASK_CLASSIFY : BP_TASK_REGRESS;
    }
    if (task == BP_TASK_CLASSIFY) return make_classification(j);
    if (task != BP_TASK_REGRESS)
        return bp_fail(j->r.err, BP_EINVAL, "%s: unknown task %d", j->r.name, (int)task);
    return make_regression(j);
}

/* Read records until the end of j->r; rows must fit in j->cap unless
 * `may_grow`. */
static bp_status rows_loop(csv_job *j, int may_grow)
{
    while (skip_blank_lines(&j->r)) {
        if ((size_t)j->n == j->cap) {
            bp_status s = may_grow ? resize_rows(j, j->cap * 2)
                                   : bp_fail(j->r.err, BP_EFORMAT, "%s:%ld: too many rows for "
                                             "this chunk (internal error)", j->r.name, j->r.line);
            if (s) return s;
        }
        bp_status s = read_row(j);
        if (s) return s;
        j->n++;
    }
    return BP_OK;
}

/* Files at least this large are parsed by several threads (OpenMP). */
#define BP_CSV_PARALLEL_MIN ((size_t)1 << 22)
#define BP_CSV_MAX_CHUNKS 16

/* Every '\n' ends a record (no quotes) and every '\r' is part of a
 * "\r\n", so the data can be cut after any '\n' and line numbers are
 * counts of '\n'. */
#ifdef _OPENMP
static int simple_lines(const char *p, size_t len)
{
    if (memchr(p, '"', len)) return 0;
    const char *end = p + len;
    for (const char *q = p; (q = memchr(q, '\r', (size_t)(end - q))) != NULL; q++)
        if (q + 1 >= end || q[1] != '\n') return 0;
    return 1;
}
#endif

static size_t count_newlines(const char *p, const char *end)
{
    size_t n = 0;
    for (const char *q = p; (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++) n++;
    return n;
}

/* Read every data row into j->x / j->cells. Rows are stored in an array
 * sized from an upper bound of the row count: at most one per line break
 * + 1, and at most one per ncols bytes (a row of ncols fields holds
 * ncols - 1 commas and a line break), so the first allocation is the only
 * one. A large simple file (see simple_lines) is cut into chunks at line
 * breaks, parsed by one thread each into its own range of rows, then the
 * ranges are closed up; errors are those of the first failing chunk, with
 * exact line numbers. */
static bp_status read_rows(csv_job *j)
{
    char *start = j->r.p, *end = j->r.end;
    size_t len = (size_t)(end - start);
    int T = 1;
#ifdef _OPENMP
    if (len >= BP_CSV_PARALLEL_MIN && simple_lines(start, len)) {
        /* One thread per 2 MiB at least, at most the cores (bp_threads_for). */
        T = bp_threads_for((double)len, (double)(BP_CSV_PARALLEL_MIN / 2));
        if (T > BP_CSV_MAX_CHUNKS) T = BP_CSV_MAX_CHUNKS;
        if (T < 1) T = 1;
    }
#endif
    char *cut[BP_CSV_MAX_CHUNKS + 1];
    size_t nl[BP_CSV_MAX_CHUNKS], caps[BP_CSV_MAX_CHUNKS], offs[BP_CSV_MAX_CHUNKS];
    cut[0] = start;
    cut[T] = end;
    for (int k = 1; k < T; k++) {
        char *q = start + len / (size_t)T * (size_t)k;
        if (q < cut[k - 1]) q = cut[k - 1];
        q = memchr(q, '\n', (size_t)(end - q));
        cut[k] = q ? q + 1 : end;
    }
    size_t total = 0;
    for (int k = 0; k < T; k++) {
        nl[k] = count_newlines(cut[k], cut[k + 1]);
        size_t bound = (size_t)(cut[k + 1] - cut[k]) / (size_t)j->ncols + 1;
        caps[k] = nl[k] + 1 < bound ? nl[k] + 1 : bound;
        offs[k] = total;
        total += caps[k];
    }
    if (total > (size_t)INT_MAX && T == 1) /* rows are counted in int; grow when needed */
        total = (size_t)1 << 20;
    if (total > (size_t)INT_MAX)
        return bp_fail(j->r.err, BP_EFORMAT, "%s: too many lines (more than %d rows)", j->r.name,
                       INT_MAX);
    bp_status s = resize_rows(j, total);
    if (s) return s;
    if (T == 1) return rows_loop(j, 1);

    csv_job sub[BP_CSV_MAX_CHUNKS];
    bp_error errs[BP_CSV_MAX_CHUNKS];
    bp_status st[BP_CSV_MAX_CHUNKS];
    long line = j->r.line;
    for (int k = 0; k < T; k++) {
        sub[k] = *j;
        sub[k].r.p = cut[k];
        sub[k].r.end = cut[k + 1];
        sub[k].r.line = line;
        sub[k].r.err = &errs[k];
        sub[k].r.blk = NULL;
        sub[k].x = j->x + offs[k] * (size_t)j->nin;
        sub[k].cells = j->cells ? j->cells + offs[k] * (size_t)j->ntg : NULL;
        sub[k].n = 0;
        sub[k].cap = caps[k];
        line += (long)nl[k];
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(T) schedule(static, 1)
#endif
    for (int k = 0; k < T; k++) st[k] = rows_loop(&sub[k], 0);
    for (int k = 0; k < T; k++)
        if (st[k]) {
            if (j->r.err) *j->r.err = errs[k];
            return st[k];
        }
    size_t n = 0;
    for (int k = 0; k < T; k++) {
        if (offs[k] != n) {
            memmove(j->x + n * (size_t)j->nin, sub[k].x,
                    (size_t)sub[k].n * (size_t)j->nin * sizeof *j->x);
            if (j->cells)
                memmove(j->cells + n * (size_t)j->ntg, sub[k].cells,
                        (size_t)sub[k].n * (size_t)j->ntg * sizeof *j->cells);
        }
        n += (size_t)sub[k].n;
    }
    j->n = (int)n;
    j->r.p = end;
    j->r.line = sub[T - 1].r.line;
    return BP_OK;
}

/* The largest text a read accepts (opt->max_bytes, 0: no limit but memory). */
static size_t max_text(const bp_csv_options *opt)
{
    return opt && opt->max_bytes ? opt->max_bytes : SIZE_MAX / 2;
}

/* Check the options, set up the reader on buf[0..len) (followed by
 * BP_READ_PAD zero bytes), skip the byte order mark and opt->skip_rows
 * lines, and read the header. */
static bp_status csv_begin(csv_job *j, char *buf, size_t len, const char *name,
                           const bp_csv_options *opt, bp_error *err)
{
    static const bp_csv_options defaults;
    memset(j, 0, sizeof *j);
    j->opt = opt ? opt : &defaults;
    j->r.base = buf;
    j->r.p = buf;
    j->r.end = buf + len;
    j->r.line = 1;
    j->r.name = name;
    j->r.err = err;
    char d = j->opt->delimiter ? j->opt->delimiter : ',';
    if (d == '"' || d == '\n' || d == '\r')
        return bp_fail(err, BP_EINVAL, "%s: the delimiter cannot be a quote or a line break", name);
    j->r.delim = d;
    j->r.blank_delim = d == ' ' || d == '\t';
    if (len >= 3 && (unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB &&
        (unsigned char)buf[2] == 0xBF)
        j->r.p += 3; /* UTF-8 byte order mark */
    if (j->opt->class_names && j->opt->n_class_names < 0)
        return bp_fail(err, BP_EINVAL, "%s: n_class_names is negative", name);
    if (j->opt->task != BP_TASK_AUTO && j->opt->task != BP_TASK_CLASSIFY &&
        j->opt->task != BP_TASK_REGRESS)
        return bp_fail(err, BP_EINVAL, "%s: unknown task %d", name, (int)j->opt->task);
    if (j->opt->skip_rows < 0)
        return bp_fail(err, BP_EINVAL, "%s: skip_rows is negative (%d)", name, j->opt->skip_rows);
    /* Skipped lines are physical lines (LF, CRLF or CR), quotes or not. */
    for (int i = 0; i < j->opt->skip_rows; i++) {
        char *q = j->r.p;
        while (q < j->r.end && *q != '\n' && *q != '\r') q++;
        if (q >= j->r.end)
            return bp_fail(err, BP_EFORMAT, "%s:%ld: the file ends within the %d line%s to skip",
                           name, j->r.line, j->opt->skip_rows, j->opt->skip_rows == 1 ? "" : "s");
        end_record(&j->r, q);
    }
    return read_header(j);
}

/* Parse buf[0..len), followed by BP_READ_PAD zero bytes. The buffer is
 * modified (quoted fields are unescaped in place). */
static bp_status csv_parse(bp_data *out, char *buf, size_t len, const char *name,
                           const bp_csv_options *opt, char ***feature_names, bp_error *err)
{
    csv_job j;
    bp_status s = csv_begin(&j, buf, len, name, opt, err);
    if (!s) s = pick_targets(&j);
    if (!s) s = read_rows(&j);
    if (!s && j.n == 0)
        s = bp_fail(err, BP_EFORMAT, "%s:%ld:1: no data rows after the header", name, j.r.line);
    if (!s) s = make_targets(&j);
    char **fnames = NULL;
    if (!s && feature_names) {
        fnames = bp_alloc_array((size_t)j.nin, sizeof *fnames);
        if (!fnames) s = bp_fail(err, BP_ENOMEM, "%s: out of memory", name);
        for (int c = 0; !s && c < j.ncols; c++) {
            if (j.role[c] < 0) continue;
            fnames[j.role[c]] = bp_strdup(j.header[c]);
            if (!fnames[j.role[c]]) s = bp_fail(err, BP_ENOMEM, "%s: out of memory", name);
        }
        if (s) bp_strings_free(fnames, j.nin);
    }
    if (s) {
        csv_cleanup(&j);
        return s;
    }
    /* shrink x to its size */
    size_t xbytes = (size_t)j.n * (size_t)j.nin * sizeof *j.x;
    bp_real *nx = realloc(j.x, xbytes);
    if (nx) j.x = nx;
    out->n = j.n;
    out->n_inputs = j.nin;
    out->n_targets = j.n_classes > 0 ? 1 : j.ntg;
    out->n_classes = j.n_classes;
    out->x = j.x;
    out->y = j.y;
    out->class_names = j.class_names;
    out->owned = 1;
    j.x = NULL;
    j.y = NULL;
    j.class_names = NULL;
    j.n_classes = 0;
    csv_cleanup(&j);
    if (feature_names) *feature_names = fnames;
    return BP_OK;
}

/* Inflate gzip text (bounded by max_text) or copy plain text into a new
 * buffer with BP_READ_PAD zero bytes after it. `prefix` > 0: only about
 * that many bytes are needed; *full tells whether the buffer holds all. */
static bp_status text_buffer(const void *data, size_t size, const char *name,
                             const bp_csv_options *opt, size_t prefix, char **buf, size_t *len,
                             int *full, bp_error *err)
{
    *buf = NULL;
    *len = 0;
    *full = 1;
    size_t max = max_text(opt);
    if (bp_is_gzip(data, size)) {
        bp_gunzip_opts g = {max, prefix, NULL};
        uint8_t *b;
        bp_status s = bp_gunzip(data, size, name, &g, &b, len, err);
        if (s) return s;
        *buf = (char *)b;
        *full = prefix == 0 || *len < prefix;
        return BP_OK;
    }
    size_t n = prefix && prefix < size ? prefix : size;
    if (n > max)
        return bp_fail(err, BP_EFORMAT, "%s: text larger than %zu bytes (%zu)", name, max, size);
    if (n > SIZE_MAX - BP_READ_PAD) return bp_fail(err, BP_ENOMEM, "%s: out of memory", name);
    char *b = malloc(n + BP_READ_PAD);
    if (!b) return bp_fail(err, BP_ENOMEM, "%s: out of memory (%zu bytes)", name, n);
    if (n) memcpy(b, data, n);
    memset(b + n, 0, BP_READ_PAD);
    *buf = b;
    *len = n;
    *full = n == size;
    return BP_OK;
}

bp_status bp_csv_header(const void *data, size_t size, const char *name,
                        const bp_csv_options *opt, char ***names, int *n, bp_error *err)
{
    if (names) *names = NULL;
    if (n) *n = 0;
    if (!name) name = "<csv>";
    if (!names || !n) return bp_fail(err, BP_EINVAL, "%s: names or n is NULL", name);
    if (!data && size) return bp_fail(err, BP_EINVAL, "%s: data is NULL", name);
    /* The header is at the start: read 1 MiB, all of it only when the
     * header (or a line to skip) reaches past that. */
    for (size_t prefix = (size_t)1 << 20;; prefix = 0) {
        char *buf;
        size_t len;
        int full;
        bp_status s = text_buffer(data, size, name, opt, prefix, &buf, &len, &full, err);
        if (s) return s;
        csv_job j;
        s = csv_begin(&j, buf, len, name, opt, err);
        if (!full && (s || j.r.p >= j.r.end)) {
            csv_cleanup(&j);
            free(buf);
            continue; /* it may end past the prefix: read everything */
        }
        if (!s) {
            *names = j.header;
            *n = j.ncols;
            j.header = NULL;
            j.ncols = 0;
        }
        csv_cleanup(&j);
        free(buf);
        return s;
    }
}

bp_status bp_read_csv_mem(bp_data *out, const void *data, size_t size, const char *name,
                          const bp_csv_options *opt, char ***feature_names, bp_error *err)
{
    if (feature_names) *feature_names = NULL;
    if (!out) return bp_fail(err, BP_EINVAL, "bp_read_csv_mem: out is NULL");
    memset(out, 0, sizeof *out);
    if (!name) name = "<csv>";
    if (!data && size) return bp_fail(err, BP_EINVAL, "%s: data is NULL", name);
    char *buf;
    size_t len;
    int full;
    bp_status s = text_buffer(data, size, name, opt, 0, &buf, &len, &full, err);
    if (s) return s;
    s = csv_parse(out, buf, len, name, opt, feature_names, err);
    free(buf);
    return s;
}

bp_status bp_read_csv(bp_data *out, const char *path, const bp_csv_options *opt,
                      char ***feature_names, bp_error *err)
{
    if (feature_names) *feature_names = NULL;
    if (!out) return bp_fail(err, BP_EINVAL, "bp_read_csv: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return bp_fail(err, BP_EINVAL, "bp_read_csv: path is NULL");
    char *buf;
    size_t len;
    bp_status s = bp_read_file(path, max_text(opt), &buf, &len, err);
    if (s) return s;
    if (bp_is_gzip(buf, len)) {
        /* .csv.gz: inflate (bounded by max_text), then parse that */
        char *plain;
        size_t plen;
        int full;
        s = text_buffer(buf, len, path, opt, 0, &plain, &plen, &full, err);
        free(buf);
        if (s) return s;
        buf = plain;
        len = plen;
    }
    s = csv_parse(out, buf, len, path, opt, feature_names, err);
    free(buf);
    return s;
}
