#!/usr/bin/env bash
# netns_rsh.sh - Open MPI's "remote shell" for tests/mpi/netns.sh: mpirun
# (--mca plm_rsh_agent) calls it as it would call ssh,
#   netns_rsh.sh [SSH OPTIONS] HOST COMMAND...
# and it runs COMMAND (the words joined by spaces, as ssh does, for sh -c)
# in the network namespace that owns HOST's address, from BP_NETNS_HOSTS:
#   BP_NETNS_HOSTS="10.213.9.1=/run/netns/A 10.213.9.2=/run/netns/B"
# nsenter --net enters the network namespace only (not `ip netns exec`,
# which also remounts / and /sys and fails in a chroot whose root is not a
# mount point, as in scripts/fresh-machine.sh). The command inherits this
# process's environment, which is mpirun's: PATH, LD_LIBRARY_PATH and the
# allow-run-as-root variables reach the remote orted as they are.
set -u
while [ $# -gt 0 ]; do
  case $1 in
    -[bcDEeFIiJLlmOopQRSWw]) shift 2 ;;  # ssh options that take a value
    -*) shift ;;                          # -x, -T, -q, ...
    *) break ;;
  esac
done
[ $# -ge 2 ] || { echo "netns_rsh: usage: netns_rsh.sh [OPTIONS] HOST COMMAND..." >&2; exit 255; }
host=$1
shift
for pair in ${BP_NETNS_HOSTS:-}; do
  [ "${pair%%=*}" = "$host" ] && exec nsenter --net="${pair#*=}" /bin/sh -c "$*"
done
echo "netns_rsh: no network namespace for host '$host' (BP_NETNS_HOSTS='${BP_NETNS_HOSTS:-}')" >&2
exit 255
