"""The passkey retrieval task (paper App. D.2; the same prompt as llama.cpp's example).

A key hidden at a chosen depth of repetitive filler; the model must repeat it."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, List, Optional

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
    per_filler = max(1, count_tokens(FILLER * 8) // 8)
    n_filler = max(1, (length - fixed) // per_filler)
    n_before = round(depth * n_filler)
    text = (PREFIX + FILLER * n_before + KEY_SENTENCE.format(key=key)
            + FILLER * (n_filler - n_before) + QUESTION)
    return PasskeyPrompt(text=text, key=key, depth=depth, n_filler=n_filler)


def digits_in(text: str) -> List[str]:
    return re.findall(r"\d+", text)


def found(expected: str, generated: str) -> bool:
    """The key counts as found when it is the first number the model produces."""
    numbers = digits_in(generated)
    return bool(numbers) and numbers[0] == expected
