"""Fill-in-the-middle prompts from the vocabulary's FIM tokens, as llama.cpp builds them:
the prefix, suffix and middle tokens around the code before and after the cursor (PSM
order, or SPM with spm_infill). llama-server's /infill adds the repo-level pattern
(other files of the project first, after FIM_REP and FIM_SEP) when the vocabulary has
those tokens, and fits the parts into a batch and the context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Union

from .host import ModelHost

# llama.cpp takes these ids from the GGUF, or else finds the tokens by their text
# (llama-vocab.cpp); the bindings expose only the prefix, suffix and middle tokens
_REP = ("tokenizer.ggml.fim_rep_token_id", ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"))
_SEP = ("tokenizer.ggml.fim_sep_token_id", ("<|file_sep|>",))

# what llama-server writes around the other files (its "myproject" and "filename" are
# placeholders it does not let a client choose)
_REPO_NAME = "myproject\n"
_CURRENT_FILE = "filename\n"
_SNIPPET = "\n\n--- snippet ---\n\n"   # between other files when there is no FIM_SEP

Mixed = Union[str, Sequence[Union[int, str]]]


@dataclass(frozen=True)
class FimTokens:
    pre: int
    suf: int
    mid: int


def fim_tokens(llm: ModelHost, needed_by: str) -> FimTokens:
    """The vocabulary's FIM tokens; a ValueError that names the missing ones when the model
    cannot fill in the middle."""
    model = llm.model
    pre, suf, mid = model.token_fim_pre(), model.token_fim_suf(), model.token_fim_mid()
    missing = [name for name, token in (("prefix", pre), ("suffix", suf), ("middle", mid)) if token < 0]
    if missing:
        raise ValueError(f"{needed_by} needs fill-in-the-middle tokens in the model's vocabulary, and this model "
                         f"has no FIM {', '.join(missing)} token; use a code model trained for infilling (its GGUF "
                         f"sets tokenizer.ggml.fim_pre_token_id, fim_suf_token_id and fim_mid_token_id)")
    return FimTokens(pre, suf, mid)


def _optional_token(llm: ModelHost, key: str, texts: Sequence[str]) -> Optional[int]:
    value = llm.model.meta(key)
    if value is not None:
        token = int(value)
        return token if 0 <= token < llm.model.n_vocab() else None
    for text in texts:
        ids = llm.tokenize(text, add_bos=False, special=True)
        if len(ids) == 1 and llm.token_bytes(ids[0], True) == text.encode():
            return ids[0]
    return None


def _arrange(llm: ModelHost, fim: FimTokens, prefix: List[int], suffix: List[int], spm_infill: bool) -> List[int]:
    """[BOS] PRE prefix SUF suffix MID, or with spm_infill [BOS] SUF suffix PRE prefix MID."""
    before, after = [fim.pre] + prefix, [fim.suf] + suffix
    if spm_infill:
        before, after = after, before
    bos = [llm.token_bos()] if llm.model.add_bos() and llm.token_bos() >= 0 else []
    return bos + before + after + [fim.mid]


def _plain(llm: ModelHost, text: str) -> List[int]:
    return llm.tokenize(text, add_bos=False, special=False) if text else []


def tokenize_mixed(llm: ModelHost, value: Mixed) -> List[int]:
    """Text, or a list of texts and token ids (as llama-server reads input_prefix and
    input_suffix), without special tokens parsed."""
    if isinstance(value, str):
        return _plain(llm, value)
    out: List[int] = []
    for item in value:
        out += [item] if isinstance(item, int) else _plain(llm, item)
    return out


def fim_prompt(llm: ModelHost, prefix: Union[str, bytes, Sequence[int]], suffix: str, spm_infill: bool) -> List[int]:
    """create_completion's suffix= (as llama_cpp fills in the middle): the prompt is the
    code before the cursor."""
    fim = fim_tokens(llm, "suffix=")
    prefix_tokens = list(prefix) if not isinstance(prefix, (str, bytes)) else llm.tokenize(prefix, add_bos=False)
    suffix_tokens = llm.tokenize(suffix, add_bos=False) if suffix else []
    return _arrange(llm, fim, prefix_tokens, suffix_tokens, spm_infill)


def infill_prompt(llm: ModelHost, input_prefix: Mixed, input_suffix: Mixed, input_extra: Sequence[Mapping[str, str]],
                  prompt: List[int], n_batch: int, n_predict: int, n_ctx: int, spm_infill: bool) -> List[int]:
    """llama-server's /infill prompt (format_prompt_infill):

        [FIM_REP]myproject\\n [FIM_SEP]name\\n text ... [FIM_SEP]filename\\n
        [BOS] [FIM_PRE] prefix prompt [FIM_SUF] suffix [FIM_MID]

    prompt (the text of the cursor's line so far) ends the prefix. The prefix keeps its
    last 3/4 of a batch, the suffix its first 1/4 (less the prompt); the other files
    (input_extra: {"filename", "text"}) fill what the context leaves besides a batch and
    twice n_predict, keeping their end."""
    fim = fim_tokens(llm, "infill")
    rep, sep = _optional_token(llm, *_REP), _optional_token(llm, *_SEP)   # a repo name, a file name follows
    prefix, suffix = tokenize_mixed(llm, input_prefix), tokenize_mixed(llm, input_suffix)
    extra: List[int] = []
    if rep is not None:
        extra += [rep] + _plain(llm, _REPO_NAME)
    for chunk in input_extra:
        if sep is not None:
            extra += [sep] + _plain(llm, chunk.get("filename", "tmp") + "\n")
        else:
            extra += _plain(llm, _SNIPPET)
        extra += _plain(llm, chunk["text"])
    if sep is not None:
        extra += [sep] + _plain(llm, _CURRENT_FILE)

    n_prefix_take = min(len(prefix), 3 * (n_batch // 4))
    n_suffix_take = min(len(suffix), max(0, n_batch // 4 - (2 + len(prompt))))
    n_extra_take = min(max(0, n_ctx - n_batch - 2 * n_predict), len(extra))
    prefix = prefix[len(prefix) - n_prefix_take:] + list(prompt)
    suffix = suffix[:n_suffix_take]
    return extra[len(extra) - n_extra_take:] + _arrange(llm, fim, prefix, suffix, spm_infill)
