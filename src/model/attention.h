// Llama grouped-query self-attention (the teacher's mixer): weights, KV cache, forward over a batch.
// Backward will live here too (distillation issue).
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/rope.h"

namespace zebra {

struct AttentionWeights {
  Tensor wq;  // [n_heads*head_dim, hidden]
  Tensor wk;  // [n_kv_heads*head_dim, hidden]
  Tensor wv;  // [n_kv_heads*head_dim, hidden]
  Tensor wo;  // [hidden, n_heads*head_dim]
};

// Keys and values of one attention layer for every sequence slot: [slot][position][kv_dim].
struct KvCache {
  int64_t n_slots = 0, n_ctx = 0, kv_dim = 0;
  std::vector<float> k, v;

  void allocate(int64_t slots, int64_t ctx, int64_t dim);
  float* k_at(int64_t slot, int64_t pos) { return k.data() + (slot * n_ctx + pos) * kv_dim; }
  float* v_at(int64_t slot, int64_t pos) { return v.data() + (slot * n_ctx + pos) * kv_dim; }
  size_t bytes() const { return (k.size() + v.size()) * sizeof(float); }
};

// x: [n, hidden] normalised inputs of the batch's tokens; out: [n, hidden] attention output (o_proj).
// Writes the batch's keys/values into the cache, then attends causally within each sequence.
void attention_forward(const LlamaConfig& cfg, const AttentionWeights& w, const RopeTable& rope,
                       const Batch& batch, const float* x, float* out, KvCache& cache);

}  // namespace zebra
