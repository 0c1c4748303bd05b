// The one place where Self-Extend reaches private state of llama.cpp objects.
// Patch 0002 declares llama_se_access a friend of these classes.
#pragma once

#include "llama-context.h"
#include "llama-kv-cache.h"
#include "llama-model.h"

struct llama_se_access {
    static llama_cparams & cparams(llama_context & ctx) { return ctx.cparams; }
    static const llama_cparams & cparams(const llama_context & ctx) { return ctx.cparams; }
    static ggml_abort_callback abort_callback(const llama_context & ctx) { return ctx.abort_callback; }
    static void * abort_callback_data(const llama_context & ctx) { return ctx.abort_callback_data; }

    // rebuild the scheduler and compute buffers for the current cparams, now rather
    // than inside the next llama_decode (which has no way to report a failure cleanly)
    static void reserve_now(llama_context & ctx) {
        ctx.sched_need_reserve = true;
        ctx.sched_reserve();
    }

    static const llama_kv_cache & cache(const llama_kv_cache_context & mctx) { return *mctx.kv; }

    // the context of a worst-case reservation graph (init_full): it holds no ubatch, and
    // the cache has no cells for the graph's tokens
    static bool is_reservation(const llama_kv_cache_context & mctx) { return mctx.ubatches.empty(); }

    static const llama_model & model(const llama_kv_cache & kv) { return kv.model; }

    static const std::vector<llama_kv_cache::kv_layer> & kv_layers(const llama_kv_cache & kv) { return kv.layers; }

    static uint32_t n_stream(const llama_kv_cache & kv) { return kv.n_stream; }
    static const llama_kv_cells & cells(const llama_kv_cache & kv, uint32_t stream) { return kv.v_cells[stream]; }
};
