/*
 * backprop_mpi.h - a bp_comm (backprop.h) over MPI_COMM_WORLD, for
 * data-parallel training with `mpirun -np N`. Its own library
 * (libbackprop_mpi), so libbackprop stays free of MPI.
 *
 *   bp_comm comm;
 *   if (bp_mpi_init(&comm, &argc, &argv, &err)) ...;   // MPI_Init_thread
 *   bp_trainer_create(&tr, net, &cfg, batch, &err);
 *   bp_trainer_set_comm(tr, &comm, &err);             // collective
 *   bp_fit(tr, &train, &val, &res, &err);             // on every rank
 *   if (comm.rank == 0) bp_net_save(net, "model.safetensors", &err);
 *   bp_mpi_finalize(&comm);
 */
#ifndef BACKPROP_MPI_H
#define BACKPROP_MPI_H

#include "backprop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the environment says this process was started by an MPI
 * launcher (mpirun, mpiexec, srun with PMIx) as one of several ranks. */
int bp_mpi_launched(void);

/* Initialize MPI (MPI_THREAD_FUNNELED: only the calling thread talks to
 * MPI; the trainer's OpenMP threads never do) unless it is initialized
 * already, and fill *comm with MPI_COMM_WORLD's rank and size. Errors in
 * MPI calls are returned, not fatal. BP_ECOMM with MPI's message on
 * failure. argc, argv may be NULL.
 * With Open MPI, when it initializes MPI, it sets the environment variable
 * OMPI_MCA_coll_libnbc_iallreduce_algorithm to 3 (Rabenseifner's
 * reduce-scatter + allgather) unless it is set already: Open MPI's own
 * choice for in-place MPI_Iallreduce, the trainer's, is a binomial tree
 * that sends the whole gradient to rank 0 and back (set it to 0 to keep
 * Open MPI's choice). */
bp_status bp_mpi_init(bp_comm *comm, int *argc, char ***argv, bp_error *err);

/* Finalize MPI if bp_mpi_init initialized it (a no-op otherwise). */
void bp_mpi_finalize(bp_comm *comm);

/* Stop every rank of the job now (MPI_Abort with `code`): for a rank that
 * failed where the others may be waiting for it. Does not return. */
void bp_mpi_abort(bp_comm *comm, int code);

#ifdef __cplusplus
}
#endif

#endif
