"""The server's prompt cache (--prompt-cache-dir, shared by slots and by later runs) and
llama-server's slot actions (--slot-save-path; POST /slots/{id}?action=save|restore|erase),
on a tiny model beyond its trained window."""

import httpx
import pytest

from selfextend_gguf import Llama
from server_process import ServerProcess

N_CTX = 2048
DOC = "The quick brown fox jumps over the lazy dog; " * 25


def complete(server, prompt):
    r = httpx.post(server.url + "/v1/completions", json={"prompt": prompt, "max_tokens": 8, "temperature": 0},
                   timeout=300)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


def evaluated(server, slot=None):
    slots = server.health()["slots"]
    if slot is None:
        return max(slots, key=lambda s: s["n_cached"])["last_evaluated"]
    return slots[slot]["last_evaluated"]


@pytest.fixture(scope="module")
def expected(tiny_llama_512):
    llm = Llama(str(tiny_llama_512.path), n_ctx=N_CTX, n_threads=1)
    return lambda prompt: llm.create_completion(prompt, max_tokens=8, temperature=0)["choices"][0]["text"]


def test_a_second_run_on_the_same_document_evaluates_only_its_question(tiny_llama_512, tmp_path, expected):
    args = ("--model", str(tiny_llama_512.path), "--n-ctx", str(N_CTX), "--threads", "1",
            "--prompt-cache-dir", str(tmp_path / "cache"))
    first = ServerProcess(*args)
    try:
        complete(first, DOC + "Question one?")
        assert evaluated(first) > 1000
    finally:
        first.stop()
    assert list((tmp_path / "cache").glob("*.sgpc"))
    second = ServerProcess(*args)
    try:
        assert complete(second, DOC + "Question two?") == expected(DOC + "Question two?")
        assert evaluated(second) < 20
    finally:
        second.stop()


@pytest.fixture(scope="module")
def slots_server(tiny_llama_512, tmp_path_factory):
    folder = tmp_path_factory.mktemp("slots")
    srv = ServerProcess("--model", str(tiny_llama_512.path), "--n-ctx", str(N_CTX), "--threads", "1",
                        "--parallel", "2", "--slot-save-path", str(folder))
    srv.folder = folder
    yield srv
    srv.stop()


def slot_action(server, slot, action, filename=None):
    body = {} if filename is None else {"filename": filename}
    return httpx.post(f"{server.url}/slots/{slot}", params={"action": action}, json=body, timeout=300)


def test_slot_save_erase_restore_round_trip(slots_server, expected):
    complete(slots_server, DOC + "One?")
    slot = max(slots_server.health()["slots"], key=lambda s: s["n_cached"])["id"]
    other = 1 - slot
    saved = slot_action(slots_server, slot, "save", "doc.bin")
    assert saved.status_code == 200, saved.text
    assert saved.json()["n_saved"] > 1000 and (slots_server.folder / "doc.bin").exists()
    erased = slot_action(slots_server, slot, "erase")
    assert erased.json()["n_erased"] == saved.json()["n_saved"]
    restored = slot_action(slots_server, other, "restore", "doc.bin")
    assert restored.status_code == 200, restored.text
    assert restored.json()["n_restored"] == saved.json()["n_saved"]
    assert complete(slots_server, DOC + "Two?") == expected(DOC + "Two?")
    assert evaluated(slots_server, other) < 20      # it went to the restored slot


@pytest.mark.parametrize("filename", ["../x", "/etc/passwd", "a/b", "..", ".hidden", ""])
def test_slot_file_names_are_checked(slots_server, filename):
    r = slot_action(slots_server, 0, "save", filename)
    assert r.status_code == 400 and "filename" in r.json()["error"]["message"]


def test_restoring_a_foreign_or_missing_file_is_a_400(slots_server):
    (slots_server.folder / "junk.bin").write_bytes(b"SEGGUFPC" + b"\0" * 100)
    for name in ("junk.bin", "missing.bin"):
        r = slot_action(slots_server, 0, "restore", name)
        assert r.status_code == 400, r.text
    assert slots_server.health()["status"] == "ok"
    r = slot_action(slots_server, 7, "erase")
    assert r.status_code == 400 and "no slot 7" in r.json()["error"]["message"]
