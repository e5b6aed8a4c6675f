/*
 * comm.c - what data-parallel training needs beyond the communicator's four
 * functions (bp_comm, include/backprop.h): a blocking sum, and agreement
 * between the ranks on a status and on a list of values (row counts,
 * parameter counts, settings), with a message that names the first rank
 * that failed or differs. No MPI here: the communicator is the caller's
 * (mpi/backprop_mpi.c fills one from MPI_COMM_WORLD).
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The slot blocking reductions use (the trainer's buckets take the low ones). */
#define SLOT_BLOCKING (BP_COMM_SLOTS - 1)

int bp_comm_sum(const bp_comm *c, void *buf, size_t count, bp_comm_type type)
{
    if (!c || c->size <= 1 || count == 0) return 0;
    if (c->iallreduce(c->ctx, SLOT_BLOCKING, buf, count, type)) return -1;
    return c->wait(c->ctx, SLOT_BLOCKING) ? -1 : 0;
}

int bp_comm_valid(const bp_comm *c)
{
    return c && c->size >= 1 && c->rank >= 0 && c->rank < c->size && c->iallreduce && c->wait &&
           c->bcast;
}

/* Per rank in the exchange: status, k values, then MSG_CHARS characters
 * of its message, each as a double (exact for bytes and for integers below
 * 2^53; the values here are counts, settings and 32-bit hash halves). */
#define MSG_CHARS 240

bp_status bp_comm_check(const bp_comm *c, bp_status local, const bp_error *local_err,
                        const double *vals, const char *const *names, int k, const char *what,
                        bp_error *err)
{
    if (!c || c->size <= 1) {
        if (local && err && local_err && err != local_err) *err = *local_err;
        return local;
    }
    size_t per = 1 + (size_t)k + MSG_CHARS, size = (size_t)c->size;
    double *all = calloc(per * size, sizeof *all);
    if (!all) {
        /* The others wait in the exchange: the caller must stop the job
         * (the CLI aborts it). */
        return bp_fail(err, BP_ENOMEM, "out of memory for the ranks' agreement");
    }
    double *mine = all + per * (size_t)c->rank;
    mine[0] = local ? (double)local : 0;
    for (int j = 0; j < k; j++) mine[1 + j] = vals ? vals[j] : 0;
    if (local && local_err) {
        const char *m = local_err->message;
        for (size_t q = 0; q < MSG_CHARS - 1 && m[q]; q++) mine[1 + k + q] = (unsigned char)m[q];
    }
    if (bp_comm_sum(c, all, per * size, BP_COMM_F64)) {
        free(all);
        return bp_fail(err, BP_ECOMM, "%s: the reduction between the ranks failed", what);
    }
    bp_status s = BP_OK;
    for (int r = 0; r < c->size && !s; r++) {
        const double *v = all + per * (size_t)r;
        if (v[0] != 0) {
            char msg[MSG_CHARS];
            size_t q = 0;
            for (; q < MSG_CHARS - 1 && v[1 + k + q] > 0; q++) msg[q] = (char)(int)v[1 + k + q];
            msg[q] = 0;
            s = bp_fail(err, BP_ECOMM, "rank %d: %s", r, q ? msg : bp_status_name((bp_status)(int)v[0]));
        }
    }
    for (int r = 1; r < c->size && !s; r++) {
        const double *v = all + per * (size_t)r, *v0 = all + 1;
        for (int j = 0; j < k; j++)
            if (v[1 + j] != v0[j] && !(isnan(v[1 + j]) && isnan(v0[j]))) {
                s = bp_fail(err, BP_ECOMM, "%s: rank %d's %s is %.17g, rank 0's %.17g", what, r,
                            names[j], v[1 + j], v0[j]);
                break;
            }
    }
    free(all);
    return s;
}

bp_status bp_comm_agree(const bp_comm *comm, bp_status local, const bp_error *local_err,
                        bp_error *err)
{
    if (comm && comm->size > 1 && !bp_comm_valid(comm))
        return bp_fail(err, BP_EINVAL, "bp_comm_agree: invalid communicator");
    return bp_comm_check(comm, local, local_err, NULL, NULL, 0, "agreement", err);
}

/* FNV-1a over 8-byte words (then the tail's bytes), split into the two
 * 32-bit halves a double holds exactly. */
void bp_comm_hash(const void *p, size_t bytes, double *hi, double *lo)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h ^= w;
        h *= 0x100000001b3ULL;
    }
    for (; i < bytes; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    *hi = (double)(h >> 32);
    *lo = (double)(h & 0xffffffffu);
}
