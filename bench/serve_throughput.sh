#!/usr/bin/env bash
# Serving throughput of an earlier version and of this one, one after the other, on this
# machine: bench/serve_throughput.sh [REV] [serve_throughput.py arguments]. REV (default
# 286cd22, before continuous batching) runs under the name selfextend_gguf_before with
# today's extension (its Python side only calls what both have).
set -euo pipefail
cd "$(dirname "$0")/.."
rev=286cd22
if [[ $# -gt 0 && $1 != -* ]]; then
    rev=$1
    shift
fi
before=$(mktemp -d)
git archive "$rev" selfextend_gguf | tar -x -C "$before"
mv "$before/selfextend_gguf" "$before/selfextend_gguf_before"
cp "$(python -c 'import selfextend_gguf._core as c; print(c.__file__)')" "$before/selfextend_gguf_before/"
PYTHONPATH="$before" python bench/serve_throughput.py --label before --package selfextend_gguf_before "$@"
python bench/serve_throughput.py --label after "$@"
rm -rf "$before"
