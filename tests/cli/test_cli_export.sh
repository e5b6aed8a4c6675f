# test_cli_export.sh - `backprop export` on bad input (issue 12, item 4):
# usage errors, an unknown layer kind in a model, calibration rows of the
# wrong width, destinations that cannot be written; each a one-line message,
# a non-zero status, and nothing written (no file, no temporary left).
# (ONNX and C outputs themselves: test_cli_export_onnx.sh, test_cli_export_c.sh.)
source "$(dirname "$0")/lib.sh"
SRC=${2:?usage: bash test_cli_export.sh BACKPROP SOURCE_DIR}
case $SRC in /*) ;; *) SRC=$OLDPWD/$SRC ;; esac
META="/usr/bin/python3 $SRC/tests/cli/model_meta.py"

# A small classifier on a CSV of 4 features.
python3 - <<'PY'
import random
random.seed(3)
with open("d.csv", "w") as f:
    f.write("a,b,c,d,y\n")
    for i in range(120):
        v = [random.gauss(0, 1) for _ in range(4)]
        f.write(",".join("%.5f" % x for x in v) + ",%s\n" % ("yes" if v[0] + v[1] > 0 else "no"))
with open("wide.csv", "w") as f:
    f.write("a,b,c,d,e\n")
    for i in range(10):
        f.write("1,2,3,4,5\n")
PY
train_ok "train the model" d.csv --arch "dense(8) relu" --epochs 2 --quiet -o m0.safetensors

# nothing_written DIR: no file but the ones listed in $keep inside DIR.
no_new_files() { # DIR EXPECTED_COUNT
    [ "$(find "$1" -mindepth 1 | wc -l)" -eq "$2" ]
}
# export_error NAME RC REGEX ARGS...: like expect_error, and nothing new in dst/.
export_error() {
    local name=$1 want=$2 re=$3; shift 3
    rm -rf dst && mkdir dst
    run "$@"
    if [ "$rc" -eq "$want" ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q '^backprop: ' "$T/err" &&
        grep -Eq -- "$re" "$T/err" && no_new_files dst 0 && [ ! -e x.onnx ]; then
        ok "$name"
    else
        bad "$name (rc=$rc, want $want; stderr: $(head -c 300 "$T/err"); dst: $(ls dst | head -c 100))"
    fi
}

# ---- usage errors (status 2), before anything is read ----
export_error "no MODEL" 2 "export: needs MODEL" export
export_error "nothing to write" 2 "say what to write: --onnx FILE.onnx and/or --c DIR" export m0.safetensors
export_error "--int8 without --c" 2 "--int8 is for the C code" export m0.safetensors --onnx x.onnx --int8 --calibrate d.csv
export_error "--int8 without --calibrate" 2 "--int8 needs --calibrate DATA" export m0.safetensors --c dst --int8
export_error "--calibrate without --int8" 2 "--calibrate is for --int8" export m0.safetensors --c dst --calibrate d.csv
export_error "--labels without --calibrate" 2 "--labels is for the --calibrate data" export m0.safetensors --c dst --labels l.idx
export_error "--name not an identifier" 2 "--name '9lives': a C identifier" export m0.safetensors --c dst --name 9lives
export_error "--name with a dash" 2 "--name 'my-net': a C identifier" export m0.safetensors --c dst --name my-net
export_error "--calibrate-rows 0" 2 "--calibrate-rows" export m0.safetensors --c dst --int8 --calibrate d.csv --calibrate-rows 0
export_error "an unknown option" 2 "unknown option '--onx'" export m0.safetensors --onx x.onnx
export_error "--onnx over the model" 2 "MODEL" export m0.safetensors --onnx m0.safetensors
check "the model is intact after that" cmp -s m0.safetensors <("$BP" export m0.safetensors --onnx /dev/null >/dev/null 2>&1; cat m0.safetensors)
export_error "--c DIR that does not exist" 1 "--c nowhere: not a directory" export m0.safetensors --c nowhere
export_error "--c DIR that is a file" 1 "--c d.csv: not a directory" export m0.safetensors --c d.csv
check "export --help" eval '"$BP" export --help | grep -q -- "--calibrate DATA"'
check "backprop help export" eval '"$BP" help export | grep -q "NAME_predict"'
check "--help lists export" eval '"$BP" --help | grep -q "backprop export MODEL"'

# ---- bad models ----
$META m0.safetensors swish.safetensors --set spec "dense(8) swish dense(2)"
export_error "an unknown layer kind in the model" 1 "swish.safetensors.*swish" export swish.safetensors --onnx x.onnx
export_error "an unknown layer kind in the model (--c)" 1 "swish.safetensors.*swish" export swish.safetensors --c dst
export_error "a model that is not a model" 1 "d.csv" export d.csv --onnx x.onnx
$META m0.safetensors badnorm.safetensors --set norm_scale "1,2,x,4"
export_error "malformed normalization in the model" 1 "norm_scale" export badnorm.safetensors --onnx x.onnx

# ---- calibration data ----
export_error "calibration rows of the wrong width (CSV)" 1 'wide.csv:1:5: column "e" is neither a feature nor a target of the model' \
    export m0.safetensors --c dst --int8 --calibrate wide.csv
# Images: a model of 8x8 images calibrated with 6x6 ones.
python3 - <<'PY'
import random, struct
random.seed(5)
def idx(path, n, h, w):
    with open(path, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, h, w) + bytes(random.randrange(256) for _ in range(n * h * w)))
idx("i8.idx", 64, 8, 8)
idx("i6.idx", 10, 6, 6)
with open("l8.idx", "wb") as f:
    f.write(struct.pack(">II", 0x801, 64) + bytes(random.randrange(3) for _ in range(64)))
PY
train_ok "train an image model" i8.idx --labels l8.idx --arch "conv(2,3) relu" --epochs 1 --quiet -o im.safetensors
export_error "calibration images of the wrong size (IDX)" 1 "i6.idx has 36 features per sample, the model im.safetensors takes 64 inputs \(input shape \[1, 8, 8\]\)" \
    export im.safetensors --c dst --int8 --calibrate i6.idx
export_error "a calibration file that does not exist" 1 "missing.csv" export m0.safetensors --c dst --int8 --calibrate missing.csv
printf 'a,b,c,d,y\n1,2,nan,4,yes\n' >nan.csv
export_error "NaN in the calibration rows" 1 "nan.csv|NaN|nan" export m0.safetensors --c dst --int8 --calibrate nan.csv

# ---- destinations that cannot be written: nothing half-written ----
export_error "--onnx into a missing folder" 1 "nowhere/x.onnx" export m0.safetensors --onnx nowhere/x.onnx
mkdir -p out2/model.c
run export m0.safetensors --c out2
check "--c where NAME.c cannot be written: status 1, one line (rc=$rc: $(head -c 200 "$T/err"))" \
    [ "$rc" -eq 1 -a "$(wc -l <"$T/err")" -eq 1 ]
check "--c where NAME.c cannot be written: no model.h, no temporary file" \
    [ "$(find out2 -mindepth 1 | wc -l)" -eq 1 ]
run export m0.safetensors --c /proc/self
check "--c into a folder that takes no files (/proc/self): status 1 (rc=$rc: $(head -c 200 "$T/err"))" \
    [ "$rc" -eq 1 -a "$(wc -l <"$T/err")" -eq 1 ]
# An existing export is replaced whole or not at all.
# (int8 does not quantize recurrent layers: the exporter itself refuses.)
train_ok "train a recurrent model on rows as sequences" d.csv --input-shape 2,2 --arch "lstm(4) last" \
    --epochs 1 --quiet -o seq.safetensors
mkdir -p out3
run export seq.safetensors --c out3 --name net
check "a first export (rc=$rc: $(head -c 200 "$T/err"))" [ "$rc" -eq 0 -a -s out3/net.h -a -s out3/net.c ]
cp out3/net.h keep.h && cp out3/net.c keep.c
run export seq.safetensors --c out3 --name net --int8 --calibrate d.csv
check "int8 on an lstm: refused, naming the layer (rc=$rc: $(head -c 200 "$T/err"))" \
    eval '[ "$rc" -eq 1 ] && grep -qi "lstm" "$T/err" && [ "$(wc -l <"$T/err")" -eq 1 ]'
check "a failed export leaves the earlier files as they were" \
    eval 'cmp -s keep.h out3/net.h && cmp -s keep.c out3/net.c && [ "$(ls out3 | wc -l)" -eq 2 ]'
finish
