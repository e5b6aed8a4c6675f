#!/usr/bin/env bash
# test_cli_threads.sh - --threads is capped at the cores with a warning
# (train, eval, predict), and train/eval/predict run with short OpenMP
# waits (GOMP_SPINCOUNT) unless the user set the wait policy (issue 7,
# defect 2.5). No timings: the effects are read from the messages and from
# libgomp's own report of its settings (OMP_DISPLAY_ENV).
# Usage: bash test_cli_threads.sh PATH_TO_BACKPROP SOURCE_DIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cores=$(nproc)
# all EXPR: test(1) of the whole expression (one command for `check`).
all() { test "$@"; }
# short V: V is a spin count of at most 10,000.
short() { [ -n "$1" ] && [ "$1" -le 10000 ]; }

awk 'BEGIN { s = 4242; print "a,b,c,label";
    for (i = 0; i < 200; i++) { s = (s * 16807) % 2147483647; u = s / 2147483647;
        s = (s * 16807) % 2147483647; v = s / 2147483647; c = i % 3;
        printf "%.4f,%.4f,%.4f,k%d\n", c + u, v - c, u * v, c } }' >d.csv

run train d.csv -o m.st --epochs 3 --threads 4096 -q
check "train --threads 4096 trains" all "$rc" -eq 0 -a -s m.st
check "train --threads 4096 warns about the cap" grep -q "^backprop: warning: --threads 4096: only $cores cores\? available, using $cores\$" err
run train d.csv -o m1.st --epochs 3 --threads 1 -q
check "train --threads 1: no warning" all "$rc" -eq 0 -a ! -s err
run train d.csv -o m0.st --epochs 3 --threads 0 -q
check "train --threads 0 (all cores): no warning" all "$rc" -eq 0 -a ! -s err
check "tiny network: the same model on 1 and on all threads" cmp -s m1.st m0.st
run eval m.st d.csv --threads 4096
check "eval --threads 4096 evaluates" all "$rc" -eq 0 -a -s out
check "eval --threads 4096 warns" grep -q "^backprop: warning: --threads 4096: only $cores core" err
run predict m.st d.csv --threads 99999
check "predict --threads above the option's range is still a usage error" [ "$rc" -eq 2 ]
run predict m.st d.csv --threads 4096 -o p.csv
check "predict --threads 4096 predicts" all "$rc" -eq 0 -a -s p.csv
check "predict --threads 4096 warns" grep -q "^backprop: warning: --threads 4096: only $cores core" err

# libgomp prints its settings with OMP_DISPLAY_ENV; the second report (the
# re-executed program's) is the one that runs.
spin() { OMP_DISPLAY_ENV=verbose "$@" 2>&1 >/dev/null | sed -n "s/^ *GOMP_SPINCOUNT = '\([0-9]*\)'.*/\1/p" | tail -n 1; }
if [ "$cores" -ge 2 ]; then
    v=$(spin env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY "$BP" train d.csv -o s.st --epochs 1 -q)
    check "train runs with a short OpenMP spin (got '$v')" short "$v"
    v=$(spin env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY "$BP" eval m.st d.csv)
    check "eval runs with a short OpenMP spin (got '$v')" short "$v"
else
    echo "skip: one core, no OpenMP waits to shorten"
fi
v=$(spin env GOMP_SPINCOUNT=123456 "$BP" train d.csv -o s.st --epochs 1 -q)
check "a user's GOMP_SPINCOUNT is kept (got '$v')" [ "$v" = 123456 ]
v=$(spin env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=active "$BP" train d.csv -o s.st --epochs 1 -q)
check "a user's OMP_WAIT_POLICY=active is kept (spin '$v')" all -n "$v" -a "${v:-0}" -gt 10000
run train d.csv -o s2.st --epochs 1 -q
check "training still works after the re-exec" all "$rc" -eq 0 -a -s s2.st
finish
