"""Which flash-attention form a Self-Extend graph takes on the CPU: the CPU kernel
(se-flash-cpu.h, a ggml custom op) for prefill tiles and for decoding, with the near keys
turned in the kernel when decoding; the stock-op form only when asked
(SELFEXTEND_GGUF_FLASH_KERNEL=stock, what a GPU takes), and the logit form for every
ubatch likewise (=logits, what a device refusing the stock-op form's shapes takes). Read from the names of the nodes
that ggml's scheduler prints (GGML_SCHED_DEBUG=2), in a child process. The results of
each form are checked against Algorithm 1 in test_reference_equivalence.py."""

import collections
import os
import re
import subprocess
import sys

import pytest

CHILD = r"""
import sys
from selfextend_gguf import Llama
llm = Llama(sys.argv[1], n_ctx=256, n_batch=128, n_ubatch=128, flash_attn=True, group_size=6, neighbor_window=16)
tokens = [3 + i % 250 for i in range(200)]
llm.eval(tokens[:190])          # prefill: ubatches of 128 and 62 queries
llm.eval(tokens[190:191])       # one decoding step
"""

NODE = re.compile(r"node #\s*\d+ \(\s*(\w+)\):\s+(\S+)")
SIZE = re.compile(r"\(\s*(\d+[KMG]?)\)")


def scheduler_log(model_path, kernel):
    env = dict(os.environ, GGML_SCHED_DEBUG="2", SELFEXTEND_GGUF_DEBUG_LOG="1")
    env.pop("SELFEXTEND_GGUF_FLASH_KERNEL", None)
    if kernel:
        env["SELFEXTEND_GGUF_FLASH_KERNEL"] = kernel
    proc = subprocess.run([sys.executable, "-c", CHILD, str(model_path)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def node_names(model_path, kernel):
    log = scheduler_log(model_path, kernel)
    names = collections.Counter()
    for line in log.splitlines():
        m = NODE.search(line)
        if m:
            names[re.sub(r"-\d+$", "", m.group(2))] += 1
    assert names, "the scheduler printed no nodes:\n" + log[-2000:]
    return names


def test_cpu_takes_the_kernel(tiny_llama):
    names = node_names(tiny_llama.path, None)
    assert names["se_flash_attn_cpu"] > 0
    assert names["se_turn_table"] > 0          # decoding: near keys turned in the kernel
    assert names["se_k_derived"] > 0           # prefill tiles: near keys derived once per graph
    assert names["se_flash_keys"] == 0         # no doubled-head copies of the cache


@pytest.mark.parametrize("kernel", ["stock", "derived", "logits"])
def test_forms_on_request(tiny_llama, kernel):
    names = node_names(tiny_llama.path, kernel)
    assert names["se_turn_table"] == 0
    assert names["se_k_derived"] > 0
    if kernel == "stock":
        assert names["se_flash_attn_cpu"] == 0
        assert names["se_flash_attn"] > 0      # ggml's flash attention over the copies
    elif kernel == "logits":
        assert names["se_flash_attn_cpu"] == 0 and names["se_flash_attn"] == 0
        assert names["se_flash_keys"] == 0
    else:
        assert names["se_flash_attn_cpu"] > 0


def test_stock_form_gives_values_the_keys_head_size(tiny_llama):
    """GPU flash kernels want equal K and V head sizes (CUDA sent the doubled-head
    keys with values of the plain head size to the CPU): the stock-op form pads the values
    with zeros to the keys' head size. Node sizes as the scheduler prints them: the flash
    attention's sources are the queries, keys, values and mask, after its own size."""
    log = scheduler_log(tiny_llama.path, "stock")
    flash = [line for line in log.splitlines() if re.search(r"\(\s*FLASH_ATTN\w*\):\s+se_flash_attn-", line)]
    assert flash
    for line in flash:
        sizes = SIZE.findall(line.split("use=")[1])
        assert len(sizes) >= 3 and sizes[1] == sizes[2], line
    assert "se_flash_values" in log


def test_unknown_form_is_refused(tiny_llama, monkeypatch):
    from selfextend_gguf import Llama
    from selfextend_gguf import _core
    monkeypatch.setenv("SELFEXTEND_GGUF_FLASH_KERNEL", "stok")
    loads = []
    real_model = _core.Model
    monkeypatch.setattr(_core, "Model", lambda *args: loads.append(args) or real_model(*args))
    with pytest.raises(ValueError, match="must be one of stock, derived, logits"):
        Llama(str(tiny_llama.path), n_ctx=256, flash_attn=True, group_size=6, neighbor_window=16)
    assert loads == [], "the variable is checked before the model is loaded"
    monkeypatch.setenv("SELFEXTEND_GGUF_FLASH_KERNEL", "stock")
    Llama(str(tiny_llama.path), n_ctx=256, flash_attn=True, group_size=6, neighbor_window=16).close()


VERBOSE_CHILD = r"""
import sys
from selfextend_gguf import Llama
llm = Llama(sys.argv[1], n_ctx=256, n_batch=128, n_ubatch=128, flash_attn=sys.argv[2] == "on", group_size=6,
            neighbor_window=16, verbose=True)
llm.eval([3 + i % 250 for i in range(128)])   # one ubatch of 128 queries: not "few"
"""


@pytest.mark.parametrize("flash, kernel, form", [
    ("on", None, "Self-Extend's CPU flash kernel"),
    ("on", "stock", "flash attention over doubled heads"),
    ("on", "logits", "attends by logits"),
    ("off", None, "attends by logits"),
])
def test_verbose_names_the_form_the_plan_chose(tiny_llama, flash, kernel, form):
    """The form is chosen once per graph (csrc/se-plan.cpp) and logged with verbose=True."""
    env = dict(os.environ)
    env.pop("SELFEXTEND_GGUF_FLASH_KERNEL", None)
    if kernel:
        env["SELFEXTEND_GGUF_FLASH_KERNEL"] = kernel
    proc = subprocess.run([sys.executable, "-c", VERBOSE_CHILD, str(tiny_llama.path), flash], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = [line for line in proc.stderr.splitlines() if "Self-Extend attends by" in line]
    assert planned and form in planned[0], proc.stderr[-3000:]
    assert all(form in line for line in planned), planned


def test_python_knows_the_forms_the_engine_knows():
    from selfextend_gguf import _core
    from selfextend_gguf.engine import context_options
    assert context_options.FLASH_KERNEL_FORMS == ("stock", "derived", "logits") == tuple(_core.FLASH_KERNEL_FORMS)
