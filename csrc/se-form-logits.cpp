// The logit form: grouped logits for every cell (the cache as it is, with the grouped
// queries), the normal logits of the near cells (derived keys, roped queries) written over
// them and merged in the band, one softmax, values as in llama.cpp's non-flash attention.
// What flash attention off takes, and a device for few queries or shapes its flash
// attention refuses.
#include "se-forms.h"

using namespace llama_se_ops;

namespace {

// Where the logit form's ops may overwrite logits in place (an explicit in-place op writes
// where its input was computed, so the op that computes the logits and the ops that
// overwrite them must run on one backend). With the CPU alone, always. With a device, the
// scheduler could otherwise compute the product on one backend and the merge on another
// and write into the first one's buffer (seen: a Vulkan build with layers on the CPU, whose
// large products op offload sends to the device; and Vulkan refusing a quantized K read
// across heads, which it sends to the CPU as it does vanilla's KQ). So: a layer whose cache
// is in CPU memory keeps these ops on the CPU (pinned, as llama.cpp pins attention with
// offload_kqv off); one whose cache is on a device that takes the product keeps them there
// (the scheduler places them with the cache); elsewhere they are not in place and ggml's
// allocator reuses memory where it is safe (one more logit matrix: the merge is a SET).
struct logit_place {
    bool           in_place = false;
    ggml_backend_t pin      = nullptr;  // the backend the product and the in-place ops are pinned to

    ggml_tensor * keep(const llm_graph_context & g, ggml_tensor * t) const {
        if (pin != nullptr) {
            ggml_backend_sched_set_tensor_backend(g.sched, t, pin);
        }
        return t;
    }
};

logit_place place_logits(const llm_graph_context & g, const ggml_tensor * k, const ggml_tensor * kq) {
    logit_place place;
    if (ggml_backend_sched_get_n_backends(g.sched) == 1) {
        place.in_place = true;
        return place;
    }
    ggml_backend_dev_t dev = llama_se_accelerator_of(k->view_src ? k->view_src : k);
    if (dev == nullptr) {
        place.in_place = true;
        place.pin      = g.backend_cpu;
    } else {
        place.in_place = ggml_backend_dev_supports_op(dev, kq);
    }
    return place;
}

// logits [n_kv, n_tps, n_head, n_stream]: the grouped logits of every cell (the cached
// keys k_g with the grouped queries q_g), and the normal logits of the cells from
// near_begin (derived keys k_near with the roped queries q) written over them, merged
// with the grouped ones in the band [near_begin, far_end). Only one n_kv-wide logit
// matrix, as in vanilla attention.
ggml_tensor * merged_logits(const llm_graph_context & g, llm_graph_input_self_extend * se, ggml_tensor * k_g,
                            ggml_tensor * k_near, ggml_tensor * q, ggml_tensor * q_g, logit_place & place) {
    ggml_context * ctx0 = g.ctx0;
    const int64_t n_stream = k_g->ne[3];
    const int64_t n_kv     = k_g->ne[2];
    const int64_t begin    = se->plan.near_begin;
    const int64_t end      = se->plan.far_end;

    ggml_tensor * kq_n = logits_of(ctx0, k_near, q, n_stream);
    if (end == 0) {
        place = place_logits(g, k_g, kq_n);
        return place.keep(g, kq_n); // every cell near (near_begin is 0)
    }
    ggml_tensor * kq = logits_of(ctx0, k_g, q_g, n_stream);
    place = place_logits(g, k_g, kq);
    place.keep(g, kq);

    ggml_tensor * near_part = kq_n;
    if (end > begin) {
        // the band: both, merged by replacement
        ggml_tensor * band = ggml_add(ctx0,
                ggml_mul(ctx0, logit_cols(ctx0, kq_n, 0, end - begin), se->near),
                ggml_mul(ctx0, logit_cols(ctx0, kq, begin, end - begin), se->far));
        if (begin == 0 && end == n_kv) {
            return band; // the general form
        }
        near_part = end < n_kv ? ggml_concat(ctx0, band, logit_cols(ctx0, kq_n, end - begin, n_kv - end), 0) : band;
    }
    if (!place.in_place) {
        return ggml_set(ctx0, kq, near_part, kq->nb[1], kq->nb[2], kq->nb[3], begin*ggml_element_size(kq));
    }
    return place.keep(g, ggml_set_inplace(ctx0, kq, near_part, kq->nb[1], kq->nb[2], kq->nb[3],
                                          begin*ggml_element_size(kq)));
}

// Decoding (one query per stream) with untransposed values (flash attention on): the
// softmax and the weighted sum of the values by ggml's flash attention, whose keys are
// the logits themselves (a head dimension of 1, a query of 1). The values are read where
// they are, as vanilla's flash attention reads them; the logit form's matrix product needs
// them transposed, a copy of the whole V cache per layer and ubatch (measured: decode at
// 8k 9.5 tokens/s that way, 25.3 this way, vanilla 32.0 with flash attention on). For
// several queries the copy pays: the flash kernel's loop over the keys is per query.
// Only where the values are in host memory: another backend may not take a head
// dimension of 1, and would send this op to the CPU.
bool sums_values_by_flash(const ggml_tensor * kq, const ggml_tensor * v) {
    const bool v_trans = v->nb[1] > v->nb[2];
    const ggml_tensor * cache = v->view_src ? v->view_src : v;
    return kq->ne[1] == 1 && !v_trans && cache->buffer != nullptr && ggml_backend_buffer_is_host(cache->buffer);
}

ggml_tensor * sum_values_by_flash(const llm_graph_context & g, llm_graph_input_self_extend * se, ggml_tensor * kq,
                                  ggml_tensor * kq_mask, ggml_tensor * v, ggml_tensor * sinks, float kq_scale) {
    ggml_context * ctx0 = g.ctx0;
    const int64_t n_kv = kq->ne[0], n_head = kq->ne[2], n_stream = kq->ne[3];
    const size_t  es   = ggml_element_size(kq);
    ggml_tensor * keys = ggml_view_4d(ctx0, kq, 1, n_kv, n_head, n_stream, es, kq->nb[2], kq->nb[3], 0);
    ggml_tensor * unit = ggml_view_4d(ctx0, se->constant(ctx0, se->ones, GGML_TYPE_F32, n_head*n_stream),
                                      1, 1, n_head, n_stream, es, es, es*n_head, 0);
    ggml_tensor * cur = ggml_flash_attn_ext(ctx0, unit, keys, ggml_permute(ctx0, v, 0, 2, 1, 3), kq_mask, kq_scale,
                                            g.hparams.f_max_alibi_bias, 0.0f);
    ggml_flash_attn_ext_add_sinks(cur, sinks);
    ggml_prec_set_acc(cur, GGML_PREC_F32);
    return ggml_reshape_2d(ctx0, cur, cur->ne[0]*cur->ne[1], cur->ne[2]*cur->ne[3]);
}

// The logit form's attention output [d*n_head, n_tokens]: logits kq [n_kv, n_tps,
// n_head, n_stream] through the softmax (soft-capped and with sinks as the layer has
// them) and times the values, as in llama.cpp's non-flash attention.
ggml_tensor * attend(const llm_graph_context & g, llm_graph_input_self_extend * se, ggml_tensor * kq,
                     const logit_place & place, ggml_tensor * kq_mask, ggml_tensor * v, ggml_tensor * sinks,
                     float kq_scale, int il) {
    ggml_context * ctx0 = g.ctx0;
    const llama_hparams & hparams = g.hparams;
    g.cb(kq, "se_kq", il);

    if (hparams.attn_soft_cap) {
        // as llama.cpp's non-flash attention: cap * tanh(kq / cap), then kq_scale in the softmax
        const bool in_place = place.in_place;
        kq = place.keep(g, (in_place ? ggml_scale_inplace : ggml_scale)(ctx0, kq, 1.0f / hparams.f_attn_logit_softcapping));
        kq = place.keep(g, (in_place ? ggml_tanh_inplace : ggml_tanh)(ctx0, kq));
        kq = place.keep(g, (in_place ? ggml_scale_inplace : ggml_scale)(ctx0, kq, hparams.f_attn_logit_softcapping));
    }
    if (sums_values_by_flash(kq, v)) {
        return sum_values_by_flash(g, se, kq, kq_mask, v, sinks, kq_scale);
    }

    // in place where it is safe (logit_place): the logits are this function's own, and the
    // allocator does not reuse a merged matrix, a view of the grouped logits (without this,
    // compute buffers hold one more matrix)
    kq = place.keep(g, (place.in_place ? ggml_soft_max_ext_inplace : ggml_soft_max_ext)(
            ctx0, kq, kq_mask, kq_scale, hparams.f_max_alibi_bias));
    ggml_soft_max_add_sinks(kq, sinks); // attention sinks (gpt-oss): one more logit per head
    g.cb(kq, "se_kq_soft_max", il);

    // values as in llama.cpp's non-flash path; with flash attention on, V is stored
    // untransposed (and may be quantized) and is brought into shape here
    const bool v_trans = v->nb[1] > v->nb[2];
    if (ggml_is_quantized(v->type)) {
        v = ggml_cast(ctx0, v, GGML_TYPE_F32);
    }
    v = ggml_permute(ctx0, v, 0, 2, 1, 3);
    if (!v_trans) {
        v = ggml_cont(ctx0, ggml_transpose(ctx0, v));
    }

    ggml_tensor * kqv = ggml_mul_mat(ctx0, v, kq);
    ggml_tensor * cur = ggml_permute(ctx0, kqv, 0, 2, 1, 3);
    return ggml_cont_2d(ctx0, cur, cur->ne[0]*cur->ne[1], cur->ne[2]*cur->ne[3]);
}

}  // namespace

ggml_tensor * llama_se_attn_logits(const llm_graph_context & g, llm_graph_input_self_extend * se, ggml_tensor * k_g,
                                   ggml_tensor * k_near, ggml_tensor * v, ggml_tensor * q, ggml_tensor * q_g,
                                   ggml_tensor * kq_mask, ggml_tensor * sinks, float kq_scale, int il) {
    logit_place place;
    ggml_tensor * kq = merged_logits(g, se, k_g, k_near, q, q_g, place);
    return attend(g, se, kq, place, kq_mask, v, sinks, kq_scale, il);
}
