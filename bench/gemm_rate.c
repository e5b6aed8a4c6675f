/*
 * gemm_rate.c - the machine's limit for W3: the rate of oneDNN on exactly
 * the GEMMs one W3 training step runs. oneDNN offers two ways to run a
 * GEMM: dnnl_sgemm, and a matmul primitive made for the shape (what
 * libbackprop uses for large shapes); each GEMM is timed both ways and the
 * faster one is the library's rate for it (the step sequence uses each
 * GEMM's faster way).
 *
 *   gemm_rate [--threads N] [--batch B] [--layers 784,2048,2048,10]
 *             [--reps R] [--min-time S] [--bf16]
 *   gemm_rate --peak [--threads N] [--reps R] [--min-time S]
 *
 * For each dense layer (in -> out, weight W [out, in], batch B), row-major:
 *   forward   Y [B, out]  = X [B, in] W^T          sgemm N,T  M=B   N=out K=in
 *   weights   dW [out, in] = dY^T [out, B] X        sgemm T,N  M=out N=in  K=B
 *   inputs    dX [B, in]  = dY [B, out] W           sgemm N,N  M=B   N=in  K=out
 * (the first layer's dX is not needed by training; it is timed and listed
 * but also reported separately). Each GEMM costs 2 M N K FLOPs; all of them
 * together are 6 x weights x B, the FLOP count of a training step.
 *
 * Prints one JSON line per GEMM and a final "step" line: the rate of the
 * whole sequence run back to back as a step would (best of --reps
 * repetitions, each at least --min-time seconds, after a warm-up).
 * Threads: omp_set_num_threads(N) (oneDNN's OpenMP runtime).
 *
 * --bf16: the ceiling of `--precision bf16` instead: the same GEMMs as
 * matmul primitives on bfloat16 A and B with float32 C (what a bf16 dense
 * layer runs; dnnl_sgemm has no bf16 form, so sgemm_gflops is 0).
 *
 * --peak: the float32 ceiling of the cores themselves, no memory: every
 * thread runs 12 independent chains of 512-bit fused multiply-adds (256-bit
 * on a CPU without AVX-512) on registers; one line, "gemm":"fma_peak".
 * Nothing float32 runs faster on this machine, GEMM or not.
 */
#include "bench_common.h"

#include <immintrin.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

typedef struct gemm {
    char ta, tb;
    int M, N, K;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
    char what[16];
    const char *op;
    int needed; /* 0 for the first layer's dX */
    int use_mm; /* run the matmul primitive instead of dnnl_sgemm */
    dnnl_primitive_t prim;
    dnnl_exec_arg_t args[3];
    const uint16_t *Ab, *Bb; /* --bf16: A and B rounded to bfloat16 */
} gemm;

static dnnl_engine_t engine;
static dnnl_stream_t stream;
static int bf16;

/* Make the matmul primitive for g (row-major; transposes as "ba" layouts). */
static void make_primitive(gemm *g)
{
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t da = {g->M, g->K}, db = {g->K, g->N}, dc = {g->M, g->N};
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd;
    dnnl_memory_t ma, mb, mc;
    dnnl_data_type_t it = bf16 ? dnnl_bf16 : dnnl_f32;
    if (dnnl_memory_desc_init_by_tag(&a, 2, da, it, g->ta == 'T' ? dnnl_ba : dnnl_ab) ||
        dnnl_memory_desc_init_by_tag(&b, 2, db, it, g->tb == 'T' ? dnnl_ba : dnnl_ab) ||
        dnnl_memory_desc_init_by_tag(&c, 2, dc, dnnl_f32, dnnl_ab) ||
        dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c) ||
        dnnl_primitive_desc_create(&pd, &desc, NULL, engine, NULL) || dnnl_primitive_create(&g->prim, pd) ||
        dnnl_memory_create(&ma, &a, engine, bf16 ? (void *)g->Ab : (void *)g->A) ||
        dnnl_memory_create(&mb, &b, engine, bf16 ? (void *)g->Bb : (void *)g->B) ||
        dnnl_memory_create(&mc, &c, engine, g->C)) {
        fprintf(stderr, "gemm_rate: cannot make a matmul primitive for %s\n", g->what);
        exit(1);
    }
    dnnl_primitive_desc_destroy(pd);
    g->args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, ma};
    g->args[1] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, mb};
    g->args[2] = (dnnl_exec_arg_t){DNNL_ARG_DST, mc};
}

static void run_gemm(const gemm *g)
{
    if (g->use_mm) {
        if (dnnl_primitive_execute(g->prim, stream, 3, g->args) != dnnl_success ||
            dnnl_stream_wait(stream) != dnnl_success) {
            fprintf(stderr, "gemm_rate: matmul failed on %s\n", g->what);
            exit(1);
        }
        return;
    }
    dnnl_status_t s = dnnl_sgemm(g->ta, g->tb, g->M, g->N, g->K, 1.0f, g->A, g->lda, g->B, g->ldb,
                                 0.0f, g->C, g->ldc);
    if (s != dnnl_success) {
        fprintf(stderr, "gemm_rate: dnnl_sgemm failed (%d) on %s\n", (int)s, g->what);
        exit(1);
    }
}

static float *fill(size_t n, uint64_t *rng)
{
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "gemm_rate: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)(bench_uniform(rng) - 0.5);
    return p;
}

/* --peak: FLOPs of `iters` rounds of 12 independent FMA chains, W lanes. */
#define PEAK_CHAINS 12
__attribute__((target("avx512f"))) static double fma_chains512(long iters, float seed)
{
    __m512 a[PEAK_CHAINS], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int k = 0; k < PEAK_CHAINS; k++) a[k] = _mm512_set1_ps(seed + (float)k);
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < PEAK_CHAINS; k++) a[k] = _mm512_fmadd_ps(a[k], m, c);
    __m512 s = a[0];
    for (int k = 1; k < PEAK_CHAINS; k++) s = _mm512_add_ps(s, a[k]);
    return (double)_mm512_reduce_add_ps(s);
}
__attribute__((target("avx2,fma"))) static double fma_chains256(long iters, float seed)
{
    __m256 a[PEAK_CHAINS], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int k = 0; k < PEAK_CHAINS; k++) a[k] = _mm256_set1_ps(seed + (float)k);
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < PEAK_CHAINS; k++) a[k] = _mm256_fmadd_ps(a[k], m, c);
    float v[8];
    _mm256_storeu_ps(v, a[0]);
    for (int k = 1; k < PEAK_CHAINS; k++) {
        float w[8];
        _mm256_storeu_ps(w, a[k]);
        for (int j = 0; j < 8; j++) v[j] += w[j];
    }
    return (double)(v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7]);
}

/* Best FLOP/s over reps repetitions of >= min_time, every thread in its own chains. */
static double fma_peak(int threads, int reps, double min_time, double *median, int *lanes)
{
    int w512 = __builtin_cpu_supports("avx512f");
    *lanes = w512 ? 16 : 8;
    const long iters = 1L << 22;
    double rate[BENCH_MAX_REPS], sink = 0;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        long it = 0;
        double t0 = bench_now(), t;
        do {
#pragma omp parallel num_threads(threads) reduction(+ : sink)
            sink += w512 ? fma_chains512(iters, (float)omp_get_thread_num())
                         : fma_chains256(iters, (float)omp_get_thread_num());
            it++;
            t = bench_now() - t0;
        } while (t < min_time);
        if (r >= 0) rate[r] = 2.0 * PEAK_CHAINS * *lanes * (double)iters * threads * it / t;
    }
    if (sink == 42.0) fprintf(stderr, " "); /* keep the chains alive */
    double best;
    bench_stats(rate, reps, &best, median);
    return best;
}

/* p rounded to bfloat16 (to nearest even; the values are finite). */
static uint16_t *to_bf16(const float *p, size_t n)
{
    uint16_t *q = malloc(n * sizeof *q);
    if (!q) {
        fprintf(stderr, "gemm_rate: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &p[i], sizeof u);
        q[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    return q;
}

/* Best rate (FLOP/s) of running gemms [lo, hi) (only `needed` ones if
 * needed_only) back to back, over reps repetitions of >= min_time. */
static double time_seq(const gemm *g, int lo, int hi, int needed_only, int reps, double min_time,
                       double *median)
{
    double flop = 0;
    for (int i = lo; i < hi; i++)
        if (!needed_only || g[i].needed) flop += 2.0 * g[i].M * g[i].N * (double)g[i].K;
    for (int w = 0; w < 2; w++)
        for (int i = lo; i < hi; i++)
            if (!needed_only || g[i].needed) run_gemm(&g[i]);
    double rate[BENCH_MAX_REPS];
    for (int r = 0; r < reps; r++) {
        long it = 0;
        double t0 = bench_now(), t;
        do {
            for (int i = lo; i < hi; i++)
                if (!needed_only || g[i].needed) run_gemm(&g[i]);
            it++;
            t = bench_now() - t0;
        } while (t < min_time);
        rate[r] = flop * it / t;
    }
    double best;
    bench_stats(rate, reps, &best, median);
    return best;
}

int main(int argc, char **argv)
{
    int threads = 1, batch = 256, reps = 3, peak = 0;
    double min_time = 0.3;
    const char *layers_arg = "784,2048,2048,10";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bf16")) {
            bf16 = 1;
            continue;
        }
        if (!strcmp(argv[i], "--peak")) {
            peak = 1;
            continue;
        }
        if (i + 1 >= argc) goto usage;
        const char *a = argv[i], *v = argv[++i];
        if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--layers")) layers_arg = v;
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--min-time")) min_time = atof(v);
        else goto usage;
    }
    if (threads < 1 || batch < 1 || reps < 1 || reps > BENCH_MAX_REPS) goto usage;
    if (peak) {
        double med;
        int lanes;
        double best = fma_peak(threads, reps, min_time, &med, &lanes);
        printf("{\"prog\":\"gemm_rate\",\"lib\":\"FMA chains on registers, %d-bit\",\"precision\":\"f32\","
               "\"threads\":%d,\"gemm\":\"fma_peak\",\"gflops\":%.2f,\"gflops_median\":%.2f,\"rss_kb\":%ld}\n",
               lanes * 32, threads, best * 1e-9, med * 1e-9, bench_peak_rss_kb());
        return 0;
    }
    if (bf16 && !__builtin_cpu_supports("avx512bf16")) {
        /* exit 3: run.sh's "skipped" (oneDNN would emulate bf16 slowly) */
        fprintf(stderr, "gemm_rate: --bf16 needs a CPU with AVX512_BF16\n");
        return 3;
    }

    int width[64], nw = 0;
    for (const char *p = layers_arg; *p && nw < 64;) {
        width[nw++] = atoi(p);
        while (*p && *p != ',') p++;
        if (*p == ',') p++;
    }
    if (nw < 2) goto usage;
    for (int i = 0; i < nw; i++)
        if (width[i] < 1) goto usage;
    omp_set_num_threads(threads);

    uint64_t rng = 7;
    int nl = nw - 1;
    gemm g[3 * 63];
    int ng = 0;
    double weights = 0;
    for (int l = 0; l < nl; l++) {
        int in = width[l], out = width[l + 1];
        weights += (double)in * out;
        float *X = fill((size_t)batch * in, &rng), *W = fill((size_t)out * in, &rng);
        float *Y = fill((size_t)batch * out, &rng), *dY = fill((size_t)batch * out, &rng);
        float *dW = fill((size_t)out * in, &rng), *dX = fill((size_t)batch * in, &rng);
        g[ng] = (gemm){'N', 'T', batch, out, in, X, W, Y, in, in, out, "", "Y = X W^T", 1, 0, NULL, {{0, NULL}}, NULL, NULL};
        snprintf(g[ng++].what, sizeof g[0].what, "L%d fwd", l + 1);
        g[ng] = (gemm){'T', 'N', out, in, batch, dY, X, dW, out, in, in, "", "dW = dY^T X", 1, 0, NULL, {{0, NULL}}, NULL, NULL};
        snprintf(g[ng++].what, sizeof g[0].what, "L%d dW", l + 1);
        g[ng] = (gemm){'N', 'N', batch, in, out, dY, W, dX, out, in, in, "", "dX = dY W", l > 0, 0, NULL, {{0, NULL}}, NULL, NULL};
        snprintf(g[ng++].what, sizeof g[0].what, "L%d dX", l + 1);
    }

    if (dnnl_engine_create(&engine, dnnl_cpu, 0) || dnnl_stream_create(&stream, engine, dnnl_stream_default_flags)) {
        fprintf(stderr, "gemm_rate: cannot create a oneDNN engine\n");
        return 1;
    }
    for (int i = 0; i < ng; i++) {
        if (bf16) {
            /* A is [M, K] (lda K) or, transposed, [K, M]; B is [K, N] or [N, K] */
            g[i].Ab = to_bf16(g[i].A, (size_t)g[i].M * g[i].K);
            g[i].Bb = to_bf16(g[i].B, (size_t)g[i].K * g[i].N);
        }
        make_primitive(&g[i]);
        double med = 0, med_mm;
        g[i].use_mm = 0;
        double best = bf16 ? 0 : time_seq(g, i, i + 1, 0, reps, min_time / 3, &med);
        g[i].use_mm = 1;
        double best_mm = time_seq(g, i, i + 1, 0, reps, min_time / 3, &med_mm);
        g[i].use_mm = best_mm > best;
        printf("{\"prog\":\"gemm_rate\",\"lib\":\"%s\",\"precision\":\"%s\",\"threads\":%d,\"gemm\":\"%s\","
               "\"op\":\"%s\",\"trans\":\"%c%c\",\"M\":%d,\"N\":%d,\"K\":%d,\"gflops\":%.2f,\"gflops_median\":%.2f,"
               "\"sgemm_gflops\":%.2f,\"matmul_gflops\":%.2f,\"needed\":%d}\n",
               g[i].use_mm ? "matmul" : "dnnl_sgemm", bf16 ? "bf16" : "f32", threads, g[i].what, g[i].op, g[i].ta, g[i].tb, g[i].M,
               g[i].N, g[i].K, (g[i].use_mm ? best_mm : best) * 1e-9, (g[i].use_mm ? med_mm : med) * 1e-9,
               best * 1e-9, best_mm * 1e-9, g[i].needed);
    }
    double med_all, med_need;
    double all = time_seq(g, 0, ng, 0, reps, min_time, &med_all);
    double need = time_seq(g, 0, ng, 1, reps, min_time, &med_need);
    printf("{\"prog\":\"gemm_rate\",\"lib\":\"%s\",\"precision\":\"%s\",\"threads\":%d,\"gemm\":\"step\","
           "\"batch\":%d,\"layers\":\"%s\",\"step_flop\":%.0f,\"gflops\":%.2f,\"gflops_median\":%.2f,"
           "\"gflops_needed_only\":%.2f,\"rss_kb\":%ld}\n",
           bf16 ? "oneDNN matmul, bfloat16 A and B" : "oneDNN best of sgemm/matmul per GEMM",
           bf16 ? "bf16" : "f32", threads, batch, layers_arg, 6.0 * weights * batch, all * 1e-9, med_all * 1e-9,
           need * 1e-9, bench_peak_rss_kb());
    return 0;

usage:
    fprintf(stderr, "usage: gemm_rate [--threads N] [--batch B] [--layers 784,2048,2048,10] "
                    "[--reps R] [--min-time S] [--bf16]\n"
                    "       gemm_rate --peak [--threads N] [--reps R] [--min-time S]\n");
    return 2;
}
