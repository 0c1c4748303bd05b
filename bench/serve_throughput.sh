#!/usr/bin/env bash
# Serving throughput before continuous batching (commit 286cd22: one context per slot)
# and now (slots as sequences of one context), one after the other, on this machine.
# The old package runs under the name selfextend_gguf_before with today's extension
# (its Python side only calls what both have).
set -euo pipefail
cd "$(dirname "$0")/.."
before=$(mktemp -d)
git archive 286cd22 selfextend_gguf | tar -x -C "$before"
mv "$before/selfextend_gguf" "$before/selfextend_gguf_before"
cp "$(python -c 'import selfextend_gguf._core as c; print(c.__file__)')" "$before/selfextend_gguf_before/"
PYTHONPATH="$before" python bench/serve_throughput.py --label before --package selfextend_gguf_before "$@"
python bench/serve_throughput.py --label after "$@"
rm -rf "$before"
