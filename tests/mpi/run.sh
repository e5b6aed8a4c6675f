#!/usr/bin/env bash
# run.sh - run an MPI test program with `mpirun -np 2` (tests/CMakeLists.txt).
# Usage: run.sh MPIRUN PROGRAM [ARGS...]
# As root, Open MPI refuses to start without its two allow-run-as-root
# variables; --oversubscribe lets 2 ranks start where fewer slots are found
# (a container may report one core). The whole run is bounded by timeout
# so a hang fails the test instead of stalling the suite.
set -euo pipefail
mpirun=$1
shift
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Under AddressSanitizer (scripts/test.sh), leaks that Open MPI leaves at
# exit are suppressed (lsan.supp says why); backprop's are still reported.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
# No network interfaces besides loopback are needed; keep Open MPI quiet
# about missing high-speed transports.
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_base_warn_component_unused=0
exec timeout --kill-after=10 240 "$mpirun" --oversubscribe -np 2 "$@"
