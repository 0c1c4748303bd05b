// The band of a ubatch: which cells need the normal logits, which the grouped ones, and
// which both (se-graph.cpp states the layout).
#pragma once

#include <cstdint>

struct llm_graph_context;
struct llama_se_attn_source;

bool llama_se_find_band(const llm_graph_context & g, const llama_se_attn_source & src, int32_t W,
                        int64_t n_kv, bool reserving, int64_t & begin, int64_t & end);
