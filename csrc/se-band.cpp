#include "se-band.h"

#include "llama-se-hooks.h"
#include "se-access.h"

#include "llama-graph.h"
#include "llama-impl.h"
#include "llama-kv-cache.h"
#include "llama-model.h"

#include "ggml-backend.h"

#include <algorithm>
#include <utility>
#include <vector>

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
}  // namespace

bool llama_se_find_band(const llm_graph_context & g, const llama_se_attn_source & src, int32_t W,
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
