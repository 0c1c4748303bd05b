"""A multi-turn chat over one Llama, reusing the KV cache across turns: each turn
re-renders the conversation with the GGUF's chat template, and the engine evaluates
only the tokens after the prefix it already holds."""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Dict, Iterator, List, Optional

from ..llama import Llama


class ChatSession:
    def __init__(self, llm: Llama, system: Optional[str] = None, document_path: Optional[str] = None,
                 temperature: float = 0.2, max_tokens: Optional[int] = None, seed: Optional[int] = None,
                 logit_bias: Optional[Dict[int, float]] = None):
        self.llm = llm
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.logit_bias = logit_bias
        self._system = self._system_prompt(system, document_path)
        self.messages: List[Dict[str, str]] = []
        self.reset()
        self.last_evaluated_tokens = 0  # prompt tokens the engine evaluated in the last turn

    @staticmethod
    def _system_prompt(system: Optional[str], document_path: Optional[str]) -> Optional[str]:
        if document_path is None:
            return system
        with open(document_path, "r", encoding="utf-8") as f:
            document = f.read()
        intro = system or "You are a helpful assistant. Answer questions about the document below."
        return f"{intro}\n\nDocument ({os.path.basename(document_path)}):\n{document}"

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self._system}] if self._system else []

    def prepare_system_prompt(self, cache=None, progress: Optional[Callable[[int, int], None]] = None) -> Optional[str]:
        """Put the system prompt (with the document) into the KV cache: loaded from the prompt
        cache when an earlier session stored it, else evaluated (and stored). Returns a line
        that says which, or None without a system prompt."""
        if not self._system:
            return None
        prefix = self.llm.tokenize(self.llm.format_chat(self.messages[:1], add_generation_prompt=False),
                                   add_bos=True, special=True)
        start = time.perf_counter()
        hit = cache.lookup(prefix, self.llm.state_identity(), min_prefix=len(prefix)) if cache else None
        if hit is not None:
            self.llm.load_state(hit.state)
            return f"loaded {len(prefix)} cached tokens of the system prompt in {time.perf_counter() - start:.1f} s"
        self.llm.reset()
        self.llm.eval(prefix, progress)
        line = f"evaluated the system prompt ({len(prefix)} tokens) in {time.perf_counter() - start:.1f} s"
        if cache is not None and not getattr(cache, "read_only", False):
            cache.store(self.llm.save_state())
            line += f"; cached in {cache.cache_dir}" if hasattr(cache, "cache_dir") else "; cached"
        return line

    def send(self, text: str) -> Iterator[str]:
        """Stream the reply to a user message. The reply (also a partial one, when the
        caller stops early or is interrupted) joins the conversation."""
        self.messages.append({"role": "user", "content": text})
        evaluated = []
        stream = self.llm.create_chat_completion(
            self.messages, stream=True, temperature=self.temperature, max_tokens=self.max_tokens,
            seed=self.seed, logit_bias=self.logit_bias,
            progress_callback=lambda done, total: evaluated.append(total))
        reply = []
        try:
            for chunk in stream:
                piece = chunk["choices"][0]["delta"].get("content", "")
                if piece:
                    reply.append(piece)
                    yield piece
        finally:
            stream.close()
            self.last_evaluated_tokens = evaluated[-1] if evaluated else 0
            self.messages.append({"role": "assistant", "content": "".join(reply)})

    def status(self) -> str:
        se = self.llm.self_extend
        mode = f"Self-Extend G={se.group_size} W={se.neighbor_window}" if se else "Self-Extend off"
        return (f"[{self.llm.n_tokens}/{self.llm.n_ctx()} tokens, trained {self.llm.n_ctx_train()}; {mode}; "
                f"last turn evaluated {self.last_evaluated_tokens} new tokens]")

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"messages": self.messages}, f, ensure_ascii=False, indent=1)

    def load(self, path: str) -> None:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
        messages = data.get("messages") if isinstance(data, dict) else None
        if not isinstance(messages, list) or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages):
            raise ValueError(f"{path} is not a saved conversation (expected {{'messages': [...]}})")
        self.messages = messages
