#!/usr/bin/env bash
# profile.sh - where a backprop training step spends its time.
#
#   bench/profile.sh W1|W2|W3|W4|W5|W6|W7 [--threads N] [--api step|fit] [--precision f32|bf16]
#                     [--callgrind]
#
# perf (default): `perf record -k CLOCK_MONOTONIC` over bench_backprop, then
#   `perf report` restricted to the timed repetitions (bench_backprop prints
#   their CLOCK_MONOTONIC span as "timed_monotonic"), so data loading and
#   warm-up are left out. Prints the share of each library (the [JIT] rows
#   are oneDNN's generated GEMM kernels) and the top symbols.
# --callgrind: valgrind --tool=callgrind, counting instructions inside
#   bp_train_step only (or bp_forward for W4), and prints instructions per
#   step and the functions they are in (slow: use W2, or W1 with patience).
# --api fit (W1, W2): bench_backprop --api fit, so bp_fit drives the steps;
#   callgrind then counts inside bp_fit (its data check and gathers too).
# Needs build-bench/ (run bench/run.sh --quick once, or it is built here).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BP_BENCH_BUILD:-$ROOT/build-bench}
W=${1:-W1}
shift || true
THREADS=1
PREC=f32
CALLGRIND=0
API=step
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift ;;
    --precision) PREC=$2; shift ;;
    --callgrind) CALLGRIND=1 ;;
    --api) API=$2; shift ;;
    *) echo "profile.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ ! -x "$BUILD/bench_backprop" ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBP_BUILD_BENCH=ON -DBP_BUILD_TESTS=OFF >/dev/null &&
    cmake --build "$BUILD" -j"$(nproc)" --target bench_backprop >/dev/null || exit 1
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=$THREADS
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE

if [ $CALLGRIND = 1 ]; then
  fn=bp_train_step
  [ "$W" = W4 ] && fn=bp_forward
  [ "$API" = fit ] && fn=bp_fit
  # Few steps: callgrind runs ~50x slower than native.
  args=(--reps 1 --min-time 0.01)
  case $W in W3|W5|W7) args+=(--steps 2) ;; esac
  valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" --toggle-collect="$fn" \
    "$BUILD/bench_backprop" "$W" --threads "$THREADS" --api "$API" --precision "$PREC" "${args[@]}" >"$TMP/out.json" 2>"$TMP/vg.log" ||
    { tail "$TMP/vg.log" >&2; exit 1; }
  # Steps inside the collected region = warm-up unit + timed repetition.
  /usr/bin/python3 - "$TMP/out.json" "$TMP/cg.out" "$W" <<'EOF'
import json, re, subprocess, sys
r = json.loads(open(sys.argv[1]).read())
w = sys.argv[3]
steps_timed = r["steps_per_s"] * r["rep_seconds"][0]
if w == "W1": warm = 469
elif w == "W2": warm = 313
elif w in ("W3", "W5", "W7"): warm = 3
else: warm = 10
steps = round(steps_timed) + warm
total = None
for ln in open(sys.argv[2]):
    if ln.startswith("summary:") or ln.startswith("totals:"):
        total = int(ln.split()[1])
print("%s: %d instructions in %d calls = %.0f instructions per step"
      % (w, total, steps, total / steps))
out = subprocess.run(["callgrind_annotate", "--inclusive=no", sys.argv[2]],
                     capture_output=True, text=True).stdout
lines = [l for l in out.splitlines() if re.match(r"\s*[\d,]+ \(", l)]
print("top functions (self instructions, % of the steps):")
for l in lines[:25]:
    print("  " + l.strip()[:150])
EOF
  exit 0
fi

perf record -q -k CLOCK_MONOTONIC -g -o "$TMP/perf.data" \
  "$BUILD/bench_backprop" "$W" --threads "$THREADS" --api "$API" --precision "$PREC" --reps 3 --min-time 2 >"$TMP/out.json" 2>"$TMP/perf.log" ||
  { tail "$TMP/perf.log" >&2; exit 1; }
cat "$TMP/out.json"
span=$(/usr/bin/python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read()); a,b=r["timed_monotonic"]; print("%.6f,%.6f" % (a, b))' "$TMP/out.json")
echo "== share by library, timed repetitions only ([JIT] = oneDNN's generated GEMM kernels)"
perf report -i "$TMP/perf.data" --time "$span" --no-children --sort dso 2>/dev/null |
  grep -E '^ +[0-9.]+%' | head -12
echo "== top symbols"
perf report -i "$TMP/perf.data" --time "$span" --no-children --sort dso,symbol 2>/dev/null |
  grep -E '^ +[0-9.]+%' | grep -v '\[JIT\]' | head -25
