// selfextend_gguf._core: the pybind11 module over llama.cpp and our Self-Extend API.

#include "core.h"

#include "llama-selfextend.h"

#include <pybind11/stl.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <stdexcept>
#include <utility>
#include <vector>

namespace {

std::atomic<int> g_log_level{GGML_LOG_LEVEL_ERROR};

// llama.cpp's error lines on this thread, kept for the exception of a failed call
thread_local std::string t_errors;
constexpr size_t max_kept_errors = 4096;

void keep_error(const char * text) {
    if (t_errors.size() < max_kept_errors) {
        t_errors += text;
    }
}

// llama.cpp logs through this; by default only errors reach stderr.
void log_to_stderr(ggml_log_level level, const char * text, void * /*user_data*/) {
    static thread_local bool continuing_shown = false;
    static thread_local bool continuing_error = false;
    if (level == GGML_LOG_LEVEL_CONT) {
        if (continuing_shown) {
            fputs(text, stderr);
        }
        if (continuing_error) {
            keep_error(text);
        }
        return;
    }
    continuing_error = level == GGML_LOG_LEVEL_ERROR;
    if (continuing_error) {
        keep_error(text);
    }
    continuing_shown = level >= g_log_level.load();
    if (continuing_shown) {
        fputs(text, stderr);
    }
}

std::string apply_chat_template(const std::string & tmpl,
                                const std::vector<std::pair<std::string, std::string>> & messages,
                                bool add_assistant) {
    std::vector<llama_chat_message> chat;
    chat.reserve(messages.size());
    for (const auto & [role, content] : messages) {
        chat.push_back({role.c_str(), content.c_str()});
    }
    std::vector<char> buf(4096);
    for (int attempt = 0; attempt < 2; ++attempt) {
        const int32_t n = call_llama("applying the chat template", "", [&] {
            return llama_chat_apply_template(tmpl.c_str(), chat.data(), chat.size(),
                                             add_assistant, buf.data(), (int32_t) buf.size());
        });
        if (n < 0) {
            throw std::invalid_argument("this chat template is not one llama.cpp knows; "
                                        "pass chat_format or format the prompt yourself");
        }
        if ((size_t) n <= buf.size()) {
            return std::string(buf.data(), n);
        }
        buf.resize(n);
    }
    throw std::runtime_error("chat template output size changed between calls");
}

}  // namespace

void llama_errors_clear() {
    t_errors.clear();
}

std::string llama_errors_take() {
    std::string errors;
    errors.swap(t_errors);
    while (!errors.empty() && (errors.back() == '\n' || errors.back() == ' ')) {
        errors.pop_back();
    }
    return errors;
}

PYBIND11_MODULE(_core, m) {
    m.doc() = "Native core of selfextend-gguf: llama.cpp with exact Self-Extend attention";

    py::register_exception<llama_cpp_error>(m, "LlamaCppError", PyExc_RuntimeError);

    llama_log_set(log_to_stderr, nullptr);
    llama_backend_init();

    m.def("set_verbose", [](bool verbose) {
        g_log_level = verbose ? GGML_LOG_LEVEL_INFO : GGML_LOG_LEVEL_ERROR;
    }, py::arg("verbose"), "Show llama.cpp's informational logs on stderr (errors are always shown).");

    m.def("system_info", []() { return std::string(llama_print_system_info()); });

    m.def("self_extend_strerror", [](int32_t status) { return std::string(llama_self_extend_strerror(status)); },
          py::arg("status"));

    m.def("apply_chat_template", &apply_chat_template,
          py::arg("template"), py::arg("messages"), py::arg("add_assistant") = true,
          "Format (role, content) pairs with one of llama.cpp's built-in chat templates.");

    m.attr("ROPE_TYPE_NONE") = (int) LLAMA_ROPE_TYPE_NONE;
    m.attr("ROPE_TYPE_NORM") = (int) LLAMA_ROPE_TYPE_NORM;
    m.attr("ROPE_TYPE_NEOX") = (int) LLAMA_ROPE_TYPE_NEOX;

    bind_model(m);
    bind_context(m);
    bind_build_info(m);
}
