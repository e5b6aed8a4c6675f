#!/usr/bin/env bash
# finetune.sh - fine-tuning a CNN on other classes from the command line.
#
#   1. train a small CNN on Fashion-MNIST classes 0-4 (T-shirt, trouser,
#      pullover, dress, coat): 1 epoch on 5,000 images;
#   2. replace its output layer (--new-head) by one for classes 5-9 (sandal,
#      shirt, sneaker, bag, ankle boot), freeze the two conv layers
#      (--freeze 2: the first two layers with parameters) and train the
#      rest for 1 epoch on 5,000 images of those classes;
#   3. evaluate both on held-out test images of their classes.
#
# The class subsets are IDX files written by scripts/idx_subset.py (IDX
# labels are class indices, so the kept labels are renumbered: in step 2,
# class 0 is sandal (5), ..., class 4 is ankle boot (9)).
# Usage: examples/finetune.sh [BACKPROP] (default build/backprop); writes to
# finetune-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
BP=${1:-build/backprop}
F=/usr/share/datasets/fashion-mnist
O=finetune-out
mkdir -p "$O"
sub() { python3 scripts/idx_subset.py "$F/$1-images-idx3-ubyte.gz" "$F/$1-labels-idx1-ubyte.gz" \
    "$O/$2.idx" "$O/$2-labels.idx" --classes "$3" --limit "$4"; }
sub train a 0,1,2,3,4 5000
sub t10k a-test 0,1,2,3,4 2000
sub train b 5,6,7,8,9 5000
sub t10k b-test 5,6,7,8,9 2000

echo "== 1. a CNN on classes 0-4 =="
"$BP" train "$O/a.idx" --labels "$O/a-labels.idx" \
    --arch "conv(8,3,1,1) relu maxpool(2) conv(16,3,1,1) relu maxpool(2) dense(64) relu" \
    --epochs 1 -o "$O/base.safetensors"
"$BP" eval "$O/base.safetensors" "$O/a-test.idx" --labels "$O/a-test-labels.idx" | grep accuracy

echo "== 2. a new head for classes 5-9, the conv layers frozen =="
"$BP" train "$O/b.idx" --labels "$O/b-labels.idx" --init-from "$O/base.safetensors" \
    --new-head --freeze 2 --epochs 1 -o "$O/tuned.safetensors"
"$BP" eval "$O/tuned.safetensors" "$O/b-test.idx" --labels "$O/b-test-labels.idx" | grep accuracy

echo "== the layers: the conv checksums are the base model's =="
"$BP" info "$O/base.safetensors" | awk '$1 ~ /^[0-9]+$/ && length($NF) == 8 && $NF ~ /^[0-9a-f]+$/ { print "base  ", $1, $2, $NF }'
"$BP" info "$O/tuned.safetensors" | awk '$1 ~ /^[0-9]+$/ && length($NF) == 8 && $NF ~ /^[0-9a-f]+$/ { print "tuned ", $1, $2, $NF }'
