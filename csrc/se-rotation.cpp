// Turning vectors by a position delta (see se-rotation.h).

#include "se-rotation.h"
#include "se-arch-rules.h"

#include "llama-cparams.h"
#include "llama-model.h"

#include <cmath>

ggml_tensor * llama_se_turn(ggml_context * ctx, ggml_tensor * x, ggml_tensor * delta, const llama_model & model,
                            const llama_cparams & cparams, int il, bool whole_heads, bool inplace) {
    const llama_hparams & hp = model.hparams;
    const float freq_scale = model.get_rope_freq_scale(cparams, il);
    // ggml's rope multiplies by (1 + 0.1 ln(1/freq_scale)) when YaRN is on
    const float unit_attn_factor = cparams.yarn_ext_factor != 0.0f ? 1.0f / (1.0f + 0.1f * logf(1.0f / freq_scale)) : 1.0f;
    auto * rope = inplace ? ggml_rope_ext_inplace : ggml_rope_ext;
    ggml_tensor * r = rope(ctx, x, delta, model.get_rope_factors(cparams, il), hp.n_rot(il), hp.rope_type,
            cparams.n_ctx_orig_yarn, model.get_rope_freq_base(cparams, il), freq_scale,
            cparams.yarn_ext_factor, unit_attn_factor, cparams.yarn_beta_fast, cparams.yarn_beta_slow);
    const int32_t first_dim = whole_heads ? llama_se_rope_offset(model.arch, hp, il) : 0;
    return first_dim > 0 ? ggml_rope_set_offset(r, first_dim) : r;
}
