"""`selfextend-gguf eval passkey | digits | perplexity | speed | placement`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .methods import METHODS, automatic_choice


def tokens_count(text: str) -> int:
    """A count of tokens as written on the command line: 16384 or 16k (x 1024)."""
    try:
        return int(float(text[:-1]) * 1024) if text.lower().endswith("k") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a length in tokens such as 16384 or 16k, got {text!r}") from None


def _ints(text: str):
    return [tokens_count(x) for x in text.split(",") if x]


def _floats(text: str):
    return [float(x) for x in text.split(",") if x]


def _methods(text: str):
    names = [m for m in text.split(",") if m]
    for m in names:
        if m not in METHODS:
            raise argparse.ArgumentTypeError(f"unknown method {m!r} (choose from {', '.join(METHODS)})")
    return names


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="compare Self-Extend with other methods (passkey, digits, perplexity, speed)")
    tasks = p.add_subparsers(dest="task", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", "-m", default=None, help="GGUF model (default: the default model)")
    common.add_argument("--methods", type=_methods, default=list(METHODS),
                        help=f"comma-separated, from {','.join(METHODS)}")
    common.add_argument("--out", type=Path, default=Path("bench/results"), help="results directory")
    common.add_argument("--threads", "-t", type=int, default=None)
    common.add_argument("--group-size", type=int, default=None, help="G for self-extend/grouped-cache (default: eq. 5)")
    common.add_argument("--neighbor-window", type=int, default=None)
    common.add_argument("--n-gpu-layers", "-ngl", type=int, default=0,
                        help="layers to offload to the GPU (-1: all), as llama.cpp's -ngl")
    # speed measures both settings; the accuracy tasks run one (off by default: on this
    # CPU flash is faster for long prefills, slower for decoding)
    flash = argparse.ArgumentParser(add_help=False)
    flash.add_argument("--flash-attn", action="store_true",
                       help="use flash attention (faster prefill of long prompts on CPU; same results up to rounding)")

    t = tasks.add_parser("passkey", parents=[common, flash], help="lengths x depths x trials grid")
    t.add_argument("--lengths", type=_ints, default=_ints("8k,16k,24k"))
    t.add_argument("--depths", type=_floats, default=_floats("0.1,0.3,0.5,0.7,0.9"))
    t.add_argument("--trials", type=int, default=2)
    t.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    t.add_argument("--seed", type=int, default=0)

    t = tasks.add_parser("digits", parents=[common, flash], help="varying key lengths at a fixed prompt length (§4.7)")
    t.add_argument("--length", type=_ints, default=_ints("16k"))
    t.add_argument("--digits", type=_ints, default=_ints("5,8,16,36,48,64,100"))
    t.add_argument("--depths", type=_floats, default=_floats("0.5"))
    t.add_argument("--trials", type=int, default=1)
    t.add_argument("--chat", action="store_true")
    t.add_argument("--seed", type=int, default=0)

    t = tasks.add_parser("perplexity", parents=[common, flash], help="sliding-window perplexity at several lengths")
    t.add_argument("--lengths", type=_ints, default=_ints("4k,8k,16k"))
    t.add_argument("--text", type=Path, default=None,
                   help="a UTF-8 text file (default: the King James Bible if `apt install bible-kjv` was done, "
                        "else Debian's license texts)")
    t.add_argument("--windows", type=int, default=2)

    t = tasks.add_parser("speed", parents=[common], help="prefill/decode tok/s and memory at several depths")
    t.add_argument("--depths", type=_ints, default=_ints("4k,8k,16k"))
    t.add_argument("--decode", type=int, default=16)
    t.add_argument("--reps", type=int, default=1)
    t.add_argument("--decode-reps", type=int, default=1,
                   help="time the decode this many times after each prefill (rewound between), keep the best")
    t.add_argument("--flash-attn", type=_flash_settings, default=[False, True],
                   help="flash attention settings to measure: off, on or off,on (default)")
    t.add_argument("--ubatch-depth", type=_ints, default=[],
                   help="also report compute buffers against n_ubatch at this n_ctx (e.g. 32k)")
    t.add_argument("--ubatches", type=_ints, default=_ints("128,256,512,1024"))

    t = tasks.add_parser("placement", help="where a Self-Extend graph's ops run with every layer offloaded "
                                           "(exit status 1 when one falls back to the CPU)")
    t.add_argument("--model", "-m", default=None, help="GGUF model (default: the default model)")
    t.add_argument("--n-gpu-layers", "-ngl", type=int, default=-1)
    t.add_argument("--flash-attn", type=_flash_settings, default=[False, True],
                   help="flash attention settings to check: off, on or off,on (default)")
    p.set_defaults(func=run)


def _flash_settings(text: str):
    names = {"off": False, "on": True}
    settings = [names.get(x) for x in text.split(",") if x]
    if None in settings or not settings:
        raise argparse.ArgumentTypeError("flash attention settings: off, on, or off,on")
    return settings


def run(args) -> int:
    if args.task == "placement":
        return run_placement(args)
    command = "selfextend-gguf " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = args.out
    if args.task in ("passkey", "digits"):
        from . import passkey_eval
        if args.task == "passkey":
            log = passkey_eval.run_grid(args.model, args.methods, args.lengths, args.depths, args.trials, out,
                                        chat=args.chat, seed=args.seed, threads=args.threads,
                                        group_size=args.group_size, neighbor_window=args.neighbor_window,
                                        flash_attn=args.flash_attn, n_gpu_layers=args.n_gpu_layers)
        else:
            log = passkey_eval.run_grid(args.model, args.methods, args.length, args.depths, args.trials, out,
                                        task="digits", digits=args.digits, chat=args.chat, seed=args.seed,
                                        threads=args.threads, group_size=args.group_size,
                                        neighbor_window=args.neighbor_window, flash_attn=args.flash_attn,
                                        n_gpu_layers=args.n_gpu_layers)
        report = passkey_eval.write_report(log, out, args.task, args.chat, command,
                                           automatic_choice(args.model))
    elif args.task == "perplexity":
        from . import perplexity
        text = args.text.read_text(encoding="utf-8") if args.text else None
        log = perplexity.run(args.model, args.methods, args.lengths, out, text=text, windows=args.windows,
                             threads=args.threads, text_name=args.text.name if args.text else None,
                             group_size=args.group_size, neighbor_window=args.neighbor_window,
                             flash_attn=args.flash_attn, n_gpu_layers=args.n_gpu_layers)
        report = perplexity.write_report(log, out, command, automatic_choice(args.model))
    else:
        from . import speed
        methods = [m for m in args.methods if m in ("vanilla", "self-extend")] or ["vanilla", "self-extend"]
        log = speed.run(args.model, methods, args.depths, out, n_decode=args.decode, threads=args.threads,
                        reps=args.reps, flash=args.flash_attn, n_gpu_layers=args.n_gpu_layers,
                        decode_reps=args.decode_reps)
        ubatch_log = None
        for depth in args.ubatch_depth:
            ubatch_log = speed.compute_buffers_vs_ubatch(args.model, methods, depth, args.ubatches, out,
                                                         flash=args.flash_attn, n_gpu_layers=args.n_gpu_layers)
        earlier = ubatch_log is None
        if earlier:   # keep the memory table a run with --ubatch-depth wrote before
            ubatch_log = speed.earlier_ubatch_log(out)
        report = speed.write_report(log, out, command, ubatch_log, ubatch_from_earlier_run=earlier)
    print(report.read_text())
    return 0


def run_placement(args) -> int:
    from ..models.package_models import resolve_model_path
    from . import placement

    model = resolve_model_path(args.model)
    ok = True
    for flash in args.flash_attn:
        result = placement.check(model, flash, args.n_gpu_layers)
        print(placement.format_check(result))
        ok = ok and (result["ok"] or not result["gpu"])
    return 0 if ok else 1
