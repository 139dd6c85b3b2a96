#!/usr/bin/env bash
# Build Horovod 0.28.1 (its last release) into the training environment, against its exact torch.
# Two changes are needed for torch 2.13 (see ../shared/STACK.md): C++17 instead of C++14 (torch's
# headers require it) and CMAKE_POLICY_VERSION_MINIMUM for the bundled gloo. CPU builds use Gloo;
# where CUDA and NCCL are present, set HOROVOD_GPU_OPERATIONS=NCCL before running this script.
set -euo pipefail
VENV=${1:-.venv-train}
PY="$PWD/$VENV/bin/python"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download -q --no-deps --no-binary :all: -d "$WORK" horovod==0.28.1
tar -xzf "$WORK"/horovod-0.28.1.tar.gz -C "$WORK"
SRC="$WORK/horovod-0.28.1"
sed -i 's/CMAKE_CXX_STANDARD 14/CMAKE_CXX_STANDARD 17/' "$SRC/CMakeLists.txt" "$SRC/horovod/torch/CMakeLists.txt"
grep -q 'CMAKE_CXX_STANDARD 17' "$SRC/horovod/torch/CMakeLists.txt"
export PATH="$PWD/$VENV/bin:$PATH"
export CMAKE_POLICY_VERSION_MINIMUM=3.5 MAKEFLAGS="-j$(nproc)"
export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1
export HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_CPU_OPERATIONS=gloo
cd "$SRC" && "$PY" -m pip install -q --no-build-isolation --no-deps .
cd / && "$PY" -c "import horovod, horovod.torch as hvd; assert hvd.gloo_built(); print('horovod', horovod.__version__, 'built with Gloo')"
