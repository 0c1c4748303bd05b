"""Start `selfextend-gguf serve` as a real process on a loopback port, for tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, *args: str, timeout_s: float = 300.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "selfextend_gguf", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.proc.stdout.read()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("server did not become healthy in time")

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=10).json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def tool_template_server(model_path, n_ctx: int, *args: str) -> ServerProcess:
    """A server over a tiny model with Mistral Nemo's template, whose tool calls start with
    one special token, [TOOL_CALLS] (a test's logit_bias on it makes a random model call)."""
    from chat_templates import MISTRAL_NEMO, template_path

    return ServerProcess("--model", str(model_path), "--n-ctx", str(n_ctx), "--parallel", "2", "--threads", "1",
                         "--chat-template-file", str(template_path(MISTRAL_NEMO)), *args)


def openai_client(server: ServerProcess):
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def stream_logprobs(client, model: str, prompt: str, max_tokens: int) -> dict:
    """A greedy streamed completion's tokens and top-2 logprobs (as greedy_match compares them)."""
    tokens, tops = [], []
    for chunk in client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0,
                                           logprobs=2, stream=True):
        if chunk.choices[0].logprobs:
            tokens += chunk.choices[0].logprobs.tokens
            tops += chunk.choices[0].logprobs.top_logprobs
    return {"tokens": tokens, "top_logprobs": tops}
