#!/usr/bin/env bash
# test_cli_mpi.sh - `mpirun -np 2 backprop train` (issue 10), end to end:
#  1. two ranks train the same model as one process with the same global
#     batch (every tensor within 1e-5 of its norm, the float build; read
#     by a standard-library safetensors reader): an MLP over 3 epochs with
#     shuffling and validation, and a CNN with batchnorm and
#     --sync-batchnorm (running statistics included); only rank 0 prints
#     progress and writes the model, log and plot;
#  2. faults, each ending within LIMIT seconds with a message naming the
#     rank and no model file (nor a temporary one) left: rank 1's data file
#     unreadable; rank 1's data with a row less, another feature count,
#     another class; rank 1 out of memory (ulimit -v; under ASan its
#     allocator's limit); rank 1 killed with
#     SIGKILL while training;
#  3. a character model (--task text): each rank carries its share of the
#     streams; the same model as one process.
# Rank-specific arguments come from a wrapper that mpirun starts on each
# rank (what different hosts with different files would see).
# Usage: bash test_cli_mpi.sh PATH_TO_BACKPROP SOURCE_DIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SRC=${2:?usage: bash test_cli_mpi.sh BACKPROP SOURCE_DIR}
case $SRC in /*) ;; *) SRC=$OLDPWD/$SRC ;; esac
LIMIT=30
MPIRUN=$(command -v mpirun || true)
if [ -z "$MPIRUN" ]; then
    bad "mpirun is installed (scripts/deps.sh installs openmpi-bin)"
    finish
    exit 1
fi
# As root Open MPI wants these; --oversubscribe: 2 ranks even where fewer
# slots are found.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_base_warn_component_unused=0
# The ASan build: Open MPI's own allocations are not ours to report.
export LSAN_OPTIONS="suppressions=$SRC/tests/mpi/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
MPI=(timeout --kill-after=5 120 "$MPIRUN" --oversubscribe -np 2)
F=/usr/share/datasets/fashion-mnist
check "Fashion-MNIST is installed (scripts/deps.sh installs dataset-fashion-mnist)" \
    test -r "$F/train-images-idx3-ubyte.gz"
TR=("$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz")
python3 "$SRC/scripts/idx_subset.py" "${TR[@]}" tr.idx trl.idx --limit 1200

# mpirun: rc, stdout in out, stderr in err, seconds in secs.
mrun() {
    local t0 t1
    t0=$(date +%s.%N)
    "${MPI[@]}" "$@" >"$T/out" 2>"$T/err"
    rc=$?
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
}

# The largest difference of any tensor relative to its norm, two models.
cat >cmp.py <<'PY'
import json, math, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        lo, hi = v["data_offsets"]
        raw = b[8 + n + lo:8 + n + hi]
        fmt = {"F32": "f", "F64": "d", "I64": "q"}[v["dtype"]]
        out[k] = struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw)
    return out
# Further arguments: tensors compared absolutely (1e-5), not to their norm:
# the bias of a conv right before a batchnorm has a zero gradient (the
# batchnorm removes it), so its values are rounding noise (~1e-6) that two
# summation orders walk differently.
a, b = load(sys.argv[1]), load(sys.argv[2])
noise = set(sys.argv[3:])
assert a.keys() == b.keys(), (sorted(a), sorted(b))
worst, name = 0.0, ""
for k in a:
    norm = math.sqrt(sum(x * x for x in b[k])) or 1.0
    d = max(abs(x - y) for x, y in zip(a[k], b[k]))
    if k in noise:
        assert d <= 1e-5, (k, d)
        continue
    if d / norm > worst: worst, name = d / norm, k
print("%.3g %s" % (worst, name))
PY
close_models() { # NAME A B [NOISE...]: every tensor within 1e-5 of its norm
    local r
    r=$(python3 cmp.py "$2" "$3" "${@:4}")
    echo "$1: worst tensor difference ${r% *} of its norm (${r#* })"
    check "$1: 2 ranks within 1e-5 of one process (worst ${r% *})" \
        awk -v d="${r% *}" 'BEGIN { exit !(d <= 1e-5) }'
}

# ---- 1. the same model as one process ----
MLP=(train tr.idx --labels trl.idx --arch "dense(64) relu dense(32) relu" --epochs 3 --batch 50
     --val-split 0.2 --lr 0.003 --seed 4)
run "${MLP[@]}" -o one.safetensors --log one.csv --threads 1
check "MLP, one process" [ "$rc" -eq 0 ]
mrun "$BP" "${MLP[@]}" -o two.safetensors --log two.csv --plot two.svg
check "MLP, mpirun -np 2 (rc=$rc: $(head -c 300 err))" [ "$rc" -eq 0 ]
close_models "MLP" two.safetensors one.safetensors
check "rank 0 alone prints: one header line, 3 epoch lines, one 'saved' line" \
    eval '[ $(grep -c "^data-parallel: 2 ranks, global batch 50 (25-25 rows per rank), per-rank batchnorm" err) -eq 1 ] &&
          [ $(grep -c "^epoch " err) -eq 3 ] && [ $(grep -c "^saved two.safetensors" out) -eq 1 ]'
check "the log has 3 epochs and the same losses as one process (1e-5)" \
    python3 -c '
import csv, sys
a = list(csv.DictReader(open("one.csv"))); b = list(csv.DictReader(open("two.csv")))
assert len(a) == len(b) == 3
for x, y in zip(a, b):
    for k in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        assert abs(float(x[k]) - float(y[k])) <= 1e-5 * max(1, abs(float(x[k]))), (k, x[k], y[k])'
check "the plot is written" test -s two.svg
check "metadata: ranks 2" [ "$(meta two.safetensors ranks)" = 2 ]

CNN=(train tr.idx --labels trl.idx --arch "conv(8,3,2,1) batchnorm relu conv(16,3,2,1) batchnorm relu"
     --epochs 2 --batch 40 --optimizer momentum --lr 0.02 --seed 5)
run "${CNN[@]}" -o cnn1.safetensors --threads 1
check "CNN, one process" [ "$rc" -eq 0 ]
mrun "$BP" "${CNN[@]}" --sync-batchnorm -o cnn2.safetensors
check "CNN --sync-batchnorm, mpirun -np 2 (rc=$rc: $(head -c 300 err))" [ "$rc" -eq 0 ]
close_models "CNN --sync-batchnorm" cnn2.safetensors cnn1.safetensors 0.bias 3.bias
check "metadata: sync_batchnorm 1" [ "$(meta cnn2.safetensors sync_batchnorm)" = 1 ]
mrun "$BP" "${CNN[@]}" -o cnn3.safetensors
check "CNN with per-rank batchnorm statistics trains" [ "$rc" -eq 0 ]
r=$(python3 cmp.py cnn3.safetensors cnn1.safetensors 0.bias 3.bias)
echo "CNN per-rank batchnorm vs one process: ${r% *} (not the same model: statistics of 20 rows, not 40)"
check "per-rank batchnorm differs from one process (the option matters)" \
    awk -v d="${r% *}" 'BEGIN { exit !(d > 1e-4) }'

# ---- 2. faults ----
# The wrapper: rank 1 takes R1_DATA for DATA, runs under `ulimit -v R1_ULIMIT`,
# and writes its PID to R1_PIDFILE, as configured.
cat >wrap.sh <<'SH'
#!/usr/bin/env bash
if [ "${OMPI_COMM_WORLD_RANK:-0}" = 1 ]; then
    [ -n "${R1_ULIMIT:-}" ] && ulimit -v "$R1_ULIMIT"
    [ -n "${R1_ASAN:-}" ] && export ASAN_OPTIONS="${ASAN_OPTIONS:-}:$R1_ASAN"
    [ -n "${R1_PIDFILE:-}" ] && echo $$ >"$R1_PIDFILE"
    [ -n "${R1_DATA:-}" ] && set -- "$1" "$2" "$R1_DATA" "${@:4}"
fi
exec "$@"
SH
no_model() { ! ls | grep -q '^m\.safetensors'; }
# fault NAME REGEX VARS... -- ARGS: ends within LIMIT s, rc != 0, stderr matches, no model.
fault() {
    local name=$1 re=$2; shift 2
    local vars=()
    while [ "$1" != -- ]; do vars+=(-x "$1"); export "${1?}"; shift; done
    shift
    rm -f m.safetensors*
    mrun "${vars[@]}" bash wrap.sh "$BP" "$@" -o m.safetensors
    echo "$name: exit $rc after ${secs}s: $(grep -m1 '^backprop: ' err)"
    if [ "$rc" -ne 0 ] && awk -v s="$secs" -v l="$LIMIT" 'BEGIN { exit !(s <= l) }' &&
        grep -Eq -- "$re" err && no_model; then
        ok "$name (${secs}s)"
    else
        bad "$name (rc=$rc, ${secs}s; stderr: $(head -c 400 err); files: $(ls | tr '\n' ' '))"
    fi
    for v in "${vars[@]}"; do [ "$v" = -x ] || unset "${v%%=*}"; done
}
SMALL=(train tr.idx --labels trl.idx --arch "dense(16) relu" --epochs 2 --batch 50)
fault "rank 1 cannot read its data" "^backprop: rank 1: missing\.idx: cannot open" \
    R1_DATA=missing.idx -- "${SMALL[@]}"
python3 - <<'PY'
import random
random.seed(3)
rows = [[round(random.uniform(-1, 1), 3) for _ in range(5)] for _ in range(200)]
with open("a.csv", "w") as f:
    f.write("a,b,c,d,e,label\n")
    for i, r in enumerate(rows): f.write(",".join(map(str, r)) + ",%d\n" % (i % 3))
with open("short.csv", "w") as f:
    f.write("a,b,c,d,e,label\n")
    for i, r in enumerate(rows[:-1]): f.write(",".join(map(str, r)) + ",%d\n" % (i % 3))
with open("wide.csv", "w") as f:
    f.write("a,b,c,d,e,f,label\n")
    for i, r in enumerate(rows): f.write(",".join(map(str, r)) + ",0.5,%d\n" % (i % 3))
with open("classes.csv", "w") as f:
    f.write("a,b,c,d,e,label\n")
    for i, r in enumerate(rows): f.write(",".join(map(str, r)) + ",%d\n" % (i % 4))
PY
fault "rank 1 has a row less" "rank 1's training row count is 159, rank 0's 160" \
    R1_DATA=short.csv -- train a.csv --arch "dense(8) relu" --epochs 2 --batch 20 --val-split 0.2
check "... stopped before training (no epoch line)" eval '! grep -q "^epoch" err'
fault "rank 1 has another feature count" "rank 1's input count is 6, rank 0's 5" \
    R1_DATA=wide.csv -- train a.csv --arch "dense(8) relu" --epochs 2 --batch 20
fault "rank 1 has another class" "rank 1's output count \(classes\) is 4, rank 0's 3" \
    R1_DATA=classes.csv -- train a.csv --arch "dense(8) relu" --epochs 2 --batch 20
# Under AddressSanitizer `ulimit -v` stops the sanitizer itself: there, its
# allocator refuses large blocks instead (the allocation fails in the library).
if ldd "$BP" | grep -q libasan; then
    fault "rank 1 is out of memory" "^backprop: rank 1: .*(out of memory|needs .*(GiB|MiB))" \
        R1_ASAN=max_allocation_size_mb=256:allocator_may_return_null=1 -- \
        train a.csv --arch "dense(16384) relu dense(16384) relu" --epochs 1 --batch 20
else
    fault "rank 1 is out of memory" "^backprop: rank 1: .*needs .*(GiB|MiB)" \
        R1_ULIMIT=1500000 -- train a.csv --arch "dense(16384) relu dense(16384) relu" --epochs 1 --batch 20
fi
# SIGKILL: rank 1 dies in the middle of a long run; mpirun must end the job.
rm -f m.safetensors* r1.pid
export R1_PIDFILE=$T/r1.pid
t0=$(date +%s.%N)
"${MPI[@]}" -x R1_PIDFILE bash wrap.sh "$BP" train tr.idx --labels trl.idx --arch "dense(256) relu dense(256) relu" \
    --epochs 1000 --batch 20 -o m.safetensors >out 2>err &
mp=$!
for _ in $(seq 100); do grep -Eq "^epoch +1/" err 2>/dev/null && break; sleep 0.2; done
check "the long run is training (an epoch line) before the kill" grep -Eq "^epoch +1/" err
pid=$(cat r1.pid 2>/dev/null)
tk=$(date +%s.%N)
kill -9 "$pid" 2>/dev/null
wait $mp
rc=$?
t1=$(date +%s.%N)
secs=$(awk -v a="$tk" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
echo "rank 1 killed with SIGKILL: mpirun exited $rc ${secs}s later: $(grep -m1 -i 'signal\|killed\|exited' err)"
if [ "$rc" -ne 0 ] && awk -v s="$secs" -v l="$LIMIT" 'BEGIN { exit !(s <= l) }' && no_model &&
    grep -Eqi "rank 1 .*(signal 9|killed)" err; then
    ok "rank 1 killed: every rank stops within ${LIMIT}s (${secs}s), naming rank 1, no model"
else
    bad "rank 1 killed (rc=$rc, ${secs}s; $(tail -c 400 err); files: $(ls | tr '\n' ' '))"
fi
unset R1_PIDFILE
# ---- text: truncated BPTT with each rank carrying its share of the streams ----
TXT=(train /usr/share/common-licenses/GPL-3 --task text --seq-len 16 --batch 8 --epochs 2 --arch "embedding(8) gru(32)")
run "${TXT[@]}" --threads 1 -o text1.safetensors
check "text, one process" [ "$rc" -eq 0 ]
mrun "$BP" "${TXT[@]}" -o text2.safetensors
check "text, mpirun -np 2 (rc=$rc: $(head -c 300 err))" [ "$rc" -eq 0 ]
close_models "text (4 streams a rank)" text2.safetensors text1.safetensors
finish
