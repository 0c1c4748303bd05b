"""`selfextend-gguf tune --model M --length N`: score (G, W) candidates, print a table and
the recommended setting, and remember it for the model file (`--forget` clears)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..eval.cli import tokens_count


def _pairs(text: str):
    pairs = []
    for item in text.split(","):
        try:
            g, w = item.split(":")
            pairs.append((int(g), int(w)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"candidates are G:W pairs such as 6:1024,4:512, got {item!r}") from None
    return pairs


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="choose Self-Extend's G and W for your model and a target length")
    p.add_argument("--model", "-m", default=None, help="GGUF model (default: the default model)")
    p.add_argument("--length", "-c", type=tokens_count, default=None,
                   help="the context length to tune for, in tokens (16384 or 16k)")
    p.add_argument("--threads", "-t", type=int, default=None)
    p.add_argument("--needles", type=int, default=6, help="facts hidden in the document, one question each")
    p.add_argument("--seed", type=int, default=0, help="which answers the needles get")
    p.add_argument("--text", type=Path, default=None,
                   help="a long UTF-8 text to hide the needles in (default: a text this machine has)")
    p.add_argument("--candidates", type=_pairs, default=None, help="G:W pairs to score instead of the default set")
    p.add_argument("--flash-attn", action=argparse.BooleanOptionalAction, default=True,
                   help="flash attention (default on: faster prefill; the scores do not depend on it)")
    p.add_argument("--n-gpu-layers", "-ngl", type=int, default=0,
                   help="layers to offload to a GPU while scoring (-1: all; a GPU build makes a long tune minutes)")
    p.add_argument("--no-remember", dest="remember", action="store_false",
                   help="print the table without remembering the choice")
    p.add_argument("--forget", action="store_true", help="clear the settings remembered for this model, then exit")
    p.add_argument("--out", type=Path, default=None, help="also write the table as markdown to this file")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..settings import tuned as tuned_settings
    from ..models.package_models import resolve_model_path
    from .tune import tune

    if args.forget:
        path = resolve_model_path(args.model)
        n = tuned_settings.forget(path)
        print(f"forgot {n} tuned setting(s) of {path}")
        return 0
    if args.length is None:
        raise ValueError("give the context length to tune for: --length 16k")
    text = args.text.read_text(encoding="utf-8") if args.text else None
    result = tune(args.model, args.length, candidates=args.candidates, n_needles=args.needles,
                  text=text, text_name=args.text.name if args.text else None, seed=args.seed,
                  n_threads=args.threads, flash_attn=args.flash_attn, n_gpu_layers=args.n_gpu_layers,
                  remember=args.remember)
    model_arg = shlex.quote(args.model) if args.model else "MODEL"
    command = "selfextend-gguf " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = "\n".join(_report(result, model_arg, command))
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n")
    return 0


def _report(result, model_arg: str, command: str):
    best = result.best.candidate
    yield f"# tune: {result.model_path}"
    yield ""
    yield f"Command: `{command}`"
    yield ""
    yield (f"Target length {result.length} tokens (trained context {result.n_ctx_train}); text "
           f"`{result.text_name}`, {result.n_needles} needles; ranked by needles found, then by the mean "
           f"log-probability of the right answers; perplexity over the document's last, needle-free tokens.")
    yield ""
    yield result.table()
    yield ""
    for note in result.notes:
        yield f"Note: {note}."
    yield f"Recommended: group_size={best.group_size}, neighbor_window={best.neighbor_window} ({best.why})."
    yield f"Use it: `{result.command(model_arg)}`"
    other = result.best_text_prediction
    if other is not None:
        yield (f"If predicting text matters more than finding facts: group_size={other.candidate.group_size}, "
               f"neighbor_window={other.candidate.neighbor_window} found as many needles with the lowest "
               f"perplexity ({other.score.perplexity:.3f} against {result.best.score.perplexity:.3f}).")
    if result.remembered:
        yield (f"Remembered for this model file: `Llama(model, n_ctx=n)` with {result.n_ctx_train} < n <= "
               f"{result.length} uses it (`selfextend-gguf tune --forget` clears).")
    yield f"Took {result.seconds:.0f} s."
