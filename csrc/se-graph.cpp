// Exact Self-Extend attention in the llama.cpp compute graph.
//
// For a query at true position i and a key at true position j (same sequence), with
// group size G and neighbor window W (Jin et al., ICML 2024, Algorithm 1):
//   i - j <  W: logit = <R(i) q, R(j) k>                        (neighbor attention)
//   i - j >= W: logit = <R(i/G + W - W/G) q, R(j/G) k>          (grouped attention)
// followed by one softmax over all visible keys (floor divisions).
//
// The cache layout: one K cache. A Self-Extend layer stores the grouped key of each cell,
// K_g(j) = R(j/G) k, in llama.cpp's K cache (llama_se_key_to_store, before any Hadamard
// rotation of a quantized cache); other layers store normal keys as usual. A grouped key
// depends only on its cell, so a rewind, a copy between sequences or streams and a saved
// state need nothing more; the K-shift moves a cell by its grouped position,
// (j + d)/G - j/G (se-key-shift.cpp), and a new G regroups the cache there too.
//
// Because RoPE angles are linear in the position, the other vectors come by a second
// rotation:
//   q_g(i) = R(dq(i)) R(i) q,  dq(i) = i/G + W - W/G - i      (grouped queries)
//   K(j)   = R(j - j/G) K_g(j)                                (normal keys, derived)
// A ubatch derives normal keys only for the cells near some query of it: for one
// sequence whose cells hold positions 0, 1, 2, ... the last W + n_tokens cells, nothing
// O(n_ctx). The derived keys are f32 and outside any Hadamard rotation, so they pair
// with the queries as roped; the grouped logits pair the cache with q_g (Hadamard-rotated
// like the cache's keys when it is).
//
// A ubatch over one stream of cells (one sequence, or several sharing a unified cache)
// takes a banded form: cells far from every query of the ubatch need only grouped
// logits, cells near all of them only normal logits, and only a band in between needs
// both and the merge (logits = near * kq + far * kq_g, far = 1 - near). Sequences that
// copied a common prefix (a server's slots reading one document) keep it narrow too.
// Several streams take the general form: every cell's normal key derived, both logits
// merged everywhere.
//
// Ways to attend: with flash attention off, the logit form (grouped logits for every
// cell, the normal logits of the near cells written over them, one softmax, values as
// llama.cpp's non-flash attention). With flash attention on and the K and V cache in CPU
// memory, the CPU kernel (se-flash-cpu.h, a ggml custom op: the cache's cells read in
// place with the grouped queries, the near cells' normal keys with the roped queries, one
// softmax; when decoding it turns the near keys itself, so nothing is derived per layer).
// Elsewhere (a GPU) stock ops: one flash attention over doubled heads (flash_attn_grouped,
// its values padded with zeros to the doubled head size, which GPU kernels want equal to the
// keys'), or the logit form: for few queries (few_queries), whose values ggml's flash
// attention sums when decoding (sum_values_by_flash), and wherever the device holding the
// cache does not take that flash attention's shapes (device_takes_grouped_flash).
//
// Files: this one holds the hooks (llama-se-hooks.h) and runs each layer by the graph's
// plan; se-plan.cpp chooses the band (se-band.cpp) and the form once per graph;
// se-graph-input.cpp fills the inputs per ubatch; se-form-logits.cpp,
// se-form-grouped-flash.cpp and se-form-cpu-flash.cpp build the three forms;
// se-capture.cpp the per-layer capture.

#include "llama-se-hooks.h"
#include "se-arch-rules.h"
#include "se-forms.h"
#include "se-plan.h"

#include "llama-graph.h"
#include "llama-impl.h"
#include "llama-kv-cache.h"
#include "llama-model.h"

#include "ggml-backend.h"

#include <memory>

using namespace llama_se_ops;

llm_graph_input_self_extend * llama_se_build_inp(const llm_graph_context & g, const llama_se_attn_source & src) {
    const llama_cparams & cparams = g.cparams;
    if (cparams.se_n_group <= 0 || cparams.training || src.kq_mask == nullptr || src.mctx == nullptr) {
        return nullptr;
    }

    const ggml_tensor * mask = src.kq_mask;
    const int64_t n_kv     = mask->ne[0];
    const int64_t n_tps    = mask->ne[1];
    const int64_t n_stream = mask->ne[3];

    auto se = std::make_unique<llm_graph_input_self_extend>(src, cparams.se_n_group, cparams.se_n_window);

    auto new_input = [&](ggml_type type, int64_t ne0, int64_t ne1, int64_t ne3, const char * name) {
        ggml_tensor * t = ggml_new_tensor_4d(g.ctx0, type, ne0, ne1, 1, ne3);
        ggml_set_input(t);
        g.cb(t, name, -1);
        return t;
    };

    se->delta_k_new = new_input(GGML_TYPE_I32, g.n_tokens, 1, 1, "se_delta_k_new");
    if (!cparams.causal_attn || cparams.cb_eval != nullptr) {
        se->delta_all = new_input(GGML_TYPE_I32, n_kv*n_stream, 1, 1, "se_delta_all");
    }
    if (!cparams.causal_attn) {
        // llama.cpp's attention over the normal keys (Self-Extend is for causal attention)
        return (llm_graph_input_self_extend *) g.res->add_input(std::move(se));
    }

    se->plan = llama_se_plan_graph(g, src, n_kv, n_tps, n_stream);
    se->delta_near = new_input(GGML_TYPE_I32, (n_kv - se->plan.near_begin)*n_stream, 1, 1, "se_delta_near");
    if (se->plan.far_end > 0) {
        se->delta_q = new_input(GGML_TYPE_I32, g.n_tokens, 1, 1, "se_delta_q");
    }
    if (se->plan.form != LLAMA_SE_FORM_LOGITS) {
        const int64_t n_cells = se->plan.far_end + n_kv - se->plan.near_begin;
        se->flash_mask = new_input(GGML_TYPE_F16, n_cells, n_tps, n_stream, "se_flash_mask");
    } else if (se->plan.far_end > se->plan.near_begin) {
        se->near = new_input(GGML_TYPE_F32, se->plan.far_end - se->plan.near_begin, n_tps, n_stream, "se_near");
        se->far  = new_input(GGML_TYPE_F32, se->plan.far_end - se->plan.near_begin, n_tps, n_stream, "se_far");
    }
    return (llm_graph_input_self_extend *) g.res->add_input(std::move(se));
}

namespace {

// Whether layer il of this graph caches grouped keys (and takes Self-Extend's attention).
bool serves_layer(const llm_graph_context & g, const llm_graph_input_self_extend * se, int il) {
    return se != nullptr && !g.ubatch.is_pos_2d() && g.hparams.rope_type != LLAMA_ROPE_TYPE_NONE &&
           llama_se_layer_takes(model_of(se), il);
}

ggml_tensor * self_extend_attn(
        const llm_graph_context     & g,
        llm_graph_input_self_extend * se,
        ggml_tensor * q_roped,
        ggml_tensor * k,
        ggml_tensor * v,
        ggml_tensor * kq_mask,
        ggml_tensor * sinks,
        float         kq_scale,
        int           il) {
    ggml_context * ctx0 = g.ctx0;
    ggml_tensor * k_rot = se->attn.k_rot;
    const int64_t n_kv = k->ne[2];

    // normal keys of the cells near some query: derived from their grouped ones here, or
    // turned by the CPU kernel as it reads them
    ggml_tensor * turn   = llama_se_cpu_flash_turn_table(g, se, il);
    ggml_tensor * k_near = nullptr;
    if (turn == nullptr) {
        k_near = rotate_cached_keys(g, se, key_cells(ctx0, k, se->plan.near_begin, n_kv - se->plan.near_begin),
                                    se->delta_near, il);
        g.cb(k_near, "se_k_near", il);
    }

    // grouped queries: the roped queries, rotated once more by dq (and into the cache's
    // Hadamard space when it has one: the cached grouped keys are H k_g)
    ggml_tensor * q_g = nullptr;
    if (se->delta_q) {
        q_g = rope_delta(g, se, q_roped, se->delta_q, il);
        if (k_rot) {
            q_g = llama_mul_mat_hadamard(ctx0, q_g, k_rot);
        }
        g.cb(q_g, "se_q_grouped", il);
    }

    ggml_tensor * cur = nullptr;
    switch (se->plan.form) {
        case LLAMA_SE_FORM_CPU_FLASH:
            cur = llama_se_attn_cpu_flash(g, se, k, k_near, turn, v, q_roped, q_g, sinks, kq_scale, il);
            break;
        case LLAMA_SE_FORM_GROUPED_FLASH:
            cur = llama_se_attn_grouped_flash(g, se, k, k_near, v, q_roped, q_g, sinks, kq_scale, il);
            break;
        case LLAMA_SE_FORM_LOGITS:
            cur = llama_se_attn_logits(g, se, k, k_near, v, q_roped, q_g, kq_mask, sinks, kq_scale, il);
            break;
    }

    if (!g.cparams.offload_kqv) {
        // as in build_attn_mha: everything between the KV store and the output on the CPU
        ggml_backend_sched_set_tensor_backend(g.sched, cur, g.backend_cpu);
    }

    ggml_build_forward_expand(g.gf, cur);

    return cur;
}

}  // namespace

ggml_tensor * llama_se_key_to_store(const llm_graph_context & g, llm_graph_input_self_extend * se,
                                    ggml_tensor * k_roped, int il) {
    if (!serves_layer(g, se, il)) {
        return k_roped;
    }
    ggml_tensor * k_g = rope_delta(g, se, k_roped, se->delta_k_new, il);
    g.cb(k_g, "se_k_grouped_new", il);
    return k_g;
}

ggml_tensor * llama_se_build_attn(
        const llm_graph_context     & g,
        llm_graph_input_self_extend * se,
        ggml_tensor * q_roped,
        ggml_tensor * q,
        ggml_tensor * k,
        ggml_tensor * v,
        ggml_tensor * kq_mask,
        ggml_tensor * kq_b,
        ggml_tensor * sinks,
        float         kq_scale,
        int           il) {
    GGML_UNUSED(q);
    if (!serves_layer(g, se, il)) {
        return nullptr; // a layer (se-arch-rules.cpp) or graph that Self-Extend leaves as it is
    }

    ggml_tensor * k_true = se->delta_all
        ? rotate_cached_keys(g, se, k, se->delta_all, il) : nullptr;
    if (kq_b != nullptr && k_true == nullptr) {
        GGML_ABORT("Self-Extend: layer %d has a positional bias (kq_b); its architecture cannot be in se-arch-rules.cpp", il);
    }
    ggml_tensor * cur = nullptr;
    if (!g.cparams.causal_attn || kq_b != nullptr) {
        // not Self-Extend's case (bidirectional attention, a positional bias): llama.cpp's
        // attention over the normal keys
        cur = g.build_attn_mha(q_roped, k_true, v, kq_b, kq_mask, sinks, nullptr, 0, kq_scale, il);
    } else {
        cur = self_extend_attn(g, se, q_roped, k, v, kq_mask, sinks, kq_scale, il);
    }
    if (g.cparams.cb_eval != nullptr) {
        llama_se_capture_layer(g, q_roped, k_true, v, cur, kq_scale, il);
    }
    return cur;
}

uint32_t llama_se_graph_extra_nodes(const llama_cparams & cparams, uint32_t n_layer) {
    // about 25 nodes per layer (ropes, casts, reshapes, two matmuls, the merge); keep margin
    return cparams.se_n_group > 0 ? 64u*n_layer + 16u : 0u;
}
