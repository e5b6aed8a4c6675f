/*
 * driver.c - runs a network exported by `backprop export --c` on a file of
 * raw float32 samples and prints its outputs, one sample a line ("%.9g",
 * comma-separated: the floats exactly).
 *
 *   cc -std=c99 -DM=NAME -DHEADER='"DIR/NAME.h"' driver.c DIR/NAME.c -lm
 *   ./a.out SAMPLES.f32 [int8] [time]
 *
 * SAMPLES.f32 holds N * NAME_INPUTS little-endian float32 values. "int8"
 * runs NAME_predict_int8 (the export must have been made with --int8);
 * "time" prints only the mean time per sample in microseconds (stdout).
 */
#define _POSIX_C_SOURCE 199309L
#include HEADER

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define PREDICT CAT(M, _predict)
#define PREDICT8 CAT(M, _predict_int8)
#define INPUTS CAT(M, _INPUTS)
#define OUTPUTS CAT(M, _OUTPUTS)

#ifdef INT8
static void predict8(const float *in, float *out) { PREDICT8(in, out); }
#else
static void predict8(const float *in, float *out)
{
    (void)in, (void)out;
    fprintf(stderr, "driver: built without -DINT8\n");
    exit(2);
}
#endif

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: driver SAMPLES.f32 [int8] [time]\n");
        return 2;
    }
    int int8 = 0, timing = 0;
    for (int k = 2; k < argc; k++) {
        if (!strcmp(argv[k], "int8")) int8 = 1;
        else if (!strcmp(argv[k], "time")) timing = 1;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    size_t n = (size_t)size / (sizeof(float) * INPUTS);
    float *x = malloc((size_t)size + 1), *y = malloc(n * OUTPUTS * sizeof(float) + 1);
    if (!x || !y || fread(x, sizeof(float), n * INPUTS, f) != n * INPUTS) {
        fprintf(stderr, "driver: cannot read %s\n", argv[1]);
        return 1;
    }
    fclose(f);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t r = 0; r < n; r++) {
        if (int8) predict8(x + r * INPUTS, y + r * OUTPUTS);
        else PREDICT(x + r * INPUTS, y + r * OUTPUTS);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (timing) {
        double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3;
        printf("%.2f\n", us / (double)n);
    } else {
        for (size_t r = 0; r < n; r++)
            for (int j = 0; j < OUTPUTS; j++)
                printf("%.9g%c", y[r * OUTPUTS + j], j + 1 < OUTPUTS ? ',' : '\n');
    }
    free(x);
    free(y);
    return 0;
}
