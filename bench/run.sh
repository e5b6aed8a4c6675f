#!/usr/bin/env bash
# run.sh - build the benchmark programs, run every measurement of issue 4 as
# its own process, print the comparison table (see bench/README.md).
#
#   bench/run.sh [--quick] [--only W1,W2,W3,W4,W5,W6,W7,MPI,BUSY] [--no-torch] [--no-torch-pip]
#                [--no-compile] [--no-bf16] [--no-fann] [--out DIR]
#
# --quick   smoke test: 1 repetition, 0.2 s minimum, W3/W5 10 steps, W7 5 (numbers meaningless)
# --only    run these workloads only (the GEMM rate runs with W3, W5 or W6; BUSY: the CLI's
#           default threads against --threads 1 while two busy processes run, bench_busy.sh;
#           MPI: data-parallel scaling of issue 10, W3 and W5 through bp_fit with
#           `mpirun -np 1` and `mpirun -np 2`, 1 thread a rank, and the allreduce sweep,
#           bench_mpi; needs mpirun and an MPI build, skipped with a message otherwise).
#           Data-parallel scaling alone: bench/run.sh --only MPI --no-torch --no-fann
# --no-torch      no PyTorch rows at all; --no-torch-pip: Debian's torch only (no venv);
# --no-compile    no torch.compile rows (W1-W6 with the pip torch; bench_torch.py has none for W7)
# --no-bf16       no bfloat16 rows (backprop --precision bf16 on W1, W3-W6; the pip torch's
#                 torch.autocast bf16 on W3-W6); on a CPU without AVX512_BF16 they are
#                 skipped with the reason
# --out     where the JSON results, logs and the table go
#           (default build-bench/results-YYYYmmdd-HHMMSS, and build-bench/latest links to it)
# Environment: BP_BENCH_BUILD (build dir, default <repo>/build-bench),
#              BP_BENCH_DATA (Fashion-MNIST dir), BP_BENCH_TEXT (W7's text, the fortunes dir),
#              BP_BENCH_REPS (3), BP_BENCH_MIN_TIME (1.0),
#              BP_BENCH_TORCH_PIP (the pinned PyPI torch, 2.15.0), BP_BENCH_NUMPY_PIP (2.4.6),
#              BP_BENCH_TORCH_INDEX (a pip --index-url for torch, e.g. PyTorch's CPU-only
#              index where it can be reached; default: PyPI, whose Linux wheel is the CUDA
#              build, ~3 GB of downloads and 5.4 GB installed, run on the CPU here).
# backprop's W5/W6 rows are measured only when bench_backprop's usage names the workload
# (until it does, the table shows them as n/a).
#
# Exits non-zero if the build or any measurement fails; a missed target is
# reported in the table, not in the exit status.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BP_BENCH_BUILD:-$ROOT/build-bench}
PY=/usr/bin/python3   # Debian's, where python3-torch and numpy live
REPS=${BP_BENCH_REPS:-3}
MIN_TIME=${BP_BENCH_MIN_TIME:-1.0}
W3_STEPS=60
W5_STEPS=40
W7_STEPS=20
ONLY=W1,W2,W3,W4,W5,W6,W7,MPI,BUSY
DO_TORCH=1
DO_TORCH_PIP=1
DO_COMPILE=1
DO_BF16=1
DO_FANN=1
TORCH_PIP=${BP_BENCH_TORCH_PIP:-2.15.0}
NUMPY_PIP=${BP_BENCH_NUMPY_PIP:-2.4.6}
TORCH_INDEX=${BP_BENCH_TORCH_INDEX:-}
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) REPS=1; MIN_TIME=0.2; W3_STEPS=10; W5_STEPS=10; W7_STEPS=5 ;;
    --only) ONLY=$2; shift ;;
    --no-torch) DO_TORCH=0; DO_TORCH_PIP=0 ;;
    --no-torch-pip) DO_TORCH_PIP=0 ;;
    --no-compile) DO_COMPILE=0 ;;
    --no-bf16) DO_BF16=0 ;;
    --no-fann) DO_FANN=0 ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
want() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# --------------------------------------------------------------------------
# Install what is missing (FANN, /usr/bin/time, torch, ...), then build
# (Release, tests off) into build-bench/.
# --------------------------------------------------------------------------
if ! "$ROOT/scripts/deps.sh" bench; then
  echo "bench: scripts/deps.sh bench failed" >&2
  exit 1
fi
mkdir -p "$BUILD"
LINK_LATEST=0
[ -n "$OUT" ] || { OUT=$BUILD/results-$(date +%Y%m%d-%H%M%S); LINK_LATEST=1; }
mkdir -p "$OUT"
echo "bench: building into $BUILD (log: $OUT/build.log)"
targets=(bench_backprop gemm_rate backprop_cli)
[ $DO_FANN = 1 ] && targets+=(bench_fann)
if ! { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBP_BUILD_BENCH=ON \
         -DBP_BUILD_TESTS=OFF -DBP_BUILD_FUZZ=OFF &&
       cmake --build "$BUILD" -j"$(nproc)" --target "${targets[@]}"; } >"$OUT/build.log" 2>&1; then
  tail -n 30 "$OUT/build.log" >&2
  echo "bench: build failed" >&2
  exit 1
fi
# bench_mpi exists when CMake found MPI (libbackprop_mpi); the MPI rows also
# need a launcher.
MPI_SKIP=""
MPIRUN=""
if want MPI; then
  MPIRUN=$(command -v mpirun || command -v mpiexec || true)
  if [ -z "$MPIRUN" ]; then
    MPI_SKIP="no mpirun (apt-get install openmpi-bin libopenmpi-dev)"
  elif ! cmake --build "$BUILD" --target help 2>/dev/null | grep -qw bench_mpi; then
    MPI_SKIP="CMake found no MPI, so bench_mpi is not built (apt-get install libopenmpi-dev)"
  elif ! cmake --build "$BUILD" -j"$(nproc)" --target bench_mpi >>"$OUT/build.log" 2>&1; then
    tail -n 30 "$OUT/build.log" >&2
    echo "bench: build of bench_mpi failed" >&2
    exit 1
  fi
fi
if [ $DO_FANN = 1 ] && [ ! -x "$BUILD/bench_fann" ]; then
  echo "bench: bench_fann was not built (libfann-dev missing?)" >&2
  exit 1
fi
if [ $DO_TORCH = 1 ] && ! env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" -c "import torch, numpy" 2>/dev/null; then
  echo "bench: $PY cannot import torch and numpy (apt-get install python3-torch)" >&2
  exit 1
fi

# --------------------------------------------------------------------------
# The current PyTorch wheel from PyPI, pinned, in a virtual environment under
# the build folder (kept between runs; reinstalled when the pin changes).
# A failed install is reported loudly and the run goes on without its rows.
# --------------------------------------------------------------------------
VENV=$BUILD/venv
VPY=""
TORCH_PIP_FOUND="not requested"
pip_torch() {
  local log=$OUT/venv.log have
  if [ ! -x "$VENV/bin/python" ]; then
    echo "bench: creating $VENV"
    "$PY" -m venv "$VENV" >>"$log" 2>&1 || { rm -rf "$VENV"; return 1; }
  fi
  have=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$VENV/bin/python" -c \
    'import torch, numpy; print(torch.__version__.split("+")[0], numpy.__version__)' 2>/dev/null)
  if [ "$have" != "$TORCH_PIP $NUMPY_PIP" ]; then
    local idx=()
    [ -n "$TORCH_INDEX" ] && idx=(--index-url "$TORCH_INDEX")
    echo "bench: pip installing torch==$TORCH_PIP numpy==$NUMPY_PIP into $VENV${TORCH_INDEX:+ from $TORCH_INDEX} (log: $log)"
    "$VENV/bin/python" -m pip install "${idx[@]}" "torch==$TORCH_PIP" "numpy==$NUMPY_PIP" \
      >>"$log" 2>&1 || return 1
  fi
  TORCH_PIP_FOUND=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$VENV/bin/python" -c \
    'import torch, numpy; print(torch.__version__)' 2>>"$log") || return 1
  VPY=$VENV/bin/python
}
if [ $DO_TORCH_PIP = 1 ]; then
  if ! pip_torch; then
    TORCH_PIP_FOUND="install failed"
    {
      echo "bench: ######################################################################"
      echo "bench: WARNING: could not install torch==$TORCH_PIP (PyPI) into $VENV:"
      tail -n 5 "$OUT/venv.log" | sed 's/^/bench:   /'
      echo "bench: NO PyTorch $TORCH_PIP ROWS in this run; going on with Debian's torch."
      echo "bench: ######################################################################"
    } >&2
  else
    echo "bench: PyTorch from PyPI: $TORCH_PIP_FOUND ($VPY)"
  fi
fi

# backprop's side of a workload exists when bench_backprop's usage names it.
bp_has() { "$BUILD/bench_backprop" 2>&1 | head -n 3 | grep -qw "$1"; }

# --------------------------------------------------------------------------
# Environment record.
# --------------------------------------------------------------------------
# The commit, +dirty with local changes; "unknown" without git (a fresh system
# needs no git: scripts/fresh-machine.sh clones from outside).
if GITREV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
  git -C "$ROOT" diff --quiet HEAD 2>/dev/null || GITREV=$GITREV+dirty
else
  GITREV=unknown
fi
TIME_BIN=/usr/bin/time
[ -x "$TIME_BIN" ] || TIME_BIN=""
{
  echo "{"
  echo "\"date\": \"$(date -Is)\","
  echo "\"host\": \"$(hostname)\","
  echo "\"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')\","
  echo "\"nproc\": $(nproc),"
  echo "\"loadavg_start\": \"$(cut -d' ' -f1-3 /proc/loadavg)\","
  echo "\"reps\": $REPS, \"min_time\": $MIN_TIME, \"w3_steps\": $W3_STEPS, \"w5_steps\": $W5_STEPS, \"w7_steps\": $W7_STEPS,"
  echo "\"git\": \"$GITREV\","
  echo "\"dnnl\": \"$(dpkg-query -W -f='${Version}' libdnnl-dev 2>/dev/null)\","
  echo "\"fann\": \"$(dpkg-query -W -f='${Version}' libfann-dev 2>/dev/null)\","
  echo "\"fortunes\": \"$(dpkg-query -W -f='${Version}' fortunes 2>/dev/null)\","
  echo "\"text\": \"${BP_BENCH_TEXT:-/usr/share/games/fortunes}\","
  echo "\"torch\": \"$(dpkg-query -W -f='${Version}' python3-torch 2>/dev/null)\","
  echo "\"torch_pip\": \"$TORCH_PIP_FOUND\", \"torch_pip_pin\": \"$TORCH_PIP\", \"numpy_pip\": \"$NUMPY_PIP\","
  echo "\"torch_index\": \"${TORCH_INDEX:-PyPI}\","
  echo "\"openblas\": \"$(dpkg-query -W -f='${Version}' libopenblas0 2>/dev/null)\""
  echo "}"
} >"$OUT/env.json"

# --------------------------------------------------------------------------
# One measurement = one process, with its thread count in the environment,
# OpenBLAS's kernel override removed, and its peak RSS from /usr/bin/time.
# --------------------------------------------------------------------------
FAILED=0
# measure_opt: the same, but an exit status of 3 means "cannot run here"
# (bench_torch.py --compile without a working torch.compile): skipped, with
# the program's reason, not a failure.
SKIP_OK=0
measure_opt() { SKIP_OK=1; measure "$@"; SKIP_OK=0; }
measure() { # TAG THREADS CMD...
  local tag=$1 threads=$2
  shift 2
  local t0=$SECONDS
  local timer=()
  [ -n "$TIME_BIN" ] && timer=("$TIME_BIN" -f %M -o "$OUT/$tag.rss")
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE -u OMP_PROC_BIND -u OMP_PLACES \
      OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" \
      "${timer[@]}" "$@" >"$OUT/$tag.json" 2>"$OUT/$tag.err"
  local rc=$?
  if [ $rc -eq 3 ] && [ $SKIP_OK = 1 ]; then
    echo "  $tag: skipped: $(tail -n 1 "$OUT/$tag.err")"
    rm -f "$OUT/$tag.json"
    return 0
  fi
  if [ $rc -ne 0 ] || ! grep -q '^{' "$OUT/$tag.json"; then
    echo "bench: FAILED $tag (exit $rc): $*" >&2
    tail -n 5 "$OUT/$tag.err" >&2
    FAILED=$((FAILED + 1))
    return 0
  fi
  "$PY" -c 'import json,sys; r=json.loads(open(sys.argv[1]).readlines()[-1])
if "alpha_us" in r: print("  %-28s alpha %.2f us, B %.2f GB/s (ring fit, %d ranks)  (%ss)" % (sys.argv[2], r["alpha_us"], r["bandwidth_gbps"], r["ranks"], sys.argv[3]))
elif "samples_per_s" in r: print("  %-28s %12.1f samples/s %10.1f steps/s  (%ss)" % (sys.argv[2], r["samples_per_s"], r["steps_per_s"], sys.argv[3]))
else: print("  %-28s %12.1f GFLOP/s  (%ss)" % (sys.argv[2], r["gflops"], sys.argv[3]))' \
    "$OUT/$tag.json" "$tag" "$((SECONDS - t0))"
}

BPB=$BUILD/bench_backprop
COMMON=(--reps "$REPS" --min-time "$MIN_TIME")
echo "bench: results in $OUT (load average $(cut -d' ' -f1-3 /proc/loadavg))"
GEMM_DONE=0
for w in W1 W2 W3 W4 W5 W6 W7; do
  want $w || continue
  echo "bench: $w"
  extra=()
  [ $w = W3 ] && extra=(--steps "$W3_STEPS")
  [ $w = W5 ] && extra=(--steps "$W5_STEPS")
  [ $w = W7 ] && extra=(--steps "$W7_STEPS")
  # The GEMM rate (W3's GEMMs): the yardstick of W3's and W5/W6's GFLOP/s.
  if [ $GEMM_DONE = 0 ] && { [ $w = W3 ] || [ $w = W4 ] || [ $w = W5 ] || [ $w = W6 ]; }; then
    for t in 1 2; do measure gemm_W3_t$t $t "$BUILD/gemm_rate" --threads $t --reps "$REPS"; done
    # The cores' own float32 ceiling (FMA chains on registers): W4's yardstick.
    for t in 1 2; do measure gemm_peak_t$t $t "$BUILD/gemm_rate" --peak --threads $t --reps "$REPS"; done
    # ... and in bfloat16 (what --precision bf16 multiplies with): W3 bf16's yardstick.
    if [ $DO_BF16 = 1 ]; then
      for t in 1 2; do
        measure_opt gemm_W3_bf16_t$t $t "$BUILD/gemm_rate" --threads $t --reps "$REPS" --bf16
      done
    fi
    GEMM_DONE=1
  fi
  api=step
  [ $w = W4 ] || [ $w = W6 ] && api=fwd
  if bp_has $w; then
    for t in 1 2; do measure backprop_${w}_${api}_t$t $t "$BPB" $w --threads $t "${COMMON[@]}" "${extra[@]}"; done
  else
    echo "  backprop: n/a (bench_backprop has no $w yet)"
  fi
  if [ $w = W1 ] || [ $w = W2 ]; then
    for t in 1 2; do measure backprop_${w}_fit_t$t $t "$BPB" $w --api fit --threads $t "${COMMON[@]}"; done
  fi
  # bfloat16 products (issue 11): exit status 3 = no AVX512_BF16 here, skipped.
  if [ $DO_BF16 = 1 ] && bp_has $w && case $w in W2|W7) false ;; *) true ;; esac; then
    for t in 1 2; do
      measure_opt backprop_${w}_${api}_bf16_t$t $t "$BPB" $w --threads $t --precision bf16 \
        "${COMMON[@]}" "${extra[@]}"
    done
  fi
  if [ $DO_TORCH = 1 ]; then
    for t in 1 2; do
      measure torch_${w}_t$t $t "$PY" "$ROOT/bench/bench_torch.py" $w --threads $t --foreach 1 \
        "${COMMON[@]}" "${extra[@]}"
    done
  fi
  if [ -n "$VPY" ]; then
    for t in 1 2; do
      measure torchpip_${w}_t$t $t "$VPY" "$ROOT/bench/bench_torch.py" $w --threads $t --foreach 1 \
        "${COMMON[@]}" "${extra[@]}"
    done
    if [ $DO_BF16 = 1 ] && case $w in W3|W4|W5|W6) true ;; *) false ;; esac; then
      for t in 1 2; do
        measure_opt torchpip_bf16_${w}_t$t $t "$VPY" "$ROOT/bench/bench_torch.py" $w --threads $t \
          --foreach 1 --precision bf16 "${COMMON[@]}" "${extra[@]}"
      done
    fi
    if [ $DO_COMPILE = 1 ] && [ $w != W7 ]; then
      for t in 1 2; do
        measure_opt torchpip_compile_${w}_t$t $t "$VPY" "$ROOT/bench/bench_torch.py" $w --threads $t \
          --foreach 1 --compile 1 "${COMMON[@]}" "${extra[@]}"
      done
    fi
  fi
  if [ $DO_FANN = 1 ]; then
    case $w in
      W1) for a in incremental batch; do
            measure fann_W1_$a 1 "$BUILD/bench_fann" W1 --algo $a "${COMMON[@]}"
          done ;;
      W2|W4) measure fann_${w}_incremental 1 "$BUILD/bench_fann" $w "${COMMON[@]}" ;;
      W3) measure fann_W3_incremental 1 "$BUILD/bench_fann" W3 --samples 256 "${COMMON[@]}" ;;
    esac
  fi
done

# Data-parallel scaling (issue 10): bench_mpi trains W3 and W5 through bp_fit
# on the same global batches with 1 rank and with 2 ranks of 1 thread each
# (mpirun's default binding: a core a rank), then the allreduce sweep behind
# the cost model of bench/NOTES.md. Only rank 0 prints.
if want MPI; then
  echo "bench: MPI (data-parallel bp_fit, ranks x 1 thread)"
  if [ -n "$MPI_SKIP" ]; then
    echo "  skipped: $MPI_SKIP"
  else
    MPICMD=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
            OMPI_MCA_btl="${OMPI_MCA_btl:-self,vader,tcp}" OMPI_MCA_btl_base_warn_component_unused=0
            timeout --kill-after=10 600 "$MPIRUN" --oversubscribe)
    for w in W3 W5; do
      steps=$W3_STEPS
      [ $w = W5 ] && steps=$W5_STEPS
      for np in 1 2; do
        measure mpi_${w}_${np}x1 1 "${MPICMD[@]}" -np $np "$BUILD/bench_mpi" $w --threads 1 \
          --reps "$REPS" --steps "$steps"
      done
    done
    # One rank at the per-rank batches of 2, 8 and 64 ranks (the same steps):
    # the compute term of the cost model (bench/mpi_model.py).
    for wb in W3:128 W3:32 W3:4 W5:64 W5:16 W5:2; do
      w=${wb%:*} b=${wb#*:}
      steps=$W3_STEPS
      [ $w = W5 ] && steps=$W5_STEPS
      measure mpi_${w}_1x1_b$b 1 "${MPICMD[@]}" -np 1 "$BUILD/bench_mpi" $w --threads 1 \
        --reps "$REPS" --steps "$steps" --batch $b
    done
    measure mpi_sweep_2 1 "${MPICMD[@]}" -np 2 "$BUILD/bench_mpi" sweep --reps "$REPS"
  fi
fi

# The CLI on a busy machine (issue 7): wine training and a 500k-row eval,
# default threads vs --threads 1, two `while :; do :; done` loops running
# (started and killed by bench_busy.sh).
if want BUSY; then
  echo "bench: BUSY (two busy processes)"
  # 15 of each: a 0.05 s training among two busy loops is either left alone or
  # preempted for a time slice (bimodal, ~0.05 or ~0.09 s, in both settings),
  # and a median of 5 flipped between the modes (1.00x in one run, 1.72x in the
  # next, ratio_min 1.08).
  busy_reps=15
  [ "$REPS" -lt 3 ] && busy_reps=$REPS
  bash "$ROOT/bench/bench_busy.sh" "$BUILD/backprop" "$OUT/busy" "$busy_reps" >"$OUT/busy.json" \
    2>"$OUT/busy.err"
  brc=$?
  if [ $brc -eq 3 ]; then
    echo "bench: BUSY skipped: $(tail -n 1 "$OUT/busy.err")" >&2
    rm -f "$OUT/busy.json"
  elif [ $brc -eq 0 ]; then
    "$PY" -c 'import json,sys
for ln in open(sys.argv[1]):
    r = json.loads(ln)
    print("  %-28s default %6.2fs  --threads 1 %6.2fs  ratio %.2fx" % (r["workload"], r["default_median_s"], r["threads1_median_s"], r["ratio"]))' "$OUT/busy.json"
  else
    echo "bench: FAILED busy (see $OUT/busy.err)" >&2
    tail -n 5 "$OUT/busy.err" >&2
    FAILED=$((FAILED + 1))
  fi
fi

"$PY" - "$OUT/env.json" <<EOF
import json, sys
p = sys.argv[1]
d = json.load(open(p))
d["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
d["loadavg_end"] = " ".join(d["loadavg_end"])
json.dump(d, open(p, "w"), indent=1)
EOF

"$PY" "$ROOT/bench/report.py" "$OUT" | tee "$OUT/table.txt"
rc=${PIPESTATUS[0]}
[ $LINK_LATEST = 1 ] && ln -sfn "$OUT" "$BUILD/latest"
if [ "$FAILED" -ne 0 ] || [ "$rc" -ne 0 ]; then
  echo "bench: $FAILED measurement(s) failed; see $OUT/*.err" >&2
  exit 1
fi
exit 0
