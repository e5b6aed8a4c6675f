#!/usr/bin/env bash
# test_cli_fashion.sh - the accuracy the issues promise, from the command
# line on Debian's Fashion-MNIST (dataset-fashion-mnist): a 784-256-128-10
# relu MLP trained with Adam for 15 epochs must reach >= 0.885 accuracy on
# the 10,000 test images, both as the demo runs it (batch 32, 10% held out
# for validation) and as benchmark W1 runs it (batch 128, all 60,000 rows).
# Usage: bash test_cli_fashion.sh PATH_TO_BACKPROP SOURCE_DIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
F=/usr/share/datasets/fashion-mnist
check "Fashion-MNIST is installed (scripts/deps.sh installs dataset-fashion-mnist)" \
    test -r "$F/train-images-idx3-ubyte.gz" -a -r "$F/t10k-labels-idx1-ubyte.gz"

# accuracy NAME TRAIN-ARGS...: train, eval --json, require accuracy >= 0.885
accuracy() {
    local name=$1; shift
    run train "$F/train-images-idx3-ubyte.gz" --labels "$F/train-labels-idx1-ubyte.gz" \
        --arch "dense(256) relu dense(128) relu" --optimizer adam --epochs 15 -o fm.safetensors --quiet "$@"
    check "$name: training succeeds" [ "$rc" -eq 0 ]
    run eval fm.safetensors "$F/t10k-images-idx3-ubyte.gz" --labels "$F/t10k-labels-idx1-ubyte.gz" --json
    local acc
    acc=$(sed -n 's/.*"accuracy": *\([0-9.]*\).*/\1/p' "$T/out")
    echo "$name: test accuracy ${acc:-none}"
    check "$name: test accuracy ${acc:-none} >= 0.885" awk -v a="${acc:-0}" 'BEGIN { exit !(a >= 0.885) }'
}
accuracy "demo (batch 32, --val-split 0.1)" --val-split 0.1
accuracy "W1 (batch 128)" --batch 128
finish
