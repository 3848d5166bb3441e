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
#include "model/hybrid_config.h"
#include "model/mamba2.h"
#include "model/mla.h"
#include "model/mlp.h"

namespace zebra {

enum class LayerKind { Attention, Mla, Mamba2 };
const char* layer_kind_name(LayerKind k);

struct Layer {
  LayerKind kind = LayerKind::Attention;
  Tensor input_norm;  // [hidden]
  Tensor post_norm;   // [hidden]
  AttentionWeights attn;  // kind == Attention
  MlaWeights mla;         // kind == Mla
  MlaDims mla_dims;
  MlaRope mla_rope;
  Mamba2Weights mamba;    // kind == Mamba2
  MlpWeights mlp;
};

// Per-layer inference state for every sequence slot.
struct Cache {
  int64_t n_slots = 0, n_ctx = 0;
  std::vector<KvCache> kv;        // per layer: Llama attention keys/values (empty for other kinds)
  std::vector<MlaCache> latent;   // per layer: MLA latents (empty for other kinds)
  std::vector<Mamba2State> ssm;   // per layer: Mamba2 conv window + SSM state (empty for other kinds)
  size_t bytes() const;
};

// What a forward pass can record besides the logits (the teacher side of layer distillation, spec §4.2).
// For every token of the batch, in batch order:
struct ForwardTrace {
  std::vector<Tensor> layer_inputs;   // [L] residual stream entering layer l: [n, hidden] (l = 0: embeddings)
  std::vector<Tensor> mixer_outputs;  // [L] attention/MLA/Mamba2 output before the residual add: [n, hidden]
  Tensor final_hidden;                // final RMSNorm of the last layer's output: [n, hidden]
};

struct Model {
  LlamaConfig config;         // the Llama skeleton (for a hybrid: the source Transformer's config)
  bool is_hybrid = false;
  HybridConfig hybrid;        // valid when is_hybrid
  Mamba2Dims mamba_dims;      // valid when is_hybrid and some layer is Mamba2
  Tensor embed;    // [vocab, hidden]
  std::vector<Layer> layers;
  Tensor norm;     // [hidden]
  Tensor lm_head;  // [vocab, hidden]; empty when tied to embed
  std::string path;  // where it was loaded from

  const Tensor& head() const { return lm_head.empty() ? embed : lm_head; }
  int64_t parameter_count() const;
  // Cache bytes each token adds (all layers) and fixed state bytes per sequence, at fp32.
  int64_t kv_bytes_per_token() const;
  int64_t state_bytes_per_sequence() const;
  // Mixer parameters of one layer plus its MLP and norms.
  int64_t layer_parameter_count(const Layer& l) const;
  MlaMode mla_mode = MlaMode::Auto;  // for tests and benchmarks of the two MLA paths

  Cache make_cache(int64_t n_slots, int64_t n_ctx) const;
  // Runs the batch; returns logits [batch.n_logits(), vocab] for the tokens that asked for them, in order.
  // Throws zebra::Error for tokens out of the vocabulary or positions past the cache's context.
  // With a trace, also records every layer's input and mixer output and the final normed hidden states.
  Tensor forward(const Batch& batch, Cache& cache, ForwardTrace* trace = nullptr) const;
};

}  // namespace zebra
