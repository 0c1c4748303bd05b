// Which way a graph's Self-Extend layers attend, chosen once per graph: the band of
// cells that need both logits (se-band.h) and one of three forms (se-graph.cpp describes
// them; each is built in a file of its own, se-form-*.cpp).
#pragma once

#include "ggml-backend.h"

#include <cstdint>

struct llm_graph_context;
struct llama_se_attn_source;

enum llama_se_form {
    LLAMA_SE_FORM_LOGITS,        // grouped logits of every cell, the near cells' normal ones over them, one softmax
    LLAMA_SE_FORM_GROUPED_FLASH, // stock ops: one flash attention over doubled heads (a GPU)
    LLAMA_SE_FORM_CPU_FLASH,     // Self-Extend's flash kernel on the CPU (se-flash-cpu.h)
};

// SELFEXTEND_GGUF_FLASH_KERNEL=<name>: a form asked for by name, for tests and comparison
enum llama_se_form_request {
    LLAMA_SE_REQUEST_NONE,    // unset: the form chosen for the device
    LLAMA_SE_REQUEST_STOCK,   // "stock": the stock-op form (flash attention over doubled heads) on the CPU too
    LLAMA_SE_REQUEST_DERIVED, // "derived": the CPU kernel reading derived near keys instead of turning them
    LLAMA_SE_REQUEST_LOGITS,  // "logits": the logit form that a device refusing the stock-op form's shapes takes
};

// The names of the requests from LLAMA_SE_REQUEST_STOCK on, in order: the one list of
// them (Python validates the variable against it: _core.FLASH_KERNEL_FORMS)
constexpr const char * LLAMA_SE_REQUEST_NAMES[] = { "stock", "derived", "logits" };

// The environment's request, read once per graph (an unknown name is no request: Python
// refuses it before a context is made)
llama_se_form_request llama_se_form_requested();

const char * llama_se_form_name(llama_se_form form);

struct llama_se_plan {
    llama_se_form         form    = LLAMA_SE_FORM_LOGITS;
    llama_se_form_request request = LLAMA_SE_REQUEST_NONE;
    // the band (se-band.h): normal keys derived for cells from near_begin, grouped logits
    // for cells below far_end; both, merged, in between
    int64_t near_begin = 0;
    int64_t far_end    = 0;
};

// The plan of a causal graph over n_kv cells, n_tps queries in each of n_stream streams.
// With verbose logs on, a form other than the last graph's is logged.
llama_se_plan llama_se_plan_graph(const llm_graph_context & g, const llama_se_attn_source & src,
                                  int64_t n_kv, int64_t n_tps, int64_t n_stream);

// The device other than the CPU whose memory holds t, or nullptr
ggml_backend_dev_t llama_se_accelerator_of(const ggml_tensor * t);

// The stock-op form's key and value type, and its values' head size
ggml_type llama_se_grouped_flash_type(ggml_type type_k, ggml_type type_v);
int64_t   llama_se_grouped_flash_value_width(int64_t d, int64_t dv, bool doubled);
