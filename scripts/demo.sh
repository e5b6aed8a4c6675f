#!/usr/bin/env bash
# demo.sh - install what is missing, build, and run the demo:
#   1. the seed table 0,3,9,27 -> 0,6,18,54 learned by one linear neuron;
#   2. XOR learned by a 2-4-1 network.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "== seed table: one linear neuron =="
./build/example_seed_table
echo "== XOR: a 2-4-1 network =="
./build/example_xor
