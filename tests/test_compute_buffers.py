"""Self-Extend's compute buffers, as llama.cpp reserves them: with flash attention they
grow with n_ctx, not with n_ubatch x n_ctx (no logit matrix), and without it they hold
one logit matrix, as vanilla attention does, not two."""

import pytest

from selfextend_gguf import Llama

N_CTX = 8192
G, W = 200, 16    # eq. 4 on the tiny model's trained context of 64: (64 - 16) * 200 + 16 >= 8192


def compute_mib(model, n_ubatch, flash, group_size):
    llm = Llama(str(model.path), n_ctx=N_CTX, n_batch=n_ubatch, n_ubatch=n_ubatch, flash_attn=flash,
                group_size=group_size, neighbor_window=W)
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
    assert se_growth < logit_growth / 4, (se_growth, logit_growth)


def test_non_flash_buffers_hold_one_logit_matrix(sizes):
    logit_matrix = N_CTX * 512 * 4 * 4 / 2**20                               # 64 MiB
    extra = sizes[False, G, 512] - sizes[False, 1, 512]
    assert extra < logit_matrix / 2, (sizes[False, G, 512], sizes[False, 1, 512])
