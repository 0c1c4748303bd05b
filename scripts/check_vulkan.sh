#!/usr/bin/env bash
# The Vulkan check: what the device suite in `make test` (CI) leaves out, on the Vulkan
# build, with every layer on a Vulkan device (Mesa's lavapipe on a machine without a GPU):
#   1. the Vulkan build (make install-vulkan: the packages, then .venv-vulkan);
#   2. the device suite's tests that CI leaves out (DEVICE_SUITE=rest in
#      scripts/device_suite.sh: its slowest variants, and the 10k passkey on the default
#      model with every layer on the device);
#   3. where each op of a Self-Extend graph runs on the default model
#      (`selfextend-gguf eval placement`): none may fall back to the CPU;
#   4. prefill and decode against vanilla at 8k, flash attention off and on, into
#      bench/results/vulkan-<device>-speed.md. On lavapipe these are the relative cost of
#      the ops on a CPU-run Vulkan device, not GPU speed (the report says so).
# Everything it prints is also kept under $OUT (default vulkan-check/). A failed build
# stops it; other steps that fail are listed at the end (exit status 1). Steps 2-4 need
# the default model (fetched on first use, or in $SELFEXTEND_GGUF_CACHE already).
#
#   bash scripts/check_vulkan.sh              # about 40 minutes on 2 cores with lavapipe
#   STEPS="3 4" bash scripts/check_vulkan.sh  # only those steps (after the build)
# SKIP_BUILD=1 reuses the last build; STEP_TIMEOUT=S stops any one step after S seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/check_steps.sh
steps_init vulkan-check "2 3 4"
PY=.venv-vulkan/bin/python

echo "== 1. the Vulkan build"
if [ -n "${SKIP_BUILD:-}" ]; then
    echo "SKIP_BUILD: using the last build"
else
    make install-vulkan 2>&1 | tail -20 | tee "$OUT/build.txt"
fi
source scripts/vulkan_device.sh
use_lavapipe_without_gpu "$PY"
"$PY" -m selfextend_gguf info | tee "$OUT/system-info.txt"
DEVICE=$("$PY" -c 'from selfextend_gguf import system_info
print(next(d["description"] for d in system_info()["devices"] if d["type"] != "cpu").split(" (")[0])')

if step "2. the rest of the device suite, and the passkey beyond the window"; then
    run "device suite" tests.txt env DEVICE_SUITE=rest bash scripts/device_suite.sh "$PY" -q
fi

if step "3. placement of the Self-Extend ops"; then
    run "placement" placement.txt "$PY" -m selfextend_gguf eval placement
fi

if step "4. speed at 8k"; then
    run "speed" speed.txt "$PY" -m selfextend_gguf eval speed --depths 8k --flash-attn off,on \
        --n-gpu-layers -1 --decode 32 --out "$OUT/speed"
    if [ -f "$OUT/speed/speed.md" ]; then
        name=$(echo "$DEVICE" | tr 'A-Z' 'a-z' | tr -cs 'a-z0-9' '-' | sed 's/-$//')
        { echo "# Vulkan on $DEVICE: Self-Extend against vanilla at 8k"
          echo
          case "$DEVICE" in
              *llvmpipe*) echo "lavapipe: relative op cost, not GPU speed (a Vulkan device that runs on the CPU)."; echo ;;
          esac
          echo '`bash scripts/check_vulkan.sh` (step 4), '"$(date -u +%Y-%m-%d)"
          echo
          cat "$OUT/speed/speed.md"; } > "bench/results/vulkan-$name-speed.md"
        echo "written: bench/results/vulkan-$name-speed.md"
    fi
fi
steps_end check_vulkan.sh
