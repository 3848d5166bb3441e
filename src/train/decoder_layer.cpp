#include "train/decoder_layer.h"

#include <algorithm>
#include <vector>

#include "kernels/cpu/grad_ops.h"
#include "kernels/cpu/ops.h"

namespace zebra {

static void check_trainable(const Layer& layer) {
  ZEBRA_CHECK(layer.kind != LayerKind::Attention,
              "training: Llama attention layers are not trainable here (only MLA and Mamba2 students are)");
}

int64_t layer_activation_floats(const Model& m, const Layer& layer, int64_t B, int64_t T) {
  check_trainable(layer);
  const int64_t n = B * T, H = m.config.hidden_size, I = m.config.intermediate_size;
  int64_t f = 4 * n * H + 2 * n * I;
  if (layer.kind == LayerKind::Mla) f += mla_activation_floats(layer.mla_dims, B, T);
  if (layer.kind == LayerKind::Mamba2) f += mamba2_activation_floats(m.mamba_dims, B, T);
  return f;
}

void layer_train_forward(const Model& m, const Layer& layer, int64_t B, int64_t T, const float* x, float* out,
                         Arena& arena, LayerActivations& act) {
  check_trainable(layer);
  const int64_t n = B * T, H = m.config.hidden_size, I = m.config.intermediate_size;
  const float eps = static_cast<float>(m.config.rms_norm_eps);
  act.normed_in = arena.take(n * H, "layer.normed_in");
  act.mixer_out = arena.take(n * H, "layer.mixer_out");
  act.h = arena.take(n * H, "layer.h");
  act.normed_post = arena.take(n * H, "layer.normed_post");
  act.mlp_gate = arena.take(n * I, "layer.mlp_gate");
  act.mlp_up = arena.take(n * I, "layer.mlp_up");

  cpu::rmsnorm(x, layer.input_norm.ptr(), act.normed_in, n, H, eps);
  if (layer.kind == LayerKind::Mla)
    mla_train_forward(layer.mla_dims, layer.mla, layer.mla_rope, B, T, act.normed_in, act.mixer_out, arena, act.mla);
  else
    mamba2_train_forward(m.mamba_dims, layer.mamba, B, T, act.normed_in, act.mixer_out, arena, act.mamba);
  for (int64_t i = 0; i < n * H; ++i) act.h[i] = x[i] + act.mixer_out[i];
  cpu::rmsnorm(act.h, layer.post_norm.ptr(), act.normed_post, n, H, eps);
  mlp_train_forward(layer.mlp, act.normed_post, out, n, H, I, act.mlp_gate, act.mlp_up);
  cpu::add_inplace(out, act.h, n * H);
}

void layer_backward(const Model& m, const Layer& layer, int64_t B, int64_t T, const float* x,
                    const LayerActivations& act, const float* dout, const float* dmixer, float* dx, Layer& grad) {
  check_trainable(layer);
  const int64_t n = B * T, H = m.config.hidden_size, I = m.config.intermediate_size;
  const float eps = static_cast<float>(m.config.rms_norm_eps);

  // out = h + MLP(rmsnorm(h)): dh = dout + rmsnorm'(MLP'(dout)).
  std::vector<float> dh(dout, dout + n * H);  // [n, H]
  std::vector<float> dnorm(n * H, 0.0f);      // [n, H]
  mlp_backward(layer.mlp, act.normed_post, act.mlp_gate, act.mlp_up, dout, n, H, I, dnorm.data(), grad.mlp);
  cpu::rmsnorm_backward(act.h, layer.post_norm.ptr(), dnorm.data(), n, H, eps, dh.data(), grad.post_norm.ptr());

  // h = x + Mixer(rmsnorm(x)): the mixer output receives dh (plus ILD's direct term).
  std::vector<float> dmix(dh);  // [n, H]
  if (dmixer) cpu::add_inplace(dmix.data(), dmixer, n * H);
  std::fill(dnorm.begin(), dnorm.end(), 0.0f);
  if (layer.kind == LayerKind::Mla)
    mla_backward(layer.mla_dims, layer.mla, layer.mla_rope, B, T, act.normed_in, act.mla, dmix.data(), dnorm.data(),
                 grad.mla);
  else
    mamba2_backward(m.mamba_dims, layer.mamba, B, T, act.normed_in, act.mamba, dmix.data(), dnorm.data(),
                    grad.mamba);
  if (dx) {
    cpu::rmsnorm_backward(x, layer.input_norm.ptr(), dnorm.data(), n, H, eps, dx, grad.input_norm.ptr());
    cpu::add_inplace(dx, dh.data(), n * H);
  } else {
    cpu::rmsnorm_backward(x, layer.input_norm.ptr(), dnorm.data(), n, H, eps, nullptr, grad.input_norm.ptr());
  }
}

}  // namespace zebra
