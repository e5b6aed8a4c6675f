/*
 * test_noalloc.c - a training step allocates nothing.
 *
 * This binary interposes malloc, calloc, realloc, aligned_alloc and
 * posix_memalign (forwarding to glibc's __libc_* functions) and counts the
 * calls made while bp_train_step runs, after a warm-up step that lets the
 * GEMM library and OpenMP set up their thread pools. Each call is
 * attributed, by its return address (dladdr), to the object that made it:
 * the library under test is linked statically into this executable, so
 * calls from the executable are libbackprop's and must be zero. Calls made
 * inside the GEMM library (oneDNN's sgemm mallocs a packing buffer per
 * call) are counted and printed, not hidden. Disabled under
 * AddressSanitizer, which owns malloc itself.
 */
#define _GNU_SOURCE
#include <dlfcn.h>

#include "backprop.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static volatile int counting;
static volatile long allocations; /* made by this executable (libbackprop) */
static volatile long foreign;     /* made inside shared libraries */
static void *self_base;

static void count(void *caller)
{
    Dl_info info;
    if (dladdr(caller, &info) && info.dli_fbase == self_base) allocations++;
    else foreign++;
}

void *malloc(size_t n)
{
    if (counting) count(__builtin_return_address(0));
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    if (counting) count(__builtin_return_address(0));
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    if (counting) count(__builtin_return_address(0));
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t al, size_t n)
{
    if (counting) count(__builtin_return_address(0));
    return __libc_memalign(al, n);
}
int posix_memalign(void **p, size_t al, size_t n)
{
    if (counting) count(__builtin_return_address(0));
    *p = __libc_memalign(al, n);
    return *p ? 0 : 12;
}

static void run(const char *spec, bp_optimizer opt, bp_loss loss, int batch, int threads)
{
    bp_set_threads(threads);
    bp_error err;
    bp_net *net = NULL;
    bp_net_create(&net, 64, spec, 1, &err);
    bp_train_config cfg;
    bp_train_config_default(&cfg, opt);
    cfg.loss = loss;
    cfg.clip_norm = 1;
    cfg.l2 = 1e-4;
    cfg.schedule = BP_SCHED_COSINE;
    cfg.total_steps = 100;
    bp_trainer *tr = NULL;
    CHECK(bp_trainer_create(&tr, net, &cfg, batch, &err) == BP_OK, "%s", err.message);
    int outs = bp_net_outputs(net), tw = loss == BP_LOSS_CROSS_ENTROPY ? 1 : outs;
    bp_real *x = calloc((size_t)batch * 64, sizeof *x), *y = calloc((size_t)batch * tw, sizeof *y);
    for (int i = 0; i < batch * 64; i++) x[i] = (bp_real)((i * 37) % 11) / 11;
    for (int i = 0; i < batch * tw; i++) y[i] = (bp_real)(i % 2);
    double loss_v;
    bp_train_step(tr, x, y, batch, &loss_v, &err); /* warm-up */
    allocations = foreign = 0;
    counting = 1;
    int ok = 1;
    for (int k = 0; k < 20; k++) ok &= bp_train_step(tr, x, y, batch, &loss_v, &err) == BP_OK;
    counting = 0;
    CHECK(ok, "steps succeed: %s", err.message);
    CHECK(allocations == 0, "%s, %s, batch %d, %d thread(s): %ld allocations in 20 steps", spec,
          bp_optimizer_name(opt), batch, threads, allocations);
    printf("  %-52s %-8s batch %3d, %d thread(s): libbackprop %ld, GEMM/OpenMP libraries %ld allocations in 20 steps\n",
           spec, bp_optimizer_name(opt), batch, threads, allocations, foreign);
    free(x);
    free(y);
    bp_trainer_free(tr);
    bp_net_free(net);
}

int main(void)
{
    Dl_info self;
    CHECK(dladdr((void *)main, &self) != 0, "dladdr finds this executable");
    self_base = self.dli_fbase;
    /* The counter must be able to see an allocation made from here. */
    counting = 1;
    void *probe = malloc(16);
    counting = 0;
    free(probe);
    CHECK(allocations == 1, "interposer counts this executable's malloc (%ld)", allocations);
    run("dense(128) relu dropout(0.2) dense(64) tanh dense(10)", BP_ADAM, BP_LOSS_CROSS_ENTROPY, 128, 1);
    run("dense(128) relu dropout(0.2) dense(64) tanh dense(10)", BP_ADAM, BP_LOSS_CROSS_ENTROPY, 128, 2);
    run("dense(32) sigmoid dense(3) sigmoid", BP_NESTEROV, BP_LOSS_BCE, 1, 2);
    run("dense(256) leaky_relu(0.1) dense(1)", BP_RMSPROP, BP_LOSS_MSE, 32, 2);
    return check_done("test_noalloc");
}
