#!/usr/bin/env bash
# Memory safety check (not run by CI): build the extension with AddressSanitizer and
# UBSan into a throwaway venv and build dir, then run the tiny-model tests under it.
#
#   bash scripts/check_asan.sh                  # the default test selection below
#   bash scripts/check_asan.sh tests/test_api.py      (paths relative to the checkout)
#
# Python itself is not instrumented, so the sanitizer runtimes are preloaded; leak
# detection is off (the interpreter keeps memory until exit by design). Any ASan
# report aborts the test process; UBSan reports ("runtime error:") are collected and
# make the script fail.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${WORK:-${TMPDIR:-/tmp}/selfextend-asan-check}"
PY="${PYTHON:-python3}"
TESTS=("$@")
if [ ${#TESTS[@]} -eq 0 ]; then
    TESTS=(tests/test_reference_equivalence.py tests/test_key_cache.py tests/test_api.py
           tests/test_bad_input.py tests/test_bad_vocabulary.py tests/test_memory.py tests/test_eval.py)
fi

mkdir -p "$WORK"
if [ ! -x "$WORK/venv/bin/python" ]; then
    "$PY" -m venv "$WORK/venv"
fi
VPY="$WORK/venv/bin/python"
$VPY -m pip install -q --disable-pip-version-check "scikit-build-core>=0.10" "pybind11>=2.12" ninja "cmake>=3.21" pip

SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize=vptr"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
export CMAKE_ARGS="-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS='$SAN' -DCMAKE_CXX_FLAGS='$SAN' \
-DCMAKE_SHARED_LINKER_FLAGS='-fsanitize=address,undefined' -DCMAKE_MODULE_LINKER_FLAGS='-fsanitize=address,undefined'"
$VPY -m pip install -q --disable-pip-version-check --no-build-isolation -Cbuild-dir="$WORK/build" \
    -Ccmake.build-type=RelWithDebInfo "$ROOT[test]"

LOG="$WORK/pytest.log"
# from outside the checkout, so that `python -m selfextend_gguf` in the CLI tests
# imports the sanitized install and not the source tree
cd "$WORK"
TESTS=("${TESTS[@]/#/$ROOT/}")
set +e
LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:print_summary=1" \
UBSAN_OPTIONS="print_stacktrace=1" \
    "$WORK/venv/bin/pytest" -p no:cacheprovider -q "${TESTS[@]}" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
reports=$(grep -c -E "runtime error:|ERROR: AddressSanitizer" "$LOG" || true)
echo "check_asan: pytest exit $rc, sanitizer reports: $reports (log: $LOG)"
[ "$rc" -eq 0 ] && [ "$reports" -eq 0 ]
