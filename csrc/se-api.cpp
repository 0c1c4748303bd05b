// Self-Extend C API: validation, settings, and scheduler re-reservation with rollback.
// Everything that could make llama.cpp assert later is checked here first.

#include "llama-selfextend.h"
#include "se-access.h"
#include "se-arch-rules.h"
#include "se-key-shift.h"

#include "llama-arch.h"
#include "llama-context.h"
#include "llama-impl.h"
#include "llama-kv-cache.h"
#include "llama-kv-cache-iswa.h"
#include "llama-model.h"

#include <exception>
#include <string>

namespace {

// why the last llama_self_extend_supported call refused its model
thread_local std::string g_refusal;

int32_t refuse(int32_t status, std::string why) {
    g_refusal = std::move(why);
    return status;
}

// The KV cache of the layers that Self-Extend serves: the context's cache, or the global
// (non-sliding-window) half of an iSWA cache; nullptr for other memory.
llama_kv_cache * served_cache(llama_context * ctx) {
    llama_memory_t mem = llama_get_memory(ctx);
    if (auto * kv = dynamic_cast<llama_kv_cache *>(mem)) {
        return kv;
    }
    if (auto * iswa = dynamic_cast<llama_kv_cache_iswa *>(mem)) {
        return iswa->get_base();
    }
    return nullptr;
}

// Turn the cached keys of kv from group size g_from to g_to. Keys that could not be turned
// may be partly turned: no cache is better than a wrong one, so it is cleared.
bool regroup_or_clear(llama_context * ctx, llama_kv_cache * kv, int32_t g_from, int32_t g_to) {
    if (kv == nullptr || llama_se_regroup_keys(*ctx, *kv, g_from, g_to)) {
        return true;
    }
    LLAMA_LOG_ERROR("%s: the cached keys could not be turned to G = %d: clearing the cache\n", __func__, g_to);
    llama_memory_clear(llama_get_memory(ctx), true);
    return false;
}

// Reserve compute buffers for the current settings again on a path that already failed:
// a further failure can only be logged.
void reserve_after_failure(llama_context * ctx) {
    try {
        llama_se_access::reserve_now(*ctx);
    } catch (const std::exception & err) {
        LLAMA_LOG_ERROR("%s: reserving compute buffers failed too: %s\n", __func__, err.what());
    }
}

}  // namespace

int32_t llama_self_extend_supported(const llama_model * model) {
    g_refusal.clear();
    if (model == nullptr) {
        return LLAMA_SE_ERR_NULL;
    }
    const llama_hparams & hp = model->hparams;
    const llama_rope_type rope = llama_model_rope_type(model);
    if (rope != LLAMA_ROPE_TYPE_NORM && rope != LLAMA_ROPE_TYPE_NEOX) {
        return refuse(LLAMA_SE_ERR_ROPE, rope == LLAMA_ROPE_TYPE_NONE
                ? "the model has no RoPE positions" : "the model uses multi-axis RoPE (M-RoPE/IMROPE/vision)");
    }
    if (hp.n_pos_per_embd() > 1 || hp.use_alibi || hp.f_max_alibi_bias > 0.0f) {
        return refuse(LLAMA_SE_ERR_ROPE, "the model uses ALiBi or multi-axis positions, not 1-D RoPE");
    }
    if (llama_model_is_recurrent(model) || llama_model_is_hybrid(model)) {
        return refuse(LLAMA_SE_ERR_MEMORY, "recurrent and hybrid (state-space + attention) models are not served");
    }
    std::string why;
    if (llama_se_count_layers(*model, why) == 0) {
        return refuse(LLAMA_SE_ERR_ARCH, why);
    }
    return LLAMA_SE_OK;
}

const char * llama_self_extend_refusal(void) {
    return g_refusal.c_str();
}

int32_t llama_set_self_extend(llama_context * ctx, int32_t n_group, int32_t n_window) {
    if (ctx == nullptr) {
        return LLAMA_SE_ERR_NULL;
    }
    llama_cparams & cparams = llama_se_access::cparams(*ctx);

    if (n_group != 0) {
        if (n_group < 1) {
            return LLAMA_SE_ERR_GROUP;
        }
        if (n_window < 1 || n_window > (int32_t) cparams.n_ctx_seq) {
            return LLAMA_SE_ERR_WINDOW;
        }
        const int32_t supported = llama_self_extend_supported(llama_get_model(ctx));
        if (supported != LLAMA_SE_OK) {
            return supported;
        }
        if (served_cache(ctx) == nullptr) {
            return LLAMA_SE_ERR_MEMORY;
        }
        if (cparams.training) {
            return LLAMA_SE_ERR_MEMORY;
        }
    } else {
        n_window = 0;
    }

    if (cparams.se_n_group == n_group && cparams.se_n_window == n_window) {
        return LLAMA_SE_OK;
    }

    // the Self-Extend layers cache grouped keys: a new G turns the cached ones now
    const int32_t old_group  = cparams.se_n_group;
    const int32_t old_window = cparams.se_n_window;
    llama_kv_cache * kv = served_cache(ctx);
    if (!regroup_or_clear(ctx, kv, old_group, n_group)) {
        reserve_after_failure(ctx); // the scheduler ran another graph: reserve for the setting kept
        return LLAMA_SE_ERR_REGROUP;
    }

    cparams.se_n_group  = n_group;
    cparams.se_n_window = n_window;
    try {
        // also drops the previous graphs, so none built with the previous setting is reused
        llama_se_access::reserve_now(*ctx);
    } catch (const std::exception & err) {
        LLAMA_LOG_ERROR("%s: reserving compute buffers for Self-Extend failed: %s\n", __func__, err.what());
        cparams.se_n_group  = old_group;
        cparams.se_n_window = old_window;
        regroup_or_clear(ctx, kv, n_group, old_group);
        reserve_after_failure(ctx);
        return LLAMA_SE_ERR_RESERVE;
    }
    LLAMA_LOG_INFO("%s: Self-Extend %s (G = %d, W = %d)\n", __func__, n_group > 0 ? "on" : "off", n_group, n_window);
    return LLAMA_SE_OK;
}

void llama_get_self_extend(const llama_context * ctx, int32_t * n_group, int32_t * n_window) {
    int32_t g = 0;
    int32_t w = 0;
    if (ctx != nullptr) {
        const llama_cparams & cparams = llama_se_access::cparams(*ctx);
        g = cparams.se_n_group;
        w = cparams.se_n_window;
    }
    if (n_group)  { *n_group  = g; }
    if (n_window) { *n_window = w; }
}

const char * llama_self_extend_strerror(int32_t status) {
    switch (status) {
        case LLAMA_SE_OK:          return "ok";
        case LLAMA_SE_ERR_NULL:    return "context or model is NULL";
        case LLAMA_SE_ERR_GROUP:   return "group size must be >= 1";
        case LLAMA_SE_ERR_WINDOW:  return "neighbor window must be >= 1 and at most the context size";
        case LLAMA_SE_ERR_ROPE:    return "the model does not use plain RoPE positions (none, multi-axis RoPE or ALiBi)";
        case LLAMA_SE_ERR_ARCH:    return "no layer of this model can take Self-Extend";
        case LLAMA_SE_ERR_MEMORY:  return "the context has no plain KV cache (recurrent, hybrid or training contexts are not supported)";
        case LLAMA_SE_ERR_RESERVE: return "could not reserve compute buffers for Self-Extend; try a smaller n_ubatch or n_ctx";
        case LLAMA_SE_ERR_REGROUP: return "could not turn the cached keys to the new group size (the KV cache was cleared; the setting is unchanged)";
        default:                   return "unknown Self-Extend status";
    }
}

bool llama_se_flash_attn(const llama_context * ctx) {
    return ctx != nullptr && llama_se_access::cparams(*ctx).flash_attn;
}
