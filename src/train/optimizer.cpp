#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace zebra {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The last dot-separated component: "model.layers.3.mamba.D" -> "D".
std::string leaf(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

}  // namespace

bool default_decay(const std::string& name) {
  const std::string last = leaf(name);
  if (ends_with(last, "bias")) return false;  // "bias", "dt_bias", "conv1d.bias"
  if (name.find("norm") != std::string::npos) return false;
  if (last == "A_log" || last == "D") return false;
  return true;
}

ParamRef make_param(const std::string& name, Tensor& value, Tensor& grad) {
  ZEBRA_CHECK(value.shape == grad.shape, "parameter ", name, ": gradient shape ", shape_str(grad.shape),
              " differs from the value's ", shape_str(value.shape));
  ParamRef p;
  p.name = name;
  p.data = value.ptr();
  p.grad = grad.ptr();
  p.n = value.numel();
  p.decay = default_decay(name) && value.rank() >= 2;
  return p;
}

void zero_grad(const std::vector<ParamRef>& params) {
  for (const ParamRef& p : params) std::fill(p.grad, p.grad + p.n, 0.0f);
}

AdamW::AdamW(std::vector<ParamRef> params, AdamWOptions options) : params_(std::move(params)), opt_(options) {
  ZEBRA_CHECK(opt_.beta1 >= 0 && opt_.beta1 < 1 && opt_.beta2 >= 0 && opt_.beta2 < 1, "AdamW: betas must be in [0, 1), got ",
              opt_.beta1, ", ", opt_.beta2);
  ZEBRA_CHECK(opt_.eps >= 0 && opt_.weight_decay >= 0, "AdamW: eps and weight_decay must be >= 0, got ", opt_.eps,
              ", ", opt_.weight_decay);
  for (const ParamRef& p : params_) {
    ZEBRA_CHECK(p.n >= 0 && (p.n == 0 || (p.data && p.grad)), "AdamW: parameter ", p.name,
                " has no data or gradient buffer");
    m_.emplace_back(p.n, 0.0f);
    v_.emplace_back(p.n, 0.0f);
  }
}

void AdamW::step(double lr) {
  ++step_count_;
  const double t = (double)step_count_;
  // Per-step scalars as PyTorch's single-tensor path forms them (Python floats, i.e. double).
  const double bias1 = 1.0 - std::pow(opt_.beta1, t);
  const double bias2_sqrt = std::sqrt(1.0 - std::pow(opt_.beta2, t));
  const float step_size = (float)(lr / bias1);
  const float w1 = (float)(1.0 - opt_.beta1);  // m.lerp_(g, 1 - beta1)
  const float b2 = (float)opt_.beta2, one_minus_b2 = (float)(1.0 - opt_.beta2);
  const float bias2_sqrt_f = (float)bias2_sqrt, eps = (float)opt_.eps;

  for (size_t i = 0; i < params_.size(); ++i) {
    const ParamRef& p = params_[i];
    const float decay = p.decay ? (float)(1.0 - lr * opt_.weight_decay) : 1.0f;
    float* m = m_[i].data();
    float* v = v_[i].data();
    // Elementwise, so the result does not depend on how the loop is split across threads.
#pragma omp parallel for schedule(static) if (p.n > 65536)
    for (int64_t k = 0; k < p.n; ++k) {
      const float g = p.grad[k];
      float x = p.data[k] * decay;
      // The same expressions as PyTorch's kernels (lerp for m, mul + addcmul for v, sqrt(v) / bc2 + eps).
      m[k] = w1 < 0.5f ? m[k] + w1 * (g - m[k]) : g - (g - m[k]) * (1.0f - w1);
      v[k] = v[k] * b2 + one_minus_b2 * g * g;
      const float denom = std::sqrt(v[k]) / bias2_sqrt_f + eps;
      x -= step_size * (m[k] / denom);
      p.data[k] = x;
    }
  }
}

int64_t AdamW::state_floats() const {
  int64_t n = 0;
  for (const ParamRef& p : params_) n += 2 * p.n;
  return n;
}

std::vector<float> AdamW::save_state() const {
  std::vector<float> out;
  out.reserve(state_floats());
  for (size_t i = 0; i < params_.size(); ++i) {
    out.insert(out.end(), m_[i].begin(), m_[i].end());
    out.insert(out.end(), v_[i].begin(), v_[i].end());
  }
  return out;
}

void AdamW::load_state(const std::vector<float>& state, int64_t step_count) {
  ZEBRA_CHECK((int64_t)state.size() == state_floats(), "AdamW state: expected ", state_floats(), " floats for ",
              params_.size(), " parameters, got ", state.size());
  ZEBRA_CHECK(step_count >= 0, "AdamW state: negative step count ", step_count);
  auto it = state.begin();
  for (size_t i = 0; i < params_.size(); ++i) {
    std::copy(it, it + params_[i].n, m_[i].begin());
    it += params_[i].n;
    std::copy(it, it + params_[i].n, v_[i].begin());
    it += params_[i].n;
  }
  step_count_ = step_count;
}

double clip_grad_norm(std::vector<ParamRef>& params, double max_norm) {
  ZEBRA_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got ", max_norm);
  double ss = 0.0;  // serial, so the norm is the same on any thread count
  for (const ParamRef& p : params)
    for (int64_t k = 0; k < p.n; ++k) ss += (double)p.grad[k] * p.grad[k];
  const double total = std::sqrt(ss);
  const double coef = max_norm / (total + 1e-6);
  if (!(coef < 1.0) && std::isfinite(total)) return total;
  const float c = (float)coef;  // NaN when total is NaN or inf-over-inf: the grads become NaN, as in PyTorch
  for (ParamRef& p : params)
    for (int64_t k = 0; k < p.n; ++k) p.grad[k] *= c;
  return total;
}

double cosine_lr(int64_t step, int64_t total, int64_t warmup, double peak, double min_lr) {
  ZEBRA_CHECK(step >= 0 && step <= total && warmup >= 0, "cosine_lr: step ", step, " outside [0, ", total,
              "] (warmup ", warmup, ")");
  if (step < warmup) return peak * ((double)step / (double)std::max<int64_t>(1, warmup));
  const double progress = (double)(step - warmup) / (double)std::max<int64_t>(1, total - warmup);
  const double r = peak != 0 ? min_lr / peak : 0.0;
  const double factor = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  return peak * std::max(0.0, factor * (1 - r) + r);
}

int64_t warmup_steps(double ratio, int64_t total) {
  ZEBRA_CHECK(ratio >= 0 && ratio <= 1 && total >= 0, "warmup_steps: ratio ", ratio, " must be in [0, 1], total ",
              total, " >= 0");
  return (int64_t)std::ceil((double)total * ratio);
}

}  // namespace zebra
