// _core.Sampler: llama.cpp's own sampler chain (common/sampling.cpp, the one llama-server
// uses) over a context's logits: logit bias, penalties, top-k, typical-p, top-p, min-p,
// temperature or mirostat, then a draw; a GBNF grammar (user text, a JSON schema's
// grammar, or a chat template's tool-call grammar, lazily triggered) constrains it.

#include "core.h"

#include "common.h"
#include "sampling.h"

#include <pybind11/stl.h>

#include <cmath>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

// llama_cpp.Llama's names; the Python side validates ranges before they get here
struct SamplerParams {
    float    temperature       = 0.8f;
    int32_t  top_k             = 40;
    float    top_p             = 0.95f;
    float    min_p             = 0.05f;
    float    typical_p         = 1.0f;
    float    repeat_penalty    = 1.0f;
    float    presence_penalty  = 0.0f;
    float    frequency_penalty = 0.0f;
    int32_t  penalty_last_n    = 64;
    int32_t  mirostat_mode     = 0;
    float    mirostat_tau      = 5.0f;
    float    mirostat_eta      = 0.1f;
    uint32_t seed              = LLAMA_DEFAULT_SEED;
    std::vector<std::pair<llama_token, float>> logit_bias;

    // the grammar and where it came from: "user" (GBNF text), "output_format" (a JSON
    // schema's grammar) or "tool_calls" (from the chat template)
    std::string grammar;
    std::string grammar_type = "user";
    bool        grammar_lazy = false;
    // (type, value, token) as common_grammar_trigger: 0 token, 1 word, 2 pattern, 3 full pattern
    std::vector<std::tuple<int, std::string, llama_token>> grammar_triggers;
    std::vector<std::string> preserved_tokens;
    // the text the chat template already put after the last message (the grammar skips it)
    std::string generation_prompt;
};

struct Sampler {
    std::shared_ptr<Model> model;
    common_sampler_ptr     smpl;
};

common_grammar_type grammar_type_of(const std::string & name) {
    if (name == "user") {
        return COMMON_GRAMMAR_TYPE_USER;
    }
    if (name == "output_format") {
        return COMMON_GRAMMAR_TYPE_OUTPUT_FORMAT;
    }
    if (name == "tool_calls") {
        return COMMON_GRAMMAR_TYPE_TOOL_CALLS;
    }
    throw std::invalid_argument("grammar_type must be 'user', 'output_format' or 'tool_calls', got '" + name + "'");
}

// A lazy grammar's trigger word that is one special token becomes a token trigger (it
// must then be preserved), as llama-server does: special tokens never appear in text.
void add_triggers(const llama_vocab * vocab, const SamplerParams & p, common_params_sampling & out) {
    for (const auto & t : p.preserved_tokens) {
        const auto ids = common_tokenize(vocab, t, false, true);
        if (ids.size() == 1) {
            out.preserved_tokens.insert(ids[0]);
        }
    }
    for (const auto & [type, value, token] : p.grammar_triggers) {
        if (type < COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN || type > COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN_FULL) {
            throw std::invalid_argument("unknown grammar trigger type " + std::to_string(type));
        }
        common_grammar_trigger trigger;
        trigger.type  = (common_grammar_trigger_type) type;
        trigger.value = value;
        trigger.token = token;
        if (trigger.type == COMMON_GRAMMAR_TRIGGER_TYPE_WORD) {
            const auto ids = common_tokenize(vocab, value, false, true);
            if (ids.size() == 1 && out.preserved_tokens.count(ids[0])) {
                trigger.type  = COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN;
                trigger.token = ids[0];
            }
        }
        out.grammar_triggers.push_back(std::move(trigger));
    }
    if (out.grammar_lazy && out.grammar_triggers.empty()) {
        throw std::invalid_argument("a lazy grammar needs at least one trigger");
    }
}

std::unique_ptr<Sampler> create_sampler(std::shared_ptr<Model> model, const SamplerParams & p) {
    const llama_vocab * vocab = model->vocab;
    common_params_sampling s;
    s.seed              = p.seed;
    s.temp              = p.temperature;
    s.top_k             = p.top_k;
    s.top_p             = p.top_p;
    s.min_p             = p.min_p;
    s.typ_p             = p.typical_p;
    s.penalty_repeat    = p.repeat_penalty;
    s.penalty_present   = p.presence_penalty;
    s.penalty_freq      = p.frequency_penalty;
    s.penalty_last_n    = p.penalty_last_n;
    s.mirostat          = p.mirostat_mode;
    s.mirostat_tau      = p.mirostat_tau;
    s.mirostat_eta      = p.mirostat_eta;
    s.n_prev            = std::max(64, p.penalty_last_n);
    s.no_perf           = true;
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    for (const auto & [token, bias] : p.logit_bias) {
        if (token < 0 || token >= n_vocab) {
            throw std::invalid_argument("logit_bias: token id " + std::to_string(token) +
                                        " is outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
        }
        s.logit_bias.push_back({ token, bias });
    }
    if (!p.grammar.empty()) {
        s.grammar      = common_grammar(grammar_type_of(p.grammar_type), p.grammar);
        s.grammar_lazy = p.grammar_lazy;
        s.generation_prompt = p.generation_prompt;
        add_triggers(vocab, p, s);
    }

    auto out = std::make_unique<Sampler>();
    out->model = std::move(model);
    llama_errors_clear();
    try {
        out->smpl.reset(common_sampler_init(out->model->model, s));
    } catch (const std::exception & e) {
        const std::string why = llama_errors_take();
        throw std::invalid_argument(std::string("llama.cpp rejected the sampling settings: ") + e.what() +
                                    (why.empty() ? "" : " (" + why + ")"));
    }
    llama_errors_take();
    if (!out->smpl) {
        throw std::invalid_argument("llama.cpp could not create the sampler");
    }
    return out;
}

llama_token sample(Sampler & s, Context & c, int32_t idx) {
    // common_sampler_sample asserts on a row without logits: check it here first
    llama_errors_clear();
    if (llama_get_logits_ith(c.ctx, idx) == nullptr) {
        throw std::invalid_argument("no logits at output row " + std::to_string(idx) + " of the last decode");
    }
    llama_errors_take();
    return call_llama("sampling", "", [&] { return common_sampler_sample(s.smpl.get(), c.ctx, idx); });
}

void accept(Sampler & s, llama_token token, bool is_generated) {
    if (token < 0 || token >= llama_vocab_n_tokens(s.model->vocab)) {
        throw std::invalid_argument("token id " + std::to_string(token) + " is outside the vocabulary");
    }
    // an end-of-generation token ends the grammar's input; llama.cpp aborts if it is fed to
    // a grammar that is not complete, and nothing follows it anyway
    if (is_generated && llama_vocab_is_eog(s.model->vocab, token)) {
        return;
    }
    call_llama("accepting a token in the sampler", "", [&] {
        common_sampler_accept(s.smpl.get(), token, is_generated);
        return 0;
    });
}

// GBNF text parsed by llama.cpp's grammar parser, without a model: "" if it is valid,
// else llama.cpp's reason
std::string grammar_error(const std::string & text, const std::string & root) {
    llama_errors_clear();
    llama_sampler * g = call_llama("parsing the grammar", "", [&] {
        return llama_sampler_init_grammar(nullptr, text.c_str(), root.c_str());
    });
    std::string why = llama_errors_take();
    if (g != nullptr) {
        llama_sampler_free(g);
        return "";
    }
    return why.empty() ? std::string("the grammar could not be parsed") : why;
}

}  // namespace

void bind_sampler(py::module_ & m) {
    py::class_<SamplerParams>(m, "SamplerParams")
        .def(py::init<>())
        .def_readwrite("temperature", &SamplerParams::temperature)
        .def_readwrite("top_k", &SamplerParams::top_k)
        .def_readwrite("top_p", &SamplerParams::top_p)
        .def_readwrite("min_p", &SamplerParams::min_p)
        .def_readwrite("typical_p", &SamplerParams::typical_p)
        .def_readwrite("repeat_penalty", &SamplerParams::repeat_penalty)
        .def_readwrite("presence_penalty", &SamplerParams::presence_penalty)
        .def_readwrite("frequency_penalty", &SamplerParams::frequency_penalty)
        .def_readwrite("penalty_last_n", &SamplerParams::penalty_last_n)
        .def_readwrite("mirostat_mode", &SamplerParams::mirostat_mode)
        .def_readwrite("mirostat_tau", &SamplerParams::mirostat_tau)
        .def_readwrite("mirostat_eta", &SamplerParams::mirostat_eta)
        .def_readwrite("seed", &SamplerParams::seed)
        .def_readwrite("logit_bias", &SamplerParams::logit_bias)
        .def_readwrite("grammar", &SamplerParams::grammar)
        .def_readwrite("grammar_type", &SamplerParams::grammar_type)
        .def_readwrite("grammar_lazy", &SamplerParams::grammar_lazy)
        .def_readwrite("grammar_triggers", &SamplerParams::grammar_triggers)
        .def_readwrite("preserved_tokens", &SamplerParams::preserved_tokens)
        .def_readwrite("generation_prompt", &SamplerParams::generation_prompt);

    py::class_<Sampler>(m, "Sampler")
        .def(py::init(&create_sampler), py::arg("model"), py::arg("params"))
        .def("sample", &sample, py::arg("context"), py::arg("idx") = -1,
             "Draw a token from the context's logits at output row idx (-1: the last).")
        .def("accept", &accept, py::arg("token"), py::arg("is_generated") = true,
             "Record a token: a generated one advances the grammar, a prompt one only the penalties.")
        .def("reset", [](Sampler & s) { common_sampler_reset(s.smpl.get()); })
        .def_property_readonly("seed", [](const Sampler & s) { return common_sampler_get_seed(s.smpl.get()); })
        .def("describe", [](const Sampler & s) { return common_sampler_print(s.smpl.get()); },
             "The sampler chain, as llama.cpp prints it.");

    m.def("grammar_error", &grammar_error, py::arg("text"), py::arg("root") = "root",
          "\"\" if text is a valid GBNF grammar with that root rule, else llama.cpp's reason.");
}
