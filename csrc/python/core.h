// Shared declarations of the selfextend_gguf._core extension (pybind11).
#pragma once

#include <pybind11/pybind11.h>

#include "llama.h"

#include <memory>
#include <string>

namespace py = pybind11;

// A loaded GGUF model. Contexts keep it alive through a shared_ptr.
struct Model {
    llama_model * model = nullptr;
    const llama_vocab * vocab = nullptr;
    std::string path;

    ~Model();
};

void bind_model(py::module_ & m);
void bind_context(py::module_ & m);
