#include "se-graph-input.h"

#include "se-access.h"
#include "se-rotation.h"

#include "llama-graph.h"
#include "llama-impl.h"
#include "llama-kv-cache.h"
#include "llama-model.h"

#include "ggml-backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace {

// dk(p) = p//G - p: the rotation from a key's true position to its grouped one
int32_t grouped_key_delta(llama_pos p, int32_t G) {
    return llama_se_cached_position(p, G) - p;
}

}  // namespace

void llm_graph_input_self_extend::set_constants() {
    for (ggml_tensor * t : zeros) {
        if (t->buffer) {
            memset(t->data, 0, ggml_nbytes(t));
        }
    }
    for (ggml_tensor * t : ones) {
        if (t->buffer) {
            GGML_ASSERT(t->type == GGML_TYPE_F32);
            std::fill((float *) t->data, (float *) t->data + ggml_nelements(t), 1.0f);
        }
    }
}

// j - j/G for cells [first, n_kv) of each stream: the rotation from a cached grouped key
// to the normal one
void llm_graph_input_self_extend::set_cell_deltas(ggml_tensor * t, int64_t first, const llama_ubatch * ubatch,
                                                  int64_t n_tps) {
    if (t == nullptr || !t->buffer) {
        return;
    }
    GGML_ASSERT(ggml_backend_buffer_is_host(t->buffer));
    const llama_kv_cache & kv = llama_se_access::cache(*attn.mctx);
    const int64_t n_kv     = attn.kq_mask->ne[0];
    const int64_t n_stream = attn.kq_mask->ne[3];
    const int64_t n        = n_kv - first;
    int32_t * data = (int32_t *) t->data;
    for (int64_t s = 0; s < n_stream; ++s) {
        const llama_kv_cells & cells = kv.get_cells(ubatch->seq_id[s*n_tps][0]);
        for (int64_t j = 0; j < n; ++j) {
            data[s*n + j] = cells.is_empty(first + j) ? 0 : -grouped_key_delta(cells.pos_get(first + j), n_group);
        }
    }
}

void llm_graph_input_self_extend::set_flash_mask(const llama_ubatch * ubatch) {
    const llama_kv_cache & kv = llama_se_access::cache(*attn.mctx);
    const int64_t n_keys   = flash_mask->ne[0];
    const int64_t n_tps    = flash_mask->ne[1];
    const int64_t n_stream = flash_mask->ne[3];
    const int64_t n_kv     = plan.near_begin + (n_keys - plan.far_end);
    const int32_t W        = n_window;
    const ggml_fp16_t keep = ggml_fp32_to_fp16(0.0f);
    const ggml_fp16_t drop = ggml_fp32_to_fp16(-INFINITY);

    ggml_fp16_t * data = (ggml_fp16_t *) flash_mask->data;
    for (int64_t i = 0; i < n_tps*n_stream; ++i) {
        // visibility as in llama.cpp's causal KQ mask: a cell of the query's sequence at a
        // position not after it; then the cell's near copy if i - j < W, else its far copy
        const llama_seq_id     seq   = ubatch->seq_id[i][0];
        const llama_kv_cells & cells = kv.get_cells(seq);
        const llama_pos        pi    = ubatch->pos[i];
        ggml_fp16_t * row_far  = data + i*n_keys;
        ggml_fp16_t * row_near = row_far + plan.far_end - plan.near_begin;
        for (int64_t j = 0; j < n_kv; ++j) {
            bool visible = !cells.is_empty(j) && cells.seq_has(j, seq) && cells.pos_get(j) <= pi;
            bool is_near = visible && pi - cells.pos_get(j) < W;
            if (j < plan.far_end) {
                row_far[j] = visible && !is_near ? keep : drop;
            }
            if (j >= plan.near_begin) {
                row_near[j] = is_near ? keep : drop;
            }
        }
    }
}

void llm_graph_input_self_extend::set_input(const llama_ubatch * ubatch) {
    set_constants();
    for (ggml_tensor * unit : turn_units) {
        if (!unit->buffer) {
            continue;
        }
        GGML_ASSERT(ggml_backend_buffer_is_host(unit->buffer));
        const int64_t n_rot = unit->ne[0];
        float * data = (float *) unit->data;
        for (int64_t row = 0; row < unit->ne[2]; ++row) {
            for (int64_t i = 0; i < n_rot; ++i) {
                const bool first_of_pair = turn_neox ? i < n_rot/2 : i % 2 == 0;
                data[row*n_rot + i] = first_of_pair ? 1.0f : 0.0f;
            }
        }
    }
    if (delta_k_new == nullptr || !delta_k_new->buffer) {
        return; // no layer of this graph used Self-Extend
    }
    GGML_ASSERT(ggml_backend_buffer_is_host(delta_k_new->buffer));

    const int32_t G = n_group;
    const int32_t W = n_window;
    const int32_t shift_q = W - llama_se_floor_div(W, G);
    const int64_t n_tokens = ubatch->n_tokens;
    const int64_t n_tps    = attn.kq_mask->ne[1];
    GGML_ASSERT(n_tps*attn.kq_mask->ne[3] == n_tokens);

    int32_t * dk_new = (int32_t *) delta_k_new->data;
    for (int64_t t = 0; t < n_tokens; ++t) {
        dk_new[t] = grouped_key_delta(ubatch->pos[t], G);
    }
    if (delta_q && delta_q->buffer) {
        int32_t * dq = (int32_t *) delta_q->data;
        for (int64_t t = 0; t < n_tokens; ++t) {
            dq[t] = llama_se_floor_div(ubatch->pos[t], G) + shift_q - ubatch->pos[t];
        }
    }
    set_cell_deltas(delta_near, plan.near_begin, ubatch, n_tps);
    set_cell_deltas(delta_all, 0, ubatch, n_tps);

    if (flash_mask && flash_mask->buffer) {
        set_flash_mask(ubatch);
    }
    if (near == nullptr || !near->buffer) {
        return;
    }
    // the selection over the band [near_begin, far_end); visibility (causality, other
    // sequences, empty cells) stays in the KQ mask
    const llama_kv_cache & kv = llama_se_access::cache(*attn.mctx);
    const int64_t n_sel = plan.far_end - plan.near_begin;
    float * f_near = (float *) near->data;
    float * f_far  = (float *) far->data;
    for (int64_t i = 0; i < n_tokens; ++i) {
        // the ubatch's streams are consecutive groups of n_tps tokens of one sequence each,
        // in the order of the K view's streams (split_equal, as for the KQ mask)
        const llama_kv_cells & cells = kv.get_cells(ubatch->seq_id[(i/n_tps)*n_tps][0]);
        const llama_pos pi = ubatch->pos[i];
        for (int64_t jj = 0; jj < n_sel; ++jj) {
            const int64_t j = plan.near_begin + jj;
            const bool is_near = cells.is_empty(j) || pi - cells.pos_get(j) < W;
            f_near[i*n_sel + jj] = is_near ? 1.0f : 0.0f;
            f_far [i*n_sel + jj] = is_near ? 0.0f : 1.0f;
        }
    }
}
