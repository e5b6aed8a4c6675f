/*
 * fuzz_spec.c - libFuzzer target for the architecture spec parser and the
 * shape inference of bp_net_create_shaped.
 *
 * The input (up to 2,000 bytes, cut at the first NUL) is one spec. It goes
 * through bp_spec_parse (counting only, then into a buffer) and, when the
 * layers are small enough to build quickly (at most 16 layers, widths and
 * channels <= 32, conv padding <= 1), through bp_net_create_shaped on each of a fixed set of
 * input shapes: flat [10], a sequence [4, 6], images [1, 8, 8] and
 * [3, 5, 5]. Properties checked beyond "no crash, no leak, no undefined
 * behaviour":
 *   - a failure returns BP_ESPEC (or BP_ENOMEM) with err.code equal to it
 *     and a message "spec:1:COL: ..." whose column is in 1..len+1, and
 *     leaves *out NULL;
 *   - a parse success gives 1..BP's layer limit layers, the same count both
 *     times, and descriptions with kind in range;
 *   - a network's layer count is the parse count (plus inserted flattens),
 *     every layer's output shape has rank 1..3 and positive dimensions, the
 *     parameter count is the sum of the layers', the tensors cover it, and
 *     the canonical spec bp_net_spec builds the same network again (same
 *     spec, same parameter count, same output shape);
 *   - a forward pass of 2 zero samples gives finite outputs.
 * Seed corpus: fuzz/corpus/spec/ (replayed by ctest in every build).
 */
#include "backprop.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c) do { if (!(c)) __builtin_trap(); } while (0)
#define MAX_BYTES 2000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A failure: the status, err.code and a "spec:1:COL: " message. */
static void check_error(bp_status s, const bp_error *err, size_t len)
{
    REQUIRE(s == BP_ESPEC || s == BP_ENOMEM);
    REQUIRE(err->code == s);
    REQUIRE(memchr(err->message, '\0', sizeof err->message) != NULL);
    if (s != BP_ESPEC) return;
    int col = 0, used = 0;
    REQUIRE(sscanf(err->message, "spec:1:%d: %n", &col, &used) == 1 && used > 0);
    REQUIRE(col >= 1 && (size_t)col <= len + 1);
}

static int same_shape(bp_shape a, bp_shape b)
{
    if (a.rank != b.rank) return 0;
    for (int k = 0; k < a.rank; k++)
        if (a.dim[k] != b.dim[k]) return 0;
    return 1;
}

static void check_net(bp_net *net, int n_parsed, bp_shape in)
{
    int nl = bp_net_layers(net);
    REQUIRE(nl >= n_parsed);
    REQUIRE(same_shape(bp_net_input_shape(net), in));
    size_t total = 0;
    for (int i = 0; i < nl; i++) {
        bp_shape sh = bp_net_layer_shape(net, i);
        REQUIRE(sh.rank >= 1 && sh.rank <= BP_MAX_RANK);
        for (int k = 0; k < sh.rank; k++) REQUIRE(sh.dim[k] >= 1);
        size_t pc = bp_net_layer_param_count(net, i);
        REQUIRE(pc == 0 || bp_layer_is_parametric(bp_net_layer(net, i).kind));
        total += pc;
    }
    REQUIRE(total == bp_net_param_count(net));
    REQUIRE((size_t)bp_net_outputs(net) == bp_shape_size(bp_net_layer_shape(net, nl - 1)));
    REQUIRE(bp_net_inputs(net) == (int)bp_shape_size(in));
    size_t trainable = 0;
    bp_tensor t;
    for (int j = 0; bp_net_tensor(net, j, &t); j++) {
        REQUIRE(t.layer >= 0 && t.layer < nl && t.rank >= 0 && t.rank <= 4);
        REQUIRE(t.dtype == BP_DTYPE_I64 ? t.i64 != NULL : t.data != NULL);
        if (t.trainable) trainable += t.count;
    }
    REQUIRE(trainable == total);

    /* The canonical spec builds the same network. */
    bp_net *again = NULL;
    bp_error err = {0};
    bp_status s = bp_net_create_shaped(&again, in, bp_net_spec(net), 1, &err);
    if (s == BP_ENOMEM) return;
    REQUIRE(s == BP_OK && again);
    REQUIRE(strcmp(bp_net_spec(again), bp_net_spec(net)) == 0);
    REQUIRE(bp_net_param_count(again) == total && bp_net_layers(again) == nl);
    REQUIRE(same_shape(bp_net_layer_shape(again, nl - 1), bp_net_layer_shape(net, nl - 1)));
    bp_net_free(again);

    /* Zero inputs give finite outputs. */
    int in_n = bp_net_inputs(net), out_n = bp_net_outputs(net);
    bp_real *x = calloc((size_t)2 * in_n, sizeof *x);
    bp_real *y = malloc((size_t)2 * out_n * sizeof *y);
    if (x && y && bp_forward(net, x, 2, y, &err) == BP_OK)
        for (int k = 0; k < 2 * out_n; k++) REQUIRE(isfinite(y[k]));
    free(x);
    free(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_BYTES) size = MAX_BYTES;
    char spec[MAX_BYTES + 1];
    memcpy(spec, data, size);
    spec[size] = '\0';
    size_t len = strlen(spec);

    bp_error err = {0};
    int n = -1;
    bp_status s = bp_spec_parse(spec, NULL, 0, &n, &err);
    if (s != BP_OK) {
        check_error(s, &err, len);
        /* Building fails the same way (shapes come after parsing). */
        bp_net *net = (bp_net *)&n;
        bp_error e2 = {0};
        bp_status s2 = bp_net_create_shaped(&net, bp_shape_flat(10), spec, 1, &e2);
        REQUIRE(s2 == s && net == NULL && strcmp(e2.message, err.message) == 0);
        return 0;
    }
    REQUIRE(n >= 1);
    bp_layer_desc *d = calloc((size_t)n, sizeof *d);
    if (!d) return 0;
    int n2 = -1;
    REQUIRE(bp_spec_parse(spec, d, n, &n2, &err) == BP_OK && n2 == n);
    int small = n <= 16;
    for (int i = 0; i < n; i++) {
        REQUIRE(d[i].kind >= BP_DENSE && d[i].kind <= BP_BATCHNORM);
        /* Bounded sizes: widths and channels <= 32, conv padding <= 1 (each
         * conv then grows an image by at most 2 pixels), so 16 layers on
         * [3, 8, 8] stay below a few MB of parameters. */
        if ((d[i].kind == BP_DENSE || d[i].kind == BP_CONV) && d[i].units > 32) small = 0;
        if (d[i].kind == BP_CONV && d[i].pad > 1) small = 0;
    }
    free(d);
    if (!small) return 0;

    static const bp_shape shapes[] = {
        {1, {10, 0, 0}}, {2, {4, 6, 0}}, {3, {1, 8, 8}}, {3, {3, 5, 5}},
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        bp_net *net = (bp_net *)&n; /* must be overwritten */
        bp_error e = {0};
        s = bp_net_create_shaped(&net, shapes[k], spec, 7, &e);
        if (s != BP_OK) {
            REQUIRE(net == NULL);
            check_error(s, &e, len);
            continue;
        }
        REQUIRE(net != NULL);
        check_net(net, n, shapes[k]);
        bp_net_free(net);
    }
    return 0;
}
