#!/usr/bin/env bash
# test.sh - the whole test suite: installs missing Debian packages, then
# builds and runs every test twice, in a Release build and under
# AddressSanitizer + UBSan. Exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test || exit 1
jobs=$(nproc)
status=0
run_suite() { # name, build dir, cmake options...
  local name=$1 dir=$2
  shift 2
  echo "== $name =="
  mkdir -p "$dir"
  cmake -S . -B "$dir" "$@" >"$dir/configure.log" 2>&1 || { cat "$dir/configure.log"; return 1; }
  cmake --build "$dir" -j"$jobs" 2>&1 | grep -E "warning|error" ; [ "${PIPESTATUS[0]}" -eq 0 ] || return 1
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 600
}
run_suite "Release build" build -DCMAKE_BUILD_TYPE=Release || status=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_suite "AddressSanitizer + UBSan build" build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBP_SANITIZE=ON || status=1
if [ $status -eq 0 ]; then echo "test.sh: all suites passed"; else echo "test.sh: FAILURES above"; fi
exit $status
