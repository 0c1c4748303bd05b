#include "se-plan.h"

#include "llama-se-hooks.h"
#include "se-access.h"
#include "se-arch-rules.h"
#include "se-band.h"

#include "llama-graph.h"
#include "llama-impl.h"
#include "llama-kv-cache.h"
#include "llama-model.h"

#include "ggml-backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <numeric>

namespace {

// Few queries per stream: the logit form's logit matrix [n_kv, n_tps, n_head] is no
// larger than the doubled keys the flash form copies ([2d, n_head_kv, n_kv]), and it is
// faster, as the flash form's copies cost as much for 1 query as for 512. Measured at 8k
// on the CPU (default model, 2 threads), tokens/s of the logit form against the flash
// form: 39.8/19.7 for ubatches of 8, 46.5/24.3 for 25, 60.7/54.2 for 64.
bool few_queries(const llama_hparams & hparams, int64_t n_tps) {
    return n_tps*hparams.n_head() <= 2*hparams.n_embd_k_gqa();
}

// The cells from which a graph views a quantized cache on a device (the near keys and
// values) start at a multiple of this many cells, so that each view begins at a byte
// offset the device's buffers are aligned to (ggml_backend_buft_get_alignment: Vulkan's
// minStorageBufferOffsetAlignment). ggml-vulkan reads a quantized view that starts between
// two such offsets from the offset below it (its copy from a quantized type drops the
// remainder): with a q8_0 K cache on lavapipe (alignment 16, rows of 136 bytes) the derived
// keys after the first ubatch came from the wrong cells, logits off by up to 7. 1 where
// no quantized cache is on a device (other types' views are read where they start).
int64_t near_begin_step(const llama_se_attn_source & src) {
    int64_t step = 1;
    for (const auto & layer : llama_se_access::kv_layers(llama_se_access::cache(*src.mctx))) {
        for (const ggml_tensor * t : { layer.k, layer.v }) {
            if (llama_se_accelerator_of(t) == nullptr || !ggml_is_quantized(t->type)) {
                continue;
            }
            const int64_t align = (int64_t) ggml_backend_buft_get_alignment(ggml_backend_buffer_get_type(t->buffer));
            const int64_t row   = (int64_t) t->nb[1];   // one cell
            const int64_t cells = align / std::gcd(row, align);
            step = std::lcm(step, cells);
        }
    }
    return step;
}

// Whether Self-Extend's CPU flash kernel (se-flash-cpu.h) can serve this graph's layers:
// every layer's K and V cache in CPU memory (a GPU backend does not take the custom op,
// and would send it, with the cache, to the CPU), no ALiBi. SELFEXTEND_GGUF_FLASH_KERNEL=stock
// takes the stock-op form instead (flash_attn_grouped, as on a GPU), for tests and comparison.
bool cpu_flash_serves(const llm_graph_context & g, const llama_se_attn_source & src, llama_se_form_request request) {
    if (request == LLAMA_SE_REQUEST_STOCK || request == LLAMA_SE_REQUEST_LOGITS || g.hparams.f_max_alibi_bias != 0.0f) {
        return false;
    }
    auto on_cpu = [](const ggml_tensor * t) {
        return t != nullptr && t->buffer != nullptr && ggml_backend_buffer_is_host(t->buffer) &&
               llama_se_accelerator_of(t) == nullptr;
    };
    for (const auto & layer : llama_se_access::kv_layers(llama_se_access::cache(*src.mctx))) {
        if (!on_cpu(layer.k) || !on_cpu(layer.v)) {
            return false;
        }
    }
    return true;
}

// Whether the devices that hold the K and V cache take the stock-op form's flash attention
// (flash_attn_grouped) over n_cells copies of cells, with doubled heads when `doubled`. A
// backend that does not would run the op, with the cache, on the CPU (CUDA takes heads of
// up to 256 and 512 only with cells in multiples of 256, so a head of 256 doubled is
// refused); the logit form then keeps the attention on the device. Asked of each layer's
// device (once per run of layers alike) with a tensor of the op's shapes in a scratch
// context (no memory, no graph).
bool device_takes_grouped_flash(const llm_graph_context & g, const llama_se_attn_source & src,
                                int64_t n_cells, int64_t n_tps, int64_t n_stream, bool doubled) {
    const llama_hparams & hp = g.hparams;
    ggml_init_params params = { /*.mem_size =*/ 16*ggml_tensor_overhead(), /*.mem_buffer =*/ nullptr, /*.no_alloc =*/ true };
    // layers usually share their shapes: a layer like the last one asked about is not asked again
    struct question {
        ggml_backend_dev_t dev; int64_t d, dv, n_head, n_head_kv; ggml_type type;
        bool operator==(const question & o) const {
            return dev == o.dev && d == o.d && dv == o.dv && n_head == o.n_head && n_head_kv == o.n_head_kv && type == o.type;
        }
    };
    question last = { nullptr, 0, 0, 0, 0, GGML_TYPE_COUNT };
    const llama_kv_cache & kv = llama_se_access::cache(*src.mctx);
    for (const auto & layer : llama_se_access::kv_layers(kv)) {
        ggml_backend_dev_t dev = llama_se_accelerator_of(layer.k);
        // only the layers that take Self-Extend (not DeciLM's layers without heads, whose
        // shapes would divide by zero in ggml's checks)
        if (dev == nullptr || !llama_se_layer_takes(llama_se_access::model(kv), (int) layer.il)) {
            continue;
        }
        const int64_t d  = hp.n_embd_head_k(layer.il);
        const int64_t dk = doubled ? 2*d : d;
        const question asked = { dev, d, llama_se_grouped_flash_value_width(d, hp.n_embd_head_v(layer.il), doubled),
                                 hp.n_head(layer.il), hp.n_head_kv(layer.il), llama_se_grouped_flash_type(layer.k->type, layer.v->type) };
        if (asked == last) {
            continue;
        }
        last = asked;

        ggml_context * ctx = ggml_init(params);
        // as flash_attn_grouped lays them out: cells in dim 2, permuted into dim 1
        ggml_tensor * q    = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, dk, n_tps, asked.n_head, n_stream);
        ggml_tensor * k    = ggml_new_tensor_4d(ctx, asked.type, dk, asked.n_head_kv, n_cells, n_stream);
        ggml_tensor * v    = ggml_new_tensor_4d(ctx, asked.type, asked.dv, asked.n_head_kv, n_cells, n_stream);
        ggml_tensor * mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, n_cells, n_tps, 1, n_stream);
        ggml_tensor * fa   = ggml_flash_attn_ext(ctx, q, ggml_permute(ctx, k, 0, 2, 1, 3), ggml_permute(ctx, v, 0, 2, 1, 3),
                                                 mask, 1.0f, hp.f_max_alibi_bias,
                                                 hp.attn_soft_cap ? hp.f_attn_logit_softcapping : 0.0f);
        ggml_prec_set_acc(fa, GGML_PREC_F32);
        const bool takes = ggml_backend_dev_supports_op(dev, fa);
        ggml_free(ctx);
        if (!takes) {
            return false;
        }
    }
    return true;
}

}  // namespace

// The device other than the CPU whose memory holds t, or nullptr where t is in the CPU's
// memory (the CPU's own buffer type has no device; a GPU's host-visible memory, Metal's or
// pinned host buffers, names its device) or not allocated
ggml_backend_dev_t llama_se_accelerator_of(const ggml_tensor * t) {
    if (t == nullptr || t->buffer == nullptr) {
        return nullptr;
    }
    ggml_backend_dev_t dev = ggml_backend_buft_get_device(ggml_backend_buffer_get_type(t->buffer));
    return dev == nullptr || ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU ? nullptr : dev;
}

// The type of the stock-op form's keys and values (flash_attn_grouped): the cache's own
// where K and V share f16 or f32, else f32 (a quantized cache, or K and V of two types)
ggml_type llama_se_grouped_flash_type(ggml_type type_k, ggml_type type_v) {
    const bool as_is = type_k == type_v && (type_k == GGML_TYPE_F16 || type_k == GGML_TYPE_F32);
    return as_is ? type_k : GGML_TYPE_F32;
}

// The head size of the stock-op form's values: with doubled key heads (2d) the values are
// padded with zeros to as wide (GPU flash kernels want equal head sizes)
int64_t llama_se_grouped_flash_value_width(int64_t d, int64_t dv, bool doubled) {
    return doubled ? std::max(2*d, dv) : dv;
}

llama_se_form_request llama_se_form_requested() {
    const char * name = std::getenv("SELFEXTEND_GGUF_FLASH_KERNEL");
    for (int i = 0; name != nullptr && i < (int) (sizeof(LLAMA_SE_REQUEST_NAMES)/sizeof(LLAMA_SE_REQUEST_NAMES[0])); ++i) {
        if (std::strcmp(name, LLAMA_SE_REQUEST_NAMES[i]) == 0) {
            return (llama_se_form_request) (LLAMA_SE_REQUEST_STOCK + i);
        }
    }
    return LLAMA_SE_REQUEST_NONE;
}

const char * llama_se_form_name(llama_se_form form) {
    switch (form) {
        case LLAMA_SE_FORM_LOGITS:        return "logits";
        case LLAMA_SE_FORM_GROUPED_FLASH: return "flash attention over doubled heads (stock ops)";
        case LLAMA_SE_FORM_CPU_FLASH:     return "Self-Extend's CPU flash kernel";
    }
    return "?";
}

llama_se_plan llama_se_plan_graph(const llm_graph_context & g, const llama_se_attn_source & src,
                                  int64_t n_kv, int64_t n_tps, int64_t n_stream) {
    const llama_cparams & cparams = g.cparams;
    llama_se_plan plan;
    plan.request = llama_se_form_requested();

    // the band: normal keys only for cells from near_begin, grouped logits only below far_end
    plan.near_begin = 0;
    plan.far_end    = n_kv;
    // (a worst-case reservation graph is shaped like a real one, never computed)
    const bool reserving = llama_se_access::is_reservation(*src.mctx);
    if (n_stream == 1 && llama_se_find_band(g, src, cparams.se_n_window, n_kv, reserving, plan.near_begin, plan.far_end)) {
        if (plan.far_end == 0) {
            // every visible cell is a neighbor of every query: plain attention over the
            // normal keys of every cell (the cells below the band are not seen)
            plan.near_begin = 0;
        }
        // views of the cache from near_begin start where the device can bind them (cells
        // moved into the band keep their grouped logits: the selection is per cell)
        const int64_t step = near_begin_step(src);
        plan.near_begin = plan.near_begin / step * step;
    }

    // flash attention over far and near copies of the cells: the CPU kernel for any
    // ubatch; the stock-op form (flash_attn_grouped) unless the ubatch has few queries
    // (decoding, a chat turn): then the logit form
    const int64_t n_cells = plan.far_end + n_kv - plan.near_begin;
    if (cparams.flash_attn && cpu_flash_serves(g, src, plan.request)) {
        plan.form = LLAMA_SE_FORM_CPU_FLASH;
    } else if (cparams.flash_attn && (!few_queries(g.hparams, n_tps) || plan.far_end == 0) &&
               plan.request != LLAMA_SE_REQUEST_LOGITS &&
               device_takes_grouped_flash(g, src, n_cells, n_tps, n_stream, plan.far_end > 0)) {
        plan.form = LLAMA_SE_FORM_GROUPED_FLASH;
    } else {
        plan.form = LLAMA_SE_FORM_LOGITS;
    }

    // verbose: the form, when it is not the last graph's (graphs are built per ubatch)
    static thread_local int last_logged = -1;
    if (!reserving && (int) plan.form != last_logged) {
        last_logged = (int) plan.form;
        LLAMA_LOG_INFO("%s: Self-Extend attends by %s (%lld queries per stream, band [%lld, %lld) of %lld cells)\n",
                       __func__, llama_se_form_name(plan.form), (long long) n_tps, (long long) plan.near_begin,
                       (long long) plan.far_end, (long long) n_kv);
    }
    return plan;
}
