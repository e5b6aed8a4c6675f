#!/usr/bin/env bash
# test_cli_bf16.sh - --precision f32|bf16 (issue 11) from the command line:
#  a. a bad value (`--precision fp8`) is a usage error (status 2, one line
#     naming the choices) for train, eval and predict;
#  b. with ONEDNN_MAX_CPU_ISA=AVX512_CORE (oneDNN may not use AVX512_BF16),
#     `train --precision bf16` is refused with a message naming the reason,
#     status 1, before anything is written (no model, log or plot, no
#     temporary file); eval and predict likewise;
#  c. where this CPU runs bf16 (found by running the tool once; on a CPU
#     without AVX512_BF16 the refusal is checked without the variable, and
#     the script says that the bf16 training checks did not run): an MLP
#     (dense(128) relu) on the first 6,000 Fashion-MNIST training images (4
#     epochs) and a CNN on the first 5,000 (4 epochs), --threads 1, seed 42,
#     each trained in f32
#     and in bf16 with the same settings and evaluated on the first 1,000
#     test images (held out). Checked: the bf16 accuracy within 2.0 points
#     of the f32 one; the bf16 model's tensors all F32 in the safetensors
#     header (a standard-library reader), their values not the f32 model's
#     (the precision took effect), metadata precision bf16 (f32 for the f32
#     model), the training line says "precision bf16", the same bf16
#     command writes a bit-identical model (a shorter run); eval --precision bf16 on the
#     f32 model within 1.0 point of its f32 accuracy, with another loss
#     (bf16 products ran); predict --precision bf16 on it gives the f32
#     classes for >= 98% of the images; eval of the bf16 model in the
#     default f32;
#  d. mpirun -np 2 train --precision bf16 (data-parallel), the MLP above:
#     works, metadata precision bf16 and ranks 2, accuracy within 2.0 points
#     of the one-process bf16 MLP;
#     rank 1 without bf16 (its ONEDNN_MAX_CPU_ISA) ends the job with
#     "rank 1: --precision bf16 needs ..."; rank 1 given --precision f32
#     against rank 0's bf16 is the library's settings mismatch.
#
# The thresholds, measured here (2-core Intel Xeon, AVX512_BF16, Release
# build, the settings above, seeds 1-16 and 42; differences bf16 - f32 in
# accuracy points on the 1,000 test images): MLP -1.0 .. +0.6 (seed 42:
# -0.2), CNN -1.1 .. +1.1 (seed 42: +0.4); mean |difference| 0.3 and 0.5.
# Training in bf16 follows another trajectory, so the difference is of the
# size of a change of seed (f32 alone ranged 78.8-84.9 (MLP) and 79.8-84.8
# (CNN) over those seeds): hence 2.0 points. The f32 models evaluated with
# --precision bf16: at most 0.3 points from their f32 accuracy (MLP and
# CNN): hence 1.0 point; predict --precision bf16 changed the class of 1-3
# of 1,000 images. 2 ranks vs one process, both bf16, seeds 1-4 and 42: at
# most 0.3 points apart. Each training takes under 1 s at --threads 1 in
# the Release build (about 10 s under ASan + UBSan).
# Usage: bash test_cli_bf16.sh PATH_TO_BACKPROP SOURCE_DIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SRC=${2:?usage: bash test_cli_bf16.sh BACKPROP SOURCE_DIR}
case $SRC in /*) ;; *) SRC=$OLDPWD/$SRC ;; esac
F=/usr/share/datasets/fashion-mnist
TRAIN_PTS=2.0   # bf16 training vs f32 training, accuracy points
INFER_PTS=1.0   # bf16 inference of an f32 model vs f32 inference
NO_BF16=AVX512_CORE  # an ONEDNN_MAX_CPU_ISA below AVX512_BF16
REFUSED="^backprop: (rank [0-9]+: )?--precision bf16 needs a CPU with AVX512_BF16"

check "Fashion-MNIST is installed (scripts/deps.sh installs dataset-fashion-mnist)" \
    test -r "$F/train-images-idx3-ubyte.gz" -a -r "$F/t10k-labels-idx1-ubyte.gz"
TR=("$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz")
TE=("$F/t10k-images-idx3-ubyte.gz" "$F/t10k-labels-idx1-ubyte.gz")
python3 "$SRC/scripts/idx_subset.py" "${TR[@]}" tr.idx trl.idx --limit 6000
python3 "$SRC/scripts/idx_subset.py" "${TR[@]}" tr5.idx trl5.idx --limit 5000
python3 "$SRC/scripts/idx_subset.py" "${TE[@]}" te.idx tel.idx --limit 1000
python3 "$SRC/scripts/idx_subset.py" "${TR[@]}" small.idx smalll.idx --limit 200

# A model to evaluate in the refusal checks (f32, works anywhere).
train_ok "a small f32 model" small.idx --labels smalll.idx --arch "dense(16) relu" --epochs 1 --threads 1 -o small.safetensors

# ---- a. a bad value: usage error ----
expect_error "train --precision fp8: usage error naming the choices" 2 \
    "^backprop: --precision: unknown value 'fp8' \(choose f32, bf16\)$" \
    train small.idx --labels smalll.idx --precision fp8 -o m.safetensors
expect_error "train --precision=BF16 (case matters): usage error" 2 "--precision: unknown value 'BF16'" \
    train small.idx --labels smalll.idx --precision=BF16 -o m.safetensors
expect_error "train --precision without a value: usage error" 2 "--precision" \
    train small.idx --labels smalll.idx -o m.safetensors --precision
expect_error "eval --precision fp8: usage error" 2 "^backprop: --precision: unknown value 'fp8'" \
    eval small.safetensors te.idx --labels tel.idx --precision fp8
expect_error "predict --precision fp8: usage error" 2 "^backprop: --precision: unknown value 'fp8'" \
    predict small.safetensors te.idx --precision fp8

# ---- b. refused where oneDNN may not use AVX512_BF16 ----
# refused NAME ARGS...: status 1, one line naming the reason, and nothing
# new in the directory (no model, log, plot or temporary file).
refused() {
    local name=$1; shift
    local before; before=$(ls -A | sort)
    run "$@"
    if [ "$rc" -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -Eq -- "$REFUSED" "$T/err" &&
        [ ! -s "$T/out" ] && [ "$(ls -A | sort)" = "$before" ]; then
        ok "$name"
    else
        bad "$name (rc=$rc; stderr: $(head -c 300 "$T/err"); new files: $(comm -13 <(echo "$before") <(ls -A | sort) | tr '\n' ' '))"
    fi
}
ONEDNN_MAX_CPU_ISA=$NO_BF16 refused "train --precision bf16 with ONEDNN_MAX_CPU_ISA=$NO_BF16: refused, status 1, nothing written" \
    train tr5.idx --labels trl5.idx --precision bf16 -o m.safetensors --log m.csv --plot m.svg
echo "the refusal: $(cat err)"
ONEDNN_MAX_CPU_ISA=$NO_BF16 refused "eval --precision bf16 with ONEDNN_MAX_CPU_ISA=$NO_BF16: refused" \
    eval small.safetensors te.idx --labels tel.idx --precision bf16
ONEDNN_MAX_CPU_ISA=$NO_BF16 refused "predict --precision bf16 -o with ONEDNN_MAX_CPU_ISA=$NO_BF16: refused, no output file" \
    predict small.safetensors te.idx --precision bf16 -o p.csv
ONEDNN_MAX_CPU_ISA=$NO_BF16 run train small.idx --labels smalll.idx --arch "dense(16) relu" --epochs 1 \
    --threads 1 --precision f32 -o f32only.safetensors
check "... --precision f32 still trains there" [ "$rc" -eq 0 ]

# ---- c. bf16 against f32 on this CPU ----
run train small.idx --labels smalll.idx --arch "dense(16) relu" --epochs 1 --threads 1 --precision bf16 -o probe.safetensors
if [ "$rc" -ne 0 ]; then
    refused "this CPU has no AVX512_BF16: train --precision bf16 refused without ONEDNN_MAX_CPU_ISA" \
        train small.idx --labels smalll.idx --precision bf16 -o m.safetensors
    refused "... and eval --precision bf16" eval small.safetensors te.idx --labels tel.idx --precision bf16
    echo "NOTE: this CPU lacks AVX512_BF16 (or oneDNN may not use it): the refusal was checked" \
         "without ONEDNN_MAX_CPU_ISA; the bf16 training, accuracy and mpirun checks did not run"
    finish
    exit
fi
ok "this CPU runs bf16: the bf16 training and accuracy checks run"

# acc MODEL [EVAL OPTIONS]: the accuracy on the 1,000 test images (also leaves the JSON in out).
acc() { run eval "$@" te.idx --labels tel.idx --json; [ "$rc" -eq 0 ] && json_get accuracy; }
# within NAME A B POINTS: |A - B| <= POINTS accuracy points.
within() {
    check "$1: $2 vs $3, within $4 points" \
        awk -v a="$2" -v b="$3" -v t="$4" 'BEGIN { d = (a - b) * 100; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= t + 1e-9) }'
}
# The tensors of a safetensors file: every dtype F32; `differ A B`: some tensor's bytes differ.
cat >st.py <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return h, b[8 + n:]
if sys.argv[1] == "dtypes":
    h, _ = load(sys.argv[2])
    bad = {k: v["dtype"] for k, v in h.items() if v["dtype"] != "F32" and not k.endswith("num_batches_tracked")}
    print(len(h), "tensors, not F32:", bad)
    sys.exit(1 if bad or not h else 0)
(ha, da), (hb, db) = load(sys.argv[2]), load(sys.argv[3])
assert ha.keys() == hb.keys()
diff = [k for k in ha if da[slice(*ha[k]["data_offsets"])] != db[slice(*hb[k]["data_offsets"])]]
print(len(diff), "of", len(ha), "tensors differ")
sys.exit(0 if diff else 1)
PY

MLP=(tr.idx --labels trl.idx --arch "dense(128) relu" --epochs 4 --threads 1 --seed 42)
CNN=(tr5.idx --labels trl5.idx --arch "conv(8,3,1,1) relu maxpool(2) conv(16,3,1,1) relu maxpool(2) dense(32) relu"
     --epochs 4 --threads 1 --seed 42)
for net in MLP CNN; do
    declare -n args=$net
    lc=${net,,}
    train_ok "$net f32" "${args[@]}" -o "${lc}32.safetensors"
    check "$net f32: the training line says precision f32" grep -q "epochs, precision f32$" err
    train_ok "$net bf16" "${args[@]}" --precision bf16 -o "${lc}16.safetensors"
    check "$net bf16: the training line says precision bf16" grep -q "epochs, precision bf16$" err
    a32=$(acc "${lc}32.safetensors"); l32=$(json_get loss)
    a16=$(acc "${lc}16.safetensors")
    echo "$net accuracy on 1,000 held-out images: f32 $a32, bf16 $a16 (threshold $TRAIN_PTS points)"
    within "$net trained in bf16 vs f32" "$a16" "$a32" "$TRAIN_PTS"
    r=$(python3 st.py dtypes "${lc}16.safetensors"); s=$?
    check "$net bf16 model: every tensor F32 in the safetensors header ($r)" [ "$s" -eq 0 ]
    r=$(python3 st.py differ "${lc}16.safetensors" "${lc}32.safetensors"); s=$?
    check "$net bf16 model: its tensors are not the f32 model's ($r)" [ "$s" -eq 0 ]
    check "$net bf16 model: metadata precision bf16" [ "$(meta "${lc}16.safetensors" precision)" = bf16 ]
    check "$net f32 model: metadata precision f32" [ "$(meta "${lc}32.safetensors" precision)" = f32 ]
    b32=$(acc "${lc}32.safetensors" --precision bf16); lb=$(json_get loss)
    echo "$net f32 model evaluated in bf16: $b32 (f32: $a32; loss $lb, f32: $l32; threshold $INFER_PTS points)"
    within "$net f32 model, eval --precision bf16 vs f32" "$b32" "$a32" "$INFER_PTS"
    check "$net f32 model, eval --precision bf16: another loss ($lb vs $l32): bf16 products ran" \
        [ -n "$lb" -a "$lb" != "$l32" ]
    run eval "${lc}32.safetensors" te.idx --labels tel.idx --precision f32 --json
    check "$net f32 model, eval --precision f32 is the default" [ "$rc" -eq 0 -a "$(json_get loss)" = "$l32" ]
    "$BP" predict "${lc}32.safetensors" te.idx >p32.csv
    run predict "${lc}32.safetensors" te.idx --precision bf16
    n=$(paste -d' ' p32.csv out | awk 'NR > 1 && $1 != $2' | wc -l)
    echo "$net f32 model, predict --precision bf16: $n of 1,000 classes differ from f32"
    check "$net f32 model, predict --precision bf16: 1,001 lines, >= 98% the f32 classes ($n differ)" \
        eval '[ $rc -eq 0 ] && [ $(wc -l <out) -eq 1001 ] && [ "$n" -le 20 ]'
    run predict "${lc}16.safetensors" te.idx --proba
    check "$net bf16 model, predict in the default f32" eval '[ $rc -eq 0 ] && [ $(wc -l <out) -eq 1001 ]'
    unset -n args
done
SAME=(small.idx --labels smalll.idx --arch "dense(256) relu" --epochs 2 --threads 1 --precision bf16 -q)
run train "${SAME[@]}" -o same1.safetensors && run train "${SAME[@]}" -o same2.safetensors
check "the same bf16 command writes a bit-identical model" eval '[ $rc -eq 0 ] && cmp -s same1.safetensors same2.safetensors'
run info --json mlp16.safetensors
check "info --json: metadata precision bf16" \
    python3 -c 'import json,sys; sys.exit(json.load(open("out"))["metadata"].get("precision") != "bf16")'

# ---- d. data-parallel (mpirun -np 2) ----
MPIRUN=$(command -v mpirun || true)
if [ -z "$MPIRUN" ]; then
    bad "mpirun is installed (scripts/deps.sh installs openmpi-bin)"
    finish
    exit
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_base_warn_component_unused=0
export LSAN_OPTIONS="suppressions=$SRC/tests/mpi/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
MPI=(timeout --kill-after=5 120 "$MPIRUN" --oversubscribe -np 2)
mrun() { "${MPI[@]}" "$@" >"$T/out" 2>"$T/err"; rc=$?; }
# Rank 1 runs under R1_ISA (its ONEDNN_MAX_CPU_ISA) and with R1_PRECISION
# for the value of --precision, as configured.
cat >wrap.sh <<'SH'
#!/usr/bin/env bash
if [ "${OMPI_COMM_WORLD_RANK:-0}" = 1 ]; then
    [ -n "${R1_ISA:-}" ] && export ONEDNN_MAX_CPU_ISA=$R1_ISA
    [ -n "${R1_PRECISION:-}" ] && set -- "${@/#bf16/$R1_PRECISION}"
fi
exec "$@"
SH
# The same global batch on 2 ranks: bf16 rounds each product's inputs, so
# the ranks' summation order (which alone keeps f32 models within 1e-5, see
# test_cli_mpi.sh) moves some roundings by a whole bfloat16 step and the
# model is close to one process's (mlp16), not equal (measured: accuracy
# within 0.3 points).
mrun "$BP" train "${MLP[@]}" --precision bf16 -o mpi16.safetensors
check "mpirun -np 2 train --precision bf16 (rc=$rc $(grep -m1 '^backprop' err))" [ "$rc" -eq 0 ]
check "... rank 0 alone prints the training line, with precision bf16" \
    eval '[ $(grep -c "^training .*, precision bf16$" err) -eq 1 ]'
check "... metadata precision bf16, ranks 2" \
    eval '[ "$(meta mpi16.safetensors precision)" = bf16 ] && [ "$(meta mpi16.safetensors ranks)" = 2 ]'
a2=$(acc mpi16.safetensors); a1=$(acc mlp16.safetensors)
echo "MLP bf16 on 2 ranks: accuracy $a2 (one process: $a1)"
within "MLP bf16 on 2 ranks vs one process" "$a2" "$a1" "$TRAIN_PTS"
SMALL=(train small.idx --labels smalll.idx --arch "dense(16) relu" --epochs 1 --precision bf16 -o m.safetensors)
rm -f m.safetensors*
mrun -x R1_ISA=$NO_BF16 bash wrap.sh "$BP" "${SMALL[@]}"
check "rank 1 without bf16: the job ends, rank 1 names the reason, no model (rc=$rc)" \
    eval '[ $rc -ne 0 ] && grep -Eq "^backprop: rank 1: --precision bf16 needs a CPU with AVX512_BF16" err && ! ls | grep -q "^m\.safetensors"'
mrun -x R1_PRECISION=f32 bash wrap.sh "$BP" "${SMALL[@]}"
check "rank 1 --precision f32, rank 0 bf16: the ranks' settings differ, no model (rc=$rc: $(grep -m1 '^backprop' err))" \
    eval '[ $rc -ne 0 ] && grep -Eq "^backprop: rank 0: the ranks. networks and settings differ: rank 1.s precision" err && ! ls | grep -q "^m\.safetensors"'
finish
