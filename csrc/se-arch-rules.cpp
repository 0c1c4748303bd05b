// The capability table: the architectures whose graphs Self-Extend can serve, with the
// per-layer facts that hparams alone do not say. Facts come from reading the pinned
// llama.cpp graphs (src/models/*.cpp); ../shared/ARCHITECTURES.md in the dev notes maps
// all of them. To add an architecture: check that its graph ropes q and k (1-D, NORM or
// NEOX) right before build_attn with nothing position-dependent in between, that the
// forward rope uses the context's RoPE parameters (or the layer's, as
// get_rope_freq_base/scale/factors return them), and add a row. A graph that ropes only
// the trailing dims of each head (ggml_rope_set_offset(n_embd_head_k - n_rot) on q, k
// built as concat(unroped, roped)) gets rope_trailing.

#include "se-arch-rules.h"

#include "llama-arch.h"
#include "llama-hparams.h"
#include "llama-model.h"

namespace {

struct se_arch_rule {
    llm_arch arch;
    // the graph leaves layer il unroped when (il + 1) % hparams.n_no_rope_layer_step == 0
    // (SmolLM3: every 4th layer; Llama 4 without chunked attention: the last layer);
    // hparams.has_rope() does not know this
    bool no_rope_step;
    // RoPE turns the trailing n_rot dims of each head, not the leading ones
    bool rope_trailing = false;
};

// Architectures whose every roped global layer takes Self-Extend as it is. Sliding-window
// layers, layers without RoPE (hparams.rope_pattern) and the no_rope_step layers keep
// llama.cpp's attention.
constexpr se_arch_rule k_rules[] = {
    { LLM_ARCH_LLAMA,         false },
    { LLM_ARCH_QWEN2,         false },
    { LLM_ARCH_QWEN,          false },
    { LLM_ARCH_QWEN2MOE,      false },
    { LLM_ARCH_QWEN3,         false },  // weighted QK-norm before RoPE: commutes
    { LLM_ARCH_QWEN3MOE,      false },
    { LLM_ARCH_PHI2,          false },  // partial rotary; q scaled after RoPE (a scalar)
    { LLM_ARCH_PHI3,          false },  // LongRoPE factors through get_rope_factors
    { LLM_ARCH_GEMMA,         false },  // q scaled after RoPE
    { LLM_ARCH_GEMMA2,        false },  // iSWA + attention logit soft-capping
    { LLM_ARCH_GEMMA3,        false },  // iSWA; SWA layers use their own base, untouched
    { LLM_ARCH_GRANITE,       false },  // rope_pattern from rope.scaling.finetuned
    { LLM_ARCH_GRANITE_MOE,   false },
    { LLM_ARCH_OLMO,          false },
    { LLM_ARCH_OLMO2,         false },  // QK-norm before RoPE; the Olmo 3 SWA GGUF is iSWA
    { LLM_ARCH_OLMOE,         false },
    { LLM_ARCH_STARCODER2,    false },
    { LLM_ARCH_STABLELM,      false },  // partial rotary
    { LLM_ARCH_SMOLLM3,       true  },
    { LLM_ARCH_LLAMA4,        true  },
    { LLM_ARCH_MISTRAL3,      false },  // optional per-token temperature on q: a scalar
    { LLM_ARCH_DECI,          false },
    { LLM_ARCH_FALCON,        false },
    { LLM_ARCH_GPTNEOX,       false },
    { LLM_ARCH_INTERNLM2,     false },
    { LLM_ARCH_MINICPM,       false },
    { LLM_ARCH_COMMAND_R,     false },
    { LLM_ARCH_EXAONE,        false },
    { LLM_ARCH_GRANITE_SWITCH, false }, // the router layer is outside rope_pattern
    { LLM_ARCH_ERNIE4_5,      false },
    { LLM_ARCH_SEED_OSS,      false },
    { LLM_ARCH_OPENAI_MOE,    false },  // gpt-oss: iSWA + attention sinks
    { LLM_ARCH_MINICPM3,      false, true },  // low-rank q and kv; K/V head sizes differ
    { LLM_ARCH_PLM,           false, true },  // low-rank kv; K/V head sizes differ
    { LLM_ARCH_DEEPSEEK2,     false, true },  // non-MLA GGUFs only (see llama_se_layer_takes)
};

const se_arch_rule * find_rule(llm_arch arch) {
    for (const se_arch_rule & rule : k_rules) {
        if (rule.arch == arch) {
            return &rule;
        }
    }
    return nullptr;
}

}  // namespace

bool llama_se_layer_takes(const llama_model & model, int il) {
    const se_arch_rule * rule = find_rule(model.arch);
    const llama_hparams & hp = model.hparams;
    if (rule == nullptr || il < 0 || (uint32_t) il >= hp.n_layer()) {
        return false;
    }
    // MLA GGUFs cache a compressed latent shared by all heads, not roped per-head keys
    if (hp.is_mla()) {
        return false;
    }
    // (deci's attention-free layers have no KV heads)
    if (hp.is_swa(il) || !hp.has_rope(il) || hp.n_rot(il) == 0 || hp.n_head_kv(il) == 0) {
        return false;
    }
    if (rule->no_rope_step && hp.n_no_rope_layer_step > 0 && (il + 1) % hp.n_no_rope_layer_step == 0) {
        return false;
    }
    return true;
}

int32_t llama_se_count_layers(const llama_model & model, std::string & why) {
    if (find_rule(model.arch) == nullptr) {
        why = std::string("architecture '") + llm_arch_name(model.arch) +
              "' is not in Self-Extend's capability table (the README lists the served ones and why others are not)";
        return 0;
    }
    int32_t n = 0;
    for (uint32_t il = 0; il < model.hparams.n_layer(); ++il) {
        n += llama_se_layer_takes(model, (int) il) ? 1 : 0;
    }
    if (n == 0 && model.hparams.is_mla()) {
        why = "this GGUF uses multi-head latent attention (MLA): its cache holds a compressed latent, not per-head "
              "keys; a GGUF converted without the MLA split (no attention.key_length_mla) can take Self-Extend";
    } else if (n == 0) {
        why = "no layer of this model has global RoPE attention (every layer is sliding-window or unroped)";
    }
    return n;
}

int32_t llama_se_rope_offset(llm_arch arch, const llama_hparams & hparams, int il) {
    const se_arch_rule * rule = find_rule(arch);
    if (rule == nullptr || !rule->rope_trailing) {
        return 0;
    }
    return (int32_t) (hparams.n_embd_head_k(il) - hparams.n_rot(il));
}
