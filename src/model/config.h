// Hyper-parameters of a Llama-architecture Transformer (the teacher and the hybrid's skeleton).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace zebra {

// RoPE frequency scaling, as in transformers' ROPE_INIT_FUNCTIONS.
struct RopeScaling {
  enum class Type { None, Linear, Dynamic, Llama3, Yarn };
  Type type = Type::None;
  double factor = 1.0;
  // llama3
  double low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 0;  // 0 = use max_position_embeddings
  // yarn
  double beta_fast = 32.0, beta_slow = 1.0;
  double mscale = 1.0, mscale_all_dim = 0.0;
  double attention_factor = 0.0;  // 0 = derived (0.1*ln(factor)+1 for yarn)
  // Per-frequency divisors (GGUF's rope_freqs.weight, how llama.cpp stores llama3 scaling); empty = none.
  std::vector<float> freq_factors;
};

struct LlamaConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;        // dim
  int64_t intermediate_size = 0;  // MLP hidden
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // usually hidden_size / num_heads
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;  // config may give one id or a list
  std::string source_format;  // "hf", "gguf", "llama2c" (for info)

  // Throws zebra::Error naming the field if the config is inconsistent (heads not dividing, etc.).
  void validate(const std::string& where) const;
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
  int64_t q_dim() const { return num_heads * head_dim; }
};

}  // namespace zebra
