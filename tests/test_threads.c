/*
 * test_threads.c - threads follow the work (issue 7, defect 2.5):
 *   - a tiny network trains and predicts without starting any OpenMP
 *     thread, even after bp_set_threads(4096);
 *   - bp_set_threads caps at the cores and says what it applied;
 *   - the per-region choice (bp_threads_for) picks one thread for tiny
 *     GEMMs, several for large ones, and leaves the caller's OpenMP thread
 *     count as it was;
 *   - training gives the same parameters on 1 and on all threads, with the
 *     prepared GEMMs made for one count and run under another.
 */
#include "internal.h"
#include "check.h"

#include <dirent.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Threads of this process (entries of /proc/self/task); -1 if unknown. */
static int task_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void fill(bp_real *x, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = (bp_real)((seed >> 8) % 2001) / 1000 - 1;
    }
}

/* Runs first, while the process has no OpenMP thread: the wine-sized
 * network (13-64-3, batch 32) must not start one. */
static void tiny_net_stays_on_one_thread(void)
{
    int before = task_count();
    if (before != 1) {
        printf("skip: /proc/self/task unavailable or threads already running (%d)\n", before);
        return;
    }
    bp_set_threads(4096);
    bp_error err;
    bp_net *net = NULL;
    CHECK(bp_net_create(&net, 13, "dense(64) relu dense(3)", 7, &err) == BP_OK, "%s", err.message);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.loss = BP_LOSS_CROSS_ENTROPY;
    bp_trainer *tr = NULL;
    CHECK(bp_trainer_create(&tr, net, &cfg, 32, &err) == BP_OK, "%s", err.message);
    static bp_real x[256 * 13], y[256], out[256 * 3];
    fill(x, sizeof x / sizeof x[0], 1);
    for (int i = 0; i < 256; i++) y[i] = (bp_real)(i % 3);
    for (int s = 0; s < 20; s++)
        CHECK(bp_train_step(tr, x + (s % 8) * 32 * 13, y + (s % 8) * 32, 32, NULL, &err) == BP_OK, "%s",
              err.message);
    CHECK(bp_forward(net, x, 256, out, &err) == BP_OK, "%s", err.message);
    int after = task_count();
    CHECK(after == 1, "a 13-64-3 network (batch 32) started OpenMP threads: %d threads after "
          "training and predicting, expected 1", after);
    bp_trainer_free(tr);
    bp_net_free(net);
}

static void thread_counts(void)
{
    int c = bp_cores();
    CHECK(c >= 1, "bp_cores() = %d", c);
    CHECK(bp_set_threads(4096) == c, "bp_set_threads(4096) applied %d, the cores are %d",
          bp_threads_max(), c);
    CHECK(bp_threads_max() == c, "after bp_set_threads(4096) the maximum is %d, cores %d",
          bp_threads_max(), c);
    CHECK(omp_get_max_threads() == c, "OpenMP's count is %d after the cap, cores %d",
          omp_get_max_threads(), c);
    CHECK(bp_set_threads(c + 1) == c, "bp_set_threads(cores + 1) not capped");
    CHECK(bp_set_threads(0) == c, "bp_set_threads(0) is not all cores");
    CHECK(bp_set_threads(1) == 1, "bp_set_threads(1)");
    CHECK(bp_threads_for(1e12, BP_GEMM_GRAIN) == 1, "1 thread set, a huge GEMM got %d",
          bp_threads_for(1e12, BP_GEMM_GRAIN));

    bp_set_threads(0);
    double tiny = 2.0 * 32 * 64 * 13;   /* wine's first layer, batch 32 */
    double w2 = 2.0 * 32 * 32 * 32;     /* W2's hidden layer */
    double big = 2.0 * 128 * 256 * 784; /* W1's first layer, 51 MFLOP */
    CHECK(bp_threads_for(tiny, BP_GEMM_GRAIN) == 1, "tiny GEMM: %d threads",
          bp_threads_for(tiny, BP_GEMM_GRAIN));
    CHECK(bp_threads_for(w2, BP_GEMM_GRAIN) == 1, "W2 GEMM: %d threads", bp_threads_for(w2, BP_GEMM_GRAIN));
    CHECK(bp_threads_for(0, BP_GEMM_GRAIN) == 1 && bp_threads_for(NAN, BP_GEMM_GRAIN) == 1,
          "empty or NaN work must get 1 thread");
    int want = c < 51 ? c : 51;
    CHECK(bp_threads_for(big, BP_GEMM_GRAIN) == want, "W1 GEMM: %d threads, expected %d",
          bp_threads_for(big, BP_GEMM_GRAIN), want);
    CHECK(bp_threads_for(3.5 * BP_GEMM_GRAIN, BP_GEMM_GRAIN) == (c < 3 ? c : 3),
          "3.5 grains: %d threads", bp_threads_for(3.5 * BP_GEMM_GRAIN, BP_GEMM_GRAIN));

    /* bp_gemm sets OpenMP's count per call and restores the caller's. */
    static bp_real A[128 * 784], B[256 * 784], C[128 * 256];
    fill(A, sizeof A / sizeof A[0], 2);
    fill(B, sizeof B / sizeof B[0], 3);
    bp_gemm(0, 1, 4, 4, 4, 1, A, 784, B, 784, 0, C, 256);
    bp_gemm(0, 1, 128, 256, 784, 1, A, 784, B, 784, 0, C, 256);
    CHECK(omp_get_max_threads() == c, "OpenMP's count is %d after bp_gemm, was %d",
          omp_get_max_threads(), c);
}

/* Parameters after 4 Adam steps of a 200-400-10 net (84k parameters: the
 * GEMMs and the optimizer are large enough for several threads), with
 * `create` threads when the trainer prepares its GEMMs and `run` threads
 * for the steps. */
static bp_real *train_params(int create, int run, size_t *np)
{
    bp_error err;
    bp_net *net = NULL;
    bp_set_threads(create);
    CHECK(bp_net_create(&net, 200, "dense(400) relu dense(10)", 11, &err) == BP_OK, "%s", err.message);
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    cfg.loss = BP_LOSS_CROSS_ENTROPY;
    bp_trainer *tr = NULL;
    CHECK(bp_trainer_create(&tr, net, &cfg, 128, &err) == BP_OK, "%s", err.message);
    static bp_real x[128 * 200], y[128];
    fill(x, sizeof x / sizeof x[0], 4);
    for (int i = 0; i < 128; i++) y[i] = (bp_real)(i % 10);
    bp_set_threads(run);
    for (int s = 0; s < 4; s++)
        CHECK(bp_train_step(tr, x, y, 128, NULL, &err) == BP_OK, "%s", err.message);
    *np = bp_net_param_count(net);
    bp_real *p = malloc(*np * sizeof *p);
    if (p) memcpy(p, net->params, *np * sizeof *p);
    bp_trainer_free(tr);
    bp_net_free(net);
    return p;
}

static void same_results(void)
{
    int c = bp_cores();
    size_t n1, n2, n3;
    bp_real *p1 = train_params(1, 1, &n1);
    bp_real *p2 = train_params(c, c, &n2);
    bp_real *p3 = train_params(c, 1, &n3); /* GEMMs prepared for c threads, run on 1 */
    CHECK(p1 && p2 && p3 && n1 == n2 && n1 == n3, "training failed");
    if (p1 && p2 && p3 && n1 == n2 && n1 == n3) {
        double worst = 0, worst3 = 0;
        size_t same = 0;
        for (size_t k = 0; k < n1; k++) {
            double s = fabs((double)p1[k]) > 1e-3 ? fabs((double)p1[k]) : 1e-3;
            double d = fabs((double)p2[k] - p1[k]) / s, d3 = fabs((double)p3[k] - p1[k]) / s;
            if (d > worst) worst = d;
            if (d3 > worst3) worst3 = d3;
            same += p1[k] == p2[k];
        }
        printf("1 vs %d threads: %zu of %zu parameters bit-identical, worst relative difference %.3g "
               "(prepared for %d, run on 1: %.3g)\n", c, same, n1, worst, c, worst3);
        CHECK(worst <= 1e-4, "1 vs %d threads: relative difference %g", c, worst);
        CHECK(worst3 <= 1e-4, "prepared for %d threads, run on 1: relative difference %g", c, worst3);
    }
    free(p1);
    free(p2);
    free(p3);
}

int main(void)
{
    tiny_net_stays_on_one_thread();
    thread_counts();
    same_results();
    return check_done("test_threads");
}
