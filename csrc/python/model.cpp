// _core.Model: a GGUF model and its vocabulary.

#include "core.h"

#include "ggml-backend.h"
#include "llama-selfextend.h"

#include <pybind11/stl.h>

#include <cstdio>
#include <optional>
#include <stdexcept>
#include <vector>

Model::~Model() {
    if (model) {
        llama_model_free(model);
    }
}

namespace {

// How to load a model: llama_cpp.Llama's constructor arguments for llama_model_params
struct ModelOptions {
    int32_t            n_gpu_layers = 0;
    int32_t            split_mode   = LLAMA_SPLIT_MODE_LAYER;
    int32_t            main_gpu     = 0;
    std::vector<float> tensor_split;  // empty: llama.cpp's default split
    bool               vocab_only   = false;
    bool               use_mmap     = true;
    bool               use_mlock    = false;
    bool               check_tensors = false;
    // (key, value) with value a bool, int, float or str, as llama_cpp's kv_overrides
    std::vector<std::pair<std::string, py::object>> kv_overrides;
    // the devices layers may go to, by name (with use_devices; otherwise every registered one)
    bool                     use_devices = false;
    std::vector<std::string> devices;
};

llama_model_kv_override kv_override(const std::string & key, const py::object & value) {
    llama_model_kv_override o{};
    if (key.empty() || key.size() >= sizeof(o.key)) {
        throw std::invalid_argument("kv_overrides: key '" + key + "' must have 1 to 127 characters");
    }
    std::snprintf(o.key, sizeof(o.key), "%s", key.c_str());
    if (py::isinstance<py::bool_>(value)) {
        o.tag = LLAMA_KV_OVERRIDE_TYPE_BOOL;
        o.val_bool = value.cast<bool>();
    } else if (py::isinstance<py::int_>(value)) {
        o.tag = LLAMA_KV_OVERRIDE_TYPE_INT;
        o.val_i64 = value.cast<int64_t>();
    } else if (py::isinstance<py::float_>(value)) {
        o.tag = LLAMA_KV_OVERRIDE_TYPE_FLOAT;
        o.val_f64 = value.cast<double>();
    } else if (py::isinstance<py::str>(value)) {
        const std::string v = value.cast<std::string>();
        if (v.size() >= sizeof(o.val_str)) {
            throw std::invalid_argument("kv_overrides: the value of '" + key + "' must have at most 127 characters");
        }
        o.tag = LLAMA_KV_OVERRIDE_TYPE_STR;
        std::snprintf(o.val_str, sizeof(o.val_str), "%s", v.c_str());
    } else {
        throw std::invalid_argument("kv_overrides: the value of '" + key + "' must be a bool, int, float or str");
    }
    return o;
}

std::shared_ptr<Model> load_model(const std::string & path, const ModelOptions & o) {
    llama_model_params params = llama_model_default_params();
    params.n_gpu_layers  = o.n_gpu_layers;
    params.split_mode    = (llama_split_mode) o.split_mode;
    params.main_gpu      = o.main_gpu;
    params.vocab_only    = o.vocab_only;
    params.check_tensors = o.check_tensors;
    if (!o.use_mmap) {
        params.load_mode = o.use_mlock ? LLAMA_LOAD_MODE_MLOCK : LLAMA_LOAD_MODE_NONE;
    } else if (o.use_mlock) {
        params.load_mode = LLAMA_LOAD_MODE_MMAP_MLOCK;
    } else {
        params.load_mode = LLAMA_LOAD_MODE_MMAP;
    }
    std::vector<float> split;
    if (!o.tensor_split.empty()) {
        if (o.tensor_split.size() > llama_max_devices()) {
            throw std::invalid_argument("tensor_split has " + std::to_string(o.tensor_split.size()) +
                                        " entries; this build has at most " + std::to_string(llama_max_devices()) +
                                        " devices");
        }
        split = o.tensor_split;
        split.resize(llama_max_devices(), 0.0f);
        params.tensor_split = split.data();
    }
    std::vector<ggml_backend_dev_t> devices;
    if (o.use_devices) {
        for (const auto & name : o.devices) {
            ggml_backend_dev_t dev = ggml_backend_dev_by_name(name.c_str());
            if (dev == nullptr) {
                throw std::invalid_argument("no device '" + name + "' is registered");
            }
            devices.push_back(dev);
        }
        devices.push_back(nullptr);   // the list ends with NULL; empty: the CPU only
        params.devices = devices.data();
    }
    std::vector<llama_model_kv_override> overrides;
    for (const auto & [key, value] : o.kv_overrides) {
        overrides.push_back(kv_override(key, value));
    }
    if (!overrides.empty()) {
        overrides.push_back(llama_model_kv_override{});  // an empty key ends the list
        params.kv_overrides = overrides.data();
    }

    llama_model * model = nullptr;
    std::string reason;
    {
        py::gil_scoped_release release;
        llama_errors_clear();
        model = call_llama("loading the model", "", [&] { return llama_model_load_from_file(path.c_str(), params); });
        reason = llama_errors_take();
    }
    if (model == nullptr) {
        throw std::invalid_argument("llama.cpp could not load '" + path +
            "': not a valid GGUF model (truncated, corrupt, or an unsupported architecture)" +
            (reason.empty() ? std::string("; run with verbose=True to see llama.cpp's log")
                            : "; llama.cpp says: " + reason));
    }
    auto result = std::make_shared<Model>();
    result->model = model;
    result->vocab = llama_model_get_vocab(model);
    result->path  = path;
    return result;
}

std::optional<std::string> meta_value(const Model & m, const std::string & key) {
    std::vector<char> buf(256);
    int32_t n = llama_model_meta_val_str(m.model, key.c_str(), buf.data(), buf.size());
    if (n < 0) {
        return std::nullopt;
    }
    if ((size_t) n >= buf.size()) {
        buf.resize(n + 1);
        n = llama_model_meta_val_str(m.model, key.c_str(), buf.data(), buf.size());
    }
    return std::string(buf.data(), n);
}

// a vocabulary lookup that fails inside llama.cpp throws std::out_of_range ("unordered_map::at")
constexpr const char * vocab_hint =
    "The model's vocabulary lacks a token that llama.cpp needs here (for example the byte-fallback "
    "tokens <0x00>..<0xFF> of a SentencePiece vocabulary); the GGUF's tokenizer is incomplete or "
    "corrupt, so use another GGUF of this model";

std::vector<llama_token> tokenize(const Model & m, const std::string & text, bool add_special, bool parse_special) {
    if (text.size() > (size_t) INT32_MAX / 2) {
        throw std::invalid_argument("text too long to tokenize");
    }
    std::vector<llama_token> tokens(text.size() + 8);
    auto run = [&] {
        return call_llama("tokenize", vocab_hint, [&] {
            return llama_tokenize(m.vocab, text.data(), (int32_t) text.size(), tokens.data(),
                                  (int32_t) tokens.size(), add_special, parse_special);
        });
    };
    int32_t n = run();
    if (n < 0) {
        tokens.resize(-n);
        n = run();
    }
    if (n < 0) {
        throw std::runtime_error("tokenization failed");
    }
    tokens.resize(n);
    return tokens;
}

void check_token(const Model & m, llama_token token) {
    if (token < 0 || token >= llama_vocab_n_tokens(m.vocab)) {
        throw std::invalid_argument("token id " + std::to_string(token) + " is outside the vocabulary [0, " +
                                    std::to_string(llama_vocab_n_tokens(m.vocab)) + ")");
    }
}

py::bytes token_to_piece(const Model & m, llama_token token, bool special) {
    check_token(m, token);
    std::vector<char> buf(64);
    auto run = [&] {
        return call_llama("token_to_piece", vocab_hint, [&] {
            return llama_token_to_piece(m.vocab, token, buf.data(), (int32_t) buf.size(), 0, special);
        });
    };
    int32_t n = run();
    if (n < 0) {
        buf.resize(-n);
        n = run();
    }
    return py::bytes(buf.data(), n < 0 ? 0 : n);
}

py::bytes detokenize(const Model & m, const std::vector<llama_token> & tokens, bool remove_special, bool unparse_special) {
    for (llama_token t : tokens) {
        check_token(m, t);
    }
    std::vector<char> buf(tokens.size() * 8 + 16);
    auto run = [&] {
        return call_llama("detokenize", vocab_hint, [&] {
            return llama_detokenize(m.vocab, tokens.data(), (int32_t) tokens.size(), buf.data(),
                                    (int32_t) buf.size(), remove_special, unparse_special);
        });
    };
    int32_t n = run();
    if (n < 0) {
        buf.resize(-n);
        n = run();
    }
    return py::bytes(buf.data(), n < 0 ? 0 : n);
}

}  // namespace

void bind_model(py::module_ & m) {
    py::class_<ModelOptions>(m, "ModelOptions")
        .def(py::init<>())
        .def_readwrite("n_gpu_layers", &ModelOptions::n_gpu_layers)
        .def_readwrite("split_mode", &ModelOptions::split_mode)
        .def_readwrite("main_gpu", &ModelOptions::main_gpu)
        .def_readwrite("tensor_split", &ModelOptions::tensor_split)
        .def_readwrite("vocab_only", &ModelOptions::vocab_only)
        .def_readwrite("use_mmap", &ModelOptions::use_mmap)
        .def_readwrite("use_mlock", &ModelOptions::use_mlock)
        .def_readwrite("check_tensors", &ModelOptions::check_tensors)
        .def_readwrite("kv_overrides", &ModelOptions::kv_overrides)
        .def_readwrite("use_devices", &ModelOptions::use_devices)
        .def_readwrite("devices", &ModelOptions::devices);

    py::class_<Model, std::shared_ptr<Model>>(m, "Model")
        .def(py::init(&load_model), py::arg("path"), py::arg_v("options", ModelOptions(), "ModelOptions()"))
        .def_readonly("path", &Model::path)
        .def("n_ctx_train", [](const Model & s) { return llama_model_n_ctx_train(s.model); })
        .def("n_vocab",     [](const Model & s) { return llama_vocab_n_tokens(s.vocab); })
        .def("n_embd",      [](const Model & s) { return llama_model_n_embd(s.model); })
        .def("n_layer",     [](const Model & s) { return llama_model_n_layer(s.model); })
        .def("rope_type",   [](const Model & s) { return (int) llama_model_rope_type(s.model); })
        .def("size",        [](const Model & s) { return llama_model_size(s.model); })
        .def("desc", [](const Model & s) {
            char buf[256];
            const int32_t n = llama_model_desc(s.model, buf, sizeof(buf));
            return std::string(buf, n < 0 ? 0 : std::min<size_t>(n, sizeof(buf) - 1));
        })
        .def("meta", &meta_value, py::arg("key"), "A GGUF metadata value as a string, or None.")
        .def("chat_template", [](const Model & s) -> std::optional<std::string> {
            const char * t = llama_model_chat_template(s.model, nullptr);
            return t ? std::optional<std::string>(t) : std::nullopt;
        })
        .def("tokenize", [](const Model & s, py::bytes text, bool add_special, bool parse_special) {
            return tokenize(s, std::string(text), add_special, parse_special);
        }, py::arg("text"), py::arg("add_special"), py::arg("parse_special"))
        .def("token_to_piece", &token_to_piece, py::arg("token"), py::arg("special") = false)
        .def("detokenize", &detokenize, py::arg("tokens"), py::arg("remove_special") = false,
             py::arg("unparse_special") = false)
        .def("token_bos", [](const Model & s) { return llama_vocab_bos(s.vocab); })
        .def("token_eos", [](const Model & s) { return llama_vocab_eos(s.vocab); })
        .def("token_eot", [](const Model & s) { return llama_vocab_eot(s.vocab); })
        .def("token_nl",  [](const Model & s) { return llama_vocab_nl(s.vocab); })
        .def("token_fim_pre", [](const Model & s) { return llama_vocab_fim_pre(s.vocab); })
        .def("token_fim_suf", [](const Model & s) { return llama_vocab_fim_suf(s.vocab); })
        .def("token_fim_mid", [](const Model & s) { return llama_vocab_fim_mid(s.vocab); })
        .def("add_eos",   [](const Model & s) { return llama_vocab_get_add_eos(s.vocab); })
        .def("has_encoder", [](const Model & s) { return llama_model_has_encoder(s.model); })
        .def("has_decoder", [](const Model & s) { return llama_model_has_decoder(s.model); })
        .def("max_devices", [](const Model &) { return llama_max_devices(); })
        .def("add_bos",   [](const Model & s) { return llama_vocab_get_add_bos(s.vocab); })
        .def("is_eog", [](const Model & s, llama_token t) { return llama_vocab_is_eog(s.vocab, t); }, py::arg("token"))
        .def("self_extend_supported", [](const Model & s) { return llama_self_extend_supported(s.model); },
             "0 if Self-Extend can serve this model, else a negative status (see self_extend_strerror).")
        .def("self_extend_refusal", [](const Model & s) {
            llama_self_extend_supported(s.model);
            return std::string(llama_self_extend_refusal());
        }, "Why Self-Extend cannot serve this model (\"\" when it can).");
}
