"""The app surface on the default model, SmolLM2-135M-Instruct, for real: Self-Extend
stays on under grammars, JSON schemas and the sampler chain (minutes on 2 cores)."""

import json

import pytest

from selfextend_gguf import Llama
from selfextend_gguf.eval import passkey

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
    """Asking for logprobs does not change what is sampled. Both calls evaluate the prompt
    from an empty cache: a second call that reused the first one's prefix would evaluate
    its last token alone, and on this quantized model that alone moves logits by tenths
    (rounding in another batch split, amplified by the quantized activations: measured on
    an AVX2 build, where the sample changed), which is not what this test is about."""
    messages = [{"role": "user", "content": "Name three colors."}]
    llm_12k.reset()
    a = llm_12k.create_chat_completion(messages, max_tokens=16, temperature=0.8, seed=5, presence_penalty=0.5,
                                       logprobs=True, top_logprobs=2)
    llm_12k.reset()
    b = llm_12k.create_chat_completion(messages, max_tokens=16, temperature=0.8, seed=5, presence_penalty=0.5)
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
    assert len(a["choices"][0]["logprobs"]["content"]) == a["usage"]["completion_tokens"]


def test_llama_cpp_calls_on_the_default_model(tmp_path):
    """The calls a llama_cpp user makes first, on the real model (short context)."""
    import chat_templates as ct

    llm = Llama(n_ctx=2048, use_mmap=True, use_mlock=False, main_gpu=0, tensor_split=None, chat_format=None,
                last_n_tokens_size=64)
    out = llm("Q: Name the planets in the solar system? A: ", max_tokens=24, stop=["Q:", "\n"], echo=True,
              logprobs=2, presence_penalty=0.3, frequency_penalty=0.2, typical_p=0.9, seed=1)
    assert out["choices"][0]["text"].startswith("Q: Name the planets")
    assert len(out["choices"][0]["logprobs"]["tokens"]) > 10
    assert llm.create_completion("Hello", max_tokens=8, mirostat_mode=2, seed=1)["choices"][0]["text"]
    with pytest.raises(ValueError, match="fill-in-the-middle"):   # SmolLM2's GGUF has no FIM tokens
        llm.create_completion("def add(a, b):", suffix="return c")
    chat = llm.create_chat_completion(
        [{"role": "system", "content": "Reply in JSON."},
         {"role": "user", "content": [{"type": "text", "text": "Give a name and an age."}]}],
        response_format={"type": "json_schema", "json_schema": {"name": "p", "strict": True, "schema": {
            "type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                             "age": {"type": "integer", "minimum": 0, "maximum": 120}},
            "required": ["name", "age"]}}}, max_tokens=64, temperature=0)
    person = json.loads(chat["choices"][0]["message"]["content"])
    assert set(person) == {"name", "age"}
    hermes = Llama(n_ctx=4096, chat_template=ct.template(ct.HERMES))
    out = hermes.create_chat_completion(
        [{"role": "user", "content": "What is the weather in Paris?"}], tools=[{
            "type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                             "parameters": {"type": "object", "properties": {
                                                 "city": {"type": "string"}}, "required": ["city"]}}}],
        tool_choice="auto", max_tokens=96, temperature=0)
    message = out["choices"][0]["message"]
    for call in message.get("tool_calls") or []:
        assert call["function"]["name"] == "get_weather" and "city" in json.loads(call["function"]["arguments"])
    vectors = Llama(n_ctx=512, embedding=True, pooling_type="mean").embed(["a cat", "a dog"])
    assert len(vectors) == 2 and len(vectors[0]) == llm.n_embd()
