# lib.sh - shared by the tests/cli/test_*.sh scripts (sourced, not run).
# Sets BP (absolute path of the backprop binary, from $1), makes and enters a
# temporary directory $T removed on exit, and defines the checks:
#   ok NAME / bad NAME        record a pass / a failure
#   check NAME CMD...         pass if CMD succeeds
#   run ARGS...               run backprop; rc, stdout in $T/out, stderr in $T/err
#   finish                    print "N passed, N failed"; status 1 on any failure
BP=${1:?usage: bash test_cli_NAME.sh BACKPROP SOURCE_DIR}
case $BP in /*) ;; *) BP=$PWD/$BP ;; esac
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
pass=0 fail=0
ok() { echo "PASS: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
run() { "$BP" "$@" >"$T/out" 2>"$T/err"; rc=$?; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; }
