// Moving the grouped keys that Self-Extend layers cache (se-graph.cpp states the layout).
//
// A Self-Extend layer's cell holds R(p/G) k. When llama.cpp's K-shift moves a cell from
// position p - s to p (seq_add, seq_div), its key turns by p/G - (p - s)/G, not by s
// (llama_se_build_shift, called from the K-shift graph); when the context's G changes,
// every cell turns by p/G' - p/G, with G = 0 meaning the normal key R(p) k
// (llama_se_regroup_keys).
#pragma once

#include <cstdint>

class  llama_kv_cache;
struct llama_context;

// Turn the cached keys of the Self-Extend layers of kv from group size g_from to g_to
// (0: normal keys), after applying any pending K-shift with the current setting. Runs one
// graph now; false when it could not be allocated or computed (the keys are then as
// they were, or partly turned: the caller should clear the cache).
bool llama_se_regroup_keys(llama_context & lctx, llama_kv_cache & kv, int32_t g_from, int32_t g_to);
