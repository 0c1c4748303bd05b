"""A long natural-text document with facts ("needles") hidden at several depths, and
one question per fact, all as tokens.

The text is any long prose (see `selfextend_gguf.eval.texts`); each needle is a sentence put
between two lines of it. A question repeats the needle's wording up to the answer, so
even a small model can answer by copying, and the answer is scored by its tokens'
log-probabilities (teacher forcing), not by generating. The document's last tokens hold
no needle: they are the perplexity sample.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple

# (fact with {} for the answer, question, the answer's lead-in, possible answers); the
# answer is drawn from a few equally plausible ones, so guessing without the document
# gets about one in six
NEEDLES: Tuple[Tuple[str, str, str, Tuple[str, ...]], ...] = (
    ("The harbour master's old cat is called {}.", "What is the harbour master's old cat called?",
     "The harbour master's old cat is called", ("Biscuit", "Pepper", "Marmalade", "Socks", "Juniper", "Pickles")),
    ("The secret ingredient in the baker's famous soup is {}.", "What is the secret ingredient in the baker's soup?",
     "The secret ingredient in the baker's famous soup is", ("saffron", "nutmeg", "cardamom", "fennel", "ginger", "thyme")),
    ("The lighthouse on the northern island was painted {} last spring.", "What colour was the lighthouse painted?",
     "The lighthouse on the northern island was painted", ("green", "orange", "purple", "yellow", "crimson", "turquoise")),
    ("The treasurer of the village chess club moved to {} in the autumn.",
     "Where did the treasurer of the chess club move?",
     "The treasurer of the village chess club moved to", ("Lisbon", "Oslo", "Nairobi", "Montreal", "Kyoto", "Dublin")),
    ("The professor keeps a {} in the corner of her office.", "What does the professor keep in her office?",
     "The professor keeps a", ("harp", "cello", "telescope", "canoe", "tortoise", "piano")),
    ("The winning ticket at the spring fair was number {}.", "What number was the winning ticket at the fair?",
     "The winning ticket at the spring fair was number", ("47", "83", "19", "62", "35", "91")),
    ("The night train to the coast leaves from platform {}.", "Which platform does the night train leave from?",
     "The night train to the coast leaves from platform", ("7", "12", "3", "9", "14", "5")),
    ("The gardener planted {} along the eastern wall.", "What did the gardener plant along the eastern wall?",
     "The gardener planted", ("tulips", "lavender", "roses", "sunflowers", "daffodils", "marigolds")),
)
INTRO = ("Below are several documents. A few facts are hidden among them; questions about "
         "those facts follow the documents.\n\n")


@dataclass
class Needle:
    fact: str
    depth: float          # where it was put, as a fraction of the document
    question: List[int]   # tokens after the document, up to the answer
    answer: List[int]     # the answer's tokens, scored


@dataclass
class NeedleDocument:
    tokens: List[int]       # intro, text and needles; questions go after it
    needles: List[Needle]
    perplexity_from: int    # tokens from here to the end hold no needle: the perplexity sample
    text_repeats: int       # how often the text had to be repeated to fill the length

    @property
    def longest_question(self) -> int:
        return max(len(n.question) + len(n.answer) for n in self.needles)


def _line_end_after(tokens: Sequence[int], start: int, limit: int, ends_line: Callable[[int], bool]) -> int:
    """The index just after the first token from start on that ends a line (start itself
    if none comes within 256 tokens), so a needle sits between two lines."""
    for i in range(start, min(limit, start + 256)):
        if ends_line(tokens[i]):
            return i + 1
    return start


def _leading_tokens(text: str, n_tokens: int, tokenize: Callable[[str, bool], List[int]]) -> List[int]:
    """Tokens of enough of the text for n_tokens (a long text is not tokenized whole)."""
    n_chars = 8 * n_tokens
    while True:
        tokens = tokenize(text[:n_chars], False)
        if len(tokens) > n_tokens or n_chars >= len(text):
            break
        n_chars *= 2
    if not tokens:
        raise ValueError("the text has no tokens")
    # the last token of a cut text may be half a word: drop it
    return tokens[:-1] if n_chars < len(text) else tokens


def build(text: str, length: int, tokenize: Callable[[str, bool], List[int]],
          ends_line: Callable[[int], bool], n_needles: int = 6, seed: int = 0,
          perplexity_tokens: int = 1024) -> NeedleDocument:
    """A document that, with its longest question and answer, fits in `length` tokens.

    tokenize(text, add_bos) gives a model's tokens; ends_line(token) says whether a token's
    text ends with a newline."""
    if not 1 <= n_needles <= len(NEEDLES):
        raise ValueError(f"n_needles must be between 1 and {len(NEEDLES)}, got {n_needles}")
    rng = random.Random(seed)
    chosen = rng.sample(NEEDLES, n_needles)
    parts = []
    for fact, question, lead_in, answers in chosen:
        answer = rng.choice(answers)
        parts.append((fact.format(answer) + "\n",
                      tokenize(f"\n\nQuestion: {question}\nAnswer: {lead_in}", False),
                      tokenize(f" {answer}", False)))
    intro = tokenize(INTRO, True)
    needle_tokens = [tokenize(fact, False) for fact, _, _ in parts]
    longest_question = max(len(q) + len(a) for _, q, a in parts)
    body_length = length - len(intro) - longest_question - sum(len(t) for t in needle_tokens)
    if body_length < 8 * n_needles:
        raise ValueError(f"length {length} is too short for {n_needles} needles and their questions")

    text_tokens = _leading_tokens(text, body_length, tokenize)
    repeats = -(-body_length // len(text_tokens))
    body = (text_tokens * repeats)[:body_length]
    # the last perplexity_tokens stay free of needles: they are the perplexity sample
    sample = min(perplexity_tokens, body_length // 8)
    free = body_length - sample

    tokens = list(intro)
    needles: List[Needle] = []
    taken = 0
    for k, ((fact, question, answer), fact_tokens) in enumerate(zip(parts, needle_tokens)):
        # needles spread evenly over the part before the perplexity sample
        cut = _line_end_after(body, max(taken, int(free * (k + 0.5) / n_needles)), free, ends_line)
        tokens += body[taken:cut]
        taken = cut
        needles.append(Needle(fact.strip(), round(len(tokens) / length, 3), question, answer))
        tokens += fact_tokens
    tokens += body[taken:]
    return NeedleDocument(tokens, needles, len(tokens) - sample, repeats)
