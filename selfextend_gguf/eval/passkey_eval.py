"""Passkey retrieval over a grid of lengths x depths x trials for several methods, and
the paper's varying-length variant (digits, §4.7). Greedy decoding."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from . import passkey
from ..llama import Llama
from ..models.package_models import resolve_model_path
from . import heatmap
from .methods import Runner, build_runner, n_ctx_train_of, planned_settings, variant_of
from .results import (Automatic, ResultLog, accuracy_table, command_line, file_slug, leading_digits_table,
                      method_label, settings_by_length, with_variants)

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prompt_tokens(llm: Llama, length: int, depth: float, key: str, chat: bool) -> tuple:
    """The passkey prompt as tokens, plain (the paper's) or wrapped in the chat template."""
    count = lambda text: len(llm.tokenize(text, add_bos=False))   # noqa: E731
    if not chat:
        built = passkey.build(length, depth, count, key=key)
        return llm.tokenize(built.text, add_bos=True), built
    # chat variant: the same text as the user's message, the answer primed after the template
    overhead = len(llm.tokenize(llm.format_chat([{"role": "user", "content": ""}]), add_bos=True, special=True))
    built = passkey.build(length - overhead - 8, depth, count, key=key)
    question = passkey.QUESTION.strip()
    body = built.text[:-len(passkey.QUESTION)] + " " + question.replace(" The pass key is", "")
    text = llm.format_chat([{"role": "user", "content": body}]) + "The pass key is"
    return llm.tokenize(text, add_bos=True, special=True), built


def key_for(length: int, depth: float, trial: int, n_digits: int, seed: int) -> str:
    rng = random.Random(f"{seed}/{length}/{depth}/{trial}/{n_digits}")
    return passkey.random_key(rng, n_digits)


def run_cell(runner: Runner, length: int, depth: float, trial: int, n_digits: int, seed: int,
             chat: bool) -> dict:
    key = key_for(length, depth, trial, n_digits, seed)
    tokens, _ = prompt_tokens(runner.llm, length, depth, key, chat)
    tokens = runner.prepare(tokens)
    started = time.monotonic()
    generated = runner.answer(tokens, n_digits + 8)
    numbers = passkey.digits_in(generated)
    return {"expected": key, "got": numbers[0] if numbers else "", "found": passkey.found(key, generated),
            "generated": generated[:200], "tokens": len(tokens), "seconds": round(time.monotonic() - started, 1)}


def run_grid(model: Optional[str], methods: Sequence[str], lengths: Sequence[int], depths: Sequence[float],
             trials: int, out_dir: Path, task: str = "passkey", digits: Sequence[int] = (5,),
             chat: bool = False, seed: int = 0, threads: Optional[int] = None, progress: Progress = _stderr,
             group_size: Optional[int] = None, neighbor_window: Optional[int] = None,
             flash_attn: bool = False, n_gpu_layers: int = 0) -> ResultLog:
    style = "chat" if chat else "plain"
    log = ResultLog(Path(out_dir) / f"{task}-{style}.jsonl",
                    ("method", "settings", "target_length", "depth", "trial", "n_digits"))
    model_file = resolve_model_path(model)   # once: the default model's path is verified by sha256
    n_ctx_train = n_ctx_train_of(model_file)
    total = len(methods) * len(lengths) * len(depths) * trials * len(digits)
    done = 0
    for length in lengths:
        for method in methods:
            runner = None
            settings = planned_settings(method, length, n_ctx_train, group_size, neighbor_window, model_file)
            variant = variant_of(method, group_size, neighbor_window)
            for n_digits in digits:
                # deepest key first: the next prompt shares the filler before its own key
                # with the one in the cache, so prefill reuses it (grouped-cache always
                # starts from an empty cache). Reuse moves batch boundaries, which changes
                # logits only by float rounding.
                for depth in sorted(depths, reverse=True):
                    for trial in range(trials):
                        done += 1
                        cell = dict(method=method, settings=settings, target_length=length, depth=depth,
                                    trial=trial, n_digits=n_digits)
                        if log.has(**cell):
                            continue
                        if runner is None:
                            runner = build_runner(method, model_file, length, n_ctx_train, group_size, neighbor_window,
                                                  threads=threads, flash_attn=flash_attn, n_gpu_layers=n_gpu_layers)
                        result = run_cell(runner, length, depth, trial, n_digits, seed, chat)
                        record = {**cell, **({"variant": variant} if variant else {}), "style": style,
                                  "flash_attn": flash_attn, **result}
                        log.append(record)
                        progress(f"[{done}/{total}] {task} {method_label(record)} {length} depth={depth} trial={trial} "
                                 f"digits={n_digits}: {'found' if result['found'] else 'missed'} "
                                 f"({result['seconds']} s, {result['generated'][:40]!r})")
            del runner
    return log


def write_report(log: ResultLog, out_dir: Path, task: str, chat: bool, command: str,
                 automatic: Optional[Automatic] = None) -> Path:
    """automatic (methods.automatic_choice): name rows by the settings they ran, the
    bare method being the automatic choice of now."""
    style = "chat" if chat else "plain"
    records = with_variants(log.records, automatic)
    lines = [f"# {task} ({style} prompt)", "", command_line(command), ""]
    if task == "digits":
        lines += [accuracy_table(records, "method", "n_digits", "method \\ key digits"), "",
                  "Leading digits of the key the answer got right (mean over trials; "
                  "equal to the key length when found):", "",
                  leading_digits_table(records, "method \\ key digits"), ""]
    else:
        lines += [accuracy_table(records, "method", "target_length", "method \\ length"), ""]
        methods = list(dict.fromkeys(r["method"] for r in records))
        overview = heatmap.draw_all(records, methods, Path(out_dir) / f"{task}-{style}-all.png")
        lines += [f"![all methods]({overview.name})", ""]
        for method in dict.fromkeys(r["method"] for r in records):
            sub = [r for r in records if r["method"] == method]
            lines += [f"## {method}", ""]
            settings = settings_by_length(sub)
            if settings:
                lines += [f"Settings by length: {settings}", ""]
            lines += [accuracy_table(sub, "depth", "target_length", "depth \\ length"), ""]
            png = heatmap.draw(records, method, Path(out_dir) / f"{task}-{style}-{file_slug(method)}.png")
            lines += [f"![{method}]({png.name})", ""]
    path = Path(out_dir) / f"{task}-{style}.md"
    path.write_text("\n".join(lines))
    return path
