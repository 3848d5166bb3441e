// The optimiser of every training stage (spec §4.3: HF Trainer's default AdamW, grad-norm clipping 1.0,
// cosine schedule with linear warmup). Semantics follow torch.optim.AdamW, torch.nn.utils.clip_grad_norm_
// and transformers' get_cosine_schedule_with_warmup, and tests compare against them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace zebra {

// One trainable tensor: its values, its gradient (same length n) and whether weight decay applies.
struct ParamRef {
  std::string name;
  float* data = nullptr;
  float* grad = nullptr;
  int64_t n = 0;
  bool decay = true;
};

// The usual exclusions from weight decay, by name: biases ("...bias", including Mamba2's dt_bias), norm
// weights (any name containing "norm": input_layernorm, post_attention_layernorm, the final norm, MLA's
// q_a/kv_a_layernorm, Mamba2's gated norm), and Mamba2's A_log and D (Mamba's own _no_weight_decay
// parameters). 1-D tensors are excluded as well, whatever their name (make_param checks the shape), since
// every 1-D parameter here is a scale, bias or per-head constant; embeddings, lm_head, projections and
// conv1d.weight ([C, 1, K]) decay. (The reference runs with weight_decay 0, so this matters only when
// decay is switched on.)
bool default_decay(const std::string& name);

// A ParamRef over a weight and its gradient tensor (same shape; checked), with decay = default_decay(name)
// && rank >= 2.
ParamRef make_param(const std::string& name, Tensor& value, Tensor& grad);

// Sets every gradient to 0 (before accumulating the next step's).
void zero_grad(const std::vector<ParamRef>& params);

struct AdamWOptions {
  double lr = 1e-3;  // used by step() without an argument; a schedule passes its own to step(lr)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;  // applied only to params with decay = true
};

// torch.optim.AdamW (amsgrad = false, maximize = false), per element, for step t = 1, 2, ...:
//   p -= lr * wd * p                                       (decoupled decay, before the update)
//   m  = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)    (eps outside the sqrt)
// Moments are fp32 like PyTorch's state for fp32 params; per-step scalars are computed in double.
class AdamW {
 public:
  AdamW(std::vector<ParamRef> params, AdamWOptions options);

  void step(double lr);
  void step() { step(opt_.lr); }

  int64_t step_count() const { return step_count_; }
  const std::vector<ParamRef>& params() const { return params_; }
  const AdamWOptions& options() const { return opt_; }

  // The moments of params()[i] (PyTorch's exp_avg and exp_avg_sq), e.g. to save one tensor per param.
  std::vector<float>& m(size_t i) { return m_.at(i); }
  std::vector<float>& v(size_t i) { return v_.at(i); }
  const std::vector<float>& m(size_t i) const { return m_.at(i); }
  const std::vector<float>& v(size_t i) const { return v_.at(i); }

  // The whole state as one flat buffer for checkpoints: [m_0, v_0, m_1, v_1, ...] in params() order
  // (state_floats() = 2 * sum n). load_state checks the size and restores step_count too.
  int64_t state_floats() const;
  std::vector<float> save_state() const;
  void load_state(const std::vector<float>& state, int64_t step_count);

 private:
  std::vector<ParamRef> params_;
  AdamWOptions opt_;
  std::vector<std::vector<float>> m_, v_;
  int64_t step_count_ = 0;
};

// torch.nn.utils.clip_grad_norm_(params, max_norm) with the L2 norm: total = sqrt(sum of every grad^2)
// (accumulated in double), coef = max_norm / (total + 1e-6), and when coef < 1 every grad is multiplied by
// it. Returns the pre-clip total. A non-finite total scales the grads to NaN as PyTorch does (default
// error_if_nonfinite = false); the caller can test the returned norm and skip the step.
double clip_grad_norm(std::vector<ParamRef>& params, double max_norm);

// The learning rate of optimiser step `step` (0-based: the first update uses step 0) for `total` steps,
// transformers' get_cosine_schedule_with_warmup (num_cycles 0.5), with get_cosine_with_min_lr_schedule_
// with_warmup's floor when min_lr > 0:
//   step < warmup:  peak * step / max(1, warmup)                       (linear from 0; step 0 has lr 0)
//   otherwise:      progress = (step - warmup) / max(1, total - warmup)
//                   peak * max(0, r + (1 - r) * 0.5 * (1 + cos(pi * progress))),   r = min_lr / peak
// Requires 0 <= step <= total.
double cosine_lr(int64_t step, int64_t total, int64_t warmup, double peak, double min_lr = 0.0);

// HF TrainingArguments' warmup from a ratio: ceil(total * ratio) (0 when ratio is 0).
int64_t warmup_steps(double ratio, int64_t total);

}  // namespace zebra
