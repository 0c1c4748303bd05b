// The rotations Self-Extend applies on top of the forward pass's RoPE: position
// arithmetic (floor division, the position a key is cached at) and turning vectors by a
// position delta with a layer's own RoPE parameters. Shared by the attention graph
// (se-graph.cpp) and the K-shift and regrouping of cached keys (se-key-shift.cpp).
#pragma once

#include "llama.h"

#include <cstdint>

struct ggml_context;
struct ggml_tensor;
struct llama_cparams;
struct llama_model;

// a/b rounded down (positions and their deltas can be negative)
inline int32_t llama_se_floor_div(int32_t a, int32_t b) {
    const int32_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// The position a Self-Extend layer's key for position p is cached at: p/G, or p itself
// for normal keys (G = 0).
inline int32_t llama_se_cached_position(llama_pos p, int32_t G) {
    return G > 0 ? llama_se_floor_div(p, G) : p;
}

// x [d, heads, n] (f32 or f16) turned by the position deltas `delta` (I32 [n]) with layer
// il's RoPE parameters. A pure rotation: ggml's rope scales by YaRN's magnitude, which the
// forward pass already applied once. With whole_heads the turn takes the dims the forward
// rope takes (the trailing ones for MiniCPM3, PLM, DeepSeek-V2); without, x is a view of
// those dims already (as llama.cpp's K-shift views them).
ggml_tensor * llama_se_turn(ggml_context * ctx, ggml_tensor * x, ggml_tensor * delta, const llama_model & model,
                            const llama_cparams & cparams, int il, bool whole_heads, bool inplace);
