"""Self-Extend against vanilla attention with every layer on a Vulkan device, measured in
one run: prefill of 2,048 tokens of the default model and 16 decode steps after it, flash
attention off and on. Self-Extend is forced on (G = 4, W = 512) so that most of the
prompt is beyond the window although it fits the model's trained context. On Mesa's
lavapipe (a Vulkan device that runs on the CPU) the ratios are the relative cost of the
ops there, not GPU speed. A short length because lavapipe prefills the default model at
about 10-30 tokens/s on 2 cores; `scripts/check_vulkan.sh` measures 8k.

    GGML_VK_VISIBLE_DEVICES=0 .venv-vulkan/bin/python bench/vulkan_relative_cost.py
"""

import time

from selfextend_gguf import Llama

TEXT = b" ".join(b"Line %d: the grass is green and the sky is blue." % i for i in range(400))
N_PROMPT, N_DECODE = 2048, 16


def measure(flash: bool, **settings):
    llm = Llama(n_ctx=4096, n_gpu_layers=-1, flash_attn=flash, verbose=False, **settings)
    tokens = llm.tokenize(TEXT)[:N_PROMPT]
    start = time.time()
    llm.eval(tokens)
    prefill = len(tokens) / (time.time() - start)
    start = time.time()
    for _ in range(N_DECODE):
        llm.eval([42])
    return prefill, N_DECODE / (time.time() - start)


def main():
    print("| flash | vanilla prefill tok/s | Self-Extend | ratio | vanilla decode tok/s | Self-Extend | ratio |")
    print("|---|---|---|---|---|---|---|")
    for flash in (False, True):
        vp, vd = measure(flash, group_size=1)
        sp, sd = measure(flash, group_size=4, neighbor_window=512)
        print(f"| {'on' if flash else 'off'} | {vp:.1f} | {sp:.1f} | {sp / vp:.2f}x | {vd:.2f} | {sd:.2f} "
              f"| {sd / vd:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
