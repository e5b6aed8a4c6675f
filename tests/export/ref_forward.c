/*
 * ref_forward.c - the library's own inference (bp_forward) on the samples
 * an exported network's driver reads, for models `backprop predict` does
 * not take (text models); built by tests/CMakeLists.txt as export_ref.
 *
 *   export_ref MODEL SAMPLES.f32          outputs, one sample a line ("%.9g")
 *   export_ref --ids MODEL N OUT.f32      N random sequences of token ids of
 *                                         the model's first layer (embedding)
 *   export_ref --make SPEC INPUTS OUT [LAYER:WSCALE:BIAS]...
 *                                         a network of SPEC on INPUTS features,
 *                                         weights drawn from seed 11, saved to OUT
 *                                         (a spec the command line cannot train,
 *                                         e.g. one that ends in softmax); each
 *                                         LAYER:WSCALE:BIAS scales a dense or conv
 *                                         layer's weights and sets its biases
 */
#include "backprop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    bp_error err = {0};
    bp_net *net = NULL;
    if (argc >= 5 && !strcmp(argv[1], "--make")) {
        if (bp_net_create(&net, atoi(argv[3]), argv[2], 11, &err) != BP_OK) {
            fprintf(stderr, "export_ref: %s\n", err.message);
            return 1;
        }
        /* LAYER:WSCALE:BIAS: layer's weights times WSCALE, every bias BIAS */
        for (int a = 5; a < argc; a++) {
            int li;
            double ws, bias;
            if (sscanf(argv[a], "%d:%lf:%lf", &li, &ws, &bias) != 3 || li < 0 ||
                li >= bp_net_layers(net) || !bp_net_weight(net, li)) {
                fprintf(stderr, "export_ref: bad LAYER:WSCALE:BIAS '%s'\n", argv[a]);
                return 2;
            }
            bp_layer_desc d = bp_net_layer(net, li);
            size_t nb = (size_t)d.units, nw = bp_net_layer_param_count(net, li) - nb;
            for (size_t k = 0; k < nw; k++) bp_net_weight(net, li)[k] *= (bp_real)ws;
            for (size_t k = 0; k < nb; k++) bp_net_bias(net, li)[k] = (bp_real)bias;
        }
        if (bp_net_save(net, argv[4], &err) != BP_OK) {
            fprintf(stderr, "export_ref: %s\n", err.message);
            return 1;
        }
        bp_net_free(net);
        return 0;
    }
    int ids = argc == 5 && !strcmp(argv[1], "--ids");
    if (!ids && argc != 3) {
        fprintf(stderr, "usage: export_ref MODEL SAMPLES.f32 | --ids MODEL N OUT.f32\n");
        return 2;
    }
    if (bp_net_load(&net, argv[ids ? 2 : 1], &err) != BP_OK) {
        fprintf(stderr, "export_ref: %s\n", err.message);
        return 1;
    }
    int in = bp_net_inputs(net), outs = bp_net_outputs(net);
    if (ids) {
        int n = atoi(argv[3]), V = bp_net_layer(net, 0).vocab;
        FILE *f = fopen(argv[4], "wb");
        if (!f || n < 1 || V < 1) return 1;
        unsigned s = 12345;
        for (long k = 0; k < (long)n * in; k++) {
            s = s * 1103515245u + 12345u;
            float v = (float)((s >> 16) % (unsigned)V);
            fwrite(&v, sizeof v, 1, f);
        }
        fclose(f);
        bp_net_free(net);
        return 0;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) return 1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    int n = (int)((size_t)size / (sizeof(float) * (size_t)in));
    float *x = malloc((size_t)size + 1);
    bp_real *xr = malloc((size_t)n * in * sizeof *xr + 1), *y = malloc((size_t)n * outs * sizeof *y + 1);
    if (!x || !xr || !y || fread(x, sizeof(float), (size_t)n * in, f) != (size_t)n * in) return 1;
    fclose(f);
    for (long k = 0; k < (long)n * in; k++) xr[k] = x[k];
    if (bp_forward(net, xr, n, y, &err) != BP_OK) {
        fprintf(stderr, "export_ref: %s\n", err.message);
        return 1;
    }
    for (int r = 0; r < n; r++)
        for (int j = 0; j < outs; j++)
            printf("%.9g%c", (double)y[(size_t)r * outs + j], j + 1 < outs ? ',' : '\n');
    free(x), free(xr), free(y);
    bp_net_free(net);
    return 0;
}
