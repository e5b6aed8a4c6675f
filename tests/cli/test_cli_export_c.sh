#!/usr/bin/env bash
# test_cli_export_c.sh - `backprop export --c`: standalone C99 from trained
# models, compiled with gcc -std=c99 -Wall -Wextra -Werror -pedantic (and for a
# Cortex-M4 with arm-none-eabi-gcc when installed) together with
# tests/export/driver.c, run on raw float32 samples and compared with the
# library:
#   - an MLP and a CNN (conv, batchnorm, relu, maxpool) trained briefly on
#     Fashion-MNIST subsets: NAME_predict's probabilities against `backprop
#     predict --proba` on the whole 10,000-image test set within 1e-5, and
#     NAME_predict_int8's test accuracy within 1 point of the float one;
#   - stride-1 convs with padding (as wide as the kernel too), kernels 1, 2
#     and 5, on 2 x 5 x 7 CSV inputs: float within 1e-5, int8 within 0.05;
#   - small models for the other kinds: conv with stride and padding,
#     leaky_relu, avgpool, batchnorm, sigmoid, global_avgpool, dropout, tanh,
#     softmax, identity (float; int8 without the softmax); rnn, lstm, gru,
#     dense on a sequence and last on CSV sequences (--input-shape T,F); an
#     embedding + lstm text model against bp_forward (export_ref, built beside
#     the tests); a regression model with normalized inputs and targets; a
#     network ending in softmax (made by export_ref: int8's own exp);
#   - every generated file also built with -fsanitize=address,undefined and run;
#   - errors: int8 on a recurrent model and on a softmax that is not last
#     (the layer named), int8 on a text model, a missing directory.
# Usage: bash test_cli_export_c.sh PATH_TO_BACKPROP SOURCE_DIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SRC=${2:?usage: bash test_cli_export_c.sh BACKPROP SOURCE_DIR}
case $SRC in /*) ;; *) SRC=$OLDPWD/$SRC ;; esac
F=/usr/share/datasets/fashion-mnist
X=$SRC/tests/export
REF=$(dirname "$BP")/tests/export_ref
CC=${CC:-gcc}
ARMCC=arm-none-eabi-gcc
CFLAGS="-std=c99 -Wall -Wextra -Werror -pedantic -O2"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
echo 'int main(void) { return 0; }' >san.c
"$CC" $SAN san.c -o san 2>/dev/null && ./san || { SAN=; echo "SKIP: $CC cannot build with $SAN"; }
start=$SECONDS
check "Fashion-MNIST is installed" test -r "$F/t10k-images-idx3-ubyte.gz"
check "export_ref is built beside the tests" test -x "$REF"
TR=("$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz")
python3 "$SRC/scripts/idx_subset.py" "${TR[@]}" tr.idx trl.idx --limit 12000
python3 "$SRC/scripts/idx_subset.py" "${TR[@]}" small.idx smalll.idx --skip 12000 --limit 1500
python3 "$X/to_f32.py" idx "$F/t10k-images-idx3-ubyte.gz" test.f32
python3 "$X/to_f32.py" idx small.idx small.f32

# export_c NAME MODEL [INT8 ARGS...]: export into NAME/, compile NAME/NAME.c
# with the driver as drv_NAME (-DINT8 when int8 args are given) and for the
# Cortex-M4.
export_c() {
    local n=$1 model=$2; shift 2
    local int8=
    [ $# -gt 0 ] && int8=-DINT8
    mkdir -p "$n"
    run export "$model" --c "$n" --name "$n" "$@"
    if [ $rc -eq 0 ] && [ -s "$n/$n.c" ] && [ -s "$n/$n.h" ]; then ok "$n: export --c $*"
    else bad "$n: export --c $* (rc=$rc: $(head -c 300 "$T/err"))"; fi
    check "$n: gcc $CFLAGS" "$CC" $CFLAGS $int8 -I"$n" -DM="$n" -DHEADER="\"$n.h\"" \
        "$X/driver.c" "$n/$n.c" -lm -o "drv_$n"
    if [ -n "$SAN" ]; then
        "$CC" $CFLAGS $SAN $int8 -I"$n" -DM="$n" -DHEADER="\"$n.h\"" "$X/driver.c" "$n/$n.c" \
            -lm -o "drv_${n}_san" || bad "$n: the sanitized build"
    fi
    if command -v "$ARMCC" >/dev/null; then
        check "$n: arm-none-eabi-gcc -mcpu=cortex-m4 -Os" "$ARMCC" -std=c99 -mcpu=cortex-m4 \
            -mthumb -Os -Wall -Wextra -Werror -c "$n/$n.c" -o "$n/$n.o"
    else
        echo "SKIP: $n: arm-none-eabi-gcc not installed"
    fi
}
# san_ok NAME SAMPLES.f32 INPUTS [int8]: the generated code built with
# -fsanitize=address,undefined runs the first 200 samples cleanly.
san_ok() {
    [ -n "$SAN" ] || return 0
    head -c $((200 * $3 * 4)) "$2" >san.f32
    check "$1: ${4:-float} code clean under ASan + UBSan (200 samples)" eval "./drv_${1}_san san.f32 ${4:-} >/dev/null"
}
# drive NAME SAMPLES.f32 INPUTS [int8]: drv_NAME's outputs into NAME.float.txt
# (NAME.int8.txt with int8), then san_ok on the same samples.
drive() {
    ./drv_$1 "$2" ${4:-} >"$1.${4:-float}.txt"
    san_ok "$@"
}
# within NAME OUT: the comparison line in OUT passed (compare.py's status)
cmp_ok() { local name=$1; shift; local r; r=$(python3 "$X/compare.py" "$@"); local s=$?
    echo "$name: $r"; if [ $s -eq 0 ]; then ok "$name ($r)"; else bad "$name ($r)"; fi; }
acc_of() { python3 "$X/compare.py" accuracy "$1" "$F/t10k-labels-idx1-ubyte.gz"; }

# ---- MLP and CNN on Fashion-MNIST: float exact, int8 within 1 point ----
train_ok "MLP trains" tr.idx --labels trl.idx --arch "dense(128) relu dense(64) relu" \
    --epochs 4 --batch 64 --optimizer adam --lr 0.001 --seed 1 --threads 1 -o mlp.safetensors
train_ok "CNN trains" tr.idx --labels trl.idx --seed 1 --threads 1 -o cnn.safetensors \
    --arch "conv(8,3) batchnorm relu maxpool(2) conv(16,3) relu maxpool(2)" \
    --epochs 3 --batch 64 --optimizer adam --lr 0.002
for m in mlp cnn; do
    export_c $m $m.safetensors --int8 --calibrate small.idx --labels smalll.idx --calibrate-rows 1000
    "$BP" predict $m.safetensors "$F/t10k-images-idx3-ubyte.gz" --proba -o $m.pred.csv
    drive $m test.f32 784
    drive $m test.f32 784 int8
    cmp_ok "$m: ${m}_predict against predict --proba on 10,000 images, within 1e-5" \
        proba $m.float.txt $m.pred.csv --tol 1e-5
    fa=$(acc_of $m.float.txt) qa=$(acc_of $m.int8.txt)
    echo "$m: test accuracy float $fa, int8 $qa"
    check "$m: int8 accuracy $qa within 1 point of float $fa" \
        awk -v f="$fa" -v q="$qa" 'BEGIN { d = f - q; if (d < 0) d = -d; exit !(d <= 0.01) }'
    check "$m: header has ${m}_INPUTS 784, ${m}_OUTPUTS 10 and the stack" eval \
        'grep -q "define ${m}_INPUTS 784" $m/$m.h && grep -q "define ${m}_OUTPUTS 10" $m/$m.h && grep -q "define ${m}_STACK_BYTES" $m/$m.h'
    check "$m: the int8 code calls no libm function" eval \
        '! sed -n "/---- int8/,\$p" $m/$m.c | grep -Eq "\b(expf|tanhf|exp|tanh|sqrtf|roundf|lrintf)\("'
done

# ---- the other image kinds ----
ARCH_A="conv(8,3,2,1) leaky_relu(0.1) avgpool(2) conv(16,3) batchnorm tanh global_avgpool dropout(0.1) dense(16) sigmoid dense(12) softmax identity dense(12) relu"
ARCH_B="conv(8,3,2,1) leaky_relu(0.1) avgpool(2) conv(16,3) batchnorm tanh global_avgpool dropout(0.1) dense(16) sigmoid identity dense(12) relu"
train_ok "image kinds (softmax inside) train" small.idx --labels smalll.idx --arch "$ARCH_A" \
    --epochs 4 --optimizer adam --lr 0.01 --seed 2 --threads 1 -o kinds_a.safetensors
train_ok "image kinds (no softmax) train" small.idx --labels smalll.idx --arch "$ARCH_B" \
    --epochs 4 --optimizer adam --lr 0.01 --seed 2 --threads 1 -o kinds_b.safetensors
export_c kinds_a kinds_a.safetensors
export_c kinds_b kinds_b.safetensors --int8 --calibrate small.idx --labels smalll.idx
for m in kinds_a kinds_b; do
    "$BP" predict $m.safetensors "$F/t10k-images-idx3-ubyte.gz" --proba -o $m.pred.csv
    ./drv_$m test.f32 >$m.float.txt
    cmp_ok "$m: float against predict --proba on 10,000 images" proba $m.float.txt $m.pred.csv --tol 1e-5
done
san_ok kinds_a test.f32 784
drive kinds_b test.f32 784 int8
fa=$(acc_of kinds_b.float.txt) qa=$(acc_of kinds_b.int8.txt)
echo "kinds_b: test accuracy float $fa, int8 $qa"
check "kinds_b: int8 (tables for leaky_relu, sigmoid, tanh, relu; avgpools) within 3 points of float" \
    awk -v f="$fa" -v q="$qa" 'BEGIN { d = f - q; if (d < 0) d = -d; exit !(d <= 0.03) }'
mkdir -p noout
expect_error "int8: a softmax that is not last is named" 1 "layer 12 \(softmax\) is not the last layer" \
    export kinds_a.safetensors --c noout --int8 --calibrate small.idx --labels smalll.idx
check "the failed export wrote nothing" eval '[ -z "$(ls -A noout)" ]'

# ---- stride-1 convs with padding (the shifted-plane loops of the export):
# a padding as wide as the kernel (windows wholly over it), kernels 5, 1 and 2
# (pad 1: the output grows), batchnorm folded in int8, 2 x 5 x 7 inputs ----
python3 - <<'PY'
import random
random.seed(5)
with open("pad.csv", "w") as f:
    f.write(",".join("x%d" % i for i in range(70)) + ",label\n")
    for r in range(300):
        v = [random.gauss(0.5, 1) for _ in range(70)]
        s = sum(v[:10]) - sum(v[30:40])
        f.write(",".join("%.4f" % x for x in v) + ",%s\n" % ("abc"[0 if s < -2 else 1 if s < 2 else 2]))
PY
python3 "$X/to_f32.py" csv pad.csv pad.f32 --drop-last
train_ok "padded stride-1 convs train" pad.csv --input-shape 2,5,7 --epochs 3 --seed 3 --threads 1 \
    --arch "conv(3,3,1,3) relu conv(4,5,1,2) batchnorm relu conv(2,1,1,1) leaky_relu(0.1) conv(3,2,1,1) relu dense(3)" \
    -o pad.safetensors
export_c pad pad.safetensors --int8 --calibrate pad.csv
"$BP" predict pad.safetensors pad.csv --proba -o pad.pred.csv
drive pad pad.f32 70
drive pad pad.f32 70 int8
cmp_ok "pad: float against predict --proba within 1e-5" proba pad.float.txt pad.pred.csv --tol 1e-5
cmp_ok "pad: int8 probabilities within 0.05 of predict --proba" proba pad.int8.txt pad.pred.csv --tol 0.05

# ---- sequences: rnn, lstm, gru, dense on steps, last ----
python3 - <<'PY'
import math, random
random.seed(3)
T, F = 6, 3
with open("seq.csv", "w") as f:
    f.write(",".join("x%d" % i for i in range(T * F)) + ",label\n")
    for r in range(240):
        v = [random.gauss(0, 1) for _ in range(T * F)]
        s = sum(v[t * F] * (t + 1) for t in range(T))
        f.write(",".join("%.4f" % x for x in v) + ",%s\n" % ("abc"[0 if s < -2 else 1 if s < 2 else 2]))
with open("reg.csv", "w") as f:
    f.write("a,b,c,d,y\n")
    for r in range(200):
        v = [random.uniform(-3, 3), random.gauss(10, 4), random.uniform(0, 100), random.gauss(0, 1)]
        y = 1000 + 40 * v[0] + 3 * v[1] - 0.5 * v[2] + 5 * math.sin(v[3])
        f.write(",".join("%.4f" % x for x in v) + ",%.3f\n" % y)
PY
python3 "$X/to_f32.py" csv seq.csv seq.f32 --drop-last
python3 "$X/to_f32.py" csv reg.csv reg.f32 --drop-last
train_ok "sequence model trains" seq.csv --input-shape 6,3 --arch "rnn(6) dense(5) lstm(7) gru(5) last tanh" \
    --epochs 3 --seed 4 --threads 1 -o seq.safetensors
export_c seq seq.safetensors
"$BP" predict seq.safetensors seq.csv --proba -o seq.pred.csv
drive seq seq.f32 18
cmp_ok "seq: rnn, dense on steps, lstm, gru, last against predict --proba" proba seq.float.txt seq.pred.csv --tol 1e-5
expect_error "int8: a recurrent layer is named" 1 "layer 0 \(rnn\)" \
    export seq.safetensors --c noout --int8 --calibrate seq.csv

# ---- regression with normalized inputs and targets ----
train_ok "regression model trains" reg.csv --task regress --normalize standard --normalize-target standard \
    --arch "dense(16) tanh dense(8) leaky_relu(0.05)" --epochs 30 --seed 5 --threads 1 -o reg.safetensors
export_c reg reg.safetensors --int8 --calibrate reg.csv
"$BP" predict reg.safetensors reg.csv -o reg.pred.csv
drive reg reg.f32 4
drive reg reg.f32 4 int8
cmp_ok "reg: float predictions in the targets' units against predict (relative 1e-5)" regress reg.float.txt reg.pred.csv --tol 1e-5
cmp_ok "reg: int8 predictions within 5% of predict's" regress reg.int8.txt reg.pred.csv --tol 0.05

# ---- text: embedding + lstm + dense on every step, against bp_forward ----
train_ok "text model trains" /usr/share/common-licenses/GPL-3 --task text --seq-len 12 \
    --arch "embedding(8) lstm(16)" --epochs 1 --seed 6 --threads 1 -o text.safetensors
export_c text text.safetensors
"$REF" --ids text.safetensors 50 text.f32
"$REF" text.safetensors text.f32 >text.ref.txt
./drv_text text.f32 >text.float.txt
san_ok text text.f32 12
cmp_ok "text: embedding, lstm, dense on steps against bp_forward (50 sequences)" raw text.float.txt text.ref.txt --tol 1e-5
expect_error "int8 on a text model" 1 "text model" \
    export text.safetensors --c noout --int8 --calibrate /usr/share/common-licenses/GPL-3

# ---- a final softmax (a spec `train` does not make: random weights) ----
python3 - <<'PY'
import random
random.seed(7)
with open("sm.csv", "w") as f:
    f.write("a,b,c,d,e,f\n")
    for r in range(300):
        f.write(",".join("%.4f" % random.gauss(0, 1) for _ in range(6)) + "\n")
PY
python3 "$X/to_f32.py" csv sm.csv sm.f32
check "a dense(8) relu dense(4) softmax network is made" "$REF" --make "dense(8) relu dense(4) softmax" 6 sm.safetensors
export_c sm sm.safetensors --int8 --calibrate sm.csv
"$REF" sm.safetensors sm.f32 >sm.ref.txt
./drv_sm sm.f32 >sm.float.txt
drive sm sm.f32 6 int8
cmp_ok "sm: float probabilities against bp_forward" raw sm.float.txt sm.ref.txt --tol 1e-5
cmp_ok "sm: int8 probabilities (softmax without libm) within 0.03 of float" raw sm.int8.txt sm.float.txt --tol 0.03
check "sm: int8 probabilities sum to 1" python3 -c '
import sys
for line in open("sm.int8.txt"):
    s = sum(float(v) for v in line.split(","))
    if abs(s - 1) > 1e-5: sys.exit("sum %r" % s)'

# ---- numerics at the edges (review of issue 12) ----
# A batchnorm on raw values far from 0 (running mean ~12345): the float code
# computes (x - mean) a + beta as the library does (x a + b would cancel).
python3 - <<'PY'
import random
random.seed(8)
with open("big.csv", "w") as f:
    f.write("a,b,c,y\n")
    for r in range(400):
        v = [12345.678 + random.gauss(0, 3) for _ in range(3)]
        f.write(",".join("%.4f" % x for x in v) + ",%d\n" % (v[0] + v[1] > 2 * 12345.678))
PY
python3 "$X/to_f32.py" csv big.csv big.f32 --drop-last
train_ok "batchnorm on raw values near 12345 trains" big.csv --normalize none --arch "batchnorm dense(8) tanh" \
    --epochs 20 --batch 32 --seed 9 --threads 1 -o big.safetensors
export_c big big.safetensors
"$BP" predict big.safetensors big.csv --proba -o big.pred.csv
./drv_big big.f32 >big.float.txt
cmp_ok "big: batchnorm with a running mean near 12345 against predict --proba within 1e-5" \
    proba big.float.txt big.pred.csv --tol 1e-5
# int8 behind an almost dead relu (activations below 1e-6) and a bias of 0.5:
# the bias code would overflow int32 at the natural weight scale.
check "a network with a tiny hidden layer and a large bias is made" \
    "$REF" --make "dense(8) relu dense(3)" 6 tiny.safetensors 0:1e-7:0 2:1:0.5
export_c tiny tiny.safetensors --int8 --calibrate sm.csv
"$REF" tiny.safetensors sm.f32 >tiny.ref.txt
./drv_tiny sm.f32 >tiny.float.txt
drive tiny sm.f32 6 int8
cmp_ok "tiny: int8 outputs (the bias kept) within 0.01 of float" raw tiny.int8.txt tiny.float.txt --tol 0.01

expect_error "--c DIR that does not exist" 1 "not a directory" export mlp.safetensors --c nowhere
echo "test_cli_export_c: $((SECONDS - start)) s"
finish
