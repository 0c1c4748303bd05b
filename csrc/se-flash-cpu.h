// Self-Extend's flash attention on the CPU: one softmax over two key sets, each read
// with its own queries, in one pass and with no copy of the cache.
//
//   far set:  the grouped keys as cached (cells [0, n_far)) with the grouped queries
//   near set: the normal keys derived for the near cells with the roped queries
//
// The mask (F16, n_far + n_near columns, 0 or -inf) lets a query see each visible cell
// in exactly one set, so every (query, cell) costs one dot product of the head size, as
// in vanilla flash attention (the stock-op form, se-form-grouped-flash.cpp,
// doubles the head size and copies the cache per layer).
//
// The kernel is a ggml custom op (GGML_OP_CUSTOM): no ggml patch, and backends other
// than the CPU do not take it, so se-plan.cpp chooses it only where the layer's K and V
// cache is in host memory. It is compiled into ggml's CPU backend (CMakeLists.txt) so
// that it uses that backend's SIMD helpers and architecture flags.
#pragma once

#include "ggml.h"

#include <cstdint>

struct llama_se_flash_params {
    float   scale;    // kq_scale
    float   softcap;  // logit soft-capping (0: none)
    int64_t n_far;    // the far set's cells (0: no far set; its sources repeat the near set's)
    bool    tiled;    // many queries: tiles of queries against tiles of cells
    int64_t n_chunks; // few queries: the cells split into this many parts, one task each
    // The near set's keys turned here (source 8, the turn table): its keys are then the
    // cached grouped keys of the near cells, and the kernel turns each by the cell's
    // delta j - j/G as it reads it, with the cos and sin of that turn from the table
    // (one row per cell: ggml's rope of a unit vector, so the angles are ggml's own).
    // 0: the near keys come derived (no table).
    int32_t turn_n_rot;
    bool    turn_neox;  // pairs (i, i + n_rot/2) as GGML_ROPE_TYPE_NEOX; else (2i, 2i + 1)
};

// How to split the work: tiles for many queries per head; for few, one task per stream
// (all its queries and heads together: each cell is read once for them), with the cells
// in chunks so that there are about two tasks per thread.
inline bool llama_se_flash_tiled(int64_t n_q) {
    return n_q >= 16;
}

inline void llama_se_flash_plan(llama_se_flash_params & params, int64_t n_q, int64_t n_stream, int n_threads) {
    params.tiled    = llama_se_flash_tiled(n_q);
    params.n_chunks = 1;
    if (!params.tiled && n_stream < 2*(int64_t) n_threads) {
        params.n_chunks = (2*(int64_t) n_threads + n_stream - 1) / n_stream;
    }
}

// dst [DV, n_head, n_q, n_stream] F32, as ggml_flash_attn_ext's result, or with
// n_chunks > 1 the partial softmax of each chunk, [DV + 2, n_head, n_q, n_stream*n_chunks]
// (M, S, then the weighted values), for llama_se_flash_reduce_cpu. Sources:
//   0 q_far  [DK, n_q, n_head, n_stream] F32     3 q_near  (the same shape)
//   1 k_far  [DK, n_far, n_head_kv, n_stream]    4 k_near  [DK, n_near, n_head_kv, n_stream]
//   2 v_far  [DV, n_far, n_head_kv, n_stream]    5 v_near  [DV, n_near, n_head_kv, n_stream]
//   6 mask   F16 [n_far + n_near, n_q, 1, n_stream]
//   7 sinks  F32 [n_head] (optional: nullptr)
//   8 turn table F32 [n_rot, 1, n_near*n_stream] (with turn_n_rot > 0): per cell, the
//     cos and sin of each rotary pair, in the layout of the pairs (see turn_neox)
// userdata: a llama_se_flash_params that outlives the graph's computation.
void llama_se_flash_attn_cpu(ggml_tensor * dst, int ith, int nth, void * userdata);

// The chunks' partials combined: dst [DV, n_head, n_q, n_stream] F32; sources: 0 the
// partials, 1 sinks (optional). userdata: the same llama_se_flash_params.
void llama_se_flash_reduce_cpu(ggml_tensor * dst, int ith, int nth, void * userdata);
