#include "eval/kl_divergence.h"

#include <algorithm>
#include <cmath>

namespace zebra {

namespace {

// log Σ exp(x), in double.
double logsumexp_d(const float* x, int64_t n) {
  double mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, static_cast<double>(x[i]));
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(x[i] - mx);
  return mx + std::log(s);
}

int64_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

// Adds one position: base logits p_row, model logits q_row, the actual next token.
void add_position(const float* p_row, const float* q_row, int64_t V, int32_t target, KlResult& r) {
  const double lse_p = logsumexp_d(p_row, V), lse_q = logsumexp_d(q_row, V);
  // KL = Σ p (log p − log q) = Σ p (p_row − q_row) − lse_p + lse_q; exactly 0 for identical rows.
  double kl = 0;
  for (int64_t v = 0; v < V; ++v) {
    const double d = static_cast<double>(p_row[v]) - q_row[v];
    if (d != 0) kl += std::exp(p_row[v] - lse_p) * d;
  }
  kl += lse_q - lse_p;
  const double logp = p_row[target] - lse_p, logq = q_row[target] - lse_q;
  r.kl.push_back(kl);
  r.delta_p.push_back(std::exp(logq) - std::exp(logp));
  r.same_top += argmax(p_row, V) == argmax(q_row, V);
  r.base_nll_sum -= logp;
  r.model_nll_sum -= logq;
}

}  // namespace

KlResult kl_divergence(const Model& model, const BaseLogits& base, const std::vector<int32_t>& tokens, int64_t n_ctx,
                       int32_t bos, const std::function<void(const Tensor&)>& on_base_logits,
                       const std::function<void(int64_t, int64_t)>& on_window) {
  ZEBRA_CHECK((base.model != nullptr) != (base.saved != nullptr), "kl_divergence: give exactly one base");
  const WindowPlan plan = plan_windows(static_cast<int64_t>(tokens.size()), n_ctx);
  const int64_t V = model.config.vocab_size;
  if (base.model)
    ZEBRA_CHECK(base.model->config.vocab_size == V, "the base model has a vocabulary of ",
                base.model->config.vocab_size, " tokens, the model ", V);
  Cache cache = model.make_cache(1, n_ctx);
  Cache base_cache = base.model ? base.model->make_cache(1, n_ctx) : Cache{};
  KlResult r;
  for (int64_t w = 0; w < plan.n_windows; ++w) {
    Tensor q = window_logits(model, cache, tokens, plan, w, bos);  // [scored, V]
    Tensor p_computed;
    const float* p = nullptr;  // [scored, V]
    if (base.model) {
      p_computed = window_logits(*base.model, base_cache, tokens, plan, w, bos);
      p = p_computed.ptr();
      if (on_base_logits) on_base_logits(p_computed);
    } else {
      p = base.saved->window(w);
    }
    for (int64_t j = plan.first; j + 1 < n_ctx; ++j) {
      const int64_t row = j - plan.first;
      add_position(p + row * V, q.ptr() + row * V, V, tokens[w * n_ctx + j + 1], r);
    }
    r.windows += 1;
    if (on_window) on_window(w + 1, plan.n_windows);
  }
  return r;
}

SampleSummary summarize(std::vector<double> v) {
  SampleSummary s;
  const int64_t n = static_cast<int64_t>(v.size());
  if (n == 0) return s;
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / n;
  double ss = 0;
  for (double x : v) ss += (x - s.mean) * (x - s.mean);
  s.stderr_ = n > 1 ? std::sqrt(ss / (n - 1) / n) : 0.0;
  std::sort(v.begin(), v.end());
  s.min = v.front(), s.max = v.back();
  for (double q : kSummaryPercentiles) {
    const double h = (n - 1) * q / 100.0;
    const int64_t lo = static_cast<int64_t>(std::floor(h));
    const int64_t hi = std::min(lo + 1, n - 1);
    s.percentiles.push_back(v[lo] + (h - lo) * (v[hi] - v[lo]));
  }
  return s;
}

}  // namespace zebra
