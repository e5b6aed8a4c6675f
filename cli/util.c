/*
 * util.c - messages, option parsing, number parsing and atomic output
 * files for the command-line tool.
 */
#define _DEFAULT_SOURCE /* realpath */
#include "cli.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cli_rank = -1;          /* dist.c */
int cli_mpi_started = 0;    /* dist.c */

int cli_fail(int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Keep the message on one line. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    fflush(stdout);
    if (cli_rank >= 0) {
        /* Several ranks: the command line's usage errors (before MPI starts)
         * are the same on each, rank 0 says them. */
        if (cli_rank > 0 && status == CLI_USAGE && !cli_mpi_started) return status;
        fprintf(stderr, "backprop: rank %d: %s\n", cli_rank, msg);
        return status;
    }
    fprintf(stderr, "backprop: %s\n", msg);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

int cli_next(cli_parser *p, const cli_opt *opts, const char **value)
{
    *value = NULL;
    if (p->i >= p->argc) return CLI_ARG_END;
    const char *a = p->argv[p->i++];
    if (p->only_positional || a[0] != '-' || a[1] == '\0') {
        *value = a;
        return CLI_ARG_POSITIONAL;
    }
    if (!strcmp(a, "--")) {
        p->only_positional = 1;
        return cli_next(p, opts, value);
    }
    const char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    for (int k = 0; opts[k].name; k++) {
        int hit = (strlen(opts[k].name) == len && !strncmp(opts[k].name, a, len)) ||
                  (!eq && opts[k].alias && !strcmp(opts[k].alias, a));
        if (!hit) continue;
        if (!opts[k].arg) {
            if (eq) {
                cli_fail(CLI_USAGE, "%s: option %s takes no value", p->cmd, opts[k].name);
                return CLI_ARG_ERROR;
            }
            return k;
        }
        if (eq) {
            *value = eq + 1;
        } else if (p->i < p->argc) {
            *value = p->argv[p->i++];
        } else {
            cli_fail(CLI_USAGE, "%s: option %s needs a value (see 'backprop %s --help')", p->cmd,
                     a, p->cmd);
            return CLI_ARG_ERROR;
        }
        return k;
    }
    cli_fail(CLI_USAGE, "%s: unknown option '%.*s' (see 'backprop %s --help')", p->cmd, (int)len,
             a, p->cmd);
    return CLI_ARG_ERROR;
}

int cli_double(const char *opt, const char *text, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0')
        return cli_fail(CLI_USAGE, "%s: '%s' is not a number", opt, text);
    if (!isfinite(v) || (errno == ERANGE && fabs(v) > 1))
        return cli_fail(CLI_USAGE, "%s: '%s' is out of range (a finite number is needed)", opt, text);
    if (errno == ERANGE) v = 0; /* underflow: as good as zero */
    if (v < lo || v > hi) {
        if (hi >= DBL_MAX) return cli_fail(CLI_USAGE, "%s: %s is out of range (at least %g)", opt, text, lo);
        return cli_fail(CLI_USAGE, "%s: %s is out of range (%g to %g)", opt, text, lo, hi);
    }
    *out = v;
    return 0;
}

int cli_int(const char *opt, const char *text, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE)
        return cli_fail(CLI_USAGE, "%s: '%s' is not an integer", opt, text);
    if (v < lo || v > hi) {
        if (hi >= INT_MAX) return cli_fail(CLI_USAGE, "%s: %s is out of range (at least %ld)", opt, text, lo);
        return cli_fail(CLI_USAGE, "%s: %s is out of range (%ld to %ld)", opt, text, lo, hi);
    }
    *out = (int)v;
    return 0;
}

int cli_u64(const char *opt, const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    const char *t = text;
    while (*t == ' ') t++;
    if (*t == '-' || *t == '+' || !*t)
        return cli_fail(CLI_USAGE, "%s: '%s' is not a non-negative integer", opt, text);
    unsigned long long v = strtoull(t, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return cli_fail(CLI_USAGE, "%s: '%s' is not a non-negative integer", opt, text);
    *out = (uint64_t)v;
    return 0;
}

int cli_shape(const char *opt, const char *text, bp_shape *out)
{
    bp_shape sh = {0, {0, 0, 0}};
    const char *p = text;
    while (1) {
        char *end;
        if (*p < '0' || *p > '9' || sh.rank == BP_MAX_RANK) break;
        long d = strtol(p, &end, 10);
        if (d < 1 || d > 1000000000L) break;
        sh.dim[sh.rank++] = (int)d;
        p = end;
        if (*p == '\0') {
            *out = sh;
            return 0;
        }
        if (*p++ != ',') break;
    }
    return cli_fail(CLI_USAGE, "%s: '%s' is not a shape (C,H,W for images, T,F for sequences or F; "
                    "positive integers)", opt, text);
}

int cli_choice(const char *opt, const char *text, const char *const *names, int *out)
{
    char list[256] = "";
    for (int k = 0; names[k]; k++) {
        if (!strcmp(names[k], text)) {
            *out = k;
            return 0;
        }
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", k ? ", " : "", names[k]);
    }
    return cli_fail(CLI_USAGE, "%s: unknown value '%s' (choose %s)", opt, text, list);
}

int cli_precision(const char *opt, const char *text, int *out)
{
    /* In bp_precision's order: the index is the value. */
    static const char *const names[] = {"f32", "bf16", NULL};
    int k = 0;
    int r = cli_choice(opt, text, names, &k);
    if (!r) *out = k == 1 ? BP_PRECISION_BF16 : BP_PRECISION_F32;
    return r;
}

const char *cli_precision_name(int p) { return p == BP_PRECISION_BF16 ? "bf16" : "f32"; }

int cli_precision_check(int p)
{
    if (p != BP_PRECISION_BF16 || bp_bf16_supported()) return CLI_OK;
    return cli_fail(CLI_FAIL, "--precision bf16 needs a CPU with AVX512_BF16 instructions, which "
                    "this one lacks (or ONEDNN_MAX_CPU_ISA forbids them); --precision f32 runs on "
                    "any CPU");
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *cli_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

char *cli_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

void cli_csv_field(FILE *f, const char *s)
{
    size_t n = strlen(s);
    int quote = n && (s[0] == ' ' || s[n - 1] == ' ' || s[0] == '\t' || s[n - 1] == '\t');
    for (const char *p = s; *p && !quote; p++)
        if (*p == ',' || *p == '"' || *p == '\n' || *p == '\r') quote = 1;
    if (!quote) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const char *p = s; *p; p++) {
        if (*p == '"') fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

void cli_fmt_num(char *buf, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(buf, size, "nan");
        return;
    }
    /* Shortest %g that reads back as the same float. */
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if ((float)strtod(buf, NULL) == (float)v) return;
    }
}

/* ------------------------------------------------------------------------ */
/* Atomic output files                                                       */
/* ------------------------------------------------------------------------ */

/* Absolute, link-free form of a path that may not exist yet: realpath of
 * the file, else realpath of its directory plus its last component.
 * malloc'd; NULL when even the directory does not resolve. */
static char *canonical_path(const char *path)
{
    char *r = realpath(path, NULL);
    if (r) return r;
    const char *slash = strrchr(path, '/');
    char *dir = slash ? cli_printf("%.*s", (int)(slash - path) + (slash == path), path) : cli_strdup(".");
    char *rd = dir ? realpath(dir, NULL) : NULL;
    free(dir);
    if (!rd) return NULL;
    r = cli_printf("%s/%s", rd, slash ? slash + 1 : path);
    free(rd);
    return r;
}

char *cli_join_names(char *const *names, int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(names[i]) + 1;
    char *out = malloc(len);
    if (!out) return NULL;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i) strcat(out, ",");
        strcat(out, names[i]);
    }
    return out;
}

int cli_same_file(const char *a, const char *b)
{
    if (!a || !b) return 0;
    if (strcmp(a, b) == 0) return 1;
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char *ca = canonical_path(a), *cb = canonical_path(b);
    int same = ca && cb && strcmp(ca, cb) == 0;
    free(ca);
    free(cb);
    return same;
}

int cli_check_outputs(const char *const *outs, const char *const *out_names, int n_out,
                      const char *const *ins, const char *const *in_names, int n_in)
{
    for (int i = 0; i < n_out; i++) {
        if (!outs[i]) continue;
        for (int j = i + 1; j < n_out; j++)
            if (cli_same_file(outs[i], outs[j]))
                return cli_fail(CLI_USAGE, "%s and %s name the same file '%s'", out_names[i], out_names[j],
                                outs[i]);
        for (int j = 0; j < n_in; j++)
            if (cli_same_file(outs[i], ins[j]))
                return cli_fail(CLI_USAGE, "%s '%s' would overwrite the %s", out_names[i], outs[i], in_names[j]);
    }
    return CLI_OK;
}

/* Temporary files open now, removed by cli_remove_temps (a signal
 * handler: unlink only, async-signal-safe) when a kill ends the run:
 * mpirun stops the other ranks with SIGTERM when one fails. */
#define MAX_TEMPS 8
static char *volatile g_temps[MAX_TEMPS];

static void temps_add(char *tmp)
{
    for (int i = 0; i < MAX_TEMPS; i++)
        if (!g_temps[i]) {
            g_temps[i] = tmp;
            return;
        }
}

static void temps_drop(const char *tmp)
{
    for (int i = 0; tmp && i < MAX_TEMPS; i++)
        if (g_temps[i] == tmp) g_temps[i] = NULL;
}

void cli_remove_temps(void)
{
    for (int i = 0; i < MAX_TEMPS; i++)
        if (g_temps[i]) unlink(g_temps[i]);
}

int cli_out_open(cli_outfile *o, const char *path)
{
    memset(o, 0, sizeof *o);
    /* A symbolic link is followed (its target is replaced, the link stays);
     * an existing path that is not a regular file (a FIFO, a device such as
     * /dev/stdout) is written in place, since renaming over it would
     * replace the node itself. */
    struct stat lst, st;
    char *real = lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode) ? realpath(path, NULL) : NULL;
    const char *target = real ? real : path;
    if (stat(target, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        o->path = cli_strdup(path);
        o->f = o->path ? fopen(target, "w") : NULL;
        int e = errno;
        free(real);
        if (!o->f) {
            cli_out_abort(o);
            return cli_fail(CLI_FAIL, "%s: cannot write: %s", path, strerror(e));
        }
        return CLI_OK; /* tmp NULL: written in place */
    }
    o->path = cli_strdup(target);
    o->tmp = cli_printf("%s.tmp.%ld", target, (long)getpid());
    free(real);
    if (!o->path || !o->tmp) {
        cli_out_abort(o);
        return cli_fail(CLI_FAIL, "out of memory");
    }
    o->f = fopen(o->tmp, "w");
    if (!o->f) {
        int e = errno;
        free(o->tmp);
        o->tmp = NULL;
        cli_out_abort(o);
        return cli_fail(CLI_FAIL, "%s: cannot write: %s", path, strerror(e));
    }
    temps_add(o->tmp);
    return CLI_OK;
}

int cli_out_commit(cli_outfile *o)
{
    int bad = 0, e = 0;
    if (fflush(o->f) != 0 || ferror(o->f)) bad = 1, e = errno;
    if (!bad && o->tmp && fsync(fileno(o->f)) != 0) bad = 1, e = errno;
    if (fclose(o->f) != 0 && !bad) bad = 1, e = errno;
    o->f = NULL;
    if (!bad && o->tmp && rename(o->tmp, o->path) != 0) bad = 1, e = errno;
    if (!bad) temps_drop(o->tmp);
    if (bad) {
        cli_fail(CLI_FAIL, "%s: cannot write: %s", o->path, strerror(e));
        cli_out_abort(o);
        return CLI_FAIL;
    }
    free(o->tmp);
    free(o->path);
    o->tmp = o->path = NULL;
    return CLI_OK;
}

void cli_out_abort(cli_outfile *o)
{
    temps_drop(o->tmp);
    if (o->f) fclose(o->f);
    if (o->tmp) remove(o->tmp);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
}

/* 421834 -> "421,834". */
void cli_fmt_count(char *buf, size_t size, size_t v)
{
    char d[32];
    int n = snprintf(d, sizeof d, "%zu", v), o = 0;
    for (int i = 0; i < n && o + 2 < (int)size; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = d[i];
    }
    buf[o] = '\0';
}
