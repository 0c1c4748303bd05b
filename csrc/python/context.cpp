// _core.Context: a llama.cpp context (KV cache + compute) over a Model, with Self-Extend.

#include "capture.h"
#include "core.h"

#include "llama-ext.h"
#include "llama-selfextend.h"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstring>
#include <stdexcept>
#include <tuple>
#include <vector>

Context::~Context() {
    if (ctx) {
        llama_free(ctx);
    }
}

namespace {

bool abort_callback(void * data) {
    return static_cast<Context *>(data)->abort_requested.load();
}

struct ContextOptions {
    uint32_t n_ctx = 0;
    uint32_t n_batch = 512;
    uint32_t n_ubatch = 512;
    uint32_t n_seq_max = 1;
    int32_t  n_threads = 1;
    int32_t  n_threads_batch = 1;
    int      type_k = GGML_TYPE_F16;
    int      type_v = GGML_TYPE_F16;
    int      flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;  // -1 auto (llama.cpp resolves it), 0 off, 1 on
    bool     kv_unified = true;
    int      rope_scaling_type = LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED;
    float    rope_freq_base = 0.0f;
    float    rope_freq_scale = 0.0f;
    float    yarn_ext_factor = -1.0f;
    uint32_t yarn_orig_ctx = 0;
    float    yarn_attn_factor = -1.0f;  // negative: from the model
    float    yarn_beta_fast = -1.0f;
    float    yarn_beta_slow = -1.0f;
    bool     op_offload = true;
    bool     swa_full = true;
    bool     embeddings = false;      // embeddings can be extracted (Llama(embedding=True))
    int      pooling_type = LLAMA_POOLING_TYPE_UNSPECIFIED;
    bool     offload_kqv = true;
    bool     capture_layers = false;  // keep each Self-Extend layer's inputs and output (tests)
};

std::unique_ptr<Context> create_context(std::shared_ptr<Model> model, const ContextOptions & o) {
    llama_context_params p = llama_context_default_params();
    p.n_ctx             = o.n_ctx;
    p.n_batch           = o.n_batch;
    p.n_ubatch          = o.n_ubatch;
    p.n_seq_max         = o.n_seq_max;
    p.n_threads         = o.n_threads;
    p.n_threads_batch   = o.n_threads_batch;
    p.type_k            = (ggml_type) o.type_k;
    p.type_v            = (ggml_type) o.type_v;
    p.flash_attn_type   = (llama_flash_attn_type) o.flash_attn_type;
    p.kv_unified        = o.kv_unified;
    p.rope_scaling_type = (llama_rope_scaling_type) o.rope_scaling_type;
    p.rope_freq_base    = o.rope_freq_base;
    p.rope_freq_scale   = o.rope_freq_scale;
    p.yarn_ext_factor   = o.yarn_ext_factor;
    p.yarn_orig_ctx     = o.yarn_orig_ctx;
    p.yarn_attn_factor  = o.yarn_attn_factor;
    p.yarn_beta_fast    = o.yarn_beta_fast;
    p.yarn_beta_slow    = o.yarn_beta_slow;
    p.op_offload        = o.op_offload;
    p.swa_full          = o.swa_full;
    p.no_perf           = false;
    p.pooling_type      = (enum llama_pooling_type) o.pooling_type;
    p.offload_kqv       = o.offload_kqv;
    // embeddings are switched on only while Context.embed runs (llama_set_embeddings):
    // generation from the same context keeps computing logits only
    p.embeddings        = false;

    auto c = std::make_unique<Context>();
    c->model = std::move(model);
    c->kv_unified = o.kv_unified;
    p.abort_callback      = abort_callback;
    p.abort_callback_data = c.get();
    if (o.capture_layers) {
        c->capture = std::make_unique<TensorCapture>();
        p.cb_eval           = TensorCapture::callback;
        p.cb_eval_user_data = c->capture.get();
    }
    std::string reason;
    {
        py::gil_scoped_release release;
        llama_errors_clear();
        c->ctx = call_llama("creating the context", "", [&] { return llama_init_from_model(c->model->model, p); });
        reason = llama_errors_take();
    }
    if (c->ctx == nullptr) {
        throw llama_cpp_error("llama.cpp could not create a context (out of memory, or cache types it cannot "
                              "combine: a quantized V cache needs flash_attn=True)" +
                              (reason.empty() ? std::string("; run with verbose=True for details")
                                              : "; llama.cpp says: " + reason));
    }
    return c;
}

void check_tokens(const Context & c, const std::vector<llama_token> & tokens) {
    const int32_t n_vocab = llama_vocab_n_tokens(c.model->vocab);
    for (llama_token t : tokens) {
        if (t < 0 || t >= n_vocab) {
            throw std::invalid_argument("token id " + std::to_string(t) + " is outside the vocabulary");
        }
    }
}

// A batch of tokens, one sequence per token: pos(i), seq(i) and output(i) say where each
// goes and whether its logits are kept. Free it with llama_batch_free.
template <typename Pos, typename Seq, typename Output>
llama_batch new_batch(const std::vector<llama_token> & tokens, Pos pos, Seq seq, Output output) {
    const int32_t n = (int32_t) tokens.size();
    llama_batch batch = llama_batch_init(n, 0, 1);
    for (int32_t i = 0; i < n; ++i) {
        batch.token[i]     = tokens[i];
        batch.pos[i]       = pos(i);
        batch.n_seq_id[i]  = 1;
        batch.seq_id[i][0] = seq(i);
        batch.logits[i]    = output(i);
    }
    batch.n_tokens = n;
    return batch;
}

// llama_decode of batch (which this frees) without the GIL; a failure is an exception
// that says why, after the Self-Extend state is marked for re-deriving (cells may have
// been written in part).
void run_decode(Context & c, llama_batch & batch) {
    c.abort_requested = false;
    int32_t rc = 0;
    std::string reason;
    try {
        py::gil_scoped_release release;
        llama_errors_clear();
        rc = call_llama("decode", "", [&] { return llama_decode(c.ctx, batch); });
        reason = llama_errors_take();
    } catch (...) {
        llama_batch_free(batch);
        throw;
    }
    llama_batch_free(batch);
    if (rc != 0) {
        if (rc == 2) {
            throw std::runtime_error("decode aborted");
        }
        if (rc == 1) {
            throw kv_cache_full_error("decode failed in llama.cpp: no KV cache slot for the batch (context full)");
        }
        throw llama_cpp_error("decode failed in llama.cpp with code " + std::to_string(rc) +
                              (reason.empty() ? std::string() : ": " + reason));
    }
}

py::array_t<float> decode(Context & c, const std::vector<llama_token> & tokens, llama_pos pos0,
                          llama_seq_id seq_id, bool logits_all) {
    const int32_t n = (int32_t) tokens.size();
    if (n == 0) {
        throw std::invalid_argument("decode needs at least one token");
    }
    if ((uint32_t) n > llama_n_batch(c.ctx)) {
        throw std::invalid_argument("more tokens than n_batch in one decode call");
    }
    check_tokens(c, tokens);
    if (pos0 < 0 || (int64_t) pos0 + n > (int64_t) llama_n_ctx(c.ctx)) {
        throw std::invalid_argument("positions exceed the context size n_ctx");
    }
    if (seq_id < 0 || (uint32_t) seq_id >= llama_n_seq_max(c.ctx)) {
        throw std::invalid_argument("seq_id outside [0, n_seq_max)");
    }

    llama_batch batch = new_batch(tokens, [&](int32_t i) { return pos0 + i; }, [&](int32_t) { return seq_id; },
                                  [&](int32_t i) { return logits_all || i == n - 1; });
    run_decode(c, batch);

    const int32_t n_vocab = llama_vocab_n_tokens(c.model->vocab);
    const int32_t n_out = logits_all ? n : 1;
    py::array_t<float> out({(py::ssize_t) n_out, (py::ssize_t) n_vocab});
    const float * logits = llama_get_logits(c.ctx);
    std::memcpy(out.mutable_data(), logits, sizeof(float) * (size_t) n_out * n_vocab);
    return out;
}

// One decode of tokens of several sequences (continuous batching): token t at position
// pos[t] of sequence seq[t], logits kept where output[t]. Returns the kept rows, in batch
// order; the sampler reads them as llama.cpp's batch indices (llama_get_logits_ith).
py::array_t<float> decode_batch(Context & c, const std::vector<llama_token> & tokens, const std::vector<llama_pos> & pos,
                                const std::vector<llama_seq_id> & seq, const std::vector<bool> & output) {
    const int32_t n = (int32_t) tokens.size();
    if (n == 0 || pos.size() != tokens.size() || seq.size() != tokens.size() || output.size() != tokens.size()) {
        throw std::invalid_argument("decode_batch needs equally long, non-empty tokens, pos, seq and output");
    }
    if ((uint32_t) n > llama_n_batch(c.ctx)) {
        throw std::invalid_argument("more tokens than n_batch in one decode call");
    }
    check_tokens(c, tokens);
    int32_t n_out = 0;
    for (int32_t i = 0; i < n; ++i) {
        if (pos[i] < 0 || pos[i] >= (llama_pos) llama_n_ctx(c.ctx)) {
            throw std::invalid_argument("positions exceed the context size n_ctx");
        }
        if (seq[i] < 0 || (uint32_t) seq[i] >= llama_n_seq_max(c.ctx)) {
            throw std::invalid_argument("seq_id outside [0, n_seq_max)");
        }
        n_out += output[i] ? 1 : 0;
    }
    llama_batch batch = new_batch(tokens, [&](int32_t i) { return pos[i]; }, [&](int32_t i) { return seq[i]; },
                                  [&](int32_t i) { return (bool) output[i]; });
    run_decode(c, batch);

    const int32_t n_vocab = llama_vocab_n_tokens(c.model->vocab);
    py::array_t<float> out({(py::ssize_t) n_out, (py::ssize_t) n_vocab});
    int32_t row = 0;
    for (int32_t i = 0; i < n; ++i) {
        if (output[i]) {
            std::memcpy(out.mutable_data(row++, 0), llama_get_logits_ith(c.ctx, i), sizeof(float) * n_vocab);
        }
    }
    return out;
}

// Embeddings of tokens as sequence seq_id, decoded from empty cells: one pooled row (the
// GGUF's pooling, or the context's pooling_type), or one row per token without pooling.
// Afterwards the cache is cleared (clear_all), or only that sequence's cells are removed
// (other sequences, e.g. a batch scheduler's slots, keep theirs).
py::array_t<float> embed(Context & c, const std::vector<llama_token> & tokens, llama_seq_id seq_id, bool clear_all) {
    const int32_t n = (int32_t) tokens.size();
    const enum llama_pooling_type pooling = llama_pooling_type(c.ctx);
    if (n == 0) {
        throw std::invalid_argument("cannot embed an empty input");
    }
    if ((uint32_t) n > llama_n_ubatch(c.ctx)) {
        throw std::invalid_argument("input of " + std::to_string(n) + " tokens is longer than n_ubatch=" +
                                    std::to_string(llama_n_ubatch(c.ctx)) + ": an embedding is computed in one "
                                    "ubatch; create the Llama with a larger n_batch and n_ubatch");
    }
    check_tokens(c, tokens);
    if (seq_id < 0 || (uint32_t) seq_id >= llama_n_seq_max(c.ctx)) {
        throw std::invalid_argument("seq_id outside [0, n_seq_max)");
    }
    llama_batch batch = new_batch(tokens, [](int32_t i) { return i; }, [&](int32_t) { return seq_id; },
                                  [](int32_t) { return true; });
    auto clear = [&] {
        if (clear_all) {
            llama_memory_clear(llama_get_memory(c.ctx), true);
        } else {
            llama_memory_seq_rm(llama_get_memory(c.ctx), seq_id, 0, -1);
        }
    };

    const int64_t n_embd = llama_model_n_embd_out(c.model->model);
    py::array_t<float> out;
    int32_t rc = 0;
    std::string reason;
    {
        py::gil_scoped_release release;
        llama_errors_clear();
        clear();
        llama_set_embeddings(c.ctx, true);
        try {
            rc = call_llama("computing embeddings", "", [&] {
                return llama_model_has_encoder(c.model->model) && !llama_model_has_decoder(c.model->model)
                    ? llama_encode(c.ctx, batch) : llama_decode(c.ctx, batch);
            });
        } catch (...) {
            llama_set_embeddings(c.ctx, false);
            clear();
            llama_batch_free(batch);
            throw;
        }
        reason = llama_errors_take();
    }
    llama_batch_free(batch);
    if (rc == 0) {
        if (pooling == LLAMA_POOLING_TYPE_NONE) {
            out = py::array_t<float>({ (py::ssize_t) n, (py::ssize_t) n_embd });
            for (int32_t i = 0; i < n; ++i) {
                const float * row = llama_get_embeddings_ith(c.ctx, i);
                if (row == nullptr) {
                    rc = -100;
                    break;
                }
                std::memcpy(out.mutable_data(i, 0), row, sizeof(float) * n_embd);
            }
        } else {
            const float * row = llama_get_embeddings_seq(c.ctx, seq_id);
            const int64_t n_out = pooling == LLAMA_POOLING_TYPE_RANK ? llama_model_n_cls_out(c.model->model) : n_embd;
            if (row == nullptr) {
                rc = -100;
            } else {
                out = py::array_t<float>({ (py::ssize_t) 1, (py::ssize_t) n_out });
                std::memcpy(out.mutable_data(), row, sizeof(float) * n_out);
            }
        }
    }
    llama_set_embeddings(c.ctx, false);
    clear();
    if (rc != 0) {
        throw llama_cpp_error("computing embeddings failed in llama.cpp (code " + std::to_string(rc) + ")" +
                              (reason.empty() ? std::string() : ": " + reason));
    }
    return out;
}

// Overwrite the logits of output row idx of the last decode (a logits processor's result),
// so that the sampler, which reads the context's logits, draws from them.
void set_logits(Context & c, int32_t idx, py::array_t<float, py::array::c_style | py::array::forcecast> logits) {
    const int32_t n_vocab = llama_vocab_n_tokens(c.model->vocab);
    if (logits.ndim() != 1 || logits.shape(0) != n_vocab) {
        throw std::invalid_argument("logits must be one row of n_vocab=" + std::to_string(n_vocab) + " floats");
    }
    llama_errors_clear();
    float * row = llama_get_logits_ith(c.ctx, idx);
    llama_errors_take();
    if (row == nullptr) {
        throw std::invalid_argument("no logits at output row " + std::to_string(idx) + " of the last decode");
    }
    std::memcpy(row, logits.data(), sizeof(float) * n_vocab);
}

void set_lora(Context & c, const std::string & path, float scale) {
    llama_errors_clear();
    llama_adapter_lora * adapter = call_llama("loading the LoRA adapter", "", [&] {
        return llama_adapter_lora_init(c.model->model, path.c_str());
    });
    const std::string reason = llama_errors_take();
    if (adapter == nullptr) {
        throw std::invalid_argument("llama.cpp could not load the LoRA adapter '" + path + "'" +
                                    (reason.empty() ? std::string(" (not a LoRA GGUF for this model?)")
                                                    : ": " + reason));
    }
    if (llama_set_adapters_lora(c.ctx, &adapter, 1, &scale) != 0) {
        throw llama_cpp_error("llama.cpp could not apply the LoRA adapter '" + path + "'");
    }
}

}  // namespace

void bind_context(py::module_ & m) {
    py::class_<ContextOptions>(m, "ContextOptions")
        .def(py::init<>())
        .def_readwrite("n_ctx", &ContextOptions::n_ctx)
        .def_readwrite("n_batch", &ContextOptions::n_batch)
        .def_readwrite("n_ubatch", &ContextOptions::n_ubatch)
        .def_readwrite("n_seq_max", &ContextOptions::n_seq_max)
        .def_readwrite("n_threads", &ContextOptions::n_threads)
        .def_readwrite("n_threads_batch", &ContextOptions::n_threads_batch)
        .def_readwrite("type_k", &ContextOptions::type_k)
        .def_readwrite("type_v", &ContextOptions::type_v)
        .def_readwrite("flash_attn_type", &ContextOptions::flash_attn_type)
        .def_readwrite("kv_unified", &ContextOptions::kv_unified)
        .def_readwrite("capture_layers", &ContextOptions::capture_layers)
        .def_readwrite("rope_scaling_type", &ContextOptions::rope_scaling_type)
        .def_readwrite("rope_freq_base", &ContextOptions::rope_freq_base)
        .def_readwrite("rope_freq_scale", &ContextOptions::rope_freq_scale)
        .def_readwrite("yarn_ext_factor", &ContextOptions::yarn_ext_factor)
        .def_readwrite("yarn_orig_ctx", &ContextOptions::yarn_orig_ctx)
        .def_readwrite("embeddings", &ContextOptions::embeddings)
        .def_readwrite("pooling_type", &ContextOptions::pooling_type)
        .def_readwrite("offload_kqv", &ContextOptions::offload_kqv)
        .def_readwrite("yarn_attn_factor", &ContextOptions::yarn_attn_factor)
        .def_readwrite("yarn_beta_fast", &ContextOptions::yarn_beta_fast)
        .def_readwrite("yarn_beta_slow", &ContextOptions::yarn_beta_slow)
        .def_readwrite("op_offload", &ContextOptions::op_offload)
        .def_readwrite("swa_full", &ContextOptions::swa_full);

    py::class_<Context>(m, "Context")
        .def(py::init(&create_context), py::arg("model"), py::arg("options"))
        .def("decode", &decode, py::arg("tokens"), py::arg("pos0"), py::arg("seq_id") = 0,
             py::arg("logits_all") = false,
             "Evaluate tokens at positions pos0.. of sequence seq_id; returns the logits of the "
             "last token, or of every token with logits_all. The GIL is released meanwhile.")
        .def("decode_batch", &decode_batch, py::arg("tokens"), py::arg("pos"), py::arg("seq"), py::arg("output"),
             "One decode of tokens of several sequences; the logits rows of the tokens marked output.")
        .def("state_seq_get", [](Context & c, llama_seq_id s) {
            std::vector<uint8_t> buf(llama_state_seq_get_size(c.ctx, s));
            size_t n;
            {
                py::gil_scoped_release release;
                n = call_llama("saving the sequence state", "", [&] {
                    return llama_state_seq_get_data(c.ctx, buf.data(), buf.size(), s);
                });
            }
            return py::bytes((const char *) buf.data(), n);
        }, py::arg("seq_id"), "One sequence's cells (positions, keys, values) as bytes.")
        .def("state_seq_set", [](Context & c, py::bytes data, llama_seq_id s) {
            std::string buf(data);
            size_t n;
            {
                py::gil_scoped_release release;
                llama_errors_clear();
                n = call_llama("loading the sequence state", "", [&] {
                    return llama_state_seq_set_data(c.ctx, (const uint8_t *) buf.data(), buf.size(), s);
                });
            }
            if (n == 0) {
                throw llama_cpp_error("loading the sequence state failed in llama.cpp: " + llama_errors_take());
            }
        }, py::arg("data"), py::arg("seq_id"), "Put a sequence state from state_seq_get into sequence seq_id.")
        .def("embed", &embed, py::arg("tokens"), py::arg("seq_id") = 0, py::arg("clear_all") = true,
             "Embeddings of tokens as one sequence (pooled: 1 row; without pooling: one per token).")
        .def("pooling_type", [](const Context & c) { return (int) llama_pooling_type(c.ctx); })
        .def("set_logits", &set_logits, py::arg("idx"), py::arg("logits"),
             "Overwrite the logits of output row idx of the last decode (for logits processors).")
        .def("set_lora", &set_lora, py::arg("path"), py::arg("scale") = 1.0f,
             "Load a LoRA adapter GGUF and apply it to this context with that scale.")
        .def("take_captured", [](Context & c) {
            if (!c.capture) {
                throw std::invalid_argument("this context was created without capture_layers=True");
            }
            return c.capture->take();
        }, "{'se_cap_q-<layer>': [array per graph], ...} since the last call (the per-layer check)")
        .def("request_abort", [](Context & c) { c.abort_requested = true; },
             "Ask a running decode (in another thread) to stop after its current ubatch.")
        .def("n_ctx",     [](const Context & c) { return llama_n_ctx(c.ctx); })
        .def("flash_attn", [](const Context & c) { return llama_se_flash_attn(c.ctx); },
             "Whether flash attention is on (auto: as llama.cpp resolved it for the devices).")
        .def("n_batch",   [](const Context & c) { return llama_n_batch(c.ctx); })
        .def("n_ubatch",  [](const Context & c) { return llama_n_ubatch(c.ctx); })
        .def("n_seq_max", [](const Context & c) { return llama_n_seq_max(c.ctx); })
        .def("set_n_threads", [](Context & c, int32_t n, int32_t n_batch) { llama_set_n_threads(c.ctx, n, n_batch); },
             py::arg("n_threads"), py::arg("n_threads_batch"))
        .def("memory_clear", [](Context & c) { llama_memory_clear(llama_get_memory(c.ctx), true); })
        .def("seq_rm", [](Context & c, llama_seq_id s, llama_pos p0, llama_pos p1) {
            return llama_memory_seq_rm(llama_get_memory(c.ctx), s, p0, p1);
        }, py::arg("seq_id"), py::arg("p0"), py::arg("p1"))
        .def("seq_add", [](Context & c, llama_seq_id s, llama_pos p0, llama_pos p1, llama_pos delta) {
            llama_memory_seq_add(llama_get_memory(c.ctx), s, p0, p1, delta);
        }, py::arg("seq_id"), py::arg("p0"), py::arg("p1"), py::arg("delta"))
        .def("seq_div", [](Context & c, llama_seq_id s, llama_pos p0, llama_pos p1, int d) {
            if (d < 1) {
                throw std::invalid_argument("seq_div divisor must be >= 1");
            }
            llama_memory_seq_div(llama_get_memory(c.ctx), s, p0, p1, d);
        }, py::arg("seq_id"), py::arg("p0"), py::arg("p1"), py::arg("d"))
        .def("seq_pos_max", [](const Context & c, llama_seq_id s) {
            return llama_memory_seq_pos_max(llama_get_memory(c.ctx), s);
        }, py::arg("seq_id"))
        .def("set_self_extend", [](Context & c, int32_t n_group, int32_t n_window) {
            int32_t status;
            {
                py::gil_scoped_release release;
                status = llama_set_self_extend(c.ctx, n_group, n_window);
            }
            if (status != LLAMA_SE_OK) {
                const std::string why = llama_self_extend_refusal();
                throw std::invalid_argument(std::string("cannot enable Self-Extend: ") +
                        (why.empty() ? llama_self_extend_strerror(status) : why));
            }
        }, py::arg("n_group"), py::arg("n_window"),
           "Turn Self-Extend on (G >= 1, W >= 1) or off (G = 0); the keys already cached are turned to the new G.")
        .def("seq_cp", [](Context & c, llama_seq_id src, llama_seq_id dst, llama_pos p0, llama_pos p1) {
            for (llama_seq_id s : { src, dst }) {
                if (s < 0 || (uint32_t) s >= llama_n_seq_max(c.ctx)) {
                    throw std::invalid_argument("seq_id outside [0, n_seq_max)");
                }
            }
            llama_memory_seq_cp(llama_get_memory(c.ctx), src, dst, p0, p1);
        }, py::arg("src"), py::arg("dst"), py::arg("p0"), py::arg("p1"))
        .def("state_get", [](Context & c) {
            std::vector<uint8_t> buf(llama_state_get_size(c.ctx));
            size_t n;
            {
                py::gil_scoped_release release;
                n = call_llama("saving the state", "", [&] { return llama_state_get_data(c.ctx, buf.data(), buf.size()); });
            }
            return py::bytes((const char *) buf.data(), n);
        }, "The context's state (KV cache and outputs) as bytes.")
        .def("state_set", [](Context & c, py::bytes data) {
            std::string buf(data);
            size_t n;
            {
                py::gil_scoped_release release;
                llama_errors_clear();
                n = call_llama("loading the state", "", [&] {
                    return llama_state_set_data(c.ctx, (const uint8_t *) buf.data(), buf.size());
                });
            }
            if (n == 0) {
                throw llama_cpp_error("loading the state failed in llama.cpp: " + llama_errors_take());
            }
        }, py::arg("data"), "Restore a state from state_get (same model and context settings).")
        .def("get_self_extend", [](const Context & c) {
            int32_t g = 0, w = 0;
            llama_get_self_extend(c.ctx, &g, &w);
            return std::make_tuple(g, w);
        })
        .def("perf", [](const Context & c) {
            const llama_perf_context_data d = llama_perf_context(c.ctx);
            py::dict r;
            r["prompt_ms"] = d.t_p_eval_ms;
            r["prompt_tokens"] = d.n_p_eval;
            r["eval_ms"] = d.t_eval_ms;
            r["eval_tokens"] = d.n_eval;
            r["graphs_reused"] = d.n_reused;
            return r;
        })
        .def("perf_reset", [](Context & c) { llama_perf_context_reset(c.ctx); })
        .def("state_size", [](Context & c) { return llama_state_get_size(c.ctx); })
        .def("memory_breakdown", [](const Context & c) {
            // bytes per buffer type (CPU, CUDA0, ...): weights, context (KV cache), compute buffers
            py::dict r;
            for (const auto & [buft, mb] : llama_get_memory_breakdown(c.ctx)) {
                py::dict d;
                d["model"] = mb.model;
                d["context"] = mb.context;
                d["compute"] = mb.compute;
                r[py::str(ggml_backend_buft_name(buft))] = d;
            }
            return r;
        });
}
