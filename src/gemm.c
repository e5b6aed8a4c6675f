/*
 * gemm.c - the one place matrix products happen.
 *
 * C [M, N] = alpha op(A) op(B) + beta C, all row-major. The float build
 * calls oneDNN's dnnl_sgemm (AVX-512 kernels chosen at run time, OpenMP
 * threads); the double build, used for gradient checks, runs the reference
 * loop. bp_gemm_ref stays in every build so tests can compare the two.
 */
#include "internal.h"

#include <omp.h>

#ifndef BP_DOUBLE
#include <oneapi/dnnl/dnnl.h>
#endif

void bp_gemm_ref(int trans_a, int trans_b, int M, int N, int K, bp_real alpha,
                 const bp_real *A, int lda, const bp_real *B, int ldb,
                 bp_real beta, bp_real *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0;
            for (int k = 0; k < K; k++) {
                bp_real a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                bp_real b = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += (double)a * b;
            }
            bp_real *c = &C[(size_t)i * ldc + j];
            *c = (bp_real)(alpha * acc + (beta == 0 ? 0 : beta * *c));
        }
}

void bp_gemm(int trans_a, int trans_b, int M, int N, int K, bp_real alpha,
             const bp_real *A, int lda, const bp_real *B, int ldb,
             bp_real beta, bp_real *C, int ldc)
{
#ifdef BP_DOUBLE
    bp_gemm_ref(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    /* Arguments are valid by construction (callers size every buffer), so
     * dnnl_sgemm cannot fail here; its status only reports bad arguments. */
    (void)dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb,
                     beta, C, ldc);
#endif
}

void bp_set_threads(int n)
{
    omp_set_num_threads(n > 0 ? n : omp_get_num_procs());
}
