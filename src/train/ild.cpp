#include "train/ild.h"

#include <algorithm>

#include "kernels/cpu/grad_ops.h"
#include "kernels/cpu/ops.h"
#include "train/decoder_layer.h"
#include "train/losses.h"

namespace zebra {

void check_ild_pair(const Model& teacher, const Model& student) {
  ZEBRA_CHECK(student.layers.size() == teacher.layers.size(), "ILD: the student (", student.path, ") has ",
              student.layers.size(), " layers but the teacher (", teacher.path, ") has ", teacher.layers.size(),
              "; compose the student from this teacher (zebra compose --all-mla / --all-mamba)");
  ZEBRA_CHECK(student.config.hidden_size == teacher.config.hidden_size, "ILD: the student's hidden size ",
              student.config.hidden_size, " differs from the teacher's ", teacher.config.hidden_size);
  ZEBRA_CHECK(student.config.vocab_size == teacher.config.vocab_size, "ILD: the student's vocabulary (",
              student.config.vocab_size, ") differs from the teacher's (", teacher.config.vocab_size, ")");
  for (size_t l = 0; l < student.layers.size(); ++l)
    ZEBRA_CHECK(student.layers[l].kind != LayerKind::Attention, "ILD: student layer ", l,
                " is Llama attention; the student must be a hybrid of MLA/Mamba2 layers");
}

// Teacher hidden states of the rows (no gradient): inputs of every layer, mixer outputs, final normed states.
static ForwardTrace teacher_trace(const Model& teacher, const std::vector<int32_t>& tokens, int64_t B, int64_t T) {
  Batch batch;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) batch.add(tokens[b * T + t], static_cast<int32_t>(b), static_cast<int32_t>(t), false);
  batch.logits.back() = 1;  // forward returns logits for at least one token; we only need the trace
  Cache cache = teacher.make_cache(B, T);
  ForwardTrace trace;
  teacher.forward(batch, cache, &trace);
  return trace;
}

IldLoss ild_step(const Model& teacher, const Model& student, const std::vector<int32_t>& tokens, int64_t B,
                 int64_t T, const IldOptions& opts, Model* grad, double scale, Arena& arena) {
  check_ild_pair(teacher, student);
  ZEBRA_CHECK(static_cast<int64_t>(tokens.size()) == B * T, "ILD: ", tokens.size(), " tokens for ", B, " rows of ", T);
  const ForwardTrace tr = teacher_trace(teacher, tokens, B, T);
  const int64_t n = B * T, H = student.config.hidden_size, L = static_cast<int64_t>(student.layers.size());
  const float eps = static_cast<float>(student.config.rms_norm_eps);

  IldLoss loss;
  loss.per_layer.assign(L, 0.0);
  std::vector<float> out(n * H), normed(n * H), dout(n * H), dnormed(n * H), dmix(n * H);
  for (int64_t l = 0; l < L; ++l) {
    const Layer& layer = student.layers[l];
    arena.plan(layer_activation_floats(student, layer, B, T));
    arena.reset();
    LayerActivations act;
    const float* x = tr.layer_inputs[l].ptr();  // the teacher's input to layer l
    layer_train_forward(student, layer, B, T, x, out.data(), arena, act);

    // Hidden-state term: against the teacher's next layer input, or (last layer) its final normed state after
    // the student's own final norm (which ILD trains and the assembled hybrid then discards, spec §8 item 13).
    const bool last = l == L - 1;
    std::fill(dout.begin(), dout.end(), 0.0f);
    if (last) {
      cpu::rmsnorm(out.data(), student.norm.ptr(), normed.data(), n, H, eps);
      std::fill(dnormed.begin(), dnormed.end(), 0.0f);
      loss.per_layer[l] = l2_distance_loss(normed.data(), tr.final_hidden.ptr(), n, H, grad ? dnormed.data() : nullptr);
      if (grad) {
        for (float& g : dnormed) g *= static_cast<float>(scale);
        cpu::rmsnorm_backward(out.data(), student.norm.ptr(), dnormed.data(), n, H, eps, dout.data(),
                              grad->norm.ptr());
      }
    } else {
      loss.per_layer[l] = l2_distance_loss(out.data(), tr.layer_inputs[l + 1].ptr(), n, H, grad ? dout.data() : nullptr);
      if (grad)
        for (float& g : dout) g *= static_cast<float>(scale);
    }
    loss.total += loss.per_layer[l];

    const float* dmixer = nullptr;
    if (opts.mixer_term) {
      std::fill(dmix.begin(), dmix.end(), 0.0f);
      loss.total += l2_distance_loss(act.mixer_out, tr.mixer_outputs[l].ptr(), n, H, grad ? dmix.data() : nullptr);
      dmixer = dmix.data();
    }
    if (!grad) continue;
    if (dmixer)
      for (float& g : dmix) g *= static_cast<float>(scale);
    layer_backward(student, layer, B, T, x, act, dout.data(), dmixer, nullptr, grad->layers[l]);
  }
  return loss;
}

}  // namespace zebra
