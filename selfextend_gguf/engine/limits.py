"""Combinations that the pinned llama.cpp aborts on instead of reporting an error,
refused here before a context is made (users get an exception, never an abort)."""

from __future__ import annotations

# architecture -> why flash attention cannot be used with it
_NO_FLASH_ATTN = {
    # plm.cpp hands V to the cache as one 2-D row per token; the flash-attention layout of
    # the V cache (not transposed) then fails ggml_set_rows' shape assertion
    "plm": "the pinned llama.cpp's PLM graph aborts when storing values with flash attention on",
}


def flash_attn_for(arch: str, flash_attn_type: int) -> int:
    """The flash-attention setting (llama_flash_attn_type) this architecture can take:
    auto becomes off where the pinned llama.cpp would abort, on is refused there."""
    if arch in _NO_FLASH_ATTN:
        if flash_attn_type == 1:
            raise ValueError(f"flash_attn=True is not available for architecture {arch!r}: "
                             f"{_NO_FLASH_ATTN[arch]}; use flash_attn=False or 'auto'")
        return 0
    return flash_attn_type
