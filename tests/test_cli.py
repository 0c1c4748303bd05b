"""The command line, run as users run it: `python -m selfextend_gguf ...` in a subprocess."""

import json
import subprocess
import sys

import pytest

from selfextend_gguf.settings.self_extend import choose


def cli(*args, input_text=None):
    return subprocess.run([sys.executable, "-m", "selfextend_gguf", *args], input=input_text,
                          capture_output=True, text=True, timeout=600)


def test_passkey_json(tiny_llama_512):
    result = cli("passkey", "--model", str(tiny_llama_512.path), "--length", "1500", "--depth", "0.3",
                 "--json", "--threads", "2")
    assert result.returncode == 0, result.stderr   # 0 whether or not the key was found
    report = json.loads(result.stdout)
    assert set(report) >= {"expected", "got", "found", "length", "depth"}
    assert len(report["expected"]) == 5 and report["expected"].isdigit()
    assert report["found"] == (report["got"] == report["expected"])
    assert report["depth"] == 0.3 and 1400 <= report["length"] <= 1600
    # 1500 tokens on a model trained on 512: Self-Extend was chosen automatically
    assert report["self_extend"] == list(choose(report["n_ctx"], 512))


def test_passkey_vanilla_flag_and_text_output(tiny_llama_512):
    result = cli("passkey", "--model", str(tiny_llama_512.path), "--length", "1000", "--group-size", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("expected ")
    assert "vanilla attention" in result.stderr


@pytest.mark.parametrize("source", ["--prompt", "--prompt-file", "stdin"])
def test_complete_prompt_sources(tiny_llama_512, tmp_path, source):
    args = ["complete", "--model", str(tiny_llama_512.path), "--n-ctx", "256", "-n", "5", "--temp", "0"]
    stdin = None
    if source == "--prompt":
        args += ["--prompt", "Hello"]
    elif source == "--prompt-file":
        path = tmp_path / "prompt.txt"
        path.write_text("Hello")
        args += ["--prompt-file", str(path)]
    else:
        stdin = "Hello"
    result = cli(*args, input_text=stdin)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.rstrip("\n")) > 0
    outputs = {cli("complete", "--model", str(tiny_llama_512.path), "--n-ctx", "256", "-n", "5", "--temp", "0",
                   "--prompt", "Hello").stdout}
    assert result.stdout in outputs   # same greedy text whatever the prompt source


def test_errors_exit_nonzero_with_a_message(tmp_path, tiny_llama_512):
    result = cli("passkey", "--model", str(tmp_path / "missing.gguf"), "--length", "100")
    assert result.returncode == 2
    assert "model file not found" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli("complete", "--model", str(tiny_llama_512.path), "--n-ctx", "4096",
                 "--group-size", "2", "--neighbor-window", "256", "--prompt", "x")
    assert result.returncode == 2 and "eq. 4" in result.stderr


