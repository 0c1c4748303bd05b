#!/usr/bin/env bash
# Issue 14: `tune` on the default model at 16k and 24k, then the tuned 16k setting
# against eq. 5's on the digits task (the long keys where YaRN still wins) and on
# sliding-window perplexity, all in one run. Results go to bench/results/tune/; run it
# alone on the machine. Needs `make install`.
set -euo pipefail
cd "$(dirname "$0")/.."
SE=".venv/bin/selfextend-gguf"
T="--threads ${THREADS:-2}"
OUT=bench/results/tune

[ -s $OUT/tune-16k.md ] || $SE tune --length 16k $T --out $OUT/tune-16k.md
best=$(sed -n 's/^Recommended: group_size=\([0-9]*\), neighbor_window=\([0-9]*\).*/\1 \2/p' $OUT/tune-16k.md)
read -r G W <<< "$best"
echo "tuned at 16k: G=$G W=$W"

# eq. 5 (G=6, W=1024 at 16k) and the tuned setting, same keys, same prompts
DIGITS="--length 16k --digits 48,64,100 --methods self-extend"
$SE eval digits $DIGITS $T --out $OUT/digits-eq5
$SE eval digits $DIGITS $T --group-size "$G" --neighbor-window "$W" --out $OUT/digits-tuned
$SE eval perplexity --lengths 16k --windows 1 --methods self-extend $T --out $OUT/perplexity-eq5
$SE eval perplexity --lengths 16k --windows 1 --methods self-extend $T --group-size "$G" --neighbor-window "$W" \
    --out $OUT/perplexity-tuned

[ -s $OUT/tune-24k.md ] || $SE tune --length 24k $T --out $OUT/tune-24k.md
