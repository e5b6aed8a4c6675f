/*
 * gemm.c - the one place matrix products happen.
 *
 * C [M, N] = alpha op(A) op(B) + beta C, all row-major. The float build
 * calls oneDNN: dnnl_sgemm for any shape (bp_gemm), and matmul primitives
 * prepared for fixed shapes (bp_mm_*), which scale better on two threads.
 * The double build, used for gradient checks, runs the reference loop.
 * bp_gemm_ref stays in every build so tests can compare the paths.
 */
#include "internal.h"
#include "cnn_kernels.h"

#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    /* oneDNN runs on omp_get_max_threads() threads, read at the call: set
     * it to what this product's size is worth, and back. Arguments are
     * valid by construction (callers size every buffer), so dnnl_sgemm
     * cannot fail here; its status only reports bad arguments. */
    int old = omp_get_max_threads();
    int t = bp_threads_for(2.0 * M * N * K, BP_GEMM_GRAIN);
    if (t != old) omp_set_num_threads(t);
    (void)dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb,
                     beta, C, ldc);
    if (t != old) omp_set_num_threads(old);
#endif
}

/* ------------------------------------------------------------------------ */
/* Thread counts                                                             */
/* ------------------------------------------------------------------------ */

/* Cores this process may run on: the CPU affinity mask (omp_get_num_procs
 * counts it), lowered by a cgroup v2 CPU quota ("cpu.max": QUOTA PERIOD,
 * e.g. a container limited to 1.5 CPUs gets 2). More threads than this
 * only take turns on the same cores: every barrier then waits for a thread
 * the scheduler has parked. Computed once. */
static int g_cores;
static pthread_once_t g_cores_once = PTHREAD_ONCE_INIT;

static void count_cores(void)
{
    int n = omp_get_num_procs();
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f) {
        char quota[32];
        long period = 0;
        if (fscanf(f, "%31s %ld", quota, &period) == 2 && strcmp(quota, "max") != 0 && period > 0) {
            long q = strtol(quota, NULL, 10);
            long c = q > 0 ? (q + period - 1) / period : 1;
            if (c < n) n = (int)c;
        }
        fclose(f);
    }
    g_cores = n > 0 ? n : 1;
}

int bp_cores(void)
{
    pthread_once(&g_cores_once, count_cores);
    return g_cores;
}

/* bp_set_threads' value (0: not set, OpenMP's own default applies). */
static int g_threads;

int bp_set_threads(int n)
{
    int c = bp_cores();
    n = n <= 0 || n > c ? c : n;
    g_threads = n;
    omp_set_num_threads(n);
    return n;
}

int bp_threads_max(void)
{
    int n = g_threads > 0 ? g_threads : omp_get_max_threads();
    int c = bp_cores();
    if (n > c) n = c;
    return n > 0 ? n : 1;
}

int bp_threads_for(double work, double grain)
{
    int max = bp_threads_max();
    if (max <= 1 || !(work >= 2 * grain)) return 1;
    double t = work / grain;
    return t < max ? (int)t : max;
}

/* ------------------------------------------------------------------------ */
/* Prepared matmul primitives                                                */
/* ------------------------------------------------------------------------ */

#ifdef BP_DOUBLE

bp_gemm_ctx *bp_gemm_ctx_create(void) { return NULL; }
void bp_gemm_ctx_free(bp_gemm_ctx *ctx) { (void)ctx; }
bp_mm *bp_mm_create(bp_gemm_ctx *ctx, int ta, int tb, int M, int N, int K, int with_bias)
{
    (void)ctx, (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)with_bias;
    return NULL;
}
int bp_mm_run(bp_mm *mm, const bp_real *A, const bp_real *B, const bp_real *bias, bp_real *C)
{
    (void)mm, (void)A, (void)B, (void)bias, (void)C;
    return 0;
}
bp_mm *bp_mm_create_bf16(bp_gemm_ctx *ctx, int ta, int tb, int M, int N, int K, int with_bias)
{
    (void)ctx, (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)with_bias;
    return NULL;
}
int bp_mm_run_bf16(bp_mm *mm, const uint16_t *A, const uint16_t *B, const bp_real *bias,
                   bp_real *C)
{
    (void)mm, (void)A, (void)B, (void)bias, (void)C;
    return 0;
}
void bp_mm_free(bp_mm *mm) { (void)mm; }
int bp_bf16_supported(void) { return 0; }

#else

struct bp_gemm_ctx {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
};

struct bp_mm {
    bp_gemm_ctx *ctx;
    int threads;                 /* OpenMP threads it was made for (bp_threads_for) */
    double flops;                /* 2 M N K */
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, bias, c; /* descriptors; data handles set per run */
    int nargs;
};

bp_gemm_ctx *bp_gemm_ctx_create(void)
{
    const char *env = getenv("BP_GEMM");
    if (env && strcmp(env, "sgemm") == 0) return NULL;
    bp_gemm_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    if (dnnl_engine_create(&ctx->engine, dnnl_cpu, 0) != dnnl_success) {
        free(ctx);
        return NULL;
    }
    if (dnnl_stream_create(&ctx->stream, ctx->engine, dnnl_stream_default_flags) != dnnl_success) {
        dnnl_engine_destroy(ctx->engine);
        free(ctx);
        return NULL;
    }
    return ctx;
}

dnnl_engine_t bp_gemm_ctx_engine(bp_gemm_ctx *ctx) { return ctx ? ctx->engine : NULL; }
dnnl_stream_t bp_gemm_ctx_stream(bp_gemm_ctx *ctx) { return ctx ? ctx->stream : NULL; }

size_t bp_dnnl_scratch_size(const_dnnl_primitive_desc_t pd)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    return md ? dnnl_memory_desc_get_size(md) : 0;
}

int bp_dnnl_scratch_mem(dnnl_memory_t *m, const_dnnl_primitive_desc_t pd, bp_gemm_ctx *ctx,
                        void *buf)
{
    if (bp_dnnl_scratch_size(pd) == 0) return 1;
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    return dnnl_memory_create(m, md, bp_gemm_ctx_engine(ctx), buf) == dnnl_success;
}

dnnl_primitive_attr_t bp_dnnl_user_scratch_attr(void)
{
    dnnl_primitive_attr_t attr = NULL;
    if (dnnl_primitive_attr_create(&attr)) return NULL;
    if (dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)) {
        dnnl_primitive_attr_destroy(attr);
        return NULL;
    }
    return attr;
}

int bp_dnnl_run(bp_gemm_ctx *ctx, int threads, dnnl_primitive_t prim, int nargs,
                const dnnl_exec_arg_t *args)
{
    int old = omp_get_max_threads();
    if (threads != old) omp_set_num_threads(threads);
    int ok = dnnl_primitive_execute(prim, ctx->stream, nargs, args) == dnnl_success &&
             dnnl_stream_wait(ctx->stream) == dnnl_success;
    if (threads != old) omp_set_num_threads(old);
    return ok;
}

void bp_gemm_ctx_free(bp_gemm_ctx *ctx)
{
    if (!ctx) return;
    dnnl_stream_destroy(ctx->stream);
    dnnl_engine_destroy(ctx->engine);
    free(ctx);
}

void bp_mm_free(bp_mm *mm)
{
    if (!mm) return;
    if (mm->prim) dnnl_primitive_destroy(mm->prim);
    if (mm->a) dnnl_memory_destroy(mm->a);
    if (mm->b) dnnl_memory_destroy(mm->b);
    if (mm->bias) dnnl_memory_destroy(mm->bias);
    if (mm->c) dnnl_memory_destroy(mm->c);
    free(mm);
}

int bp_bf16_supported(void)
{
    /* oneDNN's effective ISA: what the CPU has, lowered by ONEDNN_MAX_CPU_ISA. */
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    unsigned need = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    return (isa & need) == need;
}

/* A and B in `type` (f32 or bf16), bias and C in f32. */
static bp_mm *mm_create(bp_gemm_ctx *ctx, int ta, int tb, int M, int N, int K, int with_bias,
                        dnnl_data_type_t type)
{
    if (!ctx || (double)M * N * K < BP_MM_MIN_WORK) return NULL;
    bp_mm *mm = calloc(1, sizeof *mm);
    if (!mm) return NULL;
    mm->ctx = ctx;
    /* The primitive splits its work for the thread count current at its
     * creation: make it for the count its size is worth. */
    mm->flops = 2.0 * M * N * K;
    mm->threads = bp_threads_for(mm->flops, BP_GEMM_GRAIN);
    int old = omp_get_max_threads();
    if (mm->threads != old) omp_set_num_threads(mm->threads);
    /* op(A) [M, K]: stored [K, M] when transposed, i.e. the "ba" layout. */
    dnnl_memory_desc_t a, b, bias, c;
    dnnl_dims_t da = {M, K}, db = {K, N}, dbias = {1, N}, dc = {M, N};
    dnnl_primitive_desc_t pd = NULL;
    dnnl_matmul_desc_t desc;
    if (dnnl_memory_desc_init_by_tag(&a, 2, da, type, ta ? dnnl_ba : dnnl_ab) ||
        dnnl_memory_desc_init_by_tag(&b, 2, db, type, tb ? dnnl_ba : dnnl_ab) ||
        dnnl_memory_desc_init_by_tag(&bias, 2, dbias, dnnl_f32, dnnl_ab) ||
        dnnl_memory_desc_init_by_tag(&c, 2, dc, dnnl_f32, dnnl_ab) ||
        dnnl_matmul_desc_init(&desc, &a, &b, with_bias ? &bias : NULL, &c) ||
        dnnl_primitive_desc_create(&pd, &desc, NULL, ctx->engine, NULL))
        goto fail;
    dnnl_status_t st = dnnl_primitive_create(&mm->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    pd = NULL;
    if (st) goto fail;
    if (dnnl_memory_create(&mm->a, &a, ctx->engine, DNNL_MEMORY_NONE) ||
        dnnl_memory_create(&mm->b, &b, ctx->engine, DNNL_MEMORY_NONE) ||
        dnnl_memory_create(&mm->c, &c, ctx->engine, DNNL_MEMORY_NONE) ||
        (with_bias && dnnl_memory_create(&mm->bias, &bias, ctx->engine, DNNL_MEMORY_NONE)))
        goto fail;
    mm->nargs = with_bias ? 4 : 3;
    if (mm->threads != old) omp_set_num_threads(old);
    return mm;
fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (mm->threads != old) omp_set_num_threads(old);
    bp_mm_free(mm);
    return NULL;
}

bp_mm *bp_mm_create(bp_gemm_ctx *ctx, int ta, int tb, int M, int N, int K, int with_bias)
{
    return mm_create(ctx, ta, tb, M, N, K, with_bias, dnnl_f32);
}

bp_mm *bp_mm_create_bf16(bp_gemm_ctx *ctx, int ta, int tb, int M, int N, int K, int with_bias)
{
    if (!bp_bf16_supported()) return NULL;
    return mm_create(ctx, ta, tb, M, N, K, with_bias, dnnl_bf16);
}

static int mm_run(bp_mm *mm, const void *A, const void *B, const bp_real *bias, bp_real *C)
{
    /* Made for another count (bp_set_threads changed since): the
     * caller's bp_gemm then picks the count itself. */
    if (!mm || bp_threads_for(mm->flops, BP_GEMM_GRAIN) != mm->threads) return 0;
    /* oneDNN takes non-const handles; it only reads A, B and bias. */
    if (dnnl_memory_set_data_handle(mm->a, (void *)(uintptr_t)A) ||
        dnnl_memory_set_data_handle(mm->b, (void *)(uintptr_t)B) ||
        dnnl_memory_set_data_handle(mm->c, C) ||
        (mm->bias && dnnl_memory_set_data_handle(mm->bias, (void *)(uintptr_t)bias)))
        return 0;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, mm->a}, {DNNL_ARG_WEIGHTS, mm->b},
                               {DNNL_ARG_DST, mm->c}, {DNNL_ARG_BIAS, mm->bias}};
    int old = omp_get_max_threads();
    if (mm->threads != old) omp_set_num_threads(mm->threads);
    int ok = dnnl_primitive_execute(mm->prim, mm->ctx->stream, mm->nargs, args) == dnnl_success &&
             dnnl_stream_wait(mm->ctx->stream) == dnnl_success;
    if (mm->threads != old) omp_set_num_threads(old);
    return ok;
}

int bp_mm_run(bp_mm *mm, const bp_real *A, const bp_real *B, const bp_real *bias, bp_real *C)
{
    return mm_run(mm, A, B, bias, C);
}

int bp_mm_run_bf16(bp_mm *mm, const uint16_t *A, const uint16_t *B, const bp_real *bias,
                   bp_real *C)
{
    return mm_run(mm, A, B, bias, C);
}

#endif
