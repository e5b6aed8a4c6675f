/* test_idx.c - the IDX reader: tiny files written here (plain and gzip),
 * every malformation, and the real Fashion-MNIST test set when installed. */
#include "backprop.h"
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static bp_error err;

static int zeroed(const bp_data *d)
{
    return d->n == 0 && d->n_inputs == 0 && d->n_targets == 0 && d->n_classes == 0 && !d->x &&
           !d->y && !d->class_names && d->owned == 0;
}

/* An IDX header + data in buf; returns the length. */
static size_t make_idx(uint8_t *buf, int type, int ndims, const uint32_t *dims,
                       const uint8_t *data, size_t n)
{
    size_t k = 0;
    buf[k++] = 0;
    buf[k++] = 0;
    buf[k++] = (uint8_t)type;
    buf[k++] = (uint8_t)ndims;
    for (int i = 0; i < ndims; i++) {
        buf[k++] = (uint8_t)(dims[i] >> 24);
        buf[k++] = (uint8_t)(dims[i] >> 16);
        buf[k++] = (uint8_t)(dims[i] >> 8);
        buf[k++] = (uint8_t)dims[i];
    }
    memcpy(buf + k, data, n);
    return k + n;
}

/* gzip-compress src into dst (capacity cap); returns the length or 0. */
static size_t gz(uint8_t *dst, size_t cap, const uint8_t *src, size_t n)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return 0;
    zs.next_in = (Bytef *)src;
    zs.avail_in = (uInt)n;
    zs.next_out = dst;
    zs.avail_out = (uInt)cap;
    int r = deflate(&zs, Z_FINISH);
    size_t len = cap - zs.avail_out;
    deflateEnd(&zs);
    return r == Z_STREAM_END ? len : 0;
}

static int write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) == 0 && w == n;
}

/* Expect bp_read_idx_mem to fail with `code` and `want` in the message. */
static void expect_fail(const uint8_t *img, size_t ni, const uint8_t *lbl, size_t nl,
                        bp_status code, const char *want, int line)
{
    bp_data d;
    memset(&d, 0x5a, sizeof d);
    memset(&err, 0, sizeof err);
    bp_status s = bp_read_idx_mem(&d, img, ni, lbl, nl, &err);
    check_record(s == code, __FILE__, line, "status %s, want %s (%s)", bp_status_name(s),
                 bp_status_name(code), err.message);
    check_record(strstr(err.message, want) != NULL, __FILE__, line, "message \"%s\" lacks \"%s\"",
                 err.message, want);
    check_record(zeroed(&d), __FILE__, line, "output not zeroed after failure");
    bp_data_free(&d);
}
#define EXPECT_FAIL(img, ni, lbl, nl, code, want) expect_fail(img, ni, lbl, nl, code, want, __LINE__)

static const uint8_t PIX[12] = {0, 255, 51, 102, 1, 2, 3, 4, 200, 100, 50, 25};
static const uint8_t LAB[3] = {1, 0, 3};

static void test_valid(void)
{
    uint8_t img[64], lbl[64], zimg[256], zlbl[256];
    const uint32_t idims[3] = {3, 2, 2}, ldims[1] = {3};
    size_t ni = make_idx(img, 0x08, 3, idims, PIX, 12);
    size_t nl = make_idx(lbl, 0x08, 1, ldims, LAB, 3);

    bp_data d;
    bp_status s = bp_read_idx_mem(&d, img, ni, lbl, nl, &err);
    CHECK(s == BP_OK, "valid idx: %s", err.message);
    CHECK(d.n == 3 && d.n_inputs == 4 && d.n_targets == 1 && d.n_classes == 4 && d.owned == 1,
          "valid idx shape n=%d in=%d t=%d k=%d", d.n, d.n_inputs, d.n_targets, d.n_classes);
    if (s == BP_OK && d.n == 3 && d.n_inputs == 4) {
        int ok = 1;
        for (int i = 0; i < 12; i++) ok &= fabs(d.x[i] - PIX[i] / 255.0) < 1e-7;
        CHECK(ok && d.x[0] == 0 && d.x[1] == 1, "pixels scaled to [0,1]");
        CHECK(d.y[0] == 1 && d.y[1] == 0 && d.y[2] == 3, "labels");
    }
    bp_data_free(&d);

    /* images only */
    s = bp_read_idx_mem(&d, img, ni, NULL, 0, &err);
    CHECK(s == BP_OK && d.n == 3 && d.n_targets == 0 && d.n_classes == 0 && d.y == NULL,
          "images without labels: %s", err.message);
    bp_data_free(&d);

    /* rank 2 images; all labels 0 still give 2 classes */
    const uint32_t d2[2] = {2, 3}, l2[1] = {2};
    const uint8_t zero[2] = {0, 0};
    size_t ni2 = make_idx(img, 0x08, 2, d2, PIX, 6);
    size_t nl2 = make_idx(lbl, 0x08, 1, l2, zero, 2);
    s = bp_read_idx_mem(&d, img, ni2, lbl, nl2, &err);
    CHECK(s == BP_OK && d.n == 2 && d.n_inputs == 3 && d.n_classes == 2,
          "rank-2 images, one class -> 2 classes: %s", err.message);
    bp_data_free(&d);

    /* gzip in memory */
    ni = make_idx(img, 0x08, 3, idims, PIX, 12);
    nl = make_idx(lbl, 0x08, 1, ldims, LAB, 3);
    size_t zi = gz(zimg, sizeof zimg, img, ni), zl = gz(zlbl, sizeof zlbl, lbl, nl);
    CHECK(zi > 0 && zl > 0, "gzip for the test");
    s = bp_read_idx_mem(&d, zimg, zi, zlbl, zl, &err);
    CHECK(s == BP_OK && d.n == 3 && d.n_inputs == 4 && d.y[2] == 3 && d.x[1] == 1,
          "gzip in memory: %s", err.message);
    bp_data_free(&d);

    /* files: plain images, gzip labels */
    CHECK(write_file("test_idx_img", img, ni) && write_file("test_idx_lbl.gz", zlbl, zl),
          "write test files");
    s = bp_read_idx(&d, "test_idx_img", "test_idx_lbl.gz", &err);
    CHECK(s == BP_OK && d.n == 3 && d.n_inputs == 4 && d.y[0] == 1 && d.x[8] == (bp_real)(200 / 255.0),
          "files (plain + gzip): %s", err.message);
    bp_data_free(&d);

    /* a gzip file written by zlib's gz* API, two members concatenated */
    gzFile g = gzopen("test_idx_img.gz", "wb");
    CHECK(g != NULL, "gzopen");
    if (g) {
        gzwrite(g, img, 7);
        gzclose(g);
        FILE *f = fopen("test_idx_img.gz", "ab");
        size_t zrest = gz(zimg, sizeof zimg, img + 7, ni - 7);
        CHECK(f && zrest && fwrite(zimg, 1, zrest, f) == zrest, "append member");
        if (f) fclose(f);
        s = bp_read_idx(&d, "test_idx_img.gz", NULL, &err);
        CHECK(s == BP_OK && d.n == 3 && d.n_inputs == 4 && d.x[11] == (bp_real)(25 / 255.0),
              "multi-member gzip file: %s", err.message);
        bp_data_free(&d);
    }

    /* label count != image count, naming both files and counts */
    const uint32_t l4[1] = {4};
    const uint8_t lab4[4] = {0, 1, 2, 3};
    nl = make_idx(lbl, 0x08, 1, l4, lab4, 4);
    CHECK(write_file("test_idx_lbl4", lbl, nl), "write");
    memset(&d, 0x5a, sizeof d);
    s = bp_read_idx(&d, "test_idx_img", "test_idx_lbl4", &err);
    CHECK(s == BP_EFORMAT && strstr(err.message, "test_idx_img has 3 images") &&
              strstr(err.message, "test_idx_lbl4 has 4 labels"),
          "count mismatch: %s", err.message);
    CHECK(zeroed(&d), "zeroed after count mismatch");

    memset(&d, 0x5a, sizeof d);
    s = bp_read_idx(&d, "/nonexistent/images.idx", NULL, &err);
    CHECK(s == BP_EIO && strstr(err.message, "/nonexistent/images.idx") && zeroed(&d),
          "missing file -> BP_EIO: %s", err.message);
    s = bp_read_idx(&d, "test_idx_img", "/nonexistent/labels.idx", &err);
    CHECK(s == BP_EIO && strstr(err.message, "/nonexistent/labels.idx") && zeroed(&d),
          "missing labels file -> BP_EIO: %s", err.message);
    CHECK(bp_read_idx(NULL, "x", NULL, &err) == BP_EINVAL, "NULL out");
    CHECK(bp_read_idx(&d, NULL, NULL, &err) == BP_EINVAL, "NULL path");
    remove("test_idx_img");
    remove("test_idx_img.gz");
    remove("test_idx_lbl.gz");
    remove("test_idx_lbl4");
}

static void test_bad(void)
{
    uint8_t img[128], lbl[64], z[256];
    const uint32_t idims[3] = {3, 2, 2}, ldims[1] = {3};
    size_t ni = make_idx(img, 0x08, 3, idims, PIX, 12);
    size_t nl = make_idx(lbl, 0x08, 1, ldims, LAB, 3);

    uint8_t bad[128];
    memcpy(bad, img, ni);
    bad[0] = 0x12;
    EXPECT_FAIL(bad, ni, NULL, 0, BP_EFORMAT, "images: bad magic 12 00 08 03");
    EXPECT_FAIL(img, 3, NULL, 0, BP_EFORMAT, "too short");
    EXPECT_FAIL(img, 0, NULL, 0, BP_EFORMAT, "too short");

    memcpy(bad, img, ni);
    bad[2] = 0x0D;
    EXPECT_FAIL(bad, ni, NULL, 0, BP_EFORMAT, "unsupported IDX type 0x0D (float32)");
    bad[2] = 0x0B;
    EXPECT_FAIL(bad, ni, NULL, 0, BP_EFORMAT, "unsupported IDX type 0x0B");
    bad[2] = 0x07;
    EXPECT_FAIL(bad, ni, NULL, 0, BP_EFORMAT, "unknown IDX type 0x07");

    EXPECT_FAIL(img, ni - 1, NULL, 0, BP_EFORMAT, "truncated: sizes 3x2x2 need 12 bytes");
    EXPECT_FAIL(img, 4 + 8, NULL, 0, BP_EFORMAT, "truncated header");
    memcpy(bad, img, ni);
    bad[ni] = 7;
    bad[ni + 1] = 7;
    EXPECT_FAIL(bad, ni + 2, NULL, 0, BP_EFORMAT, "2 trailing bytes");
    EXPECT_FAIL(img, ni, lbl, nl - 1, BP_EFORMAT, "labels: truncated");
    memcpy(bad, lbl, nl);
    bad[nl] = 0;
    EXPECT_FAIL(img, ni, bad, nl + 1, BP_EFORMAT, "labels: 1 trailing byte");

    /* dimensions that disagree with the data / the role */
    const uint32_t d4[3] = {3, 2, 3};
    size_t nb = make_idx(bad, 0x08, 3, d4, PIX, 12);
    EXPECT_FAIL(bad, nb, NULL, 0, BP_EFORMAT, "truncated: sizes 3x2x3 need 18 bytes");
    const uint32_t d1[1] = {12};
    nb = make_idx(bad, 0x08, 1, d1, PIX, 12);
    EXPECT_FAIL(bad, nb, NULL, 0, BP_EFORMAT, "at least 2 dimensions");
    EXPECT_FAIL(img, ni, img, ni, BP_EFORMAT, "labels: a labels file must have 1 dimension");
    const uint32_t d0[3] = {3, 0, 2};
    nb = make_idx(bad, 0x08, 3, d0, PIX, 0);
    EXPECT_FAIL(bad, nb, NULL, 0, BP_EFORMAT, "dimension 2 is 0");
    const uint32_t dh[4] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
    nb = make_idx(bad, 0x08, 4, dh, PIX, 4);
    EXPECT_FAIL(bad, nb, NULL, 0, BP_EFORMAT, "more than");
    const uint32_t l5[1] = {5};
    nb = make_idx(bad, 0x08, 1, l5, LAB, 3);
    EXPECT_FAIL(img, ni, bad, nb, BP_EFORMAT, "labels: truncated");
    const uint32_t l2[1] = {2};
    nb = make_idx(bad, 0x08, 1, l2, LAB, 2);
    EXPECT_FAIL(img, ni, bad, nb, BP_EFORMAT, "images has 3 images but labels has 2 labels");

    /* broken gzip */
    size_t zn = gz(z, sizeof z, img, ni);
    CHECK(zn > 20, "gzip for the test");
    EXPECT_FAIL(z, zn - 6, NULL, 0, BP_EFORMAT, "truncated gzip");
    EXPECT_FAIL(z, 2, NULL, 0, BP_EFORMAT, "truncated gzip");
    uint8_t zb[256];
    memcpy(zb, z, zn);
    zb[zn] = 'x';
    zb[zn + 1] = 'y';
    EXPECT_FAIL(zb, zn + 2, NULL, 0, BP_EFORMAT, "trailing garbage after the gzip");
    memcpy(zb, z, zn);
    zb[zn - 8] ^= 0xFF; /* CRC */
    EXPECT_FAIL(zb, zn, NULL, 0, BP_EFORMAT, "corrupt gzip");
    memcpy(zb, z, zn);
    zb[3] = 0xE0; /* reserved flag bits */
    EXPECT_FAIL(zb, zn, NULL, 0, BP_EFORMAT, "corrupt gzip");
    /* a gzip of a truncated file: the IDX check still applies */
    zn = gz(z, sizeof z, img, ni - 3);
    EXPECT_FAIL(z, zn, NULL, 0, BP_EFORMAT, "images: truncated: sizes 3x2x2 need 12 bytes");
}

static void test_fashion_mnist(void)
{
    const char *img = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    const char *lbl = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
    FILE *f = fopen(img, "rb");
    if (!f) {
        printf("test_idx: NOTE: %s not installed, Fashion-MNIST check skipped (not counted)\n", img);
        return;
    }
    fclose(f);
    bp_data d;
    bp_status s = bp_read_idx(&d, img, lbl, &err);
    CHECK(s == BP_OK, "fashion-mnist t10k: %s", err.message);
    CHECK(d.n == 10000 && d.n_inputs == 784 && d.n_targets == 1 && d.n_classes == 10,
          "fashion-mnist shape n=%d in=%d k=%d", d.n, d.n_inputs, d.n_classes);
    if (s == BP_OK && d.n == 10000) {
        int range = 1, counts[10] = {0};
        for (size_t i = 0; i < (size_t)d.n * 784; i++) range &= d.x[i] >= 0 && d.x[i] <= 1;
        for (int i = 0; i < d.n; i++) counts[(int)d.y[i]]++;
        CHECK(range, "pixels in [0, 1]");
        CHECK(d.y[0] == 9 && d.y[1] == 2 && d.y[2] == 1, "first labels 9 2 1");
        int balanced = 1;
        for (int k = 0; k < 10; k++) balanced &= counts[k] == 1000;
        CHECK(balanced, "1000 test images per class");
        double sum = 0;
        for (int i = 0; i < 784; i++) sum += d.x[i] * 255.0;
        CHECK(fabs(sum - 33456) < 0.01, "first image pixel sum %.3f", sum);
    }
    bp_data_free(&d);
}

int main(void)
{
    test_valid();
    test_bad();
    test_fashion_mnist();
    return check_done("test_idx");
}
