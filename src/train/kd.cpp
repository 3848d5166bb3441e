#include "train/kd.h"

#include <cmath>

#include "kernels/cpu/ops.h"
#include "train/model_train.h"

namespace zebra {

void check_kd_pair(const Model& teacher, const Model& student) {
  ZEBRA_CHECK(teacher.config.vocab_size == student.config.vocab_size, "KD: the teacher (", teacher.path,
              ") has a vocabulary of ", teacher.config.vocab_size, " but the student (", student.path, ") has ",
              student.config.vocab_size, "; the teacher must share the student's tokenizer");
}

Tensor teacher_logits(const Model& teacher, const std::vector<int32_t>& tokens, int64_t B, int64_t T) {
  Batch batch;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) batch.add(tokens[b * T + t], static_cast<int32_t>(b), static_cast<int32_t>(t), true);
  Cache cache = teacher.make_cache(B, T);
  return teacher.forward(batch, cache);  // [B*T, V]
}

KdStats kd_step(const Model& teacher, const Model& student, const std::vector<int32_t>& tokens, int64_t B, int64_t T,
                const KdOptions& opts, bool recompute, Model* grad, double scale, Arena& arena, Arena& layer_arena) {
  check_kd_pair(teacher, student);
  ZEBRA_CHECK(static_cast<int64_t>(tokens.size()) == B * T, "KD: ", tokens.size(), " tokens for ", B, " rows of ", T);
  const int64_t n = B * T, V = student.config.vocab_size;
  const Tensor t_logits = teacher_logits(teacher, tokens, B, T);

  arena.plan(model_activation_floats(student, B, T, recompute));
  arena.reset();
  ModelActivations act;
  model_train_forward(student, tokens.data(), B, T, recompute, arena, act);

  // Next-token targets inside each row (the last position of a row has none).
  std::vector<int32_t> targets(n, kIgnoreIndex);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t + 1 < T; ++t) targets[b * T + t] = tokens[b * T + t + 1];

  KdOptions o = opts;
  o.batch_rows = B;
  std::vector<float> dlogits(grad ? n * V : 0);
  KdStats stats;
  stats.loss = kd_loss(act.logits, t_logits.ptr(), n, V, o, grad ? dlogits.data() : nullptr, targets.data());
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] == kIgnoreIndex) continue;
    const float* row = act.logits + i * V;
    stats.nll += cpu::logsumexp(row, V) - row[targets[i]];
    ++stats.nll_tokens;
  }
  if (stats.nll_tokens) stats.nll /= stats.nll_tokens;
  if (!grad) return stats;
  for (float& g : dlogits) g *= static_cast<float>(scale);
  if (recompute) layer_arena.plan(max_layer_activation_floats(student, B, T));
  model_backward(student, tokens.data(), act, dlogits.data(), *grad, layer_arena);
  return stats;
}

}  // namespace zebra
