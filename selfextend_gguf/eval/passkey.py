"""The passkey retrieval task (paper App. D.2; the same prompt as llama.cpp's example).

A key hidden at a chosen depth of repetitive filler; the model must repeat it."""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

PREFIX = ("There is an important info hidden inside a lot of irrelevant text. Find it and "
          "memorize them. I will quiz you about the important information there.")
FILLER = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
KEY_SENTENCE = " The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = " What is the pass key? The pass key is"


@dataclass
class PasskeyPrompt:
    text: str
    key: str
    depth: float
    n_filler: int


def random_key(rng: random.Random, n_digits: int = 5) -> str:
    first = str(rng.randint(1, 9))
    return first + "".join(str(rng.randint(0, 9)) for _ in range(n_digits - 1))


def build(length: int, depth: float, count_tokens: Callable[[str], int], key: Optional[str] = None,
          seed: int = 0, n_digits: int = 5) -> PasskeyPrompt:
    """A prompt of about `length` tokens with the key after `depth` of the filler."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    if key is None:
        key = random_key(random.Random(seed), n_digits)
    fixed = count_tokens(PREFIX + KEY_SENTENCE.format(key=key) + QUESTION)
    if fixed >= length:
        raise ValueError(f"length={length} is too short: the passkey prompt needs more than {fixed} tokens")
    per_filler = max(1, count_tokens(FILLER * 8) // 8)
    n_filler = max(0, (length - fixed) // per_filler)

    def text_for(n: int) -> str:
        n_before = round(depth * n)
        return (PREFIX + FILLER * n_before + KEY_SENTENCE.format(key=key)
                + FILLER * (n - n_before) + QUESTION)

    # pieces tokenize slightly differently when joined: trim until the whole fits
    while n_filler > 0 and count_tokens(text_for(n_filler)) > length:
        n_filler -= 1
    text = text_for(n_filler)
    return PasskeyPrompt(text=text, key=key, depth=depth, n_filler=n_filler)


def digits_in(text: str) -> List[str]:
    return re.findall(r"\d+", text)


def found(expected: str, generated: str) -> bool:
    """The key counts as found when it is the first number the model produces."""
    numbers = digits_in(generated)
    return bool(numbers) and numbers[0] == expected


def run(llm, length: int, depth: float, seed: int = 0, max_tokens: int = 8,
        progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, Any]:
    """Build the prompt for llm (a Llama), decode greedily, report expected/got/found."""
    prompt = build(length, depth, lambda text: len(llm.tokenize(text, add_bos=False)), seed=seed)
    tokens = llm.tokenize(prompt.text, add_bos=True)
    started = time.monotonic()
    result = llm.create_completion(tokens, max_tokens=max_tokens, temperature=0.0, progress_callback=progress)
    generated = result["choices"][0]["text"]
    numbers = digits_in(generated)
    return {
        "expected": prompt.key, "got": numbers[0] if numbers else "", "found": found(prompt.key, generated),
        "generated": generated, "length": len(tokens), "depth": depth,
        "n_ctx": llm.n_ctx(), "n_ctx_train": llm.n_ctx_train(),
        "self_extend": list(llm.self_extend) if llm.self_extend else None,
        "seconds": round(time.monotonic() - started, 1),
    }
