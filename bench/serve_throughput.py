"""Aggregate decode throughput of `selfextend-gguf serve` with 1, 2 and 4 concurrent
requests, and its memory against --parallel.

The requests share a long document (beyond the default model's 8k window) and differ in
their question; the document is read once before measuring (a warm-up request per
slot), so what is timed is decoding: each request streams 96 greedy tokens, and the
aggregate is all generated tokens over the time from the first request's first token to
the last request's last token.

    python bench/serve_throughput.py [--doc-tokens 9000] [--threads 2] [--label after]

Run it alone. bench/serve_throughput.sh measures the version before continuous batching
(its package copied as selfextend_gguf_before) and this one, one after the other."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from server_process import free_port  # noqa: E402


def start(args, parallel: int):
    port = free_port()
    cmd = [sys.executable, "-m", args.package, "serve", "--port", str(port), "--parallel", str(parallel),
           "--n-ctx", str(args.n_ctx), "--threads", str(args.threads)] + (["--flash-attn"] if args.flash_attn else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start")


def peak_rss_mib(proc) -> float:
    with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stream(url, prompt, n_tokens, out, bias):
    t_first = t_last = None
    n = 0
    with httpx.stream("POST", url + "/v1/completions", timeout=3600,
                      json={"prompt": prompt, "max_tokens": n_tokens, "temperature": 0, "stream": True,
                            "logit_bias": bias}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if chunk["choices"][0]["text"]:
                    now = time.perf_counter()
                    t_first = t_first or now
                    t_last = now
                    n += 1
    out.append((t_first, t_last, n))


def concurrent(url, prompts, n_tokens, bias):
    out = []
    threads = [threading.Thread(target=stream, args=(url, p, n_tokens, out, bias)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--doc-tokens", type=int, default=9000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tokens", type=int, default=96)
    p.add_argument("--label", default="after")
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement (the median is reported)")
    p.add_argument("--flash-attn", action="store_true",
                   help="serve with flash attention (faster prefill, slower decode on CPU)")
    p.add_argument("--package", default="selfextend_gguf",
                   help="the package to serve with (another version copied under another name, on PYTHONPATH)")
    p.add_argument("--out", default="bench/results/serve-throughput.jsonl")
    args = p.parse_args()
    # --doc-tokens 0: the baseline setting, short prompts in a 4096-token context
    args.n_ctx = args.doc_tokens + 1024 if args.doc_tokens else 4096

    from selfextend_gguf import Llama
    from selfextend_gguf.eval import texts
    vocab = Llama(vocab_only=True)
    _, text = texts.default_text()
    doc = vocab.detokenize(vocab.tokenize(text, add_bos=False)[:args.doc_tokens]).decode("utf-8", "ignore") \
        if args.doc_tokens else "Write a short story."
    prompts = [doc + f"\n\nQuestion {i}: what does section {i + 1} say?\nAnswer:" for i in range(4)]
    bias = {str(t): -100 for t in vocab.eog_bias()}   # every request generates all its tokens

    records = []
    for parallel in (4, 1):
        proc, url = start(args, parallel)
        try:
            concurrent(url, prompts[:parallel], 1, bias)            # read the document into every slot
            health = httpx.get(url + "/health", timeout=10).json()
            memory = health.get("memory")
            for k in ((1, 2, 4) if parallel == 4 else (1,)):
                rates = []
                for _ in range(args.repeats):
                    runs = concurrent(url, prompts[:k], args.tokens, bias)
                    tokens = sum(n for _, _, n in runs)
                    span = max(t for _, t, _ in runs) - min(t for t, _, _ in runs)
                    rates.append(tokens / span)
                records.append({"label": args.label, "flash_attn": args.flash_attn, "parallel": parallel,
                                "concurrent": k, "tokens": tokens, "tok_per_s": round(sorted(rates)[len(rates) // 2], 1),
                                "runs": [round(r, 1) for r in rates]})
                print(records[-1], flush=True)
            records.append({"label": args.label, "parallel": parallel, "peak_rss_mib": round(peak_rss_mib(proc)),
                            "memory": memory})
            print(records[-1], flush=True)
        finally:
            proc.terminate()
            proc.wait()
    with open(args.out, "a") as f:
        for r in records:
            f.write(json.dumps(dict(r, doc_tokens=args.doc_tokens, threads=args.threads,
                                    date=time.strftime("%Y-%m-%d"))) + "\n")


if __name__ == "__main__":
    main()
