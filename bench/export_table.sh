#!/usr/bin/env bash
# export_table.sh - the standalone C export (`backprop export --c`, float and
# --int8) of the demo's two Fashion-MNIST models (scripts/demo.sh: the
# 256-128 relu MLP, Adam, 15 epochs, 10% held out; the small CNN, 1 epoch),
# measured on this machine:
#   accuracy   on the 10,000 test images, by the generated NAME_predict /
#              NAME_predict_int8 compiled with gcc -O2
#   flash      text + data of arm-none-eabi-size for the function alone: the
#              generated .c compiled for a Cortex-M4F (-mcpu=cortex-m4 -mthumb
#              -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os -ffunction-sections
#              -fdata-sections) and linked with --gc-sections and the predict
#              function as the entry point, so only it, its weights and what it
#              calls count (libm's expf etc. included where used)
#   RAM        data + bss of that link plus the stack: the predict function's
#              frame from -fstack-usage and the largest frame of the file's
#              other functions (its leaf helpers)
#   host us    mean time of one sample over the 10,000 (gcc -O2, one thread)
# Usage: bench/export_table.sh [BUILD_DIR]   (default: build; Release)
#   EPOCHS_MLP=15 EPOCHS_CNN=1: the recipes' epochs; WORK=DIR: where the
#   models, generated code and binaries go (default BUILD_DIR/export-table);
#   an existing WORK/mlp.safetensors or cnn.safetensors is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
BUILD=${1:-build}
BP=$SRC/$BUILD/backprop
WORK=${WORK:-$SRC/$BUILD/export-table}
F=/usr/share/datasets/fashion-mnist
X=$SRC/tests/export
ARM="arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os"
mkdir -p "$WORK"
cd "$WORK"
TR=("$F/train-images-idx3-ubyte.gz" --labels "$F/train-labels-idx1-ubyte.gz")
if [ ! -e mlp.safetensors ]; then
    "$BP" train "${TR[@]}" --arch "dense(256) relu dense(128) relu" --optimizer adam \
        --epochs "${EPOCHS_MLP:-15}" --val-split 0.1 --seed 1 -o mlp.safetensors --quiet
fi
if [ ! -e cnn.safetensors ]; then
    "$BP" train "${TR[@]}" --arch "conv(8,3,1,1) relu maxpool(2) conv(16,3,1,1) relu maxpool(2) dense(64) relu" \
        --epochs "${EPOCHS_CNN:-1}" --seed 1 -o cnn.safetensors --quiet
fi
python3 "$SRC/scripts/idx_subset.py" "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" \
    calib.idx calib-labels.idx --limit 1000
[ -e test.f32 ] || python3 "$X/to_f32.py" idx "$F/t10k-images-idx3-ubyte.gz" test.f32
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(gcc --version | head -1), $($ARM --version 2>/dev/null | head -1 || echo 'no arm-none-eabi-gcc')"
printf '| %-5s | %-5s | %-8s | %-11s | %-9s | %-11s |\n' model code accuracy "flash bytes" "RAM bytes" "host us/sample"
printf '|-------|-------|----------|-------------|-----------|----------------|\n'
for m in mlp cnn; do
    mkdir -p $m
    "$BP" export $m.safetensors --c $m --name $m --int8 --calibrate calib.idx --labels calib-labels.idx \
        --calibrate-rows 1000 >/dev/null 2>&1
    gcc -std=c99 -O2 -DINT8 -I$m -DM=$m -DHEADER="\"$m.h\"" "$X/driver.c" $m/$m.c -lm -o drv_$m
    for kind in float int8; do
        fn=${m}_predict
        arg=
        [ $kind = int8 ] && fn=${m}_predict_int8 arg=int8
        ./drv_$m test.f32 $arg >$m.$kind.txt
        acc=$(python3 "$X/compare.py" accuracy $m.$kind.txt "$F/t10k-labels-idx1-ubyte.gz")
        us=$(./drv_$m test.f32 $arg time)
        flash=- ram=-
        if command -v arm-none-eabi-gcc >/dev/null; then
            $ARM -std=c99 -ffunction-sections -fdata-sections -fstack-usage -c $m/$m.c -o $m/$m.o
            $ARM -nostartfiles -Wl,--gc-sections -Wl,-e,$fn --specs=nosys.specs $m/$m.o -lm \
                -o $m/$fn.elf
            read -r text data bss _ < <(arm-none-eabi-size $m/$fn.elf | tail -1)
            own=$(awk -F'\t' -v f="$fn" '{ n = split($1, a, ":"); if (a[n] == f) print $2 }' $m/$m.su)
            syms=$(arm-none-eabi-nm $m/$fn.elf | awk '{ print $NF }' | tr '\n' ' ')
            helper=$(awk -F'\t' -v f="$fn" -v s=" $syms" '{ n = split($1, a, ":");
                if (a[n] != f && index(s, " " a[n] " ") && $2 > m) m = $2 } END { print m + 0 }' $m/$m.su)
            flash=$((text + data))
            ram=$((data + bss + own + helper))
        fi
        printf '| %-5s | %-5s | %-8s | %11s | %9s | %14s |\n' $m $kind "$acc" "$flash" "$ram" "$us"
    done
done
