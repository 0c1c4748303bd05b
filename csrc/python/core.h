// Shared declarations of the selfextend_gguf._core extension (pybind11).
#pragma once

#include <pybind11/pybind11.h>

#include "llama.h"

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>

namespace py = pybind11;

// A loaded GGUF model. Contexts keep it alive through a shared_ptr.
struct Model {
    llama_model * model = nullptr;
    const llama_vocab * vocab = nullptr;
    std::string path;

    ~Model();
};

struct TensorCapture;

// A llama.cpp context (KV cache + compute) over a Model. The sampler reads its logits.
struct Context {
    std::shared_ptr<Model> model;
    llama_context * ctx = nullptr;
    bool kv_unified = true;
    std::atomic<bool> abort_requested{false};
    std::unique_ptr<TensorCapture> capture;  // with ContextOptions.capture_layers

    ~Context();
};

// A failure inside llama.cpp, raised in Python as selfextend_gguf.LlamaCppError (a
// RuntimeError) with the operation's name, llama.cpp's own message and what to do.
struct llama_cpp_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A decode that found no KV cache slot for its batch (llama_decode returned 1), raised as
// selfextend_gguf._core.KvCacheFull (a LlamaCppError): the batch scheduler makes room and
// retries on this type alone.
struct kv_cache_full_error : llama_cpp_error {
    using llama_cpp_error::llama_cpp_error;
};

// Error lines llama.cpp logged on this thread since the last call (its reasons for a
// failed load or decode), then forgotten; "" if none.
void        llama_errors_clear();
std::string llama_errors_take();

// llama.cpp's log through the two above (log_capture.cpp): install once, then show on
// stderr what is at least `level` (a ggml_log_level)
void llama_log_capture_install();
void llama_log_set_threshold(int level);

// Run a llama.cpp call that may throw (a vocabulary lookup's std::out_of_range, ...) and
// turn any C++ exception into a llama_cpp_error that names the operation.
template <typename F>
auto call_llama(const char * operation, const char * hint, F && f) -> decltype(f()) {
    try {
        return f();
    } catch (const llama_cpp_error &) {
        throw;
    } catch (const std::exception & e) {
        std::string message = std::string(operation) + " failed in llama.cpp: " + e.what();
        if (hint && *hint) {
            message += std::string(". ") + hint;
        }
        throw llama_cpp_error(message);
    }
}

void bind_model(py::module_ & m);
void bind_context(py::module_ & m);
void bind_sampler(py::module_ & m);
void bind_chat(py::module_ & m);
void bind_rpc(py::module_ & m);
void bind_build_info(py::module_ & m);
