// Copies of named graph tensors, taken through llama.cpp's eval callback while a decode
// computes: the per-layer Self-Extend check in tests/ reads what each layer computed from
// (se_cap_q/k/v-<layer>) and gave (se_cap_out-<layer>), see csrc/se-capture.cpp.
//
// They are read once a graph has computed to its end (its logits, "result_output"): the
// callback notes them as the scheduler asks about each node and stops the scheduler only
// at the last one, so the graph computes in the pieces it has without the capture (the
// capture nodes are graph outputs: nothing overwrites them before). Stopping at each of
// them instead would cut every layer into separately computed pieces.
#pragma once

#include "core.h"

#include "ggml.h"

#include <map>
#include <mutex>
#include <string>
#include <vector>

struct TensorCapture {
    struct Item {
        std::vector<int64_t> shape;  // numpy order (outermost first)
        std::vector<float>   data;
    };
    std::mutex mutex;
    std::map<std::string, std::vector<Item>> items;  // one Item per computed graph
    std::vector<ggml_tensor *> pending;              // noted in this graph, read at its end

    // a ggml_backend_sched_eval_callback; user_data is the TensorCapture
    static bool callback(ggml_tensor * t, bool ask, void * user_data);

    // {name: [array per graph]}; forgets them
    py::dict take();
};
