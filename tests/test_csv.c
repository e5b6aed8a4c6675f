/* test_csv.c - the CSV reader: RFC 4180 details, targets and labels, every
 * error with its position, and the number parser against strtof/strtod. */
#include "backprop.h"
#include "check.h"
#include "data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BP_SOURCE_DIR
#define BP_SOURCE_DIR "."
#endif

static bp_error err;

/* Read a CSV held in a string. */
static bp_status rd(bp_data *d, const char *text, const bp_csv_options *opt)
{
    memset(&err, 0, sizeof err);
    return bp_read_csv_mem(d, text, strlen(text), "t.csv", opt, NULL, &err);
}

static int zeroed(const bp_data *d)
{
    return d->n == 0 && d->n_inputs == 0 && d->n_targets == 0 && d->n_classes == 0 && !d->x &&
           !d->y && !d->class_names && d->owned == 0;
}

/* Expect a failure with `code` whose message contains `want` (and the
 * output zeroed). */
static void expect_fail(const char *text, const bp_csv_options *opt, bp_status code,
                        const char *want, int line)
{
    bp_data d;
    memset(&d, 0x5a, sizeof d); /* garbage the reader must clear */
    bp_status s = rd(&d, text, opt);
    check_record(s == code, __FILE__, line, "status %s, want %s (%s)", bp_status_name(s),
                 bp_status_name(code), err.message);
    check_record(strstr(err.message, want) != NULL, __FILE__, line,
                 "message \"%s\" lacks \"%s\"", err.message, want);
    check_record(zeroed(&d), __FILE__, line, "output not zeroed after failure");
    bp_data_free(&d);
}
#define EXPECT_FAIL(text, opt, code, want) expect_fail(text, opt, code, want, __LINE__)

static void test_basic(void)
{
    bp_data d;
    char **names = NULL;
    const char *text = "a,b,y\n1,2,0\n3,-4.5,1\n";
    bp_status s = bp_read_csv_mem(&d, text, strlen(text), "t.csv", NULL, &names, &err);
    CHECK(s == BP_OK, "basic: %s", err.message);
    CHECK(d.n == 2 && d.n_inputs == 2 && d.n_targets == 1 && d.n_classes == 2,
          "basic shape n=%d in=%d t=%d k=%d", d.n, d.n_inputs, d.n_targets, d.n_classes);
    if (s == BP_OK && d.n == 2 && d.n_inputs == 2) {
        CHECK(d.x[0] == 1 && d.x[1] == 2 && d.x[2] == 3 && d.x[3] == -4.5f, "basic x");
        CHECK(d.y[0] == 0 && d.y[1] == 1, "basic y");
        CHECK(d.class_names == NULL, "integer labels have no class names");
        CHECK(d.owned == 1, "reader data is owned");
        CHECK(names && strcmp(names[0], "a") == 0 && strcmp(names[1], "b") == 0, "feature names");
    }
    bp_strings_free(names, d.n_inputs);
    bp_data_free(&d);
    CHECK(zeroed(&d), "bp_data_free zeroes");
    bp_data_free(NULL);
    bp_strings_free(NULL, 3);
}

static void test_quoting(void)
{
    bp_data d;
    /* quoted header, quoted numbers, quoted comma, quoted newline, "" escape */
    const char *text = "\"f 1\",\"f,2\",label\n"
                       "\"1\",\" 2.5 \",\"x,y\"\n"
                       "3,4,\"two\nlines\"\n"
                       "5, \"6\" ,\"say \"\"hi\"\"\"\n";
    char **names = NULL;
    bp_status s = bp_read_csv_mem(&d, text, strlen(text), "q.csv", NULL, &names, &err);
    CHECK(s == BP_OK, "quoting: %s", err.message);
    CHECK(d.n == 3 && d.n_inputs == 2 && d.n_classes == 3, "quoting shape n=%d k=%d", d.n,
          d.n_classes);
    if (s == BP_OK && d.n == 3 && d.n_classes == 3) {
        CHECK(names && strcmp(names[1], "f,2") == 0, "quoted comma in header: %s",
              names ? names[1] : "(null)");
        CHECK(d.x[0] == 1 && d.x[1] == 2.5f && d.x[2] == 3 && d.x[4] == 5 && d.x[5] == 6,
              "quoted numbers");
        /* sorted byte order: "say \"hi\"" < "two\nlines" < "x,y" */
        CHECK(strcmp(d.class_names[0], "say \"hi\"") == 0, "\"\" escape: [%s]", d.class_names[0]);
        CHECK(strcmp(d.class_names[1], "two\nlines") == 0, "quoted newline: [%s]",
              d.class_names[1]);
        CHECK(strcmp(d.class_names[2], "x,y") == 0, "quoted comma: [%s]", d.class_names[2]);
        CHECK(d.y[0] == 2 && d.y[1] == 1 && d.y[2] == 0, "quoted labels map");
    }
    bp_strings_free(names, d.n_inputs);
    bp_data_free(&d);

    /* line numbers count the line break inside a quoted field */
    EXPECT_FAIL("a,y\n1,\"multi\nline\"\n2,\"ok\"\nzz,\"b\"\n", NULL, BP_EFORMAT, "t.csv:5:1:");
    EXPECT_FAIL("a,y\n1,\"never closed\n2,3\n", NULL, BP_EFORMAT, "t.csv:2:2: unterminated");
    EXPECT_FAIL("a,y\n1,\"ab\"c\n", NULL, BP_EFORMAT, "t.csv:2:2: unexpected character");
}

static void test_line_endings(void)
{
    bp_data d;
    CHECK(rd(&d, "a,y\r\n1,0\r\n2,1\r\n", NULL) == BP_OK && d.n == 2 && d.x[1] == 2 && d.y[1] == 1,
          "CRLF: %s", err.message);
    bp_data_free(&d);
    CHECK(rd(&d, "a,y\n1,0\n2,1", NULL) == BP_OK && d.n == 2 && d.x[1] == 2 && d.y[1] == 1,
          "no final newline: %s", err.message);
    bp_data_free(&d);
    CHECK(rd(&d, "a,y\r\n1,0\r\n2,1", NULL) == BP_OK && d.n == 2 && d.y[1] == 1,
          "CRLF, no final newline: %s", err.message);
    bp_data_free(&d);
    CHECK(rd(&d, "\n\na,y\n\n1,0\n  \n\r\n\n2,1\n\n\n", NULL) == BP_OK && d.n == 2 &&
              d.x[0] == 1 && d.x[1] == 2,
          "empty lines skipped: %s", err.message);
    bp_data_free(&d);
    CHECK(rd(&d, "\xEF\xBB\xBF" "a,y\n1,0\n", NULL) == BP_OK && d.n == 1 && d.n_inputs == 1,
          "UTF-8 BOM: %s", err.message);
    bp_data_free(&d);
    /* error lines after empty lines and CRLF are physical lines */
    EXPECT_FAIL("a,y\r\n\r\n1,0\r\nx,1\r\n", NULL, BP_EFORMAT, "t.csv:4:1:");
}

static void test_errors(void)
{
    EXPECT_FAIL("a,b,y\n1,2,0\n3,,1\n", NULL, BP_EFORMAT, "t.csv:3:2: missing (empty) value");
    EXPECT_FAIL("a,b,y\n1,2,0\n3,\"\",1\n", NULL, BP_EFORMAT, "t.csv:3:2: missing");
    EXPECT_FAIL("a,b,y\n1,2,\n", NULL, BP_EFORMAT, "t.csv:2:3: missing (empty) target");
    EXPECT_FAIL("a,b,y\n1,2,0\n1,2\n", NULL, BP_EFORMAT, "t.csv:3:3: row has 2 fields, expected 3");
    EXPECT_FAIL("a,b,y\n1,2,0,7,8\n", NULL, BP_EFORMAT, "t.csv:2:4: row has 5 fields, expected 3");
    EXPECT_FAIL("a,b,y\n1,abc,0\n", NULL, BP_EFORMAT, "t.csv:2:2: non-numeric value \"abc\"");
    EXPECT_FAIL("a,b,y\n1,abc,0\n", NULL, BP_EFORMAT, "column 'b'");
    EXPECT_FAIL("a,b,y\n1,2x,0\n", NULL, BP_EFORMAT, "t.csv:2:2: non-numeric value \"2x\"");
    EXPECT_FAIL("a,b,y\n1,1e,0\n", NULL, BP_EFORMAT, "t.csv:2:2: non-numeric");
    EXPECT_FAIL("a,b,y\n1,-,0\n", NULL, BP_EFORMAT, "t.csv:2:2: non-numeric");
    EXPECT_FAIL("a,b,y\n1,1 2,0\n", NULL, BP_EFORMAT, "t.csv:2:2: non-numeric");
    EXPECT_FAIL("a,b,y\nNaN,1,0\n", NULL, BP_EFORMAT, "t.csv:2:1: non-finite value \"NaN\"");
    EXPECT_FAIL("a,b,y\n1,-inf,0\n", NULL, BP_EFORMAT, "t.csv:2:2: non-finite value \"-inf\"");
    EXPECT_FAIL("a,b,y\n1,1e400,0\n", NULL, BP_EFORMAT, "out of range");
#ifndef BP_DOUBLE
    EXPECT_FAIL("a,b,y\n1,1e39,0\n", NULL, BP_EFORMAT, "out of range"); /* beyond float */
#endif
    EXPECT_FAIL("a,y\n", NULL, BP_EFORMAT, "t.csv:2:1: no data rows");
    EXPECT_FAIL("a,y", NULL, BP_EFORMAT, "no data rows");
    EXPECT_FAIL("a,y\n\n\n", NULL, BP_EFORMAT, "no data rows");
    EXPECT_FAIL("", NULL, BP_EFORMAT, "t.csv:1:1: empty file");
    EXPECT_FAIL("\n \n", NULL, BP_EFORMAT, "empty file");
    EXPECT_FAIL("y\n1\n2\n", NULL, BP_EFORMAT, "no feature columns");

    bp_csv_options o = {0};
    o.target = "nope";
    EXPECT_FAIL("a,y\n1,2\n", &o, BP_EINVAL, "no column 'nope'");
    o.target = "5";
    EXPECT_FAIL("a,y\n1,2\n", &o, BP_EINVAL, "no column '5'");
    o.target = "a,a";
    EXPECT_FAIL("a,b,y\n1,2,3\n", &o, BP_EINVAL, "twice");
    o.target = "a,y";
    o.task = BP_TASK_CLASSIFY;
    EXPECT_FAIL("a,b,y\n1,2,3\n", &o, BP_EINVAL, "one target column");

    /* regression needs numeric targets */
    bp_csv_options r = {0};
    r.task = BP_TASK_REGRESS;
    EXPECT_FAIL("a,y\n1,2\n2,cat\n", &r, BP_EFORMAT, "t.csv:3:2: non-numeric (regression");
    EXPECT_FAIL("a,y\n1,2.5\n2,nan\n", NULL, BP_EFORMAT, "t.csv:3:2: non-finite");

    /* nonexistent file */
    bp_data d;
    memset(&d, 0x5a, sizeof d);
    char **names = (char **)&d;
    bp_status s = bp_read_csv(&d, "/nonexistent/dir/file.csv", NULL, &names, &err);
    CHECK(s == BP_EIO, "missing file -> BP_EIO, got %s", bp_status_name(s));
    CHECK(strstr(err.message, "/nonexistent/dir/file.csv") != NULL, "EIO names the file: %s",
          err.message);
    CHECK(zeroed(&d) && names == NULL, "missing file leaves output zeroed");
    CHECK(bp_read_csv(NULL, "x.csv", NULL, NULL, &err) == BP_EINVAL, "NULL out");
    CHECK(bp_read_csv(&d, NULL, NULL, NULL, &err) == BP_EINVAL, "NULL path");
}

static void test_shapes(void)
{
    bp_data d;
    CHECK(rd(&d, "a,y\n7,1\n", NULL) == BP_OK && d.n == 1 && d.n_inputs == 1 && d.x[0] == 7 &&
              d.y[0] == 1 && d.n_classes == 2,
          "one row: %s", err.message);
    bp_data_free(&d);

    bp_csv_options o = {0};
    o.no_target = 1;
    CHECK(rd(&d, "v\n1.5\n2.5\n", &o) == BP_OK && d.n == 2 && d.n_inputs == 1 &&
              d.n_targets == 0 && d.y == NULL && d.x[1] == 2.5f,
          "one column, no_target: %s", err.message);
    bp_data_free(&d);

    /* target by name, by index, several */
    o = (bp_csv_options){0};
    o.target = "t";
    CHECK(rd(&d, "a,t,b\n1,5.5,2\n3,6.5,4\n", &o) == BP_OK && d.n_inputs == 2 &&
              d.n_targets == 1 && d.n_classes == 0 && d.y[1] == 6.5f && d.x[0] == 1 &&
              d.x[1] == 2 && d.x[3] == 4,
          "target by name (regression): %s", err.message);
    bp_data_free(&d);
    o.target = "1";
    CHECK(rd(&d, "a,t,b\n1,5.5,2\n3,6.5,4\n", &o) == BP_OK && d.n_inputs == 2 &&
              d.y[0] == 5.5f && d.x[1] == 2,
          "target by index: %s", err.message);
    bp_data_free(&d);
    o.target = "b, 0";
    CHECK(rd(&d, "a,t,b\n1,5,2\n3,6,4\n", &o) == BP_OK && d.n_inputs == 1 && d.n_targets == 2 &&
              d.n_classes == 0 && d.y[0] == 2 && d.y[1] == 1 && d.y[2] == 4 && d.y[3] == 3 &&
              d.x[0] == 5 && d.x[1] == 6,
          "multi-target (order as given, regression even for integers): %s", err.message);
    bp_data_free(&d);
    o.target = "x,y";
    CHECK(rd(&d, "a,\"x,y\"\n1,2\n", &o) == BP_OK && d.n_inputs == 1 && d.n_targets == 1 &&
              d.y[0] == 2 && d.n_classes == 3,
          "a whole target string naming a column is not split: %s", err.message);
    bp_data_free(&d);

    /* target_optional */
    o = (bp_csv_options){0};
    o.target = "label";
    o.target_optional = 1;
    CHECK(rd(&d, "a,b\n1,2\n", &o) == BP_OK && d.n_inputs == 2 && d.n_targets == 0 && !d.y,
          "target_optional, absent: %s", err.message);
    bp_data_free(&d);
    CHECK(rd(&d, "a,label,b\n1,2,3\n", &o) == BP_OK && d.n_inputs == 2 && d.n_targets == 1 &&
              d.y[0] == 2 && d.n_classes == 3,
          "target_optional, present: %s", err.message);
    bp_data_free(&d);
}

static void test_labels(void)
{
    bp_data d;
    CHECK(rd(&d, "a,y\n1,dog\n2,cat\n3,bird\n4,cat\n", NULL) == BP_OK && d.n_classes == 3 &&
              d.class_names && strcmp(d.class_names[0], "bird") == 0 &&
              strcmp(d.class_names[1], "cat") == 0 && strcmp(d.class_names[2], "dog") == 0 &&
              d.y[0] == 2 && d.y[1] == 1 && d.y[2] == 0 && d.y[3] == 1,
          "string labels sorted: %s", err.message);
    bp_data_free(&d);
    CHECK(rd(&d, "a,y\n1,2\n2,0\n3,5\n", NULL) == BP_OK && d.n_classes == 6 && !d.class_names &&
              d.y[0] == 2 && d.y[1] == 0 && d.y[2] == 5,
          "integer labels keep their value: %s", err.message);
    bp_data_free(&d);
    CHECK(rd(&d, "a,y\n1,0\n2,0\n", NULL) == BP_OK && d.n_classes == 2,
          "a single integer class still gives 2 classes: %s", err.message);
    bp_data_free(&d);
    CHECK(rd(&d, "a,y\n1,10\n2,-1\n3,2\n4,10\n", NULL) == BP_OK && d.n_classes == 3 &&
              d.class_names && strcmp(d.class_names[0], "-1") == 0 &&
              strcmp(d.class_names[1], "2") == 0 && strcmp(d.class_names[2], "10") == 0 &&
              d.y[0] == 2 && d.y[1] == 0 && d.y[2] == 1 && d.y[3] == 2,
          "negative integer labels: sorted by value with names: %s", err.message);
    bp_data_free(&d);
    CHECK(rd(&d, "a,y\n1,0.5\n2,1\n", NULL) == BP_OK && d.n_classes == 0 && d.y[0] == 0.5f,
          "a non-integer number means regression: %s", err.message);
    bp_data_free(&d);
    CHECK(rd(&d, "a,y\n1,1.0\n2,2.0\n", NULL) == BP_OK && d.n_classes == 0,
          "\"1.0\" is not an integer literal (regression): %s", err.message);
    bp_data_free(&d);
    bp_csv_options c = {0};
    c.task = BP_TASK_CLASSIFY;
    CHECK(rd(&d, "a,y\n1,1.0\n2,2.0\n3,1\n", &c) == BP_OK && d.n_classes == 3 && !d.class_names &&
              d.y[0] == 1 && d.y[1] == 2 && d.y[2] == 1,
          "BP_TASK_CLASSIFY with integral decimals keeps values: %s", err.message);
    bp_data_free(&d);
    c.task = BP_TASK_REGRESS;
    CHECK(rd(&d, "a,y\n1,1\n2,3\n", &c) == BP_OK && d.n_classes == 0 && d.y[1] == 3,
          "BP_TASK_REGRESS with integers: %s", err.message);
    bp_data_free(&d);
    CHECK(rd(&d, "a,y\n1,7\n2,x\n", NULL) == BP_OK && d.n_classes == 2 &&
              strcmp(d.class_names[0], "7") == 0 && strcmp(d.class_names[1], "x") == 0,
          "mixed labels: numbers first: %s", err.message);
    bp_data_free(&d);

    /* fixed class list */
    const char *known[] = {"cat", "dog", "bird"};
    bp_csv_options f = {0};
    f.class_names = known;
    f.n_class_names = 3;
    CHECK(rd(&d, "a,y\n1,bird\n2,cat\n3,\"dog\"\n", &f) == BP_OK && d.n_classes == 3 &&
              d.y[0] == 2 && d.y[1] == 0 && d.y[2] == 1 && strcmp(d.class_names[2], "bird") == 0,
          "fixed class list keeps its order: %s", err.message);
    bp_data_free(&d);
    EXPECT_FAIL("a,y\n1,bird\n2,cow\n", &f, BP_EFORMAT, "t.csv:3:2: unknown class label \"cow\"");
    const char *nums[] = {"0", "1", "2"};
    f.class_names = nums;
    CHECK(rd(&d, "a,y\n1,2\n2,0\n3,1.0\n", &f) == BP_OK && d.y[0] == 2 && d.y[1] == 0 &&
              d.y[2] == 1,
          "fixed numeric class names match by value: %s", err.message);
    bp_data_free(&d);
    EXPECT_FAIL("a,y\n1,2\n2,3\n", &f, BP_EFORMAT, "t.csv:3:2: unknown class label \"3\"");
    EXPECT_FAIL("a,y\n1,2\n2,0.5\n", &f, BP_EFORMAT, "t.csv:3:2: unknown class label \"0.5\"");
}

static void test_numbers(void)
{
    bp_data d;
    CHECK(rd(&d, "a,b,c,d,e,f,g,y\n+1, -2.5e3 ,1E-2,.5,5.,-0,0.000001,0\n", NULL) == BP_OK &&
              d.x[0] == 1 && d.x[1] == -2500 && d.x[2] == (bp_real)0.01 && d.x[3] == 0.5f && d.x[4] == 5 &&
              d.x[5] == 0 && d.x[6] == (bp_real)1e-6,
          "number forms: %s", err.message);
    bp_data_free(&d);

    /* the scanner against the C library on random decimal strings */
    unsigned long long st = 88172645463325252ULL;
    int bad = 0, tried = 0;
    char buf[96];
    for (int it = 0; it < 200000; it++) {
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        int form = (int)(st % 6);
        unsigned long long m = st >> 20;
        int e = (int)((st >> 8) % 90) - 45;
        switch (form) {
        case 0: snprintf(buf, sizeof buf, "%llu", m % 1000); break;
        case 1: snprintf(buf, sizeof buf, "%llu.%llu", m % 100000, (st >> 3) % 1000000); break;
        case 2: snprintf(buf, sizeof buf, "%llue%d", m % 100000000, e); break;
        case 3: snprintf(buf, sizeof buf, "-%.*g", 1 + (int)(st % 17), (double)m * pow(10, e)); break;
        case 4: snprintf(buf, sizeof buf, "%llu%llu.%llue%d", m, st % 1000, (st >> 5) % 97, e / 3); break;
        default: snprintf(buf, sizeof buf, "%.9g", (double)(float)((double)m / 7.0e12)); break;
        }
        double v;
        const char *stop;
        size_t len = strlen(buf);
        bp_num_status ns = bp_scan_number(buf, buf + len, &v, NULL, &stop);
#ifdef BP_DOUBLE
        double want = strtod(buf, NULL);
#else
        double want = strtof(buf, NULL);
#endif
        if (isinf(want)) continue;
        tried++;
        if (ns != BP_NUM_OK || stop != buf + len || v != want) {
            if (bad++ < 5) fprintf(stderr, "scan %s: %.17g vs %.17g (status %d)\n", buf, v, want, ns);
        }
    }
    CHECK(bad == 0 && tried > 100000, "number scanner exact on %d strings, %d differ", tried, bad);
    /* long numbers and float midpoints take the slow path */
    const char *hard[] = {"16777217", "0.1000000000000000000000000000000000000001",
                          "123456789012345678901234567890", "1.00000005960464477539062500001",
                          "3.4028235677973366e38", "1e-45", "7.0064923216240862e-46",
                          "000000000000000000000000000000001.5", "-0.0000000000000000000000000125"};
    for (size_t i = 0; i < sizeof hard / sizeof hard[0]; i++) {
        double v = -1;
        bp_num_status ns = bp_scan_number(hard[i], hard[i] + strlen(hard[i]), &v, NULL, NULL);
#ifdef BP_DOUBLE
        double want = strtod(hard[i], NULL);
#else
        double want = strtof(hard[i], NULL);
#endif
        CHECK(ns == BP_NUM_OK && v == want, "hard number %s: %.17g vs %.17g", hard[i], v, want);
    }
    double v;
    int isint = -1;
    const char *t = " -42 ";
    CHECK(bp_scan_number(t, t + strlen(t), &v, &isint, NULL) == BP_NUM_OK && v == -42 && isint == 1,
          "integer literal flagged");
    t = "4e1";
    CHECK(bp_scan_number(t, t + 3, &v, &isint, NULL) == BP_NUM_OK && v == 40 && isint == 0,
          "exponent is not an integer literal");
    t = "infinity";
    CHECK(bp_scan_number(t, t + 8, &v, &isint, NULL) == BP_NUM_NONFINITE, "infinity detected");
}

/* Files: a checked-in file with CRLF and quotes, and the feature names. */
static void test_files(void)
{
    bp_data d;
    char **names = NULL;
    const char *path = BP_SOURCE_DIR "/tests/data/small.csv";
    bp_status s = bp_read_csv(&d, path, NULL, &names, &err);
    CHECK(s == BP_OK, "%s: %s", path, err.message);
    CHECK(d.n == 6 && d.n_inputs == 3 && d.n_classes == 3, "small.csv shape n=%d in=%d k=%d", d.n,
          d.n_inputs, d.n_classes);
    if (s == BP_OK && d.n == 6 && d.n_classes == 3) {
        CHECK(strcmp(d.class_names[0], "setosa") == 0 && strcmp(d.class_names[2], "virginica, tall") == 0,
              "small.csv classes");
        CHECK(strcmp(names[2], "petal length") == 0, "small.csv feature name: %s", names[2]);
        CHECK(d.x[3 * 5 + 2] == 5.5f && d.y[5] == 2, "small.csv last row");
    }
    bp_strings_free(names, d.n_inputs);
    bp_data_free(&d);

    /* a file written here, read through the path variant */
    const char *tmp = "test_csv_tmp.csv";
    FILE *f = fopen(tmp, "wb");
    CHECK(f != NULL, "cannot write %s", tmp);
    if (!f) return;
    fputs("x1,x2,target\n", f);
    for (int i = 0; i < 5000; i++) fprintf(f, "%d,%d.25,%d\n", i, i % 7, i % 3);
    fclose(f);
    s = bp_read_csv(&d, tmp, NULL, NULL, &err);
    CHECK(s == BP_OK && d.n == 5000 && d.n_classes == 3 && d.x[2 * 4999] == 4999 &&
              d.x[2 * 4999 + 1] == 1.25f && d.y[4999] == 1,
          "5000-row file: %s", err.message);
    bp_data_free(&d);

    /* a file large enough for the parallel reader: blank lines (rows
     * closed up across chunks), CRLF, a string target; then the same file
     * with a bad value near the end (exact line number from a late chunk) */
    static const char *const cls4[] = {"c0", "c1", "c2", "c3"};
    bp_csv_options fixed = {0};
    fixed.class_names = cls4;
    fixed.n_class_names = 4;
    for (int pass = 0; pass < 3; pass++) {
        f = fopen(tmp, "wb");
        CHECK(f != NULL, "cannot write %s", tmp);
        if (!f) return;
        fputs("a,b,c,d,e,f,g,h,cls\r\n", f);
        const int rows = 200000;
        long bad_line = 0, line = 1;
        int written = 0;
        for (int i = 0; i < rows; i++) {
            if (i % 1000 == 7) {
                fputs("\r\n", f);
                line++;
            }
            line++;
            if (pass == 1 && i == rows - 50) {
                fprintf(f, "%d,1,2,3,4,5,6,oops,c%d\r\n", i, i % 4);
                bad_line = line;
            } else if (pass == 2 && i == rows - 70) {
                fprintf(f, "%d,1,2,3,4,5,6,7,zzz\r\n", i);
                bad_line = line;
            } else {
                fprintf(f, "%d,%d.5,-%d,%d,%d,%d,%d,%d,c%d\r\n", i, i % 100, i % 7, i % 256, 0,
                        i % 3, (i * 7) % 1000, i % 10, i % 4);
            }
            written++;
        }
        long size = ftell(f);
        CHECK(size > (4L << 20), "large file is %ld bytes, want > 4 MiB (parallel reader)", size);
        fclose(f);
        s = bp_read_csv(&d, tmp, pass == 2 ? &fixed : NULL, NULL, &err);
        if (pass == 0) {
            int ok = s == BP_OK && d.n == written && d.n_inputs == 8 && d.n_classes == 4;
            CHECK(ok, "large file: %s (n=%d)", err.message, d.n);
            for (int i = 0; ok && i < d.n; i++) {
                const bp_real *r = d.x + (size_t)i * 8;
                if (r[0] != i || r[1] != i % 100 + 0.5f || r[2] != -(i % 7) || r[7] != i % 10 ||
                    d.y[i] != i % 4) {
                    CHECK(0, "large file row %d differs", i);
                    break;
                }
            }
        } else {
            char want[128];
            if (pass == 1)
                snprintf(want, sizeof want, "%s:%ld:8: non-numeric value \"oops\"", tmp, bad_line);
            else
                snprintf(want, sizeof want, "%s:%ld:9: unknown class label \"zzz\"", tmp, bad_line);
            CHECK(s == BP_EFORMAT && strstr(err.message, want), "large file error: %s (want %s)",
                  err.message, want);
        }
        bp_data_free(&d);
    }
    remove(tmp);
}

/* Features by name: reordered columns land in the given order; a missing,
 * an unknown or a repeated column is BP_ESHAPE with its name. */
static void test_feature_names(void)
{
    const char *names[] = {"a", "b"};
    bp_csv_options o = {0};
    o.target = "y";
    o.feature_names = names;
    o.n_feature_names = 2;
    bp_data d;
    const char *csv = "b,y,a\n2,0,1\n4,1,3\n";
    CHECK(bp_read_csv_mem(&d, csv, strlen(csv), "f.csv", &o, NULL, &err) == BP_OK, "%s", err.message);
    CHECK(d.n_inputs == 2 && d.x[0] == 1 && d.x[1] == 2 && d.x[2] == 3 && d.x[3] == 4,
          "features reordered to a,b: %g %g %g %g", d.x[0], d.x[1], d.x[2], d.x[3]);
    bp_data_free(&d);
    struct {
        const char *csv, *msg;
    } bad[] = {
        {"a,y\n1,0\n", "missing feature column \"b\""},
        {"a,b,c,y\n1,2,3,0\n", "f.csv:1:3: column \"c\" is neither"},
        {"a,b,a,y\n1,2,3,0\n", "f.csv:1:3: feature column \"a\" appears twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bp_status s = bp_read_csv_mem(&d, bad[i].csv, strlen(bad[i].csv), "f.csv", &o, NULL, &err);
        CHECK(s == BP_ESHAPE && strstr(err.message, bad[i].msg), "case %zu: %s, '%s'", i, bp_status_name(s),
              err.message);
    }
}

int main(void)
{
    test_feature_names();
    test_basic();
    test_quoting();
    test_line_endings();
    test_errors();
    test_shapes();
    test_labels();
    test_numbers();
    test_files();
    return check_done("test_csv");
}
