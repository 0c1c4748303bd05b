"""A second question on a long document through `selfextend-gguf complete --prompt-cache`:
wall time of the second run against the first, the answer against a run without the
cache, and the size of the cache file. Default model, beyond its 8k window.

    python bench/prompt_cache.py [--tokens 10000] [--threads 2] [--out bench/results/prompt-cache.md]

Run it alone: it times whole commands (model load included)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selfextend_gguf import Llama
from selfextend_gguf.eval import texts


def run(args, prompt_file, cache=None):
    cmd = [sys.executable, "-m", "selfextend_gguf", "complete", "--prompt-file", str(prompt_file),
           "--n-ctx", str(args.n_ctx), "-n", "24", "--temp", "0", "--threads", str(args.threads), "--flash-attn"]
    if cache is not None:
        cmd += ["--prompt-cache", str(cache)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{done.stderr[-3000:]}")
    return done.stdout, done.stderr, seconds


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=10000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/results/prompt-cache.md")
    args = p.parse_args()
    args.n_ctx = args.tokens + 512

    llm = Llama(n_ctx=512, vocab_only=True)
    source, text = texts.default_text()
    # the document: the text's first `tokens` tokens
    ids = llm.tokenize(text, add_bos=False)[:args.tokens]
    document = llm.detokenize(ids).decode("utf-8", errors="ignore")
    questions = ["\n\nQuestion: What is this document about?\nAnswer:",
                 "\n\nQuestion: Who wrote this document?\nAnswer:"]
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, q in enumerate(questions):
            files.append(Path(tmp) / f"q{i}.txt")
            files[-1].write_text(document + q)
        cache = Path(tmp) / "doc.state"
        _, _, first = run(args, files[0], cache)
        size = cache.stat().st_size
        out2, err2, second = run(args, files[1], cache)
        plain, _, uncached = run(args, files[1])
    loaded = [line for line in err2.splitlines() if "loaded" in line]
    n_prompt = len(llm.tokenize(document + questions[1], add_bos=True, special=True))
    report = f"""# Prompt cache: a second question on a {n_prompt}-token document

Default model (trained context 8192), n_ctx {args.n_ctx} (Self-Extend on), flash attention,
{args.threads} threads, greedy, 24 tokens; document: {source}. One run of
`python bench/prompt_cache.py --tokens {args.tokens} --threads {args.threads}` ({time.strftime('%Y-%m-%d')}),
wall time of whole commands (model load included).

| run | wall time | ratio to the first |
|---|---|---|
| first question, `--prompt-cache FILE` (evaluates everything, writes the file) | {first:.1f} s | 1.00 |
| second question, `--prompt-cache FILE` (loads the document) | {second:.1f} s | {second / first:.2f} |
| second question without a cache | {uncached:.1f} s | {uncached / first:.2f} |

- cache file: {size / 2**20:.0f} MiB ({size / n_prompt / 1024:.1f} KiB per token: the KV cache of the prefix)
- {loaded[0] if loaded else 'no load line'}
- the second answer equals the uncached one: {out2 == plain}
"""
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
