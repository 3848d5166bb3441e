// A decoder-only language model: embedding, a stack of pre-norm residual layers, final norm, LM head.
// Every layer is `h = x + Mixer(norm_in(x)); out = h + MLP(norm_post(h))`; the mixer is Llama
// attention for a Transformer (the teacher) and MLA or Mamba2 for a Zebra hybrid.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/attention.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/mlp.h"

namespace zebra {

enum class LayerKind { Attention };
const char* layer_kind_name(LayerKind k);

struct Layer {
  LayerKind kind = LayerKind::Attention;
  Tensor input_norm;  // [hidden]
  Tensor post_norm;   // [hidden]
  AttentionWeights attn;
  MlpWeights mlp;
};

// Per-layer inference state for every sequence slot.
struct Cache {
  int64_t n_slots = 0, n_ctx = 0;
  std::vector<KvCache> kv;  // one per layer (empty for layers without a KV cache)
  size_t bytes() const;
};

struct Model {
  LlamaConfig config;
  Tensor embed;    // [vocab, hidden]
  std::vector<Layer> layers;
  Tensor norm;     // [hidden]
  Tensor lm_head;  // [vocab, hidden]; empty when tied to embed
  std::string path;  // where it was loaded from

  const Tensor& head() const { return lm_head.empty() ? embed : lm_head; }
  int64_t parameter_count() const;
  // Cache bytes each token adds (all layers) and fixed bytes per sequence, at fp32.
  int64_t kv_bytes_per_token() const;

  Cache make_cache(int64_t n_slots, int64_t n_ctx) const;
  // Runs the batch; returns logits [batch.n_logits(), vocab] for the tokens that asked for them, in order.
  // Throws zebra::Error for tokens out of the vocabulary or positions past the cache's context.
  Tensor forward(const Batch& batch, Cache& cache) const;
};

}  // namespace zebra
