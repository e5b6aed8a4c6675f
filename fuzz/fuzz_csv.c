/*
 * fuzz_csv.c - libFuzzer target for the CSV reader.
 *
 * The whole input is one CSV file, read through bp_read_csv_mem with each
 * of a fixed set of options (default target, target by index, several
 * targets, forced classification / regression, no target, an optional
 * named target, a fixed class list, and the dialects: ';' and tab and
 * space delimiters, skipped lines, no header row, a small max_bytes), and
 * through bp_csv_header with the dialects (input starting with 1f 8b is
 * gzip, inflated by the reader). Properties checked beyond "no crash,
 * no leak, no undefined behaviour":
 *   - on failure the output is zeroed, feature_names is NULL and the
 *     message is set (with the returned code);
 *   - on success the shapes are consistent, every feature is finite, class
 *     indices are integral and in range, names are non-NULL strings.
 * Seed corpus: fuzz/corpus/csv/ (replayed by ctest in every build).
 */
#include "backprop.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c) do { if (!(c)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_one(const uint8_t *data, size_t size, const bp_csv_options *opt)
{
    bp_data d;
    bp_error err;
    memset(&d, 0x5a, sizeof d);
    memset(&err, 0, sizeof err);
    char **names = (char **)&d; /* must be overwritten */
    bp_status s = bp_read_csv_mem(&d, data, size, "fuzz.csv", opt, &names, &err);
    if (s != BP_OK) {
        bp_data zero;
        memset(&zero, 0, sizeof zero);
        REQUIRE(memcmp(&d, &zero, sizeof d) == 0);
        REQUIRE(names == NULL);
        REQUIRE(err.code == s && err.message[0] != '\0');
        REQUIRE(memchr(err.message, '\0', sizeof err.message) != NULL);
        return;
    }
    REQUIRE(d.n >= 1 && d.n_inputs >= 1 && d.owned == 1 && d.x != NULL);
    REQUIRE(names != NULL);
    for (int i = 0; i < d.n_inputs; i++) REQUIRE(names[i] != NULL);
    for (size_t i = 0; i < (size_t)d.n * (size_t)d.n_inputs; i++) REQUIRE(isfinite(d.x[i]));
    if (d.n_classes > 0) {
        REQUIRE(d.n_targets == 1 && d.y != NULL);
        for (int i = 0; i < d.n; i++)
            REQUIRE(d.y[i] >= 0 && d.y[i] < d.n_classes && d.y[i] == floor(d.y[i]));
        if (d.class_names)
            for (int k = 0; k < d.n_classes; k++) REQUIRE(d.class_names[k] != NULL);
    } else if (d.n_targets > 0) {
        REQUIRE(d.y != NULL && d.class_names == NULL);
        for (size_t i = 0; i < (size_t)d.n * (size_t)d.n_targets; i++) REQUIRE(isfinite(d.y[i]));
    } else {
        REQUIRE(d.y == NULL && d.n_classes == 0);
    }
    if (opt && opt->no_target) REQUIRE(d.n_targets == 0);
    bp_strings_free(names, d.n_inputs);
    bp_data_free(&d);
    REQUIRE(d.x == NULL && d.n == 0);
}

/* bp_csv_header: n >= 1 non-NULL names on success, nothing on failure;
 * with no_header the names are "0".."n-1". */
static void check_header(const uint8_t *data, size_t size, const bp_csv_options *opt)
{
    bp_error err;
    memset(&err, 0, sizeof err);
    char **names = (char **)&err;
    int n = -7;
    bp_status s = bp_csv_header(data, size, "fuzz.csv", opt, &names, &n, &err);
    if (s != BP_OK) {
        REQUIRE(names == NULL && n == 0);
        REQUIRE(err.code == s && err.message[0] != '\0');
        return;
    }
    REQUIRE(n >= 1 && names != NULL);
    for (int i = 0; i < n; i++) REQUIRE(names[i] != NULL);
    for (int i = 0; opt && opt->no_header && i < n; i++) {
        char b[16];
        snprintf(b, sizeof b, "%d", i);
        REQUIRE(strcmp(names[i], b) == 0);
    }
    bp_strings_free(names, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const classes[] = {"a", "b", "1", "cat"};
    bp_csv_options dia[6];
    memset(dia, 0, sizeof dia);
    dia[0].delimiter = ';';
    dia[1].delimiter = '\t';
    dia[1].no_header = 1;
    dia[2].delimiter = ' ';
    dia[2].skip_rows = 1;
    dia[3].skip_rows = 2;
    dia[3].no_header = 1;
    dia[4].no_header = 1;
    dia[4].target = "0";
    dia[5].max_bytes = 64;
    for (size_t i = 0; i < sizeof dia / sizeof dia[0]; i++) {
        check_one(data, size, &dia[i]);
        check_header(data, size, &dia[i]);
    }
    check_header(data, size, NULL);
    bp_csv_options o[9];
    memset(o, 0, sizeof o);
    o[1].target = "0";
    o[2].target = "1,y, 2";
    o[3].task = BP_TASK_CLASSIFY;
    o[4].task = BP_TASK_REGRESS;
    o[5].no_target = 1;
    o[6].target = "label";
    o[6].target_optional = 1;
    o[7].class_names = classes;
    o[7].n_class_names = 4;
    o[8].target = "x,y";
    check_one(data, size, NULL);
    for (size_t i = 0; i < sizeof o / sizeof o[0]; i++) check_one(data, size, &o[i]);
    return 0;
}
