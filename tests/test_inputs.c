/* test_inputs.c - how the readers take their input (issue 7): the CSV
 * dialect options (delimiter, skipped lines, no header row), gzip CSV,
 * bp_csv_header, bp_is_idx_data, an ambiguous target name, and IDX gzip
 * data that inflates past what its header declares ("gzip bombs"). */
#include "backprop.h"
#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static bp_error err;

/* gzip-compress src into a new buffer; returns the length (0 on failure). */
static size_t gz(uint8_t **dst, const void *src, size_t n)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    *dst = NULL;
    if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return 0;
    size_t cap = deflateBound(&zs, (uLong)n) + 64;
    *dst = malloc(cap);
    if (!*dst) return 0;
    zs.next_in = (Bytef *)src;
    zs.avail_in = (uInt)n;
    zs.next_out = *dst;
    zs.avail_out = (uInt)cap;
    int r = deflate(&zs, Z_FINISH);
    size_t len = cap - zs.avail_out;
    deflateEnd(&zs);
    return r == Z_STREAM_END ? len : 0;
}

static bp_status rd(bp_data *d, const char *text, const bp_csv_options *o, char ***names)
{
    memset(&err, 0, sizeof err);
    return bp_read_csv_mem(d, text, strlen(text), "t.csv", o, names, &err);
}

/* Expect bp_read_csv_mem to fail with `code` and `want` in the message. */
static void expect_fail(const char *text, const bp_csv_options *o, bp_status code,
                        const char *want, int line)
{
    bp_data d;
    bp_status s = rd(&d, text, o, NULL);
    check_record(s == code, __FILE__, line, "status %s, want %s (%s)", bp_status_name(s),
                 bp_status_name(code), err.message);
    check_record(strstr(err.message, want) != NULL, __FILE__, line,
                 "message \"%s\" lacks \"%s\"", err.message, want);
    bp_data_free(&d);
}
#define EXPECT_FAIL(text, o, code, want) expect_fail(text, o, code, want, __LINE__)

static void test_delimiter(void)
{
    bp_csv_options o;
    memset(&o, 0, sizeof o);
    bp_data d;
    char **names = NULL;
    o.delimiter = ';';
    CHECK(rd(&d, "a;b;y\n1,5;2;0\n3;4;1\n", &o, &names) != BP_OK,
          "';' delimiter: '1,5' is one non-numeric field");
    CHECK(strstr(err.message, "t.csv:2:1:") != NULL, "its position: %s", err.message);
    CHECK(rd(&d, "a;b;y\n1.5;2;0\n3;\"4\";1\n", &o, &names) == BP_OK, "';' file: %s", err.message);
    CHECK(d.n == 2 && d.n_inputs == 2 && d.n_classes == 2, "shape %d x %d", d.n, d.n_inputs);
    CHECK(d.x[0] == 1.5f && d.x[3] == 4, "values %g %g", d.x[0], d.x[3]);
    CHECK(names && !strcmp(names[0], "a") && !strcmp(names[1], "b"), "names");
    bp_strings_free(names, d.n_inputs);
    bp_data_free(&d);

    /* A tab delimiter is not trimmed: two tabs are an empty field. */
    o.delimiter = '\t';
    CHECK(rd(&d, "a\tb\ty\n 1\t2 \t0\n3\t4\t1\n", &o, NULL) == BP_OK, "tab file: %s", err.message);
    CHECK(d.n == 2 && d.n_inputs == 2 && d.x[0] == 1 && d.x[1] == 2, "tab values");
    bp_data_free(&d);
    EXPECT_FAIL("a\tb\ty\n1\t\t0\n", &o, BP_EFORMAT, "t.csv:2:2: missing (empty) value");
    o.delimiter = ' ';
    CHECK(rd(&d, "a b y\n1 2 0\n3 4 1\n", &o, NULL) == BP_OK, "space file: %s", err.message);
    CHECK(d.n == 2 && d.n_inputs == 2 && d.x[2] == 3, "space values");
    bp_data_free(&d);
    EXPECT_FAIL("a b y\n1  2 0\n", &o, BP_EFORMAT, "t.csv:2:2: missing (empty) value");
    /* A comma is data when it is not the delimiter. */
    o.delimiter = '|';
    CHECK(rd(&d, "a|y\n1|x,y\n2|z\n", &o, NULL) == BP_OK, "'|' file: %s", err.message);
    CHECK(d.n_classes == 2 && d.class_names && !strcmp(d.class_names[0], "x,y"), "label 'x,y'");
    bp_data_free(&d);
    o.delimiter = '"';
    EXPECT_FAIL("a\"y\n1\"2\n", &o, BP_EINVAL, "delimiter");
    o.delimiter = '\n';
    EXPECT_FAIL("a,y\n1,2\n", &o, BP_EINVAL, "delimiter");

    /* A large file (parallel path) with ';' gives the same as with ','. */
    size_t rows = 200000;
    char *a = malloc(rows * 16 + 16), *b = malloc(rows * 16 + 16);
    CHECK(a && b, "alloc");
    if (a && b) {
        size_t ka = (size_t)sprintf(a, "x,z,y\n"), kb = (size_t)sprintf(b, "x;z;y\n");
        for (size_t r = 0; r < rows; r++) {
            ka += (size_t)sprintf(a + ka, "%zu,%zu.5,%zu\n", r % 997, r % 13, r % 3);
            kb += (size_t)sprintf(b + kb, "%zu;%zu.5;%zu\n", r % 997, r % 13, r % 3);
        }
        bp_data da, db;
        bp_csv_options oc, os;
        memset(&oc, 0, sizeof oc);
        memset(&os, 0, sizeof os);
        os.delimiter = ';';
        CHECK(bp_read_csv_mem(&da, a, ka, "a", &oc, NULL, &err) == BP_OK, "%s", err.message);
        CHECK(bp_read_csv_mem(&db, b, kb, "b", &os, NULL, &err) == BP_OK, "%s", err.message);
        CHECK(da.n == (int)rows && db.n == (int)rows &&
                  !memcmp(da.x, db.x, rows * 2 * sizeof *da.x) &&
                  !memcmp(da.y, db.y, rows * sizeof *da.y),
              "large ';' file equals the ',' file");
        bp_data_free(&da);
        bp_data_free(&db);
    }
    free(a);
    free(b);
}

static void test_skip_and_no_header(void)
{
    bp_csv_options o;
    memset(&o, 0, sizeof o);
    bp_data d;
    char **names = NULL;
    /* sklearn's iris.csv / wine_data.csv: a count line, then rows only. */
    const char *sk = "3,2,class_0,class_1\n1.5,2,0\n3,4,1\n5,6,1\n";
    o.skip_rows = 1;
    o.no_header = 1;
    CHECK(rd(&d, sk, &o, &names) == BP_OK, "skip 1 + no header: %s", err.message);
    CHECK(d.n == 3 && d.n_inputs == 2 && d.n_classes == 2 && d.x[0] == 1.5f && d.y[2] == 1,
          "rows %d inputs %d", d.n, d.n_inputs);
    CHECK(names && !strcmp(names[0], "0") && !strcmp(names[1], "1"), "columns named by index");
    bp_strings_free(names, d.n_inputs);
    bp_data_free(&d);
    /* Target by index with no header. */
    o.target = "0";
    CHECK(rd(&d, sk, &o, NULL) == BP_OK && d.n_targets == 1 && d.n_inputs == 2 && d.x[0] == 2 &&
              d.y[1] == 3,
          "no header, --target 0: %s", err.message);
    bp_data_free(&d);
    o.target = NULL;
    /* Errors count the skipped lines. */
    EXPECT_FAIL("junk\n1,2,0\n3,x,1\n", &o, BP_EFORMAT, "t.csv:3:2:");
    /* A quoted first field with a delimiter and a doubled quote counts once. */
    CHECK(rd(&d, "\"1,\"\"x\",2,0\n\"3\",4,1\n", &(bp_csv_options){.no_header = 1, .task = BP_TASK_REGRESS, .target = "1"}, NULL) != BP_OK,
          "a text feature still fails");
    CHECK(strstr(err.message, "t.csv:1:1:") != NULL, "at line 1 column 1: %s", err.message);
    CHECK(rd(&d, "1,\"a,b\"\n2,\"c\"\"d\"\n", &(bp_csv_options){.no_header = 1}, NULL) == BP_OK &&
              d.n == 2 && d.n_inputs == 1 && d.class_names && !strcmp(d.class_names[0], "a,b"),
          "no header, quoted labels: %s", err.message);
    bp_data_free(&d);
    /* skip_rows alone: a count line before a real header (boston). */
    memset(&o, 0, sizeof o);
    o.skip_rows = 1;
    CHECK(rd(&d, "2,1,,\r\n\"x\",y\r\n1,2.5\r\n3,4.5\r\n", &o, &names) == BP_OK &&
              d.n == 2 && d.n_targets == 1 && d.n_classes == 0,
          "skip 1 with CRLF: %s", err.message);
    CHECK(names && !strcmp(names[0], "x"), "header after the skipped line");
    bp_strings_free(names, d.n_inputs);
    bp_data_free(&d);
    o.skip_rows = 3;
    EXPECT_FAIL("a\nb\n", &o, BP_EFORMAT, "ends within the 3 lines to skip");
    o.skip_rows = -1;
    EXPECT_FAIL("a,b\n1,2\n", &o, BP_EINVAL, "skip_rows is negative");
    o.skip_rows = 2;
    EXPECT_FAIL("a\nb\n", &o, BP_EFORMAT, "t.csv:3:1: empty file");
}

static void test_ambiguous_target(void)
{
    bp_csv_options o;
    memset(&o, 0, sizeof o);
    bp_data d;
    o.target = "y";
    EXPECT_FAIL("a,y,b,y\n1,2,3,0\n", &o, BP_EINVAL, "columns 2 and 4");
    o.target = "a,y";
    EXPECT_FAIL("a,y,b,y\n1,2,3,0\n", &o, BP_EINVAL, "ambiguous");
    o.target = "b";
    CHECK(rd(&d, "a,y,b,y\n1,2,3,0\n4,5,6,1\n", &o, NULL) == BP_OK, "an unambiguous target: %s",
          err.message);
    bp_data_free(&d);
}

static void test_gzip_csv(void)
{
    const char *text = "a,b,y\n1,2,x\n3,4,z\n";
    uint8_t *z;
    size_t zn = gz(&z, text, strlen(text));
    CHECK(zn > 0, "gzip for the test");
    bp_data d, p;
    char **names = NULL;
    CHECK(bp_read_csv_mem(&d, z, zn, "t.csv.gz", NULL, &names, &err) == BP_OK, "gzip CSV: %s",
          err.message);
    CHECK(bp_read_csv_mem(&p, text, strlen(text), "t.csv", NULL, NULL, &err) == BP_OK, "plain");
    CHECK(d.n == p.n && d.n_inputs == p.n_inputs && !memcmp(d.x, p.x, 4 * sizeof *d.x) &&
              d.n_classes == 2,
          "gzip CSV reads as the plain one");
    CHECK(names && !strcmp(names[1], "b"), "names from gzip");
    bp_strings_free(names, d.n_inputs);
    bp_data_free(&d);
    bp_data_free(&p);
    /* bp_read_csv on a .csv.gz file */
    FILE *f = fopen("test_inputs.csv.gz", "wb");
    CHECK(f && fwrite(z, 1, zn, f) == zn && fclose(f) == 0, "write the file");
    CHECK(bp_read_csv(&d, "test_inputs.csv.gz", NULL, NULL, &err) == BP_OK && d.n == 2,
          "bp_read_csv of a .csv.gz: %s", err.message);
    bp_data_free(&d);
    remove("test_inputs.csv.gz");
    /* truncated gzip */
    CHECK(bp_read_csv_mem(&d, z, zn - 5, "t.csv.gz", NULL, NULL, &err) == BP_EFORMAT &&
              strstr(err.message, "t.csv.gz: truncated gzip"),
          "truncated gzip CSV: %s", err.message);
    free(z);
    /* max_bytes bounds the inflated text: 64 MiB of zeros, limit 1 MiB. */
    size_t big = (size_t)64 << 20;
    char *zeros = calloc(big, 1);
    CHECK(zeros != NULL, "alloc");
    if (zeros) {
        memcpy(zeros, "a,y\n", 4);
        zn = gz(&z, zeros, big);
        free(zeros);
        bp_csv_options o;
        memset(&o, 0, sizeof o);
        o.max_bytes = (size_t)1 << 20;
        CHECK(bp_read_csv_mem(&d, z, zn, "bomb.csv.gz", &o, NULL, &err) == BP_EFORMAT &&
                  strstr(err.message, "larger than 1048576 bytes"),
              "a gzip CSV past max_bytes: %s", err.message);
        CHECK(bp_read_csv_mem(&d, "a,y\n1,2\n", 8, "small", &o, NULL, &err) == BP_OK, "small ok");
        bp_data_free(&d);
        o.max_bytes = 4;
        CHECK(bp_read_csv_mem(&d, "a,y\n1,2\n", 8, "small", &o, NULL, &err) == BP_EFORMAT,
              "plain text past max_bytes");
        /* a small gzip text over a small bound (smaller than one inflate step) */
        uint8_t *zs;
        size_t zsn = gz(&zs, "a,y\n1,2\n3,4\n", 12);
        o.max_bytes = 11;
        CHECK(bp_read_csv_mem(&d, zs, zsn, "s.gz", &o, NULL, &err) == BP_EFORMAT &&
                  strstr(err.message, "larger than 11 bytes"),
              "small gzip text past max_bytes: %s", err.message);
        o.max_bytes = 12;
        CHECK(bp_read_csv_mem(&d, zs, zsn, "s.gz", &o, NULL, &err) == BP_OK && d.n == 2,
              "small gzip text at max_bytes: %s", err.message);
        bp_data_free(&d);
        free(zs);
        free(z);
    }
}

static void test_header(void)
{
    char **h = NULL;
    int n = -1;
    bp_csv_options o;
    memset(&o, 0, sizeof o);
    const char *bom = "\xef\xbb\xbf x ,\"y,1\"\n1,2\n";
    CHECK(bp_csv_header(bom, strlen(bom), "t", NULL, &h, &n, &err) == BP_OK &&
              n == 2 && !strcmp(h[0], "x") && !strcmp(h[1], "y,1"),
          "header names: %s", err.message);
    bp_strings_free(h, n);
    o.no_header = 1;
    o.skip_rows = 1;
    CHECK(bp_csv_header("150,4,a,b,c\n1,2,3\n", 18, "t", &o, &h, &n, &err) == BP_OK && n == 3 &&
              !strcmp(h[2], "2"),
          "no header: %d names", n);
    bp_strings_free(h, n);
    CHECK(bp_csv_header("", 0, "t", NULL, &h, &n, &err) == BP_EFORMAT && !h && n == 0 &&
              strstr(err.message, "empty file"),
          "empty: %s", err.message);
    CHECK(bp_csv_header("\"a,b\n", 5, "t", NULL, &h, &n, &err) == BP_EFORMAT && !h,
          "unterminated quote: %s", err.message);
    /* A header longer than the 1 MiB first read: 300000 columns. */
    size_t cols = 300000;
    char *t = malloc(cols * 12 + 16);
    CHECK(t != NULL, "alloc");
    if (t) {
        size_t k = 0;
        for (size_t c = 0; c < cols; c++) k += (size_t)sprintf(t + k, "%sc%zu", c ? "," : "", c);
        k += (size_t)sprintf(t + k, "\n");
        CHECK(k > ((size_t)1 << 20), "the header is longer than 1 MiB");
        size_t hl = k;
        for (size_t c = 0; c < cols; c++) k += (size_t)sprintf(t + k, "%s1", c ? "," : "");
        CHECK(bp_csv_header(t, k, "wide", NULL, &h, &n, &err) == BP_OK && n == (int)cols &&
                  !strcmp(h[cols - 1], "c299999"),
              "long header: %d names (%s)", n, err.message);
        bp_strings_free(h, n);
        uint8_t *z;
        size_t zn = gz(&z, t, k);
        CHECK(bp_csv_header(z, zn, "wide.gz", NULL, &h, &n, &err) == BP_OK && n == (int)cols,
              "long gzip header: %d names (%s)", n, err.message);
        bp_strings_free(h, n);
        free(z);
        (void)hl;
        free(t);
    }
}

static void test_sniff(void)
{
    static const uint8_t idx[] = {0, 0, 8, 1, 0, 0, 0, 1, 7};
    uint8_t *z;
    CHECK(bp_is_idx_data(idx, sizeof idx) == 1, "plain IDX");
    size_t zn = gz(&z, idx, sizeof idx);
    CHECK(bp_is_idx_data(z, zn) == 1, "gzip IDX");
    free(z);
    zn = gz(&z, "a,b\n1,2\n", 8);
    CHECK(bp_is_idx_data(z, zn) == 0, "gzip CSV is not IDX");
    CHECK(bp_is_idx_data(z, 10) == 0, "a truncated gzip CSV is not IDX");
    free(z);
    CHECK(bp_is_idx_data("a,b\n", 4) == 0, "CSV");
    CHECK(bp_is_idx_data("", 0) == 0 && bp_is_idx_data(NULL, 0) == 0, "empty / NULL");
    CHECK(bp_is_idx_data("\x1f\x8b\x08garbage", 10) == 0, "corrupt gzip");
}

/* An IDX header + data of `n` zero pixels, gzip-compressed as `members`
 * members of `chunk` zero bytes each after the first. */
static size_t idx_bomb(uint8_t **out, uint32_t images, size_t chunk, int members)
{
    uint8_t hdr[16] = {0, 0, 8, 3, 0, 0, 0, 0, 0, 0, 0, 28, 0, 0, 0, 28};
    hdr[4] = (uint8_t)(images >> 24);
    hdr[5] = (uint8_t)(images >> 16);
    hdr[6] = (uint8_t)(images >> 8);
    hdr[7] = (uint8_t)images;
    uint8_t *first = calloc(chunk + 16, 1), *z0, *z1;
    if (!first) return 0;
    memcpy(first, hdr, 16);
    size_t n0 = gz(&z0, first, chunk + 16);
    size_t n1 = gz(&z1, first + 16, chunk); /* zeros */
    free(first);
    size_t total = n0 + n1 * (size_t)(members - 1);
    *out = malloc(total);
    if (*out) {
        memcpy(*out, z0, n0);
        for (int m = 1; m < members; m++) memcpy(*out + n0 + n1 * (size_t)(m - 1), z1, n1);
    }
    free(z0);
    free(z1);
    return *out ? total : 0;
}

static void test_idx_bounds(void)
{
    bp_data d;
    uint8_t *z;
    /* 100 images of 28x28 declared; 1 GiB of zeros follow (64 members of
     * 16 MiB). Inflating stops just past the declared 78416 bytes. */
    size_t zn = idx_bomb(&z, 100, (size_t)16 << 20, 64);
    CHECK(zn > 0 && zn < ((size_t)2 << 20), "bomb of %zu bytes", zn);
    if (zn) {
        memset(&err, 0, sizeof err);
        bp_status s = bp_read_idx_mem_named(&d, z, zn, "bomb.gz", NULL, 0, NULL, &err);
        CHECK(s == BP_EFORMAT && strstr(err.message, "bomb.gz: the gzip data holds more than "
                                                      "the 78416 bytes its header declares"),
              "bomb: %s %s", bp_status_name(s), err.message);
        free(z);
    }
    /* The right size in the same shape reads. */
    zn = idx_bomb(&z, 100, 78400, 1);
    CHECK(zn && bp_read_idx_mem(&d, z, zn, NULL, 0, &err) == BP_OK && d.n == 100 &&
              d.n_inputs == 784,
          "exact size: %s", err.message);
    bp_data_free(&d);
    free(z);
    /* A header that declares more than the compressed bytes can hold. */
    zn = idx_bomb(&z, 60000, 1000, 1);
    CHECK(zn && zn < 2000, "small file %zu", zn);
    memset(&err, 0, sizeof err);
    CHECK(bp_read_idx_mem(&d, z, zn, NULL, 0, &err) == BP_EFORMAT &&
              strstr(err.message, "declares 47040016 bytes, more than"),
          "absurd header: %s", err.message);
    free(z);
    /* The names in messages. */
    static const uint8_t img[] = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 1, 5, 6};
    static const uint8_t lbl[] = {0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 1};
    CHECK(bp_read_idx_mem_named(&d, img, sizeof img, "i.idx", lbl, sizeof lbl, "l.idx", &err) ==
                  BP_EFORMAT &&
              strstr(err.message, "i.idx has 2 images but l.idx has 3 labels"),
          "named: %s", err.message);
    CHECK(bp_read_idx_mem_named(&d, img, sizeof img, "i.idx", lbl, 10, "l.idx", &err) ==
                  BP_EFORMAT && strstr(err.message, "l.idx: truncated"),
          "named labels: %s", err.message);
}

int main(void)
{
    test_delimiter();
    test_skip_and_no_header();
    test_ambiguous_target();
    test_gzip_csv();
    test_header();
    test_sniff();
    test_idx_bounds();
    return check_done("test_inputs");
}
