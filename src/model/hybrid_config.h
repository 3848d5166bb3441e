// The Zebra hybrid's own hyper-parameters (AMD's hybrid_config.json, both generations; spec §7.2):
// which layers are MLA, the MLA ranks and rope, and the Mamba2 sizes. The Llama fields (hidden, heads,
// MLP, vocabulary) stay in LlamaConfig.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/config.h"

namespace zebra {

// Shapes of one MLA layer (spec §1.3).
struct MlaDims {
  int64_t hidden = 0;
  int64_t n_heads = 0;     // query heads
  int64_t kv_heads = 0;    // heads of kv_b_proj: num_kv_heads (GQA-MLA) or n_heads (use_full_kv_head)
  int64_t q_rank = 0;      // q_lora_rank; 0 = a full q_proj [n_heads*(nope+rope), hidden]
  int64_t kv_rank = 0;     // kv_lora_rank (latent c_kv width)
  int64_t rope_dim = 0;    // qk_rope_head_dim (d_r)
  int64_t nope_dim = 0;    // qk_nope_head_dim (d_n)
  int64_t v_dim = 0;       // v_head_dim (d_v)
  bool lora_norm = false;  // q_a_layernorm / kv_a_layernorm present
  double eps = 1e-5;
  int64_t q_head_dim() const { return nope_dim + rope_dim; }
  int64_t cache_width() const { return kv_rank + rope_dim; }  // cached floats per token
  int64_t parameter_count() const;
};

// Shapes of one Mamba2 layer (spec §1.4).
struct Mamba2Dims {
  int64_t hidden = 0;
  int64_t d_inner = 0;   // n_heads * head_dim
  int64_t d_xb = 0;      // n_kv_heads * head_dim
  int64_t d_state = 0;   // N
  int64_t n_heads = 0;   // = ngroups
  int64_t head_dim = 0;  // P = d_inner / n_heads
  int64_t d_conv = 4;
  double eps = 1e-5;
  int64_t conv_dim() const { return d_inner + 2 * d_xb; }
  int64_t in_proj_rows() const { return 2 * d_inner + 2 * d_xb + n_heads; }
  int64_t repeat_group() const { return d_inner / d_xb; }  // query heads per x/B group
  // Constant per-sequence state in elements: SSM state + conv window (spec §1.6).
  int64_t state_elements() const { return n_heads * head_dim * d_state + d_conv * conv_dim(); }
  int64_t parameter_count() const;
};

struct HybridConfig {
  std::vector<int64_t> mla_layers;  // sorted layer indices that are MLA; the rest are Mamba2
  // MLA
  int64_t q_lora_rank = 0;  // 0 = none (full q_proj)
  int64_t kv_lora_rank = 0;
  int64_t qk_rope_head_dim = 0, qk_nope_head_dim = 0, v_head_dim = 0;
  bool use_lora_layer_norm = false, use_full_kv_head = false;
  int64_t qkv_rank_divisor = 8;
  std::map<int64_t, std::pair<int64_t, int64_t>> layer_ranks;  // layer -> (q_rank, kv_rank) overrides
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 2048;
  RopeScaling mla_rope;  // always yarn-style per the spec's loader rule (factor 1 = plain rope)
  // Mamba2
  int64_t d_inner = 0, d_xb = 0, d_state = 0, ngroups = 0, d_conv = 4;
  bool repeat_kv_before_conv = false;
  double rms_norm_eps = 1e-5;
  std::string generation;  // "current" or "june2025" (which hybrid_config.json layout was read)

  bool is_mla(int64_t layer) const;
  MlaDims mla_dims(const LlamaConfig& base, int64_t layer) const;
  Mamba2Dims mamba_dims(const LlamaConfig& base) const;
  // Checks the hybrid fields against the base Llama config; throws naming `where` and the field.
  void validate(const LlamaConfig& base, const std::string& where) const;
};

// Reads hybrid_config.json (either generation; unknown fields ignored; spec §7.2 loader rule).
HybridConfig load_hybrid_config(const std::string& path, const LlamaConfig& base);
// Writes the current generation of hybrid_config.json (atomically).
void save_hybrid_config(const std::string& path, const HybridConfig& h, const LlamaConfig& base);

// Exact parameter count of a hybrid from its configs alone (embeddings + head counted per tying).
int64_t hybrid_parameter_count(const LlamaConfig& base, const HybridConfig& h);
// KV elements per token of all MLA layers, and the source Llama's (2 * L * nkv * hd).
int64_t hybrid_kv_elements_per_token(const LlamaConfig& base, const HybridConfig& h);
int64_t llama_kv_elements_per_token(const LlamaConfig& base);

}  // namespace zebra
