// Hooks that the patched llama.cpp sources call (see patches/README.md).
// Everything behind them lives in csrc/; the patches only add these call sites.
#pragma once

#include <cstdint>

struct ggml_context;
struct ggml_tensor;
struct llama_cparams;
struct llm_graph_context;
class  llama_kv_cache;
class  llama_kv_cache_context;
class  llm_graph_result;
class  llm_graph_input_self_extend;

// What Self-Extend reads from a KV-cache attention input: llama.cpp's plain one, or the
// global (non-sliding-window) half of its iSWA one. The tensors are the input's own.
struct llama_se_attn_source {
    const llama_kv_cache_context * mctx;    // the cache of the layers that Self-Extend serves
    ggml_tensor * kq_mask;                  // the KQ mask over that cache
    ggml_tensor * k_idxs;                   // where this ubatch's keys are stored
    ggml_tensor * k_rot;                    // Hadamard rotation of a quantized K cache, or nullptr
};

// Creates and registers this graph's Self-Extend inputs (positions and the neighbor
// selection) for a KV-cache attention input; nullptr when Self-Extend is off.
llm_graph_input_self_extend * llama_se_build_inp(const llm_graph_context & gctx, const llama_se_attn_source & src);

// The key that layer il stores in the KV cache for this ubatch: Self-Extend layers
// cache grouped keys R(p//G - p) k_roped (se-graph.cpp states the layout); other layers,
// and graphs without Self-Extend, k_roped itself. Called before any Hadamard rotation.
ggml_tensor * llama_se_key_to_store(const llm_graph_context & gctx, llm_graph_input_self_extend * se,
                                    ggml_tensor * k_roped, int il);

// Exact Self-Extend attention for layer il, or nullptr when it does not apply to this
// layer or graph (the caller then runs the stock attention). It applies to every layer
// whose key llama_se_key_to_store grouped.
//   q_roped: this ubatch's queries roped at their true positions, before any Hadamard rotation
//   q, k, v: what the stock path would use (k, v are views of the KV cache)
ggml_tensor * llama_se_build_attn(
        const llm_graph_context     & gctx,
        llm_graph_input_self_extend * se,
        ggml_tensor * q_roped,
        ggml_tensor * q,
        ggml_tensor * k,
        ggml_tensor * v,
        ggml_tensor * kq_mask,
        ggml_tensor * kq_b,
        ggml_tensor * sinks,
        float         kq_scale,
        int           il);

// The K-shift (after seq_add/seq_div) of a cache whose Self-Extend layers hold grouped
// keys: llama_se_build_shift_inp adds the graph's input of grouped-position deltas
// (nullptr when Self-Extend is off or no layer of kv takes it), and llama_se_build_shift
// moves layer il's keys k (llama.cpp's view of the roped dims of every cell) by them, or
// returns nullptr for a layer that llama.cpp's own K-shift moves.
ggml_tensor * llama_se_build_shift_inp(const llama_kv_cache & kv, llm_graph_result * res, ggml_context * ctx,
                                       const llama_cparams & cparams);
ggml_tensor * llama_se_build_shift(const llama_kv_cache & kv, ggml_context * ctx, const llama_cparams & cparams,
                                   ggml_tensor * k, ggml_tensor * shift, ggml_tensor * k_rot, int il);

// Extra graph nodes that Self-Extend adds (llama_context::graph_max_nodes).
uint32_t llama_se_graph_extra_nodes(const llama_cparams & cparams, uint32_t n_layer);
