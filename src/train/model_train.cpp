#include "train/model_train.h"

#include <algorithm>

#include "kernels/cpu/grad_ops.h"
#include "kernels/cpu/ops.h"

namespace zebra {

int64_t max_layer_activation_floats(const Model& m, int64_t B, int64_t T) {
  int64_t mx = 0;
  for (const Layer& l : m.layers) mx = std::max(mx, layer_activation_floats(m, l, B, T));
  return mx;
}

int64_t model_activation_floats(const Model& m, int64_t B, int64_t T, bool recompute) {
  const int64_t n = B * T, H = m.config.hidden_size, V = m.config.vocab_size;
  int64_t f = (static_cast<int64_t>(m.layers.size()) + 1) * n * H + n * H + n * V;
  if (!recompute)
    for (const Layer& l : m.layers) f += layer_activation_floats(m, l, B, T);
  return f;
}

void model_train_forward(const Model& m, const int32_t* tokens, int64_t B, int64_t T, bool recompute, Arena& arena,
                         ModelActivations& act) {
  const int64_t n = B * T, H = m.config.hidden_size, V = m.config.vocab_size;
  const int64_t L = static_cast<int64_t>(m.layers.size());
  const float eps = static_cast<float>(m.config.rms_norm_eps);
  act.B = B, act.T = T, act.recompute = recompute;
  act.layer_in.assign(L + 1, nullptr);
  act.layers.assign(recompute ? 0 : L, LayerActivations());
  for (int64_t l = 0; l <= L; ++l) act.layer_in[l] = arena.take(n * H, "model.layer_in");
  act.final_normed = arena.take(n * H, "model.final_normed");
  act.logits = arena.take(n * V, "model.logits");

  for (int64_t t = 0; t < n; ++t) {
    ZEBRA_CHECK(tokens[t] >= 0 && tokens[t] < V, "training: token id ", tokens[t], " at row ", t / T, ", column ",
                t % T, " is outside the vocabulary [0, ", V, ")");
    std::copy_n(m.embed.ptr() + static_cast<int64_t>(tokens[t]) * H, H, act.layer_in[0] + t * H);
  }
  Arena scratch;  // recompute: this forward's layer activations are dropped right away
  for (int64_t l = 0; l < L; ++l) {
    if (recompute) {
      scratch.plan(layer_activation_floats(m, m.layers[l], B, T));
      scratch.reset();
      LayerActivations tmp;
      layer_train_forward(m, m.layers[l], B, T, act.layer_in[l], act.layer_in[l + 1], scratch, tmp);
    } else {
      layer_train_forward(m, m.layers[l], B, T, act.layer_in[l], act.layer_in[l + 1], arena, act.layers[l]);
    }
  }
  cpu::rmsnorm(act.layer_in[L], m.norm.ptr(), act.final_normed, n, H, eps);
  cpu::matmul_wt(act.final_normed, m.head().ptr(), act.logits, n, H, V);  // [n, V]
}

void model_backward(const Model& m, const int32_t* tokens, const ModelActivations& act, const float* dlogits,
                    Model& grad, Arena& layer_arena) {
  const int64_t B = act.B, T = act.T, n = B * T, H = m.config.hidden_size, V = m.config.vocab_size;
  const int64_t L = static_cast<int64_t>(m.layers.size());
  const float eps = static_cast<float>(m.config.rms_norm_eps);
  Tensor& dhead = m.lm_head.empty() ? grad.embed : grad.lm_head;  // tied head: the embedding gets both parts

  // logits = final_normed · head^T
  std::vector<float> dnormed(n * H, 0.0f), dx(n * H, 0.0f), dprev(n * H);
  cpu::linear_backward(act.final_normed, m.head().ptr(), dlogits, n, H, V, dnormed.data(), dhead.ptr());
  cpu::rmsnorm_backward(act.layer_in[L], m.norm.ptr(), dnormed.data(), n, H, eps, dx.data(), grad.norm.ptr());

  for (int64_t l = L - 1; l >= 0; --l) {
    std::fill(dprev.begin(), dprev.end(), 0.0f);
    if (act.recompute) {
      layer_arena.reset();
      LayerActivations la;
      std::vector<float> out(n * H);
      layer_train_forward(m, m.layers[l], B, T, act.layer_in[l], out.data(), layer_arena, la);
      layer_backward(m, m.layers[l], B, T, act.layer_in[l], la, dx.data(), nullptr, dprev.data(), grad.layers[l]);
    } else {
      layer_backward(m, m.layers[l], B, T, act.layer_in[l], act.layers[l], dx.data(), nullptr, dprev.data(),
                     grad.layers[l]);
    }
    dx.swap(dprev);
  }
  cpu::embedding_backward(tokens, dx.data(), n, H, grad.embed.ptr());
}

}  // namespace zebra
