// SwiGLU MLP shared by every layer kind: down( silu(gate x) * up x ).
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

}  // namespace zebra
