/*
 * fuzz_safetensors.c - libFuzzer target for the model-file loader.
 *
 * Feeds the input to bp_net_load_buffer (full validation, network built
 * from the "spec" metadata) and to bp_net_load_weights_buffer (into a fixed
 * small network). Properties checked beyond "no crash, no leak":
 *   - on failure *out is NULL and the message is set;
 *   - a failed load_weights leaves the network's parameters unchanged;
 *   - a loaded network saves, and the saved image loads back to the same
 *     spec and bit-identical parameters.
 * Seed corpus: fuzz/corpus/safetensors/ (replayed by ctest in every build).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define REQUIRE(c) do { if (!(c)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bp_error err;
    memset(&err, 0, sizeof err);
    bp_net *net = (bp_net *)&err;   /* must be overwritten */
    bp_status s = bp_net_load_buffer(&net, data, size, "fuzz", &err);
    if (s != BP_OK) {
        REQUIRE(net == NULL);
        REQUIRE(err.code == s && err.message[0] != '\0');
    } else {
        REQUIRE(net != NULL);
        uint8_t *img = NULL;
        size_t img_size = 0;
        if (bp_net_save_buffer(net, &img, &img_size, &err) == BP_OK) {
            bp_net *back = NULL;
            REQUIRE(bp_net_load_buffer(&back, img, img_size, "resaved", &err) == BP_OK);
            REQUIRE(strcmp(bp_net_spec(back), bp_net_spec(net)) == 0);
            REQUIRE(back->n_params == net->n_params);
            REQUIRE(net->n_params == 0 ||
                    memcmp(back->params, net->params, net->n_params * sizeof(bp_real)) == 0);
            bp_net_free(back);
            free(img);
        }
        bp_net_free(net);
    }

    /* Strict load into a fixed network; untouched on failure. */
    bp_net *fixed = NULL;
    if (bp_net_create(&fixed, 2, "dense(3) relu dense(2)", 1, NULL) == BP_OK) {
        bp_real before[64];
        size_t n = fixed->n_params;
        REQUIRE(n <= 64);
        memcpy(before, fixed->params, n * sizeof(bp_real));
        s = bp_net_load_weights_buffer(fixed, data, size, "fuzz", &err);
        if (s != BP_OK) REQUIRE(memcmp(before, fixed->params, n * sizeof(bp_real)) == 0);
        bp_net_free(fixed);
    }
    return 0;
}
