// Training forward and backward of a whole hybrid (end-to-end distillation and DPO): embedding, the
// decoder layers, final RMSNorm and LM head, over B packed rows of T tokens (row b's token t at position t).
// With recompute, only each layer's input is kept and the layer's forward is re-run during the backward
// (one layer's activations live at a time): less memory for one extra forward.
#pragma once
#include <cstdint>
#include <vector>

#include "core/arena.h"
#include "model/model.h"
#include "train/decoder_layer.h"

namespace zebra {

struct ModelActivations {
  int64_t B = 0, T = 0;
  bool recompute = false;
  std::vector<float*> layer_in;           // [L + 1] residual stream entering layer l; [L] = last layer's output
  std::vector<LayerActivations> layers;   // [L] (unused with recompute)
  float* final_normed = nullptr;          // [n, H] rmsnorm(layer_in[L], norm)
  float* logits = nullptr;                // [n, V]
};

// Floats model_train_forward takes from `arena` (with recompute: plus the per-layer arena's plan, see below).
int64_t model_activation_floats(const Model& m, int64_t B, int64_t T, bool recompute);
// The largest single layer's activations (the scratch arena a recomputing backward needs).
int64_t max_layer_activation_floats(const Model& m, int64_t B, int64_t T);

// tokens: [B*T]. Fills act (logits in act.logits, [B*T, V]).
void model_train_forward(const Model& m, const int32_t* tokens, int64_t B, int64_t T, bool recompute, Arena& arena,
                         ModelActivations& act);

// dlogits: [B*T, V] gradient of the loss at the logits. Accumulates every weight gradient into grad
// (zeros_like(m) shaped). With recompute, layer_arena (planned with max_layer_activation_floats) is reused.
void model_backward(const Model& m, const int32_t* tokens, const ModelActivations& act, const float* dlogits,
                    Model& grad, Arena& layer_arena);

}  // namespace zebra
