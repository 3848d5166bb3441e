// Every weight tensor of a hybrid under its Hugging Face name in AMD's layout (spec §7.3), in one fixed
// order: the list the checkpoint writer, the optimiser and the gradient buffers all walk.
#pragma once
#include <string>
#include <vector>

#include "model/model.h"

namespace zebra {

struct NamedTensor {
  std::string name;  // e.g. "model.layers.3.mamba.A_log"
  Tensor* tensor;
};

// Non-empty weights only (q_a/q_b or q_proj per layer, lora norms when present, lm_head when untied).
// conv1d.weight is listed in the engine's [conv_dim, d_conv] shape.
std::vector<NamedTensor> named_parameters(Model& m);
std::vector<std::pair<std::string, const Tensor*>> named_parameters(const Model& m);

// A copy of m's structure (configs, dims, rope tables) whose every weight is zero: gradient buffers.
Model zeros_like(const Model& m);
// Sets every weight of m to zero (keeps shapes).
void set_zero(Model& m);

}  // namespace zebra
