"""Self-Extend's compute buffers, as llama.cpp reserves them: with flash attention they
grow with n_ctx, not with n_ubatch x n_ctx (no logit matrix), and without it they hold
one logit matrix, as vanilla attention does, not two. They are sized when the context is
made and do not grow while it runs."""

import pytest

from offload import N_GPU_LAYERS
from selfextend_gguf import Llama

N_CTX = 8192
G, W = 200, 16    # eq. 4 on the tiny model's trained context of 64: (64 - 16) * 200 + 16 >= 8192


def compute_mib(model, n_ubatch, flash, group_size):
    llm = Llama(str(model.path), n_ctx=N_CTX, n_batch=n_ubatch, n_ubatch=n_ubatch, flash_attn=flash,
                group_size=group_size, neighbor_window=W, n_gpu_layers=N_GPU_LAYERS)
    assert (llm.self_extend is not None) == (group_size > 1)
    return sum(parts["compute"] for parts in llm.memory_breakdown().values()) / 2**20


@pytest.fixture(scope="module")
def sizes(tiny_llama):
    return {(flash, g, ub): compute_mib(tiny_llama, ub, flash, g)
            for flash in (False, True) for g in (1, G) for ub in (128, 512)}


def test_flash_buffers_do_not_grow_with_a_logit_matrix(sizes):
    # one logit matrix of the tiny model (4 heads, f32) over n_ctx keys, per extra ubatch row
    logit_growth = N_CTX * (512 - 128) * 4 * 4 / 2**20                       # 48 MiB
    vanilla_growth = sizes[True, 1, 512] - sizes[True, 1, 128]
    se_growth = sizes[True, G, 512] - sizes[True, G, 128]
    assert se_growth <= 1.5 * vanilla_growth, (se_growth, vanilla_growth)
    # (a device's masks and copies of them grow with n_ubatch too: vanilla's by 15 MiB on Vulkan)
    assert se_growth < logit_growth / 2, (se_growth, logit_growth)


def test_non_flash_buffers_hold_one_logit_matrix(sizes):
    logit_matrix = N_CTX * 512 * 4 * 4 / 2**20                               # 64 MiB
    extra = sizes[False, G, 512] - sizes[False, 1, 512]
    assert extra < logit_matrix / 2, (sizes[False, G, 512], sizes[False, 1, 512])


def compute_bytes(llm):
    return {buft: parts["compute"] for buft, parts in llm.memory_breakdown().items() if parts["compute"]}


@pytest.mark.parametrize("flash", [False, True], ids=["no-flash", "flash"])
def test_compute_buffers_do_not_grow_while_the_context_runs(tiny_llama, random_tokens, flash):
    """Prompts fed in uneven chunks, token by token and after a rewind take every form of
    the band; none may need more than the reservation (on a GPU that would be an
    allocation, maybe one too large, in the middle of a long prompt)."""
    llm = Llama(str(tiny_llama.path), n_ctx=256, n_batch=128, n_ubatch=64, flash_attn=flash, group_size=6,
                neighbor_window=16, n_gpu_layers=N_GPU_LAYERS)
    reserved = compute_bytes(llm)
    tokens = random_tokens(256, seed=51)
    start = 0
    for size in (1, 37, 100, 5, 64, 49):
        llm.eval(tokens[start:start + size])
        start += size
    llm.prefill(tokens[:90])                     # a rewind, then more
    for t in tokens[90:120]:
        llm.eval([t])
    assert compute_bytes(llm) == reserved
