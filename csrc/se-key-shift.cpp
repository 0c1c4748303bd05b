// The K-shift and the regrouping of cached grouped keys (see se-key-shift.h).

#include "se-key-shift.h"
#include "llama-se-hooks.h"
#include "se-access.h"
#include "se-arch-rules.h"
#include "se-rotation.h"

#include "llama-context.h"
#include "llama-graph.h"
#include "llama-impl.h"
#include "llama-kv-cache.h"
#include "llama-model.h"

#include "ggml-backend.h"

#include <memory>

namespace {

// Per cell of every stream: the turn from the key cached for position p - shift with
// group size g_from to the one for position p with g_to (0 for empty cells).
class llm_graph_input_se_shift : public llm_graph_input_i {
public:
    llm_graph_input_se_shift(const llama_kv_cache & kv, int32_t g_from, int32_t g_to)
        : kv(kv), g_from(g_from), g_to(g_to) {}

    void set_input(const llama_ubatch * ubatch) override {
        GGML_UNUSED(ubatch);
        if (delta && delta->buffer) {
            GGML_ASSERT(ggml_backend_buffer_is_host(delta->buffer));
            int32_t * data = (int32_t *) delta->data;
            const uint32_t size = kv.get_size();
            for (uint32_t s = 0; s < llama_se_access::n_stream(kv); ++s) {
                const llama_kv_cells & cells = llama_se_access::cells(kv, s);
                for (uint32_t i = 0; i < size; ++i) {
                    data[s*size + i] = cells.is_empty(i) ? 0
                        : llama_se_cached_position(cells.pos_get(i), g_to)
                          - llama_se_cached_position(cells.pos_get(i) - cells.get_shift(i), g_from);
                }
            }
        }
        if (k_rot && k_rot->buffer) {
            kv.set_input_k_rot(k_rot);
        }
    }

    ggml_tensor * delta = nullptr;  // I32 [kv_size*n_stream]
    ggml_tensor * k_rot = nullptr;  // the regroup graph's own Hadamard input (the K-shift has llama.cpp's)

    const llama_kv_cache & kv;
    const int32_t g_from;
    const int32_t g_to;
};

bool has_served_layer(const llama_kv_cache & kv) {
    for (const auto & layer : llama_se_access::kv_layers(kv)) {
        if (llama_se_layer_takes(llama_se_access::model(kv), (int) layer.il)) {
            return true;
        }
    }
    return false;
}

ggml_tensor * new_shift_input(const llama_kv_cache & kv, llm_graph_result * res, ggml_context * ctx,
                              int32_t g_from, int32_t g_to, llm_graph_input_se_shift ** out) {
    auto inp = std::make_unique<llm_graph_input_se_shift>(kv, g_from, g_to);
    inp->delta = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, (int64_t) kv.get_size()*llama_se_access::n_stream(kv));
    ggml_set_input(inp->delta);
    ggml_tensor * delta = inp->delta;
    *out = (llm_graph_input_se_shift *) res->add_input(std::move(inp));
    return delta;
}

}  // namespace

ggml_tensor * llama_se_build_shift_inp(const llama_kv_cache & kv, llm_graph_result * res, ggml_context * ctx,
                                       const llama_cparams & cparams) {
    if (cparams.se_n_group <= 0 || !has_served_layer(kv)) {
        return nullptr;
    }
    llm_graph_input_se_shift * inp = nullptr;
    return new_shift_input(kv, res, ctx, cparams.se_n_group, cparams.se_n_group, &inp);
}

// As llama.cpp's build_rope_shift, with the turn `shift` and a rotation of unit magnitude
// (se-rotation.h: ggml's rope scales by YaRN's magnitude, which the cached key has). k is
// llama.cpp's view of the roped dims; a quantized cache is turned through whole heads
// instead (the Hadamard rotation and the quantization blocks span the head).
ggml_tensor * llama_se_build_shift(const llama_kv_cache & kv, ggml_context * ctx, const llama_cparams & cparams,
                                   ggml_tensor * k, ggml_tensor * shift, ggml_tensor * k_rot, int il) {
    const llama_model   & model = llama_se_access::model(kv);
    const llama_hparams & hp    = model.hparams;
    if (!llama_se_layer_takes(model, il)) {
        return nullptr;
    }
    if (!ggml_is_quantized(k->type)) {
        return llama_se_turn(ctx, k, shift, model, cparams, il, /*whole_heads =*/ false, /*inplace =*/ true);
    }
    // whole heads: dequantize, out of the Hadamard rotation, turn the roped dims (the
    // trailing ones where the architecture ropes those), back, quantize
    ggml_tensor * cache = k->view_src ? k->view_src : k;
    const int64_t head_k = hp.n_embd_head_k(il);
    ggml_tensor * heads = ggml_view_3d(ctx, cache, head_k, hp.n_head_kv(il), ggml_nelements(cache) / hp.n_embd_k_gqa(il),
            ggml_row_size(cache->type, head_k), ggml_row_size(cache->type, hp.n_embd_k_gqa(il)), 0);
    ggml_tensor * x = ggml_cast(ctx, heads, GGML_TYPE_F32);
    if (k_rot) {
        x = llama_mul_mat_hadamard(ctx, x, k_rot);
    }
    x = llama_se_turn(ctx, x, shift, model, cparams, il, /*whole_heads =*/ true, /*inplace =*/ false);
    if (k_rot) {
        x = llama_mul_mat_hadamard(ctx, x, k_rot);
    }
    return ggml_cpy(ctx, x, heads);
}

bool llama_se_regroup_keys(llama_context & lctx, llama_kv_cache & kv, int32_t g_from, int32_t g_to) {
    bool any = false;
    bool pending_shift = false;
    for (uint32_t s = 0; s < llama_se_access::n_stream(kv); ++s) {
        const llama_kv_cells & cells = llama_se_access::cells(kv, s);
        any           = any || cells.get_used() > 0;
        pending_shift = pending_shift || cells.get_has_shift();
    }
    if (g_from == g_to || !any || !has_served_layer(kv)) {
        return true;
    }
    llama_synchronize(&lctx);
    if (pending_shift && !kv.update(&lctx, true, {})) {   // with the current setting: the shifts are then 0
        LLAMA_LOG_ERROR("%s: applying the pending K-shift failed\n", __func__);
        return false;
    }

    ggml_backend_sched_t sched = lctx.get_sched();
    ggml_backend_sched_reset(sched);
    llm_graph_result * res = lctx.get_gf_res_reserve();
    res->reset();
    ggml_context * ctx = res->get_ctx();
    ggml_cgraph  * gf  = res->get_gf();

    llm_graph_input_se_shift * inp = nullptr;
    ggml_tensor * delta = new_shift_input(kv, res, ctx, g_from, g_to, &inp);
    inp->k_rot = kv.build_input_k_rot(ctx);

    const llama_model   & model = llama_se_access::model(kv);
    const llama_hparams & hp    = model.hparams;
    for (const auto & layer : llama_se_access::kv_layers(kv)) {
        const int il = (int) layer.il;
        if (!llama_se_layer_takes(model, il)) {
            continue;
        }
        // the roped dims of every cell, as llama.cpp's K-shift views them
        const auto n_rot         = hp.n_rot(il);
        const auto n_embd_head_k = hp.n_embd_head_k(il);
        const auto n_embd_nope   = hp.n_lora_kv > 0 ? n_embd_head_k - n_rot : 0;
        ggml_tensor * k = ggml_view_3d(ctx, layer.k, n_rot, hp.n_head_kv(il), (int64_t) kv.get_size()*llama_se_access::n_stream(kv),
                ggml_row_size(layer.k->type, n_embd_head_k),
                ggml_row_size(layer.k->type, hp.n_embd_k_gqa(il)),
                ggml_row_size(layer.k->type, n_embd_nope));
        ggml_build_forward_expand(gf, llama_se_build_shift(kv, ctx, lctx.get_cparams(), k, delta, inp->k_rot, il));
    }

    if (!ggml_backend_sched_alloc_graph(sched, gf)) {
        LLAMA_LOG_ERROR("%s: cannot allocate the graph that regroups the cached keys\n", __func__);
        return false;
    }
    res->set_inputs(nullptr);
    // a half-turned cache is worse than a late return: the caller's abort waits for this graph
    const auto abort_callback      = llama_se_access::abort_callback(lctx);
    void *     abort_callback_data = llama_se_access::abort_callback_data(lctx);
    llama_set_abort_callback(&lctx, nullptr, nullptr);
    const ggml_status status = lctx.graph_compute(gf, false);
    llama_set_abort_callback(&lctx, abort_callback, abort_callback_data);
    if (status != GGML_STATUS_SUCCESS) {
        LLAMA_LOG_ERROR("%s: regrouping the cached keys failed\n", __func__);
        return false;
    }
    llama_synchronize(&lctx);
    LLAMA_LOG_INFO("%s: cached keys regrouped from G = %d to G = %d\n", __func__, g_from, g_to);
    return true;
}
