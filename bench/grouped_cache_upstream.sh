#!/usr/bin/env bash
# Cross-check of the grouped-cache method: run llama.cpp's own completion tool (the
# pinned, unpatched tree, --grp-attn-n/--grp-attn-w) on the same 8k passkey prompt as
# results/passkey-plain.jsonl (depth 0.5, trial 0) and print its answer next to ours.
# If both fail the same way, the failure belongs to the method, not to our
# reimplementation. Needs `make install`; builds llama-completion once (about 4 min).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT="${OUT:-/tmp/selfextend-upstream}"
SRC=$($PY cmake/llama_source.py)
MODEL=$($PY -c "from selfextend_gguf.models.model_path import default_model_path as d; print(d())")
mkdir -p "$OUT"

if [ ! -x "$OUT/build/bin/llama-completion" ]; then
    cmake -S "$SRC" -B "$OUT/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF > "$OUT/cmake.log"
    ninja -C "$OUT/build" llama-completion > "$OUT/build.log"
fi

# the exact prompt text of that cell, and our recorded answers with their settings;
# the upstream flags below repeat those settings (n_ctx 8192 + 128, ga_n 3, ga_w 1023)
$PY - "$OUT" <<'EOF'
import json, sys
from selfextend_gguf.llama import Llama
from selfextend_gguf.eval.passkey_eval import key_for, prompt_tokens
out = sys.argv[1]
llm = Llama(None, n_ctx=64)
_, built = prompt_tokens(llm, 8192, 0.5, key_for(8192, 0.5, 0, 5, 0), chat=False)
open(f"{out}/prompt.txt", "w").write(built.text)
for line in open("bench/results/passkey-plain.jsonl"):
    r = json.loads(line)
    if (r["target_length"], r["depth"], r["trial"]) == (8192, 0.5, 0) and r["method"] in ("grouped-cache", "vanilla"):
        print(f"ours     {r['method']:14} {r['settings']}: {r['generated']!r}")
EOF

run_upstream() {   # label, extra args
    "$OUT/build/bin/llama-completion" -m "$MODEL" -f "$OUT/prompt.txt" -n 13 --temp 0 -c 8320 -b 512 -ub 512 \
        -t "${THREADS:-2}" -no-cnv --no-warmup --no-display-prompt "${@:2}" 2> "$OUT/$1.log" > "$OUT/$1.txt"
    printf 'upstream %-14s %s: %s\n' "$1" "${*:2}" "$($PY -c "import sys; print(repr(open(sys.argv[1]).read().rstrip()))" "$OUT/$1.txt")"
}
run_upstream grouped-cache --grp-attn-n 3 --grp-attn-w 1023
run_upstream vanilla
