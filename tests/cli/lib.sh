# lib.sh - shared by the tests/cli/test_*.sh scripts (sourced, not run).
# Sets BP (absolute path of the backprop binary, from $1), makes and enters a
# temporary directory $T removed on exit, and defines the checks:
#   ok NAME / bad NAME        record a pass / a failure
#   check NAME CMD...         pass if CMD succeeds
#   run ARGS...               run backprop; rc, stdout in $T/out, stderr in $T/err
#   finish                    print "N passed, N failed"; status 1 on any failure
#   train_ok, expect_error, json_get, meta   (below)
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

# Checks shared by several scripts (a script may define its own variant after sourcing this).
# train_ok NAME ARGS...: `backprop train ARGS` must exit 0.
train_ok() {
    local name=$1; shift
    run train "$@"
    if [ "$rc" -eq 0 ]; then ok "$name"; else bad "$name (rc=$rc: $(head -c 300 "$T/err"))"; fi
}
# expect_error NAME RC REGEX ARGS...: status RC, one "backprop: " line matching REGEX, no m.safetensors.
expect_error() {
    local name=$1 want=$2 re=$3; shift 3
    rm -f m.safetensors
    run "$@"
    if [ "$rc" -eq "$want" ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q '^backprop: ' "$T/err" &&
        grep -Eq -- "$re" "$T/err" && [ ! -e m.safetensors ]; then
        ok "$name"
    else
        bad "$name (rc=$rc, want $want; stderr: $(head -c 300 "$T/err"))"
    fi
}
# json_get KEY: a key of the JSON object in $T/out.
json_get() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$T/out" "$1"; }
# meta MODEL KEY: a metadata value from `backprop info --full`.
meta() { "$BP" info --full "$1" | awk -v k="$2" '/^metadata$/ { m = 1 } m && $1 == k { sub(/^ *[^ ]+ +/, ""); print; exit }'; }
