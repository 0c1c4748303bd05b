// Which layers of a model take Self-Extend, decided from what each architecture's graph
// does (see se-arch-rules.cpp for the table and ../README.md for how each is verified).
#pragma once

#include "llama-arch.h"

#include <cstdint>
#include <string>

struct llama_model;
struct llama_hparams;

// Whether layer il's attention gets Self-Extend: a global (not sliding-window) attention
// layer whose q and k are roped (1-D RoPE) just before attention in the graph.
bool llama_se_layer_takes(const llama_model & model, int il);

// Number of layers that take Self-Extend; 0 with `why` set when the model cannot be
// served (the architecture is not in the table, or no layer qualifies).
int32_t llama_se_count_layers(const llama_model & model, std::string & why);

// The first rotated dim of each head of layer il: 0 when RoPE turns the leading n_rot dims
// (almost every graph), n_embd_head_k - n_rot when it turns the trailing ones (MiniCPM3,
// PLM, non-MLA DeepSeek-V2: q is roped with ggml_rope_set_offset, k = concat(unroped, roped)).
int32_t llama_se_rope_offset(llm_arch arch, const llama_hparams & hparams, int il);
