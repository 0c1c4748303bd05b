// Self-Extend's flash attention on the CPU over two key sets (se-flash-cpu.h).
//
// Compiled into ggml's CPU backend target (CMakeLists.txt): it uses that backend's vector
// helpers (vec.h, simd-gemm.h) under its architecture flags. Two loops, by the number of
// queries per head:
//   - few queries (decoding, short turns): one query row at a time, one dot product per
//     visible (query, cell) with the key type's own vec_dot, values summed in f32;
//   - many queries (prefill): tiles of queries of the heads that share a KV head against
//     tiles of keys, keys and values brought to f32 once per tile for those heads and
//     multiplied as small matrices; a key tile that the mask hides from every query of
//     the tile is skipped.
// Both keep the online softmax (running max M, sum S, weighted values O) in f32.

#include "se-flash-cpu.h"

#include "ggml-cpu.h"
#include "simd-gemm.h"
#include "vec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t TILE_Q   = 32;  // queries per tile (many queries), for each head of a KV head
constexpr int64_t TILE_KV  = 64;  // cells per key tile (many queries)
constexpr int64_t BLOCK_KV = 32;  // cells whose logits are exponentiated together (few queries)

// one key set and the queries that read it
struct key_set {
    const ggml_tensor * q;
    const ggml_tensor * k;
    const ggml_tensor * v;
    int64_t n;      // cells
    int64_t col0;   // its first column in the mask
    const ggml_tensor * turn = nullptr; // the turn table when its keys are turned as read
};

struct problem {
    key_set sets[2];
    const ggml_tensor * mask;
    const ggml_tensor * sinks;
    ggml_tensor * dst;
    int64_t DK, DV, n_q, n_head, n_stream;
    int64_t head_ratio;   // query heads per KV head
    int64_t n_chunks;     // parts of the cells that few-query rows are split into (se-flash-cpu.h)
    float   scale;        // divided by the soft cap when there is one (as ggml's flash attention)
    float   softcap;
    int32_t turn_n_rot;
    bool    turn_neox;
};

// a row of K or V as f32: as it is, or converted into tmp
const float * row_f32(const ggml_tensor * t, const char * row, float * tmp, int64_t n) {
    switch (t->type) {
        case GGML_TYPE_F32:
            return (const float *) row;
        case GGML_TYPE_F16:
            ggml_cpu_fp16_to_fp32((const ggml_fp16_t *) row, tmp, n);
            return tmp;
        default:
            ggml_get_type_traits(t->type)->to_float(row, tmp, n);
            return tmp;
    }
}

// x . y in f32, inline: a decoding step takes one per (head, visible cell), and a call
// through the type traits costs as much as a head's dot product itself
inline float dot_f32(int64_t n, const float * x, const float * y) {
#if defined(GGML_SIMD) && !defined(__ARM_FEATURE_SVE) && !defined(__riscv_v_intrinsic)
    GGML_F32_VEC sum[GGML_F32_ARR];
    for (int j = 0; j < GGML_F32_ARR; ++j) {
        sum[j] = GGML_F32_VEC_ZERO;
    }
    const int64_t np = n - n % GGML_F32_STEP;
    for (int64_t i = 0; i < np; i += GGML_F32_STEP) {
        for (int j = 0; j < GGML_F32_ARR; ++j) {
            sum[j] = GGML_F32_VEC_FMA(sum[j], GGML_F32_VEC_LOAD(x + i + j*GGML_F32_EPR),
                                      GGML_F32_VEC_LOAD(y + i + j*GGML_F32_EPR));
        }
    }
    ggml_float total;
    GGML_F32_VEC_REDUCE(total, sum);
    float s = (float) total;
    for (int64_t i = np; i < n; ++i) {
        s += x[i]*y[i];
    }
    return s;
#else
    float s;
    ggml_vec_dot_f32((int) n, &s, 0, x, 0, y, 0, 1);
    return s;
#endif
}

const char * cell_row(const ggml_tensor * t, int64_t cell, int64_t head_kv, int64_t stream) {
    return (const char *) t->data + cell*t->nb[1] + head_kv*t->nb[2] + stream*t->nb[3];
}

// A key row of a set in f32, into out: turned by its cell's delta when the set has a turn
// table (x' = x cos - y sin, y' = x sin + y cos per rotary pair; dims past n_rot as they are).
const float * key_f32(const problem & p, const key_set & set, int64_t cell, int64_t head_kv, int64_t stream,
                      float * out, float * tmp) {
    const float * k = row_f32(set.k, cell_row(set.k, cell, head_kv, stream), tmp, p.DK);
    if (set.turn == nullptr) {
        return k;
    }
    const int64_t n_rot = p.turn_n_rot, half = n_rot/2;
    const float * cs = (const float *) ((const char *) set.turn->data + (cell + stream*set.n)*set.turn->nb[2]);
    if (p.turn_neox) {
        for (int64_t i = 0; i < half; ++i) {
            const float c = cs[i], s = cs[half + i], x = k[i], y = k[half + i];
            out[i]        = x*c - y*s;
            out[half + i] = x*s + y*c;
        }
    } else {
        for (int64_t i = 0; i < half; ++i) {
            const float c = cs[2*i], s = cs[2*i + 1], x = k[2*i], y = k[2*i + 1];
            out[2*i]     = x*c - y*s;
            out[2*i + 1] = x*s + y*c;
        }
    }
    for (int64_t i = n_rot; i < p.DK; ++i) {
        out[i] = k[i];
    }
    return out;
}

const float * query_row(const ggml_tensor * q, int64_t iq, int64_t head, int64_t stream) {
    return (const float *) ((const char *) q->data + iq*q->nb[1] + head*q->nb[2] + stream*q->nb[3]);
}

const ggml_fp16_t * mask_row(const ggml_tensor * mask, int64_t iq, int64_t stream) {
    return (const ggml_fp16_t *) ((const char *) mask->data + iq*mask->nb[1] + (stream % mask->ne[3])*mask->nb[3]);
}

float * scratch(size_t n_floats) {
    thread_local std::vector<float> buf;
    if (buf.size() < n_floats) {
        buf.resize(n_floats);
    }
    return buf.data();
}

// A block of n logits of one row folded into its running softmax (max M, sum S, weighted
// values O): exponentiated in place into the weights of the block's values (0 where masked).
void fold_block(int64_t n, float * logits, float & M, float & S, float * O, int64_t DV) {
    float block_max;
    ggml_vec_max_f32((int) n, &block_max, logits);
    if (block_max == -INFINITY) {
        memset(logits, 0, n*sizeof(float));
        return;
    }
    if (block_max > M) {
        const float ms = expf(M - block_max);
        ggml_vec_scale_f32((int) DV, O, ms);
        S *= ms;
        M = block_max;
    }
    S += (float) ggml_vec_soft_max_f32((int) n, logits, logits, M);
}

// A finished row (query iq, head) of one stream into dst [DV, n_head, n_q, n_stream] (as
// ggml's flash attention lays it out): the sink logit of the head when there are sinks
// (gpt-oss: one more term of the softmax, with no value), then O / S.
void write_row(ggml_tensor * dst, const ggml_tensor * sinks, int64_t iq, int64_t head, int64_t stream,
               float M, float S, float * O) {
    const int64_t DV = dst->ne[0];
    if (sinks) {
        const float s = ((const float *) sinks->data)[head];
        if (s > M) {
            const float ms = expf(M - s);
            ggml_vec_scale_f32((int) DV, O, ms);
            S = S*ms + 1.0f;
        } else {
            S += expf(s - M);
        }
    }
    ggml_vec_scale_f32((int) DV, O, S == 0.0f ? 0.0f : 1.0f/S);
    memcpy((char *) dst->data + head*dst->nb[1] + iq*dst->nb[2] + stream*dst->nb[3], O, DV*sizeof(float));
}

// The partial softmax [M, S, O] of (query iq, head, stream) in chunk `chunk`, in the
// partials [DV + 2, n_head, n_q, n_stream*n_chunks] that llama_se_flash_reduce_cpu joins.
float * partial_row(const ggml_tensor * parts, int64_t iq, int64_t head, int64_t stream, int64_t chunk,
                    int64_t n_stream) {
    return (float *) ((char *) parts->data + head*parts->nb[1] + iq*parts->nb[2] + (stream + chunk*n_stream)*parts->nb[3]);
}

// Every query and head of one stream over a chunk [c_begin, c_end) of the cells of both
// sets (in mask columns); a row is one (query, head). A block of cells at a time: the
// logits of every row (each key row brought to f32 once for all the queries and heads that
// read it, dot products in f32), exponentiated together, then the values (each row
// converted once). The cache is read front to back once per chunk (a cell's heads are
// adjacent in it). Without chunks the rows are finished here; with chunks the partial
// softmax (M, S, O) is written for llama_se_flash_reduce_cpu.
void attend_queries(const problem & p, int64_t stream, int64_t chunk) {
    const int64_t DK = p.DK, DV = p.DV, H = p.n_head, R = p.head_ratio, H_kv = H / R, NQ = p.n_q;
    const int64_t n_rows  = NQ*H;
    const int64_t n_cols  = p.sets[0].n + p.sets[1].n;
    const int64_t c_begin = n_cols*chunk/p.n_chunks;
    const int64_t c_end   = n_cols*(chunk + 1)/p.n_chunks;

    float * O    = scratch(n_rows*DV + 2*n_rows + n_rows*BLOCK_KV + NQ*BLOCK_KV + DV + 2*DK);
    float * M    = O + n_rows*DV;
    float * S    = M + n_rows;
    float * L    = S + n_rows;            // logits, then weights: one row of BLOCK_KV per (query, head)
    float * MV   = L + n_rows*BLOCK_KV;   // the mask of each query over the block
    float * V32  = MV + NQ*BLOCK_KV;
    float * K32  = V32 + DV;              // a key in f32 (turned), and its f32 conversion

    std::fill(M, M + n_rows, -INFINITY);
    std::fill(S, S + n_rows, 0.0f);
    memset(O, 0, n_rows*DV*sizeof(float));

    for (const key_set & set : p.sets) {
        const int64_t lo = std::max<int64_t>(c_begin - set.col0, 0);
        const int64_t hi = std::min<int64_t>(c_end - set.col0, set.n);
        for (int64_t b0 = lo; b0 < hi; b0 += BLOCK_KV) {
            const int64_t nb = std::min(BLOCK_KV, hi - b0);
            bool any = false;
            for (int64_t qi = 0; qi < NQ; ++qi) {
                const ggml_fp16_t * mrow = mask_row(p.mask, qi, stream) + set.col0 + b0;
                for (int64_t t = 0; t < nb; ++t) {
                    MV[qi*BLOCK_KV + t] = GGML_CPU_FP16_TO_FP32(mrow[t]);
                    any = any || MV[qi*BLOCK_KV + t] != -INFINITY;
                }
            }
            if (!any) {
                continue; // no query sees these cells in this set
            }
            bool seen[BLOCK_KV];   // by some query
            for (int64_t t = 0; t < nb; ++t) {
                seen[t] = false;
                for (int64_t qi = 0; qi < NQ; ++qi) {
                    seen[t] = seen[t] || MV[qi*BLOCK_KV + t] != -INFINITY;
                }
            }
            for (int64_t t = 0; t < nb; ++t) {
                for (int64_t hk = 0; hk < H_kv; ++hk) {
                    const float * k = seen[t] ? key_f32(p, set, b0 + t, hk, stream, K32, K32 + DK) : nullptr;
                    for (int64_t qi = 0; qi < NQ; ++qi) {
                        const float mv = MV[qi*BLOCK_KV + t];
                        for (int64_t h = hk*R; h < (hk + 1)*R; ++h) {
                            float * l = L + (qi*H + h)*BLOCK_KV + t;
                            if (mv == -INFINITY) {
                                *l = -INFINITY;
                                continue;
                            }
                            float x = dot_f32(DK, k, query_row(set.q, qi, h, stream))*p.scale;
                            if (p.softcap != 0.0f) {
                                x = p.softcap*tanhf(x);
                            }
                            *l = x + mv;
                        }
                    }
                }
            }
            for (int64_t row = 0; row < n_rows; ++row) {
                fold_block(nb, L + row*BLOCK_KV, M[row], S[row], O + row*DV, DV);
            }
            for (int64_t t = 0; t < nb; ++t) {
                if (!seen[t]) {
                    continue;
                }
                for (int64_t hk = 0; hk < H_kv; ++hk) {
                    const float * v = row_f32(set.v, cell_row(set.v, b0 + t, hk, stream), V32, DV);
                    for (int64_t qi = 0; qi < NQ; ++qi) {
                        if (MV[qi*BLOCK_KV + t] == -INFINITY) {
                            continue;
                        }
                        for (int64_t h = hk*R; h < (hk + 1)*R; ++h) {
                            ggml_vec_mad_f32((int) DV, O + (qi*H + h)*DV, v, L[(qi*H + h)*BLOCK_KV + t]);
                        }
                    }
                }
            }
        }
    }
    for (int64_t qi = 0; qi < NQ; ++qi) {
        for (int64_t h = 0; h < H; ++h) {
            const int64_t row = qi*H + h;
            if (p.n_chunks == 1) {
                write_row(p.dst, p.sinks, qi, h, stream, M[row], S[row], O + row*DV);
            } else {
                float * out = partial_row(p.dst, qi, h, stream, chunk, p.n_stream);
                out[0] = M[row];
                out[1] = S[row];
                memcpy(out + 2, O + row*DV, DV*sizeof(float));
            }
        }
    }
}

// Queries [iq0, iq0 + nq) of every head that shares one KV head, against both sets, tile
// by tile. A row is one (head, query): the tile of keys and values is brought to f32 once
// for all the heads that read it, and the masks are per query.
void attend_tile(const problem & p, int64_t iq0, int64_t nq, int64_t head_kv, int64_t stream) {
    const int64_t DK = p.DK, DV = p.DV, R = p.head_ratio;
    const int64_t n_rows = R*nq;
    const int64_t max_rows = R*TILE_Q;

    float * Q    = scratch(max_rows*DK + max_rows*TILE_KV + TILE_Q*TILE_KV + max_rows*DV + TILE_KV*DV +
                           TILE_KV*DK + 2*std::max(DK, DV) + 2*max_rows);
    float * KQ   = Q + max_rows*DK;          // logits, then weights
    float * MASK = KQ + max_rows*TILE_KV;    // per query
    float * O    = MASK + TILE_Q*TILE_KV;
    float * V    = O + max_rows*DV;          // a tile of values, one row per cell
    float * KT   = V + TILE_KV*DV;           // a tile of keys, transposed: one row per dimension
    float * TMP  = KT + TILE_KV*DK;
    float * M    = TMP + 2*std::max(DK, DV);
    float * S    = M + max_rows;

    std::fill(M, M + n_rows, -INFINITY);
    std::fill(S, S + n_rows, 0.0f);
    memset(O, 0, n_rows*DV*sizeof(float));

    for (const key_set & set : p.sets) {
        if (set.n == 0) {
            continue;
        }
        for (int64_t r = 0; r < R; ++r) {
            for (int64_t t = 0; t < nq; ++t) {
                memcpy(Q + (r*nq + t)*DK, query_row(set.q, iq0 + t, head_kv*R + r, stream), DK*sizeof(float));
            }
        }
        for (int64_t c0 = 0; c0 < set.n; c0 += TILE_KV) {
            const int64_t nk = std::min(TILE_KV, set.n - c0);

            bool any = false;
            for (int64_t t = 0; t < nq; ++t) {
                const ggml_fp16_t * mrow = mask_row(p.mask, iq0 + t, stream) + set.col0 + c0;
                float * m = MASK + t*TILE_KV;
                for (int64_t c = 0; c < nk; ++c) {
                    m[c] = GGML_CPU_FP16_TO_FP32(mrow[c]);
                    any = any || m[c] != -INFINITY;
                }
                std::fill(m + nk, m + TILE_KV, -INFINITY);
            }
            if (!any) {
                continue; // no query of the tile sees these cells in this set
            }

            for (int64_t c = 0; c < nk; ++c) {
                const float * k = key_f32(p, set, c0 + c, head_kv, stream, TMP + DK, TMP);
                for (int64_t d = 0; d < DK; ++d) {
                    KT[d*TILE_KV + c] = k[d];
                }
            }
            if (nk < TILE_KV) {
                for (int64_t d = 0; d < DK; ++d) {
                    std::fill(KT + d*TILE_KV + nk, KT + (d + 1)*TILE_KV, 0.0f);
                }
            }
            memset(KQ, 0, n_rows*TILE_KV*sizeof(float));
            simd_gemm(KQ, Q, KT, (int) n_rows, (int) DK, (int) TILE_KV);
            ggml_vec_scale_f32((int) (n_rows*TILE_KV), KQ, p.scale);
            if (p.softcap != 0.0f) {
                ggml_vec_tanh_f32((int) (n_rows*TILE_KV), KQ, KQ);
                ggml_vec_scale_f32((int) (n_rows*TILE_KV), KQ, p.softcap);
            }
            for (int64_t r = 0; r < R; ++r) {
                ggml_vec_add_f32((int) (nq*TILE_KV), KQ + r*nq*TILE_KV, KQ + r*nq*TILE_KV, MASK);
            }

            for (int64_t row = 0; row < n_rows; ++row) {
                fold_block(TILE_KV, KQ + row*TILE_KV, M[row], S[row], O + row*DV, DV);
            }

            for (int64_t c = 0; c < nk; ++c) {
                const float * v = row_f32(set.v, cell_row(set.v, c0 + c, head_kv, stream), V + c*DV, DV);
                if (v != V + c*DV) {
                    memcpy(V + c*DV, v, DV*sizeof(float));
                }
            }
            if (nk < TILE_KV) {
                memset(V + nk*DV, 0, (TILE_KV - nk)*DV*sizeof(float));
            }
            simd_gemm(O, KQ, V, (int) n_rows, (int) TILE_KV, (int) DV);
        }
    }
    for (int64_t r = 0; r < R; ++r) {
        for (int64_t t = 0; t < nq; ++t) {
            const int64_t row = r*nq + t, head = head_kv*R + r;
            write_row(p.dst, p.sinks, iq0 + t, head, stream, M[row], S[row], O + row*DV);
        }
    }
}

}  // namespace

void llama_se_flash_attn_cpu(ggml_tensor * dst, int ith, int nth, void * userdata) {
    const auto & params = *(const llama_se_flash_params *) userdata;

    problem p;
    const int64_t n_far  = params.n_far;
    const int64_t n_near = dst->src[4]->ne[1];
    p.sets[0]    = { dst->src[0], dst->src[1], dst->src[2], n_far, 0 };
    p.sets[1]    = { dst->src[3], dst->src[4], dst->src[5], n_near, n_far, params.turn_n_rot > 0 ? dst->src[8] : nullptr };
    p.mask       = dst->src[6];
    p.sinks      = dst->src[7];
    p.dst        = dst;
    p.DK         = dst->src[4]->ne[0];
    p.DV         = dst->src[5]->ne[0];
    p.n_q        = dst->src[3]->ne[1];
    p.n_head     = dst->src[3]->ne[2];
    p.n_stream   = dst->src[3]->ne[3];
    p.head_ratio = p.n_head / dst->src[4]->ne[2];
    p.n_chunks   = params.n_chunks;
    p.softcap    = params.softcap;
    p.scale      = params.softcap != 0.0f ? params.scale / params.softcap : params.scale;
    p.turn_n_rot = params.turn_n_rot;
    p.turn_neox  = params.turn_neox;

    GGML_ASSERT(p.mask->ne[0] == n_far + n_near);
    GGML_ASSERT(dst->type == GGML_TYPE_F32 && p.sets[0].q->type == GGML_TYPE_F32 && p.sets[1].q->type == GGML_TYPE_F32);
    GGML_ASSERT(params.tiled ? p.n_chunks == 1 : p.n_chunks >= 1);

    if (!params.tiled) {
        // (stream, chunk) dealt out round robin
        const int64_t n_units = p.n_stream*p.n_chunks;
        for (int64_t u = ith; u < n_units; u += nth) {
            attend_queries(p, u % p.n_stream, u / p.n_stream);
        }
        return;
    }
    // (query tile, KV head, stream) dealt out round robin: a causal mask makes later tiles
    // longer, and dealing spreads them
    const int64_t n_head_kv = p.n_head / p.head_ratio;
    const int64_t n_qt      = (p.n_q + TILE_Q - 1) / TILE_Q;
    const int64_t n_tiles   = n_qt*n_head_kv*p.n_stream;
    for (int64_t t = ith; t < n_tiles; t += nth) {
        const int64_t iq0 = (t % n_qt)*TILE_Q;
        attend_tile(p, iq0, std::min(TILE_Q, p.n_q - iq0), (t / n_qt) % n_head_kv, t / (n_qt*n_head_kv));
    }
}

void llama_se_flash_reduce_cpu(ggml_tensor * dst, int ith, int nth, void * userdata) {
    const auto & params = *(const llama_se_flash_params *) userdata;
    const ggml_tensor * parts = dst->src[0];
    const ggml_tensor * sinks = dst->src[1];
    const int64_t DV = dst->ne[0], n_head = dst->ne[1], n_q = dst->ne[2], n_stream = dst->ne[3];

    float * O = scratch(DV);
    const int64_t n_rows = n_head*n_q*n_stream;
    for (int64_t row = ith; row < n_rows; row += nth) {
        const int64_t head = row % n_head, iq = (row / n_head) % n_q, stream = row / (n_head*n_q);
        auto part = [&](int64_t chunk) { return partial_row(parts, iq, head, stream, chunk, n_stream); };
        float M = -INFINITY;
        for (int64_t c = 0; c < params.n_chunks; ++c) {
            M = std::max(M, part(c)[0]);
        }
        float S = 0.0f;
        memset(O, 0, DV*sizeof(float));
        if (M != -INFINITY) {
            for (int64_t c = 0; c < params.n_chunks; ++c) {
                const float * pc = part(c);
                if (pc[0] == -INFINITY) {
                    continue; // no visible cell in this chunk
                }
                const float w = expf(pc[0] - M);
                S += pc[1]*w;
                ggml_vec_mad_f32((int) DV, O, pc + 2, w);
            }
        }
        write_row(dst, sinks, iq, head, stream, M, S, O);
    }
}
