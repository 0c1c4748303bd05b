#!/usr/bin/env bash
# The first full comparison (issue 3), in the order it is run. Every command appends
# to bench/results/*.jsonl cell by cell and skips cells already there, so the script
# can be stopped and started again; run it alone on the machine (two 2-thread jobs on
# 2 cores slow each other down badly). Needs `make install`, and `apt install bible-kjv`
# for the perplexity text (the King James Bible).
set -euo pipefail
cd "$(dirname "$0")/.."
SE=".venv/bin/selfextend-gguf"
T="--threads ${THREADS:-2}"

# (first run with --windows 1; a later session added the second window)
$SE eval perplexity --lengths 4k,8k,16k --windows 2 $T
$SE eval passkey --lengths 8k,16k,24k --depths 0.1,0.5,0.9 --trials 1 $T
# speed does not resume: it measures again only when there is no record yet
[ -s bench/results/speed.jsonl ] || $SE eval speed --depths 4k,8k,16k --decode 16 $T
# the full grid, 5 depths x 2 trials, one length at a time so that each length is
# complete before the next starts (each fills only the cells still missing)
FULL="--depths 0.1,0.3,0.5,0.7,0.9 --trials 2"
$SE eval passkey --lengths 8k $FULL $T
$SE eval passkey --lengths 16k $FULL $T
$SE eval digits --length 16k --methods self-extend,truncate,yarn,vanilla,linear,grouped-cache $T
$SE eval passkey --lengths 24k $FULL $T
# the chat-template variant of the prompt (--chat), at 2x the window and inside it
$SE eval passkey --chat --lengths 16k --depths 0.1,0.5,0.9 --trials 1 $T
# the chat prompt inside the window, to tell a weaker prompt from a failure to extend
$SE eval passkey --chat --lengths 8k --depths 0.1,0.5,0.9 --trials 1 $T
