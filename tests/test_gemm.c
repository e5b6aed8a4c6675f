/* test_gemm.c - both GEMM library paths against the reference loop: the
 * dnnl_sgemm path for every transpose combination, odd shapes and beta in
 * {0, 1}; the prepared matmul primitives (with and without bias); and a
 * network trained with primitives against the same network on sgemm. */
#include "internal.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void fill(bp_real *a, size_t m, uint64_t *s)
{
    for (size_t i = 0; i < m; i++)
        a[i] = (bp_real)((*s = *s * 6364136223846793005ULL + 1442695040888963407ULL) >> 40) / (1 << 24) - 0.5f;
}

static void test_prepared(void)
{
    bp_gemm_ctx *ctx = bp_gemm_ctx_create();
    CHECK(ctx != NULL, "matmul primitives available in the float build");
    if (!ctx) return;
    CHECK(bp_mm_create(ctx, 0, 1, 4, 4, 4, 0) == NULL, "tiny shapes stay on sgemm");
    const int shapes[][3] = {{128, 256, 784}, {256, 784, 128}, {37, 129, 65}, {10, 128, 128}, {128, 10, 128}};
    uint64_t s = 99;
    for (size_t q = 0; q < sizeof shapes / sizeof shapes[0]; q++) {
        int M = shapes[q][0], N = shapes[q][1], K = shapes[q][2];
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int bias = 0; bias < 2; bias++) {
                    bp_real *A = malloc(sizeof(bp_real) * M * K), *B = malloc(sizeof(bp_real) * K * N);
                    bp_real *b = malloc(sizeof(bp_real) * N);
                    bp_real *C1 = malloc(sizeof(bp_real) * M * N), *C2 = malloc(sizeof(bp_real) * M * N);
                    fill(A, (size_t)M * K, &s);
                    fill(B, (size_t)K * N, &s);
                    fill(b, (size_t)N, &s);
                    for (int i = 0; i < M * N; i++) C1[i] = NAN; /* every element must be written */
                    bp_mm *mm = bp_mm_create(ctx, ta, tb, M, N, K, bias);
                    CHECK(mm != NULL, "primitive %dx%dx%d ta=%d tb=%d bias=%d created", M, N, K, ta, tb, bias);
                    if (!mm) continue;
                    CHECK(bp_mm_run(mm, A, B, bias ? b : NULL, C1), "primitive runs");
                    for (int i = 0; i < M; i++) memcpy(C2 + (size_t)i * N, b, sizeof(bp_real) * N);
                    bp_gemm_ref(ta, tb, M, N, K, 1, A, ta ? M : K, B, tb ? K : N, bias ? 1 : 0, C2, N);
                    double worst = 0;
                    for (int i = 0; i < M * N; i++) {
                        double d = fabs((double)C1[i] - C2[i]);
                        if (!(d <= worst)) worst = d;
                    }
                    CHECK(worst < 1e-4 * sqrt((double)K), "primitive %dx%dx%d ta=%d tb=%d bias=%d: max diff %g", M,
                          N, K, ta, tb, bias, worst);
                    bp_mm_free(mm);
                    free(A);
                    free(B);
                    free(b);
                    free(C1);
                    free(C2);
                }
    }
    bp_gemm_ctx_free(ctx);
}

/* The same training run on prepared primitives and on plain sgemm (the
 * environment switch BP_GEMM=sgemm, read when a net first prepares). */
static void test_net_paths(void)
{
    bp_real w[2][10 * 64];
    bp_real x[96 * 200], y[96];
    uint64_t s = 5;
    fill(x, sizeof x / sizeof x[0], &s);
    for (int i = 0; i < 96; i++) y[i] = (bp_real)(i % 10);
    for (int path = 0; path < 2; path++) {
        if (path == 1) setenv("BP_GEMM", "sgemm", 1);
        bp_error err;
        bp_net *net = NULL;
        bp_net_create(&net, 200, "dense(128) relu dense(64) tanh dense(10)", 3, &err);
        bp_train_config cfg;
        bp_train_config_default(&cfg, BP_ADAM);
        cfg.batch_size = 32;
        cfg.epochs = 3;
        cfg.shuffle = 0;
        bp_trainer *tr = NULL;
        bp_trainer_create(&tr, net, &cfg, 32, &err);
        bp_data d = {96, 200, 1, 10, x, y, NULL, 0, {0, {0}}};
        CHECK(bp_fit(tr, &d, NULL, NULL, &err) == BP_OK, "%s", err.message);
        CHECK((path == 0) == (net->gemm != NULL), "path %d: primitives %s", path, path ? "off" : "on");
        memcpy(w[path], bp_net_weight(net, 4), sizeof w[path]);
        bp_trainer_free(tr);
        bp_net_free(net);
    }
    unsetenv("BP_GEMM");
    double worst = 0;
    for (int i = 0; i < 10 * 64; i++) worst = fmax(worst, fabs((double)w[0][i] - w[1][i]));
    CHECK(worst < 1e-4, "primitives vs sgemm after 9 Adam steps: max weight difference %g", worst);
}

int main(void)
{
    const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 33, 9}, {128, 256, 784}, {64, 10, 128}, {1, 300, 2}};
    uint64_t s = 12345;
    for (size_t q = 0; q < sizeof shapes / sizeof shapes[0]; q++) {
        int M = shapes[q][0], N = shapes[q][1], K = shapes[q][2];
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int beta = 0; beta < 2; beta++) {
                    bp_real *A = malloc(sizeof(bp_real) * M * K), *B = malloc(sizeof(bp_real) * K * N);
                    bp_real *C1 = malloc(sizeof(bp_real) * M * N), *C2 = malloc(sizeof(bp_real) * M * N);
                    for (int i = 0; i < M * K; i++) A[i] = (bp_real)((s = s * 6364136223846793005ULL + 1) >> 40) / (1 << 24) - 0.5f;
                    for (int i = 0; i < K * N; i++) B[i] = (bp_real)((s = s * 6364136223846793005ULL + 1) >> 40) / (1 << 24) - 0.5f;
                    for (int i = 0; i < M * N; i++) C1[i] = C2[i] = (bp_real)i / (M * N);
                    int lda = ta ? M : K, ldb = tb ? K : N;
                    bp_gemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, (bp_real)beta, C1, N);
                    bp_gemm_ref(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, (bp_real)beta, C2, N);
                    double worst = 0;
                    for (int i = 0; i < M * N; i++) worst = fmax(worst, fabs((double)C1[i] - C2[i]));
                    CHECK(worst < 1e-4 * sqrt((double)K), "gemm %dx%dx%d ta=%d tb=%d beta=%d: max diff %g", M,
                          N, K, ta, tb, beta, worst);
                    free(A);
                    free(B);
                    free(C1);
                    free(C2);
                }
    }
    test_prepared();
    test_net_paths();
    return check_done("test_gemm");
}
