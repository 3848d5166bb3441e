// Stage 1, intermediate layer distillation (spec §4.2): every student layer l reads the TEACHER's input to
// layer l and is pulled towards the teacher's output of layer l (the last one after the final RMSNorm):
//   L_ILD = sum_l mean_t || s_l - t_l ||_2   [+ sum_l mean_t || a^S_l - a^T_l ||_2 with the mixer term]
// (Euclidean distance, not squared). Layers are therefore independent: each is run and differentiated on
// its own, so only one layer's activations are alive at a time.
#pragma once
#include <cstdint>
#include <vector>

#include "core/arena.h"
#include "model/model.h"

namespace zebra {

struct IldOptions {
  // The mixer-output term (the "refined ILD" of Aug 2025). Off by default: the released checkpoints date from
  // June 2025, when the code used only the hidden-state distance (spec §4.2, §8 item 2).
  bool mixer_term = false;
};

struct IldLoss {
  double total = 0;               // sum over layers (and terms)
  std::vector<double> per_layer;  // [L] hidden-state distance of each layer
};

// Checks that the student can be distilled from the teacher layer by layer: same layer count, hidden size and
// vocabulary; every student layer MLA or Mamba2. Throws naming both models.
void check_ild_pair(const Model& teacher, const Model& student);

// One micro-batch of B rows of T tokens. Runs the teacher (no gradient), then each student layer; accumulates
// `scale` times the gradient of the loss into grad (zeros_like(student)); returns the (unscaled) loss.
// With grad == nullptr only the loss is computed (evaluation).
IldLoss ild_step(const Model& teacher, const Model& student, const std::vector<int32_t>& tokens, int64_t B,
                 int64_t T, const IldOptions& opts, Model* grad, double scale, Arena& arena);

}  // namespace zebra
