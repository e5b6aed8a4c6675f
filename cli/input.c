/*
 * input.c - every input file of a command (DATA, --labels, --val,
 * --val-labels) read once into memory, and the CSV dialect of the command.
 *
 * A pipe (`<(cat data.csv)`), a FIFO or standard input ("-") can be read
 * only once, and the commands look at DATA several times: the format is
 * sniffed from its first bytes, its header names are read, and then it is
 * parsed (predict may parse it twice). So the first look reads the whole
 * stream into memory and every later look uses those bytes; a regular file
 * is treated the same way, so all looks agree on one content.
 *
 * A stream has no size to check first, so reading is bounded: an input
 * larger than the limit (half the physical memory, or BACKPROP_MAX_INPUT
 * bytes with an optional K, M or G suffix) is refused with a message,
 * instead of growing until the kernel kills the process (`/dev/zero`,
 * `yes |`). The same limit bounds a decompressed .csv.gz.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

cli_csv_dialect cli_csv;

typedef struct input {
    char *path;
    unsigned char *data;
    size_t size;
    int released;
} input;

#define MAX_INPUTS 8
static input g_inputs[MAX_INPUTS];
static int g_n_inputs;

const char *cli_input_name(const char *path)
{
    return path && !strcmp(path, "-") ? "<stdin>" : path;
}

size_t cli_input_limit(void)
{
    const char *env = getenv("BACKPROP_MAX_INPUT");
    if (env && *env) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(env, &end, 10);
        unsigned long long mul = 1;
        if (*end == 'k' || *end == 'K') mul = 1ull << 10, end++;
        else if (*end == 'm' || *end == 'M') mul = 1ull << 20, end++;
        else if (*end == 'g' || *end == 'G') mul = 1ull << 30, end++;
        if (!errno && !*end && v > 0 && v <= (unsigned long long)SIZE_MAX / mul)
            return (size_t)(v * mul);
    }
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psize > 0 && (unsigned long long)pages <= SIZE_MAX / (size_t)psize)
        return (size_t)pages * (size_t)psize / 2;
    return (size_t)1 << 32;
}

/* "1.5 GiB" */
static void size_text(char *b, size_t n, size_t v)
{
    if (v >= (size_t)1 << 30) snprintf(b, n, "%.1f GiB", (double)v / (1 << 30));
    else if (v >= (size_t)1 << 20) snprintf(b, n, "%.1f MiB", (double)v / (1 << 20));
    else snprintf(b, n, "%zu bytes", v);
}

static int too_large(const char *name, size_t limit, char *msg, size_t msz)
{
    char lt[32];
    size_text(lt, sizeof lt, limit);
    snprintf(msg, msz, "%s: larger than %s, the input limit (half the physical memory; "
             "BACKPROP_MAX_INPUT=BYTES changes it)", name, lt);
    return CLI_FAIL;
}

/* Read all of fd (bounded by limit) into a new buffer with a NUL after it. */
static int slurp(int fd, const char *name, unsigned char **out, size_t *out_size, char *msg,
                 size_t msz)
{
    size_t limit = cli_input_limit();
    size_t cap = 1 << 16, len = 0;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        if ((unsigned long long)st.st_size > (unsigned long long)limit)
            return too_large(name, limit, msg, msz);
        cap = (size_t)st.st_size + 1; /* + 1: the end shows without a regrow */
    }
    unsigned char *buf = malloc(cap + 1);
    if (!buf) {
        snprintf(msg, msz, "%s: out of memory reading %zu bytes", name, cap);
        return CLI_FAIL;
    }
    for (;;) {
        if (len == cap) {
            if (cap > limit) {
                free(buf);
                return too_large(name, limit, msg, msz);
            }
            size_t ncap = cap > limit / 2 ? limit + 1 : cap * 2;
            unsigned char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                snprintf(msg, msz, "%s: out of memory reading the input (%zu bytes)", name, ncap);
                return CLI_FAIL;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t got = read(fd, buf + len, cap - len);
        if (got < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf);
            snprintf(msg, msz, "%s: read error: %s", name, strerror(e));
            return CLI_FAIL;
        }
        if (got == 0) break;
        len += (size_t)got;
    }
    if (len > limit) {
        free(buf);
        return too_large(name, limit, msg, msz);
    }
    buf[len] = '\0';
    *out = buf;
    *out_size = len;
    return CLI_OK;
}

int cli_input_read(const char *path, const unsigned char **data, size_t *size, char *msg,
                   size_t msz)
{
    *data = NULL;
    *size = 0;
    const char *name = cli_input_name(path);
    for (int i = 0; i < g_n_inputs; i++) {
        if (strcmp(g_inputs[i].path, path)) continue;
        if (g_inputs[i].released) {
            snprintf(msg, msz, "%s: the input was already read and released (internal error)",
                     name);
            return CLI_FAIL;
        }
        *data = g_inputs[i].data;
        *size = g_inputs[i].size;
        return CLI_OK;
    }
    if (g_n_inputs == MAX_INPUTS) {
        snprintf(msg, msz, "%s: too many input files", name);
        return CLI_FAIL;
    }
    int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
    if (fd < 0) {
        snprintf(msg, msz, "%s: cannot open: %s", name, strerror(errno));
        return CLI_FAIL;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (fd != STDIN_FILENO) close(fd);
        snprintf(msg, msz, "%s: cannot read: %s", name, strerror(EISDIR));
        return CLI_FAIL;
    }
    unsigned char *buf = NULL;
    size_t len = 0;
    int st_read = slurp(fd, name, &buf, &len, msg, msz);
    if (fd != STDIN_FILENO) close(fd);
    if (st_read) return st_read;
    char *p = cli_strdup(path);
    if (!p) {
        free(buf);
        snprintf(msg, msz, "out of memory");
        return CLI_FAIL;
    }
    g_inputs[g_n_inputs].path = p;
    g_inputs[g_n_inputs].data = buf;
    g_inputs[g_n_inputs].size = len;
    g_inputs[g_n_inputs].released = 0;
    g_n_inputs++;
    *data = buf;
    *size = len;
    return CLI_OK;
}

void cli_inputs_release(void)
{
    for (int i = 0; i < g_n_inputs; i++) {
        free(g_inputs[i].data);
        g_inputs[i].data = NULL;
        g_inputs[i].size = 0;
        g_inputs[i].released = 1;
    }
}

void cli_inputs_free(void)
{
    for (int i = 0; i < g_n_inputs; i++) {
        free(g_inputs[i].path);
        free(g_inputs[i].data);
    }
    memset(g_inputs, 0, sizeof g_inputs);
    g_n_inputs = 0;
}

int cli_delimiter(const char *opt, const char *text, char *out)
{
    if (!strcmp(text, "tab") || !strcmp(text, "\\t")) *out = '\t';
    else if (!strcmp(text, "space")) *out = ' ';
    else if (!strcmp(text, "comma")) *out = ',';
    else if (!strcmp(text, "semicolon")) *out = ';';
    else if (strlen(text) == 1 && text[0] != '"' && text[0] != '\n' && text[0] != '\r')
        *out = text[0];
    else
        return cli_fail(CLI_USAGE, "%s: '%s' is not one character (or tab, space, comma, "
                        "semicolon); a quote or line break cannot be a delimiter", opt, text);
    return CLI_OK;
}

int cli_dialect_option(const char *name, const char *value, int *r)
{
    if (!strcmp(name, "--delimiter"))
        *r = cli_delimiter(name, value, &cli_csv.delimiter), cli_csv.set_delimiter = 1;
    else if (!strcmp(name, "--skip-rows"))
        *r = cli_int(name, value, 0, 1000000000, &cli_csv.skip_rows), cli_csv.set_skip_rows = 1;
    else if (!strcmp(name, "--no-header"))
        cli_csv.no_header = cli_csv.set_no_header = 1;
    else
        return 0;
    return 1;
}

void cli_csv_apply(bp_csv_options *co)
{
    co->delimiter = cli_csv.delimiter;
    co->skip_rows = cli_csv.skip_rows;
    co->no_header = cli_csv.no_header;
    co->max_bytes = cli_input_limit();
}

int cli_csv_from_model(const bp_net *net, const char *model_path)
{
    const char *d = bp_net_get_meta(net, "csv_delimiter");
    const char *k = bp_net_get_meta(net, "csv_skip_rows");
    const char *h = bp_net_get_meta(net, "csv_header");
    if (d && !cli_csv.set_delimiter) {
        if (strlen(d) != 1 || d[0] == '"' || d[0] == '\n' || d[0] == '\r')
            return cli_fail(CLI_FAIL, "%s: metadata \"csv_delimiter\" is not one usable character",
                            model_path);
        cli_csv.delimiter = d[0] == ',' ? 0 : d[0];
    }
    if (k && !cli_csv.set_skip_rows) {
        char *end;
        long v = strtol(k, &end, 10);
        if (*end || end == k || v < 0 || v > 1000000000L)
            return cli_fail(CLI_FAIL, "%s: metadata \"csv_skip_rows\" is '%s', not a line count",
                            model_path, k);
        cli_csv.skip_rows = (int)v;
    }
    if (h && !cli_csv.set_no_header) {
        if (strcmp(h, "0") && strcmp(h, "1"))
            return cli_fail(CLI_FAIL, "%s: metadata \"csv_header\" is '%s', expected 0 or 1",
                            model_path, h);
        cli_csv.no_header = !strcmp(h, "0");
    }
    return CLI_OK;
}
