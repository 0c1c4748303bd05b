// _core.ChatTemplates, ChatPrompt, ChatParser: chat messages to a prompt and generated
// text back to an OpenAI message, by llama.cpp's common chat (common/chat.cpp, what
// llama-server runs with --jinja): the GGUF's Jinja template, tools and tool_choice, the
// tool-call grammar and its lazy triggers, and the per-family tool-call parser.
// Messages, tools and results cross into Python as OpenAI-shaped JSON text.

#include "core.h"

#include "chat.h"
#include "common.h"
#include "json-schema-to-grammar.h"
#include "json.h"

#include <pybind11/stl.h>

#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace {

struct ChatTemplates {
    std::shared_ptr<Model>    model;
    common_chat_templates_ptr tmpls;
    bool                      use_jinja = true;
};

// One rendered conversation: the prompt and what sampling and parsing need from it.
struct ChatPrompt {
    common_chat_params params;
    bool               parse_tool_calls = false;
};

// Parses the generated text as it grows; hands out OpenAI deltas for streaming.
struct ChatParser {
    common_chat_parser_params params;
    std::string               text;
    common_chat_msg           msg;
    std::vector<std::string>  tool_call_ids;
    std::set<size_t>          announced;  // tool calls whose id and name were streamed
};

std::unique_ptr<ChatTemplates> create_templates(std::shared_ptr<Model> model, const std::string & override_template,
                                                bool use_jinja) {
    auto t = std::make_unique<ChatTemplates>();
    t->model     = std::move(model);
    t->use_jinja = use_jinja;
    try {
        t->tmpls = common_chat_templates_init(t->model->model, override_template);
    } catch (const std::exception & e) {
        throw std::invalid_argument(std::string("the chat template could not be parsed by llama.cpp's Jinja engine: ") +
                                    e.what());
    }
    return t;
}

common_json parse_json(const std::string & text, const char * what) {
    try {
        return common_json::parse(text);
    } catch (const std::exception & e) {
        throw std::invalid_argument(std::string(what) + " is not valid JSON: " + e.what());
    }
}

ChatPrompt apply(const ChatTemplates & t, const std::string & messages_json, const std::string & tools_json,
                 const std::string & tool_choice, const std::string & json_schema, const std::string & grammar,
                 bool parallel_tool_calls, bool add_generation_prompt, bool enable_thinking) {
    common_chat_templates_inputs inputs;
    try {
        inputs.messages = common_chat_msgs_parse_oaicompat(parse_json(messages_json, "messages"));
        if (!tools_json.empty()) {
            inputs.tools = common_chat_tools_parse_oaicompat(parse_json(tools_json, "tools"));
        }
        inputs.tool_choice = common_chat_tool_choice_parse_oaicompat(tool_choice);
    } catch (const std::invalid_argument &) {
        throw;
    } catch (const std::exception & e) {
        throw std::invalid_argument(e.what());
    }
    inputs.json_schema           = json_schema;
    inputs.grammar               = grammar;
    inputs.use_jinja             = t.use_jinja;
    inputs.parallel_tool_calls   = parallel_tool_calls;
    inputs.add_generation_prompt = add_generation_prompt;
    // llama-server's default: a reasoning model's thinking goes to reasoning_content
    inputs.reasoning_format      = COMMON_REASONING_FORMAT_DEEPSEEK;
    inputs.enable_thinking       = enable_thinking;

    ChatPrompt out;
    try {
        py::gil_scoped_release release;
        out.params = common_chat_templates_apply(t.tmpls.get(), inputs);
    } catch (const std::exception & e) {
        throw std::invalid_argument(std::string("llama.cpp could not apply the chat template: ") + e.what());
    }
    out.parse_tool_calls = !inputs.tools.empty() && inputs.tool_choice != COMMON_CHAT_TOOL_CHOICE_NONE;
    return out;
}

std::string random_call_id() {
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    thread_local std::mt19937 rng{ std::random_device{}() };
    std::uniform_int_distribution<size_t> pick(0, sizeof(alphabet) - 2);
    std::string id = "call_";
    for (int i = 0; i < 24; ++i) {
        id += alphabet[pick(rng)];
    }
    return id;
}

std::unique_ptr<ChatParser> create_parser(const ChatPrompt & prompt) {
    auto p = std::make_unique<ChatParser>();
    p->params                  = common_chat_parser_params(prompt.params);
    p->params.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;
    p->params.parse_tool_calls = prompt.parse_tool_calls;
    if (!prompt.params.parser.empty()) {
        p->params.parser.load(prompt.params.parser);
    }
    p->msg.role = "assistant";
    return p;
}

py::dict delta_dict(const common_chat_msg_diff & d) {
    py::dict delta;
    if (!d.reasoning_content_delta.empty()) {
        delta["reasoning_content"] = d.reasoning_content_delta;
    }
    if (!d.content_delta.empty()) {
        delta["content"] = d.content_delta;
    }
    if (d.tool_call_index != std::string::npos) {
        py::dict call;
        call["index"] = d.tool_call_index;
        if (!d.tool_call_delta.id.empty()) {
            call["id"]   = d.tool_call_delta.id;
            call["type"] = "function";
        }
        py::dict function;
        if (!d.tool_call_delta.name.empty()) {
            function["name"] = d.tool_call_delta.name;
        }
        if (!d.tool_call_delta.arguments.empty()) {
            function["arguments"] = d.tool_call_delta.arguments;
        }
        if (py::len(function) > 0) {
            call["function"] = function;
        }
        py::list calls;
        calls.append(call);
        delta["tool_calls"] = calls;
    }
    return delta;
}

// Add generated text; returns the OpenAI deltas since the last call. A tool call is
// announced (id and name) only once its name is complete, i.e. when its arguments start
// or the text is final, so that a streaming client never sees half a name.
py::list update(ChatParser & p, const std::string & added, bool is_partial) {
    p.text += added;
    common_chat_msg parsed;
    try {
        parsed = common_chat_parse(p.text, is_partial, p.params);
    } catch (const std::exception &) {
        if (is_partial) {
            return py::list();  // more text may make it parse
        }
        // the final text does not fit the template's format: it is plain content
        parsed         = common_chat_msg();
        parsed.role    = "assistant";
        parsed.content = p.text;
    }
    py::list out;
    if (parsed.empty() && is_partial) {
        return out;
    }
    parsed.set_tool_call_ids(p.tool_call_ids, random_call_id);
    std::vector<common_chat_msg_diff> diffs;
    try {
        diffs = common_chat_msg_diff::compute_diffs(p.msg, parsed);
    } catch (const std::exception &) {
        if (is_partial) {
            return out;  // an intermediate parse that a later one corrects
        }
        throw;
    }
    p.msg = parsed;
    for (auto & d : diffs) {
        if (d.tool_call_index != std::string::npos) {
            const size_t i = d.tool_call_index;
            if (!p.announced.count(i)) {
                if (d.tool_call_delta.arguments.empty() && is_partial) {
                    continue;  // the name may still grow
                }
                d.tool_call_delta.id   = p.msg.tool_calls[i].id;
                d.tool_call_delta.name = p.msg.tool_calls[i].name;
                p.announced.insert(i);
            } else {
                d.tool_call_delta.id.clear();
                d.tool_call_delta.name.clear();
                if (d.tool_call_delta.arguments.empty()) {
                    continue;
                }
            }
        }
        py::dict delta = delta_dict(d);
        if (py::len(delta) > 0) {
            out.append(delta);
        }
    }
    return out;
}

std::string message_json(const ChatParser & p) {
    common_chat_msg msg = p.msg;
    if (msg.role.empty()) {
        msg.role = "assistant";
    }
    return msg.to_json_oaicompat().dump();
}

std::string json_schema_to_gbnf(const std::string & schema_json) {
    common_json schema = parse_json(schema_json, "the JSON schema");
    if (schema.is_object() && schema.empty()) {
        schema["type"] = "object";  // an empty schema means any object, as llama-server reads it
    }
    try {
        return json_schema_to_grammar(schema);
    } catch (const std::exception & e) {
        throw std::invalid_argument(std::string("llama.cpp cannot convert this JSON schema to a grammar: ") + e.what());
    }
}

}  // namespace

void bind_chat(py::module_ & m) {
    py::class_<ChatTemplates>(m, "ChatTemplates")
        .def(py::init(&create_templates), py::arg("model"), py::arg("override_template") = "",
             py::arg("use_jinja") = true,
             "The GGUF's chat template (ChatML if it has none), or override_template: Jinja source, "
             "or with use_jinja=False the name of a llama.cpp built-in template.")
        .def("apply", &apply, py::arg("messages_json"), py::arg("tools_json") = "", py::arg("tool_choice") = "auto",
             py::arg("json_schema") = "", py::arg("grammar") = "", py::arg("parallel_tool_calls") = false,
             py::arg("add_generation_prompt") = true, py::arg("enable_thinking") = true)
        .def("caps", [](const ChatTemplates & t) { return common_chat_templates_get_caps(t.tmpls.get()); },
             "What the template can express (supports_tools, supports_tool_calls, ...).")
        .def("source", [](const ChatTemplates & t) { return common_chat_templates_source(t.tmpls.get()); })
        .def_readonly("use_jinja", &ChatTemplates::use_jinja);

    py::class_<ChatPrompt>(m, "ChatPrompt")
        .def_property_readonly("prompt", [](const ChatPrompt & p) { return p.params.prompt; })
        .def_property_readonly("grammar", [](const ChatPrompt & p) { return p.params.grammar; })
        .def_property_readonly("grammar_lazy", [](const ChatPrompt & p) { return p.params.grammar_lazy; })
        .def_property_readonly("grammar_triggers", [](const ChatPrompt & p) {
            std::vector<std::tuple<int, std::string, llama_token>> out;
            for (const auto & t : p.params.grammar_triggers) {
                out.emplace_back((int) t.type, t.value, t.token);
            }
            return out;
        })
        .def_property_readonly("preserved_tokens", [](const ChatPrompt & p) { return p.params.preserved_tokens; })
        .def_property_readonly("additional_stops", [](const ChatPrompt & p) { return p.params.additional_stops; })
        .def_property_readonly("generation_prompt", [](const ChatPrompt & p) { return p.params.generation_prompt; })
        .def_property_readonly("format", [](const ChatPrompt & p) {
            return std::string(common_chat_format_name(p.params.format));
        })
        .def_readonly("parse_tool_calls", &ChatPrompt::parse_tool_calls);

    py::class_<ChatParser>(m, "ChatParser")
        .def(py::init(&create_parser), py::arg("prompt"))
        .def("update", &update, py::arg("text"), py::arg("is_partial") = true,
             "Add generated text; the OpenAI deltas (content, reasoning_content, tool_calls) since the last call.")
        .def("message_json", &message_json, "The message parsed so far, as OpenAI JSON text.");

    m.def("json_schema_to_grammar", &json_schema_to_gbnf, py::arg("schema_json"),
          "A JSON schema (JSON text) as a GBNF grammar, by llama.cpp's json-schema-to-grammar.");
}
