// Which layers of a model take Self-Extend, decided from what each architecture's graph
// does (see se-arch-rules.cpp for the table and ../README.md for how each is verified).
#pragma once

#include <cstdint>
#include <string>

struct llama_model;

// Whether layer il's attention gets Self-Extend: a global (not sliding-window) attention
// layer whose q and k are roped (1-D RoPE) just before attention in the graph.
bool llama_se_layer_takes(const llama_model & model, int il);

// Number of layers that take Self-Extend; 0 with `why` set when the model cannot be
// served (the architecture is not in the table, or no layer qualifies).
int32_t llama_se_count_layers(const llama_model & model, std::string & why);
