/*
 * bench_common.h - small helpers shared by the C benchmark programs:
 * a monotonic clock, the seeded generator behind the W2 synthetic data
 * (bench_torch.py reproduces it bit for bit), repetition statistics and
 * peak RSS. Header-only so that each program stays one translation unit.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#define BENCH_DEFAULT_DATA "/usr/share/datasets/fashion-mnist"
#define BENCH_DEFAULT_TEXT "/usr/share/games/fortunes" /* Debian package fortunes */
#define BENCH_TEXT_VOCAB 96
#define BENCH_MAX_REPS 32

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Peak resident set size of this process in KiB (Linux reports KiB). */
static inline long bench_peak_rss_kb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return ru.ru_maxrss;
}

/* splitmix64: the k-th output (k = 0, 1, ...) of a stream seeded with s is
 * mix(s + (k + 1) * GAMMA), which numpy can compute vectorized. */
static inline uint64_t bench_splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 24 random bits (exact in float32). */
static inline double bench_uniform(uint64_t *s)
{
    return (double)(bench_splitmix(s) >> 40) * (1.0 / 16777216.0);
}

/* W2's synthetic regression set: rows x [n, 10] uniform in [-1, 1),
 * y [n, 1] a smooth nonlinear function of x. Generated row by row from
 * one splitmix64 stream seeded with `seed` (10 draws per row). */
static inline void bench_w2_data(int n, uint64_t seed, float *x, float *y)
{
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        double v[10];
        for (int j = 0; j < 10; j++) {
            v[j] = 2.0 * bench_uniform(&s) - 1.0;
            x[(size_t)i * 10 + j] = (float)v[j];
        }
        double t = sin(3.0 * (double)(float)v[0]) + (double)(float)v[1] * (double)(float)v[2] -
                   0.5 * (double)(float)v[3] * (double)(float)v[3];
        for (int j = 4; j < 10; j++) t += 0.1 * (double)(float)v[j];
        y[i] = (float)t;
    }
}

/* In-place Fisher-Yates shuffle of perm[0..n) with the splitmix stream. */
static inline void bench_shuffle(int *perm, int n, uint64_t *s)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(bench_splitmix(s) % (uint64_t)(i + 1));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static inline int bench_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* W7's text as token ids (bench_torch.py reads it the same way): every
 * regular file of `dir` (not a symbolic link, not *.dat or *.u8) in byte
 * order of their names, concatenated; '\n' is id 0, the printable ASCII
 * bytes 32..126 are ids 1..95 (BENCH_TEXT_VOCAB = 96), a tab counts as a
 * space and every other byte (backspace overstrikes, UTF-8) is dropped.
 * Returns a malloc'ed array of *n ids, or NULL. */
static inline unsigned char *bench_text_ids(const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char *names[1024];
    int k = 0;
    struct dirent *e;
    while ((e = readdir(d)) && k < 1024) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || (len > 4 && (!strcmp(e->d_name + len - 4, ".dat"))) ||
            (len > 3 && !strcmp(e->d_name + len - 3, ".u8")))
            continue;
        names[k++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)k, sizeof *names, bench_cmp_str);
    unsigned char *ids = NULL;
    size_t cap = 0, m = 0;
    for (int i = 0; i < k; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        free(names[i]);
        if (lstat(path, &st) || !S_ISREG(st.st_mode)) continue;
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        int c;
        while ((c = getc(f)) != EOF) {
            if (c == '\t') c = ' ';
            if (c != '\n' && (c < 32 || c > 126)) continue;
            if (m == cap) {
                cap = cap ? 2 * cap : 1 << 20;
                unsigned char *t = realloc(ids, cap);
                if (!t) {
                    free(ids);
                    fclose(f);
                    for (int j = i + 1; j < k; j++) free(names[j]);
                    return NULL;
                }
                ids = t;
            }
            ids[m++] = (unsigned char)(c == '\n' ? 0 : c - 31);
        }
        fclose(f);
    }
    *n = m;
    return ids;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Best (largest) and median of `n` rates. */
static inline void bench_stats(const double *rate, int n, double *best, double *median)
{
    double tmp[BENCH_MAX_REPS];
    memcpy(tmp, rate, (size_t)n * sizeof *tmp);
    qsort(tmp, (size_t)n, sizeof *tmp, bench_cmp_double);
    *best = tmp[n - 1];
    *median = n % 2 ? tmp[n / 2] : 0.5 * (tmp[n / 2 - 1] + tmp[n / 2]);
}

/* Print the rates of the repetitions as a JSON array (no trailing comma). */
static inline void bench_print_rates(const double *rate, int n)
{
    printf("[");
    for (int i = 0; i < n; i++) printf("%s%.6g", i ? "," : "", rate[i]);
    printf("]");
}

#endif
