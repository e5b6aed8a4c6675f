/*
 * test_safetensors.c - model files: save/load round trips, the bytes on
 * disk, rejection of malformed files, atomic saves, and PyTorch interop.
 *
 * Usage: test_safetensors                 run the tests
 *        test_safetensors --write-interop DIR
 *            write DIR/c_model.safetensors and DIR/c_model_io.txt (a model
 *            whose spec uses every dense-network layer kind, and its outputs
 *            on fixed inputs), and DIR/c_cnn.safetensors and DIR/c_cnn_io.txt
 *            (a CNN with every image layer kind and three batchnorms,
 *            trained 3 steps so that its running statistics and
 *            num_batches_tracked are not the defaults), and two recurrent
 *            models trained 3 Adam steps, DIR/c_lm.* ("embedding(6,20)
 *            lstm(16) dense(20)" on 9 token ids) and DIR/c_gru.* ("gru(8)
 *            last dense(3)" on [7, 4]), for tools/torch_interop.py to load
 *            into PyTorch.
 *
 * The PyTorch fixtures tests/fixtures/torch_model.safetensors and
 * torch_cnn.safetensors (a torch-saved CNN state dict, num_batches_tracked
 * as I64) and their outputs torch_model_io.txt and torch_cnn_io.txt are
 * made by `tools/torch_interop.py fixture`.
 */
#include "backprop.h"
#include "check.h"
#include "internal.h"

#include <cjson/cJSON.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef BP_SOURCE_DIR
#define BP_SOURCE_DIR "."
#endif

static char g_dir[256];   /* scratch directory of this run */

static uint64_t rng_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    uint64_t z = *s;
    z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdULL;
    return z ^ (z >> 29);
}

static double urand(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

static const char *path_in(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static uint8_t *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return b;
}

static int write_all_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Number of leftover temporary files ("*.tmp.*") in g_dir. */
static int temp_files_left(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* A network with random non-zero biases. */
static bp_net *make_net(int inputs, const char *spec, uint64_t seed)
{
    bp_error err = {0};
    bp_net *net = NULL;
    bp_status s = bp_net_create(&net, inputs, spec, seed, &err);
    CHECK(s == BP_OK, "create %s: %s", spec, err.message);
    if (s) return NULL;
    uint64_t r = seed * 31 + 7;
    for (int i = 0; i < bp_net_layers(net); i++) {
        bp_real *b = bp_net_bias(net, i);
        if (b)
            for (int j = 0; j < bp_net_layer(net, i).units; j++)
                b[j] = (bp_real)(urand(&r) - 0.5);
    }
    return net;
}

/* Parameters are one array in both nets (internal.h): compare it whole. */
static int same_params(const bp_net *a, const bp_net *b)
{
    return a->n_params == b->n_params &&
           memcmp(a->params, b->params, a->n_params * sizeof(bp_real)) == 0;
}

/* ------------------------------------------------------------------------ */

static void check_meta(const bp_net *net, const char *key, const char *want)
{
    const char *v = bp_net_get_meta(net, key);
    CHECK(v && strcmp(v, want) == 0, "metadata %s: '%s', want '%s'", key, v ? v : "(absent)",
          want);
}

static const char *RT_SPEC =
    "dense(16) relu dropout(0.3) dense(8) leaky_relu(0.05) dense(5) tanh dense(3) softmax";

static void test_round_trip(void)
{
    bp_error err = {0};
    bp_net *net = make_net(4, RT_SPEC, 7);
    if (!net) return;
    const char *weird = "na\xc3\xafve \"quoted\" back\\slash\nnew line\ttab";
    CHECK(bp_net_set_meta(net, "task", "classify", &err) == BP_OK, "%s", err.message);
    CHECK(bp_net_set_meta(net, "classes", "cat,dog,bird", &err) == BP_OK, "%s", err.message);
    CHECK(bp_net_set_meta(net, "weird", weird, &err) == BP_OK, "%s", err.message);
    CHECK(bp_net_set_meta(net, "empty", "", &err) == BP_OK, "%s", err.message);
    /* A stale library key must be replaced by the library's value on save. */
    CHECK(bp_net_set_meta(net, "spec", "dense(1)", &err) == BP_OK, "%s", err.message);

    const char *path = path_in("rt.safetensors");
    bp_status s = bp_net_save(net, path, &err);
    CHECK(s == BP_OK, "save: %s", err.message);
    CHECK(temp_files_left(g_dir) == 0, "temporary file left after save");

    bp_net *back = (bp_net *)1;
    s = bp_net_load(&back, path, &err);
    CHECK(s == BP_OK, "load: %s", err.message);
    if (s != BP_OK) {
        bp_net_free(net);
        return;
    }
    CHECK(bp_net_inputs(back) == 4, "inputs %d", bp_net_inputs(back));
    CHECK(bp_net_outputs(back) == 3, "outputs %d", bp_net_outputs(back));
    CHECK(bp_net_layers(back) == bp_net_layers(net), "layers %d", bp_net_layers(back));
    CHECK(strcmp(bp_net_spec(back), bp_net_spec(net)) == 0, "spec '%s' vs '%s'",
          bp_net_spec(back), bp_net_spec(net));
    CHECK(same_params(net, back), "parameters differ after the round trip");

    /* Bit-identical predictions on random inputs. */
    enum { N = 10 };
    bp_real x[N * 4], ya[N * 3], yb[N * 3];
    uint64_t r = 99;
    for (int i = 0; i < N * 4; i++) x[i] = (bp_real)(4 * urand(&r) - 2);
    CHECK(bp_forward(net, x, N, ya, &err) == BP_OK, "%s", err.message);
    CHECK(bp_forward(back, x, N, yb, &err) == BP_OK, "%s", err.message);
    CHECK(memcmp(ya, yb, sizeof ya) == 0, "predictions differ after the round trip");

    /* Metadata. */
    check_meta(back, "task", "classify");
    check_meta(back, "classes", "cat,dog,bird");
    check_meta(back, "weird", weird);
    check_meta(back, "empty", "");
    check_meta(back, "format", "backprop/1");
    check_meta(back, "spec", bp_net_spec(net));
    check_meta(back, "inputs", "4");

    /* Save the loaded net again: same bytes. */
    const char *path2 = path_in("rt2.safetensors");
    CHECK(bp_net_save(back, path2, &err) == BP_OK, "save 2: %s", err.message);
    size_t n1 = 0, n2 = 0;
    uint8_t *b1 = read_all(path, &n1), *b2 = read_all(path2, &n2);
    CHECK(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0, "re-saved file differs");
    free(b1);
    free(b2);

    /* Overwriting an existing file works. */
    CHECK(bp_net_save(back, path, &err) == BP_OK, "overwrite: %s", err.message);
    CHECK(temp_files_left(g_dir) == 0, "temporary file left after overwrite");

    /* Buffer save equals the file. */
    uint8_t *buf = NULL;
    size_t size = 0;
    CHECK(bp_net_save_buffer(back, &buf, &size, &err) == BP_OK, "%s", err.message);
    b1 = read_all(path, &n1);
    CHECK(b1 && n1 == size && memcmp(b1, buf, size) == 0, "buffer save differs from file");
    free(b1);
    free(buf);

    /* load_weights into a fresh net of the same spec. */
    bp_net *fresh = make_net(4, RT_SPEC, 1234);
    if (fresh) {
        CHECK(!same_params(fresh, net), "fresh net should differ");
        s = bp_net_load_weights(fresh, path, &err);
        CHECK(s == BP_OK, "load_weights: %s", err.message);
        CHECK(same_params(fresh, net), "load_weights: parameters differ");
        bp_net_free(fresh);
    }
    bp_net_free(net);
    bp_net_free(back);
}

/* The bytes on disk: header length, padded JSON, keys, shapes, offsets. */
static void test_file_bytes(void)
{
    bp_error err = {0};
    bp_net *net = make_net(4, RT_SPEC, 3);
    if (!net) return;
    const char *path = path_in("bytes.safetensors");
    CHECK(bp_net_save(net, path, &err) == BP_OK, "save: %s", err.message);
    size_t size = 0;
    uint8_t *b = read_all(path, &size);
    CHECK(b && size >= 8, "read back");
    if (!b || size < 8) {
        free(b);
        bp_net_free(net);
        return;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
    CHECK(hlen % 8 == 0, "header length %llu not a multiple of 8", (unsigned long long)hlen);
    CHECK(hlen + 8 <= size, "header length %llu beyond file", (unsigned long long)hlen);
    size_t data = size - 8 - (size_t)hlen;
    CHECK(data == bp_net_param_count(net) * 4, "data section %zu bytes, expected %zu", data,
          bp_net_param_count(net) * 4);
    CHECK(b[8] == '{', "header starts with '{'");
    cJSON *j = cJSON_ParseWithLength((const char *)b + 8, (size_t)hlen);
    CHECK(j != NULL, "header parses as JSON");
    if (j) {
        static const struct { const char *key; int rank; int d0, d1; } want[] = {
            {"0.weight", 2, 16, 4}, {"0.bias", 1, 16, 0}, {"3.weight", 2, 8, 16},
            {"3.bias", 1, 8, 0},    {"5.weight", 2, 5, 8}, {"5.bias", 1, 5, 0},
            {"7.weight", 2, 3, 5},  {"7.bias", 1, 3, 0}};
        double off = 0;
        for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
            cJSON *t = cJSON_GetObjectItemCaseSensitive(j, want[k].key);
            CHECK(t != NULL, "key %s present", want[k].key);
            if (!t) continue;
            cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
            CHECK(cJSON_IsString(dt) && !strcmp(dt->valuestring, "F32"), "%s dtype", want[k].key);
            cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shape");
            CHECK(cJSON_GetArraySize(sh) == want[k].rank, "%s rank", want[k].key);
            CHECK(cJSON_GetArrayItem(sh, 0) && cJSON_GetArrayItem(sh, 0)->valuedouble == want[k].d0,
                  "%s shape[0]", want[k].key);
            if (want[k].rank == 2)
                CHECK(cJSON_GetArrayItem(sh, 1) &&
                          cJSON_GetArrayItem(sh, 1)->valuedouble == want[k].d1,
                      "%s shape[1]", want[k].key);
            cJSON *of = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
            double numel = want[k].rank == 2 ? (double)want[k].d0 * want[k].d1 : want[k].d0;
            CHECK(cJSON_GetArraySize(of) == 2 && cJSON_GetArrayItem(of, 0)->valuedouble == off &&
                      cJSON_GetArrayItem(of, 1)->valuedouble == off + 4 * numel,
                  "%s offsets contiguous in layer order", want[k].key);
            off += 4 * numel;
        }
        CHECK(off == (double)data, "offsets cover the data section");
        CHECK(!cJSON_GetObjectItemCaseSensitive(j, "1.weight"), "no key for relu");
        cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "__metadata__");
        cJSON *f = cJSON_GetObjectItemCaseSensitive(m, "format");
        CHECK(cJSON_IsString(f) && !strcmp(f->valuestring, "backprop/1"), "format metadata");
        cJSON *sp = cJSON_GetObjectItemCaseSensitive(m, "spec");
        CHECK(cJSON_IsString(sp) && !strcmp(sp->valuestring, bp_net_spec(net)), "spec metadata");
        cJSON *in = cJSON_GetObjectItemCaseSensitive(m, "inputs");
        CHECK(cJSON_IsString(in) && !strcmp(in->valuestring, "4"), "inputs metadata");
        cJSON_Delete(j);
    }
    /* The first float of 0.weight and the last of 7.bias, little-endian. */
    const uint8_t *d = b + 8 + hlen;
    uint32_t u = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 |
                 (uint32_t)d[3] << 24;
    float f0;
    memcpy(&f0, &u, 4);
    CHECK(f0 == (float)bp_net_weight(net, 0)[0], "first weight %g vs %g", f0,
          (double)bp_net_weight(net, 0)[0]);
    d = b + size - 4;
    u = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
    memcpy(&f0, &u, 4);
    CHECK(f0 == (float)bp_net_bias(net, 7)[2], "last bias %g vs %g", f0,
          (double)bp_net_bias(net, 7)[2]);
    /* Padding is spaces. */
    CHECK(b[8 + hlen - 1] == '}' || b[8 + hlen - 1] == ' ', "header padding");
    free(b);
    bp_net_free(net);
}

/* ------------------------------------------------------------------------ */
/* Malformed files                                                           */
/* ------------------------------------------------------------------------ */

static const char *SMALL_SPEC = "dense(3) relu dense(2)";

typedef struct image {
    uint8_t *bytes;
    size_t size;
} image;

/* A valid small model image (inputs 2, dense(3) relu dense(2)). */
static image small_image(void)
{
    image im = {NULL, 0};
    bp_error err = {0};
    bp_net *net = make_net(2, SMALL_SPEC, 11);
    if (!net) return im;
    bp_net_set_meta(net, "task", "regress", NULL);
    CHECK(bp_net_save_buffer(net, &im.bytes, &im.size, &err) == BP_OK, "%s", err.message);
    bp_net_free(net);
    return im;
}

/* Split an image into its parsed header and data section. */
static cJSON *image_header(const image *im, const uint8_t **data, size_t *data_size)
{
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | im->bytes[i];
    *data = im->bytes + 8 + hlen;
    *data_size = im->size - 8 - (size_t)hlen;
    return cJSON_ParseWithLength((const char *)im->bytes + 8, (size_t)hlen);
}

/* An image from header text and data. */
static image make_image(const char *header, const uint8_t *data, size_t data_size)
{
    size_t tlen = strlen(header);
    size_t hlen = (tlen + 7) & ~(size_t)7;
    image im;
    im.size = 8 + hlen + data_size;
    im.bytes = malloc(im.size);
    for (int i = 0; i < 8; i++) im.bytes[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(im.bytes + 8, header, tlen);
    memset(im.bytes + 8 + tlen, ' ', hlen - tlen);
    if (data_size) memcpy(im.bytes + 8 + hlen, data, data_size);
    return im;
}

static image image_from_json(cJSON *j, const uint8_t *data, size_t data_size)
{
    char *text = cJSON_PrintUnformatted(j);
    image im = make_image(text, data, data_size);
    cJSON_free(text);
    return im;
}

/* Expect bp_net_load_buffer to fail with `want` and a message containing
 * `needle` (may be NULL), leaving *out NULL. */
static void expect_load_fail(const image *im, bp_status want, const char *needle,
                             const char *what)
{
    bp_error err = {0};
    bp_net *net = (bp_net *)1;
    bp_status s = bp_net_load_buffer(&net, im->bytes, im->size, "case", &err);
    CHECK(s == want, "%s: status %s, want %s (%s)", what, bp_status_name(s),
          bp_status_name(want), err.message);
    CHECK(net == NULL, "%s: out not NULL on failure", what);
    if (s == BP_OK) bp_net_free(net);
    if (needle)
        CHECK(strstr(err.message, needle) != NULL, "%s: message '%s' lacks '%s'", what,
              err.message, needle);
    CHECK(s == BP_OK || err.code == s, "%s: err.code %d vs %d", what, err.code, s);
}

/* Expect bp_net_load_weights_buffer into a SMALL_SPEC net to fail with
 * `want` and leave the parameters untouched. */
static void expect_weights_fail(const image *im, bp_status want, const char *needle,
                                const char *what)
{
    bp_error err = {0};
    bp_net *net = make_net(2, SMALL_SPEC, 5);
    if (!net) return;
    bp_net *copy = NULL;
    bp_net_clone(&copy, net, NULL);
    bp_status s = bp_net_load_weights_buffer(net, im->bytes, im->size, "case", &err);
    CHECK(s == want, "%s (weights): status %s, want %s (%s)", what, bp_status_name(s),
          bp_status_name(want), err.message);
    if (needle)
        CHECK(strstr(err.message, needle) != NULL, "%s (weights): message '%s' lacks '%s'", what,
              err.message, needle);
    if (copy) CHECK(same_params(net, copy), "%s (weights): parameters changed on failure", what);
    bp_net_free(copy);
    bp_net_free(net);
}

/* Apply `edit` to the header of the small image, then expect failures. */
typedef void (*edit_fn)(cJSON *j, uint8_t *data, size_t data_size);

static void check_edit(edit_fn edit, bp_status want_load, bp_status want_weights,
                       const char *needle, const char *what)
{
    image base = small_image();
    if (!base.bytes) return;
    const uint8_t *data;
    size_t data_size;
    cJSON *j = image_header(&base, &data, &data_size);
    uint8_t *dcopy = malloc(data_size + 1);
    memcpy(dcopy, data, data_size);
    edit(j, dcopy, data_size);
    image im = image_from_json(j, dcopy, data_size);
    expect_load_fail(&im, want_load, needle, what);
    if (want_weights != BP_OK) expect_weights_fail(&im, want_weights, needle, what);
    cJSON_Delete(j);
    free(dcopy);
    free(im.bytes);
    free(base.bytes);
}

static void set_array2(cJSON *t, const char *key, double a, double b)
{
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, cJSON_CreateNumber(a));
    cJSON_AddItemToArray(arr, cJSON_CreateNumber(b));
    cJSON_ReplaceItemInObjectCaseSensitive(t, key, arr);
}

static double offset_of(cJSON *j, const char *key, int which)
{
    cJSON *t = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(t, "data_offsets"), which)
        ->valuedouble;
}

static void ed_dtype(cJSON *j, uint8_t *d, size_t n)
{
    cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "0.weight");
    cJSON_ReplaceItemInObjectCaseSensitive(t, "dtype", cJSON_CreateString("F64"));
}
static void ed_dtype_unknown(cJSON *j, uint8_t *d, size_t n)
{
    cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "2.bias");
    cJSON_ReplaceItemInObjectCaseSensitive(t, "dtype", cJSON_CreateString("Q4"));
}
static void ed_shape(cJSON *j, uint8_t *d, size_t n)
{
    /* [3, 2] -> [2, 3]: same byte count, wrong shape. */
    set_array2(cJSON_GetObjectItemCaseSensitive(j, "0.weight"), "shape", 2, 3);
}
static void ed_shape_rank(cJSON *j, uint8_t *d, size_t n)
{
    cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "2.bias");
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, cJSON_CreateNumber(1));
    cJSON_AddItemToArray(arr, cJSON_CreateNumber(2));
    cJSON_ReplaceItemInObjectCaseSensitive(t, "shape", arr);
}
static void ed_shape_negative(cJSON *j, uint8_t *d, size_t n)
{
    set_array2(cJSON_GetObjectItemCaseSensitive(j, "0.weight"), "shape", -3, -2);
}
static void ed_shape_fraction(cJSON *j, uint8_t *d, size_t n)
{
    set_array2(cJSON_GetObjectItemCaseSensitive(j, "0.weight"), "shape", 3.5, 2);
}
static void ed_shape_huge(cJSON *j, uint8_t *d, size_t n)
{
    set_array2(cJSON_GetObjectItemCaseSensitive(j, "0.weight"), "shape", 9007199254740992.0,
               9007199254740992.0);
}
static void ed_shape_missing(cJSON *j, uint8_t *d, size_t n)
{
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "0.bias"),
                                            "shape");
}
static void ed_missing(cJSON *j, uint8_t *d, size_t n)
{
    cJSON_DeleteItemFromObjectCaseSensitive(j, "2.bias");
}
static void ed_extra(cJSON *j, uint8_t *d, size_t n)
{
    cJSON *t = cJSON_AddObjectToObject(j, "4.weight");
    cJSON_AddStringToObject(t, "dtype", "F32");
    cJSON *sh = cJSON_AddArrayToObject(t, "shape");
    cJSON_AddItemToArray(sh, cJSON_CreateNumber(0));
    cJSON *of = cJSON_AddArrayToObject(t, "data_offsets");
    cJSON_AddItemToArray(of, cJSON_CreateNumber(0));
    cJSON_AddItemToArray(of, cJSON_CreateNumber(0));
}
static void ed_offsets_range(cJSON *j, uint8_t *d, size_t n)
{
    set_array2(cJSON_GetObjectItemCaseSensitive(j, "2.bias"), "data_offsets", (double)n,
               (double)n + 8);
}
static void ed_offsets_reversed(cJSON *j, uint8_t *d, size_t n)
{
    double b = offset_of(j, "2.bias", 0), e = offset_of(j, "2.bias", 1);
    set_array2(cJSON_GetObjectItemCaseSensitive(j, "2.bias"), "data_offsets", e, b);
}
static void ed_offsets_numel(cJSON *j, uint8_t *d, size_t n)
{
    double b = offset_of(j, "0.bias", 0);
    set_array2(cJSON_GetObjectItemCaseSensitive(j, "0.bias"), "data_offsets", b, b + 8);
}
static void ed_offsets_overlap(cJSON *j, uint8_t *d, size_t n)
{
    set_array2(cJSON_GetObjectItemCaseSensitive(j, "0.bias"), "data_offsets", 0, 12);
}
static void ed_offsets_string(cJSON *j, uint8_t *d, size_t n)
{
    cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "0.bias"),
                                           "data_offsets", cJSON_CreateString("0,12"));
}
static void ed_entry_not_object(cJSON *j, uint8_t *d, size_t n)
{
    cJSON_ReplaceItemInObjectCaseSensitive(j, "0.bias", cJSON_CreateNumber(3));
}
static void ed_no_spec(cJSON *j, uint8_t *d, size_t n)
{
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "__metadata__"),
                                            "spec");
}
static void ed_no_meta(cJSON *j, uint8_t *d, size_t n)
{
    cJSON_DeleteItemFromObjectCaseSensitive(j, "__metadata__");
}
static void ed_no_inputs(cJSON *j, uint8_t *d, size_t n)
{
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "__metadata__"),
                                            "inputs");
}
static void set_meta(cJSON *j, const char *key, const char *val)
{
    cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "__metadata__");
    cJSON_ReplaceItemInObjectCaseSensitive(m, key, cJSON_CreateString(val));
}
static void ed_bad_spec(cJSON *j, uint8_t *d, size_t n) { set_meta(j, "spec", "dense(3) bogus dense(2)"); }
static void ed_empty_spec(cJSON *j, uint8_t *d, size_t n) { set_meta(j, "spec", ""); }
static void ed_spec_other_shapes(cJSON *j, uint8_t *d, size_t n)
{
    set_meta(j, "spec", "dense(2) relu dense(3)");   /* 15 params <= 17 stored */
}
static void ed_spec_huge(cJSON *j, uint8_t *d, size_t n)
{
    set_meta(j, "spec", "dense(100000000) dense(100000000)");
}
static void ed_spec_layer_kinds(cJSON *j, uint8_t *d, size_t n)
{
    set_meta(j, "spec", "dense(3) dense(2)");   /* keys 0 and 1, file has 0 and 2 */
}
static void ed_inputs_text(cJSON *j, uint8_t *d, size_t n) { set_meta(j, "inputs", "two"); }
static void ed_inputs_zero(cJSON *j, uint8_t *d, size_t n) { set_meta(j, "inputs", "0"); }
static void ed_inputs_neg(cJSON *j, uint8_t *d, size_t n) { set_meta(j, "inputs", "-2"); }
static void ed_inputs_big(cJSON *j, uint8_t *d, size_t n) { set_meta(j, "inputs", "99999999999999"); }
static void ed_inputs_wrong(cJSON *j, uint8_t *d, size_t n) { set_meta(j, "inputs", "1"); }
static void ed_inputs_more(cJSON *j, uint8_t *d, size_t n) { set_meta(j, "inputs", "3"); }
static void ed_format(cJSON *j, uint8_t *d, size_t n) { set_meta(j, "format", "backprop/2"); }
static void ed_meta_number(cJSON *j, uint8_t *d, size_t n)
{
    cJSON_AddNumberToObject(cJSON_GetObjectItemCaseSensitive(j, "__metadata__"), "epochs", 10);
}
static void ed_meta_not_object(cJSON *j, uint8_t *d, size_t n)
{
    cJSON_ReplaceItemInObjectCaseSensitive(j, "__metadata__", cJSON_CreateString("x"));
}
static void ed_nan(cJSON *j, uint8_t *d, size_t n)
{
    size_t at = (size_t)offset_of(j, "2.weight", 0) + 4;
    d[at] = 0x00; d[at + 1] = 0x00; d[at + 2] = 0xc0; d[at + 3] = 0x7f;
}
static void ed_inf(cJSON *j, uint8_t *d, size_t n)
{
    size_t at = (size_t)offset_of(j, "0.bias", 0);
    d[at] = 0x00; d[at + 1] = 0x00; d[at + 2] = 0x80; d[at + 3] = 0xff;
}

static void test_rejections(void)
{
    check_edit(ed_dtype, BP_EFORMAT, BP_EFORMAT, "tensor 0.weight: dtype F64 not supported (need F32)",
               "wrong dtype");
    check_edit(ed_dtype_unknown, BP_EFORMAT, BP_EFORMAT, "unknown dtype", "unknown dtype");
    check_edit(ed_shape, BP_ESHAPE, BP_ESHAPE, "expected [3, 2]", "wrong shape");
    check_edit(ed_shape_rank, BP_ESHAPE, BP_ESHAPE, "shape [1, 2] does not match the network (expected [2])",
               "bias of rank 2");
    check_edit(ed_shape_negative, BP_EFORMAT, BP_EFORMAT, "shape", "negative shape");
    check_edit(ed_shape_fraction, BP_EFORMAT, BP_EFORMAT, "shape", "fractional shape");
    check_edit(ed_shape_huge, BP_EFORMAT, BP_EFORMAT, "shape", "huge shape");
    check_edit(ed_shape_missing, BP_EFORMAT, BP_EFORMAT, "shape", "missing shape");
    check_edit(ed_missing, BP_EFORMAT, BP_EFORMAT, "missing tensor 2.bias", "missing tensor");
    check_edit(ed_extra, BP_EFORMAT, BP_EFORMAT, "unexpected tensor 4.weight", "extra tensor");
    check_edit(ed_offsets_range, BP_EFORMAT, BP_EFORMAT, "out of range", "offsets out of range");
    check_edit(ed_offsets_reversed, BP_EFORMAT, BP_EFORMAT, "out of range", "offsets reversed");
    check_edit(ed_offsets_numel, BP_EFORMAT, BP_EFORMAT, "needs 12", "offsets/numel mismatch");
    check_edit(ed_offsets_overlap, BP_EFORMAT, BP_EFORMAT, "overlap", "overlapping tensors");
    check_edit(ed_offsets_string, BP_EFORMAT, BP_EFORMAT, "data_offsets", "offsets not an array");
    check_edit(ed_entry_not_object, BP_EFORMAT, BP_EFORMAT, "not a JSON object", "entry not object");
    /* Metadata problems fail bp_net_load; bp_net_load_weights ignores metadata. */
    check_edit(ed_no_spec, BP_EFORMAT, BP_OK, "spec", "metadata without spec");
    check_edit(ed_no_meta, BP_EFORMAT, BP_OK, "spec", "no metadata");
    check_edit(ed_no_inputs, BP_EFORMAT, BP_OK, "inputs", "metadata without inputs");
    check_edit(ed_bad_spec, BP_EFORMAT, BP_OK, "bogus", "bad spec");
    check_edit(ed_empty_spec, BP_EFORMAT, BP_OK, "spec", "empty spec");
    check_edit(ed_spec_other_shapes, BP_ESHAPE, BP_OK, "0.weight", "spec disagrees with shapes");
    check_edit(ed_spec_huge, BP_EFORMAT, BP_OK, "parameters", "spec needing huge parameters");
    check_edit(ed_spec_layer_kinds, BP_EFORMAT, BP_OK, "missing tensor 1.weight", "spec index shift");
    check_edit(ed_inputs_text, BP_EFORMAT, BP_OK, "inputs", "inputs not a number");
    check_edit(ed_inputs_zero, BP_EFORMAT, BP_OK, "inputs", "inputs zero");
    check_edit(ed_inputs_neg, BP_EFORMAT, BP_OK, "inputs", "inputs negative");
    check_edit(ed_inputs_big, BP_EFORMAT, BP_OK, "inputs", "inputs too big");
    check_edit(ed_inputs_wrong, BP_ESHAPE, BP_OK, "0.weight", "inputs disagree with shapes");
    check_edit(ed_inputs_more, BP_EFORMAT, BP_OK, "needs 20 parameters", "inputs need more data");
    check_edit(ed_format, BP_EFORMAT, BP_OK, "backprop/2", "future format version");
    check_edit(ed_meta_number, BP_EFORMAT, BP_EFORMAT, "epochs", "metadata value not a string");
    check_edit(ed_meta_not_object, BP_EFORMAT, BP_EFORMAT, "__metadata__", "metadata not an object");
    check_edit(ed_nan, BP_EFORMAT, BP_EFORMAT, "tensor 2.weight: element 1 is NaN", "NaN weight");
    check_edit(ed_inf, BP_EFORMAT, BP_EFORMAT, "tensor 0.bias: element 0 is infinite", "Inf bias");

    /* Whole-header cases written as text. */
    image base = small_image();
    if (!base.bytes) return;
    const uint8_t *data;
    size_t dsize;
    cJSON *j = image_header(&base, &data, &dsize);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    static const struct { const char *header; const char *needle; const char *what; } texts[] = {
        {"{not json}", "JSON", "non-JSON header"},
        {"[1, 2, 3]", "'{'", "JSON array"},
        {"\"string\"", "'{'", "JSON string"},
        {"{\"a\": 1", "JSON", "unterminated object"},
        {"{} trailing", "trailing", "garbage after the object"},
        {"{}", "spec", "empty object"},
        {"{\"__metadata__\": {}, \"__metadata__\": {}}", "duplicate", "two __metadata__"},
        {"{\"__metadata__\": {\"a\": \"1\", \"a\": \"2\"}}", "duplicate metadata", "dup meta"},
        {"{\"0.bias\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [0, 0]},"
         " \"0.bias\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [0, 0]}}",
         "duplicate tensor", "duplicate tensor"},
        {"{\"x\": {\"dtype\": \"F32\", \"shape\": [1e400], \"data_offsets\": [0, 4]}}", "shape",
         "shape 1e400"},
        {"{\"x\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}",
         "rank", "rank 9"},
        {"{\"x\": {\"dtype\": 32, \"shape\": [1], \"data_offsets\": [0, 4]}}", "dtype",
         "dtype not a string"},
        {"{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}",
         "data_offsets", "three offsets"},
        {"{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}",
         "data_offsets", "negative offset"},
    };
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        image im = make_image(texts[k].header, data, dsize);
        expect_load_fail(&im, BP_EFORMAT, texts[k].needle, texts[k].what);
        free(im.bytes);
    }
    /* A NUL byte inside the header. */
    {
        image im = make_image(text, data, dsize);
        im.bytes[8 + 3] = 0;
        expect_load_fail(&im, BP_EFORMAT, "NUL", "NUL in header");
        free(im.bytes);
    }
    /* Header length: past the end, exactly the rest, oversized, zero. */
    {
        image im = make_image(text, data, dsize);
        uint64_t lens[] = {(uint64_t)im.size, (uint64_t)im.size - 7, (uint64_t)1 << 62,
                           UINT64_MAX, 0, 1, 100000001};
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            for (int i = 0; i < 8; i++) im.bytes[i] = (uint8_t)(lens[k] >> (8 * i));
            char what[64];
            snprintf(what, sizeof what, "header length %llu", (unsigned long long)lens[k]);
            expect_load_fail(&im, BP_EFORMAT, NULL, what);
            expect_weights_fail(&im, BP_EFORMAT, NULL, what);
        }
        for (int i = 0; i < 8; i++) im.bytes[i] = (uint8_t)(((uint64_t)1 << 62) >> (8 * i));
        expect_load_fail(&im, BP_EFORMAT, "oversized header", "2^62 header");
        free(im.bytes);
    }
    cJSON_free(text);

    /* Every truncation of a valid file fails cleanly; the whole one loads. */
    for (size_t len = 0; len < base.size; len++) {
        uint8_t *cut = malloc(len ? len : 1);   /* exact size: ASan sees over-reads */
        memcpy(cut, base.bytes, len);
        image im = {cut, len};
        char what[64];
        snprintf(what, sizeof what, "prefix of %zu/%zu bytes", len, base.size);
        expect_load_fail(&im, BP_EFORMAT, NULL, what);
        if (len % 7 == 0) expect_weights_fail(&im, BP_EFORMAT, NULL, what);
        free(cut);
    }
    {
        bp_error err = {0};
        bp_net *net = NULL;
        CHECK(bp_net_load_buffer(&net, base.bytes, base.size, NULL, &err) == BP_OK,
              "whole small image: %s", err.message);
        bp_net_free(net);
    }
    /* Trailing bytes after the data are tolerated (offsets are what count). */
    free(base.bytes);
}

/* Random buffers and random mutations of a valid file: no crash, no leak,
 * *out NULL on failure. */
static void test_random_bytes(void)
{
    image base = small_image();
    if (!base.bytes) return;
    uint64_t r = 2024;
    int ok_count = 0;
    for (int it = 0; it < 600; it++) {
        size_t len;
        uint8_t *buf;
        int kind = it % 3;
        if (kind == 0) {            /* pure noise */
            len = (size_t)(rng_next(&r) % 600);
            buf = malloc(len ? len : 1);
            for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)rng_next(&r);
        } else if (kind == 1) {     /* plausible header length, noise after */
            len = 8 + (size_t)(rng_next(&r) % 400);
            buf = malloc(len);
            uint64_t h = rng_next(&r) % (len - 7);
            for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(h >> (8 * i));
            buf[8 % len] = '{';
            for (size_t i = 9; i < len; i++) buf[i] = (uint8_t)rng_next(&r);
        } else {                    /* a valid file with a few bytes flipped */
            len = base.size;
            buf = malloc(len);
            memcpy(buf, base.bytes, len);
            int flips = 1 + (int)(rng_next(&r) % 4);
            for (int k = 0; k < flips; k++)
                buf[rng_next(&r) % len] = (uint8_t)rng_next(&r);
        }
        bp_error err = {0};
        bp_net *net = (bp_net *)1;
        bp_status s = bp_net_load_buffer(&net, buf, len, "random", &err);
        if (s == BP_OK) {
            ok_count++;
            CHECK(net != NULL, "random %d: OK but no net", it);
            bp_net_free(net);
        } else {
            CHECK(net == NULL, "random %d: out not NULL on failure", it);
            CHECK(err.message[0] != 0, "random %d: no message", it);
        }
        bp_net *w = make_net(2, SMALL_SPEC, 1);
        if (w) {
            bp_net_load_weights_buffer(w, buf, len, "random", NULL);
            bp_net_free(w);
        }
        free(buf);
    }
    /* Flips in the data section keep the file valid: some must load. */
    CHECK(ok_count > 0, "no mutated file loaded (%d)", ok_count);
    free(base.bytes);
}

/* ------------------------------------------------------------------------ */
/* Files: missing paths, failed saves, atomicity                             */
/* ------------------------------------------------------------------------ */

static void test_paths(void)
{
    bp_error err = {0};
    bp_net *net = (bp_net *)1;
    const char *missing = path_in("does-not-exist.safetensors");
    bp_status s = bp_net_load(&net, missing, &err);
    CHECK(s == BP_EIO, "load missing: %s (%s)", bp_status_name(s), err.message);
    CHECK(net == NULL, "load missing: out not NULL");
    CHECK(strstr(err.message, "does-not-exist.safetensors") != NULL, "message names the path: %s",
          err.message);
    net = (bp_net *)1;
    s = bp_net_load(&net, g_dir, &err);
    CHECK(s == BP_EIO, "load a directory: %s (%s)", bp_status_name(s), err.message);
    CHECK(net == NULL, "load a directory: out not NULL");

    bp_net *small = make_net(2, SMALL_SPEC, 2);
    if (!small) return;
    s = bp_net_load_weights(small, missing, &err);
    CHECK(s == BP_EIO, "load_weights missing: %s", bp_status_name(s));

    /* Save into a directory that does not exist. */
    const char *nodir = path_in("no/such/dir/m.safetensors");
    s = bp_net_save(small, nodir, &err);
    CHECK(s == BP_EIO, "save into missing dir: %s (%s)", bp_status_name(s), err.message);
    CHECK(strstr(err.message, "m.safetensors") != NULL, "message names the path: %s", err.message);
    CHECK(!file_exists(nodir), "file created in a missing directory?");

    /* Save onto a directory path: rename fails, nothing left behind. */
    const char *sub = path_in("subdir");
    mkdir(sub, 0755);
    s = bp_net_save(small, sub, &err);
    CHECK(s == BP_EIO, "save onto a directory: %s (%s)", bp_status_name(s), err.message);
    CHECK(temp_files_left(g_dir) == 0, "temporary file left after a failed rename");
    rmdir(sub);

    /* An empty file. */
    const char *empty = path_in("empty.safetensors");
    write_all_file(empty, "", 0);
    net = (bp_net *)1;
    s = bp_net_load(&net, empty, &err);
    CHECK(s == BP_EFORMAT && net == NULL, "empty file: %s (%s)", bp_status_name(s), err.message);
    CHECK(strstr(err.message, "empty.safetensors") != NULL, "message names the file: %s",
          err.message);
    bp_net_free(small);
}

static void test_atomic(void)
{
    bp_error err = {0};
    bp_net *a = make_net(3, "dense(5) relu dense(2)", 1);
    bp_net *b = make_net(3, "dense(50) tanh dense(40) dense(2)", 2);
    if (!a || !b) {
        bp_net_free(a);
        bp_net_free(b);
        return;
    }
    const char *path = path_in("keep.safetensors");
    CHECK(bp_net_save(a, path, &err) == BP_OK, "save a: %s", err.message);
    size_t n0 = 0;
    uint8_t *before = read_all(path, &n0);

    /* 1. A write that fails half-way: file size limit below b's size
     *    (works as root too). The old file must survive. */
    struct rlimit old;
    if (getrlimit(RLIMIT_FSIZE, &old) == 0) {
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        struct rlimit lim = old;
        lim.rlim_cur = 512;
        if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
            bp_status s = bp_net_save(b, path, &err);
            setrlimit(RLIMIT_FSIZE, &old);
            CHECK(s == BP_EIO, "save with a full disk: %s (%s)", bp_status_name(s), err.message);
            size_t n1 = 0;
            uint8_t *after = read_all(path, &n1);
            CHECK(after && n1 == n0 && memcmp(before, after, n0) == 0,
                  "old file changed by a failed save");
            free(after);
            CHECK(temp_files_left(g_dir) == 0, "temporary file left after a failed write");
        }
        signal(SIGXFSZ, prev);
    }

    /* 2. A read-only directory (skipped as root, who can write anyway). */
    if (geteuid() != 0) {
        const char *ro = path_in("ro");
        mkdir(ro, 0755);
        char p[600];
        snprintf(p, sizeof p, "%s/m.safetensors", ro);
        CHECK(bp_net_save(a, p, &err) == BP_OK, "save in ro before chmod: %s", err.message);
        chmod(ro, 0555);
        bp_status s = bp_net_save(b, p, &err);
        CHECK(s == BP_EIO, "save in read-only dir: %s (%s)", bp_status_name(s), err.message);
        bp_net *back = NULL;
        s = bp_net_load(&back, p, &err);
        CHECK(s == BP_OK && back && bp_net_param_count(back) == bp_net_param_count(a),
              "old file intact in read-only dir: %s", err.message);
        bp_net_free(back);
        chmod(ro, 0755);
        unlink(p);
        rmdir(ro);
    }

    /* 3. A net with a NaN parameter is refused before anything is written. */
    bp_net_weight(b, 0)[3] = (bp_real)NAN;
    bp_status s = bp_net_save(b, path, &err);
    CHECK(s == BP_EINVAL, "save NaN net: %s (%s)", bp_status_name(s), err.message);
    size_t n2 = 0;
    uint8_t *after = read_all(path, &n2);
    CHECK(after && n2 == n0 && memcmp(before, after, n0) == 0, "old file changed by a NaN save");
    free(after);
    CHECK(temp_files_left(g_dir) == 0, "temporary file left after a refused save");

    /* 4. A failed load_weights leaves the net untouched. */
    bp_net *c = make_net(3, "dense(5) relu dense(3)", 9);
    if (c) {
        bp_net *copy = NULL;
        bp_net_clone(&copy, c, NULL);
        s = bp_net_load_weights(c, path, &err);
        CHECK(s == BP_ESHAPE, "load_weights with other shapes: %s (%s)", bp_status_name(s),
              err.message);
        CHECK(strstr(err.message, "2.weight") != NULL, "names 2.weight: %s", err.message);
        if (copy) CHECK(same_params(c, copy), "net changed by a failed load_weights");
        bp_net_free(copy);
        bp_net_free(c);
    }
    free(before);
    bp_net_free(a);
    bp_net_free(b);
}

/* ------------------------------------------------------------------------ */
/* PyTorch interop                                                           */
/* ------------------------------------------------------------------------ */

/* Read "n in out" then n rows of in inputs and out outputs. */
static int read_io(const char *path, int *n, int *in, int *out, double **x, double **y)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int c;
    while ((c = fgetc(f)) == '#')       /* comment lines */
        while ((c = fgetc(f)) != '\n' && c != EOF) {}
    if (c != EOF) ungetc(c, f);
    if (fscanf(f, "%d %d %d", n, in, out) != 3 || *n < 1 || *in < 1 || *out < 1 ||
        *n > 100000) {
        fclose(f);
        return -1;
    }
    *x = malloc(sizeof(double) * (size_t)*n * (size_t)*in);
    *y = malloc(sizeof(double) * (size_t)*n * (size_t)*out);
    for (int r = 0; r < *n; r++) {
        for (int i = 0; i < *in; i++)
            if (fscanf(f, "%lf", &(*x)[r * *in + i]) != 1) goto bad;
        for (int i = 0; i < *out; i++)
            if (fscanf(f, "%lf", &(*y)[r * *out + i]) != 1) goto bad;
    }
    fclose(f);
    return 0;
bad:
    fclose(f);
    free(*x);
    free(*y);
    return -1;
}

static void test_torch_fixture(void)
{
    const char *model = BP_SOURCE_DIR "/tests/fixtures/torch_model.safetensors";
    const char *io = BP_SOURCE_DIR "/tests/fixtures/torch_model_io.txt";
    int n, in, out;
    double *x = NULL, *y = NULL;
    CHECK(read_io(io, &n, &in, &out, &x, &y) == 0, "read %s", io);
    if (!x) return;
    CHECK(in == 4 && out == 3, "fixture widths %d %d", in, out);
    bp_error err = {0};
    bp_net *net = NULL;
    bp_status s = bp_net_create(&net, 4, "dense(8) relu dense(3)", 0, &err);
    CHECK(s == BP_OK, "%s", err.message);
    if (s == BP_OK) {
        s = bp_net_load_weights(net, model, &err);
        CHECK(s == BP_OK, "load_weights torch model: %s", err.message);
        bp_real *xb = malloc(sizeof(bp_real) * (size_t)n * 4);
        bp_real *yb = malloc(sizeof(bp_real) * (size_t)n * 3);
        for (int i = 0; i < n * 4; i++) xb[i] = (bp_real)x[i];
        CHECK(bp_forward(net, xb, n, yb, &err) == BP_OK, "%s", err.message);
        double worst = 0;
        for (int i = 0; i < n * 3; i++) {
            double d = fabs((double)yb[i] - y[i]);
            if (d > worst) worst = d;
        }
        CHECK(worst <= 1e-5, "torch outputs differ by %g", worst);
        free(xb);
        free(yb);
    }
    bp_net_free(net);

    /* A plain state dict has no spec: bp_net_load says so. */
    net = (bp_net *)1;
    s = bp_net_load(&net, model, &err);
    CHECK(s == BP_EFORMAT && net == NULL, "load torch state dict: %s", bp_status_name(s));
    CHECK(strstr(err.message, "bp_net_load_weights") != NULL, "hint: %s", err.message);

    /* Strict names and shapes. */
    bp_net *other = NULL;
    if (bp_net_create(&other, 4, "dense(8) relu dense(4)", 0, NULL) == BP_OK) {
        s = bp_net_load_weights(other, model, &err);
        CHECK(s == BP_ESHAPE, "wider output: %s (%s)", bp_status_name(s), err.message);
        CHECK(strstr(err.message, "2.weight") && strstr(err.message, "[3, 8]") &&
                  strstr(err.message, "[4, 8]"),
              "message names tensor and shapes: %s", err.message);
        bp_net_free(other);
    }
    if (bp_net_create(&other, 4, "dense(8) dense(3)", 0, NULL) == BP_OK) {
        s = bp_net_load_weights(other, model, &err);
        CHECK(s == BP_EFORMAT && strstr(err.message, "1.weight"), "no relu: %s (%s)",
              bp_status_name(s), err.message);
        bp_net_free(other);
    }
    if (bp_net_create(&other, 4, "dense(8) relu dense(3) relu dense(3)", 0, NULL) == BP_OK) {
        s = bp_net_load_weights(other, model, &err);
        CHECK(s == BP_EFORMAT && strstr(err.message, "missing tensor 4.weight"), "extra layer: %s",
              err.message);
        bp_net_free(other);
    }
    if (bp_net_create(&other, 4, "dense(8)", 0, NULL) == BP_OK) {
        s = bp_net_load_weights(other, model, &err);
        CHECK(s == BP_EFORMAT && strstr(err.message, "unexpected tensor 2."), "fewer layers: %s",
              err.message);
        bp_net_free(other);
    }
    free(x);
    free(y);
}

/* The CNN of tools/torch_interop.py (CNN_SPEC on CNN_SHAPE), both ways. */
static const char *INTEROP_CNN_SPEC =
    "conv(4,3,2,1) batchnorm relu maxpool(3,2) conv(6,3,1,1) relu avgpool(2) "
    "conv(8,3,1,1) batchnorm tanh global_avgpool flatten dropout(0.25) dense(10) "
    "batchnorm relu dense(4)";
static const bp_shape INTEROP_CNN_SHAPE = {3, {3, 20, 20}};

/* PyTorch -> C for a CNN: a torch state dict with running statistics and
 * I64 num_batches_tracked (7 training-mode batches in torch) loads into a
 * net built from the same spec and predicts what torch's eval() did. */
static void test_torch_cnn_fixture(void)
{
    const char *model = BP_SOURCE_DIR "/tests/fixtures/torch_cnn.safetensors";
    const char *io = BP_SOURCE_DIR "/tests/fixtures/torch_cnn_io.txt";
    int n, in, out;
    double *x = NULL, *y = NULL;
    CHECK(read_io(io, &n, &in, &out, &x, &y) == 0, "read %s", io);
    if (!x) return;
    CHECK(in == (int)bp_shape_size(INTEROP_CNN_SHAPE) && out == 4, "fixture widths %d %d", in,
          out);
    bp_error err = {0};
    bp_net *net = NULL;
    bp_status s = bp_net_create_shaped(&net, INTEROP_CNN_SHAPE, INTEROP_CNN_SPEC, 0, &err);
    CHECK(s == BP_OK, "%s", err.message);
    if (s == BP_OK && in == (int)bp_shape_size(INTEROP_CNN_SHAPE) && out == 4) {
        s = bp_net_load_weights(net, model, &err);
        CHECK(s == BP_OK, "load_weights torch CNN: %s", err.message);
        int counters = 0;
        for (int j = 0; j < bp_net_tensor_count(net); j++) {
            bp_tensor t;
            if (!bp_net_tensor(net, j, &t) || t.dtype != BP_DTYPE_I64) continue;
            counters++;
            CHECK(t.i64[0] == 7, "torch CNN: %s = %lld, torch says 7", t.name,
                  (long long)t.i64[0]);
        }
        CHECK(counters == 3, "torch CNN: %d num_batches_tracked, expected 3", counters);
        bp_real *xb = malloc(sizeof(bp_real) * (size_t)n * (size_t)in);
        bp_real *yb = malloc(sizeof(bp_real) * (size_t)n * (size_t)out);
        CHECK(xb && yb, "out of memory");
        if (xb && yb) {
            for (long i = 0; i < (long)n * in; i++) xb[i] = (bp_real)x[i];
            CHECK(bp_forward(net, xb, n, yb, &err) == BP_OK, "%s", err.message);
            double worst = 0;
            for (long i = 0; i < (long)n * out; i++) {
                double d = fabs((double)yb[i] - y[i]);
                if (d > worst || d != d) worst = d;
            }
            printf("torch CNN -> C: max |C - torch| = %.3g over %d outputs (tolerance 1e-5)\n",
                   worst, n * out);
            CHECK(worst <= 1e-5, "torch CNN outputs differ by %g (tolerance 1e-5)", worst);
        }
        free(xb);
        free(yb);
    }
    bp_net_free(net);
    free(x);
    free(y);
}

/* Spec using every layer kind, so the state-dict indices are non-trivial. */
static const char *INTEROP_SPEC =
    "dense(16) relu dropout(0.25) dense(12) leaky_relu(0.1) dense(10) tanh dense(8) sigmoid "
    "dense(6) identity dense(4) softmax";

static int write_interop(const char *dir)
{
    bp_error err = {0};
    bp_net *net = make_net(5, INTEROP_SPEC, 42);
    if (!net) return 1;
    bp_net_set_meta(net, "task", "classify", NULL);
    char path[1024];
    snprintf(path, sizeof path, "%s/c_model.safetensors", dir);
    if (bp_net_save(net, path, &err) != BP_OK) {
        fprintf(stderr, "%s\n", err.message);
        bp_net_free(net);
        return 1;
    }
    enum { N = 16, IN = 5, OUT = 4 };
    bp_real x[N * IN], y[N * OUT];
    uint64_t r = 7;
    for (int i = 0; i < N * IN; i++) x[i] = (bp_real)(6 * urand(&r) - 3);
    if (bp_forward(net, x, N, y, &err) != BP_OK) {
        fprintf(stderr, "%s\n", err.message);
        bp_net_free(net);
        return 1;
    }
    snprintf(path, sizeof path, "%s/c_model_io.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        bp_net_free(net);
        return 1;
    }
    fprintf(f, "# written by test_safetensors --write-interop: inputs then outputs per row\n");
    fprintf(f, "%d %d %d\n", N, IN, OUT);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < IN; k++) fprintf(f, "%.9g ", (double)x[i * IN + k]);
        for (int k = 0; k < OUT; k++) fprintf(f, "%s%.9g", k ? " " : "", (double)y[i * OUT + k]);
        fputc('\n', f);
    }
    int bad = fclose(f) != 0;
    bp_net_free(net);
    printf("wrote %s/c_model.safetensors and %s\n", dir, path);
    return bad;
}

/* The CNN for tools/torch_interop.py: trained 3 momentum steps on random
 * data (running statistics, num_batches_tracked 3), saved, and its
 * outputs on fixed inputs written. Returns non-zero on failure. */
static int write_interop_cnn(const char *dir)
{
    enum { N = 8, OUT = 4, STEPS = 3 };
    const int IN = (int)bp_shape_size(INTEROP_CNN_SHAPE);
    bp_error err = {0};
    bp_net *net = NULL;
    bp_trainer *tr = NULL;
    bp_real *x = malloc(sizeof(bp_real) * (size_t)N * (size_t)IN);
    bp_real y[N * OUT], labels[N];
    int bad = 1;
    FILE *f = NULL;
    char path[1024];
    if (!x) return 1;
    if (bp_net_create_shaped(&net, INTEROP_CNN_SHAPE, INTEROP_CNN_SPEC, 42, &err) != BP_OK)
        goto out;
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_MOMENTUM);
    cfg.lr = 0.05;
    cfg.loss = BP_LOSS_CROSS_ENTROPY;
    cfg.seed = 3;
    if (bp_trainer_create(&tr, net, &cfg, N, &err) != BP_OK) goto out;
    uint64_t r = 11;
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < N * IN; i++) x[i] = (bp_real)(4 * urand(&r) - 1.5);
        for (int i = 0; i < N; i++) labels[i] = (bp_real)(i % OUT);
        if (bp_train_step(tr, x, labels, N, NULL, &err) != BP_OK) goto out;
    }
    bp_net_set_meta(net, "task", "classify", NULL);
    snprintf(path, sizeof path, "%s/c_cnn.safetensors", dir);
    if (bp_net_save(net, path, &err) != BP_OK) goto out;
    for (int i = 0; i < N * IN; i++) x[i] = (bp_real)(4 * urand(&r) - 1.5);
    if (bp_forward(net, x, N, y, &err) != BP_OK) goto out;
    snprintf(path, sizeof path, "%s/c_cnn_io.txt", dir);
    f = fopen(path, "w");
    if (!f) {
        snprintf(err.message, sizeof err.message, "%.400s: cannot open", path);
        goto out;
    }
    fprintf(f, "# written by test_safetensors --write-interop: the CNN %s on [3, 20, 20] "
            "after %d training steps; inputs (C*H*W) then outputs per row\n",
            INTEROP_CNN_SPEC, STEPS);
    fprintf(f, "%d %d %d\n", N, IN, OUT);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < IN; k++) fprintf(f, "%.9g ", (double)x[i * IN + k]);
        for (int k = 0; k < OUT; k++) fprintf(f, "%s%.9g", k ? " " : "", (double)y[i * OUT + k]);
        fputc('\n', f);
    }
    bad = fclose(f) != 0;
    f = NULL;
    if (!bad) printf("wrote %s/c_cnn.safetensors and %s\n", dir, path);
out:
    if (bad && err.message[0]) fprintf(stderr, "%s\n", err.message);
    bp_trainer_free(tr);
    bp_net_free(net);
    free(x);
    return bad;
}

/* A recurrent model for tools/torch_interop.py: `spec` on per-sample
 * inputs `shape` ([T, F], or [T] token ids 0..vocab-1 when vocab > 0),
 * trained 3 Adam steps on random data (targets: a class per sample after
 * `last`, else one per step), saved as DIR/NAME.safetensors, and its
 * outputs on fresh inputs written to DIR/NAME_io.txt (inputs then the
 * outputs, [T, K] or [K] flattened, per row). Returns non-zero on failure. */
static int write_interop_rnn(const char *dir, const char *name, const char *spec,
                             bp_shape shape, int vocab, uint64_t seed)
{
    enum { N = 6, STEPS = 3 };
    bp_error err = {0};
    bp_net *net = NULL;
    bp_trainer *tr = NULL;
    bp_real *x = NULL, *y = NULL, *t = NULL;
    int bad = 1;
    FILE *f = NULL;
    char path[1024];
    if (bp_net_create_shaped(&net, shape, spec, seed, &err) != BP_OK) goto out;
    const int IN = (int)bp_shape_size(shape), OUT = bp_net_outputs(net);
    const int K = bp_net_layer(net, bp_net_layers(net) - 1).units;
    const int TS = bp_net_loss_steps(net, BP_LOSS_CROSS_ENTROPY);
    x = malloc(sizeof(bp_real) * (size_t)N * (size_t)IN);
    y = malloc(sizeof(bp_real) * (size_t)N * (size_t)OUT);
    t = malloc(sizeof(bp_real) * (size_t)N * (size_t)TS);
    if (!x || !y || !t) {
        snprintf(err.message, sizeof err.message, "out of memory");
        goto out;
    }
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.lr = 0.05;
    cfg.loss = BP_LOSS_CROSS_ENTROPY;
    if (bp_trainer_create(&tr, net, &cfg, N, &err) != BP_OK) goto out;
    uint64_t r = seed * 17 + 5;
    for (int s = 0; s <= STEPS; s++) { /* the last pass draws the inputs written */
        for (int i = 0; i < N * IN; i++)
            x[i] = vocab > 0 ? (bp_real)(int)(urand(&r) * vocab) : (bp_real)(4 * urand(&r) - 2);
        if (s == STEPS) break;
        for (int i = 0; i < N * TS; i++) t[i] = (bp_real)(int)(urand(&r) * K);
        if (bp_train_step(tr, x, t, N, NULL, &err) != BP_OK) goto out;
    }
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    if (bp_net_save(net, path, &err) != BP_OK) goto out;
    if (bp_forward(net, x, N, y, &err) != BP_OK) goto out;
    snprintf(path, sizeof path, "%s/%s_io.txt", dir, name);
    f = fopen(path, "w");
    if (!f) {
        snprintf(err.message, sizeof err.message, "%.400s: cannot open", path);
        goto out;
    }
    fprintf(f, "# written by test_safetensors --write-interop: %s after %d Adam steps; "
            "inputs (%s) then outputs per row\n", spec, STEPS, vocab > 0 ? "token ids" : "T*F");
    fprintf(f, "%d %d %d\n", N, IN, OUT);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < IN; k++) fprintf(f, "%.9g ", (double)x[i * IN + k]);
        for (int k = 0; k < OUT; k++) fprintf(f, "%s%.9g", k ? " " : "", (double)y[i * OUT + k]);
        fputc('\n', f);
    }
    bad = fclose(f) != 0;
    f = NULL;
    if (!bad) printf("wrote %s/%s.safetensors and %s\n", dir, name, path);
out:
    if (bad && err.message[0]) fprintf(stderr, "%s: %s\n", name, err.message);
    bp_trainer_free(tr);
    bp_net_free(net);
    free(x);
    free(y);
    free(t);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-interop") == 0)
        return write_interop(argv[2]) || write_interop_cnn(argv[2]) ||
               write_interop_rnn(argv[2], "c_lm", "embedding(6,20) lstm(16) dense(20)",
                                 bp_shape_flat(9), 20, 5) ||
               write_interop_rnn(argv[2], "c_gru", "gru(8) last dense(3)",
                                 (bp_shape){2, {7, 4, 0}}, 0, 6);
    snprintf(g_dir, sizeof g_dir, "st_tmp_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_file_bytes();
    test_rejections();
    test_random_bytes();
    test_paths();
    test_atomic();
    test_torch_fixture();
    test_torch_cnn_fixture();

    /* Clean the scratch directory. */
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.') unlink(path_in(e->d_name));
        closedir(d);
    }
    rmdir(g_dir);
    return check_done("test_safetensors");
}
