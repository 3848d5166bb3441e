// Rotary position embedding frequencies for Llama-style models, with transformers' scaling rules
// (linear, dynamic NTK, llama3, yarn). The MLA layers' interleaved YaRN variant lives with MLA.
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace zebra {

struct RopeTable {
  std::vector<float> inv_freq;  // [dim/2] radians per position
  float attention_scale = 1.0f; // multiplies cos and sin (yarn's "attention factor")

  int64_t half() const { return static_cast<int64_t>(inv_freq.size()); }
  // cos/sin of pos * inv_freq[i] (times attention_scale) for i < dim/2.
  void angles(int64_t pos, float* cos, float* sin) const;
};

// Frequencies for a rotary dimension `dim` (= head_dim for Llama). `seq_len` is the number of positions
// the current forward covers (max position + 1): only dynamic NTK scaling depends on it, exactly as
// transformers recomputes its frequencies when a sequence runs past max_position_embeddings.
RopeTable make_rope_table(const LlamaConfig& cfg, int64_t dim, int64_t seq_len);

}  // namespace zebra
