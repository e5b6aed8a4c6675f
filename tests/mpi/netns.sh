#!/usr/bin/env bash
# netns.sh - data-parallel training across two "hosts" (issue 10): two
# network namespaces joined by a veth pair, rank 0 in one and rank 1 in
# the other, Open MPI's TCP transport between them, and the same result as
# on one host (each PROGRAM is tests/mpi/mpi_train.c, which checks that 2
# ranks equal one process and exits non-zero otherwise).
# Usage: bash netns.sh MPIRUN PROGRAM...      (as root; tests/CMakeLists.txt)
#
# How: `ip netns add` makes namespaces A and B (named with our pid, so runs
# in parallel do not clash), `ip link add ... type veth` joins them with
# 10.213.N.1/24 in A and .2/24 in B. mpirun starts in A with
# --host A's,B's address; it reaches "host" B through netns_rsh.sh (the
# plm_rsh_agent, in place of ssh), which runs the orted in B with nsenter.
# The namespaces share the file system, so the program's path is the same
# in both, and the hostname (no UTS namespace), which does not matter:
# Open MPI names the nodes by the --host words (its own node by hostname),
# so it keeps them apart. The ranks talk with `--mca btl tcp,self` only (no
# shared memory), and both TCP layers (the ranks' btl, the daemons' oob)
# are restricted to the veth's subnet.
# We enter the namespaces with nsenter --net rather than `ip netns exec` or
# `ip -n`, which also make / a slave mount and fail in a chroot whose root
# is not a mount point (scripts/fresh-machine.sh's).
#
# What proves it: the program passes (exit 0, "0 failed" on both ranks);
# each rank prints its network namespace before it starts, and rank 0's
# must be A's and rank 1's B's; and the veth end in A must have sent and
# received at least the bytes the program says each rank summed with
# iallreduce (a rank cannot learn the other's sums from fewer bytes).
# Every mpirun is bounded by timeout. The namespaces (and with them the
# veth pair) are deleted on exit, and anything still running in them is
# stopped first; namespaces left by an earlier run that was killed (its
# pid gone) are deleted at the start.
# Fails with the reason when namespaces cannot be made (not root, no
# CAP_SYS_ADMIN, no iproute2 or nsenter).
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: netns.sh MPIRUN PROGRAM..." >&2; exit 2; }
mpirun=$1
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
agent=$here/netns_rsh.sh

npass=0 nfail=0
ok() { echo "ok: $*"; npass=$((npass + 1)); }
bad() { echo "FAILED: $*"; nfail=$((nfail + 1)); }
summary() { echo "netns: $npass passed, $nfail failed"; }
die() { bad "$*"; summary; exit 1; }

for tool in ip nsenter timeout "$mpirun"; do
  command -v "$tool" >/dev/null || die "cannot run the test: '$tool' not found (iproute2, util-linux, coreutils, Open MPI)"
done
[ "$(id -u)" -eq 0 ] || die "cannot make network namespaces: needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN); uid $(id -u)"

NSDIR=/run/netns  # where `ip netns add` keeps them
A=bp-netns-$$-a B=bp-netns-$$-b
vA=bpv$$a vB=bpv$$b  # at most 15 characters
net=10.213.$(($$ % 250 + 1))
ipA=$net.1 ipB=$net.2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bp-netns.XXXXXX") || die "mktemp failed"

ns_id() { stat -L -c 'net:[%i]' "$NSDIR/$1" 2>/dev/null; }  # as /proc/PID/ns/net reads
stop_in() { # NS: kill what still runs in namespace NS (the orted, a rank)
  local id p
  id=$(ns_id "$1") || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$id" ] && kill -KILL "${p#/proc/}" 2>/dev/null
  done
}
cleanup() {
  trap - EXIT INT TERM
  local ns
  for ns in "$A" "$B"; do
    [ -e "$NSDIR/$ns" ] || continue
    stop_in "$ns"
    ip netns delete "$ns" || echo "netns: could not delete namespace $ns" >&2
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "netns: interrupted"; exit 130' INT
trap 'echo "netns: terminated"; exit 143' TERM

# Namespaces of earlier runs that were killed before their cleanup.
for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E '^bp-netns-[0-9]+-[ab]$'); do
  pid=${ns#bp-netns-}
  pid=${pid%-*}
  [ -d "/proc/$pid" ] || { stop_in "$ns"; ip netns delete "$ns" 2>/dev/null; }
done

# ---- the two hosts ----
err=$tmp/setup.err
in_ns() { local ns=$1; shift; nsenter --net="$NSDIR/$ns" "$@"; }
{ ip netns add "$A" && ip netns add "$B"; } 2>"$err" ||
  die "cannot make network namespaces ($(tr '\n' ' ' <"$err")); needs root with CAP_SYS_ADMIN and a writable $NSDIR"
{ ip link add "$vA" netns "$A" type veth peer name "$vB" netns "$B" &&
  in_ns "$A" ip addr add "$ipA/24" dev "$vA" && in_ns "$B" ip addr add "$ipB/24" dev "$vB" &&
  in_ns "$A" ip link set lo up && in_ns "$B" ip link set lo up &&
  in_ns "$A" ip link set "$vA" up && in_ns "$B" ip link set "$vB" up; } 2>"$err" ||
  die "cannot set up the veth pair between $A and $B ($(tr '\n' ' ' <"$err"))"
idA=$(ns_id "$A") idB=$(ns_id "$B")
echo "netns: host A = namespace $A ($idA), $vA $ipA/24; host B = namespace $B ($idB), $vB $ipB/24"

counters() { # the bytes received and sent by the veth end in A: "RX TX"
  in_ns "$A" cat /proc/net/dev | sed 's/:/ /' | awk -v d="$vA" '$1 == d { print $2, $10 }'
}

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Under AddressSanitizer, Open MPI's own leaks are suppressed as in run.sh.
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
export BP_NETNS_HOSTS="$ipA=$NSDIR/$A $ipB=$NSDIR/$B"
# Each rank says where it runs, then becomes the program.
# shellcheck disable=SC2016
where='echo "rank $OMPI_COMM_WORLD_RANK: network namespace $(readlink /proc/self/ns/net), address $(ip -o -4 addr show scope global | awk "{ print \$4 }")"; exec "$@"'

run_one() { # PROGRAM
  local prog=$1 name log rc rx0 tx0 rx1 tx1 red r0 r1 t0
  name=$(basename "$prog")
  log=$tmp/$name.log
  echo "---- $name: rank 0 on host A, rank 1 on host B ----"
  read -r rx0 tx0 < <(counters)
  t0=$SECONDS
  in_ns "$A" timeout --kill-after=10 100 "$mpirun" -np 2 --host "$ipA,$ipB" \
    --mca plm rsh --mca plm_rsh_agent "$agent" \
    --mca btl tcp,self --mca btl_tcp_if_include "$net.0/24" --mca oob_tcp_if_include "$net.0/24" \
    --mca btl_base_warn_component_unused 0 \
    bash -c "$where" rank "$prog" </dev/null 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  read -r rx1 tx1 < <(counters)
  echo "($name took $((SECONDS - t0)) s)"
  if [ "$rc" -eq 0 ]; then ok "$name: exit status 0 (2 ranks on two hosts equal one process)"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then bad "$name: timed out after 100 s"
  else bad "$name: exit status $rc"; fi

  r0=$(sed -n 's/^rank 0: network namespace \(net:\[[0-9]*\]\).*/\1/p' "$log")
  r1=$(sed -n 's/^rank 1: network namespace \(net:\[[0-9]*\]\).*/\1/p' "$log")
  if [ "$r0" = "$idA" ] && [ "$r1" = "$idB" ]; then ok "$name: rank 0 ran in A, rank 1 in B"
  else bad "$name: rank 0 in '${r0:-?}', rank 1 in '${r1:-?}' (want A $idA, B $idB)"; fi

  if [ "$(grep -c "^$name: [0-9]* passed, 0 failed\$" "$log")" -eq 2 ]; then
    ok "$name: both ranks report 0 failed"
  else bad "$name: not both ranks report '0 failed'"; fi

  red=$(sed -n "s/^$name: rank 0: allreduced \([0-9]*\) bytes\$/\1/p" "$log")
  if [ -z "$rx0" ] || [ -z "$rx1" ]; then bad "$name: no byte counters for $vA in /proc/net/dev"
  elif [ -z "$red" ] || [ "$red" -le 0 ]; then bad "$name: rank 0 did not say how many bytes it allreduced"
  elif [ $((rx1 - rx0)) -ge "$red" ] && [ $((tx1 - tx0)) -ge "$red" ]; then
    ok "$name: $vA received $((rx1 - rx0)) and sent $((tx1 - tx0)) bytes, at least the $red bytes each rank allreduced"
  else
    bad "$name: $vA received $((rx1 - rx0)) and sent $((tx1 - tx0)) bytes, less than the $red bytes each rank allreduced"
  fi
}

for prog in "$@"; do run_one "$prog"; done
summary
[ "$nfail" -eq 0 ]
