"""The chat command: KV reuse across turns (ChatSession), and the interactive CLI driven
through a pseudo-terminal, including Ctrl-C during a reply."""

import json
import signal
import sys

import pexpect
import pytest

from selfextend_gguf import Llama
from selfextend_gguf.cli.chat import ChatSession
from selfextend_gguf.engine.prefix import common_prefix_length


def test_second_turn_evaluates_only_new_tokens(tiny_llama_512, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("A document about nothing in particular. " * 20)
    llm = Llama(str(tiny_llama_512.path), n_ctx=4096)
    session = ChatSession(llm, document_path=str(doc), max_tokens=8, temperature=0)
    first = "".join(session.send("What is it about?"))
    turn1_prompt = len(llm.tokenize(llm.format_chat(session.messages[:-1]), special=True))
    assert session.last_evaluated_tokens == turn1_prompt    # nothing cached yet

    cached = list(llm.input_ids)
    "".join(session.send("And then?"))
    prompt2 = llm.tokenize(llm.format_chat(session.messages[:-1]), special=True)
    expected_new = len(prompt2) - common_prefix_length(cached, prompt2)
    assert session.last_evaluated_tokens == expected_new
    assert expected_new < len(prompt2) / 10, (expected_new, len(prompt2))
    assert session.messages[-2] == {"role": "user", "content": "And then?"}
    assert session.messages[-3]["content"] == first
    assert "Document (doc.txt)" in session.messages[0]["content"]


def test_save_load_reset(tiny_llama_512, tmp_path):
    llm = Llama(str(tiny_llama_512.path), n_ctx=1024)
    session = ChatSession(llm, system="Be brief.", max_tokens=4, temperature=0)
    "".join(session.send("Hi"))
    path = tmp_path / "chat.json"
    session.save(str(path))
    saved = json.loads(path.read_text())["messages"]
    assert [m["role"] for m in saved] == ["system", "user", "assistant"]
    session.reset()
    assert session.messages == [{"role": "system", "content": "Be brief."}]
    session.load(str(path))
    assert session.messages == saved
    (tmp_path / "bad.json").write_text('{"nope": 1}')
    with pytest.raises(ValueError, match="not a saved conversation"):
        session.load(str(tmp_path / "bad.json"))


# pexpect needs a timeout; this one only stops a hung chat from blocking the run. It is
# generous because a loaded machine (a benchmark beside the tests) can take minutes.
HANG_GUARD_S = 900


def spawn_chat(model_path, *extra):
    child = pexpect.spawn(sys.executable, ["-m", "selfextend_gguf", "chat", "--model", str(model_path),
                                           "--threads", "1", *extra],
                          encoding="utf-8", timeout=HANG_GUARD_S,
                          # a shell starting the tests in the background ignores SIGINT, and the
                          # child would inherit that: give it a terminal user's Ctrl-C
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    child.expect("commands: /reset")
    child.expect("> ")
    return child


def test_chat_cli_commands(tiny_llama_512, tmp_path):
    child = spawn_chat(tiny_llama_512.path, "--n-ctx", "2048", "-n", "5", "--temp", "0", "--status")
    child.sendline("Hello")
    child.expect(r"\[\d+/2048 tokens, trained 512; Self-Extend G=\d+ W=\d+; last turn evaluated \d+ new tokens\]")
    child.expect("> ")
    save = tmp_path / "t.json"
    child.sendline(f"/save {save}")
    child.expect("saved to")
    child.expect("> ")
    child.sendline("/reset")
    child.expect("conversation cleared")
    child.expect("> ")
    child.sendline(f"/load {save}")
    child.expect("loaded")
    child.expect("> ")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert [m["role"] for m in json.loads(save.read_text())["messages"]] == ["user", "assistant"]


def test_ctrl_c_stops_the_reply_not_the_session(tiny_llama_512):
    # a reply long enough to interrupt: up to 3500 tokens
    child = spawn_chat(tiny_llama_512.path, "--n-ctx", "4096", "-n", "3500", "--temp", "0", "--ignore-eos")
    child.sendline("Talk for a long time")
    child.expect("Talk for a long time\r\n")   # the terminal's echo of the input
    child.expect(r"\S")                        # the reply has started streaming
    child.sendintr()
    child.expect(r"\(stopped\)")
    child.expect("> ")
    child.sendline("/status")
    child.expect(r"\[(\d+)/4096 tokens")
    assert int(child.match.group(1)) < 3500
    child.expect("> ")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
