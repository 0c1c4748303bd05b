#!/usr/bin/env bash
# Issue 25: Self-Extend at 4x the trained window (default model, L = 8192, so 32k) on
# the same prompts for YaRN, eq. 5's choice, `tune`'s recommendation and two rules, then
# the rules again at 2x and 3x. Every result goes to one directory ($OUT): the eval
# commands keep cells per setting (an explicit G/W is its own row), and a rerun resumes.
#
#   bench/grid_4x.sh                       # everything, on this machine's CPU
#   NGL=-1 bench/grid_4x.sh                # on a GPU build: every layer offloaded
#   STEPS="passkey" bench/grid_4x.sh       # some steps: passkey tune digits perplexity rules
#
# The rules, for n_ctx = N (the length + 128 tokens of answer room) and W = 1024:
#   f = 0.75: the smallest G with W + (N - W) / G < 0.75 L   (16k: 4, 24k: 5, 32k: 7)
#   eq. 4:    the smallest G that reaches N at all           (16k: 3, 24k: 4, 32k: 5)
# eq. 5 is the same with L / 2                             (16k: 6, 24k: 8, 32k: 11).
# `--methods self-extend` is the automatic choice: eq. 5, but at 32k the default model's
# shipped measured setting G=22, W=1024 (selfextend_gguf/measured_settings.py), so eq. 5's
# G=11 is run as an explicit setting there.
#
# Cost on 2 CPU cores (flash attention, CPU kernel): a 32k passkey setting (10 cells,
# deepest key first so that prompts share their prefix) about an hour; tune at 32k 52
# minutes (7 candidates); perplexity at 32k 7 minutes a setting (YaRN 10); on a GPU
# minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
SE="${SE:-.venv/bin/selfextend-gguf}"
OUT="${OUT:-bench/results/grid-4x}"
STEPS="${STEPS:-passkey tune digits perplexity rules}"
RUN="--threads ${THREADS:-2} --n-gpu-layers ${NGL:-0}"
PASSKEY="$SE eval passkey --depths 0.1,0.3,0.5,0.7,0.9 --trials 2 --flash-attn $RUN --out $OUT"
DIGITS="$SE eval digits --length 32k --digits 16,36,48 --flash-attn $RUN --out $OUT"
PERPLEXITY="$SE eval perplexity --lengths 32k --windows 1 --flash-attn $RUN --out $OUT"
RULES_32K="11 5 7 6"  # eq. 5, eq. 4, f = 0.75, and G=6 (shipped before tune at 32k ran)

step() { [[ " $STEPS " == *" $1 "* ]]; }

tuned() {   # the G and W tune recommended at 32k, from its report
    sed -n 's/^Recommended: group_size=\([0-9]*\), neighbor_window=\([0-9]*\).*/\1 \2/p' "$OUT/tune-32k.md"
}

if step passkey; then
    $PASSKEY --lengths 32k --methods self-extend,yarn
    for G in $RULES_32K; do
        $PASSKEY --lengths 32k --methods self-extend --group-size "$G" --neighbor-window 1024
    done
fi

if step tune; then
    [ -s "$OUT/tune-32k.md" ] || $SE tune --length 32k --no-remember $RUN --out "$OUT/tune-32k.md"
    read -r G W <<< "$(tuned)"
    $PASSKEY --lengths 32k --methods self-extend --group-size "$G" --neighbor-window "$W"
fi

if step digits; then
    $DIGITS --methods self-extend,yarn
    for G in $RULES_32K; do
        $DIGITS --methods self-extend --group-size "$G" --neighbor-window 1024
    done
fi

if step perplexity; then
    $PERPLEXITY --methods self-extend,yarn
    for G in $RULES_32K; do
        $PERPLEXITY --methods self-extend --group-size "$G" --neighbor-window 1024
    done
    if [ -s "$OUT/tune-32k.md" ]; then
        read -r G W <<< "$(tuned)"
        $PERPLEXITY --methods self-extend --group-size "$G" --neighbor-window "$W"
    fi
fi

if step rules; then   # a rule that wins at 4x must not lose at 2x and 3x
    for rule in "16k 4" "24k 5" "16k 3" "24k 4"; do
        read -r N G <<< "$rule"
        $PASSKEY --lengths "$N" --methods self-extend --group-size "$G" --neighbor-window 1024
    done
fi
