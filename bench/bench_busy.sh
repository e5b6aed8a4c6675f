#!/usr/bin/env bash
# bench_busy.sh - the CLI's default thread count against --threads 1 while
# two other processes keep the cores busy (issue 7, defect 2.5).
#
#   bench/bench_busy.sh BACKPROP WORKDIR [REPS] [train|eval]...
#
# train: the small wine network (sklearn's wine_data.csv, 178 rows, 13
#        features; `backprop train` defaults: dense(64) relu, batch 32),
#        --epochs 200, standardized.
# eval:  `backprop eval` of that model on 500,000 rows (the wine rows
#        repeated): the parallel CSV parse and large forward GEMMs.
# Two `while :; do :; done` shells run during the measurements and are
# killed however the script exits. The two settings alternate, REPS (5)
# times each; one JSON line per case on stdout: the median and every wall
# time in seconds, ratio = median(default) / median(--threads 1) (target
# <= 1.2) and ratio_min, the same of the fastest runs. Exit 1 if a run
# fails; 3 if the wine data is missing.
set -u
BP=${1:?usage: bench_busy.sh BACKPROP WORKDIR [REPS] [train|eval]...}
WORK=${2:?usage: bench_busy.sh BACKPROP WORKDIR [REPS] [train|eval]...}
REPS=${3:-5}
shift 2
[ $# -gt 0 ] && shift
CASES=${*:-train eval}
WINE=${BP_WINE_CSV:-/usr/lib/python3/dist-packages/sklearn/datasets/data/wine_data.csv}
[ -r "$WINE" ] || { echo "bench_busy: $WINE not found (python3-sklearn)" >&2; exit 3; }
mkdir -p "$WORK" || exit 1

# sklearn's file starts with a count line ("178,13,class_0,..."): replace it
# by a header.
{ echo "alcohol,malic_acid,ash,alcalinity,magnesium,phenols,flavanoids,nonflavanoid,proanthocyanins,color,hue,od280,proline,class"
  tail -n +2 "$WINE"; } >"$WORK/wine.csv"

BUSY=()
stop_busy() { for p in "${BUSY[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; BUSY=(); }
trap 'stop_busy' EXIT
trap 'stop_busy; exit 130' INT TERM

now() { date +%s.%N; }
# time_run OUTVAR CMD...: wall seconds of CMD into OUTVAR; returns CMD's status.
time_run() {
  local __v=$1 t0 t1 rc
  shift
  t0=$(now)
  "$@" >/dev/null 2>>"$WORK/busy.err"
  rc=$?
  t1=$(now)
  printf -v "$__v" '%s' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')"
  return $rc
}

# measure CASE CMD...: alternate default / --threads 1 (appended), print the JSON line.
measure_case() {
  local name=$1 t d=() o=() i
  shift
  for ((i = 0; i < REPS; i++)); do
    time_run t "$@" || { echo "bench_busy: $name failed: $*" >&2; return 1; }
    d+=("$t")
    time_run t "$@" --threads 1 || { echo "bench_busy: $name --threads 1 failed" >&2; return 1; }
    o+=("$t")
  done
  python3 - "$name" "$(cut -d' ' -f1-3 /proc/loadavg)" "${d[*]}" "${o[*]}" <<'PY'
import json, statistics, sys
name, load, d, o = sys.argv[1], sys.argv[2], [float(x) for x in sys.argv[3].split()], [float(x) for x in sys.argv[4].split()]
md, mo = statistics.median(d), statistics.median(o)
print(json.dumps({"prog": "busy", "workload": "busy_" + name, "busy_processes": 2,
                  "loadavg": load, "default_s": d, "threads1_s": o, "default_median_s": md,
                  "threads1_median_s": mo, "ratio": md / mo, "ratio_min": min(d) / min(o)}))
PY
}

# The model for eval, and the 500k-row file, made before the busy loops start.
for c in $CASES; do
  case $c in
    eval)
      "$BP" train "$WORK/wine.csv" --normalize standard -o "$WORK/wine.safetensors" -q \
        >/dev/null 2>>"$WORK/busy.err" || { echo "bench_busy: training the eval model failed" >&2; exit 1; }
      awk 'NR == 1 { print; next } { r[++n] = $0 } END { for (i = 0; i < 500000; i++) print r[i % n + 1] }' \
        "$WORK/wine.csv" >"$WORK/wine500k.csv" ;;
    train) ;;
    *) echo "bench_busy: unknown case $c" >&2; exit 2 ;;
  esac
done

for i in 1 2; do sh -c 'while :; do :; done' & BUSY+=($!); done
sleep 0.5
rc=0
for c in $CASES; do
  case $c in
    train) measure_case train "$BP" train "$WORK/wine.csv" --normalize standard --epochs 200 \
             -o "$WORK/busy.safetensors" -q || rc=1 ;;
    eval) measure_case eval "$BP" eval "$WORK/wine.safetensors" "$WORK/wine500k.csv" || rc=1 ;;
  esac
done
exit $rc
