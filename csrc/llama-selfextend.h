// Public C API of exact Self-Extend (Jin et al., ICML 2024) for llama.cpp contexts.
// New symbols only: llama.h and its structs are unchanged.
#pragma once

#include "llama.h"

#ifdef __cplusplus
extern "C" {
#endif

enum llama_self_extend_status {
    LLAMA_SE_OK              =  0,
    LLAMA_SE_ERR_NULL        = -1, // ctx or model is NULL
    LLAMA_SE_ERR_GROUP       = -2, // n_group < 1
    LLAMA_SE_ERR_WINDOW      = -3, // n_window < 1, or too large
    LLAMA_SE_ERR_ROPE        = -4, // the model has no plain RoPE (none, M-RoPE, ALiBi, ...)
    LLAMA_SE_ERR_ARCH        = -5, // no layer can take it (architecture not served, or all layers sliding-window/unroped)
    LLAMA_SE_ERR_MEMORY      = -6, // the context's memory is not a plain KV cache
    LLAMA_SE_ERR_RESERVE     = -7, // re-reserving compute buffers failed; settings rolled back
    LLAMA_SE_ERR_REGROUP     = -8, // the cached keys could not be turned to a new G (cache cleared, setting kept)
};

// 0 when Self-Extend can serve this model, else a negative llama_self_extend_status.
LLAMA_API int32_t llama_self_extend_supported(const struct llama_model * model);

// Why the calling thread's last llama_self_extend_supported call refused its model
// ("" after a success).
LLAMA_API const char * llama_self_extend_refusal(void);

// Turn Self-Extend on with group size n_group (G) and neighbor window n_window (W),
// or off with n_group == 0. Takes effect from the next decode. The K cache of the
// Self-Extend layers holds grouped keys (one K cache, as vanilla's); a new G turns the
// keys already cached to it before returning (one graph over the cache), so it can be
// switched at any time. A state saved with one G holds that G's keys: load it only into a
// context with the same setting (llama_get_self_extend says which). Returns a
// llama_self_extend_status.
LLAMA_API int32_t llama_set_self_extend(struct llama_context * ctx, int32_t n_group, int32_t n_window);

// The active settings (0, 0 when off).
LLAMA_API void llama_get_self_extend(const struct llama_context * ctx, int32_t * n_group, int32_t * n_window);

LLAMA_API const char * llama_self_extend_strerror(int32_t status);

// Whether the context runs flash attention: with LLAMA_FLASH_ATTN_TYPE_AUTO, what
// llama.cpp resolved when it created the context (on where the devices of the layers
// take it). Self-Extend layers then take their flash forms where the device does.
LLAMA_API bool llama_se_flash_attn(const struct llama_context * ctx);

#ifdef __cplusplus
}
#endif
