"""Scoring one Self-Extend setting: one prefill of the needle document, perplexity on
its needle-free end, then every question branched from the cached document.

A question is evaluated after the document, its answer's tokens teacher-forced (nothing
is generated), and the sequence is rewound to the document before the next one, so the
document is prefilled once per setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np

from ..eval.perplexity import nll
from ..llama import Llama
from .needles import NeedleDocument

# rows of logits evaluated at once for the perplexity sample (x n_vocab floats)
PERPLEXITY_CHUNK = 256
Step = Callable[[str, int, int], None]   # (step name, done, total)


@dataclass
class AnswerScore:
    log_prob: float    # sum over the answer's tokens
    retrieved: bool    # every answer token was the most likely one: greedy decoding would answer it


@dataclass
class SettingScore:
    answers: List[AnswerScore]
    perplexity: float

    @property
    def found(self) -> int:
        return sum(a.retrieved for a in self.answers)

    @property
    def mean_log_prob(self) -> float:
        return float(np.mean([a.log_prob for a in self.answers]))


def score_answer(llm: Llama, question: List[int], answer: List[int]) -> AnswerScore:
    n_document = llm.n_tokens
    logits = llm.eval_logits(question + answer)   # on failure it drops its own tokens again
    llm.rewind(n_document)
    # the row before each answer token predicts it
    rows = logits[len(question) - 1:len(question) - 1 + len(answer)]
    targets = np.asarray(answer)
    log_prob = -float(nll(rows, targets).sum())
    return AnswerScore(log_prob, bool((rows.argmax(axis=1) == targets).all()))


def score_setting(llm: Llama, document: NeedleDocument, step: Optional[Step] = None) -> SettingScore:
    step = step or (lambda name, done, total: None)
    tokens = document.tokens
    start = document.perplexity_from
    llm.reset()
    llm.eval(tokens[:start], progress_callback=lambda done, total: step("prefill", done, len(tokens)))
    losses = []
    for offset in range(start, len(tokens), PERPLEXITY_CHUNK):
        chunk = tokens[offset:offset + PERPLEXITY_CHUNK]
        logits = llm.eval_logits(chunk)
        # row r predicts token offset + r + 1; the document's last row predicts a question
        targets = np.asarray(tokens[offset + 1:offset + 1 + len(chunk)])
        losses.append(nll(logits[:len(targets)], targets))
        step("prefill", offset + len(chunk), len(tokens))
    perplexity = float(np.exp(np.concatenate(losses).mean()))
    answers = []
    for k, needle in enumerate(document.needles):
        answers.append(score_answer(llm, needle.question, needle.answer))
        step("questions", k + 1, len(document.needles))
    return SettingScore(answers, perplexity)
