// The grouped-key cache beside llama.cpp's KV cache (see se-grouped-keys.h).

#include "se-grouped-keys.h"
#include "se-access.h"
#include "se-arch-rules.h"

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "llama-impl.h"
#include "llama-kv-cache.h"
#include "llama-model.h"

#include <map>

llama_se_grouped_keys::~llama_se_grouped_keys() {
    for (ggml_backend_buffer_t buf : buffers) {
        ggml_backend_buffer_free(buf);
    }
    for (ggml_context * ctx : contexts) {
        ggml_free(ctx);
    }
}

void llama_se_grouped_keys::invalidate() {
    for (auto & cells : derived_pos) {
        std::fill(cells.begin(), cells.end(), -1);
    }
}

size_t llama_se_grouped_keys::size_bytes() const {
    size_t total = 0;
    for (ggml_backend_buffer_t buf : buffers) {
        total += ggml_backend_buffer_get_size(buf);
    }
    return total;
}

std::shared_ptr<llama_se_grouped_keys> llama_se_grouped_keys_init(const llama_kv_cache & kv, int32_t n_group) {
    const llama_hparams & hparams = llama_se_access::model(kv).hparams;
    auto gk = std::make_shared<llama_se_grouped_keys>();
    gk->n_group = n_group;
    gk->kv_size = kv.get_size();
    gk->layers.assign(hparams.n_layer(), nullptr);

    // one metadata context per buffer type, so that each layer's grouped keys live where
    // its K cache lives (host or device)
    std::map<ggml_backend_buffer_type_t, ggml_context *> ctx_of;
    for (const auto & layer : llama_se_access::kv_layers(kv)) {
        const uint32_t il = layer.il;
        if (!llama_se_layer_takes(llama_se_access::model(kv), (int) il)) {
            continue; // no Self-Extend on this layer
        }
        ggml_backend_buffer_type_t buft = ggml_backend_buffer_get_type(layer.k->buffer);
        ggml_context *& ctx = ctx_of[buft];
        if (ctx == nullptr) {
            ggml_init_params params = { ggml_tensor_overhead()*hparams.n_layer(), nullptr, /*no_alloc =*/ true };
            ctx = ggml_init(params);
            if (ctx == nullptr) {
                return nullptr;
            }
            gk->contexts.push_back(ctx);
        }
        ggml_tensor * t = ggml_new_tensor_3d(ctx, layer.k->type, layer.k->ne[0], layer.k->ne[1], layer.k->ne[2]);
        ggml_format_name(t, "se_grouped_keys_l%u", il);
        gk->layers[il] = t;
        gk->n_stream   = (uint32_t) layer.k->ne[2];
    }
    for (const auto & [buft, ctx] : ctx_of) {
        ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors_from_buft(ctx, buft);
        if (buf == nullptr) {
            LLAMA_LOG_ERROR("%s: cannot allocate the grouped-key cache in %s\n", __func__, ggml_backend_buft_name(buft));
            return nullptr;
        }
        // never-written cells are read (and masked) by the attention: zeros, not garbage
        ggml_backend_buffer_clear(buf, 0);
        gk->buffers.push_back(buf);
    }
    gk->derived_pos.assign(gk->n_stream, std::vector<llama_pos>(gk->kv_size, -1));
    LLAMA_LOG_INFO("%s: grouped-key cache: %.2f MiB\n", __func__, gk->size_bytes() / (1024.0*1024.0));
    return gk;
}
