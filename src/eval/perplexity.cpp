#include "eval/perplexity.h"

#include <cmath>

#include "kernels/cpu/ops.h"

namespace zebra {

double PerplexityResult::ppl() const { return std::exp(nll_per_token()); }

PerplexityResult perplexity(const Model& model, const std::vector<int32_t>& tokens, int64_t n_ctx, int32_t bos,
                            const std::function<void(int64_t, int64_t)>& on_window) {
  ZEBRA_CHECK(n_ctx >= 4, "perplexity: the context size must be at least 4, got ", n_ctx);
  const int64_t n_windows = static_cast<int64_t>(tokens.size()) / n_ctx;
  ZEBRA_CHECK(n_windows >= 1, "perplexity: the text has ", tokens.size(), " tokens, fewer than one window of ",
              n_ctx, " (use a smaller -c or a longer text)");
  const int64_t first = n_ctx / 2, V = model.config.vocab_size;
  PerplexityResult r;
  Cache cache = model.make_cache(1, n_ctx);
  for (int64_t w = 0; w < n_windows; ++w) {
    std::vector<int32_t> win(tokens.begin() + w * n_ctx, tokens.begin() + (w + 1) * n_ctx);
    if (bos >= 0) win[0] = bos;
    Batch b;
    for (int64_t j = 0; j < n_ctx; ++j) b.add(win[j], 0, static_cast<int32_t>(j), j >= first && j + 1 < n_ctx);
    Tensor logits = model.forward(b, cache);  // [n_ctx - first - 1, V]
    for (int64_t j = first; j + 1 < n_ctx; ++j) {
      const float* row = logits.ptr() + (j - first) * V;
      const int32_t target = tokens[w * n_ctx + j + 1];
      r.nll_sum += cpu::logsumexp(row, V) - row[target];
      r.tokens += 1;
    }
    r.windows += 1;
    if (on_window) on_window(w + 1, n_windows);
  }
  return r;
}

}  // namespace zebra
