/*
 * dist.c - data-parallel training in the tool: `mpirun -np N backprop
 * train ...` (issue 10). Detects the launcher, starts MPI through
 * libbackprop_mpi (when the tool is built with it), and keeps the rank for
 * messages: "backprop: rank R: ..." once several ranks run; usage errors
 * found before MPI starts (the command line's, the same on every rank) are
 * printed by rank 0 only.
 *
 * Failures: a rank that fails alone (its data do not read, its network
 * does not fit, rank 0 cannot write the model) may leave the others
 * waiting in a collective, so it ends the whole job (cli_dist_end with a
 * failure: MPI_Abort; mpirun stops every rank within seconds, with
 * SIGTERM: the tool removes its temporary files; a model that bp_net_save
 * is writing at that moment may leave its own). A failure a collective
 * call agreed on (BP_ECOMM from bp_trainer_set_comm or bp_fit, a
 * non-finite loss) is the same on every rank: the ranks finalize and exit
 * with it.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#ifdef BP_HAVE_MPI
#include "backprop_mpi.h"
#endif

static bp_comm g_comm;
static int g_started, g_shared;

/* The launcher's rank count for this job (Open MPI, PMI, PMIx), 0 if none. */
static int launcher_size(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 0;
}

int cli_dist_launched(void) { return launcher_size() > 1; }

void cli_dist_guess_rank(void)
{
    const char *v = getenv("OMPI_COMM_WORLD_RANK");
    if (!v) v = getenv("PMI_RANK");
    if (!v) v = getenv("PMIX_RANK");
    if (cli_dist_launched() && v) cli_rank = atoi(v);
}

int cli_dist_start(int *argc, char ***argv)
{
    if (!cli_dist_launched()) return CLI_OK;
#ifdef BP_HAVE_MPI
    bp_error err = {0};
    if (bp_mpi_init(&g_comm, argc, argv, &err) != BP_OK)
        return cli_fail(CLI_FAIL, "cannot start data-parallel training: %s", err.message);
    g_started = cli_mpi_started = 1;
    cli_rank = g_comm.rank;
    return CLI_OK;
#else
    (void)argc, (void)argv;
    return cli_fail(CLI_USAGE, "started by an MPI launcher as %d ranks, but this backprop was "
                    "built without MPI (install libopenmpi-dev and rebuild; see README)",
                    launcher_size());
#endif
}

const bp_comm *cli_dist_comm(void) { return g_started && g_comm.size > 1 ? &g_comm : NULL; }

int cli_dist_leader(void) { return cli_rank <= 0; }

void cli_dist_settled(void) { g_shared = 1; }

/* Threads per rank when --threads is not given: the cores shared among the
 * ranks on this machine (Open MPI's local size). */
int cli_dist_default_threads(void)
{
    if (!cli_dist_comm()) return -1;
    const char *v = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int local = v ? atoi(v) : 1;
    if (local < 1) local = 1;
    int cores = bp_set_threads(0);
    int t = cores / local;
    return t < 1 ? 1 : t;
}

int cli_dist_end(int status)
{
#ifdef BP_HAVE_MPI
    if (!g_started) return status;
    /* A failure no collective call agreed on may be this rank's alone:
     * end the job (even a usage error: some depend on a rank's files). */
    if (status != CLI_OK && !g_shared && g_comm.size > 1) bp_mpi_abort(&g_comm, status);
    bp_mpi_finalize(&g_comm);
    g_started = 0;
#endif
    return status;
}
