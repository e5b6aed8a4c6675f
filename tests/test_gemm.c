/* test_gemm.c - the GEMM library path against the reference loop, for
 * every transpose combination, odd shapes and beta in {0, 1}. */
#include "internal.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>

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
    return check_done("test_gemm");
}
