/*
 * fuzz_idx.c - libFuzzer target for the IDX reader (plain and gzip).
 *
 * Input layout: the first byte picks the mode.
 *   even: the rest is an images file, read without labels;
 *   odd:  two big-endian bytes K follow, then K bytes of images file and
 *         the rest is a labels file (when K exceeds what is left, all of it
 *         is images and there is no labels file).
 * Properties checked beyond "no crash, no leak, no undefined behaviour":
 *   - on failure the output is zeroed and the message is set;
 *   - on success n, n_inputs >= 1, every pixel is in [0, 1], labels are
 *     integral and below n_classes (>= 2);
 *   - bp_is_idx_data answers 0 or 1, and 1 for every images buffer that
 *     was read successfully.
 * Seed corpus: fuzz/corpus/idx/ (replayed by ctest in every build).
 */
#include "backprop.h"

#include <string.h>

#define REQUIRE(c) do { if (!(c)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const uint8_t *img = data + 1, *lbl = NULL;
    size_t ni = size - 1, nl = 0;
    if (data[0] & 1) {
        if (size < 3) return 0;
        size_t k = (size_t)data[1] << 8 | data[2];
        img = data + 3;
        ni = size - 3;
        if (k <= ni) {
            lbl = img + k;
            nl = ni - k;
            ni = k;
        }
    }
    bp_data d;
    bp_error err;
    memset(&d, 0x5a, sizeof d);
    memset(&err, 0, sizeof err);
    bp_status s = bp_read_idx_mem(&d, img, ni, lbl, nl, &err);
    int sniff = bp_is_idx_data(img, ni);
    REQUIRE(sniff == 0 || sniff == 1);
    if (s != BP_OK) {
        bp_data zero;
        memset(&zero, 0, sizeof zero);
        REQUIRE(memcmp(&d, &zero, sizeof d) == 0);
        REQUIRE(err.code == s && err.message[0] != '\0');
        return 0;
    }
    REQUIRE(d.n >= 1 && d.n_inputs >= 1 && d.x != NULL && d.owned == 1);
    REQUIRE(sniff == 1);
    for (size_t i = 0; i < (size_t)d.n * (size_t)d.n_inputs; i++)
        REQUIRE(d.x[i] >= 0 && d.x[i] <= 1);
    if (lbl) {
        REQUIRE(d.n_targets == 1 && d.n_classes >= 2 && d.y != NULL);
        for (int i = 0; i < d.n; i++)
            REQUIRE(d.y[i] >= 0 && d.y[i] < d.n_classes && d.y[i] == (int)d.y[i]);
    } else {
        REQUIRE(d.n_targets == 0 && d.n_classes == 0 && d.y == NULL);
    }
    bp_data_free(&d);
    return 0;
}
