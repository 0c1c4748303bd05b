"""The app surface on the default model, SmolLM2-135M-Instruct, for real: Self-Extend
stays on under grammars, JSON schemas and the sampler chain (minutes on 2 cores)."""

import json

import pytest

from selfextend_gguf import Llama, passkey

pytestmark = pytest.mark.real_model

LENGTH = 12000   # 1.5x the trained 8192


@pytest.fixture(scope="module")
def llm_12k():
    return Llama(n_ctx=LENGTH + 128, flash_attn=True)


def test_json_schema_extraction_beyond_the_window(llm_12k):
    """A passkey hidden in a 12k-token prompt, asked for as JSON under a schema: the
    output parses, validates and holds the planted value."""
    jsonschema = pytest.importorskip("jsonschema")
    assert llm_12k.self_extend is not None
    question = passkey.QUESTION.replace(" The pass key is", " Answer in JSON.")
    prompt = passkey.build(LENGTH - 40, 0.5, lambda t: len(llm_12k.tokenize(t)), key="48213")
    text = prompt.text[:-len(passkey.QUESTION)] + question + "\n"
    schema = {"type": "object", "properties": {"pass_key": {"type": "integer"}}, "required": ["pass_key"],
              "additionalProperties": False}
    out = llm_12k.create_completion(text, max_tokens=40, temperature=0, response_format={
        "type": "json_schema", "json_schema": {"name": "key", "schema": schema, "strict": True}})
    assert len(llm_12k.tokenize(text)) > llm_12k.n_ctx_train()
    answer = json.loads(out["choices"][0]["text"])
    jsonschema.validate(answer, schema)
    assert answer["pass_key"] == 48213


def test_sampler_chain_and_logprobs_on_the_real_model(llm_12k):
    messages = [{"role": "user", "content": "Name three colors."}]
    a = llm_12k.create_chat_completion(messages, max_tokens=16, temperature=0.8, seed=5, presence_penalty=0.5,
                                       logprobs=True, top_logprobs=2)
    b = llm_12k.create_chat_completion(messages, max_tokens=16, temperature=0.8, seed=5, presence_penalty=0.5)
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
    assert len(a["choices"][0]["logprobs"]["content"]) == a["usage"]["completion_tokens"]
