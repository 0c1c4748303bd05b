// selfextend_gguf._core: the pybind11 module over llama.cpp and our Self-Extend API.

#include "core.h"

#include "llama-selfextend.h"
#include "se-plan.h"
#include "log.h"

#include <cstdlib>

#include "gguf.h"

#include <pybind11/stl.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <stdexcept>
#include <utility>
#include <vector>

PYBIND11_MODULE(_core, m) {
    m.doc() = "Native core of selfextend-gguf: llama.cpp with exact Self-Extend attention";

    auto & llama_cpp_error_type = py::register_exception<llama_cpp_error>(m, "LlamaCppError", PyExc_RuntimeError);
    // registered after its base: pybind11 tries the newest translator first
    py::register_exception<kv_cache_full_error>(m, "KvCacheFull", llama_cpp_error_type.ptr());

    llama_log_capture_install();
    llama_backend_init();

    // common/ logs through a logger of its own; its messages reach Python as exception
    // texts, so it stays quiet unless verbose
    common_log_set_verbosity_thold(LOG_LEVEL_OUTPUT);

    // SELFEXTEND_GGUF_DEBUG_LOG=1 shows everything, debug logs included (e.g. the
    // scheduler's node assignments with GGML_SCHED_DEBUG=2, scripts/gpu_placement.py)
    static const bool debug_log = std::getenv("SELFEXTEND_GGUF_DEBUG_LOG") != nullptr;
    if (debug_log) {
        llama_log_set_threshold(GGML_LOG_LEVEL_DEBUG);
    }
    m.def("set_verbose", [](bool verbose) {
        llama_log_set_threshold(debug_log ? GGML_LOG_LEVEL_DEBUG : verbose ? GGML_LOG_LEVEL_INFO : GGML_LOG_LEVEL_ERROR);
        common_log_set_verbosity_thold(verbose ? LOG_LEVEL_INFO : LOG_LEVEL_OUTPUT);
    }, py::arg("verbose"), "Show llama.cpp's informational logs on stderr (errors are always shown).");

    m.def("system_info", []() { return std::string(llama_print_system_info()); });

    m.def("self_extend_strerror", [](int32_t status) { return std::string(llama_self_extend_strerror(status)); },
          py::arg("status"));


    m.def("builtin_chat_templates", []() {
        std::vector<const char *> names(256);
        const int32_t n = llama_chat_builtin_templates(names.data(), names.size());
        std::vector<std::string> out;
        for (int32_t i = 0; i < n && i < (int32_t) names.size(); ++i) {
            out.emplace_back(names[i]);
        }
        return out;
    }, "Names of the chat templates llama.cpp has built in (chat_format=...).");

    m.def("gguf_header_size", [](const std::string & path) {
        gguf_init_params params = { /*no_alloc =*/ true, /*ctx =*/ nullptr };
        gguf_context * g = gguf_init_from_file(path.c_str(), params);
        if (g == nullptr) {
            throw std::invalid_argument("not a readable GGUF file: '" + path + "'");
        }
        const size_t offset = gguf_get_data_offset(g);
        gguf_free(g);
        return offset;
    }, py::arg("path"), "Bytes of a GGUF file before its tensor data: the header, metadata and tensor table.");

    m.def("numa_init", [](int strategy) { llama_numa_init((ggml_numa_strategy) strategy); }, py::arg("strategy"),
          "NUMA placement for this process (llama_numa_init).");

    // the names SELFEXTEND_GGUF_FLASH_KERNEL takes (se-plan.h: the one list; Python
    // refuses another before a context is made)
    m.attr("FLASH_KERNEL_FORMS") = py::tuple(py::cast(std::vector<std::string>(
        std::begin(LLAMA_SE_REQUEST_NAMES), std::end(LLAMA_SE_REQUEST_NAMES))));
    m.attr("ROPE_TYPE_NONE") = (int) LLAMA_ROPE_TYPE_NONE;
    m.attr("ROPE_TYPE_NORM") = (int) LLAMA_ROPE_TYPE_NORM;
    m.attr("ROPE_TYPE_NEOX") = (int) LLAMA_ROPE_TYPE_NEOX;

    bind_model(m);
    bind_context(m);
    bind_sampler(m);
    bind_chat(m);
    bind_rpc(m);
    bind_build_info(m);
}
