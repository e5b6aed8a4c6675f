/*
 * threads.c - the tool's thread settings: short OpenMP waits, and
 * --threads capped at the cores with a notice.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Spin iterations an idle OpenMP thread waits before sleeping in the
 * kernel. libgomp's default, 300,000, keeps a waiting thread busy for
 * milliseconds after every parallel region (~70 ns an iteration on this
 * Xeon: 21 ms): on a machine where other processes want the cores, that
 * spinning takes their time and ours. With two busy processes, W1 trained
 * on two threads at 1,000-2,500 samples/s with the default, 25,000-50,000
 * with 200-1,000 spins or passive waits, 12,000 with 10,000 spins
 * (bench/NOTES.md). 1,000 (~70 us here) still covers the short gaps
 * between the parallel regions of a training step, so a quiet machine
 * keeps its hand-off speed. */
#define CLI_SPINCOUNT "1000"

/* libgomp reads GOMP_SPINCOUNT and OMP_WAIT_POLICY once, in its own
 * initializer, before main (a setenv in .preinit_array does not survive:
 * glibc resets the environment after it), so the setting only reaches a
 * new image of the program: set it and exec ourselves, once. Only the
 * commands that run parallel regions pay the exec (~10 ms, bench/NOTES.md),
 * and only on a machine with more than one core. A user's own setting of
 * either variable is kept; an exec that fails leaves the defaults. */
void cli_short_waits(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "train") && strcmp(argv[1], "eval") && strcmp(argv[1], "predict") &&
                     strcmp(argv[1], "generate")))
        return;
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || bp_set_threads(0) < 2) return;
    if (setenv("GOMP_SPINCOUNT", CLI_SPINCOUNT, 1) != 0) return;
    execv("/proc/self/exe", argv);
}

void cli_set_threads(int n)
{
    if (n < 0) return; /* not given: the library's default, all cores */
    int got = bp_set_threads(n);
    if (n > got)
        fprintf(stderr, "backprop: warning: --threads %d: only %d core%s available, using %d\n", n,
                got, got == 1 ? "" : "s", got);
}
