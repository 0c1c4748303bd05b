// The grouped-key cache: K_g(j) = R(j//G - j) K(j) for the cells j of llama.cpp's KV
// cache, kept beside it.
//
// A grouped key depends only on its cell (its key and its position), never on the query,
// so it is derived once, when the cell is written, instead of rotating every cached key
// at every token. One tensor per Self-Extend layer, with the K cache's shape, type and
// buffer type (+50% KV memory with an f16 cache).
//
// The KV cache stays the truth. Each stored grouped key remembers the position it was
// derived for; a graph re-derives, from the cached key, every visible cell whose
// position differs (after seq_add/seq_div and the K-shift, or a never-written cell).
// Operations that change a cell's key but not its position (state load, a copy between
// streams, an aborted decode) call invalidate(). seq_rm needs nothing: a freed cell is
// written again before it is seen.
#pragma once

#include "llama.h"

#include <cstdint>
#include <memory>
#include <vector>

struct ggml_context;
struct ggml_tensor;
class  llama_kv_cache;

struct llama_se_grouped_keys {
    int32_t  n_group  = 0;
    uint32_t kv_size  = 0;
    uint32_t n_stream = 0;

    // by model layer: [n_embd_k_gqa, kv_size, n_stream], nullptr for layers without one
    std::vector<ggml_tensor *> layers;

    // [stream][cell]: the position the stored grouped key was derived for, -1 for none
    std::vector<std::vector<llama_pos>> derived_pos;

    llama_se_grouped_keys() = default;
    llama_se_grouped_keys(const llama_se_grouped_keys &) = delete;
    llama_se_grouped_keys & operator=(const llama_se_grouped_keys &) = delete;
    ~llama_se_grouped_keys();

    // every stored grouped key must be derived again before it is used
    void invalidate();

    bool is_current(uint32_t stream, uint32_t cell, llama_pos pos) const {
        return derived_pos[stream][cell] == pos;
    }

    size_t size_bytes() const;

    // what owns the tensors (one context and one buffer per buffer type of the K cache)
    std::vector<ggml_context *>          contexts;
    std::vector<struct ggml_backend_buffer *> buffers;
};

// A grouped-key cache for the Self-Extend layers of kv (those with RoPE and full
// attention), zero-filled; nullptr if the buffers cannot be allocated.
std::shared_ptr<llama_se_grouped_keys> llama_se_grouped_keys_init(const llama_kv_cache & kv, int32_t n_group);
