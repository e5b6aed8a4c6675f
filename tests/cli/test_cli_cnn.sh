#!/usr/bin/env bash
# test_cli_cnn.sh - conv nets from the command line: IDX images train as
# [1, 28, 28] (a small CNN on the first 2,000 Fashion-MNIST training images
# must reach >= 0.78 accuracy on the first 1,000 test images; measured 0.81),
# CSV rows reshaped by --input-shape, every bad --input-shape / --augment /
# conv-on-flat-data case (message and status), the `info` table, eval and
# predict on CNN models, and fine-tuning on other classes with --init-from
# --new-head --freeze (trainable/frozen counts; frozen layers bit-identical
# to the base model's, compared by a standard-library safetensors reader).
# Usage: bash test_cli_cnn.sh PATH_TO_BACKPROP SOURCE_DIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SRC=${2:?usage: bash test_cli_cnn.sh BACKPROP SOURCE_DIR}
case $SRC in /*) ;; *) SRC=$OLDPWD/$SRC ;; esac
F=/usr/share/datasets/fashion-mnist
SUBSET="$SRC/scripts/idx_subset.py"
check "Fashion-MNIST is installed (scripts/deps.sh installs dataset-fashion-mnist)" \
    test -r "$F/train-images-idx3-ubyte.gz" -a -r "$F/t10k-labels-idx1-ubyte.gz"
TR=("$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz")
TE=("$F/t10k-images-idx3-ubyte.gz" "$F/t10k-labels-idx1-ubyte.gz")
python3 "$SUBSET" "${TR[@]}" tr.idx trl.idx --limit 2000
python3 "$SUBSET" "${TE[@]}" te.idx tel.idx --limit 1000
python3 "$SUBSET" "${TR[@]}" a.idx al.idx --classes 0,1,2,3,4 --limit 1500
python3 "$SUBSET" "${TR[@]}" b.idx bl.idx --classes 5,6,7 --limit 1000
python3 "$SUBSET" "${TE[@]}" bt.idx btl.idx --classes 5,6,7 --limit 600
check "the subsets have the asked sizes" eval '[ $(stat -c %s tr.idx) -eq $((16 + 2000 * 784)) ] && [ $(stat -c %s bl.idx) -eq 1008 ]'

# ---- a CNN on IDX images ----
ARCH="conv(8,3,1,1) relu maxpool(2) conv(16,3,1,1) relu maxpool(2) dense(32) relu"
train_ok "CNN on 2,000 IDX images" tr.idx --labels trl.idx --arch "$ARCH" --epochs 5 --threads 1 -o cnn.safetensors
check "IDX images train as [1,28,28]: the flatten is inserted" \
    grep -q "^training conv(8,3,1,1) relu maxpool(2) conv(16,3,1,1) relu maxpool(2) flatten dense(32) relu dense(10) on 2000 samples, 26,698 parameters: 0 frozen, 26,698 trainable" err
run eval cnn.safetensors te.idx --labels tel.idx --json
acc=$(json_get accuracy)
echo "CNN test accuracy on 1,000 held-out images: $acc (threshold 0.78)"
check "CNN held-out accuracy $acc >= 0.78" awk -v a="${acc:-0}" 'BEGIN { exit !(a >= 0.78) }'
check "input_shape stored as 1,28,28" [ "$(meta cnn.safetensors input_shape)" = 1,28,28 ]
check "augment stored as none by default" [ "$(meta cnn.safetensors augment)" = none ]
run predict cnn.safetensors te.idx --labels tel.idx
check "predict on the CNN: one line per image plus the header" eval '[ $rc -eq 0 ] && [ $(wc -l <out) -eq 1001 ]'
# The same 784 pixels per image as 14x56: the count agrees, the shape does not.
python3 - <<'PY'
b = bytearray(open("te.idx", "rb").read())
b[8:12] = (14).to_bytes(4, "big")
b[12:16] = (56).to_bytes(4, "big")
open("te1456.idx", "wb").write(b)
PY
expect_error "eval: IDX images of another shape with as many pixels" 1 \
    "^backprop: te1456.idx holds images \[1, 14, 56\], the model cnn.safetensors takes \[1, 28, 28\]" \
    eval cnn.safetensors te1456.idx --labels tel.idx
expect_error "predict: the same" 1 "holds images \[1, 14, 56\], the model cnn.safetensors takes \[1, 28, 28\]" \
    predict cnn.safetensors te1456.idx

# ---- info: one row per layer ----
run info cnn.safetensors
row() { awk -v l="$1" '$1 == l { print $2, $3, $4 }' out; }
check "info header row" grep -Eq "^index +layer +output shape +parameters +tensors +checksum" out
check "info row: input [1,28,28]" eval '[ "$(awk '"'"'$2 == "input" { print $3 }'"'"' out)" = "[1,28,28]" ]'
check "info row 0: conv(8,3,1,1) [8,28,28] 80" [ "$(row 0)" = "conv(8,3,1,1) [8,28,28] 80" ]
check "info row 2: maxpool(2) [8,14,14] 0" [ "$(row 2)" = "maxpool(2) [8,14,14] 0" ]
check "info row 3: conv(16,3,1,1) [16,14,14] 1168" [ "$(row 3)" = "conv(16,3,1,1) [16,14,14] 1168" ]
check "info row 6: flatten [784] 0" [ "$(row 6)" = "flatten [784] 0" ]
check "info row 7: dense(32) [32] 25120" [ "$(row 7)" = "dense(32) [32] 25120" ]
check "info row 9: dense(10) [10] 330" [ "$(row 9)" = "dense(10) [10] 330" ]
check "info totals: parameters and input shape" grep -q "^total  26,698 parameters in 4 layers with parameters .*input shape \[1,28,28\]" out
check "info keeps its header lines" eval 'grep -q "^inputs *784$" out && grep -q "^parameters *26698$" out'
run info --json cnn.safetensors
check "info --json: input_shape and a conv layer's output_shape" eval '[ "$(json_get input_shape)" = "[1, 28, 28]" ] && /usr/bin/python3 -c "import json,sys; l=json.load(open(\"out\"))[\"layers\"][0]; sys.exit(not (l[\"output_shape\"] == [8,28,28] and l[\"parameters\"] == 80))"'

# ---- CSV rows with --input-shape ----
python3 - <<'PY'
import random
random.seed(1)
with open("bars.csv", "w") as f:
    f.write(",".join("p%d" % i for i in range(36)) + ",label\n")
    for r in range(300):
        c = r % 2
        img = [[random.random() * 0.2 for _ in range(6)] for _ in range(6)]
        k = random.randrange(6)
        for t in range(6):
            if c == 0: img[k][t] += 1
            else: img[t][k] += 1
        f.write(",".join("%.3f" % v for row in img for v in row) + ",%s\n" % ("horizontal" if c == 0 else "vertical"))
PY
sed 's/horizontal/h2/' bars.csv >bars2.csv
train_ok "--input-shape 1,6,6 on a CSV" bars.csv --input-shape 1,6,6 --arch "conv(4,3) relu global_avgpool" --epochs 20 --lr 0.01 -o bars.safetensors
check "the CSV CNN stores input_shape 1,6,6" [ "$(meta bars.safetensors input_shape)" = 1,6,6 ]
run eval bars.safetensors bars.csv --json
echo "bars CNN accuracy on its training rows: $(json_get accuracy)"
check "eval on the CSV CNN: accuracy >= 0.95 (bars: horizontal vs vertical)" awk -v a="$(json_get accuracy)" 'BEGIN { exit !(a >= 0.95) }'
run predict bars.safetensors bars.csv
check "predict on the CSV CNN" eval '[ $rc -eq 0 ] && [ $(wc -l <out) -eq 301 ]'
cut -d, -f1-35,37 bars.csv >short.csv
run eval bars.safetensors short.csv
check "eval of rows with too few features fails with one line" eval '[ $rc -ne 0 ] && [ $(wc -l <err) -eq 1 ] && grep -q "p35" err'
train_ok "--input-shape 36 (flat) trains an MLP" bars.csv --input-shape 36 --epochs 1 --quiet -o flat.safetensors
check "a flat model stores no input_shape" [ -z "$(meta flat.safetensors input_shape)" ]
expect_error "--input-shape 6,6 (T,F): a dense acts on each step, 12 outputs refused" 2 "gives 12 outputs per sample \(\[6, 2\]\), the data and loss need 2.*flatten" \
    train bars.csv --input-shape 6,6 --arch "" -o m.safetensors
train_ok "--input-shape 6,6 (T,F) with a flatten trains an MLP" bars.csv --input-shape 6,6 --arch "flatten dense(8) relu" --epochs 1 --quiet -o seq.safetensors
check "a [T,F] model stores input_shape 6,6" [ "$(meta seq.safetensors input_shape)" = 6,6 ]
run eval seq.safetensors bars.csv
check "eval on a [T,F] model" [ "$rc" -eq 0 ]

# ---- bad inputs (item 1 and 2): one line, status 2, nothing written ----
expect_error "--input-shape product differs" 2 "--input-shape 1,6,7 has 42 values, but bars.csv has 36 features per row" \
    train bars.csv --input-shape 1,6,7 --arch "conv(4,3) relu" -o m.safetensors
expect_error "--input-shape not a shape" 2 "--input-shape: '1,x' is not a shape" train bars.csv --input-shape 1,x -o m.safetensors
expect_error "--input-shape with a zero" 2 "--input-shape: '0,6,6' is not a shape" train bars.csv --input-shape 0,6,6 -o m.safetensors
expect_error "--input-shape of rank 4" 2 "--input-shape: '1,2,3,6' is not a shape" train bars.csv --input-shape 1,2,3,6 -o m.safetensors
expect_error "--input-shape empty" 2 "--input-shape: '' is not a shape" train bars.csv --input-shape "" -o m.safetensors
expect_error "conv on flat CSV rows: spec error and hint" 2 "^backprop: --arch: spec:1:1: conv needs an image input.*pass --input-shape C,H,W" \
    train bars.csv --arch "conv(4,3) relu" -o m.safetensors
expect_error "maxpool on flat CSV rows: column of the word" 2 "^backprop: --arch: spec:1:11: maxpool.*pass --input-shape C,H,W" \
    train bars.csv --arch "dense(36) maxpool(2)" -o m.safetensors
expect_error "a kernel larger than the image" 2 "^backprop: --arch: spec:1:1: " \
    train bars.csv --input-shape 1,6,6 --arch "conv(4,7)" -o m.safetensors
expect_error "--augment on flat inputs" 2 "--augment needs image inputs \[C,H,W\].*bars.csv is flat \(36 features\)" \
    train bars.csv --augment hflip -o m.safetensors
expect_error "--augment on [T,F] inputs" 2 "--augment needs image inputs.*a sequence" \
    train bars.csv --input-shape 6,6 --augment hflip -o m.safetensors
for w in flip "shift(0)" shift "shift(2)x" "hflip," "shift(-1)" "shift(2" "vflip,hflip"; do
    bw=${w%%,*}; [ "$w" = "hflip," ] && bw=""
    bw_re=$(printf '%s' "$bw" | sed 's/[()]/\\&/g')
    expect_error "--augment '$w' refused" 2 "--augment: '$bw_re' is not an augmentation \(hflip, shift\(N\)" \
        train bars.csv --input-shape 1,6,6 --augment "$w" -o m.safetensors
done
train_ok "--augment shift(1),hflip on CSV images" bars.csv --input-shape 1,6,6 --arch "conv(4,3) relu" --augment "shift(1),hflip" --epochs 1 --quiet -o aug.safetensors
check "augment stored in the metadata" [ "$(meta aug.safetensors augment)" = "shift(1),hflip" ]
train_ok "--augment hflip on IDX images" tr.idx --labels trl.idx --arch "conv(4,3,2) relu" --augment hflip --epochs 1 --threads 1 --quiet -o aug2.safetensors
check "IDX augment stored" [ "$(meta aug2.safetensors augment)" = hflip ]
python3 "$SRC/tests/cli/model_meta.py" bars.safetensors bad.safetensors --set input_shape 1,6,7
run info bad.safetensors
check "a model whose input_shape disagrees with inputs is refused" eval '[ $rc -ne 0 ] && [ $(wc -l <err) -eq 1 ] && grep -q "input_shape" err'

# ---- fine-tuning on other classes: --init-from --new-head --freeze ----
BARCH="conv(8,3,1,1) batchnorm relu maxpool(2) conv(16,3,1,1) relu maxpool(2) dense(32) relu"
train_ok "base CNN on classes 0-4" a.idx --labels al.idx --arch "$BARCH" --epochs 1 --threads 1 -o base.safetensors
# (IDX labels are class indices: labels 0-2 of a 3-class subset are classes of the 5-class base,
# so only more classes than the base has are caught without --new-head.)
expect_error "other classes without --new-head: error with the hint" 1 "label [5-9] of image [0-9]+ is not a class of.*--new-head replaces its output layer" \
    train tr.idx --labels trl.idx --init-from base.safetensors --epochs 1 -o m.safetensors
expect_error "other CSV class names without --new-head: error with the hint" 1 "unknown class label \"h2\".*--new-head" \
    train bars2.csv --init-from bars.safetensors --epochs 1 -o m.safetensors
expect_error "--new-head without --init-from" 2 "--new-head needs --init-from" train bars.csv --new-head -o m.safetensors
expect_error "--freeze of every parametric layer" 2 "freeze must be in 0..4 \(the network has 5 layers with parameters" \
    train b.idx --labels bl.idx --init-from base.safetensors --new-head --freeze 5 -o m.safetensors
train_ok "--new-head --freeze 3 on classes 5-7" b.idx --labels bl.idx --init-from base.safetensors --new-head --freeze 3 --epochs 2 --threads 1 -o tuned.safetensors
check "training line: 1,264 of 26,483 frozen (conv, batchnorm, conv)" grep -q "dense(3) on 1000 samples, 26,483 parameters: 1,264 frozen, 25,219 trainable" err
run eval tuned.safetensors bt.idx --labels btl.idx --json
tacc=$(json_get accuracy)
echo "fine-tuned (3 new classes) held-out accuracy: $tacc (threshold 0.70)"
check "fine-tuned accuracy $tacc >= 0.70" awk -v a="${tacc:-0}" 'BEGIN { exit !(a >= 0.70) }'
check "tuned model: 3 classes, new_head and freeze stored" eval '[ "$(meta tuned.safetensors n_classes)" = 3 ] && [ "$(meta tuned.safetensors new_head)" = 1 ] && [ "$(meta tuned.safetensors freeze)" = 3 ]'
# tensors NAME...: sha256 of each tensor's bytes, read with the standard library only.
cat >tensors.py <<'PY'
import hashlib, json, struct, sys
blob = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", blob[:8])
h = json.loads(blob[8:8 + n])
for k in sys.argv[2:]:
    a, b = h[k]["data_offsets"]
    print(k, hashlib.sha256(blob[8 + n + a:8 + n + b]).hexdigest())
PY
FROZEN="0.weight 0.bias 1.weight 1.bias 1.running_mean 1.running_var 1.num_batches_tracked 4.weight 4.bias"
check "the frozen conv/batchnorm tensors are bit-identical to the base's (parameters and buffers)" \
    cmp -s <(python3 tensors.py base.safetensors $FROZEN) <(python3 tensors.py tuned.safetensors $FROZEN)
check "the trainable dense(32) changed" eval '! cmp -s <(python3 tensors.py base.safetensors 8.weight) <(python3 tensors.py tuned.safetensors 8.weight)'
run info tuned.safetensors
check "info of the tuned model: the new head dense(3) [3] 99" [ "$(row 10)" = "dense(3) [3] 99" ]
check "info says the model was trained with --freeze 3" grep -q "trained with --freeze 3" out
train_ok "--new-head without --freeze copies the buffers too" b.idx --labels bl.idx --init-from base.safetensors --new-head --epochs 1 --threads 1 --quiet -o tuned2.safetensors
check "... and trains them: the batchnorm's running mean moved" eval '! cmp -s <(python3 tensors.py base.safetensors 1.running_mean) <(python3 tensors.py tuned2.safetensors 1.running_mean)'
check "... num_batches_tracked continues from the base's (47 + 32 batches)" eval '[ "$(python3 -c "import json,struct,sys; b=open(\"tuned2.safetensors\",\"rb\").read(); n=struct.unpack(\"<Q\",b[:8])[0]; h=json.loads(b[8:8+n]); a,_=h[\"1.num_batches_tracked\"][\"data_offsets\"]; print(struct.unpack(\"<q\", b[8+n+a:16+n+a])[0])")" = 79 ]'
train_ok "--new-head on CSV with other class names" bars2.csv --init-from bars.safetensors --new-head --freeze 1 --epochs 1 --quiet -o y.safetensors
check "the CSV fine-tune has the new classes" [ "$(meta y.safetensors classes)" = '["h2","vertical"]' ]
expect_error "--init-from with another --input-shape" 2 "--input-shape 36, but bars.safetensors takes inputs of shape 1,6,6" \
    train bars2.csv --init-from bars.safetensors --new-head --input-shape 36 -o m.safetensors
finish
