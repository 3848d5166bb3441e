#include "eval/perplexity.h"

#include <cmath>

#include "kernels/cpu/ops.h"

namespace zebra {

double PerplexityResult::ppl() const { return std::exp(nll_per_token()); }

WindowPlan plan_windows(int64_t n_tokens, int64_t n_ctx) {
  ZEBRA_CHECK(n_ctx >= 4, "perplexity: the context size must be at least 4, got ", n_ctx);
  WindowPlan p;
  p.n_ctx = n_ctx, p.first = n_ctx / 2, p.n_windows = n_tokens / n_ctx;
  ZEBRA_CHECK(p.n_windows >= 1, "perplexity: the text has ", n_tokens, " tokens, fewer than one window of ", n_ctx,
              " (use a smaller -c or a longer text)");
  return p;
}

Tensor window_logits(const Model& model, Cache& cache, const std::vector<int32_t>& tokens, const WindowPlan& plan,
                     int64_t w, int32_t bos) {
  Batch b;
  for (int64_t j = 0; j < plan.n_ctx; ++j) {
    const int32_t token = j == 0 && bos >= 0 ? bos : tokens[w * plan.n_ctx + j];
    b.add(token, 0, static_cast<int32_t>(j), j >= plan.first && j + 1 < plan.n_ctx);
  }
  return model.forward(b, cache);  // [scored, V]
}

PerplexityResult perplexity(const Model& model, const std::vector<int32_t>& tokens, int64_t n_ctx, int32_t bos,
                            const std::function<void(int64_t, int64_t)>& on_window,
                            const std::function<void(const Tensor&)>& on_logits) {
  const WindowPlan plan = plan_windows(static_cast<int64_t>(tokens.size()), n_ctx);
  const int64_t V = model.config.vocab_size;
  PerplexityResult r;
  Cache cache = model.make_cache(1, n_ctx);
  for (int64_t w = 0; w < plan.n_windows; ++w) {
    Tensor logits = window_logits(model, cache, tokens, plan, w, bos);
    for (int64_t j = plan.first; j + 1 < n_ctx; ++j) {
      const float* row = logits.ptr() + (j - plan.first) * V;
      const int32_t target = tokens[w * n_ctx + j + 1];
      r.nll_sum += cpu::logsumexp(row, V) - row[target];
      r.tokens += 1;
    }
    r.windows += 1;
    if (on_logits) on_logits(logits);
    if (on_window) on_window(w + 1, plan.n_windows);
  }
  return r;
}

}  // namespace zebra
