// Mamba2 initialised from a Llama attention block (MambaInLlama's mapping, AMD's "init_with_kqvo";
// spec §2.2): the attention weights become the linear-attention-like x/B/C projections.
#pragma once
#include <cstdint>
#include <string>

#include "model/attention.h"
#include "model/config.h"
#include "model/hybrid_config.h"
#include "model/mamba2.h"

namespace zebra {

// Requires dims.d_inner == nh*hd, dims.d_xb == nkv*hd, dims.d_state == hd (= head_dim), dims.hidden == H.
//   in_proj rows: z [d_inner] ~ U(-1/sqrt(H), 1/sqrt(H)) | x <- W_v | B <- W_k | C <- W_q | dt [nh] ~ U(same)
//   conv weight and bias ~ U(-1/sqrt(d_conv), 1/sqrt(d_conv)) (PyTorch's default for fan_in = d_conv)
//   dt = exp(U[ln 1e-3, ln 1e-1]) clamped >= 1e-4, dt_bias = dt + ln(-expm1(-dt)) (inverse softplus)
//   A_log = ln U[1, 16];  D = 1;  norm = 1;  out_proj <- W_o
// The random draws come from std::mt19937_64 seeded by seed_seq{seed (two 32-bit halves), layer}, in the
// order above, so a layer's init depends only on (seed, layer), not on the other layers.
Mamba2Weights init_mamba2_from_attention(const AttentionWeights& attn, const LlamaConfig& teacher,
                                         const Mamba2Dims& dims, uint64_t seed, int64_t layer,
                                         const std::string& where);

}  // namespace zebra
