// The ways Self-Extend's attention is built (se-plan.h chooses one per graph, se-graph.cpp
// calls it), each in a file of its own, and the graph helpers they share.
//   se-form-logits.cpp        the logit form
//   se-form-grouped-flash.cpp one stock flash attention over doubled heads (a GPU)
//   se-form-cpu-flash.cpp     Self-Extend's CPU flash kernel (se-flash-cpu.h)
//   se-capture.cpp            the per-layer capture (an eval callback's view)
#pragma once

#include "se-access.h"
#include "se-arch-rules.h"
#include "se-graph-input.h"
#include "se-rotation.h"

#include "llama-graph.h"
#include "llama-impl.h"
#include "llama-kv-cache.h"
#include "llama-model.h"

#include "ggml-backend.h"

namespace llama_se_ops {

inline const llama_model & model_of(const llm_graph_input_self_extend * se) {
    return llama_se_access::model(llama_se_access::cache(*se->attn.mctx));
}

// x [d, heads, n] turned by the position deltas `pos` with layer il's RoPE (se-rotation.h)
inline ggml_tensor * rope_delta(const llm_graph_context & g, const llm_graph_input_self_extend * se, ggml_tensor * x,
                         ggml_tensor * pos, int il) {
    return llama_se_turn(g.ctx0, x, pos, model_of(se), g.cparams, il, /*whole_heads =*/ true, /*inplace =*/ false);
}

// Cached keys [d, heads_kv, n, n_stream] rotated per cell by `delta` (I32 [n*n_stream]),
// in f32 and outside the Hadamard rotation of a quantized cache: the normal keys derived
// from grouped ones, with no rounding beyond the cache's own.
inline ggml_tensor * rotate_cached_keys(const llm_graph_context & g, const llm_graph_input_self_extend * se, ggml_tensor * k,
                                 ggml_tensor * delta, int il) {
    ggml_tensor * k_rot = se->attn.k_rot;
    // one row per cell where the cells are contiguous (ggml splits a copy's rows between threads)
    ggml_tensor * x = ggml_is_contiguous(k) ? ggml_reshape_2d(g.ctx0, k, k->ne[0]*k->ne[1], k->ne[2]*k->ne[3]) : k;
    x = ggml_cast(g.ctx0, x, GGML_TYPE_F32);
    if (k_rot) {
        x = llama_mul_mat_hadamard(g.ctx0, ggml_reshape_4d(g.ctx0, x, k->ne[0], k->ne[1], k->ne[2], k->ne[3]), k_rot); // H^2 = I
    }
    x = ggml_reshape_3d(g.ctx0, x, k->ne[0], k->ne[1], k->ne[2]*k->ne[3]);
    x = rope_delta(g, se, x, delta, il);
    g.cb(x, "se_k_derived", il);
    return ggml_reshape_4d(g.ctx0, x, k->ne[0], k->ne[1], k->ne[2], k->ne[3]);
}

// Split [d, heads, n_tokens] into [d, heads, n_tps, n_stream] and order it for mul_mat.
inline ggml_tensor * split_streams(ggml_context * ctx, ggml_tensor * x, int64_t n_stream) {
    x = ggml_view_4d(ctx, x, x->ne[0], x->ne[1], x->ne[2]/n_stream, n_stream,
            x->nb[1], x->nb[2], x->nb[2]*(x->ne[2]/n_stream), 0);
    return ggml_permute(ctx, x, 0, 2, 1, 3);
}

// Cells [first, first + n) of every stream of a K or V view [d, heads_kv, n_kv, n_stream].
inline ggml_tensor * key_cells(ggml_context * ctx, ggml_tensor * k, int64_t first, int64_t n) {
    return ggml_view_4d(ctx, k, k->ne[0], k->ne[1], n, k->ne[3], k->nb[1], k->nb[2], k->nb[3], first*k->nb[2]);
}

// logits [n_kv, n_tps, n_head, n_stream] of keys [d, heads_kv, n_kv, n_stream] and
// queries [d, heads, n_tokens], accumulated in f32 as in llama.cpp's attention
inline ggml_tensor * logits_of(ggml_context * ctx, ggml_tensor * keys, ggml_tensor * queries, int64_t n_stream) {
    ggml_tensor * kq = ggml_mul_mat(ctx, ggml_permute(ctx, keys, 0, 2, 1, 3), split_streams(ctx, queries, n_stream));
    ggml_prec_set_acc(kq, GGML_PREC_F32);
    return kq;
}

// The columns [first, first + n) of logits [n_kv, n_tps, n_head, n_stream].
inline ggml_tensor * logit_cols(ggml_context * ctx, ggml_tensor * x, int64_t first, int64_t n) {
    return ggml_view_4d(ctx, x, n, x->ne[1], x->ne[2], x->ne[3], x->nb[1], x->nb[2], x->nb[3],
                        first*ggml_element_size(x));
}

}  // namespace llama_se_ops

// logits merged over the band (q with the near cells' normal keys k_near, q_g with the
// cached grouped keys k_g), one softmax, times the values: [d*n_head, n_tokens]
ggml_tensor * llama_se_attn_logits(const llm_graph_context & g, llm_graph_input_self_extend * se, ggml_tensor * k_g,
                                   ggml_tensor * k_near, ggml_tensor * v, ggml_tensor * q, ggml_tensor * q_g,
                                   ggml_tensor * kq_mask, ggml_tensor * sinks, float kq_scale, int il);

// one flash attention over doubled heads (stock ops)
ggml_tensor * llama_se_attn_grouped_flash(const llm_graph_context & g, llm_graph_input_self_extend * se,
                                          ggml_tensor * k_g, ggml_tensor * k_near, ggml_tensor * v,
                                          ggml_tensor * q, ggml_tensor * q_g, ggml_tensor * sinks, float kq_scale,
                                          int il);

// Self-Extend's CPU flash kernel; turn: the turn table of llama_se_cpu_flash_turn_table
// (k_near is then not used), or nullptr
ggml_tensor * llama_se_attn_cpu_flash(const llm_graph_context & g, llm_graph_input_self_extend * se,
                                      ggml_tensor * k_g, ggml_tensor * k_near, ggml_tensor * turn, ggml_tensor * v,
                                      ggml_tensor * q, ggml_tensor * q_g, ggml_tensor * sinks, float kq_scale, int il);

// The turn table with which the CPU kernel turns layer il's near keys itself, or nullptr
// where the near keys are derived (another form, or a layer the kernel cannot turn)
ggml_tensor * llama_se_cpu_flash_turn_table(const llm_graph_context & g, llm_graph_input_self_extend * se, int il);

// With an eval callback set: plain f32 copies of what layer il's attention computed from and gave
void llama_se_capture_layer(const llm_graph_context & g, ggml_tensor * q_roped, ggml_tensor * k_true,
                            ggml_tensor * v, ggml_tensor * out, float kq_scale, int il);
