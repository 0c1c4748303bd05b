#include "se-forms.h"

// With an eval callback set (the per-layer check in tests/, or debugging), plain f32
// copies of what layer il's Self-Extend attention computed from and gave:
//   se_cap_q   [d, n_head, n_tokens]             the roped queries times kq_scale
//   se_cap_k/v [d, n_head_kv, n_kv, n_stream]    the cache's cells (keys at true positions)
//   se_cap_out [d*n_head, n_tokens]
void llama_se_capture_layer(const llm_graph_context & g, ggml_tensor * q_roped, ggml_tensor * k_true,
                            ggml_tensor * v, ggml_tensor * out, float kq_scale, int il) {
    ggml_context * ctx0 = g.ctx0;
    auto f32 = [&](ggml_tensor * x) { return x->type == GGML_TYPE_F32 ? ggml_cont(ctx0, x) : ggml_cast(ctx0, x, GGML_TYPE_F32); };
    const bool v_trans = v->nb[1] > v->nb[2];   // [n_kv, heads, d, n_stream]: back to [d, heads, n_kv, n_stream]
    ggml_tensor * items[4] = {
        ggml_scale(ctx0, q_roped, kq_scale), f32(k_true), f32(v_trans ? ggml_permute(ctx0, v, 2, 1, 0, 3) : v), ggml_cont(ctx0, out) };
    const char * names[4] = { "se_cap_q", "se_cap_k", "se_cap_v", "se_cap_out" };
    for (int i = 0; i < 4; ++i) {
        ggml_format_name(items[i], "%s-%d", names[i], il);
        ggml_set_output(items[i]);  // kept until the graph's end, where the callback reads them
        ggml_build_forward_expand(g.gf, items[i]);
    }
}
