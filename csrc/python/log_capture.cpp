// llama.cpp's log: shown on stderr from a threshold (errors alone unless verbose), and
// its error lines kept per thread for the exception of the failed call (core.h).

#include "core.h"

#include <atomic>
#include <cstdio>
#include <string>

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

void llama_log_capture_install() {
    llama_log_set(log_to_stderr, nullptr);
}

void llama_log_set_threshold(int level) {
    g_log_level = level;
}
