#include "se-forms.h"

using namespace llama_se_ops;

namespace {

// Whether the CPU kernel turns layer il's near keys itself (se-flash-cpu.h): for few
// queries (a prefill's tiles would turn each key once per tile of queries and head, where
// deriving turns it once per KV head), the rope of a layer it can mirror (pairs of NORM or
// NEOX, from the first dim) and keys cached outside any Hadamard rotation. SELFEXTEND_GGUF_FLASH_KERNEL=derived has the kernel read derived
// keys instead, for tests and comparison.
bool kernel_turns_keys(const llm_graph_context & g, const llm_graph_input_self_extend * se, int il) {
    if (se->plan.request == LLAMA_SE_REQUEST_DERIVED) {
        return false;
    }
    const llama_model & model = model_of(se);
    const int rope_type = g.hparams.rope_type;
    return se->plan.form == LLAMA_SE_FORM_CPU_FLASH && !llama_se_flash_tiled(se->flash_mask->ne[1]) && se->attn.k_rot == nullptr &&
           llama_se_rope_offset(model.arch, g.hparams, il) == 0 &&
           (rope_type == LLAMA_ROPE_TYPE_NORM || rope_type == LLAMA_ROPE_TYPE_NEOX);
}

// The turn table of layer il (see llm_graph_input_self_extend::turn_table): F32
// [n_rot, 1, cells from near_begin in every stream].
ggml_tensor * turn_table_of(const llm_graph_context & g, llm_graph_input_self_extend * se, int il) {
    const llama_model & model = model_of(se);
    const llama_cparams & cparams = g.cparams;
    const float base  = model.get_rope_freq_base(cparams, il);
    const float scale = model.get_rope_freq_scale(cparams, il);
    const ggml_tensor * factors = model.get_rope_factors(cparams, il);
    const int32_t n_rot = g.hparams.n_rot(il);
    for (const auto & t : se->turn_tables) {
        if (t.base == base && t.scale == scale && t.factors == factors && t.n_rot == n_rot) {
            return t.table;
        }
    }
    const int64_t n = se->delta_near->ne[0];
    ggml_tensor * unit = nullptr;
    for (ggml_tensor * u : se->turn_units) {
        if (u->ne[0] == n_rot) {
            unit = u;
        }
    }
    if (unit == nullptr) {
        unit = ggml_new_tensor_3d(g.ctx0, GGML_TYPE_F32, n_rot, 1, n);
        ggml_set_input(unit);
        g.cb(unit, "se_turn_unit", -1);
        se->turn_units.push_back(unit);
    }
    se->turn_neox = g.hparams.rope_type == LLAMA_ROPE_TYPE_NEOX;
    ggml_tensor * table = llama_se_turn(g.ctx0, unit, se->delta_near, model, cparams, il,
                                        /*whole_heads =*/ false, /*inplace =*/ false);
    g.cb(table, "se_turn_table", il);
    se->turn_tables.push_back({ base, scale, factors, n_rot, table });
    return table;
}

}  // namespace

ggml_tensor * llama_se_cpu_flash_turn_table(const llm_graph_context & g, llm_graph_input_self_extend * se, int il) {
    return kernel_turns_keys(g, se, il) ? turn_table_of(g, se, il) : nullptr;
}

// Exact Self-Extend in one custom op on the CPU (se-flash-cpu.h): the far set is the
// cache's cells [0, far_end) as they are, read with the grouped queries q_g; the near set
// the derived keys k_near of cells [near_begin, n_kv), read with the roped queries q; the
// flash mask picks one copy per visible cell. No copy of the cache, one dot product of
// the head size per visible (query, cell).
// With a turn table (kernel_turns_keys) the near set's keys are the cache's near cells as
// they are, and k_near is not built.
ggml_tensor * llama_se_attn_cpu_flash(const llm_graph_context & g, llm_graph_input_self_extend * se,
                                      ggml_tensor * k_g, ggml_tensor * k_near, ggml_tensor * turn, ggml_tensor * v,
                                      ggml_tensor * q, ggml_tensor * q_g, ggml_tensor * sinks, float kq_scale, int il) {
    ggml_context * ctx0 = g.ctx0;
    const int64_t n_stream = k_g->ne[3];
    const int64_t n_near   = k_g->ne[2] - se->plan.near_begin;
    const int64_t far_end  = se->plan.far_end;
    if (turn != nullptr) {
        k_near = key_cells(ctx0, k_g, se->plan.near_begin, n_near);
    }
    auto cells_first = [&](ggml_tensor * x) { return ggml_permute(ctx0, x, 0, 2, 1, 3); }; // [d, n, heads_kv, n_stream]

    ggml_tensor * q_near = split_streams(ctx0, q, n_stream);
    ggml_tensor * near[3] = { q_near, cells_first(k_near), cells_first(key_cells(ctx0, v, se->plan.near_begin, n_near)) };
    ggml_tensor * args[9] = {
        // without a far set its sources repeat the near set's (the kernel reads none of them)
        far_end > 0 ? split_streams(ctx0, q_g, n_stream)                 : near[0],
        far_end > 0 ? cells_first(key_cells(ctx0, k_g, 0, far_end))      : near[1],
        far_end > 0 ? cells_first(key_cells(ctx0, v, 0, far_end))        : near[2],
        near[0], near[1], near[2], se->flash_mask, sinks, turn };

    const int64_t n_head = q->ne[1], n_tps = q->ne[2]/n_stream, DV = v->ne[0];
    llama_se_flash_params & params = se->flash_params.emplace_back();
    params.scale   = kq_scale;
    params.softcap = g.hparams.attn_soft_cap ? g.hparams.f_attn_logit_softcapping : 0.0f;
    params.n_far   = far_end;
    llama_se_flash_plan(params, n_tps, n_stream, g.cparams.n_threads);
    params.turn_n_rot = turn ? (int32_t) turn->ne[0] : 0;
    params.turn_neox  = se->turn_neox;
    const int n_args = turn ? 9 : sinks ? 8 : 7;

    ggml_tensor * cur = nullptr;
    if (params.n_chunks == 1) {
        cur = ggml_custom_4d(ctx0, GGML_TYPE_F32, DV, n_head, n_tps, n_stream,
                             args, n_args, llama_se_flash_attn_cpu, GGML_N_TASKS_MAX, &params);
    } else {
        // the sinks enter in the reduction
        args[7] = nullptr;
        ggml_tensor * parts = ggml_custom_4d(ctx0, GGML_TYPE_F32, DV + 2, n_head, n_tps, n_stream*params.n_chunks,
                                             args, turn ? 9 : 7, llama_se_flash_attn_cpu, GGML_N_TASKS_MAX, &params);
        ggml_tensor * reduce_args[2] = { parts, sinks };
        cur = ggml_custom_4d(ctx0, GGML_TYPE_F32, DV, n_head, n_tps, n_stream,
                             reduce_args, sinks ? 2 : 1, llama_se_flash_reduce_cpu, GGML_N_TASKS_MAX, &params);
    }
    g.cb(cur, "se_flash_attn_cpu", il);
    return ggml_reshape_2d(ctx0, cur, cur->ne[0]*cur->ne[1], cur->ne[2]*cur->ne[3]);
}
