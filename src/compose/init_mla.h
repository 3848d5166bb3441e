// MLA initialised from a Llama attention block by truncated SVD (AMD's "init_with_svd", spec §2.1).
#pragma once
#include <cstdint>

#include "model/attention.h"
#include "model/config.h"
#include "model/hybrid_config.h"
#include "model/mla.h"

namespace zebra {

struct MlaInitOptions {
  double q_energy = 0;   // > 0: q rank from the energy rule (overrides dims.q_rank)
  double kv_energy = 0;  // > 0: kv rank from the energy rule (overrides dims.kv_rank)
  int64_t rank_divisor = 8;  // energy ranks are rounded up to a multiple of this (qkv_rank_divisor)
};

struct MlaInit {
  MlaWeights weights;
  MlaDims dims;  // the input dims with the ranks actually used
};

// attn: the Llama layer's q/k/v/o ([nh*hd, H], [nkv*hd, H], [nkv*hd, H], [H, nh*hd]) in Hugging Face
// (rotate-half) row order; teacher: its config. dims: the target MLA shape; dims.kv_heads must be the
// teacher's nkv (GQA-MLA) or nh (use_full_kv_head: K/V heads repeated before the joint SVD).
// Requirements (specific errors otherwise): nope + rope <= hd (nope = the first nope rows of each head,
// rope = the last rope rows), v_dim == hd (o_proj is copied as out_proj), 1 <= kv_rank <= min(2*kv_heads*hd, H),
// 0 <= q_rank <= min(nh*hd, H) (0 = full q_proj: the selected rows of W_q, no SVD).
// Maths in double (LAPACK dgesdd), stored as fp32:
//   W_q = U S V^T:  q_a = S[:r] V^T[:r];  q_b = per head [U rows 0..nope ; U rows hd-rope..hd] of U[:, :r]
//   [K_rep; V_rep] = U S V^T:  kv_a = [S[:r] V^T[:r] ; last rope rows of the head-averaged W_k]
//   kv_b = per kv head [U_K rows 0..nope ; U_V all hd rows]
// `where` prefixes error messages (e.g. "layer 3").
MlaInit init_mla_from_attention(const AttentionWeights& attn, const LlamaConfig& teacher, const MlaDims& dims,
                                const MlaInitOptions& opts, const std::string& where);

}  // namespace zebra
