#include "se-forms.h"

#include <algorithm>

using namespace llama_se_ops;

// Exact Self-Extend in one flash attention, without an n_tokens x n_kv logit matrix.
// The head dimension is doubled: queries [q ; q_g], the far copy of a cell [0 ; k_g], its
// near copy [k ; 0], so that a query's dot product with either copy is the logit that the
// formula gives for it; the flash mask lets each query see one copy of each visible cell.
// The copies are the far ones of cells [0, far_end) (the cache itself) and the near ones
// of cells [near_begin, n_kv) (k_near, derived): every cell twice in the general form,
// only the band in the banded one, and no far copy where every cell is near.
ggml_tensor * llama_se_attn_grouped_flash(const llm_graph_context & g, llm_graph_input_self_extend * se,
                                          ggml_tensor * k_g, ggml_tensor * k_near, ggml_tensor * v,
                                          ggml_tensor * q, ggml_tensor * q_g, ggml_tensor * sinks, float kq_scale,
                                          int il) {
    ggml_context * ctx0 = g.ctx0;
    const int64_t d         = k_g->ne[0];
    const int64_t n_head_kv = k_g->ne[1];
    const int64_t n_stream  = k_g->ne[3];
    const int64_t dv        = v->ne[0];
    const int64_t far_end   = se->plan.far_end;
    const int64_t n_near    = k_near->ne[2];

    const ggml_type type = llama_se_grouped_flash_type(k_g->type, v->type);
    auto typed = [&](ggml_tensor * x) { return x->type == type ? x : ggml_cast(ctx0, x, type); };

    ggml_tensor * keys    = typed(k_near);
    ggml_tensor * values  = typed(v);
    ggml_tensor * queries = q;
    if (far_end > 0) {
        // the zero halves of the keys and the values' padding: one graph input, as large
        // as the largest of them
        const int64_t n_cells = far_end + n_near;
        const int64_t pad_v   = llama_se_grouped_flash_value_width(d, dv, /*doubled =*/ true) - dv;
        ggml_tensor * zero = se->constant(ctx0, se->zeros, type,
                                          std::max(d*std::max(far_end, n_near), pad_v*n_cells)*n_head_kv*n_stream);
        auto zeros = [&](int64_t width, int64_t n) {
            const size_t es = ggml_element_size(zero);
            return ggml_view_4d(ctx0, zero, width, n_head_kv, n, n_stream,
                                width*es, width*n_head_kv*es, width*n_head_kv*n*es, 0);
        };

        ggml_tensor * keys_far  = ggml_concat(ctx0, zeros(d, far_end), typed(key_cells(ctx0, k_g, 0, far_end)), 0);
        ggml_tensor * keys_near = ggml_concat(ctx0, keys, zeros(d, n_near), 0);
        keys    = ggml_concat(ctx0, keys_far, keys_near, 2);
        values  = ggml_concat(ctx0, typed(key_cells(ctx0, v, 0, far_end)),
                              typed(key_cells(ctx0, v, se->plan.near_begin, n_near)), 2);
        if (pad_v > 0) {
            // values as wide as the keys: GPU flash kernels take equal head sizes only (CUDA
            // sends a K head of 2d with a V head of d to the CPU); the zeros add nothing
            values = ggml_concat(ctx0, values, zeros(pad_v, n_cells), 0);
            g.cb(values, "se_flash_values", il);
        }
        queries = ggml_concat(ctx0, q, q_g, 0);                              // [2d, heads, n_tokens]
    }
    // else: every visible cell is near every query, and the near copies are all the cells
    g.cb(keys, "se_flash_keys", il);
    queries = split_streams(ctx0, queries, n_stream);                        // [(2)d, n_tps, heads, n_stream]

    ggml_tensor * cur = ggml_flash_attn_ext(ctx0, queries,
            ggml_permute(ctx0, keys, 0, 2, 1, 3), ggml_permute(ctx0, values, 0, 2, 1, 3),
            se->flash_mask, kq_scale, g.hparams.f_max_alibi_bias,
            g.hparams.attn_soft_cap ? g.hparams.f_attn_logit_softcapping : 0.0f);
    ggml_flash_attn_ext_add_sinks(cur, sinks);
    ggml_prec_set_acc(cur, GGML_PREC_F32);
    g.cb(cur, "se_flash_attn", il);
    if (cur->ne[0] != dv) {
        // the padded values' part of each head's output: zeros
        cur = ggml_cont(ctx0, ggml_view_4d(ctx0, cur, dv, cur->ne[1], cur->ne[2], cur->ne[3],
                                           cur->nb[1], cur->nb[2], cur->nb[3], 0));
    }
    return ggml_reshape_2d(ctx0, cur, cur->ne[0]*cur->ne[1], cur->ne[2]*cur->ne[3]);
}
