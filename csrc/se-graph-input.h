// The host-filled inputs of one graph's Self-Extend attention: the position deltas, the
// selection or flash mask over the band, the constants, and the plan they were built for.
// Made by llama_se_build_inp (se-graph.cpp), filled by set_input (se-graph-input.cpp) for
// each ubatch, read by the forms (se-form-*.cpp).
#pragma once

#include "llama-se-hooks.h"
#include "se-flash-cpu.h"
#include "se-plan.h"

#include "llama-graph.h"

#include <deque>
#include <vector>

// Host-filled inputs of one graph. Shapes follow the KQ mask of the same attention input.
class llm_graph_input_self_extend : public llm_graph_input_i {
public:
    llm_graph_input_self_extend(const llama_se_attn_source & attn, int32_t n_group, int32_t n_window)
        : attn(attn), n_group(n_group), n_window(n_window) {}

    void set_input(const llama_ubatch * ubatch) override;

    // a graph's shape depends on the ubatch's positions (the band): never reused
    bool can_reuse(const llm_graph_params & params) override {
        GGML_UNUSED(params);
        return false;
    }

    ggml_tensor * delta_k_new = nullptr; // I32 [n_tokens]  dk(i) = i/G - i: the ubatch's keys to grouped ones
    ggml_tensor * delta_q     = nullptr; // I32 [n_tokens]  dq(i) per ubatch token; nullptr when no cell is far

    // the band and the form, chosen once for the graph (se-plan.h)
    llama_se_plan plan;

    // normal keys derived for cells [near_begin, n_kv) of every stream: j - j/G per cell
    // (0 for empty cells)
    ggml_tensor * delta_near = nullptr;  // I32 [(n_kv - near_begin)*n_stream]

    // the selection between the two logits over cells [near_begin, far_end):
    // [far_end - near_begin, n_tps, 1, n_stream], 1 in near where i - j < W, far = 1 - near
    ggml_tensor * near    = nullptr;
    ggml_tensor * far     = nullptr;

    // flash attention (no logit matrix) over the far copies of cells [0, far_end)
    // followed by the near copies of cells [near_begin, n_kv): this mask says which copy
    // each query sees. With the K and V cache in CPU memory one custom op reads both sets
    // as they are (se-flash-cpu.h, cpu_flash); elsewhere one ggml flash attention over
    // doubled heads (flash_attn_grouped)
    ggml_tensor * flash_mask = nullptr; // F16 [far_end + n_kv - near_begin, n_tps, 1, n_stream]
    std::deque<llama_se_flash_params> flash_params; // the custom ops' parameters, one per layer

    // The CPU kernel turns the near cells' grouped keys itself (llama_se_flash_params):
    // the cos and sin of each cell's turn come from a table per graph and RoPE setting,
    // ggml's rope (llama_se_turn) of unit vectors [n_rot, 1, cells] (turn_units, filled
    // here: (1, 0) in each rotary pair). Layers with one setting share one table.
    struct turn_table {
        float base, scale;
        const ggml_tensor * factors;
        int32_t n_rot;
        ggml_tensor * table;
    };
    std::vector<turn_table> turn_tables;
    std::vector<ggml_tensor *> turn_units;
    bool turn_neox = false;

    // normal keys of every cell (j - j/G), for llama.cpp's own attention where Self-Extend
    // does not apply to a graph whose cache holds grouped keys (non-causal attention) and
    // for the per-layer capture (an eval callback)
    ggml_tensor * delta_all = nullptr;  // I32 [n_kv*n_stream]

    // constant inputs shared by the layers (a layer whose shapes need a larger one adds one):
    // the zero halves of the doubled keys, and the unit queries of sum_values_by_flash
    std::vector<ggml_tensor *> zeros;
    std::vector<ggml_tensor *> ones;
    ggml_tensor * constant(ggml_context * ctx, std::vector<ggml_tensor *> & pool, ggml_type type, int64_t n) {
        for (ggml_tensor * t : pool) {
            if (t->type == type && ggml_nelements(t) >= n) {
                return t;
            }
        }
        ggml_tensor * t = ggml_new_tensor_1d(ctx, type, n);
        ggml_set_input(t);
        pool.push_back(t);
        return t;
    }

    const llama_se_attn_source attn;
    const int32_t n_group;
    const int32_t n_window;

private:
    void set_flash_mask(const llama_ubatch * ubatch);
    void set_constants();
    void set_cell_deltas(ggml_tensor * t, int64_t first, const llama_ubatch * ubatch, int64_t n_tps);
};
