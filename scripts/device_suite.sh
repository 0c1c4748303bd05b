#!/usr/bin/env bash
# The device suite: the tests of the GPU path with every layer offloaded to a device
# (SELFEXTEND_TEST_N_GPU_LAYERS=-1), on a build with a GPU backend. `make test-vulkan`
# runs it on the Vulkan build; on a machine without a GPU the device is Mesa's lavapipe,
# a Vulkan implementation that runs on the CPU (slow: it proves results and placement,
# not speed). The same tests run in the CPU suite on the CPU build.
#
#   bash scripts/device_suite.sh [PYTHON]     # PYTHON: the GPU build's (default .venv-vulkan/bin/python)
#   bash scripts/device_suite.sh PYTHON -k key_cache     # more pytest arguments after it
#   DEVICE_SUITE=full bash scripts/device_suite.sh       # every test (default: ci)
#
# DEVICE_SUITE=ci (the default, what `make test` runs) leaves out the tests named in SLOW
# below, too slow on lavapipe for CI's 90 minutes for both builds; DEVICE_SUITE=rest runs
# only those (scripts/check_vulkan.sh does), full runs both.
#
# What runs (tests/): Algorithm 1 against the engine (test_reference_equivalence: one shot,
# uneven chunks, small ubatches, token by token, flash on and off, each flash form a device
# takes), the per-layer check (test_layer_check, and test_architectures over the whole
# architecture table), compute buffers sized once (test_compute_buffers), every cache
# operation (test_key_cache: rewind, reset, states, several sequences, seq_add/seq_div
# and the K-shift, a new G), the scheduler's slots
# (test_batching), prompt caches (test_prompt_cache: RAM and disk, chat), and
# test_device_path: op placement, the cache in device buffers, layers split between the
# CPU and the device, states moved between CPU and device and between builds (the CPU
# build's Python in SELFEXTEND_TEST_OTHER_PYTHON, default .venv/bin/python), and a passkey
# beyond the default model's window; and flash_attn="auto" (test_api) resolving to the device's flash attention.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${1:-.venv-vulkan/bin/python}
shift || true

source scripts/vulkan_device.sh
use_lavapipe_without_gpu "$PY"
DEVICES=$(device_names "$PY")
if [ -z "$DEVICES" ]; then
    echo "device_suite.sh: this build offers no device other than the CPU: build with" \
         "CMAKE_ARGS=-DGGML_VULKAN=ON (make install-vulkan) on a machine with a Vulkan driver" \
         "(Debian/Ubuntu: mesa-vulkan-drivers, scripts/setup_vulkan.sh)" >&2
    exit 1
fi
"$PY" -m selfextend_gguf info | grep -E "^(build|device):"

export SELFEXTEND_TEST_N_GPU_LAYERS=-1
if [ -z "${SELFEXTEND_TEST_OTHER_PYTHON:-}" ] && [ -x .venv/bin/python ]; then
    export SELFEXTEND_TEST_OTHER_PYTHON=.venv/bin/python
fi

# the CPU kernel's own forms ("cpu", "cpu-derived") are the stock-op form on a device: not
# run twice (a -k of the caller's is combined with this one)
SELECT="not (test_flash_path_matches_reference and cpu)"
# left to scripts/check_vulkan.sh: the passkey in 10,000 tokens on the default model (a
# real model beyond its 8,192-token window: on lavapipe it prefills about 25 tokens/s,
# and the test ran past 20 minutes). Everything else takes about 12.5 minutes on 2 cores.
SLOW="passkey"
case "${DEVICE_SUITE:-ci}" in
    ci)   SELECT="not ($SLOW) and $SELECT" ;;
    rest) SELECT="($SLOW) and $SELECT" ;;
    full) ;;
    *)    echo "device_suite.sh: DEVICE_SUITE is ci, rest or full" >&2; exit 2 ;;
esac
ARGS=()
while [ $# -gt 0 ]; do
    if [ "$1" = "-k" ] && [ $# -gt 1 ]; then
        SELECT="($2) and $SELECT"
        shift 2
    else
        ARGS+=("$1")
        shift
    fi
done
exec "$PY" -m pytest -ra -p no:cacheprovider \
    tests/test_reference_equivalence.py tests/test_layer_check.py tests/test_key_cache.py \
    tests/test_architectures.py tests/test_batching.py tests/test_compute_buffers.py tests/test_device_path.py \
    "tests/test_prompt_cache.py::test_a_loaded_prefix_gives_the_same_answer_and_only_the_suffix_is_evaluated" \
    "tests/test_prompt_cache.py::test_chat_with_a_cached_prefix_answers_the_same" \
    "tests/test_api.py::test_flash_attn_defaults_to_auto" \
    -k "$SELECT" "${ARGS[@]}"
