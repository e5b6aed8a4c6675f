#!/usr/bin/env bash
# deps.sh - install the Debian packages backprop needs that are missing.
# Usage: scripts/deps.sh [build|test|bench]   (each level includes the previous)
set -euo pipefail
level=${1:-build}
case $level in build|test|bench) ;; *) echo "deps: unknown level '$level' (build, test or bench)" >&2; exit 2 ;; esac
# ocl-icd-opencl-dev: Debian's libdnnl is built with the OpenCL GPU runtime, so
# its CMake package (dnnl-config.cmake) runs find_package(OpenCL REQUIRED) and
# its DNNL::dnnl target links OpenCL::OpenCL. libdnnl-dev only recommends the
# OpenCL dev files and we install without recommends, so name them here. We keep
# oneDNN's own CMake package (rather than find_library) because it carries the
# library's version, compile flags and transitive link libraries as packaged.
# libopenmpi-dev, openmpi-bin: data-parallel training (`mpirun -np N backprop
# train`, libbackprop_mpi); without them the tool builds for one process.
pkgs=(build-essential cmake pkg-config libdnnl-dev ocl-icd-opencl-dev libcjson-dev zlib1g-dev
      dataset-fashion-mnist libopenmpi-dev openmpi-bin)
if [ "$level" = test ] || [ "$level" = bench ]; then
  # sklearn ships the iris/wine CSVs of the end-to-end tests; torch checks
  # that saved models load in PyTorch; clang builds the fuzz targets.
  pkgs+=(python3-sklearn python3-torch python3-numpy clang libclang-rt-14-dev)
  # iproute2 for the data-parallel test across two network namespaces
  # (tests/mpi/netns.sh; Open MPI itself is in the build level).
  pkgs+=(iproute2)
  # backprop export (issue 12): Debian's ONNX checker; python3-venv for the
  # pinned onnxruntime wheel from PyPI that the ONNX tests install under the
  # build folder; the Cortex-M4 cross compiler and newlib's headers (math.h)
  # that the generated C is compiled with.
  pkgs+=(python3-onnx python3-venv gcc-arm-none-eabi libnewlib-arm-none-eabi)
fi
if [ "$level" = bench ]; then
  # bench/run.sh: FANN for bench_fann, /usr/bin/time for peak RSS, OpenBLAS
  # (Debian's PyTorch's BLAS, recorded in the results); Debian's torch and
  # numpy come from the test level, as does python3-venv (ensurepip) for the
  # venv under the build folder that holds the current PyTorch wheel from PyPI;
  # fortunes (with fortunes-min, which it depends on): W7's text.
  pkgs+=(libfann-dev libopenblas-dev time fortunes)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "deps: missing packages (${missing[*]}) and not root; install them and retry" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
