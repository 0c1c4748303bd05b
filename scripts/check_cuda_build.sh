#!/usr/bin/env bash
# Compile the extension with CUDA on a machine without a GPU (not run by CI).
#
# Installs a CUDA toolkit from the package index into a virtual environment and builds
# a wheel with -DGGML_CUDA=on for one GPU architecture. The CUDA 12 wheels
# (nvidia-cuda-nvcc-cu12 and friends) carry ptxas but no nvcc driver, so this uses the
# CUDA 13 wheels, which install a toolkit layout (bin/nvcc, include/, lib/, nvvm/)
# under nvidia/cu13 that FindCUDAToolkit accepts as it is.
#
#   bash scripts/check_cuda_build.sh            # sm_90 (H100); CUDA_ARCH=86 for another
#
# Without a GPU driver there is no libcuda.so to link, so the check builds with
# GGML_CUDA_NO_VMM=ON (ggml then uses no driver API; a user's build on a machine with
# the driver links it and keeps VMM). Everything else is the build a CUDA user gets.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ARCH="${CUDA_ARCH:-90}"
WORK="${WORK:-${TMPDIR:-/tmp}/selfextend-cuda-check}"
PY="${PYTHON:-python3}"

mkdir -p "$WORK"
if [ ! -x "$WORK/venv/bin/python" ]; then
    "$PY" -m venv "$WORK/venv"
fi
PIP="$WORK/venv/bin/python -m pip --disable-pip-version-check"
$PIP install -q "nvidia-cuda-nvcc>=13,<14" "nvidia-cuda-crt>=13,<14" "nvidia-nvvm>=13,<14" \
    "nvidia-cuda-runtime>=13,<14" "nvidia-cublas>=13,<14" "nvidia-cuda-cccl>=13,<14" \
    "scikit-build-core>=0.10" "pybind11>=2.12" ninja "cmake>=3.21" pip

TK="$("$WORK/venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
# the wheels ship only versioned shared libraries; the linker wants the plain names
for lib in "$TK"/lib/lib*.so.*; do
    base="${lib%%.so.*}.so"
    [ -e "$base" ] || ln -s "$(basename "$lib")" "$base"
done
[ -e "$TK/lib64" ] || ln -s lib "$TK/lib64"
"$TK/bin/nvcc" --version | tail -2

export PATH="$TK/bin:$PATH" CUDA_PATH="$TK" CUDAToolkit_ROOT="$TK"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
export CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$ARCH -DGGML_CUDA_NO_VMM=ON \
-DCMAKE_CUDA_COMPILER=$TK/bin/nvcc -DCUDAToolkit_ROOT=$TK"
start=$(date +%s)
$PIP wheel --no-build-isolation --no-deps -w "$WORK/dist" -Cbuild-dir="$WORK/build" "$ROOT"
echo "CUDA build (sm_$ARCH) finished in $(( $(date +%s) - start )) s: $(ls "$WORK"/dist/*.whl)"
