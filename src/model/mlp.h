// SwiGLU MLP shared by every layer kind: down( silu(gate x) * up x ), with its inference forward and its
// training forward/backward (the backward recomputes silu(gate)*up from the two saved projections).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace zebra {

struct MlpWeights {
  Tensor gate;  // [intermediate, hidden]
  Tensor up;    // [intermediate, hidden]
  Tensor down;  // [hidden, intermediate]
};

// x: [n, hidden] -> out: [n, hidden]
void mlp_forward(const MlpWeights& w, const float* x, float* out, int64_t n, int64_t hidden, int64_t inter);

// ---- Training ----
// Floats the training forward saves for n tokens: gate_act and up_act, [n, inter] each (= 2 * n * inter).
int64_t mlp_activation_floats(int64_t n, int64_t inter);
// Same output as mlp_forward; also saves the pre-activation projections gate_act = x·gate^T and
// up_act = x·up^T ([n, inter] each, e.g. two slices of the step's Arena) for mlp_backward.
void mlp_train_forward(const MlpWeights& w, const float* x, float* out, int64_t n, int64_t hidden, int64_t inter,
                       float* gate_act, float* up_act);
// dout: [n, hidden]. Accumulates dx [n, hidden] (+=, may be nullptr) and the weight gradients into grad
// (same shapes as w, pre-sized by the caller; += as well).
void mlp_backward(const MlpWeights& w, const float* x, const float* gate_act, const float* up_act, const float* dout,
                  int64_t n, int64_t hidden, int64_t inter, float* dx, MlpWeights& grad);

}  // namespace zebra
