"""Command line: `selfextend-gguf complete | passkey | chat | serve | eval | tune | info | demo`
(also `python -m selfextend_gguf`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..eval import passkey
from ..llama import LLAMA_DEFAULT_SEED, Llama
from ..eval.progress import ProgressBar


def _common_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("model and context")
    g.add_argument("--model", "-m", help="GGUF model path (default: SmolLM2-135M-Instruct Q4_1, fetched once)")
    g.add_argument("--n-ctx", "-c", type=int, default=None,
                   help="context size in tokens (default: 4096 for complete, the prompt length for passkey)")
    g.add_argument("--group-size", "--grp-attn-n", type=int, default=None,
                   help="Self-Extend group size G (1 = vanilla; default: automatic beyond the trained context)")
    g.add_argument("--neighbor-window", "--grp-attn-w", type=int, default=None,
                   help="Self-Extend neighbor window W (default: automatic)")
    g.add_argument("--threads", "-t", type=int, default=None, help="CPU threads (default: all cores)")
    g.add_argument("--n-batch", "-b", type=int, default=512)
    g.add_argument("--n-ubatch", "-ub", type=int, default=512)
    g.add_argument("--type-k", default="f16", help="K cache type: f32, f16, q8_0")
    g.add_argument("--type-v", default="f16", help="V cache type: f32, f16 (q8_0 with flash attention)")
    g.add_argument("--flash-attn", "-fa", nargs="?", const="on", default="auto", choices=("on", "off", "auto"),
                   help="flash attention, as llama.cpp's -fa: auto (default: on where the device runs it; on "
                        "the CPU, Self-Extend's own flash kernel), on, off; --flash-attn alone means on")
    g.add_argument("--verbose", "-v", action="store_true", help="show llama.cpp's logs")
    g.add_argument("--rpc", default=None, metavar="HOST:PORT,...",
                   help="RPC servers (`selfextend-gguf rpc-server`) to place layers on (llama.cpp's flag)")
    g.add_argument("--n-gpu-layers", "-ngl", type=int, default=None,
                   help="layers on GPUs or RPC servers (default: 0, or all with --rpc)")
    g.add_argument("--tensor-split", "-ts", default=None, metavar="N0,N1,...",
                   help="proportions of the layers per device, in device order (llama.cpp's flag)")
    g.add_argument("--chat-template-file", default=None,
                   help="a Jinja chat template to use instead of the GGUF's (for chat and serve)")
    g.add_argument("--chat-format", default=None,
                   help="a chat template llama.cpp has built in, by name (chatml, llama3, mistral-v7, ...)")
    s = p.add_argument_group("sampling")
    s.add_argument("--max-tokens", "-n", type=int, default=None)
    s.add_argument("--temperature", "--temp", type=float, default=None)
    s.add_argument("--seed", "-s", type=int, default=LLAMA_DEFAULT_SEED)
    s.add_argument("--ignore-eos", action="store_true", help="keep generating past end-of-generation tokens")
    return p


def _open_llama(args, n_ctx: int, group_size: Optional[int] = None, **extra) -> Llama:
    chat_template = None
    if args.chat_template_file:
        with open(args.chat_template_file, "r", encoding="utf-8") as f:
            chat_template = f.read()
    return Llama(args.model, n_ctx=n_ctx, n_batch=args.n_batch, n_ubatch=args.n_ubatch,
                 n_threads=args.threads, type_k=args.type_k, type_v=args.type_v,
                 flash_attn=args.flash_attn, seed=args.seed, verbose=args.verbose,
                 group_size=args.group_size if group_size is None else group_size,
                 neighbor_window=args.neighbor_window if group_size != 1 else None,
                 chat_format=args.chat_format,
                 chat_template=chat_template, rpc_servers=args.rpc, tensor_split=_tensor_split(args.tensor_split),
                 n_gpu_layers=args.n_gpu_layers if args.n_gpu_layers is not None else (-1 if args.rpc else 0),
                 **extra)


def _tensor_split(value: Optional[str]) -> Optional[List[float]]:
    if value is None:
        return None
    try:
        return [float(x) for x in value.replace("/", ",").split(",")]
    except ValueError:
        raise ValueError(f"--tensor-split takes numbers separated by commas, e.g. 3,1; got {value!r}") from None


def _describe(llm: Llama) -> str:
    se = llm.self_extend
    mode = (f"Self-Extend G={se.group_size} W={se.neighbor_window} ({llm.self_extend_origin})" if se
            else "vanilla attention")
    return f"n_ctx={llm.n_ctx()} (trained {llm.n_ctx_train()}), {mode}"


def _prompt_cache_file(llm: Llama, path: str, prompt_tokens: List[int], read_only: bool) -> None:
    """llama.cpp's --prompt-cache FILE: load the file's state when it shares a prefix with
    the prompt, evaluate the rest, and write the prompt's state back (unless read-only)."""
    import time

    from ..engine import state_file
    from ..engine.state import LlamaState

    if os.path.exists(path):
        start = time.perf_counter()
        tokens, state = state_file.read(path, llm.state_identity())   # a foreign file: an error
        llm.load_state(LlamaState(np.asarray(tokens, dtype=np.int32), state, None, llm.state_identity()))
        shared = llm.longest_token_prefix(tokens, prompt_tokens)
        print(f"selfextend-gguf: loaded {shared} cached tokens of {len(prompt_tokens)} from {path} in "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    elif read_only:
        raise ValueError(f"--prompt-cache-ro: {path} does not exist")
    llm.prefill(prompt_tokens, ProgressBar())
    if not read_only:
        state = llm.save_state()
        size = state_file.write(Path(path), state.identity, [int(t) for t in state.input_ids], state.llama_state)
        print(f"selfextend-gguf: wrote {len(prompt_tokens)} tokens of state to {path} ({size / 2**20:.0f} MiB)",
              file=sys.stderr)


def cmd_complete(args) -> int:
    if args.prompt is not None:
        prompt = args.prompt
    elif args.prompt_file is not None:
        with open(args.prompt_file, "r", encoding="utf-8") as f:
            prompt = f.read()
    else:
        prompt = sys.stdin.read()
    llm = _open_llama(args, args.n_ctx or 4096)
    print(f"selfextend-gguf: {_describe(llm)}", file=sys.stderr)
    if args.prompt_cache:
        prompt = llm.prompt_tokens(prompt)
        _prompt_cache_file(llm, args.prompt_cache, prompt, args.prompt_cache_ro)
    stream = llm.create_completion(
        prompt, max_tokens=args.max_tokens if args.max_tokens is not None else 256,
        temperature=args.temperature if args.temperature is not None else 0.8,
        stream=True, progress_callback=ProgressBar(), logit_bias=llm.eog_bias() if args.ignore_eos else None)
    for chunk in stream:
        sys.stdout.write(chunk["choices"][0]["text"])
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _passkey_n_ctx(args, length: int) -> int:
    return args.n_ctx or length + 64


def cmd_passkey(args) -> int:
    llm = _open_llama(args, _passkey_n_ctx(args, args.length))
    if not args.json:
        print(f"selfextend-gguf: {_describe(llm)}", file=sys.stderr)
    result = passkey.run(llm, args.length, args.depth, args.key_seed, args.max_tokens or 8,
                         progress=ProgressBar("passkey prefill"))
    if args.json:
        print(json.dumps({k: result[k] for k in ("expected", "got", "found", "length", "depth",
                                                  "self_extend", "n_ctx", "seconds")}))
    else:
        print(f"expected {result['expected']}  got {result['got'] or '-'}  found {result['found']}  "
              f"({result['length']} tokens, depth {args.depth}, {result['seconds']} s)")
    return 0


def cmd_demo(args) -> int:
    """Passkey beyond the trained window: vanilla attention against Self-Extend."""
    n_ctx = _passkey_n_ctx(args, args.length)
    rows = []
    for label, group_size in (("vanilla", 1), ("self-extend", None)):
        llm = _open_llama(args, n_ctx, group_size=group_size)
        print(f"\n== {label}: {_describe(llm)}", file=sys.stderr, flush=True)
        result = passkey.run(llm, args.length, args.depth, args.key_seed, progress=ProgressBar("passkey prefill"))
        rows.append((label, result))
        print(f"   expected {result['expected']}, generated {result['generated']!r} -> "
              f"{'FOUND' if result['found'] else 'missed'} ({result['seconds']} s)", flush=True)
        del llm
    print("\nmethod        length  trained  found  answer")
    for label, r in rows:
        print(f"{label:<12}  {r['length']:>6}  {r['n_ctx_train']:>7}  {str(r['found']):<5}  {r['generated'].strip()!r}")
    return 0


CHAT_HELP = "commands: /reset, /save FILE, /load FILE, /status, /exit (Ctrl-C stops a reply)"


def cmd_chat(args) -> int:
    from .chat import ChatSession

    llm = _open_llama(args, args.n_ctx or 8192)
    session = ChatSession(llm, system=args.system, document_path=args.file,
                          temperature=args.temperature if args.temperature is not None else 0.2,
                          max_tokens=args.max_tokens, seed=None if args.seed == LLAMA_DEFAULT_SEED else args.seed,
                          logit_bias=llm.eog_bias() if args.ignore_eos else None)
    print(f"selfextend-gguf chat: {_describe(llm)}\n{CHAT_HELP}", file=sys.stderr, flush=True)
    cache = None
    if args.prompt_cache:
        from ..models.model_path import cache_dir
        from ..engine.prompt_cache import LlamaDiskCache

        cache = LlamaDiskCache(str(cache_dir() / "prompts"), capacity_bytes=args.prompt_cache_size << 20)
    line = session.prepare_system_prompt(cache, ProgressBar())
    if line:
        print(f"({line})", file=sys.stderr, flush=True)
    while True:
        try:
            line = input("> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        except KeyboardInterrupt:
            print("\n(type /exit to quit)", file=sys.stderr)
            continue
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            command, _, arg = text.partition(" ")
            arg = arg.strip()
            if command in ("/exit", "/quit"):
                return 0
            if command == "/reset":
                session.reset()
                print("(conversation cleared)", file=sys.stderr)
            elif command == "/status":
                print(session.status(), file=sys.stderr)
            elif command in ("/save", "/load") and arg:
                try:
                    (session.save if command == "/save" else session.load)(arg)
                    print(f"({'saved to' if command == '/save' else 'loaded'} {arg})", file=sys.stderr)
                except (OSError, ValueError) as err:
                    print(f"error: {err}", file=sys.stderr)
            else:
                print(CHAT_HELP, file=sys.stderr)
            continue
        reply = session.send(text)
        try:
            for piece in reply:
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            print("\n(stopped)", file=sys.stderr)
        except ValueError as err:   # e.g. the conversation no longer fits in n_ctx
            print(f"\nerror: {err}", file=sys.stderr)
        finally:
            reply.close()
        sys.stdout.write("\n")
        sys.stdout.flush()
        if args.status:
            print(session.status(), file=sys.stderr)


def cmd_serve(args) -> int:
    from ..server.main import serve

    from ..engine.prompt_cache import LlamaDiskCache, LlamaRAMCache

    extra = {}
    if args.embedding:
        extra = dict(embedding=True, pooling_type=args.pooling)
    if args.cache_ram and args.prompt_cache_dir:
        raise ValueError("give --cache-ram or --prompt-cache-dir, not both")
    cache = None
    if args.cache_ram:
        cache = LlamaRAMCache(args.cache_ram << 20, min_tokens=args.prompt_cache_min_tokens)
    elif args.prompt_cache_dir:
        cache = LlamaDiskCache(args.prompt_cache_dir, args.prompt_cache_size << 20,
                               min_tokens=args.prompt_cache_min_tokens)
    serve(lambda **kw: _open_llama(args, args.n_ctx or 8192, **extra, **kw), args.host, args.port, args.parallel,
          args.queue_size, args.api_key, "info" if args.verbose else "warning", prompt_cache=cache,
          slot_save_path=args.slot_save_path, metrics=args.metrics)
    return 0


def cmd_rpc_server(args) -> int:
    import signal

    from ..engine import rpc

    print(f"selfextend-gguf rpc-server: serving {', '.join(args.device) or 'the CPU'} on {args.host}:{args.port} "
          f"with {args.threads} thread(s)", file=sys.stderr, flush=True)
    signal.signal(signal.SIGINT, signal.SIG_DFL)   # the server loop runs in C until the process ends
    rpc.serve(args.host, args.port, args.threads, args.cache, args.device)
    return 0


def cmd_info(args) -> int:
    from ..engine.system_info import format_system_info, system_info

    if args.rpc:
        from ..engine import rpc

        rpc.add_servers(rpc.parse_servers(args.rpc))
    info = system_info()
    print(json.dumps(info, indent=2) if args.json else format_system_info(info))
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="selfextend-gguf",
        description="Run GGUF models beyond their trained context with exact Self-Extend.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("complete", parents=[common], help="complete a prompt, streaming to stdout")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompt", "-p")
    src.add_argument("--prompt-file", "-f")
    p.add_argument("--prompt-cache", metavar="FILE", default=None,
                   help="load the prompt's cached prefix from FILE and write the prompt's state to it (llama.cpp's flag)")
    p.add_argument("--prompt-cache-ro", action="store_true", help="use --prompt-cache FILE without updating it")
    p.set_defaults(func=cmd_complete)

    p = sub.add_parser("passkey", parents=[common], help="passkey retrieval at a given length and depth")
    p.add_argument("--length", type=int, required=True, help="prompt length in tokens (about)")
    p.add_argument("--depth", type=float, default=0.5, help="where the key sits in the filler, 0..1")
    p.add_argument("--key-seed", type=int, default=0, help="seed of the random 5-digit key")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_passkey)

    p = sub.add_parser("chat", parents=[common], help="interactive multi-turn chat, streaming")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--file", help="a document (text file) to put into the conversation")
    p.add_argument("--status", action="store_true", help="print a status line after each reply")
    p.add_argument("--no-prompt-cache", dest="prompt_cache", action="store_false",
                   help="do not keep the system prompt's (the document's) state in the cache directory")
    p.add_argument("--prompt-cache-size", type=int, default=8192, metavar="MIB",
                   help="most MiB the cache directory's prompts/ may hold (least recently used go first)")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("serve", parents=[common], help="OpenAI-compatible HTTP server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--parallel", "-np", type=int, default=1, help="requests served at the same time (slots)")
    p.add_argument("--queue-size", type=int, default=16, help="requests that may wait for a slot; beyond: 503")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' (or 'x-api-key: KEY') on every route but /health")
    p.add_argument("--embedding", "--embeddings", action="store_true",
                   help="answer /v1/embeddings (as llama-server's --embedding)")
    p.add_argument("--pooling", default=None, choices=["none", "mean", "cls", "last", "rank"],
                   help="embedding pooling (default: the GGUF's); /v1/embeddings needs one other than none")
    p.add_argument("--cache-ram", type=int, default=0, metavar="MIB",
                   help="keep prompt states in memory, shared by the slots (at most MIB)")
    p.add_argument("--prompt-cache-dir", default=None, metavar="DIR",
                   help="keep prompt states in DIR, shared by the slots and by later runs")
    p.add_argument("--prompt-cache-size", type=int, default=8192, metavar="MIB",
                   help="most MiB --prompt-cache-dir may hold (least recently used go first)")
    p.add_argument("--prompt-cache-min-tokens", type=int, default=256, metavar="N",
                   help="shorter prompts are not cached")
    p.add_argument("--slot-save-path", default=None, metavar="DIR",
                   help="enable POST /slots/{id}?action=save|restore with files in DIR (llama-server's flag)")
    p.add_argument("--metrics", action="store_true",
                   help="serve Prometheus metrics at /metrics (llama-server's flag)")
    p.set_defaults(func=cmd_serve)

    from ..eval.cli import add_parser as add_eval_parser
    add_eval_parser(sub)
    from ..tuning.cli import add_parser as add_tune_parser
    add_tune_parser(sub)

    p = sub.add_parser("rpc-server", help="offer this machine's CPU (or devices) to other machines over RPC")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; the protocol has no authentication)")
    p.add_argument("--port", "-p", type=int, default=50052)
    p.add_argument("--threads", "-t", type=int, default=os.cpu_count() or 1)
    p.add_argument("--cache", "-c", default=None, metavar="DIR", help="cache tensors received (llama.cpp's -c)")
    p.add_argument("--device", "-d", action="append", default=[], help="a device to offer (default: the CPU)")
    p.set_defaults(func=cmd_rpc_server)

    p = sub.add_parser("info", help="version, llama.cpp pin, compiled CPU features and backends (for bug reports)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--rpc", default=None, metavar="HOST:PORT,...", help="also list these RPC servers' devices")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", parents=[common],
                       help="passkey beyond the trained window: vanilla against Self-Extend")
    p.add_argument("--length", type=int, default=12000)
    p.add_argument("--depth", type=float, default=0.5)
    p.add_argument("--key-seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"selfextend-gguf: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nselfextend-gguf: interrupted", file=sys.stderr)
        return 130
