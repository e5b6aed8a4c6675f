#!/usr/bin/env bash
# demo.sh - install what is missing, build, and run the demo:
#   1. the library from C: the seed table 0,3,9,27 -> 0,6,18,54 learned by
#      one linear neuron, and XOR learned by a 2-4-1 network;
#   2. the command line on Fashion-MNIST: `backprop train` (256-128 relu MLP,
#      Adam, 15 epochs, 10% of the rows held out for validation) with its
#      progress display, then `backprop eval` on
#      the 10,000 test images. Outputs go to demo-out/: the model, the
#      per-epoch log (CSV) and the learning curves (SVG);
#   3. a small CNN (two conv + maxpool blocks, IDX images train as
#      [1, 28, 28]) trained for one epoch on all 60,000 training images, then
#      evaluated on the test images.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "== library demo 1: the seed table, one linear neuron =="
./build/example_seed_table
echo "== library demo 2: XOR, a 2-4-1 network =="
./build/example_xor | tail -5
F=/usr/share/datasets/fashion-mnist
mkdir -p demo-out
echo "== command line: train on Fashion-MNIST (54,000 images, 6,000 held out for validation) =="
./build/backprop train "$F/train-images-idx3-ubyte.gz" --labels "$F/train-labels-idx1-ubyte.gz" \
    --arch "dense(256) relu dense(128) relu" --optimizer adam --epochs 15 --val-split 0.1 \
    -o demo-out/fashion.safetensors --log demo-out/fashion.csv --plot demo-out/fashion.svg
echo "== command line: evaluate on the 10,000 test images =="
./build/backprop eval demo-out/fashion.safetensors "$F/t10k-images-idx3-ubyte.gz" \
    --labels "$F/t10k-labels-idx1-ubyte.gz" | tee demo-out/eval.txt
./build/backprop eval demo-out/fashion.safetensors "$F/t10k-images-idx3-ubyte.gz" \
    --labels "$F/t10k-labels-idx1-ubyte.gz" --json >demo-out/eval.json
field() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" demo-out/eval.json; }
echo
echo "demo: Fashion-MNIST test accuracy $(field accuracy) ($(field correct) of $(field samples) test images)"
echo "demo: model, log and learning curves in demo-out/ (fashion.safetensors, fashion.csv, fashion.svg)"
echo "== command line: a small CNN, 1 epoch on the 60,000 training images =="
./build/backprop train "$F/train-images-idx3-ubyte.gz" --labels "$F/train-labels-idx1-ubyte.gz" \
    --arch "conv(8,3,1,1) relu maxpool(2) conv(16,3,1,1) relu maxpool(2) dense(64) relu" \
    --epochs 1 -o demo-out/fashion-cnn.safetensors
./build/backprop info demo-out/fashion-cnn.safetensors | sed -n '/^index/,/^total/p'
./build/backprop eval demo-out/fashion-cnn.safetensors "$F/t10k-images-idx3-ubyte.gz" \
    --labels "$F/t10k-labels-idx1-ubyte.gz" --json >demo-out/eval-cnn.json
cfield() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" demo-out/eval-cnn.json; }
echo "demo: CNN (1 epoch) Fashion-MNIST test accuracy $(cfield accuracy) ($(cfield correct) of $(cfield samples) test images)"
