#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU and the CUDA toolkit (nvcc), in about
# ten minutes:
#   1. a CUDA build for this GPU's architecture only;
#   2. the device suite (scripts/device_suite.sh, as `make test-vulkan` runs it on a
#      Vulkan build): Algorithm 1 against the engine, the per-layer check over the
#      architecture table, every cache operation, the scheduler's slots, prompt caches,
#      op placement, layers split between CPU and GPU, states moved between them, and a
#      passkey beyond the default model's window, with every layer offloaded;
#   3. where each op of a Self-Extend graph runs on the default model
#      (`selfextend-gguf eval placement`): with every layer offloaded, no Self-Extend or
#      attention op may fall back to the CPU;
#   4. a 16k passkey with Self-Extend (default model);
#   5. the speed ratios against vanilla at 8k and 16k, flash attention off and on.
# Everything it prints is also kept under $OUT (default gpu-check/). A failed build
# stops it; other steps that fail are listed at the end (exit status 1). Steps 3-5 need
# the default model (fetched on first use, or in $SELFEXTEND_GGUF_CACHE already).
#
#   bash scripts/check_gpu.sh                 # CUDA_ARCH=89 bash scripts/check_gpu.sh to choose
#
# By default the build goes into make install's .venv (which fetches the build tools from
# the package index). On a machine without the package index, name a Python whose
# environment has them (scikit-build-core, pybind11, cmake, ninja, numpy, pytest, gguf)
# and give the llama.cpp source in vendor/llama.cpp (cmake/llama_source.py --vendor):
#   PY=python3 bash scripts/check_gpu.sh      # builds into that environment, no downloads
# SKIP_BUILD=1 reuses the last build; STEPS="3 4" runs only those steps (after the build);
# STEP_TIMEOUT=S stops any one step after S seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/check_steps.sh
steps_init gpu-check "1 2 3 4 5"

command -v nvidia-smi >/dev/null || { echo "check_gpu.sh: no nvidia-smi: not a machine with an NVIDIA GPU" >&2; exit 2; }
command -v nvcc >/dev/null || { echo "check_gpu.sh: no nvcc: install the CUDA toolkit (or use scripts/check_cuda_build.sh to compile only)" >&2; exit 2; }
ARCH=${CUDA_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')}
nvidia-smi | tee "$OUT/nvidia-smi.txt"

CUDA_CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$ARCH"
echo; echo "== 1. CUDA build for sm_$ARCH"
if [ -n "${SKIP_BUILD:-}" ]; then
    echo "SKIP_BUILD: using the last build"
elif [ -n "${PY:-}" ]; then
    CMAKE_ARGS="$CUDA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$PY" -m pip install -q \
        --disable-pip-version-check --no-build-isolation --no-deps --no-index -e . 2>&1 | tail -20 | tee "$OUT/build.txt"
else
    CMAKE_ARGS="$CUDA_CMAKE_ARGS" make install 2>&1 | tail -20 | tee "$OUT/build.txt"
fi
PY=${PY:-.venv/bin/python}
SEGGUF=("$PY" -m selfextend_gguf)
"${SEGGUF[@]}" info | tee "$OUT/system-info.txt"

if step "2. the device suite, every layer offloaded"; then
    run "device suite" tests.txt bash scripts/device_suite.sh "$PY" -q
fi

if step "3. placement of the Self-Extend ops"; then
    run "placement" placement.txt "${SEGGUF[@]}" eval placement
fi

if step "4. passkey at 16k"; then
    run "passkey" passkey.txt "${SEGGUF[@]}" eval passkey --methods self-extend --lengths 16k \
        --depths 0.1,0.5,0.9 --trials 1 --flash-attn --n-gpu-layers -1 --out "$OUT/passkey"
fi

if step "5. speed at 8k and 16k"; then
    run "speed" speed.txt "${SEGGUF[@]}" eval speed --depths 8k,16k --flash-attn off,on \
        --n-gpu-layers -1 --decode 32 --out "$OUT/speed"
fi
steps_end check_gpu.sh
