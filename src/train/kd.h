// Stage 2, end-to-end distillation (spec §4.3): the whole hybrid is trained so that its next-token
// distribution matches the teacher's, L = kl_weight * KL(p_teacher || p_student) [+ ce_weight * CE].
// The teacher may be any model with the same tokenizer (the paper uses a larger Llama).
#pragma once
#include <cstdint>
#include <vector>

#include "core/arena.h"
#include "model/model.h"
#include "train/losses.h"

namespace zebra {

struct KdStats {
  double loss = 0;         // the objective (per kd_loss's reduction)
  double nll = 0;          // student's mean next-token NLL over the rows (reported; ppl = exp(nll))
  int64_t nll_tokens = 0;
};

// Throws unless teacher and student share the vocabulary size.
void check_kd_pair(const Model& teacher, const Model& student);

// Teacher logits of B rows of T tokens: [B*T, V] (no gradient).
Tensor teacher_logits(const Model& teacher, const std::vector<int32_t>& tokens, int64_t B, int64_t T);

// One micro-batch. Accumulates `scale` times the loss gradient into grad (zeros_like(student)); grad ==
// nullptr evaluates only. arena is planned here; layer_arena serves the recomputing backward.
KdStats kd_step(const Model& teacher, const Model& student, const std::vector<int32_t>& tokens, int64_t B, int64_t T,
                const KdOptions& opts, bool recompute, Model* grad, double scale, Arena& arena, Arena& layer_arena);

}  // namespace zebra
