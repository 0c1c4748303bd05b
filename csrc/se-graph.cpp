// Exact Self-Extend attention in the llama.cpp compute graph.
//
// For a query at true position i and a key at true position j (same sequence), with
// group size G and neighbor window W (Jin et al., ICML 2024, Algorithm 1):
//   i - j <  W: logit = <R(i) q, R(j) k>                        (neighbor attention)
//   i - j >= W: logit = <R(i/G + W - W/G) q, R(j/G) k>          (grouped attention)
// followed by one softmax over all visible keys. The KV cache keeps keys roped at their
// true positions. Because RoPE angles are linear in the position, the grouped vectors
// are derived by a second rotation of the cached ones:
//   q_g = R(dq(i)) R(i) q,  dq(i) = i/G + W - W/G - i
//   k_g = R(dk(j)) R(j) k,  dk(j) = j/G - j
// (floor divisions). Both logit matrices are computed and merged before the softmax
// with a 0/1 selection: logits = near * kq + far * kq_g, far = 1 - near.
//
// A ubatch over one stream of cells (one sequence, or several sharing a unified cache)
// takes a banded form: cells far from every query of the ubatch need only grouped
// logits, cells near all of them only normal logits, and only a band in between needs
// both and the merge. For one sequence whose cells hold positions 0, 1, 2, ... the band
// is about n_tokens cells wide; sequences that copied a common prefix (a server's slots
// reading one document) keep it narrow too. Several streams take the general form.
//
// With the grouped-key cache (se-grouped-keys.h, the default) k_g is not computed here
// for every cached key: it is stored when a cell is written (and re-derived for cells
// whose position changed), and the grouped logits read it. In the banded form the
// grouped logits cover every cell and the normal logits only the cells near some query,
// written over the grouped ones: no n_tokens x n_kv matrix beyond the one vanilla
// attention has. Decoding is the banded form with one query. With flash attention on
// (values stored untransposed), a ubatch of few queries (few_queries) takes the logit form
// too (decoding sums its values with ggml's flash attention over the logits,
// sum_values_by_flash); more queries take one flash attention over doubled heads.
//
// Without the cache, decoding (one query per stream) takes a shortcut: a rotation moves
// from the query to the key, <R(a) q, R(b) k> = <q, R(b - a) k>, so with one query i the
// grouped logits are <q_i, R(dk(j) - dq(i)) k_j>. Rotating each cached key by
// d_eff(j) = (i - j >= W) ? dk(j) - dq(i) : 0 gives every logit of the formula in one
// ordinary attention (llama.cpp's own, flash attention included).

#include "llama-se-hooks.h"
#include "se-access.h"
#include "se-arch-rules.h"
#include "se-grouped-keys.h"

#include "llama-graph.h"
#include "llama-impl.h"
#include "llama-kv-cache.h"
#include "llama-model.h"

#include "ggml-backend.h"

#include <algorithm>
#include <utility>
#include <vector>
#include <cmath>

namespace {

int32_t floor_div(int32_t a, int32_t b) {
    const int32_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// dk(p) = p//G - p: the rotation from a key's true position to its grouped one
int32_t grouped_key_delta(llama_pos p, int32_t G) {
    return floor_div(p, G) - p;
}

}  // namespace

// Host-filled inputs of one graph. Shapes follow the KQ mask of the same attention input.
class llm_graph_input_self_extend : public llm_graph_input_i {
public:
    llm_graph_input_self_extend(const llama_se_attn_source & attn, int32_t n_group, int32_t n_window,
                                std::shared_ptr<llama_se_grouped_keys> grouped_keys)
        : attn(attn), n_group(n_group), n_window(n_window), grouped_keys(std::move(grouped_keys)) {}

    void set_input(const llama_ubatch * ubatch) override;

    // the tensors' shapes equal those of the parent's KQ mask and k_idxs, which the
    // parent input checks; what is left to compare is the Self-Extend setting itself
    bool can_reuse(const llm_graph_params & params) override {
        // a banded graph's shape depends on the ubatch's positions, and which grouped keys
        // need deriving depends on the cache's state when the graph is built
        return !banded && !grouped_keys && params.cparams.se_n_group == n_group &&
               params.cparams.se_n_window == n_window;
    }

    // general path (several queries per stream)
    ggml_tensor * delta_q = nullptr; // I32 [n_tokens]          dq(i) per ubatch token
    ggml_tensor * delta_k = nullptr; // I32 [n_kv*n_stream]     dk(j) per cache cell of each stream
    ggml_tensor * near    = nullptr; // F32 [n_kv, n_tps, 1, n_stream]  1 where i - j < W
    ggml_tensor * far     = nullptr; // F32 [n_kv, n_tps, 1, n_stream]  1 - near

    // decode path without the grouped-key cache (one query per stream)
    ggml_tensor * delta_eff = nullptr; // I32 [n_kv*n_stream]   d_eff(j) for the stream's query

    // grouped-key cache: the ubatch's new keys are stored rotated by dk(their position),
    // and cells whose stored grouped key is not current are derived again from the cache
    ggml_tensor * delta_k_new  = nullptr; // I32 [n_tokens]   dk(i) per ubatch token
    ggml_tensor * rederive_idx = nullptr; // I32 [n_rederive] cells (stream*kv_size + cell)
    ggml_tensor * rederive_dk  = nullptr; // I32 [n_rederive] dk of their positions
    std::vector<int64_t>   rederive_cells;
    std::vector<llama_pos> rederive_pos;

    // banded form (one stream of cells, any layout): cells [0, band_begin) are far from
    // every query that sees them, [band_end, n_kv) near every query that sees them;
    // delta_k then covers [0, band_end), and near/far only the band:
    // [band_end - band_begin, n_tps, 1, 1]
    bool    banded     = false;
    int64_t band_begin = 0;
    int64_t band_end   = 0;

    // flash attention over the grouped-key cache (one softmax, no logit matrix): the keys
    // are the far copies of cells [0, flash_far_end) followed by the near copies of cells
    // [flash_near_begin, n_kv), and this mask says which copy each query sees
    ggml_tensor * flash_mask       = nullptr; // F16 [n_far + n_near, n_tps, 1, n_stream]
    int64_t       flash_far_end    = 0;
    int64_t       flash_near_begin = 0;

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

    ggml_tensor * any_tensor() const { return delta_eff ? delta_eff : flash_mask ? flash_mask : delta_q; }

    // a worst-case reservation graph: shaped like a real one, never computed
    bool reserving = false;

    const llama_se_attn_source attn;
    const int32_t n_group;
    const int32_t n_window;
    const std::shared_ptr<llama_se_grouped_keys> grouped_keys; // nullptr: rotate instead

private:
    void set_grouped_key_input(const llama_ubatch * ubatch);
    void set_flash_mask(const llama_ubatch * ubatch);
    void set_constants();
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

void llm_graph_input_self_extend::set_flash_mask(const llama_ubatch * ubatch) {
    const llama_kv_cache & kv = llama_se_access::cache(*attn.mctx);
    const int64_t n_keys   = flash_mask->ne[0];
    const int64_t n_tps    = flash_mask->ne[1];
    const int64_t n_stream = flash_mask->ne[3];
    const int64_t far_end  = flash_far_end;
    const int64_t near_beg = flash_near_begin;
    const int64_t n_kv     = near_beg + (n_keys - far_end);
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
        ggml_fp16_t * row_near = row_far + far_end - near_beg;
        for (int64_t j = 0; j < n_kv; ++j) {
            bool visible = !cells.is_empty(j) && cells.seq_has(j, seq) && cells.pos_get(j) <= pi;
            bool is_near = visible && pi - cells.pos_get(j) < W;
            if (j < far_end) {
                row_far[j] = visible && !is_near ? keep : drop;
            }
            if (j >= near_beg) {
                row_near[j] = is_near ? keep : drop;
            }
        }
    }
}

void llm_graph_input_self_extend::set_grouped_key_input(const llama_ubatch * ubatch) {
    llama_se_grouped_keys & gk = *grouped_keys;
    if (delta_k_new == nullptr || !delta_k_new->buffer) {
        return; // no layer of this graph used the cache
    }
    const int32_t G = n_group;
    int32_t * dk_new = (int32_t *) delta_k_new->data;
    for (uint32_t t = 0; t < ubatch->n_tokens; ++t) {
        dk_new[t] = grouped_key_delta(ubatch->pos[t], G);
    }
    if (rederive_idx && rederive_idx->buffer) {
        int32_t * idx = (int32_t *) rederive_idx->data;
        int32_t * dk  = (int32_t *) rederive_dk->data;
        for (size_t r = 0; r < rederive_cells.size(); ++r) {
            idx[r] = (int32_t) rederive_cells[r];
            dk[r]  = grouped_key_delta(rederive_pos[r], G);
            gk.derived_pos[rederive_cells[r] / gk.kv_size][rederive_cells[r] % gk.kv_size] = rederive_pos[r];
        }
    }
    // the new tokens' cells, where the parent input's k_idxs (already set) stores their keys
    const ggml_tensor * k_idxs = attn.k_idxs;
    GGML_ASSERT(k_idxs->type == GGML_TYPE_I64 && ggml_backend_buffer_is_host(k_idxs->buffer));
    const int64_t * cells = (const int64_t *) k_idxs->data;
    for (uint32_t t = 0; t < ubatch->n_tokens; ++t) {
        gk.derived_pos[cells[t] / gk.kv_size][cells[t] % gk.kv_size] = ubatch->pos[t];
    }
}

void llm_graph_input_self_extend::set_input(const llama_ubatch * ubatch) {
    if (grouped_keys) {
        set_grouped_key_input(ubatch);
    }
    set_constants();
    if (any_tensor() == nullptr || !any_tensor()->buffer) {
        return; // plain attention this ubatch, or built but no layer used it
    }
    GGML_ASSERT(ggml_backend_buffer_is_host(any_tensor()->buffer));

    const int32_t G = n_group;
    const int32_t W = n_window;
    const int32_t shift_q = W - floor_div(W, G);
    auto delta_q_of = [&](llama_pos p) { return floor_div(p, G) + shift_q - p; };
    auto delta_k_of = [&](llama_pos p) { return grouped_key_delta(p, G); };

    const llama_kv_cache & kv = llama_se_access::cache(*attn.mctx);
    const ggml_tensor * mask = attn.kq_mask;
    const int64_t n_tokens = ubatch->n_tokens;
    const int64_t n_kv     = mask->ne[0];
    const int64_t n_tps    = mask->ne[1];
    const int64_t n_stream = mask->ne[3];
    GGML_ASSERT(n_tps*n_stream == n_tokens);

    if (delta_eff) {
        // one query per stream: rotate each key by d_eff (0 for neighbors and empty cells)
        int32_t * de = (int32_t *) delta_eff->data;
        for (int64_t s = 0; s < n_stream; ++s) {
            const llama_kv_cells & cells = kv.get_cells(ubatch->seq_id[s][0]);
            const llama_pos pi = ubatch->pos[s];
            const int32_t   dq = delta_q_of(pi);
            for (int64_t j = 0; j < n_kv; ++j) {
                int32_t d = 0;
                if (!cells.is_empty(j)) {
                    const llama_pos pj = cells.pos_get(j);
                    if (pi - pj >= W) {
                        d = delta_k_of(pj) - dq;
                    }
                }
                de[s*n_kv + j] = d;
            }
        }
        return;
    }

    int32_t * dq = delta_q && delta_q->buffer ? (int32_t *) delta_q->data : nullptr; // none if no far copy is used
    for (int64_t t = 0; dq && t < n_tokens; ++t) {
        dq[t] = delta_q_of(ubatch->pos[t]);
    }

    if (flash_mask) {
        set_flash_mask(ubatch);
        return;
    }

    int32_t * dk     = delta_k ? (int32_t *) delta_k->data : nullptr; // none with the grouped-key cache
    float   * f_near = near ? (float *) near->data : nullptr;             // none for a band of width 0
    float   * f_far  = far  ? (float *) far->data  : nullptr;

    if (banded) {
        // one stream; the cells' positions as they are (a query's unseen cells are masked)
        const llama_kv_cells & cells = kv.get_cells(ubatch->seq_id[0][0]);
        const int64_t n_band = band_end - band_begin;
        for (int64_t j = 0; dk && j < band_end; ++j) {
            dk[j] = cells.is_empty(j) ? 0 : delta_k_of(cells.pos_get(j));
        }
        for (int64_t i = 0; f_near && i < n_tokens; ++i) {
            const llama_pos pi = ubatch->pos[i];
            for (int64_t jj = 0; jj < n_band; ++jj) {
                const int64_t j = band_begin + jj;
                const bool is_near = cells.is_empty(j) || pi - cells.pos_get(j) < W;
                f_near[i*n_band + jj] = is_near ? 1.0f : 0.0f;
                f_far [i*n_band + jj] = is_near ? 0.0f : 1.0f;
            }
        }
        return;
    }

    for (int64_t s = 0; s < n_stream; ++s) {
        // the ubatch's streams are consecutive groups of n_tps tokens of one sequence each,
        // in the order of the K view's streams (split_equal, as for the KQ mask)
        const llama_kv_cells & cells = kv.get_cells(ubatch->seq_id[s*n_tps][0]);

        for (int64_t j = 0; dk && j < n_kv; ++j) {
            // empty cells: no rotation (they are masked anyway)
            dk[s*n_kv + j] = cells.is_empty(j) ? 0 : delta_k_of(cells.pos_get(j));
        }

        for (int64_t ii = 0; ii < n_tps; ++ii) {
            const int64_t   i  = s*n_tps + ii;
            const llama_pos pi = ubatch->pos[i];
            float * row_near = f_near + i*n_kv;
            float * row_far  = f_far  + i*n_kv;
            for (int64_t j = 0; j < n_kv; ++j) {
                // visibility (causality, other sequences, empty cells) stays in the KQ mask;
                // here only the choice between the two logits is made
                const bool is_near = cells.is_empty(j) || pi - cells.pos_get(j) < W;
                row_near[j] = is_near ? 1.0f : 0.0f;
                row_far[j]  = is_near ? 0.0f : 1.0f;
            }
        }
    }
}

namespace {

// The band of a ubatch in one stream of cells (one sequence, or several in a unified
// cache, in any cell layout): cells below `begin` are far from every query that sees
// them, cells from `end` on near every query that sees them (cells a query does not see
// are masked, so either logit serves). Only the band [begin, end) needs both logits and
// the selection. For one sequence whose cell j holds position j this is
// [p_min - W + 1, p_max - W + 1). A reservation graph gets the band of a ubatch at the
// end of the cache, so that compute buffers are sized for the form that long prompts
// take; other forms grow them when used.
bool find_band(const llm_graph_context & g, const llama_se_attn_source & src, int32_t W,
               int64_t n_kv, uint32_t min_tokens, bool reserving, int64_t & begin, int64_t & end) {
    const llama_ubatch & ub = g.ubatch;
    if (ub.n_tokens < min_tokens) {
        return false;
    }
    if (reserving) {
        // the worst case of the usual layout: one sequence, its tokens at the end
        begin = std::clamp<int64_t>(n_kv - ub.n_tokens - W + 1, 0, n_kv);
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

llm_graph_input_self_extend * llama_se_build_inp(const llm_graph_context & g, const llama_se_attn_source & src) {
    const llama_cparams & cparams = g.cparams;
    if (cparams.se_n_group <= 0 || cparams.training || src.kq_mask == nullptr || src.mctx == nullptr) {
        return nullptr;
    }

    const ggml_tensor * mask = src.kq_mask;
    const int64_t n_kv     = mask->ne[0];
    const int64_t n_tps    = mask->ne[1];
    const int64_t n_stream = mask->ne[3];

    const std::shared_ptr<llama_se_grouped_keys> & gk = cparams.se_grouped_keys;
    auto se = std::make_unique<llm_graph_input_self_extend>(src, cparams.se_n_group, cparams.se_n_window, gk);

    auto new_input = [&](ggml_type type, int64_t ne0, int64_t ne1, int64_t ne3, const char * name) {
        ggml_tensor * t = ggml_new_tensor_4d(g.ctx0, type, ne0, ne1, 1, ne3);
        ggml_set_input(t);
        g.cb(t, name, -1);
        return t;
    };

    if (n_tps == 1 && !gk) {
        se->delta_eff = new_input(GGML_TYPE_I32, n_kv*n_stream, 1, 1, "se_delta_eff");
        return (llm_graph_input_self_extend *) g.res->add_input(std::move(se));
    }

    se->reserving = llama_se_access::is_reservation(*src.mctx);

    int64_t n_keys = n_kv*n_stream;   // cells that get a delta_k (rotated here)
    int64_t n_sel  = n_kv;            // cells that get near/far per query
    // with the grouped-key cache a decode step is a band of one query
    if (n_stream == 1 && find_band(g, src, cparams.se_n_window, n_kv, gk ? 1 : 2, se->reserving,
                                   se->band_begin, se->band_end)) {
        se->banded = true;
        // with flash attention the layers still take the flash path below (llama.cpp's own
        // would round an f32 cache to f16), over near copies only
        if (se->band_end == 0 && !(gk && cparams.flash_attn)) {
            // every cell is a neighbor of every query: this is plain attention (new keys
            // get their grouped keys derived when a later graph needs them)
            se->delta_q = nullptr;
            return (llm_graph_input_self_extend *) g.res->add_input(std::move(se));
        }
        n_keys = se->band_end;
        n_sel  = se->band_end - se->band_begin;
    }
    se->delta_q = new_input(GGML_TYPE_I32, g.n_tokens, 1, 1, "se_delta_q");
    if (!gk) {
        se->delta_k = new_input(GGML_TYPE_I32, n_keys, 1, 1, "se_delta_k");
    }
    // one flash attention over far and near copies of the cells (see flash_attn_grouped),
    // unless the ubatch has few queries (decoding, a chat turn): then the logit form below
    if (gk && cparams.flash_attn && (!few_queries(g.hparams, n_tps) || (se->banded && se->band_end == 0))) {
        se->flash_far_end    = se->banded ? se->band_end   : n_kv;
        se->flash_near_begin = se->banded ? se->band_begin : 0;
        se->flash_mask = new_input(GGML_TYPE_F16, se->flash_far_end + n_kv - se->flash_near_begin, n_tps, n_stream,
                                   "se_flash_mask");
    } else if (n_sel > 0) {
        se->near = new_input(GGML_TYPE_F32, n_sel, n_tps, n_stream, "se_near");
        se->far  = new_input(GGML_TYPE_F32, n_sel, n_tps, n_stream, "se_far");
    }

    if (gk) {
        se->delta_k_new = new_input(GGML_TYPE_I32, g.n_tokens, 1, 1, "se_delta_k_new");
        // the visible cells whose stored grouped key was not derived for their position
        const llama_kv_cache & kv = llama_se_access::cache(*src.mctx);
        for (int64_t s = 0; s < n_stream; ++s) {
            const llama_seq_id seq    = g.ubatch.seq_id[s*n_tps][0];
            const uint32_t     stream = kv.get_stream(seq);
            const llama_kv_cells & cells = kv.get_cells(seq);
            for (int64_t j = 0; j < n_kv; ++j) {
                if (!cells.is_empty(j) && !gk->is_current(stream, j, cells.pos_get(j))) {
                    se->rederive_cells.push_back((int64_t) stream*gk->kv_size + j);
                    se->rederive_pos.push_back(cells.pos_get(j));
                }
            }
        }
        if (!se->rederive_cells.empty()) {
            const int64_t n = (int64_t) se->rederive_cells.size();
            se->rederive_idx = new_input(GGML_TYPE_I32, n, 1, 1, "se_rederive_idx");
            se->rederive_dk  = new_input(GGML_TYPE_I32, n, 1, 1, "se_rederive_dk");
        }
    }

    return (llm_graph_input_self_extend *) g.res->add_input(std::move(se));
}

namespace {

// A pure rotation by the delta positions in `pos`, with the layer's own RoPE
// parameters. ggml's rope scales cos/sin by attn_factor, and by a further
// (1 + 0.1 ln(1/freq_scale)) when YaRN is on; the forward pass already applied that
// magnitude once, so the delta rope must have unit magnitude.
ggml_tensor * rope_delta(const llm_graph_context & g, ggml_tensor * x, ggml_tensor * pos,
                         ggml_tensor * freq_factors, int il) {
    const float unit_attn_factor = g.ext_factor != 0.0f
        ? 1.0f / (1.0f + 0.1f * logf(1.0f / g.freq_scale))
        : 1.0f;
    ggml_tensor * r = ggml_rope_ext(g.ctx0, x, pos, freq_factors,
            g.hparams.n_rot(il), g.hparams.rope_type, g.n_ctx_orig, g.freq_base, g.freq_scale,
            g.ext_factor, unit_attn_factor, g.beta_fast, g.beta_slow);
    // the same dims as the forward rope: the trailing ones for MiniCPM3, PLM, DeepSeek-V2
    const int32_t first_dim = llama_se_rope_offset(g.arch, g.hparams, il);
    return first_dim > 0 ? ggml_rope_set_offset(r, first_dim) : r;
}

// The cached keys [d, heads_kv, n_kv, n_stream] rotated per cell by `delta` (I32
// [n_kv*n_stream]). Quantized or Hadamard-rotated caches are first brought back to f32.
ggml_tensor * rotate_cached_keys(const llm_graph_context & g, ggml_tensor * k, ggml_tensor * k_rot,
                                 ggml_tensor * delta, ggml_tensor * freq_factors, int il) {
    ggml_tensor * x = k;
    const bool plain = (k->type == GGML_TYPE_F32 || k->type == GGML_TYPE_F16) && ggml_is_contiguous(k);
    if (!plain || k_rot) {
        x = ggml_cast(g.ctx0, k, GGML_TYPE_F32);
        if (k_rot) {
            x = llama_mul_mat_hadamard(g.ctx0, x, k_rot); // H^2 = I
        }
    }
    x = ggml_reshape_3d(g.ctx0, x, k->ne[0], k->ne[1], k->ne[2]*k->ne[3]);
    x = rope_delta(g, x, delta, freq_factors, il);
    return ggml_reshape_4d(g.ctx0, x, k->ne[0], k->ne[1], k->ne[2], k->ne[3]);
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

// logits [n_kv, n_tps, n_head, n_stream], general form: normal and grouped logits for
// every cell, merged by replacement before the softmax: near * kq + far * kq_g
// (exactly kq where near).
ggml_tensor * general_logits(const llm_graph_context & g, llm_graph_input_self_extend * se, ggml_tensor * k,
                             ggml_tensor * k_g, ggml_tensor * q, ggml_tensor * q_g) {
    ggml_context * ctx0 = g.ctx0;
    const int64_t n_stream = k->ne[3];

    ggml_tensor * kq   = logits_of(ctx0, k,   q,   n_stream);
    ggml_tensor * kq_g = logits_of(ctx0, k_g, q_g, n_stream);

    kq   = ggml_mul_inplace(ctx0, kq,   se->near);
    kq_g = ggml_mul_inplace(ctx0, kq_g, se->far);
    return ggml_add_inplace(ctx0, kq, kq_g);
}

// The columns [first, first + n) of logits [n_kv, n_tps, n_head, n_stream].
ggml_tensor * logit_cols(ggml_context * ctx, ggml_tensor * x, int64_t first, int64_t n) {
    return ggml_view_4d(ctx, x, n, x->ne[1], x->ne[2], x->ne[3], x->nb[1], x->nb[2], x->nb[3],
                        first*ggml_element_size(x));
}

// logits [n_kv, n_tps, n_head, 1], banded form (cell j holds position j): grouped logits
// for cells [0, band_begin), both kinds merged for the band, normal logits from band_end.
ggml_tensor * banded_logits(const llm_graph_context & g, llm_graph_input_self_extend * se, ggml_tensor * k,
                            ggml_tensor * q, ggml_tensor * q_g, ggml_tensor * k_rot,
                            ggml_tensor * freq_factors, int il) {
    ggml_context * ctx0 = g.ctx0;
    const int64_t n_kv  = k->ne[2];
    const int64_t begin = se->band_begin;
    const int64_t end   = se->band_end;

    // grouped logits for cells [0, end)
    ggml_tensor * k_g = rotate_cached_keys(g, key_cells(ctx0, k, 0, end), k_rot, se->delta_k, freq_factors, il);
    g.cb(k_g, "se_k_grouped", il);
    ggml_tensor * kq_g = logits_of(ctx0, k_g, q_g, 1);

    // normal logits for cells [begin, n_kv)
    ggml_tensor * kq_n = logits_of(ctx0, key_cells(ctx0, k, begin, n_kv - begin), q, 1);

    auto cols = [&](ggml_tensor * x, int64_t first, int64_t n) { return logit_cols(ctx0, x, first, n); };

    // the band: both, merged by replacement
    ggml_tensor * band = ggml_add(ctx0,
            ggml_mul(ctx0, cols(kq_n, 0, end - begin), se->near),
            ggml_mul(ctx0, cols(kq_g, begin, end - begin), se->far));

    ggml_tensor * kq = band;
    if (begin > 0) {
        kq = ggml_concat(ctx0, cols(kq_g, 0, begin), kq, 0);
    }
    return ggml_concat(ctx0, kq, cols(kq_n, end - begin, n_kv - end), 0);
}

// logits [n_kv, n_tps, n_head, 1], banded form over the grouped-key cache: grouped
// logits for every cell, then the normal logits of the cells near some query written
// over them (merged with the grouped ones in the band). Only one n_kv-wide logit
// matrix, as in vanilla attention.
ggml_tensor * banded_logits_cached(const llm_graph_context & g, llm_graph_input_self_extend * se,
                                   ggml_tensor * k, ggml_tensor * k_g, ggml_tensor * q, ggml_tensor * q_g) {
    ggml_context * ctx0 = g.ctx0;
    const int64_t n_kv  = k->ne[2];
    const int64_t begin = se->band_begin;
    const int64_t end   = se->band_end;

    ggml_tensor * kq = logits_of(ctx0, k_g, q_g, 1);
    if (begin >= n_kv) {
        return kq;
    }

    ggml_tensor * kq_n = logits_of(ctx0, key_cells(ctx0, k, begin, n_kv - begin), q, 1);

    ggml_tensor * near_part = kq_n;
    if (end > begin) {
        // the band: both, merged by replacement
        ggml_tensor * band = ggml_add(ctx0,
                ggml_mul(ctx0, logit_cols(ctx0, kq_n, 0, end - begin), se->near),
                ggml_mul(ctx0, logit_cols(ctx0, kq, begin, end - begin), se->far));
        near_part = end < n_kv ? ggml_concat(ctx0, band, logit_cols(ctx0, kq_n, end - begin, n_kv - end), 0) : band;
    }
    return ggml_set_inplace(ctx0, kq, near_part, kq->nb[1], kq->nb[2], kq->nb[3], begin*ggml_element_size(kq));
}

// The layer's grouped-key cache seen like the K view k ([d, heads_kv, n_kv, n_stream]).
ggml_tensor * grouped_keys_view(ggml_context * ctx, ggml_tensor * storage, const ggml_tensor * k) {
    const size_t row   = ggml_row_size(storage->type, storage->ne[0]);
    const size_t s_off = k->view_offs / k->nb[3];     // the view's first stream
    return ggml_view_4d(ctx, storage, k->ne[0], k->ne[1], k->ne[2], k->ne[3],
            ggml_row_size(storage->type, k->ne[0]), row, row*storage->ne[1], row*storage->ne[1]*s_off);
}

// Exact Self-Extend in one flash attention, without an n_tokens x n_kv logit matrix.
// The head dimension is doubled: queries [q ; q_g], the far copy of a cell [0 ; k_g], its
// near copy [k ; 0], so that a query's dot product with either copy is the logit that the
// formula gives for it; the flash mask lets each query see one copy of each visible cell.
// The copies are the far ones of cells [0, flash_far_end) and the near ones of cells
// [flash_near_begin, n_kv): every cell twice in the general form, only the band in the
// banded one.
ggml_tensor * flash_attn_grouped(const llm_graph_context & g, llm_graph_input_self_extend * se,
                                 ggml_tensor * k, ggml_tensor * k_g, ggml_tensor * v,
                                 ggml_tensor * q, ggml_tensor * q_g, ggml_tensor * sinks, float kq_scale, int il) {
    ggml_context * ctx0 = g.ctx0;
    const int64_t d        = k->ne[0];
    const int64_t n_head_kv = k->ne[1];
    const int64_t n_kv     = k->ne[2];
    const int64_t n_stream = k->ne[3];
    const int64_t far_end  = se->flash_far_end;
    const int64_t near_beg = se->flash_near_begin;

    // the CPU's tiled flash kernel takes f16 or f32 keys and values of one type: other
    // caches (quantized, or K and V of different types) are read as f32
    const bool as_is = k->type == v->type && (k->type == GGML_TYPE_F16 || k->type == GGML_TYPE_F32);
    const ggml_type type = as_is ? k->type : GGML_TYPE_F32;
    auto typed = [&](ggml_tensor * x) { return x->type == type ? x : ggml_cast(ctx0, x, type); };

    ggml_tensor * keys    = typed(k);
    ggml_tensor * values  = typed(v);
    ggml_tensor * queries = q;
    if (far_end > 0) {
        // the zero halves: one graph input, as large as the larger of them
        ggml_tensor * zero = se->constant(ctx0, se->zeros, type, d*n_head_kv*std::max(far_end, n_kv - near_beg)*n_stream);
        auto zeros = [&](int64_t n) {
            const size_t es = ggml_element_size(zero);
            return ggml_view_4d(ctx0, zero, d, n_head_kv, n, n_stream, d*es, d*n_head_kv*es, d*n_head_kv*n*es, 0);
        };

        ggml_tensor * keys_far  = ggml_concat(ctx0, zeros(far_end), typed(key_cells(ctx0, k_g, 0, far_end)), 0);
        ggml_tensor * keys_near = ggml_concat(ctx0, typed(key_cells(ctx0, k, near_beg, n_kv - near_beg)),
                                              zeros(n_kv - near_beg), 0);
        keys    = ggml_concat(ctx0, keys_far, keys_near, 2);
        values  = ggml_concat(ctx0, typed(key_cells(ctx0, v, 0, far_end)),
                              typed(key_cells(ctx0, v, near_beg, n_kv - near_beg)), 2);
        queries = ggml_concat(ctx0, q, q_g, 0);                              // [2d, heads, n_tokens]
    }
    // else: every visible cell is near every query, and the near copies are the cells
    g.cb(keys, "se_flash_keys", il);
    queries = split_streams(ctx0, queries, n_stream);                        // [(2)d, n_tps, heads, n_stream]

    ggml_tensor * cur = ggml_flash_attn_ext(ctx0, queries,
            ggml_permute(ctx0, keys, 0, 2, 1, 3), ggml_permute(ctx0, values, 0, 2, 1, 3),
            se->flash_mask, kq_scale, g.hparams.f_max_alibi_bias,
            g.hparams.attn_soft_cap ? g.hparams.f_attn_logit_softcapping : 0.0f);
    ggml_flash_attn_ext_add_sinks(cur, sinks);
    ggml_prec_set_acc(cur, GGML_PREC_F32);
    g.cb(cur, "se_flash_attn", il);
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
                     ggml_tensor * kq_mask, ggml_tensor * v, ggml_tensor * sinks, float kq_scale, int il) {
    ggml_context * ctx0 = g.ctx0;
    const llama_hparams & hparams = g.hparams;
    g.cb(kq, "se_kq", il);

    if (hparams.attn_soft_cap) {
        // as llama.cpp's non-flash attention: cap * tanh(kq / cap), then kq_scale in the softmax
        kq = ggml_scale_inplace(ctx0, kq, 1.0f / hparams.f_attn_logit_softcapping);
        kq = ggml_tanh_inplace(ctx0, kq);
        kq = ggml_scale_inplace(ctx0, kq, hparams.f_attn_logit_softcapping);
    }
    if (sums_values_by_flash(kq, v)) {
        return sum_values_by_flash(g, se, kq, kq_mask, v, sinks, kq_scale);
    }

    // in place: the logits are this function's own, and vanilla attention's allocator
    // reuses its kq for the softmax too (without this, compute buffers hold one more matrix)
    kq = ggml_soft_max_ext_inplace(ctx0, kq, kq_mask, kq_scale, hparams.f_max_alibi_bias);
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

// Store the grouped keys of this ubatch's new tokens (their roped keys rotated by dk)
// and derive again, from the KV cache, those of cells whose stored one is not current.
void store_grouped_keys(const llm_graph_context & g, llm_graph_input_self_extend * se,
                        ggml_tensor * storage, ggml_tensor * k_roped,
                        ggml_tensor * freq_factors, int il) {
    ggml_context * ctx0 = g.ctx0;
    ggml_tensor * k_rot = se->attn.k_rot;
    const int64_t n_embd_gqa = storage->ne[0];
    ggml_tensor * rows = ggml_reshape_2d(ctx0, storage, n_embd_gqa, storage->ne[1]*storage->ne[2]);

    // into the storage's space: Hadamard-rotated like the K cache when it is
    auto to_storage = [&](ggml_tensor * x) {
        return k_rot ? llama_mul_mat_hadamard(ctx0, x, k_rot) : x;
    };

    if (se->rederive_idx) {
        const llama_kv_cache & kv = llama_se_access::cache(*se->attn.mctx);
        ggml_tensor * k_all = kv.get_k_storage(il);
        k_all = ggml_reshape_2d(ctx0, k_all, k_all->ne[0], k_all->ne[1]*k_all->ne[2]);
        ggml_tensor * x = ggml_get_rows(ctx0, k_all, se->rederive_idx);            // F32 [n_embd_gqa, n]
        if (k_rot) {
            x = ggml_reshape_3d(ctx0, x, k_rot->ne[0], n_embd_gqa/k_rot->ne[0], x->ne[1]);
            x = llama_mul_mat_hadamard(ctx0, x, k_rot);                           // H^2 = I
        }
        x = ggml_reshape_3d(ctx0, x, k_roped->ne[0], k_roped->ne[1], se->rederive_idx->ne[0]);
        x = to_storage(rope_delta(g, x, se->rederive_dk, freq_factors, il));
        ggml_build_forward_expand(g.gf, ggml_set_rows(ctx0, rows,
                ggml_reshape_2d(ctx0, x, n_embd_gqa, x->ne[2]), se->rederive_idx));
    }

    ggml_tensor * k_new = to_storage(rope_delta(g, k_roped, se->delta_k_new, freq_factors, il));
    g.cb(k_new, "se_k_grouped_new", il);
    ggml_build_forward_expand(g.gf, ggml_set_rows(ctx0, rows,
            ggml_reshape_2d(ctx0, ggml_cont(ctx0, k_new), n_embd_gqa, k_new->ne[2]), se->attn.k_idxs));
}

// With an eval callback set (the per-layer check in tests/, or debugging), plain f32
// copies of what layer il's Self-Extend attention computed from and gave:
//   se_cap_q   [d, n_head, n_tokens]             the roped queries times kq_scale
//   se_cap_k/v [d, n_head_kv, n_kv, n_stream]    the cache's cells (true positions)
//   se_cap_out [d*n_head, n_tokens]
void capture_layer(const llm_graph_context & g, ggml_tensor * q_roped, ggml_tensor * k, ggml_tensor * v,
                   ggml_tensor * out, float kq_scale, int il) {
    ggml_context * ctx0 = g.ctx0;
    auto f32 = [&](ggml_tensor * x) { return x->type == GGML_TYPE_F32 ? ggml_cont(ctx0, x) : ggml_cast(ctx0, x, GGML_TYPE_F32); };
    const bool v_trans = v->nb[1] > v->nb[2];   // [n_kv, heads, d, n_stream]: back to [d, heads, n_kv, n_stream]
    ggml_tensor * items[4] = {
        ggml_scale(ctx0, q_roped, kq_scale), f32(k), f32(v_trans ? ggml_permute(ctx0, v, 2, 1, 0, 3) : v), ggml_cont(ctx0, out) };
    const char * names[4] = { "se_cap_q", "se_cap_k", "se_cap_v", "se_cap_out" };
    for (int i = 0; i < 4; ++i) {
        ggml_format_name(items[i], "%s-%d", names[i], il);
        ggml_build_forward_expand(g.gf, items[i]);
    }
}

ggml_tensor * self_extend_attn(
        const llm_graph_context     & g,
        llm_graph_input_self_extend * se,
        ggml_tensor * q_roped,
        ggml_tensor * k_roped,
        ggml_tensor * q,
        ggml_tensor * k,
        ggml_tensor * v,
        ggml_tensor * kq_mask,
        ggml_tensor * sinks,
        float         kq_scale,
        int           il) {
    const llama_kv_cache & kv = llama_se_access::cache(*se->attn.mctx);
    ggml_tensor * k_rot = se->attn.k_rot;
    ggml_context * ctx0 = g.ctx0;
    ggml_tensor * freq_factors = llama_se_access::model(kv).get_rope_factors(g.cparams, il);

    if (se->delta_eff) {
        // decode: llama.cpp's attention over keys rotated by d_eff, with the queries
        // before any Hadamard rotation (the rotated keys are brought back out of it too)
        ggml_tensor * k_eff = rotate_cached_keys(g, k, k_rot, se->delta_eff, freq_factors, il);
        g.cb(k_eff, "se_k_eff", il);
        return g.build_attn_mha(q_roped, k_eff, v, nullptr, kq_mask, sinks, nullptr, 0, kq_scale, il);
    }

    if (se->banded && se->delta_q == nullptr) {
        return nullptr; // every key is a neighbor of every query: plain attention
    }

    // grouped queries: the roped queries, rotated once more by dq
    ggml_tensor * q_g = rope_delta(g, q_roped, se->delta_q, freq_factors, il);
    g.cb(q_g, "se_q_grouped", il);

    ggml_tensor * cur = nullptr;
    ggml_tensor * storage = se->grouped_keys ? se->grouped_keys->layers[il] : nullptr;
    if (storage) {
        store_grouped_keys(g, se, storage, k_roped, freq_factors, il);
        ggml_tensor * k_g = grouped_keys_view(ctx0, storage, k);
        if (k_rot) {
            q_g = llama_mul_mat_hadamard(ctx0, q_g, k_rot); // the stored keys are H k_g
        }
        cur = se->flash_mask ? flash_attn_grouped(g, se, k, k_g, v, q, q_g, sinks, kq_scale, il)
            : attend(g, se, se->banded ? banded_logits_cached(g, se, k, k_g, q, q_g) : general_logits(g, se, k, k_g, q, q_g),
                     kq_mask, v, sinks, kq_scale, il);
    } else if (se->banded) {
        cur = attend(g, se, banded_logits(g, se, k, q, q_g, k_rot, freq_factors, il), kq_mask, v, sinks, kq_scale, il);
    } else {
        // grouped keys: the cached keys (true positions) rotated by dk
        ggml_tensor * k_g = rotate_cached_keys(g, k, k_rot, se->delta_k, freq_factors, il);
        g.cb(k_g, "se_k_grouped", il);
        cur = attend(g, se, general_logits(g, se, k, k_g, q, q_g), kq_mask, v, sinks, kq_scale, il);
    }

    if (!g.cparams.offload_kqv) {
        // as in build_attn_mha: everything between the KV store and the output on the CPU
        ggml_backend_sched_set_tensor_backend(g.sched, cur, g.backend_cpu);
    }

    ggml_build_forward_expand(g.gf, cur);

    return cur;
}

}  // namespace

ggml_tensor * llama_se_build_attn(
        const llm_graph_context     & g,
        llm_graph_input_self_extend * se,
        ggml_tensor * q_roped,
        ggml_tensor * k_roped,
        ggml_tensor * q,
        ggml_tensor * k,
        ggml_tensor * v,
        ggml_tensor * kq_mask,
        ggml_tensor * kq_b,
        ggml_tensor * sinks,
        float         kq_scale,
        int           il) {
    // layers (se-arch-rules.cpp) and graphs that Self-Extend leaves as they are
    if (se == nullptr || kq_b != nullptr || k_roped == nullptr || !g.cparams.causal_attn || g.ubatch.is_pos_2d() ||
        g.cparams.training || g.hparams.rope_type == LLAMA_ROPE_TYPE_NONE ||
        !llama_se_layer_takes(llama_se_access::model(llama_se_access::cache(*se->attn.mctx)), il)) {
        return nullptr;
    }

    ggml_tensor * cur = self_extend_attn(g, se, q_roped, k_roped, q, k, v, kq_mask, sinks, kq_scale, il);
    if (cur != nullptr && g.cparams.cb_eval != nullptr) {
        capture_layer(g, q_roped, k, v, cur, kq_scale, il);
    }
    return cur;
}

uint32_t llama_se_graph_extra_nodes(const llama_cparams & cparams, uint32_t n_layer) {
    // about 25 nodes per layer (ropes, casts, reshapes, two matmuls, the merge), 15 more
    // for storing grouped keys; keep margin
    return cparams.se_n_group > 0 ? 64u*n_layer + 16u : 0u;
}
