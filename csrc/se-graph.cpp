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

#include "llama-se-hooks.h"
#include "se-access.h"
#include "se-arch-rules.h"
#include "se-flash-cpu.h"
#include "se-rotation.h"

#include "llama-graph.h"
#include "llama-impl.h"
#include "llama-kv-cache.h"
#include "llama-model.h"

#include "ggml-backend.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <utility>
#include <vector>

namespace {

// dk(p) = p//G - p: the rotation from a key's true position to its grouped one
int32_t grouped_key_delta(llama_pos p, int32_t G) {
    return llama_se_cached_position(p, G) - p;
}

}  // namespace

// Host-filled inputs of one graph. Shapes follow the KQ mask of the same attention input.
class llm_graph_input_self_extend : public llm_graph_input_i {
public:
    llm_graph_input_self_extend(const llama_se_attn_source & attn, int32_t n_group, int32_t n_window)
        : attn(attn), n_group(n_group), n_window(n_window) {}

    void set_input(const llama_ubatch * ubatch) override;

    // a graph's shape depends on the ubatch's positions (the band): never reused
    bool can_reuse(const llm_graph_params & params) override {
        GGML_UNUSED(params);
        return false;
    }

    ggml_tensor * delta_k_new = nullptr; // I32 [n_tokens]  dk(i) = i/G - i: the ubatch's keys to grouped ones
    ggml_tensor * delta_q     = nullptr; // I32 [n_tokens]  dq(i) per ubatch token; nullptr when no cell is far

    // normal keys derived for cells [near_begin, n_kv) of every stream: j - j/G per cell
    // (0 for empty cells)
    ggml_tensor * delta_near = nullptr;  // I32 [(n_kv - near_begin)*n_stream]
    int64_t       near_begin = 0;

    // the selection between the two logits over cells [near_begin, far_end):
    // [far_end - near_begin, n_tps, 1, n_stream], 1 in near where i - j < W, far = 1 - near
    ggml_tensor * near    = nullptr;
    ggml_tensor * far     = nullptr;
    int64_t       far_end = 0;       // cells from here on are near every query that sees them

    // flash attention (no logit matrix) over the far copies of cells [0, far_end)
    // followed by the near copies of cells [near_begin, n_kv): this mask says which copy
    // each query sees. With the K and V cache in CPU memory one custom op reads both sets
    // as they are (se-flash-cpu.h, cpu_flash); elsewhere one ggml flash attention over
    // doubled heads (flash_attn_grouped)
    ggml_tensor * flash_mask = nullptr; // F16 [far_end + n_kv - near_begin, n_tps, 1, n_stream]
    bool cpu_flash = false;
    std::deque<llama_se_flash_params> flash_params; // the custom ops' parameters, one per layer

    // The CPU kernel turns the near cells' grouped keys itself (llama_se_flash_params):
    // the cos and sin of each cell's turn come from a table per graph and RoPE setting,
    // ggml's rope (llama_se_turn) of unit vectors [n_rot, 1, cells] (turn_units, filled
    // here: (1, 0) in each rotary pair). Layers with one setting share one table.
    struct turn_table {
        float base, scale;
        const ggml_tensor * factors;
        int32_t n_rot;
        ggml_tensor * table;
    };
    std::vector<turn_table> turn_tables;
    std::vector<ggml_tensor *> turn_units;
    bool turn_neox = false;

    // normal keys of every cell (j - j/G), for llama.cpp's own attention where Self-Extend
    // does not apply to a graph whose cache holds grouped keys (non-causal attention) and
    // for the per-layer capture (an eval callback)
    ggml_tensor * delta_all = nullptr;  // I32 [n_kv*n_stream]

    // constant inputs shared by the layers (a layer whose shapes need a larger one adds one):
    // the zero halves of the doubled keys, and the unit queries of sum_values_by_flash
    std::vector<ggml_tensor *> zeros;
    std::vector<ggml_tensor *> ones;
    ggml_tensor * constant(ggml_context * ctx, std::vector<ggml_tensor *> & pool, ggml_type type, int64_t n) {
        for (ggml_tensor * t : pool) {
            if (t->type == type && ggml_nelements(t) >= n) {
                return t;
            }
        }
        ggml_tensor * t = ggml_new_tensor_1d(ctx, type, n);
        ggml_set_input(t);
        pool.push_back(t);
        return t;
    }

    const llama_se_attn_source attn;
    const int32_t n_group;
    const int32_t n_window;

private:
    void set_flash_mask(const llama_ubatch * ubatch);
    void set_constants();
    void set_cell_deltas(ggml_tensor * t, int64_t first, const llama_ubatch * ubatch, int64_t n_tps);
};

void llm_graph_input_self_extend::set_constants() {
    for (ggml_tensor * t : zeros) {
        if (t->buffer) {
            memset(t->data, 0, ggml_nbytes(t));
        }
    }
    for (ggml_tensor * t : ones) {
        if (t->buffer) {
            GGML_ASSERT(t->type == GGML_TYPE_F32);
            std::fill((float *) t->data, (float *) t->data + ggml_nelements(t), 1.0f);
        }
    }
}

// j - j/G for cells [first, n_kv) of each stream: the rotation from a cached grouped key
// to the normal one
void llm_graph_input_self_extend::set_cell_deltas(ggml_tensor * t, int64_t first, const llama_ubatch * ubatch,
                                                  int64_t n_tps) {
    if (t == nullptr || !t->buffer) {
        return;
    }
    GGML_ASSERT(ggml_backend_buffer_is_host(t->buffer));
    const llama_kv_cache & kv = llama_se_access::cache(*attn.mctx);
    const int64_t n_kv     = attn.kq_mask->ne[0];
    const int64_t n_stream = attn.kq_mask->ne[3];
    const int64_t n        = n_kv - first;
    int32_t * data = (int32_t *) t->data;
    for (int64_t s = 0; s < n_stream; ++s) {
        const llama_kv_cells & cells = kv.get_cells(ubatch->seq_id[s*n_tps][0]);
        for (int64_t j = 0; j < n; ++j) {
            data[s*n + j] = cells.is_empty(first + j) ? 0 : -grouped_key_delta(cells.pos_get(first + j), n_group);
        }
    }
}

void llm_graph_input_self_extend::set_flash_mask(const llama_ubatch * ubatch) {
    const llama_kv_cache & kv = llama_se_access::cache(*attn.mctx);
    const int64_t n_keys   = flash_mask->ne[0];
    const int64_t n_tps    = flash_mask->ne[1];
    const int64_t n_stream = flash_mask->ne[3];
    const int64_t n_kv     = near_begin + (n_keys - far_end);
    const int32_t W        = n_window;
    const ggml_fp16_t keep = ggml_fp32_to_fp16(0.0f);
    const ggml_fp16_t drop = ggml_fp32_to_fp16(-INFINITY);

    ggml_fp16_t * data = (ggml_fp16_t *) flash_mask->data;
    for (int64_t i = 0; i < n_tps*n_stream; ++i) {
        // visibility as in llama.cpp's causal KQ mask: a cell of the query's sequence at a
        // position not after it; then the cell's near copy if i - j < W, else its far copy
        const llama_seq_id     seq   = ubatch->seq_id[i][0];
        const llama_kv_cells & cells = kv.get_cells(seq);
        const llama_pos        pi    = ubatch->pos[i];
        ggml_fp16_t * row_far  = data + i*n_keys;
        ggml_fp16_t * row_near = row_far + far_end - near_begin;
        for (int64_t j = 0; j < n_kv; ++j) {
            bool visible = !cells.is_empty(j) && cells.seq_has(j, seq) && cells.pos_get(j) <= pi;
            bool is_near = visible && pi - cells.pos_get(j) < W;
            if (j < far_end) {
                row_far[j] = visible && !is_near ? keep : drop;
            }
            if (j >= near_begin) {
                row_near[j] = is_near ? keep : drop;
            }
        }
    }
}

void llm_graph_input_self_extend::set_input(const llama_ubatch * ubatch) {
    set_constants();
    for (ggml_tensor * unit : turn_units) {
        if (!unit->buffer) {
            continue;
        }
        GGML_ASSERT(ggml_backend_buffer_is_host(unit->buffer));
        const int64_t n_rot = unit->ne[0];
        float * data = (float *) unit->data;
        for (int64_t row = 0; row < unit->ne[2]; ++row) {
            for (int64_t i = 0; i < n_rot; ++i) {
                const bool first_of_pair = turn_neox ? i < n_rot/2 : i % 2 == 0;
                data[row*n_rot + i] = first_of_pair ? 1.0f : 0.0f;
            }
        }
    }
    if (delta_k_new == nullptr || !delta_k_new->buffer) {
        return; // no layer of this graph used Self-Extend
    }
    GGML_ASSERT(ggml_backend_buffer_is_host(delta_k_new->buffer));

    const int32_t G = n_group;
    const int32_t W = n_window;
    const int32_t shift_q = W - llama_se_floor_div(W, G);
    const int64_t n_tokens = ubatch->n_tokens;
    const int64_t n_tps    = attn.kq_mask->ne[1];
    GGML_ASSERT(n_tps*attn.kq_mask->ne[3] == n_tokens);

    int32_t * dk_new = (int32_t *) delta_k_new->data;
    for (int64_t t = 0; t < n_tokens; ++t) {
        dk_new[t] = grouped_key_delta(ubatch->pos[t], G);
    }
    if (delta_q && delta_q->buffer) {
        int32_t * dq = (int32_t *) delta_q->data;
        for (int64_t t = 0; t < n_tokens; ++t) {
            dq[t] = llama_se_floor_div(ubatch->pos[t], G) + shift_q - ubatch->pos[t];
        }
    }
    set_cell_deltas(delta_near, near_begin, ubatch, n_tps);
    set_cell_deltas(delta_all, 0, ubatch, n_tps);

    if (flash_mask && flash_mask->buffer) {
        set_flash_mask(ubatch);
    }
    if (near == nullptr || !near->buffer) {
        return;
    }
    // the selection over the band [near_begin, far_end); visibility (causality, other
    // sequences, empty cells) stays in the KQ mask
    const llama_kv_cache & kv = llama_se_access::cache(*attn.mctx);
    const int64_t n_sel = far_end - near_begin;
    float * f_near = (float *) near->data;
    float * f_far  = (float *) far->data;
    for (int64_t i = 0; i < n_tokens; ++i) {
        // the ubatch's streams are consecutive groups of n_tps tokens of one sequence each,
        // in the order of the K view's streams (split_equal, as for the KQ mask)
        const llama_kv_cells & cells = kv.get_cells(ubatch->seq_id[(i/n_tps)*n_tps][0]);
        const llama_pos pi = ubatch->pos[i];
        for (int64_t jj = 0; jj < n_sel; ++jj) {
            const int64_t j = near_begin + jj;
            const bool is_near = cells.is_empty(j) || pi - cells.pos_get(j) < W;
            f_near[i*n_sel + jj] = is_near ? 1.0f : 0.0f;
            f_far [i*n_sel + jj] = is_near ? 0.0f : 1.0f;
        }
    }
}

namespace {

// llama.cpp pads the cells a graph reads (n_kv) to a multiple of 256 (llama_kv_cache::get_n_kv)
constexpr int64_t k_n_kv_pad = 256;

// The band of a ubatch in one stream of cells (one sequence, or several in a unified
// cache, in any cell layout): cells below `begin` are far from every query that sees
// them, cells from `end` on near every query that sees them (cells a query does not see
// are masked, so either logit serves). Only the band [begin, end) needs both logits and
// the selection. For one sequence whose cell j holds position j this is
// [p_min - W + 1, p_max - W + 1).
//
// A reservation graph gets the widest band a ubatch can have, so that compute buffers
// are sized once, when the context is made, and do not grow while it runs: what a GPU
// needs is known and allocated up front, not in the middle of a long prompt. One
// sequence: its tokens end up to k_n_kv_pad - 1 cells before n_kv, the cells after them
// empty, and empty cells are near (llama.cpp pads n_kv to 256 cells). Several sequences
// in one stream (slots in a unified cache): a band as wide as the cache.
bool find_band(const llm_graph_context & g, const llama_se_attn_source & src, int32_t W,
               int64_t n_kv, bool reserving, int64_t & begin, int64_t & end) {
    const llama_ubatch & ub = g.ubatch;
    if (reserving) {
        if (g.cparams.n_seq_max > 1) {
            begin = 0;
            end   = n_kv;
            return true;
        }
        begin = std::clamp<int64_t>(n_kv - ub.n_tokens - W + 1 - (k_n_kv_pad - 1), 0, n_kv);
        end   = std::clamp<int64_t>(n_kv - W, 0, n_kv);
        return true;
    }
    // the queries' positions per sequence, sorted
    std::vector<std::pair<llama_seq_id, std::vector<llama_pos>>> queries;
    for (uint32_t t = 0; t < ub.n_tokens; ++t) {
        const llama_seq_id s = ub.seq_id[t][0];
        auto it = std::find_if(queries.begin(), queries.end(), [&](const auto & q) { return q.first == s; });
        if (it == queries.end()) {
            queries.push_back({ s, {} });
            it = queries.end() - 1;
        }
        it->second.push_back(ub.pos[t]);
    }
    for (auto & q : queries) {
        std::sort(q.second.begin(), q.second.end());
    }
    const llama_kv_cells & cells = llama_se_access::cache(*src.mctx).get_cells(ub.seq_id[0][0]);
    int64_t first_near = n_kv;
    int64_t last_far   = -1;
    for (int64_t j = 0; j < n_kv; ++j) {
        if (cells.is_empty(j)) {
            continue;
        }
        const llama_pos pj = cells.pos_get(j);
        for (const auto & [seq, pos] : queries) {
            if (!cells.seq_has(j, seq) || pos.back() < pj) {
                continue;   // not seen by any query of this sequence
            }
            // near for some query: one at a position in [pj, pj + W)
            const auto first_seeing = std::lower_bound(pos.begin(), pos.end(), pj);
            if (first_seeing != pos.end() && *first_seeing - pj < W) {
                first_near = std::min(first_near, j);
            }
            if (pos.back() - pj >= W) {
                last_far = j;
            }
        }
    }
    begin = first_near;
    end   = std::max(begin, last_far + 1);
    return true;
}

}  // namespace

// Few queries per stream: the logit form's logit matrix [n_kv, n_tps, n_head] is no
// larger than the doubled keys the flash form copies ([2d, n_head_kv, n_kv]), and it is
// faster, as the flash form's copies cost as much for 1 query as for 512. Measured at 8k
// on the CPU (default model, 2 threads), tokens/s of the logit form against the flash
// form: 39.8/19.7 for ubatches of 8, 46.5/24.3 for 25, 60.7/54.2 for 64.
bool few_queries(const llama_hparams & hparams, int64_t n_tps) {
    return n_tps*hparams.n_head() <= 2*hparams.n_embd_k_gqa();
}

// SELFEXTEND_GGUF_FLASH_KERNEL=<form>: a flash-attention form asked for by name, for tests
// and comparison ("stock": the stock-op form on the CPU too; "derived": the CPU kernel
// reading derived near keys instead of turning them; "logits": the logit form that a
// device refusing the stock-op form's shapes takes)
bool flash_form_requested(const char * form) {
    const char * kernel = std::getenv("SELFEXTEND_GGUF_FLASH_KERNEL");
    return kernel != nullptr && std::strcmp(kernel, form) == 0;
}

// The device other than the CPU whose memory holds t, or nullptr where t is in the CPU's
// memory (the CPU's own buffer type has no device; a GPU's host-visible memory, Metal's or
// pinned host buffers, names its device) or not allocated
static ggml_backend_dev_t accelerator_of(const ggml_tensor * t) {
    if (t == nullptr || t->buffer == nullptr) {
        return nullptr;
    }
    ggml_backend_dev_t dev = ggml_backend_buft_get_device(ggml_backend_buffer_get_type(t->buffer));
    return dev == nullptr || ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU ? nullptr : dev;
}

// The cells from which a graph views a quantized cache on a device (the near keys and
// values) start at a multiple of this many cells, so that each view begins at a byte
// offset the device's buffers are aligned to (ggml_backend_buft_get_alignment: Vulkan's
// minStorageBufferOffsetAlignment). ggml-vulkan reads a quantized view that starts between
// two such offsets from the offset below it (its copy from a quantized type drops the
// remainder): with a q8_0 K cache on lavapipe (alignment 16, rows of 136 bytes) the derived
// keys after the first ubatch came from the wrong cells, logits off by up to 7. 1 where
// no quantized cache is on a device (other types' views are read where they start).
static int64_t near_begin_step(const llama_se_attn_source & src) {
    int64_t step = 1;
    for (const auto & layer : llama_se_access::kv_layers(llama_se_access::cache(*src.mctx))) {
        for (const ggml_tensor * t : { layer.k, layer.v }) {
            if (accelerator_of(t) == nullptr || !ggml_is_quantized(t->type)) {
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
bool cpu_flash_serves(const llm_graph_context & g, const llama_se_attn_source & src) {
    if (flash_form_requested("stock") || flash_form_requested("logits") || g.hparams.f_max_alibi_bias != 0.0f) {
        return false;
    }
    auto on_cpu = [](const ggml_tensor * t) {
        return t != nullptr && t->buffer != nullptr && ggml_backend_buffer_is_host(t->buffer) &&
               accelerator_of(t) == nullptr;
    };
    for (const auto & layer : llama_se_access::kv_layers(llama_se_access::cache(*src.mctx))) {
        if (!on_cpu(layer.k) || !on_cpu(layer.v)) {
            return false;
        }
    }
    return true;
}

namespace {

// The type of the stock-op form's keys and values (flash_attn_grouped): the cache's own
// where K and V share f16 or f32, else f32 (a quantized cache, or K and V of two types)
ggml_type grouped_flash_type(ggml_type type_k, ggml_type type_v) {
    const bool as_is = type_k == type_v && (type_k == GGML_TYPE_F16 || type_k == GGML_TYPE_F32);
    return as_is ? type_k : GGML_TYPE_F32;
}

// The head size of the stock-op form's values: with doubled key heads (2d) the values are
// padded with zeros to as wide (GPU flash kernels want equal head sizes)
int64_t grouped_flash_value_width(int64_t d, int64_t dv, bool doubled) {
    return doubled ? std::max(2*d, dv) : dv;
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
        ggml_backend_dev_t dev = accelerator_of(layer.k);
        // only the layers that take Self-Extend (not DeciLM's layers without heads, whose
        // shapes would divide by zero in ggml's checks)
        if (dev == nullptr || !llama_se_layer_takes(llama_se_access::model(kv), (int) layer.il)) {
            continue;
        }
        const int64_t d  = hp.n_embd_head_k(layer.il);
        const int64_t dk = doubled ? 2*d : d;
        const question asked = { dev, d, grouped_flash_value_width(d, hp.n_embd_head_v(layer.il), doubled),
                                 hp.n_head(layer.il), hp.n_head_kv(layer.il), grouped_flash_type(layer.k->type, layer.v->type) };
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

    // the band: normal keys only for cells from near_begin, grouped logits only below far_end
    se->near_begin = 0;
    se->far_end    = n_kv;
    // (a worst-case reservation graph is shaped like a real one, never computed)
    const bool reserving = llama_se_access::is_reservation(*src.mctx);
    if (n_stream == 1 && find_band(g, src, cparams.se_n_window, n_kv, reserving, se->near_begin, se->far_end)) {
        if (se->far_end == 0) {
            // every visible cell is a neighbor of every query: plain attention over the
            // normal keys of every cell (the cells below the band are not seen)
            se->near_begin = 0;
        }
        // views of the cache from near_begin start where the device can bind them (cells
        // moved into the band keep their grouped logits: the selection is per cell)
        const int64_t step = near_begin_step(src);
        se->near_begin = se->near_begin / step * step;
    }
    se->delta_near = new_input(GGML_TYPE_I32, (n_kv - se->near_begin)*n_stream, 1, 1, "se_delta_near");
    if (se->far_end > 0) {
        se->delta_q = new_input(GGML_TYPE_I32, g.n_tokens, 1, 1, "se_delta_q");
    }
    // flash attention over far and near copies of the cells: the CPU kernel for any
    // ubatch; the stock-op form (flash_attn_grouped) unless the ubatch has few queries
    // (decoding, a chat turn): then the logit form
    se->cpu_flash = cparams.flash_attn && cpu_flash_serves(g, src);
    const int64_t n_cells = se->far_end + n_kv - se->near_begin;
    if (cparams.flash_attn && (se->cpu_flash ||
            ((!few_queries(g.hparams, n_tps) || se->far_end == 0) &&
             !flash_form_requested("logits") &&
             device_takes_grouped_flash(g, src, n_cells, n_tps, n_stream, se->far_end > 0)))) {
        se->flash_mask = new_input(GGML_TYPE_F16, n_cells, n_tps, n_stream, "se_flash_mask");
    } else if (se->far_end > se->near_begin) {
        se->near = new_input(GGML_TYPE_F32, se->far_end - se->near_begin, n_tps, n_stream, "se_near");
        se->far  = new_input(GGML_TYPE_F32, se->far_end - se->near_begin, n_tps, n_stream, "se_far");
    }
    return (llm_graph_input_self_extend *) g.res->add_input(std::move(se));
}

namespace {

const llama_model & model_of(const llm_graph_input_self_extend * se) {
    return llama_se_access::model(llama_se_access::cache(*se->attn.mctx));
}

// x [d, heads, n] turned by the position deltas `pos` with layer il's RoPE (se-rotation.h)
ggml_tensor * rope_delta(const llm_graph_context & g, const llm_graph_input_self_extend * se, ggml_tensor * x,
                         ggml_tensor * pos, int il) {
    return llama_se_turn(g.ctx0, x, pos, model_of(se), g.cparams, il, /*whole_heads =*/ true, /*inplace =*/ false);
}

// Cached keys [d, heads_kv, n, n_stream] rotated per cell by `delta` (I32 [n*n_stream]),
// in f32 and outside the Hadamard rotation of a quantized cache: the normal keys derived
// from grouped ones, with no rounding beyond the cache's own.
ggml_tensor * rotate_cached_keys(const llm_graph_context & g, const llm_graph_input_self_extend * se, ggml_tensor * k,
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

// Whether the CPU kernel turns layer il's near keys itself (se-flash-cpu.h): for few
// queries (a prefill's tiles would turn each key once per tile of queries and head, where
// deriving turns it once per KV head), the rope of a layer it can mirror (pairs of NORM or
// NEOX, from the first dim) and keys cached outside any Hadamard rotation. SELFEXTEND_GGUF_FLASH_KERNEL=derived has the kernel read derived
// keys instead, for tests and comparison.
bool kernel_turns_keys(const llm_graph_context & g, const llm_graph_input_self_extend * se, int il) {
    if (flash_form_requested("derived")) {
        return false;
    }
    const llama_model & model = model_of(se);
    const int rope_type = g.hparams.rope_type;
    return se->cpu_flash && !llama_se_flash_tiled(se->flash_mask->ne[1]) && se->attn.k_rot == nullptr &&
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

// Split [d, heads, n_tokens] into [d, heads, n_tps, n_stream] and order it for mul_mat.
ggml_tensor * split_streams(ggml_context * ctx, ggml_tensor * x, int64_t n_stream) {
    x = ggml_view_4d(ctx, x, x->ne[0], x->ne[1], x->ne[2]/n_stream, n_stream,
            x->nb[1], x->nb[2], x->nb[2]*(x->ne[2]/n_stream), 0);
    return ggml_permute(ctx, x, 0, 2, 1, 3);
}

// Cells [first, first + n) of every stream of a K or V view [d, heads_kv, n_kv, n_stream].
ggml_tensor * key_cells(ggml_context * ctx, ggml_tensor * k, int64_t first, int64_t n) {
    return ggml_view_4d(ctx, k, k->ne[0], k->ne[1], n, k->ne[3], k->nb[1], k->nb[2], k->nb[3], first*k->nb[2]);
}

// logits [n_kv, n_tps, n_head, n_stream] of keys [d, heads_kv, n_kv, n_stream] and
// queries [d, heads, n_tokens], accumulated in f32 as in llama.cpp's attention
ggml_tensor * logits_of(ggml_context * ctx, ggml_tensor * keys, ggml_tensor * queries, int64_t n_stream) {
    ggml_tensor * kq = ggml_mul_mat(ctx, ggml_permute(ctx, keys, 0, 2, 1, 3), split_streams(ctx, queries, n_stream));
    ggml_prec_set_acc(kq, GGML_PREC_F32);
    return kq;
}

// The columns [first, first + n) of logits [n_kv, n_tps, n_head, n_stream].
ggml_tensor * logit_cols(ggml_context * ctx, ggml_tensor * x, int64_t first, int64_t n) {
    return ggml_view_4d(ctx, x, n, x->ne[1], x->ne[2], x->ne[3], x->nb[1], x->nb[2], x->nb[3],
                        first*ggml_element_size(x));
}

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
    ggml_backend_dev_t dev = accelerator_of(k->view_src ? k->view_src : k);
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
    const int64_t begin    = se->near_begin;
    const int64_t end      = se->far_end;

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

// Exact Self-Extend in one flash attention, without an n_tokens x n_kv logit matrix.
// The head dimension is doubled: queries [q ; q_g], the far copy of a cell [0 ; k_g], its
// near copy [k ; 0], so that a query's dot product with either copy is the logit that the
// formula gives for it; the flash mask lets each query see one copy of each visible cell.
// The copies are the far ones of cells [0, far_end) (the cache itself) and the near ones
// of cells [near_begin, n_kv) (k_near, derived): every cell twice in the general form,
// only the band in the banded one, and no far copy where every cell is near.
ggml_tensor * flash_attn_grouped(const llm_graph_context & g, llm_graph_input_self_extend * se,
                                 ggml_tensor * k_g, ggml_tensor * k_near, ggml_tensor * v,
                                 ggml_tensor * q, ggml_tensor * q_g, ggml_tensor * sinks, float kq_scale, int il) {
    ggml_context * ctx0 = g.ctx0;
    const int64_t d         = k_g->ne[0];
    const int64_t n_head_kv = k_g->ne[1];
    const int64_t n_stream  = k_g->ne[3];
    const int64_t dv        = v->ne[0];
    const int64_t far_end   = se->far_end;
    const int64_t n_near    = k_near->ne[2];

    const ggml_type type = grouped_flash_type(k_g->type, v->type);
    auto typed = [&](ggml_tensor * x) { return x->type == type ? x : ggml_cast(ctx0, x, type); };

    ggml_tensor * keys    = typed(k_near);
    ggml_tensor * values  = typed(v);
    ggml_tensor * queries = q;
    if (far_end > 0) {
        // the zero halves of the keys and the values' padding: one graph input, as large
        // as the largest of them
        const int64_t n_cells = far_end + n_near;
        const int64_t pad_v   = grouped_flash_value_width(d, dv, /*doubled =*/ true) - dv;
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
                              typed(key_cells(ctx0, v, se->near_begin, n_near)), 2);
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

// Exact Self-Extend in one custom op on the CPU (se-flash-cpu.h): the far set is the
// cache's cells [0, far_end) as they are, read with the grouped queries q_g; the near set
// the derived keys k_near of cells [near_begin, n_kv), read with the roped queries q; the
// flash mask picks one copy per visible cell. No copy of the cache, one dot product of
// the head size per visible (query, cell).
// With a turn table (kernel_turns_keys) the near set's keys are the cache's near cells as
// they are, and k_near is not built.
ggml_tensor * flash_attn_cpu(const llm_graph_context & g, llm_graph_input_self_extend * se,
                             ggml_tensor * k_g, ggml_tensor * k_near, ggml_tensor * turn, ggml_tensor * v,
                             ggml_tensor * q, ggml_tensor * q_g, ggml_tensor * sinks, float kq_scale, int il) {
    ggml_context * ctx0 = g.ctx0;
    const int64_t n_stream = k_g->ne[3];
    const int64_t n_near   = k_g->ne[2] - se->near_begin;
    const int64_t far_end  = se->far_end;
    if (turn != nullptr) {
        k_near = key_cells(ctx0, k_g, se->near_begin, n_near);
    }
    auto cells_first = [&](ggml_tensor * x) { return ggml_permute(ctx0, x, 0, 2, 1, 3); }; // [d, n, heads_kv, n_stream]

    ggml_tensor * q_near = split_streams(ctx0, q, n_stream);
    ggml_tensor * near[3] = { q_near, cells_first(k_near), cells_first(key_cells(ctx0, v, se->near_begin, n_near)) };
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

// With an eval callback set (the per-layer check in tests/, or debugging), plain f32
// copies of what layer il's Self-Extend attention computed from and gave:
//   se_cap_q   [d, n_head, n_tokens]             the roped queries times kq_scale
//   se_cap_k/v [d, n_head_kv, n_kv, n_stream]    the cache's cells (keys at true positions)
//   se_cap_out [d*n_head, n_tokens]
void capture_layer(const llm_graph_context & g, ggml_tensor * q_roped, ggml_tensor * k_true, ggml_tensor * v,
                   ggml_tensor * out, float kq_scale, int il) {
    ggml_context * ctx0 = g.ctx0;
    auto f32 = [&](ggml_tensor * x) { return x->type == GGML_TYPE_F32 ? ggml_cont(ctx0, x) : ggml_cast(ctx0, x, GGML_TYPE_F32); };
    const bool v_trans = v->nb[1] > v->nb[2];   // [n_kv, heads, d, n_stream]: back to [d, heads, n_kv, n_stream]
    ggml_tensor * items[4] = {
        ggml_scale(ctx0, q_roped, kq_scale), f32(k_true), f32(v_trans ? ggml_permute(ctx0, v, 2, 1, 0, 3) : v), ggml_cont(ctx0, out) };
    const char * names[4] = { "se_cap_q", "se_cap_k", "se_cap_v", "se_cap_out" };
    for (int i = 0; i < 4; ++i) {
        ggml_format_name(items[i], "%s-%d", names[i], il);
        ggml_set_output(items[i]);  // kept until the graph's end, where the callback reads them
        ggml_build_forward_expand(g.gf, items[i]);
    }
}

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
    ggml_tensor * turn   = kernel_turns_keys(g, se, il) ? turn_table_of(g, se, il) : nullptr;
    ggml_tensor * k_near = nullptr;
    if (turn == nullptr) {
        k_near = rotate_cached_keys(g, se, key_cells(ctx0, k, se->near_begin, n_kv - se->near_begin),
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
    if (se->cpu_flash) {
        cur = flash_attn_cpu(g, se, k, k_near, turn, v, q_roped, q_g, sinks, kq_scale, il);
    } else if (se->flash_mask) {
        cur = flash_attn_grouped(g, se, k, k_near, v, q_roped, q_g, sinks, kq_scale, il);
    } else {
        logit_place place;
        ggml_tensor * kq = merged_logits(g, se, k, k_near, q_roped, q_g, place);
        cur = attend(g, se, kq, place, kq_mask, v, sinks, kq_scale, il);
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
        capture_layer(g, q_roped, k_true, v, cur, kq_scale, il);
    }
    return cur;
}

uint32_t llama_se_graph_extra_nodes(const llama_cparams & cparams, uint32_t n_layer) {
    // about 25 nodes per layer (ropes, casts, reshapes, two matmuls, the merge); keep margin
    return cparams.se_n_group > 0 ? 64u*n_layer + 16u : 0u;
}
