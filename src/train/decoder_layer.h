// Training forward and backward of one decoder layer of a hybrid (spec §1.2):
//   h = x + Mixer(rmsnorm(x, input_norm));   out = h + MLP(rmsnorm(h, post_norm))
// where Mixer is MLA or Mamba2 (the student kinds; Llama attention is only ever a frozen teacher).
// Inputs are B packed rows of T tokens: [B*T, hidden], row b's token t at position t.
#pragma once
#include <cstdint>

#include "core/arena.h"
#include "model/model.h"

namespace zebra {

// What the layer's forward keeps for its backward (slices of the step's arena).
struct LayerActivations {
  float* normed_in = nullptr;    // [n, H] rmsnorm(x, input_norm): the mixer's input
  float* mixer_out = nullptr;    // [n, H] mixer output before the residual add (ILD's mixer term reads it)
  float* h = nullptr;            // [n, H] x + mixer_out
  float* normed_post = nullptr;  // [n, H] rmsnorm(h, post_norm): the MLP's input
  float* mlp_gate = nullptr;     // [n, I] gate projection (before SiLU)
  float* mlp_up = nullptr;       // [n, I] up projection
  MlaActivations mla;            // kind == Mla
  Mamba2Activations mamba;       // kind == Mamba2
};

// Floats layer_train_forward takes from the arena for B rows of T tokens.
int64_t layer_activation_floats(const Model& m, const Layer& layer, int64_t B, int64_t T);

// x: [B*T, H] the layer's input; out: [B*T, H]. Throws for a Llama attention layer (not trainable here).
void layer_train_forward(const Model& m, const Layer& layer, int64_t B, int64_t T, const float* x, float* out,
                         Arena& arena, LayerActivations& act);

// dout: [B*T, H] gradient at the layer output; dmixer: optional extra gradient at the mixer output (the ILD
// mixer-output term), nullable. Accumulates dx [B*T, H] (nullable) and every weight gradient into grad
// (a Layer shaped like `layer`, see zeros_like).
void layer_backward(const Model& m, const Layer& layer, int64_t B, int64_t T, const float* x,
                    const LayerActivations& act, const float* dout, const float* dmixer, float* dx, Layer& grad);

}  // namespace zebra
