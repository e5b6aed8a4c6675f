/*
 * backprop_mpi.c - bp_comm over MPI_COMM_WORLD (contract in
 * include/backprop_mpi.h): MPI_Iallreduce with MPI_SUM in place for the
 * trainer's buckets (each in its slot's request, so nothing is allocated
 * per step; up to 64 KiB a blocking MPI_Allreduce), MPI_Test to progress
 * them while the backward pass goes on, MPI_Bcast for the initial weights.
 */
#include "backprop_mpi.h"

#include <limits.h>
#include <mpi.h>

/* Under LeakSanitizer (the suite's ASan build), what Open MPI allocates
 * for itself (much of it in plugins it unloads at MPI_Finalize, so the
 * stacks cannot even be named for a suppression; some in its own threads)
 * is not ours to report: leak detection is off inside MPI calls, and
 * bp_mpi_finalize runs the process's leak check before MPI's teardown
 * (LeakSanitizer then skips the one at exit). */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define MPI_IN() __lsan_disable()
#define MPI_OUT() __lsan_enable()
#define LEAK_CHECK_NOW() __lsan_do_leak_check()
#else
#define MPI_IN() ((void)0)
#define MPI_OUT() ((void)0)
#define LEAK_CHECK_NOW() ((void)0)
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mpi_ctx {
    MPI_Request req[BP_COMM_SLOTS];
    int we_initialized;
} mpi_ctx;

static mpi_ctx g_ctx; /* one world per process */

int bp_mpi_launched(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE",
                                       "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 1) return 1;
    }
    return 0;
}

static int slot_ok(int slot) { return slot >= 0 && slot < BP_COMM_SLOTS; }

/* Reductions of at most this many bytes run as a blocking MPI_Allreduce. */
#define SMALL_BYTES ((size_t)64 << 10)

static int c_iallreduce(void *ctx, int slot, void *buf, size_t count, bp_comm_type type)
{
    mpi_ctx *c = ctx;
    if (!slot_ok(slot) || count > INT_MAX || c->req[slot] != MPI_REQUEST_NULL) return -1;
    MPI_Datatype t = type == BP_COMM_F64 ? MPI_DOUBLE : MPI_FLOAT;
    /* Small reductions (the epoch's sums, sync batchnorm's statistics, a
     * small last bucket) are latency-bound and waited for at once: done
     * here, blocking (Open MPI: recursive doubling, 2 log2 N latencies),
     * the slot stays free. The nonblocking path with Rabenseifner's
     * algorithm (bp_mpi_init) falls back to libnbc's ring, 2 (N-1)
     * latencies, below a power of two of values. Every rank takes the
     * same branch for the same count, so the collectives stay in order. */
    int rc;
    MPI_IN();
    if (count * (type == BP_COMM_F64 ? 8 : 4) <= SMALL_BYTES)
        rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)count, t, MPI_SUM, MPI_COMM_WORLD);
    else
        rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)count, t, MPI_SUM, MPI_COMM_WORLD, &c->req[slot]);
    MPI_OUT();
    return rc == MPI_SUCCESS ? 0 : -1;
}

static int c_test(void *ctx, int slot)
{
    mpi_ctx *c = ctx;
    if (!slot_ok(slot)) return -1;
    if (c->req[slot] == MPI_REQUEST_NULL) return 1;
    int flag = 0;
    MPI_IN();
    int rc = MPI_Test(&c->req[slot], &flag, MPI_STATUS_IGNORE);
    MPI_OUT();
    if (rc != MPI_SUCCESS) return -1;
    return flag ? 1 : 0;
}

static int c_wait(void *ctx, int slot)
{
    mpi_ctx *c = ctx;
    if (!slot_ok(slot)) return -1;
    if (c->req[slot] == MPI_REQUEST_NULL) return 0;
    MPI_IN();
    int rc = MPI_Wait(&c->req[slot], MPI_STATUS_IGNORE);
    MPI_OUT();
    return rc == MPI_SUCCESS ? 0 : -1;
}

static int c_bcast(void *ctx, void *buf, size_t bytes, int root)
{
    (void)ctx;
    unsigned char *p = buf;
    while (bytes > 0) { /* MPI counts are ints */
        int part = bytes > (size_t)INT_MAX ? INT_MAX : (int)bytes;
        MPI_IN();
        int rc = MPI_Bcast(p, part, MPI_BYTE, root, MPI_COMM_WORLD);
        MPI_OUT();
        if (rc != MPI_SUCCESS) return -1;
        p += part;
        bytes -= (size_t)part;
    }
    return 0;
}

static bp_status fail(bp_error *err, int rc, const char *what)
{
    if (err) {
        char s[MPI_MAX_ERROR_STRING] = "";
        int len = 0;
        if (rc != MPI_SUCCESS) MPI_Error_string(rc, s, &len);
        err->code = BP_ECOMM;
        snprintf(err->message, sizeof err->message, "%s failed%s%s", what, len ? ": " : "", s);
    }
    return BP_ECOMM;
}

bp_status bp_mpi_init(bp_comm *comm, int *argc, char ***argv, bp_error *err)
{
    if (!comm) return fail(err, MPI_SUCCESS, "bp_mpi_init (NULL comm)");
    memset(comm, 0, sizeof *comm);
    int inited = 0, rc;
    MPI_Initialized(&inited);
    if (!inited) {
#ifdef OPEN_MPI
        /* Open MPI's nonblocking allreduce (coll/libnbc) uses a binomial
         * tree for every in-place call and below 4 ranks: the whole buffer
         * is reduced at rank 0 and broadcast back, 2 log2(N) full-size
         * transfers through one rank, where a ring or Rabenseifner's
         * reduce-scatter + allgather moves 2 (N-1)/N of the bytes per rank.
         * The trainer's buckets are in-place MPI_Iallreduce calls, so make
         * Rabenseifner's (3; libnbc itself falls back to its ring for
         * counts below the largest power of two <= N) the default, unless
         * the user chose (measured in bench/NOTES.md, "Data-parallel scaling"). */
        setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "3", 0);
#endif
        int provided = 0;
        MPI_IN();
        rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        MPI_OUT();
        if (rc != MPI_SUCCESS) return fail(err, rc, "MPI_Init_thread");
        g_ctx.we_initialized = 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    for (int i = 0; i < BP_COMM_SLOTS; i++) g_ctx.req[i] = MPI_REQUEST_NULL;
    if ((rc = MPI_Comm_rank(MPI_COMM_WORLD, &comm->rank)) != MPI_SUCCESS)
        return fail(err, rc, "MPI_Comm_rank");
    if ((rc = MPI_Comm_size(MPI_COMM_WORLD, &comm->size)) != MPI_SUCCESS)
        return fail(err, rc, "MPI_Comm_size");
    comm->ctx = &g_ctx;
    comm->iallreduce = c_iallreduce;
    comm->test = c_test;
    comm->wait = c_wait;
    comm->bcast = c_bcast;
    return BP_OK;
}

void bp_mpi_finalize(bp_comm *comm)
{
    int fin = 0;
    MPI_Finalized(&fin);
    if (g_ctx.we_initialized && !fin) {
        LEAK_CHECK_NOW();
        MPI_IN();
        MPI_Finalize();
        MPI_OUT();
    }
    if (comm) comm->ctx = NULL;
}

void bp_mpi_abort(bp_comm *comm, int code)
{
    (void)comm;
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    exit(code ? code : 1); /* not reached */
}
