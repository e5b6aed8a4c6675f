#!/usr/bin/env bash
# test_cli_export_onnx.sh - `backprop export MODEL --onnx OUT.onnx` on trained
# models of every layer kind, checked two ways:
#   - Debian's python3-onnx (onnx_check.py): check_model(full_check=True),
#     ir_version 7, opset 13, producer, metadata_props = the model's
#     metadata, the graph's name (--name), input/output names, types and
#     shapes (N symbolic), the node sequence where it is fixed;
#   - onnxruntime from PyPI (tests/requirements-onnx.txt, pinned) in a
#     virtual environment under the build folder, made on the first run and
#     reused ($BP_ONNX_VENV overrides the place): its outputs against
#     `backprop predict --proba` (onnx_compare.py), within 1e-5 absolute for
#     probabilities, 1e-5 relative for regression values:
#       * an MLP (dense relu dropout dense leaky_relu, --normalize standard:
#         Sub/Mul first) and two CNNs (conv with padding and stride, maxpool,
#         avgpool, batchnorm on images and on [F], global_avgpool, flatten,
#         sigmoid, tanh) on the whole Fashion-MNIST test set (10,000 images);
#       * character-level models on GPL-3 (embedding + lstm, gru, rnn; the
#         ONNX input is int64 token ids [N, T]) against predict's rows per
#         step (window, step, id, next, p0..);
#       * CSV sequences (--input-shape 8,3): gru + last, lstm + last, rnn +
#         dense on every step + flatten;
#       * a regression model with target normalization (Div/Add last) on
#         sklearn's Boston CSV, and a bce model (sigmoid) on breast cancer.
#   Without the virtual environment (no network, pip failing) the comparisons
#   print "SKIP: reason" and count neither way; everything else still runs.
#   - errors: a missing directory (one "backprop: " line, nothing written),
#     a bad --name, export without --onnx/--c.
# About 15 s in a release build once the environment exists (the first run
# installs it: about 20 s more with PyPI reachable).
# Usage: bash test_cli_export_onnx.sh PATH_TO_BACKPROP SOURCE_DIR
set -u
SRC=$(cd "${2:?usage: bash test_cli_export_onnx.sh BACKPROP SOURCE_DIR}" && pwd)
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
FM=/usr/share/datasets/fashion-mnist
TEST_IMG=$FM/t10k-images-idx3-ubyte.gz
GPL=/usr/share/common-licenses/GPL-3
SK=$(/usr/bin/python3 -c "import sklearn,os; print(os.path.dirname(sklearn.__file__))" 2>/dev/null)/datasets/data
CHECK="/usr/bin/python3 $SRC/tests/cli/onnx_check.py"
COMPARE=$SRC/tests/cli/onnx_compare.py
REQ=$SRC/tests/requirements-onnx.txt
VENV=${BP_ONNX_VENV:-$(dirname "$BP")/onnx-venv}

# ---- the two Python sides ----
have_onnx=0
if /usr/bin/python3 -c "import onnx" 2>/dev/null; then have_onnx=1
else echo "SKIP: onnx checks: Debian's python3-onnx is not importable by /usr/bin/python3"; fi

# The venv is made in VENV.new and moved into place once pip succeeded, so
# a failed install is retried next time; a copy of the requirements inside
# tells whether it is up to date.
have_ort=0 ort_why=
if [ -x "$VENV/bin/python" ] && cmp -s "$REQ" "$VENV/requirements-onnx.txt" &&
    "$VENV/bin/python" -c "import onnxruntime, numpy" 2>/dev/null; then
    have_ort=1
else
    rm -rf "$VENV.new"
    if ! /usr/bin/python3 -m venv "$VENV.new" >"$T/venv.log" 2>&1; then
        ort_why="python3 -m venv failed: $(tail -1 "$T/venv.log")"
    elif ! "$VENV.new/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" \
        >"$T/pip.log" 2>&1; then
        ort_why="pip install -r tests/requirements-onnx.txt failed: $(grep -v '^\s*$' "$T/pip.log" | tail -1)"
    else
        cp "$REQ" "$VENV.new/requirements-onnx.txt"
        rm -rf "$VENV" && mv "$VENV.new" "$VENV" && have_ort=1
        # a moved venv's python still runs (pyvenv.cfg names /usr/bin); pip is run as a module
        "$VENV/bin/python" -c "import onnxruntime" 2>/dev/null || { have_ort=0; ort_why="onnxruntime does not import after the install"; }
    fi
    rm -rf "$VENV.new"
fi
if [ "$have_ort" -eq 1 ]; then
    echo "onnxruntime $("$VENV/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)') in $VENV"
else
    echo "SKIP: onnxruntime comparisons: $ort_why"
fi

# onnx_ok NAME MODEL ARGS...: export MODEL.safetensors --onnx MODEL.onnx, then onnx_check.py ARGS
onnx_ok() {
    local name=$1 m=$2; shift 2
    run export "$m.safetensors" --onnx "$m.onnx"
    check "$name: export exits 0 and writes $m.onnx" eval '[ "$rc" -eq 0 ] && [ -s "$m.onnx" ]' ||
        head -c 300 "$T/err"
    [ "$have_onnx" -eq 1 ] || return 0
    "$BP" info --json "$m.safetensors" >"$m.json"
    if $CHECK "$m.onnx" "$m.json" "$@" >"$m.check" 2>&1; then ok "$name: onnx checker and structure ($(cat "$m.check"))"
    else bad "$name: onnx checker and structure: $(head -c 600 "$m.check")"; fi
}
# same NAME MODE ARGS...: onnx_compare.py MODE ARGS in onnxruntime
same() {
    local name=$1; shift
    if [ "$have_ort" -ne 1 ]; then echo "SKIP: $name (no onnxruntime)"; return 0; fi
    if "$VENV/bin/python" "$COMPARE" "$@" >"$T/cmp" 2>&1; then ok "$name: $(tail -1 "$T/cmp")"
    else bad "$name: $(tail -c 600 "$T/cmp")"; fi
}
# predict_ok MODEL DATA ARGS...: predict into MODEL.pred.csv
predict_ok() {
    local m=$1; shift
    run predict "$m.safetensors" "$@" -o "$m.pred.csv"
    check "predict $m exits 0" [ "$rc" -eq 0 ] || head -c 300 "$T/err"
}

# ---- Fashion-MNIST: an MLP and two CNNs, compared on the 10,000 test images ----
python3 "$SRC/scripts/idx_subset.py" "$FM/train-images-idx3-ubyte.gz" "$FM/train-labels-idx1-ubyte.gz" \
    tr.idx trl.idx --limit 2000
train_ok "train the MLP" tr.idx --labels trl.idx --normalize standard --epochs 3 --seed 1 \
    --arch "dense(64) relu dropout(0.2) dense(32) leaky_relu(0.1)" -o mlp.safetensors --quiet
onnx_ok "mlp" mlp --input float:N,1,28,28 --output N,10 \
    --ops Sub,Mul,Flatten,Gemm,Relu,Identity,Gemm,LeakyRelu,Gemm
predict_ok mlp "$TEST_IMG" --proba
same "mlp: onnxruntime = predict --proba on 10,000 images" idx mlp.onnx "$TEST_IMG" mlp.pred.csv

train_ok "train CNN 1" tr.idx --labels trl.idx --epochs 2 --seed 2 \
    --arch "conv(8,3,1,1) relu maxpool(2) conv(8,3) batchnorm relu avgpool(2) flatten dense(32) relu" \
    -o cnn1.safetensors --quiet
onnx_ok "cnn1" cnn1 --input float:N,1,28,28 --output N,10 \
    --ops Conv,Relu,MaxPool,Conv,BatchNormalization,Relu,AveragePool,Flatten,Gemm,Relu,Gemm
predict_ok cnn1 "$TEST_IMG" --proba
same "cnn1: onnxruntime = predict --proba on 10,000 images" idx cnn1.onnx "$TEST_IMG" cnn1.pred.csv

train_ok "train CNN 2" tr.idx --labels trl.idx --epochs 2 --seed 3 \
    --arch "conv(8,3,2,1) sigmoid maxpool(3,2) conv(16,3) batchnorm global_avgpool dense(16) batchnorm tanh" \
    -o cnn2.safetensors --quiet
onnx_ok "cnn2" cnn2 --input float:N,1,28,28 --output N,10 \
    --ops Conv,Sigmoid,MaxPool,Conv,BatchNormalization,GlobalAveragePool,Flatten,Gemm,BatchNormalization,Tanh,Gemm
predict_ok cnn2 "$TEST_IMG" --proba
same "cnn2: onnxruntime = predict --proba on 10,000 images" idx cnn2.onnx "$TEST_IMG" cnn2.pred.csv

# ---- text: embedding + lstm / gru / rnn on GPL-3, int64 token ids ----
head -c 12000 "$GPL" >g.txt
i=0
for arch in "embedding(16) lstm(32)" "embedding(8) gru(24) dense(16) relu" "embedding(8) rnn(16) tanh"; do
    i=$((i + 1))
    rec=$(echo "$arch" | awk '{ print toupper(substr($2, 1, index($2, "(") - 1)) }')
    train_ok "train text model $i ($arch)" g.txt --task text --seq-len 32 --arch "$arch" --epochs 3 --lr 0.01 \
        --seed $i -o text$i.safetensors --quiet
    "$BP" info --json text$i.safetensors >"$T/out"
    V=$(json_get vocab_size)
    onnx_ok "text$i ($arch)" text$i --input int64:N,32 --output "N,32,$V" \
        --has Gather,Transpose,$rec,Squeeze,MatMul,Add
    predict_ok text$i g.txt --proba
    check "text$i: predict's header is window,step,id,next,p0.." grep -q '^window,step,id,next,p0,p1,' text$i.pred.csv
    same "text$i ($arch): onnxruntime = predict --proba at every step" text text$i.onnx text$i.pred.csv
done

# ---- CSV sequences [8, 3]: recurrent + last, dense on every step ----
/usr/bin/python3 - <<'PY'
import numpy as np
r = np.random.default_rng(7)
T, F, n = 8, 3, 600
x = r.normal(size=(n, T, F))
y = x[:, T // 2:, :].sum(axis=1).argmax(axis=1)  # the feature with the largest late sum
with open("seq.csv", "w") as f:
    f.write(",".join("x%d_%d" % (t, k) for t in range(T) for k in range(F)) + ",label\n")
    for i in range(n):
        f.write(",".join("%.6g" % v for v in x[i].ravel()) + ",%d\n" % y[i])
PY
i=0
for arch in "gru(16) last" "lstm(16) last dense(8) sigmoid" "rnn(8) dense(4) relu flatten"; do
    i=$((i + 1))
    train_ok "train sequence model $i ($arch)" seq.csv --input-shape 8,3 --arch "$arch" --epochs 4 \
        --seed $i -o seq$i.safetensors --quiet
    onnx_ok "seq$i ($arch)" seq$i --input float:N,8,3 --output N,3 --has Sub,Mul,Transpose,Squeeze
    predict_ok seq$i seq.csv --proba
    same "seq$i ($arch): onnxruntime = predict --proba" csv seq$i.onnx seq.csv 0 seq$i.pred.csv
done
check "seq1: last is a Gather" grep -q "Gather" seq1.check

# ---- regression with target normalization; bce ----
BOSTON=$SK/boston_house_prices.csv
train_ok "train the regression model" "$BOSTON" --skip-rows 1 --epochs 8 --seed 1 \
    --arch "dense(32) relu batchnorm dense(16) sigmoid" -o reg.safetensors --quiet
check "the regression model normalizes its target" [ "$(meta reg.safetensors normalize_target)" = standard ]
onnx_ok "regression" reg --input float:N,13 --output N,1 \
    --ops Sub,Mul,Gemm,Relu,BatchNormalization,Gemm,Sigmoid,Gemm,Div,Add
predict_ok reg "$BOSTON" --skip-rows 1
same "regression: onnxruntime = predict (relative)" csv reg.onnx "$BOSTON" 1 reg.pred.csv

CANCER=$SK/breast_cancer.csv
train_ok "train the bce model" "$CANCER" --skip-rows 1 --no-header --loss bce --epochs 5 --seed 1 \
    --arch "dense(16) tanh" -o bce.safetensors --quiet
onnx_ok "bce" bce --input float:N,30 --output N,1 --ops Sub,Mul,Gemm,Tanh,Gemm
predict_ok bce "$CANCER" --skip-rows 1 --no-header --proba
same "bce: onnxruntime sigmoid = predict --proba" csv bce.onnx "$CANCER" 0 bce.pred.csv

# ---- --name, errors ----
run export mlp.safetensors --onnx named.onnx --name fashion_mlp
check "--name: export exits 0" [ "$rc" -eq 0 ]
if [ "$have_onnx" -eq 1 ]; then
    "$BP" info --json mlp.safetensors >mlp.json
    check "--name sets the graph's name" $CHECK named.onnx mlp.json --name fashion_mlp
fi
check "the same model exports to the same bytes" eval '"$BP" export mlp.safetensors --onnx again.onnx 2>/dev/null && cmp -s mlp.onnx again.onnx'
run export mlp.safetensors --onnx nodir/m.onnx
check "a missing directory: status 1, one 'backprop: ' line naming the path, nothing written" \
    eval '[ "$rc" -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "^backprop: .*nodir/m.onnx" "$T/err" && [ ! -e nodir ]'
mkdir ro && chmod 555 ro
run export mlp.safetensors --onnx ro/m.onnx
if [ "$(id -u)" -ne 0 ]; then
    check "a read-only directory: status 1, nothing left in it" eval '[ "$rc" -eq 1 ] && [ -z "$(ls -A ro)" ]'
fi
cp mlp.onnx keep.onnx
run export missing.safetensors --onnx keep.onnx
check "a missing model: non-zero status, the existing file untouched" eval '[ "$rc" -ne 0 ] && cmp -s mlp.onnx keep.onnx'
run export mlp.safetensors --onnx bad.onnx --name "1bad"
check "a bad --name: usage error, nothing written" eval '[ "$rc" -eq 2 ] && [ ! -e bad.onnx ]'
finish
